"""The surrogate objectives, as pure functions of tensors.

`ppo_loss` is exactly the OpenAI baselines ppo2 objective (Schulman et al. 2017, eq. 7 and 9):

    ratio      = exp(old_nlp - nlp)                       # pi(a|s) / pi_old(a|s)
    pg_loss    = mean(max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)))
    v_clipped  = old_v + clip(v - old_v, -c, c)
    value_loss = 0.5 * mean(max((v - R)^2, (v_clipped - R)^2))
    approx_kl  = 0.5 * mean((nlp - old_nlp)^2)
    loss       = pg_loss - ent_coef * mean(entropy) + vf_coef * value_loss

`a2c_loss` is the advantage actor-critic objective (Mnih et al. 2016) that `--algo a2c` optimises.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .moments import pooled_sums

__all__ = ["PPOLoss", "ppo_loss", "a2c_loss", "normalize_advantages"]


class PPOLoss(NamedTuple):
    loss: torch.Tensor          # what to differentiate
    pg_loss: torch.Tensor       # clipped surrogate policy loss
    value_loss: torch.Tensor    # (clipped) value loss, 0.5 * squared error
    entropy_mean: torch.Tensor  # mean policy entropy
    approx_kl: torch.Tensor     # 0.5 * mean((log pi - log pi_old)^2), detached
    clip_fraction: torch.Tensor  # fraction of samples whose ratio left [1 - c, 1 + c], detached


def ppo_loss(
    returns: torch.Tensor,
    value_f: torch.Tensor,
    neg_log_probs: torch.Tensor,
    entropy: torch.Tensor,
    advantages: torch.Tensor,
    old_values: torch.Tensor,
    old_neg_log_probs: torch.Tensor,
    clip_range: float,
    ent_coef: float,
    vf_coef: float,
    clip_value: bool = True,
) -> PPOLoss:
    """PPO2's clipped surrogate loss. All tensor arguments are 1-D of the same length."""
    _check_same_shape(returns=returns, value_f=value_f, neg_log_probs=neg_log_probs, entropy=entropy,
                      advantages=advantages, old_values=old_values, old_neg_log_probs=old_neg_log_probs)
    ratio = torch.exp(old_neg_log_probs - neg_log_probs)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    pg_loss = torch.max(pg_losses, pg_losses_clipped).mean()

    value_losses = (value_f - returns) ** 2
    if clip_value:
        v_clipped = old_values + torch.clamp(value_f - old_values, -clip_range, clip_range)
        value_losses = torch.max(value_losses, (v_clipped - returns) ** 2)
    value_loss = 0.5 * value_losses.mean()

    entropy_mean = entropy.mean()
    loss = pg_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = 0.5 * ((neg_log_probs - old_neg_log_probs) ** 2).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return PPOLoss(loss, pg_loss, value_loss, entropy_mean, approx_kl, clip_fraction)


def a2c_loss(
    returns: torch.Tensor,
    value_f: torch.Tensor,
    neg_log_probs: torch.Tensor,
    entropy: torch.Tensor,
    advantages: torch.Tensor,
    old_neg_log_probs: torch.Tensor,
    ent_coef: float,
    vf_coef: float,
) -> PPOLoss:
    """Vanilla policy gradient with a learned baseline: -A * log pi(a|s), no ratio, no clipping."""
    _check_same_shape(returns=returns, value_f=value_f, neg_log_probs=neg_log_probs, entropy=entropy,
                      advantages=advantages)
    pg_loss = (advantages * neg_log_probs).mean()
    value_loss = 0.5 * ((value_f - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = pg_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = 0.5 * ((neg_log_probs - old_neg_log_probs) ** 2).mean()
    return PPOLoss(loss, pg_loss, value_loss, entropy_mean, approx_kl, torch.zeros(()))


def normalize_advantages(advantages: torch.Tensor,
                         all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Zero mean, unit (unbiased) standard deviation over the batch, as baselines normalises each minibatch. Under
    several ranks (`all_reduce_sum`: each rank holds its share of the minibatch) the mean and deviation are those of
    every rank's share together, the minibatch one process would normalise, from summed moments (float64); every
    rank calls it for every minibatch, whatever its share holds. Fewer than 2 advantages in all: left as they are."""
    if all_reduce_sum is None:
        if advantages.numel() < 2:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    n, total, squares = pooled_sums(advantages.detach().double(), all_reduce_sum)
    if n < 2:
        return advantages
    mean = float(total) / n
    std = math.sqrt(max(float(squares) - n * mean * mean, 0.0) / (n - 1.0))
    return (advantages - mean) / (std + 1e-8)


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 1 or any(s != first for s in shapes.values()):
        raise ValueError(
            "loss inputs must all be 1-D tensors of the same length (one entry per sample); got shapes "
            + ", ".join(f"{k}={v}" for k, v in shapes.items()))
