"""Keyword arguments for an environment's constructor (`gym.make(env_id, **env_kwargs)`): `continuous=True` for
LunarLander, `map_name="8x8"` for FrozenLake, `repeat_action_probability=0.0` for an ALE game.

They are part of what a policy was trained on, so the trainer records them with the policy (config.json, beside
`env_id`) and everything that makes the env again (evaluation, replays, `model.make_env()`) passes them. A policy's
config.json is untrusted input: the kwargs are plain JSON data, checked here before any env sees them, and nothing in
them is imported or executed. ppo2's own options for an env's frames (`frame_skip`, `resize`, `grayscale`,
`frame_stack`: OBS_OPTIONS, ppo2/obs_wrappers.py) travel with them for any env but an ALE game, whose options are
ALE_ENV_KWARGS, unless the env's constructor takes an argument of that name itself (`frame_options`). No gymnasium
import here unless such a name is given (`ppo2.config` validates with it at no import cost).
"""
from __future__ import annotations

import ast
import json
import math
from typing import Any

from .env_ids import canonical_env_id, constructor_parameters, is_atari

__all__ = ["parse_env_kwargs", "validate_env_kwargs", "policy_env_kwargs", "env_kwargs_text", "ALE_ENV_KWARGS",
           "OBS_OPTIONS", "RESERVED_ENV_KWARGS", "frame_options"]

# Chosen by ppo2 where it makes an env, never recorded with a policy: how it renders (evaluation's --gif and --watch,
# `model.make_env(render_mode="human")`) and gymnasium.make_vec's own parameters.
RESERVED_ENV_KWARGS = {
    "render_mode": "ppo2 chooses it where it renders (python -m ppo2.evaluate --gif / --watch, "
                   "model.make_env(render_mode='human'))",
    "id": "the environment id is --env", "num_envs": "use --num-envs", "vectorization_mode": "use --vectorization",
    "vector_kwargs": "ppo2 makes the vector env itself", "wrappers": "ppo2 makes the vector env itself",
}
def _is_int(v: Any) -> bool:  # (observations._is_int's twin: importing that module would bring numpy into ppo2.config)
    return isinstance(v, int) and not isinstance(v, bool)


# The options of an ALE game that both of ppo2's Atari pipelines take (ale-py's vector env, which trains and evaluates,
# and ppo2.envs.make_env, which plays one game in colour): the rest of the preprocessing is fixed, so a policy sees
# the same 84x84 gray 4-frame stacks wherever it plays.
ALE_ENV_KWARGS = {  # name -> (check, what it must be)
    "repeat_action_probability": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
                                  "a probability in [0, 1]"),
    "full_action_space": (lambda v: isinstance(v, bool), "true or false"),
    "max_num_frames_per_episode": (lambda v: _is_int(v) and v >= 0, "an int >= 0 (0: no limit)"),
    "frameskip": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "noop_max": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "use_fire_reset": (lambda v: isinstance(v, bool), "true or false"),
    "fire_after_life_loss": (lambda v: isinstance(v, bool), "true or false"),
}
# ppo2's own options for any other env's frames (ppo2/obs_wrappers.py: taken out before the constructor sees them).
# A side of at most 4096 is observations.MAX_IMAGE_SIDE, written out here as _is_int is (a test holds them equal).
OBS_OPTIONS = {  # name -> (check, what it must be)
    "resize": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(n) and 1 <= n <= 4096 for n in v),
               "[H, W], two ints in [1, 4096]"),
    "grayscale": (lambda v: isinstance(v, bool), "true or false"),
    "frame_stack": (lambda v: _is_int(v) and 1 <= v <= 64, "an int in [1, 64]"),
    "frame_skip": (lambda v: _is_int(v) and 1 <= v <= 64, "an int in [1, 64]"),
}
_ALE_OWN_FLAGS = {"reward_clipping": "--clip-reward", "episodic_life": "--life-loss terminal"}
MAX_KEYS, MAX_DEPTH, MAX_TEXT = 32, 4, 10_000


