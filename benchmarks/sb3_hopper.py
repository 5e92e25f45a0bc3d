#!/usr/bin/env python
"""The SB3 script a user would write to train Hopper-v5 with RL-Zoo's tuned PPO settings
(rl-baselines3-zoo hyperparams/ppo.yml, Hopper-v3): 1 env under VecNormalize (observations and rewards,
gamma 0.999), n_steps 512, batch 32, 5 epochs, gamma 0.999, lambda 0.99, lr 9.80828e-5, ent_coef 0.00229519,
clip 0.2, max_grad_norm 0.7, vf_coef 0.835671, separate 256-256 ReLU towers, log_std_init -2, no orthogonal
init. An EvalCallback (5 deterministic episodes every 10,240 steps, on an env sharing the normalisation
statistics) stops it at the target. Prints one JSON line: steps, seconds (training start to stop), solved.

    python benchmarks/sb3_hopper.py SEED [TARGET] [MAX_STEPS]
"""
import json
import sys
import time

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
target = float(sys.argv[2]) if len(sys.argv) > 2 else 2000.0
max_steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
torch.set_num_threads(1)  # as ppo2
t0 = time.perf_counter()
env = VecNormalize(make_vec_env("Hopper-v5", n_envs=1, seed=seed), gamma=0.999)
eval_env = VecNormalize(make_vec_env("Hopper-v5", n_envs=1, seed=seed + 1000), training=False, norm_reward=False)
stop = StopTrainingOnRewardThreshold(reward_threshold=target, verbose=0)
callback = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=10_240, n_eval_episodes=5,
                        deterministic=True, verbose=0)
model = PPO("MlpPolicy", env, n_steps=512, batch_size=32, n_epochs=5, gamma=0.999, gae_lambda=0.99,
            learning_rate=9.80828e-05, ent_coef=0.00229519, clip_range=0.2, max_grad_norm=0.7, vf_coef=0.835671,
            policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.ReLU,
                               net_arch=dict(pi=[256, 256], vf=[256, 256])), seed=seed, device="cpu")
model.learn(max_steps, callback=callback)
print(json.dumps({"steps": model.num_timesteps, "seconds": time.perf_counter() - t0,
                  "solved": bool(callback.best_mean_reward >= target), "best": float(callback.best_mean_reward)}))
