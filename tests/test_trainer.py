"""The trainer's machinery: autoreset handling, bootstrapping, determinism, resume, signals, bad input."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import toy_envs  # noqa: F401  (registers ppo2test/*)
from conftest import REPO, hub_load
from ppo2.config import TrainConfig, build_parser
from ppo2.trainer import NonFiniteEnvError, NonFiniteLossError, Trainer, train

FAST = dict(tensorboard=False, progress=False)


def make(tmp_path, env_id="CartPole-v1", **kw):
    cfg = TrainConfig.for_env(env_id, output_dir=str(tmp_path / "run"), **{**FAST, **kw})
    return Trainer(cfg)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------------
# autoreset (NEXT_STEP) and bootstrapping
# ---------------------------------------------------------------------------------------------------

def test_reset_step_is_marked_invalid_and_left_out(tmp_path):
    # Count-v0 terminates every 3 steps: rows 0-2 are one episode, row 3 is the autoreset step, ...
    t = make(tmp_path, "ppo2test/Count-v0", num_envs=2, num_steps=8, num_minibatches=1, total_timesteps=16)
    t.collect_rollout()
    s = t.storage
    assert s.valid[:, 0].tolist() == [True, True, True, False, True, True, True, False]
    assert s.terminations[:, 0].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert s.rewards[:, 0].tolist() == [1, 1, 1, 0, 1, 1, 1, 0]  # the reset step pays nothing
    assert s.obs[:, 0, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]    # row 3 holds the final observation
    batch, _ = t.compute_batch()
    assert len(batch) == 12  # 16 rows minus the 4 reset rows
    assert sorted(set(batch.obs[:, 0].tolist())) == [0.0, 1.0, 2.0]
    c = t.collector
    assert list(c.recent_returns) == [3.0] * 4 and list(c.recent_lengths) == [3] * 4
    t.close()


def test_truncation_bootstraps_from_value_of_final_observation(tmp_path):
    # CountTruncated-v0: time limit of 4 steps, never terminates. The row after the truncation holds the
    # true final observation (obs=4); the truncated step's target is r + gamma * V(final obs).
    t = make(tmp_path, "ppo2test/CountTruncated-v0", num_envs=1, num_steps=6, num_minibatches=1,
             total_timesteps=6, gamma=0.9, gae_lambda=0.5, norm_adv=False)
    t.collect_rollout()
    s = t.storage
    assert s.truncations[:, 0].tolist() == [0, 0, 0, 1, 0, 0]
    assert s.valid[:, 0].tolist() == [True, True, True, True, False, True]
    assert s.obs[4, 0, 0] == 4.0
    v_final = float(t.model.value(torch.tensor([4.0])))
    batch, _ = t.compute_batch()
    truncated_row = batch.obs[:, 0].tolist().index(3.0)
    assert batch.returns[truncated_row].item() == pytest.approx(1.0 + 0.9 * v_final, abs=1e-5)
    t.close()


def test_identity_env_is_learned_in_seconds(tmp_path):
    # chance level is 20 * 1/4 = 5 per episode; a working learner reaches >= 19 (95%)
    model = train(env_id="ppo2test/Identity-v0", total_timesteps=30_000, num_envs=8, num_steps=64, num_minibatches=4,
                  update_epochs=4, learning_rate=3e-3, eval_interval=5, eval_episodes=10, target_reward=19.0,
                  output_dir=str(tmp_path / "id"), seed=0, **FAST)
    assert model.trainer_summary["solved_at"] is not None, model.trainer_summary


# ---------------------------------------------------------------------------------------------------
# determinism, checkpoints, resume
# ---------------------------------------------------------------------------------------------------

SHORT = dict(total_timesteps=8 * 32 * 6, eval_interval=2, checkpoint_interval=0, stop_at_target=False)


def test_same_seed_same_weights_different_seed_different(tmp_path):
    a = train(env_id="CartPole-v1", seed=3, output_dir=str(tmp_path / "a"), **SHORT, **FAST)
    b = train(env_id="CartPole-v1", seed=3, output_dir=str(tmp_path / "b"), **SHORT, **FAST)
    c = train(env_id="CartPole-v1", seed=4, output_dir=str(tmp_path / "c"), **SHORT, **FAST)
    assert_same(state(a), state(b))
    assert not torch.equal(a.value_head.weight, c.value_head.weight)


def test_snapshots_keep_the_policy_every_n_updates_and_a_resume_writes_them_anew(tmp_path, monkeypatch):
    """--snapshot-interval (RL-Zoo's --save-freq): policies/update_N/ holds the policy after update N, loadable, with
    the evaluation made at N. A run stopped after update 3 and resumed ends with the snapshots of a run never stopped,
    bit for bit; one a crash left from a later update, and a half-written one, are gone; a user's file is kept."""
    from ppo2 import PPO2

    kw = dict(SHORT, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=4 * 32 * 6,
              snapshot_interval=2, eval_interval=2, seed=5, **FAST)
    full = train(env_id="CartPole-v1", output_dir=str(tmp_path / "full"), **kw)
    names = ["update_000002", "update_000004", "update_000006"]
    assert sorted(p.name for p in (tmp_path / "full" / "policies").iterdir()) == names
    for n, name in zip((2, 4, 6), names):
        snap = tmp_path / "full" / "policies" / name
        assert json.loads((snap / "results.json").read_text())["update"] == n
    assert_same(state(PPO2.from_pretrained(tmp_path / "full" / "policies" / "update_000006")), state(full))
    assert not torch.equal(PPO2.from_pretrained(tmp_path / "full" / "policies" / "update_000002").value_head.weight,
                           full.value_head.weight)

    cfg = TrainConfig.for_env("CartPole-v1", output_dir=str(tmp_path / "split"), **kw)
    trainer = Trainer(cfg)
    real_update, calls = trainer.update_policy, []

    def update_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            trainer.__dict__["_stop_signal"] = signal.SIGTERM
        return real_update(*args, **kwargs)

    monkeypatch.setattr(trainer, "update_policy", update_then_signal)
    trainer.learn()
    trainer.close()
    policies = tmp_path / "split" / "policies"
    assert trainer.update == 3 and sorted(p.name for p in policies.iterdir()) == ["update_000002"]
    for stale in ("update_000004", "update_000005"):  # (left by a stretch that went on to update 5, at interval 1)
        shutil.copytree(policies / "update_000002", policies / stale)
    shutil.copytree(policies / "update_000002", policies / ".update_000006.partial")
    (policies / "notes.txt").write_text("mine")
    resumed = Trainer(cfg.replace(resume=str(tmp_path / "split")))
    resumed.learn()
    resumed.close()
    assert sorted(p.name for p in policies.iterdir()) == ["notes.txt", *names]
    for name in names:
        assert_same(state(PPO2.from_pretrained(policies / name)),
                    state(PPO2.from_pretrained(tmp_path / "full" / "policies" / name)))


@pytest.mark.parametrize("env_id,fused,extra", [("CartPole-v1", True, {}), ("Pendulum-v1", True, {}),
                                               ("CartPole-v1", False, {}),
                                               ("Pendulum-v1", True, {"normalize_reward": True}),
                                               ("CartPoleNoVel-v1", True, {"recurrent": False,
                                                                           "env_kwargs": {"frame_stack": 3}})])
def test_resume_is_bit_identical(tmp_path, monkeypatch, env_id, fused, extra):
    kw = dict(SHORT, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=4 * 32 * 6,
              fused=fused, **extra)
    full = train(env_id=env_id, seed=5, output_dir=str(tmp_path / "full"), **kw, **FAST)

    # the same run, stopped by a signal after update 3 ...
    calls = []

    def update_then_signal(*args, **kwargs):
        out = real_update(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            trainer.__dict__["_stop_signal"] = signal.SIGTERM
        return out

    cfg = TrainConfig.for_env(env_id, seed=5, output_dir=str(tmp_path / "split"), **kw, **FAST)
    trainer = Trainer(cfg)
    real_update = trainer.update_policy
    monkeypatch.setattr(trainer, "update_policy", update_then_signal)
    trainer.learn()
    trainer.close()
    assert trainer.update == 3 and trainer.stop_reason == "signal SIGTERM"

    # ... then resumed from its checkpoint
    resumed = Trainer(cfg.replace(resume=str(tmp_path / "split")))
    assert resumed.update == 3
    model = resumed.learn()
    resumed.close()
    assert resumed.update == 6
    assert_same(state(full), state(model))
    rows = (tmp_path / "split" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # header + one row per update, across both processes


@pytest.mark.parametrize("env_id,extra", [("ppo2test/Score-v0", {}), ("ppo2test/Score-v0", {"normalize_reward": True}),
                                          ("ppo2test/Lives-v0", {"life_loss": "terminal"})])
def test_a_resume_that_restarts_the_episodes_is_reproduced_in_one_go(tmp_path, env_id, extra):
    """A checkpoint cannot hold a user env's state: resumed after update 3, the run starts fresh episodes there and
    its train_config.json says so (restart_episodes_at [3]); that configuration, run straight through, gives the
    same weights to the bit. The restart changes the run: without it the weights differ."""
    kw = dict(SHORT, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=4 * 32 * 6,
              checkpoint_interval=3, **extra, **FAST)
    straight = train(env_id=env_id, seed=5, output_dir=str(tmp_path / "straight"), **kw)
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "straight", split)
    resumed = Trainer(TrainConfig.for_env(env_id, seed=5, output_dir=str(split),
                                          resume=str(split / "checkpoints" / "update_000003"), **kw))
    assert resumed.update == 3 and resumed.config.restart_episodes_at == (3,)
    model = resumed.learn()
    resumed.close()
    assert json.loads((split / "train_config.json").read_text())["restart_episodes_at"] == [3]
    one_go = train(env_id=env_id, seed=5, output_dir=str(tmp_path / "one_go"), restart_episodes_at=(3,), **kw)
    assert_same(state(model), state(one_go))
    assert not torch.equal(straight.value_head.weight, one_go.value_head.weight)


@pytest.mark.parametrize("life_loss,terminal_rows", [("terminal", [2, 5, 8]), ("ignore", [8]), ("auto", [8])])
def test_a_lost_life_is_terminal_to_the_learner_only(tmp_path, life_loss, terminal_rows):
    """Lives-v0 loses a life on its 3rd, 6th and 9th step, the last ending the game. With life_loss='terminal' each loss
    ends the value's horizon (terminations), but the game goes on: the next row is an ordinary step (valid), and the
    logged episode is the whole game (return 9). 'auto' is terminal for ALE games only."""
    cfg = TrainConfig.for_env("ppo2test/Lives-v0", num_envs=1, num_steps=12, num_minibatches=1, total_timesteps=12,
                              life_loss=life_loss, output_dir=str(tmp_path), **FAST)
    assert cfg.life_loss_terminal == (life_loss == "terminal")
    assert TrainConfig.for_env("Breakout").life_loss_terminal and not TrainConfig.for_env("CartPole-v1").life_loss_terminal
    trainer = Trainer(cfg)
    try:
        trainer.collect_rollout()
        s, c = trainer.storage, trainer.collector
        assert np.flatnonzero(s.terminations[:, 0]).tolist() == terminal_rows
        assert s.valid[:, 0].tolist() == [True] * 9 + [False, True, True]  # row 9: the autoreset step
        assert list(c.recent_returns) == [9.0] and c.episodes == 1
    finally:
        trainer.close()


def test_life_loss_terminal_needs_lives_from_the_env(tmp_path):
    with pytest.raises(ValueError, match=r"life_loss='terminal' needs the envs to report each one's 'lives'.*at reset"):
        Trainer(TrainConfig.for_env("CartPole-v1", life_loss="terminal", output_dir=str(tmp_path), **FAST))
    with pytest.raises(ValueError, match="life_loss must be auto, terminal or ignore, got 'yes'"):
        TrainConfig.for_env("CartPole-v1", life_loss="yes")


def test_resume_from_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make(tmp_path, resume=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoints"):
        make(tmp_path, resume=str(tmp_path / "empty"))


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "sig"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "--env", "CartPole-v1", "--total-timesteps", "50000000",
         "--no-stop-at-target", "--no-progress", "--no-tensorboard", "--output-dir", str(out), "--eval-interval", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = out / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "signal SIGTERM" in output
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["update"] >= 2
    model = hub_load("ppo2", pretrained=str(out))
    assert model(torch.zeros(4))[1].shape == ()
    ckpt = hub_load("ppo2", pretrained=str(out / "checkpoints" / latest["dir"]))
    assert_same(state(model), state(ckpt))


def test_nan_reward_stops_and_keeps_last_good_checkpoint(tmp_path):
    # NaNReward-v0 turns rewards into NaN after 100 steps per env: update 1 (2 envs x 32 steps) is healthy.
    # The NaN is caught where it enters (the env step), before it reaches a loss.
    t = make(tmp_path, "ppo2test/NaNReward-v0", num_envs=2, num_steps=32, num_minibatches=1,
             total_timesteps=64 * 20, checkpoint_interval=1, eval_interval=0)
    with pytest.raises(NonFiniteEnvError, match=r"NaN/inf reward at update 4, rollout step 6 in sub-environment\(s\) \[0, 1\]"):
        t.learn()
    good = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert good["update"] == t.update >= 1
    model = hub_load("ppo2", pretrained=str(tmp_path / "run" / "checkpoints" / good["dir"]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    t.close()


# ---------------------------------------------------------------------------------------------------
# bad input: clear errors before any training
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, exc, match", [
    (dict(env_id="CartPole-v2"), ValueError, r"unknown environment id 'CartPole-v2'.*Did you mean 'CartPole-v1'"),
    (dict(env_id="CartPol-v1"), ValueError, r"Did you mean 'CartPole-v1'"),
    (dict(env_id="ppo2test/IntegerIdentity-v0", env_kwargs={"kind": "mixed"}), ValueError,
     r"unsupported observation space Tuple\(Discrete\(4\), Box"),
    (dict(env_id="ppo2test/ImageObs-v0"), ValueError, r"Nature CNN needs images of at least 36x36 pixels, got 8x8"),
    (dict(env_id="ppo2test/TupleAction-v0"), TypeError, r"unsupported action space Tuple"),
    (dict(num_envs=3, num_steps=5, num_minibatches=4), ValueError, r"15 is not divisible into num_minibatches=4"),
    (dict(num_envs=1, num_steps=4, num_minibatches=4, total_timesteps=64), ValueError,
     r"minibatches of at least 2 samples, got minibatch size 1"),
    (dict(total_timesteps=10), ValueError, r"total_timesteps=10 is smaller than one rollout"),
    (dict(gamma=1.5), ValueError, r"gamma must be in \(0, 1\], got 1.5"),
    (dict(device="cuda:0"), ValueError, "CUDA is not available"),
])
def test_bad_configuration_fails_before_training(tmp_path, kw, exc, match):
    if kw.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env_id = kw.pop("env_id", "CartPole-v1")
    with pytest.raises(exc, match=match):
        make(tmp_path, env_id, **kw)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match=r"unknown training options \['learning_rat'\]"):
        TrainConfig.for_env("CartPole-v1", learning_rat=1e-3)


def test_train_takes_the_env_id_first_as_a_user_writes_it(tmp_path):
    kw = dict(total_timesteps=64, num_envs=2, num_steps=32, eval_interval=0, progress=False, tensorboard=False,
              plot=False, seed=4)
    by_name = train("Pendulum-v1", output_dir=str(tmp_path / "a"), **kw)
    by_key = train(env_id="Pendulum-v1", output_dir=str(tmp_path / "b"), **kw)
    assert by_name.env_id == "Pendulum-v1"
    for p, q in zip(by_name.parameters(), by_key.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"env id twice: 'Pendulum-v1' and env_id='CartPole-v1'"):
        train("Pendulum-v1", env_id="CartPole-v1")
    with pytest.raises(TypeError, match=r"a TrainConfig or an env id \(str\) first, got dict"):
        train({"env_id": "CartPole-v1"})


def test_derived_sizes_are_properties():
    cfg = TrainConfig.for_env("CartPole-v1", num_envs=4, num_steps=64, num_minibatches=8, total_timesteps=10_000)
    assert (cfg.batch_size, cfg.minibatch_size, cfg.num_updates) == (256, 32, 39)
    with pytest.raises(Exception):
        cfg.num_envs = 5  # frozen: derived, never mutated


# ---------------------------------------------------------------------------------------------------
# command line, outputs, custom networks
# ---------------------------------------------------------------------------------------------------

def test_cli_help_lists_every_option():
    text = build_parser().format_help()
    for flag in ("--env", "--total-timesteps", "--seed", "--num-envs", "--output-dir", "--algo", "--resume",
                 "--target-reward", "--clip-range", "--gae-lambda", "--normalize-obs", "--push-to-hub", "--device"):
        assert flag in text, flag


def test_cli_print_config_applies_preset_then_flags():
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "--env", "CartPole-v1", "--seed", "7", "--print-config"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    cfg = json.loads(out)
    assert cfg["seed"] == 7 and cfg["gamma"] == TrainConfig.for_env("CartPole-v1").gamma


def test_cli_unknown_env_exits_with_message(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "--env", "CartPole-v9", "--output-dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "Did you mean 'CartPole-v1'" in res.stderr


def test_run_outputs(tmp_path):
    out = tmp_path / "o"
    train(env_id="CartPole-v1", output_dir=str(out), total_timesteps=8 * 32 * 4, eval_interval=2, tensorboard=True,
          progress=False, stop_at_target=False)
    for name in ("model.safetensors", "config.json", "metrics.csv", "learning_curve.png", "summary.json",
                 "train_config.json", "results.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in ("sps", "episode_return", "approx_kl", "clip_fraction", "explained_variance", "value_loss"):
        assert col in header
    assert hub_load("ppo2", pretrained=str(out)).input_dim == 4


def test_progress_in_a_file_is_a_line_a_minute_with_the_time_to_go():
    import io

    from ppo2.outputs import LineProgress

    now = [100.0]
    out = io.StringIO()
    bar = LineProgress(10_000, initial=1_000, desc="Pong", interval=60, file=out, clock=lambda: now[0])
    for _ in range(3):  # 3 x 1,000 steps in 30 s: not a minute yet
        now[0] += 10
        bar.update(1_000)
        bar.set_postfix(**{"steps/s": "100", "return": "-20.5"})
    assert out.getvalue() == ""
    now[0] += 30  # 4,000 steps in 60 s (66.7/s): 5,000 steps to go, 75 s
    bar.update(1_000)
    bar.set_postfix(**{"steps/s": "100", "return": "-19.0", "eval": "-18.0"})
    assert out.getvalue() == ("Pong: 5,000/10,000 steps (50.0%), 100 steps/s, return -19.0, eval -18.0, 60 s in, "
                              "~75 s to go\n")
    now[0] += 5
    bar.update(4_000)
    bar.close()  # (the last line, however soon; a run that stops early, at its target, has no time to go)
    assert out.getvalue().splitlines()[-1] == ("Pong: 9,000/10,000 steps (90.0%), 100 steps/s, return -19.0, "
                                               "eval -18.0, 65 s in")


def test_a_run_whose_output_goes_to_a_file_prints_lines_not_a_bar(tmp_path, capsys):
    train("CartPole-v1", output_dir=str(tmp_path / "o"), total_timesteps=8 * 32 * 2, num_envs=8, num_steps=32,
          eval_interval=1, tensorboard=False, plot=False, progress=True, stop_at_target=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("CartPole-v1: 512/512 steps (100.0%), ")
    assert ", eval " in err.splitlines()[-1]


def test_the_progress_line_leaves_out_a_return_no_episode_has_given(tmp_path, capsys):
    """Pendulum's episodes are 200 steps: 64 steps end none, so there is no training return to show (it read 'nan')."""
    train("Pendulum-v1", output_dir=str(tmp_path / "o"), total_timesteps=64, num_envs=2, num_steps=32,
          eval_interval=0, tensorboard=False, plot=False, progress=True)
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("Pendulum-v1: 64/64 steps (100.0%), ") and "return" not in line and "nan" not in line


def test_a_notebook_keeps_its_progress_widget(monkeypatch):
    from types import SimpleNamespace

    from ppo2.outputs import LineProgress

    run = SimpleNamespace(config=TrainConfig(progress=True), dist=SimpleNamespace(is_main=True), global_step=0)
    assert isinstance(Trainer._progress_bar(run), LineProgress)  # (pytest's stderr is no terminal)
    monkeypatch.setitem(sys.modules, "ipykernel", SimpleNamespace())
    bar = Trainer._progress_bar(run)
    assert not isinstance(bar, LineProgress) and type(bar).__module__.startswith("tqdm")
    bar.close()


def test_the_learning_curve_says_how_the_evaluations_played(tmp_path, monkeypatch):
    """A run evaluated on sampled actions (--no-eval-deterministic, the Atari zoo's protocol) had its evaluations
    labelled 'deterministic' on its learning curve: the label now follows the run's configuration, from the trainer
    through its companion process's command line, and scripts/add_to_zoo.py draws an entry's curve with the same."""
    import matplotlib.pyplot as plt

    from ppo2.outputs import RunOutputs
    from ppo2.plotting import plot_learning_curve
    from ppo2.trainer import curve_settings

    cfg = TrainConfig.for_env("CartPole-v1", eval_deterministic=False, target_reward=400.0)
    assert curve_settings(cfg) == {"title": "PPO on CartPole-v1", "target": 400.0, "eval_deterministic": False}
    assert curve_settings(TrainConfig.for_env("Acrobot-v1"))["target"] == -100.0  # (the env's own threshold)
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("update,global_step,episode_return,eval_return\n1,100,10,\n2,200,20,25\n3,300,30,\n")
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # (keep the figure to read its legend)
    for deterministic, label in ((True, "eval (deterministic)"), (False, "eval (sampled actions)")):
        plot_learning_curve(metrics, tmp_path / "curve.png", eval_deterministic=deterministic)
        assert kept[-1].axes[0].get_legend_handles_labels()[1] == ["train (stochastic)", label]
    # several runs on one figure from the command line, each with its own protocol (its train_config.json)
    from ppo2.plotting import main as plot_main

    for name, deterministic in (("seed1", True), ("seed2", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(metrics.read_text())
        (tmp_path / name / "train_config.json").write_text(json.dumps({"eval_deterministic": deterministic}))
    assert plot_main([str(tmp_path / "seed1"), str(tmp_path / "seed2" / "metrics.csv"), "-o", str(tmp_path / "c.png"),
                      "--target", "25"]) == 0
    assert kept[-1].axes[0].get_legend_handles_labels()[1] == [
        "seed1 train (stochastic)", "seed1 eval (deterministic)", "seed2 train (stochastic)",
        "seed2 eval (sampled actions)", "target 25"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        plot_main([str(tmp_path / "nothing"), "-o", str(tmp_path / "d.png")])
    for deterministic in (True, False):
        outputs = RunOutputs(tmp_path / f"run{deterministic}", {}, resumed_at=0, overwrite=False, tensorboard=False,
                             plot=True, **curve_settings(cfg.replace(eval_deterministic=deterministic)))
        try:
            assert ("--eval-sampled" in outputs.companion.args) == (not deterministic)
        finally:
            outputs.close()


def test_sampled_evaluations_and_their_confirmation_replay_from_their_seeds(tmp_path):
    """--no-eval-deterministic: the periodic evaluation and the confirmation of a target sample their actions from
    their own seeds; the results record it, and the saved policy plays the same episodes again (the deterministic
    evaluation of the same policy plays others)."""
    from ppo2 import PPO2
    from ppo2.config import config_from_args
    from ppo2.evaluate import evaluate_policy

    assert config_from_args(["--no-eval-deterministic"])[0].eval_deterministic is False
    assert TrainConfig.for_env("CartPole-v1").eval_deterministic
    for atari in ("ALE/Pong-v5", "PongNoFrameskip-v4", "BreakoutNoFrameskip-v4", "ALE/SpaceInvaders-v5"):
        assert not TrainConfig.for_env(atari).eval_deterministic  # (RL-Zoo's protocol, and the Atari zoo entries')
    assert config_from_args(["--env", "Pong", "--eval-deterministic"])[0].eval_deterministic is True
    trainer = make(tmp_path, total_timesteps=8 * 32 * 2, eval_interval=2, eval_episodes=6, eval_deterministic=False,
                   target_reward=1.0, confirm_episodes=8, stop_at_target=False)
    trainer.learn()
    last, confirmed = trainer.last_eval, trainer.solved_at
    assert last["deterministic"] is False and confirmed["n_episodes"] == 8
    policy = PPO2.from_pretrained(tmp_path / "run")
    again = evaluate_policy(policy, "CartPole-v1", 6, seed=last["seed"], deterministic=False)
    assert again["episode_lengths"] == last["episode_lengths"]
    best = json.loads((tmp_path / "run" / "best" / "results.json").read_text())  # (the confirmation's episodes)
    assert best["deterministic"] is False and best["n_episodes"] == 8
    replayed = evaluate_policy(PPO2.from_pretrained(tmp_path / "run" / "best"), "CartPole-v1", 8, seed=best["seed"],
                               deterministic=False)
    assert replayed["episode_lengths"] == best["episode_lengths"]
    assert evaluate_policy(policy, "CartPole-v1", 6, seed=last["seed"])["episode_lengths"] != last["episode_lengths"]


def _run_with_scores(monkeypatch, config):
    """config's run, its evaluations (periodic and confirming) scoring 10 x the update they are played at."""
    import ppo2.trainer as T

    holder = {}

    def fake_evaluate(model, env_id, n_episodes, seed=0, deterministic=True, envs=None, stop=None):
        return {"env_id": env_id, "mean_reward": 10.0 * holder["trainer"].update, "std_reward": 0.0,
                "n_episodes": n_episodes, "seed": seed, "deterministic": deterministic}
    monkeypatch.setattr(T, "evaluate_policy", fake_evaluate)
    holder["trainer"] = trainer = T.Trainer(config)
    try:
        trainer.learn()
    finally:
        trainer.close()
    return trainer


def test_a_resume_may_move_the_target_where_the_run_would_have_trained_the_same(tmp_path, monkeypatch):
    """--target-reward and --stop-at-target decide when a run stops, not what it trains: a resume may raise the
    target and stop at it, and ends with the weights of a run given them from the start. It may not where the run's
    evaluations already reached the new target, lower a confirmed target, or stop at one confirmed without stopping."""
    from ppo2.trainer import _resume_config

    step = 4 * 32  # (no annealing: a first leg's shorter budget trains the same updates)
    common = dict(num_envs=4, num_steps=32, anneal_lr=False, anneal_clip_range=False, eval_interval=1,
                  checkpoint_interval=1, eval_episodes=2, confirm_episodes=3, plot=False, **FAST)

    def config(name, **kw):
        return TrainConfig.for_env("CartPole-v1", output_dir=str(tmp_path / name), **{**common, **kw})
    one_go = _run_with_scores(monkeypatch, config("one_go", total_timesteps=8 * step, target_reward=45.0))
    assert one_go.stop_reason == "target_reward" and one_go.update == 5 and one_go.solved_at["update"] == 5

    def resume(name, **given):
        return _resume_config(str(tmp_path / name), {"resume": str(tmp_path / name), "total_timesteps": 8 * step,
                                                     **given})
    for name, target in (("far", 1000.0), ("confirmed", 15.0)):  # (the second confirms its target at update 2)
        first = _run_with_scores(monkeypatch, config(name, total_timesteps=3 * step, target_reward=target,
                                                     stop_at_target=False))
        assert first.update == 3 and (first.solved_at or {}).get("update") == (2 if name == "confirmed" else None)
        with pytest.raises(ValueError, match="already reached 30.0"):
            resume(name, target_reward=25.0)
        with pytest.raises(ValueError, match="--seed=9"):  # (what trains may still not change)
            resume(name, seed=9)
        if name == "confirmed":
            with pytest.raises(ValueError, match="target 15.0 was already confirmed at update 2, and a lower target"):
                resume(name, target_reward=10.0)
            with pytest.raises(ValueError, match="--stop-at-target: this run's target 15.0 was confirmed at update 2"):
                resume(name, stop_at_target=True)
        resumed = _run_with_scores(monkeypatch, resume(name, target_reward=45.0, stop_at_target=True))
        assert resumed.update == 5 and resumed.solved_at["update"] == 5 and resumed.stop_reason == "target_reward"
        assert_same(state(resumed.model), state(one_go.model))


def test_a_resume_built_in_python_keeps_the_checkpoints_settings(tmp_path):
    """`ppo2.train(..., resume=path)` / `Trainer(config)` builds its configuration itself, not from the checkpoint as
    train.py --resume does: a setting that decides what trains and differs from the checkpoint's is refused, naming
    it (it used to continue silently with the new one), and the episode restarts recorded so far are kept."""
    step = 4 * 32
    cfg = TrainConfig.for_env("CartPole-v1", total_timesteps=2 * step, num_envs=4, num_steps=32, eval_interval=0,
                              checkpoint_interval=1, restart_episodes_at=(1,), output_dir=str(tmp_path / "run"),
                              plot=False, **FAST)
    first = Trainer(cfg)
    first.learn()
    first.close()
    again = dict(resume=str(tmp_path / "run"), total_timesteps=3 * step)
    with pytest.raises(ValueError, match=r"--learning-rate=0.1 \(the checkpoint has 0.003\)"):
        Trainer(cfg.replace(learning_rate=0.1, **again))
    with pytest.raises(ValueError, match="--seed=5"):
        Trainer(cfg.replace(seed=5, **again))
    resumed = Trainer(cfg.replace(restart_episodes_at=(), **again))
    try:
        assert resumed.update == 2 and resumed.config.restart_episodes_at == (1,)
    finally:
        resumed.close()


def test_a_resumed_run_records_what_each_stretch_computed_with(tmp_path):
    """A run resumed on other code, ranks, threads or platform is not reproduced by one command on one commit: each
    start or resume records its ranks and provenance from the update it began at (summary.json "segments"), and
    segment_changes (what scripts/add_to_zoo.py refuses on) names what changed and where."""
    from ppo2.rundir import segment_changes

    step = 4 * 32
    cfg = TrainConfig.for_env("CartPole-v1", total_timesteps=2 * step, num_envs=4, num_steps=32, eval_interval=0,
                              checkpoint_interval=1, output_dir=str(tmp_path / "run"), plot=False, **FAST)
    Trainer(cfg).learn()
    run = tmp_path / "run"

    def resume(**kw):
        trainer = Trainer(cfg.replace(**{"resume": str(run), **kw}))
        trainer.learn()
        trainer.close()
        return json.loads((run / "summary.json").read_text())["segments"]

    same = resume(total_timesteps=3 * step)
    assert [s["from_update"] for s in same] == [0, 2] and same[0]["world_size"] == same[1]["world_size"] == 1
    assert same[0]["torch"] == same[1]["torch"] and segment_changes(same) == []
    threads = torch.get_num_threads()
    try:
        other = resume(total_timesteps=4 * step, torch_threads=2)
        assert [s["from_update"] for s in other] == [0, 2, 3]
        assert segment_changes(other) == ["torch_threads 1 -> 2 at update 3"]
        # a stretch that trained nothing (resumed at its end) is replaced by the next
        assert [s["from_update"] for s in resume(total_timesteps=4 * step, torch_threads=2)] == [0, 2, 3, 4]
        assert [s["from_update"] for s in resume(total_timesteps=5 * step, torch_threads=2)] == [0, 2, 3, 4]
    finally:
        torch.set_num_threads(threads)  # (the trainer sets this process's count; later tests expect their own)


def test_custom_latent_networks_plug_in(tmp_path):
    def nets():
        torch.manual_seed(0)
        return (torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU()),
                torch.nn.Sequential(torch.nn.Linear(4, 48), torch.nn.ReLU()))

    pi, vf = nets()
    before = pi[0].weight.clone()
    out = tmp_path / "c"
    model = train(env_id="CartPole-v1", policy_net=pi, value_net=vf, output_dir=str(out), total_timesteps=8 * 32 * 3,
                  eval_interval=0, stop_at_target=False, **FAST)
    assert model.policy_latent is pi and not torch.equal(before, pi[0].weight)
    from ppo2 import PPO2

    with pytest.raises(ValueError, match="custom latent networks: pass the same architecture"):
        PPO2.from_pretrained(out)
    reloaded = PPO2.from_pretrained(out, policy_net=nets()[0], value_net=nets()[1])
    assert_same(state(model), state(reloaded))


def test_a2c_means_a2c_on_any_env(tmp_path):
    """Without an A2C preset, --algo a2c gets A2C's own defaults (short rollouts, one step each, RMSprop),
    not PPO's epochs of minibatches; it runs on vector, image and Dict envs alike."""
    cfg = TrainConfig.for_env("Acrobot-v1", "a2c")
    assert (cfg.num_steps, cfg.update_epochs, cfg.num_minibatches, cfg.optimizer, cfg.norm_adv, cfg.gae_lambda) == \
        (5, 1, 1, "rmsprop", False, 1.0)
    assert TrainConfig.for_env("Acrobot-v1", "a2c", learning_rate=1e-3).learning_rate == 1e-3
    sys.path.insert(0, str(Path(__file__).parent / "user_envs"))
    for env_id in ("Pendulum-v1", "pixel_games:SideWithFlag-v0"):
        model = train(env_id=env_id, algo="a2c", total_timesteps=400, eval_interval=0, output_dir=str(tmp_path / env_id),
                      plot=False, **FAST)
        assert model.trainer_summary["global_step"] == 400
        summary = json.loads((tmp_path / env_id / "summary.json").read_text())
        assert summary["algo"] == "a2c" and summary["update_path"].startswith("autograd (algo 'a2c'")


def test_reward_scaler_against_hand_computed_values():
    """R_t = gamma R_{t-1} + r_t (reset after done), Var[R] over valid rows (Chan merge), r / sqrt(Var + eps)."""
    from ppo2.collector import RewardScaler

    sc = RewardScaler(2, gamma=0.5, clip=10.0, eps=0.0)
    sc.count = 0.0  # (no prior: the statistics are exactly those of the returns seen)
    out1 = sc(np.array([2.0, 4.0]), done=np.array([False, True]), valid=np.array([True, True]))
    # returns seen: [2, 4] -> mean 3, var 1 -> rewards / 1
    assert (sc.mean, sc.var) == (3.0, 1.0) and out1.tolist() == [2.0, 4.0]
    out2 = sc(np.array([1.0, 0.0]), done=np.array([False, False]), valid=np.array([True, False]))
    # env 0: R = 0.5*2 + 1 = 2; env 1 was reset (its row is the autoreset step: not counted)
    # seen so far [2, 4, 2]: mean 8/3, var = (4 + 16 + 4)/3 - 64/9 = 8/9
    assert sc.mean == pytest.approx(8 / 3) and sc.var == pytest.approx(8 / 9) and sc.count == 3
    np.testing.assert_allclose(out2, [1.0 / np.sqrt(8 / 9), 0.0], rtol=1e-6)
    assert sc.ret.tolist() == [2.0, 0.0]
    big = RewardScaler(1, gamma=0.99, clip=5.0)
    assert big(np.array([1e6]), np.array([False]), np.array([True]))[0] <= 5.0  # clipped


def test_reward_scaling_reaches_the_update_and_not_the_logs(tmp_path):
    """With --normalize-reward the rollout holds scaled rewards; episode returns stay in env units."""
    cfg = TrainConfig.for_env("Pendulum-v1", normalize_reward=True, num_envs=2, num_steps=200, num_minibatches=2,
                              total_timesteps=400, output_dir=str(tmp_path / "r"), **FAST)
    t = Trainer(cfg)
    try:
        t.collect_rollout()
        stored = t.storage.rewards
        assert np.abs(stored).max() <= cfg.reward_clip and t.collector.reward_scaler.count > 300
        assert len(t.collector.recent_returns) == 2 and max(t.collector.recent_returns) < -200  # raw Pendulum units
        assert stored.std() > 0.05 and abs(stored.mean()) < 5
    finally:
        t.close()
