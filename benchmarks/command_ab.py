#!/usr/bin/env python
"""A/B the whole command: `train.py` with two or more flag sets, alternating in fresh processes, paired by seed.

    python benchmarks/command_ab.py --seeds 1-20 --variant "--eval-interval 2" --variant "--eval-interval 4"
    python benchmarks/command_ab.py --seeds 21-40 --variant "" --variant "--eval-interval 3"

For each seed every variant runs once (the order rotates with the seed, so drift in the machine's speed hits
all variants alike): `python train.py --env ENV --seed S <variant>` from spawn to exit, imports included, with
the defaults' outputs (the companion process is let finish outside the clock). Prints each variant's median and
90th percentile of wall time and of env steps to solve, and the paired differences against the first variant.
Use it for choices that change only when a run stops or how fast it runs, not what it learns: those are
decided on env steps over many seeds (benchmarks/preset_seeds.py). Threads: ppo2's default, one.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from whole_command import REPO, timed, wait_for_companion  # (benchmarks/ is this script's sys.path[0])


def run(env_id: str, seed: int, flags: list[str]) -> tuple[float, int]:
    """(wall seconds from spawn to exit, env steps at the end) of one train.py process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, _, text = timed([sys.executable, str(REPO / "train.py"), "--env", env_id, "--seed", str(seed),
                               "--output-dir", str(out), *flags], cwd=tmp)
        wait_for_companion(out)  # (TensorBoard events, the plot: off the clock)
        if "done: " not in text:
            raise RuntimeError(f"train.py --seed {seed} {shlex.join(flags)} printed no 'done:' line:\n{text}")
        return wall, int(text.split("done: ")[1].split()[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seeds", default="1-20", help="a range A-B (inclusive)")
    p.add_argument("--variant", action="append", required=True,
                   help="extra train.py flags, one string per variant (\"\" for the defaults; a lone flag as "
                        "--variant=--no-plot); two or more")
    args = p.parse_args()
    if len(args.variant) < 2:
        p.error(f"give two or more --variant, got {len(args.variant)}")
    first, last = (int(x) for x in args.seeds.split("-"))
    variants = {v or "(defaults)": shlex.split(v) for v in args.variant}
    names = list(variants)
    wall = {n: [] for n in names}
    steps = {n: [] for n in names}
    for seed in range(first, last + 1):
        k = seed % len(names)
        for name in names[k:] + names[:k]:
            w, s = run(args.env, seed, variants[name])
            wall[name].append(w)
            steps[name].append(s)
        print(f"  seed {seed}: " + ", ".join(f"{n}: {steps[n][-1]} steps {wall[n][-1]:.2f} s" for n in names), flush=True)
    print(f"\n{args.env}, seeds {args.seeds}, train.py alternating in fresh processes\n")
    print("| variant | wall median (p90) | env steps median (p90) | paired wall vs first: median, mean |")
    print("|---|---|---|---|")
    for name in names:
        d = np.asarray(wall[name]) - np.asarray(wall[names[0]])
        paired = "" if name == names[0] else f"{np.median(d):+.3f} s, {d.mean():+.3f} s"
        print(f"| `{name}` | {statistics.median(wall[name]):.2f} s ({np.percentile(wall[name], 90):.2f} s) | "
              f"{statistics.median(steps[name]):,.0f} ({np.percentile(steps[name], 90):,.0f}) | {paired} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
