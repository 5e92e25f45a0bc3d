"""What a hostile (or unlucky) user does: reuse directories, run twice at once, flip bits, tamper configs,
feed the hub helpers graph-attached or non-finite tensors, and mistype commands. Each test failed on the
code before the hardening pass."""
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import toy_envs  # noqa: F401  (registers ppo2test/*)
from conftest import REPO, act, hub_load
from ppo2 import PPO2
from ppo2.checkpoint import save_checkpoint
from ppo2.config import TrainConfig
from ppo2.io import IntegrityError, sha256_file
from ppo2.rundir import RunDirectoryBusy, RunLock
from ppo2.trainer import NonFiniteEnvError, Trainer, main

FAST = dict(tensorboard=False, progress=False, plot=False, eval_interval=0)
SMALL = dict(total_timesteps=32 * 16 * 6, num_envs=32, num_steps=16, stop_at_target=False)


def run(out, **kw):
    cfg = TrainConfig.for_env(kw.pop("env_id", "CartPole-v1"), output_dir=str(out), **{**FAST, **SMALL, **kw})
    t = Trainer(cfg)
    try:
        t.learn()
    finally:
        t.close()
    return t


def cli(*args) -> list[str]:
    return [str(a) for a in args] + ["--no-progress", "--no-tensorboard", "--no-plot"]


# ---------------------------------------------------------------------------------------------------
# output directories
# ---------------------------------------------------------------------------------------------------

def test_existing_run_directory_is_refused_unless_resumed_or_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    run(out, total_timesteps=32 * 16 * 8, checkpoint_interval=2, snapshot_interval=4)  # checkpoints 6, 8; policies 4, 8
    assert sorted(p.name for p in (out / "policies").iterdir()) == ["update_000004", "update_000008"]
    with pytest.raises(ValueError, match=r"already holds a training run .*--resume .*--overwrite"):
        Trainer(TrainConfig.for_env("CartPole-v1", output_dir=str(out), **FAST))
    assert main(cli("--env", "CartPole-v1", "--output-dir", out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "already holds a training run" in err
    # --overwrite: the shorter new run replaces the old one entirely and stays resumable
    run(out, total_timesteps=32 * 16 * 3, checkpoint_interval=2, overwrite=True)
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("update_*"))
    assert ckpts == ["update_000002", "update_000003"]
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert (out / "checkpoints" / latest["dir"]).is_dir() and latest["update"] == 3
    assert [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]] == [1, 2, 3]
    assert not (out / "policies").exists()  # (the old run's snapshots went with it)


def test_default_directory_moves_on_instead_of_mixing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = Trainer(TrainConfig.for_env("CartPole-v1", seed=5, **FAST, **SMALL))
    assert first.output_dir == Path("runs/CartPole-v1__ppo__5")
    first.learn()
    first.close()
    second = Trainer(TrainConfig.for_env("CartPole-v1", seed=5, **FAST, **SMALL))
    assert second.output_dir == Path("runs/CartPole-v1__ppo__5__2")
    second.close()


