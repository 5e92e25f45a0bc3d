"""Step 5's files: what a run writes to its output directory (rank 0 only).

    train_config.json   the resolved configuration
    metrics.csv         one row per update (METRICS), repaired on resume
    model.safetensors + config.json   the final policy (save_pretrained)
    policies/update_N/  the policy after update N, every --snapshot-interval updates (save_pretrained)
    summary.json        steps, time, stop reason, evaluations, update path, provenance, and the code, ranks and
                        platform of each stretch between resumes (segments)
    tb/                 TensorBoard events (--tensorboard)        } written by a companion process that
    learning_curve.png  (--plot)                                  } follows metrics.csv

TensorBoard's writer and matplotlib together cost more to import than a CartPole run takes to train, so the
training process never imports them: a companion process (`python -m ppo2.companion`, started with the run)
imports them while the run trains, follows metrics.csv, writes the events as rows arrive (TensorBoard is live
during long runs), draws the learning curve once the run has finished, and exits. Whoever started the run waits
for it (`RunOutputs.wait`: train.py, `ppo2.train()`), so when a run returns every file it promised is complete;
a container, batch job or CI step that uploads the directory next finds nothing half-written.

The directory is locked (ppo2/rundir.py) while the run writes, so two runs never mix their files.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from .companion import FINISHED
from .io import atomic_write_json
from .rundir import RunLock, clear_run, prune_snapshots, repair_metrics

__all__ = ["METRICS", "LineProgress", "RunOutputs", "format_duration"]

METRICS = ("update", "global_step", "time_s", "sps", "episode_return", "episode_length", "episodes",
           "eval_return", "eval_std", "learning_rate", "clip_range", "loss", "pg_loss", "value_loss",
           "entropy", "approx_kl", "clip_fraction", "explained_variance", "epochs")


def format_duration(seconds: float | None) -> str:
    """A wall time as people read it: 81 s, 18 min, 7.9 h."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:,.0f} s"
    return f"{seconds / 60:,.0f} min" if seconds < 120 * 60 else f"{seconds / 3600:,.1f} h"


class LineProgress:
    """The progress bar's stand-in where its output goes to a file (a run under nohup, a batch job): one line at most
    every `interval` seconds and one at the end, not a bar redrawn in place. tqdm's calls (update, set_postfix,
    close), so the trainer drives either the same way:

        Pong: 595,968/10,000,000 steps (6.0%), 342 steps/s, return 15.4, eval 14.0, 47 min in, ~7.6 h to go
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", interval: float = 60.0,
                 file: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.n, self.desc, self.interval = int(total), int(initial), desc, float(interval)
        self.file, self.clock = file, clock
        self.start_n, self.start = self.n, clock()
        self.last = self.start
        self.postfix: dict = {}

    def update(self, n: int) -> None:
        self.n += int(n)

    def set_postfix(self, refresh: bool = False, **fields) -> None:
        self.postfix = fields
        if self.clock() - self.last >= self.interval:
            self._line()

    def close(self) -> None:
        if self.n > self.start_n:
            self._line(final=True)

    def _line(self, final: bool = False) -> None:
        now = self.clock()
        self.last = now
        elapsed = now - self.start
        text = f"{self.desc}: {self.n:,}/{self.total:,} steps ({100 * self.n / max(self.total, 1):.1f}%)"
        text += "".join(f", {value} {name}" if name == "steps/s" else f", {name} {value}"
                        for name, value in self.postfix.items())
        text += f", {format_duration(elapsed)} in"
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        if not final and self.n < self.total and rate > 0:  # (a run that ends early, at its target, has none)
            text += f", ~{format_duration((self.total - self.n) / rate)} to go"
        print(text, file=self.file or sys.stderr, flush=True)


class RunOutputs:
    def __init__(self, output_dir: Path, config: dict, *, resumed_at: int, overwrite: bool, tensorboard: bool,
                 plot: bool = False, title: str = "", target: float | None = None, eval_deterministic: bool = True):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.output_dir)  # a second writer gets a clear error, never a mixed directory
        self._csv_file = None
        self.companion: subprocess.Popen | None = None
        if overwrite:  # (--overwrite of a new run; a resumed run keeps its files)
            clear_run(self.output_dir)
        (self.output_dir / FINISHED).unlink(missing_ok=True)
        atomic_write_json(self.output_dir / "train_config.json", config)
        path = self.output_dir / "metrics.csv"
        new = not path.exists() or resumed_at == 0
        if not new:  # rows logged after the checkpoint we resume from (or torn by a crash) are dropped, and the
            repair_metrics(path, METRICS, resumed_at)  # policy snapshots of those updates
            prune_snapshots(self.output_dir, resumed_at)
        self._csv_file = open(path, "w" if new else "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=METRICS)
        if new:
            self._csv.writeheader()
            self._csv_file.flush()
        if tensorboard or plot:
            cmd = [sys.executable, "-m", "ppo2.companion", str(self.output_dir), "--parent", str(os.getpid()),
                   "--after-update", str(resumed_at)]
            cmd += ["--tensorboard"] if tensorboard else []
            cmd += ["--plot", "--title", title] + (["--target", repr(float(target))] if target is not None else []) if plot else []
            cmd += ["--eval-sampled"] if plot and not eval_deterministic else []
            package_root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
            with open(self.output_dir / "outputs.log", "ab") as log:
                self.companion = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                                  start_new_session=True)  # (a Ctrl-C meant for training spares it)

    def log(self, row: dict) -> None:
        self._csv.writerow(row)
        self._csv_file.flush()  # (one write per update; the companion reads complete rows)

    def flush(self) -> None:
        self._csv_file.flush()

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.output_dir / "summary.json", summary)

    def close(self) -> None:
        """Stop writing: tell the companion the run is over, release the directory."""
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
            (self.output_dir / FINISHED).write_text(str(os.getpid()))
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def wait(self, timeout: float = 300.0) -> None:
        """Block until the companion has written the TensorBoard events and the learning curve."""
        if self.companion is not None:
            try:
                if self.companion.wait(timeout) != 0:
                    print(f"warning: TensorBoard events / learning curve incomplete; see {self.output_dir / 'outputs.log'}",
                          file=sys.stderr)
            except subprocess.TimeoutExpired:
                print(f"warning: the outputs companion (pid {self.companion.pid}) is still running", file=sys.stderr)
