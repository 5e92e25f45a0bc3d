"""Environment creation and checks.

The collector relies on gymnasium 1.x's default autoreset mode, NEXT_STEP: the step that ends an
episode returns that episode's true final observation, and the *following* step ignores its action,
resets the sub-environment and returns reward 0 with no done flags. `make_vector_env` refuses vector
envs that use another mode.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from .distributions import space_to_spec
from .env_ids import ENV_ALIASES, ale_games, canonical_env_id, close_names, is_atari, legacy_ale_game
from . import pomdp as _pomdp
from .masks import mask_size, split_observation_space
from .obs_wrappers import StackFrames, pop_obs_wrappers
from .observations import obs_spec_from_space

__all__ = ["ENV_ALIASES", "canonical_env_id", "check_env_id", "refuse_file_named_module", "make_env", "make_vector_env", "check_spaces", "get_env_state", "seeds_each_env",
           "set_env_state"]

_pomdp.register()  # the velocity-free classic-control tasks (ppo2/pomdp.py)


def _register_ale(env_id: str) -> None:
    """ALE ids register when ale_py is imported (gymnasium does not import it by itself)."""
    if not is_atari(env_id) or env_id in gym.registry:
        return
    try:
        import ale_py
    except ImportError:
        raise ImportError(f"{env_id} needs the Arcade Learning Environment: pip install 'ppo2[atari]' "
                          "(ale-py, with the game ROMs)") from None
    gym.register_envs(ale_py)


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`, or a ValueError suggesting close matches. "module:EnvId" (gymnasium's
    form for your own environment) imports `module` first, which registers EnvId; "ALE/..." ids (and the
    games' bare names, canonical_env_id) import ale_py."""
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string such as 'CartPole-v1', got {env_id!r}")
    env_id = canonical_env_id(env_id)
    _register_ale(env_id)
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        import importlib

        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"environment {env_id!r}: cannot import module {module!r} to register {name!r} ({exc})") from None
        env_id = name
    game = legacy_ale_game(env_id)
    if game is not None:
        raise ValueError(f"{env_id!r} is one of ale-py's legacy Atari ids (frames skipped at random or actions repeated "
                         f"in its own way, without the standard preprocessing); ppo2 trains 'ALE/{game}-v5' "
                         f"(gymnasium's protocol: 4 frames per action, sticky actions; also '{game}') and "
                         f"'{game}NoFrameskip-v4' (baselines', RL-Zoo's and CleanRL's: no sticky actions), both "
                         "preprocessed as published Atari results are")
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        # (the games' bare names too: "breakout" and ale-py's ROM name "space_invaders" find what ppo2 takes)
        close = close_names(env_id, [*gym.registry.keys(), *sorted(ale_games())])
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown environment id {env_id!r} ({exc}).{hint}") from None


def refuse_file_named_module(env_id: str, named_by: str, opt_in: str | None = None) -> None:
    """Raise ValueError if `env_id`, read from a file (`named_by`: a policy's config.json, a checkpoint), has
    gymnasium's "module:EnvId" form: making it would import `module`, and ppo2 never runs code that a file names.
    The user opts in by naming the same id themselves (`opt_in`: on the command line, --env), which is not read
    through here."""
    if isinstance(env_id, str) and ":" in env_id:
        raise ValueError(f"{named_by} names the environment {env_id!r}, which would import the module "
                         f"{env_id.partition(':')[0]!r} to register it. ppo2 never runs code that a file names; if "
                         f"you trust that module, say so {opt_in or f'on the command line: --env {env_id}'}")


def _atari_spec(spec: gym.envs.registration.EnvSpec) -> gym.envs.registration.EnvSpec:
    """A "<Game>NoFrameskip-v4" spec (frameskip 1: baselines' and RL-Zoo's wrappers skip 4 frames and max-pool the
    last two) as ale-py's vector env runs it: ALE/<Game>-v5's preprocessing with that frameskip, its own
    repeat_action_probability (0). Any other spec unchanged."""
    if is_atari(spec.id) and spec.vector_entry_point is None and spec.kwargs.get("frameskip") == 1:
        return dataclasses.replace(spec, vector_entry_point="ale_py.vector_env:AtariVectorEnv",
                                   kwargs={**spec.kwargs, "frameskip": 4})
    return spec


