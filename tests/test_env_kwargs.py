"""An env's constructor arguments (`--env-kwargs`): read from the command line, checked as untrusted input, recorded
with the policy and passed wherever it plays (ppo2/env_kwargs.py)."""
import json
import math

import pytest

from ppo2 import PPO2
from ppo2.env_kwargs import parse_env_kwargs, validate_env_kwargs
from ppo2.io import IntegrityError


def test_command_line_values_are_read_as_json_then_python_literals_then_text():
    got = parse_env_kwargs(["continuous=True", "map_name=8x8", "gravity=-9.8", 'desc=["SF", "FG"]', "size=(3, 4)",
                            "slippery:false", "label='a=b'", "seed=null", "n=3", "name=\"x y\""])
    assert got == {"continuous": True, "map_name": "8x8", "gravity": -9.8, "desc": ["SF", "FG"], "size": [3, 4],
                   "slippery": False, "label": "a=b", "seed": None, "n": 3, "name": "x y"}
    assert isinstance(got["n"], int) and isinstance(got["gravity"], float)
    assert parse_env_kwargs([]) == {}


@pytest.mark.parametrize("items, message", [
    (["=3"], "expected KEY=VALUE"), (["continuous"], "expected KEY=VALUE"), (["2x=1"], "expected KEY=VALUE"),
    (["a=1", "a=2"], "'a' is given twice"),
])
def test_malformed_command_line_items_are_refused(items, message):
    with pytest.raises(ValueError, match=message):
        parse_env_kwargs(items)


@pytest.mark.parametrize("kwargs, env_id, message", [
    ("continuous=True", None, "must be a JSON object.*got str"),
    ({"": 1}, None, "Python identifiers"),
    ({"a b": 1}, None, "Python identifiers"),
    ({1: 1}, None, "Python identifiers"),
    ({"render_mode": "human"}, None, "ppo2 chooses it where it renders"),
    ({"num_envs": 4}, None, "use --num-envs"),
    ({"x": math.nan}, None, r"x'\] must be a finite number, got nan"),
    ({"x": [1, math.inf]}, None, r"\['x'\]\[1\] must be a finite number"),
    ({"x": {1, 2}}, None, "must be JSON data.*got set"),
    ({"x": b"raw"}, None, "must be JSON data.*got bytes"),
    ({"x": [[[[[1]]]]]}, None, "nested more than 4 deep"),
    ({"x": "y" * 20_000}, None, "at most 10000"),
    ({f"k{i}": i for i in range(40)}, None, "at most 32"),
    ({"stack_num": 2}, "ALE/Pong-v5", "its frames are always 84x84"),
    ({"reward_clipping": True}, "PongNoFrameskip-v4", "use --clip-reward"),
    ({"episodic_life": True}, "Breakout", "use --life-loss terminal"),
    ({"frameskip": 3.5}, "ALE/Pong-v5", r"\['frameskip'\] must be an int >= 1 for ALE/Pong-v5, got 3.5"),
    ({"repeat_action_probability": 1.5}, "Pong", r"must be a probability in \[0, 1\]"),
    ({"full_action_space": 1}, "Pong", r"\['full_action_space'\] must be true or false"),
])
def test_invalid_env_kwargs_are_refused_naming_what_was_expected(kwargs, env_id, message):
    with pytest.raises(ValueError, match=message):
        validate_env_kwargs(kwargs, env_id)


def test_a_configuration_keeps_its_own_copy_and_takes_none_for_no_arguments():
    from ppo2.config import TrainConfig

    given = {"max_episode_steps": 5}
    cfg = TrainConfig.for_env("CartPole-v1", env_kwargs=given)
    given["max_episode_steps"] = 6
    assert cfg.env_kwargs == {"max_episode_steps": 5}
    assert TrainConfig.for_env("CartPole-v1", env_kwargs=None).env_kwargs == {}
    with pytest.raises(ValueError, match=r"env_kwargs must be a JSON object .* got list"):
        TrainConfig.for_env("CartPole-v1", env_kwargs=[("max_episode_steps", 5)])


def test_valid_env_kwargs_come_back_as_a_copy_of_json_data():
    given = {"repeat_action_probability": 0.0, "full_action_space": True}
    got = validate_env_kwargs(given, "ALE/Pong-v5")
    assert got == given and got is not given
    assert validate_env_kwargs({"size": (3, 4), "nested": {"a": [None, "b"]}}) == {"size": [3, 4], "nested": {"a": [None, "b"]}}


