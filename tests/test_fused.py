"""ppo2.fused (hand-derived gradients) against the autograd reference: losses, every gradient, whole updates
with Adam, the collector's policy step, the sampler, fallbacks and the NaN guard."""
import copy
import itertools
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo2 import PPO2, ppo_loss
from ppo2.config import TrainConfig
from ppo2.fused import STAT_SCALE, FusedPPO
from ppo2.speed import tanh_
from ppo2.trainer import Batch, NonFiniteLossError, Trainer, ppo_update

BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
CASES = list(itertools.product([True, False], ["discrete", "box"], [False, True], [0.0, 0.01]))
# the same checks on a GPU where there is one (CI has none; the lent GPU host runs them)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the loss head's per-sample arithmetic runs in numpy on the CPU and in torch elsewhere; "torch" checks the
# torch arrays on the CPU too, so CI covers what a GPU runs
HEAD_ARRAYS = ["default", "torch"]


def _fused(model, optimizer, head_arrays="default"):
    fused = FusedPPO(model, optimizer)
    if head_arrays == "torch":
        fused.xp = torch
    return fused


def _model(shared, kind, seed=0, device="cpu", **kw):
    torch.manual_seed(seed)
    model = PPO2(5, 16, 3 if kind == "discrete" else BOX, shared_latent=shared, **kw)
    with torch.no_grad():  # move away from the tiny-head init so every term has a sizeable gradient
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.to(device)


