"""The PPO update of the built-in MLP with hand-derived gradients: the same numbers as autograd, faster.

`ppo2.update.ppo_update` is the reference: the module forward, `ppo_loss`, `loss.backward()`, `clip_grad_norm_`,
`optimizer.step()`. Read that one next to the paper. This module computes the same update for the networks
`train.py` builds itself (two Linear-Tanh layers per tower, one shared or two separate towers, a Categorical or
diagonal-Gaussian policy, Adam). Its forward is ppo2/network.py's (`mlp`, `dense` and the distributions' log-
probabilities, the functions the module forward runs); what it writes out is the backward pass:

    forward    h1 = tanh(x W1' + b1)   h2 = tanh(h1 W2' + b2)   out = h2 Wh' + bh    (network.mlp, network.dense)
    loss       the clipped surrogate + value loss - entropy bonus of `ppo2.losses.ppo_loss`
    backward   dL/dout from the loss in closed form (below), then dh = dout Wh, dz = dh * (1 - h^2), ...
    step       global-norm clip, then Adam (torch.optim.Adam(fused=True)'s kernel: ppo2.speed.adam_step_)

A recurrent policy with one LSTM shared by actor and critic (ppo2/memory.py) trains here too: the LSTM runs on
torch's kernel under autograd (ppo2/speed.py's `lstm_sequences`), the layers after it as above, on the rows the loss
reads; the first layer's input gradient, dx = dz1 W1 (summed over the towers), is where the LSTM's backward starts.
Its parameters sit in the same flat buffers, clipped and stepped with the rest.

Why (ppo2/speed.py lists the speed devices): on a 64-unit MLP every torch operation costs more in dispatch than in
arithmetic, and autograd, `clip_grad_norm_` and `torch.optim` add dozens of small operations per step. Here
parameters, gradients and Adam moments live in flat buffers, both towers run as one batched matmul, and the loss
head's per-sample arithmetic (a few hundred numbers per operation) runs in numpy on the CPU, where a call costs a
third of torch's. The model's own parameters (and the Adam state inside the torch optimizer, which checkpoints
save) are copied in before an update and out after it, so checkpoints, resume, evaluation and `save_pretrained`
never see a difference. tests/test_fused.py checks the loss terms, every gradient, the clipped step, Adam's state
and the sampled actions against the autograd path, for each supported case.

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

from . import network
from .distributions import CategoricalHead, GaussianHead
from .errors import NonFiniteLossError
from .losses import normalize_advantages
from .optim import AdamState, adam_moments
from .speed import adam_step_, copy_tensors_, tanh_, tanh_backward_

__all__ = ["FusedPPO"]

STAT_SCALE = (1.0, 0.5, 1.0, 0.5, 1.0)  # loss_and_grad's statistics -> the PPOLoss terms


def _scaled(stats: list[float]) -> list[float]:
    return [v * k for v, k in zip(stats, STAT_SCALE)]


class FusedPPO:
    """PPO updates (and the collector's policy step) for a `PPO2` built with its own MLP.

    Use `FusedPPO.unsupported_reason(model, optimizer, algo)` first: it names why a setup needs the
    autograd path (custom networks, encoders, the critic's own LSTM, dropout, MultiDiscrete/MultiBinary actions,
    RMSprop, A2C), or None.
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
        if model.memory is not None and model.memory.towers != 1:
            return "a recurrent policy with the critic's own LSTM (fused: one LSTM shared by actor and critic)"
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
            raise ValueError(f"FusedPPO does not support {reason}; use ppo2.update.ppo_update")
        self.model, self.optimizer = model, optimizer
        head = model.action_head
        self.gaussian = isinstance(head, GaussianHead)
        towers = model.latents()
        memory = model.memory
        # (a recurrent policy: the towers read the LSTM's output; the LSTM runs on torch's kernel under autograd)
        T, H, D = len(towers), model.hidden_dim, model.input_dim if memory is None else memory.hidden
        A = head.output_layer().out_features
        self.T, self.H, self.D, self.A = T, H, D, A

        # (name, shape, the model parameters it holds, in order): towers stacked, both heads in one matrix.
        # One tower: the heads are rows [policy (A); value (1)] of one (A + 1, H) matrix. Two towers: a
        # (2, A, H) stack, the policy head on tower 0 and the value head on row 0 of tower 1, so one batched
        # matmul serves both; the value tower's other A - 1 rows are padding that stays exactly 0 (its
        # gradient is 0, so Adam never moves it). The value head sits at offset A * H either way.
        head_shapes = ((A + 1, H), (A + 1,)) if T == 1 else ((2, A, H), (2, A))
        layout = [
            ("W1", (T, H, D), [t.linears()[0].weight for t in towers]),
            ("b1", (T, H), [t.linears()[0].bias for t in towers]),
            ("W2", (T, H, H), [t.linears()[1].weight for t in towers]),
            ("b2", (T, H), [t.linears()[1].bias for t in towers]),
            ("Wh", head_shapes[0], [head.output_layer().weight, model.value_head.weight]),
            ("bh", head_shapes[1], [head.output_layer().bias, model.value_head.bias]),
        ]
        if self.gaussian:
            layout.append(("log_std", (A,), [head.log_std]))
        self.lstm_keys: tuple[str, ...] = ()
        if memory is not None:
            lstm = memory.lstms[0]
            self.lstm_keys = ("lstm_w_ih", "lstm_w_hh", "lstm_b_ih", "lstm_b_hh")
            layout += [(key, tuple(param.shape), [param])
                       for key, param in zip(self.lstm_keys, memory.parameters_of(lstm))]
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
        p = self.p
        # network.mlp's layers for both towers at once ((T, D, H) and (T, H, H) transposed weights, (T, 1, H) biases),
        # the heads as (T, K, H) with K = A + 1 (one tower) or A (two), and the policy tower alone
        self.layers = [(p["W1"].transpose(1, 2), p["b1"].unsqueeze(1)), (p["W2"].transpose(1, 2), p["b2"].unsqueeze(1))]
        self.Wh = p["Wh"].view(T, -1, H)
        self.bh = p["bh"].view(T, -1, 1)
        self.policy_layers = [(w[0], b[0]) for w, b in self.layers]
        self.policy_head = (self.Wh[0, :A].t(), p["bh"].view(T, -1)[0, :A])
        self._step_buffers: dict[int, dict] = {}  # see _buffers
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
        one multi-tensor copy per kind, through views made once."""
        params = [param for param, _, _ in self._pairs]
        copy_tensors_(params, self._flat_views[0])
        if self.step:
            states = [adam_moments(self.optimizer.state, param) for param in params]
            copy_tensors_([s["step"] for s in states], [self.step_t] * len(states))
            copy_tensors_([s["exp_avg"] for s in states], self._flat_views[1])
            copy_tensors_([s["exp_avg_sq"] for s in states], self._flat_views[2])
        self._synced = self._stamp()

    # ---------------------------------------------------------------------------------------------
    # forward: ppo2/network.py's, on the flat parameters
    # ---------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, buffers: dict | None = None):
        """(h1, h2, policy output (A, n), value (n,)) for normalised observations; h1, h2 are (T, n, H), both
        towers in one batched matmul per layer; written into `buffers` (`_buffers`) where given."""
        hidden, out = ((buffers["h1"], buffers["h2"]), buffers["out"]) if buffers else (None, None)
        h1, h2 = network.mlp(x, self.layers, tanh=tanh_, out=hidden)
        # the heads transposed, (T, K, n) = Wh h2' + bh: the same dense layer, its arguments' roles swapped
        out = network.dense(self.Wh, h2.transpose(1, 2), self.bh, out=out)
        if self.T == 1:
            return h1, h2, out[0, :self.A], out[0, self.A]
        return h1, h2, out[0], out[1, 0]

    def log_prob_entropy(self, out, act) -> tuple:
        """(log pi(a|s), entropy, *pieces the gradient needs) for the transposed policy output (A, n): network.py's
        maths along axis 0, on arrays of the loss head's library. `act` is one-hot (A, n) for Categorical, the
        action (A, n) for Gaussian."""
        if self.gaussian:
            log_std = self.named(network.namespace(out))[0]["log_std"]
            logp, z = network.gaussian_log_prob(out, log_std[:, None], act, axis=0)
            return logp, network.gaussian_entropy(log_std) + 0 * logp, z, network.namespace(out).exp(-log_std)[:, None]
        return network.categorical_log_prob_entropy(out, act, axis=0)

    def named(self, xp) -> tuple[dict, dict]:
        """(parameters, gradients) by name, as arrays of `xp`: the tensors, or numpy views of them."""
        if xp is torch:
            return self.p, self.g
        if "_np" not in self.__dict__:
            self._np = ({k: v.numpy() for k, v in self.p.items()}, {k: v.numpy() for k, v in self.g.items()})
        return self._np

    def one_hot(self, actions: torch.Tensor) -> torch.Tensor:
        return actions if self.gaussian else network.one_hot(actions, self.A, like=self.flat)

    def _as_xp(self, t: torch.Tensor):
        return t.numpy() if self.xp is np else t

    def _head_inputs(self, act, old_nlp, old_v, adv, ret, mask=None) -> tuple:
        """The loss head's inputs as arrays of `xp`: actions (and action masks) transposed to (A, n) like the heads'
        outputs."""
        return (*(self._as_xp(t) for t in (act.t().contiguous(), old_nlp, old_v, adv, ret)),
                None if mask is None else self._as_xp(mask.t().contiguous()))

    def _feed_forward_only(self) -> None:
        if self.lstm_keys:
            raise TypeError("a recurrent policy acts through the model, which carries its LSTM state; FusedPPO only "
                            "trains it (update)")

    @torch.inference_mode()
    def sample_action(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`PPO2._sample` on the flat parameters: the policy tower alone, the same random numbers, the same actions."""
        self._feed_forward_only()
        h2 = network.mlp(self.model.normalize(obs), self.policy_layers, tanh=tanh_)[-1]
        return self.model.action_head.sample(self.model._masked(network.dense(h2, *self.policy_head), mask))

    @torch.inference_mode()
    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(V(s), neg_log_prob of the actions) for a batch: a whole rollout in one pass, through the loss head's
        arithmetic, so the first gradient step's ratio is exactly 1."""
        self._feed_forward_only()
        _, _, out, value = self.forward(self.model.normalize(obs))
        out = self._as_xp(out)
        if mask is not None:
            out = network.mask_logits(out, self._as_xp(mask.t().contiguous()))
        logp = self.log_prob_entropy(out, self._as_xp(self.one_hot(actions).t().contiguous()))[0]
        return value, -(torch.from_numpy(logp) if self.xp is np else logp)

    @torch.inference_mode()
    def value_of(self, obs: torch.Tensor, memory: Any = None) -> torch.Tensor:
        self._feed_forward_only()
        return self.forward(self.model.normalize(obs))[3]

    # ---------------------------------------------------------------------------------------------
    # one gradient step
    # ---------------------------------------------------------------------------------------------
    def _buffers(self, n: int) -> dict:
        """A gradient step's arrays for n rows, made once per minibatch size (allocating them at every step costs
        more than the step's arithmetic): the activations h1, h2 and the heads' output as `forward` lays them out,
        d loss / d each (g_h1, g_h2, g_head: zeroed once; its value-tower padding is never written, so it stays 0),
        and 1/n per row for the statistics' means."""
        bufs = self._step_buffers.get(n)
        if bufs is None:
            if len(self._step_buffers) >= 64:  # (a recurrent policy's minibatches vary in their rows the loss reads)
                self._step_buffers.clear()
            T, H, K = self.T, self.H, self.Wh.shape[1]
            new = self.flat.new_empty
            bufs = self._step_buffers[n] = {"h1": new((T, n, H)), "h2": new((T, n, H)), "out": new((T, K, n)),
                                      "g_h1": new((T, n, H)), "g_h2": new((T, n, H)),
                                      "g_head": self.flat.new_zeros((T, K, n)),
                                      "mean": self._as_xp(self.flat.new_full((n,), 1.0 / n))}
            # the loss head's views of the heads' outputs and their gradient, as arrays of `xp`
            out, g_head, A = bufs["out"], bufs["g_head"], self.A
            views = ((out[0, :A], out[0, A], g_head[0, :A], g_head[0, A]) if T == 1
                     else (out[0], out[1, 0], g_head[0], g_head[1, 0]))
            bufs["head"] = tuple(self._as_xp(v) for v in views)
        return bufs

    def _loss_and_grad(self, x, act, old_nlp, old_v, adv, ret, clip_range, ent_coef, vf_coef, clip_value):
        """Fill self.grad with d loss / d parameters for one minibatch; return the minibatch means of
        (pg_loss, 2 * value_loss, entropy, 2 * approx_kl, clip_fraction) as one (5,) array of `self.xp` (STAT_SCALE
        turns it into the loss terms: the halves are applied once per update, not once per step).

        x: normalised observations (n, D); act: one-hot actions (n, A) for Categorical, actions for Gaussian;
        adv: advantages, already normalised if the config asks for it. Tensors (the loss head reads the last five
        through numpy views on the CPU)."""
        return self._step_gradient(x, self._head_inputs(act, old_nlp, old_v, adv, ret), clip_range, ent_coef, vf_coef,
                                   clip_value)

    def _step_gradient(self, x, head_inputs, clip_range, ent_coef, vf_coef, clip_value, g_x=None):
        """`_loss_and_grad` with the loss head's inputs already as `_head_inputs` gives them (update() makes them
        once per minibatch, not once per step). With `g_x` (n, D), also d loss / d x into it (a recurrent policy's
        LSTM backward starts there): the first layers' input gradient, g_z1 W1, summed over the towers."""
        p, g, T = self.p, self.g, self.T
        act, old_nlp, old_v, adv, ret, mask = head_inputs
        bufs = self._buffers(x.shape[0])
        h1, h2, _, _ = self.forward(x, bufs)
        g_head = bufs["g_head"]
        out, v, g_out, g_v = bufs["head"]
        if mask is not None:  # illegal logits: constants, whose gradient the head's formula gives as exactly 0
            out = network.mask_logits(out, mask)
        stats = self._head_loss_and_gradient(out, v, act, old_nlp, old_v, adv, ret, g_out, g_v, clip_range,
                                             ent_coef, vf_coef, clip_value, bufs["mean"])
        # backward through the heads (out = h2 Wh' + bh) into h2 ...
        torch.bmm(g_head, h2, out=g["Wh"].view(T, -1, self.H))
        torch.sum(g_head, 2, out=g["bh"].view(T, -1))
        # ... and through both tanh layers (d tanh(z) / dz = 1 - tanh(z)^2), in place
        g_z2 = tanh_backward_(torch.bmm(g_head.transpose(1, 2), self.Wh, out=bufs["g_h2"]), h2)
        torch.bmm(g_z2.transpose(1, 2), h1, out=g["W2"])
        torch.sum(g_z2, 1, out=g["b2"])
        g_z1 = tanh_backward_(torch.bmm(g_z2, p["W2"], out=bufs["g_h1"]), h1)
        # d W1 = g_z1' x: with few inputs (D = 4 for CartPole) numpy's (T, H, n) x (n, D) product is the fastest form
        # on the CPU, torch's batched one the slowest (benchmarks/update_step.py times both)
        if self.xp is np:
            np.matmul(g_z1.numpy().transpose(0, 2, 1), x.numpy(), out=self.named(np)[1]["W1"])
        else:
            torch.bmm(g_z1.transpose(1, 2), x.expand(T, *x.shape), out=g["W1"])
        torch.sum(g_z1, 1, out=g["b1"])
        if g_x is not None:
            torch.sum(torch.bmm(g_z1, p["W1"]), 0, out=g_x)
        return stats

    def _head_loss_and_gradient(self, out, v, act, old_nlp, old_v, adv, ret, g_out, g_value, clip_range: float,
                                ent_coef: float, vf_coef: float, clip_value: bool, mean_weights):
        """The loss from the heads' outputs, per sample, and its gradient with respect to them (written into
        g_out, g_value and, for a Gaussian policy, the log-std's gradient); returns the statistics.
        Arrays of `self.xp`: a few hundred numbers per operation, where numpy's call overhead is torch's third."""
        xp = self.xp
        n = v.shape[0]
        logp, entropy, a, b = self.log_prob_entropy(out, act)  # Gaussian: (z, 1/sigma); Categorical: (log p, p)

        # clipped surrogate: pg_i = max(-A r, -A clip(r)); its gradient flows only through the unclipped term.
        # Computed as pg_i / n (advantages scaled by -1/n once): d mean(pg) / d log pi = -A r / n there.
        log_ratio = logp + old_nlp
        ratio = xp.exp(log_ratio)
        ratio_clipped = network.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
        adv_n = adv * (-1.0 / n)
        pg1, pg2 = adv_n * ratio, adv_n * ratio_clipped
        pg_n = xp.maximum(pg1, pg2)
        g_logp = pg1 * (pg1 >= pg2)

        # value loss 0.5 * max((v - R)^2, (v_clipped - R)^2)
        err = v - ret
        if clip_value:
            dv = v - old_v
            err_clipped = old_v + network.clip(dv, -clip_range, clip_range) - ret
            sq, sq_clipped = err * err, err_clipped * err_clipped
            value_losses = xp.maximum(sq, sq_clipped)
            inside = abs(dv) <= clip_range  # where clip passes the gradient through
            g_v = xp.where(sq >= sq_clipped, err, err_clipped * inside)
        else:
            value_losses = err * err
            g_v = err
        g_value[...] = g_v * (vf_coef / n)

        # d loss / d policy output
        if self.gaussian:
            z, inv_std = a, b
            g_out[...] = g_logp * inv_std * z
            self.named(xp)[1]["log_std"][...] = (g_logp * (z * z - 1)).sum(1) - ent_coef
        else:
            log_p, p = a, b
            g_out[...] = g_logp * (act - p)
            if ent_coef:  # - ent_coef * mean(H):  d/d logits = ent_coef / n * p * (log p + H)
                g_out += (ent_coef / n) * p * (log_p + entropy)

        # the five means as one product with a vector of 1/n
        rows = (pg_n * n, value_losses, entropy, log_ratio * log_ratio, ratio != ratio_clipped)
        return xp.concatenate(rows).reshape(5, n) @ mean_weights

    def _clip_and_step(self, max_grad_norm: float, lr: float, check=None) -> torch.Tensor:
        """clip_grad_norm_ then Adam, on the flat buffers (ppo2.speed.adam_step_). Returns the norm.

        Raises NonFiniteLossError, with nothing changed, if the gradient norm or `check` (the step's loss
        statistics) is NaN/inf."""
        norm = torch.linalg.vector_norm(self.grad)
        total = float(norm)
        if not math.isfinite(total) or (check is not None and not math.isfinite(float(check.sum()))):
            raise NonFiniteLossError(f"gradient norm {total}; the step was not applied")
        coef = max_grad_norm / (total + 1e-6)  # clip_grad_norm_'s coefficient
        if coef < 1.0:
            self.grad.mul_(coef)
        group = self.optimizer.param_groups[0]
        self.step += 1
        self.step_t.fill_(self.step)
        adam_step_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [self.step_t], lr, group["betas"],
                   group["eps"])
        return norm

    # (update() enters inference mode once for all its steps: an entry costs more than a small step's operations)
    loss_and_grad = torch.inference_mode()(_loss_and_grad)

    # ---------------------------------------------------------------------------------------------
    # the update (same contract as ppo2.update.ppo_update)
    # ---------------------------------------------------------------------------------------------
    def _epochs(self, epoch, update_epochs, target_kl, all_reduce_mean, any_rank, loss_args,
                max_grad_norm) -> tuple[list[Any], int]:
        """The epochs of `update` (in inference mode): `epoch()` yields each minibatch's statistics once its gradient
        is in self.grad (`_flat_epoch`, `_sequence_epoch`); each is applied before the next is computed. Returns
        every step's (5,) statistics and the epochs run."""
        lr = self.optimizer.param_groups[0]["lr"]
        terms, epochs_run = [], 0
        for _ in range(update_epochs):
            epoch_terms = []
            for stats in epoch():
                self._apply(stats, all_reduce_mean, max_grad_norm, lr, loss_args)
                epoch_terms.append(stats)
            terms += epoch_terms
            epochs_run += 1
            if target_kl is not None:
                over = bool(self.xp.stack(epoch_terms)[:, 3].mean() * 0.5 > target_kl)
                if any_rank(over) if any_rank else over:
                    break
        return terms, epochs_run

    def _flat_epoch(self, fields, num_minibatches: int, normalize: Callable | None, loss_args) -> Callable:
        """One epoch's minibatch gradients over a flat batch (`fields`: x, actions, ..., masks), drawn as
        ppo_update draws them: minibatches of a random permutation (one minibatch: the whole batch)."""
        N, M = fields[0].shape[0], num_minibatches
        size = -(-N // M)  # torch.chunk's minibatch size (the last one is smaller when M does not divide N)
        cached = []  # (one minibatch: every epoch reads the same arrays)

        def epoch():
            # each field is gathered once per epoch, so every minibatch is a contiguous slice
            if M == 1:
                shuffled = fields
            else:
                perm = torch.randperm(N, device=fields[0].device)
                shuffled = [f.index_select(0, perm) for f in fields]
            for start in range(0, N, size):
                minibatch = shuffled if M == 1 else [f[start:start + size] for f in shuffled]
                mb_x, mb_act, mb_nlp, mb_v, adv, mb_ret, *mb_mask = minibatch
                if normalize is not None:
                    adv = normalize(adv)
                if M > 1 or not cached:
                    cached[:] = [self._head_inputs(mb_act, mb_nlp, mb_v, adv, mb_ret, *mb_mask)]
                yield self._step_gradient(mb_x, cached[0], *loss_args)
        return epoch

    def _sequence_epoch(self, batch, num_minibatches: int, normalize: Callable | None, loss_args) -> Callable:
        """One epoch's minibatch gradients over a recurrent policy's `SequenceBatch`: minibatches of whole
        sequences, drawn as ppo_update draws them (`SequenceBatch.minibatches`)."""
        def epoch():
            for mb in batch.minibatches(num_minibatches):
                yield self._sequence_gradient(mb, normalize, loss_args)
        return epoch

    def _apply(self, stats, all_reduce_mean, max_grad_norm: float, lr: float, loss_args) -> None:
        """A step's gradient (in self.grad) averaged across ranks, clipped and applied by Adam."""
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

    # ---------------------------------------------------------------------------------------------
    # a recurrent policy: the LSTM under autograd, the layers after it written out
    # ---------------------------------------------------------------------------------------------
    def _sequence_gradient(self, mb, normalize: Callable | None, loss_args) -> Any:
        """One minibatch of whole sequences (a `SequenceBatch`): the LSTM forward on torch's kernel (ppo2/speed.py)
        with autograd, over every row; the towers, heads and loss through `_step_gradient` on the rows the loss reads
        (`SequenceBatch.loss_rows`, as ppo_update's `SequenceBatch.evaluate` takes them), which also gives d loss / d
        the LSTM's outputs; then the LSTM's backward from there, its gradient into self.grad. Returns the
        statistics."""
        from .speed import lstm_sequences

        T, n = mb.starts.shape
        keep, rows = mb.loss_rows()
        adv = rows.advantages
        if normalize is not None:
            adv = normalize(adv)
        head_inputs = self._head_inputs(self.one_hot(rows.actions), rows.neg_log_probs, rows.values, adv, rows.returns,
                                        rows.masks)
        with torch.inference_mode(False), torch.enable_grad():
            weights = [self.p[key].detach().requires_grad_() for key in self.lstm_keys]  # (views of self.flat)
            x = self.model.normalize(mb.obs).reshape(T, n, -1)
            x = x.clone() if x.is_inference() else x  # (the kernel saves its input; minibatches are cut in inference)
            (out,), _, _ = lstm_sequences([weights], x, mb.state[0], mb.state[1], mb.starts.to(x.dtype))
            out = out.reshape(T * n, -1)
        features = out.detach() if keep is None else out.detach().index_select(0, keep)
        g_x = torch.empty_like(features)
        stats = self._step_gradient(features, head_inputs, *loss_args, g_x=g_x)
        with torch.inference_mode(False):
            # (g_out must not be an inference tensor: the product saves it for its backward)
            g_out = g_x.clone() if keep is None else torch.zeros_like(out).index_copy_(0, keep, g_x)
            # (the vector-Jacobian product through a scalar: d sum(out * g) / d out = g exactly; torch.autograd.grad
            # given grad_outputs imports torch.fx's symbolic shapes, sympy included, ~0.7 s on first use)
            grads = torch.autograd.grad((out * g_out).sum(), weights)
        copy_tensors_([self.g[key] for key in self.lstm_keys], list(grads))
        return stats

    @torch.no_grad()  # push() must not make inference tensors; the steps inside run in inference_mode
    def update(self, batch, *, update_epochs: int, num_minibatches: int, clip_range: float, ent_coef: float,
               vf_coef: float, max_grad_norm: float, norm_adv: bool, clip_value_loss: bool = True,
               target_kl: float | None = None, all_reduce_mean: Callable[[torch.Tensor], None] | None = None,
               any_rank: Callable[[bool], bool] | None = None,
               all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """update_epochs x num_minibatches gradient steps; returns the same statistics as `ppo_update` (its
        arguments, and the ranks' collectives, the same too)."""
        self.pull()
        loss_args = (clip_range, ent_coef, vf_coef, clip_value_loss)
        normalize = (lambda adv: normalize_advantages(adv, all_reduce_sum)) if norm_adv else None
        if self.lstm_keys:
            epoch = self._sequence_epoch(batch, num_minibatches, normalize, loss_args)
        else:
            epoch = self._flat_epoch(*self._flat_fields(batch, num_minibatches, normalize), loss_args)
        try:
            with torch.inference_mode():  # entered once for every step
                terms, epochs_run = self._epochs(epoch, update_epochs, target_kl, all_reduce_mean, any_rank, loss_args,
                                                 max_grad_norm)
        finally:
            self.push()  # (after a NonFiniteLossError too: the model keeps the last good parameters)
        return self._summary(terms, epochs_run, ent_coef, vf_coef)

    def _flat_fields(self, batch, num_minibatches: int, normalize: Callable | None) -> tuple:
        """(fields, num_minibatches, normalize) of `_flat_epoch` for a flat batch."""
        x = self.model.normalize(batch.obs)
        fields = (x, self.one_hot(batch.actions), batch.neg_log_probs, batch.values, batch.advantages, batch.returns)
        if batch.masks is not None:
            fields += (batch.masks,)
        if num_minibatches == 1 and normalize is not None:  # one minibatch: the same normalised advantages every epoch
            fields = (*fields[:4], normalize(fields[4]), *fields[5:])
            normalize = None
        return fields, num_minibatches, normalize

    def _summary(self, terms, epochs_run: int, ent_coef: float, vf_coef: float) -> dict[str, float]:
        pg_loss, value_loss, entropy, approx_kl, clip_fraction = _scaled(self.xp.stack(terms).mean(0).tolist())
        loss = pg_loss - ent_coef * entropy + vf_coef * value_loss  # the mean of the per-step losses (it is linear)
        return {"loss": loss, "pg_loss": pg_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": approx_kl,
                "clip_fraction": clip_fraction, "epochs": epochs_run}
