"""A run's output directory: one writer at a time, no silent reuse, metrics that survive a crash.

    RunLock(dir)        an exclusive lock (flock on dir/.lock) held while a run writes; a second writer
                        gets RunDirectoryBusy naming the process that holds it. The kernel drops the lock
                        when its process dies, so a killed run never leaves a stale lock behind.
    holds_run(dir)      what of an earlier run a directory holds ('' if nothing): the trainer refuses to
                        write into such a directory unless it resumes that run or is told to overwrite it.
    clear_run(dir)      remove an earlier run's outputs (only the files a run writes) for --overwrite.
    repair_metrics(...) on resume, keep only the metrics rows up to the checkpoint's update: rows logged
                        after it (and a row torn by a crash) would otherwise be duplicated or malformed.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

from .io import atomic_write_bytes

__all__ = ["RunLock", "RunDirectoryBusy", "holds_run", "clear_run", "repair_metrics", "provenance", "platform_fingerprint",
           "cpu_model_and_isa", "REPRODUCTION_KEYS", "segment_changes", "RUN_OUTPUTS", "SNAPSHOTS", "snapshot_dir",
           "prune_snapshots"]

SNAPSHOTS = "policies"  # --snapshot-interval's copies of the policy, one directory per update
RUN_OUTPUTS = ("checkpoints", "best", SNAPSHOTS, "tb", "metrics.csv", "summary.json", "train_config.json",
               "model.safetensors", "config.json", "results.json", "learning_curve.png", "replay.gif", ".finished",
               "outputs.log")
_RUN_MARKERS = ("checkpoints", "metrics.csv", "train_config.json", "summary.json", "model.safetensors")


class RunDirectoryBusy(ValueError):
    """Another process is writing a run into this directory."""


class RunLock:
    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / ".lock"
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as before
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryBusy(f"{directory} is being written by another training run (pid {holder}); wait for it "
                                   "to finish, or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def holds_run(directory: str | os.PathLike) -> str:
    """A short description of the earlier run's files in `directory`, or '' if it holds none."""
    d = Path(directory)
    if not d.is_dir():
        return ""
    found = [name for name in _RUN_MARKERS if (d / name).exists()]
    return ", ".join(found)


def clear_run(directory: str | os.PathLike) -> None:
    """Remove what a run writes (RUN_OUTPUTS, and the hidden versions behind best/); nothing else in the directory."""
    d = Path(directory)
    hidden = [p.name for p in d.glob(".best-*")] + [p.name for p in d.glob(".best.*")]
    for name in (*RUN_OUTPUTS, *hidden):
        path = d / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


_SNAPSHOT, _STAGED_SNAPSHOT = re.compile(r"update_(\d+)"), re.compile(r"\.update_\d+\..+")


def snapshot_dir(directory: str | os.PathLike, update: int) -> Path:
    """Where the run in `directory` keeps its copy of the policy after `update` (--snapshot-interval)."""
    return Path(directory) / SNAPSHOTS / f"update_{int(update):06d}"


def prune_snapshots(directory: str | os.PathLike, after_update: int) -> list[str]:
    """Remove the snapshots a resumed run will write again (those after the checkpoint it resumes from: that
    stretch is trained anew, as its metrics rows are) and any a crash left half-written (`io.staged_dir`'s hidden
    `.update_N.*`); returns their names."""
    root = Path(directory) / SNAPSHOTS
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        whole, staged = _SNAPSHOT.fullmatch(path.name), _STAGED_SNAPSHOT.fullmatch(path.name)
        if (staged or (whole and int(whole[1]) > after_update)) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path.name)
    return removed


