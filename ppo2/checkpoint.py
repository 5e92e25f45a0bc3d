"""Training checkpoints: everything needed to continue a run exactly, as safetensors + JSON.

    <output_dir>/checkpoints/update_000040/{model.safetensors, config.json, state.safetensors, state.json,
                                            manifest.json}
    <output_dir>/checkpoints/latest.json   -> {"update": 40, "dir": "update_000040", "manifest_sha256": ...}

A checkpoint directory is written under a temporary name and renamed into place, and latest.json is
replaced atomically afterwards, so a crash or a kill at any moment leaves the previous checkpoint
loadable. manifest.json records the sha256 of the other four files (and latest.json that of the
manifest): every file is verified before any of it is parsed, so a flipped bit in the optimizer state or
the run state is refused instead of resuming silently with different numbers. Pruning keeps the newest
`keep` checkpoints of this run and never deletes the one just written.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .io import IntegrityError, atomic_write_json, load_tensors, read_json, save_tensors, sha256_file, staged_dir

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "verify_checkpoint", "optimizer_state_to_flat",
           "optimizer_state_from_flat"]

MANIFEST = "manifest.json"
CHECKPOINT_FILES = ("model.safetensors", "config.json", "state.safetensors", "state.json")


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
    from .hf_hub import save_pretrained

    root = Path(output_dir) / "checkpoints"
    name = f"update_{update:06d}"
    final = root / name
    with staged_dir(final) as tmp:
        save_pretrained(model, tmp, env_id=state.get("config", {}).get("env_id"))
        opt_tensors, opt_meta = optimizer_state_to_flat(optimizer)
        save_tensors(tmp / "state.safetensors", {**opt_tensors, **tensors})
        atomic_write_json(tmp / "state.json", {**state, "optimizer": opt_meta})
        atomic_write_json(tmp / MANIFEST, {"update": update, "files": {f: sha256_file(tmp / f) for f in CHECKPOINT_FILES}})
    atomic_write_json(root / "latest.json", {"update": update, "dir": name, "manifest_sha256": sha256_file(final / MANIFEST)})
    # older checkpoints of this run only: the newest (just written) is never a candidate, and neither is a
    # higher-numbered directory (which only a resume from an explicitly named older checkpoint leaves behind)
    older = sorted(p for p in root.glob("update_*") if p.is_dir() and _update_of(p) is not None and _update_of(p) < update)
    for old in older[:max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _update_of(path: Path) -> int | None:
    try:
        return int(path.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


def verify_checkpoint(ckpt: Path, manifest_sha256: str | None = None) -> dict:
    """Check every file of a checkpoint against its manifest (and the manifest against latest.json's
    record, when there is one) before any of them is parsed; returns the manifest."""
    manifest = read_json(ckpt / MANIFEST, expected_sha256=manifest_sha256)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or set(files) != set(CHECKPOINT_FILES):
        raise IntegrityError(f"{ckpt / MANIFEST}: expected the sha256 of {list(CHECKPOINT_FILES)}, got {files!r}")
    for name, digest in files.items():
        path = ckpt / name
        if not path.is_file():
            raise IntegrityError(f"checkpoint {ckpt} is missing {name}")
        actual = sha256_file(path)
        if actual != digest:
            raise IntegrityError(f"{path}: sha256 mismatch, expected {digest}, got {actual} (the checkpoint is "
                                 "corrupt; resume from an earlier one by naming its directory)")
    return manifest


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
    latest = read_json(pointer)
    if not isinstance(latest, dict) or not isinstance(latest.get("dir"), str) or "/" in latest["dir"] or latest["dir"] in ("..", "."):
        raise IntegrityError(f"{pointer}: malformed ({latest!r})")
    ckpt = path / "checkpoints" / latest["dir"]
    if not (ckpt / "state.json").is_file():
        raise FileNotFoundError(f"cannot resume: latest checkpoint {ckpt} is missing its state.json")
    return ckpt


def _manifest_sha(ckpt: Path) -> str | None:
    pointer = ckpt.parent / "latest.json"
    if pointer.is_file():
        latest = read_json(pointer)
        if isinstance(latest, dict) and latest.get("dir") == ckpt.name:
            return latest.get("manifest_sha256")
    return None


def load_checkpoint(path: str | os.PathLike) -> tuple[Path, dict, dict[str, torch.Tensor], dict[str, str]]:
    """(checkpoint dir, state.json, state tensors, {file: verified sha256}), every file verified first; the
    caller loads the model with `ppo2.hf_hub.build_model`, pinned to the returned hashes."""
    ckpt = latest_checkpoint(path)
    files = verify_checkpoint(ckpt, _manifest_sha(ckpt))["files"]
    state = read_json(ckpt / "state.json", files["state.json"])
    return ckpt, state, load_tensors(ckpt / "state.safetensors", files["state.safetensors"]), files
