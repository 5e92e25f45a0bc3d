"""Generalized Advantage Estimation (Schulman et al. 2016) as one pure reverse pass."""
from __future__ import annotations

import torch

__all__ = ["compute_gae"]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminations: torch.Tensor,
    truncations: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns for a rollout of shape (T, N) (time first; N parallel envs).

    Args:
        rewards: r_t received after acting at step t.
        values: V(s_t), the critic's value of the observation acted on at step t.
        next_values: V(s_{t+1}), the value of the observation that *followed* step t. When step t ended an
            episode this must be the value of that episode's true final observation, not of the next
            episode's first one.
        terminations: 1 where step t reached a terminal state: the future is worth 0, no bootstrap.
        truncations: 1 where step t was cut by a time limit: the future is bootstrapped from
            next_values[t], but the advantage recursion still stops (the next row is another episode).

    Returns:
        (advantages, returns) with returns = advantages + values, both (T, N).

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - term_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - (term_t or trunc_t)) * A_{t+1}
    """
    if not (rewards.shape == values.shape == next_values.shape == terminations.shape == truncations.shape):
        raise ValueError(
            f"compute_gae inputs must share one (T, N) shape, got rewards {tuple(rewards.shape)}, values "
            f"{tuple(values.shape)}, next_values {tuple(next_values.shape)}, terminations "
            f"{tuple(terminations.shape)}, truncations {tuple(truncations.shape)}")
    not_terminal = 1.0 - terminations.to(values.dtype)
    not_done = 1.0 - torch.maximum(terminations, truncations).to(values.dtype)
    deltas = rewards + gamma * next_values * not_terminal - values
    discounts = gamma * gae_lambda * not_done
    advantages = torch.empty_like(values)
    # the reverse pass, on numpy views of CPU tensors (the same lines): T dependent steps on rows of N numbers, where a
    # numpy operation's fixed cost is below a torch dispatch (benchmarks/profile_cartpole.py times the update phase)
    views = deltas.device.type == "cpu" and not (deltas.requires_grad or discounts.requires_grad)
    d, k, a = (t.numpy() if views else t for t in (deltas, discounts, advantages))
    last = 0.0
    for t in range(values.shape[0] - 1, -1, -1):
        last = d[t] + k[t] * last
        a[t] = last
    return advantages, advantages + values
