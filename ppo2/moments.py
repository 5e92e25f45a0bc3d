"""Running mean and variance, merged batch by batch: the one estimator behind observation normalisation
(`PPO2.update_obs_stats`) and reward scaling (`ppo2.collector.RewardScaler`).

Chan, Golub & LeVeque's parallel update: with delta = batch_mean - mean and total = count + batch_count,

    mean' = mean + delta * batch_count / total
    var'  = (var * count + batch_var * batch_count + delta^2 * count * batch_count / total) / total

Exact for any split of the data into batches. Works on Python floats, numpy arrays and torch tensors.
"""
from __future__ import annotations

from typing import Any

__all__ = ["merge_moments"]


def merge_moments(mean: Any, var: Any, count: Any, batch_mean: Any, batch_var: Any, batch_count: Any) -> tuple:
    """(mean', var', count') of the data behind (mean, var, count) and a batch's (mean, var, count)."""
    delta = batch_mean - mean
    total = count + batch_count
    new_mean = mean + delta * batch_count / total
    m2 = var * count + batch_var * batch_count + delta * delta * count * batch_count / total
    return new_mean, m2 / total, total
