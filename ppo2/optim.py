"""Adam's hyperparameters and moments for the fused update, in torch.optim.Adam's own layout.

The fused update (ppo2/fused.py) does Adam's arithmetic itself on flat buffers; it needs a torch optimizer
only as the place the moments live between updates and in checkpoints. Building a `torch.optim.Adam` costs
more than a whole CartPole run: its methods are wrapped by `torch._disable_dynamo`, whose first call imports
torch._dynamo (about 1.4 s here). `AdamState` holds the same `param_groups` and `state` and reads and
writes the same `state_dict()` as `torch.optim.Adam(..., fused=True)`, so checkpoints are interchangeable
(tests/test_fused.py loads one into the other), without importing torch.optim's machinery.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import torch

__all__ = ["AdamState"]


class AdamState:
    """A `torch.optim.Adam`-shaped container (one parameter group, no weight decay); it never steps."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups: list[dict[str, Any]] = [{
            "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0, "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": False, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)  # (as torch.optim's)

    def state_dict(self) -> dict:
        """torch.optim.Optimizer.state_dict's format: parameters named by their index."""
        params = self.param_groups[0]["params"]
        index = {id(p): i for i, p in enumerate(params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(params)))
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict written by this class or by torch.optim.Adam for the same parameters."""
        groups = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError(f"expected one parameter group of {len(params)} parameters, got "
                             f"{[len(g['params']) for g in groups]}")
        for key in ("weight_decay", "amsgrad", "maximize"):
            if groups[0].get(key):
                raise ValueError(f"the saved Adam state uses {key}={groups[0][key]}, which the fused update does not")
        position = {pid: i for i, pid in enumerate(groups[0]["params"])}
        state: dict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)
        for pid, saved in state_dict["state"].items():
            p = params[position[int(pid)]]
            for key in ("exp_avg", "exp_avg_sq"):
                if tuple(saved[key].shape) != tuple(p.shape):
                    raise ValueError(f"parameter {pid}: saved {key} has shape {tuple(saved[key].shape)}, the "
                                     f"parameter {tuple(p.shape)}")
            step = saved["step"]
            state[p] = {"step": torch.as_tensor(step, dtype=torch.float32).clone().to(p.device),
                        "exp_avg": saved["exp_avg"].to(p).clone(), "exp_avg_sq": saved["exp_avg_sq"].to(p).clone()}
        self.state = state
        self.param_groups[0].update({k: (tuple(v) if k == "betas" else v) for k, v in groups[0].items() if k != "params"})
