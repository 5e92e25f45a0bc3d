"""Behaviour a user meets in the first hour, each pinned so that a wrong implementation fails on any machine:
the run directory, advantage normalisation on the one-minibatch path, Dict statistics, image layouts and action
bounds."""
import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from ppo2.validation import check_compatible
from ppo2 import PPO2


# ---- the run directory ----------------------------------------------------------------------------------------

def test_overwrite_removes_the_earlier_run_and_nothing_of_the_users(tmp_path):
    from ppo2.rundir import RUN_OUTPUTS, clear_run, holds_run

    for name in RUN_OUTPUTS:
        (tmp_path / name).mkdir() if name in ("checkpoints", "best", "tb") else (tmp_path / name).write_text("x")
    (tmp_path / ".best-3").mkdir()
    (tmp_path / "notes.md").write_text("mine")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metrics.csv").write_text("mine too")
    clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.md"]
    assert (tmp_path / "data" / "metrics.csv").read_text() == "mine too" and not holds_run(tmp_path)


def test_default_run_directory_moves_on_past_every_taken_suffix(tmp_path, monkeypatch):
    from ppo2.config import TrainConfig
    from ppo2.trainer import Trainer

    monkeypatch.chdir(tmp_path)
    base = tmp_path / "runs" / "CartPole-v1__ppo__1"
    for taken in (base, base.with_name(base.name + "__2"), base.with_name(base.name + "__3")):
        taken.mkdir(parents=True)
        (taken / "metrics.csv").write_text("update\n")
    base.with_name(base.name + "__5").mkdir()  # holds no run: not a reason to skip __4
    trainer = Trainer(TrainConfig.for_env("CartPole-v1", progress=False, tensorboard=False, plot=False))
    try:
        assert str(trainer.output_dir) == "runs/CartPole-v1__ppo__1__4"
    finally:
        trainer.close()


# ---- advantage normalisation on the one-minibatch path (the CartPole preset's) ---------------------------------

