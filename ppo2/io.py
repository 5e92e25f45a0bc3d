"""Files that never end up half-written, and tensors that are hash-checked before they are read.

Everything the project writes is safetensors (tensors) or JSON (everything else); nothing is pickled.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = ["IntegrityError", "sha256_bytes", "sha256_file", "atomic_write_bytes", "atomic_write_json", "staged_dir",
           "save_tensors", "load_tensors", "read_json", "read_safetensors_header", "read_verified_bytes",
           "MAX_HEADER_BYTES"]

# A safetensors header names every tensor with its dtype and shape; ours are a few kB. A larger one is
# refused before it is parsed.
MAX_HEADER_BYTES = 1 << 20


class IntegrityError(ValueError):
    """A file's content does not match its recorded sha256, or is not a valid safetensors/JSON file."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return sha256_bytes(Path(path).read_bytes())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target: a reader
    (or a crash) sees either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike):
    """A new hidden directory beside `final` to fill; once the block ends it replaces `final` (an earlier one
    removed) by one rename, and if the block raises it is removed: a reader finds `final` whole or not at all."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Atomically write a safetensors file; returns its sha256.

    The same tensors always give the same bytes: safetensors writes its metadata from a Rust HashMap,
    whose order changes from process to process when it holds two or more keys, so at most one is allowed."""
    if metadata is not None and len(metadata) > 1:
        raise ValueError(f"safetensors metadata may hold at most one key (for byte-identical files), got {sorted(metadata)}")
    data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_verified_bytes(path: str | os.PathLike, expected_sha256: str | None) -> bytes:
    """The bytes of a file, checked against `expected_sha256` (when given) before anyone parses them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    data = path.read_bytes()
    if expected_sha256 is not None:
        actual = sha256_bytes(data)
        if actual != expected_sha256:
            raise IntegrityError(
                f"{path}: sha256 mismatch, expected {expected_sha256}, got {actual} "
                "(the file is corrupt, truncated or not the one recorded)")
    return data


def load_tensors(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking its sha256 *before* deserialising anything."""
    data = read_verified_bytes(path, expected_sha256)
    try:
        return st_load(data)
    except (SafetensorError, ValueError, Exception) as exc:  # safetensors raises several types
        raise IntegrityError(f"{path}: not a valid safetensors file ({exc})") from exc


def read_safetensors_header(data: bytes, where: str = "weights") -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header, without reading any tensor: what a
    model is checked against *before* it is allocated."""
    if len(data) < 8:
        raise IntegrityError(f"{where}: not a valid safetensors file ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise IntegrityError(f"{where}: not a valid safetensors file (header of {n} bytes in a {len(data)}-byte file)")
    try:
        header = json.loads(data[8:8 + n])
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape = tuple(info["shape"])
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise ValueError(f"bad shape {shape} for {name}")
            out[name] = (str(info["dtype"]), shape)
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{where}: not a valid safetensors header ({exc})") from exc


def read_json(path: str | os.PathLike, expected_sha256: str | None = None) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    data = path.read_bytes()
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise IntegrityError(f"{path}: sha256 mismatch, expected {expected_sha256}, got {sha256_bytes(data)}")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc})") from exc
