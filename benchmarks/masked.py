#!/usr/bin/env python
"""Masked PPO training throughput: ppo2 (masks found automatically) vs sb3-contrib's MaskablePPO, side by side,
at identical settings, alternating in fresh processes, medians of several rounds.

Task (`LegalChoice`, below): 16 actions, about half of them legal at each step (a fresh random set, at least one),
the observation shows which legal one pays 1; 100-step episodes; the env exposes `action_masks()` (sb3-contrib's
convention, which ppo2 also reads). An illegal action raises, so both libraries are checked to mask. Settings,
both: 8 envs x 256 steps, 10 epochs of minibatches of 256, lr 3e-4, gamma 0.99, lambda 0.95, clip 0.2, ent_coef 0,
separate 64-64 tanh towers for policy and value, one torch thread, CPU.

    pip install -r benchmarks/requirements.txt
    python benchmarks/masked.py --rounds 3
"""
from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from side_by_side import alternate, append_jsonl


class LegalChoice(gym.Env):
    def __init__(self, n: int = 16, length: int = 100):
        self.n, self.length = n, length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gym.spaces.Discrete(n)

    def _draw(self):
        self.legal = self.np_random.random(self.n) < 0.5
        self.legal[self.np_random.integers(self.n)] = True
        self.target = int(self.np_random.choice(np.flatnonzero(self.legal)))

    def _obs(self):
        obs = np.zeros(self.n, np.float32)
        obs[self.target] = 1.0
        return obs

    def action_masks(self) -> np.ndarray:
        return self.legal.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._obs(), {}

    def step(self, action):
        if not self.legal[int(action)]:
            raise AssertionError(f"illegal action {action}")
        reward = float(int(action) == self.target)
        self.t += 1
        self._draw()
        return self._obs(), reward, False, self.t >= self.length, {}


def register() -> None:
    if "LegalChoice-v0" not in gym.registry:
        gym.register("LegalChoice-v0", entry_point=LegalChoice)


PPO2 = """
import sys, time, torch
sys.path[:0] = [{root!r}, {bench!r}]
import masked; masked.register()
from ppo2.trainer import Trainer
from ppo2.config import TrainConfig
torch.set_num_threads(1)
cfg = TrainConfig.for_env("LegalChoice-v0", num_envs=8, num_steps=256, num_minibatches=8, update_epochs=10,
    learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, shared_latent=False,
    total_timesteps={steps}, eval_interval=0, stop_at_target=False, progress=False, tensorboard=False, plot=False,
    checkpoint_interval=0, output_dir={out!r}, overwrite=True, seed={seed})
trainer = Trainer(cfg)
assert trainer.model.mask_size == 16
trainer.evaluate = lambda *a, **k: None  # (the final evaluation is not training)
t0 = time.perf_counter()
trainer.learn()
print(trainer.global_step / (time.perf_counter() - t0))
"""

SB3 = """
import sys, time, torch
sys.path[:0] = [{root!r}, {bench!r}]
import masked
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env
torch.set_num_threads(1)
env = make_vec_env(masked.LegalChoice, n_envs=8, seed={seed})
model = MaskablePPO("MlpPolicy", env, n_steps=256, batch_size=256, n_epochs=10, learning_rate=3e-4, gamma=0.99,
    gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, seed={seed}, device="cpu")
t0 = time.perf_counter()
model.learn({steps})
print(model.num_timesteps / (time.perf_counter() - t0))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40960)
    p.add_argument("--out", default=None, help="append the result as a JSON line here")
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    common = dict(root=str(here.parent), bench=str(here), steps=args.steps)
    row = alternate(args.rounds, lambda seed: PPO2.format(out=f"/tmp/ppo2_bench_masked_{seed}", seed=seed, **common),
                    lambda seed: SB3.format(seed=seed, **common), "masked", "sb3-contrib MaskablePPO")
    append_jsonl(args.out, {"steps": args.steps, "rounds": args.rounds, **row})


if __name__ == "__main__":
    main()
