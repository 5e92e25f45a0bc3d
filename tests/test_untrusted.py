"""What a downloaded file says is data: nothing it names is imported or run, and bad values are refused with a
message that names what was expected, never turned into a silent wrong result."""
import json
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from conftest import act, hub_load
from ppo2 import PPO2
from ppo2.io import IntegrityError, sha256_file


def _rehash(directory):
    """Make config.json's weights_sha256 match a model.safetensors edited by hand (what an attacker can do)."""
    config = json.loads((directory / "config.json").read_text())
    config["weights_sha256"] = sha256_file(directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config))


def _edit_tensor(directory, name, fn):
    from safetensors.torch import load_file, save_file

    state = load_file(directory / "model.safetensors")
    state[name] = fn(state[name].clone())
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    _rehash(directory)


# ---- nothing a policy's files name is imported -----------------------------------------------------------

PAYLOAD = "from pathlib import Path\nPath(__file__).with_name('PWNED').touch()\n"


@pytest.mark.parametrize("env_id", ["payload:Evil-v0", "this:CartPole-v1"])
def test_evaluate_never_imports_a_module_named_by_the_policy(tmp_path, monkeypatch, capsys, env_id):
    from ppo2.evaluate import main

    policy = tmp_path / "policy"
    PPO2(input_dim=4, action_space=2).save_pretrained(policy, env_id=env_id)
    (policy / "payload.py").write_text(PAYLOAD)
    monkeypatch.chdir(policy)
    monkeypatch.syspath_prepend(str(policy))
    before = set(sys.modules)
    assert main(["."]) == 2
    err = capsys.readouterr().err
    assert f"--env {env_id}" in err and "never runs code" in err
    assert not (policy / "PWNED").exists()
    assert {"payload", "this"}.isdisjoint(set(sys.modules) - before)


