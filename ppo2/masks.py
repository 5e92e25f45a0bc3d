"""Action masking: where a mask comes from, what shape it has, and the checks on it.

An environment is masked when its Dict observation has an `action_mask` key (gymnasium's convention, e.g. in
PettingZoo's classic games) or when it has an `action_masks()` method (sb3-contrib's MaskablePPO convention).
A mask holds one 0/1 entry per choice:

==================  =================  ============================================================
action space        mask length        entry k says
==================  =================  ============================================================
Discrete(n)         n                  action k is legal
MultiDiscrete(nv)   sum(nv)            sub-action j may take value v (entry nv[0] + ... + nv[j-1] + v)
MultiBinary(n)      2n                 bit k may be 0 (entry 2k) / may be 1 (entry 2k + 1), as sb3-contrib
Box                 (no masks)
==================  =================  ============================================================

The mask shapes the policy's distribution only (ppo2/network.py: `mask_logits`, `mask_bernoulli_logits`): it is
not an input of the network. Put a copy under another Dict key if the network should see it too.

Every path that acts or evaluates applies it: the collector's steps, the update's log-probabilities and entropies
(over legal actions only), `predict(..., action_masks=...)`, evaluation, replays and the exported policy.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["MASK_KEY", "mask_size", "check_mask", "env_masks", "MaskConfig", "MaskSource", "split_observation_space"]

MASK_KEY = "action_mask"


def _groups(action_spec: dict) -> list[int]:
    """The mask's layout (see the table above): the sizes of its consecutive groups, each of which must hold a legal
    entry; ValueError for Box."""
    kind = action_spec["type"]
    if kind == "Discrete":
        return [int(action_spec["n"])]
    if kind == "MultiDiscrete":
        return [int(n) for n in action_spec["nvec"]]
    if kind == "MultiBinary":
        return [2] * int(action_spec["n"])
    raise ValueError(f"action masks need a Discrete, MultiDiscrete or MultiBinary action space, got {kind}; "
                     "drop the mask (--no-action-mask) or use a discrete action space")


def mask_size(action_spec: dict) -> int:
    """The number of mask entries for an action space; ValueError for Box."""
    return sum(_groups(action_spec))


def check_mask(mask: Any, action_spec: dict, rows: int | None, where: str) -> Any:
    """A mask batch as bool, shape (rows, size) (or (size,) for rows=None), every group with a legal action.

    Raises ValueError naming `where` (the env, or the argument) with what was expected and what came."""
    groups = _groups(action_spec)
    size = sum(groups)
    is_tensor = isinstance(mask, torch.Tensor)
    arr = mask if is_tensor else np.asarray(mask)
    expected = (size,) if rows is None else (rows, size)
    if tuple(arr.shape) != expected:
        raise ValueError(f"{where}: action mask of shape {tuple(arr.shape)}, expected {expected} "
                         f"(one 0/1 entry per choice of the {action_spec['type']} action space)")
    if arr.dtype not in (np.bool_, torch.bool):
        values = arr if is_tensor else arr.astype(np.float64, copy=False)
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError(f"{where}: action mask entries must be 0 or 1 (or booleans), got other values")
        arr = arr != 0
    rows_view = arr.reshape(-1, size)
    start = 0
    for n in groups:
        legal = rows_view[:, start:start + n].any(-1)
        if not bool(legal.all()):
            bad = (np.flatnonzero(~legal) if not is_tensor else torch.nonzero(~legal).flatten()).tolist()
            what = "action" if len(groups) == 1 else f"value for entries [{start}, {start + n})"
            raise ValueError(f"{where}: the action mask allows no {what} in row(s) {bad[:8]}; every step needs at "
                             "least one legal action (check the environment's mask)")
        start += n
    return arr


def env_masks(envs) -> np.ndarray | None:
    """The vector env's masks from its sub-environments' `action_masks()` methods (stacked, (N, size)), or None
    where the environments have no such method."""
    own = getattr(envs, "action_masks", None)
    if callable(own):  # a vector env of your own that masks all its sub-environments at once
        return np.asarray(own())
    try:
        masks = envs.call("action_masks")
    except (AttributeError, NotImplementedError):
        return None
    return np.stack([np.asarray(m) for m in masks])


class MaskConfig:
    """Where a model's masks come from; its JSON form is the model config's `action_mask` entry.

    source: "observation" (the `action_mask` key of Dict observations), "method" (passed in, from the env's
        `action_masks()`), or "off" (the key, if any, is split off the observations but not applied).
    key: the Dict key the mask is under in raw observations (None for "method" with no such key).
    unwrap: the one Dict key left once the mask is split off, whose observations the network reads as they are
        (a vector then runs the built-in MLP's fast paths), or None when the network reads the rest as a Dict.
    """

    SOURCES = ("observation", "method", "off")

    def __init__(self, source: str, key: str | None = None, unwrap: str | None = None):
        self.source, self.key, self.unwrap = source, key, unwrap

    @property
    def applied(self) -> bool:
        return self.source != "off"

    def to_json(self) -> dict:
        return {"source": self.source, "key": self.key, "unwrap": self.unwrap}

    @classmethod
    def from_json(cls, data: Any) -> "MaskConfig":
        if not (isinstance(data, dict) and set(data) == {"source", "key", "unwrap"}):
            raise ValueError(f"model config 'action_mask' must be an object with keys ['key', 'source', 'unwrap'], "
                             f"got {data!r}")
        if data["source"] not in cls.SOURCES:
            raise ValueError(f"model config 'action_mask.source' must be one of {', '.join(cls.SOURCES)}, "
                             f"got {data['source']!r}")
        for k in ("key", "unwrap"):
            if not (data[k] is None or (isinstance(data[k], str) and 0 < len(data[k]) <= 256)):
                raise ValueError(f"model config 'action_mask.{k}' must be null or a key name, got {data[k]!r}")
        if data["source"] == "observation" and data["key"] is None:
            raise ValueError("model config 'action_mask': source 'observation' needs the key the mask is under")
        return cls(data["source"], data["key"], data["unwrap"])

    def split(self, obs: Any) -> tuple[Any, Any]:
        """Raw observations -> (what the network reads, the mask under `key` or None)."""
        if self.key is None or not isinstance(obs, dict):
            return obs, None
        mask = obs.get(self.key)
        if self.unwrap is not None:
            if self.unwrap not in obs:
                raise ValueError(f"observations lack the key {self.unwrap!r}; expected a Dict with keys "
                                 f"[{self.unwrap!r}, {self.key!r}], got {sorted(obs)}")
            return obs[self.unwrap], mask
        return {k: v for k, v in obs.items() if k != self.key}, mask


def split_observation_space(space: Any, action_mask: Any) -> tuple[Any, MaskConfig | None]:
    """(the space the network reads, the mask config) for a model built on `space` (a gymnasium space or a spec).

    action_mask: "auto" (mask when a Dict has the `action_mask` key), True or "method" (masks are passed in: the
    env's `action_masks()`), False (never mask; an `action_mask` key is still kept out of the network's input), or a
    MaskConfig's JSON."""
    if isinstance(action_mask, dict):
        return space, MaskConfig.from_json(action_mask)
    if action_mask not in ("auto", True, False, "method"):
        raise ValueError(f"action_mask must be 'auto', True, False or 'method', got {action_mask!r}")
    keys = _dict_keys(space)
    has_key = keys is not None and MASK_KEY in keys
    if not has_key:
        if action_mask in (True, "method"):
            return space, MaskConfig("method")
        return space, None
    rest = [k for k in keys if k != MASK_KEY]
    if not rest:
        raise ValueError(f"the observation space holds only {MASK_KEY!r}: the network needs something to read")
    unwrap = rest[0] if len(rest) == 1 else None
    inner = _sub_space(space, rest, unwrap)
    source = "off" if action_mask is False else "observation"
    return inner, MaskConfig(source, MASK_KEY, unwrap)


def _dict_keys(space: Any) -> list[str] | None:
    if isinstance(space, dict):  # a spec
        return list(space["spaces"]) if space.get("type") == "Dict" else None
    from gymnasium import spaces

    return list(space.spaces) if isinstance(space, spaces.Dict) else None


def _sub_space(space: Any, keys: list[str], unwrap: str | None) -> Any:
    if isinstance(space, dict):
        if unwrap is not None:
            return space["spaces"][unwrap]
        return {"type": "Dict", "spaces": {k: space["spaces"][k] for k in keys}}
    from gymnasium import spaces

    if unwrap is not None:
        return space.spaces[unwrap]
    return spaces.Dict({k: space.spaces[k] for k in keys})


class MaskSource:
    """The collector's masks: each step's observations -> (what the network reads, the checked (N, size) bool mask or
    None), from the observations' mask key or the envs' `action_masks()`, as the model's MaskConfig says."""

    def __init__(self, config: MaskConfig, action_spec: dict, env_id: str):
        self.config, self.action_spec, self.env_id = config, action_spec, env_id

    def split(self, envs, obs: Any, ended: np.ndarray | None = None) -> tuple[Any, np.ndarray | None]:
        """`ended` marks the envs whose episode just ended: their next action is ignored (gymnasium's autoreset
        step), so their mask, which may well allow nothing in a terminal state, is not checked but all legal."""
        obs, mask = self.config.split(obs)
        if not self.config.applied:
            return obs, None
        if self.config.source == "method":
            mask = env_masks(envs)
            if mask is None:
                raise ValueError(f"{self.env_id}: the policy masks actions with the env's action_masks(), but the "
                                 "environment has no such method")
        return obs, check_mask(allow_ended(mask, ended), self.action_spec, envs.num_envs, f"{self.env_id}")


def allow_ended(mask: Any, ended: np.ndarray | None) -> Any:
    """A copy of the mask with every action legal in the rows of `ended` (envs whose next step is the autoreset step),
    in the mask's own dtype, so that `check_mask` still sees the other rows' values as they came."""
    if mask is None or ended is None or not ended.any():
        return mask
    mask = np.array(mask)
    mask[ended] = 1
    return mask
