"""The PPO2 actor-critic that torch.hub serves.

    obs --preprocess--> encoder --> latent MLP (Linear-Tanh-Dropout x2) --+--> action head -> distribution
                                                                          +--> value head  -> V(s)

- preprocess: vectors through the running normalisation (when normalize_obs is on), uint8 images to float
  (N, C, H, W) in [0, 1], Dicts key by key (ppo2/observations.py says what each kind is).
- encoder: none for vectors (the seed model: the MLP reads the vector), the Nature CNN for images, one
  sub-encoder per key for Dicts, or your own nn.Module (ppo2/encoders.py).
- latent: the MLP of the seed model, shared by both heads or one tower each (`shared_latent`); the Nature
  CNN feeds the heads directly, as in OpenAI baselines.

The maths of the MLP and of each built-in distribution is written once, in ppo2/network.py: this module's
forward (which autograd differentiates), predict's numpy path (ppo2/speed.py) and the hand-derived update
(ppo2/fused.py) all run it. Checks on what comes in live in ppo2/validation.py.

Public surface: `forward(obs, action=None)` (the seed contract: `(value_f, action, neg_log_prob, entropy)`),
`loss(...)`, `predict(obs, state, episode_start)` (stable-baselines' contract), `value_and_evaluate(obs, actions)`
(what the update differentiates), `value(obs)`, and persistence (`save_pretrained`, `from_pretrained`,
`push_to_hub`, `get_config`). The underscored methods are the package's own hot paths on validated batches.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import network
from .distributions import ActionHead, distribution_name, make_action_head
from .encoders import ENCODERS, build_encoder, default_encoder
from .hf_hub import from_pretrained as _from_pretrained
from .hf_hub import push_to_hub as _push_to_hub
from .hf_hub import save_pretrained as _save_pretrained
from .losses import ppo_loss
from .init import orthogonal_
from .masks import MaskConfig, check_mask, mask_size, split_observation_space
from .memory import LSTMMemory, check_state
from .moments import merge_moments
from .env_kwargs import env_kwargs_text, frame_options
from .observations import (ObservationShapeError, Preprocessed, describe, encode_obs, image_chw, image_keys, vector_dim,
                           vector_keys)
from .speed import NUMPY_MAX_BATCH, Precision, numpy_policy, resolve_precision, run_encoder, scale_frames
from .validation import (check_dropout, check_int, check_loss_coefficients, check_loss_inputs, check_numpy_obs,
                         check_obs, check_obs_shape, resolve_obs_spec, validate_config)

__all__ = ["PPO2", "MLP"]


class MLP(nn.Sequential):
    """The latent MLP: `layers` x (Linear, Tanh, Dropout), an nn.Sequential so that its state dict keeps the seed
    model's names (latent.0.weight, latent.3.weight, ...). Its forward is ppo2/network.py's `mlp`."""

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float, layers: int = 2):
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [nn.Linear(input_dim if i == 0 else hidden_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout)]
        super().__init__(*modules)

    def linears(self) -> list[nn.Linear]:
        return [m for m in self if isinstance(m, nn.Linear)]

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W', b), ...]: each layer's weight as a transposed view, as network.mlp takes them."""
        return [(layer.weight.T, layer.bias) for layer in self.linears()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self):
            return x
        p = self[2].p  # (every layer's Dropout has the same p)
        dropout = (lambda h: F.dropout(h, p, training=True)) if p > 0 and self.training else None
        return network.mlp(x, self.layers(), dropout=dropout)[-1]


