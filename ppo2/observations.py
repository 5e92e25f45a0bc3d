"""Observation spaces as ppo2 understands them, and the small helpers that handle their values.

An observation is one of three kinds, described by a JSON-able *spec* (saved in config.json):

    {"type": "Box", "shape": [d]}                              a flat vector of numbers (classic control, MuJoCo)
    {"type": "Box", "shape": [d], "onehot": {"nvec": [n, ...], "start": [s, ...], "raw_shape": [] | [k]}}
                                                              Discrete / MultiDiscrete integers (FrozenLake, Taxi),
                                                              or a Tuple of Discretes (Blackjack: "tuple": true):
                                                              one-hot vectors of d = sum(nvec) inside ppo2
    {"type": "Box", "shape": [d], "raw_shape": [a, b]}         a 2-D Box of numbers (stacked vectors, a grid):
                                                              flattened to d = a * b inside ppo2, as SB3 does
    {"type": "Image", "shape": [H, W, C] | [C, H, W] | [H, W], "channels_last": bool}
                                                              uint8 pixels in [0, 255] (Atari, rendered frames)
    {"type": "Dict", "spaces": {key: <Box or Image spec>}}     several of those (robotics, games with a map + stats)

What counts as an image follows the convention gymnasium's pixel wrappers produce (and SB3 checks): a Box of
dtype uint8 with bounds [0, 255] and 2 or 3 dimensions. In 3-D the channel axis is the smaller end: (84, 84, 4)
is height-width-channels, (4, 84, 84) (a frame stack) channels-first. Values are an array (Box, Image) or a
dict of arrays (Dict); the helpers below treat both alike, so the collector and the update need no branches.
Images stay uint8 everywhere outside the model (rollout buffer, checkpoints): 4x less memory than float32.

Integer observations (Discrete, MultiDiscrete, a Tuple of Discretes) are one-hot vectors to everything past `encode_obs`, which runs
where observations come in: the collector (from the envs), `check_obs` (what a user passes to the model), the
evaluation's numpy step and the exported graph. The rollout buffer, normalisation, the MLP's numpy and fused paths
and the update see an ordinary vector; a policy still takes the integers its env gives (SB3 one-hots them the same
way). MultiBinary observations are vectors of 0s and 1s as they are.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

__all__ = ["ObservationShapeError", "obs_spec_from_space", "spec_to_space", "validate_obs_spec", "is_image_space",
           "image_chw", "encode_obs", "needs_encoding", "vector_dim", "vector_keys", "image_keys", "tree_map",
           "tree_zeros", "vector_part", "Preprocessed", "check_finite", "describe"]

MAX_VECTOR_DIM = 1 << 20
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 256
MAX_DICT_KEYS = 64
MAX_ONEHOT = 1 << 16  # one-hot entries (sum of the integer observations' ranges)


def is_image_space(space: Any) -> bool:
    from gymnasium import spaces

    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)
            and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255)))


def _image_spec(shape: tuple) -> dict:
    if len(shape) == 2:
        return {"type": "Image", "shape": list(shape), "channels_last": True}
    return {"type": "Image", "shape": list(shape), "channels_last": bool(shape[-1] <= shape[0])}


def obs_spec_from_space(space: Any, where: str = "the environment") -> dict:
    """The spec of a gymnasium observation space, or a ValueError naming the space and what is supported."""
    from gymnasium import spaces

    supported = ("a 1-D Box (vector), a uint8 image Box (H, W[, C]) with bounds [0, 255], Discrete, 1-D MultiDiscrete, "
                 "1-D MultiBinary, a Tuple of Discretes, or a Dict of those")
    if isinstance(space, spaces.Tuple) and space.spaces and all(isinstance(s, spaces.Discrete) for s in space.spaces):
        return validate_obs_spec(_onehot_spec([int(s.n) for s in space.spaces], [int(s.start) for s in space.spaces],
                                              [len(space.spaces)], as_tuple=True))
    if isinstance(space, spaces.Discrete):
        return validate_obs_spec(_onehot_spec([int(space.n)], [int(space.start)], []))
    if isinstance(space, spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        return validate_obs_spec(_onehot_spec([int(n) for n in space.nvec], [int(x) for x in space.start],
                                              [len(space.nvec)]))
    if isinstance(space, spaces.MultiBinary) and isinstance(space.n, (int, np.integer)):
        return validate_obs_spec({"type": "Box", "shape": [int(space.n)]})  # (0s and 1s: a vector as it is)
    if is_image_space(space):
        return validate_obs_spec(_image_spec(tuple(int(s) for s in space.shape)))
    if isinstance(space, spaces.Box):
        if len(space.shape) == 1:
            return validate_obs_spec({"type": "Box", "shape": [int(space.shape[0])]})
        if len(space.shape) == 2:  # (not uint8 [0, 255] pixels: stacked vectors, a grid of numbers)
            return validate_obs_spec({"type": "Box", "shape": [int(np.prod(space.shape))],
                                      "raw_shape": [int(n) for n in space.shape]})
        raise ValueError(f"unsupported observation space {space} in {where}: expected {supported}. A {len(space.shape)}-D "
                         "Box that is not uint8 [0, 255] pixels is neither; flatten it "
                         "(gymnasium.wrappers.FlattenObservation) or convert it to uint8 images")
    if isinstance(space, spaces.Dict):
        subs = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str):
                raise ValueError(f"unsupported observation space {space} in {where}: Dict keys must be strings, got {key!r}")
            if isinstance(sub, spaces.Dict):
                raise ValueError(f"unsupported observation space in {where}: nested Dict under key {key!r}; flatten "
                                 "it to one level (gymnasium.wrappers.FlattenObservation on the inner Dict)")
            subs[key] = obs_spec_from_space(sub, f"{where}[{key!r}]")
        return validate_obs_spec({"type": "Dict", "spaces": subs})
    raise ValueError(f"unsupported observation space {space} in {where}: expected {supported}")


def _onehot_spec(nvec: list[int], start: list[int], raw_shape: list[int], as_tuple: bool = False) -> dict:
    hot = {"nvec": nvec, "start": start, "raw_shape": raw_shape, **({"tuple": True} if as_tuple else {})}
    return {"type": "Box", "shape": [sum(nvec)], "onehot": hot}


def spec_to_space(spec: dict):
    """The gymnasium space a spec describes (vector bounds are not part of the spec: -inf..inf)."""
    from gymnasium import spaces

    if "raw_shape" in spec:
        return spaces.Box(-np.inf, np.inf, tuple(spec["raw_shape"]), np.float32)
    if "onehot" in spec:
        hot = spec["onehot"]
        if hot.get("tuple"):
            return spaces.Tuple([spaces.Discrete(n, start=s) for n, s in zip(hot["nvec"], hot["start"])])
        if not hot["raw_shape"]:
            return spaces.Discrete(hot["nvec"][0], start=hot["start"][0])
        return spaces.MultiDiscrete(hot["nvec"], start=hot["start"])
    if spec["type"] == "Box":
        return spaces.Box(-np.inf, np.inf, tuple(spec["shape"]), np.float32)
    if spec["type"] == "Image":
        return spaces.Box(0, 255, tuple(spec["shape"]), np.uint8)
    return spaces.Dict({k: spec_to_space(s) for k, s in spec["spaces"].items()})


def _need(cond: bool, key: str, expected: str, got: Any) -> None:
    """Config validation (here and in ppo2/model.py): the key, what it must be, and what came."""
    if not cond:
        raise ValueError(f"model config {key!r} must be {expected}, got {got!r} ({type(got).__name__})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_obs_spec(spec: Any, key: str = "observation_space", nested: bool = False) -> dict:
    """Strictly check a spec (it may come from a config.json): types, keys and size limits."""
    _need(isinstance(spec, dict), key, 'an object such as {"type": "Box", "shape": [4]}', spec)
    kind = spec.get("type")
    kinds = ("Box", "Image") if nested else ("Box", "Image", "Dict")
    _need(kind in kinds, f"{key}.type", "one of " + ", ".join(kinds), kind)
    if kind == "Box":
        _need(set(spec) in ({"type", "shape"}, {"type", "shape", "onehot"}, {"type", "shape", "raw_shape"}), key,
              "the keys ['shape', 'type'] (and 'onehot' for integer observations or 'raw_shape' for 2-D ones) for Box",
              sorted(spec))
        shape = spec["shape"]
        _need(isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0]) and 1 <= shape[0] <= MAX_VECTOR_DIM,
              f"{key}.shape", f"[d] with d an int in [1, {MAX_VECTOR_DIM}]", shape)
        if "raw_shape" in spec:
            raw = spec["raw_shape"]
            _need(isinstance(raw, list) and len(raw) == 2 and all(_is_int(n) and n >= 1 for n in raw)
                  and raw[0] * raw[1] == shape[0], f"{key}.raw_shape", f"[a, b] of ints with a * b = {shape[0]}", raw)
            return {"type": "Box", "shape": list(shape), "raw_shape": list(raw)}
        if "onehot" not in spec:
            return {"type": "Box", "shape": list(shape)}
        hot = spec["onehot"]
        _need(isinstance(hot, dict) and set(hot) - {"tuple"} == {"nvec", "start", "raw_shape"}, f"{key}.onehot",
              "an object with the keys ['nvec', 'raw_shape', 'start'] (and 'tuple')", hot)
        nvec, start, raw = hot["nvec"], hot["start"], hot["raw_shape"]
        _need(isinstance(nvec, list) and nvec and all(_is_int(n) and n >= 1 for n in nvec) and sum(nvec) == shape[0]
              and sum(nvec) <= MAX_ONEHOT, f"{key}.onehot.nvec",
              f"a list of ints >= 1 summing to shape[0] = {shape[0]} (at most {MAX_ONEHOT})", nvec)
        _need(isinstance(start, list) and len(start) == len(nvec) and all(_is_int(x) and abs(x) < 2**62 for x in start),
              f"{key}.onehot.start", f"a list of {len(nvec)} ints", start)
        _need(raw == [] and len(nvec) == 1 or raw == [len(nvec)], f"{key}.onehot.raw_shape",
              f"[] (one Discrete) or [{len(nvec)}] (MultiDiscrete)", raw)
        _need(hot.get("tuple", True) is True and ("tuple" not in hot or raw == [len(nvec)]), f"{key}.onehot.tuple",
              f"true, with raw_shape [{len(nvec)}] (a Tuple of Discretes)", hot.get("tuple"))
        return _onehot_spec(list(nvec), list(start), list(raw), as_tuple="tuple" in hot)
    if kind == "Image":
        _need(set(spec) == {"type", "shape", "channels_last"}, key,
              "exactly the keys ['channels_last', 'shape', 'type'] for Image", sorted(spec))
        shape = spec["shape"]
        _need(isinstance(shape, list) and len(shape) in (2, 3) and all(_is_int(s) and s >= 1 for s in shape),
              f"{key}.shape", "[H, W], [H, W, C] or [C, H, W] of positive ints", shape)
        _need(isinstance(spec["channels_last"], bool), f"{key}.channels_last", "true or false", spec["channels_last"])
        c, h, w = image_chw(spec)
        _need(h <= MAX_IMAGE_SIDE and w <= MAX_IMAGE_SIDE and c <= MAX_CHANNELS, f"{key}.shape",
              f"at most {MAX_IMAGE_SIDE} pixels a side and {MAX_CHANNELS} channels", shape)
        return {"type": "Image", "shape": list(shape), "channels_last": spec["channels_last"]}
    _need(set(spec) == {"type", "spaces"}, key, "exactly the keys ['spaces', 'type'] for Dict", sorted(spec))
    subs = spec["spaces"]
    _need(isinstance(subs, dict) and 1 <= len(subs) <= MAX_DICT_KEYS and all(isinstance(k, str) for k in subs),
          f"{key}.spaces", f"an object of 1 to {MAX_DICT_KEYS} named sub-spaces", subs)
    return {"type": "Dict", "spaces": {k: validate_obs_spec(s, f"{key}.spaces.{k}", nested=True) for k, s in subs.items()}}


def image_chw(spec: dict) -> tuple[int, int, int]:
    """(channels, height, width) of an Image spec."""
    shape = spec["shape"]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if spec["channels_last"]:
        return shape[2], shape[0], shape[1]
    return shape[0], shape[1], shape[2]


def vector_keys(spec: dict) -> list[str]:
    """Dict keys holding vectors, in the fixed (sorted) order the model concatenates them."""
    return sorted(k for k, s in spec["spaces"].items() if s["type"] == "Box") if spec["type"] == "Dict" else []


def image_keys(spec: dict) -> list[str]:
    return sorted(k for k, s in spec["spaces"].items() if s["type"] == "Image") if spec["type"] == "Dict" else []


def has_images(spec: dict) -> bool:
    """Whether observations of this spec hold any image (the whole observation, or a Dict entry)."""
    return spec["type"] == "Image" or bool(image_keys(spec))


def vector_dim(spec: dict) -> int:
    """Size of the vector part: what observation normalisation sees (0 for images only)."""
    if spec["type"] == "Box":
        return spec["shape"][0]
    if spec["type"] == "Dict":
        return sum(spec["spaces"][k]["shape"][0] for k in vector_keys(spec))
    return 0


def dtype_of(spec: dict):
    return np.uint8 if spec["type"] == "Image" else np.float32


# ---- values: an array, or a dict of arrays ---------------------------------------------------------------

class Preprocessed:
    """Observations already through `PPO2.preprocess` (what the encoder takes), so the model does not preprocess them
    again: the update's minibatches are slices of one preprocessed rollout (`ppo2.speed.preprocess_once`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def tree_map(fn: Callable, obs: Any) -> Any:
    if isinstance(obs, Preprocessed):
        return Preprocessed(tree_map(fn, obs.value))
    if isinstance(obs, dict):
        return {k: fn(v) for k, v in obs.items()}
    return fn(obs)


