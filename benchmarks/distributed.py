#!/usr/bin/env python
"""Env steps/s of the whole training loop for 1 process vs N torchrun processes, same total env count.

    python benchmarks/distributed.py --nproc 2 --env CartPole-v1 --num-envs 64 --total-timesteps 200000

Runs `train.py` (1 process) and `torchrun --nproc_per_node=N train.py` alternately, `--repeats` times each,
with evaluation and early stopping off, and reports median env steps/s from each run's summary.json.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(nproc: int, args, out: Path) -> float:
    common = ["--env", args.env, "--num-envs", str(args.num_envs), "--total-timesteps", str(args.total_timesteps),
              "--eval-interval", "0", "--no-stop-at-target", "--checkpoint-interval", "0", "--no-progress",
              "--no-tensorboard", "--output-dir", str(out), *args.extra]
    if nproc == 1:
        cmd = [sys.executable, str(REPO / "train.py"), *common]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO / "train.py"), *common]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    return summary["global_step"] / summary["wall_time_s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--num-envs", type=int, default=64, help="total envs, split across processes")
    p.add_argument("--total-timesteps", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("extra", nargs="*", help="further train.py flags (after --)")
    args = p.parse_args()
    sps = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for n in (1, args.nproc):
                sps[n].append(run(n, args, Path(tmp) / f"{n}-{i}"))
                print(f"  {n} process(es), run {i + 1}: {sps[n][-1]:,.0f} env steps/s", flush=True)
    one, many = statistics.median(sps[1]), statistics.median(sps[args.nproc])
    print(f"\n| processes | env steps/s (median of {args.repeats}) | speed-up |\n|---|---|---|")
    print(f"| 1 | {one:,.0f} | 1.00x |\n| {args.nproc} | {many:,.0f} | {many / one:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
