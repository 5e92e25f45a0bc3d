"""torchrun support: one process per rank, gradients averaged with an explicit all-reduce.

`torchrun --nproc_per_node=N train.py ...` sets RANK/WORLD_SIZE/MASTER_ADDR; `DistContext.from_env`
joins the process group (gloo on CPU, nccl on CUDA) with a timeout, so a lost rank fails the job
instead of hanging it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["DistContext"]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float = 300.0) -> "DistContext":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")), device=device)

    # -- collectives (no-ops in a single process) --------------------------------------------------
    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if self.enabled:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def average_gradients(self, module: torch.nn.Module) -> None:
        """All-reduce the gradients of every parameter into their mean over ranks (one flat buffer)."""
        if not self.enabled:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.all_reduce_mean_(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def all_reduce_mean_(self, tensor: torch.Tensor) -> None:
        """In place: the mean of `tensor` over ranks (ppo2.fused keeps its gradient in one flat buffer)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (used for stop decisions)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_flag(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item() > 0)

    def assert_in_sync(self, module: torch.nn.Module) -> str:
        """sha256 of this rank's parameters and buffers; raises if any rank holds different values."""
        import hashlib

        flat = torch.cat([t.detach().reshape(-1).double() for t in list(module.parameters()) + list(module.buffers())])
        digest = hashlib.sha256(flat.cpu().numpy().tobytes()).hexdigest()
        if self.enabled:
            gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
            dist.all_gather(gathered, flat)
            differ = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
            if differ:
                raise RuntimeError(f"ranks {differ} hold different weights from rank 0: distributed training diverged")
        return digest

    def barrier(self) -> None:
        """Wait for every rank (the end of a run: no rank tears its process group down while rank 0 still
        writes outputs, which gloo answers with an abort)."""
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
