#!/usr/bin/env python
"""ppo2 vs Stable-Baselines3, side by side on this machine.

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench.py                       # everything, prints a markdown table
    python benchmarks/bench.py --only solve --seeds 5
    python benchmarks/bench.py --only throughput --baseline 2284e65   # and ppo2 at that commit, in turn

Every trial runs in a fresh subprocess (no shared warm-up, and its peak RSS is its own); ppo2 and SB3
trials alternate so machine noise hits both alike. Reported: medians, and the ratio ours/theirs
(or theirs/ours, whichever is "how many times better ppo2 is").

  solve       wall-clock from the start of training (model + env construction included) until a
              deterministic 20-episode evaluation first averages >= 475 on CartPole-v1, evaluation time
              included. ppo2: its CartPole preset (evaluates every 2 updates). SB3: RL-Zoo's tuned
              CartPole hyperparameters with EvalCallback(20 episodes every 5k steps) + StopTrainingOnRewardThreshold.
  throughput  env steps/s of the whole training loop at identical hyperparameters (RL-Zoo's CartPole
              settings: 8 envs, n_steps 32, batch 256, 20 epochs, gamma 0.98, lambda 0.8, linear lr 1e-3
              and clip 0.2, separate 64-64 tanh policy/value networks), 100k steps, no evaluation.
  collect     rollout collection only (policy inference + env steps), env steps/s at 8, 64, 1024 envs.
  inference   one-observation latency and 1024-observation throughput of the deterministic policy:
              ppo2 eval_fn and predict, SB3 predict, and a bare torch.nn.Sequential of the same shape.
  memory      peak RSS of a 100k-step training run at identical hyperparameters.

Both libraries run with torch.set_num_threads(1) (faster for both on small MLPs; SB3 at its default
thread count was slower here). Imports happen before any clock starts, for both libraries, including
torch._dynamo for SB3, which torch.optim imports lazily the first time an optimizer is built (~1.4 s here;
ppo2's default path builds no torch optimizer). benchmarks/whole_command.py times whole processes instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZOO_HP = dict(num_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, lr=1e-3, clip=0.2)


# ---------------------------------------------------------------------------------------------------
# trials (each runs in its own process)
# ---------------------------------------------------------------------------------------------------

def _quiet(lib: str = "sb3"):
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    if lib == "sb3":  # torch.optim imports torch._dynamo on first use (~1.4 s here): an import, not training
        import torch._dynamo  # noqa: F401  (ppo2's default path builds no torch optimizer and never imports it)
    torch.set_num_threads(1)


def trial_solve(lib: str, seed: int) -> dict:
    _quiet(lib)
    if lib == "ppo2":
        from ppo2.config import TrainConfig
        from ppo2.trainer import Trainer

        t0 = time.perf_counter()
        cfg = TrainConfig.for_env("CartPole-v1", seed=seed, output_dir=f"/tmp/ppo2-bench/solve-{seed}", overwrite=True,
                                  tensorboard=False, progress=False, checkpoint_interval=0)
        trainer = Trainer(cfg)
        t_build = time.perf_counter() - t0
        trainer.learn()  # stops at the first evaluation >= 475
        solved = trainer.solved_at
        return {"solved": solved is not None, "time_s": t_build + solved["time_s"] if solved else None,
                "steps": solved["global_step"] if solved else None}
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    t0 = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=ZOO_HP["num_envs"], seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    callback = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=5000 // ZOO_HP["num_envs"],
                            n_eval_episodes=20, deterministic=True, verbose=0)
    model = _sb3_model(env, seed)
    model.learn(100_000, callback=callback)
    elapsed = time.perf_counter() - t0
    solved = callback.best_mean_reward >= 475
    return {"solved": solved, "time_s": elapsed if solved else None, "steps": model.num_timesteps if solved else None}


def _sb3_model(env, seed):
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", env, n_steps=ZOO_HP["n_steps"], batch_size=ZOO_HP["batch_size"], n_epochs=ZOO_HP["n_epochs"],
               gamma=ZOO_HP["gamma"], gae_lambda=ZOO_HP["gae_lambda"], learning_rate=lambda p: ZOO_HP["lr"] * p,
               clip_range=lambda p: ZOO_HP["clip"] * p, ent_coef=0.0, seed=seed, device="cpu", verbose=0)


def _ppo2_zoo_config(seed: int, total: int, **kw):
    from ppo2.config import TrainConfig

    return TrainConfig(env_id="CartPole-v1", total_timesteps=total, seed=seed, num_envs=ZOO_HP["num_envs"],
                       num_steps=ZOO_HP["n_steps"], num_minibatches=ZOO_HP["num_envs"] * ZOO_HP["n_steps"] // ZOO_HP["batch_size"],
                       update_epochs=ZOO_HP["n_epochs"], gamma=ZOO_HP["gamma"], gae_lambda=ZOO_HP["gae_lambda"],
                       learning_rate=ZOO_HP["lr"], anneal_lr=True, clip_range=ZOO_HP["clip"], anneal_clip_range=True,
                       clip_value_loss=False, shared_latent=False, eval_interval=0, checkpoint_interval=0,
                       stop_at_target=False, tensorboard=False, progress=False, plot=False,
                       output_dir=f"/tmp/ppo2-bench/run-{seed}", overwrite=True, **kw).validated()


def _update_kwargs(cfg) -> dict:
    """The keyword arguments of one update (`FusedPPO.update` / `ppo_update`, less `update_epochs`) as the trainer
    passes them for `cfg` at its first update (before any annealing)."""
    return dict(num_minibatches=cfg.num_minibatches, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                clip_value_loss=cfg.clip_value_loss)


def trial_throughput(lib: str, seed: int, total: int = 100_000) -> dict:
    _quiet(lib)
    if lib == "ppo2":
        from ppo2.trainer import Trainer

        trainer = Trainer(_ppo2_zoo_config(seed, total))
        t0 = time.perf_counter()
        trainer.learn()
        elapsed = time.perf_counter() - t0
        steps = trainer.global_step
    else:
        from stable_baselines3.common.env_util import make_vec_env

        model = _sb3_model(make_vec_env("CartPole-v1", n_envs=ZOO_HP["num_envs"], seed=seed), seed)
        t0 = time.perf_counter()
        model.learn(total)
        elapsed = time.perf_counter() - t0
        steps = model.num_timesteps
    return {"sps": steps / elapsed, "time_s": elapsed, "steps": steps,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def trial_collect(lib: str, seed: int, num_envs: int) -> dict:
    _quiet(lib)
    steps_per_env = max(16, 16384 // num_envs)
    if lib == "ppo2":
        from ppo2.config import TrainConfig
        from ppo2.trainer import Trainer

        cfg = TrainConfig.for_env("CartPole-v1", num_envs=num_envs, num_steps=steps_per_env, num_minibatches=1,
                                  total_timesteps=num_envs * steps_per_env, seed=seed, tensorboard=False,
                                  progress=False, output_dir="/tmp/ppo2-bench/collect")
        trainer = Trainer(cfg)
        trainer.collect_rollout()  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            trainer.collect_rollout()
        elapsed = time.perf_counter() - t0
    else:
        from stable_baselines3.common.env_util import make_vec_env

        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=num_envs, seed=seed), n_steps=steps_per_env,
                    batch_size=num_envs * steps_per_env, device="cpu", seed=seed, verbose=0)
        _, callback = model._setup_learn(10 ** 9, callback=None)
        callback.on_training_start(locals(), globals())
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=steps_per_env)
        t0 = time.perf_counter()
        for _ in range(3):
            model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=steps_per_env)
        elapsed = time.perf_counter() - t0
    return {"sps": 3 * num_envs * steps_per_env / elapsed}


def trial_inference(lib: str, seed: int) -> dict:
    _quiet(lib)
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    one = rng.normal(size=4).astype(np.float32)
    batch = rng.normal(size=(1024, 4)).astype(np.float32)

    def timeit(fn, n):
        for _ in range(50):
            fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    out = {}
    if lib == "ppo2":
        sys.path.insert(0, str(REPO))
        import hubconf

        model = hubconf.ppo2(pretrained=True)
        act = hubconf.eval_fn(model)
        out["eval_fn_1_us"] = 1e6 * timeit(lambda: act(one), 3000)
        out["predict_1_us"] = 1e6 * timeit(lambda: model.predict(one, deterministic=True), 3000)
        out["predict_1024_obs_per_s"] = 1024 / timeit(lambda: model.predict(batch, deterministic=True), 300)
    elif lib == "sb3":
        from stable_baselines3.common.env_util import make_vec_env

        model = _sb3_model(make_vec_env("CartPole-v1", n_envs=1, seed=seed), seed)
        out["predict_1_us"] = 1e6 * timeit(lambda: model.predict(one, deterministic=True), 3000)
        out["predict_1024_obs_per_s"] = 1024 / timeit(lambda: model.predict(batch, deterministic=True), 300)
    else:  # bare network of the zoo policy's shape: 4-64-64-2 tanh MLP
        net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                  torch.nn.Linear(64, 2)).eval()

        def bare(x):
            with torch.no_grad():
                return net(torch.from_numpy(x)).argmax(-1).numpy()

        out["predict_1_us"] = 1e6 * timeit(lambda: bare(one[None]), 3000)
        out["predict_1024_obs_per_s"] = 1024 / timeit(lambda: bare(batch), 300)
    return out


TRIALS = {"solve": trial_solve, "throughput": trial_throughput, "collect": trial_collect, "inference": trial_inference}


# ---------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------

def run_trial(kind: str, lib: str, seed: int, *extra, repo: Path = REPO) -> dict:
    """One trial in a fresh process; `repo`: another checkout whose ppo2 (and bench.py) to run instead."""
    cmd = [sys.executable, str(repo / "benchmarks" / "bench.py"), "_trial", kind, lib, str(seed), *map(str, extra)]
    env = None if repo == REPO else {**os.environ, "PYTHONPATH": str(repo)}  # (ahead of the installed ppo2)
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def alternate(kind: str, seeds: int, baseline: tuple[str, Path] | None = None) -> dict[str, list[dict]]:
    """Trials of `kind` for seeds 1..seeds, ppo2 then SB3 back to back for each seed (then ppo2 at the
    `baseline` (name, checkout), where given)."""
    repos = {"ppo2": REPO, "sb3": REPO, **({baseline[0]: baseline[1]} if baseline else {})}
    res: dict[str, list[dict]] = {name: [] for name in repos}
    for seed in range(1, seeds + 1):
        for name, repo in repos.items():
            res[name].append(run_trial(kind, "sb3" if name == "sb3" else "ppo2", seed, repo=repo))
            print(f"  {kind} {name} seed {seed}: {res[name][-1]}", flush=True)
    return res


@contextlib.contextmanager
def checkout(ref: str | None):
    """(f"ppo2 at {ref}", a temporary git worktree of this repository at `ref`), removed after; None for no ref."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ppo2"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), ref], cwd=REPO, check=True)
        try:
            yield f"ppo2 at {ref}", path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=True)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_trial":
        kind, lib, seed, *extra = sys.argv[2:]
        print(json.dumps(TRIALS[kind](lib, int(seed), *map(int, extra))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="solve,throughput,collect,inference",
                   help="comma-separated subset of solve,throughput,collect,inference (memory comes with throughput)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (trials per library) for solve and throughput")
    p.add_argument("--json", help="also write all raw trial results here")
    p.add_argument("--baseline", metavar="REF", help="throughput: also run ppo2 as it was at this git commit, third in "
                   "each seed's turn, to measure a change against SB3 in the same minutes")
    args = p.parse_args()
    only = set(args.only.split(","))
    raw: dict = {}
    rows = []
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {torch.__version__}", flush=True)

    if "solve" in only:
        raw["solve"] = res = alternate("solve", args.seeds)
        ours, theirs = med([r["time_s"] for r in res["ppo2"]]), med([r["time_s"] for r in res["sb3"]])
        rows.append(("Time to solve CartPole-v1 (s, median of %d seeds)" % args.seeds, f"{ours:.2f}", f"{theirs:.2f}",
                     f"{theirs / ours:.1f}x faster"))
        rows.append(("  env steps to solve (median)", f"{med([r['steps'] for r in res['ppo2']]):,.0f}",
                     f"{med([r['steps'] for r in res['sb3']]):,.0f}", ""))
        rows.append(("  seeds solved", f"{sum(r['solved'] for r in res['ppo2'])}/{args.seeds}",
                     f"{sum(r['solved'] for r in res['sb3'])}/{args.seeds}", ""))

    if "throughput" in only:
        with checkout(args.baseline) as baseline:
            raw["throughput"] = res = alternate("throughput", args.seeds, baseline)
        ours, theirs = med([r["sps"] for r in res["ppo2"]]), med([r["sps"] for r in res["sb3"]])
        # each seed's two runs are back to back, so their ratio sees the same machine load
        pairs = sorted(a["sps"] / b["sps"] for a, b in zip(res["ppo2"], res["sb3"]))
        rows.append(("Training throughput, identical hyperparameters (env steps/s)", f"{ours:,.0f}", f"{theirs:,.0f}",
                     f"{ours / theirs:.1f}x faster"))
        rows.append(("  ratio of back-to-back pairs: median (min-max)", "", "",
                     f"{statistics.median(pairs):.1f}x ({pairs[0]:.1f}-{pairs[-1]:.1f})"))
        if baseline:
            name = baseline[0]
            base = med([r["sps"] for r in res[name]])
            pairs = sorted(a["sps"] / b["sps"] for a, b in zip(res[name], res["sb3"]))
            rows.append((f"  {name} (env steps/s)", f"{base:,.0f}", "",
                         f"{base / theirs:.1f}x faster; pairs {statistics.median(pairs):.1f}x ({pairs[0]:.1f}-{pairs[-1]:.1f})"))
            gains = sorted(a["sps"] / b["sps"] for a, b in zip(res["ppo2"], res[name]))
            rows.append((f"  this checkout against {name}", "", "",
                         f"{ours / base:.2f}x; per seed {statistics.median(gains):.2f}x ({gains[0]:.2f}-{gains[-1]:.2f})"))
        m_ours, m_theirs = med([r["max_rss_mb"] for r in res["ppo2"]]), med([r["max_rss_mb"] for r in res["sb3"]])
        rows.append(("Peak memory of that training run (max RSS, MB)", f"{m_ours:.0f}", f"{m_theirs:.0f}",
                     f"{m_theirs / m_ours:.2f}x less" if m_ours <= m_theirs else f"{m_ours / m_theirs:.2f}x MORE"))

    if "collect" in only:
        raw["collect"] = {}
        for n in (8, 64, 1024):
            res = {lib: [run_trial("collect", lib, s, n) for s in (1, 2, 3) for lib2 in [lib]] for lib in ("ppo2", "sb3")}
            raw["collect"][n] = res
            ours, theirs = med([r["sps"] for r in res["ppo2"]]), med([r["sps"] for r in res["sb3"]])
            print(f"  collect {n} envs: ppo2 {ours:,.0f} sb3 {theirs:,.0f}", flush=True)
            rows.append((f"Collection only, {n} envs (env steps/s)", f"{ours:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.1f}x faster"))

    if "inference" in only:
        res = {lib: [run_trial("inference", lib, s) for s in (1, 2, 3)] for lib in ("ppo2", "sb3", "bare")}
        raw["inference"] = res
        g = {lib: {k: med([r[k] for r in res[lib]]) for k in res[lib][0]} for lib in res}
        bare = g["bare"]["predict_1_us"]
        rows.append(("Inference, 1 obs: eval_fn / predict (us)", f"{g['ppo2']['eval_fn_1_us']:.0f} / {g['ppo2']['predict_1_us']:.0f}",
                     f"{g['sb3']['predict_1_us']:.0f}", f"{g['sb3']['predict_1_us'] / g['ppo2']['predict_1_us']:.1f}x faster"))
        rows.append(("  bare nn.Sequential, 1 obs (us) / ppo2 predict overhead", f"{bare:.0f}",
                     "", f"{g['ppo2']['predict_1_us'] / bare:.2f}x the bare network"))
        rows.append(("Inference, batch of 1024 (obs/s)", f"{g['ppo2']['predict_1024_obs_per_s']:,.0f}",
                     f"{g['sb3']['predict_1024_obs_per_s']:,.0f}",
                     f"{g['ppo2']['predict_1024_obs_per_s'] / g['sb3']['predict_1024_obs_per_s']:.1f}x faster"))

    print("\n| measure | ppo2 | SB3 | ppo2 vs SB3 |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
