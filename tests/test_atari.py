"""Atari end to end on the real ALE (ale-py, the `atari` extra): the preset, raw game scores, sign-clipped
training rewards, the Nature CNN trained on stacked uint8 frames, and a saved pixel policy that plays,
exports and replays from the env's own observations."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")

import toy_envs  # noqa: E402,F401  (registers ppo2test/*)
from conftest import REPO  # noqa: E402
from ppo2 import PPO2  # noqa: E402
from ppo2.config import TrainConfig  # noqa: E402
from ppo2.envs import check_env_id, make_vector_env  # noqa: E402
from ppo2.evaluate import _make_render_env, evaluate_policy, record_replay  # noqa: E402
from ppo2.trainer import Trainer  # noqa: E402


def test_short_names_resolve_to_ale_v5_with_baselines_atari_settings():
    cfg = TrainConfig.for_env("Pong")
    assert cfg.env_id == "ALE/Pong-v5" and TrainConfig.for_env("Breakout").env_id == "ALE/Breakout-v5"
    assert (cfg.num_envs, cfg.num_steps, cfg.num_minibatches, cfg.update_epochs) == (8, 128, 4, 4)
    assert (cfg.learning_rate, cfg.anneal_lr, cfg.clip_range, cfg.anneal_clip_range) == (2.5e-4, True, 0.1, True)
    assert (cfg.ent_coef, cfg.vf_coef, cfg.gamma, cfg.gae_lambda, cfg.clip_reward) == (0.01, 0.5, 0.99, 0.95, True)
    assert cfg.encoder == "auto" and cfg.total_timesteps == 10_000_000
    assert check_env_id("Pong").id == "ALE/Pong-v5"
    spec = check_env_id("ALE/Breakout-v5")  # registered on first use, without importing ale_py by hand
    assert spec.kwargs["repeat_action_probability"] == 0.25  # v5: sticky actions


def test_every_games_bare_name_is_its_ale_v5_id():
    """`--env SpaceInvaders` as `--env Pong`: the bare names (read from ale-py's ROMs without importing it) are exactly
    the games ale-py registers a v5 id for; other names are left alone."""
    import gymnasium as gym

    from ppo2.env_ids import ale_games, canonical_env_id

    check_env_id("Pong")  # (registers ale-py's ids)
    registered = {k[len("ALE/"):-len("-v5")] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")}
    assert ale_games() == registered and "SpaceInvaders" in registered and "Combat" not in registered
    assert all(check_env_id(game).id == f"ALE/{game}-v5" for game in ("SpaceInvaders", "MontezumaRevenge", "Qbert"))
    assert TrainConfig.for_env("Seaquest").env_id == "ALE/Seaquest-v5"
    for name in ("CartPole-v1", "Combat", "spaceinvaders", "PongNoFrameskip-v4", "ALE/Pong-v5", "ppo2test/Score-v0"):
        assert canonical_env_id(name) == name


@pytest.mark.parametrize("legacy", ["Pong-v4", "BreakoutDeterministic-v4", "SpaceInvadersNoFrameskip-v0", "Qbert-v0", "TicTacToe3D-v4"])
def test_a_legacy_atari_id_is_refused_naming_the_two_that_train(legacy):
    """ale-py's older ids (random frame skips, no preprocessing) were "unknown environment id ... Did you mean
    'Ant-v4'?": now the error names the game's two ids that ppo2 trains."""
    game = legacy.split("-")[0].replace("Deterministic", "").replace("NoFrameskip", "")
    with pytest.raises(ValueError, match=rf"'{legacy}' is one of ale-py's legacy Atari ids .*'ALE/{game}-v5' .*"
                                         rf"'{game}NoFrameskip-v4'"):
        check_env_id(legacy)


@pytest.mark.parametrize("typed, meant", [("breakout", "Breakout"), ("space_invaders", "SpaceInvaders"),
                                           ("montezuma", "MontezumaRevenge"), ("ALE/pong-v5", "ALE/Pong-v5")])
def test_a_game_named_in_other_case_or_by_its_rom_name_is_suggested(typed, meant):
    """"breakout" or ale-py's ROM name "space_invaders" found no suggestion (gymnasium's ids are case-sensitive and
    the games' bare names are not registered ids): the first one suggested is now the name ppo2 takes."""
    with pytest.raises(ValueError, match=rf"unknown environment id '{typed}' .*Did you mean '{meant}'"):
        check_env_id(typed)


def test_every_ale_game_takes_the_atari_settings_and_trains(tmp_path):
    """Not only the two games with zoo entries: any ALE v5 id gets the Atari preset (Pong alone adds its target),
    and trains on ale-py's vector env with the Nature CNN."""
    from ppo2.config import ATARI_PPO

    cfg = TrainConfig.for_env("ALE/SpaceInvaders-v5")
    assert {k: getattr(cfg, k) for k in ATARI_PPO} == ATARI_PPO and cfg.target_reward is None
    assert TrainConfig.for_env("Breakout").to_dict() == {**cfg.to_dict(), "env_id": "ALE/Breakout-v5"}
    assert TrainConfig.for_env("Pong").target_reward == 20.0
    trainer = Trainer(cfg.replace(total_timesteps=1024, eval_interval=0, processes=1, output_dir=str(tmp_path / "si"),
                                  progress=False, tensorboard=False, plot=False))
    try:
        trainer.learn()
        assert trainer.model.encoder_name == "nature_cnn" and trainer.model.action_head.n == 6 and trainer.update == 1
    finally:
        trainer.close()


def test_ale_vector_env_returns_the_games_raw_rewards(monkeypatch):
    import gymnasium as gym

    seen = {}
    make_vec = gym.make_vec

    def spy(env_id, **kw):
        seen.update(kw)
        return make_vec(env_id, **kw)

    monkeypatch.setattr(gym, "make_vec", spy)
    envs = make_vector_env("Breakout", 2)
    envs.close()
    assert seen["vectorization_mode"] == "vector_entry_point" and seen["reward_clipping"] is False


def test_clip_reward_trains_on_signs_and_logs_the_real_returns(tmp_path):
    cfg = TrainConfig(env_id="ppo2test/Score-v0", num_envs=2, num_steps=8, num_minibatches=1, total_timesteps=16,
                      clip_reward=True, eval_interval=0, output_dir=str(tmp_path / "run"), progress=False,
                      tensorboard=False, plot=False)
    trainer = Trainer(cfg)
    trainer.collect_rollout()
    s = trainer.storage
    # episodes of 4 steps + the autoreset row: rewards 5, -3, 0, 2, (0), 5, -3, 0 per env
    np.testing.assert_array_equal(s.rewards[:, 0], [1, -1, 0, 1, 0, 1, -1, 0])
    assert list(trainer.collector.recent_returns) == [4.0, 4.0]  # the game's return, unclipped
    no_clip = Trainer(cfg.replace(clip_reward=False, output_dir=str(tmp_path / "raw")))
    no_clip.collect_rollout()
    np.testing.assert_array_equal(no_clip.storage.rewards[:, 0], [5, -3, 0, 2, 0, 5, -3, 0])


def test_pixel_policy_trains_on_pong_and_plays_from_raw_observations(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ppo2.export import export_onnx

    cfg = TrainConfig.for_env("Pong", num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2,
                              total_timesteps=128, eval_interval=0, checkpoint_interval=0, seed=3,
                              output_dir=str(tmp_path / "pong"), progress=False, tensorboard=False, plot=False)
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    model = trainer.learn()
    assert model.encoder_name == "nature_cnn" and trainer.update_path.startswith("autograd")
    assert trainer.storage.obs.dtype == np.uint8 and trainer.storage.obs.shape == (32, 2, 4, 84, 84)
    assert set(np.unique(trainer.storage.rewards)) <= {-1.0, 0.0, 1.0}
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in changed)  # the CNN itself was trained
    summary = json.loads((tmp_path / "pong" / "summary.json").read_text())
    assert summary["env_id"] == "ALE/Pong-v5" and summary["global_step"] == 128

    loaded = PPO2.from_pretrained(tmp_path / "pong")
    env = _make_render_env("Pong")  # one env with the vector env's preprocessing, rendering in colour
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    action, _ = loaded.predict(obs)
    assert env.action_space.contains(int(action))
    frames = np.stack([env.step(int(loaded.predict(obs)[0]))[0] for _ in range(8)])
    session = ort.InferenceSession(str(export_onnx(loaded, tmp_path / "pong.onnx")))
    np.testing.assert_array_equal(session.run(None, {"obs": frames})[0], loaded.predict(frames)[0])
    env.close()

    res = evaluate_policy(loaded, "Pong", n_episodes=2, seed=0)
    assert res["n_episodes"] == 2 and all(-21 <= r <= 21 for r in res["episode_rewards"])
    replay = record_replay(loaded, "Pong", tmp_path / "pong.gif", max_steps=40, frame_skip=4)
    assert replay["length"] == 40 and (tmp_path / "pong.gif").stat().st_size > 1000


def test_pong_command_runs_one_rank_per_core_and_they_share_the_evaluation(tmp_path):
    """The Pong preset's default, as a user's command runs it: two ranks (pinned here with --processes 2, whatever the
    CI machine's cores), each stepping half of the envs, the evaluation games split between them: the same games,
    with the same scores, that one process plays with the saved policy, sampled actions included. In float32: the
    replay loads the policy in float32, and a sampled draw would carry a bfloat16 encoder's rounding into another
    action (tests/test_speed.py checks the bfloat16 path)."""
    out = tmp_path / "pong2"
    assert TrainConfig.for_env("Pong").processes == 0 and TrainConfig.for_env("Breakout").processes == 0
    args = ["--env", "Pong", "--num-envs", 2, "--num-steps", 32, "--num-minibatches", 2, "--update-epochs", 1,
            "--total-timesteps", 128, "--eval-interval", 2, "--eval-episodes", 2, "--processes", 2, "--no-progress",
            "--precision", "float32", "--no-tensorboard", "--no-plot", "--output-dir", out]
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 128
    results = json.loads((out / "best" / "results.json").read_text())
    assert results["deterministic"] is False  # (the Atari presets' sampled evaluation)
    ref = evaluate_policy(PPO2.from_pretrained(out / "best"), "Pong", n_episodes=2, seed=results["seed"],
                          deterministic=False)
    assert results["episode_lengths"] == ref["episode_lengths"] and results["episode_rewards"] == ref["episode_rewards"]


def test_a_seeded_reset_restarts_ale_from_scratch():
    """A resume (or --restart-episodes-at) reproduces a run only if envs.reset(seed=s) leaves ale-py's vector env
    exactly as a fresh one after the same reset, sticky actions included, whatever it played before."""
    actions = np.random.default_rng(0).integers(0, 6, (200, 2))

    def play(envs, seed):
        frames = [envs.reset(seed=seed)[0]]
        frames += [envs.step(a)[0] for a in actions]
        return np.stack(frames)

    used = make_vector_env("ALE/Pong-v5", 2)
    fresh = make_vector_env("ALE/Pong-v5", 2)
    try:
        used.reset(seed=1)
        for a in actions[::-1]:
            used.step(a)
        assert np.array_equal(play(used, 7), play(fresh, 7))
    finally:
        used.close()
        fresh.close()


def test_breakout_lives_end_the_value_horizon_not_the_game(tmp_path):
    """The Atari default (life_loss auto: terminal for ALE games), on the real game: every lost life is a terminal
    row of the rollout, and only game overs count as episodes. The step after a lost life presses FIRE to serve again
    (baselines' FireResetEnv) instead of the agent's action, and that row is left out of the update, as the autoreset
    row after a game over is; every other row is played with the action the policy sampled."""
    cfg = TrainConfig.for_env("Breakout", num_envs=2, num_steps=384, num_minibatches=1, total_timesteps=768,
                              processes=1, eval_interval=0, output_dir=str(tmp_path), progress=False,
                              tensorboard=False, plot=False)
    assert cfg.life_loss == "auto" and cfg.life_loss_terminal
    trainer = Trainer(cfg)
    lives, sent = [], []
    game = trainer.envs.env  # ale-py's vector env, under the FIRE-after-a-lost-life wrapper
    real_step = game.step

    def step(action):
        sent.append(np.array(action, copy=True))
        out = real_step(action)
        lives.append(out[4]["lives"].copy())
        return out

    game.step = step
    try:
        trainer.collect_rollout()
        s, c = trainer.storage, trainer.collector
        lives, sent = np.stack(lives), np.stack(sent)  # (steps, envs): the lives left after each step, what was played
        before = np.vstack([np.full((1, 2), 5), lives[:-1]])
        lost = (lives < before) & (lives > 0)  # a life lost, the game going on
        game_over = (lives == 0) & (before > 0)
        assert lost.sum() >= 4 and game_over.sum() == c.episodes >= 1
        np.testing.assert_array_equal(s.terminations.astype(bool), lost | game_over)
        fired = np.vstack([np.zeros((1, 2), bool), lost[:-1]])
        after_game_over = np.vstack([np.zeros((1, 2), bool), game_over[:-1]])
        assert (sent[fired] == 1).all()  # FIRE (Breakout's action 1), whatever the policy sampled
        np.testing.assert_array_equal(sent[~fired], s.actions[~fired])
        np.testing.assert_array_equal(s.valid, ~(fired | after_game_over))
    finally:
        trainer.close()


@pytest.mark.parametrize("game", ["Pong", "Breakout", "BreakoutNoFrameskip-v4"])
def test_make_env_gives_the_frames_the_trainer_saw(game):
    """`make_env` (and `model.make_env()`, the replays) is one env with ale-py's vector-env preprocessing: with the
    random draws off (the no-ops and the sticky actions, which the two take from generators seeded differently), the same seed and the same actions give
    the same stacked frames, rewards and ends, FIRE at the reset and after a lost life included (Breakout: the ball is
    served). Without the FIRE at the reset the frames part within a few steps: the test can tell."""
    from ppo2.envs import make_env

    vec = make_vector_env(game, 1, noop_max=0, repeat_action_probability=0.0)
    actions = np.random.default_rng(1).integers(vec.single_action_space.n, size=300)
    for fire, same in ((True, True), (False, False)):
        env = make_env(game, noop_max=0, use_fire_reset=fire, repeat_action_probability=0.0)
        assert env.observation_space.shape == vec.single_observation_space.shape == (4, 84, 84)
        ov, _ = vec.reset(seed=3)
        oe, _ = env.reset(seed=3)
        equal, served = [np.array_equal(ov[0], oe)], 0
        for a in actions:
            ov, rv, tv, uv, iv = vec.step(np.array([a]))
            oe, re, te, ue, ie = env.step(a)
            equal.append(np.array_equal(ov[0], oe) and rv[0] == re and tv[0] == te and iv["fire_step"][0] == ie["fire_step"])
            served += ie["fire_step"]
            if te or ue:
                break
        assert all(equal) if same else not all(equal), (game, fire, equal.index(False) if False in equal else None)
        assert (served > 0) == ("Breakout" in game)  # FIRE after lost lives (Pong has no lives) on both sides
        env.close()
    vec.close()
    env = make_env(game)  # the default: 1-30 frames at a reset (no-ops, then FIRE), drawn from the reset's seed

    def frames_at_reset(seed):
        env.reset(seed=seed)
        return env.unwrapped.ale.getEpisodeFrameNumber()

    drawn = [frames_at_reset(s) for s in range(10)]
    assert drawn == [frames_at_reset(s) for s in range(10)] and len(set(drawn)) > 3 and 1 <= min(drawn) <= max(drawn) <= 30
    env.close()
    assert make_env("CartPole-v1").observation_space.shape == (4,)  # anything else: gym.make


def test_a_trained_policy_makes_its_own_env(tmp_path):
    model = PPO2(observation_space=make_vector_env("Pong", 1).single_observation_space, action_space=6)
    with pytest.raises(ValueError, match="does not record the env"):
        model.make_env()
    model.save_pretrained(tmp_path / "p", env_id="ALE/Pong-v5")
    loaded = PPO2.from_pretrained(tmp_path / "p")
    env = loaded.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and env.action_space.contains(int(loaded.predict(obs)[0]))
    env.close()
    loaded.env_id = "evil_module:Env-v0"  # a name read from a file is never imported
    with pytest.raises(ValueError, match="would import the module 'evil_module'"):
        loaded.make_env()


def test_an_atari_model_card_plays_the_preprocessed_game(tmp_path):
    """The card's usage loop for a Pong policy, executed to the end of a game: `gym.make("ALE/Pong-v5")` would hand
    the policy 210x160 colour screens it refuses; `model.make_env()` gives the frames it was trained on."""
    import re

    from ppo2.hf_hub import model_card

    PPO2(observation_space=make_vector_env("Pong", 1).single_observation_space, action_space=6).save_pretrained(
        tmp_path / "p", env_id="ALE/Pong-v5")
    code = re.search(r"```python\n(.+?)\n```", model_card("you/pong", "ALE/Pong-v5", None), flags=re.S).group(1)
    assert "model.make_env()" in code and "gym.make" not in code
    scope = {}
    exec(code.replace('"you/pong"', repr(str(tmp_path / "p"))), scope)
    assert scope["done"] and scope["obs"].shape == (4, 84, 84)


def test_noframeskip_v4_ids_are_rl_zoos_protocol_on_ales_vector_env():
    """`BreakoutNoFrameskip-v4`, the id RL-Zoo's and CleanRL's Breakout scores are measured on (no sticky actions; their
    wrappers skip 4 frames), runs in ale-py's vector env as ALE/Breakout-v5 with repeat_action_probability 0: the same
    frames, scores and ends step for step (v5's sticky actions part from it), the Atari preset, a lost life terminal."""
    from ppo2.config import ATARI_PPO

    def play(envs):
        obs, _ = envs.reset(seed=7)
        rng, seen = np.random.default_rng(0), [obs]
        for _ in range(200):
            obs, reward, terminated, truncated, info = envs.step(rng.integers(4, size=2))
            seen += [obs, reward, terminated, truncated, info["lives"]]
        envs.close()
        return seen

    v4 = play(make_vector_env("BreakoutNoFrameskip-v4", 2))
    same = play(make_vector_env("ALE/Breakout-v5", 2, repeat_action_probability=0.0))
    sticky = play(make_vector_env("ALE/Breakout-v5", 2))
    assert all(np.array_equal(x, y) for x, y in zip(v4, same))
    assert not all(np.array_equal(x, y) for x, y in zip(v4, sticky))
    cfg = TrainConfig.for_env("BreakoutNoFrameskip-v4")
    assert all(getattr(cfg, k) == v for k, v in ATARI_PPO.items()) and cfg.life_loss_terminal
