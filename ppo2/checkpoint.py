"""Training checkpoints: everything needed to continue a run exactly, as safetensors + JSON.

    <output_dir>/checkpoints/update_000040/{model.safetensors, config.json, state.safetensors, state.json}
    <output_dir>/checkpoints/latest.json   -> {"update": 40, "dir": "update_000040"}

A checkpoint directory is written under a temporary name and renamed into place, and latest.json is
replaced atomically afterwards, so a crash or a kill at any moment leaves the previous checkpoint
loadable.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write_json, load_tensors, read_json, save_tensors

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "optimizer_state_to_flat", "optimizer_state_from_flat"]


def optimizer_state_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(output_dir: str | os.PathLike, update: int, model, optimizer, state: dict,
                    tensors: dict[str, torch.Tensor], keep: int = 2) -> Path:
    """Write checkpoint `update` and point latest.json at it; keep the newest `keep` checkpoints."""
    from .hub import save_pretrained

    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"update_{update:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_pretrained(model, tmp, env_id=state.get("config", {}).get("env_id"))
        opt_tensors, opt_meta = optimizer_state_to_flat(optimizer)
        save_tensors(tmp / "state.safetensors", {**opt_tensors, **tensors})
        atomic_write_json(tmp / "state.json", {**state, "optimizer": opt_meta})
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(root / "latest.json", {"update": update, "dir": name})
    for old in sorted(p for p in root.glob("update_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(path: str | os.PathLike) -> Path:
    """The newest checkpoint directory of a run (or `path` itself if it is one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist")
    if (path / "state.json").is_file():
        return path
    pointer = path / "checkpoints" / "latest.json"
    if not pointer.is_file():
        raise FileNotFoundError(f"cannot resume: {path} holds no checkpoints (expected {pointer})")
    ckpt = path / "checkpoints" / read_json(pointer)["dir"]
    if not (ckpt / "state.json").is_file():
        raise FileNotFoundError(f"cannot resume: latest checkpoint {ckpt} is missing its state.json")
    return ckpt


def load_checkpoint(path: str | os.PathLike) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    """(checkpoint dir, state.json, state tensors); the model is loaded separately via ppo2.hub.build_model."""
    ckpt = latest_checkpoint(path)
    return ckpt, read_json(ckpt / "state.json"), load_tensors(ckpt / "state.safetensors")
