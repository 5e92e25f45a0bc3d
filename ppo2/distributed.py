"""torchrun support: one process per rank, gradients averaged with an explicit all-reduce.

`torchrun --nproc_per_node=N train.py ...` sets RANK/WORLD_SIZE/MASTER_ADDR; `DistContext.from_env`
joins the process group (gloo on CPU, nccl on CUDA) with a timeout, so a lost rank fails the job
instead of hanging it.

On one machine the command line starts the ranks itself (`--processes`, `launch_local`): `python -m ppo2`
once per rank, told its rank in torchrun's environment variables. Why processes and not threads: a conv
net's update on two torch threads synchronises its threads inside every kernel, and with another busy
process on the machine those waits multiply its time; processes of one thread each only meet once per
minibatch, in the all-reduce (benchmarks/atari_throughput.py measures both).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["DistContext", "resolve_processes", "launch_local"]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (macOS, Windows)
        return os.cpu_count() or 1


def resolve_processes(processes: int, num_envs: int, device: str) -> int:
    """The number of local processes a run asks for: `processes`, or for 0 one per usable core, as many as
    divide `num_envs` (every rank steps the same number of envs), and one where the device is a GPU."""
    if processes < 0:
        raise ValueError(f"processes must be 0 (one per core) or more, got {processes}")
    if processes:
        return processes
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return 1
    return max(n for n in range(1, min(usable_cores(), num_envs) + 1) if num_envs % n == 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(argv: list[str], processes: int, threads: int) -> int:
    """Run the command line `argv` as `processes` ranks on this machine (`python -m ppo2`, each told its rank as
    torchrun tells it, and `--processes` so that it trains instead of launching) and return their exit status.
    The ranks import the ppo2 this process imported. They run in their own session and this process forwards
    them a Ctrl-C or SIGTERM once: every rank finishes its update and rank 0 writes a checkpoint, as a signal to
    a single process does. A rank that fails stops the others (instead of leaving them waiting dist_timeout)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    port = free_port()  # (for rank 0's rendezvous store)
    root = str(Path(__file__).resolve().parent.parent)
    common = dict(os.environ, OMP_NUM_THREADS=str(threads), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                  WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes), PPO2_COMMAND=" ".join(sys.argv),
                  PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "ppo2", *argv, "--processes", str(processes)]
    procs = [subprocess.Popen(cmd, env=dict(common, RANK=str(r), LOCAL_RANK=str(r)), start_new_session=True)
             for r in range(processes)]

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signals = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        while [p.poll() for p in procs].count(None):  # (poll every rank: each poll sets its returncode)
            if any(p.returncode for p in procs):  # a rank failed: the others would wait for it in vain
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.2)
        return next((p.returncode for p in procs if p.returncode), 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs:  # (an exception in this process: do not leave the ranks running)
            if p.poll() is None:
                p.kill()


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

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (the same shape on each), in rank order, on every rank."""
        if not self.enabled:
            return [tensor]
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return out

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
