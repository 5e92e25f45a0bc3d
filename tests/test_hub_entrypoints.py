"""eval_fn / train_fn (the seed's helpers) and the pretrained keyword, through torch.hub.load(source='local')."""
import numpy as np
import pytest
import torch

from conftest import hub_load
from ppo2.zoo import load_pretrained


def _batch(model, n=64, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    act = hub_load("eval_fn", model)
    value_f, action, neg_log_prob = act(obs)
    returns = value_f + torch.from_numpy(rng.normal(size=n).astype(np.float32))
    return obs, returns, action, value_f, neg_log_prob


def test_eval_fn_outputs_have_no_grad_and_model_is_in_eval_mode():
    model = hub_load("ppo2", input_dim=4, hidden_dim=16, action_space=2, dropout=0.5)
    model.train()
    obs, _, action, value_f, nlp = _batch(model)
    assert not model.training
    for t in (action, value_f, nlp):
        assert isinstance(t, torch.Tensor) and not t.requires_grad
    assert value_f.shape == action.shape == nlp.shape == (64,)


def test_train_fn_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = hub_load("ppo2", input_dim=4, hidden_dim=32, action_space=2, dropout=0)
    obs, returns, actions, values, nlps = _batch(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = hub_load("train_fn", model, opt, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
    history = [step(obs, returns, actions, values, nlps) for _ in range(30)]
    assert all(len(h) == 5 and all(isinstance(x, float) for x in h) for h in history)
    first, last = history[0], history[-1]
    assert first[4] == pytest.approx(0.0, abs=1e-9)  # approx_kl is 0 before the first step
    assert last[0] < first[0] - 0.05, (first, last)  # total loss goes down
    assert last[2] < first[2]  # value loss goes down
    assert model.training


def test_train_fn_needs_two_samples_for_normalised_advantages():
    model = hub_load("ppo2", input_dim=4, action_space=2)
    step = hub_load("train_fn", model, torch.optim.SGD(model.parameters(), lr=0.1))
    obs, returns, actions, values, nlps = _batch(model, n=1)
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        step(obs, returns, actions, values, nlps)


def test_train_fn_rejects_mismatched_lengths():
    model = hub_load("ppo2", input_dim=4, action_space=2)
    step = hub_load("train_fn", model, torch.optim.SGD(model.parameters(), lr=0.1))
    obs, returns, actions, values, nlps = _batch(model, n=8)
    with pytest.raises(ValueError, match=r"old_values must have shape \(8,\) like returns, got \(7,\)"):
        step(obs, returns, actions, values[:7], nlps)


def test_fresh_model_needs_input_dim():
    with pytest.raises(TypeError, match="needs input_dim"):
        hub_load("ppo2")


def test_pretrained_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pretrained weights index"):
        load_pretrained(True, weights_dir=tmp_path)
