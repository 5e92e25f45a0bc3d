"""Hyperparameter search with Optuna, on one machine or many.

    python -m ppo2.tune --env CartPole-v1 --n-trials 50 --n-timesteps 50000 --output-dir tune/cartpole
    python -m ppo2.tune --env Pendulum-v1 --storage postgresql://user:pw@db/optuna --study-name pendulum \\
        --n-trials 200 --output-dir tune/pendulum            # the same command on every machine: one study

(RL-Zoo's `--optimize` flags where they exist: --n-trials, --n-timesteps, --n-jobs, --sampler, --pruner, --timeout,
--study-name, --storage.) A trial is the real trainer (`ppo2.trainer.Trainer`: any env, any observation kind, PPO
or A2C) run for --n-timesteps on each of --seeds seeds with parameters drawn from the search space (`SEARCH_SPACES`,
RL-Zoo's ranges; `--space FILE` replaces it, `--set FIELD=VALUE` fixes fields). Each periodic evaluation is
reported to the pruner, which stops trials that trail the median of earlier ones at the same point. The trial's
score is the mean over its seeds of the final policy's return on `--eval-episodes` held-out episodes (seeds from
4,000,000: no trial trains or evaluates on them).

Storage: without --storage, a SQLite file in the output directory (`DIR/study.db`). Any SQLAlchemy URL (SQLite,
PostgreSQL, MySQL) or `journal:PATH` (Optuna's journal file, for a shared file system) lets any number of
`ppo2.tune` processes on any number of machines work on one study. Trial numbers are handed out by the storage,
and a worker runs a trial only while fewer than --n-trials trials are finished or running, so the workers finish
exactly --n-trials between them; a trial begun beyond that is recorded as failed with the user attribute
`surplus` and never trained. With a database, workers send a heartbeat: the trial of a worker that was killed is
marked failed after `--grace-period` seconds and run again by another worker, so a killed worker loses at most
its running trial.

Outputs in --output-dir: `best_config.json` (what `train.py --config FILE` takes), `best_command.txt` (the same as
a train.py command line), `best.json` (score, per-seed scores, trial number), `trials.csv`, and the study's plots
`history.png` (optimization history) and `importances.png` (fANOVA parameter importances).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .env_ids import canonical_env_id

__all__ = ["SEARCH_SPACES", "sample_params", "make_storage", "run_study", "main"]

HELD_OUT_SEED = 4_000_000

# The search space: TrainConfig fields (and `minibatch_size`, which sets num_minibatches) -> a distribution.
# RL-Zoo's sample_ppo_params / sample_a2c_params ranges (rl_zoo3/hyperparams_opt.py), with the learning rate's upper
# end at 0.01 (RL-Zoo's 1.0 only ever produces diverging trials) and the network width as ppo2's hidden_dim.
SEARCH_SPACES: dict[str, dict[str, dict]] = {
    "ppo": {
        "num_steps": {"type": "categorical", "choices": [8, 16, 32, 64, 128, 256, 512, 1024, 2048]},
        "minibatch_size": {"type": "categorical", "choices": [8, 16, 32, 64, 128, 256, 512]},
        "gamma": {"type": "categorical", "choices": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999]},
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "ent_coef": {"type": "float", "low": 1e-8, "high": 0.1, "log": True},
        "clip_range": {"type": "categorical", "choices": [0.1, 0.2, 0.3, 0.4]},
        "update_epochs": {"type": "categorical", "choices": [1, 5, 10, 20]},
        "gae_lambda": {"type": "categorical", "choices": [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]},
        "max_grad_norm": {"type": "categorical", "choices": [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0]},
        "vf_coef": {"type": "float", "low": 0.0, "high": 1.0},
        "hidden_dim": {"type": "categorical", "choices": [64, 256]},
        "shared_latent": {"type": "categorical", "choices": [True, False]},
    },
    "a2c": {
        "num_steps": {"type": "categorical", "choices": [8, 16, 32, 64, 128, 256, 512, 1024, 2048]},
        "gamma": {"type": "categorical", "choices": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999]},
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "ent_coef": {"type": "float", "low": 1e-8, "high": 0.1, "log": True},
        "gae_lambda": {"type": "categorical", "choices": [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]},
        "max_grad_norm": {"type": "categorical", "choices": [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0]},
        "vf_coef": {"type": "float", "low": 0.0, "high": 1.0},
        "norm_adv": {"type": "categorical", "choices": [True, False]},
        "optimizer": {"type": "categorical", "choices": ["rmsprop", "adam"]},
        "hidden_dim": {"type": "categorical", "choices": [64, 256]},
    },
}


class SurplusTrial(Exception):
    """This trial began after --n-trials trials were finished or running: it is not run."""


def _check_space(space: Any) -> dict[str, dict]:
    """A search space read from JSON, checked: known fields, well-formed distributions."""
    from .config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__) | {"minibatch_size"}
    if not isinstance(space, dict) or not space:
        raise ValueError(f"a search space is a JSON object of field -> distribution, got {space!r}")
    for name, spec in space.items():
        if name not in fields or name in ("env_id", "env_kwargs", "algo", "seed", "total_timesteps", "output_dir",
                                          "resume"):
            hint = " (the task's own arguments are fixed: --set env_kwargs='{...}')" if name == "env_kwargs" else ""
            raise ValueError(f"search space field {name!r} is not a tunable TrainConfig field{hint}")
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "categorical":
            ok = isinstance(spec.get("choices"), list) and len(spec["choices"]) >= 1
        elif kind in ("float", "int"):
            lo, hi = spec.get("low"), spec.get("high")
            ok = (all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi))
                  and lo <= hi and (not spec.get("log") or lo > 0))
        else:
            ok = False
        if not ok:
            raise ValueError(f"search space field {name!r}: expected {{'type': 'categorical', 'choices': [...]}} or "
                             f"{{'type': 'float'|'int', 'low': a, 'high': b, 'log': bool}} with a <= b (a > 0 for log), "
                             f"got {spec!r}")
    return space


def sample_params(trial, space: dict[str, dict], base) -> dict[str, Any]:
    """TrainConfig overrides drawn from `space` for a trial; `base` (a TrainConfig) supplies num_envs for the
    batch size that `minibatch_size` divides."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "float":
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    if "minibatch_size" in params:
        batch = base.num_envs * params.get("num_steps", base.num_steps)
        size = min(params.pop("minibatch_size"), batch)
        while batch % size:  # the largest size <= the drawn one that divides the batch
            size -= 1
        params["num_minibatches"] = batch // size
    return params


