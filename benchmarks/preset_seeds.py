#!/usr/bin/env python
"""How a preset fares across seeds: env steps (and seconds) until its stop-at-target evaluation passes.

    python benchmarks/preset_seeds.py --env CartPole-v1 --seeds 21-60
    python benchmarks/preset_seeds.py --env CartPole-v1 --seeds 21-60 --set ent_coef=0 update_epochs=6 gae_lambda=0.8

Each seed trains in this process with the env's preset (plus `--set` overrides) and no outputs beyond the
run directory's checkpoint-free minimum; the table gives the median and 90th percentile of env steps to
solve, and how many seeds never solved within the preset's budget (counted as not solved, never dropped).
This is how the CartPole preset was chosen: screened on seeds 1-20, confirmed on held-out seeds 21-60.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seeds", default="1-20", help="a range A-B (inclusive)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides")
    args = p.parse_args()
    import torch

    from ppo2.config import TrainConfig
    from ppo2.trainer import Trainer

    torch.set_num_threads(1)
    lo, hi = map(int, args.seeds.split("-"))
    overrides = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    steps, times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(lo, hi + 1):
            cfg = TrainConfig.for_env(args.env, seed=seed, output_dir=f"{tmp}/{seed}", tensorboard=False, plot=False,
                                      progress=False, checkpoint_interval=0, **overrides)
            trainer = Trainer(cfg)
            t0 = time.perf_counter()
            trainer.learn()
            times.append(time.perf_counter() - t0)
            trainer.close()
            steps.append(trainer.solved_at["global_step"] if trainer.solved_at else None)
            print(f"seed {seed}: {steps[-1] or 'not solved'} steps, {times[-1]:.2f} s", flush=True)
    solved = np.array([s if s is not None else np.inf for s in steps], float)
    print(f"\n{args.env} {overrides or '(preset)'} seeds {lo}-{hi}: median env steps to solve {np.median(solved):,.0f}, "
          f"p90 {np.percentile(solved, 90):,.0f}, not solved {sum(s is None for s in steps)}/{len(steps)}; "
          f"training seconds median {np.median(times):.2f}, p90 {np.percentile(times, 90):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
