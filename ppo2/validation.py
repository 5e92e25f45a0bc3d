"""Everything the model checks before it computes: its constructor arguments and config.json (strict JSON
types, sizes within limits, checked before anything is allocated), observations and actions coming in (shape,
dtype, finiteness, an image's value range), loaded weights, and an env's spaces against a policy's.

Bad input gets a ValueError/TypeError naming what was expected and what came; nothing here converts a wrong
value into a plausible one.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .config import LOG_STD_BOUND
from .encoders import ENCODERS
from .observations import MAX_VECTOR_DIM as MAX_INPUT_DIM
from .observations import _is_int, _need, check_shape, describe, encode_obs, needs_encoding, obs_spec_from_space, validate_obs_spec

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_dropout(dropout: Any) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")


def resolve_obs_spec(input_dim: Any, observation_space: Any) -> dict:
    """The observation spec from `input_dim` (the seed call) and/or `observation_space`; they must agree."""
    if observation_space is None:
        if input_dim is None:
            raise ValueError("give input_dim (the size of a flat observation) or observation_space")
        check_int("input_dim", input_dim, minimum=1)
        return validate_obs_spec({"type": "Box", "shape": [int(input_dim)]})
    if isinstance(observation_space, dict) and "type" in observation_space:
        spec = validate_obs_spec(observation_space)
    else:
        spec = obs_spec_from_space(observation_space, "observation_space")
    if input_dim is not None:
        check_int("input_dim", input_dim, minimum=1)
        if spec != {"type": "Box", "shape": [int(input_dim)]}:
            raise ValueError(f"input_dim={input_dim} disagrees with observation_space ({describe(spec)}); give one of them")
    return spec



def check_obs_shape(shape: tuple, spec: dict, name: str = "observation") -> bool:
    """Whether `shape` is one unbatched observation; raises unless it is `spec`'s shape or (N, *shape)."""
    return check_shape(shape, spec["shape"], name)


def check_numpy_obs(obs: np.ndarray, name: str = "observation") -> None:
    if obs.dtype.kind not in "fiub":
        raise TypeError(f"{name}s must be real numbers, got dtype {obs.dtype}")
    if obs.dtype.kind == "f" and not np.isfinite(obs).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(obs)).sum())} NaN/inf value(s); expected finite numbers")
    if obs.dtype.itemsize > 4 and obs.size and np.abs(obs).max() > FLOAT32_MAX:
        raise ValueError(f"{name} contains values up to {float(np.abs(obs).max()):.3g}, beyond float32's range "
                         f"(+-{FLOAT32_MAX:.3g}): they would become inf inside the model")


def check_array(obs: Any, spec: dict, name: str, device: Any) -> tuple[torch.Tensor, bool]:
    """One array of observations -> (batched tensor on the model's device, single?). Vectors become float32.
    Images keep their meaning in their dtype (`check_image_values`): uint8 pixels stay uint8 (scaled inside
    the model), other integers must be pixel values in [0, 255], floats must be already scaled to [0, 1]."""
    image = spec["type"] == "Image"
    if not isinstance(obs, (torch.Tensor, np.ndarray)):
        obs = np.asarray(obs) if image else np.asarray(obs, dtype=np.float32)
    single = check_obs_shape(tuple(obs.shape), spec, name)
    if isinstance(obs, np.ndarray):
        check_numpy_obs(obs, name)
        dtype = check_image_values(obs, obs.dtype.kind == "f", name) if image else torch.float32
        as_numpy = np.uint8 if dtype is torch.uint8 else np.float32
        obs = torch.from_numpy(np.ascontiguousarray(obs[None] if single else obs, dtype=as_numpy))
    else:
        if not (obs.is_floating_point() or obs.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)):
            raise TypeError(f"{name}s must be real numbers, got dtype {obs.dtype}")
        if obs.is_floating_point() and not bool(torch.isfinite(obs).all()):
            bad = int((~torch.isfinite(obs)).sum())
            raise ValueError(f"{name} contains {bad} NaN/inf value(s); expected finite numbers")
        if obs.element_size() > 4 and obs.numel() and float(obs.abs().max()) > FLOAT32_MAX:
            raise ValueError(f"{name} contains values up to {float(obs.abs().max()):.3g}, beyond float32's "
                             f"range (+-{FLOAT32_MAX:.3g}): they would become inf inside the model")
        if single:
            obs = obs.unsqueeze(0)
        dtype = check_image_values(obs, obs.is_floating_point(), name) if image else torch.float32
    if obs.dtype != dtype or obs.device != device:
        obs = obs.to(device=device, dtype=dtype)
    return obs, single


