"""Action masking (ppo2/masks.py): the maths against hand-computed values, every path that acts or evaluates
(rollouts, the update's log-probabilities and entropies, the hand-derived update, predict, evaluation, export),
every discrete action space, both mask sources, and the errors."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

import toy_envs  # noqa: F401  (registers ppo2test/*)
from ppo2 import PPO2, network
from ppo2.config import TrainConfig
from ppo2.fused import FusedPPO
from ppo2.masks import check_mask, mask_size
from ppo2.optim import AdamState
from ppo2.trainer import Trainer, train
from ppo2.update import Batch, ppo_update

BOTH = [np.asarray, torch.as_tensor]


@pytest.mark.parametrize("arr", BOTH)
def test_masked_categorical_is_the_categorical_over_legal_actions(arr):
    logits = np.array([[0.0, math.log(3.0), 5.0]], np.float32)
    mask = np.array([[True, True, False]])
    masked = network.mask_logits(arr(logits), arr(mask))
    lp, h, _, p = network.categorical_log_prob_entropy(masked, arr(np.array([[0, 1, 0]], np.float32)))
    # legal: p = [1/4, 3/4]; the illegal action (the largest logit) gets exactly 0
    np.testing.assert_allclose(np.asarray(p), [[0.25, 0.75, 0.0]], rtol=1e-6)
    assert float(np.asarray(p)[0, 2]) == 0.0
    np.testing.assert_allclose(np.asarray(lp), [math.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h), [-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))], rtol=1e-6)
    # never sampled, even by the largest uniform; the mode is the best legal action
    for u in (0.0, 0.5, 1.0 - 2 ** -24):
        assert int(np.asarray(network.categorical_sample(masked, arr(np.array([[u]], np.float32))))[0]) in (0, 1)
    assert int(np.asarray(network.categorical_mode(masked))[0]) == 1


@pytest.mark.parametrize("arr", BOTH)
def test_masked_bernoulli_forces_bits_with_one_legal_value(arr):
    logits = arr(np.array([[0.3, -2.0, 1.0]], np.float32))
    # bit 0: both legal; bit 1: only 1 legal; bit 2: only 0 legal (sb3-contrib's [0 legal, 1 legal] pairs)
    mask = arr(np.array([[1, 1, 0, 1, 1, 0]], bool))
    out = np.asarray(network.mask_bernoulli_logits(logits, mask))
    assert out[0, 0] == np.float32(0.3) and out[0, 1] == -network.MASKED_LOGIT and out[0, 2] == network.MASKED_LOGIT
    model = PPO2(input_dim=2, action_space=gym.spaces.MultiBinary(3), action_mask=True)
    obs = torch.zeros(64, 2)
    m = torch.tensor([[1, 1, 0, 1, 1, 0]], dtype=torch.bool).repeat(64, 1)
    _, action, nlp, entropy = model(obs, action_masks=m)
    assert bool((action[:, 1] == 1).all()) and bool((action[:, 2] == 0).all())
    # the forced bits add nothing to log-probability or entropy: what is left is bit 0's Bernoulli
    logit0 = model.action_head.output(model._latents(obs)[0])[:, 0]
    ref = torch.distributions.Bernoulli(logits=logit0)
    torch.testing.assert_close(-nlp, ref.log_prob(action[:, 0]))
    torch.testing.assert_close(entropy, ref.entropy())


def test_mask_sizes_and_checks():
    assert mask_size({"type": "Discrete", "n": 4}) == 4
    assert mask_size({"type": "MultiDiscrete", "nvec": [3, 2]}) == 5
    assert mask_size({"type": "MultiBinary", "n": 3}) == 6
    with pytest.raises(ValueError, match="discrete action space"):
        mask_size({"type": "Box", "shape": [1], "low": [-1.0], "high": [1.0]})
    spec = {"type": "MultiDiscrete", "nvec": [3, 2]}
    assert check_mask(np.array([[1, 0, 0, 0, 1]]), spec, 1, "env").dtype == np.bool_
    with pytest.raises(ValueError, match=r"env: the action mask allows no value for entries \[3, 5\) in row\(s\) \[0\]"):
        check_mask(np.array([[1, 0, 0, 0, 0]]), spec, 1, "env")
    with pytest.raises(ValueError, match=r"shape \(1, 4\), expected \(1, 5\)"):
        check_mask(np.ones((1, 4)), spec, 1, "env")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        check_mask(np.full((1, 5), 2), spec, 1, "env")


def test_update_log_probs_and_entropies_are_over_legal_actions():
    torch.manual_seed(0)
    model = PPO2(input_dim=3, action_space=4, action_mask=True)
    obs, mask = torch.randn(32, 3), torch.rand(32, 4) < 0.6
    mask[:, 2] = True
    action = torch.full((32,), 2)
    value, nlp, entropy = model.value_and_evaluate(obs, action, mask)
    logits = model.action_head.output(model._latents(obs)[0])
    for i in range(32):
        legal = mask[i].nonzero().flatten()
        ref = Categorical(logits=logits[i, legal])
        torch.testing.assert_close(nlp[i], -ref.log_prob(torch.tensor((legal == 2).nonzero().item())))
        torch.testing.assert_close(entropy[i], ref.entropy())


def test_fused_update_with_masks_equals_autograd():
    torch.manual_seed(1)
    ref = PPO2(input_dim=4, action_space=5, action_mask=True, shared_latent=False)
    fast = PPO2(input_dim=4, action_space=5, action_mask=True, shared_latent=False)
    fast.load_state_dict(ref.state_dict())
    n = 64
    obs, mask = torch.randn(n, 4), torch.rand(n, 5) < 0.5
    mask[torch.arange(n), torch.randint(0, 5, (n,))] = True
    with torch.no_grad():
        actions = ref._sample(obs, mask)
        values, nlp, _ = ref.value_and_evaluate(obs, actions, mask)
    batch = Batch(obs, actions, nlp, values, torch.randn(n), values + torch.randn(n), masks=mask)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5)
    opt_fast = AdamState(list(fast.parameters()), lr=1e-2, eps=1e-5)
    common = dict(update_epochs=3, num_minibatches=2, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
                  norm_adv=True)
    torch.manual_seed(5)
    stats_ref = ppo_update(ref, opt_ref, batch, algo="ppo", **common)
    torch.manual_seed(5)
    stats_fast = FusedPPO(fast, opt_fast).update(batch, **common)
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    for k in ("pg_loss", "value_loss", "entropy", "approx_kl"):
        assert stats_fast[k] == pytest.approx(stats_ref[k], rel=1e-4, abs=1e-6), k
    # the rollout's evaluation pass agrees with the reference too
    f = FusedPPO(fast, AdamState(list(fast.parameters()), lr=1e-3))
    v1, nlp1 = f.evaluate(obs, actions, mask)
    v2, nlp2, _ = fast.value_and_evaluate(obs, actions, mask)
    torch.testing.assert_close(nlp1, nlp2.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("env_id", ["ppo2test/MaskedChoice-v0", "ppo2test/MaskedChoiceMethod-v0",
                                    "ppo2test/MaskedMultiDiscrete-v0", "ppo2test/MaskedMultiBinary-v0"])
def test_training_never_takes_an_illegal_action_and_learns(env_id, tmp_path):
    """The env raises on an illegal action: from the first rollout step to the last evaluation, none is taken.
    A policy that picks legal actions uniformly scores about 1/3 of the maximum (20 per episode); the trained one
    must do clearly better."""
    model = train(env_id=env_id, total_timesteps=8192, num_envs=8, num_steps=64, progress=False, tensorboard=False,
                  plot=False, output_dir=str(tmp_path / "run"), eval_interval=8, stop_at_target=False, seed=3)
    assert model.mask_size > 0
    assert model.trainer_summary["last_eval"]["mean_reward"] > 10.0


def test_predict_evaluation_and_replays_apply_masks(tmp_path):
    from ppo2.evaluate import evaluate_policy

    model = PPO2(observation_space=gym.make("ppo2test/MaskedChoice-v0").observation_space, action_space=5)
    assert model.get_config()["action_mask"] == {"source": "observation", "key": "action_mask", "unwrap": "obs"}
    assert model.obs_spec == {"type": "Box", "shape": [5]}  # the mask is not an input of the network
    # predict with the env's Dict observations: masked, sampled or not, batched or not
    env = gym.make("ppo2test/MaskedChoice-v0")
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        for det in (True, False):
            action, _ = model.predict(obs, deterministic=det)
            assert obs["action_mask"][action]
        obs, *_ = env.step(action)
    # evaluation runs whole episodes without an illegal action (the env would raise)
    for env_id in ("ppo2test/MaskedChoice-v0", "ppo2test/MaskedChoiceMethod-v0"):
        m = PPO2(observation_space=gym.make(env_id).observation_space, action_space=5,
                 action_mask="auto" if env_id.endswith("Choice-v0") else True)
        res = evaluate_policy(m, env_id, n_episodes=4, seed=1)
        assert res["n_episodes"] == 4
        res = evaluate_policy(m, env_id, n_episodes=2, seed=1, deterministic=False)
    # a masking policy refuses to act without a mask; a policy without masking refuses one
    with pytest.raises(ValueError, match="pass action_masks"):
        PPO2(input_dim=5, action_space=5, action_mask=True).predict(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="built without action masking"):
        PPO2(input_dim=5, action_space=5).predict(np.zeros(5, np.float32), action_masks=np.ones(5))
    with pytest.raises(ValueError, match="allows no action"):
        PPO2(input_dim=5, action_space=5, action_mask=True).predict(np.zeros(5, np.float32), action_masks=np.zeros(5))


def test_all_illegal_mask_from_the_env_is_an_error_naming_it(tmp_path):
    class Broken(gym.Wrapper):
        def action_masks(self):
            return np.zeros(5, bool)

    gym.register("ppo2test/BrokenMask-v0", entry_point=lambda: Broken(gym.make("ppo2test/MaskedChoiceMethod-v0")))
    try:
        with pytest.raises(ValueError, match=r"ppo2test/BrokenMask-v0: the action mask allows no action in row\(s\) "
                                             r"\[0, 1, 2, 3\]"):
            Trainer(TrainConfig.for_env("ppo2test/BrokenMask-v0", num_envs=4, num_steps=8, num_minibatches=1,
                                        total_timesteps=64, progress=False, tensorboard=False, plot=False,
                                        output_dir=str(tmp_path / "run")))
    finally:
        del gym.registry["ppo2test/BrokenMask-v0"]


def test_no_action_mask_turns_masking_off(tmp_path):
    cfg = TrainConfig.for_env("ppo2test/MaskedChoiceMethod-v0", action_mask=False, num_envs=4, num_steps=8,
                              num_minibatches=1, total_timesteps=64, progress=False, tensorboard=False, plot=False,
                              output_dir=str(tmp_path / "run"))
    trainer = Trainer(cfg)
    try:
        assert trainer.model.mask_size == 0 and trainer.storage.masks is None
    finally:
        trainer.close()
    cfg = cfg.replace(env_id="ppo2test/MaskedChoice-v0", output_dir=str(tmp_path / "run2"))
    trainer = Trainer(cfg)
    try:  # the Dict's mask key is still kept out of the network's input, but not applied
        assert trainer.model.mask_size == 0 and trainer.model.obs_spec == {"type": "Box", "shape": [5]}
        assert trainer.model.mask_config.source == "off"
    finally:
        trainer.close()


def test_export_takes_the_mask(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ppo2.export import export_onnx, export_program

    torch.manual_seed(0)
    model = PPO2(input_dim=4, action_space=gym.spaces.MultiDiscrete([3, 4]), action_mask=True)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    mask = np.random.default_rng(1).random((16, 7)) < 0.5
    mask[:, 0] = mask[:, 3] = True
    expected, _ = model.predict(obs, action_masks=mask)
    path = export_onnx(model, tmp_path / "p.onnx")
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["obs", "action_mask"]
    got = sess.run(None, {"obs": obs, "action_mask": mask})[0]
    np.testing.assert_array_equal(got, expected)
    with torch.no_grad():
        prog = export_program(model).module()(torch.from_numpy(obs), action_mask=torch.from_numpy(mask))
    np.testing.assert_array_equal(prog.numpy(), expected)


def test_masked_policy_saves_and_loads(tmp_path):
    model = PPO2(observation_space=gym.make("ppo2test/MaskedChoice-v0").observation_space, action_space=5)
    model.save_pretrained(tmp_path / "p")
    loaded = PPO2.from_pretrained(str(tmp_path / "p"))
    assert loaded.get_config() == model.get_config()
    obs = {"obs": np.eye(5, dtype=np.float32), "action_mask": np.eye(5, dtype=np.int8)}
    np.testing.assert_array_equal(loaded.predict(obs)[0], np.arange(5))
    with pytest.raises(ValueError, match="action_mask.source"):
        PPO2.from_config({**model.get_config(), "action_mask": {"source": "exec", "key": None, "unwrap": None}})


def test_a_terminal_state_may_allow_no_action(tmp_path):
    """Lock-v0 (the README's example) ends with every digit used: its mask then allows nothing. The action after a
    terminal state is gymnasium's ignored autoreset step, so training and evaluation take that mask as all legal,
    and still never press a digit twice; the policy learns the order."""
    model = train(env_id="ppo2test/Lock-v0", total_timesteps=30_720, progress=False, tensorboard=False, plot=False,
                  output_dir=str(tmp_path / "run"), eval_interval=5, eval_episodes=20, stop_at_target=False, seed=1)
    assert model.trainer_summary["last_eval"]["mean_reward"] >= 5.0
    env = gym.make("ppo2test/Lock-v0")
    obs, _ = env.reset()
    with pytest.raises(ValueError, match="allows no action"):  # predict itself still refuses an all-illegal mask
        model.predict(obs, action_masks=np.zeros(6, bool))


def test_masks_through_an_async_vector_env_and_the_torch_step(tmp_path):
    """Subprocess envs (their action_masks() found and called through AsyncVectorEnv.call), and more envs than the
    numpy step takes (the torch sampling path): still no illegal action (the env raises)."""
    common = dict(progress=False, tensorboard=False, plot=False, stop_at_target=False, eval_interval=2, eval_episodes=4)
    model = train(env_id="ppo2test/MaskedChoiceMethod-v0", vectorization="async", num_envs=4, num_steps=32,
                  num_minibatches=2, total_timesteps=256, output_dir=str(tmp_path / "async"), **common)
    assert model.mask_size == 5
    model = train(env_id="ppo2test/MaskedMultiDiscrete-v0", num_envs=40, num_steps=8, num_minibatches=2,
                  total_timesteps=640, output_dir=str(tmp_path / "torch"), **common)
    assert model.mask_size == 8


def test_an_ended_rows_pass_does_not_hide_bad_values_elsewhere():
    """Rows of envs whose episode just ended are taken as all legal; the other rows keep their values, so a 2 in
    them is still refused rather than read as True."""
    from ppo2.masks import allow_ended

    spec = {"type": "Discrete", "n": 3}
    mask = np.array([[0, 0, 0], [1, 0, 2]], np.int8)
    assert allow_ended(mask, np.array([True, False]))[0].tolist() == [1, 1, 1] and mask[0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="must be 0 or 1"):
        check_mask(allow_ended(mask, np.array([True, False])), spec, 2, "env")
    assert check_mask(allow_ended(np.array([[0, 0, 0], [1, 0, 1]]), np.array([True, False])), spec, 2, "env").all(0)[0]
