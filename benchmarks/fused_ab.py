#!/usr/bin/env python
"""Interleaved A/B of the fused update across commits, and of the rollout's two ways of drawing actions.

    python benchmarks/fused_ab.py 6e7c58a HEAD [--rounds 100]     # ppo2/fused.py at each commit (or a file path)
    python benchmarks/fused_ab.py --collect [--rounds 200]         # per-step uniforms vs one block per rollout

RL-Zoo's CartPole settings (bench.py's throughput trial). Fused: `ppo2/fused.py` as it was at each commit, loaded
beside the working tree's package, each on its own copy of one model and Adam state, running a 20-epoch update of
the same batch in turn, round after round. Collect: the working tree's rollout with the numpy sampler drawing
`torch.rand(N, 1)` at every step, then with a `UniformBlock` drawing the rollout's uniforms at once. Printed: the
median time per gradient step (or per vector step) and the median of the per-round ratios to the first variant,
which machine noise that drifts over seconds cancels out of.
"""
import argparse
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import _ppo2_zoo_config, _update_kwargs  # noqa: E402

from ppo2.distributions import UniformBlock  # noqa: E402
from ppo2.speed import numpy_policy  # noqa: E402
from ppo2.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _fused_at(commit: str, i: int, tmp: Path):
    """FusedPPO from ppo2/fused.py at `commit` (or from the file `commit` names, for a variant not committed)."""
    path = tmp / f"fused_{i}.py"
    if Path(commit).is_file():
        path.write_text(Path(commit).read_text())
    else:
        path.write_text(subprocess.run(["git", "show", f"{commit}:ppo2/fused.py"], cwd=REPO, check=True,
                                       capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(f"ppo2.fused_variant{i}", path)  # a sibling of ppo2.fused
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FusedPPO


def _report(times: dict[str, list[float]], unit: str) -> None:
    first = next(iter(times.values()))
    for name, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(first, t))
        print(f"{name}: {statistics.median(t):,.1f} us per {unit} (median of {len(t)} rounds); "
              f"speed against the first: {ratio:.3f}x (median per-round ratio)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("commits", nargs="*", help="commits whose ppo2/fused.py to compare (the first is the baseline), "
                   "or paths of fused.py variants")
    p.add_argument("--collect", action="store_true", help="compare the rollout's action draws instead")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 100 for updates, 200 for rollouts)")
    args = p.parse_args()
    if not args.collect and len(args.commits) < 2:
        p.error("give two or more commits, or --collect")
    torch.set_num_threads(1)
    trainer = Trainer(_ppo2_zoo_config(0, 100_000))
    print(f"torch {torch.__version__}, 1 thread, RL-Zoo CartPole settings")
    if args.collect:
        steps = trainer.storage.values.shape[0]
        policy = numpy_policy(trainer.model)
        # (the collector's policy step: (obs, mask, memory) -> (actions, LSTM state or None))
        variants = {"torch.rand at every step": lambda: lambda obs, mask, memory: policy.sample(obs, None, mask, memory),
                    "UniformBlock per rollout": lambda: (lambda u: lambda obs, mask, memory:
                                                         policy.sample(obs, u, mask, memory))(UniformBlock(steps))}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds or 200):
            for name, make in variants.items():
                trainer.policy_step = make
                t0 = time.perf_counter()
                trainer.collect_rollout()
                times[name].append((time.perf_counter() - t0) / steps * 1e6)
        _report(times, f"vector step of {trainer.num_envs} envs")
        return
    trainer.collect_rollout()
    batch, _ = trainer.compute_batch()
    kw = dict(update_epochs=trainer.config.update_epochs, **_update_kwargs(trainer.config))
    with tempfile.TemporaryDirectory() as tmp:
        updates = {}
        for i, commit in enumerate(args.commits):
            model = copy.deepcopy(trainer.model)
            fused = _fused_at(commit, i, Path(tmp))(model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5))
            updates[f"{commit} ppo2/fused.py"] = fused
        times = {name: [] for name in updates}
        for fused in updates.values():
            fused.update(batch, **kw)  # warm-up
        for _ in range(args.rounds or 100):
            for name, fused in updates.items():
                t0 = time.perf_counter()
                fused.update(batch, **kw)
                times[name].append((time.perf_counter() - t0) / kw["update_epochs"] * 1e6)
        _report(times, "gradient step")


if __name__ == "__main__":
    main()
