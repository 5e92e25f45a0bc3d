"""Speed devices: faster ways to compute the same definitions, each with its reason. Timings live in benchmarks/.

The built-in image encoder (the Nature CNN in ppo2/encoders.py) is one definition; how it runs is decided here:

- channels_last. oneDNN's CPU convolutions (and cuDNN's on recent GPUs) run fastest with the channel axis last in
  memory; in PyTorch's default layout every convolution first reorders its input. Each batch of frames goes in
  channels-last instead: same numbers, another layout. The weights keep the default layout: fused Adam treats a
  parameter and its moments as flat memory, so a channels-last weight with moments restored from a checkpoint in
  the default layout would be updated wrongly (tests/test_speed.py pins this).
- bfloat16 autocast for the encoder, where the hardware computes in bfloat16 natively (CPUs with AMX or
  AVX512_BF16; GPUs that support bfloat16). Master weights, the heads, the loss and the optimizer stay float32;
  only the encoder's matmuls and convolutions run in bfloat16, and its features return as float32.
  `benchmarks/atari_throughput.py` measures the gain, `benchmarks/compare.py` that learning is unchanged.

- one preprocessing per rollout. The update reads every frame once per epoch, and scaling uint8 frames to the
  encoder's input is a pass over all of them; `preprocess_once` does it once for the whole rollout (while it fits
  in PREPROCESS_ONCE_BYTES) and the minibatches slice the result. The same numbers, computed once.

`Precision` says which of these a model uses; `PPO2.set_precision` applies it.

The built-in MLP (ppo2/network.py) is one definition too. On a 64-unit MLP every torch operation costs more in
dispatch than in arithmetic, so:

- numpy's BLAS on the trainer's thread count (`limit_blas_threads`): the numpy policy steps below call numpy's BLAS
  (OpenBLAS), which splits even an (8, 256) x (256, 1024) product across every core; on products this small the
  threads cost more than they share, and on a machine with another busy process far more. The trainer runs numpy's
  BLAS on `torch_threads` threads, as it runs torch (benchmarks/recurrent.py measures the effect).
- numpy for small batches (`numpy_policy`): predict, evaluation and the collector's policy step run
  ppo2/network.py's functions on numpy views of the weights for up to NUMPY_MAX_BATCH rows on the CPU, where a
  numpy call costs a fraction of a torch dispatch. The same functions, the same weights, the same torch random
  numbers (tests/test_model.py checks the actions agree). Batches above that size, and other devices, run torch.
- one uniform draw per rollout (`ppo2.distributions.UniformBlock`): the rollout's categorical draws in one call.
- the hand-derived update (ppo2/fused.py): autograd, torch.distributions, clip_grad_norm_ and torch.optim dispatch
  dozens of small operations per step; the fused update keeps parameters, gradients and Adam's moments in flat
  buffers and writes the backward out (tested equal to autograd).
- `tanh_`: numpy's SIMD tanh where numpy has AVX512_SKX, else 2*sigmoid(2x)-1 through torch's vectorised sigmoid,
  in place of torch's CPU tanh on the fused step's activations (benchmarks/update_step.py times both on the same
  copy of the inputs; the margin depends on the host). For tensors outside autograd only (the fused update).
- three private torch kernels, each behind a public fallback that computes the same numbers (tests/test_speed.py
  runs both): `tanh_backward_` (aten's tanh_backward; fallback grad * (1 - h^2)), `adam_step_` (the kernel of
  torch.optim.Adam(fused=True), for the fused update's flat buffers and ppo2.optim.AdamState's steps; fallback:
  that optimizer), `copy_tensors_`
  (torch._foreach_copy_; fallback: one copy_ per tensor). USE_PRIVATE_KERNELS switches them off.

The LSTM of a recurrent policy (ppo2/memory.py) is ppo2/network.py's `lstm_cell`/`lstm_sequence`; in torch:

- `lstm_sequences`: torch's LSTM kernel (torch.nn.LSTM's forward: the same gates, in C++) over the whole sequence in
  one call, with one reset step inserted before each episode start inside it: an extra input, wired by a constant
  weight column to a very negative input and forget gate, makes the kernel's own step output the zero state exactly
  (and pass back a zero gradient). The Python loop of network.lstm_sequence dispatches a dozen operations per step
  forward and as many backward; the kernel runs the sequence in one call, and the reset steps add one step per
  episode start instead of a padded copy of the sequence per episode (tests/test_recurrent.py checks outputs and
  gradients equal network.lstm_sequence's; benchmarks/recurrent.py times training). The fused update (ppo2/fused.py)
  runs it on its flat buffers' views for a shared LSTM. Tracing for export runs network.lstm_sequence itself.

Under several ranks (ppo2/distributed.py) the evaluation and a confirmation are split, where the envs allow it:
each rank plays its share of the episodes (`Trainer._play`), seeded as one process seeds them, its sampled
actions drawn as that process's rows would be (`ppo2.distributions.drawn_as_rows`: the whole batch's random numbers,
this rank's rows kept). The same games, action for action (tests/test_distributed.py; under a bfloat16 encoder, up
to the rounding of a batch of another size), in about the time of one share (benchmarks/eval_split.py).

benchmarks/update_step.py, benchmarks/fused_ab.py and benchmarks/profile_cartpole.py measure these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import network
from .config import PRECISIONS
from .rundir import cpu_model_and_isa

__all__ = ["Precision", "native_bfloat16", "resolve_precision", "run_encoder", "scale_frames", "preprocess_once",
           "select_rows", "PREPROCESS_ONCE_BYTES", "PRECISIONS", "NUMPY_MAX_BATCH", "numpy_policy", "NumpyPolicy",
           "tanh_", "tanh_backward_", "adam_step_", "copy_tensors_", "USE_PRIVATE_KERNELS", "lstm_sequences"]


@dataclass(frozen=True)
class Precision:
    """How the image encoder runs: its autocast dtype (None: float32) and whether frames go channels-last."""
    autocast: torch.dtype | None = None
    channels_last: bool = False

    @property
    def name(self) -> str:
        return "bfloat16" if self.autocast is torch.bfloat16 else "float32"


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matmuls and convolutions natively (not emulated in float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"amx_bf16", "avx512_bf16"} & set(cpu_model_and_isa()[1])) and torch.backends.mkldnn.is_available()
    return False


def resolve_precision(precision: str, device: torch.device | str, has_cnn: bool) -> Precision:
    """The `Precision` for a model with (or without) a built-in CNN on `device`: "auto" takes bfloat16 where it is
    native, "float32" and "bfloat16" force one (bfloat16 where it is emulated is refused: slower, and not tested)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not has_cnn:
        return Precision()
    native = native_bfloat16(device)
    if precision == "bfloat16" and not native:
        raise ValueError(f"precision bfloat16 needs native bfloat16 on {device} (CPU: AMX or AVX512_BF16; CUDA: "
                         "bf16 support); use auto or float32")
    use_bf16 = precision == "bfloat16" or (precision == "auto" and native)
    return Precision(autocast=torch.bfloat16 if use_bf16 else None, channels_last=True)


