#!/usr/bin/env python
"""Does a run that stops as "solved" hand over a policy that is solved? Many seeds, held-out episodes.

    python benchmarks/held_out.py --env CartPole-v1 --seeds 1-40 --out benchmarks/results/held_out.jsonl

For each seed: the env's preset (train.py's defaults), trained in this process with TensorBoard and the plot off;
then the policy the run keeps (best/, what add_to_zoo.py and users take) plays 100 held-out deterministic episodes
(seed 3,000,000: neither the periodic evaluations' seeds from 1,000,000 nor the confirmations' from 1,500,000).
Prints the share of seeds whose kept policy holds the target on those episodes, and the training seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ppo2 import PPO2  # noqa: E402
from ppo2.config import TrainConfig  # noqa: E402
from ppo2.evaluate import evaluate_policy  # noqa: E402
from ppo2.trainer import Trainer  # noqa: E402

HELD_OUT_SEED = 3_000_000


def seeds_arg(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-40"))
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per seed here")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig overrides (JSON values)")
    args = p.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig.for_env(args.env, seed=seed, output_dir=tmp, tensorboard=False, plot=False,
                                      progress=False, **overrides)
            trainer = Trainer(cfg)
            t0 = time.perf_counter()
            trainer.learn()
            seconds = time.perf_counter() - t0
            trainer.close()
            kept = Path(tmp) / "best" if (Path(tmp) / "best" / "model.safetensors").exists() else Path(tmp)
            policy = PPO2.from_pretrained(kept)
            held = evaluate_policy(policy, args.env, args.episodes, seed=HELD_OUT_SEED)
        row = {"env": args.env, "seed": seed, "overrides": overrides, "steps": trainer.global_step,
               "train_s": round(seconds, 3), "stop_reason": trainer.stop_reason, "solved_at": trainer.solved_at,
               "held_out_mean": held["mean_reward"], "held_out_std": held["std_reward"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    threshold = TrainConfig.for_env(args.env).target_reward
    if threshold is None:
        from ppo2.envs import check_env_id

        threshold = check_env_id(args.env).reward_threshold
    held = [r["held_out_mean"] for r in rows]
    ok = sum(h >= threshold for h in held)
    print(f"{args.env}: kept policy >= {threshold} on {args.episodes} held-out episodes for {ok}/{len(rows)} seeds "
          f"({100 * ok / len(rows):.0f}%); held-out means min {min(held):.1f}, median {statistics.median(held):.1f}; "
          f"training median {statistics.median(r['train_s'] for r in rows):.2f} s, "
          f"steps median {statistics.median(r['steps'] for r in rows):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
