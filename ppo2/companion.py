"""The outputs companion: TensorBoard events and the learning curve, written beside a training run.

    python -m ppo2.companion RUN_DIR --parent PID [--tensorboard] [--plot --title T --target X]

ppo2.outputs.RunOutputs starts it with the run. It imports neither torch nor the rest of ppo2 (only the standard
library, tensorboard's event writer and, through ppo2.plotting, matplotlib), so it is ready to write within a
fraction of a second, while the run trains on the other core.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["FINISHED", "follow", "main"]

FINISHED = ".finished"  # written by the training process when it stops writing metrics.csv


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


class _EventWriter:
    """TensorBoard scalars through tensorboard's own event-file writer (the file format TensorBoard reads; torch's
    SummaryWriter wraps the same writer but would import torch into this process)."""

    def __init__(self, logdir: Path):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(logdir))

    def add_row(self, scalars: dict[str, float], step: int) -> None:
        values = [self._summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def close(self) -> None:
        self._writer.close()


def _preload(tensorboard: bool, plot: bool) -> None:
    """Import the writers now, while the run trains (this process has a core of its own): the files follow
    within moments of the run's end instead of after the imports."""
    if tensorboard:
        import tensorboard.summary.writer.event_file_writer  # noqa: F401
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401


def follow(run_dir: str | Path, parent: int | None = None, tensorboard: bool = True, plot: bool = False,
           title: str = "", target: float | None = None, after_update: int = 0, poll_s: float = 0.5,
           eval_deterministic: bool = True) -> None:
    """Follow `run_dir/metrics.csv` until the run has finished (its FINISHED marker, or its process gone):
    TensorBoard scalars for every complete row after `after_update`, then the learning curve."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    _preload(tensorboard, plot)
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
                    writer = _EventWriter(run_dir / "tb")
                step = int(record["global_step"])
                writer.add_row({f"{'eval' if key.startswith('eval') else 'train'}/{key}": float(value)
                                for key, value in record.items()
                                if key not in ("update", "global_step") and value != "" and not math.isnan(float(value))},
                               step)
        if finished:
            break
        time.sleep(poll_s)
    if writer is not None:
        writer.close()
    if plot and path.exists():
        from .plotting import plot_learning_curve

        plot_learning_curve(path, run_dir / "learning_curve.png", title, target, eval_deterministic=eval_deterministic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ppo2.companion", description="Write a run's TensorBoard events and "
                                "learning curve from its metrics.csv, following it while the run trains.")
    p.add_argument("run_dir")
    p.add_argument("--parent", type=int, default=None, help="pid of the training process (stop when it is gone)")
    p.add_argument("--after-update", type=int, default=0, help="skip rows up to this update (already written)")
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--plot", action="store_true")
    p.add_argument("--title", default="")
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--eval-sampled", action="store_true", help="the run's evaluations sample their actions")
    args = p.parse_args(argv)
    follow(args.run_dir, args.parent, args.tensorboard, args.plot, args.title, args.target, args.after_update,
           eval_deterministic=not args.eval_sampled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