def make_vector_env(env_id: str, num_envs: int, vectorization: str = "auto", **kwargs) -> gym.vector.VectorEnv:
    """`gymnasium.make_vec`, using the env's own vectorised implementation when it has one. ALE games: ale-py's
    vector env (also for "<Game>NoFrameskip-v4"), raw game scores, FIRE after a lost life (`fire_after_life_loss`)."""
    spec = _atari_spec(check_env_id(env_id))
    env_id = spec.id
    given = dict(kwargs)  # (the caller's, for messages: not ppo2's own additions below)
    wrappers = [] if is_atari(env_id) else pop_obs_wrappers(kwargs, env_id)  # (frame_stack, ...: each env wrapped)
    if vectorization == "auto":
        own = spec.vector_entry_point is not None and "render_mode" not in kwargs and not wrappers
        mode = "vector_entry_point" if own else "sync"
    else:
        mode = vectorization
    ale = is_atari(env_id) and mode == "vector_entry_point"
    fire_after_life_loss = kwargs.pop("fire_after_life_loss", True) if ale else False
    if ale:
        # ale-py's vector env clips rewards by default: the logged and evaluated returns must be the game's
        # score, so it returns raw rewards and `clip_reward` (the Atari presets) clips what the update sees
        kwargs.setdefault("reward_clipping", False)
    try:
        with _constructor_arguments(env_id, given):
            envs = gym.make_vec(spec, num_envs=num_envs, vectorization_mode=mode, wrappers=wrappers or None, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise ImportError(f"{env_id} needs an optional dependency: {exc}. For Box2D envs: pip install 'gymnasium[box2d]'") from exc
    autoreset = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        envs.close()
        raise ValueError(f"{env_id}: the collector expects autoreset mode NEXT_STEP, got {autoreset}")
    if fire_after_life_loss:
        actions = list(envs.unwrapped.ale.get_action_set())
        fire = next((i for i, a in enumerate(actions) if a.name == "FIRE"), None)
        if fire is not None:
            envs = _FireAfterLifeLossVector(envs, fire)
    return envs


@contextlib.contextmanager
def _constructor_arguments(env_id: str, kwargs: dict):
    """An env constructor that fails on the arguments it was given (`--env-kwargs`, or a policy's recorded
    env_kwargs): one it does not take (TypeError), a value of the wrong type (ale-py's error) or one it cannot use
    (FrozenLake's KeyError for an unknown map_name), as a ValueError naming the env and the arguments. A missing
    optional dependency is left as it is."""
    try:
        yield
    except gym.error.DependencyNotInstalled:
        raise
    except Exception as exc:
        if not kwargs:
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        if isinstance(exc, TypeError) and "argument" in str(exc):
            raise ValueError(f"{env_id} was made with the arguments {given} and refused them: {exc}") from None
        raise ValueError(f"{env_id} was made with the arguments {given} and failed: {type(exc).__name__}: {exc}") from exc


def _fire_next(lives_before, lives, ended):
    """Where the step after this one presses FIRE: a life was lost and the game goes on (numpy arrays or scalars)."""
    return np.logical_and(np.less(lives, lives_before), np.logical_not(ended))


class _FireAfterLifeLossVector(gym.vector.VectorWrapper):
    """baselines' FireResetEnv after each lost life (it fires at every EpisodicLifeEnv reset; ale-py fires only at the
    start of a game): in a game whose action set has FIRE, the step after a lost life (the game going on) presses FIRE
    instead of the agent's action, and the info's 'fire_step' marks that step, which the learner leaves out as it
    does an autoreset step (ppo2/collector.py). Without it a Breakout policy that has not learned to serve again idles
    to the 27,000-step cap: docs/history.md."""

    def __init__(self, envs: gym.vector.VectorEnv, fire: int):
        super().__init__(envs)
        self.fire = fire
        self.lives = np.zeros(envs.num_envs, np.int64)
        self.pending = np.zeros(envs.num_envs, np.bool_)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.lives = np.asarray(info["lives"], np.int64).copy()
        self.pending = np.zeros(self.num_envs, np.bool_)
        return obs, info

    def step(self, actions):
        fired = self.pending
        if fired.any():
            actions = np.array(actions, copy=True)
            actions[fired] = self.fire
        obs, reward, terminated, truncated, info = self.env.step(actions)
        lives = np.asarray(info["lives"], np.int64).copy()
        self.pending = _fire_next(self.lives, lives, terminated | truncated)
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "fire_step": fired}


