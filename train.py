#!/usr/bin/env python
"""Train a PPO2 policy:  python train.py --env CartPole-v1   (python train.py --help for every option).

Runs unchanged under torchrun for multi-process / multi-node training:
    torchrun --nproc_per_node=2 train.py --env CartPole-v1
"""
if __name__ == "__main__":
    import gc

    # Importing torch leaves ~260k objects that live as long as the process; the garbage collector would
    # scan them all in each full collection it runs meanwhile (~0.15 s here). cli() freezes them and turns
    # collection back on before any training code runs.
    gc.disable()
    from ppo2.trainer import cli

    cli()
