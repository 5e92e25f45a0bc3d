"""ppo2/network.py: the built-in policy's maths, written once. Each function against hand-computed values and
torch.distributions, on numpy and torch alike; and the structure that keeps it the only definition: every path
that runs the built-in network goes through it, and no other module computes a tanh layer or a distribution."""
import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from ppo2 import PPO2, network
from ppo2.fused import FusedPPO
from ppo2.speed import numpy_policy

PKG = Path(__file__).resolve().parent.parent / "ppo2"
BOTH = [np.asarray, torch.as_tensor]


@pytest.mark.parametrize("arr", BOTH)
def test_mlp_by_hand(arr):
    x = arr(np.array([[1.0, -2.0]], np.float32))
    w1, b1 = arr(np.array([[0.5, 0.0], [0.25, 1.0]], np.float32)), arr(np.array([0.0, 0.5], np.float32))
    h1, h2 = network.mlp(x, [(w1, b1), (arr(np.eye(2, dtype=np.float32)), arr(np.zeros(2, np.float32)))])
    # x W' + b = [1*0.5 + -2*0.25, 1*0 + -2*1 + 0.5] = [0, -1.5]
    np.testing.assert_allclose(np.asarray(h1), [[0.0, math.tanh(-1.5)]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h2), np.tanh(np.asarray(h1)), rtol=1e-6)


@pytest.mark.parametrize("arr", BOTH)
def test_categorical_against_hand_and_torch(arr):
    logits = np.array([[0.0, math.log(3.0)], [2.0, 2.0]], np.float32)  # p = [1/4, 3/4] and [1/2, 1/2]
    hot = np.array([[0, 1], [1, 0]], np.float32)
    logp, entropy, log_p, p = network.categorical_log_prob_entropy(arr(logits), arr(hot))
    np.testing.assert_allclose(np.asarray(logp), [math.log(0.75), math.log(0.5)], rtol=1e-6)
    h0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    np.testing.assert_allclose(np.asarray(entropy), [h0, math.log(2)], rtol=1e-6)
    ref = Categorical(logits=torch.tensor(logits))
    np.testing.assert_allclose(np.asarray(p), ref.probs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(entropy), ref.entropy().numpy(), rtol=1e-6)
    # a masked logit: probability exactly 0, no NaN from 0 * log 0 anywhere
    masked = arr(np.array([[1.0, network.MASKED_LOGIT, 0.0]], np.float32))
    lp, h, _, p = network.categorical_log_prob_entropy(masked, arr(np.array([[1, 0, 0]], np.float32)))
    assert float(np.asarray(p)[0, 1]) == 0.0 and np.isfinite(np.asarray(h)).all()
    np.testing.assert_allclose(np.asarray(h), Categorical(logits=torch.tensor([[1.0, 0.0]])).entropy().numpy(), rtol=1e-6)


def test_categorical_sampler_frequencies_and_zero_probabilities():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 0.0, 1.0]])).repeat(50_000, 1)
    draws = network.categorical_sample(logits, torch.rand(100_000, 1)).view(50_000, 2)
    freq = torch.bincount(draws[:, 0], minlength=4).float() / 50_000
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.0, 0.6, 0.3]), atol=0.01, rtol=0)
    assert int((draws[:, 0] == 1).sum()) == 0  # probability 0 is never drawn
    assert bool((draws[:, 1] == 3).all())
    # the largest uniform below 1 still lands on an action with non-zero probability
    top = torch.tensor([[1.0 - 2 ** -24]])
    assert network.categorical_sample(torch.log(torch.tensor([[0.5, 0.5, 0.0]])), top).item() == 1
    # numpy and torch invert the same CDF with the same uniforms
    g = np.random.default_rng(0)
    lg, u = g.normal(size=(64, 5)).astype(np.float32), g.random((64, 1)).astype(np.float32)
    assert np.array_equal(network.categorical_sample(lg, u), network.categorical_sample(torch.tensor(lg), torch.tensor(u)).numpy())


