#!/usr/bin/env python
"""Pong agent steps/s of the whole training loop: ppo2's Pong preset against SB3 with RL-Zoo's Atari
settings, side by side in one run.

    pip install -r benchmarks/requirements.txt && pip install -e ".[atari]"
    python benchmarks/atari_throughput.py --trials 3 [--updates 4] [--device cpu] [--threads 1 2] [--processes 1 0]
                                          [--busy]

Both: 8 envs x 128 steps, 4 epochs of 4 minibatches (256), lr 2.5e-4 and clip 0.1 annealed, entropy 0.01,
the Nature CNN on 4 stacked 84x84 gray frames, one torch thread on CPU (ppo2: `--threads`, its
`torch_threads`, several side by side; `--processes`: as many ranks, train.py starting them as a user's
command does, 0 being the preset's one per core), no evaluation. `--busy` keeps one core busy with another process
(a Python loop) throughout: a shared machine. ppo2 steps ale-py's
own vector env (ALE/Pong-v5: sticky actions); SB3 its `make_atari_env` (PongNoFrameskip-v4 with
AtariWrapper, in a DummyVecEnv) + VecFrameStack(4), as RL-Zoo runs it. Each trial is a fresh process,
the two libraries alternating; the clock starts after the model and the envs are built and stops when
`--updates` rollouts and updates are done. Reported: medians and the per-pair ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS, ENVS = 128, 8


def trial_processes(updates: int, device: str, precision: str, threads: int, processes: int) -> dict:
    """ppo2 as `train.py --env Pong` runs it with --processes: its summary's steps over its training wall time
    (the same span as `trial`'s clock: from the start of learn() to its end)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(REPO / "train.py"), "--env", "Pong", "--total-timesteps",
                        str(updates * STEPS * ENVS), "--eval-interval", "0", "--checkpoint-interval", "0",
                        "--no-progress", "--no-tensorboard", "--no-plot", "--device", device, "--precision", precision,
                        "--torch-threads", str(threads), "--processes", str(processes), "--output-dir", tmp,
                        "--overwrite"], check=True, capture_output=True, text=True, cwd=REPO)
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    return {"sps": summary["global_step"] / summary["wall_time_s"], "steps": summary["global_step"],
            "precision": precision, "processes": summary["world_size"]}


def trial(lib: str, updates: int, device: str, precision: str = "auto", threads: int = 1) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(threads)
    total = updates * STEPS * ENVS
    if lib == "ppo2":
        from ppo2.config import TrainConfig
        from ppo2.trainer import Trainer

        cfg = TrainConfig.for_env("Pong", total_timesteps=total, eval_interval=0, checkpoint_interval=0,
                                  device=device, precision=precision, torch_threads=threads,
                                  output_dir="/tmp/ppo2-bench/atari", overwrite=True, progress=False, tensorboard=False,
                                  plot=False)
        trainer = Trainer(cfg)
        t0 = time.perf_counter()
        trainer.learn()
        return {"sps": trainer.global_step / (time.perf_counter() - t0), "steps": trainer.global_step,
                "precision": trainer.model.precision.name}
    import ale_py
    import gymnasium as gym
    import torch._dynamo  # noqa: F401  (torch.optim imports it when the optimizer is built: an import, not training)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=ENVS, seed=1), n_stack=4)
    model = PPO("CnnPolicy", env, n_steps=STEPS, batch_size=256, n_epochs=4, learning_rate=lambda p: 2.5e-4 * p,
                clip_range=lambda p: 0.1 * p, ent_coef=0.01, vf_coef=0.5, seed=1, device=device, verbose=0)
    t0 = time.perf_counter()
    model.learn(total)
    return {"sps": model.num_timesteps / (time.perf_counter() - t0), "steps": model.num_timesteps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", nargs="+", default=["auto"], choices=("auto", "float32", "bfloat16"),
                   help="ppo2's --precision; several run side by side (e.g. auto float32)")
    p.add_argument("--threads", nargs="+", type=int, default=[1],
                   help="ppo2's torch_threads; several run side by side (SB3 keeps one, its fastest here)")
    p.add_argument("--processes", nargs="+", type=int, default=[1],
                   help="ppo2's --processes (train.py starts the ranks; 0: one per core, the Atari presets' default)")
    p.add_argument("--busy", action="store_true", help="another process keeps one core busy throughout")
    p.add_argument("--trial", choices=("ppo2", "sb3"), help=argparse.SUPPRESS)  # (one trial, in this process)
    args = p.parse_args()
    if args.trial:
        print(json.dumps(trial(args.trial, args.updates, args.device, args.precision[0], args.threads[0])))
        return
    variants = [("ppo2", prec, th, n) for prec in args.precision for th in args.threads for n in args.processes
                if th == 1 or n == 1]  # (several ranks of several threads each oversubscribe the cores: not run)
    variants.append(("sb3", "float32", 1, 1))
    sb3 = variants[-1]
    runs: dict[tuple, list[float]] = {v: [] for v in variants}
    names: dict[tuple, str] = {}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        for i in range(args.trials):
            for lib, prec, th, n in variants:
                if lib == "ppo2" and n != 1:
                    result = trial_processes(args.updates, args.device, prec, th, n)
                else:
                    done = subprocess.run([sys.executable, __file__, "--trial", lib, "--updates", str(args.updates),
                                           "--device", args.device, "--precision", prec, "--threads", str(th)],
                                          capture_output=True, text=True, check=True, cwd=REPO)
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                runs[(lib, prec, th, n)].append(result["sps"])
                how = (f", {th} threads" if th != 1 else "") + (
                    f", --processes {n}: {result['processes']} ranks" if n != 1 else "")
                names[(lib, prec, th, n)] = (f"ppo2 --precision {prec} ({result['precision']}{how})" if lib == "ppo2"
                                             else "SB3 (RL-Zoo settings)")
                print(f"  trial {i + 1} {names[(lib, prec, th, n)]}: {result['sps']:,.0f} agent steps/s", flush=True)
    finally:
        if busy is not None:
            busy.kill()
    theirs = statistics.median(runs[sb3])
    print(f"\n| Pong, {args.updates} updates of {STEPS * ENVS} agent steps, {args.device}"
          f"{', one core kept busy' if args.busy else ''} | agent steps/s, median of "
          f"{args.trials} | / SB3 (pairs) |")
    print("|---|---|---|")
    for v in variants:
        ratios = sorted(a / b for a, b in zip(runs[v], runs[sb3]))
        ours = statistics.median(runs[v])
        print(f"| {names[v]} | {ours:,.0f} | {ours / theirs:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}x) |")


if __name__ == "__main__":
    main()
