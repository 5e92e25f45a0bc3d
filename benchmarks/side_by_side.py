"""The loop benchmarks/recurrent.py and benchmarks/masked.py share: ppo2 and an sb3-contrib baseline alternating,
each trial a fresh `python -c` process that prints its env steps/s last, medians and per-pair ratios."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Callable


def run_snippet(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def alternate(rounds: int, ours: Callable[[int], str], theirs: Callable[[int], str], label: str,
              baseline: str) -> dict:
    """`rounds` pairs of trials (seeds 1..rounds), ppo2 first in each; prints each pair and the medians."""
    sps: dict[str, list[float]] = {"ppo2": [], "sb3": []}
    for seed in range(1, rounds + 1):
        sps["ppo2"].append(run_snippet(ours(seed)))
        sps["sb3"].append(run_snippet(theirs(seed)))
        print(f"{label} round {seed}: ppo2 {sps['ppo2'][-1]:.0f}, {baseline} {sps['sb3'][-1]:.0f} env steps/s", flush=True)
    mine, other = statistics.median(sps["ppo2"]), statistics.median(sps["sb3"])
    print(f"{label}: ppo2 {mine:.0f} vs {baseline} {other:.0f} env steps/s: {mine / other:.2f}x", flush=True)
    return {"ppo2_sps": sps["ppo2"], "sb3_sps": sps["sb3"], "ppo2_median": round(mine, 1), "sb3_median": round(other, 1),
            "ratio": round(mine / other, 2), "pair_ratios": [round(a / b, 2) for a, b in zip(sps["ppo2"], sps["sb3"])],
            "time": time.strftime("%Y-%m-%d %H:%M")}


def append_jsonl(path: str | None, row: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