class PPO2(nn.Module):
    """Actor-critic for PPO2.

    Args:
        input_dim (int): size of a flat observation (the seed model's only observation kind). Leave it out
            when `observation_space` is given.
        hidden_dim (int, default 64): width of the latent MLP's hidden layers.
        action_space (int | gymnasium.spaces.Space | dict, default 2): an int is Discrete(n); otherwise
            Discrete, Box (1-D), MultiDiscrete or MultiBinary.
        dropout (float, default 0.0): dropout after each hidden layer, in [0, 1).
        reset_param (bool, default True): OpenAI-baselines initialisation: orthogonal weights with gain
            sqrt(2) in hidden layers (and the built-in encoders), 0.01 in the policy head and 1.0 in the value
            head; zero biases.
        distribution (type | str | None): a torch.distributions.Distribution subclass for the policy
            (default Categorical for discrete spaces, Normal for Box).
        shared_latent (bool, default True): one latent MLP feeds both heads (the seed model). False gives
            separate policy and value towers of the same shape (stable-baselines' MlpPolicy).
        normalize_obs (bool, default False): keep running mean/variance of the vector part of observations
            as buffers and normalise inputs with them (clipped to +-obs_clip). Saved with the weights.
        obs_clip (float, default 10.0): clip for normalised observations.
        log_std_init (float, default 0.0): initial log standard deviation of a Gaussian policy.
        observation_space (gymnasium Space | dict, optional): a 1-D Box, a uint8 image Box (H, W[, C] or
            C, H, W) or a Dict of those (or its spec from ppo2.observations); default Box((input_dim,)).
        encoder (str | nn.Module, default "auto"): "mlp" (vectors), "nature_cnn" (images), "multi_input"
            (Dicts), "auto" (the one that fits the observations), or your own module mapping preprocessed
            observations (see ppo2/encoders.py) to (N, features).
        features_dim (int, optional): output width of the built-in CNN (default 512; 256 per image key of a
            Dict).
        latent_layers (int, optional): hidden layers of the latent MLP (default 2; 0 for a CNN or your own
            encoder, whose features feed the heads directly).
        policy_net / value_net (nn.Module, optional): your own latent networks for vector observations,
            mapping (N, input_dim) to (N, latent). `value_net` defaults to sharing `policy_net`.
        recurrent (bool, default False): an LSTM between the encoder and the latent MLP (ppo2/memory.py);
            `predict` then takes and returns its state, as stable-baselines3's RecurrentPPO.
        lstm_hidden (int, default 64): the LSTM's size.
        shared_lstm (bool, default True): one LSTM feeds actor and critic (CleanRL's ppo_atari_lstm; half the
            recurrent cost). False gives the critic an LSTM of its own (stable-baselines3's default), and needs
            shared_latent=False.
        action_mask ("auto" | bool | "method", default "auto"): action masking (ppo2/masks.py). "auto" masks when a
            Dict observation space has an `action_mask` key (which the network then does not read); True or
            "method" takes masks passed in (`predict(..., action_masks=...)`, the env's `action_masks()`); False
            never masks.
    """

    def __init__(
        self,
        input_dim: int | None = None,
        hidden_dim: int = 64,
        action_space: Any = 2,
        dropout: float = 0.0,
        reset_param: bool = True,
        distribution: type | str | None = None,
        shared_latent: bool = True,
        normalize_obs: bool = False,
        obs_clip: float = 10.0,
        log_std_init: float = 0.0,
        policy_net: nn.Module | None = None,
        value_net: nn.Module | None = None,
        observation_space: Any = None,
        encoder: str | nn.Module = "auto",
        features_dim: int | None = None,
        latent_layers: int | None = None,
        recurrent: bool = False,
        lstm_hidden: int = 64,
        shared_lstm: bool = True,
        action_mask: Any = "auto",
    ):
        super().__init__()
        observation_space, self.mask_config = split_observation_space(observation_space, action_mask)
        self.obs_spec = resolve_obs_spec(input_dim, observation_space)
        check_int("hidden_dim", hidden_dim, minimum=1)
        check_dropout(dropout)
        if not (isinstance(obs_clip, (int, float)) and obs_clip > 0):
            raise ValueError(f"obs_clip must be a positive number, got {obs_clip!r}")
        kind = self.obs_spec["type"]
        self.input_dim = self.obs_spec["shape"][0] if kind == "Box" else None
        self.norm_dim = vector_dim(self.obs_spec)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.env_id: str | None = None  # the env it was trained on, where known (trainer, saved config.json)
        self.env_kwargs: dict = {}  # that env's constructor arguments (ppo2/env_kwargs.py)
        self.shared_latent = bool(shared_latent)
        self.normalize_obs = bool(normalize_obs)
        self.obs_clip = float(obs_clip)
        self.custom_latent = policy_net is not None or value_net is not None
        if self.normalize_obs and self.norm_dim == 0:
            raise ValueError(f"normalize_obs applies to vector observations, but the observations are {describe(self.obs_spec)} "
                             "(images are scaled to [0, 1] inside the model); drop normalize_obs")

        # ---- encoder: preprocessed observation -> features
        if isinstance(encoder, nn.Module):
            self.encoder_name = "custom"
            self.encoder = encoder
            feat = _probe_features(encoder, self._zero_features_input())
        elif isinstance(encoder, str) and (encoder == "auto" or encoder in ENCODERS):
            self.encoder_name = default_encoder(self.obs_spec) if encoder == "auto" else encoder
            if features_dim is not None:
                check_int("features_dim", features_dim, minimum=1)
            width = int(features_dim) if features_dim is not None else (512 if self.encoder_name == "nature_cnn" else 256)
            self.encoder = build_encoder(self.encoder_name, self.obs_spec, width)
            feat = self.encoder.features_dim if self.encoder is not None else self.input_dim
        else:
            raise ValueError(f"encoder must be 'auto', one of {', '.join(ENCODERS)}, or an nn.Module; got {encoder!r}")
        # (for vectors self.encoder is None, a plain attribute: the seed model's state dict has no encoder)
        self.features_dim = int(feat)
        self.cnn_features = width if self.encoder_name in ("nature_cnn", "multi_input") else None
        if latent_layers is None:
            latent_layers = _default_latent_layers(self.encoder_name)
        check_int("latent_layers", latent_layers, minimum=0)
        self.latent_layers = int(latent_layers)

        # ---- memory (recurrent policies): features -> LSTM -> the latent MLP's input
        self.recurrent, self.shared_lstm = bool(recurrent), bool(shared_lstm)
        self.lstm_hidden = int(lstm_hidden)
        if self.recurrent:
            check_int("lstm_hidden", lstm_hidden, minimum=1)
            if not self.shared_lstm and shared_latent:
                raise ValueError("shared_lstm=False gives the critic its own LSTM, so it needs its own latent too: "
                                 "pass shared_latent=False")
            if policy_net is not None or value_net is not None:
                raise ValueError("recurrent=True puts an LSTM before the built-in latent MLP; policy_net/value_net "
                                 "replace that MLP and cannot follow it. Use encoder=nn.Module for your own features")
            self.memory = LSTMMemory(self.features_dim, self.lstm_hidden, 1 if self.shared_lstm else 2)
            latent_in = self.lstm_hidden
        else:
            self.memory = None
            latent_in = self.features_dim

        # ---- latent: features -> the heads' input
        if self.custom_latent:
            if kind != "Box" or self.encoder is not None:
                raise ValueError("policy_net/value_net replace the latent MLP for vector observations; for images, "
                                 "Dicts or your own features use encoder=nn.Module")
            if policy_net is None:
                raise ValueError("value_net was given without policy_net; pass policy_net too (it may be the same module)")
            value_net = policy_net if value_net is None else value_net
            self.shared_latent = value_net is policy_net
            pi_dim = _latent_dim(policy_net, self.input_dim, "policy_net")
            vf_dim = _latent_dim(value_net, self.input_dim, "value_net")
        else:
            policy_net = MLP(latent_in, self.hidden_dim, self.dropout, self.latent_layers)
            value_net = policy_net if self.shared_latent else MLP(latent_in, self.hidden_dim, self.dropout,
                                                                   self.latent_layers)
            pi_dim = vf_dim = self.hidden_dim if self.latent_layers else latent_in
        # A shared latent is registered once (as `latent`), so the state dict holds no duplicate tensors.
        if self.shared_latent:
            self.latent = policy_net
        else:
            self.policy_latent = policy_net
            self.value_latent = value_net

        self.action_head: ActionHead = make_action_head(pi_dim, action_space, distribution)
        if log_std_init and hasattr(self.action_head, "log_std"):
            nn.init.constant_(self.action_head.log_std, float(log_std_init))
        self.log_std_init = float(log_std_init)
        self.value_head = nn.Linear(vf_dim, 1)
        self.mask_size = mask_size(self.action_spec) if self.mask_config is not None and self.mask_config.applied else 0

        if self.normalize_obs:
            self.register_buffer("obs_mean", torch.zeros(self.norm_dim, dtype=torch.float64))
            self.register_buffer("obs_var", torch.ones(self.norm_dim, dtype=torch.float64))
            self.register_buffer("obs_count", torch.tensor(1e-4, dtype=torch.float64))
            self._refresh_obs_scale()
        self.precision = Precision()  # float32, default layout: see set_precision
        if reset_param:
            self.reset_parameters()

    @property
    def action_spec(self) -> dict:
        return dict(self.action_head.spec)

    @property
    def action_space(self):
        from .distributions import spec_to_space

        return spec_to_space(self.action_head.spec)

    def latents(self) -> list[nn.Module]:
        return [self.latent] if self.shared_latent else [self.policy_latent, self.value_latent]

    def reset_parameters(self) -> None:
        """OpenAI baselines initialisation (CleanRL's `layer_init`). Your own networks keep theirs."""
        if self.encoder is not None and self.encoder_name != "custom":
            self.encoder.reset_parameters()
        if self.memory is not None:
            self.memory.reset_parameters()
        if not self.custom_latent:
            for latent in self.latents():
                for layer in latent.linears():
                    orthogonal_(layer.weight, gain=math.sqrt(2))
                    nn.init.zeros_(layer.bias)
        head = self.action_head.output_layer()
        orthogonal_(head.weight, gain=0.01)
        nn.init.zeros_(head.bias)
        orthogonal_(self.value_head.weight, gain=1.0)
        nn.init.zeros_(self.value_head.bias)
        if hasattr(self.action_head, "log_std"):
            nn.init.constant_(self.action_head.log_std, self.log_std_init)

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments: `PPO2(**model.get_config())` rebuilds this model. A
        vector model with the built-in MLP writes exactly the seed model's keys."""
        config = {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "action_space": self.action_spec,
            "dropout": self.dropout,
            "distribution": distribution_name(self.action_head.dist_cls),
            "shared_latent": self.shared_latent,
            "normalize_obs": self.normalize_obs,
            "obs_clip": self.obs_clip,
            "log_std_init": self.log_std_init,
        }
        if self.obs_spec != {"type": "Box", "shape": [self.input_dim]}:  # (images, Dicts, integers, 2-D Boxes)
            del config["input_dim"]
            config["observation_space"] = self.obs_spec
        if self.obs_spec["type"] != "Box" or self.encoder_name != "mlp":
            config["encoder"] = self.encoder_name
            if self.cnn_features is not None:
                config["features_dim"] = self.cnn_features
        if self.latent_layers != _default_latent_layers(self.encoder_name):
            config["latent_layers"] = self.latent_layers
        if self.custom_latent:
            # the networks' code cannot live in JSON: loading needs the same policy_net/value_net again
            config["custom_latent"] = True
        if self.recurrent:
            config.update(recurrent=True, lstm_hidden=self.lstm_hidden, shared_lstm=self.shared_lstm)
        if self.mask_config is not None:
            config["action_mask"] = self.mask_config.to_json()
        return config

    @classmethod
    def from_config(cls, config: dict, policy_net: nn.Module | None = None, value_net: nn.Module | None = None,
                    encoder: nn.Module | None = None) -> "PPO2":
        """Rebuild from `get_config()` output (e.g. a config.json). Every value is type- and range-checked
        first (`validate_config`): JSON from a file is never coerced, and no size it names is allocated
        unchecked. A model trained with your own networks needs them again (policy_net/value_net/encoder)."""
        config = validate_config(config)
        if config.get("encoder") == "custom":
            if encoder is None:
                raise ValueError("this policy was trained with its own encoder: pass the same architecture as "
                                 "encoder=... to load it")
            config["encoder"] = encoder
        elif encoder is not None:
            raise ValueError(f"encoder given, but this policy uses the built-in {config.get('encoder', 'mlp')!r} encoder")
        if config.pop("custom_latent", False):
            if policy_net is None:
                raise ValueError("this policy was trained with custom latent networks: pass the same architecture "
                                 "as policy_net=... (and value_net=... if it had a separate one) to load it")
            config.pop("shared_latent", None)
            return cls(reset_param=False, policy_net=policy_net, value_net=value_net, **config)
        if policy_net is not None or value_net is not None:
            raise ValueError("policy_net/value_net given, but this policy uses the built-in MLP")
        return cls(reset_param=False, **config)

    @property
    def observation_space(self):
        from .observations import spec_to_space

        return spec_to_space(self.obs_spec)


    # ------------------------------------------------------------------------------------------
    # observation normalisation (statistics live in buffers, so they travel with the weights)
    # ------------------------------------------------------------------------------------------
    def _refresh_obs_scale(self) -> None:
        self._obs_mean32 = self.obs_mean.float()
        self._obs_inv_std32 = (1.0 / torch.sqrt(self.obs_var + 1e-8)).float()
        self._obs_scale_key = self._obs_stats_key()

    def _obs_stats_key(self) -> tuple:
        return (self.obs_mean.data_ptr(), self.obs_mean._version, self.obs_var.data_ptr(), self.obs_var._version)

    def obs_scale(self) -> list[torch.Tensor]:
        """[mean, 1 / sqrt(var + 1e-8)] in float32, recomputed if the buffers were replaced or written since."""
        if not torch.compiler.is_compiling() and self._obs_scale_key != self._obs_stats_key():
            self._refresh_obs_scale()  # (tracing for export: fake tensors have no storage to compare)
        return [self._obs_mean32, self._obs_inv_std32]

    def _apply(self, fn, recurse=True):  # keep the float32 copies on the model's device
        out = super()._apply(fn, recurse)
        if self.normalize_obs:
            self._refresh_obs_scale()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.normalize_obs:
            self._refresh_obs_scale()

    @torch.no_grad()
    def update_obs_stats(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, batch_count: float) -> None:
        """Merge a batch's moments into the running statistics (ppo2/moments.py)."""
        if not self.normalize_obs:
            return
        merged = merge_moments(self.obs_mean, self.obs_var, self.obs_count, batch_mean.to(self.obs_mean),
                               batch_var.to(self.obs_var), batch_count)
        for buffer, value in zip((self.obs_mean, self.obs_var, self.obs_count), merged):
            buffer.copy_(value)
        self._refresh_obs_scale()

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize_obs:
            return obs
        mean, inv_std = self.obs_scale()
        return network.standardize(obs, mean, inv_std, self.obs_clip)

    # ------------------------------------------------------------------------------------------
    # the network: preprocess -> encoder -> latent MLP -> heads
    # ------------------------------------------------------------------------------------------
    def preprocess(self, obs: Any) -> Any:
        """Validated observations -> the encoder's input: vectors normalised (normalize_obs), uint8 images
        to float32 (N, C, H, W) in [0, 1]; Dicts key by key (their vector keys normalised together)."""
        spec = self.obs_spec
        if spec["type"] == "Box":
            return self.normalize(obs)
        if spec["type"] == "Image":
            return scale_frames(_nchw(obs, spec), self.precision)
        out = {k: scale_frames(_nchw(obs[k], spec["spaces"][k]), self.precision) for k in image_keys(spec)}
        keys = vector_keys(spec)
        if keys and self.normalize_obs:
            sizes = [spec["spaces"][k]["shape"][0] for k in keys]
            normed = self.normalize(torch.cat([obs[k] for k in keys], dim=-1))
            out.update(zip(keys, normed.split(sizes, dim=-1)))
        else:
            out.update((k, obs[k]) for k in keys)
        return out

    def features(self, obs: Any) -> torch.Tensor:
        """What the latent MLP reads: the encoder's output (the normalised vector for the seed model). The built-in
        CNNs run as `self.precision` says (ppo2/speed.py: float32 unless `set_precision` chose otherwise)."""
        x = obs.value if isinstance(obs, Preprocessed) else self.preprocess(obs)
        if self.encoder is None:
            return x
        return run_encoder(self.encoder, x, self.precision) if self.encoder_name != "custom" else self.encoder(x)

    def set_precision(self, precision: str = "auto", device: Any = None) -> "PPO2":
        """How the built-in image encoder computes: "float32" (the default after construction and loading),
        "bfloat16" (autocast, float32 weights) or "auto" (bfloat16 where `device` has it natively); frames go in
        channels-last either way (ppo2/speed.py). A runtime choice: nothing of it is saved with the weights."""
        has_cnn = self.encoder is not None and self.encoder_name in ("nature_cnn", "multi_input")
        self.precision = resolve_precision(precision, device or self._device(), has_cnn)
        return self

    def _zero_features_input(self) -> Any:
        """A batch of two preprocessed observations (what an encoder receives), for probing its width."""
        def zeros(spec):
            if spec["type"] == "Image":
                return torch.zeros(2, *image_chw(spec))
            return torch.zeros(2, spec["shape"][0])
        if self.obs_spec["type"] == "Dict":
            return {k: zeros(s) for k, s in self.obs_spec["spaces"].items()}
        return zeros(self.obs_spec)

    def _device(self) -> torch.device:
        return self.value_head.weight.device

    def _latents(self, obs: Any, memory: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """(policy latent, value latent, LSTM state after) for a validated batch. A recurrent model reads `memory` =
        (state (h, c), starts): the batch is then T steps of n environments, time-major (T * n rows), with the state
        (L, n, H) before the first and starts (T, n) marking observations that begin an episode; without it, each row
        is the first step of an episode. The state is None for other models."""
        x = self.features(obs)
        state = None
        if self.memory is not None:
            if memory is None:
                memory = (self.memory.zero_state(x.shape[0], like=x), torch.ones(1, x.shape[0], device=x.device))
            state, starts = memory
            n = state[0].shape[1]
            T = x.shape[0] // n
            outs, state = self.memory(x.reshape(T, n, -1), state, starts.reshape(T, n))
            pi_x, vf_x = (o.reshape(T * n, -1) for o in (outs[0], outs[-1]))
        else:
            pi_x = vf_x = x
        if self.shared_latent:
            pi_latent = self.latent(pi_x)
            return pi_latent, pi_latent, state
        return self.policy_latent(pi_x), self.value_latent(vf_x), state

    def _value_out(self, vf_latent: torch.Tensor) -> torch.Tensor:
        return network.dense(vf_latent, self.value_head.weight.T, self.value_head.bias).squeeze(-1)

    def _masked(self, out: Any, mask: Any) -> Any:
        """The policy output with illegal actions masked (ppo2/masks.py); unchanged without a mask."""
        return out if mask is None or not self.mask_size else self.action_head.mask(out, mask)

    def _policy_out(self, obs: Any, mask: Any = None) -> torch.Tensor:
        """The policy's output layer (logits or Gaussian mean, masked) for a validated batch; only the policy tower
        runs (recurrent models: each row as an episode's first step)."""
        if self.memory is not None:
            return self._masked(self.action_head.output(self._latents(obs)[0]), mask)
        x = self.features(obs)
        return self._masked(self.action_head.output(self.latent(x) if self.shared_latent else self.policy_latent(x)),
                            mask)

    def _value_of(self, obs: Any, memory: tuple | None = None) -> torch.Tensor:
        """V(s) of shape (N,) for a validated batch (the bootstrap value after a rollout); only the value tower runs."""
        if self.memory is not None:
            return self._value_out(self._latents(obs, memory)[1])
        x = self.features(obs)
        return self._value_out(self.latent(x) if self.shared_latent else self.value_latent(x))

    def _sample(self, obs: Any, mask: Any = None) -> torch.Tensor:
        """A sampled action for a validated batch (the collector's policy step in torch)."""
        return self.action_head.sample(self._policy_out(obs, mask))

    def _act(self, obs: Any, mask: Any = None, action: Any = None, deterministic: bool = False):
        """(V(s), action, -log pi(action|s), entropy) for a validated batch from one pass of the network: `action`
        sampled (or the most likely one) unless given. `forward` on checked inputs, and the collector's step where
        the network is an image encoder (a batched evaluation of the rollout would run it again on every frame)."""
        pi_latent, vf_latent, _ = self._latents(obs)
        out = self._masked(self.action_head.output(pi_latent), mask)
        if action is None:
            action = self.action_head.mode(out) if deterministic else self.action_head.sample(out)
        log_prob, entropy = self.action_head.log_prob_entropy(out, action)
        return self._value_out(vf_latent), action, -log_prob, entropy

    def _mode(self, obs: Any, mask: Any = None) -> torch.Tensor:
        """The most likely action for a validated batch (evaluation, export)."""
        return self.action_head.mode(self._policy_out(obs, mask))

    def _step(self, obs: Any, memory: tuple, mask: Any = None, deterministic: bool = False):
        """(action, LSTM state after) for one step of a recurrent model: `memory` = (state, starts (n,))."""
        pi_latent, _, state = self._latents(obs, memory)
        out = self._masked(self.action_head.output(pi_latent), mask)
        return (self.action_head.mode(out) if deterministic else self.action_head.sample(out)), state

    def _check_obs(self, obs: Any) -> tuple[Any, bool]:
        try:
            return check_obs(obs, self.obs_spec, self._device())
        except ObservationShapeError as exc:
            raise self._shape_error(exc) from None

    def _shape_error(self, exc: ObservationShapeError) -> ObservationShapeError:
        """An observation of the wrong shape, for a policy trained with frame options (ppo2/obs_wrappers.py): the
        error says so, and where its observations come from (a try costs nothing until it raises)."""
        frames = frame_options(self.env_kwargs, self.env_id)
        if not frames:
            return exc
        return ObservationShapeError(f"{exc}. This policy was trained on {self.env_id} with "
                                     f"{env_kwargs_text(frames)[2:]}: model.make_env() makes that env with them")

    def split_mask(self, obs: Any, action_masks: Any = None) -> tuple[Any, Any]:
        """Raw observations (as the env gives them) -> (what the network reads, the mask to apply or None): the
        `action_mask` key of a Dict observation is taken out (ppo2/masks.py); `action_masks`, where given, is used
        instead of it. A model that masks refuses to act without a mask."""
        cfg = self.mask_config
        if cfg is None:
            if action_masks is not None:
                raise ValueError("action_masks given, but this policy was built without action masking "
                                 "(PPO2(action_mask=True) builds one that takes them)")
            return obs, None
        obs, from_obs = cfg.split(obs)
        if not cfg.applied:
            return obs, None
        mask = action_masks if action_masks is not None else from_obs
        if mask is None:
            raise ValueError("this policy masks illegal actions: pass action_masks=... (the env's action_masks()), "
                             f"or observations with their {cfg.key or 'action_mask'!r} key")
        return obs, mask

    def _checked_mask(self, mask: Any, rows: int | None) -> torch.Tensor | None:
        if mask is None:
            return None
        mask = check_mask(mask, self.action_spec, rows, "action_masks")
        mask = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(mask))
        mask = mask.to(self._device())
        return mask if rows is not None else mask.unsqueeze(0)

    # ------------------------------------------------------------------------------------------
    # the public ways to run it
    # ------------------------------------------------------------------------------------------
    def value_and_evaluate(self, obs: Any, action: torch.Tensor, mask: Any = None, memory: tuple | None = None):
        """(V(s), neg_log_prob of `action`, entropy) for a validated batch: what the update differentiates. With a
        mask, log-probabilities and entropies are over the legal actions; `memory` as `_latents` reads it."""
        pi_latent, vf_latent, _ = self._latents(obs, memory)
        log_prob, entropy = self.action_head.log_prob_entropy(self._masked(self.action_head.output(pi_latent), mask),
                                                              action)
        return self._value_out(vf_latent), -log_prob, entropy

    def forward(self, obs: Any, action: Any = None, deterministic: bool = False, action_masks: Any = None):
        """Sample an action (or evaluate the given one).

        Args:
            obs: (N, *obs_shape) or one unbatched observation: array, tensor, or a dict of them for Dicts.
            action: optional batch of actions to evaluate instead of sampling.
            deterministic: play the most likely action instead of sampling (ignored when `action` is given).
            action_masks: (N, mask size) 0/1 legal actions, for a policy that masks (ppo2/masks.py); a Dict
                observation's `action_mask` key serves too.

        Returns:
            value_f (N,), action, neg_log_prob (N,), entropy (N,); without the N dimension for a single obs. A
            recurrent policy runs each observation as the first step of an episode here (its state: `predict`).
        """
        obs, mask = self.split_mask(obs, action_masks)
        obs, single = self._check_obs(obs)
        mask = self._checked_mask(mask, None if single else _batch_size(obs))
        if action is not None:
            action = self.action_head.check_action(action, None if single else _batch_size(obs))
            if single:
                action = action.unsqueeze(0)
        value, action, neg_log_prob, entropy = self._act(obs, mask, action, deterministic)
        if single:
            return value[0], action[0], neg_log_prob[0], entropy[0]
        return value, action, neg_log_prob, entropy

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True,
                action_masks: Any = None):
        """stable-baselines-style `(action, state)` with numpy in and out; actions are what the env accepts (Box
        actions clipped to the bounds).

        A recurrent policy takes and returns its LSTM state (h, c), each (L, N, H) (ppo2/memory.py), exactly as
        RecurrentPPO: pass `state=None` on the first call, then the state it returned, with `episode_start` (N,)
        True where an episode begins (the state is zeroed there). Other policies return None. `action_masks`
        (N, mask size) gives the legal actions to a policy that masks (MaskablePPO's keyword)."""
        if self.training and self.dropout > 0:  # dropout must be off to act; toggling costs, so only if needed
            self.eval()
        obs, mask = self.split_mask(obs, action_masks)
        if self.memory is not None:
            return self._predict_recurrent(obs, state, episode_start, deterministic, mask)
        if deterministic and mask is None and isinstance(obs, np.ndarray):
            try:
                vec = encode_obs(self.obs_spec, obs)  # (integer observations one-hot; any other the same array)
                policy = numpy_policy(self) if vec.ndim <= 1 or len(vec) <= NUMPY_MAX_BATCH else None
                if policy is not None:  # (small CPU batches: ppo2/speed.py)
                    check_obs_shape(tuple(vec.shape), self.obs_spec)
            except ObservationShapeError as exc:
                raise self._shape_error(exc) from None
            if policy is not None:
                check_numpy_obs(vec)
                return policy.act(vec), None
        obs, single = self._check_obs(obs)
        mask = self._checked_mask(mask, None if single else _batch_size(obs))
        with torch.no_grad():
            action = self._mode(obs, mask) if deterministic else self._sample(obs, mask)
        action = action.numpy() if action.device.type == "cpu" else action.cpu().numpy()
        return self.action_head.to_env(action[0] if single else action), None

    def make_env(self, **kwargs):
        """One env of the kind this policy was trained on, observations as its trainer saw them
        (`ppo2.envs.make_env`): an Atari policy's preprocessed frames, else `gym.make(env_id, **env_kwargs)`, with
        the constructor arguments it was trained with (`model.env_kwargs`) and `kwargs` over them.
        `model.make_env(render_mode="human")` to watch it play."""
        if not self.env_id:
            raise ValueError("this policy does not record the env it was trained on (it was built, not trained or "
                             "loaded with its config.json): use ppo2.envs.make_env(env_id)")
        from .envs import make_env, refuse_file_named_module

        refuse_file_named_module(self.env_id, "this policy",
                                 f"by making it yourself: ppo2.envs.make_env({self.env_id!r})")
        return make_env(self.env_id, **{**self.env_kwargs, **kwargs})

    def _predict_recurrent(self, obs: Any, state: Any, episode_start: Any, deterministic: bool, mask: Any):
        obs, single = self._check_obs(obs)
        n = _batch_size(obs)
        mask = self._checked_mask(mask, None if single else n)
        towers, hidden = self.memory.towers, self.memory.hidden
        if state is None:
            state = self.memory.zero_state(n, like=self.value_head.weight)
        else:
            state = tuple(torch.as_tensor(s, dtype=torch.float32, device=self._device())
                          for s in check_state(state, towers, n, hidden))
        if episode_start is None:
            starts = torch.zeros(1, n, device=self._device())
        else:
            starts = np.asarray(episode_start, dtype=np.float32).reshape(-1)
            if starts.shape != (n,):
                raise ValueError(f"episode_start has {starts.size} entries, expected {n} (one per observation)")
            starts = torch.from_numpy(starts).to(self._device())[None]
        with torch.no_grad():
            action, state = self._step(obs, (state, starts), mask, deterministic)
        action = action.cpu().numpy()
        state = tuple(s.cpu().numpy() for s in state)
        return self.action_head.to_env(action[0] if single else action), state

    @torch.no_grad()
    def value(self, obs: Any) -> torch.Tensor:
        """V(s): (N,) for a batch, a scalar for one observation."""
        if self.mask_config is not None:
            obs = self.mask_config.split(obs)[0]
        obs, single = self._check_obs(obs)
        value = self._value_of(obs)
        return value[0] if single else value

    # ------------------------------------------------------------------------------------------
    # the surrogate loss (the seed contract)
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
             clip_range, ent_coef, vf_coef):
        """OpenAI baselines ppo2 loss. Returns `(loss, pg_loss, value_loss, entropy_mean, approx_kl)`.

        For the clip fraction too, call `ppo2.losses.ppo_loss` with the same arguments. Raises ValueError for
        tensors of different shapes or holding NaN/inf, and for a non-finite or negative clip_range."""
        out = PPO2._checked_loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
                                 clip_range, ent_coef, vf_coef)
        return out.loss, out.pg_loss, out.value_loss, out.entropy_mean, out.approx_kl

    @staticmethod
    def _checked_loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
                      clip_range, ent_coef, vf_coef):
        """`ppo2.losses.ppo_loss` (all six terms) after `loss`'s checks: what `loss` and the hub's `train_fn` run."""
        check_loss_inputs(returns=returns, value_f=value_f, neg_log_probs=neg_log_probs, entropy=entropy,
                          advantages=advantages, old_values=old_values, old_neg_log_prbs=old_neg_log_prbs)
        check_loss_coefficients(clip_range, ent_coef, vf_coef)
        return ppo_loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
                        clip_range, ent_coef, vf_coef)

    # ------------------------------------------------------------------------------------------
    # persistence (safetensors + JSON) and the Hugging Face Hub; implemented in ppo2.hf_hub
    # ------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory, **kwargs):
        """Write `model.safetensors` + `config.json` (with the weights' sha256) to a directory."""
        return _save_pretrained(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id_or_path, **kwargs) -> "PPO2":
        """Load from a local directory or a Hugging Face Hub repo id (hash-verified before deserialising).
        Keywords: revision, cache_dir, token, local_files_only, map_location, and your own networks
        (policy_net/value_net/encoder) for a policy trained with them."""
        return _from_pretrained(cls, repo_id_or_path, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload weights, config, model card (and optionally results and a replay) to the Hub."""
        return _push_to_hub(self, repo_id, **kwargs)

    def extra_repr(self) -> str:
        obs = f"input_dim={self.input_dim}" if self.input_dim is not None else f"observations={describe(self.obs_spec)}"
        return f"{obs}, action_space={self.action_spec['type']}, normalize_obs={self.normalize_obs}"


def _batch_size(obs: Any) -> int:
    return next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0]


def _default_latent_layers(encoder_name: str) -> int:
    """The latent MLP's depth unless given: none after a CNN or a user's encoder (their features feed the
    heads, as baselines' cnn policy), two hidden layers otherwise (the seed model)."""
    return 0 if encoder_name in ("nature_cnn", "custom") else 2


def _nchw(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """(N, H, W[, C]) or (N, C, H, W) images as an (N, C, H, W) view (no copy); `ppo2.speed.scale_frames` then
    scales uint8 pixels to [0, 1] (floats are already scaled: `ppo2.validation.check_image_values`)."""
    if len(spec["shape"]) == 2:
        return x.unsqueeze(1)
    return x.permute(0, 3, 1, 2) if spec["channels_last"] else x


def _probe_features(encoder: nn.Module, example: Any) -> int:
    try:
        with torch.no_grad():
            out = encoder(example)
    except Exception as exc:
        shapes = {k: tuple(v.shape) for k, v in example.items()} if isinstance(example, dict) else tuple(example.shape)
        raise ValueError(f"encoder failed on a preprocessed batch of shape {shapes}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"encoder must map a batch of N observations to (N, features), got {shape} for N=2")
    return int(out.shape[1])


def _latent_dim(net: nn.Module, input_dim: int, name: str) -> int:
    if not isinstance(net, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, input_dim))
    except Exception as exc:
        raise ValueError(f"{name} failed on an input of shape (2, {input_dim}): {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must map (N, {input_dim}) to (N, latent_dim), got {shape} for N=2")
    return int(out.shape[1])


