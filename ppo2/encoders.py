"""Built-in observation encoders: preprocessed observation -> feature vector.

The model runs   obs -> preprocess -> encoder -> latent MLP(s) -> heads   (ppo2/model.py). Preprocessing is
the model's, so every encoder sees the same inputs: vectors normalised (when normalize_obs is on), images as
float32 (N, C, H, W) in [0, 1], Dicts as a dict of those. An encoder maps that to (N, features_dim).

- vectors: no encoder; the latent MLP reads the (normalised) vector itself (the seed model).
- `NatureCNN`: Mnih et al. 2015, as OpenAI baselines' `cnn` policy that ppo2 ships for Atari:
  conv 32x8x8 /4, conv 64x4x4 /2, conv 64x3x3 /1, each ReLU, then a 512-unit ReLU layer, shared by the
  policy and the value heads. It needs images of at least 36x36 pixels.
- `MultiInputEncoder`: a Dict's vector keys concatenated (sorted by key) next to one NatureCNN per image key
  (256 features each, as SB3's CombinedExtractor); the latent MLP then reads the concatenation.
- your own `nn.Module`: `PPO2(..., encoder=my_module)` with the same input contract.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .init import orthogonal_
from .observations import image_chw, image_keys, vector_keys

__all__ = ["NatureCNN", "MultiInputEncoder", "build_encoder", "ENCODERS", "MIN_CNN_SIDE"]

ENCODERS = ("mlp", "nature_cnn", "multi_input")
MIN_CNN_SIDE = 36
# The Nature CNN's dense layer grows with the frame's area (84x84: 3,136 inputs, 1.6M weights at 512 units). Past
# this many weights (1 GiB in float32, with Adam's two moments 3 GiB) the frame is too large to learn from on the
# machines this project targets; refusing it here beats dying in the allocator.
MAX_CNN_FC_WEIGHTS = 1 << 28


def _conv_out(size: int) -> int:
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        size = (size - kernel) // stride + 1
    return size


class NatureCNN(nn.Module):
    """(N, C, H, W) float in [0, 1] -> (N, features_dim)."""

    def __init__(self, channels: int, height: int, width: int, features_dim: int = 512):
        super().__init__()
        if min(height, width) < MIN_CNN_SIDE:
            raise ValueError(f"the Nature CNN needs images of at least {MIN_CNN_SIDE}x{MIN_CNN_SIDE} pixels, got "
                             f"{height}x{width}; resize them (`--env-kwargs resize=[84,84]`, recorded with the policy) "
                             "or pass your own encoder=nn.Module")
        self.features_dim = int(features_dim)
        flat = 64 * _conv_out(height) * _conv_out(width)
        if flat * self.features_dim > MAX_CNN_FC_WEIGHTS:
            raise ValueError(f"{height}x{width} frames give the Nature CNN a dense layer of {flat:,} x {self.features_dim} "
                             f"weights ({flat * self.features_dim * 4 / 2**30:.1f} GiB; at most {MAX_CNN_FC_WEIGHTS:,}); "
                             "downscale them first (`--env-kwargs resize=[84,84]`, recorded with the policy)")
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(flat, self.features_dim)

    def reset_parameters(self) -> None:
        """baselines' initialisation: orthogonal with gain sqrt(2), zero biases."""
        for layer in (*self.convs, self.fc):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                orthogonal_(layer.weight, gain=math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.convs(images)))


class MultiInputEncoder(nn.Module):
    """A Dict observation -> the concatenation of its vector keys and one NatureCNN per image key."""

    def __init__(self, spec: dict, cnn_features: int = 256):
        super().__init__()
        self.vector_keys = vector_keys(spec)
        self.image_keys = image_keys(spec)
        self.cnns = nn.ModuleDict({k: NatureCNN(*image_chw(spec["spaces"][k]), features_dim=cnn_features)
                                   for k in self.image_keys})
        self.features_dim = sum(spec["spaces"][k]["shape"][0] for k in self.vector_keys) + cnn_features * len(self.image_keys)

    def reset_parameters(self) -> None:
        for cnn in self.cnns.values():
            cnn.reset_parameters()

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [obs[k] for k in self.vector_keys] + [self.cnns[k](obs[k]) for k in self.image_keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def default_encoder(spec: dict) -> str:
    return {"Box": "mlp", "Image": "nature_cnn", "Dict": "multi_input"}[spec["type"]]


def build_encoder(name: str, spec: dict, features_dim: int) -> nn.Module | None:
    """The built-in encoder `name` for observations `spec` (None for the plain MLP on vectors)."""
    kind = spec["type"]
    fits = {"mlp": "Box", "nature_cnn": "Image", "multi_input": "Dict"}
    if name not in fits:
        raise ValueError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODERS)} or an nn.Module")
    if fits[name] != kind:
        want = {"Box": "mlp", "Image": "nature_cnn", "Dict": "multi_input"}[kind]
        raise ValueError(f"encoder {name!r} does not take {kind} observations; use {want!r} (or your own nn.Module)")
    if name == "mlp":
        return None
    if name == "nature_cnn":
        return NatureCNN(*image_chw(spec), features_dim=features_dim)
    return MultiInputEncoder(spec, cnn_features=features_dim)
