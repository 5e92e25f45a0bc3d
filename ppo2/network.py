"""The built-in policy's maths, written once, over arrays that numpy and torch both run.

Every function here takes numpy arrays or torch tensors and spells its arithmetic the way both libraries do
(`@`, `+`, `*`, `.sum(axis)`, `.cumsum(axis)`, and the namespace's `exp`/`log`/`tanh`). Each path that runs the
built-in network calls these and nothing else:

- the module forward that autograd differentiates (`PPO2.forward`, `ppo2.update.ppo_update`: the reference),
- `predict`, evaluation and the collector's policy step on small CPU batches, through numpy,
- the hand-derived update (`ppo2/fused.py`), whose backward is the only second formulation (tested equal to
  autograd in tests/test_fused.py),
- torch.export / ONNX, which trace the module forward.

tests/test_network.py keeps it so: no other module of the package computes a tanh layer, a softmax, a
categorical draw or a Gaussian log-density, and every path above is seen calling these.

Shapes: a batch of n rows; actions along the last axis, logits and Gaussian means (..., n, A), unless `axis` says
otherwise (the fused update lays them out (A, n): its per-sample arithmetic then reduces over A rows).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "namespace", "clip", "standardize", "dense", "mlp", "log_softmax", "categorical_log_prob_entropy", "categorical_sample",
    "categorical_mode", "one_hot", "multi_categorical_log_prob_entropy", "multi_categorical_sample", "multi_categorical_mode",
    "gaussian_log_prob", "gaussian_entropy", "gaussian_sample", "HALF_LOG_2PI", "MASKED_LOGIT", "mask_logits",
    "mask_bernoulli_logits", "sigmoid", "lstm_cell", "lstm_sequence",
]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

# The logit an illegal action gets (action masking): finite, so 0 * logit stays 0 in the sums below, and so far
# below any real logit that exp() of it is exactly 0 in float32 (its probability, and its share of the entropy;
# tests/test_network.py checks both).
MASKED_LOGIT = -1e8


def namespace(x: Any):
    """numpy or torch: the library whose functions run on `x`."""
    return torch if isinstance(x, torch.Tensor) else np


def _max_keep(x, axis: int):
    return x.amax(axis, keepdim=True) if isinstance(x, torch.Tensor) else x.max(axis, keepdims=True)


def _sum_keep(x, axis: int):
    return x.sum(axis, keepdim=True) if isinstance(x, torch.Tensor) else x.sum(axis, keepdims=True)


def clip(x, low, high):
    """x limited to [low, high] (torch's clamp; numpy's minimum/maximum, which skip np.clip's wrapper)."""
    return x.clamp(low, high) if isinstance(x, torch.Tensor) else np.minimum(np.maximum(x, low), high)


# ------------------------------------------------------------------------------------------------------
# The observation normaliser's output: (x - mean) / std, clipped
# ------------------------------------------------------------------------------------------------------
def standardize(x, mean, inv_std, limit: float):
    """(x - mean) * inv_std clipped to +-limit, with inv_std = 1 / sqrt(var + eps) from the running moments."""
    return clip((x - mean) * inv_std, -limit, limit)


# ------------------------------------------------------------------------------------------------------
# The MLP of the seed model: h_{k+1} = tanh(h_k W_k' + b_k)
# ------------------------------------------------------------------------------------------------------
def dense(x, w_t, b, out=None):
    """b + x W', with the weight given transposed, (inputs, outputs), as `nn.Linear.weight.T` (a view). Stacked
    weights (T, inputs, outputs) with biases (T, 1, outputs) compute T layers at once (one row batch x, or T).
    torch computes it with its multiply-add kernels (addmm, baddbmm: one call, as nn.Linear does), numpy as a
    product and a sum; `out`, where given, is written and returned (a step that allocates nothing)."""
    if isinstance(x, torch.Tensor) and x.dim() >= 2:
        if w_t.dim() == 2 and x.dim() == 2:
            return torch.addmm(b, x, w_t) if out is None else torch.addmm(b, x, w_t, out=out)
        if w_t.dim() == 3:
            x = x.expand(w_t.shape[0], *x.shape) if x.dim() == 2 else x
            return torch.baddbmm(b, x, w_t) if out is None else torch.baddbmm(b, x, w_t, out=out)
    if out is None:
        return x @ w_t + b
    np.matmul(x, w_t, out=out)
    out += b
    return out


def mlp(x, layers: Sequence[tuple[Any, Any]], tanh: Callable | None = None, dropout: Callable | None = None,
        out: Sequence | None = None) -> list:
    """The hidden activations [h1, ..., hL] of the tanh MLP; `layers` is [(W', b), ...] per layer.

    `tanh` defaults to the namespace's (ppo2/speed.py passes a faster kernel of the same function where one
    exists); `dropout`, where given, runs after each activation (training with dropout > 0); `out`, where given,
    holds a buffer per layer to write the activations into."""
    tanh = tanh or namespace(x).tanh
    hidden = []
    for k, (w_t, b) in enumerate(layers):
        x = tanh(dense(x, w_t, b, None if out is None else out[k]))
        if dropout is not None:
            x = dropout(x)
        hidden.append(x)
    return hidden


# ------------------------------------------------------------------------------------------------------
# Categorical(logits) over the last axis
# ------------------------------------------------------------------------------------------------------
def log_softmax(logits, axis: int = -1):
    """log p = logits - log sum exp(logits), shifted by the maximum so that exp never overflows."""
    shifted = logits - _max_keep(logits, axis)
    return shifted - namespace(logits).log(_sum_keep(namespace(logits).exp(shifted), axis))


def categorical_log_prob_entropy(logits, one_hot, axis: int = -1):
    """(log p(a), entropy H, log p, p) for one-hot actions: log p(a) = sum_k onehot_k log p_k, H = -sum_k p_k log p_k.
    The last two are what the hand-derived gradient reuses (d log p(a)/d logits = onehot - p)."""
    log_p = log_softmax(logits, axis)
    p = namespace(logits).exp(log_p)
    return (log_p * one_hot).sum(axis), -(p * log_p).sum(axis), log_p, p


def one_hot(actions, n: int, like):
    """(..., n) indicators of integer `actions` (...), in `like`'s dtype."""
    if isinstance(like, torch.Tensor):
        return (actions[..., None] == torch.arange(n, device=like.device)).to(like.dtype)
    return (actions[..., None] == np.arange(n)).astype(like.dtype)


def categorical_sample(logits, uniform):
    """One draw per row by inverting the CDF with one uniform per row, `uniform` of shape (..., 1) in [0, 1).

    The same distribution as torch.multinomial(softmax(logits), 1), with one random number per row. The weights
    are softmax up to its normaliser, which scaling u by the CDF's last value takes out; u * total < total, so
    the index is at most A - 1, and an action of probability 0 (an empty CDF step) is never drawn."""
    cdf = namespace(logits).exp(logits - _max_keep(logits, -1)).cumsum(-1)
    return (cdf <= uniform * cdf[..., -1:]).sum(-1)


def categorical_mode(logits):
    """The most likely action (the first of ties)."""
    return logits.argmax(-1)


def _split(x, sizes: Sequence[int]) -> list:
    bounds = np.cumsum([0, *sizes])
    return [x[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def multi_categorical_log_prob_entropy(logits, actions, nvec: Sequence[int]):
    """MultiDiscrete: independent Categoricals over `nvec` slices of the logits; log-probabilities and entropies
    summed over the sub-actions. `actions` (..., len(nvec)) integers."""
    log_prob, entropy = 0, 0
    for k, (chunk, n) in enumerate(zip(_split(logits, nvec), nvec)):
        lp, h, _, _ = categorical_log_prob_entropy(chunk, one_hot(actions[..., k], n, like=chunk))
        log_prob, entropy = log_prob + lp, entropy + h
    return log_prob, entropy


def multi_categorical_sample(logits, uniforms, nvec: Sequence[int]):
    """One draw per sub-action; `uniforms` (..., len(nvec))."""
    xp = namespace(logits)
    return xp.stack([categorical_sample(chunk, uniforms[..., k:k + 1])
                     for k, chunk in enumerate(_split(logits, nvec))], -1)


def multi_categorical_mode(logits, nvec: Sequence[int]):
    return namespace(logits).stack([categorical_mode(chunk) for chunk in _split(logits, nvec)], -1)


# ------------------------------------------------------------------------------------------------------
# Diagonal Gaussian N(mean, exp(log_std)^2) over the last axis, with a state-independent log-std
# ------------------------------------------------------------------------------------------------------
def gaussian_log_prob(mean, log_std, action, axis: int = -1):
    """(log N(a; mean, std), z = (a - mean) / std): -1/2 sum z^2 - sum log std - d/2 log 2 pi, summed over the
    action axis (`log_std` shaped to broadcast along it). z is what the hand-derived gradient reuses
    (d log p / d mean = z / std, d log p / d log std = z^2 - 1)."""
    z = (action - mean) * namespace(log_std).exp(-log_std)
    return -0.5 * (z * z).sum(axis) - (log_std.sum() + mean.shape[axis] * HALF_LOG_2PI), z


def gaussian_entropy(log_std):
    """sum log std + d (1/2 + 1/2 log 2 pi): the same for every state."""
    return log_std.sum() + log_std.shape[-1] * (0.5 + HALF_LOG_2PI)


def gaussian_sample(mean, log_std, noise):
    """mean + std * noise, with standard-normal `noise` shaped like `mean`."""
    return mean + namespace(log_std).exp(log_std) * noise


# ------------------------------------------------------------------------------------------------------
# Action masking: illegal actions get probability exactly 0
# ------------------------------------------------------------------------------------------------------
def mask_logits(logits, mask):
    """Categorical (and MultiDiscrete) logits with every action whose `mask` entry is False set to MASKED_LOGIT: its
    probability is then exactly 0, so it is never sampled, and log-probabilities and entropies are over the legal
    actions only. Nothing flows back into a masked logit (it is a constant), and the gradient of log p(a) and of H
    with respect to it is exactly 0 (p = 0 there), so the hand-derived update needs no change of its own."""
    return namespace(logits).where(mask, logits, MASKED_LOGIT)


def mask_bernoulli_logits(logits, mask):
    """MultiBinary logits (..., n) under sb3-contrib's mask layout (..., 2n): for bit k, mask[2k] says 0 is legal and
    mask[2k + 1] says 1 is. A bit with one legal value gets the logit -MASKED_LOGIT or MASKED_LOGIT: that value has
    probability exactly 1 (log-probability 0, entropy 0); a bit with both legal keeps its logit."""
    xp = namespace(logits)
    zero_ok, one_ok = mask[..., 0::2], mask[..., 1::2]
    forced = xp.where(one_ok, -MASKED_LOGIT, MASKED_LOGIT)
    return xp.where(zero_ok & one_ok, logits, forced)


# ------------------------------------------------------------------------------------------------------
# The LSTM of a recurrent policy (Hochreiter & Schmidhuber 1997; torch.nn.LSTM's gate order and parameters)
# ------------------------------------------------------------------------------------------------------
def sigmoid(x):
    """1 / (1 + exp(-x)), written as 0.5 (1 + tanh(x / 2)): the same function, and never an overflowing exp."""
    return 0.5 * (1.0 + namespace(x).tanh(0.5 * x))


def lstm_cell(gates_x, h, c, w_hh_t):
    """One LSTM step: `gates_x` = x W_ih' + b_ih + b_hh (the input's share of the four gates, (n, 4H), computable for a
    whole sequence at once), state (h, c) each (n, H), `w_hh_t` = W_hh' (H, 4H). With torch.nn.LSTM's gate order
    [input, forget, cell, output]:

        i, f, g, o = split(gates_x + h W_hh', 4)
        c' = sigmoid(f) c + sigmoid(i) tanh(g)
        h' = sigmoid(o) tanh(c')
    """
    xp = namespace(h)
    gates = gates_x + h @ w_hh_t
    H = h.shape[-1]
    input_forget = sigmoid(gates[..., :2 * H])  # (the two gates side by side: one call)
    c = input_forget[..., H:] * c + input_forget[..., :H] * xp.tanh(gates[..., 2 * H:3 * H])
    return sigmoid(gates[..., 3 * H:]) * xp.tanh(c), c


def lstm_sequence(x, h, c, starts, w_ih_t, w_hh_t, b):
    """The LSTM over a sequence x (T, n, F) from state (h, c) (n, H), the state zeroed before every step t where
    starts[t] (T, n) marks a new episode. Returns (outputs (T, n, H), final h, final c). The input projection runs for
    the whole sequence in one product; the recurrence step by step through `lstm_cell`."""
    gates_x = dense(x.reshape(-1, x.shape[-1]), w_ih_t, b).reshape(x.shape[0], x.shape[1], -1)
    keep = 1.0 - starts[..., None]
    outputs = []
    for t in range(x.shape[0]):
        h, c = lstm_cell(gates_x[t], h * keep[t], c * keep[t], w_hh_t)
        outputs.append(h)
    return namespace(h).stack(outputs), h, c
