"""The PPO update of the built-in MLP with hand-derived gradients: the same numbers as autograd, ~2x faster.

`ppo2.trainer.ppo_update` is the reference: a forward pass, `ppo_loss`, `loss.backward()`,
`clip_grad_norm_`, `optimizer.step()`. Read that one next to the paper. This module computes the same
update for the networks `train.py` builds itself (two Linear-Tanh layers per tower, one shared or two
separate towers, a Categorical or diagonal-Gaussian policy, Adam), but writes the backward pass out:

    forward    h1 = tanh(x W1' + b1)   h2 = tanh(h1 W2' + b2)   out = h2 Wh' + bh   (per tower)
    loss       the clipped surrogate + value loss - entropy bonus of `ppo2.losses.ppo_loss`
    backward   dL/dout from the loss in closed form (below), then dh = dout Wh, dz = dh * (1 - h^2), ...
    step       global-norm clip, then Adam (Kingma & Ba) by torch.optim.Adam(fused=True)'s own kernel

Why: on a 64-unit MLP every torch operation costs more in dispatch than in arithmetic, and autograd,
`torch.distributions`, `clip_grad_norm_` and `torch.optim` add dozens of small operations per step. Here
parameters, gradients and Adam moments live in flat buffers and both towers run as one batched matmul: a
gradient step dispatches 23 aten operations instead of 201 (benchmarks/update_step.py). On the CPU the two
forward tanh layers go through numpy's vectorised tanh, ~7x faster than torch 2.13's here (same benchmark), and
the loss head's per-sample arithmetic (`_head_loss_and_gradient`, a few hundred numbers per operation) runs in
numpy, whose call costs a third of torch's; elsewhere the same code runs on torch tensors. The heads' outputs
are laid out transposed, (A, n), so that arithmetic reduces over A rows rather than along rows of A numbers.
The model's own parameters (and the Adam state inside the torch optimizer, which checkpoints save) are copied
in before an update and out after it, so checkpoints, resume, evaluation and `save_pretrained` never see a
difference.

`tests/test_fused.py` checks the loss terms, every gradient, the clipped step, Adam's state and the
sampled actions against the autograd path, for each supported case.

Closed-form gradients of the loss, per sample i of a minibatch of n (r = ratio, A = advantage):

    pg_i   = max(-A r, -A clip(r))          d pg_i / d log pi  = -A r  if the unclipped term is the max, else 0
    v_i    = 0.5 * max((v - R)^2, (v_c - R)^2)   d / d v  = (v - R), or (v_c - R) while |v - v_old| <= c, else 0
    Categorical: d log pi(a) / d logits = onehot(a) - p;   d H / d logits = -p * (log p + H)
    Gaussian:    d log pi(a) / d mean = z / sigma;   d log pi(a) / d log sigma = z^2 - 1;   d H / d log sigma = 1
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from .distributions import _HALF_LOG_2PI, CategoricalHead, GaussianHead, _sample_categorical
from .errors import NonFiniteLossError
from .losses import normalize_advantages
from .optim import AdamState

__all__ = ["FusedPPO"]

# aten's tanh_backward, autograd's own kernel: (grad, tanh(z)) -> grad * (1 - tanh(z)^2), written over grad
_tanh_backward_ = torch.ops.aten.tanh_backward.grad_input

STAT_SCALE = (1.0, 0.5, 1.0, 0.5, 1.0)  # loss_and_grad's statistics -> the PPOLoss terms


def _scaled(stats: list[float]) -> list[float]:
    return [v * k for v, k in zip(stats, STAT_SCALE)]


def _numpy_tanh_is_simd() -> bool:
    """numpy 2.x vectorises float32 tanh with AVX512_SKX (~15 us for a (2, 256, 64) batch on an AVX512 host);
    on AVX2-only x86 hosts it is scalar (~86 us, measured on an AMD EPYC), where 2*sigmoid(2x)-1 through torch's
    vectorised sigmoid costs ~47 us. A CPU feature, not a timing, picks the formula: the choice is the same on
    every run on a given platform."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        return True
    return bool(__cpu_features__.get("AVX512_SKX", False)) or not any(
        __cpu_features__.get(k, False) for k in ("AVX2", "AVX"))  # non-x86 (NEON, ...): keep numpy's


_NUMPY_SIMD_TANH = _numpy_tanh_is_simd()
_MINUS_ONE = torch.tensor(-1.0)
_SIGMOID_FORM_MIN_NUMEL = 4096  # below this (the collector's 8-env batch) numpy's call is cheaper than 3 torch ops