def test_evaluate_imports_a_module_the_user_names(tmp_path, monkeypatch, capsys):
    """The user's own word on the command line is the opt-in: the same id passed as --env is imported."""
    from ppo2.evaluate import main

    policy = tmp_path / "policy"
    PPO2(input_dim=4, action_space=2).save_pretrained(policy, env_id="mycartpole:MyCartPole-v0")
    (tmp_path / "mycartpole.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCartPole-v0', entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv',"
        " max_episode_steps=50)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main([str(policy), "--env", "mycartpole:MyCartPole-v0", "-n", "2"]) == 0
    assert "MyCartPole-v0" in capsys.readouterr().out


def test_resume_never_imports_a_module_named_by_the_checkpoint(tmp_path):
    from ppo2.checkpoint import MANIFEST
    from ppo2.trainer import _resume_config, main

    run = tmp_path / "run"
    assert main(["--env", "CartPole-v1", "--total-timesteps", "1024", "--no-progress", "--no-tensorboard", "--no-plot",
                 "--output-dir", str(run), "--no-stop-at-target"]) == 0
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    ckpt = run / "checkpoints" / latest["dir"]
    state = json.loads((ckpt / "state.json").read_text())
    state["config"]["env_id"] = "payload:Evil-v0"
    (ckpt / "state.json").write_text(json.dumps(state))
    manifest = json.loads((ckpt / MANIFEST).read_text())
    manifest["files"]["state.json"] = sha256_file(ckpt / "state.json")
    (ckpt / MANIFEST).write_text(json.dumps(manifest))
    latest["manifest_sha256"] = sha256_file(ckpt / MANIFEST)
    (run / "checkpoints" / "latest.json").write_text(json.dumps(latest))
    with pytest.raises(ValueError, match="--env payload:Evil-v0"):
        _resume_config(str(run), {})


# ---- images: the dtype says what the numbers mean -------------------------------------------------------

def _pixel_model():
    torch.manual_seed(0)
    return PPO2(observation_space=spaces.Box(0, 255, (4, 36, 36), np.uint8), action_space=6)


def test_float_images_in_unit_range_are_taken_as_scaled():
    model = _pixel_model()
    frames = np.random.default_rng(0).integers(0, 256, (16, 4, 36, 36), dtype=np.uint8)
    want = model.predict(frames)[0]
    np.testing.assert_array_equal(model.predict(frames.astype(np.float32) / 255.0)[0], want)
    np.testing.assert_array_equal(model.predict(torch.from_numpy(frames).double() / 255.0)[0], want)
    np.testing.assert_array_equal(model.predict(frames.astype(np.int64))[0], want)  # pixel values in another int type
    np.testing.assert_array_equal(model.predict(frames[0].tolist())[0], want[0])  # a nested list of ints
    np.testing.assert_array_equal(model.predict((frames[0] / 255.0).tolist())[0], want[0])  # of floats in [0, 1]


@pytest.mark.parametrize("bad, message", [
    (lambda f: f.astype(np.float32), r"float image with values in \[0, 255\].*already scaled to \[0, 1\]"),
    (lambda f: f.astype(np.int64) * 4, r"integer image with values in \[0, 1020\].*\[0, 255\]"),
    (lambda f: f.astype(np.int64) - 5, r"integer image with values in \[-5, 250\]"),
    (lambda f: torch.from_numpy(f).float(), r"float image with values in \[0, 255\]"),
])
def test_images_outside_their_dtypes_range_are_refused(bad, message):
    model = _pixel_model()
    frames = np.arange(2 * 4 * 36 * 36).reshape(2, 4, 36, 36) % 256
    frames = frames.astype(np.uint8)
    with pytest.raises(ValueError, match=message):
        model.predict(bad(frames))


# ---- statistics, weights and checkpoint state are validated on load --------------------------------------

@pytest.mark.parametrize("name, edit, message", [
    ("obs_mean", lambda t: t.fill_(float("nan")), "obs_mean holds 3 NaN/inf"),
    ("obs_var", lambda t: t.fill_(-1.0), "obs_var holds negative variances"),
    ("obs_count", lambda t: t.fill_(0.0), "obs_count is 0.0"),
    ("value_head.weight", lambda t: t.fill_(float("inf")), "value_head.weight holds"),
])
def test_corrupt_statistics_and_weights_are_refused_on_load(tmp_path, name, edit, message):
    PPO2(input_dim=3, action_space=2, normalize_obs=True).save_pretrained(tmp_path)
    _edit_tensor(tmp_path, name, edit)
    with pytest.raises(IntegrityError, match=message):
        PPO2.from_pretrained(tmp_path)


@pytest.mark.parametrize("state", [{"mean": 0.0, "var": 1e30, "count": 10.0}, {"mean": 0.0, "var": -1.0, "count": 10.0},
                                   {"mean": float("nan"), "var": 1.0, "count": 10.0}, {"mean": 0.0, "var": 1.0, "count": 0.0},
                                   {"var": 1.0}])
def test_reward_scaler_state_is_validated_on_resume(state):
    from ppo2.collector import RewardScaler

    scaler = RewardScaler(num_envs=2, gamma=0.99)
    with pytest.raises(ValueError, match="reward-scaler state"):
        scaler.load_state(state, {"collector.reward_scaler.ret": torch.zeros(2, dtype=torch.float64)}, True)


def test_per_rank_reward_scaler_rows_are_validated_and_merged_for_another_world_size():
    """A checkpoint of two ranks: a run of two takes its rank's row; a run of one the two merged (the moments of
    the pooled returns); malformed rows are refused by name."""
    from ppo2.collector import RewardScaler

    rows = torch.tensor([[1.0, 4.0, 10.0], [3.0, 2.0, 30.0]], dtype=torch.float64)
    scaler = RewardScaler(num_envs=2, gamma=0.99)
    scaler.ret[:] = 5.0
    scaler.load_rank_rows(rows, rank=1, world_size=2)
    assert (scaler.mean, scaler.var, scaler.count) == (3.0, 2.0, 30.0) and scaler.ret.tolist() == [0.0, 0.0]
    scaler.load_rank_rows(rows, rank=0, world_size=1)
    # pooled: mean (10*1 + 30*3)/40 = 2.5; var = (10*(4 + 1.5^2) + 30*(2 + 0.5^2)) / 40 = (62.5 + 67.5) / 40 = 3.25
    assert scaler.mean == pytest.approx(2.5) and scaler.var == pytest.approx(3.25) and scaler.count == 40.0
    with pytest.raises(ValueError, match=r"per-rank reward-scaler state must be \(ranks, 3\), got \(2, 2\)"):
        scaler.load_rank_rows(rows[:, :2], rank=0, world_size=2)
    with pytest.raises(ValueError, match="reward-scaler state is invalid"):
        scaler.load_rank_rows(torch.tensor([[0.0, -1.0, 5.0]], dtype=torch.float64), rank=0, world_size=1)


def test_a_failure_after_resume_does_not_claim_no_checkpoint(monkeypatch, capsys):
    import ppo2.trainer as T
    from ppo2.errors import NonFiniteLossError

    class Resumed:
        update, last_checkpoint, resumed_from, dist = 7, None, "runs/x/checkpoints/update_000007", None

        def __init__(self, config):
            self.dist = type("D", (), {"close": lambda self: None, "is_main": True, "enabled": False})()

        def learn(self):
            raise NonFiniteLossError("loss is nan")

        def wait_for_outputs(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(T, "Trainer", Resumed)
    assert T.main(["--env", "CartPole-v1"]) == 1
    err = capsys.readouterr().err
    assert "resumed from runs/x/checkpoints/update_000007" in err and "none written yet" not in err


# ---- flags: refused before training, with bounds a saved run loads again ----------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--vf-coef", "-5"], "vf_coef must be >= 0"),
    (["--ent-coef", "-1"], "ent_coef must be >= 0"),
    (["--optimizer-eps", "0"], r"optimizer_eps must be in \(0, 1\]"),
    (["--learning-rate", "inf"], "learning_rate must be a finite number"),
    (["--learning-rate", "nan"], "learning_rate must be a finite number"),
    (["--num-steps", "1"], "num_steps must be >= 2"),
    (["--log-std-init", "25"], r"log_std_init must be in \[-20.0, 20.0\]"),
    (["--eval-episodes", "100000"], "at most 10000"),
    (["--gamma", "nan"], "gamma must be a finite number"),
    (["--target-reward", "inf"], "target_reward must be a finite number"),
])
def test_bad_flags_are_refused_before_training(flags, message):
    from ppo2.config import config_from_args

    with pytest.raises(ValueError, match=message):
        config_from_args(["--env", "Pendulum-v1", *flags])


