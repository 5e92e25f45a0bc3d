#!/usr/bin/env python
"""The same train.py runs on CPU and CUDA: wall-clock and env steps/s per device, medians of --repeats.

    python benchmarks/devices.py --devices cpu cuda

  solve   the CartPole-v1 preset until the 20-episode evaluation reaches 475 (time from the start of training)
  large   CartPole-v1 with 1024 envs x 64 steps, 4 minibatches of 16384, 4 epochs, 1M steps, no evaluation
          (a batch large enough for a GPU to matter)
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "solve": ["--env", "CartPole-v1"],
    "large": ["--env", "CartPole-v1", "--num-envs", "1024", "--num-steps", "64", "--num-minibatches", "4",
              "--update-epochs", "4", "--total-timesteps", "1000000", "--eval-interval", "0", "--no-stop-at-target"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"torch {torch.__version__}, GPU: {name}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for work, flags in WORKLOADS.items():
            for device in args.devices:
                times, sps = [], []
                for seed in range(1, args.repeats + 1):
                    out = Path(tmp) / f"{work}-{device}-{seed}"
                    subprocess.run([sys.executable, str(REPO / "train.py"), *flags, "--device", device, "--seed", str(seed),
                                    "--no-progress", "--no-tensorboard", "--checkpoint-interval", "0", "--output-dir", str(out)],
                                   cwd=REPO, check=True, capture_output=True)
                    s = json.loads((out / "summary.json").read_text())
                    times.append(s["solved_at"]["time_s"] if work == "solve" and s["solved_at"] else s["wall_time_s"])
                    sps.append(s["global_step"] / s["wall_time_s"])
                rows.append((work, device, statistics.median(times), statistics.median(sps)))
                print(rows[-1], flush=True)
    print("\n| workload | device | seconds (median) | env steps/s (median) |\n|---|---|---|---|")
    for work, device, t, s in rows:
        print(f"| {work} | {device}{' (' + name + ')' if device.startswith('cuda') else ''} | {t:.2f} | {s:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