def scale_frames(x: torch.Tensor, precision: Precision) -> torch.Tensor:
    """(N, C, H, W) frames in [0, 1] for the encoder: uint8 pixels times 1/255 in float32 (the definition), in the
    layout and dtype the encoder takes. The layout changes while the pixels are still bytes (a quarter of the memory
    to move); under bfloat16 autocast the product is rounded to bfloat16 here, exactly as the convolution would
    round its float32 input. Frames that are floats already (scaled by the caller) are only converted."""
    if precision.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.float().mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x.float()
    return x.to(precision.autocast) if precision.autocast is not None else x


def _channels_last(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _channels_last(v) for k, v in x.items()}
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def run_encoder(encoder: nn.Module, x: Any, precision: Precision) -> torch.Tensor:
    """encoder(x) as `precision` says: channels-last frames, the encoder under bfloat16 autocast; float32 out."""
    if precision.channels_last:
        x = _channels_last(x)
    if precision.autocast is None:
        return encoder(x)
    device = next(encoder.parameters()).device.type
    with torch.autocast(device_type=device, dtype=precision.autocast):
        out = encoder(x)
    return out.float()


PREPROCESS_ONCE_BYTES = 512 << 20


def preprocess_once(model: nn.Module, obs: Any) -> Any:
    """The rollout's observations through `model.preprocess`, wrapped as `Preprocessed`, for a model with a built-in
    image encoder whose preprocessed rollout fits in PREPROCESS_ONCE_BYTES; otherwise `obs` unchanged."""
    from .observations import Preprocessed, has_images

    spec = model.obs_spec
    if model.encoder is None or model.encoder_name == "custom" or not has_images(spec):
        return obs
    element = 2 if model.precision.autocast is torch.bfloat16 else 4
    frames = obs if isinstance(obs, torch.Tensor) else next(iter(obs.values()))
    per_row = sum(v[0].numel() for v in (obs.values() if isinstance(obs, dict) else [obs]))
    if frames.shape[0] * per_row * element > PREPROCESS_ONCE_BYTES:
        return obs
    with torch.no_grad():
        return Preprocessed(model.preprocess(obs))


