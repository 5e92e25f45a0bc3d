"""Step 4 of an update: the clipped-surrogate (or A2C) gradient steps, with autograd.

`ppo_update` is the reference to read next to the paper: a forward pass, `ppo_loss`, `loss.backward()`,
global-norm clipping, an optimizer step. For the built-in MLP with Adam (behind one shared LSTM too) the trainer
runs the same update with hand-derived gradients (ppo2/fused.py), tested equal to this one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .errors import NonFiniteLossError
from .losses import a2c_loss, normalize_advantages, ppo_loss
from .observations import tree_map
from .speed import select_rows

__all__ = ["Batch", "SequenceBatch", "ppo_update", "gradient_step", "explained_variance"]


@dataclass
class Batch:
    """One flattened rollout, on the training device."""
    obs: Any  # (B, ...) tensor, or a dict of them for Dict observations
    actions: torch.Tensor
    neg_log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor | None = None  # (B, mask size) bool, for a policy that masks actions (ppo2/masks.py)

    def __len__(self) -> int:
        return self.actions.shape[0]

    def minibatches(self, num_minibatches: int) -> list["Batch"]:
        """One epoch's minibatches: the rows of a random permutation in `num_minibatches` chunks (one minibatch:
        the batch itself; the loss is a mean, so the order does not matter)."""
        if num_minibatches == 1:
            return [self]
        permutation = torch.randperm(len(self), device=self.actions.device)
        return [self.index(idx) for idx in permutation.chunk(num_minibatches)]

    def index(self, idx: torch.Tensor) -> "Batch":
        return Batch(tree_map(lambda t: select_rows(t, idx), self.obs),
                     *(t.index_select(0, idx) for t in (self.actions, self.neg_log_probs, self.values,
                                                        self.advantages, self.returns)),
                     masks=None if self.masks is None else self.masks.index_select(0, idx))

    def evaluate(self, model: nn.Module) -> tuple["Batch", tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(the rows the loss reads, (V(s), -log pi(a|s), entropy) of them) under `model`."""
        return self, model.value_and_evaluate(self.obs, self.actions, self.masks)


@dataclass
class SequenceBatch(Batch):
    """A recurrent policy's rollout as N sequences of T steps (each env's rollout, or with bptt_steps a piece of it),
    time-major (row t * N + i), every row kept (the autoreset rows carry the LSTM state from one episode to the next;
    `valid` leaves them out of the loss), with the state before each sequence's first step and which rows begin an
    episode (ppo2/memory.py). Minibatches are sets of whole sequences: truncated BPTT, as CleanRL's ppo_atari_lstm."""
    valid: torch.Tensor = field(default=None)  # (T * N,) bool
    state: tuple = field(default=None)  # (h, c), each (L, N, H)
    starts: torch.Tensor = field(default=None)  # (T, N) 0/1

    @property
    def num_sequences(self) -> int:
        return self.starts.shape[1]

    def minibatches(self, num_minibatches: int) -> list["Batch"]:
        """One epoch's minibatches of whole sequences (truncated BPTT): a random permutation of the sequences in
        `num_minibatches` chunks (one minibatch: the batch itself)."""
        if num_minibatches == 1:
            return [self]
        permutation = torch.randperm(self.num_sequences, device=self.actions.device)
        return [self.sequences(idx) for idx in permutation.chunk(num_minibatches)]

    def sequences(self, idx: torch.Tensor) -> "SequenceBatch":
        """The sequences `idx` (n of them), still time-major: T * n rows."""
        T, N = self.starts.shape
        rows = (torch.arange(T, device=idx.device)[:, None] * N + idx[None, :]).reshape(-1)
        picked = Batch.index(self, rows)
        return SequenceBatch(picked.obs, picked.actions, picked.neg_log_probs, picked.values, picked.advantages,
                             picked.returns, picked.masks, valid=self.valid.index_select(0, rows),
                             state=tuple(s.index_select(1, idx) for s in self.state),
                             starts=self.starts.index_select(1, idx))

    def loss_rows(self) -> tuple[torch.Tensor | None, Batch]:
        """(the indices of the rows the loss reads, or None for all; those rows, observations left out): the
        autoreset rows run through the LSTM but stay out of the loss."""
        if bool(self.valid.all()):
            return None, self
        keep = self.valid.nonzero().squeeze(1)
        return keep, Batch(None, *(t.index_select(0, keep) for t in (self.actions, self.neg_log_probs, self.values,
                                                                     self.advantages, self.returns)),
                           masks=None if self.masks is None else self.masks.index_select(0, keep))

    def evaluate(self, model: nn.Module) -> tuple[Batch, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        out = model.value_and_evaluate(self.obs, self.actions, self.masks, (self.state, self.starts))
        keep, rows = self.loss_rows()
        return rows, (out if keep is None else tuple(t.index_select(0, keep) for t in out))


def gradient_step(model: nn.Module, optimizer: torch.optim.Optimizer, out: Any, max_grad_norm: float,
                  average_gradients: Callable[[nn.Module], None] | None = None,
                  params: list[torch.Tensor] | None = None) -> torch.Tensor:
    """One optimizer step on `out.loss` (a `ppo2.losses.PPOLoss`): backward, the gradients averaged across ranks
    (torchrun), the global norm clipped to `max_grad_norm`, the step. Returns the norm before clipping. A NaN/inf
    loss or gradient raises NonFiniteLossError with nothing applied (the update keeps the last good weights).
    `ppo_update`, the hub's `train_fn` and nothing else step the autograd path through here. `params`: the list of
    model.parameters(), where the caller made it once (walking the module tree costs more than a small step)."""
    if not torch.isfinite(out.loss):
        raise NonFiniteLossError(
            f"loss is {out.loss.item()} (pg_loss {out.pg_loss.item()}, value_loss {out.value_loss.item()}, "
            f"entropy {out.entropy_mean.item()}); the update was not applied")
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if average_gradients is not None:
        average_gradients(model)
    norm = nn.utils.clip_grad_norm_(model.parameters() if params is None else params, max_grad_norm, foreach=True)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"the gradient norm is {norm.item()}; the update was not applied")
    optimizer.step()
    return norm