class _FireAfterLifeLoss(gym.Wrapper):
    """The same for one env (`make_env`), so a game played there is the game the trainer's envs play."""

    def __init__(self, env: gym.Env, fire: int):
        super().__init__(env)
        self.fire, self.lives, self.pending = fire, 0, False

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.lives, self.pending = int(info["lives"]), False
        return obs, info

    def step(self, action):
        fired = self.pending
        obs, reward, terminated, truncated, info = self.env.step(self.fire if fired else action)
        lives = int(info["lives"])
        self.pending = bool(_fire_next(self.lives, lives, terminated or truncated))
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "fire_step": fired}


def make_env(env_id: str, **kwargs) -> gym.Env:
    """One gymnasium env whose observations are those the trainer's vector env gives, for playing a policy yourself
    (`model.make_env(render_mode="human")`). Any id: `gym.make(env_id, **kwargs)`, except that ALE games ("ALE/<Game>-v5",
    "Pong") get ale-py's vector-env preprocessing around a game that still renders in colour: 1-`noop_max` no-op frames
    and FIRE at a reset (games whose action set has FIRE; `use_fire_reset=False` turns it off), `frameskip` agent-step
    frames with the last two max-pooled, 84x84 grayscale, 4 stacked (zeros before the first), raw game scores; and, as
    `make_vector_env` does, FIRE after a lost life (`fire_after_life_loss=False` turns it off)."""
    spec = check_env_id(env_id)
    if not is_atari(spec.id):
        given = dict(kwargs)
        wrappers = pop_obs_wrappers(kwargs, spec.id)
        with _constructor_arguments(spec.id, given):
            env = gym.make(spec.id, **kwargs)
            for wrap in wrappers:
                env = wrap(env)
        return env
    noop_max, fire_at_reset = kwargs.pop("noop_max", 30), kwargs.pop("use_fire_reset", True)
    fire_after_life_loss = kwargs.pop("fire_after_life_loss", True)
    frameskip = kwargs.pop("frameskip", _atari_spec(spec).kwargs.get("frameskip", 4))
    with _constructor_arguments(spec.id, kwargs):
        env = gym.make(spec.id, frameskip=1, **kwargs)
    meanings = env.unwrapped.get_action_meanings()
    fire = meanings.index("FIRE") if "FIRE" in meanings else None
    env = _AtariReset(env, noop_max, fire if fire_at_reset else None)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=frameskip, screen_size=84, grayscale_obs=True,
                                          scale_obs=False)
    if fire_after_life_loss and fire is not None:
        env = _FireAfterLifeLoss(env, fire)
    return gym.wrappers.FrameStackObservation(env, 4, padding_type="zero")


class _AtariReset(gym.Wrapper):
    """A reset as ale-py's vector env does it (ale/vector/preprocessed_env.hpp): 1 to `noop_max` single-frame no-ops,
    the last of them replaced by FIRE where the game's action set has it (Pong, Breakout: the game starts served)."""

    def __init__(self, env: gym.Env, noop_max: int, fire: int | None):
        super().__init__(env)
        self.reset_noop_max, self.fire = int(noop_max), fire  # (fire: FIRE's index, None for no FIRE at a reset)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        noops = int(self.env.unwrapped.np_random.integers(1, self.reset_noop_max + 1)) if self.reset_noop_max > 0 else 0
        actions = [0] * max(0, noops - (self.fire is not None)) + ([self.fire] if self.fire is not None else [])
        for action in actions:
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


def check_spaces(envs: gym.vector.VectorEnv, env_id: str = "the environment",
                 action_mask: bool = True) -> tuple[dict, Any, Any]:
    """(observation spec of what the network reads, single action space, mask config or None), or a ValueError naming
    the space that is unsupported: observations are vectors, uint8 images or Dicts of those (ppo2/observations.py);
    an `action_mask` Dict key or an `action_masks()` method masks actions (ppo2/masks.py) unless `action_mask` is
    False."""
    has_method = _has_action_masks(envs)
    mode = ("method" if has_method else "auto") if action_mask else False
    space, masks = split_observation_space(envs.single_observation_space, mode)
    spec = obs_spec_from_space(space, env_id)
    action_spec = space_to_spec(envs.single_action_space)  # raises for unsupported action spaces
    if masks is not None and masks.applied:
        try:
            mask_size(action_spec)
        except ValueError as exc:
            raise ValueError(f"{env_id}: {exc}") from None
    return spec, envs.single_action_space, masks


