"""compute_gae against advantages written out by hand (gamma 0.9, lambda 0.8, gamma*lambda = 0.72)."""
import pytest
import torch

from ppo2 import compute_gae

REWARDS = torch.ones(4, 1)
VALUES = torch.tensor([[0.5], [0.6], [0.7], [0.8]])
NEXT = torch.tensor([[0.6], [0.7], [0.8], [0.9]])
ZERO = torch.zeros(4, 1)


def col(*xs):
    return torch.tensor(xs).reshape(-1, 1)


def test_no_episode_end():
    # deltas = 1 + 0.9*V' - V = [1.04, 1.03, 1.02, 1.01]
    adv, ret = compute_gae(REWARDS, VALUES, NEXT, ZERO, ZERO, gamma=0.9, gae_lambda=0.8)
    expected = col(1.04 + 0.72 * (1.03 + 0.72 * (1.02 + 0.72 * 1.01)), 1.03 + 0.72 * (1.02 + 0.72 * 1.01),
                   1.02 + 0.72 * 1.01, 1.01)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(adv, col(2.68734848, 2.287984, 1.7472, 1.01))
    torch.testing.assert_close(ret, adv + VALUES)


def test_termination_does_not_bootstrap_and_cuts_the_recursion():
    # step 1 terminal: delta_1 = 1 - 0.6 = 0.4, A_1 = 0.4 ; A_0 = 1.04 + 0.72 * 0.4
    adv, _ = compute_gae(REWARDS, VALUES, NEXT, col(0.0, 1.0, 0.0, 0.0), ZERO, 0.9, 0.8)
    torch.testing.assert_close(adv, col(1.328, 0.4, 1.7472, 1.01))


def test_truncation_bootstraps_from_the_final_observation():
    # step 1 truncated by a time limit; V(true final obs) = 2.0:
    # delta_1 = 1 + 0.9*2.0 - 0.6 = 2.2 and the recursion stops there ; A_0 = 1.04 + 0.72 * 2.2
    nxt = col(0.6, 2.0, 0.8, 0.9)
    adv, _ = compute_gae(REWARDS, VALUES, nxt, ZERO, col(0.0, 1.0, 0.0, 0.0), 0.9, 0.8)
    torch.testing.assert_close(adv, col(2.624, 2.2, 1.7472, 1.01))


def test_lambda_one_gives_discounted_returns():
    # lambda = 1, V = 0, terminal at the end: returns are plain discounted sums of rewards
    adv, ret = compute_gae(REWARDS, ZERO, ZERO, col(0.0, 0.0, 0.0, 1.0), ZERO, 0.5, 1.0)
    torch.testing.assert_close(ret, col(1.875, 1.75, 1.5, 1.0))


def test_envs_are_independent_columns():
    rewards = torch.cat([REWARDS, 2 * REWARDS], 1)
    values = torch.cat([VALUES, VALUES], 1)
    nxt = torch.cat([NEXT, NEXT], 1)
    term = torch.cat([ZERO, col(0.0, 1.0, 0.0, 0.0)], 1)
    adv, _ = compute_gae(rewards, values, nxt, term, torch.zeros(4, 2), 0.9, 0.8)
    torch.testing.assert_close(adv[:, :1], col(2.68734848, 2.287984, 1.7472, 1.01))
    assert adv[1, 1].item() == pytest.approx(2 - 0.6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"rewards \(4, 1\), values \(3, 1\)"):
        compute_gae(REWARDS, VALUES[:3], NEXT, ZERO, ZERO, 0.9, 0.8)