def test_a_policy_plays_the_env_it_was_trained_with(tmp_path, capsys):
    """CartPole's pole cannot fall in fewer than 8 steps, whatever the actions: with max_episode_steps=5 every episode
    lasts exactly 5, so an evaluation that dropped the recorded argument shows it at once."""
    from ppo2.evaluate import evaluate_policy, main as evaluate_main
    from ppo2.hf_hub import model_card
    from ppo2.trainer import main as train_main

    run = tmp_path / "run"
    assert train_main(["--env", "CartPole-v1", "--env-kwargs", "max_episode_steps=5", "--total-timesteps", "512",
                       "--num-envs", "2", "--eval-episodes", "3", "--confirm-episodes", "0", "--no-progress",
                       "--no-tensorboard", "--no-plot", "--output-dir", str(run)]) == 0
    for saved in (run / "config.json", run / "best" / "config.json"):
        assert json.loads(saved.read_text())["env_kwargs"] == {"max_episode_steps": 5}
    assert json.loads((run / "train_config.json").read_text())["env_kwargs"] == {"max_episode_steps": 5}
    assert json.loads((run / "results.json").read_text())["episode_lengths"] == [5, 5, 5]  # (the trainer's evaluation)

    model = PPO2.from_pretrained(run)
    assert model.env_id == "CartPole-v1" and model.env_kwargs == {"max_episode_steps": 5}
    assert evaluate_policy(model, "CartPole-v1", 4)["episode_lengths"] == [5] * 4
    assert min(evaluate_policy(model, "CartPole-v1", 4, env_kwargs={})["episode_lengths"]) >= 8
    assert evaluate_policy(model, "CartPole-v1", 2, env_kwargs={"max_episode_steps": 3})["episode_lengths"] == [3, 3]
    env = model.make_env()
    env.reset(seed=0)
    steps = 0
    while not any(env.step(0)[2:4]):
        steps += 1
    assert steps + 1 == 5 and model.make_env(max_episode_steps=2).spec.max_episode_steps == 2

    capsys.readouterr()
    assert evaluate_main([str(run), "-n", "2", "--json", str(tmp_path / "ev.json")]) == 0
    assert "CartPole-v1(max_episode_steps=5): " in capsys.readouterr().out
    assert json.loads((tmp_path / "ev.json").read_text())["episode_lengths"] == [5, 5]
    assert evaluate_main([str(run), "-n", "2", "--env-kwargs", "max_episode_steps=7", "--json", str(tmp_path / "ev.json")]) == 0
    assert json.loads((tmp_path / "ev.json").read_text())["episode_lengths"] == [7, 7]
    assert evaluate_main([str(run), "-n", "1", "--env-kwargs", "bogus=1"]) == 2
    assert "CartPole-v1 was made with the arguments max_episode_steps=5, bogus=1 and refused them" in capsys.readouterr().err

    card = model_card("me/cartpole", "CartPole-v1", None, env_kwargs=model.env_kwargs)
    assert 'env = model.make_env()  # gym.make("CartPole-v1", max_episode_steps=5)' in card

    # a resumed run is the same run: other constructor arguments are refused
    assert train_main(["--resume", str(run), "--env-kwargs", "max_episode_steps=6", "--total-timesteps", "1024",
                       "--no-progress"]) != 0
    assert "max_episode_steps" in capsys.readouterr().err


def test_two_ranks_train_and_evaluate_with_the_arguments(tmp_path):
    """Under --processes 2 each rank makes its envs from the command line it was started with, and the evaluation is
    split across the ranks (ppo2.trainer: its own code path): every episode of both is 5 steps long."""
    import subprocess
    import sys

    from conftest import REPO

    run = tmp_path / "run"
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "--env", "CartPole-v1", "--env-kwargs",
                          "max_episode_steps=5", "--processes", "2", "--num-envs", "4", "--num-steps", "16",
                          "--total-timesteps", "128", "--eval-episodes", "4", "--confirm-episodes", "0",
                          "--no-progress", "--no-tensorboard", "--no-plot", "--output-dir", str(run)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert json.loads((run / "results.json").read_text())["episode_lengths"] == [5, 5, 5, 5]
    assert PPO2.from_pretrained(run).env_kwargs == {"max_episode_steps": 5}


