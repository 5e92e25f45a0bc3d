"""model.loss / ppo_loss / a2c_loss against hand-computed values."""
import math

import pytest
import torch

from ppo2 import PPO2, a2c_loss, ppo_loss

T = torch.tensor


def _args(nlp, old_nlp, adv, returns=(1.0, 0.0), values=(0.5, 0.5), old_values=(0.4, 0.8), ent=(0.6, 0.4)):
    return dict(returns=T(returns), value_f=T(values), neg_log_probs=T(nlp), entropy=T(ent), advantages=T(adv),
                old_values=T(old_values), old_neg_log_probs=T(old_nlp))


def test_both_samples_clipped():
    # ratio = exp(old - new) = [e^0.2, e^-0.3] = [1.2214, 0.7408]; both leave [0.8, 1.2]
    # A=+1: max(-1.2214, -1.2) = -1.2 ; A=-1: max(0.7408, 0.8) = 0.8  -> pg = -0.2
    # values: v-old = [0.1, -0.3] -> v_clip = [0.5, 0.6]; max sq err = [0.25, 0.36] -> 0.5*0.305 = 0.1525
    # approx_kl = 0.5*mean(0.04, 0.09) = 0.0325 ; loss = -0.2 - 0.01*0.5 + 0.5*0.1525 = -0.12875
    out = ppo_loss(**_args([0.1, 0.5], [0.3, 0.2], [1.0, -1.0]), clip_range=0.2, ent_coef=0.01, vf_coef=0.5)
    assert out.pg_loss.item() == pytest.approx(-0.2, abs=1e-6)
    assert out.value_loss.item() == pytest.approx(0.1525, abs=1e-6)
    assert out.entropy_mean.item() == pytest.approx(0.5, abs=1e-6)
    assert out.approx_kl.item() == pytest.approx(0.0325, abs=1e-6)
    assert out.loss.item() == pytest.approx(-0.12875, abs=1e-6)
    assert out.clip_fraction.item() == 1.0


def test_unclipped_inside_range():
    # ratio = [e^0.05, e^-0.05]: inside [0.8, 1.2], clipping inactive
    r1, r2 = math.exp(0.05), math.exp(-0.05)
    out = ppo_loss(**_args([0.25, 0.25], [0.3, 0.2], [1.0, -1.0], old_values=(0.45, 0.55)),
                   clip_range=0.2, ent_coef=0.0, vf_coef=0.5)
    assert out.pg_loss.item() == pytest.approx((-r1 + r2) / 2, abs=1e-6)
    # v - old = [0.05, -0.05] is inside the clip: plain 0.5 * mean((v-R)^2) = 0.5 * 0.25
    assert out.value_loss.item() == pytest.approx(0.125, abs=1e-6)
    assert out.clip_fraction.item() == 0.0


def test_pessimistic_bound_keeps_unclipped_term():
    # A=+1 with ratio 0.7 (< 1-c): -A*r = -0.7 > -A*clip = -0.8, so the *unclipped* term is kept
    old = 0.3
    nlp = old - math.log(0.7)
    out = ppo_loss(**_args([nlp, 0.2], [old, 0.2], [1.0, 0.0]), clip_range=0.2, ent_coef=0.0, vf_coef=0.0)
    assert out.pg_loss.item() == pytest.approx((-0.7 + 0.0) / 2, abs=1e-6)


def test_model_loss_is_the_seed_contract():
    args = _args([0.1, 0.5], [0.3, 0.2], [1.0, -1.0])
    out = PPO2.loss(args["returns"], args["value_f"], args["neg_log_probs"], args["entropy"], args["advantages"],
                    args["old_values"], args["old_neg_log_probs"], 0.2, 0.01, 0.5)
    assert isinstance(out, tuple) and len(out) == 5
    loss, pg_loss, value_loss, entropy_mean, approx_kl = out
    assert loss.item() == pytest.approx(-0.12875, abs=1e-6)
    assert approx_kl.item() == pytest.approx(0.0325, abs=1e-6)


def test_no_value_clipping_option():
    out = ppo_loss(**_args([0.1, 0.5], [0.3, 0.2], [1.0, -1.0]), clip_range=0.2, ent_coef=0.0, vf_coef=0.5,
                   clip_value=False)
    assert out.value_loss.item() == pytest.approx(0.5 * (0.25 + 0.25) / 2, abs=1e-6)


def test_a2c_loss_by_hand():
    # pg = mean(A * nlp) = (1*0.1 + -1*0.5)/2 = -0.2 ; value = 0.5*mean(0.25, 0.25) = 0.125
    out = a2c_loss(T([1.0, 0.0]), T([0.5, 0.5]), T([0.1, 0.5]), T([0.6, 0.4]), T([1.0, -1.0]), T([0.1, 0.5]),
                   ent_coef=0.1, vf_coef=0.5)
    assert out.pg_loss.item() == pytest.approx(-0.2)
    assert out.value_loss.item() == pytest.approx(0.125)
    assert out.loss.item() == pytest.approx(-0.2 - 0.1 * 0.5 + 0.5 * 0.125)


