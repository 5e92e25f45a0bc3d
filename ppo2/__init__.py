"""ppo2: Proximal Policy Optimization for gymnasium, served through torch.hub.

    from ppo2 import PPO2, train
    model = train(env_id="CartPole-v1")          # or: python train.py --env CartPole-v1
    action, _ = model.predict(obs)
"""
from ._version import __version__  # noqa: E402

from .gae import compute_gae  # noqa: E402
from .losses import PPOLoss, a2c_loss, ppo_loss  # noqa: E402
from .model import PPO2  # noqa: E402


def __getattr__(name):  # the trainer pulls in gymnasium vector envs: import it on first use
    if name in ("train", "Trainer", "TrainConfig", "evaluate_policy"):
        from . import evaluate, trainer

        return {"train": trainer.train, "Trainer": trainer.Trainer, "TrainConfig": trainer.TrainConfig,
                "evaluate_policy": evaluate.evaluate_policy}[name]
    raise AttributeError(f"module 'ppo2' has no attribute {name!r}")


__all__ = ["PPO2", "PPOLoss", "ppo_loss", "a2c_loss", "compute_gae", "train", "Trainer", "TrainConfig",
           "evaluate_policy", "__version__"]