def select_rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t.index_select(0, idx), keeping a channels-last batch of frames channels-last (index_select returns the default
    layout, which the encoder would copy back)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)
    return t.index_select(0, idx)


# ------------------------------------------------------------------------------------------------------
# The built-in MLP on small CPU batches: numpy
# ------------------------------------------------------------------------------------------------------
def limit_blas_threads(n: int) -> None:
    """numpy's BLAS runs on `n` threads from now on, process-wide, as torch.set_num_threads does for torch."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n), user_api="blas")


NUMPY_MAX_BATCH = 32


class NumpyPolicy:
    """The policy tower of a `PPO2` with the built-in MLP, on numpy views of its current weights: ppo2/network.py's
    functions run on arrays instead of tensors. Views share memory with the parameters, so optimizer steps and
    `load_state_dict` (an in-place copy) are seen at once; `numpy_policy` makes a new one when a tensor is replaced."""

    def __init__(self, model, layers: list, head_layer: tuple, norm: tuple | None, key: tuple):
        self.layers, self.head_layer, self.norm, self.key = layers, head_layer, norm, key
        self.head = model.action_head
        self.obs_clip = model.obs_clip
        # a recurrent policy's LSTM, stepped on numpy views of its parameters (ppo2/memory.py)
        self.memory = model.memory
        self.lstm_arrays = model.memory.numpy_arrays() if model.memory is not None else None

    def output(self, obs: np.ndarray, mask: np.ndarray | None = None, memory: tuple | None = None):
        """(the output layer (logits or Gaussian mean, masked), the LSTM state after or None) for raw (N, input_dim)
        observations; `memory` = (state, starts) for a recurrent policy."""
        x = np.asarray(obs, dtype=np.float32)
        if self.norm is not None:
            x = network.standardize(x, *self.norm, self.obs_clip)
        state = None
        if self.memory is not None:
            outs, state = self.memory.step_numpy(self.lstm_arrays, x, *memory)
            x = outs[0]
        out = network.dense(network.mlp(x, self.layers)[-1], *self.head_layer)
        return (out if mask is None else self.head.mask(out, mask)), state

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action the env takes (feed-forward policies without masks)."""
        return self.head.to_env(self.head.mode(self.output(obs)[0]))

    def sample(self, obs: np.ndarray, uniforms: Callable | None = None, mask: np.ndarray | None = None,
               memory: tuple | None = None) -> tuple[np.ndarray, tuple | None]:
        """(a sampled action (unclipped), from torch's generator as the torch path draws it; the LSTM state after or
        None); built-in distributions only (`head.builtin`)."""
        out, state = self.output(obs, mask, memory)
        return self.head.sample(out, uniforms), state


def numpy_policy(model) -> NumpyPolicy | None:
    """A `NumpyPolicy` for `model`'s current weights, or None where the numpy path does not apply: an encoder or
    networks of your own, no hidden layers, weights that are not float32 on the CPU, a head without a numpy path.
    Cached on the model while every tensor it views is the same storage (data_ptr)."""
    if (model.custom_latent or model.encoder is not None or model.latent_layers == 0
            or not model.action_head.has_numpy_path()):
        return None
    latent = model.latent if model.shared_latent else model.policy_latent
    head = model.action_head.output_layer()
    sources = [t for layer in latent.linears() for t in (layer.weight, layer.bias)] + [head.weight, head.bias]
    if model.memory is not None:
        sources += list(model.memory.parameters())
    if model.action_head.spec["type"] == "Box":
        sources.append(model.action_head.log_std)
    if model.normalize_obs:
        sources += model.obs_scale()
    key = tuple(t.data_ptr() for t in sources)
    cached = model.__dict__.get("_numpy_policy")
    if cached is not None and cached.key == key:
        return cached
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in sources):
        return None
    arrays = [t.detach().numpy() for t in sources]
    n = 2 * (model.latent_layers + 1)
    layers = [(arrays[i].T, arrays[i + 1]) for i in range(0, n, 2)]
    norm = (arrays[-2], arrays[-1]) if model.normalize_obs else None
    policy = NumpyPolicy(model, layers[:-1], layers[-1], norm, key)
    model.__dict__["_numpy_policy"] = policy
    return policy


