"""Observation spaces as ppo2 understands them, and the small helpers that handle their values.

An observation is one of three kinds, described by a JSON-able *spec* (saved in config.json):

    {"type": "Box", "shape": [d]}                              a flat vector of numbers (classic control, MuJoCo)
    {"type": "Image", "shape": [H, W, C] | [C, H, W] | [H, W], "channels_last": bool}
                                                              uint8 pixels in [0, 255] (Atari, rendered frames)
    {"type": "Dict", "spaces": {key: <Box or Image spec>}}     several of those (robotics, games with a map + stats)

What counts as an image follows the convention gymnasium's pixel wrappers produce (and SB3 checks): a Box of
dtype uint8 with bounds [0, 255] and 2 or 3 dimensions. In 3-D the channel axis is the smaller end: (84, 84, 4)
is height-width-channels, (4, 84, 84) (a frame stack) channels-first. Values are an array (Box, Image) or a
dict of arrays (Dict); the helpers below treat both alike, so the collector and the update need no branches.
Images stay uint8 everywhere outside the model (rollout buffer, checkpoints): 4x less memory than float32.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["obs_spec_from_space", "spec_to_space", "validate_obs_spec", "is_image_space", "image_chw",
           "vector_dim", "vector_keys", "image_keys", "tree_map", "tree_zeros", "vector_part", "Preprocessed",
           "check_finite", "describe"]

MAX_VECTOR_DIM = 1 << 20
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 256
MAX_DICT_KEYS = 64


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

    supported = ("a 1-D Box (vector), a uint8 image Box (H, W[, C]) with bounds [0, 255], or a Dict of those")
    if is_image_space(space):
        return validate_obs_spec(_image_spec(tuple(int(s) for s in space.shape)))
    if isinstance(space, spaces.Box):
        if len(space.shape) == 1:
            return validate_obs_spec({"type": "Box", "shape": [int(space.shape[0])]})
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
            if isinstance(sub, spaces.Discrete):
                raise ValueError(f"unsupported observation space in {where}: Discrete under key {key!r}; one-hot it "
                                 "into a Box (gymnasium.wrappers.TransformObservation) first")
            subs[key] = obs_spec_from_space(sub, f"{where}[{key!r}]")
        return validate_obs_spec({"type": "Dict", "spaces": subs})
    raise ValueError(f"unsupported observation space {space} in {where}: expected {supported}")


def spec_to_space(spec: dict):
    """The gymnasium space a spec describes (vector bounds are not part of the spec: -inf..inf)."""
    from gymnasium import spaces

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
        _need(set(spec) == {"type", "shape"}, key, "exactly the keys ['shape', 'type'] for Box", sorted(spec))
        shape = spec["shape"]
        _need(isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0]) and 1 <= shape[0] <= MAX_VECTOR_DIM,
              f"{key}.shape", f"[d] with d an int in [1, {MAX_VECTOR_DIM}]", shape)
        return {"type": "Box", "shape": list(shape)}
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
    if spec["type"] == "Box":
        return f"observations of shape ({spec['shape'][0]},)"
    if spec["type"] == "Image":
        layout = "HW" if len(spec["shape"]) == 2 else ("HWC" if spec["channels_last"] else "CHW")
        return f"uint8 image observations of shape {tuple(spec['shape'])} ({layout})"
    return "Dict observations {" + ", ".join(f"{k!r}: {describe(s)}" for k, s in spec["spaces"].items()) + "}"
