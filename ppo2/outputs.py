"""Step 5's files: what a run writes to its output directory (rank 0 only).

    train_config.json   the resolved configuration
    metrics.csv         one row per update (METRICS), repaired on resume
    model.safetensors + config.json   the final policy (save_pretrained)
    summary.json        steps, time, stop reason, evaluations, update path, provenance
    tb/                 TensorBoard events (--tensorboard)        } written by a companion process that
    learning_curve.png  (--plot)                                  } follows metrics.csv

TensorBoard and matplotlib cost more to import (~1-2 s each here) than a CartPole run takes to train, so
the training process never imports them: a companion process (`python -m ppo2.outputs`, started with the
run) follows metrics.csv, writes the events as rows arrive (TensorBoard is live during long runs), draws the
learning curve once the run has finished, and exits. The command line does not wait for it; `ppo2.train()`
does (`RunOutputs.wait`), so Python callers find every file in place when it returns.

The directory is locked (ppo2/rundir.py) while the run writes, so two runs never mix their files.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from .io import atomic_write_json
from .rundir import RunLock, clear_run, repair_metrics

__all__ = ["METRICS", "RunOutputs", "follow"]

FINISHED = ".finished"  # written by the training process when it stops writing metrics.csv

METRICS = ("update", "global_step", "time_s", "sps", "episode_return", "episode_length", "episodes",
           "eval_return", "eval_std", "learning_rate", "clip_range", "loss", "pg_loss", "value_loss",
           "entropy", "approx_kl", "clip_fraction", "explained_variance", "epochs")


class RunOutputs:
    def __init__(self, output_dir: Path, config: dict, *, resumed_at: int, overwrite: bool, tensorboard: bool,
                 plot: bool = False, title: str = "", target: float | None = None):
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
        if not new:  # rows logged after the checkpoint we resume from (or torn by a crash) are dropped
            repair_metrics(path, METRICS, resumed_at)
        self._csv_file = open(path, "w" if new else "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=METRICS)
        if new:
            self._csv.writeheader()
            self._csv_file.flush()
        if tensorboard or plot:
            cmd = [sys.executable, "-m", "ppo2.outputs", str(self.output_dir), "--parent", str(os.getpid()),
                   "--after-update", str(resumed_at)]
            cmd += ["--tensorboard"] if tensorboard else []
            cmd += ["--plot", "--title", title] + (["--target", repr(float(target))] if target is not None else []) if plot else []
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

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the companion has written the TensorBoard events and the learning curve."""
        if self.companion is not None:
            try:
                if self.companion.wait(timeout) != 0:
                    print(f"warning: TensorBoard events / learning curve incomplete; see {self.output_dir / 'outputs.log'}",
                          file=sys.stderr)
            except subprocess.TimeoutExpired:
                print(f"warning: the outputs companion (pid {self.companion.pid}) is still running", file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# the companion process
# --------------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def follow(run_dir: str | Path, parent: int | None = None, tensorboard: bool = True, plot: bool = False,
           title: str = "", target: float | None = None, after_update: int = 0, poll_s: float = 0.5) -> None:
    """Follow `run_dir/metrics.csv` until the run has finished (its FINISHED marker, or its process gone):
    TensorBoard scalars for every complete row after `after_update`, then the learning curve."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    writer, header, offset, pending = None, None, 0, ""
    while True:
        finished = (run_dir / FINISHED).exists() or (parent is not None and not _alive(parent))
        if path.exists():
            with open(path, newline="") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            text = pending + chunk
            complete, _, pending = text.rpartition("\n")
            for row in csv.reader(io.StringIO(complete + "\n" if complete else "")):
                if header is None:
                    header = row
                    continue
                record = dict(zip(header, row))
                if not tensorboard or len(row) != len(header) or int(record["update"]) <= after_update:
                    continue
                if writer is None:
                    from torch.utils.tensorboard import SummaryWriter

                    writer = SummaryWriter(str(run_dir / "tb"))
                step = int(record["global_step"])
                for key, value in record.items():
                    if key in ("update", "global_step") or value == "":
                        continue
                    number = float(value)
                    if not math.isnan(number):
                        writer.add_scalar(f"{'eval' if key.startswith('eval') else 'train'}/{key}", number, step)
        if finished:
            break
        time.sleep(poll_s)
    if writer is not None:
        writer.close()
    if plot and path.exists():
        from .plotting import plot_learning_curve

        plot_learning_curve(path, run_dir / "learning_curve.png", title, target)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ppo2.outputs", description="Write a run's TensorBoard events and "
                                "learning curve from its metrics.csv, following it while the run trains.")
    p.add_argument("run_dir")
    p.add_argument("--parent", type=int, default=None, help="pid of the training process (stop when it is gone)")
    p.add_argument("--after-update", type=int, default=0, help="skip rows up to this update (already written)")
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--plot", action="store_true")
    p.add_argument("--title", default="")
    p.add_argument("--target", type=float, default=None)
    args = p.parse_args(argv)
    follow(args.run_dir, args.parent, args.tensorboard, args.plot, args.title, args.target, args.after_update)
    return 0


if __name__ == "__main__":
    sys.exit(main())