def test_the_largest_log_std_init_accepted_trains_a_policy_that_loads(tmp_path):
    from ppo2.config import LOG_STD_BOUND

    model = PPO2(input_dim=3, action_space=spaces.Box(-2, 2, (1,), np.float32), log_std_init=LOG_STD_BOUND)
    model.save_pretrained(tmp_path)
    assert PPO2.from_pretrained(tmp_path).log_std_init == LOG_STD_BOUND


def test_a_rollout_too_large_for_memory_is_refused_before_allocating():
    from ppo2.collector import RolloutStorage

    spec = {"type": "Image", "shape": [2048, 2048, 3], "channels_last": True}
    with pytest.raises(ValueError, match=r"needs about .* GiB .* is available"):
        RolloutStorage.check_memory(128, 4096, spec, "Huge-v0")
    RolloutStorage.check_memory(128, 8, {"type": "Image", "shape": [84, 84, 4], "channels_last": True})


def test_frames_too_large_for_the_cnn_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"2048x2048 frames give the Nature CNN a dense layer of .* downscale"):
        PPO2(observation_space=spaces.Box(0, 255, (2048, 2048, 3), np.uint8), action_space=2)


def test_atari_policies_evaluate_through_the_cli_check():
    """The CLI checks a policy against the env as evaluation makes it (ale-py's preprocessed frame stack)."""
    pytest.importorskip("ale_py")
    from ppo2.envs import check_spaces, make_vector_env
    from ppo2.evaluate import check_policy_env

    envs = make_vector_env("ALE/Pong-v5", 1)
    try:
        obs_spec, action_space, _ = check_spaces(envs, "ALE/Pong-v5")
    finally:
        envs.close()
    check_policy_env(PPO2(observation_space=obs_spec, action_space=action_space), "ALE/Pong-v5")
    with pytest.raises(ValueError, match="this policy takes"):
        check_policy_env(PPO2(input_dim=4, action_space=6), "ALE/Pong-v5")