def tree_zeros(spec: dict, lead: tuple) -> Any:
    """Zero buffers of shape lead + each observation's shape, in its storage dtype (uint8 for images)."""
    if spec["type"] == "Dict":
        return {k: tree_zeros(s, lead) for k, s in spec["spaces"].items()}
    return np.zeros((*lead, *spec["shape"]), dtype_of(spec))


def vector_part(spec: dict, obs: Any) -> np.ndarray | None:
    """The vector part of (a batch of) observations as one (..., vector_dim) float64 array, or None."""
    if spec["type"] == "Box":
        return np.asarray(obs, np.float64)
    if spec["type"] == "Dict" and vector_keys(spec):
        return np.concatenate([np.asarray(obs[k], np.float64) for k in vector_keys(spec)], axis=-1)
    return None


def check_finite(obs: Any) -> np.ndarray | None:
    """None when every value is finite, else a bool per row (leading axis) marking rows with NaN/inf."""
    arrays = list(obs.values()) if isinstance(obs, dict) else [obs]
    bad = None
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind != "f" or np.isfinite(a).all():
            continue
        rows = ~np.isfinite(a).reshape(len(a), -1).all(1)
        bad = rows if bad is None else bad | rows
    return bad


def describe(spec: dict) -> str:
    if "raw_shape" in spec:
        return f"observations of shape {tuple(spec['raw_shape'])} (flattened to {spec['shape'][0]})"
    if "onehot" in spec:
        hot = spec["onehot"]
        if hot.get("tuple"):
            return "Tuple(" + ", ".join(f"Discrete({n}, start={s})" for n, s in zip(hot["nvec"], hot["start"])) + ") observations"
        if not hot["raw_shape"]:
            return f"Discrete({hot['nvec'][0]}, start={hot['start'][0]}) observations"
        return f"MultiDiscrete({hot['nvec']}, start={hot['start']}) observations"
    if spec["type"] == "Box":
        return f"observations of shape ({spec['shape'][0]},)"
    if spec["type"] == "Image":
        layout = "HW" if len(spec["shape"]) == 2 else ("HWC" if spec["channels_last"] else "CHW")
        return f"uint8 image observations of shape {tuple(spec['shape'])} ({layout})"
    return "Dict observations {" + ", ".join(f"{k!r}: {describe(s)}" for k, s in spec["spaces"].items()) + "}"


