"""Partially observed classic-control tasks: the velocities removed, so that acting well needs memory.

The POMDP benchmark RL-Zoo publishes for RecurrentPPO (its `MaskVelocityWrapper` zeroes the velocities; here
they are dropped from the observation, which a policy cannot tell apart):

==================================  ===============================  =========================================
id (registered by ppo2)             observation kept                 dropped
==================================  ===============================  =========================================
CartPoleNoVel-v1                    cart position, pole angle        cart velocity, pole angular velocity
PendulumNoVel-v1                    cos(theta), sin(theta)           angular velocity
MountainCarContinuousNoVel-v0       position                         velocity
==================================  ===============================  =========================================

Each keeps its base env's time limit and reward threshold. CartPoleNoVel-v1 also has a vector entry point:
gymnasium's numpy CartPole vector env with the same columns taken.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["NO_VELOCITY", "NoVelocity", "register"]

# id -> (base id, indices of the observation kept)
NO_VELOCITY = {
    "CartPoleNoVel-v1": ("CartPole-v1", (0, 2)),
    "PendulumNoVel-v1": ("Pendulum-v1", (0, 1)),
    "MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", (0,)),
}


def _kept_space(space: gym.spaces.Box, keep: tuple[int, ...]) -> gym.spaces.Box:
    idx = list(keep)
    return gym.spaces.Box(space.low[idx], space.high[idx], dtype=space.dtype)


class NoVelocity(gym.ObservationWrapper):
    """Keep only the observation entries `keep` (the positions and angles)."""

    def __init__(self, env: gym.Env, keep: tuple[int, ...]):
        super().__init__(env)
        self.keep = np.asarray(keep)
        self.observation_space = _kept_space(env.observation_space, keep)

    def observation(self, observation):
        return observation[self.keep]


def _make(base: str, keep: tuple[int, ...], **kwargs) -> gym.Env:
    return NoVelocity(gym.make(base, **kwargs), keep)


def _make_vec(base: str, keep: tuple[int, ...], num_envs: int = 1, **kwargs):
    from gymnasium.wrappers.vector import TransformObservation

    envs = gym.make_vec(base, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    idx = np.asarray(keep)
    single = _kept_space(envs.single_observation_space, keep)
    batched = gym.vector.utils.batch_space(single, num_envs)
    return TransformObservation(envs, lambda obs: obs[:, idx], batched, single)


def register() -> None:
    """Register the ids above with gymnasium (once)."""
    for env_id, (base, keep) in NO_VELOCITY.items():
        if env_id in gym.registry:
            continue
        spec = gym.spec(base)
        vector = None
        if spec.vector_entry_point is not None:
            vector = lambda num_envs=1, _b=base, _k=keep, **kw: _make_vec(_b, _k, num_envs, **kw)  # noqa: E731
        gym.register(env_id, entry_point=lambda _b=base, _k=keep, **kw: _make(_b, _k, **kw),
                     vector_entry_point=vector, max_episode_steps=None, reward_threshold=spec.reward_threshold)
