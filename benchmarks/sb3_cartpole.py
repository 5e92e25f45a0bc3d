#!/usr/bin/env python
"""The SB3 script a user would write to train CartPole-v1 to its threshold with RL-Zoo's tuned settings
(rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1): 8 envs, n_steps 32, batch 256, 20 epochs, gamma 0.98,
lambda 0.8, lr 1e-3 and clip 0.2 both linearly annealed, ent_coef 0, up to 1e5 steps; EvalCallback (20
deterministic episodes every 5k steps) stops at 475. benchmarks/whole_command.py times it as a process."""
import sys

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(1)  # as ppo2 (SB3 at its default thread count was slower here)
env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
callback = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=5000 // 8, n_eval_episodes=20,
                        deterministic=True, verbose=0)
model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
            learning_rate=lambda p: 1e-3 * p, clip_range=lambda p: 0.2 * p, ent_coef=0.0, seed=seed, device="cpu")
model.learn(100_000, callback=callback)
print(f"steps {model.num_timesteps} best {callback.best_mean_reward:.1f}")
