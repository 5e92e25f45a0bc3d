#!/usr/bin/env python
"""Recurrent PPO training throughput: ppo2 `--recurrent` vs sb3-contrib's RecurrentPPO, side by side in one process
tree, at identical settings, alternating, medians of several rounds.

Task: CartPoleNoVel-v1 (ppo2/pomdp.py; for SB3 the same env through gymnasium). Settings, both libraries: 8 envs x 32
steps per rollout, 10 epochs of 2 minibatches (SB3 batch_size 128: 4 whole env sequences a minibatch in ppo2), gamma
0.98, lambda 0.8, lr 1e-3, ent_coef 0, one torch thread, CPU. Networks (the same shapes): an LSTM of `--lstm` units
after the observation, then two tanh layers of 64 per head, orthogonal init.
  shared:   one LSTM for actor and critic         (ppo2 default;  SB3 shared_lstm=True, enable_critic_lstm=False)
  separate: the critic has its own LSTM           (ppo2 --no-shared-lstm --no-shared-latent; SB3's default)

Each run trains `--steps` env steps from a fresh model (construction not timed) and reports env steps/s of
learn(). pip install -r benchmarks/requirements.txt first.

    python benchmarks/recurrent.py --rounds 3
"""
from __future__ import annotations

import argparse
from pathlib import Path

from side_by_side import alternate, append_jsonl

PPO2 = """
import sys, time, torch
sys.path.insert(0, {root!r})
from ppo2.trainer import Trainer
from ppo2.config import TrainConfig
torch.set_num_threads(1)
cfg = TrainConfig.for_env("CartPoleNoVel-v1", recurrent=True, lstm_hidden={lstm}, shared_lstm={shared},
    shared_latent=False, num_envs=8, num_steps=32, num_minibatches=2, update_epochs=10, gamma=0.98, gae_lambda=0.8,
    learning_rate=1e-3, ent_coef=0.0, clip_range=0.2, total_timesteps={steps}, eval_interval=0, stop_at_target=False,
    progress=False, tensorboard=False, plot=False, checkpoint_interval=0, output_dir={out!r}, overwrite=True,
    seed={seed})
trainer = Trainer(cfg)
trainer.evaluate = lambda *a, **k: None  # (the final evaluation is not training)
t0 = time.perf_counter()
trainer.learn()
print((trainer.global_step) / (time.perf_counter() - t0))
"""

SB3 = """
import sys, time, torch
sys.path.insert(0, {root!r})
import ppo2.envs  # registers CartPoleNoVel-v1
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
torch.set_num_threads(1)
env = make_vec_env("CartPoleNoVel-v1", n_envs=8, seed={seed})
model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=128, n_epochs=10, gamma=0.98, gae_lambda=0.8,
    learning_rate=1e-3, ent_coef=0.0, clip_range=0.2, seed={seed}, device="cpu",
    policy_kwargs=dict(lstm_hidden_size={lstm}, shared_lstm={shared}, enable_critic_lstm={critic},
                       net_arch=dict(pi=[64, 64], vf=[64, 64])))
t0 = time.perf_counter()
model.learn({steps})
print(model.num_timesteps / (time.perf_counter() - t0))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=16384)
    p.add_argument("--lstm", type=int, default=64)
    p.add_argument("--configs", nargs="+", default=["shared", "separate"], choices=["shared", "separate"])
    p.add_argument("--out", default=None, help="append the results as JSON lines here")
    args = p.parse_args()
    root = str(Path(__file__).resolve().parent.parent)
    for config in args.configs:
        shared = config == "shared"
        common = dict(root=root, lstm=args.lstm, steps=args.steps)
        row = alternate(args.rounds,
                        lambda seed: PPO2.format(shared=shared, out=f"/tmp/ppo2_bench_recurrent_{seed}", seed=seed, **common),
                        lambda seed: SB3.format(shared=shared, critic=not shared, seed=seed, **common),
                        config, "sb3-contrib RecurrentPPO")
        append_jsonl(args.out, {"config": config, "lstm": args.lstm, "steps": args.steps, "rounds": args.rounds, **row})


if __name__ == "__main__":
    main()
