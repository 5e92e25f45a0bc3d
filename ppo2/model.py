"""The PPO2 actor-critic that torch.hub serves.

    obs --preprocess--> encoder --> latent MLP (Linear-Tanh-Dropout x2) --+--> action head -> distribution
                                                                          +--> value head  -> V(s)

- preprocess: vectors through the running normalisation (when normalize_obs is on), uint8 images to float
  (N, C, H, W) in [0, 1], Dicts key by key (ppo2/observations.py says what each kind is).
- encoder: none for vectors (the seed model: the MLP reads the vector), the Nature CNN for images, one
  sub-encoder per key for Dicts, or your own nn.Module (ppo2/encoders.py).
- latent: the MLP of the seed model, shared by both heads or one tower each (`shared_latent`); the Nature
  CNN feeds the heads directly, as in OpenAI baselines.

`forward(obs, action=None)` is the one call the whole project uses: it samples (or evaluates the given
action) and returns `(value_f, action, neg_log_prob, entropy)`. The collector, the update, `eval_fn` and
`train_fn` all go through it. A recurrent (LSTM) policy would sit between the encoder and the heads, as a
latent that also carries a state.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import LOG_STD_BOUND
from .distributions import ActionHead, UniformBlock, distribution_name, make_action_head
from .encoders import ENCODERS, build_encoder, default_encoder
from .hub import from_pretrained as _from_pretrained
from .hub import push_to_hub as _push_to_hub
from .hub import save_pretrained as _save_pretrained
from .init import orthogonal_
from .losses import ppo_loss
from .speed import Precision, resolve_precision, run_encoder, scale_frames
from .observations import MAX_VECTOR_DIM as MAX_INPUT_DIM
from .observations import Preprocessed, _is_int, _need, describe, image_chw, image_keys, obs_spec_from_space, validate_obs_spec, vector_dim, vector_keys

__all__ = ["PPO2"]

# Batches up to this size run the built-in MLP through numpy on CPU (predict, the collector's policy step): on a few
# rows a numpy call's fixed cost is a fraction of a torch dispatch, on large batches torch's kernels win
# (benchmarks/profile_cartpole.py shows policy inference's share of a run).
NUMPY_MAX_BATCH = 32


def _mlp(input_dim: int, hidden_dim: int, dropout: float, layers: int = 2) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(input_dim if i == 0 else hidden_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout)]
    return nn.Sequential(*modules)


class PPO2(nn.Module):
    """Actor-critic for PPO2.

    Args:
        input_dim (int): size of a flat observation (the seed model's only observation kind). Leave it out
            when `observation_space` is given.
        hidden_dim (int, default 64): width of the latent MLP's hidden layers.
        action_space (int | gymnasium.spaces.Space | dict, default 2): an int is Discrete(n); otherwise
            Discrete, Box (1-D), MultiDiscrete or MultiBinary.
        dropout (float, default 0.0): dropout after each hidden layer, in [0, 1).
        reset_param (bool, default True): OpenAI-baselines initialisation: orthogonal weights with gain
            sqrt(2) in hidden layers (and the built-in encoders), 0.01 in the policy head and 1.0 in the value
            head; zero biases.
        distribution (type | str | None): a torch.distributions.Distribution subclass for the policy
            (default Categorical for discrete spaces, Normal for Box).
        shared_latent (bool, default True): one latent MLP feeds both heads (the seed model). False gives
            separate policy and value towers of the same shape (stable-baselines' MlpPolicy).
        normalize_obs (bool, default False): keep running mean/variance of the vector part of observations
            as buffers and normalise inputs with them (clipped to +-obs_clip). Saved with the weights.
        obs_clip (float, default 10.0): clip for normalised observations.
        log_std_init (float, default 0.0): initial log standard deviation of a Gaussian policy.
        observation_space (gymnasium Space | dict, optional): a 1-D Box, a uint8 image Box (H, W[, C] or
            C, H, W) or a Dict of those (or its spec from ppo2.observations); default Box((input_dim,)).
        encoder (str | nn.Module, default "auto"): "mlp" (vectors), "nature_cnn" (images), "multi_input"
            (Dicts), "auto" (the one that fits the observations), or your own module mapping preprocessed
            observations (see ppo2/encoders.py) to (N, features).
        features_dim (int, optional): output width of the built-in CNN (default 512; 256 per image key of a
            Dict).
        latent_layers (int, optional): hidden layers of the latent MLP (default 2; 0 for a CNN or your own
            encoder, whose features feed the heads directly).
        policy_net / value_net (nn.Module, optional): your own latent networks for vector observations,
            mapping (N, input_dim) to (N, latent). `value_net` defaults to sharing `policy_net`.
    """

    def __init__(
        self,
        input_dim: int | None = None,
        hidden_dim: int = 64,
        action_space: Any = 2,
        dropout: float = 0.0,
        reset_param: bool = True,
        distribution: type | str | None = None,
        shared_latent: bool = True,
        normalize_obs: bool = False,
        obs_clip: float = 10.0,
        log_std_init: float = 0.0,
        policy_net: nn.Module | None = None,
        value_net: nn.Module | None = None,
        observation_space: Any = None,
        encoder: str | nn.Module = "auto",
        features_dim: int | None = None,
        latent_layers: int | None = None,
    ):
        super().__init__()
        self.obs_spec = _resolve_obs_spec(input_dim, observation_space)
        _check_int("hidden_dim", hidden_dim, minimum=1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if not (isinstance(obs_clip, (int, float)) and obs_clip > 0):
            raise ValueError(f"obs_clip must be a positive number, got {obs_clip!r}")
        kind = self.obs_spec["type"]
        self.input_dim = self.obs_spec["shape"][0] if kind == "Box" else None
        self.norm_dim = vector_dim(self.obs_spec)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.shared_latent = bool(shared_latent)
        self.normalize_obs = bool(normalize_obs)
        self.obs_clip = float(obs_clip)
        self.custom_latent = policy_net is not None or value_net is not None
        if self.normalize_obs and self.norm_dim == 0:
            raise ValueError(f"normalize_obs applies to vector observations, but the observations are {describe(self.obs_spec)} "
                             "(images are scaled to [0, 1] inside the model); drop normalize_obs")

        # ---- encoder: preprocessed observation -> features
        if isinstance(encoder, nn.Module):
            self.encoder_name = "custom"
            self.encoder = encoder
            feat = _probe_features(encoder, self._zero_features_input())
        elif isinstance(encoder, str) and (encoder == "auto" or encoder in ENCODERS):
            self.encoder_name = default_encoder(self.obs_spec) if encoder == "auto" else encoder
            if features_dim is not None:
                _check_int("features_dim", features_dim, minimum=1)
            width = int(features_dim) if features_dim is not None else (512 if self.encoder_name == "nature_cnn" else 256)
            self.encoder = build_encoder(self.encoder_name, self.obs_spec, width)
            feat = self.encoder.features_dim if self.encoder is not None else self.input_dim
        else:
            raise ValueError(f"encoder must be 'auto', one of {', '.join(ENCODERS)}, or an nn.Module; got {encoder!r}")
        # (for vectors self.encoder is None, a plain attribute: the seed model's state dict has no encoder)
        self.features_dim = int(feat)
        self.cnn_features = width if self.encoder_name in ("nature_cnn", "multi_input") else None
        if latent_layers is None:
            latent_layers = _default_latent_layers(self.encoder_name)
        _check_int("latent_layers", latent_layers, minimum=0)
        self.latent_layers = int(latent_layers)

        # ---- latent: features -> the heads' input
        if self.custom_latent:
            if kind != "Box" or self.encoder is not None:
                raise ValueError("policy_net/value_net replace the latent MLP for vector observations; for images, "
                                 "Dicts or your own features use encoder=nn.Module")
            if policy_net is None:
                raise ValueError("value_net was given without policy_net; pass policy_net too (it may be the same module)")
            value_net = policy_net if value_net is None else value_net
            self.shared_latent = value_net is policy_net
            pi_dim = _latent_dim(policy_net, self.input_dim, "policy_net")
            vf_dim = _latent_dim(value_net, self.input_dim, "value_net")
        else:
            policy_net = _mlp(self.features_dim, self.hidden_dim, self.dropout, self.latent_layers)
            value_net = policy_net if self.shared_latent else _mlp(self.features_dim, self.hidden_dim, self.dropout,
                                                                   self.latent_layers)
            pi_dim = vf_dim = self.hidden_dim if self.latent_layers else self.features_dim
        # A shared latent is registered once (as `latent`), so the state dict holds no duplicate tensors.
        if self.shared_latent:
            self.latent = policy_net
        else:
            self.policy_latent = policy_net
            self.value_latent = value_net

        self.action_head: ActionHead = make_action_head(pi_dim, action_space, distribution)
        if log_std_init and hasattr(self.action_head, "log_std"):
            nn.init.constant_(self.action_head.log_std, float(log_std_init))
        self.log_std_init = float(log_std_init)
        self.value_head = nn.Linear(vf_dim, 1)

        if self.normalize_obs:
            self.register_buffer("obs_mean", torch.zeros(self.norm_dim, dtype=torch.float64))
            self.register_buffer("obs_var", torch.ones(self.norm_dim, dtype=torch.float64))
            self.register_buffer("obs_count", torch.tensor(1e-4, dtype=torch.float64))
            self._refresh_obs_scale()
        self.precision = Precision()  # float32, default layout: see set_precision
        if reset_param:
            self.reset_parameters()

    # ------------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------------
    @property
    def action_spec(self) -> dict:
        return dict(self.action_head.spec)

    @property
    def action_space(self):
        from .distributions import spec_to_space

        return spec_to_space(self.action_head.spec)

    def latents(self) -> list[nn.Module]:
        return [self.latent] if self.shared_latent else [self.policy_latent, self.value_latent]

    def reset_parameters(self) -> None:
        """OpenAI baselines initialisation (CleanRL's `layer_init`). Your own networks keep theirs."""
        if self.encoder is not None and self.encoder_name != "custom":
            self.encoder.reset_parameters()
        if not self.custom_latent:
            for latent in self.latents():
                for layer in latent:
                    if isinstance(layer, nn.Linear):
                        orthogonal_(layer.weight, gain=math.sqrt(2))
                        nn.init.zeros_(layer.bias)
        head = self.action_head.output_layer()
        orthogonal_(head.weight, gain=0.01)
        nn.init.zeros_(head.bias)
        orthogonal_(self.value_head.weight, gain=1.0)
        nn.init.zeros_(self.value_head.bias)
        if hasattr(self.action_head, "log_std"):
            nn.init.constant_(self.action_head.log_std, self.log_std_init)

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments: `PPO2(**model.get_config())` rebuilds this model. A
        vector model with the built-in MLP writes exactly the seed model's keys."""
        config = {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "action_space": self.action_spec,
            "dropout": self.dropout,
            "distribution": distribution_name(self.action_head.dist_cls),
            "shared_latent": self.shared_latent,
            "normalize_obs": self.normalize_obs,
            "obs_clip": self.obs_clip,
            "log_std_init": self.log_std_init,
        }
        if self.obs_spec["type"] != "Box":
            del config["input_dim"]
            config["observation_space"] = self.obs_spec
        if self.obs_spec["type"] != "Box" or self.encoder_name != "mlp":
            config["encoder"] = self.encoder_name
            if self.cnn_features is not None:
                config["features_dim"] = self.cnn_features
        if self.latent_layers != _default_latent_layers(self.encoder_name):
            config["latent_layers"] = self.latent_layers
        if self.custom_latent:
            # the networks' code cannot live in JSON: loading needs the same policy_net/value_net again
            config["custom_latent"] = True
        return config

    @classmethod
    def from_config(cls, config: dict, policy_net: nn.Module | None = None, value_net: nn.Module | None = None,
                    encoder: nn.Module | None = None) -> "PPO2":
        """Rebuild from `get_config()` output (e.g. a config.json). Every value is type- and range-checked
        first (`validate_config`): JSON from a file is never coerced, and no size it names is allocated
        unchecked. A model trained with your own networks needs them again (policy_net/value_net/encoder)."""
        config = validate_config(config)
        if config.get("encoder") == "custom":
            if encoder is None:
                raise ValueError("this policy was trained with its own encoder: pass the same architecture as "
                                 "encoder=... to load it")
            config["encoder"] = encoder
        elif encoder is not None:
            raise ValueError(f"encoder given, but this policy uses the built-in {config.get('encoder', 'mlp')!r} encoder")
        if config.pop("custom_latent", False):
            if policy_net is None:
                raise ValueError("this policy was trained with custom latent networks: pass the same architecture "
                                 "as policy_net=... (and value_net=... if it had a separate one) to load it")
            config.pop("shared_latent", None)
            return cls(reset_param=False, policy_net=policy_net, value_net=value_net, **config)
        if policy_net is not None or value_net is not None:
            raise ValueError("policy_net/value_net given, but this policy uses the built-in MLP")
        return cls(reset_param=False, **config)

    def check_state(self) -> None:
        """Raise ValueError unless the weights and statistics are usable: every float tensor finite, the observation
        normaliser's variances >= 0 and its count > 0 (what loading a file checks: a NaN mean or a negative
        variance would otherwise give garbage actions without a sound)."""
        for name, t in self.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} holds {int((~torch.isfinite(t)).sum())} NaN/inf value(s); expected finite numbers")
        if self.normalize_obs:
            if bool((self.obs_var < 0).any()):
                raise ValueError(f"obs_var holds negative variances (min {float(self.obs_var.min()):.4g}); expected >= 0")
            if not float(self.obs_count) > 0:
                raise ValueError(f"obs_count is {float(self.obs_count)}; expected a count > 0")

    @property
    def observation_space(self):
        from .observations import spec_to_space

        return spec_to_space(self.obs_spec)

    def check_compatible(self, observation_space: Any, action_space: Any, env_id: str | None = None) -> None:
        """Raise ValueError unless this model can act in an env with these spaces: the observation kind and
        shape (image layout, Dict keys), the action-space type and its size (n, nvec, shape) and, for Box
        actions, the bounds it clips to."""
        from .distributions import space_to_spec

        where = f"{env_id}" if env_id else "the environment"
        try:
            env_obs = obs_spec_from_space(observation_space, where)
        except ValueError:
            env_obs = None
        if env_obs != self.obs_spec:
            raise ValueError(f"this policy takes {describe(self.obs_spec)}, but {where} has observation space "
                             f"{observation_space}")
        env_spec, mine = space_to_spec(action_space), self.action_spec
        same = env_spec.keys() == mine.keys() and all(
            np.allclose(np.asarray(env_spec[k], np.float64), np.asarray(mine[k], np.float64), rtol=1e-6, atol=1e-6)
            if k in ("low", "high") else env_spec[k] == mine[k] for k in env_spec)
        if not same:
            raise ValueError(f"this policy acts in {_spec_text(mine)}, but {where} has action space {action_space}")

    # ------------------------------------------------------------------------------------------
    # observation normalisation (statistics live in buffers, so they travel with the weights)
    # ------------------------------------------------------------------------------------------
    def _refresh_obs_scale(self) -> None:
        self._obs_mean32 = self.obs_mean.float()
        self._obs_inv_std32 = (1.0 / torch.sqrt(self.obs_var + 1e-8)).float()
        self._obs_scale_key = self._obs_stats_key()

    def _obs_stats_key(self) -> tuple:
        return (self.obs_mean.data_ptr(), self.obs_mean._version, self.obs_var.data_ptr(), self.obs_var._version)

    def _sync_obs_scale(self) -> None:
        """Recompute the float32 normaliser if its buffers were replaced or written since (a cheap check)."""
        if torch.compiler.is_compiling():  # (tracing for export: fake tensors have no storage to compare)
            return
        if self._obs_scale_key != self._obs_stats_key():
            self._refresh_obs_scale()

    def _apply(self, fn, recurse=True):  # keep the float32 copies on the model's device
        out = super()._apply(fn, recurse)
        if self.normalize_obs:
            self._refresh_obs_scale()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.normalize_obs:
            self._refresh_obs_scale()

    @torch.no_grad()
    def update_obs_stats(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, batch_count: float) -> None:
        """Merge a batch's moments into the running statistics (Chan et al. parallel algorithm)."""
        if not self.normalize_obs:
            return
        batch_mean = batch_mean.to(self.obs_mean)
        batch_var = batch_var.to(self.obs_var)
        delta = batch_mean - self.obs_mean
        total = self.obs_count + batch_count
        new_mean = self.obs_mean + delta * batch_count / total
        m2 = self.obs_var * self.obs_count + batch_var * batch_count + delta.pow(2) * self.obs_count * batch_count / total
        self.obs_mean.copy_(new_mean)
        self.obs_var.copy_(m2 / total)
        self.obs_count.copy_(total)
        self._refresh_obs_scale()

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize_obs:
            return obs
        self._sync_obs_scale()
        return ((obs - self._obs_mean32) * self._obs_inv_std32).clamp(-self.obs_clip, self.obs_clip)

    # ------------------------------------------------------------------------------------------
    # the one forward path
    # ------------------------------------------------------------------------------------------
    def _check_obs_shape(self, shape: tuple, spec: dict | None = None, name: str = "observation") -> bool:
        """Whether `shape` is one unbatched observation; raises unless it is `spec`'s shape or (N, *shape)."""
        want = tuple((spec or self.obs_spec)["shape"])
        if tuple(shape) == want:
            return True
        if len(shape) == len(want) + 1 and tuple(shape[1:]) == want:
            return False
        raise ValueError(f"{name} has shape {tuple(shape)}, expected (N, {', '.join(map(str, want))}) or {want}")

    @staticmethod
    def _check_numpy_obs(obs: np.ndarray, name: str = "observation") -> None:
        if obs.dtype.kind not in "fiub":
            raise TypeError(f"{name}s must be real numbers, got dtype {obs.dtype}")
        if obs.dtype.kind == "f" and not np.isfinite(obs).all():
            raise ValueError(f"{name} contains {int((~np.isfinite(obs)).sum())} NaN/inf value(s); expected finite numbers")
        if obs.dtype.itemsize > 4 and obs.size and np.abs(obs).max() > _FLOAT32_MAX:
            raise ValueError(f"{name} contains values up to {float(np.abs(obs).max()):.3g}, beyond float32's range "
                             f"(+-{_FLOAT32_MAX:.3g}): they would become inf inside the model")

    def _check_array(self, obs: Any, spec: dict, name: str) -> tuple[torch.Tensor, bool]:
        """One array of observations -> (batched tensor on the model's device, single?). Vectors become float32.
        Images keep their meaning in their dtype (`_check_image_values`): uint8 pixels stay uint8 (scaled inside
        the model), other integers must be pixel values in [0, 255], floats must be already scaled to [0, 1]."""
        image = spec["type"] == "Image"
        if not isinstance(obs, (torch.Tensor, np.ndarray)):
            obs = np.asarray(obs) if image else np.asarray(obs, dtype=np.float32)
        single = self._check_obs_shape(tuple(obs.shape), spec, name)
        if isinstance(obs, np.ndarray):
            self._check_numpy_obs(obs, name)
            dtype = self._check_image_values(obs, obs.dtype.kind == "f", name) if image else torch.float32
            as_numpy = np.uint8 if dtype is torch.uint8 else np.float32
            obs = torch.from_numpy(np.ascontiguousarray(obs[None] if single else obs, dtype=as_numpy))
        else:
            if not (obs.is_floating_point() or obs.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)):
                raise TypeError(f"{name}s must be real numbers, got dtype {obs.dtype}")
            if obs.is_floating_point() and not bool(torch.isfinite(obs).all()):
                bad = int((~torch.isfinite(obs)).sum())
                raise ValueError(f"{name} contains {bad} NaN/inf value(s); expected finite numbers")
            if obs.element_size() > 4 and obs.numel() and float(obs.abs().max()) > _FLOAT32_MAX:
                raise ValueError(f"{name} contains values up to {float(obs.abs().max()):.3g}, beyond float32's "
                                 f"range (+-{_FLOAT32_MAX:.3g}): they would become inf inside the model")
            if single:
                obs = obs.unsqueeze(0)
            dtype = self._check_image_values(obs, obs.is_floating_point(), name) if image else torch.float32
        device = self.value_head.weight.device
        if obs.dtype != dtype or obs.device != device:
            obs = obs.to(device=device, dtype=dtype)
        return obs, single

    @staticmethod
    def _check_image_values(obs: Any, floating: bool, name: str) -> torch.dtype:
        """The dtype an image batch enters the model as: uint8 for pixel values (uint8, or other integers within
        [0, 255]), float32 for floats, which mean pixels already scaled to [0, 1] (as a VecTransposeImage/255
        pipeline gives) and are used as they are. Anything else is refused: a float frame of 0..255 values, or
        integers outside a byte, would otherwise be scaled wrongly without a sound."""
        empty = obs.size == 0 if isinstance(obs, np.ndarray) else obs.numel() == 0
        if obs.dtype in (np.uint8, torch.uint8) or empty:
            return torch.uint8 if not floating else torch.float32
        lo, hi = float(obs.min()), float(obs.max())
        if floating:
            if lo < 0.0 or hi > 1.0:
                raise ValueError(f"{name} is a float image with values in [{lo:.4g}, {hi:.4g}]; float images must be "
                                 "already scaled to [0, 1]. Pass uint8 pixels (0-255) as they come from the env, or "
                                 "divide by 255 yourself")
            return torch.float32
        if lo < 0 or hi > 255:
            raise ValueError(f"{name} is an integer image with values in [{lo:.0f}, {hi:.0f}]; expected pixel values "
                             "in [0, 255] (uint8)")
        return torch.uint8

    def _check_obs(self, obs: Any) -> tuple[Any, bool]:
        """Validate and convert observations: a (N, ...) tensor (a dict of them for Dict observations) on
        the model's device, and whether a single unbatched observation came in."""
        spec = self.obs_spec
        if spec["type"] != "Dict":
            return self._check_array(obs, spec, "observation")
        from collections.abc import Mapping

        if not isinstance(obs, Mapping):
            raise TypeError(f"this policy takes {describe(spec)}; got {type(obs).__name__}, expected a dict")
        if set(obs) != set(spec["spaces"]):
            missing, extra = sorted(set(spec["spaces"]) - set(obs)), sorted(set(obs) - set(spec["spaces"]))
            raise ValueError(f"observation dict has keys {sorted(obs)}, expected {sorted(spec['spaces'])}"
                             + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
        out, singles, sizes = {}, set(), set()
        for key, sub in spec["spaces"].items():
            out[key], single = self._check_array(obs[key], sub, f"observation[{key!r}]")
            singles.add(single)
            sizes.add(out[key].shape[0])
        if len(singles) > 1 or len(sizes) > 1:
            raise ValueError("observation dict mixes batched and unbatched entries or batch sizes "
                             f"({ {k: tuple(v.shape) for k, v in out.items()} }); give every key the same leading N")
        return out, singles.pop()

    @staticmethod
    def _batch_size(obs: Any) -> int:
        return next(iter(obs.values())).shape[0] if isinstance(obs, dict) else obs.shape[0]

    def _zero_features_input(self) -> Any:
        """A batch of two preprocessed observations (what an encoder receives), for probing its width."""
        def zeros(spec):
            if spec["type"] == "Image":
                return torch.zeros(2, *image_chw(spec))
            return torch.zeros(2, spec["shape"][0])
        if self.obs_spec["type"] == "Dict":
            return {k: zeros(s) for k, s in self.obs_spec["spaces"].items()}
        return zeros(self.obs_spec)

    def preprocess(self, obs: Any) -> Any:
        """Validated observations -> the encoder's input: vectors normalised (normalize_obs), uint8 images
        to float32 (N, C, H, W) in [0, 1]; Dicts key by key (their vector keys normalised together)."""
        spec = self.obs_spec
        if spec["type"] == "Box":
            return self.normalize(obs)
        if spec["type"] == "Image":
            return scale_frames(_nchw(obs, spec), self.precision)
        out = {k: scale_frames(_nchw(obs[k], spec["spaces"][k]), self.precision) for k in image_keys(spec)}
        keys = vector_keys(spec)
        if keys and self.normalize_obs:
            sizes = [spec["spaces"][k]["shape"][0] for k in keys]
            normed = self.normalize(torch.cat([obs[k] for k in keys], dim=-1))
            out.update(zip(keys, normed.split(sizes, dim=-1)))
        else:
            out.update((k, obs[k]) for k in keys)
        return out

    def features(self, obs: Any) -> torch.Tensor:
        """What the latent MLP reads: the encoder's output (the normalised vector for the seed model). The built-in
        CNNs run as `self.precision` says (ppo2/speed.py: float32 unless `set_precision` chose otherwise)."""
        x = obs.value if isinstance(obs, Preprocessed) else self.preprocess(obs)
        if self.encoder is None:
            return x
        return run_encoder(self.encoder, x, self.precision) if self.encoder_name != "custom" else self.encoder(x)

    def set_precision(self, precision: str = "auto", device: Any = None) -> "PPO2":
        """How the built-in image encoder computes: "float32" (the default after construction and loading),
        "bfloat16" (autocast, float32 weights) or "auto" (bfloat16 where `device` has it natively); frames go in
        channels-last either way (ppo2/speed.py). A runtime choice: nothing of it is saved with the weights."""
        has_cnn = self.encoder is not None and self.encoder_name in ("nature_cnn", "multi_input")
        self.precision = resolve_precision(precision, device or self.value_head.weight.device, has_cnn)
        return self

    def _latent(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a built-in latent MLP with functional calls (a module call costs more than the matmul here);
        user-supplied networks are called normally."""
        if self.custom_latent:
            return net(x)
        for layer in net:
            if isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight, layer.bias)
            elif isinstance(layer, nn.Tanh):
                x = torch.tanh(x)
            elif layer.p > 0 and self.training:  # nn.Dropout
                x = F.dropout(x, layer.p, training=True)
        return x

    def _value(self, vf_latent: torch.Tensor) -> torch.Tensor:
        return F.linear(vf_latent, self.value_head.weight, self.value_head.bias).squeeze(-1)

    def latent_features(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(obs)
        if self.shared_latent:
            pi_latent = self._latent(self.latent, x)
            return pi_latent, pi_latent
        return self._latent(self.policy_latent, x), self._latent(self.value_latent, x)

    def distribution_and_value(self, obs: torch.Tensor):
        """(action distribution, V(s) of shape (N,)) for an already-validated (N, input_dim) float tensor."""
        pi_latent, vf_latent = self.latent_features(obs)
        value = self._value(vf_latent)
        return self.action_head.distribution(pi_latent), value

    def value_of(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) of shape (N,) for a validated batch (the bootstrap value after a rollout)."""
        vf_latent = self.latent_features(obs)[1]
        return self._value(vf_latent)

    def value_and_evaluate(self, obs: torch.Tensor, action: torch.Tensor):
        """(V(s), neg_log_prob of `action`, entropy) for a validated batch: what the update differentiates."""
        pi_latent, vf_latent = self.latent_features(obs)
        value = self._value(vf_latent)
        neg_log_prob, entropy = self.action_head.evaluate(pi_latent, action)
        return value, neg_log_prob, entropy

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action for a validated batch (evaluation's hot path)."""
        return self.action_head.deterministic(self.latent_features(obs)[0])

    def sample_action(self, obs: torch.Tensor) -> torch.Tensor:
        """A sampled action for a validated (N, input_dim) batch: the collector's hot path. Only the policy
        runs; values and log-probabilities of a rollout come afterwards, in one batch (value_and_evaluate)."""
        x = self.features(obs)
        pi_latent = self._latent(self.latent if self.shared_latent else self.policy_latent, x)
        return self.action_head.sample(pi_latent)[0]

    def forward(self, obs: Any, action: Any = None, deterministic: bool = False):
        """Sample an action (or evaluate the given one).

        Args:
            obs: (N, input_dim) or (input_dim,) array/tensor.
            action: optional batch of actions to evaluate instead of sampling.
            deterministic: play the most likely action instead of sampling (ignored when `action` is given).

        Returns:
            value_f (N,), action, neg_log_prob (N,), entropy (N,); without the N dimension for a single obs.
        """
        obs, single = self._check_obs(obs)
        if action is not None:
            action = self.action_head.check_action(action, None if single else self._batch_size(obs))
            if single:
                action = action.unsqueeze(0)
        pi_latent, vf_latent = self.latent_features(obs)
        value = self._value(vf_latent)
        if action is None:
            action, neg_log_prob, entropy = self.action_head.act_and_evaluate(pi_latent, deterministic)
        else:
            neg_log_prob, entropy = self.action_head.evaluate(pi_latent, action)
        if single:
            return value[0], action[0], neg_log_prob[0], entropy[0]
        return value, action, neg_log_prob, entropy

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> torch.Tensor:
        """Actions only (what a deployed policy needs)."""
        obs, single = self._check_obs(obs)
        if deterministic:
            action = self.deterministic_action(obs)
        else:
            action = self.action_head.sample(self.latent_features(obs)[0])[0]
        return action[0] if single else action

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """stable-baselines-style `(action, state)` with numpy in and out; actions are what the env
        accepts (Box actions clipped to the bounds). `state` is always None (the policy has no memory)."""
        if self.training and self.dropout > 0:  # dropout must be off to act; toggling costs, so only if needed
            self.eval()
        small = isinstance(obs, np.ndarray) and (obs.ndim == 1 or len(obs) <= NUMPY_MAX_BATCH)
        if deterministic and small:
            policy = self._numpy_policy()
            if policy is not None:
                return self._predict_numpy(obs, policy), None
        obs, single = self._check_obs(obs)
        with torch.no_grad():
            if deterministic:
                action = self.deterministic_action(obs)
            else:
                action = self.action_head.sample(self.latent_features(obs)[0])[0]
        action = action.numpy() if action.device.type == "cpu" else action.cpu().numpy()
        return self.action_head.to_env(action[0] if single else action), None

    # Deterministic predict() on CPU runs the same weights through numpy for batches up to NUMPY_MAX_BATCH, where a
    # 64-unit MLP's operations cost less than a torch dispatch each (see NUMPY_MAX_BATCH).
    # The arrays are zero-copy views of the parameters, so optimizer steps and load_state_dict (an in-place
    # copy) are seen at once; they are rebuilt when tensors are replaced (.to(), .double(), a new normaliser
    # buffer). tests/test_model.py checks that both paths choose the same actions.
    def _policy_sources(self) -> list[torch.Tensor]:
        """The tensors predict's numpy path reads, looked up on the module now (never remembered)."""
        latent = self.latent if self.shared_latent else self.policy_latent
        head = self.action_head.output_layer()
        sources = [t for layer in latent if isinstance(layer, nn.Linear) for t in (layer.weight, layer.bias)]
        return sources + [head.weight, head.bias]

    def _numpy_policy(self):
        """Numpy views of the current policy weights. The views are reused only while every parameter is
        still the same storage (data_ptr), so weights replaced in any way torch allows (`load_state_dict`,
        with or without assign=True, `vector_to_parameters`, `p.data = ...`, `.to()`) are seen at the next
        call; in-place changes (optimizer steps) are seen through the views themselves."""
        if self.custom_latent or self.encoder is not None or self.latent_layers == 0:
            return None
        sources = self._policy_sources()
        if self.normalize_obs:
            self._sync_obs_scale()
        key = tuple(t.data_ptr() for t in sources)
        if self.normalize_obs:
            key += (self._obs_mean32.data_ptr(), self._obs_inv_std32.data_ptr())
        cached = self.__dict__.get("_np_policy")
        if cached is not None and cached[0] == key:
            return cached[1]
        if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in sources):
            return None
        arrays = [t.detach().numpy() for t in sources]
        layers = [(arrays[i].T, arrays[i + 1]) for i in range(0, len(arrays), 2)]
        norm = (self._obs_mean32.numpy(), self._obs_inv_std32.numpy()) if self.normalize_obs else None
        self.__dict__["_np_policy"] = (key, (layers, norm))
        return layers, norm

    def _predict_numpy(self, obs: np.ndarray, policy) -> np.ndarray:
        self._check_obs_shape(tuple(obs.shape))
        self._check_numpy_obs(obs)
        return self._act_numpy(obs, policy)

    def _act_numpy(self, obs: np.ndarray, policy) -> np.ndarray:
        """The deterministic action the env takes, through numpy (no checks: predict's and numpy_actor's)."""
        return self.action_head.to_env(self.action_head.mode_numpy(self._numpy_output(obs, policy)))

    def _numpy_output(self, obs: np.ndarray, policy) -> np.ndarray:
        """The policy's output layer (logits or Gaussian mean) for raw observations, through numpy."""
        x = np.asarray(obs, dtype=np.float32)
        layers, norm = policy
        if norm is not None:
            x = np.clip((x - norm[0]) * norm[1], -self.obs_clip, self.obs_clip)
        for w, b in layers[:-1]:
            x = np.tanh(x @ w + b)
        return x @ layers[-1][0] + layers[-1][1]

    def numpy_actor(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Deterministic `predict` for (N, input_dim) numpy batches of checked, finite observations with
        N <= NUMPY_MAX_BATCH, bound to the current weights' views (evaluation builds it once per run of
        episodes instead of looking the views up at every step); None where predict's numpy path does not apply."""
        policy = self._numpy_policy()
        if policy is None:
            return None
        return lambda obs: self._act_numpy(obs, policy)

    def numpy_sampler(self, steps: int | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
        """`sample_action` for (N, input_dim) numpy batches of raw observations on CPU, through numpy: the
        collector's policy step for up to NUMPY_MAX_BATCH envs. It reads the current weights through views
        (build it again after replacing them) and draws the same torch random numbers as `sample_action`
        (tests/test_model.py checks the actions agree). With `steps` (a rollout's length), a Categorical policy
        draws the uniforms of that many calls at the first (`ppo2.distributions.UniformBlock`): the same
        numbers, one torch call. None where the numpy path does not apply: an encoder, custom networks,
        non-float32 or non-CPU weights, or a head without a numpy sampler."""
        policy = self._numpy_policy()
        head = self.action_head
        if policy is None or not head.has_numpy_sampler():
            return None
        uniforms = None if steps is None else UniformBlock(steps)
        return lambda obs: head.sample_numpy(self._numpy_output(obs, policy), uniforms)

    @torch.no_grad()
    def value(self, obs: Any) -> torch.Tensor:
        obs, single = self._check_obs(obs)
        value = self.value_of(obs)
        return value[0] if single else value

    # ------------------------------------------------------------------------------------------
    # the surrogate loss (the seed contract)
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
             clip_range, ent_coef, vf_coef):
        """OpenAI baselines ppo2 loss. Returns `(loss, pg_loss, value_loss, entropy_mean, approx_kl)`.

        For the clip fraction too, call `ppo2.losses.ppo_loss` with the same arguments. Raises ValueError for
        tensors of different shapes or holding NaN/inf, and for a non-finite or negative clip_range."""
        _check_loss_inputs(returns=returns, value_f=value_f, neg_log_probs=neg_log_probs, entropy=entropy,
                           advantages=advantages, old_values=old_values, old_neg_log_prbs=old_neg_log_prbs)
        for name, v in (("clip_range", clip_range), ("ent_coef", ent_coef), ("vf_coef", vf_coef)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        out = ppo_loss(returns, value_f, neg_log_probs, entropy, advantages, old_values, old_neg_log_prbs,
                       clip_range, ent_coef, vf_coef)
        return out.loss, out.pg_loss, out.value_loss, out.entropy_mean, out.approx_kl

    # ------------------------------------------------------------------------------------------
    # persistence (safetensors + JSON) and the Hugging Face Hub; implemented in ppo2.hub
    # ------------------------------------------------------------------------------------------
    validate_config = staticmethod(lambda config: validate_config(config))

    def save_pretrained(self, save_directory, **kwargs):
        """Write `model.safetensors` + `config.json` (with the weights' sha256) to a directory."""
        return _save_pretrained(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id_or_path, **kwargs) -> "PPO2":
        """Load from a local directory or a Hugging Face Hub repo id (hash-verified before deserialising).
        Keywords: revision, cache_dir, token, local_files_only, map_location, and your own networks
        (policy_net/value_net/encoder) for a policy trained with them."""
        return _from_pretrained(cls, repo_id_or_path, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload weights, config, model card (and optionally results and a replay) to the Hub."""
        return _push_to_hub(self, repo_id, **kwargs)

    def extra_repr(self) -> str:
        obs = f"input_dim={self.input_dim}" if self.input_dim is not None else f"observations={describe(self.obs_spec)}"
        return f"{obs}, action_space={self.action_spec['type']}, normalize_obs={self.normalize_obs}"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _default_latent_layers(encoder_name: str) -> int:
    """The latent MLP's depth unless given: none after a CNN or a user's encoder (their features feed the
    heads, as baselines' cnn policy), two hidden layers otherwise (the seed model)."""
    return 0 if encoder_name in ("nature_cnn", "custom") else 2


def _resolve_obs_spec(input_dim: Any, observation_space: Any) -> dict:
    """The observation spec from `input_dim` (the seed call) and/or `observation_space`; they must agree."""
    if observation_space is None:
        if input_dim is None:
            raise ValueError("give input_dim (the size of a flat observation) or observation_space")
        _check_int("input_dim", input_dim, minimum=1)
        return validate_obs_spec({"type": "Box", "shape": [int(input_dim)]})
    if isinstance(observation_space, dict) and "type" in observation_space:
        spec = validate_obs_spec(observation_space)
    else:
        spec = obs_spec_from_space(observation_space, "observation_space")
    if input_dim is not None:
        _check_int("input_dim", input_dim, minimum=1)
        if spec != {"type": "Box", "shape": [int(input_dim)]}:
            raise ValueError(f"input_dim={input_dim} disagrees with observation_space ({describe(spec)}); give one of them")
    return spec


def _nchw(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """(N, H, W[, C]) or (N, C, H, W) images as an (N, C, H, W) view (no copy); `ppo2.speed.scale_frames` then
    scales uint8 pixels to [0, 1] (floats are already scaled: `PPO2._check_image_values`)."""
    if len(spec["shape"]) == 2:
        return x.unsqueeze(1)
    return x.permute(0, 3, 1, 2) if spec["channels_last"] else x


def _probe_features(encoder: nn.Module, example: Any) -> int:
    try:
        with torch.no_grad():
            out = encoder(example)
    except Exception as exc:
        shapes = {k: tuple(v.shape) for k, v in example.items()} if isinstance(example, dict) else tuple(example.shape)
        raise ValueError(f"encoder failed on a preprocessed batch of shape {shapes}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"encoder must map a batch of N observations to (N, features), got {shape} for N=2")
    return int(out.shape[1])


def _latent_dim(net: nn.Module, input_dim: int, name: str) -> int:
    if not isinstance(net, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, input_dim))
    except Exception as exc:
        raise ValueError(f"{name} failed on an input of shape (2, {input_dim}): {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must map (N, {input_dim}) to (N, latent_dim), got {shape} for N=2")
    return int(out.shape[1])


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _spec_text(spec: dict) -> str:
    return f"{spec['type']}(" + ", ".join(f"{k}={v}" for k, v in spec.items() if k != "type") + ")"

# ------------------------------------------------------------------------------------------------------
# config.json validation: strict JSON types and size limits, checked before anything is allocated
# ------------------------------------------------------------------------------------------------------
MAX_HIDDEN_DIM = 1 << 14
MAX_ACTIONS = 1 << 16


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_action_spec(spec: Any, key: str = "action_space") -> dict:
    """Strictly check an action-space spec read from JSON (types, sizes, bounds); returns a copy."""
    _need(isinstance(spec, dict), key, "an object such as {\"type\": \"Discrete\", \"n\": 2}", spec)
    kind = spec.get("type")
    fields = {"Discrete": {"type", "n"}, "MultiBinary": {"type", "n"}, "MultiDiscrete": {"type", "nvec"},
              "Box": {"type", "shape", "low", "high"}}
    _need(kind in fields, f"{key}.type", "one of Discrete, Box, MultiDiscrete, MultiBinary", kind)
    _need(set(spec) == fields[kind], key, f"exactly the keys {sorted(fields[kind])} for {kind}", sorted(spec))
    if kind in ("Discrete", "MultiBinary"):
        _need(_is_int(spec["n"]) and 1 <= spec["n"] <= MAX_ACTIONS, f"{key}.n", f"an int in [1, {MAX_ACTIONS}]", spec["n"])
    elif kind == "MultiDiscrete":
        nvec = spec["nvec"]
        _need(isinstance(nvec, list) and 1 <= len(nvec) <= MAX_ACTIONS
              and all(_is_int(n) and 1 <= n <= MAX_ACTIONS for n in nvec) and sum(nvec) <= MAX_ACTIONS,
              f"{key}.nvec", f"a list of ints in [1, {MAX_ACTIONS}] (at most {MAX_ACTIONS} logits in all)", nvec)
    else:
        shape = spec["shape"]
        _need(isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0]) and 1 <= shape[0] <= MAX_ACTIONS,
              f"{key}.shape", f"[d] with d an int in [1, {MAX_ACTIONS}]", shape)
        for bound in ("low", "high"):
            b = spec[bound]
            _need(isinstance(b, list) and len(b) == shape[0] and all(_is_number(x) and not math.isnan(x) for x in b),
                  f"{key}.{bound}", f"a list of {shape[0]} numbers", b)
        _need(all(lo <= hi for lo, hi in zip(spec["low"], spec["high"])), key, "low <= high everywhere",
              [spec["low"], spec["high"]])
    return dict(spec)


def validate_config(config: Any) -> dict:
    """The PPO2 constructor arguments in a config (e.g. config.json), checked with strict JSON types: an
    int field takes no float or bool, a bool field no string or number, sizes stay within limits."""
    if not isinstance(config, dict):
        raise ValueError(f"model config must be a JSON object, got {type(config).__name__}")
    known = {"input_dim", "hidden_dim", "action_space", "dropout", "distribution", "shared_latent",
             "normalize_obs", "obs_clip", "log_std_init", "custom_latent", "observation_space", "encoder",
             "features_dim", "latent_layers"}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}; expected a subset of {sorted(known)}")
    if "input_dim" not in config and "observation_space" not in config:
        raise ValueError("model config lacks 'input_dim' (or 'observation_space')")
    c = dict(config)
    if "input_dim" in c:
        _need(_is_int(c["input_dim"]) and 1 <= c["input_dim"] <= MAX_INPUT_DIM, "input_dim", f"an int in [1, {MAX_INPUT_DIM}]", c["input_dim"])
    if "observation_space" in c:
        c["observation_space"] = validate_obs_spec(c["observation_space"])
    if "encoder" in c:
        _need(c["encoder"] in (*ENCODERS, "custom"), "encoder", f"one of {', '.join((*ENCODERS, 'custom'))}", c["encoder"])
    if "features_dim" in c:
        _need(_is_int(c["features_dim"]) and 1 <= c["features_dim"] <= MAX_HIDDEN_DIM, "features_dim",
              f"an int in [1, {MAX_HIDDEN_DIM}]", c["features_dim"])
    if "latent_layers" in c:
        _need(_is_int(c["latent_layers"]) and 0 <= c["latent_layers"] <= 16, "latent_layers", "an int in [0, 16]",
              c["latent_layers"])
    if "hidden_dim" in c:
        _need(_is_int(c["hidden_dim"]) and 1 <= c["hidden_dim"] <= MAX_HIDDEN_DIM, "hidden_dim",
              f"an int in [1, {MAX_HIDDEN_DIM}]", c["hidden_dim"])
    if "action_space" in c:
        c["action_space"] = validate_action_spec(c["action_space"])
    if "dropout" in c:
        _need(_is_number(c["dropout"]) and 0.0 <= c["dropout"] < 1.0, "dropout", "a number in [0, 1)", c["dropout"])
    if "distribution" in c:
        _need(c["distribution"] is None or isinstance(c["distribution"], str), "distribution",
              "a class name such as 'torch.distributions.Normal'", c["distribution"])
    for key in ("shared_latent", "normalize_obs", "custom_latent"):
        if key in c:
            _need(isinstance(c[key], bool), key, "true or false", c[key])
    if "obs_clip" in c:
        _need(_is_number(c["obs_clip"]) and 0 < c["obs_clip"] < float("inf"), "obs_clip", "a finite number > 0", c["obs_clip"])
    if "log_std_init" in c:
        _need(_is_number(c["log_std_init"]) and abs(c["log_std_init"]) <= LOG_STD_BOUND, "log_std_init",
              f"a number in [-{LOG_STD_BOUND:g}, {LOG_STD_BOUND:g}]",
              c["log_std_init"])
    return c


def _check_loss_inputs(**tensors: Any) -> None:
    """Tensors, finite; their shapes are checked by the loss itself (ppo2.losses)."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains {int((~torch.isfinite(t)).sum())} NaN/inf value(s); expected finite numbers")
