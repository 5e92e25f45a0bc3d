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

`Precision` says which of these a model uses; `PPO2.set_precision` applies it. Vectors (the MLP) never change:
their speed devices are in ppo2/fused.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import PRECISIONS
from .rundir import cpu_model_and_isa

__all__ = ["Precision", "native_bfloat16", "resolve_precision", "run_encoder", "scale_frames", "preprocess_once",
           "select_rows", "PREPROCESS_ONCE_BYTES", "PRECISIONS"]



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
    from .observations import Preprocessed, image_keys

    spec = model.obs_spec
    if model.encoder is None or model.encoder_name == "custom" or not (spec["type"] == "Image" or image_keys(spec)):
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
