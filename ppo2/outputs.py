"""Step 5's files: what a run writes to its output directory (rank 0 only).

    train_config.json   the resolved configuration
    metrics.csv         one row per update (METRICS), repaired on resume
    tb/                 TensorBoard events (--tensorboard)
    model.safetensors + config.json   the final policy (save_pretrained)
    summary.json        steps, time, stop reason, evaluations, update path, provenance
    learning_curve.png  drawn by a short-lived child process (--plot)

The directory is locked (ppo2/rundir.py) while the run writes, so two runs never mix their files.
"""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

from .io import atomic_write_json
from .rundir import RunLock, clear_run, repair_metrics

__all__ = ["METRICS", "RunOutputs"]

METRICS = ("update", "global_step", "time_s", "sps", "episode_return", "episode_length", "episodes",
           "eval_return", "eval_std", "learning_rate", "clip_range", "loss", "pg_loss", "value_loss",
           "entropy", "approx_kl", "clip_fraction", "explained_variance", "epochs")


class RunOutputs:
    def __init__(self, output_dir: Path, config: dict, *, resumed_at: int, overwrite: bool, tensorboard: bool):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.output_dir)  # a second writer gets a clear error, never a mixed directory
        self._csv_file = self._tb = None
        if overwrite:  # (--overwrite of a new run; a resumed run keeps its files)
            clear_run(self.output_dir)
        atomic_write_json(self.output_dir / "train_config.json", config)
        path = self.output_dir / "metrics.csv"
        new = not path.exists() or resumed_at == 0
        if not new:  # rows logged after the checkpoint we resume from (or torn by a crash) are dropped
            repair_metrics(path, METRICS, resumed_at)
        self._csv_file = open(path, "w" if new else "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=METRICS)
        if new:
            self._csv.writeheader()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.output_dir / "tb"))

    def log(self, row: dict, global_step: int) -> None:
        self._csv.writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("update", "global_step") and value != "" and not (isinstance(value, float) and math.isnan(value)):
                    self._tb.add_scalar(f"{'eval' if key.startswith('eval') else 'train'}/{key}", value, global_step)

    def flush(self) -> None:
        self._csv_file.flush()

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.output_dir / "summary.json", summary)

    def plot(self, title: str, target: float | None) -> None:
        """learning_curve.png, drawn by a child process so training never pays matplotlib's memory."""
        cmd = [sys.executable, "-m", "ppo2.plotting", str(self.output_dir / "metrics.csv"),
               str(self.output_dir / "learning_curve.png"), title]
        if target is not None:
            cmd.append(str(target))
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:  # a plot must never cost a finished run
            print(f"warning: learning curve not written: {done.stderr.strip()[-500:]}", file=sys.stderr)

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
