"""Recurrent policies (ppo2/memory.py): the LSTM's maths against torch's, the state at episode boundaries inside a
rollout and across rollouts, the sequence update against step-by-step evaluation, predict's stable-baselines3
contract, export parity over whole episodes, resume, every observation kind and action space, and learning a task
that needs memory."""
import gymnasium as gym
import numpy as np
import pytest
import torch

import toy_envs  # noqa: F401  (registers ppo2test/*)
from ppo2 import PPO2, network
from ppo2.config import TrainConfig
from ppo2.memory import LSTMMemory
from ppo2.speed import lstm_sequences
from ppo2.trainer import Trainer, train

QUIET = dict(progress=False, tensorboard=False, plot=False)


@pytest.mark.parametrize("arr", [np.asarray, torch.as_tensor])
def test_lstm_cell_is_torchs(arr):
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(3, 5)
    x, h, c = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 5)
    with torch.no_grad():
        ref_h, ref_c = cell(x, (h, c))
        gx = x @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh
        out_h, out_c = network.lstm_cell(arr(gx.numpy()), arr(h.numpy()), arr(c.numpy()), arr(cell.weight_hh.T.numpy()))
    np.testing.assert_allclose(np.asarray(out_h), ref_h.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out_c), ref_c.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(network.sigmoid(arr(np.array([-30.0, 0.0, 2.0], np.float32)))),
                               torch.sigmoid(torch.tensor([-30.0, 0.0, 2.0])).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", ["no starts", "starts inside", "start at 0 only", "every step", "large values"])
def test_torch_kernel_path_equals_the_reference_sequence(case):
    """ppo2/speed.py's lstm_sequences (torch's kernel, a reset step before each episode start) =
    network.lstm_sequence (the definition): outputs, gradients, and the final state where it returns one; and the
    reference itself = a cell loop with the state zeroed at each start. "large values": weights, inputs and state
    far beyond a trained policy's, where a reset that only nearly zeroed the state would show."""
    torch.manual_seed(1)
    T, n, F, H = 12, 5, 3, 6
    lstm = torch.nn.LSTM(F, H)
    scale = 1.0
    if case == "large values":
        scale = 100.0
        with torch.no_grad():
            for p in lstm.parameters():
                p.mul_(100.0)
    starts = {"no starts": torch.zeros(T, n), "starts inside": (torch.rand(T, n) < 0.2).float(),
              "start at 0 only": torch.zeros(T, n).index_fill_(0, torch.tensor([0]), 1.0),
              "every step": torch.ones(T, n), "large values": (torch.rand(T, n) < 0.3).float()}[case]
    x = (scale * torch.randn(T, n, F)).requires_grad_()
    h, c = torch.randn(n, H), scale * torch.randn(n, H)
    weights = (lstm.weight_ih_l0.T, lstm.weight_hh_l0.T, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    ref, ref_h, ref_c = network.lstm_sequence(x, h, c, starts, *weights)
    # the reference by hand: one cell at a time, zeroing where an episode starts
    cell = torch.nn.LSTMCell(F, H)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm.state_dict().items()})
    hh, cc, outs = h, c, []
    for t in range(T):
        keep = (1 - starts[t])[:, None]
        hh, cc = cell(x[t], (hh * keep, cc * keep))
        outs.append(hh)
    torch.testing.assert_close(ref, torch.stack(outs), atol=1e-6, rtol=1e-5)
    (fast,), fast_h, fast_c = lstm_sequences([LSTMMemory.parameters_of(lstm)], x, h[None], c[None], starts)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    g_ref = torch.autograd.grad((ref ** 2).sum(), [x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_hh_l0])
    g_fast = torch.autograd.grad((fast ** 2).sum(), [x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_hh_l0])
    for a, b in zip(g_ref, g_fast):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    if case in ("no starts", "start at 0 only"):
        torch.testing.assert_close(fast_h[0], ref_h, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fast_c[0], ref_c, atol=1e-6, rtol=1e-5)
    else:
        assert fast_h is None and fast_c is None


