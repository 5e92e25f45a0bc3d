"""The recurrent part of a recurrent policy: an LSTM between the encoder and the latent MLP.

    obs -> encoder -> features -> LSTM (state h, c) -> latent MLP -> heads

The state is a pair (h, c), each of shape (L, N, H): L = 1 LSTM shared by actor and critic (the default), or
L = 2 (the actor's, then the critic's: `shared_lstm=False`), N environments (or sequences), H = `lstm_hidden`.
That is stable-baselines3's `lstm_states` layout, which `predict` takes and returns.

The state is zeroed before every step whose observation starts an episode (`episode_start`); within a rollout,
training runs whole environment sequences from the state they started with (truncated BPTT over the rollout, as
CleanRL's ppo_atari_lstm), or `bptt_steps` pieces of them from the states the rollout had there, so the update
sees exactly the state the actions were sampled with.

The LSTM's maths is ppo2/network.py's (`lstm_cell`, `lstm_sequence`); the parameters are torch.nn.LSTM modules
(their names and gate order, `lstms.0.weight_ih_l0`, ...).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from . import network

__all__ = ["LSTMMemory", "zero_state", "check_state"]


class LSTMMemory(nn.Module):
    def __init__(self, input_dim: int, hidden: int, towers: int):
        super().__init__()
        self.input_dim, self.hidden, self.towers = int(input_dim), int(hidden), int(towers)
        self.lstms = nn.ModuleList(nn.LSTM(self.input_dim, self.hidden) for _ in range(self.towers))

    def reset_parameters(self) -> None:
        """Orthogonal weights (gain 1), zero biases: CleanRL's and stable-baselines3's LSTM initialisation."""
        from .init import orthogonal_

        for lstm in self.lstms:
            for name, param in lstm.named_parameters():
                if "weight" in name:
                    orthogonal_(param, gain=1.0)
                else:
                    nn.init.zeros_(param)

    @staticmethod
    def weights(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_ih', W_hh', b_ih + b_hh) of one LSTM, as network.lstm_sequence takes them."""
        return lstm.weight_ih_l0.T, lstm.weight_hh_l0.T, lstm.bias_ih_l0 + lstm.bias_hh_l0

    @staticmethod
    def parameters_of(lstm: nn.LSTM) -> tuple[torch.Tensor, ...]:
        """(W_ih, W_hh, b_ih, b_hh) of one LSTM, as torch's LSTM kernel takes them (ppo2/speed.py)."""
        return lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], starts: torch.Tensor):
        """x (T, n, F), state (h, c) each (L, n, H), starts (T, n) 0/1 -> ([outputs (T, n, H) per LSTM], (h, c) after
        the last step; None where a sequence of T > 1 steps has episode starts after its first).
        Runs on torch's LSTM kernel (ppo2/speed.py), except while tracing for export: network.lstm_sequence."""
        from .speed import lstm_sequences

        starts = starts.to(x.dtype)
        if not (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            outs, h, c = lstm_sequences([self.parameters_of(lstm) for lstm in self.lstms], x, state[0], state[1],
                                        starts, self.training)
            # (None: a sequence with episode starts inside ran with reset steps inserted, ppo2/speed.py; the state
            # after it is not computed, and nothing that runs sequences reads it)
            return outs, (None if h is None else (h, c))
        outs, hs, cs = [], [], []
        for k, lstm in enumerate(self.lstms):
            out, h, c = network.lstm_sequence(x, state[0][k], state[1][k], starts, *self.weights(lstm))
            outs.append(out)
            hs.append(h)
            cs.append(c)
        return outs, (torch.stack(hs), torch.stack(cs))

    def numpy_arrays(self) -> list[tuple[np.ndarray, ...]]:
        """[(W_ih', W_hh', b_ih, b_hh), ...] per LSTM as numpy views of the parameters (they follow optimizer steps)."""
        return [(lstm.weight_ih_l0.detach().numpy().T, lstm.weight_hh_l0.detach().numpy().T,
                 lstm.bias_ih_l0.detach().numpy(), lstm.bias_hh_l0.detach().numpy()) for lstm in self.lstms]

    @staticmethod
    def step_numpy(arrays: list, x: np.ndarray, state: tuple[np.ndarray, np.ndarray], starts: np.ndarray):
        """One step on numpy arrays (the collector's small-batch path; `arrays` from `numpy_arrays`): x (n, F) ->
        ([outputs (n, H) per LSTM], (h, c) each (L, n, H))."""
        keep = (~starts.astype(np.bool_))[None, :, None]
        h0, c0 = state[0] * keep, state[1] * keep
        outs, cs = [], []
        for k, (w_ih_t, w_hh_t, b_ih, b_hh) in enumerate(arrays):
            h, c = network.lstm_cell(network.dense(x, w_ih_t, b_ih + b_hh), h0[k], c0[k], w_hh_t)
            outs.append(h)
            cs.append(c)
        return outs, (np.stack(outs), np.stack(cs))

    def zero_state(self, n: int, like: Any = None):
        return zero_state(self.towers, n, self.hidden, like)


def zero_state(towers: int, n: int, hidden: int, like: Any = None):
    """(h, c) of zeros, (L, n, H) each: torch tensors on `like`'s device, or numpy arrays when `like` is numpy/None."""
    if isinstance(like, torch.Tensor):
        z = torch.zeros(towers, n, hidden, device=like.device, dtype=torch.float32)
        return z, z.clone()
    return np.zeros((towers, n, hidden), np.float32), np.zeros((towers, n, hidden), np.float32)


def check_state(state: Any, towers: int, n: int, hidden: int, where: str = "state") -> tuple:
    """A (h, c) pair of (L, n, H) finite arrays or tensors, or a ValueError saying what was expected and what came."""
    expected = (towers, n, hidden)
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise ValueError(f"{where} must be the (h, c) pair that predict returned, each of shape {expected}; got "
                         f"{type(state).__name__}")
    out = []
    for name, part in zip(("h", "c"), state):
        shape = tuple(getattr(part, "shape", ()))
        if shape != expected:
            raise ValueError(f"{where}: {name} has shape {shape}, expected {expected} (LSTMs, environments, hidden size)")
        arr = part if isinstance(part, torch.Tensor) else np.asarray(part, np.float32)
        finite = bool(torch.isfinite(arr).all()) if isinstance(arr, torch.Tensor) else bool(np.isfinite(arr).all())
        if not finite:
            raise ValueError(f"{where}: {name} holds NaN/inf values; expected the finite state predict returned")
        out.append(arr)
    return tuple(out)
