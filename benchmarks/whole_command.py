#!/usr/bin/env python
"""Speed as the user feels it: whole processes, imports included, side by side in one run.

    pip install -r benchmarks/requirements.txt
    python benchmarks/whole_command.py --seeds 20

Rows (each trial is a fresh process; ppo2 and SB3 trials alternate so machine noise hits both alike):

  command     `python train.py --env CartPole-v1 --seed S` (the README's command, defaults untouched: progress
              bar, checkpoints, TensorBoard and the plot on) from process start to exit, against
              benchmarks/sb3_cartpole.py (RL-Zoo's CartPole settings, EvalCallback stopping at 475). Median and
              90th percentile over the seeds, the ratio of medians and the median of per-seed ratios, peak RSS.
              The command returns once its companion process has written the TensorBoard events and the
              learning curve, so the clock includes them. Each seed also times
              `python -c "import torch"`: the floor, as slow or fast as the machine is that minute.
  hub         cold `torch.hub.load(<this clone>, 'ppo2', source='local', pretrained=True)` + a first
              `predict`, against `python -c "import torch"` (the floor any torch library pays).
  throughput  env steps/s of the whole training loop at identical RL-Zoo hyperparameters, 100k steps, and that
              run's peak RSS (benchmarks/bench.py's `throughput` trial: in-process, imports before the clock).

Threads: every process runs torch with 1 intra-op thread (ppo2's default; the SB3 script sets the same).

Byte code: pip byte-compiles what it installs (SB3, torch, gymnasium), but an editable install (ppo2 here)
gets its .pyc files written on first import, and never where PYTHONDONTWRITEBYTECODE is set, as on this
repository's CI machine, where every process would compile ppo2's sources again (~60 ms here). So the
benchmark first byte-compiles ppo2/ and hubconf.py (what a user's second run finds).
"""
from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def timed(cmd: list[str], cwd: Path | str = REPO, env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds from spawn to exit, peak RSS MB of that process, stdout+stderr tail)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    text = out.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text[-500:]


def companion_running(run_dir: Path) -> bool:
    """Whether the run's companion (`python -m ppo2.companion <run_dir>`) is alive: through Linux's /proc, or
    elsewhere until its last file, the learning curve, exists (TensorBoard is closed before the plot is drawn)."""
    if not Path("/proc").is_dir():
        return not (run_dir / "learning_curve.png").exists()
    needle = f"ppo2.companion\0{run_dir}\0".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                return True
        except OSError:  # (the process ended while we looked)
            continue
    return False