def test_second_writer_gets_a_clear_error(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    lock = RunLock(out)  # another run holds the directory
    try:
        t = Trainer(TrainConfig.for_env("CartPole-v1", output_dir=str(out), **FAST, **SMALL))
        with pytest.raises(RunDirectoryBusy, match=rf"being written by another training run \(pid {os.getpid()}\)"):
            t.learn()
        t.close()
        assert not (out / "metrics.csv").exists()  # it wrote nothing
    finally:
        lock.release()
    run(out)  # once the lock is released the directory is usable


def test_two_concurrent_cli_runs_one_refused(tmp_path):
    out = tmp_path / "race"
    cmd = [sys.executable, str(REPO / "train.py"), *cli("--env", "CartPole-v1", "--output-dir", out, "--total-timesteps",
                                                          "3000000", "--no-stop-at-target", "--eval-interval", "0")]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.1)
        second = subprocess.run(cmd + ["--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "being written by another training run" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.communicate()


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    model = PPO2(4, 8, 2)
    opt = torch.optim.Adam(model.parameters())
    for update in (100, 200):  # an older, longer run's checkpoints
        save_checkpoint(tmp_path, update, model, opt, {"config": {}}, {})
    final = save_checkpoint(tmp_path, 2, model, opt, {"config": {}}, {})
    assert final.is_dir()
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["dir"] == "update_000002" and (tmp_path / "checkpoints" / latest["dir"]).is_dir()


def test_metrics_have_no_duplicate_or_torn_rows_after_crash_and_resume(tmp_path):
    out = tmp_path / "crash"
    run(out, checkpoint_interval=4)  # metrics rows 1..6, checkpoints at 4 and 6
    # the crash: the process died after logging update 6 (and half of a 7th row), before checkpoint 6
    import shutil

    shutil.rmtree(out / "checkpoints" / "update_000006")
    ck4 = out / "checkpoints" / "update_000004"
    (out / "checkpoints" / "latest.json").write_text(json.dumps(
        {"update": 4, "dir": ck4.name, "manifest_sha256": sha256_file(ck4 / "manifest.json")}))
    with open(out / "metrics.csv", "a") as f:
        f.write("7,3584,0.5,10")
    assert main(cli("--resume", out)) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert all(len(r.split(",")) == len(header) for r in rows[1:])


# ---------------------------------------------------------------------------------------------------
# every file read is verified first
# ---------------------------------------------------------------------------------------------------

def _flip(path: Path, offset_from_end: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["state.safetensors", "state.json", "model.safetensors", "manifest.json"])
def test_bit_flip_in_checkpoint_is_refused_on_resume(tmp_path, capsys, name):
    out = tmp_path / "flip"
    run(out, checkpoint_interval=3)
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    target = out / "checkpoints" / latest["dir"] / name
    if name == "state.json":  # a digit of the saved global step: still valid JSON, a different run state
        text = target.read_text()
        target.write_text(text.replace('"global_step": 3072', '"global_step": 3073', 1))
        assert target.read_text() != text
    else:
        _flip(target, 3 if name == "manifest.json" else 5)
    assert main(cli("--resume", out, "--total-timesteps", 32 * 16 * 8)) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and err.count("\n") == 1


def _saved(tmp_path, **config_changes) -> Path:
    d = tmp_path / "policy"
    PPO2(4, 16, 2, normalize_obs=True).save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(config_changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("change, match", [
    (dict(hidden_dim=10 ** 9), r"hidden_dim.*an int in \[1, 16384\], got 1000000000"),
    (dict(hidden_dim=32), r"does not match .*config expects \('F32', \(32, 4\)\), file has \('F32', \(16, 4\)\)"),
    (dict(input_dim=4.0), r"input_dim.*an int .*got 4.0 \(float\)"),
    (dict(obs_clip=True), r"obs_clip.*a finite number > 0, got True \(bool\)"),
    (dict(shared_latent="false"), r"shared_latent.*true or false, got 'false' \(str\)"),
    (dict(normalize_obs=1), r"normalize_obs.*true or false, got 1 \(int\)"),
    (dict(action_space={"type": "Discrete", "n": 2.7}), r"action_space.n.*an int in \[1, 65536\], got 2.7"),
    (dict(action_space={"type": "Discrete", "n": 2, "start": 1}), r"exactly the keys \['n', 'type'\]"),
    (dict(dropout="0.5"), r"dropout.*a number in \[0, 1\)"),
])
def test_tampered_config_is_refused_before_anything_is_allocated(tmp_path, change, match):
    d = _saved(tmp_path, **change)
    with pytest.raises(IntegrityError, match=match):
        PPO2.from_pretrained(d)
    with pytest.raises(IntegrityError, match=match):
        hub_load("ppo2", pretrained=str(d))


def test_a_local_directory_never_shadows_a_zoo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    impostor = PPO2(4, 64, 2)
    impostor.save_pretrained(tmp_path / "CartPole-v1")
    with pytest.warns(UserWarning, match=r"both a zoo id and a local directory.*'./CartPole-v1'"):
        model = hub_load("ppo2", pretrained="CartPole-v1")
    shipped = PPO2.from_pretrained(REPO / "weights" / "CartPole-v1")
    for (k, a), b in zip(model.state_dict().items(), shipped.state_dict().values()):
        assert torch.equal(a, b), k
    local = hub_load("ppo2", pretrained="./CartPole-v1")
    assert torch.equal(local.value_head.weight, impostor.value_head.weight)
    from ppo2.evaluate import load_policy

    assert torch.equal(load_policy("CartPole-v1").value_head.weight, shipped.value_head.weight)


# ---------------------------------------------------------------------------------------------------
# the hub helpers keep the trainer's guarantees
# ---------------------------------------------------------------------------------------------------

def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = PPO2(4, 16, 2)
    obs = torch.randn(64, 4)
    return model, obs


def test_train_fn_detaches_what_model_returns():
    # the README's loop: the old values / log-probs come straight from model(obs), still attached to the graph
    model, obs = _model_and_batch()
    twin = copy.deepcopy(model)
    returns = torch.randn(64)
    old_v, actions, old_nlp, _ = model(obs)
    assert old_nlp.requires_grad
    step = hub_load("train_fn", model, torch.optim.SGD(model.parameters(), lr=0.1))
    twin_step = hub_load("train_fn", twin, torch.optim.SGD(twin.parameters(), lr=0.1))
    step(obs, returns, actions, old_v, old_nlp)
    twin_step(obs, returns, actions.detach(), old_v.detach(), old_nlp.detach())
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name  # the same step as with detached inputs
    head = model.action_head.output_layer().weight
    assert not torch.equal(head, _model_and_batch()[0].action_head.output_layer().weight)  # the policy moved


@pytest.mark.parametrize("field", ["returns", "old_values", "old_neg_log_prbs"])
def test_train_fn_refuses_non_finite_inputs_and_changes_nothing(field):
    model, obs = _model_and_batch()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        old_v, actions, old_nlp, _ = model(obs)
    args = {"returns": torch.randn(64), "old_values": old_v, "old_neg_log_prbs": old_nlp}
    args[field] = args[field].clone()
    args[field][3] = float("nan")
    step = hub_load("train_fn", model, torch.optim.Adam(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=rf"{field} contains 1 NaN/inf value"):
        step(obs, args["returns"], actions, args["old_values"], args["old_neg_log_prbs"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_train_fn_never_applies_a_non_finite_step():
    model, obs = _model_and_batch()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        old_v, actions, old_nlp, _ = model(obs)
    step = hub_load("train_fn", model, torch.optim.Adam(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match="not applied"):  # finite inputs whose loss overflows
        step(obs, torch.full((64,), 2e19), actions, old_v, old_nlp)  # (v - R)^2 overflows float32
    with pytest.raises(FloatingPointError, match="advantages .*not applied"):  # their normalisation overflows
        step(obs, torch.tensor([3e38, -3e38] * 32), actions, old_v, old_nlp)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("make_obs", [
    lambda: np.array([1e39, 0.0, 0.0, 0.0]),                       # float64, finite, inf as float32
    lambda: torch.tensor([[0.0, -1e300, 0.0, 0.0]], dtype=torch.float64),
    lambda: np.array([[0.0, np.nan, 0.0, 0.0]], np.float32),
])
def test_predict_and_forward_reject_values_float32_cannot_hold(make_obs):
    model = PPO2(4, 16, 2)
    with pytest.raises(ValueError, match=r"NaN/inf|beyond float32's range"):
        model.predict(make_obs())
    with pytest.raises(ValueError, match=r"NaN/inf|beyond float32's range"):
        model(make_obs())


def test_loss_rejects_non_finite_and_mismatched_inputs():
    model, obs = _model_and_batch()
    v, a, nlp, ent = model(obs)
    ok = dict(returns=torch.randn(64), value_f=v, neg_log_probs=nlp, entropy=ent, advantages=torch.randn(64),
              old_values=v.detach(), old_neg_log_prbs=nlp.detach())
    bad = dict(ok, advantages=torch.full((64,), float("inf")))
    with pytest.raises(ValueError, match=r"advantages contains 64 NaN/inf"):
        model.loss(*bad.values(), 0.2, 0.0, 0.5)
    short = dict(ok, returns=torch.randn(63))
    with pytest.raises(ValueError, match=r"returns=\(63,\), value_f=\(64,\)"):
        model.loss(*short.values(), 0.2, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"clip_range must be a finite number >= 0, got nan"):
        model.loss(*ok.values(), float("nan"), 0.0, 0.5)


@pytest.mark.parametrize("normalize_obs", [False, True])
def test_predict_follows_weights_replaced_every_way(normalize_obs):
    torch.manual_seed(0)
    model = PPO2(4, 16, 3, normalize_obs=normalize_obs)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)

    def reference():
        with torch.no_grad():
            return act(model, torch.from_numpy(obs)).numpy()

    model.predict(obs)  # warm predict's numpy views
    others = [PPO2(4, 16, 3, normalize_obs=normalize_obs) for _ in range(4)]
    for other in others:
        for p in other.parameters():
            torch.nn.init.normal_(p, std=2.0)
        if normalize_obs:
            other.update_obs_stats(torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5, 100.0)
    replacements = [
        lambda: model.load_state_dict(others[0].state_dict()),
        lambda: model.load_state_dict(copy.deepcopy(others[1].state_dict()), assign=True),
        lambda: torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(others[2].parameters()),
                                                    model.parameters()),
        lambda: [setattr(p, "data", q.detach().clone()) for p, q in zip(model.parameters(), others[3].parameters())],
    ]
    for i, replace in enumerate(replacements):
        before = model.predict(obs)[0]
        with torch.no_grad():
            replace()
        assert np.array_equal(model.predict(obs)[0], reference()), i
        assert not np.array_equal(before, reference()) or i == 0, i  # (the new weights do act differently)
    if normalize_obs:  # the normaliser's buffers written in place
        with torch.no_grad():
            model.obs_mean.add_(3.0)
        assert np.array_equal(model.predict(obs)[0], reference())


# ---------------------------------------------------------------------------------------------------
# environments that return NaN
# ---------------------------------------------------------------------------------------------------

def test_nan_observation_stops_training_before_any_nan_action_reaches_the_env(tmp_path):
    toy_envs.NaNObsBoxEnv.nan_actions_seen = 0
    cfg = TrainConfig.for_env("ppo2test/NaNObsBox-v0", output_dir=str(tmp_path / "nan"), num_envs=2, num_steps=16,
                              num_minibatches=1, total_timesteps=32 * 10, checkpoint_interval=1, vectorization="sync",
                              **FAST)
    t = Trainer(cfg)
    with pytest.raises(NonFiniteEnvError, match=r"NaN/inf observation at update 3, rollout step 8 in sub-environment\(s\) \[0, 1\]"):
        t.learn()
    t.close()
    assert toy_envs.NaNObsBoxEnv.nan_actions_seen == 0
    latest = json.loads((tmp_path / "nan" / "checkpoints" / "latest.json").read_text())
    assert latest["update"] == 2
    model = hub_load("ppo2", pretrained=str(tmp_path / "nan" / "checkpoints" / latest["dir"]))
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------
# the command lines: one clear line and the next step
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, match", [
    (["--resume", "runs/does-not-exist"], r"cannot resume: runs/does-not-exist does not exist"),
    (["--env", "CartPole-v1", "--output-dir", "/proc/ppo2-cannot-write-here", "--total-timesteps", "512"],
     r"error: \[Errno \d+\]"),
    (["--env", "CartPole-v1", "--num-envs", "0"], r"num_envs must be an int >= 1, got 0"),
    (["--env", "CartPole-v1", "--num-envs", "3", "--processes", "2"], r"num_envs=3 must be divisible by processes=2"),
    (["--env", "CartPole-v1", "--processes", "-1"], r"processes must be an int >= 0, got -1"),
    (["--env", "CartPole-v1", "--restart-episodes-at", "5", "3"],
     r"restart_episodes_at must be updates >= 1 in increasing order, got \(5, 3\)"),
    (["--env", "CartPole-v1", "--restart-episodes-at", "0"], r"restart_episodes_at must be updates >= 1"),
])
def test_train_cli_errors_are_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(cli(*argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert __import__("re").search(match, err), err


def test_resume_refuses_flags_that_contradict_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "r"
    run(out)
    assert main(cli("--resume", out, "--learning-rate", "0.1", "--env", "Acrobot-v1")) == 2
    err = capsys.readouterr().err
    assert "--env-id=Acrobot-v1 (the checkpoint has CartPole-v1)" in err and "--learning-rate=0.1" in err
    assert main(cli("--resume", out, "--total-timesteps", 32 * 16 * 7, "--env", "CartPole-v1")) == 0  # agrees / may change


@pytest.mark.parametrize("argv, match", [
    (["CartPole-v1", "--env", "Acrobot-v1", "-n", "2"], r"observations of shape \(4,\), but Acrobot-v1 has"),
    (["Pendulum-v1", "--env", "MountainCarContinuous-v0", "-n", "2"], r"observations of shape \(3,\)"),
    (["CartPol-v1"], r"not a zoo id .*Did you mean 'CartPole-v1'"),
    (["runs/missing-run"], r"'runs/missing-run': no such directory \(a policy directory holds model.safetensors"),
    (["./missing"], r"'./missing': no such directory"),
])
def test_evaluate_cli_errors_are_one_line_and_fast(argv, match, capsys, tmp_path, monkeypatch):
    from ppo2.evaluate import main as evaluate_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    t0 = time.perf_counter()
    assert evaluate_main(argv) == 2
    assert time.perf_counter() - t0 < 5  # no network retries
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(match, err), err


def test_evaluate_cli_refuses_zero_episodes(capsys):
    from ppo2.evaluate import main as evaluate_main

    with pytest.raises(SystemExit) as exc:
        evaluate_main(["CartPole-v1", "-n", "0"])
    assert exc.value.code == 2 and "expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_model_env_compatibility_is_checked_in_full(tmp_path):
    two = PPO2(4, 16, 3)  # CartPole has Discrete(2)
    with pytest.raises(ValueError, match=r"acts in Discrete\(n=3\), but CartPole-v1 has action space Discrete\(2\)"):
        Trainer(TrainConfig.for_env("CartPole-v1", output_dir=str(tmp_path / "x"), **FAST), model=two)
    box = PPO2(3, 16, {"type": "Box", "shape": [1], "low": [-1.0], "high": [1.0]})  # Pendulum's bounds are +-2
    with pytest.raises(ValueError, match=r"high=\[1.0\].*but Pendulum-v1 has action space"):
        Trainer(TrainConfig.for_env("Pendulum-v1", output_dir=str(tmp_path / "y"), **FAST), model=box)


# ---------------------------------------------------------------------------------------------------
# identical runs, identical files
# ---------------------------------------------------------------------------------------------------

def test_weights_files_are_byte_identical_across_processes(tmp_path):
    code = ("import sys, torch; from ppo2 import PPO2; torch.manual_seed(0); "
            "PPO2(4, 16, 2, normalize_obs=True).save_pretrained(sys.argv[1])")
    digests = set()
    for i in range(4):  # safetensors' metadata order used to change from process to process
        subprocess.run([sys.executable, "-c", code, str(tmp_path / str(i))], check=True, cwd=REPO)
        digests.add(sha256_file(tmp_path / str(i) / "model.safetensors"))
    assert len(digests) == 1
    header = json.loads((tmp_path / "0" / "model.safetensors").read_bytes()[8:][:int.from_bytes(
        (tmp_path / "0" / "model.safetensors").read_bytes()[:8], "little")])
    assert len(header["__metadata__"]) <= 1


def test_rollout_finite_check_passes_huge_finite_values_and_names_what_is_not_finite():
    """The collector's per-step check: huge finite values pass; a NaN
    observation or an inf reward is named, with the sub-environments that returned it."""
    from ppo2.collector import Collector

    c = Collector.__new__(Collector)  # (check_finite reads only env_id)
    c.env_id = "Toy-v0"
    c.check_finite(np.full((4, 3), 1e308), "here", np.zeros(4))
    with pytest.raises(NonFiniteEnvError, match=r"NaN/inf reward at here in sub-environment\(s\) \[1\]"):
        c.check_finite(np.zeros((4, 3), np.float32), "here", np.array([0.0, np.inf, 0.0, 0.0]))
    obs = np.zeros((4, 3), np.float32)
    obs[2, 1] = np.nan
    with pytest.raises(NonFiniteEnvError, match=r"NaN/inf observation at here in sub-environment\(s\) \[2\]"):
        c.check_finite(obs, "here", np.zeros(4))
