"""Environment names, without importing gymnasium (`ppo2.config` resolves presets from them at no import cost).

ALE v5: frameskip 4 and sticky actions (repeat_action_probability 0.25), unlike the NoFrameskip-v4 ids of
baselines/RL-Zoo/CleanRL (no sticky actions), which ppo2 also takes; ale-py's own vector env adds the standard
preprocessing (84x84 gray, 4 stacked frames, up to 30 no-op starts) to both.
"""
from __future__ import annotations

import functools

__all__ = ["ENV_ALIASES", "ale_games", "canonical_env_id", "close_names", "constructor_parameters", "is_atari",
           "legacy_ale_game"]

# Short names for the Atari games with presets and zoo entries: `train.py --env Pong`, `pretrained='Pong'`. Every
# other game's name works the same way (canonical_env_id: `--env SpaceInvaders` is ALE/SpaceInvaders-v5).
ENV_ALIASES = {"Pong": "ALE/Pong-v5", "Breakout": "ALE/Breakout-v5"}
_NO_SINGLE_PLAYER = {"Combat", "Joust", "MazeCraze", "Warlords"}  # (ROMs ale-py registers no ALE/...-v5 id for)


@functools.lru_cache(maxsize=1)
def ale_games() -> frozenset[str]:
    """The games ale-py registers an ALE/<Game>-v5 id for, by that name ("SpaceInvaders"), read from the ROMs it
    ships without importing it (as ale_py.registration names them); empty without ale-py."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("ale_py")
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    roms = Path(next(iter(spec.submodule_search_locations))) / "roms"
    return frozenset(rom.stem.title().replace("_", "") for rom in roms.glob("*.bin")) - _NO_SINGLE_PLAYER


def canonical_env_id(env_id: str) -> str:
    """The registered id a name stands for: an Atari game's bare name ("Pong", "SpaceInvaders") is its ALE v5 id;
    any other name is itself."""
    if not isinstance(env_id, str):
        return env_id
    if env_id in ENV_ALIASES:
        return ENV_ALIASES[env_id]
    if env_id.isalnum() and env_id[:1].isupper() and env_id in ale_games():
        return f"ALE/{env_id}-v5"
    return env_id


def close_names(typed: str, names, n: int = 3) -> list[str]:
    """Up to `n` of `names` closest to `typed` (difflib), compared without case or underscores: gymnasium's ids
    are case-sensitive and ale-py names its ROMs in snake case, so "breakout" and "space_invaders" should still
    find "Breakout" and "SpaceInvaders"."""
    import difflib

    def key(name: str) -> str:
        return str(name).lower().replace("_", "")

    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(key(name), name)
    return [by_key[k] for k in difflib.get_close_matches(key(typed), list(by_key), n=n, cutoff=0.5)]


def is_atari(env_id) -> bool:
    """Whether `env_id` (or a short name) is an Arcade Learning Environment game: "ALE/<Game>-v5", or the
    "<Game>NoFrameskip-v4" ids of baselines, RL-Zoo and CleanRL (no sticky actions; 4 frames skipped by the
    preprocessing)."""
    if not isinstance(env_id, str):
        return False
    env_id = canonical_env_id(env_id)
    return env_id.startswith("ALE/") or (env_id.endswith("NoFrameskip-v4") and "/" not in env_id and ":" not in env_id)


def legacy_ale_game(env_id) -> str | None:
    """The game an ale-py legacy id names ("Pong-v4", "PongDeterministic-v4", "PongNoFrameskip-v0", ...: frames
    skipped at random or actions sticky in other ways, and none of the standard preprocessing), or None. ppo2 trains
    the two protocols published scores use (is_atari) and says so for these, rather than "unknown id"."""
    import re

    match = re.fullmatch(r"([A-Z][A-Za-z0-9]*?)(Deterministic|NoFrameskip)?-v([04])", env_id) if isinstance(env_id, str) else None
    if match is None or (match[2], match[3]) == ("NoFrameskip", "4") or match[1] not in ale_games():
        return None
    return match[1]


def constructor_parameters(env_id: str) -> frozenset[str]:
    """The arguments a registered env's constructor names in its signature (empty where it takes only `**kwargs`, or
    where the id is not registered). Imports gymnasium and the env's own module (as making it would), never a module
    that a "module:EnvId" id names: such an id is looked up only if its module has registered it already."""
    import inspect

    import gymnasium as gym

    try:
        entry_point = gym.spec(canonical_env_id(env_id).rpartition(":")[2]).entry_point
        creator = entry_point if callable(entry_point) else gym.envs.registration.load_env_creator(entry_point)
        params = inspect.signature(creator).parameters.values()
    except (gym.error.Error, ImportError, AttributeError, TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
