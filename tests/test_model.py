"""The hub model: the seed call, shapes per space, sampling vs evaluation, initialisation, bad input."""
import importlib.util
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO, act, hub_load
from ppo2 import PPO2
from ppo2.distributions import UniformBlock, space_to_spec
from ppo2.speed import numpy_policy

SPACES = {
    "discrete": (gym.spaces.Discrete(3), ()),
    "box": (gym.spaces.Box(-2.0, 2.0, (2,), np.float32), (2,)),
    "multidiscrete": (gym.spaces.MultiDiscrete([3, 4]), (2,)),
    "multibinary": (gym.spaces.MultiBinary(5), (5,)),
}


def test_seed_call_unchanged():
    model = hub_load("ppo2", reset_param=True, force_reload=True, input_dim=4, hidden_dim=64, action_space=2, dropout=0)
    assert isinstance(model, nn.Module)
    value_f, action, neg_log_prob, entropy = model(torch.randn(7, 4))
    assert value_f.shape == action.shape == neg_log_prob.shape == entropy.shape == (7,)
    assert action.dtype == torch.int64 and set(action.tolist()) <= {0, 1}
    # near-uniform initial policy (0.01-gain head): entropy ~ log 2
    assert torch.allclose(entropy, torch.full((7,), math.log(2)), atol=1e-3)


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hub_list_and_help_show_only_public_entrypoints():
    hubconf = _hubconf()
    # what torch.hub.list computes
    entrypoints = sorted(f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_"))
    assert entrypoints == ["eval_fn", "ppo2", "train_fn"]
    assert set(hubconf.dependencies) >= {"torch", "gymnasium"}
    for name in entrypoints:  # what torch.hub.help prints
        doc = torch.hub._load_entry_from_hubconf(hubconf, name).__doc__
        assert "Args" in doc and "Example" in doc, name
    assert "pretrained" in hubconf.ppo2.__doc__ and "Returns" in hubconf.ppo2.__doc__


@pytest.mark.parametrize("kind", SPACES)
def test_shapes_per_space(kind):
    space, action_shape = SPACES[kind]
    model = PPO2(6, 32, space)
    v, a, nlp, ent = model(torch.randn(5, 6))
    assert v.shape == nlp.shape == ent.shape == (5,)
    assert a.shape == (5, *action_shape)
    assert space.contains(model.action_head.to_env(a[0].numpy()).astype(space.dtype))
    # one unbatched observation
    v1, a1, nlp1, ent1 = model(np.zeros(6, np.float32))
    assert v1.shape == nlp1.shape == ent1.shape == ()
    assert a1.shape == action_shape


@pytest.mark.parametrize("kind", SPACES)
def test_sample_then_evaluate_agree(kind):
    torch.manual_seed(0)
    model = PPO2(6, 32, SPACES[kind][0])
    obs = torch.randn(9, 6)
    v, a, nlp, ent = model(obs)
    v2, a2, nlp2, ent2 = model(obs, action=a)
    assert torch.equal(a, a2)
    torch.testing.assert_close(nlp, nlp2)
    torch.testing.assert_close(ent, ent2)
    torch.testing.assert_close(v, v2)


def test_log_prob_and_entropy_of_gaussian_are_summed_over_dims():
    model = PPO2(3, 8, gym.spaces.Box(-1, 1, (4,), np.float32), log_std_init=-0.5)
    obs = torch.randn(2, 3)
    _, _, _, ent = model(obs)
    per_dim = 0.5 + 0.5 * math.log(2 * math.pi) - 0.5
    torch.testing.assert_close(ent, torch.full((2,), 4 * per_dim))
    mean = model.action_head.mean(model.latent(obs))
    _, _, nlp, _ = model(obs, action=mean)  # at the mean: -log p = sum over dims of log(sigma sqrt(2 pi))
    torch.testing.assert_close(nlp, torch.full((2,), 4 * (-0.5 + 0.5 * math.log(2 * math.pi))))


def test_deterministic_action_is_the_mode():
    torch.manual_seed(0)
    model = PPO2(4, 16, 3)
    obs = torch.randn(20, 4)
    logits = model.action_head.logits(model.latent(obs))
    assert torch.equal(act(model, obs), logits.argmax(-1))
    _, a, _, _ = model(obs, deterministic=True)
    assert torch.equal(a, logits.argmax(-1))
    action, state = model.predict(obs.numpy())
    assert state is None and isinstance(action, np.ndarray) and np.array_equal(action, logits.argmax(-1).numpy())


def test_box_actions_are_clipped_for_the_env_only():
    model = PPO2(2, 8, gym.spaces.Box(-1, 1, (1,), np.float32), log_std_init=3.0)
    action, _ = model.predict(np.zeros((100, 2), np.float32), deterministic=False)
    assert action.min() >= -1 and action.max() <= 1


def test_reset_param_gives_baselines_initialisation():
    torch.manual_seed(0)
    model = PPO2(4, 64, 2, reset_param=True)
    hidden = model.latent[0].weight
    # orthogonal with gain sqrt(2): rows orthogonal, W W^T = 2 I (64x4 -> columns orthonormal * sqrt 2)
    torch.testing.assert_close(hidden.T @ hidden, 2 * torch.eye(4), atol=1e-5, rtol=0)
    head = model.action_head.logits.weight
    torch.testing.assert_close(head @ head.T, 0.01 ** 2 * torch.eye(2), atol=1e-7, rtol=0)
    torch.testing.assert_close((model.value_head.weight ** 2).sum(), torch.tensor(1.0))
    assert all(float(b.detach().abs().max()) == 0 for n, b in model.named_parameters() if n.endswith("bias"))


@pytest.mark.parametrize("shape", [(64, 4), (64, 64), (2, 64), (1, 64), (32, 4, 8, 8)])
def test_orthogonal_init_is_torchs_up_to_rounding(shape):
    from ppo2.init import orthogonal_

    torch.manual_seed(3)
    ours = orthogonal_(torch.empty(shape), gain=math.sqrt(2))
    after_ours = torch.rand(3)  # the same draw was consumed: later random numbers are unchanged
    torch.manual_seed(3)
    theirs = nn.init.orthogonal_(torch.empty(shape), gain=math.sqrt(2))
    assert torch.equal(torch.rand(3), after_ours)
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=0)
    flat = ours.reshape(shape[0], -1).double()
    small = min(flat.shape)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    torch.testing.assert_close(gram, 2 * torch.eye(small, dtype=torch.float64), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        orthogonal_(torch.empty(5))


def test_separate_towers_and_custom_latents():
    model = PPO2(4, 16, 2, shared_latent=False)
    assert model.policy_latent is not model.value_latent
    assert not any(k.startswith("latent.") for k in model.state_dict())
    pi = nn.Sequential(nn.Linear(4, 10), nn.ReLU())
    vf = nn.Sequential(nn.Linear(4, 12), nn.ReLU())
    custom = PPO2(4, action_space=2, policy_net=pi, value_net=vf)
    v, a, nlp, ent = custom(torch.randn(3, 4))
    assert v.shape == (3,) and custom.action_head.logits.in_features == 10 and custom.value_head.in_features == 12


def test_distribution_argument():
    model = PPO2(3, 8, gym.spaces.Box(-1, 1, (2,), np.float32), distribution=torch.distributions.Laplace)
    assert isinstance(model(torch.randn(4, 3)) , tuple)
    assert model.get_config()["distribution"] == "torch.distributions.Laplace"
    rebuilt = PPO2.from_config(model.get_config())
    assert rebuilt.action_head.dist_cls is torch.distributions.Laplace


def test_observation_normaliser_matches_numpy():
    model = PPO2(3, 8, 2, normalize_obs=True)
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 2, (100, 3)), rng.normal(-1, 0.5, (50, 3))
    for chunk in (a, b):
        t = torch.from_numpy(chunk)
        model.update_obs_stats(t.mean(0), t.var(0, unbiased=False), len(chunk))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(model.obs_mean.numpy(), both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.obs_var.numpy(), both.var(0), rtol=1e-3)
    x = torch.tensor([[5.0, 5.0, 5.0]])
    expected = np.clip((5.0 - both.mean(0)) / np.sqrt(both.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(model.normalize(x)[0].numpy(), expected, rtol=1e-3)
    assert {"obs_mean", "obs_var", "obs_count"} <= set(model.state_dict())


# ---------------------------------------------------------------------------------------------------
# bad input: each error names what was expected and what came
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("obs, match", [
    (torch.randn(3, 5), r"shape \(3, 5\), expected \(N, 4\) or \(4,\)"),
    (torch.randn(2, 3, 4), r"shape \(2, 3, 4\)"),
    (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), "1 NaN/inf"),
    (torch.tensor([[0.0, float("inf"), float("-inf"), 0.0]]), "2 NaN/inf"),
])
def test_bad_observations(obs, match):
    with pytest.raises(ValueError, match=match):
        PPO2(4, 8, 2)(obs)


@pytest.mark.parametrize("action, match", [
    (torch.zeros(3, 1, dtype=torch.long), r"shape \(3, 1\), expected \(3,\)"),
    (torch.tensor([0, 1, 2]), r"expected values in \[0, 2\), got min 0, max 2"),
    (torch.tensor([0, -1, 1]), r"got min -1"),
    (torch.tensor([0.5, 1.0, 0.0]), "integers"),
])
def test_bad_discrete_actions(action, match):
    with pytest.raises(ValueError, match=match):
        PPO2(4, 8, 2)(torch.randn(3, 4), action=action)


def test_bad_box_action_shape():
    model = PPO2(4, 8, gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(3, 2\)"):
        model(torch.randn(3, 4), action=torch.zeros(3))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(hidden_dim=0), ValueError, "hidden_dim must be an int >= 1, got 0"),
    (dict(input_dim=0), ValueError, "input_dim must be an int >= 1, got 0"),
    (dict(dropout=1.0), ValueError, r"dropout must be a float in \[0, 1\), got 1.0"),
    (dict(dropout=-0.1), ValueError, r"dropout must be a float in \[0, 1\), got -0.1"),
    (dict(distribution=torch.nn.Linear), TypeError, "Distribution subclass, got <class 'torch.nn.modules.linear.Linear'>"),
    (dict(distribution="builtins.eval"), ValueError, "unknown distribution 'builtins.eval'"),
    (dict(action_space=0), ValueError, "must be >= 1, got 0"),
    (dict(action_space=gym.spaces.Dict({"a": gym.spaces.Discrete(2)})), TypeError, "unsupported action space Dict"),
    (dict(action_space=gym.spaces.Box(-1, 1, (2, 2))), ValueError, r"1-D \(shape \(d,\)\), got shape \(2, 2\)"),
    (dict(action_space=gym.spaces.Box(-1, 1, (2,)), distribution=torch.distributions.Categorical), ValueError,
     "cannot parameterise a Box"),
    (dict(distribution=torch.distributions.Normal), ValueError, "cannot parameterise a Discrete"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    args = dict(input_dim=4, hidden_dim=8, action_space=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        PPO2(**args)


def numpy_sampler(model, steps=None):
    """The collector's numpy policy step (ppo2.trainer.Trainer.policy_step)."""
    policy, uniforms = numpy_policy(model), (UniformBlock(steps) if steps else None)
    return lambda obs: policy.sample(obs, uniforms)[0]


def test_space_spec_round_trip():
    for space, _ in SPACES.values():
        spec = space_to_spec(space)
        assert PPO2(3, 4, spec).action_spec == spec


@pytest.mark.parametrize("kind", SPACES)
@pytest.mark.parametrize("normalize_obs", [False, True])
def test_predict_numpy_path_matches_torch_path(kind, normalize_obs):
    torch.manual_seed(0)
    model = PPO2(6, 32, SPACES[kind][0], normalize_obs=normalize_obs, shared_latent=kind != "box")
    if normalize_obs:
        model.update_obs_stats(torch.full((6,), 0.5), torch.full((6,), 4.0), 50)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    obs = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32) * 3  # <= 32: the numpy path
    for _ in range(2):  # also after an optimizer step: the numpy views must see the new weights
        fast, _ = model.predict(obs)
        assert numpy_policy(model) is not None
        with torch.no_grad():
            slow = model.action_head.to_env(act(model, torch.from_numpy(obs)).numpy())
        np.testing.assert_allclose(fast, slow, atol=1e-5)
        single, _ = model.predict(obs[0])
        np.testing.assert_allclose(single, slow[0], atol=1e-5)
        opt.zero_grad()
        model(torch.from_numpy(obs))[0].sum().backward()
        opt.step()
    model.double()  # replaced parameter tensors: the fast path steps aside instead of reading stale views
    assert numpy_policy(model) is None


@pytest.mark.parametrize("kind", ["discrete", "box"])
@pytest.mark.parametrize("normalize_obs", [False, True])
def test_numpy_sampler_draws_the_torch_samplers_actions(kind, normalize_obs):
    """The collector's numpy policy step: from the same torch random state, the same actions as sample_action
    (Categorical: the same CDF inversion of the same uniforms; Gaussian: mean + std * the same normals), and
    the same empirical distribution over many draws."""
    torch.manual_seed(0)
    model = PPO2(6, 32, SPACES[kind][0], normalize_obs=normalize_obs, shared_latent=False)
    if normalize_obs:
        model.update_obs_stats(torch.full((6,), 0.5), torch.full((6,), 4.0), 50)
    with torch.no_grad():
        model.action_head.output_layer().weight.mul_(20)  # spread the policy: many actions of real probability
        if kind == "box":  # standard deviations other than 1, and unequal: the sampler must scale each by its own
            log_std = model.action_head.log_std
            log_std.copy_(torch.linspace(-1.5, 0.7, log_std.numel()))
    sampler = numpy_sampler(model)
    obs = np.random.default_rng(1).normal(size=(32, 6)).astype(np.float32) * 3
    for seed in range(20):
        torch.manual_seed(seed)
        fast = sampler(obs)
        torch.manual_seed(seed)
        with torch.inference_mode():
            slow = model._sample(torch.from_numpy(obs)).numpy()
        assert fast.shape == slow.shape and fast.dtype == slow.dtype
        if kind == "discrete":
            assert np.array_equal(fast, slow)
        else:
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    if kind == "box":  # and the draws' spread is each dimension's own standard deviation
        torch.manual_seed(7)
        draws = np.stack([sampler(obs[:1]) for _ in range(4000)])[:, 0]
        np.testing.assert_allclose(draws.std(0), model.action_head.log_std.detach().exp().numpy(), rtol=0.06)
    if kind == "discrete":  # and the draws follow softmax(logits): 4,000 draws per row against the probabilities
        with torch.no_grad():
            probs = model.action_head.distribution(model._latents(torch.from_numpy(obs))[0]).probs.numpy()
        draws = np.stack([sampler(obs) for _ in range(4000)])
        freq = np.stack([(draws == a).mean(0) for a in range(probs.shape[1])], 1)
        assert np.abs(freq - probs).max() < 0.035


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_numpy_sampler_for_a_rollout_draws_the_same_numbers_step_by_step(kind):
    """The collector's numpy step with a UniformBlock of T steps: T calls give the actions of T _sample calls from the same
    seed and leave the torch generator where they leave it (Categorical draws the T steps' uniforms at once);
    a call beyond T draws afresh, and a batch of another size is refused."""
    torch.manual_seed(0)
    model = PPO2(6, 32, SPACES[kind][0], shared_latent=False)
    with torch.no_grad():
        model.action_head.output_layer().weight.mul_(20)
    rows = np.random.default_rng(1).normal(size=(9, 8, 6)).astype(np.float32) * 3
    torch.manual_seed(3)
    sampler = numpy_sampler(model, steps=8)
    fast = np.stack([sampler(obs) for obs in rows])
    fast_next = torch.rand(5)
    torch.manual_seed(3)
    with torch.inference_mode():
        slow = np.stack([model._sample(torch.from_numpy(obs)).numpy() for obs in rows])
    slow_next = torch.rand(5)
    if kind == "discrete":
        assert np.array_equal(fast, slow) and len(set(fast.ravel().tolist())) > 1
    else:
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast_next, slow_next)
    if kind == "discrete":
        sampler = numpy_sampler(model, steps=3)
        sampler(rows[0])
        with pytest.raises(ValueError, match="batches of 8 was asked for 4"):
            sampler(rows[1][:4])


def test_numpy_path_steps_aside_where_it_does_not_apply():
    assert numpy_policy(PPO2(4, 8, 2)) is not None
    assert numpy_policy(PPO2(4, 8, 2).double()) is None  # float64 weights
    assert numpy_policy(PPO2(4, 8, 2, encoder=torch.nn.Flatten())) is None  # an encoder of your own
    laplace = PPO2(4, 8, SPACES["box"][0], distribution=torch.distributions.Laplace)
    assert numpy_policy(laplace) is not None and not laplace.action_head.builtin  # acts in numpy, samples in torch
    assert not PPO2(4, 8, SPACES["multibinary"][0]).action_head.builtin  # (Bernoulli: torch.distributions')


def test_evaluation_through_the_numpy_policy_plays_exactly_as_predict(monkeypatch):
    """run_episodes binds predict's numpy path once per evaluation: the same episodes as calling predict at
    every step, and a NaN observation mid-episode still raises (naming it) instead of choosing an action."""
    from ppo2.evaluate import run_episodes
    from ppo2.zoo import load_pretrained

    model = load_pretrained("Pendulum-v1")  # Box actions: clipped to the bounds on both paths
    envs = gym.make_vec("Pendulum-v1", 6)
    assert numpy_policy(model) is not None
    fast = run_episodes(model, envs, seed=5)
    monkeypatch.setattr("ppo2.evaluate.numpy_policy", lambda model: None)
    slow = run_episodes(model, envs, seed=5)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    monkeypatch.undo()

    class NaNAfter(gym.vector.VectorWrapper):
        def step(self, action):
            obs, *rest = self.env.step(action)
            return np.full_like(obs, np.nan), *rest

    with pytest.raises(ValueError, match="NaN/inf"):
        run_episodes(model, NaNAfter(envs), seed=5)
    envs.close()


def test_predict_numpy_path_rejects_bad_observations():
    model = PPO2(4, 8, 2)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(N, 4\) or \(4,\)"):
        model.predict(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="1 NaN/inf"):
        model.predict(np.array([0, np.nan, 0, 0], np.float32))