def wait_for_companion(run_dir: Path, timeout: float = 60.0) -> None:
    """Block (off the clock) until the companion that writes the run's TensorBoard events and plot is done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not companion_running(run_dir):
            return
        time.sleep(0.1)
    print(f"  warning: the outputs companion of {run_dir} still runs after {timeout} s", flush=True)


def pct(values, q):
    return float(np.percentile(np.asarray(values, float), q))


def command_row(seeds: int) -> dict:
    res = {"ppo2": [], "sb3": [], "ppo2_rss": [], "sb3_rss": [], "ppo2_steps": [], "torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, seeds + 1):
            out = Path(tmp) / f"run{seed}"
            wall, rss, text = timed([sys.executable, str(REPO / "train.py"), "--env", "CartPole-v1", "--seed", str(seed),
                                     "--output-dir", str(out)], cwd=tmp)
            wait_for_companion(out)
            res["ppo2"].append(wall)
            res["ppo2_rss"].append(rss)
            res["ppo2_steps"].append(int(text.split("done: ")[1].split()[0]))
            wall_sb3, rss_sb3, _ = timed([sys.executable, str(REPO / "benchmarks" / "sb3_cartpole.py"), str(seed)], cwd=tmp)
            res["sb3"].append(wall_sb3)
            res["sb3_rss"].append(rss_sb3)
            res["torch"].append(timed([sys.executable, "-c", "import torch"], cwd=tmp)[0])  # the floor, this minute
            print(f"  seed {seed}: ppo2 {wall:.2f} s ({res['ppo2_steps'][-1]} steps, {rss:.0f} MB), "
                  f"SB3 {wall_sb3:.2f} s ({rss_sb3:.0f} MB), import torch {res['torch'][-1]:.2f} s", flush=True)
    return res


def hub_row(trials: int) -> dict:
    load = ("import numpy as np, torch; m = torch.hub.load(%r, 'ppo2', source='local', pretrained=True); "
            "m.predict(np.zeros(4, np.float32))" % str(REPO))
    res = {"hub": [], "torch": []}
    for _ in range(trials):
        res["hub"].append(timed([sys.executable, "-c", load])[0])
        res["torch"].append(timed([sys.executable, "-c", "import torch"])[0])
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--hub-trials", type=int, default=10)
    p.add_argument("--throughput-seeds", type=int, default=5)
    p.add_argument("--only", default="command,hub,throughput")
    args = p.parse_args()
    only = set(args.only.split(","))
    # (py_compile writes the files whatever PYTHONDONTWRITEBYTECODE says; imports read them either way)
    if not (compileall.compile_dir(REPO / "ppo2", quiet=1) and compileall.compile_file(REPO / "hubconf.py", quiet=1)):
        raise RuntimeError("byte-compiling ppo2/ failed")
    rows = []
    if "command" in only:
        print(f"command: {args.seeds} seeds, ppo2 and SB3 alternating", flush=True)
        r = command_row(args.seeds)
        ratios = [b / a for a, b in zip(r["ppo2"], r["sb3"])]
        rows.append(f"| `python train.py --env CartPole-v1`, start to exit, median of {args.seeds} seeds | "
                    f"{statistics.median(r['ppo2']):.2f} s (p90 {pct(r['ppo2'], 90):.2f} s) | "
                    f"{statistics.median(r['sb3']):.2f} s (p90 {pct(r['sb3'], 90):.2f} s) | "
                    f"{statistics.median(r['sb3']) / statistics.median(r['ppo2']):.2f}x (per-seed median "
                    f"{statistics.median(ratios):.2f}x, min {min(ratios):.2f}x) |")
        rows.append(f"| `python -c \"import torch\"` alongside (the floor for any torch library), median | "
                    f"{statistics.median(r['torch']):.2f} s | | |")
        rows.append(f"| peak RSS of that command, median | {statistics.median(r['ppo2_rss']):.0f} MB | "
                    f"{statistics.median(r['sb3_rss']):.0f} MB | |")
        rows.append(f"| env steps to solve, median [p90] | {statistics.median(r['ppo2_steps']):.0f} "
                    f"[{pct(r['ppo2_steps'], 90):.0f}] | | |")
    if "hub" in only:
        print(f"hub: {args.hub_trials} trials", flush=True)
        r = hub_row(args.hub_trials)
        rows.append(f"| cold `torch.hub.load(..., pretrained=True)` + first `predict`, median of {args.hub_trials} | "
                    f"{statistics.median(r['hub']):.2f} s | `import torch`: {statistics.median(r['torch']):.2f} s | "
                    f"{statistics.median(r['hub']) / statistics.median(r['torch']):.2f}x of `import torch` |")
    if "throughput" in only:
        import bench

        print(f"throughput: {args.throughput_seeds} seeds", flush=True)
        r = bench.alternate("throughput", args.throughput_seeds)
        sps = {lib: statistics.median([t["sps"] for t in r[lib]]) for lib in r}
        rss = {lib: statistics.median([t["max_rss_mb"] for t in r[lib]]) for lib in r}
        pairs = [a["sps"] / b["sps"] for a, b in zip(r["ppo2"], r["sb3"])]
        rows.append(f"| training throughput at identical RL-Zoo settings, median of {args.throughput_seeds} | "
                    f"{sps['ppo2']:,.0f} steps/s | {sps['sb3']:,.0f} steps/s | {sps['ppo2'] / sps['sb3']:.2f}x "
                    f"(pairs {min(pairs):.2f}-{max(pairs):.2f}x) |")
        rows.append(f"| peak RSS of that run, median | {rss['ppo2']:.0f} MB | {rss['sb3']:.0f} MB | |")
    print("\n| figure | ppo2 | SB3 | ppo2 advantage |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