def make_storage(url: str | None, output_dir: Path, heartbeat_interval: int = 10, grace_period: int = 60):
    """An Optuna storage: `journal:PATH` for a journal file, any other URL through SQLAlchemy (a SQLite file in
    `output_dir` when None), with heartbeats so that a killed worker's trial is failed and retried."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback

    if url is not None and url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url is None:
        output_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(output_dir / 'study.db').resolve()}"
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    import inspect
    import warnings

    # heartbeats and the retry callback are marked experimental in Optuna; they are what makes a killed worker lose
    # at most its running trial, so they are used on purpose and the warnings would only be noise
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    params = inspect.signature(RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in params:  # Optuna >= 4.9 renamed the callback and its keyword
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        retry = {"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2)}
    else:
        retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=2)}
    # Workers that start together race to create the schema (one of them gets a unique-constraint error from the
    # other's tables): the loser waits and opens the storage again, which then finds the schema in place.
    for attempt in range(10):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                              grace_period=grace_period, **retry)
        except Exception as exc:  # sqlalchemy's IntegrityError/OperationalError, without importing sqlalchemy here
            if attempt == 9 or type(exc).__module__.split(".")[0] != "sqlalchemy":
                raise
            time.sleep(0.5 + 0.5 * attempt)
    raise AssertionError("unreachable")


def _trainer_class():
    """A Trainer that reports each periodic evaluation to an Optuna trial and stops when the pruner says so."""
    import optuna

    from .trainer import Trainer

    class ReportingTrainer(Trainer):
        def __init__(self, config, trial, step_offset: int):
            super().__init__(config)
            self.trial, self.step_offset, self.reports = trial, step_offset, 0

        def evaluate(self, start=None) -> bool:
            before = self.last_eval
            solved = super().evaluate(start)
            if self.last_eval is not None and self.last_eval is not before:
                self.trial.report(self.last_eval["mean_reward"], self.step_offset + self.reports)
                self.reports += 1
                if self.trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at evaluation {self.reports} (step {self.global_step})")
            return solved

    return ReportingTrainer


def _objective(args, space: dict, fixed: dict, output_dir: Path):
    import optuna

    from .config import TrainConfig
    from .errors import NonFiniteError
    from .evaluate import evaluate_policy
    from .model import PPO2

    ReportingTrainer = _trainer_class()
    base = TrainConfig.for_env(args.env, args.algo, **fixed)

    def objective(trial) -> float:
        finished = [t for t in trial.study.get_trials(deepcopy=False)
                    if t.number < trial.number and t.state in (optuna.trial.TrialState.COMPLETE,
                                                               optuna.trial.TrialState.PRUNED,
                                                               optuna.trial.TrialState.RUNNING)]
        if len(finished) >= args.n_trials:
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number}: {args.n_trials} trials are already finished or running")
        params = sample_params(trial, space, base)
        budget = max(args.n_timesteps, base.num_envs * params.get("num_steps", base.num_steps))
        updates = max(1, budget // (base.num_envs * params.get("num_steps", base.num_steps)))
        try:
            config = base.replace(**params, total_timesteps=budget, stop_at_target=False, confirm_episodes=0,
                                  eval_interval=max(1, updates // args.n_evaluations), progress=False,
                                  tensorboard=False, plot=False, checkpoint_interval=0)
        except (ValueError, TypeError) as exc:  # a combination the trainer refuses (e.g. a minibatch of 1)
            trial.set_user_attr("invalid", str(exc))
            raise optuna.TrialPruned(f"invalid combination: {exc}") from None
        # the trainer evaluates every eval_interval updates and after the last: the reports of seed i follow seed i-1's
        per_run = -(-config.num_updates // config.eval_interval)
        trial.set_user_attr("config", {k: v for k, v in config.to_dict().items()
                                       if k in params or k in fixed or k == "total_timesteps"})
        scores = []
        for i, seed in enumerate(args.seed_list):
            run_dir = output_dir / "trials" / f"{trial.number:05d}" / f"seed_{seed}"
            trainer = ReportingTrainer(config.replace(seed=seed, output_dir=str(run_dir), overwrite=True), trial,
                                       step_offset=i * per_run)
            try:
                trainer.learn()
            except NonFiniteError as exc:
                trial.set_user_attr("diverged", str(exc))
                raise optuna.TrialPruned(f"diverged: {exc}") from None
            finally:
                trainer.close()
            policy = PPO2.from_pretrained(run_dir)  # the final policy, as a user would load it
            held = evaluate_policy(policy, config.env_id, args.eval_episodes, seed=HELD_OUT_SEED + 1000 * seed,
                                   deterministic=config.eval_deterministic)
            scores.append(held["mean_reward"])
            trial.set_user_attr("seed_scores", scores)
        return float(sum(scores) / len(scores))

    return objective


def _sampler(name: str, seed: int | None, n_startup: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=n_startup, seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"--sampler must be tpe or random, got {name!r}")


def _pruner(name: str, n_startup: int, n_evaluations: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=n_evaluations // 3)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be median, halving or none, got {name!r}")


def run_study(args) -> Any:
    """Create or join the study and run this worker's share of its trials; returns the study."""
    import optuna

    # Optuna logs every trial it ends, with a traceback for a caught SurplusTrial; this module prints its own summary
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    space = SEARCH_SPACES[args.algo] if args.space is None else _check_space(json.loads(Path(args.space).read_text()))
    fixed = dict(args.fixed)
    space = {k: v for k, v in space.items() if k not in fixed}
    storage = make_storage(args.storage, output_dir, grace_period=args.grace_period)
    study = optuna.create_study(study_name=args.study_name, storage=storage, direction="maximize",
                                load_if_exists=True, sampler=_sampler(args.sampler, args.sampler_seed, args.n_startup_trials),
                                pruner=_pruner(args.pruner, args.n_startup_trials, args.n_evaluations))
    study.set_user_attr("env_id", args.env)
    study.set_user_attr("algo", args.algo)
    study.set_user_attr("n_timesteps", args.n_timesteps)
    study.set_user_attr("seeds", args.seed_list)
    study.optimize(_objective(args, space, fixed, output_dir), n_trials=args.n_trials, timeout=args.timeout,
                   n_jobs=args.n_jobs, catch=(SurplusTrial,), gc_after_trial=True)
    return study


