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


def plot_learning_curve(metrics_csv: str | Path, out_png: str | Path, title: str = "", target: float | None = None,
                        runs: dict[str, str | Path] | None = None, eval_deterministic: bool = True) -> Path:
    """Training return (rolling, stochastic policy) and evaluation return (the most likely actions, or sampled ones
    for a run evaluated so: `eval_deterministic`) against env steps. `runs` plots several metrics files on one figure
    (label -> path) instead of one."""
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
            ax.plot(*zip(*ev), "o-", ms=3, lw=1.2, color=line.get_color(), alpha=0.6 if runs else 1.0,
                    label=f"{label} eval ({'deterministic' if eval_deterministic else 'sampled actions'})".strip())
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


if __name__ == "__main__":  # python -m ppo2.plotting metrics.csv out.png [title] [target]
    import sys

    args = sys.argv[1:]
    plot_learning_curve(args[0], args[1], title=args[2] if len(args) > 2 else "",
                        target=float(args[3]) if len(args) > 3 else None)
