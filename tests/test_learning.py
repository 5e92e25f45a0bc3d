"""The agent actually learns: CartPole-v1 solved by PPO and by A2C, two seeds each.

A broken algorithm (a sign error, a wrong ratio, a leaking reset step) turns these red."""
import json

import pytest

from ppo2.evaluate import evaluate_policy
from ppo2.trainer import train

FAST = dict(tensorboard=False, progress=False, checkpoint_interval=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_ppo_solves_cartpole(tmp_path, seed):
    model = train(env_id="CartPole-v1", seed=seed, output_dir=str(tmp_path), **FAST)
    solved = model.trainer_summary["solved_at"]
    assert solved is not None and solved["mean_reward"] >= 475, model.trainer_summary
    assert solved["global_step"] <= 100_000
    # and on 20 episodes the trainer never saw
    assert evaluate_policy(model, "CartPole-v1", n_episodes=20, seed=123)["mean_reward"] >= 400


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_a2c_solves_cartpole(tmp_path, seed):
    model = train(env_id="CartPole-v1", algo="a2c", seed=seed, output_dir=str(tmp_path), **FAST)
    solved = model.trainer_summary["solved_at"]
    assert solved is not None and solved["mean_reward"] >= 475, model.trainer_summary


@pytest.mark.slow
def test_inverted_pendulum_mujoco_is_solved(tmp_path):
    """MuJoCo (the `mujoco` extra): the preset's Gaussian policy with observation and reward normalisation
    reaches InvertedPendulum-v5's threshold (950) on the 2-core CI machine in about 20k steps."""
    pytest.importorskip("mujoco")
    model = train(env_id="InvertedPendulum-v5", seed=1, output_dir=str(tmp_path / "ip"), **FAST)
    summary = model.trainer_summary
    assert summary["solved_at"] is not None, summary
    cfg = json.loads((tmp_path / "ip" / "train_config.json").read_text())
    assert cfg["normalize_reward"] and cfg["normalize_obs"]
    res = evaluate_policy(model, "InvertedPendulum-v5", 20, seed=4242)
    assert res["mean_reward"] >= 950, res