def test_sigterm_during_an_evaluation_stops_it(tmp_path):
    """A long evaluation checks for the stop signal at every step: the run checkpoints and exits at once."""
    from ppo2.config import TrainConfig
    from ppo2.evaluate import EvaluationInterrupted, evaluate_policy
    from ppo2.trainer import Trainer

    with pytest.raises(EvaluationInterrupted):
        evaluate_policy(PPO2(input_dim=4, action_space=2), "CartPole-v1", 4, stop=lambda: True)
    trainer = Trainer(TrainConfig.for_env("CartPole-v1", output_dir=str(tmp_path), eval_episodes=500, progress=False,
                                          tensorboard=False, plot=False))
    try:
        trainer._stop_signal = signal.SIGTERM
        assert trainer.evaluate(time.perf_counter()) is False
        assert trainer.last_eval is None and trainer.eval_envs is None
    finally:
        trainer.close()


# ---- exports match inputs by name --------------------------------------------------------------------------

DICT = spaces.Dict({"a": spaces.Box(-1, 1, (3,), np.float32), "b": spaces.Box(-1, 1, (3,), np.float32)})


def test_torch_export_of_a_dict_policy_takes_its_inputs_by_key():
    from ppo2.export import export_program

    torch.manual_seed(0)
    model = PPO2(observation_space=DICT, action_space=4)
    program = export_program(model).module()
    obs = {"a": torch.randn(32, 3), "b": torch.randn(32, 3)}
    want = act(model, obs)
    assert torch.equal(program(obs), want)
    assert torch.equal(program({"b": obs["b"], "a": obs["a"]}), want)  # the order of the keys does not matter
    assert not torch.equal(program({"a": obs["b"], "b": obs["a"]}), want)  # the names do


def test_onnx_refuses_a_key_named_like_its_output(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ppo2.export import export_onnx

    space = spaces.Dict({"action": spaces.Box(-1, 1, (2,), np.float32), "pos": spaces.Box(-1, 1, (2,), np.float32)})
    model = PPO2(observation_space=space, action_space=3)
    with pytest.raises(ValueError, match="'action' is also the output's name"):
        export_onnx(model, tmp_path / "p.onnx")
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "p.onnx", output_name="env_action")))
    assert [i.name for i in session.get_inputs()] == ["action", "pos"]
    assert [o.name for o in session.get_outputs()] == ["env_action"]
    obs = {"action": np.random.rand(5, 2).astype(np.float32), "pos": np.random.rand(5, 2).astype(np.float32)}
    np.testing.assert_array_equal(session.run(None, obs)[0], model.predict(obs)[0])


# ---- best/ is swapped in whole; the hub loads policies with their own encoder --------------------------------

def test_a_reader_of_best_never_sees_a_mix_of_two_versions(tmp_path):
    from ppo2.hf_hub import publish_pretrained

    models = [PPO2(input_dim=4, action_space=2) for _ in range(2)]
    best = tmp_path / "best"
    publish_pretrained(models[0], best)
    errors, loads, done = [], [0], threading.Event()

    def read():
        while not done.is_set():
            try:
                PPO2.from_pretrained(best)
                loads[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.time() + 3.0
    i = 0
    while time.time() < deadline:
        publish_pretrained(models[i % 2], best)
        i += 1
    done.set()
    reader.join()
    assert not errors, errors[:3]
    assert loads[0] > 10 and i > 10
    assert len(list(tmp_path.glob(".best-*"))) <= 3  # old versions are pruned


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4 * 36 * 36, 16))

    def forward(self, x):
        return self.net(x)


def test_hub_loads_a_policy_with_its_own_encoder(tmp_path):
    torch.manual_seed(0)
    model = PPO2(observation_space=spaces.Box(0, 255, (4, 36, 36), np.uint8), action_space=3, encoder=TinyEncoder())
    model.save_pretrained(tmp_path)
    loaded = hub_load("ppo2", pretrained=str(tmp_path), encoder=TinyEncoder())
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