def _batch(model, n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    device = model.value_head.weight.device
    obs = torch.randn(n, 5, generator=g).to(device)
    with torch.no_grad():
        values, actions, nlp, _ = model(obs)
    noise = [torch.randn(n, generator=g).to(device) for _ in range(4)]
    # old log-probs and values away from the current ones, so both clips are active on some samples
    return Batch(obs, actions, nlp + 0.3 * noise[0], values + 0.5 * noise[1], noise[2], noise[3])


def _act(model, actions):
    if model.action_spec["type"] == "Discrete":
        return torch.nn.functional.one_hot(actions, model.action_spec["n"]).float()
    return actions


@pytest.mark.parametrize("head_arrays", HEAD_ARRAYS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared,kind,clip_value,ent_coef", CASES)
def test_loss_terms_and_every_gradient_match_autograd(shared, kind, clip_value, ent_coef, device, head_arrays):
    model = _model(shared, kind, device=device)
    b = _batch(model)
    fused = _fused(model, torch.optim.Adam(model.parameters(), fused=True), head_arrays)

    values, nlp, entropy = model.value_and_evaluate(b.obs, b.actions)
    ref = ppo_loss(b.returns, values, nlp, entropy, b.advantages, b.values, b.neg_log_probs, 0.2, ent_coef, 0.5,
                   clip_value=clip_value)
    ref.loss.backward()
    assert 0.1 < ref.clip_fraction.item() < 0.9  # the data exercises both branches of the policy clip

    stats = fused.loss_and_grad(b.obs, _act(model, b.actions), b.neg_log_probs, b.values, b.advantages, b.returns,
                                0.2, ent_coef, 0.5, clip_value)
    got = torch.tensor([s * k for s, k in zip(stats.tolist(), STAT_SCALE)])
    want = torch.stack([ref.pg_loss, ref.value_loss, ref.entropy_mean, ref.approx_kl, ref.clip_fraction]).detach().cpu()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for param, offset, n in fused._pairs:
        torch.testing.assert_close(fused.grad[offset:offset + n].view_as(param), param.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("head_arrays", HEAD_ARRAYS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared,kind,normalize_obs", [(True, "discrete", False), (False, "box", True)])
def test_whole_update_matches_ppo_update_with_adam(shared, kind, normalize_obs, device, head_arrays):
    ref_model = _model(shared, kind, seed=2, normalize_obs=normalize_obs)
    if normalize_obs:
        ref_model.update_obs_stats(torch.randn(5), torch.rand(5) + 0.5, 100.0)
    ref_model.to(device)
    model = copy.deepcopy(ref_model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=3e-3, eps=1e-5, fused=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-5, fused=True)
    fused = _fused(model, opt, head_arrays)
    kw = dict(update_epochs=3, num_minibatches=2, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
              norm_adv=True, clip_value_loss=True)
    for update in range(2):  # the second update starts from the Adam state the first one left in the optimizer
        b = _batch(ref_model, seed=10 + update)
        torch.manual_seed(update)
        ref_stats = ppo_update(ref_model, ref_opt, b, algo="ppo", **kw)
        torch.manual_seed(update)  # the same minibatch permutations
        stats = fused.update(b, **kw)
        assert stats.keys() == ref_stats.keys()
        for key in ref_stats:
            assert stats[key] == pytest.approx(ref_stats[key], rel=1e-4, abs=1e-6), key
        for (name, p), q in zip(ref_model.named_parameters(), model.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=2e-6, msg=name)
            sr, s = ref_opt.state[p], opt.state[q]
            assert float(s["step"]) == float(sr["step"]) == 6 * (update + 1)
            torch.testing.assert_close(s["exp_avg"], sr["exp_avg"], rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(s["exp_avg_sq"], sr["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    assert not torch.equal(ref_model.value_head.weight.cpu(), _model(shared, kind, seed=2).value_head.weight)


def test_target_kl_stops_after_the_same_epoch():
    ref_model = _model(False, "discrete", seed=3)
    model = copy.deepcopy(ref_model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=3e-2, fused=True)
    fused = FusedPPO(model, torch.optim.Adam(model.parameters(), lr=3e-2, fused=True))
    b = _batch(ref_model, seed=4)
    with torch.no_grad():  # start on-policy: approx_kl grows from 0 as the epochs move the policy
        nlp = ref_model.value_and_evaluate(b.obs, b.actions)[1]
        b = Batch(b.obs, b.actions, nlp, b.values, b.advantages, b.returns)
    kw = dict(update_epochs=10, num_minibatches=1, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
              norm_adv=True, target_kl=0.02)
    ref_epochs = ppo_update(ref_model, ref_opt, b, algo="ppo", **kw)["epochs"]
    assert 1 < ref_epochs < 10
    assert fused.update(b, **kw)["epochs"] == ref_epochs


@pytest.mark.parametrize("head_arrays", HEAD_ARRAYS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_sampling_and_rollout_evaluation_are_the_models(kind, device, head_arrays):
    model = _model(False, kind, normalize_obs=True)
    model.update_obs_stats(torch.randn(5), torch.rand(5) + 0.5, 100.0)
    model.to(device)
    fused = _fused(model, torch.optim.Adam(model.parameters(), fused=True), head_arrays)
    obs = torch.randn(16, 5, device=device)
    torch.manual_seed(7)
    action = fused.sample_action(obs)
    torch.manual_seed(7)
    ref_action = model._sample(obs)
    torch.testing.assert_close(action, ref_action, rtol=1e-5, atol=1e-6)  # the same draws
    torch.manual_seed(7)
    _, fwd_action, fwd_nlp, _ = model(obs)
    if kind == "discrete":
        assert torch.equal(fwd_action, ref_action)  # forward() samples the same categorical draws

    value, nlp = fused.evaluate(obs, action)
    with torch.no_grad():
        ref_value, ref_nlp, _ = model.value_and_evaluate(obs, action)
    torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nlp, ref_nlp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.value_of(obs), ref_value, rtol=1e-5, atol=1e-6)


def test_unsupported_setups_name_their_reason_and_train_with_autograd():
    adam = lambda m: torch.optim.Adam(m.parameters())  # noqa: E731
    cases = {
        "dropout": PPO2(4, 8, 2, dropout=0.1),
        "custom": PPO2(4, action_space=2, policy_net=torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())),
        "MultiDiscrete": PPO2(4, 8, gym.spaces.MultiDiscrete([2, 3])),
        "MultiBinary": PPO2(4, 8, gym.spaces.MultiBinary(3)),
    }
    for word, model in cases.items():
        reason = FusedPPO.unsupported_reason(model, adam(model))
        assert reason is not None and word.lower() in reason.lower(), (word, reason)
        with pytest.raises(ValueError, match="does not support"):
            FusedPPO(model, adam(model))
    model = PPO2(4, 8, 2)
    assert "RMSprop" in FusedPPO.unsupported_reason(model, torch.optim.RMSprop(model.parameters()))
    assert "a2c" in FusedPPO.unsupported_reason(model, adam(model), algo="a2c")
    assert FusedPPO.unsupported_reason(model, adam(model)) is None

    small = dict(total_timesteps=64, num_envs=2, num_steps=32, eval_interval=0, tensorboard=False, progress=False,
                 checkpoint_interval=0)
    assert Trainer(TrainConfig.for_env("CartPole-v1", **small)).update_path == "fused"
    assert Trainer(TrainConfig.for_env("CartPole-v1", fused=False, **small)).update_path == "autograd (--no-fused)"
    assert Trainer(TrainConfig.for_env("CartPole-v1", "a2c", **small)).update_path.startswith("autograd (algo 'a2c'")


@pytest.mark.parametrize("env_id,extra", [
    ("CartPole-v1", {}),
    ("Acrobot-v1", dict(num_minibatches=8)),  # its preset: separate towers, observation normalisation
    ("Pendulum-v1", dict(num_minibatches=4, update_epochs=3)),  # Gaussian policy, normalisation
])
def test_fused_and_autograd_trainers_agree(tmp_path, env_id, extra):
    kw = dict(dict(total_timesteps=4 * 32 * 3, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, seed=3,
                   eval_interval=0, tensorboard=False, progress=False, plot=False, checkpoint_interval=0), **extra)
    runs = {}
    for fused in (True, False):
        trainer = Trainer(TrainConfig.for_env(env_id, fused=fused, output_dir=str(tmp_path / str(fused)), **kw))
        runs[fused] = trainer.learn()
        trainer.close()
        assert trainer.update_path.startswith("fused" if fused else "autograd")
    for (name, p), q in zip(runs[False].named_parameters(), runs[True].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5, msg=name)
    for name, b in runs[False].named_buffers():  # the same rollouts, so the same observation statistics
        torch.testing.assert_close(dict(runs[True].named_buffers())[name], b, msg=name)


def test_nonfinite_loss_raises_and_keeps_the_last_good_parameters():
    ref_model = _model(False, "discrete")
    model = copy.deepcopy(ref_model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), fused=True)
    opt = torch.optim.Adam(model.parameters(), fused=True)
    fused = FusedPPO(model, opt)
    kw = dict(update_epochs=2, num_minibatches=2, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
              norm_adv=True)
    good = _batch(model)
    fused.update(good, **kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adam_before = [opt.state[p]["exp_avg"].clone() for p in model.parameters()]

    def with_nan_returns(rows):
        return Batch(good.obs, good.actions, good.neg_log_probs, good.values, good.advantages,
                     good.returns.clone().index_fill_(0, torch.tensor(rows), float("nan")))

    # a NaN in every minibatch: the very first step is refused, nothing changes
    with pytest.raises(NonFiniteLossError, match="not applied"):
        fused.update(with_nan_returns(list(range(64))), **kw)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p, m in zip(model.parameters(), adam_before):
        assert torch.equal(opt.state[p]["exp_avg"], m)

    # one NaN sample: the steps before its minibatch stand, exactly as in the autograd update
    ref_model.load_state_dict(model.state_dict())
    ref_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # (load_state_dict would share the tensors)
    for update in (lambda b: ppo_update(ref_model, ref_opt, b, algo="ppo", **kw), lambda b: fused.update(b, **kw)):
        torch.manual_seed(5)
        with pytest.raises(NonFiniteLossError):
            update(with_nan_returns([3]))
    for (name, p), q in zip(ref_model.named_parameters(), model.parameters()):
        assert bool(torch.isfinite(q).all()), name
        torch.testing.assert_close(q, p, rtol=1e-4, atol=2e-6, msg=name)


def test_fused_gradient_is_as_accurate_as_autograds_against_float64():
    # the shipped Acrobot policy on observations it meets: the float32 fused gradient (its own backward
    # pass, another summation order) must be as close to a float64 autograd gradient as float32 autograd is,
    # with no component along the true gradient (a bias would shrink or grow every step)
    model = PPO2.from_pretrained(Path(__file__).resolve().parent.parent / "weights" / "Acrobot-v1")
    torch.manual_seed(0)
    envs = gym.make_vec("Acrobot-v1", 16)
    obs, _ = envs.reset(seed=0)
    rows = []
    for _ in range(64):
        rows.append(obs.copy())
        obs, *_ = envs.step(model.predict(obs, deterministic=False)[0])
    envs.close()
    x = torch.tensor(np.concatenate(rows), dtype=torch.float32)
    with torch.no_grad():
        values, actions, nlp, _ = model(x)
    n = x.shape[0]
    old_nlp, adv, ret = nlp + 0.05 * torch.randn(n), torch.randn(n), values + torch.randn(n)

    def autograd_gradient(dtype):
        m = copy.deepcopy(model).to(dtype)
        v, nl, ent = m.value_and_evaluate(x.to(dtype), actions)
        ppo_loss(ret.to(dtype), v, nl, ent, adv.to(dtype), values.to(dtype), old_nlp.to(dtype), 0.2, 0.0, 0.5,
                 clip_value=False).loss.backward()
        return torch.cat([p.grad.reshape(-1).double() for p in m.parameters()])

    truth, reference = autograd_gradient(torch.float64), autograd_gradient(torch.float32)
    m32 = copy.deepcopy(model)
    fused = FusedPPO(m32, torch.optim.Adam(m32.parameters()))
    fused.loss_and_grad(m32.normalize(x), fused.one_hot(actions), old_nlp, values, adv, ret, 0.2, 0.0, 0.5, False)
    where = {id(p): (offset, k) for p, offset, k in fused._pairs}
    got = torch.cat([fused.grad[where[id(p)][0]:sum(where[id(p)])].double() for p in m32.parameters()])
    err, ref_err = (got - truth).norm() / truth.norm(), (reference - truth).norm() / truth.norm()
    assert err < max(2 * ref_err, 1e-5), (err, ref_err)
    assert abs(float((got - truth) @ truth / truth.norm() ** 2)) < 1e-4


@pytest.mark.parametrize("numpy_simd", [True, False])
def test_cpu_tanh_formulas_are_accurate_and_other_tensors_take_torchs(monkeypatch, numpy_simd):
    """tanh_ takes numpy's tanh where numpy vectorises it (within 2 ulp), else 2*sigmoid(2x)-1 on batches of
    >= 4096 elements (within 2.5e-7 absolute); both against float64 tanh, whichever this host would pick."""
    from ppo2 import speed

    monkeypatch.setattr(speed, "NUMPY_SIMD_TANH", numpy_simd)
    z = torch.linspace(-12, 12, 2 * 256 * 64).view(2, 256, 64)[:, torch.randperm(256)].contiguous()
    exact = torch.tanh(z.double())
    got = tanh_(z.clone())
    err = (got.double() - exact).abs()
    assert float(err.max()) > 0  # float32, rounded: not a silent float64 pass-through

    def max_ulp_error(got, exact):  # in units of the float32 spacing at each result
        ulp = (torch.nextafter(got.abs(), torch.tensor(float("inf"))) - got.abs()).double()
        return float(((got.double() - exact).abs() / ulp).max())

    if numpy_simd:
        assert max_ulp_error(got, exact) <= 2.0
        assert speed.tanh_formula(z.numel()) == "numpy tanh"
    else:
        assert float(err.max()) <= 2.5e-7
        assert float(got.abs().max()) <= 1.0  # saturates at +-1, never beyond
        assert speed.tanh_formula(z.numel()) == "2*sigmoid(2x)-1"
        small = z[:, :8].contiguous()  # the collector's batch: numpy's call, cheaper than three torch ops
        assert max_ulp_error(tanh_(small.clone()), torch.tanh(small.double())) <= 2.0
    # off the fast path (not contiguous, not float32): torch's kernel, in place
    for t in (z.transpose(1, 2), z.double()):
        want = torch.tanh(t)
        out = tanh_(t)
        assert out is t and torch.equal(out, want)


@pytest.mark.parametrize("shared", [True, False])
def test_adam_state_stands_in_for_torch_adam(shared):
    """The trainer keeps the fused update's Adam moments in ppo2.optim.AdamState (building torch.optim.Adam
    imports torch._dynamo): the same steps, the same state_dict, and checkpoints load into either."""
    from ppo2.optim import AdamState

    kw = dict(update_epochs=2, num_minibatches=4, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
              norm_adv=True)
    models, opts = [_model(shared, "discrete"), _model(shared, "discrete")], []
    opts = [torch.optim.Adam(models[0].parameters(), lr=3e-3, eps=1e-5, fused=True),
            AdamState(list(models[1].parameters()), lr=3e-3, eps=1e-5)]
    for model, opt in zip(models, opts):
        torch.manual_seed(5)
        FusedPPO(model, opt).update(_batch(model), **kw)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    sd_torch, sd_mine = opts[0].state_dict(), opts[1].state_dict()
    assert sd_torch["param_groups"] == sd_mine["param_groups"]
    assert list(sd_torch["state"]) == list(sd_mine["state"])
    for pid, st in sd_torch["state"].items():
        assert st.keys() == sd_mine["state"][pid].keys()
        for key, value in st.items():
            assert torch.equal(value, sd_mine["state"][pid][key]) and value.dtype == sd_mine["state"][pid][key].dtype
    # each loads the other's checkpoint, and the next update is identical again
    fresh = [_model(shared, "discrete"), _model(shared, "discrete")]
    for f, m in zip(fresh, models):
        f.load_state_dict(m.state_dict())
    loaded = [AdamState(list(fresh[0].parameters()), lr=1.0), torch.optim.Adam(fresh[1].parameters(), fused=True)]
    loaded[0].load_state_dict(sd_torch)
    loaded[1].load_state_dict(sd_mine)
    for model, opt in zip(fresh, loaded):
        torch.manual_seed(6)
        FusedPPO(model, opt).update(_batch(model, seed=2), **kw)
    for a, b in zip(fresh[0].parameters(), fresh[1].parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="one parameter group of"):
        AdamState([torch.nn.Parameter(torch.zeros(2))], lr=1.0).load_state_dict(sd_torch)


@pytest.mark.parametrize("private", [True, False])
def test_adam_state_steps_as_torch_adam_does(private, monkeypatch):
    """The autograd update steps ppo2.optim.AdamState (the trainer's Adam on every path): bit for bit
    torch.optim.Adam(fused=True)'s steps, through ppo_update's clipping, a learning rate changed between updates,
    a parameter that gets no gradient (left as it is, no moments made), and a state_dict loaded from torch's. With
    the private kernel and with its public fallback (ppo2/speed.py)."""
    from ppo2 import speed
    from ppo2.optim import AdamState
    from ppo2.update import ppo_update

    monkeypatch.setattr(speed, "USE_PRIVATE_KERNELS", private)
    kw = dict(algo="ppo", update_epochs=2, num_minibatches=4, clip_range=0.2, ent_coef=0.01, vf_coef=0.5,
              max_grad_norm=0.5, norm_adv=True)
    models = [_model(False, "discrete"), _model(False, "discrete")]
    idle = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))]  # (never in the loss)
    opts = [torch.optim.Adam([*models[0].parameters(), idle[0]], lr=3e-3, eps=1e-5, fused=True),
            AdamState([*models[1].parameters(), idle[1]], lr=3e-3, eps=1e-5)]
    initial = [p.clone() for p in models[1].parameters()]
    for lr in (3e-3, 1e-3):
        for model, opt in zip(models, opts):
            opt.param_groups[0]["lr"] = lr
            torch.manual_seed(5)
            ppo_update(model, opt, _batch(model), **kw)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    assert all(not torch.equal(a, b) for a, b in zip(initial, models[1].parameters()))  # every weight moved
    assert torch.equal(idle[1], torch.ones(3)) and idle[1] not in opts[1].state
    sd_torch, sd_mine = opts[0].state_dict(), opts[1].state_dict()
    assert list(sd_torch["state"]) == list(sd_mine["state"])
    for pid, st in sd_torch["state"].items():
        for key, value in st.items():
            assert torch.equal(value, sd_mine["state"][pid][key]), (pid, key)
    # a torch.optim.Adam checkpoint loaded into AdamState steps on exactly as torch's own optimizer does
    resumed = AdamState([*models[1].parameters(), idle[1]], lr=1.0)
    resumed.load_state_dict(sd_torch)
    for model, opt in zip(models, (opts[0], resumed)):
        torch.manual_seed(7)
        ppo_update(model, opt, _batch(model, seed=2), **kw)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("env_id,updates", [("Acrobot-v1", 3), ("Pendulum-v1", 1)])
def test_preset_updates_match_autograd_through_whole_updates(env_id, updates, tmp_path):
    """The Acrobot and Pendulum presets (observation normalisation, separate towers, many minibatches, no
    value clipping): whole updates through the trainer, fused and autograd, sample the same actions and end
    with the same weights to float rounding. That rounding then grows, as any difference does: on Pendulum
    (continuous actions feed it back through the env) the weights differ by 1e-7, 3e-5, 1e-3 after updates
    1, 2, 3. So two long runs of the same seed are two different samples, and only many seeds can compare
    the paths (benchmarks/compare.py)."""
    def run(fused):
        cfg = TrainConfig.for_env(env_id, seed=3, fused=fused, num_envs=4, total_timesteps=4 * 512 * updates,
                                  output_dir=str(tmp_path / str(fused)), tensorboard=False, plot=False, progress=False,
                                  eval_interval=0, checkpoint_interval=0)
        t = Trainer(cfg)
        actions = []
        for _ in range(updates):
            t.collect_rollout()
            actions.append(t.storage.actions.copy())
            batch, _ = t.compute_batch()
            t.update_policy(batch, cfg.clip_range)
            t._update_obs_stats()
            t.update += 1
        t.close()
        return t.model, actions

    (mf, af), (ma, aa) = run(True), run(False)
    assert mf.normalize_obs and not mf.shared_latent
    assert all(np.array_equal(x, y) for x, y in zip(af, aa))
    for (name, p), q in zip(mf.named_parameters(), ma.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("head_arrays", HEAD_ARRAYS)
def test_first_step_of_an_update_sees_the_rollouts_own_log_probs(tmp_path, head_arrays):
    """The rollout's log-probabilities (evaluate) and the first gradient step's come from the same arithmetic, so
    before any step the ratio is exactly 1: approx_kl and the clip fraction of the first step are exactly 0."""
    cfg = TrainConfig(env_id="CartPole-v1", num_envs=4, num_steps=32, total_timesteps=128, output_dir=str(tmp_path),
                      tensorboard=False, progress=False, plot=False, eval_interval=0, checkpoint_interval=0)
    trainer = Trainer(cfg.validated())
    if head_arrays == "torch":
        trainer.fused.xp = torch
    trainer.collect_rollout()
    batch, _ = trainer.compute_batch()
    f = trainer.fused
    stats = f.loss_and_grad(trainer.model.normalize(batch.obs), f.one_hot(batch.actions), batch.neg_log_probs,
                            batch.values, batch.advantages, batch.returns, 0.2, 0.0, 0.5, False)
    assert float(stats[3]) == 0.0 and float(stats[4]) == 0.0
    assert float(stats[1]) > 0.0  # (a real batch: the value loss is not 0)
