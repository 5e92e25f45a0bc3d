#!/usr/bin/env python
"""Train a PPO2 policy:  python train.py --env CartPole-v1   (python train.py --help for every option).

Runs unchanged under torchrun for multi-process / multi-node training:
    torchrun --nproc_per_node=2 train.py --env CartPole-v1
"""
from ppo2.trainer import cli

if __name__ == "__main__":
    cli()
