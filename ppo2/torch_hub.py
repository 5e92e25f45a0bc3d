"""The torch.hub entry points hubconf.py exposes (the Hugging Face Hub is ppo2/hf_hub.py). Docstrings are written for
`torch.hub.help`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .losses import normalize_advantages
from .model import PPO2
from .update import gradient_step

__all__ = ["ppo2", "eval_fn", "train_fn"]

_IGNORED_BY_PRETRAINED = ("reset_param",)


def ppo2(pretrained: bool | str = False, **kwargs: Any) -> PPO2:
    """PPO2 actor-critic: a shared 2-layer Tanh MLP feeding a policy head and a value head.

    Args:
        pretrained (bool | str, default False): False builds a fresh model from the keywords below.
            True loads the shipped CartPole-v1 policy; an env id of the zoo (weights/zoo.json: classic control,
            LunarLander-v3, the MuJoCo v5 tasks) loads that one; a local directory loads a `save_pretrained` /
            `train.py` output (with `encoder=` / `policy_net=` for a policy trained with your own networks).
            Files are sha256-checked before loading. The architecture comes from the weights; keywords
            that disagree with it raise a ValueError. `model.make_env(render_mode="human")` makes the env it
            plays, observations as it was trained on them (an Atari policy's preprocessed frames).
        input_dim (int): observation size (required when pretrained=False).
        hidden_dim (int, default 64): hidden layer width.
        action_space (int | gymnasium space, default 2): int = Discrete(n); or Discrete, Box (1-D),
            MultiDiscrete, MultiBinary.
        dropout (float, default 0.0): dropout probability, in [0, 1).
        reset_param (bool, default True): OpenAI-baselines orthogonal initialisation.
        distribution (torch.distributions class, optional): default Categorical (discrete) / Normal (Box).
        shared_latent (bool, default True), normalize_obs (bool, default False): see ppo2.PPO2.

    Returns:
        ppo2.PPO2, an nn.Module. `model(obs)` -> (value_f, action, neg_log_prob, entropy);
        `model(obs, action=a)` evaluates `a`; `model.loss(...)` -> (loss, pg_loss, value_loss,
        entropy_mean, approx_kl); `model.predict(obs)` -> (action, None) for deployment.

    Example:
        >>> model = torch.hub.load('andompesta/ppo2', 'ppo2', reset_param=True, input_dim=4,
        ...                        hidden_dim=64, action_space=2, dropout=0)
        >>> policy = torch.hub.load('andompesta/ppo2', 'ppo2', pretrained=True)   # solves CartPole-v1
        >>> # offline / from a clone: torch.hub.load('path/to/ppo2', 'ppo2', source='local', pretrained=True)
    """
    if pretrained:
        from .zoo import load_pretrained

        for key in _IGNORED_BY_PRETRAINED:
            kwargs.pop(key, None)
        return load_pretrained(pretrained, **kwargs)
    if "input_dim" not in kwargs and "observation_space" not in kwargs:
        raise TypeError("ppo2() needs input_dim (the observation size) when pretrained=False, "
                        "e.g. ppo2(input_dim=4, action_space=2) for CartPole-v1")
    return PPO2(**kwargs)


def eval_fn(model: PPO2, device: str | torch.device | None = None) -> Callable:
    """Wrap a model for collecting experience: returns `eval_fn(obs) -> (value_f, action, neg_log_prob)`.

    `obs` is a numpy array (or anything array-like) of shape (N, input_dim) or (input_dim,). Outputs are
    torch tensors without grad; the model is put in eval mode (dropout off).

    Args:
        model (ppo2.PPO2): the policy. torch.hub names its own second parameter `model`, so pass it
            positionally: `torch.hub.load(repo, 'eval_fn', model)`.
        device (str | torch.device, optional): move the model there first (default: where it is).

    Example:
        >>> act = torch.hub.load('andompesta/ppo2', 'eval_fn', model)
        >>> value_f, action, neg_log_prob = act(env_obs)
    """
    if device is not None:
        model.to(device)

    def _eval_fn(obs):
        if model.training:
            model.eval()
        with torch.no_grad():
            value_f, action, neg_log_prob, _ = model(obs)
        return value_f, action, neg_log_prob

    return _eval_fn


def train_fn(model: PPO2, optimizer: torch.optim.Optimizer, clip_range: float = 0.2, ent_coef: float = 0.0,
             vf_coef: float = 0.5, max_grad_norm: float = 0.5) -> Callable:
    """Wrap a model and optimizer for one PPO2 gradient step on a batch.

    Returns `train_fn(obs, returns, old_actions, old_values, old_neg_log_prbs)` which computes
    advantages = returns - old_values, normalises them (so the batch needs >= 2 samples), evaluates
    the old actions under the current policy, takes one optimizer step on the clipped surrogate loss
    with the global gradient norm clipped to `max_grad_norm`, and returns the five loss terms as floats:
    (loss, pg_loss, value_loss, entropy_mean, approx_kl).

    Args:
        model (ppo2.PPO2), optimizer (torch.optim.Optimizer over model.parameters()).
        clip_range (float, default 0.2), ent_coef (float, default 0.0), vf_coef (float, default 0.5),
        max_grad_norm (float, default 0.5): the seed's hyperparameters.

    Example:
        >>> opt = torch.optim.Adam(model.parameters(), lr=3e-4)
        >>> step = torch.hub.load('andompesta/ppo2', 'train_fn', model, opt)
        >>> loss, pg_loss, value_loss, entropy, approx_kl = step(obs, returns, actions, values, nlps)
    """
    device = model.value_head.weight.device

    def _float(name: str, x) -> torch.Tensor:
        # detached: tensors straight from `model(obs)` still carry the graph, and a gradient through the old
        # log-probabilities would cancel the policy gradient exactly (ratio = exp(old - new), both from theta)
        t = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).to(device)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"train_fn: {name} contains {int((~torch.isfinite(t)).sum())} NaN/inf value(s); "
                             "expected finite numbers (nothing was applied)")
        return t.to(torch.float32)

    def _train_fn(obs, returns, old_actions, old_values, old_neg_log_prbs):
        returns, old_values = _float("returns", returns), _float("old_values", old_values)
        old_neg_log_prbs = _float("old_neg_log_prbs", old_neg_log_prbs)
        obs = obs.detach() if isinstance(obs, torch.Tensor) else obs
        old_actions = old_actions.detach() if isinstance(old_actions, torch.Tensor) else old_actions
        n = returns.shape[0] if returns.dim() == 1 else -1
        for name, t in (("returns", returns), ("old_values", old_values), ("old_neg_log_prbs", old_neg_log_prbs)):
            if t.dim() != 1 or t.shape[0] != n:
                raise ValueError(f"{name} must have shape ({n},) like returns, got {tuple(t.shape)}")
        if n < 2:
            raise ValueError(f"train_fn normalises advantages, which needs a batch of at least 2 samples, got {n}")
        with torch.no_grad():
            advantages = normalize_advantages(returns - old_values)
        if not bool(torch.isfinite(advantages).all()):
            raise FloatingPointError("train_fn: the normalised advantages (returns - old_values) overflow float32; "
                                     "the step was not applied")
        model.train()
        value_f, _, neg_log_probs, entropy = model(obs, action=old_actions)  # (validates obs and actions)
        out = PPO2._checked_loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
                                 clip_range, ent_coef, vf_coef)
        gradient_step(model, optimizer, out, max_grad_norm)
        loss, pg_loss, value_loss, entropy_mean, approx_kl = out[:5]
        return tuple(float(x.detach()) for x in (loss, pg_loss, value_loss, entropy_mean, approx_kl))

    return _train_fn
