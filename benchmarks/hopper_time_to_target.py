#!/usr/bin/env python
"""Wall-clock to reach a return of 2,000 on Hopper-v5: ppo2's preset against SB3 with RL-Zoo's Hopper
settings (benchmarks/sb3_hopper.py), side by side in one run.

    pip install -r benchmarks/requirements.txt
    python benchmarks/hopper_time_to_target.py --seeds 3 [--target 2000] [--max-steps 1000000]
    python benchmarks/hopper_time_to_target.py --first-seed 3 --seeds 2 --json R.json --append   # more seeds

Each trial is a fresh process; ppo2 and SB3 alternate seed by seed so machine noise hits both alike. Both
evaluate 5 deterministic episodes every ~10k steps (ppo2: every 5 updates of 2,048 steps; SB3: every 10,240
steps) and stop at the first evaluation whose mean reaches the target. Reported per trial: env steps and
seconds from the start of training to that evaluation (ppo2: its summary's `solved_at`, evaluation time
included; SB3: from building its envs to the stop), then medians and the per-seed ratios SB3 / ppo2 (a lower
bound, '>', where SB3 did not get there).
Both run with one torch thread. A run that never reaches the target within --max-steps counts as unsolved.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ppo2_trial(seed: int, target: float, max_steps: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="ppo2-hopper-")) / "run"
    cmd = [sys.executable, str(REPO / "train.py"), "--env", "Hopper-v5", "--seed", str(seed),
           "--target-reward", str(target), "--stop-at-target", "--eval-interval", "5", "--eval-episodes", "5",
           "--total-timesteps", str(max_steps), "--no-progress", "--no-tensorboard", "--no-plot",
           "--output-dir", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    summary = json.loads((out / "summary.json").read_text())
    solved = summary["solved_at"]
    return {"solved": solved is not None, "steps": solved["global_step"] if solved else summary["global_step"],
            "seconds": solved["time_s"] if solved else summary["wall_time_s"]}


def sb3_trial(seed: int, target: float, max_steps: int) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sb3_hopper.py"), str(seed), str(target),
                           str(max_steps)], check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="how many seeds")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--target", type=float, default=2000.0)
    p.add_argument("--max-steps", type=int, default=1_000_000)
    p.add_argument("--json", help="also write the raw trials here")
    p.add_argument("--append", action="store_true",
                   help="keep the trials already in --json (same target and cap) and report over all of them")
    args = p.parse_args()
    rows = []
    if args.append:
        if not args.json or not Path(args.json).exists():
            p.error("--append needs an existing --json file")
        rows = json.loads(Path(args.json).read_text())
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if any(r["seed"] == seed for r in rows):
            p.error(f"seed {seed} is already in {args.json}")
        ours = ppo2_trial(seed, args.target, args.max_steps)
        print(f"  seed {seed}: ppo2 {ours}", flush=True)
        theirs = sb3_trial(seed, args.target, args.max_steps)
        print(f"  seed {seed}: sb3  {theirs}", flush=True)
        rows.append({"seed": seed, "ppo2": ours, "sb3": theirs})
        if args.json:  # after every seed: an interrupted run keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1))

    def med(lib: str, key: str) -> float:
        return statistics.median(r[lib][key] for r in rows)

    both = [r for r in rows if r["ppo2"]["solved"] and r["sb3"]["solved"]]
    ratios = sorted(r["sb3"]["seconds"] / r["ppo2"]["seconds"] for r in both)
    for r in sorted(rows, key=lambda r: r["seed"]):
        ours, theirs = r["ppo2"], r["sb3"]
        ratio = theirs["seconds"] / ours["seconds"] if ours["solved"] else None
        shown = "-" if ratio is None else f"{'' if theirs['solved'] else '>'}{ratio:.1f}x"
        print(f"  seed {r['seed']}: ppo2 {ours['seconds']:.0f} s ({ours['steps']:,} steps{'' if ours['solved'] else ', not reached'}), "
              f"SB3 {theirs['seconds']:.0f} s ({theirs['steps']:,} steps{'' if theirs['solved'] else ', not reached'}): {shown}")
    print(f"\n| Hopper-v5, time to a {args.target:,.0f} evaluation ({len(rows)} seeds) | ppo2 | SB3 (RL-Zoo settings) |")
    print("|---|---|---|")
    print(f"| seconds, median | {med('ppo2', 'seconds'):.0f} | {med('sb3', 'seconds'):.0f} |")
    print(f"| env steps, median | {med('ppo2', 'steps'):,.0f} | {med('sb3', 'steps'):,.0f} |")
    print(f"| solved | {sum(r['ppo2']['solved'] for r in rows)}/{len(rows)} | {sum(r['sb3']['solved'] for r in rows)}/{len(rows)} |")
    if ratios:
        print(f"| SB3 / ppo2 seconds, per seed: median (min-max) | {statistics.median(ratios):.1f}x "
              f"({ratios[0]:.1f}-{ratios[-1]:.1f}x) | |")


if __name__ == "__main__":
    main()