def _update(fused: bool, advantages_scale: float, shift: float):
    from ppo2.fused import FusedPPO
    from ppo2.optim import AdamState
    from ppo2.update import Batch, ppo_update

    torch.manual_seed(0)
    model = PPO2(input_dim=4, action_space=2)
    g = torch.Generator().manual_seed(1)
    n = 64
    obs = torch.randn(n, 4, generator=g)
    actions = torch.randint(0, 2, (n,), generator=g)
    with torch.no_grad():
        values, nlp, _ = model.value_and_evaluate(obs, actions)
    adv = torch.randn(n, generator=g)
    batch = Batch(obs, actions, nlp, values, adv * advantages_scale + shift, values + adv)
    kw = dict(update_epochs=3, num_minibatches=1, clip_range=0.2, ent_coef=0.0, vf_coef=0.0, max_grad_norm=10.0,
              norm_adv=True)
    if fused:
        opt = AdamState(list(model.parameters()), lr=1e-2, eps=1e-5)
        FusedPPO(model, opt).update(batch, **kw)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-5)
        ppo_update(model, opt, batch, algo="ppo", **kw)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_one_minibatch_update_normalises_the_advantages(fused):
    """Advantages are standardised before the loss: an affine change of them (scale 7, shift +3) leaves the update
    unchanged (vf_coef 0: the policy's step alone), while their sign matters. Without the normalisation, or with
    only the shift or only the scale removed, the first comparison fails."""
    base = _update(fused, 1.0, 0.0)
    torch.testing.assert_close(_update(fused, 7.0, 3.0), base, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(_update(fused, -1.0, 0.0), base, atol=1e-4)


# ---- Dict observations: each vector key normalised by its own statistics -----------------------------------------

def test_dict_vector_keys_are_each_normalised_with_their_own_statistics():
    from ppo2.observations import vector_part

    space = spaces.Dict({"z": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                         "img": spaces.Box(0, 255, (36, 36, 1), np.uint8),
                         "a": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    model = PPO2(observation_space=space, action_space=2, normalize_obs=True)
    rng = np.random.default_rng(0)
    batch = {"z": (rng.normal(size=(500, 2)) * [1, 10] + [5, -5]).astype(np.float32),
             "img": rng.integers(0, 256, (500, 36, 36, 1), dtype=np.uint8),
             "a": (rng.normal(size=(500, 3)) * [0.1, 2, 30] + [100, 0, -7]).astype(np.float32)}
    flat = torch.from_numpy(vector_part(model.obs_spec, batch)).double()  # what the trainer feeds the statistics
    model.update_obs_stats(flat.mean(0), flat.var(0, unbiased=False), flat.shape[0])
    out = model.preprocess(model._check_obs(batch)[0])
    for key in ("z", "a"):
        np.testing.assert_allclose(out[key].mean(0).numpy(), 0.0, atol=2e-3)
        # (the running statistics start from a prior of mean 0, variance 1 and count 1e-4, as baselines' do: a
        # feature at 100 with std 0.1 keeps a trace of it, so the spread is checked to 10%)
        np.testing.assert_allclose(out[key].std(0, unbiased=False).numpy(), 1.0, rtol=0.1)
    np.testing.assert_allclose(out["img"].numpy(), np.moveaxis(batch["img"], -1, 1) / 255.0, atol=1e-7)


# ---- image layouts and action bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("shape, channels_last, chw", [
    ((4, 210, 160), False, (4, 210, 160)), ((210, 160, 4), True, (4, 210, 160)), ((3, 64, 96), False, (3, 64, 96)),
    ((64, 96, 3), True, (3, 64, 96)), ((84, 84), True, (1, 84, 84))])
def test_non_square_frames_keep_their_layout(shape, channels_last, chw):
    from ppo2.observations import image_chw, obs_spec_from_space

    spec = obs_spec_from_space(spaces.Box(0, 255, shape, np.uint8))
    assert spec["channels_last"] is channels_last and tuple(image_chw(spec)) == chw
    model = PPO2(observation_space=spaces.Box(0, 255, shape, np.uint8), action_space=2)
    frame = np.zeros(shape, np.uint8)
    frame[..., 0] = 255 if channels_last else 0  # (a marker on one channel when channels are last)
    x = model.preprocess(model._check_obs(frame[None])[0])
    assert tuple(x.shape[1:]) == chw


@pytest.mark.parametrize("field, value", [("low", -1.0), ("high", 1.0)])
def test_check_compatible_compares_both_action_bounds(field, value):
    model = PPO2(input_dim=3, action_space=spaces.Box(-2.0, 2.0, (1,), np.float32))
    bounds = {"low": -2.0, "high": 2.0, field: value}
    with pytest.raises(ValueError, match="this policy acts in Box"):
        check_compatible(model, spaces.Box(-np.inf, np.inf, (3,), np.float32),
                               spaces.Box(bounds["low"], bounds["high"], (1,), np.float32))
    check_compatible(model, spaces.Box(-np.inf, np.inf, (3,), np.float32), spaces.Box(-2.0, 2.0, (1,), np.float32))


# ---- an honest "solved" -----------------------------------------------------------------------------------------

def _train_with_scores(tmp_path, monkeypatch, score, **overrides):
    """A CartPole Trainer whose evaluations return `score(n_episodes)` (mean, std): the stop logic alone, observed.
    Returns (trainer, the episode counts evaluated, in order)."""
    import ppo2.trainer as T
    from ppo2.config import TrainConfig

    calls = []

    def fake_evaluate(model, env_id, n_episodes, seed=0, deterministic=True, envs=None, stop=None):
        calls.append(n_episodes)
        mean, std = score(n_episodes)
        return {"env_id": env_id, "mean_reward": mean, "std_reward": std, "n_episodes": n_episodes, "seed": seed}

    monkeypatch.setattr(T, "evaluate_policy", fake_evaluate)
    trainer = T.Trainer(TrainConfig.for_env("CartPole-v1", output_dir=str(tmp_path), progress=False, tensorboard=False,
                                            plot=False, **overrides))
    try:
        trainer.learn()
    finally:
        trainer.close()
    return trainer, calls


def test_a_target_reached_by_luck_is_not_called_solved(tmp_path, monkeypatch):
    """The periodic evaluation crosses the target, the confirmation's fresh episodes do not: the run goes on."""
    # lucky periodic evaluations (20 episodes), honest confirmations (100)
    trainer, calls = _train_with_scores(tmp_path, monkeypatch, lambda n: (500.0 if n == 20 else 470.0, 10.0),
                                        total_timesteps=4096)
    assert trainer.stop_reason == "total_timesteps" and trainer.solved_at is None
    assert calls.count(100) == calls.count(20) >= 2
    assert json.loads((tmp_path / "summary.json").read_text())["solved_at"] is None


def test_a_confirmed_target_stops_the_run_and_keeps_the_confirmed_policy(tmp_path, monkeypatch):
    trainer, _ = _train_with_scores(tmp_path, monkeypatch, lambda n: (490.0, 20.0))
    assert trainer.stop_reason == "target_reward" and trainer.solved_at["n_episodes"] == 100
    best = json.loads((tmp_path / "best" / "results.json").read_text())
    assert best["n_episodes"] == 100 and best["lower_bound"] == pytest.approx(490.0 - 1.645 * 2.0)
    final, kept = PPO2.from_pretrained(tmp_path), PPO2.from_pretrained(tmp_path / "best")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), kept.state_dict().values()))


def test_confirmation_requires_a_margin_of_standard_errors(tmp_path, monkeypatch):
    """A mean of 480 +/- 40 over 100 episodes has a 95% lower bound of 473.4 < 475: not confirmed."""
    trainer, _ = _train_with_scores(tmp_path, monkeypatch, lambda n: (480.0, 40.0), total_timesteps=2048)
    assert trainer.solved_at is None and trainer.last_eval["confirmation"]["lower_bound"] == pytest.approx(473.42)


def test_readme_zoo_table_is_generated_from_zoo_json():
    from conftest import REPO
    from ppo2.zoo import ZOO_TABLE_BEGIN, ZOO_TABLE_END, zoo_table

    readme = (REPO / "README.md").read_text()
    shown = readme.split(ZOO_TABLE_BEGIN, 1)[1].split(ZOO_TABLE_END, 1)[0].strip()
    assert shown == zoo_table(REPO / "weights").strip(), "run: python scripts/add_to_zoo.py --readme-only"
    # the front door stays short: its text within 286 lines (the zoo table grows with the zoo, outside that count)
    assert len(readme.splitlines()) - len(shown.splitlines()) <= 286