def repair_metrics(path: str | os.PathLike, fields: tuple[str, ...], up_to_update: int) -> int:
    """Rewrite metrics.csv (atomically) with its well-formed rows for updates 1..up_to_update, in order and
    once each; returns how many rows were dropped."""
    path = Path(path)
    text = path.read_text(errors="replace")
    kept: dict[int, dict] = {}
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0] if rows else []
    dropped = 0
    for row in rows[1:]:
        record = dict(zip(header, row))
        try:
            update = int(record.get("update", ""))
        except ValueError:
            update = -1
        if len(row) != len(header) or not 1 <= update <= up_to_update or update in kept:
            dropped += 1
            continue
        kept[update] = record
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for update in sorted(kept):
        writer.writerow({k: kept[update].get(k, "") for k in fields})
    atomic_write_bytes(path, out.getvalue().encode())
    return dropped


# What decides a run's floating-point results besides its flags and code: the libraries, and the CPU kernels they
# pick at run time (torch's ATen/oneDNN by the instruction set, numpy's SIMD dispatch, OpenBLAS's core type). Two
# machines that agree on every key train the same bytes; on another CPU model float32 sums may run in another order.
REPRODUCTION_KEYS = ("python", "torch", "numpy", "gymnasium", "machine", "cpu_capability", "cpu_model", "cpu_isa",
                     "numpy_simd", "blas", "torch_threads")


def cpu_model_and_isa() -> tuple[str, list[str]]:
    """The CPU's model name and its vector instruction-set flags (Linux /proc/cpuinfo; elsewhere platform's)."""
    import platform

    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = value.split()
                    break
    except OSError:
        pass
    isa = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "f16c", "asimd", "sve", "neon")))
    return model, isa


def _blas_kernel() -> str:
    """numpy's BLAS as it runs here: library, version and the kernel it chose for this CPU (threadpoolctl)."""
    import os

    try:
        from threadpoolctl import threadpool_info

        libs = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                if i.get("user_api") == "blas"]
    except Exception:  # threadpoolctl missing or unable to inspect a library
        libs = []
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return "; ".join(libs or ["unknown"]) + (f" (OPENBLAS_CORETYPE={coretype})" if coretype else "")


def platform_fingerprint() -> dict:
    """REPRODUCTION_KEYS for this process: the platform a zoo entry's bytes belong to."""
    import platform

    import gymnasium
    import numpy
    import torch

    model, isa = cpu_model_and_isa()
    try:
        simd = sorted(numpy.show_config(mode="dicts")["SIMD Extensions"]["found"])
    except Exception:  # numpy < 1.25 has no dict mode
        simd = []
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "gymnasium": gymnasium.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": model, "cpu_isa": isa,
            "numpy_simd": simd, "blas": _blas_kernel(), "torch_threads": torch.get_num_threads()}


def provenance() -> dict:
    """What a run's numbers depend on besides its flags: the code (git commit, and whether the checkout had
    uncommitted changes) and the platform (`platform_fingerprint`). A zoo entry records this; re-running its
    command on a platform with the same fingerprint gives the same weights."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "ppo2", "train.py"],
                                    cwd=repo, capture_output=True, text=True, timeout=10).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": commit, "dirty": dirty, **platform_fingerprint()}


def segment_changes(segments: list[dict] | None) -> list[str]:
    """How the later stretches of a resumed run (its summary's segments, ppo2.trainer.Trainer._segment) differ from
    its first in what its numbers depend on: ranks, code and platform (REPRODUCTION_KEYS), e.g. ["commit 'abc..' ->
    'def..' at update 1209"]; empty where one command on one commit reproduces it."""
    keys = ("world_size", "commit", "dirty", *REPRODUCTION_KEYS)
    first, out = (segments or [{}])[0], []
    if len(segments or []) > 1 and any(k not in first for k in REPRODUCTION_KEYS):
        # (a checkpoint written before runs recorded segments: ppo2.trainer._earlier_segments)
        return [f"code and platform unknown for updates 0..{segments[1]['from_update'] - 1} (trained before runs "
                "recorded them)"]
    for seg in (segments or [])[1:]:
        out += [f"{k} {first.get(k)!r} -> {seg.get(k)!r} at update {seg['from_update']}"
                for k in keys if seg.get(k) != first.get(k)]
    return out