@pytest.mark.parametrize("env_kwargs, message", [
    ({"render_mode": "human"}, "ppo2 chooses it where it renders"),
    ("max_episode_steps=5", "must be a JSON object"),
    ({"__class__": {"x": [1]}, "x": 1e400}, "finite number"),  # (1e400 is JSON's way to write infinity)
])
def test_a_policy_file_with_bad_env_kwargs_is_refused(tmp_path, env_kwargs, message):
    env = _cartpole()
    model = PPO2(observation_space=env.observation_space, action_space=env.action_space)
    model.save_pretrained(tmp_path, env_id="CartPole-v1")
    config = json.loads((tmp_path / "config.json").read_text())
    text = json.dumps({**config, "env_kwargs": env_kwargs}).replace('"x": Infinity', '"x": 1e400')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(IntegrityError, match=message):
        PPO2.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "env_id"}
                                                     | {"env_kwargs": {"max_episode_steps": 5}}))
    with pytest.raises(IntegrityError, match="without the 'env_id' they are for"):
        PPO2.from_pretrained(tmp_path)


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("FrozenLake-v1", {"map_name": "9x9"}, r"FrozenLake-v1 was made with the arguments map_name='9x9' and failed: KeyError"),
    ("CartPole-v1", {"gravity": 1}, r"made with the arguments gravity=1 and refused them: .*unexpected keyword"),
    ("PongNoFrameskip-v4", {"max_num_frames_per_episode": 1000, "fire": True},
     r"PongNoFrameskip-v4 was made with the arguments max_num_frames_per_episode=1000, fire=True and"),
])
def test_an_env_that_fails_on_its_arguments_says_which(env_id, kwargs, message):
    """Whatever the constructor raises for the arguments (an unknown one, a wrong type, a value it cannot use), the
    error names the env and the arguments, not only the constructor's own words."""
    if "Pong" in env_id:
        pytest.importorskip("ale_py")
    from ppo2.envs import make_env, make_vector_env

    with pytest.raises(ValueError, match=message):
        make_vector_env(env_id, 1, **kwargs)
    with pytest.raises(ValueError, match=message):
        make_env(env_id, **kwargs)


def test_an_ale_game_takes_its_options_in_both_pipelines():
    """ale-py's vector env (training, evaluation) and ppo2.envs.make_env (one game in colour) take the same options:
    the full 18-action set where asked for, the minimal 6 of Pong otherwise."""
    pytest.importorskip("ale_py")
    from ppo2.envs import make_env, make_vector_env

    from ppo2.env_kwargs import ALE_ENV_KWARGS

    for kwargs, actions in (({}, 6), ({"full_action_space": True, "repeat_action_probability": 0.0}, 18)):
        envs = make_vector_env("Pong", 1, **kwargs)
        env = make_env("Pong", **kwargs)
        try:
            assert envs.single_action_space.n == env.action_space.n == actions
            assert envs.single_observation_space.shape == env.observation_space.shape == (4, 84, 84)
        finally:
            envs.close()
            env.close()
    # every option the list takes is taken by both (the list is what validate_env_kwargs lets through)
    values = {"repeat_action_probability": 0.0, "full_action_space": True, "max_num_frames_per_episode": 1000,
              "frameskip": 3, "noop_max": 5, "use_fire_reset": False, "fire_after_life_loss": False}
    assert set(values) == set(ALE_ENV_KWARGS)
    for key, value in values.items():
        for make in (lambda **kw: make_vector_env("Breakout", 1, **kw), lambda **kw: make_env("Breakout", **kw)):
            made = make(**validate_env_kwargs({key: value}, "ALE/Breakout-v5"))
            made.reset(seed=0)
            made.close()


def _cartpole():
    import gymnasium as gym

    return gym.make("CartPole-v1")


def test_frozen_lake_made_without_slipping_is_solved_and_replayed_so(tmp_path):
    """A real gymnasium env whose task its constructor argument decides, with integer observations (Discrete(16),
    one-hot inside): FrozenLake without slipping is solved, confirmed on 100 fresh episodes, and the saved policy is
    evaluated on the same non-slippery lake (every episode reaches the goal; none can in fewer than the 6 moves
    from S to G on the 4x4 map)."""
    from ppo2 import train
    from ppo2.evaluate import evaluate_policy

    model = train(env_id="FrozenLake-v1", env_kwargs={"is_slippery": False}, total_timesteps=100_000, seed=3,
                  output_dir=str(tmp_path / "run"), progress=False, tensorboard=False, plot=False)
    assert model.trainer_summary["solved_at"] is not None, model.trainer_summary["last_eval"]
    loaded = PPO2.from_pretrained(tmp_path / "run")
    assert loaded.env_kwargs == {"is_slippery": False} and loaded.obs_spec["onehot"]["nvec"] == [16]
    res = evaluate_policy(loaded, "FrozenLake-v1", 10)
    assert res["mean_reward"] == 1.0 and min(res["episode_lengths"]) >= 6