def check_image_values(obs: Any, floating: bool, name: str) -> torch.dtype:
    """The dtype an image batch enters the model as: uint8 for pixel values (uint8, or other integers within
    [0, 255]), float32 for floats, which mean pixels already scaled to [0, 1] (as a VecTransposeImage/255
    pipeline gives) and are used as they are. Anything else is refused: a float frame of 0..255 values, or
    integers outside a byte, would otherwise be scaled wrongly without a sound."""
    empty = obs.size == 0 if isinstance(obs, np.ndarray) else obs.numel() == 0
    if obs.dtype in (np.uint8, torch.uint8) or empty:
        return torch.uint8 if not floating else torch.float32
    lo, hi = float(obs.min()), float(obs.max())
    if floating:
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} is a float image with values in [{lo:.4g}, {hi:.4g}]; float images must be "
                             "already scaled to [0, 1]. Pass uint8 pixels (0-255) as they come from the env, or "
                             "divide by 255 yourself")
        return torch.float32
    if lo < 0 or hi > 255:
        raise ValueError(f"{name} is an integer image with values in [{lo:.0f}, {hi:.0f}]; expected pixel values "
                         "in [0, 255] (uint8)")
    return torch.uint8


def check_obs(obs: Any, spec: dict, device: Any) -> tuple[Any, bool]:
    """Validate and convert observations: a (N, ...) tensor (a dict of them for Dict observations) on
    the model's device, and whether a single unbatched observation came in. Integer observations are checked
    against their space and one-hot encoded first (`encode_obs`)."""
    if needs_encoding(spec):
        obs = encode_obs(spec, obs)
    if spec["type"] != "Dict":
        return check_array(obs, spec, "observation", device)
    if not isinstance(obs, Mapping):
        raise TypeError(f"this policy takes {describe(spec)}; got {type(obs).__name__}, expected a dict")
    if set(obs) != set(spec["spaces"]):
        missing, extra = sorted(set(spec["spaces"]) - set(obs)), sorted(set(obs) - set(spec["spaces"]))
        raise ValueError(f"observation dict has keys {sorted(obs)}, expected {sorted(spec['spaces'])}"
                         + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
    out, singles, sizes = {}, set(), set()
    for key, sub in spec["spaces"].items():
        out[key], single = check_array(obs[key], sub, f"observation[{key!r}]", device)
        singles.add(single)
        sizes.add(out[key].shape[0])
    if len(singles) > 1 or len(sizes) > 1:
        raise ValueError("observation dict mixes batched and unbatched entries or batch sizes "
                         f"({ {k: tuple(v.shape) for k, v in out.items()} }); give every key the same leading N")
    return out, singles.pop()


def check_state(model) -> None:
    """Raise ValueError unless the weights and statistics are usable: every float tensor finite, the observation
    normaliser's variances >= 0 and its count > 0 (what loading a file checks: a NaN mean or a negative
    variance would otherwise give garbage actions without a sound)."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds {int((~torch.isfinite(t)).sum())} NaN/inf value(s); expected finite numbers")
    if model.normalize_obs:
        if bool((model.obs_var < 0).any()):
            raise ValueError(f"obs_var holds negative variances (min {float(model.obs_var.min()):.4g}); expected >= 0")
        if not float(model.obs_count) > 0:
            raise ValueError(f"obs_count is {float(model.obs_count)}; expected a count > 0")


def check_compatible(model, observation_space: Any, action_space: Any, env_id: str | None = None) -> None:
    """Raise ValueError unless this model can act in an env with these spaces: the observation kind and
    shape (image layout, Dict keys), the action-space type and its size (n, nvec, shape) and, for Box
    actions, the bounds it clips to."""
    from .distributions import space_to_spec

    where = f"{env_id}" if env_id else "the environment"
    if getattr(model, "mask_config", None) is not None and model.mask_config.key is not None:
        from .masks import split_observation_space

        observation_space = split_observation_space(observation_space, False)[0]
    try:
        env_obs = obs_spec_from_space(observation_space, where)
    except ValueError:
        env_obs = None
    if env_obs != model.obs_spec:
        raise ValueError(f"this policy takes {describe(model.obs_spec)}, but {where} has observation space "
                         f"{observation_space}")
    env_spec, mine = space_to_spec(action_space), model.action_spec
    same = env_spec.keys() == mine.keys() and all(
        np.allclose(np.asarray(env_spec[k], np.float64), np.asarray(mine[k], np.float64), rtol=1e-6, atol=1e-6)
        if k in ("low", "high") else env_spec[k] == mine[k] for k in env_spec)
    if not same:
        raise ValueError(f"this policy acts in {spec_text(mine)}, but {where} has action space {action_space}")


def spec_text(spec: dict) -> str:
    return f"{spec['type']}(" + ", ".join(f"{k}={v}" for k, v in spec.items() if k != "type") + ")"


# ------------------------------------------------------------------------------------------------------
# config.json validation: strict JSON types and size limits, checked before anything is allocated
# ------------------------------------------------------------------------------------------------------
MAX_HIDDEN_DIM = 1 << 14
MAX_ACTIONS = 1 << 16


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_action_spec(spec: Any, key: str = "action_space") -> dict:
    """Strictly check an action-space spec read from JSON (types, sizes, bounds); returns a copy."""
    _need(isinstance(spec, dict), key, "an object such as {\"type\": \"Discrete\", \"n\": 2}", spec)
    kind = spec.get("type")
    fields = {"Discrete": {"type", "n"}, "MultiBinary": {"type", "n"}, "MultiDiscrete": {"type", "nvec"},
              "Box": {"type", "shape", "low", "high"}}
    _need(kind in fields, f"{key}.type", "one of Discrete, Box, MultiDiscrete, MultiBinary", kind)
    _need(set(spec) == fields[kind], key, f"exactly the keys {sorted(fields[kind])} for {kind}", sorted(spec))
    if kind in ("Discrete", "MultiBinary"):
        _need(_is_int(spec["n"]) and 1 <= spec["n"] <= MAX_ACTIONS, f"{key}.n", f"an int in [1, {MAX_ACTIONS}]", spec["n"])
    elif kind == "MultiDiscrete":
        nvec = spec["nvec"]
        _need(isinstance(nvec, list) and 1 <= len(nvec) <= MAX_ACTIONS
              and all(_is_int(n) and 1 <= n <= MAX_ACTIONS for n in nvec) and sum(nvec) <= MAX_ACTIONS,
              f"{key}.nvec", f"a list of ints in [1, {MAX_ACTIONS}] (at most {MAX_ACTIONS} logits in all)", nvec)
    else:
        shape = spec["shape"]
        _need(isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0]) and 1 <= shape[0] <= MAX_ACTIONS,
              f"{key}.shape", f"[d] with d an int in [1, {MAX_ACTIONS}]", shape)
        for bound in ("low", "high"):
            b = spec[bound]
            _need(isinstance(b, list) and len(b) == shape[0] and all(_is_number(x) and not math.isnan(x) for x in b),
                  f"{key}.{bound}", f"a list of {shape[0]} numbers", b)
        _need(all(lo <= hi for lo, hi in zip(spec["low"], spec["high"])), key, "low <= high everywhere",
              [spec["low"], spec["high"]])
    return dict(spec)


def validate_config(config: Any) -> dict:
    """The PPO2 constructor arguments in a config (e.g. config.json), checked with strict JSON types: an
    int field takes no float or bool, a bool field no string or number, sizes stay within limits."""
    if not isinstance(config, dict):
        raise ValueError(f"model config must be a JSON object, got {type(config).__name__}")
    known = {"input_dim", "hidden_dim", "action_space", "dropout", "distribution", "shared_latent",
             "normalize_obs", "obs_clip", "log_std_init", "custom_latent", "observation_space", "encoder",
             "features_dim", "latent_layers", "recurrent", "lstm_hidden", "shared_lstm", "action_mask"}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}; expected a subset of {sorted(known)}")
    if "input_dim" not in config and "observation_space" not in config:
        raise ValueError("model config lacks 'input_dim' (or 'observation_space')")
    c = dict(config)
    if "input_dim" in c:
        _need(_is_int(c["input_dim"]) and 1 <= c["input_dim"] <= MAX_INPUT_DIM, "input_dim", f"an int in [1, {MAX_INPUT_DIM}]", c["input_dim"])
    if "observation_space" in c:
        c["observation_space"] = validate_obs_spec(c["observation_space"])
    if "encoder" in c:
        _need(c["encoder"] in (*ENCODERS, "custom"), "encoder", f"one of {', '.join((*ENCODERS, 'custom'))}", c["encoder"])
    if "features_dim" in c:
        _need(_is_int(c["features_dim"]) and 1 <= c["features_dim"] <= MAX_HIDDEN_DIM, "features_dim",
              f"an int in [1, {MAX_HIDDEN_DIM}]", c["features_dim"])
    if "latent_layers" in c:
        _need(_is_int(c["latent_layers"]) and 0 <= c["latent_layers"] <= 16, "latent_layers", "an int in [0, 16]",
              c["latent_layers"])
    if "hidden_dim" in c:
        _need(_is_int(c["hidden_dim"]) and 1 <= c["hidden_dim"] <= MAX_HIDDEN_DIM, "hidden_dim",
              f"an int in [1, {MAX_HIDDEN_DIM}]", c["hidden_dim"])
    if "action_space" in c:
        c["action_space"] = validate_action_spec(c["action_space"])
    if "dropout" in c:
        _need(_is_number(c["dropout"]) and 0.0 <= c["dropout"] < 1.0, "dropout", "a number in [0, 1)", c["dropout"])
    if "distribution" in c:
        _need(c["distribution"] is None or isinstance(c["distribution"], str), "distribution",
              "a class name such as 'torch.distributions.Normal'", c["distribution"])
    if "lstm_hidden" in c:
        _need(_is_int(c["lstm_hidden"]) and 1 <= c["lstm_hidden"] <= MAX_HIDDEN_DIM, "lstm_hidden",
              f"an int in [1, {MAX_HIDDEN_DIM}]", c["lstm_hidden"])
    if "action_mask" in c:
        from .masks import MaskConfig

        MaskConfig.from_json(c["action_mask"])
    for key in ("shared_latent", "normalize_obs", "custom_latent", "recurrent", "shared_lstm"):
        if key in c:
            _need(isinstance(c[key], bool), key, "true or false", c[key])
    if "obs_clip" in c:
        _need(_is_number(c["obs_clip"]) and 0 < c["obs_clip"] < float("inf"), "obs_clip", "a finite number > 0", c["obs_clip"])
    if "log_std_init" in c:
        _need(_is_number(c["log_std_init"]) and abs(c["log_std_init"]) <= LOG_STD_BOUND, "log_std_init",
              f"a number in [-{LOG_STD_BOUND:g}, {LOG_STD_BOUND:g}]",
              c["log_std_init"])
    return c


def check_loss_inputs(**tensors: Any) -> None:
    """Tensors, finite; their shapes are checked by the loss itself (ppo2.losses)."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains {int((~torch.isfinite(t)).sum())} NaN/inf value(s); expected finite numbers")


def check_loss_coefficients(clip_range: Any, ent_coef: Any, vf_coef: Any) -> None:
    for name, v in (("clip_range", clip_range), ("ent_coef", ent_coef), ("vf_coef", vf_coef)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
