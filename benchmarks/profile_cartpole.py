#!/usr/bin/env python
"""Where the time goes in one CartPole-v1 preset run: env steps, policy inference, update, evaluation, rest.

    python benchmarks/profile_cartpole.py [--seed 1] [--full]

Wraps the four phases with timers (the trainer itself is unchanged) and prints each one's share of the
wall-clock time of `learn()`. By default the run stops at the target like a user's run; --full trains
the whole 100k-step schedule without evaluations.
"""
import argparse
import time

import torch

from ppo2 import trainer as trainer_mod
from ppo2.config import TrainConfig
from ppo2.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--full", action="store_true")
    args = p.parse_args()
    extra = dict(stop_at_target=False, eval_interval=0) if args.full else {}
    cfg = TrainConfig.for_env("CartPole-v1", seed=args.seed, tensorboard=False, progress=False, checkpoint_interval=0,
                              output_dir="/tmp/ppo2-profile", **extra)
    t = Trainer(cfg)
    spent = {"env step": 0.0, "policy inference": 0.0, "update (ppo_update)": 0.0, "evaluation": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    t.envs.step = timed("env step", t.envs.step)
    t.model.policy_step = timed("policy inference", t.model.policy_step)
    trainer_mod.ppo_update = timed("update (ppo_update)", trainer_mod.ppo_update)
    t.evaluate = timed("evaluation", t.evaluate)
    t0 = time.perf_counter()
    t.learn()
    total = time.perf_counter() - t0
    spent["Python, GAE, logging, checkpoint, output"] = total - sum(spent.values())
    print(f"CartPole-v1 preset, seed {args.seed}: {t.global_step} env steps, {t.update} updates, {total:.2f} s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} thread)")
    print("\n| phase | seconds | share |\n|---|---|---|")
    for name, sec in spent.items():
        print(f"| {name} | {sec:.2f} | {100 * sec / total:.0f}% |")


if __name__ == "__main__":
    main()