# ------------------------------------------------------------------------------------------------------
# tanh on the CPU, outside autograd
# ------------------------------------------------------------------------------------------------------
def _numpy_tanh_is_simd() -> bool:
    """numpy 2.x vectorises float32 tanh with AVX512_SKX; on AVX2-only x86 hosts (an AMD EPYC, measured) it is
    scalar, and 2*sigmoid(2x)-1 through torch's vectorised sigmoid is faster for large batches. A CPU feature,
    not a timing, picks the formula: the same on every run on a given platform."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        return True
    return bool(__cpu_features__.get("AVX512_SKX", False)) or not any(
        __cpu_features__.get(k, False) for k in ("AVX2", "AVX"))  # non-x86 (NEON, ...): keep numpy's


NUMPY_SIMD_TANH = _numpy_tanh_is_simd()
SIGMOID_FORM_MIN_NUMEL = 4096  # below this numpy's one call is cheaper than three torch operations
_MINUS_ONE = torch.tensor(-1.0)


def tanh_formula(numel: int) -> str:
    """Which formula `tanh_` uses on the CPU for a contiguous float32 tensor of `numel` elements."""
    return "numpy tanh" if NUMPY_SIMD_TANH or numel < SIGMOID_FORM_MIN_NUMEL else "2*sigmoid(2x)-1"


def tanh_(z: torch.Tensor) -> torch.Tensor:
    """tanh, in place (tensors outside autograd). On the CPU: numpy's SIMD tanh (within 1.4 ulp of the exact
    tanh; torch's: 0.5 ulp) where numpy has one, else for large batches 2*sigmoid(2x) - 1 (absolute error
    <= 2.5e-7). Elsewhere torch's."""
    if z.device.type == "cpu" and z.dtype == torch.float32 and z.is_contiguous():
        if tanh_formula(z.numel()) == "numpy tanh":
            a = z.numpy()  # the same memory
            np.tanh(a, out=a)
            return z
        z.mul_(2.0).sigmoid_()
        return torch.add(_MINUS_ONE, z, alpha=2, out=z)
    return z.tanh_()


# ------------------------------------------------------------------------------------------------------
# private torch kernels, each behind its public equivalent
# ------------------------------------------------------------------------------------------------------
USE_PRIVATE_KERNELS = True


def _aten_tanh_backward():
    try:
        return torch.ops.aten.tanh_backward.grad_input
    except (AttributeError, RuntimeError):
        return None


_TANH_BACKWARD = _aten_tanh_backward()


