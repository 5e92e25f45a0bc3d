"""The shipped policies in `weights/`, described as data (`weights/zoo.json`) and checked on load.

Each entry names its directory, the sha256 of every file, the command that trained it, and its
evaluation. `load_pretrained` verifies both files against those hashes before anything is parsed.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .env_ids import canonical_env_id, close_names
from .hf_hub import CONFIG_NAME, WEIGHTS_NAME, build_model, names_a_local_path, split_config
from .io import read_json
from .model import PPO2
from .outputs import format_duration

__all__ = ["WEIGHTS_DIR", "DEFAULT_ENV", "load_zoo", "load_pretrained", "zoo_entry", "is_zoo_id", "zoo_table",
           "ZOO_TABLE_BEGIN", "ZOO_TABLE_END"]

WEIGHTS_DIR = Path(os.environ.get("PPO2_WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))
DEFAULT_ENV = "CartPole-v1"
ZOO_INDEX = "zoo.json"


def load_zoo(weights_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    index = Path(weights_dir or WEIGHTS_DIR) / ZOO_INDEX
    if not index.is_file():
        raise FileNotFoundError(
            f"no pretrained weights index at {index}. Pretrained policies ship in the repository's weights/ "
            "folder: load through torch.hub.load('<org>/ppo2', 'ppo2', pretrained=True) or a git clone, "
            "not a bare pip install")
    return read_json(index)["policies"]


def is_zoo_id(name: Any, weights_dir: str | os.PathLike | None = None) -> bool:
    """Whether `name` is True (the default policy) or an env id the zoo ships."""
    if name is True:
        return True
    if not isinstance(name, str):
        return False
    try:
        return _zoo_id(name, load_zoo(weights_dir)) is not None
    except FileNotFoundError:
        return False


def _zoo_id(name: str, zoo: dict) -> str | None:
    """The zoo's id for `name`: itself, or the Atari game a short name stands for (`'Pong'`: `'ALE/Pong-v5'`, else
    `'PongNoFrameskip-v4'`)."""
    for candidate in (name, canonical_env_id(name), f"{name}NoFrameskip-v4"):
        if candidate in zoo:
            return candidate
    return None


def zoo_entry(name: str | bool, weights_dir: str | os.PathLike | None = None) -> dict:
    zoo = load_zoo(weights_dir)
    env_id = DEFAULT_ENV if name is True else name
    found = _zoo_id(env_id, zoo) if isinstance(env_id, str) else None
    if found is None:
        close = close_names(str(env_id), zoo)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"no pretrained policy for {env_id!r}; available: {sorted(zoo)}.{hint}")
    return zoo[found]


def load_pretrained(name: str | bool = True, weights_dir: str | os.PathLike | None = None,
                    map_location: Any = "cpu", **overrides):
    """Load a shipped policy. `overrides` are constructor keywords the caller also passed: each must agree
    with the entry's architecture, otherwise this raises instead of silently ignoring it."""
    if is_zoo_id(name, weights_dir):  # a zoo id always means the shipped, sha256-pinned policy
        if isinstance(name, str) and Path(name).is_dir():
            warnings.warn(f"{name!r} is both a zoo id and a local directory: loading the shipped zoo policy. "
                          f"Pass './{name}' to load the directory instead", stacklevel=3)
        entry = zoo_entry(name, weights_dir)
        directory = Path(weights_dir or WEIGHTS_DIR) / entry["dir"]
    elif isinstance(name, (str, os.PathLike)) and Path(name).expanduser().is_dir():
        directory, entry = Path(name).expanduser(), None
    elif isinstance(name, (str, os.PathLike)) and names_a_local_path(name):
        raise FileNotFoundError(f"no directory {Path(name).expanduser()}: pretrained= takes a zoo env id "
                                f"({', '.join(sorted(load_zoo(weights_dir)))}) or a directory holding "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    else:
        entry = zoo_entry(name, weights_dir)  # raises, naming the available ids and the closest ones
        directory = Path(weights_dir or WEIGHTS_DIR) / entry["dir"]
    sha = (entry or {}).get("sha256", {})
    # your own networks (a policy trained with them needs the same architecture again) go to the loader
    networks = {k: overrides.pop(k) for k in ("policy_net", "value_net", "encoder") if overrides.get(k) is not None}
    if overrides:
        _, config = split_config(read_json(directory / CONFIG_NAME, expected_sha256=sha.get(CONFIG_NAME)))
        _check_overrides(config, overrides, entry["env_id"] if entry else str(directory))
    model = build_model(PPO2, directory / CONFIG_NAME, directory / WEIGHTS_NAME, weights_sha256=sha.get(WEIGHTS_NAME),
                        config_sha256=sha.get(CONFIG_NAME), map_location=map_location, **networks)
    return model


def _check_overrides(config: dict, overrides: dict, where: str) -> None:
    conflicts = []
    for key, value in overrides.items():
        if key == "action_space":
            from .distributions import space_to_spec

            same = space_to_spec(value) == config["action_space"]
        elif key in config:
            same = value == config[key] or (isinstance(value, (int, float)) and float(value) == float(config[key]))
        else:
            raise ValueError(f"{key!r} cannot be combined with pretrained weights ({where}); "
                             f"the architecture is fixed by the entry: {sorted(config)}")
        if not same:
            conflicts.append(f"{key}={value!r} (pretrained has {config[key]!r})")
    if conflicts:
        raise ValueError(f"arguments conflict with the pretrained policy {where}: " + ", ".join(conflicts)
                         + ". Drop them, or pass pretrained=False to build a fresh model")


ZOO_TABLE_BEGIN = "<!-- zoo table: generated from weights/zoo.json by scripts/add_to_zoo.py; do not edit -->"
ZOO_TABLE_END = "<!-- end of zoo table -->"


def zoo_table(weights_dir: str | os.PathLike | None = None) -> str:
    """The README's table of shipped policies, in Markdown, from the index alone (the README shows this text)."""
    rows = ["| env | return (100 episodes) | fresh episodes (1,000 unless noted) | published PPO | steps | train time | replay |",
            "|---|---|---|---|---|---|---|"]
    for env_id, e in load_zoo(weights_dir).items():
        ev, fresh = e["eval"], e.get("eval_fresh") or {}
        fresh_text = "-"
        if fresh:
            n = fresh.get("n_episodes", 1000)
            fresh_text = f"{fresh['mean_reward']:,.1f}" + ("" if n == 1000 else f" ({n:,} episodes)")
        took = format_duration(e.get("run_wall_time_s"))
        played = "" if ev.get("deterministic", True) else " (sampled actions)"
        rows.append(f"| {env_id} | {ev['mean_reward']:,.1f} +/- {ev['std_reward']:,.1f}{played} | {fresh_text} | "
                    f"{e.get('rl_zoo_ppo') or '-'} | {e.get('training_steps', 0):,} | {took} | "
                    f"[gif](weights/{e['dir']}/replay.gif) |")
    return "\n".join(rows) + "\n"