class ObservationShapeError(ValueError):
    """An observation of another shape than the policy's (`check_shape`); `PPO2` adds what its env was made with."""


def check_shape(shape: tuple, want: tuple, name: str = "observation", what: str = "") -> bool:
    """Whether `shape` is one observation of shape `want` (True) or a batch (N, *want) (False); anything else is
    refused naming both. The one shape rule of every entry point (`validation.check_array`, `encode_obs`)."""
    shape, want = tuple(shape), tuple(want)
    if shape == want:
        return True
    if len(shape) == len(want) + 1 and shape[1:] == want:
        return False
    batch = "(N, " + ", ".join(map(str, want)) + ")" if want else "(N,)"
    raise ObservationShapeError(f"{name} has shape {shape}, expected {batch} or {want if want else 'a single integer'}"
                                f"{what}")


# ---- integer observations: one-hot vectors past the entry points --------------------------------------------------

def needs_encoding(spec: dict) -> bool:
    """Whether observations of this spec are changed by `encode_obs`: integers one-hot, 2-D Boxes flattened."""
    if spec["type"] == "Dict":
        return any(needs_encoding(s) for s in spec["spaces"].values())
    return "onehot" in spec or "raw_shape" in spec


def encode_obs(spec: dict, obs: Any, check: bool = True, name: str = "observation") -> Any:
    """Observations as the env gives them -> what ppo2 computes with: integer (Discrete, MultiDiscrete) entries as
    float32 one-hot vectors, batched as they came ((N, *raw_shape) -> (N, d); one observation -> (d,); a Tuple's
    entries, integers or (N,) arrays, side by side as MultiDiscrete's); anything else
    (and a Dict's keys not in `spec`, e.g. an action mask) passes through unchanged. numpy arrays (and Python ints)
    give numpy, torch tensors give torch (the exported graph: `check=False`, no value checks in it). `check` refuses
    what is not an integer in the space's range, naming it."""
    if spec["type"] == "Dict":
        if not needs_encoding(spec) or not isinstance(obs, Mapping):
            return obs
        return {k: encode_obs(spec["spaces"][k], v, check, f"{name}[{k!r}]") if k in spec["spaces"] else v
                for k, v in obs.items()}
    if "raw_shape" in spec:
        return _flattened(spec, obs, check, name)
    if "onehot" not in spec:
        return obs
    hot = spec["onehot"]
    if hot.get("tuple") and isinstance(obs, (tuple, list)):  # (a Tuple's entries side by side, as MultiDiscrete's)
        if len(obs) != len(hot["nvec"]):
            raise ValueError(f"{name} is a tuple of {len(obs)} entries, expected {len(hot['nvec'])} for {describe(spec)}")
        if any(hasattr(o, "detach") for o in obs):
            import torch

            obs = torch.stack([torch.as_tensor(o) for o in obs], dim=-1)
        else:
            obs = np.stack([np.asarray(o) for o in obs], axis=-1)
    numpy = not hasattr(obs, "detach")  # (a torch tensor)
    x = np.asarray(obs) if numpy else obs
    raw = tuple(hot["raw_shape"])
    if check:
        check_shape(x.shape, raw, name, f" for {describe(spec)}")
        _check_integers(x, hot, name, spec)
    cols = x.reshape(*x.shape[:len(x.shape) - len(raw)], len(hot["nvec"]))  # (..., k)
    if numpy:
        values = [np.arange(first, first + n) for n, first in zip(hot["nvec"], hot["start"])]
    else:
        import torch

        values = [torch.arange(first, first + n, device=cols.device) for n, first in zip(hot["nvec"], hot["start"])]
    parts = [cols[..., i, None] == v for i, v in enumerate(values)]  # (entry i's one-hot: its value among its range)
    return np.concatenate(parts, axis=-1).astype(np.float32) if numpy else torch.cat(parts, dim=-1).to(torch.float32)


