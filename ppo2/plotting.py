"""Learning curves from a run's metrics.csv (matplotlib, headless)."""
from __future__ import annotations

import csv
import os
from pathlib import Path


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    cols: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                cols.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
    return cols


def plot_learning_curve(metrics_csv: str | Path | None, out_png: str | Path, title: str = "",
                        target: float | None = None, runs: dict[str, str | Path] | None = None,
                        eval_deterministic: bool | dict[str, bool] = True) -> Path:
    """Training return (rolling, stochastic policy) and evaluation return (the most likely actions, or sampled ones
    for a run evaluated so: `eval_deterministic`, one for all or label -> bool) against env steps. `runs` plots
    several metrics files on one figure (label -> path) instead of one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for label, path in (runs or {"": metrics_csv}).items():
        m = read_metrics(path)
        steps = m["global_step"]
        line, = ax.plot(steps, m["episode_return"], lw=1.2, alpha=0.8, label=f"{label} train (stochastic)".strip())
        ev = [(s, r) for s, r in zip(steps, m["eval_return"]) if r == r]
        if ev:
            most_likely = eval_deterministic.get(label, True) if isinstance(eval_deterministic, dict) else eval_deterministic
            ax.plot(*zip(*ev), "o-", ms=3, lw=1.2, color=line.get_color(), alpha=0.6 if runs else 1.0,
                    label=f"{label} eval ({'deterministic' if most_likely else 'sampled actions'})".strip())
    if target is not None:
        ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    partial = out_png.with_name(f".{out_png.name}.partial.png")
    fig.savefig(partial)  # then renamed: whoever sees the file (a user, the companion's waiters) sees all of it
    plt.close(fig)
    os.replace(partial, out_png)
    return out_png


def main(argv: list[str] | None = None) -> int:
    """`python -m ppo2.plotting RUN [RUN ...] -o curves.png`: the learning curves of train.py runs on one figure (several
    seeds or settings side by side), each labelled by its directory's name and drawn with its own evaluation protocol
    (its train_config.json). A RUN is a run directory or a metrics.csv file."""
    import argparse
    import json

    about = main.__doc__.split(": ", 1)[1]  # (the docstring after its usage line)
    p = argparse.ArgumentParser(prog="python -m ppo2.plotting", description=about[0].upper() + about[1:])
    p.add_argument("runs", nargs="+", metavar="RUN", help="a train.py run directory, or its metrics.csv")
    p.add_argument("-o", "--output", default="learning_curves.png", help="the .png to write (default: %(default)s)")
    p.add_argument("--title", default="")
    p.add_argument("--target", type=float, default=None, help="draw this return as a dashed line")
    args = p.parse_args(argv)
    runs, protocol = {}, {}
    for run in map(Path, args.runs):
        csv_path = run / "metrics.csv" if run.is_dir() else run
        if not csv_path.is_file():
            p.error(f"{run}: no metrics.csv there (expected a train.py run directory or a metrics.csv file)")
        label = (csv_path.parent.name or str(csv_path.parent)) if len(args.runs) > 1 else ""
        if label in runs:
            label = str(csv_path.parent)
        runs[label] = csv_path
        config = csv_path.parent / "train_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("eval_deterministic", True)
            protocol[label] = value if isinstance(value, bool) else True
    out = plot_learning_curve(None, args.output, title=args.title, target=args.target, runs=runs,
                              eval_deterministic=protocol)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
