"""The image encoder's speed devices (ppo2/speed.py) compute what the float32 reference computes."""
import numpy as np
import pytest
import torch
from gymnasium import spaces

import ppo2.speed as speed
from ppo2 import PPO2
from ppo2.speed import Precision, native_bfloat16, resolve_precision
from conftest import act

FRAMES = spaces.Box(0, 255, (4, 84, 84), np.uint8)


def _real_frames(n_steps: int = 40) -> np.ndarray:
    """Stacked Pong frames from ale-py's vector env, as training sees them."""
    pytest.importorskip("ale_py")
    from ppo2.envs import make_vector_env

    envs = make_vector_env("ALE/Pong-v5", 4)
    try:
        obs, _ = envs.reset(seed=0)
        frames = [obs]
        rng = np.random.default_rng(0)
        for _ in range(n_steps):
            obs, *_ = envs.step(rng.integers(0, 6, 4))
            frames.append(obs)
    finally:
        envs.close()
    return np.concatenate(frames[-8:])  # 32 frames late in the rally: paddles and ball on screen


@pytest.fixture
def bfloat16_anywhere(monkeypatch):
    """The bfloat16 path on any CPU: where the CPU has no native bfloat16 (an AVX2-only host), torch emulates it, with
    the same rounding and slowly; users are refused it there (resolve_precision), the tests check its numbers anyway."""
    if not native_bfloat16("cpu"):
        monkeypatch.setattr(speed, "native_bfloat16", lambda device: True)


def test_resolve_precision(monkeypatch):
    assert resolve_precision("auto", "cpu", has_cnn=False) == Precision()  # vectors: never changed
    assert resolve_precision("float32", "cpu", has_cnn=True) == Precision(None, channels_last=True)
    monkeypatch.setattr(speed, "native_bfloat16", lambda device: True)
    assert resolve_precision("auto", "cpu", has_cnn=True) == Precision(torch.bfloat16, channels_last=True)
    monkeypatch.setattr(speed, "native_bfloat16", lambda device: False)
    assert resolve_precision("auto", "cpu", has_cnn=True) == Precision(None, channels_last=True)
    with pytest.raises(ValueError, match="needs native bfloat16"):
        resolve_precision("bfloat16", "cpu", has_cnn=True)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu", has_cnn=True)


def _outputs(model, obs):
    with torch.no_grad():
        x = model._check_obs(obs)[0]
        return model._policy_out(x), model._value_of(x)


def test_channels_last_frames_give_the_float32_outputs():
    torch.manual_seed(0)
    model = PPO2(observation_space=FRAMES, action_space=6)
    obs = _real_frames()
    ref_logits, ref_value = _outputs(model, obs)
    model.set_precision("float32")
    assert model.precision.channels_last
    logits, value = _outputs(model, obs)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, ref_value, rtol=1e-5, atol=1e-5)


def test_bfloat16_encoder_stays_close_to_float32_on_real_frames(bfloat16_anywhere):
    """bfloat16 keeps 8 bits of mantissa, and the encoder's dot products run over up to 3,136 terms: on these frames the
    logits and values move by ~1.8% of their spread (measured on the Intel CI host). Within 5%, and the greedy
    action the same on nearly every frame; a wrong layout or a lost scale moves them by their whole spread."""
    torch.manual_seed(0)
    model = PPO2(observation_space=FRAMES, action_space=6)
    with torch.no_grad():  # a policy with real preferences (the default init's logits are all ~0)
        model.action_head.output_layer().weight.mul_(100)
    obs = _real_frames()
    ref_logits, ref_value = _outputs(model, obs)
    model.set_precision("bfloat16")
    logits, value = _outputs(model, obs)
    assert logits.dtype == value.dtype == torch.float32
    assert not torch.equal(logits, ref_logits)  # (bfloat16 did run: its rounding shows)
    spread = float(ref_logits.std())
    assert float((logits - ref_logits).abs().max()) < 0.05 * spread
    assert float((value - ref_value).abs().max()) < 0.05 * float(ref_value.abs().max())
    assert (logits.argmax(1) == ref_logits.argmax(1)).float().mean() >= 0.9


def test_weights_keep_their_layout_and_gradients_reach_them():
    """Only the frames change layout: every parameter stays contiguous (fused Adam treats a parameter and its
    moments as flat memory, so a channels-last weight with moments restored from a checkpoint would be updated
    wrongly), and the bfloat16 path's gradients arrive in float32."""
    torch.manual_seed(0)
    model = PPO2(observation_space=FRAMES, action_space=6)
    model.precision = Precision(torch.bfloat16 if native_bfloat16("cpu") else None, channels_last=True)
    obs = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 4, 84, 84), dtype=np.uint8))
    value, nlp, entropy = model.value_and_evaluate(obs, torch.zeros(8, dtype=torch.long))
    (value.sum() + nlp.sum() + entropy.sum()).backward()
    for name, p in model.named_parameters():
        assert p.is_contiguous() and p.dtype == torch.float32, name
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name