def _recorded_trainer(tmp_path, env_id="ppo2test/Count-v0", num_steps=7, **kw):
    options = dict(recurrent=True, lstm_hidden=8, hidden_dim=16, num_envs=3, num_steps=num_steps, num_minibatches=1,
                   update_epochs=1, total_timesteps=10_000, output_dir=str(tmp_path / "r"), **QUIET)
    cfg = TrainConfig.for_env(env_id, **{**options, **kw})
    trainer = Trainer(cfg)
    seen = []
    step = trainer.policy_step

    def recording():
        inner = step()

        def call(obs, mask, memory):
            seen.append((np.array(obs), tuple(np.array(s) for s in memory[0]), np.array(memory[1])))
            return inner(obs, mask, memory)
        return call
    trainer.policy_step = recording
    return trainer, seen


def test_state_resets_at_episode_starts_inside_a_rollout_and_carries_across_rollouts(tmp_path):
    """Count-v0 episodes are 3 steps (obs 0, 1, 2, then the terminal 3 on the autoreset row): a rollout of 7 steps
    holds episode starts inside it and episodes that run on into the next rollout."""
    trainer, seen = _recorded_trainer(tmp_path)
    try:
        s = trainer.storage
        for rollout in range(3):
            before = tuple(a.copy() for a in trainer.collector.lstm_state)
            trainer.collect_rollout()
            # the rollout starts from the state the previous one ended with (zeros only before the first)
            np.testing.assert_array_equal(s.state0[0], before[0])
            if rollout:
                assert np.abs(s.state0[0]).sum() > 0
            obs = s.obs[:, :, 0]
            # an episode begins exactly where the observation is a reset one (Count's 0)
            np.testing.assert_array_equal(s.starts, obs == 0)
            assert s.starts[1:].any()  # starts inside the rollout
            # each step's log-probability from the batched sequence pass equals one step at a time from the state
            # the collector carried, zeroed at starts: what the actions were sampled with
            state = tuple(torch.from_numpy(a.copy()) for a in s.state0)
            for t in range(s.values.shape[0]):
                starts = torch.from_numpy(s.starts[t].astype(np.float32))[None]
                with torch.no_grad():
                    pi, vf, state = trainer.model._latents(torch.from_numpy(s.obs[t]), (state, starts))
                    logp, _ = trainer.model.action_head.log_prob_entropy(trainer.model.action_head.output(pi),
                                                                         torch.from_numpy(s.actions[t]))
                    value = trainer.model._value_out(vf)
                np.testing.assert_allclose(-logp.numpy(), s.neg_log_probs[t], rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(value.numpy(), s.values[t], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(state[0].numpy(), trainer.collector.lstm_state[0], rtol=1e-5, atol=1e-6)
        # what the policy step received at a start: the state it zeroes (its starts flag set)
        for obs, (h, _), starts in seen:
            np.testing.assert_array_equal(starts, obs[:, 0] == 0)
    finally:
        trainer.close()


def test_sequence_minibatches_train_on_whole_env_sequences(tmp_path):
    trainer, _ = _recorded_trainer(tmp_path, num_steps=6, num_minibatches=3)
    try:
        trainer.collect_rollout()
        batch, _ = trainer.compute_batch()
        T, N = trainer.storage.starts.shape
        assert len(batch) == T * N and batch.valid.shape == (T * N,)
        part = batch.sequences(torch.tensor([2, 0]))
        torch.testing.assert_close(part.starts, batch.starts[:, [2, 0]])
        torch.testing.assert_close(part.state[0], batch.state[0][:, [2, 0]])
        torch.testing.assert_close(part.obs.view(T, 2, -1), batch.obs.view(T, N, -1)[:, [2, 0]])
        stats = trainer.update_policy(batch, 0.2)
        assert np.isfinite(stats["loss"])
    finally:
        trainer.close()


def test_predict_follows_stable_baselines3s_contract():
    torch.manual_seed(0)
    model = PPO2(input_dim=2, action_space=3, recurrent=True, lstm_hidden=8)
    obs = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    action, state = model.predict(obs)  # state=None: zeros; episode_start=None: no resets
    assert action.shape == (4,) and isinstance(state, tuple) and [s.shape for s in state] == [(1, 4, 8)] * 2
    a2, state2 = model.predict(obs, state=state, episode_start=np.zeros(4, bool))
    assert not np.allclose(state2[0], state[0])  # the memory moved on
    # episode_start zeroes the state: the same as starting from None
    a3, state3 = model.predict(obs, state=state2, episode_start=np.ones(4, bool))
    np.testing.assert_allclose(state3[0], state[0], rtol=1e-6)
    # one observation: a batch of one inside
    a1, s1 = model.predict(obs[0])
    assert np.shape(a1) == () and s1[0].shape == (1, 1, 8)
    with pytest.raises(ValueError, match=r"h has shape \(1, 3, 8\), expected \(1, 4, 8\)"):
        model.predict(obs, state=(np.zeros((1, 3, 8)), np.zeros((1, 3, 8))))
    with pytest.raises(ValueError, match="episode_start has 2 entries, expected 4"):
        model.predict(obs, state=state, episode_start=np.zeros(2))
    # the critic's own LSTM: two LSTMs in the state, the actor's first
    sep = PPO2(input_dim=2, action_space=3, recurrent=True, lstm_hidden=8, shared_lstm=False, shared_latent=False)
    assert sep.predict(obs)[1][0].shape == (2, 4, 8)
    with pytest.raises(ValueError, match="shared_latent=False"):
        PPO2(input_dim=2, action_space=3, recurrent=True, shared_lstm=False)


@pytest.mark.parametrize("shared_lstm", [True, False])
def test_export_parity_over_whole_episodes(tmp_path, shared_lstm):
    ort = pytest.importorskip("onnxruntime")
    from ppo2.export import export_onnx, export_program

    torch.manual_seed(2)
    model = PPO2(observation_space=gym.make("CartPoleNoVel-v1").observation_space, action_space=2, recurrent=True,
                 lstm_hidden=16, shared_lstm=shared_lstm, shared_latent=shared_lstm, normalize_obs=True)
    model.update_obs_stats(torch.tensor([0.1, -0.02]), torch.tensor([0.5, 0.01]), 100)
    sess = ort.InferenceSession(str(export_onnx(model, tmp_path / "p.onnx")))
    assert [i.name for i in sess.get_inputs()] == ["obs", "state_h", "state_c", "episode_start"]
    assert [o.name for o in sess.get_outputs()] == ["action", "next_state_h", "next_state_c"]
    program = export_program(model).module()
    envs = gym.make_vec("CartPoleNoVel-v1", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=0)
    L = 1 if shared_lstm else 2
    state, onnx_state, prog_state = None, [np.zeros((L, 3, 16), np.float32)] * 2, [torch.zeros(L, 3, 16)] * 2
    starts, steps = np.ones(3, bool), 0
    with torch.no_grad():
        while steps < 300:
            action, state = model.predict(obs, state=state, episode_start=starts)
            a_onnx, *onnx_state = sess.run(None, {"obs": obs, "state_h": onnx_state[0], "state_c": onnx_state[1],
                                                  "episode_start": starts.astype(np.float32)})
            a_prog, *prog_state = program(torch.from_numpy(obs), state_h=prog_state[0], state_c=prog_state[1],
                                          episode_start=torch.from_numpy(starts.astype(np.float32)))
            np.testing.assert_array_equal(a_onnx, action)
            np.testing.assert_array_equal(a_prog.numpy(), action)
            np.testing.assert_allclose(onnx_state[0], state[0], atol=1e-5)
            np.testing.assert_allclose(prog_state[1].numpy(), state[1], atol=1e-5)
            obs, _, term, trunc, _ = envs.step(action)
            starts = term | trunc  # (sync vector envs reset on the next step: close enough for parity)
            steps += 1
    envs.close()


def test_resume_continues_bit_exactly(tmp_path):
    # (no annealing: the half run's schedule would end at its own, shorter, total)
    common = dict(recurrent=True, lstm_hidden=16, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2,
                  anneal_lr=False, anneal_clip_range=False, eval_interval=0, checkpoint_interval=2,
                  stop_at_target=False, **QUIET)
    whole = train(env_id="CartPoleNoVel-v1", total_timesteps=4 * 128, output_dir=str(tmp_path / "whole"), **common)
    train(env_id="CartPoleNoVel-v1", total_timesteps=2 * 128, output_dir=str(tmp_path / "half"), **common)
    cfg = TrainConfig.for_env("CartPoleNoVel-v1", total_timesteps=4 * 128, output_dir=str(tmp_path / "half"), **common)
    trainer = Trainer(cfg.replace(resume=str(tmp_path / "half")))
    try:
        assert trainer.collector.lstm_state[0].any()  # the memory of the episodes in flight came back
        resumed = trainer.learn()
    finally:
        trainer.close()
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("env_id", ["ppo2test/PixelMasked-v0", "PendulumNoVel-v1", "ppo2test/MaskedChoice-v0",
                                    "ppo2test/MaskedMultiDiscrete-v0", "ppo2test/MaskedMultiBinary-v0"])
def test_every_observation_kind_and_action_space_trains_with_memory(tmp_path, env_id):
    """Dicts of an image (the CNN, then the LSTM), a vector and a mask; vectors; Dicts with masks; Discrete, Box, MultiDiscrete, MultiBinary: two
    updates, then a saved policy that loads and predicts with its state (masked envs raise on an illegal action)."""
    model = train(env_id=env_id, recurrent=True, lstm_hidden=16, num_envs=4, num_steps=16, num_minibatches=2,
                  bptt_steps=None, update_epochs=2, total_timesteps=128, eval_interval=0, eval_episodes=2, confirm_episodes=0,
                  output_dir=str(tmp_path / "run"), **QUIET)
    loaded = PPO2.from_pretrained(str(tmp_path / "run"))
    assert loaded.recurrent and loaded.get_config() == model.get_config()
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    batch = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else obs[None]
    method = model.mask_config is not None and model.mask_config.source == "method"
    masks = env.unwrapped.action_masks()[None] if method else None
    a1, s1 = model.predict(batch, episode_start=np.ones(1, bool), action_masks=masks)
    a2, s2 = loaded.predict(batch, episode_start=np.ones(1, bool), action_masks=masks)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(s1[0], s2[0], rtol=1e-6)


def test_memory_learns_what_a_feed_forward_policy_cannot(tmp_path):
    """Recall-v0: name the cue shown 3 steps earlier. Chance is 1/3; without memory nothing does better. A broken
    recurrence (state not carried, or reset at the wrong step) fails this. (At 12k steps 2 of 16 seeds were still
    short of 0.9 under either LSTM path; at 20k every seed tried, 1, 4, 11 and 15 among them, had solved it.)"""
    common = dict(total_timesteps=20_480, num_envs=8, num_steps=32, num_minibatches=2, update_epochs=10,
                  learning_rate=1e-3, eval_interval=48, eval_episodes=100, stop_at_target=False, seed=1, **QUIET)
    memory = train(env_id="ppo2test/Recall-v0", recurrent=True, output_dir=str(tmp_path / "lstm"), **common)
    assert memory.trainer_summary["last_eval"]["mean_reward"] >= 0.9
    plain = train(env_id="ppo2test/Recall-v0", output_dir=str(tmp_path / "mlp"), **common)
    assert plain.trainer_summary["last_eval"]["mean_reward"] <= 0.6


@pytest.mark.parametrize("bptt_steps", [8, 4, 2])
def test_shorter_sequences_start_from_the_state_the_rollout_had_there(tmp_path, bptt_steps):
    """--bptt-steps W cuts each env's rollout into sequences of W steps, each from the LSTM state the collector
    carried at its first row (episode starts inside included): the update then sees exactly the values and
    log-probabilities the rollout's own full-sequence pass computed. And the sequences, not the envs, make the
    minibatches (3 envs, 6 minibatches)."""
    cfg = TrainConfig.for_env("CartPoleNoVel-v1", num_envs=3, num_steps=16, num_minibatches=3 if bptt_steps < 8 else 2,
                              bptt_steps=bptt_steps, update_epochs=2, output_dir=str(tmp_path / "r"), **QUIET)
    trainer = Trainer(cfg)
    try:
        for _ in range(3):
            trainer.collect_rollout()
            batch, _ = trainer.compute_batch()
            assert batch.starts.shape == (bptt_steps, 3 * 16 // bptt_steps)
            with torch.no_grad():
                v, nlp, _ = trainer.model.value_and_evaluate(batch.obs, batch.actions, None, (batch.state, batch.starts))
            torch.testing.assert_close(v, batch.values, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(nlp, batch.neg_log_probs, atol=1e-5, rtol=1e-5)
            assert np.isfinite(trainer.update_policy(batch, 0.2)["loss"])
    finally:
        trainer.close()
    with pytest.raises(ValueError, match="bptt_steps must be an int that divides num_steps=16, got 5"):
        cfg.replace(bptt_steps=5)


@pytest.mark.parametrize("env_id,kw", [
    ("CartPoleNoVel-v1", dict(num_minibatches=2)),  # Categorical, episode starts and autoreset rows inside
    ("PendulumNoVel-v1", dict(num_steps=64, bptt_steps=16, num_minibatches=4)),  # Gaussian, sequences cut by bptt_steps
    ("ppo2test/MaskedChoice-v0", dict(num_minibatches=2)),  # action masks
    ("CartPoleNoVel-v1", dict(num_minibatches=1, shared_latent=True, target_kl=1e-9)),  # one tower, early stop
])
def test_fused_update_of_a_shared_lstm_matches_autograd(tmp_path, env_id, kw):
    """A recurrent policy with one shared LSTM trains through the hand-derived update (ppo2/fused.py): the LSTM's
    forward and backward on torch's kernel under autograd, the layers after it written out. Whole updates through
    the trainer, fused and autograd from the same seed: the same statistics and weights to float rounding, so the
    same actions in the next rollout (continuous ones to rounding). The critic's own LSTM keeps the autograd path."""
    def run(fused):
        options = dict(recurrent=True, lstm_hidden=16, hidden_dim=16, num_envs=4, num_steps=32, update_epochs=3,
                       seed=3, fused=fused, output_dir=str(tmp_path / str(fused)), eval_interval=0,
                       checkpoint_interval=0, total_timesteps=10_000, **QUIET)
        trainer = Trainer(TrainConfig.for_env(env_id, **{**options, **kw}))
        initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        try:
            stats = []
            for _ in range(2):
                trainer.collect_rollout()
                batch, _ = trainer.compute_batch()
                assert not bool(batch.valid.all()) or env_id == "PendulumNoVel-v1"  # (autoreset rows to leave out)
                stats.append(trainer.update_policy(batch, 0.2))
            moved = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, initial[k])]
            assert any(k.startswith("memory.") for k in moved) and any("value_head" in k for k in moved), moved
            return trainer.update_path, stats, trainer.model.state_dict(), trainer.storage.actions.copy()
        finally:
            trainer.close()

    (path_f, stats_f, weights_f, actions_f), (path_a, stats_a, weights_a, actions_a) = run(True), run(False)
    assert path_f == "fused" and path_a.startswith("autograd")
    np.testing.assert_allclose(actions_f, actions_a, rtol=1e-5, atol=1e-6)  # (discrete: equal)
    for a, b in zip(stats_f, stats_a):
        assert a["epochs"] == b["epochs"]
        for key in ("loss", "pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    for key in weights_a:
        torch.testing.assert_close(weights_f[key], weights_a[key], rtol=1e-4, atol=1e-6, msg=key)
    separate = Trainer(TrainConfig.for_env("CartPoleNoVel-v1", shared_lstm=False, num_envs=4, num_steps=32,
                                           output_dir=str(tmp_path / "separate"), **QUIET))
    try:
        assert separate.update_path == "autograd (a recurrent policy with the critic's own LSTM (fused: one LSTM " \
                                       "shared by actor and critic))"
    finally:
        separate.close()