@pytest.mark.parametrize("arr", BOTH)
def test_gaussian_against_hand_and_torch(arr):
    mean, log_std = np.array([[0.0, 1.0]], np.float32), np.array([0.0, math.log(2.0)], np.float32)
    action = np.array([[1.0, 1.0]], np.float32)
    logp, z = network.gaussian_log_prob(arr(mean), arr(log_std), arr(action))
    # N(1; 0, 1) * N(1; 1, 2): -1/2 - log 2 - log(2 pi)
    np.testing.assert_allclose(np.asarray(logp), [-0.5 - math.log(2.0) - math.log(2 * math.pi)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(z), [[1.0, 0.0]])
    ref = Normal(torch.tensor(mean), torch.tensor(log_std).exp())
    np.testing.assert_allclose(float(network.gaussian_entropy(arr(log_std))), float(ref.entropy().sum()), rtol=1e-6)
    draw = network.gaussian_sample(arr(mean), arr(log_std), arr(np.array([[1.0, -1.0]], np.float32)))
    np.testing.assert_allclose(np.asarray(draw), [[1.0, -1.0]], rtol=1e-6)


def test_multi_categorical_is_a_sum_of_categoricals():
    torch.manual_seed(0)
    logits, nvec = torch.randn(6, 5), [2, 3]
    actions = torch.tensor([[0, 2], [1, 0], [1, 1], [0, 0], [1, 2], [0, 1]])
    logp, ent = network.multi_categorical_log_prob_entropy(logits, actions, nvec)
    a, b = Categorical(logits=logits[:, :2]), Categorical(logits=logits[:, 2:])
    torch.testing.assert_close(logp, a.log_prob(actions[:, 0]) + b.log_prob(actions[:, 1]))
    torch.testing.assert_close(ent, a.entropy() + b.entropy())
    assert torch.equal(network.multi_categorical_mode(logits, nvec), torch.stack([a.logits.argmax(-1), b.logits.argmax(-1)], -1))


# ----------------------------------------------------------------------------------------------------------
# written once: the structure
# ----------------------------------------------------------------------------------------------------------
# What only network.py may compute (speed.py holds the tanh kernel itself and the tanh derivative of the
# hand-derived backward, and counts the stretches between episode starts of its LSTM path with a cumsum of 0/1
# flags): calls by these names anywhere else in the package are a second copy of the network.
NETWORK_MATH = {"tanh", "log_softmax", "softmax", "cumsum", "linear", "addmm", "baddbmm", "logsumexp", "multinomial",
                "gaussian_log_prob"}
OWNERS = {"network.py": NETWORK_MATH, "speed.py": {"tanh", "cumsum"}}


def test_no_module_but_network_computes_the_network():
    offenders = []
    for path in sorted(PKG.glob("*.py")):
        allowed = OWNERS.get(path.name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                base = name.rstrip("_") if name else None
                if base in NETWORK_MATH - allowed and not (isinstance(f, ast.Attribute) and _is_network(f.value)):
                    offenders.append(f"{path.name}:{node.lineno} {name}(...)")
            if isinstance(node, ast.Name) and node.id in ("HALF_LOG_2PI", "_HALF_LOG_2PI") and path.name != "network.py":
                offenders.append(f"{path.name}:{node.lineno} {node.id}")
    assert not offenders, "the network's maths outside ppo2/network.py: " + ", ".join(offenders)


def _is_network(node) -> bool:
    return isinstance(node, ast.Name) and node.id == "network"


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_every_path_runs_the_one_definition(monkeypatch, kind):
    """The module forward, predict's numpy path, the collector's numpy step and the fused update each call
    network.mlp and the distribution's network function; with those replaced by a counting wrapper, every path
    reports in."""
    import gymnasium as gym

    space = 3 if kind == "discrete" else gym.spaces.Box(-1, 1, (2,), np.float32)
    model = PPO2(4, 8, space, normalize_obs=True)
    calls = {"mlp": 0, "dist": 0}
    dist_fn = "categorical_log_prob_entropy" if kind == "discrete" else "gaussian_log_prob"

    def counted(name, key):
        inner = getattr(network, name)

        def wrapper(*a, **k):
            calls[key] += 1
            return inner(*a, **k)
        monkeypatch.setattr(network, name, wrapper)

    counted("mlp", "mlp")
    counted(dist_fn, "dist")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def check(path, run, dist=True):
        before = dict(calls)
        run()
        assert calls["mlp"] > before["mlp"], f"{path} does not run network.mlp"
        if dist:
            assert calls["dist"] > before["dist"], f"{path} does not run network.{dist_fn}"

    check("forward", lambda: model(torch.from_numpy(obs)))
    check("predict (numpy)", lambda: model.predict(obs), dist=False)
    check("collector step (numpy)", lambda: numpy_policy(model).sample(obs), dist=False)
    fused = FusedPPO(model, torch.optim.Adam(model.parameters()))
    x, actions = torch.from_numpy(obs), model(torch.from_numpy(obs))[1].detach()
    z = torch.zeros(5)
    check("fused update", lambda: fused.loss_and_grad(x, fused.one_hot(actions), z, z, z, z, 0.2, 0.0, 0.5, True))


def test_every_masking_and_memory_path_runs_the_one_definition(monkeypatch, tmp_path):
    """Masks: the module forward, the numpy policy step, the fused update's head and the exported graph all call
    network.mask_logits. Memory: the numpy step and the exported graph call network.lstm_cell (training runs torch's
    kernel of the same cell, ppo2/speed.py, tested equal to it in tests/test_recurrent.py)."""
    from ppo2.export import export_program

    calls = {"mask_logits": 0, "lstm_cell": 0}
    for name in calls:
        inner = getattr(network, name)

        def wrapper(*a, _inner=inner, _name=name, **k):
            calls[_name] += 1
            return _inner(*a, **k)
        monkeypatch.setattr(network, name, wrapper)

    def check(path, run, key):
        before = calls[key]
        run()
        assert calls[key] > before, f"{path} does not run network.{key}"

    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    mask = np.ones((5, 3), bool)
    model = PPO2(4, 8, 3, action_mask=True)
    check("forward", lambda: model(torch.from_numpy(obs), action_masks=mask), "mask_logits")
    check("numpy step", lambda: numpy_policy(model).sample(obs, None, mask), "mask_logits")
    fused = FusedPPO(model, torch.optim.Adam(model.parameters()))
    x, z = torch.from_numpy(obs), torch.zeros(5)
    actions = model(x, action_masks=mask)[1].detach()
    head_inputs = fused._head_inputs(fused.one_hot(actions), z, z, z, z, torch.from_numpy(mask))
    check("fused update", lambda: fused._step_gradient(x, head_inputs, 0.2, 0.0, 0.5, True), "mask_logits")
    check("export", lambda: export_program(model), "mask_logits")
    recurrent = PPO2(4, 8, 3, recurrent=True, lstm_hidden=6)
    state = recurrent.memory.zero_state(5)
    check("numpy step", lambda: numpy_policy(recurrent).sample(obs, None, None, (state, np.ones(5, bool))), "lstm_cell")
    check("export", lambda: export_program(recurrent), "lstm_cell")