def write_outputs(study, args) -> dict | None:
    """best_config.json, best_command.txt, best.json, trials.csv and the plots; returns best.json's content."""
    import optuna

    from .config import config_argv

    output_dir = Path(args.output_dir)
    trials = study.get_trials(deepcopy=False)
    with open(output_dir / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        names = sorted({k for t in trials for k in t.params})
        writer.writerow(["number", "state", "value", "seed_scores", "duration_s", *names])
        for t in trials:
            duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
            writer.writerow([t.number, t.state.name, t.value, json.dumps(t.user_attrs.get("seed_scores")), duration,
                             *[t.params.get(k, "") for k in names]])
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    best = study.best_trial
    config = best.user_attrs["config"]
    env_id, algo = study.user_attrs.get("env_id", args.env), study.user_attrs.get("algo", args.algo)
    overrides = {k: v for k, v in config.items() if k not in ("env_id", "algo")}
    # the trial's budget (in config), run in full: a trial never stops at the target, so neither does its command
    overrides["stop_at_target"] = False
    (output_dir / "best_config.json").write_text(json.dumps(overrides, indent=2) + "\n")
    command = ["python", "train.py", "--env", env_id, "--algo", algo, *config_argv(overrides)]
    (output_dir / "best_command.txt").write_text(shlex.join(command) + "\n")
    result = {"study": study.study_name, "env_id": env_id, "algo": algo, "trial": best.number, "value": best.value,
              "seed_scores": best.user_attrs.get("seed_scores"), "params": overrides, "command": shlex.join(command),
              "n_complete": len(complete), "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
              "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    (output_dir / "best.json").write_text(json.dumps(result, indent=2) + "\n")
    _plots(study, output_dir)
    return result


def _plots(study, output_dir: Path) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = ovm.plot_optimization_history(study)
        ax.figure.set_size_inches(7, 4)
        ax.figure.tight_layout()
        ax.figure.savefig(output_dir / "history.png", dpi=110)
        plt.close(ax.figure)
        try:
            ax = ovm.plot_param_importances(study)
        except ImportError:  # Optuna's fANOVA needs scikit-learn; its PED-ANOVA needs nothing more
            try:
                from optuna.importance import PedAnovaImportanceEvaluator

                ax = ovm.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
            except (ImportError, RuntimeError, ValueError):
                return
        except (RuntimeError, ValueError):  # too few complete trials, or no parameter varied
            return
        ax.figure.set_size_inches(7, 4)
        ax.figure.tight_layout()
        ax.figure.savefig(output_dir / "importances.png", dpi=110)
        plt.close(ax.figure)


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    try:
        seeds = list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed or a range such as 1-3, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"empty seed range {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ppo2.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True, help="gymnasium env id")
    p.add_argument("--algo", default="ppo", choices=sorted(SEARCH_SPACES))
    p.add_argument("--n-trials", type=int, default=50, help="trials to finish, over all workers of the study")
    p.add_argument("--n-timesteps", type=int, default=100_000, help="env steps per trial and seed")
    p.add_argument("--seeds", dest="seed_list", type=_seeds, default=[1, 2], help="seeds per trial, e.g. 1-3")
    p.add_argument("--n-evaluations", type=int, default=10, help="evaluations per run reported to the pruner")
    p.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes that score a trial's policy")
    p.add_argument("--storage", default=None, help="SQLAlchemy URL or journal:PATH (default: sqlite in --output-dir)")
    p.add_argument("--study-name", default=None, help="(default: <env>-<algo>)")
    p.add_argument("--output-dir", default=None, help="(default: tune/<env>-<algo>)")
    p.add_argument("--n-jobs", type=int, default=1, help="trials in parallel threads of this process (for more "
                   "cores, start more processes on the same --storage)")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    p.add_argument("--sampler-seed", type=int, default=None, help="seed of the sampler (reproducible searches)")
    p.add_argument("--pruner", default="median", choices=["median", "halving", "none"])
    p.add_argument("--n-startup-trials", type=int, default=5, help="trials before the sampler and pruner act")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--space", default=None, help="a JSON file replacing the search space (see SEARCH_SPACES)")
    p.add_argument("--set", dest="fixed", type=_key_value, action="append", default=[], metavar="FIELD=VALUE",
                   help="fix a TrainConfig field for every trial (JSON value), e.g. --set num_envs=16")
    p.add_argument("--grace-period", type=int, default=120, help="seconds without a heartbeat before a running "
                   "trial of a database study is failed and retried")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.env = canonical_env_id(args.env)
    safe = args.env.replace("/", "_").replace(":", "_")
    args.study_name = args.study_name or f"{safe}-{args.algo}"
    args.output_dir = args.output_dir or str(Path("tune") / args.study_name)
    try:
        for name in ("n_trials", "n_timesteps", "n_evaluations", "eval_episodes", "n_jobs"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            raise ImportError("ppo2.tune needs Optuna: pip install 'ppo2[tune]'")
        t0 = time.perf_counter()
        study = run_study(args)
        best = write_outputs(study, args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if best is None:
        print(f"no trial completed; see {Path(args.output_dir) / 'trials.csv'}")
        return 1
    print(f"study {best['study']}: best trial {best['trial']} scored {best['value']:.2f} "
          f"(seeds: {', '.join(f'{s:.2f}' for s in best['seed_scores'])}); {best['n_complete']} complete, "
          f"{best['n_pruned']} pruned, {best['n_failed']} failed; this worker took {time.perf_counter() - t0:.0f} s")
    print(f"best command: {best['command']}")
    print(f"outputs: {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