def _check_integers(x: Any, hot: dict, name: str, spec: dict) -> None:
    numpy = isinstance(x, np.ndarray)
    integral = (x.dtype.kind in "iub") if numpy else (not x.is_floating_point() and not x.is_complex())
    if not integral:
        raise TypeError(f"{name}s must be integers for {describe(spec)}, got dtype {x.dtype}")
    if (x.size if numpy else x.numel()) == 0:
        return
    cols = x.reshape(-1, len(hot["nvec"]))
    for i, (n, first) in enumerate(zip(hot["nvec"], hot["start"])):
        col = cols[:, i]
        lo, hi = int(col.min()), int(col.max())
        if lo < first or hi >= first + n:
            bad = lo if lo < first else hi
            where = f" (entry {i})" if hot["raw_shape"] else ""
            raise ValueError(f"{name} {bad}{where} is outside {describe(spec)}: expected an integer in "
                             f"[{first}, {first + n - 1}]")


def _flattened(spec: dict, obs: Any, check: bool, name: str) -> Any:
    """A 2-D Box's observations, (a, b) or (N, a, b), as vectors (a * b,) or (N, a * b), row by row (numpy's order,
    as gymnasium's FlattenObservation); their values are checked with every vector's (`check_obs`)."""
    raw = tuple(spec["raw_shape"])
    x = obs if hasattr(obs, "detach") else np.asarray(obs)
    if check:
        check_shape(x.shape, raw, name)
    return x.flatten(-2) if hasattr(x, "detach") else x.reshape(*x.shape[:-2], spec["shape"][0])