def _numpy_tanh_for(numel: int) -> bool:
    """Whether `_tanh_` takes numpy's tanh (else 2*sigmoid(2x)-1) for a contiguous float32 CPU tensor of `numel`."""
    return _NUMPY_SIMD_TANH or numel < _SIGMOID_FORM_MIN_NUMEL


def _tanh_name(numel: int = _SIGMOID_FORM_MIN_NUMEL) -> str:
    """Which formula `_tanh_` uses on the CPU for a float32 tensor of `numel` elements (for the benchmarks)."""
    return "numpy tanh" if _numpy_tanh_for(numel) else "2*sigmoid(2x)-1"


def _tanh_(z: torch.Tensor, z_np: np.ndarray | None = None) -> torch.Tensor:
    """tanh, in place. torch 2.13's CPU tanh kernel is not vectorised here (~3 ns per float32 element on every
    ATEN_CPU_CAPABILITY: ~100 us for a (2, 256, 64) batch; benchmarks/update_step.py prints the timings). So on the
    CPU: numpy's SIMD tanh (within 1.4 ulp of the exact tanh; torch's: 0.5 ulp) where numpy has one, else for large
    batches tanh(x) = 2*sigmoid(2x) - 1 (absolute error <= 2.5e-7; torch's sigmoid is vectorised). Only for tensors
    outside autograd (inference mode or no_grad, as everywhere in this module). `z_np`, where the caller has it
    already, is z's memory as a numpy array (`Tensor.numpy()` dispatches four operations)."""
    if z.device.type == "cpu" and z.dtype == torch.float32 and z.is_contiguous():
        if _numpy_tanh_for(z.numel()):
            a = z.numpy() if z_np is None else z_np  # the same memory
            np.tanh(a, out=a)
            return z
        z.mul_(2.0).sigmoid_()
        return torch.add(_MINUS_ONE, z, alpha=2, out=z)
    return z.tanh_()


def _log_softmax(logits, xp):
    """log softmax over the first axis (the A rows of transposed logits): torch's kernel, or the same formula in
    numpy (max-shifted log-sum-exp)."""
    if xp is torch:
        return logits.log_softmax(0)
    shifted = logits - logits.max(0)
    return shifted - np.log(np.exp(shifted).sum(0))


def _clip(x, low: float, high: float, xp):
    """x clipped to [low, high]: torch's clamp, or numpy's minimum/maximum (np.clip's wrapper costs ~1 us more)."""
    return x.clamp(low, high) if xp is torch else np.minimum(np.maximum(x, low), high)


class _Minibatch:
    """What one gradient step on a minibatch reads and writes, made once per minibatch: x as both towers' input
    (T, n, D) and x' for the first layer's weight gradient (T, D, n); the step's buffers (FusedPPO._step_buffers,
    _head_gradient_buffers; numpy views of h1 and h2 for `_tanh_`); and the loss head's inputs and outputs as
    arrays of the fused update's `xp` (numpy views of the same memory on the CPU, the tensors elsewhere). The
    actions are read once, into an (A, n) copy: a minibatch's fields are not to change while it is in use."""

    def __init__(self, fused: "FusedPPO", fields: tuple[torch.Tensor, ...]):
        self.fields = fields
        x, act, old_nlp, old_v, adv, ret = fields
        T, A = fused.T, fused.A
        n, D = x.shape
        self.xs, self.x_t = x.unsqueeze(0).expand(T, n, D), x.t().expand(T, D, n)
        self.h1, self.h2, self.g_h2, self.g_h1, self.head_out = fused._step_buffers(n)
        self.g_head, g_out, g_value = fused._head_gradient_buffers(n)
        out, v = (self.head_out[:A], self.head_out[A]) if T == 1 else (self.head_out[0], self.head_out[1, 0])
        act = act.t().contiguous()  # (A, n), as the heads' outputs
        head = (out, v, act, old_nlp, old_v, adv, ret, g_out, g_value)
        if fused.xp is np:
            self.x_np, self.h1_np, self.h2_np, self.g_h1_np = (t.numpy() for t in (x, self.h1, self.h2, self.g_h1))
            head = tuple(t.numpy() for t in head)
        else:
            self.x_np = self.h1_np = self.h2_np = self.g_h1_np = None
        self.mean_weights = head[1].new_full((n,), 1.0 / n) if fused.xp is torch else np.full(n, 1.0 / n, np.float32)
        self.head_arrays, (self.g_out, self.g_value) = head[:7], head[7:]
        self.g_log_std = fused.named(fused.xp)[1].get("log_std")