def parse_env_kwargs(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`KEY=VALUE` items from a command line as a dict. VALUE is read as JSON (`8`, `0.25`, `true`, `"x"`, `[1, 2]`),
    else as a Python literal (`True`, `None`, `(1, 2)`; ast.literal_eval, which evaluates nothing), else kept as the
    text itself (`map_name=8x8`). RL-Zoo's `KEY:VALUE` form is taken where an item has no '='."""
    out: dict[str, Any] = {}
    for item in items:
        sep = "=" if "=" in item else ":"
        key, found, text = item.partition(sep)
        key = key.strip()
        if not found or not key.isidentifier():
            raise ValueError(f"--env-kwargs: expected KEY=VALUE items such as continuous=True or map_name=8x8, "
                             f"got {item!r}")
        if key in out:
            raise ValueError(f"--env-kwargs: {key!r} is given twice ({out[key]!r} and {text!r})")
        out[key] = _value(text.strip())
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(value, (tuple, list, dict)):
        try:
            return json.loads(json.dumps(value))  # (tuples as lists)
        except (TypeError, ValueError):
            pass  # (a set or bytes inside: validate_env_kwargs names it)
    return value


def validate_env_kwargs(kwargs: Any, env_id: str | None = None, where: str = "env_kwargs") -> dict[str, Any]:
    """`kwargs` (a copy) if it is a JSON object of constructor arguments ppo2 may pass to `env_id`'s env, else a
    ValueError naming `where`, what was expected and what came. Structure: string keys that are Python identifiers,
    values JSON data (null, booleans, finite numbers, strings, lists and objects of those, nested at most
    MAX_DEPTH deep, MAX_TEXT characters in all). Keys ppo2 sets itself are refused with what to use instead, an
    ALE game takes only ALE_ENV_KWARGS, and the options for the frames (OBS_OPTIONS) are checked for any other env."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where} must be a JSON object of the env's constructor arguments, e.g. "
                         f'{{"continuous": true}}, got {type(kwargs).__name__}: {kwargs!r:.200}')
    if len(kwargs) > MAX_KEYS:
        raise ValueError(f"{where} holds {len(kwargs)} arguments; at most {MAX_KEYS} are taken")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{where}: keys must be Python identifiers (an env constructor's argument names), "
                             f"got {key!r:.200}")
        if key in RESERVED_ENV_KWARGS:
            raise ValueError(f"{where}: {key!r} is not an env argument ppo2 records: {RESERVED_ENV_KWARGS[key]}")
        _check_value(value, f"{where}[{key!r}]", 1)
    try:
        size = len(json.dumps(kwargs))
    except ValueError as exc:  # (a circular structure)
        raise ValueError(f"{where}: not JSON data ({exc})") from None
    if size > MAX_TEXT:
        raise ValueError(f"{where}: {size} characters of JSON; at most {MAX_TEXT} are taken")
    if env_id is not None and is_atari(env_id):
        for key in kwargs:
            if key in _ALE_OWN_FLAGS:
                raise ValueError(f"{where}: {key!r} is a training option for {env_id}: use {_ALE_OWN_FLAGS[key]}")
            if key not in ALE_ENV_KWARGS:
                raise ValueError(f"{where}: {env_id} takes {sorted(ALE_ENV_KWARGS)} (its frames are always 84x84 "
                                 f"gray, 4 stacked, as the policy saw them in training), got {key!r}")
    if env_id is not None and is_atari(env_id):
        table, checked = ALE_ENV_KWARGS, [k for k in kwargs if k in ALE_ENV_KWARGS]
    else:
        table, checked = OBS_OPTIONS, list(frame_options(kwargs, env_id))
    for key in checked:
        check, expected = table[key]
        if not check(kwargs[key]):  # (ALE: the two pipelines differ in what else they would take, or when they fail)
            raise ValueError(f"{where}[{key!r}] must be {expected}{f' for {env_id}' if env_id else ''}, "
                             f"got {kwargs[key]!r}")
    return json.loads(json.dumps(kwargs))


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_DEPTH} deep")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: object keys must be strings, got {k!r:.200}")
            _check_value(item, f"{where}[{k!r}]", depth + 1)
        return
    raise ValueError(f"{where} must be JSON data (null, true/false, a number, a string, a list or an object), "
                     f"got {type(value).__name__}")


def frame_options(kwargs: dict[str, Any] | None, env_id: str | None) -> dict[str, Any]:
    """Those of an env's arguments that are ppo2's own options for its frames (OBS_OPTIONS): named as one, and not an
    argument `env_id`'s constructor takes itself (MuJoCo's `frame_skip`: the env's own meaning wins, as in RL-Zoo's
    env_kwargs); none for an ALE game, whose frames are fixed."""
    if env_id is not None and is_atari(env_id):
        return {}
    named = {k: v for k, v in (kwargs or {}).items() if k in OBS_OPTIONS}
    if named and env_id is not None:  # (gymnasium imported only where such a name is given)
        own = constructor_parameters(env_id)
        named = {k: v for k, v in named.items() if k not in own}
    return named


def env_kwargs_text(kwargs: dict[str, Any]) -> str:
    """`, key=value, ...` as Python would write the call's arguments ('' for none): for messages and model cards."""
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def policy_env_kwargs(model, env_id: str | None, given: dict | None = None) -> dict[str, Any]:
    """The constructor arguments `env_id` is made with to play `model`: `given` where given, else the policy's own
    (`model.env_kwargs`) where `env_id` is the env it was trained on, else none (another env's arguments would mean
    nothing there)."""
    if given is not None:
        return validate_env_kwargs(given, env_id)
    own = getattr(model, "env_id", None)
    if own is None or env_id is None or canonical_env_id(env_id) != canonical_env_id(own):
        return {}
    return validate_env_kwargs(getattr(model, "env_kwargs", None) or {}, env_id)
