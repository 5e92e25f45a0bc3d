"""Running mean and variance, merged batch by batch: the one estimator behind observation normalisation
(`PPO2.update_obs_stats`) and reward scaling (`ppo2.collector.RewardScaler`). And the moments of rows that several
ranks each hold a share of (`pooled_sums`): what the trainer's observation statistics and the advantage
normalisation of a minibatch (`ppo2.losses.normalize_advantages`) take from every rank at once.

Chan, Golub & LeVeque's parallel update: with delta = batch_mean - mean and total = count + batch_count,

    mean' = mean + delta * batch_count / total
    var'  = (var * count + batch_var * batch_count + delta^2 * count * batch_count / total) / total

Exact for any split of the data into batches. Works on Python floats, numpy arrays and torch tensors.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["merge_moments", "pooled_sums"]


def merge_moments(mean: Any, var: Any, count: Any, batch_mean: Any, batch_var: Any, batch_count: Any) -> tuple:
    """(mean', var', count') of the data behind (mean, var, count) and a batch's (mean, var, count)."""
    delta = batch_mean - mean
    total = count + batch_count
    new_mean = mean + delta * batch_count / total
    m2 = var * count + batch_var * batch_count + delta * delta * count * batch_count / total
    return new_mean, m2 / total, total


def pooled_sums(x: torch.Tensor, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(count, sum, sum of squares) of the rows of `x` (along dim 0), in float64: of this process's rows, or with
    `all_reduce_sum` of every rank's rows together (one all-reduce of 1 + 2 * row-size numbers; every rank must call
    it, whatever its share holds, even none). Each sum is taken in `x`'s dtype, then widened."""
    packed = torch.cat([torch.tensor([float(x.shape[0])], dtype=torch.float64),
                        x.sum(0).reshape(-1).double(), (x * x).sum(0).reshape(-1).double()])
    if all_reduce_sum is not None:
        packed = all_reduce_sum(packed)
    d = (packed.numel() - 1) // 2
    return float(packed[0]), packed[1:1 + d], packed[1 + d:]
