#!/usr/bin/env python
"""One PPO gradient step, fused update vs the autograd reference: operations dispatched and time.

    python benchmarks/update_step.py [--repeats 7]

RL-Zoo's CartPole settings (bench.py's throughput trial: separate 64-64 towers, one minibatch of 256).
Every aten call reaching the dispatcher is counted (views and the backward's kernels included), per step,
as the difference between a 4-epoch and a 2-epoch update so the once-per-update work cancels out. Time per
step: a 20-epoch update on the same batch, the two paths alternating, best of 3 per measurement, median of
--repeats measurements. Then ppo2/speed.py's devices for that step (the CPU tanh, the private kernels against their
public fallbacks) and the loss head's arithmetic on torch tensors and on numpy arrays.
"""
import argparse
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import _ppo2_zoo_config, _update_kwargs  # noqa: E402

from ppo2 import speed  # noqa: E402
from ppo2.losses import normalize_advantages  # noqa: E402
from ppo2.trainer import Trainer, ppo_update  # noqa: E402


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    trainer = Trainer(_ppo2_zoo_config(0, 100_000))
    trainer.collect_rollout()
    batch, _ = trainer.compute_batch()
    kw = _update_kwargs(trainer.config)
    adam = torch.optim.Adam(trainer.model.parameters(), lr=1e-3, eps=1e-5, fused=True)  # (the --no-fused optimizer)
    paths = {"fused (ppo2/fused.py)": lambda epochs: trainer.fused.update(batch, update_epochs=epochs, **kw),
             "autograd (ppo_update)": lambda epochs: ppo_update(trainer.model, adam, batch, algo="ppo",
                                                                update_epochs=epochs, **kw)}
    for name, update in paths.items():
        update(1)  # warm-up: lazy imports, optimizer state
        counts = []
        for epochs in (2, 4):
            with CountOps() as counter:
                update(epochs)
            counts.append(counter.count)
        print(f"{name}: {(counts[1] - counts[0]) / 2:.0f} aten operations per gradient step")
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, update in paths.items():
            times[name].append(min(timeit.repeat(lambda: update(20), number=1, repeat=3)) / 20 * 1e6)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, us in medians.items():
        print(f"{name}: {us:,.0f} us per gradient step (median of {args.repeats})")
    fused, autograd = medians.values()
    print(f"fused update: {autograd / fused:.1f}x faster per gradient step")
    kernels(trainer, batch.obs.shape[0], args.repeats)
    loss_head(trainer, batch, kw, args.repeats)


def loss_head(trainer: Trainer, batch, kw: dict, repeats: int) -> None:
    """The loss head's per-sample arithmetic (FusedPPO._head_loss_and_gradient) on torch tensors and on the numpy
    arrays the CPU uses, for the first step of an update of this batch."""
    f = trainer.fused
    args = (kw["clip_range"], kw["ent_coef"], kw["vf_coef"], kw["clip_value_loss"])
    calls, default = [], f.xp
    x = trainer.model.normalize(batch.obs)
    fields = (f.one_hot(batch.actions), batch.neg_log_probs, batch.values, normalize_advantages(batch.advantages),
              batch.returns)
    n = x.shape[0]
    with torch.inference_mode():
        try:
            for xp in (torch, np):
                f.xp = xp
                f._step_buffers.pop(n, None)  # (its views are made for the library in use)
                bufs = f._buffers(n)
                f.forward(x, bufs)
                out, v, g_out, g_v = bufs["head"]
                inputs = f._head_inputs(*fields)[:5]  # (the sixth, the action masks: none here)
                calls.append(lambda xp=xp, a=(out, v, *inputs, g_out, g_v, *args, bufs["mean"]):
                             (setattr(f, "xp", xp), f._head_loss_and_gradient(*a)))
            a, b = _medians_us(calls, repeats)
        finally:
            f.xp = default
            f._step_buffers.pop(n, None)
    print(f"the loss head ({n} samples): torch tensors {a:.1f} us, numpy arrays {b:.1f} us ({a / b:.1f}x)")


def _medians_us(fns, repeats: int) -> list[float]:
    """Each function's time per call in us: best of 3 x 200 calls, the functions alternating, median of `repeats`."""
    t = [[min(timeit.repeat(fn, number=200, repeat=3)) / 200 * 1e6 for fn in fns] for _ in range(repeats)]
    return [statistics.median(col) for col in zip(*t)]


def kernels(trainer: Trainer, n: int, repeats: int) -> None:
    """ppo2/speed.py's devices for the fused step, each against its plain or public form, on this step's shapes."""
    f = trainer.fused
    T, H = f.T, f.H
    with torch.inference_mode():
        z, out = torch.randn(T, n, H), torch.empty(T, n, H)
        g, h = torch.randn(T, n, H), torch.rand(T, n, H)
        a, b = _medians_us((lambda: out.copy_(z).tanh_(), lambda: speed.tanh_(out.copy_(z))), repeats)  # (same copy)
        print(f"tanh of ({T}, {n}, {H}) ({speed.tanh_formula(z.numel())}): torch's tanh_ {a:.1f} us, speed.tanh_ {b:.1f} us "
              f"({a / b:.1f}x)")
        a, b = _both(lambda: speed.tanh_backward_(g.clone(), h), repeats)
        print(f"tanh backward on ({T}, {n}, {H}): public form {a:.1f} us, aten's kernel {b:.1f} us ({a / b:.1f}x)")
        (us,) = _medians_us((lambda: torch.bmm(z, torch.randn(T, H, H)),), repeats)
    print(f"one ({T}, {n}, {H}) x ({T}, {H}, {H}) batched matmul: {us:.1f} us")
    with torch.no_grad():
        a, b = _both(f.push, repeats, before=lambda: setattr(f, "_synced", None))
    print(f"copying parameters and Adam moments out of the flat buffers (push): one copy_ per tensor {a:.1f} us, "
          f"_foreach_copy_ {b:.1f} us ({a / b:.1f}x)")
    group = f.optimizer.param_groups[0]
    step = lambda: speed.adam_step_([f.flat], [f.grad], [f.exp_avg], [f.exp_avg_sq], [f.step_t], 0.0,  # noqa: E731
                                    group["betas"], group["eps"])  # (lr 0: the weights stay)
    f.step_t.fill_(max(f.step, 1))
    a, b = _both(step, repeats, before=lambda: f.step_t.fill_(max(f.step, 1)))
    print(f"one Adam step on the flat buffers: torch.optim.Adam(fused=True) {a:.1f} us, its kernel direct {b:.1f} us "
          f"({a / b:.1f}x)")


def _both(fn, repeats: int, before=lambda: None) -> list[float]:
    """fn's time with speed.USE_PRIVATE_KERNELS off, then on."""
    def run(private):
        def call():
            speed.USE_PRIVATE_KERNELS = private
            before()
            fn()
        return call
    try:
        return _medians_us((run(False), run(True)), repeats)
    finally:
        speed.USE_PRIVATE_KERNELS = True


if __name__ == "__main__":
    main()
