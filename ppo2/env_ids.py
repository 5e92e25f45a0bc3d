"""Environment names, without importing gymnasium (`ppo2.config` resolves presets from them at no import cost).

ALE v5: frameskip 4 and sticky actions (repeat_action_probability 0.25), unlike the NoFrameskip-v4 ids of
baselines/RL-Zoo/CleanRL; ale-py's own vector env adds the standard preprocessing (84x84 gray, 4 stacked frames, up to
30 no-op starts).
"""
from __future__ import annotations

__all__ = ["ENV_ALIASES", "canonical_env_id", "is_atari"]

# Short names for the Atari games with presets and zoo entries: `train.py --env Pong`, `pretrained='Pong'`.
ENV_ALIASES = {"Pong": "ALE/Pong-v5", "Breakout": "ALE/Breakout-v5"}


def canonical_env_id(env_id: str) -> str:
    return ENV_ALIASES.get(env_id, env_id) if isinstance(env_id, str) else env_id


def is_atari(env_id) -> bool:
    """Whether `env_id` (or the short name) is an Arcade Learning Environment game, "ALE/<Game>-v5"."""
    return isinstance(env_id, str) and canonical_env_id(env_id).startswith("ALE/")
