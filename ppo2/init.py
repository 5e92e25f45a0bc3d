"""Orthogonal initialisation (Saxe et al. 2014), as OpenAI baselines and CleanRL's `layer_init` use it. Kept over
torch.nn.init.orthogonal_ for a measured reason: torch's first call loads its LAPACK, ~100 ms of a ~2 s CartPole command
(benchmarks/results/one_network_2026-12-06_intel.txt).

`orthogonal_(weight, gain)` is `torch.nn.init.orthogonal_`: the same standard-normal draw from torch's
generator (so every later random number of a run is unchanged), the same sign convention (R's diagonal made
positive, which makes Q unique), the same reshaping of conv kernels. Only the QR factorisation differs: numpy's,
in float64. torch's float32 QR goes through its bundled LAPACK, which maps ~4 MB more of library code into
every training process for a handful of tiny factorisations (tests/test_model.py compares the two: they agree
to float32 rounding, within 2e-6 on the shapes tested).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["orthogonal_"]


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill `weight` (2-D or more: rows = weight.shape[0]) with a (semi-)orthogonal matrix times `gain`."""
    if weight.dim() < 2:
        raise ValueError(f"orthogonal_ needs a tensor with at least 2 dimensions, got shape {tuple(weight.shape)}")
    rows = weight.shape[0]
    cols = weight.numel() // rows
    draw = weight.new_empty((rows, cols)).normal_(0.0, 1.0)  # torch's draw, in torch's order
    a = draw.cpu().double().numpy()
    if rows < cols:
        a = a.T  # factor the tall orientation: Q's orthonormal columns become the rows
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    weight.view(rows, cols).copy_(torch.from_numpy(np.ascontiguousarray(q)))
    return weight.mul_(gain)