def tanh_backward_(grad: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """d tanh(z)/dz applied to `grad`, in place: grad * (1 - h^2) with h = tanh(z) (autograd's own kernel)."""
    if USE_PRIVATE_KERNELS and _TANH_BACKWARD is not None:
        return _TANH_BACKWARD(grad, h, grad_input=grad)
    return grad.mul_(1.0 - h * h)


def adam_step_(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
               exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], lr: float, betas: tuple[float, float],
               eps: float) -> None:
    """One Adam step (Kingma & Ba, torch.optim.Adam's definition) in place on lists of tensors: parameters, their
    gradients, first and second moments, and each one's step count after this step (float32 scalar tensors; the
    caller advances them). The private kernel is torch.optim.Adam(fused=True)'s own; the fallback is that optimizer
    (building one imports torch._dynamo, ~1.4 s, hence not the default)."""
    fused = getattr(torch, "_fused_adam_", None)
    if USE_PRIVATE_KERNELS and fused is not None:
        fused(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=betas[0], beta2=betas[1],
              weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
        return
    leaves = [nn.Parameter(p) for p in params]  # (the same memory)
    opt = torch.optim.Adam(leaves, lr=lr, betas=betas, eps=eps,
                           fused=params[0].device.type in ("cpu", "cuda"))
    for leaf, grad, m, v, step in zip(leaves, grads, exp_avgs, exp_avg_sqs, steps):
        leaf.grad = grad
        step.sub_(1.0)  # (the optimizer counts this step itself)
        opt.state[leaf] = {"step": step, "exp_avg": m, "exp_avg_sq": v}
    opt.step()


def copy_tensors_(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """dst[i].copy_(src[i]) for every i, as one multi-tensor operation where torch has one."""
    if USE_PRIVATE_KERNELS and hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
        return
    for d, s_ in zip(dst, src):
        d.copy_(s_)


# ------------------------------------------------------------------------------------------------------
# The LSTM over a sequence with episode starts, on torch's kernel
# ------------------------------------------------------------------------------------------------------
RESET_GATE_LOGIT = -1e9  # (an input and forget gate this far below zero are exactly 0 after the sigmoid)


def lstm_sequences(weights: list[tuple[torch.Tensor, ...]], x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                   starts: torch.Tensor, train: bool = True):
    """For each LSTM k, network.lstm_sequence(x, h[k], c[k], starts, *its weights) on torch's LSTM kernel: `weights`
    [(W_ih, W_hh, b_ih, b_hh) per LSTM, torch.nn.LSTM's parameters], x (T, n, F), h and c (L, n, H) for the L LSTMs,
    starts (T, n) 0/1 floats, `train` as torch.nn.LSTM's `training`. Returns ([outputs (T, n, H) per LSTM], final h,
    final c), the final states (L, n, H).

    Where no environment begins an episode after the first step, that is one call per LSTM. Otherwise the kernel,
    which cannot zero the state mid-sequence, is given one extra step before every such start: a reset step, whose
    only input is an extra feature wired (by a constant column appended to W_ih) to RESET_GATE_LOGIT in the input
    and forget gates. There c' = sigmoid(f) c + sigmoid(i) tanh(g) = 0 and h' = sigmoid(o) tanh(0) = 0, so the
    start step runs from a zero state; the gradient through the reset step is 0 (the sigmoid's derivative is 0
    there), so nothing flows back across an episode start. Each environment's steps move later by the resets before
    them, the rows are padded at the end to the longest, and the outputs are read back at their steps (the longer
    input is built once for all the LSTMs). The final state is then None: the padded rows run past their ends (the
    collector and predict step one step at a time, which always returns it)."""
    T, n = starts.shape
    first = (1.0 - starts[0])[None, :, None]
    h0, c0 = h * first, c * first

    def kernel(w, x_in, k):  # (torch.nn.LSTM's forward: one layer, biases, no dropout, time-major)
        return torch.lstm(x_in, (h0[k:k + 1], c0[k:k + 1]), list(w), True, 1, 0.0, train, False, False)

    if T == 1 or not bool(starts[1:].any()):
        runs = [kernel(w, x, k) for k, w in enumerate(weights)]
        return [out for out, _, _ in runs], torch.cat([h for _, h, _ in runs]), torch.cat([c for _, _, c in runs])
    inner = starts.clone()
    inner[0] = 0.0
    resets = inner.cumsum(0).long()  # (T, n): reset steps inserted before each step, its own included
    pos = torch.arange(T, device=x.device)[:, None] + resets  # each step's place in the longer sequence
    env = torch.arange(n, device=x.device).expand(T, n)
    F = x.shape[-1]
    longer = x.new_zeros(T + int(resets[-1].max()), n, F + 1)
    longer = longer.index_put((pos, env), torch.cat([x, x.new_zeros(T, n, 1)], -1))
    is_start = inner.bool()
    longer = longer.index_put((pos[is_start] - 1, env[is_start], torch.full_like(pos[is_start], F)),
                              x.new_ones(()))
    outs = []
    for k, (w_ih, *rest) in enumerate(weights):
        reset_column = x.new_zeros(w_ih.shape[0], 1)
        reset_column[:w_ih.shape[0] // 2] = RESET_GATE_LOGIT  # (torch's gate order: input, forget, cell, output)
        out, _, _ = kernel((torch.cat([w_ih, reset_column], 1), *rest), longer, k)
        outs.append(out[pos, env])
    return outs, None, None
