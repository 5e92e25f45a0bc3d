"""Action heads: the one place that maps an action space to a probability distribution.

`make_action_head(latent_dim, action_space, distribution)` is the factory; everything downstream (the
model, the collector, the losses) only calls the head's methods and never branches on the space again.

Supported spaces and their default distributions:

==================  ====================================  =========================================
space               distribution                          action tensor (batch of N)
==================  ====================================  =========================================
Discrete(n)         Categorical(logits)                   (N,) int64 in [0, n)
Box(shape=(d,))     diagonal Normal(mean, exp(log_std))   (N, d) float32, clipped to bounds in env
MultiDiscrete(nv)   product of Categoricals               (N, len(nv)) int64
MultiBinary(n)      product of Bernoullis                 (N, n) float32 in {0, 1}
==================  ====================================  =========================================

Log-probabilities and entropies of multi-dimensional actions are summed over action dimensions, so
every head returns one number per sample. The log-std of the Gaussian head is a state-independent
parameter (as in OpenAI baselines' ppo2).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from . import network

__all__ = [
    "ActionHead",
    "CategoricalHead",
    "GaussianHead",
    "MultiCategorical",
    "MultiCategoricalHead",
    "BernoulliHead",
    "make_action_head",
    "space_to_spec",
    "spec_to_space",
    "distribution_name",
    "resolve_distribution",
]


class MultiCategorical(Distribution):
    """Independent Categoricals over the sub-actions of a MultiDiscrete space, as a torch Distribution.

    `logits` has shape (..., sum(nvec)); actions have shape (..., len(nvec)); `log_prob` and `entropy`
    sum over the sub-actions (the maths: ppo2/network.py's multi_categorical_*).
    """

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(self, logits: torch.Tensor, nvec: tuple[int, ...], validate_args: bool | None = False):
        self.nvec = tuple(int(n) for n in nvec)
        self.logits = logits
        super().__init__(batch_shape=logits.shape[:-1], event_shape=(len(self.nvec),), validate_args=False)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = (*sample_shape, *self.logits.shape[:-1], len(self.nvec))
        logits = self.logits.expand(*sample_shape, *self.logits.shape)
        return network.multi_categorical_sample(logits, torch.rand(shape, device=logits.device, dtype=logits.dtype),
                                                self.nvec)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return network.multi_categorical_log_prob_entropy(self.logits, value, self.nvec)[0]

    def entropy(self) -> torch.Tensor:
        zeros = torch.zeros(self.logits.shape[:-1] + (len(self.nvec),), dtype=torch.long, device=self.logits.device)
        return network.multi_categorical_log_prob_entropy(self.logits, zeros, self.nvec)[1]

    @property
    def mode(self) -> torch.Tensor:
        return network.multi_categorical_mode(self.logits, self.nvec)


# --------------------------------------------------------------------------------------------------
# Serialisable description of an action space (config.json stores this, never a pickled space).
# --------------------------------------------------------------------------------------------------

def space_to_spec(space: Any) -> dict:
    """Describe an action space as JSON-friendly data. Accepts an int (Discrete(n)), a gymnasium space,
    or an already-made spec dict."""
    if isinstance(space, dict):
        spec_to_space(space)  # validates
        return dict(space)
    if isinstance(space, (bool, np.bool_)):
        raise TypeError(f"action_space must be an int (number of discrete actions) or a gymnasium space, got {space!r}")
    if isinstance(space, (int, np.integer)):
        if space < 1:
            raise ValueError(f"action_space as an int is the number of discrete actions and must be >= 1, got {space}")
        return {"type": "Discrete", "n": int(space)}
    try:
        from gymnasium import spaces
    except ImportError as exc:  # pragma: no cover - gymnasium is a core dependency
        raise TypeError(f"action_space {space!r} needs gymnasium installed") from exc
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete action spaces must start at 0, got start={int(space.start)} in {space}")
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ValueError(
                f"Box action spaces must be 1-D (shape (d,)), got shape {space.shape} in {space}; "
                "flatten the action space with gymnasium.wrappers.FlattenObservation-style wrappers first")
        return {"type": "Box", "shape": [int(space.shape[0])],
                "low": [float(x) for x in space.low], "high": [float(x) for x in space.high]}
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim != 1 or np.any(space.start != 0):
            raise ValueError(f"MultiDiscrete action spaces must be 1-D and start at 0, got {space}")
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in space.nvec]}
    if isinstance(space, spaces.MultiBinary):
        if len(space.shape) != 1:
            raise ValueError(f"MultiBinary action spaces must be 1-D, got shape {space.shape}")
        return {"type": "MultiBinary", "n": int(space.shape[0])}
    raise TypeError(
        f"unsupported action space {space!r} ({type(space).__name__}); supported: int, Discrete, Box (1-D), "
        "MultiDiscrete, MultiBinary")


def spec_to_space(spec: dict):
    """Rebuild the gymnasium space a spec describes (raises ValueError on a malformed spec)."""
    from gymnasium import spaces

    kind = spec.get("type")
    try:
        if kind == "Discrete":
            return spaces.Discrete(int(spec["n"]))
        if kind == "Box":
            return spaces.Box(np.asarray(spec["low"], np.float32), np.asarray(spec["high"], np.float32), dtype=np.float32)
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(np.asarray(spec["nvec"], np.int64))
        if kind == "MultiBinary":
            return spaces.MultiBinary(int(spec["n"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed action-space spec {spec!r}: {exc}") from exc
    raise ValueError(f"unknown action-space type {kind!r} in spec {spec!r}; expected Discrete, Box, MultiDiscrete or MultiBinary")


# --------------------------------------------------------------------------------------------------
# Distribution classes are stored in config.json by name and resolved from an allow-list of modules,
# so loading a config never imports arbitrary code.
# --------------------------------------------------------------------------------------------------

_DIST_MODULES = {"torch.distributions": torch.distributions}


def distribution_name(cls: type) -> str:
    if cls is MultiCategorical:
        return "ppo2.distributions.MultiCategorical"
    return f"torch.distributions.{cls.__name__}"


def resolve_distribution(name: str) -> type:
    if name == "ppo2.distributions.MultiCategorical":
        return MultiCategorical
    module, _, attr = name.rpartition(".")
    if module not in _DIST_MODULES or not hasattr(_DIST_MODULES[module], attr):
        raise ValueError(f"unknown distribution {name!r}: expected a class of torch.distributions "
                         "(e.g. 'torch.distributions.Normal') or ppo2.distributions.MultiCategorical")
    cls = getattr(_DIST_MODULES[module], attr)
    if not (isinstance(cls, type) and issubclass(cls, Distribution)):
        raise ValueError(f"{name!r} is not a torch.distributions.Distribution subclass")
    return cls


# --------------------------------------------------------------------------------------------------
# Heads: latent -> output layer (logits or mean) -> the distribution's maths in ppo2/network.py
# --------------------------------------------------------------------------------------------------

_DRAWN_ROWS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("ppo2_drawn_rows", default=None)


@contextlib.contextmanager
def drawn_as_rows(first: int, total: int):
    """Inside, a built-in head samples a batch of n rows with the random numbers that rows first .. first + n - 1 of
    a batch of `total` rows would get: a share of a batch played by one of several processes (the evaluation
    episodes under several ranks) samples the actions one process playing the whole batch samples. The generator's
    numbers depend on the shape drawn, so the share draws the whole batch's and keeps its rows."""
    token = _DRAWN_ROWS.set((int(first), int(total)))
    try:
        yield
    finally:
        _DRAWN_ROWS.reset(token)


def _draw(fn, shape: tuple, **kw) -> torch.Tensor:
    rows = _DRAWN_ROWS.get()
    if rows is None or not shape:
        return fn(shape, **kw)
    first, total = rows
    return fn((total, *shape[1:]), **kw)[first:first + shape[0]]


def _rand(out, shape: tuple) -> Any:
    """Uniforms in [0, 1) from torch's generator, as an array of `out`'s kind (numpy arrays get the numbers a
    CPU float32 tensor of that shape would: the collector's numpy step and the torch path draw the same)."""
    if isinstance(out, torch.Tensor):
        return _draw(torch.rand, tuple(shape), device=out.device, dtype=out.dtype)
    return _draw(torch.rand, tuple(shape)).numpy()


def _randn(out) -> Any:
    """Standard normals shaped like `out` (randn_like's; numpy arrays get a CPU float32 tensor's). Drawn one call
    at a time: torch fills 16 or more normals at once in another order, so they cannot be drawn ahead for a
    rollout."""
    if isinstance(out, torch.Tensor):
        return _draw(torch.randn, tuple(out.shape), device=out.device, dtype=out.dtype)
    return _draw(torch.randn, tuple(out.shape)).numpy()


class ActionHead(nn.Module):
    """Maps a latent vector to a distribution over actions. The built-in distributions' maths is
    ppo2/network.py's, run on torch tensors here and on numpy arrays by predict's and the collector's numpy
    path (`output` computes the logits or mean; `sample`, `mode` and `log_prob_entropy` take either kind).
    A distribution class of your own (`distribution=...`) runs through torch.distributions instead."""

    spec: dict
    dist_cls: type
    action_shape: tuple[int, ...]  # shape of one action
    action_dtype: torch.dtype
    builtin: bool  # the distribution's maths is ppo2/network.py's (else torch.distributions' dist_cls)

    def output_layer(self) -> nn.Linear:  # pragma: no cover - abstract
        raise NotImplementedError

    def output(self, latent):
        """The output layer's values (logits or Gaussian mean) for a batch of latents (tensor or numpy array)."""
        layer = self.output_layer()
        return network.dense(latent, layer.weight.T, layer.bias)

    def distribution_from_output(self, out: torch.Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def mask(self, out, mask):
        """The output with illegal actions masked (ppo2/masks.py): for logits, ppo2/network.py's `mask_logits`."""
        return network.mask_logits(out, mask)

    def distribution(self, latent: torch.Tensor) -> Distribution:
        """The policy as a torch.distributions object (for your own use; the package's paths call the maths)."""
        return self.distribution_from_output(self.output(latent))

    def log_prob_entropy(self, out, action):
        """(log pi(action), entropy), one number per row."""
        dist = self.distribution_from_output(out)
        return dist.log_prob(action), dist.entropy()

    def sample(self, out, uniforms: UniformBlock | None = None):
        """A sampled action per row, from torch's generator (a head whose draw takes one uniform per row
        takes them from `uniforms` where given)."""
        return self.distribution_from_output(out).sample()

    def mode(self, out):  # pragma: no cover - abstract
        """The most likely action: what a deterministic policy plays."""
        raise NotImplementedError

    def has_numpy_path(self) -> bool:
        """Whether `sample`, `mode` and `to_env` take numpy arrays (the built-in distributions')."""
        return self.builtin

    def evaluate(self, latent: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(negative log-probability of `action`, entropy): what the update differentiates."""
        log_prob, entropy = self.log_prob_entropy(self.output(latent), action)
        return -log_prob, entropy

    def check_action(self, action: Any, batch: int | None) -> torch.Tensor:
        """Validate an action batch against the space; `batch=None` means one unbatched action."""
        device = self.output_layer().weight.device
        action = torch.as_tensor(action, device=device)
        expected = self.action_shape if batch is None else (batch, *self.action_shape)
        if tuple(action.shape) != expected:
            raise ValueError(
                f"action has shape {tuple(action.shape)}, expected {expected} for {self.spec['type']} "
                f"action space {self.spec_str()}")
        if action.is_floating_point() and self.action_dtype != torch.float32:
            if not torch.equal(action, action.round()):
                raise ValueError(f"{self.spec['type']} actions must be integers, got non-integral values")
        action = action.to(self.action_dtype)
        self._check_range(action)
        return action

    def _check_range(self, action: torch.Tensor) -> None:
        pass

    def spec_str(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec.items() if k not in ("type", "low", "high"))

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Convert a sampled action batch (numpy) to what the environment expects."""
        return action


class UniformBlock:
    """The uniforms of `steps` successive `torch.rand(N, 1)` calls, drawn as one `torch.rand(steps, N, 1)` at the
    first call. The CPU generator fills a tensor element by element in order, so these are the numbers the calls
    one by one would get (tests/test_model.py checks the actions and the generator state after), for one torch
    call per rollout instead of one per step (a speed device: ppo2/speed.py lists it). Calls beyond `steps` draw
    one by one again."""

    def __init__(self, steps: int):
        self.steps, self.used = int(steps), 0
        self.block: np.ndarray | None = None

    def __call__(self, n: int) -> np.ndarray:
        if self.used >= self.steps:
            return torch.rand(n, 1).numpy()
        if self.block is None:
            self.block = torch.rand(self.steps, n, 1).numpy()
        elif self.block.shape[1] != n:
            raise ValueError(f"a UniformBlock drawn for batches of {self.block.shape[1]} was asked for {n}")
        self.used += 1
        return self.block[self.used - 1]


class CategoricalHead(ActionHead):
    def __init__(self, latent_dim: int, n: int, dist_cls: type = Categorical):
        super().__init__()
        self.spec = {"type": "Discrete", "n": n}
        self.dist_cls = dist_cls
        self.builtin = dist_cls is Categorical
        self.n = n
        self.action_shape = ()
        self.action_dtype = torch.int64
        self.logits = nn.Linear(latent_dim, n)

    def output_layer(self) -> nn.Linear:
        return self.logits

    def distribution_from_output(self, logits):
        return self.dist_cls(logits=logits, validate_args=False)

    def log_prob_entropy(self, logits, action):
        if not self.builtin:
            return super().log_prob_entropy(logits, action)
        hot = network.one_hot(action, self.n, like=logits)
        return network.categorical_log_prob_entropy(logits, hot)[:2]

    def sample(self, logits, uniforms=None):
        if not self.builtin:
            return super().sample(logits)
        n = logits.shape[:-1]
        u = uniforms(n[0]) if uniforms is not None and len(n) == 1 else _rand(logits, (*n, 1))
        return network.categorical_sample(logits, u)

    def mode(self, logits):
        return network.categorical_mode(logits)

    def _check_range(self, action):
        if action.numel() and (int(action.min()) < 0 or int(action.max()) >= self.n):
            raise ValueError(f"Discrete action out of range: expected values in [0, {self.n}), "
                             f"got min {int(action.min())}, max {int(action.max())}")


class MultiCategoricalHead(ActionHead):
    def __init__(self, latent_dim: int, nvec: list[int]):
        super().__init__()
        self.spec = {"type": "MultiDiscrete", "nvec": list(nvec)}
        self.dist_cls = MultiCategorical
        self.builtin = True
        self.register_buffer("nvec", torch.tensor(nvec, dtype=torch.int64), persistent=False)
        self.action_shape = (len(nvec),)
        self.action_dtype = torch.int64
        self.logits = nn.Linear(latent_dim, int(sum(nvec)))

    def output_layer(self):
        return self.logits

    def distribution_from_output(self, logits):
        return MultiCategorical(logits, tuple(self.spec["nvec"]))

    def log_prob_entropy(self, logits, action):
        return network.multi_categorical_log_prob_entropy(logits, action, self.spec["nvec"])

    def sample(self, logits, uniforms=None):
        return network.multi_categorical_sample(logits, _rand(logits, (*logits.shape[:-1], len(self.spec["nvec"]))),
                                                self.spec["nvec"])

    def mode(self, logits):
        return network.multi_categorical_mode(logits, self.spec["nvec"])

    def _check_range(self, action):
        if action.numel() and (bool((action < 0).any()) or bool((action >= self.nvec).any())):
            raise ValueError(f"MultiDiscrete action out of range: expected 0 <= a[i] < {self.spec['nvec']}[i]")


class BernoulliHead(ActionHead):
    """MultiBinary: independent Bernoullis, through torch.distributions.Bernoulli (its maths, written by torch)."""

    def __init__(self, latent_dim: int, n: int):
        super().__init__()
        self.spec = {"type": "MultiBinary", "n": n}
        self.dist_cls = Bernoulli
        self.builtin = False
        self.action_shape = (n,)
        self.action_dtype = torch.float32
        self.logits = nn.Linear(latent_dim, n)

    def output_layer(self):
        return self.logits

    def distribution_from_output(self, logits):
        return Independent(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    def mode(self, logits):
        return (logits > 0) * 1.0

    def mask(self, logits, mask):
        return network.mask_bernoulli_logits(logits, mask)

    def has_numpy_path(self) -> bool:
        return True  # (mode and to_env)

    def _check_range(self, action):
        if action.numel() and not bool(((action == 0) | (action == 1)).all()):
            raise ValueError("MultiBinary actions must be 0 or 1")

    def to_env(self, action):
        return action.astype(np.int8)


class GaussianHead(ActionHead):
    """Diagonal Gaussian (or any location-scale distribution) with a state-independent log-std."""

    def __init__(self, latent_dim: int, spec: dict, dist_cls: type = Normal, log_std_init: float = 0.0):
        super().__init__()
        self.spec = dict(spec)
        self.dist_cls = dist_cls
        self.builtin = dist_cls is Normal
        d = int(spec["shape"][0])
        self.action_shape = (d,)
        self.action_dtype = torch.float32
        self.mean = nn.Linear(latent_dim, d)
        self.log_std = nn.Parameter(torch.full((d,), float(log_std_init)))
        self._low = np.asarray(spec["low"], np.float32)
        self._high = np.asarray(spec["high"], np.float32)

    def output_layer(self):
        return self.mean

    def _log_std_like(self, mean):
        return self.log_std.detach() if isinstance(mean, torch.Tensor) else self.log_std.detach().numpy()

    def distribution_from_output(self, mean):
        scale = self.log_std.exp().expand_as(mean)
        return Independent(self.dist_cls(mean, scale, validate_args=False), 1, validate_args=False)

    def log_prob_entropy(self, mean, action):
        if not self.builtin:
            return super().log_prob_entropy(mean, action)
        log_prob = network.gaussian_log_prob(mean, self.log_std, action)[0]
        return log_prob, network.gaussian_entropy(self.log_std).expand_as(log_prob)

    def sample(self, mean, uniforms=None):
        if not self.builtin:
            return super().sample(mean)
        if isinstance(mean, torch.Tensor):
            mean = mean.detach()  # (a sample is data, as torch.distributions' sample(): no gradient flows into it)
        return network.gaussian_sample(mean, self._log_std_like(mean), _randn(mean))

    def mode(self, mean):
        return mean  # (also a user class's: the location of a location-scale distribution)

    def mask(self, mean, mask):
        raise ValueError("action masks need a discrete action space; this policy's actions are a Box")

    def has_numpy_path(self) -> bool:
        return True  # (mode and to_env; sample only for the built-in Normal)

    def to_env(self, action):
        # The policy is an unbounded Gaussian; the environment gets the action clipped to its bounds
        # (log-probabilities are always of the unclipped sample, as in baselines and SB3).
        return np.clip(action, self._low, self._high)


def make_action_head(latent_dim: int, action_space: Any, distribution: type | str | None = None) -> ActionHead:
    """The distribution factory: action space (+ optional Distribution class) -> action head."""
    spec = space_to_spec(action_space)
    if isinstance(distribution, str):
        distribution = resolve_distribution(distribution)
    if distribution is not None and not (isinstance(distribution, type) and issubclass(distribution, Distribution)):
        raise TypeError(
            f"distribution must be a torch.distributions.Distribution subclass, got {distribution!r} "
            f"({type(distribution).__name__})")
    kind = spec["type"]
    if kind == "Discrete":
        cls = distribution or Categorical
        if cls not in (Categorical,) and "logits" not in _init_params(cls):
            raise ValueError(f"distribution {cls.__name__} cannot parameterise a Discrete action space: "
                             "expected a class constructed from logits=..., such as Categorical")
        if cls is not Categorical:
            _probe(cls, lambda: cls(logits=torch.zeros(1, 2), validate_args=False), kind)
        return CategoricalHead(latent_dim, spec["n"], cls)
    if kind == "Box":
        cls = distribution or Normal
        if not {"loc", "scale"} <= set(_init_params(cls)):
            raise ValueError(f"distribution {cls.__name__} cannot parameterise a Box action space: "
                             "expected a location-scale class constructed as cls(loc, scale), such as Normal")
        _probe(cls, lambda: cls(torch.zeros(1, 1), torch.ones(1, 1), validate_args=False), kind)
        return GaussianHead(latent_dim, spec, cls)
    if kind == "MultiDiscrete":
        if distribution not in (None, MultiCategorical):
            raise ValueError(f"MultiDiscrete action spaces use ppo2.distributions.MultiCategorical, got {distribution.__name__}")
        return MultiCategoricalHead(latent_dim, spec["nvec"])
    if kind == "MultiBinary":
        if distribution not in (None, Bernoulli):
            raise ValueError(f"MultiBinary action spaces use torch.distributions.Bernoulli, got {distribution.__name__}")
        return BernoulliHead(latent_dim, spec["n"])
    raise AssertionError(kind)  # space_to_spec already rejected anything else


def _init_params(cls: type) -> list[str]:
    import inspect

    try:
        return list(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return []


def _probe(cls: type, build, kind: str) -> None:
    try:
        with torch.device("cpu"):  # (a model skeleton may be built on the meta device)
            d = build()
        d.entropy()
        d.log_prob(d.sample())
    except NotImplementedError as exc:
        raise ValueError(f"distribution {cls.__name__} cannot be used for a {kind} action space: "
                         f"it does not implement {exc or 'entropy/log_prob/sample'}") from exc

