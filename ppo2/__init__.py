"""ppo2: Proximal Policy Optimization for gymnasium, served through torch.hub.

    from ppo2 import PPO2, train
    model = train(env_id="CartPole-v1")          # or: python train.py --env CartPole-v1
    action, _ = model.predict(obs)
"""
import importlib

from ._version import __version__  # noqa: E402

# Names are imported on first use: `import ppo2` (and a process that needs only a torch-free module, such as the
# outputs companion) does not pay for torch, gymnasium and the trainer until something asks for them.
_LAZY = {"PPO2": "model", "PPOLoss": "losses", "ppo_loss": "losses", "a2c_loss": "losses", "compute_gae": "gae",
         "train": "trainer", "Trainer": "trainer", "TrainConfig": "config", "evaluate_policy": "evaluate"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ppo2' has no attribute {name!r}")


__all__ = ["PPO2", "PPOLoss", "ppo_loss", "a2c_loss", "compute_gae", "train", "Trainer", "TrainConfig",
           "evaluate_policy", "__version__"]
