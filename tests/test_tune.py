"""ppo2.tune: the search space, two workers on one study, and a best command that reproduces its trial."""
import json
import subprocess
import sys

import pytest

from conftest import REPO

optuna = pytest.importorskip("optuna")

TINY = ["--env", "CartPole-v1", "--n-timesteps", "2048", "--seeds", "1", "--n-evaluations", "2",
        "--eval-episodes", "5", "--n-startup-trials", "2", "--set", "num_envs=8", "--set", "eval_episodes=5"]


def test_sampled_minibatches_always_divide_the_batch():
    from ppo2.config import TrainConfig
    from ppo2.tune import SEARCH_SPACES, sample_params

    base = TrainConfig.for_env("CartPole-v1")  # 32 envs
    for num_steps, size, want in ((16, 512, 1), (8, 512, 1), (8, 8, 32), (2048, 8, 8192), (16, 128, 4)):
        trial = optuna.trial.FixedTrial({**{k: (v["choices"][0] if v["type"] == "categorical" else v["low"])
                                            for k, v in SEARCH_SPACES["ppo"].items()},
                                         "num_steps": num_steps, "minibatch_size": size})
        params = sample_params(trial, SEARCH_SPACES["ppo"], base)
        assert params["num_minibatches"] == want and (32 * num_steps) % params["num_minibatches"] == 0
        assert "minibatch_size" not in params
        base.replace(**params)  # a valid TrainConfig


def test_a_search_space_file_is_checked():
    from ppo2.tune import _check_space

    assert _check_space({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    for bad in ({"learning_rat": {"type": "float", "low": 1, "high": 2}},
                {"learning_rate": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
                {"gamma": {"type": "categorical", "choices": []}}, {"seed": {"type": "int", "low": 1, "high": 3}}):
        with pytest.raises(ValueError, match="search space field"):
            _check_space(bad)
    with pytest.raises(ValueError, match=r"'env_kwargs' is not a tunable.*--set env_kwargs="):
        _check_space({"env_kwargs": {"type": "categorical", "choices": [{"continuous": True}]}})


def test_two_workers_finish_n_trials_between_them_on_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-m", "ppo2.tune", *TINY, "--n-trials", "6", "--storage", storage, "--study-name", "two",
           "--pruner", "none"]
    workers = [subprocess.Popen([*cmd, "--output-dir", str(tmp_path / f"w{i}")], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outs]
    study = optuna.load_study(study_name="two", storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    done = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 6, states  # exactly N between them: none lost, none run twice
    assert optuna.trial.TrialState.RUNNING not in states
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == optuna.trial.TrialState.FAIL)
    assert len({t.number for t in trials}) == len(trials)
    # both workers took part, and no trial was trained by both
    ran = [{p.name for p in (tmp_path / f"w{i}" / "trials").glob("*")} for i in range(2)]
    assert all(ran) and not ran[0] & ran[1], ran
    assert ran[0] | ran[1] == {f"{t.number:05d}" for t in done}


def test_best_command_reproduces_its_trial_and_writes_the_outputs(tmp_path):
    out = tmp_path / "study"
    done = subprocess.run([sys.executable, "-m", "ppo2.tune", *TINY, "--n-trials", "3", "--output-dir", str(out),
                           "--sampler-seed", "0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("best_config.json", "best_command.txt", "best.json", "trials.csv", "history.png", "study.db"):
        assert (out / name).stat().st_size > 0, name
    best = json.loads((out / "best.json").read_text())
    # the file train.py takes, re-run from a fresh process: the same weights, so the same held-out score
    run = tmp_path / "again"
    again = subprocess.run([sys.executable, "train.py", "--env", "CartPole-v1", "--config", str(out / "best_config.json"),
                            "--seed", "1", "--output-dir", str(run), "--no-progress", "--no-tensorboard", "--no-plot"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    from ppo2 import PPO2
    from ppo2.evaluate import evaluate_policy
    from ppo2.tune import HELD_OUT_SEED

    score = evaluate_policy(PPO2.from_pretrained(run), "CartPole-v1", 5, seed=HELD_OUT_SEED + 1000)["mean_reward"]
    assert score == best["seed_scores"][0]
    assert best["command"].startswith("python train.py --env CartPole-v1 --algo ppo")
    # and the command line says the same as the file
    import shlex

    from ppo2.config import TrainConfig, config_from_args

    from_command = config_from_args(shlex.split(best["command"])[2:])[0]
    from_file = TrainConfig.for_env("CartPole-v1", **json.loads((out / "best_config.json").read_text()))
    assert from_command == from_file


def test_a_configuration_written_as_flags_resolves_to_itself():
    """config_argv (the best command's flags) is the inverse of the command line's parsing, for every kind of
    option: booleans both ways, None for optional numbers, lists, and an env's constructor arguments with JSON values
    (a dict's repr, "{'is_slippery': False}", would not parse back)."""
    from ppo2.config import TrainConfig, config_argv, config_from_args

    options = {"env_kwargs": {"is_slippery": False, "map_name": "8x8", "desc": None, "size": [4, 4], "p": 0.25},
               "learning_rate": 0.0007114614077300633, "norm_adv": False, "anneal_lr": True, "target_kl": None,
               "bptt_steps": None, "target_reward": 0.5, "restart_episodes_at": (3, 7), "output_dir": None,
               "num_steps": 128}
    argv = config_argv(options)
    assert argv[:6] == ["--env-kwargs", "is_slippery=false", 'map_name="8x8"', "desc=null", "size=[4, 4]", "p=0.25"]
    assert "--no-norm-adv" in argv and "--anneal-lr" in argv and argv[argv.index("--target-kl") + 1] == "none"
    resolved = config_from_args(["--env", "FrozenLake-v1", *argv])[0]
    assert resolved == TrainConfig.for_env("FrozenLake-v1", **options)


def test_config_file_options_and_flags():
    from ppo2.config import config_from_args

    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"learning_rate": 0.002, "num_steps": 64, "shared_latent": False}, f)
    cfg, _ = config_from_args(["--env", "CartPole-v1", "--config", f.name, "--num-steps", "32"])
    assert (cfg.learning_rate, cfg.num_steps, cfg.shared_latent) == (0.002, 32, False)  # the flag wins
    with open(f.name, "w") as g:
        json.dump({"learning_rat": 0.1}, g)
    with pytest.raises(ValueError, match=r"unknown options \['learning_rat'\]"):
        config_from_args(["--env", "CartPole-v1", "--config", f.name])