class FusedPPO:
    """PPO updates (and the collector's policy step) for a `PPO2` built with its own MLP.

    Use `FusedPPO.unsupported_reason(model, optimizer, algo)` first: it names why a setup needs the
    autograd path (custom networks, dropout, MultiDiscrete/MultiBinary actions, RMSprop, A2C), or None.
    """

    @staticmethod
    def unsupported_reason(model: nn.Module, optimizer: Any, algo: str = "ppo") -> str | None:
        """Why this model/optimizer/algo needs the autograd update, or None. `optimizer` is an instance
        (torch.optim.Adam or ppo2.optim.AdamState) or the name of the one the trainer would build."""
        head = model.action_head
        if algo != "ppo":
            return f"algo {algo!r} (the fused update implements PPO)"
        if model.custom_latent:
            return "custom policy_net/value_net"
        if model.encoder is not None:
            return f"{model.encoder_name} encoder (fused: vectors through the built-in MLP)"
        if model.latent_layers != 2:
            return f"latent_layers={model.latent_layers} (fused: 2)"
        if model.dropout > 0:
            return f"dropout={model.dropout}"
        if not ((isinstance(head, CategoricalHead) and head.dist_cls is Categorical)
                or (isinstance(head, GaussianHead) and head.dist_cls is Normal)):
            return (f"{head.spec['type']} actions with {head.dist_cls.__name__} "
                    "(fused: Discrete/Categorical, Box/Normal)")
        if isinstance(optimizer, str):
            if optimizer != "adam":
                return f"optimizer {optimizer} (fused: Adam)"
        elif not (isinstance(optimizer, AdamState) or type(optimizer) is torch.optim.Adam):
            return f"optimizer {type(optimizer).__name__} (fused: Adam)"
        else:
            group = optimizer.param_groups[0]
            if len(optimizer.param_groups) != 1 or group["weight_decay"] or group["amsgrad"] or group["maximize"]:
                return "Adam with weight decay, amsgrad, maximize or several parameter groups"
        if any(p.dtype != torch.float32 for p in model.parameters()):
            return "parameters that are not float32"
        return None

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        reason = self.unsupported_reason(model, optimizer)
        if reason is not None:
            raise ValueError(f"FusedPPO does not support {reason}; use ppo2.trainer.ppo_update")
        self.model, self.optimizer = model, optimizer
        head = model.action_head
        self.gaussian = isinstance(head, GaussianHead)
        towers = model.latents()
        T, H, D = len(towers), model.hidden_dim, model.input_dim
        A = head.output_layer().out_features
        self.T, self.H, self.D, self.A = T, H, D, A

        # (name, shape, the model parameters it holds, in order): towers stacked, both heads in one matrix.
        # One tower: the heads are rows [policy (A); value (1)] of one (A + 1, H) matrix. Two towers: a
        # (2, A, H) stack, the policy head on tower 0 and the value head on row 0 of tower 1, so one batched
        # matmul serves both; the value tower's other A - 1 rows are padding that stays exactly 0 (its
        # gradient is 0, so Adam never moves it). The value head sits at offset A * H either way.
        head_shapes = ((A + 1, H), (A + 1,)) if T == 1 else ((2, A, H), (2, A))
        layout = [
            ("W1", (T, H, D), [t[0].weight for t in towers]),
            ("b1", (T, H), [t[0].bias for t in towers]),
            ("W2", (T, H, H), [t[3].weight for t in towers]),
            ("b2", (T, H), [t[3].bias for t in towers]),
            ("Wh", head_shapes[0], [head.output_layer().weight, model.value_head.weight]),
            ("bh", head_shapes[1], [head.output_layer().bias, model.value_head.bias]),
        ]
        if self.gaussian:
            layout.append(("log_std", (A,), [head.log_std]))
        sizes = [math.prod(shape) for _, shape, _ in layout]
        device = model.value_head.weight.device
        self.flat = torch.zeros(sum(sizes), device=device)       # parameters
        self.grad = torch.zeros_like(self.flat)                  # their gradient
        self.exp_avg = torch.zeros_like(self.flat)               # Adam's first moment
        self.exp_avg_sq = torch.zeros_like(self.flat)            # Adam's second moment
        self.step = 0
        self.step_t = torch.zeros((), device=device)              # the step as Adam's kernel reads it
        # the array library of the loss head's per-sample arithmetic (_head_loss_and_gradient): numpy on the CPU,
        # where a numpy call on a few hundred numbers costs a third of a torch call; torch elsewhere
        self.xp = np if device.type == "cpu" else torch
        self.p: dict[str, torch.Tensor] = {}
        self.g: dict[str, torch.Tensor] = {}
        self._pairs: list[tuple[nn.Parameter, int, int]] = []    # (model parameter, offset, numel)
        self._synced: tuple | None = None                        # _stamp() when the buffers last matched
        offset = 0
        for (name, shape, params), size in zip(layout, sizes):
            self.p[name] = self.flat[offset:offset + size].view(shape)
            self.g[name] = self.grad[offset:offset + size].view(shape)
            at = offset  # an entry's parameters lie one after another from its start (then any padding)
            for param in params:
                self._pairs.append((param, at, param.numel()))
                at += param.numel()
            offset += size
        # the same memory as numpy arrays, for the loss head's arithmetic on the CPU
        cpu = device.type == "cpu"
        self.p_np = {k: v.numpy() for k, v in self.p.items()} if cpu else {}
        self.g_np = {k: v.numpy() for k, v in self.g.items()} if cpu else {}
        # views used at every step, made once (on a small MLP even a view costs a dispatch)
        p, g = self.p, self.g
        self.W1t, self.b1 = p["W1"].transpose(1, 2), p["b1"].unsqueeze(1)    # (T, D, H), (T, 1, H)
        self.W2t, self.b2 = p["W2"].transpose(1, 2), p["b2"].unsqueeze(1)
        self.pi_Wt, self.pi_b = p["Wh"].view(-1, H)[:A].t(), p["bh"].view(-1)[:A]
        self.bh = p["bh"].unsqueeze(-1)                                                # (A + 1, 1) / (2, A, 1)
        self._g_head_buf: torch.Tensor | None = None  # see _head_gradient_buffers
        self._step_buf: list[torch.Tensor] = []  # see _step_buffers
        self._minibatch: _Minibatch | None = None  # see _minibatch_views
        self.policy_layers = (p["W1"][0].t(), p["b1"][0], p["W2"][0].t(), p["b2"][0])  # the policy tower alone
        # each model parameter's slice of the parameter, first- and second-moment buffers, shaped like it
        self._flat_views = [[buf[offset:offset + n].view_as(param) for param, offset, n in self._pairs]
                            for buf in (self.flat, self.exp_avg, self.exp_avg_sq)]
        covered = {id(p) for p, _, _ in self._pairs}
        missing = [n for n, p in model.named_parameters() if id(p) not in covered]
        if missing:  # pragma: no cover - the layout above is the whole built-in model
            raise AssertionError(f"FusedPPO layout misses parameters {missing}")
        self.pull()

    # ---------------------------------------------------------------------------------------------
    # model <-> flat buffers
    # ---------------------------------------------------------------------------------------------
    def _stamp(self) -> tuple:
        """Which storage, at which version, every model parameter and Adam-state tensor is: any change made to
        them (an in-place write, `load_state_dict`, `p.data = ...`, a new optimizer state) changes this."""
        state = self.optimizer.state
        return tuple((t.data_ptr(), t._version) for param, _, _ in self._pairs
                     for t in (param, *state.get(param, {}).values()) if isinstance(t, torch.Tensor))

    @torch.no_grad()  # (not inference_mode: tensors made here must stay usable by torch.optim and autograd)
    def pull(self) -> None:
        """Copy the model's parameters and the torch optimizer's Adam state into the flat buffers, unless they
        are still what the last pull or push left (the flat buffers already hold them)."""
        if self._synced == self._stamp():
            return
        state = self.optimizer.state
        self.step = 0
        for (param, _, _), flat, m, v in zip(self._pairs, *self._flat_views):
            flat.copy_(param)
            s = state.get(param)
            if s and "exp_avg" in s:
                m.copy_(s["exp_avg"])
                v.copy_(s["exp_avg_sq"])
                self.step = int(s["step"])
            else:
                m.zero_()
                v.zero_()
        self.step_t.fill_(self.step)  # (kept equal to self.step from here on: _clip_and_step, push read it)
        self._synced = self._stamp()

    @torch.no_grad()
    def push(self) -> None:
        """Copy parameters and Adam state back into the model and the torch optimizer (which checkpoints save):
        one multi-tensor copy per kind, through views made once (a push took ~155 us here with a copy per tensor
        through views sliced each time, ~50 us this way; benchmarks/update_step.py times the copies alone)."""
        params = [param for param, _, _ in self._pairs]
        torch._foreach_copy_(params, self._flat_views[0])
        if self.step:
            state = self.optimizer.state
            for param in params:
                s = state[param]
                if "exp_avg" not in s:  # the layout torch.optim.Adam (fused=True) creates on its first step
                    s["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    s["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    s["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            states = [state[param] for param in params]
            torch._foreach_copy_([s["step"] for s in states], [self.step_t] * len(states))
            torch._foreach_copy_([s["exp_avg"] for s in states], self._flat_views[1])
            torch._foreach_copy_([s["exp_avg_sq"] for s in states], self._flat_views[2])
        self._synced = self._stamp()

    # ---------------------------------------------------------------------------------------------
    # forward
    # ---------------------------------------------------------------------------------------------
    def hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h1, h2), each (T, n, H): both towers in one batched matmul per layer."""
        xs = x.unsqueeze(0).expand(self.T, *x.shape)
        h1 = _tanh_(torch.baddbmm(self.b1, xs, self.W1t))
        h2 = _tanh_(torch.baddbmm(self.b2, h1, self.W2t))
        return h1, h2

    def heads(self, h2: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy output, transposed (A, n): logits or Gaussian mean, value (n,)), written into `out` when given
        (shaped (A + 1, n) for one tower, (2, A, n) for two). Both heads' outputs as rows: the per-sample loss
        arithmetic then reduces over the A rows, not along short rows of A numbers, and the products are faster."""
        if self.T == 1:
            out = torch.addmm(self.bh, self.p["Wh"], h2[0].t(), out=out)
            return out[:self.A], out[self.A]
        out = torch.baddbmm(self.bh, self.p["Wh"], h2.transpose(1, 2), out=out)  # policy on tower 0, value on 1
        return out[0], out[1, 0]

    def _head_gradient_buffers(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(d loss / d both heads' outputs for n rows, laid out as `heads` computes them; its policy part (A, n);
        its value part (n,)): views of one zeroed buffer, grown to the largest minibatch seen, whose value-tower
        padding rows are never written, so they stay 0 without a fill at every step."""
        buf = self._g_head_buf
        if buf is None or buf.shape[-1] < n:
            A = self.A
            buf = self._g_head_buf = self.flat.new_zeros((A + 1, n) if self.T == 1 else (2, A, n))
        g_head = buf[..., :n]
        if self.T == 1:
            return g_head, g_head[:self.A], g_head[self.A]
        return g_head, g_head[0], g_head[1, 0]

    def _step_buffers(self, n: int) -> list[torch.Tensor]:
        """Contiguous buffers for a step on n rows: h1, h2, dL/dh2, dL/dh1 (each (T, n, H)) and both heads' outputs
        (laid out as `heads` computes them): the first elements of storage grown to the largest minibatch seen,
        so a step allocates none of them. Every element is written before it is read."""
        T, H, A = self.T, self.H, self.A
        shapes = [(T, n, H)] * 4 + [(A + 1, n) if T == 1 else (2, A, n)]
        sizes = [math.prod(shape) for shape in shapes]
        if not self._step_buf or any(buf.numel() < size for buf, size in zip(self._step_buf, sizes)):
            self._step_buf = [self.flat.new_empty(size) for size in sizes]
        return [buf[:size].view(shape) for buf, size, shape in zip(self._step_buf, sizes, shapes)]

    def named(self, xp) -> tuple[dict, dict]:
        """(parameters, gradients) by name, as arrays of `xp`: the tensors, or numpy views of them on the CPU."""
        return (self.p, self.g) if xp is torch else (self.p_np, self.g_np)

    def _minibatch_views(self, x, act, old_nlp, old_v, adv, ret) -> _Minibatch:
        """The views and buffers one gradient step on this minibatch uses (`_Minibatch`). Made again only when a
        field is another tensor: with one minibatch, every epoch's steps reuse the first one's."""
        fields = (x, act, old_nlp, old_v, adv, ret)
        mb = self._minibatch
        if mb is None or any(a is not b for a, b in zip(mb.fields, fields)):
            mb = self._minibatch = _Minibatch(self, fields)
        return mb

    def policy_output(self, x: torch.Tensor) -> torch.Tensor:
        """The policy tower alone: logits or Gaussian mean (n, A) for normalised observations."""
        W1t, b1, W2t, b2 = self.policy_layers
        h1 = torch.tanh(torch.mm(x, W1t) + b1)
        h2 = torch.tanh(torch.mm(h1, W2t) + b2)
        return torch.mm(h2, self.pi_Wt) + self.pi_b

    @torch.inference_mode()
    def sample_action(self, obs: torch.Tensor) -> torch.Tensor:
        """`PPO2.sample_action` on the flat parameters: the same random numbers, the same actions."""
        out = self.policy_output(self.model.normalize(obs))
        if self.gaussian:
            return out + self.p["log_std"].exp() * torch.randn_like(out)
        return _sample_categorical(out.softmax(-1)).squeeze(-1)

    def log_prob_and_entropy(self, out, act, xp=torch) -> tuple:
        """(log pi(a|s), entropy, *pieces the gradient needs) from the transposed policy output (A, n); `act`
        is one-hot (A, n) for Categorical, the action (A, n) for Gaussian. Arrays of `xp` (torch tensors, or numpy
        arrays on the CPU)."""
        if self.gaussian:
            log_std = self.named(xp)[0]["log_std"]
            inv_std = xp.exp(-log_std)[:, None]
            z = (act - out) * inv_std
            logp = -0.5 * (z * z).sum(0) - (log_std.sum() + self.A * _HALF_LOG_2PI)
            entropy = xp.zeros_like(logp) + (log_std.sum() + self.A * (0.5 + _HALF_LOG_2PI))
            return logp, entropy, z, inv_std
        log_probs = _log_softmax(out, xp)
        probs = xp.exp(log_probs)
        return (log_probs * act).sum(0), -(probs * log_probs).sum(0), log_probs, probs

    def one_hot(self, actions: torch.Tensor) -> torch.Tensor:
        if self.gaussian:
            return actions
        return (actions.unsqueeze(1) == torch.arange(self.A, device=actions.device)).float()

    @torch.inference_mode()
    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(V(s), neg_log_prob of the actions) for a batch: a whole rollout in one pass."""
        out, value = self.heads(self.hidden(self.model.normalize(obs))[1])
        act, xp = self.one_hot(actions).t(), self.xp
        if xp is np:  # the loss head's arithmetic, so the first gradient step's ratio is exactly 1
            return value, -torch.from_numpy(self.log_prob_and_entropy(out.numpy(), act.numpy(), np)[0])
        return value, -self.log_prob_and_entropy(out, act)[0]

    @torch.inference_mode()
    def value_of(self, obs: torch.Tensor) -> torch.Tensor:
        return self.heads(self.hidden(self.model.normalize(obs))[1])[1]

    # ---------------------------------------------------------------------------------------------
    # one gradient step
    # ---------------------------------------------------------------------------------------------
    def _loss_and_grad(self, x, act, old_nlp, old_v, adv, ret, clip_range, ent_coef, vf_coef, clip_value):
        """Fill self.grad with d loss / d parameters for one minibatch; return the minibatch means of
        (pg_loss, 2 * value_loss, entropy, 2 * approx_kl, clip_fraction) as one (5,) array of `self.xp` (STAT_SCALE
        turns it into the loss terms: the halves are applied once per update, not once per step).

        x: normalised observations (n, D); act: one-hot actions (n, A) for Categorical, actions for Gaussian;
        adv: advantages, already normalised if the config asks for it."""
        p, g = self.p, self.g
        mb = self._minibatch_views(x, act, old_nlp, old_v, adv, ret)
        h1, h2, g_h2, g_h1, g_head = mb.h1, mb.h2, mb.g_h2, mb.g_h1, mb.g_head

        # forward: hidden(x) and heads(h2), into this minibatch's buffers
        _tanh_(torch.baddbmm(self.b1, mb.xs, self.W1t, out=h1), mb.h1_np)
        _tanh_(torch.baddbmm(self.b2, h1, self.W2t, out=h2), mb.h2_np)
        self.heads(h2, out=mb.head_out)

        # the loss and d loss / d both heads' outputs, into g_head
        stats = self._head_loss_and_gradient(mb, clip_range, ent_coef, vf_coef, clip_value)

        # backward through the heads into h2 ...
        if self.T == 1:
            torch.mm(g_head, h2[0], out=g["Wh"])
            torch.sum(g_head, 1, out=g["bh"])
            torch.mm(g_head.t(), p["Wh"], out=g_h2[0])
        else:
            torch.bmm(g_head, h2, out=g["Wh"])
            torch.sum(g_head, 2, out=g["bh"])
            torch.bmm(g_head.transpose(1, 2), p["Wh"], out=g_h2)
        # ... and through both tanh layers (d tanh(z) / dz = 1 - tanh(z)^2), in place: one (T, n, H) buffer fewer
        g_z2 = _tanh_backward_(g_h2, h2, grad_input=g_h2)
        torch.bmm(g_z2.transpose(1, 2), h1, out=g["W2"])
        torch.sum(g_z2, 1, out=g["b2"])
        g_z1 = _tanh_backward_(torch.bmm(g_z2, p["W2"], out=g_h1), h1, grad_input=g_h1)
        # d W1 = g_z1' x. With few inputs (D = 4 for CartPole) torch's (T, H, n) x (T, n, D) product is the slowest
        # form on the CPU and numpy's (T, H, n) x (n, D) the fastest (benchmarks/update_step.py times both)
        if self.xp is np:
            np.matmul(mb.g_h1_np.transpose(0, 2, 1), mb.x_np, out=self.g_np["W1"])
        else:
            g["W1"].copy_(torch.bmm(mb.x_t, g_z1).transpose(1, 2))
        torch.sum(g_z1, 1, out=g["b1"])
        return stats

    def _head_loss_and_gradient(self, mb: _Minibatch, clip_range: float, ent_coef: float, vf_coef: float,
                                clip_value: bool):
        """The loss from the heads' outputs, per sample, and its gradient with respect to them (written into
        mb.g_out, mb.g_value and, for a Gaussian policy, the log-std's gradient); returns the statistics.
        Arrays of `self.xp`: a few hundred numbers per operation, where numpy's call overhead is torch's third."""
        xp = self.xp
        out, v, act, old_nlp, old_v, adv, ret = mb.head_arrays
        n = v.shape[0]

        # log pi(a|s), entropy, and the pieces their gradients need
        if self.gaussian:
            logp, entropy, z, inv_std = self.log_prob_and_entropy(out, act, xp)
        else:
            logp, entropy, log_probs, probs = self.log_prob_and_entropy(out, act, xp)

        # clipped surrogate: pg_i = max(-A r, -A clip(r)); its gradient flows only through the unclipped term.
        # Computed as pg_i / n (advantages scaled by -1/n once): d mean(pg) / d log pi = -A r / n there.
        log_ratio = logp + old_nlp
        ratio = xp.exp(log_ratio)
        ratio_clipped = _clip(ratio, 1.0 - clip_range, 1.0 + clip_range, xp)
        adv_n = adv * (-1.0 / n)
        pg1, pg2 = adv_n * ratio, adv_n * ratio_clipped
        pg_n = xp.maximum(pg1, pg2)
        g_logp = pg1 * (pg1 >= pg2)

        # value loss 0.5 * max((v - R)^2, (v_clipped - R)^2)
        err = v - ret
        if clip_value:
            dv = v - old_v
            err_clipped = old_v + _clip(dv, -clip_range, clip_range, xp) - ret
            sq, sq_clipped = err * err, err_clipped * err_clipped
            value_losses = xp.maximum(sq, sq_clipped)
            inside = abs(dv) <= clip_range  # where clip passes the gradient through
            g_v = xp.where(sq >= sq_clipped, err, err_clipped * inside)
        else:
            value_losses = err * err
            g_v = err
        xp.multiply(g_v, vf_coef / n, out=mb.g_value)

        # d loss / d policy output
        if self.gaussian:
            xp.multiply(g_logp * inv_std, z, out=mb.g_out)
            xp.subtract((g_logp * (z * z - 1)).sum(1), ent_coef, out=mb.g_log_std)
        else:
            xp.multiply(g_logp, act - probs, out=mb.g_out)
            if ent_coef:  # - ent_coef * mean(H):  d/d logits = ent_coef / n * p * (log p + H)
                mb.g_out += (ent_coef / n) * probs * (log_probs + entropy)

        # the five means as one product with a vector of 1/n
        rows = (pg_n * n, value_losses, entropy, log_ratio * log_ratio, ratio != ratio_clipped)
        return xp.concatenate(rows).reshape(5, n) @ mb.mean_weights

    def _clip_and_step(self, max_grad_norm: float, lr: float, check=None) -> torch.Tensor:
        """clip_grad_norm_ then Adam, on the flat buffers (torch.optim.Adam's fused kernel). Returns the norm.

        Raises NonFiniteLossError, with nothing changed, if the gradient norm or `check` (the step's loss
        statistics) is NaN/inf."""
        norm = torch.linalg.vector_norm(self.grad)  # (Tensor.norm goes through a Python wrapper)
        total = float(norm)  # (one read; torch.isfinite and tensor arithmetic on the norm would each dispatch again)
        if not math.isfinite(total) or (check is not None and not math.isfinite(float(check.sum()))):
            raise NonFiniteLossError(f"gradient norm {total}; the step was not applied")
        coef = max_grad_norm / (total + 1e-6)  # clip_grad_norm_'s coefficient, in Python (benchmarks/fused_ab.py)
        if coef < 1.0:
            self.grad.mul_(coef)
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        self.step += 1
        self.step_t.fill_(self.step)
        # torch.optim.Adam(fused=True)'s own kernel (the reference path's optimizer): one call for the whole step
        torch._fused_adam_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_t], lr=lr,
                           beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], amsgrad=False,
                           maximize=False)
        return norm

    # (update() enters inference mode once for all its steps: an entry costs more than a small step's operations)
    loss_and_grad = torch.inference_mode()(_loss_and_grad)

    # ---------------------------------------------------------------------------------------------
    # the update (same contract as ppo2.trainer.ppo_update)
    # ---------------------------------------------------------------------------------------------
    def _epochs(self, fields, update_epochs, num_minibatches, norm_adv, target_kl, all_reduce_mean, any_rank,
                loss_args, max_grad_norm) -> tuple[list[torch.Tensor], int]:
        """The epochs of `update` (in inference mode): each step's (5,) statistics, and the epochs run."""
        lr = self.optimizer.param_groups[0]["lr"]
        N, M = fields[0].shape[0], num_minibatches
        size = -(-N // M)  # torch.chunk's minibatch size (the last one is smaller when M does not divide N)
        terms, epochs_run = [], 0
        for _ in range(update_epochs):
            # minibatches of a random permutation, as ppo_update draws them (one minibatch: the whole batch);
            # each field is gathered once per epoch, so every minibatch is a contiguous slice
            if M == 1:
                shuffled = fields
            else:
                perm = torch.randperm(N, device=fields[0].device)
                shuffled = [f.index_select(0, perm) for f in fields]
            epoch_terms = []
            for start in range(0, N, size):
                minibatch = shuffled if M == 1 else [f[start:start + size] for f in shuffled]
                mb_x, mb_act, mb_nlp, mb_v, adv, mb_ret = minibatch
                if norm_adv and adv.shape[0] > 1:
                    adv = normalize_advantages(adv)
                stats = self._loss_and_grad(mb_x, mb_act, mb_nlp, mb_v, adv, mb_ret, *loss_args)
                if all_reduce_mean is not None:
                    all_reduce_mean(self.grad)
                try:
                    self._clip_and_step(max_grad_norm, lr, check=stats)
                except NonFiniteLossError as exc:
                    pg, vl, ent = _scaled(stats.tolist())[:3]
                    ent_coef, vf_coef = loss_args[1], loss_args[2]
                    raise NonFiniteLossError(
                        f"loss is {pg - ent_coef * ent + vf_coef * vl} (pg_loss {pg}, value_loss {vl}, entropy {ent}, "
                        f"{exc}); the update was not applied") from None
                epoch_terms.append(stats)
            terms += epoch_terms
            epochs_run += 1
            if target_kl is not None:
                over = bool(self.xp.stack(epoch_terms)[:, 3].mean() * 0.5 > target_kl)
                if any_rank(over) if any_rank else over:
                    break
        return terms, epochs_run

    @torch.no_grad()  # push() must not make inference tensors; the steps inside run in inference_mode
    def update(self, batch, *, update_epochs: int, num_minibatches: int, clip_range: float, ent_coef: float,
               vf_coef: float, max_grad_norm: float, norm_adv: bool, clip_value_loss: bool = True,
               target_kl: float | None = None, all_reduce_mean: Callable[[torch.Tensor], None] | None = None,
               any_rank: Callable[[bool], bool] | None = None) -> dict[str, float]:
        """update_epochs x num_minibatches gradient steps; returns the same statistics as `ppo_update`."""
        self.pull()
        x = self.model.normalize(batch.obs)
        fields = (x, self.one_hot(batch.actions), batch.neg_log_probs, batch.values, batch.advantages, batch.returns)
        if num_minibatches == 1 and norm_adv and x.shape[0] > 1:  # one minibatch: the same normalised advantages every epoch
            fields = (*fields[:4], normalize_advantages(fields[4]), fields[5])
            norm_adv = False
        try:
            with torch.inference_mode():  # entered once for every step
                terms, epochs_run = self._epochs(
                    fields, update_epochs, num_minibatches, norm_adv, target_kl, all_reduce_mean, any_rank,
                    (clip_range, ent_coef, vf_coef, clip_value_loss), max_grad_norm)
        except NonFiniteLossError:
            self.push()  # the model keeps the last good parameters
            raise
        self.push()
        pg_loss, value_loss, entropy, approx_kl, clip_fraction = _scaled(self.xp.stack(terms).mean(0).tolist())
        loss = pg_loss - ent_coef * entropy + vf_coef * value_loss  # the mean of the per-step losses (it is linear)
        return {"loss": loss, "pg_loss": pg_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": approx_kl,
                "clip_fraction": clip_fraction, "epochs": epochs_run}
