#!/usr/bin/env python
"""One PPO gradient step, fused update vs the autograd reference: operations dispatched and time.

    python benchmarks/update_step.py [--repeats 7]

RL-Zoo's CartPole settings (bench.py's throughput trial: separate 64-64 towers, one minibatch of 256).
Every aten call reaching the dispatcher is counted (views and the backward's kernels included), per step,
as the difference between a 4-epoch and a 2-epoch update so the once-per-update work cancels out. Time per
step: a 20-epoch update on the same batch, the two paths alternating, best of 3 per measurement, median of
--repeats measurements. Then the kernel choices ppo2/fused.py makes, timed on that step's shapes, and its loss
head's arithmetic on torch tensors and on numpy arrays.
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

from ppo2 import fused as fused_mod  # noqa: E402
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
    fields = (trainer.model.normalize(batch.obs), f.one_hot(batch.actions), batch.neg_log_probs, batch.values,
              normalize_advantages(batch.advantages), batch.returns)
    args = (kw["clip_range"], kw["ent_coef"], kw["vf_coef"], kw["clip_value_loss"])
    calls, default = [], f.xp
    try:
        for xp in (torch, np):
            f.xp, f._minibatch = xp, None
            mb = f._minibatch_views(*fields)
            calls.append(lambda mb=mb, xp=xp: (setattr(f, "xp", xp), f._head_loss_and_gradient(mb, *args)))
        with torch.inference_mode():
            a, b = _medians_us(calls, repeats)
    finally:
        f.xp, f._minibatch = default, None
    print(f"the loss head ({fields[0].shape[0]} samples): torch tensors {a:.1f} us, numpy arrays {b:.1f} us ({a / b:.1f}x)")


def _medians_us(fns, repeats: int) -> list[float]:
    """Each function's time per call in us: best of 3 x 200 calls, the functions alternating, median of `repeats`."""
    t = [[min(timeit.repeat(fn, number=200, repeat=3)) / 200 * 1e6 for fn in fns] for _ in range(repeats)]
    return [statistics.median(col) for col in zip(*t)]


def kernels(trainer: Trainer, n: int, repeats: int) -> None:
    """The choices in ppo2/fused.py that depend on this machine's kernels, each against the plain torch form."""
    f = trainer.fused
    T, H, D = f.T, f.H, f.D
    with torch.inference_mode():
        z, out = torch.randn(T, n, H), torch.empty(T, n, H)
        g, x = torch.randn(T, n, H), torch.randn(n, D)
        grad_w1 = torch.empty(T, H, D)
        g_np, x_np, grad_w1_np = g.numpy(), x.numpy(), grad_w1.numpy()
        cases = {
            f"tanh of ({T}, {n}, {H}) ({fused_mod._tanh_name()})": (lambda: torch.tanh(z, out=out),
                                                                 lambda: fused_mod._tanh_(out.copy_(z))),
            f"first-layer weight gradient ({T}, {H}, {n}) x ({n}, {D}) (numpy on the CPU)": (
                lambda: torch.bmm(g.transpose(1, 2), x.expand(T, n, D), out=grad_w1),
                lambda: np.matmul(g_np.transpose(0, 2, 1), x_np, out=grad_w1_np)),
        }
        for name, (plain, chosen) in cases.items():
            a, b = _medians_us((plain, chosen), repeats)
            print(f"{name}: plain torch {a:.1f} us, fused.py's form {b:.1f} us ({a / b:.1f}x)")
    with torch.inference_mode():  # the step's three largest products are of this size (forward, and two backward)
        h, w = torch.randn(T, n, H), torch.randn(T, H, H)
        (us,) = _medians_us((lambda: torch.bmm(h, w),), repeats)
    print(f"one ({T}, {n}, {H}) x ({T}, {H}, {H}) batched matmul: {us:.1f} us")
    # FusedPPO.push copies parameters and both Adam moments back (under no_grad, as push runs): one multi-tensor
    # copy per kind against a copy per tensor
    params = [param for param, _, _ in f._pairs]
    moments = [(torch.zeros_like(q), torch.zeros_like(q)) for q in params]
    dst = [params, [m for m, _ in moments], [v for _, v in moments]]

    def per_tensor():
        for targets, views in zip(dst, f._flat_views):
            for target, view in zip(targets, views):
                target.copy_(view)

    def foreach():
        for targets, views in zip(dst, f._flat_views):
            torch._foreach_copy_(targets, views)
    with torch.no_grad():
        a, b = _medians_us((per_tensor, foreach), repeats)
    print(f"copying {len(params)} parameters and their 2 Adam moments out of the flat buffers: a copy per tensor "
          f"{a:.1f} us, one _foreach_copy_ per kind {b:.1f} us ({a / b:.1f}x)")


if __name__ == "__main__":
    main()