def ppo_update(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, *, algo: str, update_epochs: int,
               num_minibatches: int, clip_range: float, ent_coef: float, vf_coef: float, max_grad_norm: float,
               norm_adv: bool, clip_value_loss: bool = True, target_kl: float | None = None,
               average_gradients: Callable[[nn.Module], None] | None = None,
               any_rank: Callable[[bool], bool] | None = None,
               all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """update_epochs x num_minibatches gradient steps on the clipped surrogate (or A2C) loss. Under several ranks,
    `average_gradients` averages each step's gradients and `all_reduce_sum` makes the advantages' normalisation that
    of the whole minibatch (ppo2.losses.normalize_advantages).

    Returns the mean of each loss term over the steps taken, plus how many epochs ran."""
    model.train()
    params = list(model.parameters())
    terms: list[torch.Tensor] = []
    epochs_run = 0
    for epoch in range(update_epochs):
        epoch_kl = []
        for mb in batch.minibatches(num_minibatches):  # (a SequenceBatch: whole sequences)
            mb, (value_f, neg_log_probs, entropy) = mb.evaluate(model)
            advantages = mb.advantages
            if norm_adv:
                advantages = normalize_advantages(advantages, all_reduce_sum)
            if algo == "a2c":
                out = a2c_loss(mb.returns, value_f, neg_log_probs, entropy, advantages, mb.neg_log_probs, ent_coef, vf_coef)
            else:
                out = ppo_loss(mb.returns, value_f, neg_log_probs, entropy, advantages, mb.values, mb.neg_log_probs,
                               clip_range, ent_coef, vf_coef, clip_value=clip_value_loss)
            gradient_step(model, optimizer, out, max_grad_norm, average_gradients, params)
            terms.append(torch.stack(out).detach())
            epoch_kl.append(out.approx_kl)
        epochs_run += 1
        if target_kl is not None:
            over = bool(torch.stack(epoch_kl).mean() > target_kl)
            if any_rank(over) if any_rank else over:
                break
    means = torch.stack(terms).mean(0).tolist()
    names = ("loss", "pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
    return {**dict(zip(names, means)), "epochs": epochs_run}


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    var = returns.var()
    return float("nan") if var == 0 else float(1 - (returns - values).var() / var)
