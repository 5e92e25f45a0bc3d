"""Adam for ppo2's trainer, in torch.optim.Adam's own layout, without torch.optim's machinery.

The fused update (ppo2/fused.py) does Adam's arithmetic itself on flat buffers and needs an optimizer only as the
place the moments live between updates and in checkpoints; the autograd update (ppo2/update.py) calls `step()`.
Building a `torch.optim.Adam` costs more than a whole CartPole run: its methods are wrapped by
`torch._disable_dynamo`, whose first call imports torch._dynamo (about 1.4 s here), and each of its steps runs
more Python than a small network's whole update step. `AdamState` holds the same `param_groups` and `state`,
reads and writes the same `state_dict()` as `torch.optim.Adam(..., fused=True)`, so checkpoints are
interchangeable (tests/test_fused.py loads one into the other), and steps with that optimizer's own kernel
(ppo2.speed.adam_step_), so its steps are that optimizer's, bit for bit (tests/test_fused.py).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import torch

__all__ = ["AdamState", "adam_moments"]


def adam_moments(state: dict, param: torch.Tensor) -> dict[str, torch.Tensor]:
    """`param`'s entry of an Adam state (torch.optim.Adam's or AdamState's), made as torch.optim.Adam(fused=True)
    makes it on a parameter's first step (step 0, zero moments) where it is missing."""
    s = state[param]
    if "exp_avg" not in s:
        s["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
        s["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        s["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return s


class AdamState:
    """A `torch.optim.Adam`-shaped container (one parameter group, no weight decay). The fused update steps its
    moments itself; the autograd update calls `step()`, torch.optim.Adam(fused=True)'s kernel on the same lists
    (ppo2.speed.adam_step_), without torch.optim's per-step Python."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups: list[dict[str, Any]] = [{
            "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0, "amsgrad": False, "maximize": False,
            "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": False, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)  # (as torch.optim's)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step on every parameter with a gradient, as torch.optim.Adam(fused=True).step() takes it:
        moments made (zeros, step 0) on a parameter's first step, the step count advanced before the update."""
        from .speed import adam_step_

        params = [p for p in self.param_groups[0]["params"] if p.grad is not None]
        if not params:
            return
        states = [adam_moments(self.state, p) for p in params]
        torch._foreach_add_([s["step"] for s in states], 1.0)
        group = self.param_groups[0]
        adam_step_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                   [s["exp_avg_sq"] for s in states], [s["step"] for s in states], group["lr"], group["betas"],
                   group["eps"])

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
