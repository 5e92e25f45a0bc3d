"""Environment names, without importing gymnasium (`ppo2.config` resolves presets from them at no import cost).

ALE v5: frameskip 4 and sticky actions (repeat_action_probability 0.25), unlike the NoFrameskip-v4 ids of
baselines/RL-Zoo/CleanRL (no sticky actions), which ppo2 also takes; ale-py's own vector env adds the standard
preprocessing (84x84 gray, 4 stacked frames, up to 30 no-op starts) to both.
"""
from __future__ import annotations

__all__ = ["ENV_ALIASES", "canonical_env_id", "is_atari"]

# Short names for the Atari games with presets and zoo entries: `train.py --env Pong`, `pretrained='Pong'`.
ENV_ALIASES = {"Pong": "ALE/Pong-v5", "Breakout": "ALE/Breakout-v5"}


def canonical_env_id(env_id: str) -> str:
    return ENV_ALIASES.get(env_id, env_id) if isinstance(env_id, str) else env_id


def is_atari(env_id) -> bool:
    """Whether `env_id` (or a short name) is an Arcade Learning Environment game: "ALE/<Game>-v5", or the
    "<Game>NoFrameskip-v4" ids of baselines, RL-Zoo and CleanRL (no sticky actions; 4 frames skipped by the
    preprocessing)."""
    if not isinstance(env_id, str):
        return False
    env_id = canonical_env_id(env_id)
    return env_id.startswith("ALE/") or (env_id.endswith("NoFrameskip-v4") and "/" not in env_id and ":" not in env_id)
