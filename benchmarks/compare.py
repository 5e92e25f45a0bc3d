#!/usr/bin/env python
"""Do two training variants learn equally well? Many seeds, interquartile means, bootstrap intervals.

    python benchmarks/compare.py --envs CartPole-v1 Acrobot-v1 --seeds 16 --jobs 2 \
        --variant fused= --variant autograd=--no-fused

Each (env, variant, seed) is one `train.py` run in a fresh process with the env's preset plus the variant's
flags; its *final* policy (not the best checkpoint) is evaluated on `--episodes` deterministic episodes that
no run trains or evaluates on (seeds from 3,000,000). Per env and variant the table gives the interquartile
mean (IQM) of the per-run scores with a 95% percentile-bootstrap confidence interval (rliable's
recommendation for few runs: Agarwal et al. 2021), and the difference of the IQMs with its own bootstrap
interval: an interval that excludes 0 is a difference, one that includes it is not evidence of one. With
several envs in one table the question "does any env show a difference?" is asked m times, so the verdict
uses Bonferroni-adjusted intervals (level 1 - 0.05/m, printed beside the 95% one): at 95% each, four envs
would flag a difference somewhere about one time in five when there is none.

`--metric steps` tables the env steps each run took instead: with the preset's stop at the target, the steps to a
confirmed solve, which still separates variants whose final policies all reach the ceiling.

Results are appended to `--results` as JSON lines, one per run, so an interrupted comparison continues where
it stopped (runs already recorded are skipped), and the table can be re-printed with `--table-only`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FRESH_SEED = 3_000_000


def iqm(scores: np.ndarray) -> float:
    """Mean of the middle 50% of the runs (trimmed 25% at each end, as scipy.stats.trim_mean(x, 0.25))."""
    x = np.sort(np.asarray(scores, np.float64))
    n = len(x)
    cut = int(np.floor(0.25 * n))
    return float(x[cut:n - cut].mean())


def bootstrap_ci(scores: np.ndarray, stat=iqm, reps: int = 5000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x = np.asarray(scores, np.float64)
    values = [stat(x[rng.integers(0, len(x), len(x))]) for _ in range(reps)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def difference_ci(a: np.ndarray, b: np.ndarray, reps: int = 5000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """(1 - alpha) bootstrap interval of IQM(a) - IQM(b), resampling the runs of each variant independently."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    values = [iqm(a[rng.integers(0, len(a), len(a))]) - iqm(b[rng.integers(0, len(b), len(b))]) for _ in range(reps)]
    return float(np.percentile(values, 50 * alpha)), float(np.percentile(values, 100 - 50 * alpha))


def one_run(env_id: str, variant: str, flags: str, seed: int, episodes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "train.py"), "--env", env_id, "--seed", str(seed), *shlex.split(flags),
               "--output-dir", f"{tmp}/run", "--no-progress", "--no-tensorboard", "--no-plot"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        code = ("import json, sys; from ppo2 import PPO2; from ppo2.evaluate import evaluate_policy; "
                "r = evaluate_policy(PPO2.from_pretrained(sys.argv[1]), sys.argv[2], int(sys.argv[3]), seed=int(sys.argv[4])); "
                "print(json.dumps(r['mean_reward']))")
        ev = subprocess.run([sys.executable, "-c", code, f"{tmp}/run", env_id, str(episodes), str(FRESH_SEED + 1000 * seed)],
                            cwd=REPO, capture_output=True, text=True, check=True)
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return {"env_id": env_id, "variant": variant, "flags": flags, "seed": seed, "score": json.loads(ev.stdout),
            "episodes": episodes, "wall_s": round(wall, 2), "steps": summary["global_step"],
            "update_path": summary.get("update_path"), "commit": (summary.get("provenance") or {}).get("commit")}


def table(records: list[dict], variants: list[str], family: int | None = None, metric: str = "score") -> str:
    """The comparison table; `family` is how many envs the question covers (default: those with records)."""
    lines = []
    envs = sorted({r["env_id"] for r in records})
    m = family or max(1, len(envs))
    header = "| env | " + " | ".join(f"{v}: IQM [95% CI] (runs)" for v in variants)
    if len(variants) == 2:
        header += (f" | IQM difference {variants[0]} - {variants[1]} [95% CI] | [{100 - 5 / m:.4g}% CI, Bonferroni "
                   f"over {m} envs]: verdict")
    lines += [header + " |", "|" + "---|" * (header.count("|"))]
    if len(variants) == 2 and not records:
        return "\n".join(lines)
    for env_id in envs:
        cells, scores = [], {}
        for v in variants:
            s = np.array([r[metric] for r in records if r["env_id"] == env_id and r["variant"] == v], np.float64)
            scores[v] = s
            if len(s) == 0:
                cells.append("-")
                continue
            lo, hi = bootstrap_ci(s)
            cells.append(f"{iqm(s):.2f} [{lo:.2f}, {hi:.2f}] ({len(s)})")
        row = f"| {env_id} | " + " | ".join(cells)
        if len(variants) == 2 and all(len(scores[v]) for v in variants):
            a, b = scores[variants[0]], scores[variants[1]]
            lo, hi = difference_ci(a, b)
            alo, ahi = difference_ci(a, b, alpha=0.05 / m)
            verdict = "no difference shown" if alo <= 0 <= ahi else ("higher" if alo > 0 else "lower")
            row += f" | {iqm(a) - iqm(b):+.2f} [{lo:+.2f}, {hi:+.2f}] | [{alo:+.2f}, {ahi:+.2f}]: {verdict}"
        lines.append(row + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "Pendulum-v1"])
    p.add_argument("--seeds", type=int, default=16, help="runs per (env, variant); seeds 1..N")
    p.add_argument("--variant", action="append", metavar="NAME=FLAGS",
                   help="a named set of extra train.py flags (give two); default: fused= and autograd=--no-fused")
    p.add_argument("--episodes", type=int, default=100, help="fresh evaluation episodes per run")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)), help="runs at a time (each uses one core)")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "compare.jsonl")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--metric", choices=("score", "steps"), default="score",
                   help="score: the final policy's return on the fresh episodes; steps: env steps the run took (with "
                        "the env's target and stop at target on, steps to a confirmed solve: lower is better)")
    args = p.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or ["fused=", "autograd=--no-fused"]))
    records = []
    if args.results.exists():
        records = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    wanted = [(e, v, s) for e in args.envs for s in range(1, args.seeds + 1) for v in variants]
    have = {(r["env_id"], r["variant"], r["seed"], r["flags"]) for r in records}
    todo = [(e, v, s) for e, v, s in wanted if (e, v, s, variants[v]) not in have]
    if not args.table_only and todo:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        print(f"{len(todo)} runs to do ({len(wanted) - len(todo)} already recorded), {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool, open(args.results, "a") as out:
            futures = [pool.submit(one_run, e, v, variants[v], s, args.episodes) for e, v, s in todo]
            for f in futures:
                r = f.result()
                out.write(json.dumps(r) + "\n")
                out.flush()
                records.append(r)
                print(f"{r['env_id']} {r['variant']} seed {r['seed']}: {r['score']:.2f} ({r['wall_s']} s)", flush=True)
    keep = [r for r in records if r["env_id"] in args.envs and r["variant"] in variants and r["flags"] == variants[r["variant"]]]
    print(table(keep, list(variants), family=len(args.envs), metric=args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