def test_a2c_gradient_equals_ppo_first_step_gradient():
    """With ratio 1 (first epoch) PPO's clipped objective has the same policy gradient as A2C's."""
    torch.manual_seed(0)
    model = PPO2(4, 16, 3)
    obs = torch.randn(32, 4)
    with torch.no_grad():
        v, a, nlp, _ = model(obs)
    adv = torch.randn(32)
    grads = []
    for kind in ("ppo", "a2c"):
        model.zero_grad()
        _, _, new_nlp, ent = model(obs, action=a)
        if kind == "ppo":
            out = ppo_loss(v + adv, v, new_nlp, ent, adv, v, nlp, 0.2, 0.0, 0.0)
        else:
            out = a2c_loss(v + adv, v, new_nlp, ent, adv, nlp, 0.0, 0.0)
        out.loss.backward()
        grads.append(model.action_head.logits.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_loss_rejects_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"value_f=\(2, 1\)"):
        ppo_loss(T([1.0, 0.0]), T([[0.5], [0.5]]), T([0.1, 0.5]), T([0.6, 0.4]), T([1.0, -1.0]), T([0.4, 0.8]),
                 T([0.3, 0.2]), 0.2, 0.0, 0.5)


def test_gradients_reach_both_heads_and_latent():
    torch.manual_seed(0)
    model = PPO2(4, 8, 2)
    obs = torch.randn(16, 4)
    with torch.no_grad():
        v, a, nlp, _ = model(obs)
    value, _, new_nlp, ent = model(obs, action=a)
    loss, *_ = model.loss(v + torch.randn(16), value, new_nlp, ent, torch.randn(16), v, nlp, 0.2, 0.01, 0.5)
    loss.backward()
    for name in ("action_head.logits.weight", "value_head.weight", "latent.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def _moments(a):
    """What another rank adds in the all-reduce: its count, sum and sum of squares, by hand."""
    a = a.double()
    return torch.stack([a.new_tensor(float(a.numel())), a.sum(), a.square().sum()])


def test_pooled_sums_of_rows_over_ranks():
    """Per-column count, sum and sum of squares of this rank's rows plus the other ranks' (hand-computed)."""
    from ppo2.moments import pooled_sums

    mine = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # and the other rank holds one row, [5, 6]
    count, sums, squares = pooled_sums(mine)
    assert count == 2 and sums.tolist() == [4, 6] and squares.tolist() == [10, 20]
    other = torch.tensor([1.0, 5.0, 6.0, 25.0, 36.0], dtype=torch.float64)  # its packed (count, sums, squares)
    count, sums, squares = pooled_sums(mine, lambda t: t + other)
    assert count == 3 and sums.tolist() == [9, 12] and squares.tolist() == [35, 56] and sums.dtype == torch.float64
    count, sums, squares = pooled_sums(mine[:0], lambda t: t + other)  # an empty share still joins
    assert count == 1 and sums.tolist() == [5, 6] and squares.tolist() == [25, 36]
    count, sums, squares = pooled_sums(torch.tensor([1.0, -2.0, 3.0]))  # a 1-D tensor: its rows are numbers
    assert count == 3 and sums.tolist() == [2] and squares.tolist() == [14]


def test_advantages_are_normalised_over_every_ranks_share():
    """Under two ranks each normalises its half with the moments of both halves (summed by the all-reduce, here
    a stand-in that adds the other rank's): the whole batch's normalisation, not each half's."""
    from ppo2.losses import normalize_advantages

    adv = torch.randn(64, generator=torch.Generator().manual_seed(3)) * 3 + 1
    halves = adv[:32], adv[32:]

    whole = normalize_advantages(adv)
    for rank in (0, 1):
        other = _moments(halves[1 - rank])
        out = normalize_advantages(halves[rank], lambda t: t + other)
        torch.testing.assert_close(out, whole[rank * 32:(rank + 1) * 32], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out, normalize_advantages(halves[rank]), atol=1e-3)  # (each half's own differs)


def test_every_rank_joins_the_normalisation_whatever_its_share_holds():
    """A rank whose share of a minibatch holds one row, or none (autoreset rows are left out), still takes part in
    the all-reduce (the other ranks would wait for it) and normalises with the whole minibatch's moments."""
    from ppo2.losses import normalize_advantages

    adv = torch.tensor([3.0, -1.0, 0.5, 2.0, 4.0])

    calls = []

    def with_the_rest(rest):
        def reduce(t):
            calls.append(1)
            return t + _moments(rest)
        return reduce

    whole = normalize_advantages(adv)
    torch.testing.assert_close(normalize_advantages(adv[:1], with_the_rest(adv[1:])), whole[:1])
    assert normalize_advantages(adv[:0], with_the_rest(adv)).numel() == 0 and len(calls) == 2
    one = torch.tensor([7.0])
    assert torch.equal(normalize_advantages(one), one)  # fewer than 2 in all: as they are
    assert torch.equal(normalize_advantages(one, with_the_rest(adv[:0])), one)