def _has_action_masks(envs: gym.vector.VectorEnv) -> bool:
    """Whether the sub-environments have sb3-contrib's `action_masks()` method (looked up, not called)."""
    base = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    if isinstance(base, gym.vector.SyncVectorEnv):
        return all(env.has_wrapper_attr("action_masks") for env in base.envs)
    if isinstance(base, gym.vector.AsyncVectorEnv):
        return all(envs.call("has_wrapper_attr", "action_masks"))
    return callable(getattr(envs, "action_masks", None))  # a vector env of your own that masks itself


# --------------------------------------------------------------------------------------------------
# Exact environment state, for bit-identical resume. Supported: gymnasium's numpy CartPole vector env
# and sync vector envs of classic-control envs (their whole state is `state` + RNG + time limit).
# Others (Box2D, MuJoCo) return None: a resumed run then starts fresh episodes.
# --------------------------------------------------------------------------------------------------

def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _set_rng(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def _wrapper(env, kind: type) -> Any:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    return None


def _time_limit(env) -> Any:
    return _wrapper(env, gym.wrappers.TimeLimit)


def seeds_each_env(envs: gym.vector.VectorEnv) -> bool:
    """Whether `envs.reset(seed=s)` resets sub-environment i with seed s + i (gymnasium's sync and async vector envs,
    ale-py's): then episodes s..s+n-1 can be split across several vector envs and still be the same episodes.
    An env's own vectorised implementation may draw the whole batch from one generator instead (CartPole's)."""
    base = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    return (isinstance(base, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))
            or type(base).__module__.split(".")[0] == "ale_py")


def get_env_state(envs: gym.vector.VectorEnv) -> dict | None:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    base = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    if isinstance(base, CartPoleVectorEnv):
        return {"kind": "CartPoleVectorEnv", "state": np.asarray(base.state).tolist(), "steps": base.steps.tolist(),
                "prev_done": base.prev_done.tolist(), "rng": _rng_state(base.np_random)}
    if isinstance(base, gym.vector.SyncVectorEnv):
        subs = []
        for env in base.envs:
            inner = env.unwrapped
            if not hasattr(inner, "state") or hasattr(inner, "world") or inner.__module__.split(".")[2:3] != ["classic_control"]:
                return None
            limit, stack = _time_limit(env), _wrapper(env, StackFrames)
            subs.append({"state": np.asarray(inner.state, dtype=np.float64).tolist(), "rng": _rng_state(inner.np_random),
                         "elapsed": None if limit is None else limit._elapsed_steps,
                         "last_u": None if getattr(inner, "last_u", None) is None else float(inner.last_u),
                         **({"frames": stack.get_frames()} if stack is not None else {})})
        return {"kind": "SyncVectorEnv", "envs": subs, "autoreset": base._autoreset_envs.tolist()}
    return None


def set_env_state(envs: gym.vector.VectorEnv, state: dict) -> None:
    base = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    if state["kind"] == "CartPoleVectorEnv":
        base.state = np.asarray(state["state"], dtype=np.float64)
        base.steps = np.asarray(state["steps"], dtype=np.int32)
        base.prev_done = np.asarray(state["prev_done"], dtype=np.bool_)
        _set_rng(base.np_random, state["rng"])
        return
    for env, sub in zip(base.envs, state["envs"]):
        inner = env.unwrapped
        inner.state = np.asarray(sub["state"], dtype=np.float64)
        _set_rng(inner.np_random, sub["rng"])
        if sub["elapsed"] is not None:
            _time_limit(env)._elapsed_steps = sub["elapsed"]
        if sub.get("last_u") is not None:
            inner.last_u = sub["last_u"]
        if "frames" in sub:  # (frame_stack: the observations the next ones are stacked with)
            _wrapper(env, StackFrames).set_frames(sub["frames"])
    base._autoreset_envs = np.asarray(state["autoreset"], dtype=np.bool_)