def test_export_is_the_float32_reference_and_leaves_the_model_as_it_was(tmp_path):
    from ppo2.export import export_program

    torch.manual_seed(0)
    model = PPO2(observation_space=FRAMES, action_space=6).set_precision("float32")
    before = model.precision
    program = export_program(model).module()
    obs = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8))
    model.precision = Precision()
    assert torch.equal(program(obs), act(model, obs))
    assert before == Precision(None, channels_last=True)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_preprocessing_the_rollout_once_gives_the_same_update(precision, bfloat16_anywhere):
    """The update on minibatches sliced from one preprocessed rollout (ppo2.speed.preprocess_once) is the update on
    minibatches preprocessed one by one: the same parameters, bit for bit."""
    import copy
    import dataclasses

    from ppo2.observations import Preprocessed
    from ppo2.speed import preprocess_once
    from ppo2.update import Batch, ppo_update

    torch.manual_seed(0)
    model = PPO2(observation_space=spaces.Box(0, 255, (36, 36, 2), np.uint8), action_space=3)
    model.set_precision(precision, "cpu")
    g = torch.Generator().manual_seed(1)
    n = 64
    obs = torch.randint(0, 256, (n, 36, 36, 2), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 3, (n,), generator=g)
    with torch.no_grad():
        values, nlp, _ = model.value_and_evaluate(obs, actions)
    batch = Batch(obs, actions, nlp, values, torch.randn(n, generator=g), values + 1)
    results = []
    for cached in (False, True):
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-5, fused=True)
        b = dataclasses.replace(batch, obs=preprocess_once(m, batch.obs)) if cached else batch
        assert isinstance(b.obs, Preprocessed) == cached
        torch.manual_seed(5)
        ppo_update(m, opt, b, algo="ppo", update_epochs=2, num_minibatches=4, clip_range=0.2, ent_coef=0.01,
                   vf_coef=0.5, max_grad_norm=0.5, norm_adv=True)
        results.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(results[0], results[1])


def test_private_kernels_and_their_public_fallbacks_agree(monkeypatch):
    """ppo2/speed.py's private torch kernels (aten's tanh_backward, torch._fused_adam_, torch._foreach_copy_) and
    the public fallbacks they stand behind give the same fused update: parameters, Adam moments and step count."""
    import copy

    from ppo2 import speed
    from ppo2.fused import FusedPPO
    from ppo2.optim import AdamState
    from ppo2.update import Batch

    torch.manual_seed(0)
    base = PPO2(5, 16, 3, shared_latent=False)
    obs = torch.randn(64, 5)
    with torch.no_grad():
        values, actions, nlp, _ = base(obs)
    batch = Batch(obs, actions, nlp + 0.1 * torch.randn(64), values, torch.randn(64), torch.randn(64))
    kw = dict(update_epochs=3, num_minibatches=2, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
              norm_adv=True)
    results = {}
    for private in (True, False):
        monkeypatch.setattr(speed, "USE_PRIVATE_KERNELS", private)
        model = copy.deepcopy(base)
        opt = AdamState(list(model.parameters()), lr=3e-3)
        torch.manual_seed(1)
        for _ in range(2):
            FusedPPO(model, opt).update(batch, **kw)
        results[private] = (model.state_dict(), opt.state_dict())
    (p_on, o_on), (p_off, o_off) = results[True], results[False]
    assert any(not torch.equal(p_on[k], base.state_dict()[k]) for k in p_on)  # the update moved the weights
    for k in p_on:
        torch.testing.assert_close(p_on[k], p_off[k], rtol=1e-6, atol=1e-7, msg=k)
    for i, s in o_on["state"].items():
        assert float(s["step"]) == float(o_off["state"][i]["step"]) == 12.0
        # (aten's tanh_backward and g * (1 - h * h) round differently where the CPU fuses the multiply-add, AMD EPYC
        # measured: the twelve steps' gradients then differ in the last bits, up to ~3e-6 relative in the moments)
        torch.testing.assert_close(s["exp_avg"], o_off["state"][i]["exp_avg"], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(s["exp_avg_sq"], o_off["state"][i]["exp_avg_sq"], rtol=1e-5, atol=1e-11)
    g, h = torch.randn(2, 7, 3), torch.rand(2, 7, 3) * 2 - 1
    monkeypatch.setattr(speed, "USE_PRIVATE_KERNELS", True)
    on = speed.tanh_backward_(g.clone(), h)
    monkeypatch.setattr(speed, "USE_PRIVATE_KERNELS", False)
    torch.testing.assert_close(on, speed.tanh_backward_(g.clone(), h))
    torch.testing.assert_close(on, g * (1 - h * h))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_trainer_runs_numpys_blas_on_its_thread_count(tmp_path, threads):
    """The collector's numpy policy steps call numpy's BLAS; the trainer gives it `torch_threads` threads, as it
    gives torch (ppo2/speed.py: limit_blas_threads)."""
    import os

    from threadpoolctl import threadpool_info, threadpool_limits

    from ppo2.config import TrainConfig

    if threads > (os.cpu_count() or 1):
        pytest.skip(f"{os.cpu_count()} core(s): numpy's BLAS cannot run {threads} threads here")
    from ppo2.trainer import Trainer

    with threadpool_limits(limits=None):  # (whatever the process had is restored afterwards)
        cfg = TrainConfig.for_env("CartPole-v1", torch_threads=threads, num_envs=2, output_dir=str(tmp_path / "r"),
                                  progress=False, tensorboard=False, plot=False)
        trainer = Trainer(cfg)
        try:
            blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
            assert blas and all(n == threads for n in blas), blas
            assert torch.get_num_threads() == threads
        finally:
            trainer.close()
            torch.set_num_threads(1)
