#!/usr/bin/env python
"""Where the time goes in one CartPole-v1 preset run: env steps, policy inference, update, evaluation, rest.

    python benchmarks/profile_cartpole.py [--seed 1] [--full | --zoo] [--no-fused]

Wraps the four phases with timers (the trainer itself is unchanged) and prints each one's share of the
wall-clock time of `learn()`. By default the run stops at the target like a user's run; --full trains
the whole 100k-step schedule without evaluations; --zoo runs bench.py's throughput trial instead (RL-Zoo's
hyperparameters, 100k steps). --no-fused profiles the autograd reference update.
"""
import argparse
import importlib
import time

import torch

from ppo2.config import TrainConfig
from ppo2.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--full", action="store_true")
    p.add_argument("--zoo", action="store_true")
    p.add_argument("--no-fused", dest="fused", action="store_false")
    args = p.parse_args()
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # torch.optim imports it lazily (~2 s): outside the clock, as in bench.py
    if args.zoo:
        from bench import _ppo2_zoo_config

        cfg = _ppo2_zoo_config(args.seed, 100_000, fused=args.fused)
        name = "RL-Zoo hyperparameters"
    else:
        extra = dict(stop_at_target=False, eval_interval=0) if args.full else {}
        cfg = TrainConfig.for_env("CartPole-v1", seed=args.seed, tensorboard=False, progress=False, plot=False,
                                  checkpoint_interval=0, output_dir="/tmp/ppo2-profile", overwrite=True, fused=args.fused, **extra)
        name = "preset"
    t = Trainer(cfg)
    spent = {"env step": 0.0, "policy inference": 0.0, "update": 0.0, "evaluation": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    t.envs.step = timed("env step", t.envs.step)
    t.sample_action = timed("policy inference", t.sample_action)
    policy_step = t.policy_step  # the rollout's sampler (numpy for small CPU batches, else sample_action)
    t.policy_step = lambda: timed("policy inference", policy_step())
    t.evaluate_rollout = timed("policy inference", t.evaluate_rollout)
    t.update_policy = timed("update", t.update_policy)
    t.evaluate = timed("evaluation", t.evaluate)
    t0 = time.perf_counter()
    t.learn()
    total = time.perf_counter() - t0
    spent["Python, GAE, logging, checkpoint, output"] = total - sum(spent.values())
    print(f"CartPole-v1 {name}, seed {args.seed}, {t.update_path} update: {t.global_step} env steps, {t.update} "
          f"updates, {total:.2f} s = {t.global_step / total:,.0f} env steps/s (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread)")
    print("\n| phase | seconds | share |\n|---|---|---|")
    for name, sec in spent.items():
        print(f"| {name} | {sec:.2f} | {100 * sec / total:.0f}% |")


if __name__ == "__main__":
    main()
