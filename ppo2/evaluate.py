"""Evaluate a policy on seeded episodes, and record replays.

    python -m ppo2.evaluate CartPole-v1                      # a shipped policy (weights/)
    python -m ppo2.evaluate runs/CartPole-v1__ppo__1 -n 100  # a train.py output directory
    python -m ppo2.evaluate org/ppo2-CartPole-v1 --gif replay.gif   # a Hugging Face Hub repo
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .distributions import drawn_as_rows
from .env_ids import is_atari
from .env_kwargs import env_kwargs_text, parse_env_kwargs, policy_env_kwargs
from .envs import check_env_id, make_env, make_vector_env, refuse_file_named_module
from .masks import allow_ended, env_masks
from .observations import encode_obs
from .speed import NUMPY_MAX_BATCH, numpy_policy
from .validation import check_compatible

__all__ = ["evaluate_policy", "run_episodes", "record_replay", "watch", "replay_settings", "load_policy", "main",
           "EvaluationInterrupted"]


class EvaluationInterrupted(Exception):
    """`stop()` asked the episodes to end early (a training run that received SIGTERM or Ctrl-C)."""


class PolicyActor:
    """`model.predict` step after step in n environments: a recurrent policy's LSTM state carried from each step
    to the next and zeroed where an episode begins; action masks from the observations or, for a policy that takes
    them from the env's `action_masks()`, from `masks()`."""

    def __init__(self, model, deterministic: bool, n: int):
        self.model, self.deterministic = model, deterministic
        self.state, self.episode_start = None, np.ones(n, np.bool_)
        self.ended = np.zeros(n, np.bool_)  # envs whose episode just ended: their next action is ignored
        self.masks = getattr(model, "mask_config", None)
        if self.masks is not None and not self.masks.applied:
            self.masks = None

    def __call__(self, obs: Any, masks: Callable[[], Any]) -> np.ndarray:
        action_masks = None
        if self.masks is not None:
            action_masks = masks() if self.masks.source == "method" else self.masks.split(obs)[1]
            # (a terminal state may allow no action; the env ignores the action after it)
            action_masks = allow_ended(action_masks, self.ended if np.ndim(action_masks) == 2 else None)
        if getattr(self.model, "memory", None) is None:
            return self.model.predict(obs, deterministic=self.deterministic, action_masks=action_masks)[0]
        action, self.state = self.model.predict(obs, state=self.state, episode_start=self.episode_start,
                                                deterministic=self.deterministic, action_masks=action_masks)
        self.episode_start = np.zeros_like(self.episode_start)
        return action


def run_episodes(model, envs, seed: int, deterministic: bool = True, stop: Callable[[], bool] | None = None,
                 share: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Play exactly one episode in each sub-environment of `envs` (reset with `seed`); returns (returns, lengths).
    Sampled actions (`deterministic=False`) are drawn from `seed` too, so those episodes replay as well; the caller's
    random state is left as it was. `stop`, checked before every step, raises EvaluationInterrupted when it returns
    True. `share=(first, total)`: these envs' episodes are first .. first + n - 1 of the `total` one call with `total`
    envs (sub-environment i reset with seed + i) would play, sampled actions included (a built-in action head's:
    `distributions.drawn_as_rows`), so several processes can split one evaluation."""
    first = share[0] if share else 0
    rows = drawn_as_rows(*share) if share and not deterministic else contextlib.nullcontext()
    with _seeded_unless(deterministic, model, seed), rows:
        return _play_episodes(model, envs, seed + first, deterministic, stop)


@contextlib.contextmanager
def _sampling_seeded(model, seed: int):
    """torch's random state (CPU, and the model's GPU) started from `seed` inside, and restored after."""
    device = next(model.parameters(), torch.zeros(0)).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def _play_episodes(model, envs, seed: int, deterministic: bool,
                   stop: Callable[[], bool] | None) -> tuple[np.ndarray, np.ndarray]:
    n = envs.num_envs
    was_training = model.training
    model.eval()
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    # predict's numpy path for small MLP batches, its weights looked up once: the first step goes through
    # predict (which checks the observations' shape and values), the rest straight to the numpy policy
    plain = getattr(model, "memory", None) is None and getattr(model, "mask_config", None) is None
    policy = (numpy_policy(model) if plain and deterministic and isinstance(obs, np.ndarray) and n <= NUMPY_MAX_BATCH
              else None)
    actor = PolicyActor(model, deterministic, n)
    prev_done = np.zeros(n, np.bool_)
    first = True
    try:
        while running.any():
            if stop is not None and stop():
                raise EvaluationInterrupted(f"evaluation stopped after {int(lengths.max())} steps")
            if policy is not None and not first:
                vec = encode_obs(model.obs_spec, obs)  # (integer observations one-hot, checked)
                if not np.isfinite(vec).all():
                    model.predict(obs)  # raises, naming the NaN/inf
                action = policy.act(vec)
            else:  # predict: numpy for small MLP batches (a few us per step), else torch
                action = actor(obs, lambda: env_masks(envs))
            first = False
            obs, reward, terminated, truncated, _ = envs.step(action)
            # autoreset on the next step: an episode begins with the observation after the one that ended it
            actor.episode_start, prev_done = prev_done, terminated | truncated
            actor.ended = prev_done
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
    finally:
        model.train(was_training)
    return returns, lengths


def evaluate_policy(model, env_id: str, n_episodes: int = 10, seed: int = 0, deterministic: bool = True,
                    envs=None, stop: Callable[[], bool] | None = None, env_kwargs: dict | None = None) -> dict[str, Any]:
    """Mean/std return of `n_episodes` episodes played in parallel, one per sub-environment, in `env_id` made with
    `env_kwargs` (default: the policy's own constructor arguments where `env_id` is its env: policy_env_kwargs).

    With gymnasium's sync vector envs, episode i is reset with seed `seed + i`; with an env's own vector
    implementation (CartPole) the whole batch draws from one generator seeded with `seed`. Either way the
    same (seed, n_episodes) replays the same episodes."""
    own = envs is None
    if own:
        envs = make_vector_env(env_id, n_episodes, **policy_env_kwargs(model, env_id, env_kwargs))
    elif envs.num_envs != n_episodes:
        raise ValueError(f"envs has {envs.num_envs} sub-environments, expected n_episodes={n_episodes}")
    try:
        returns, lengths = run_episodes(model, envs, seed, deterministic, stop)
    finally:
        if own:
            envs.close()
    return evaluation_result(env_id, returns, lengths, seed, deterministic)


def evaluation_result(env_id: str, returns: np.ndarray, lengths: np.ndarray, seed: int,
                      deterministic: bool = True) -> dict[str, Any]:
    """What `evaluate_policy` reports for the episodes seeded `seed`, `seed + 1`, ...: their returns and lengths."""
    return {"env_id": env_id, "mean_reward": float(returns.mean()), "std_reward": float(returns.std()),
            "n_episodes": int(len(returns)), "seed": int(seed), "deterministic": bool(deterministic),
            "episode_rewards": [float(r) for r in returns], "episode_lengths": [int(x) for x in lengths]}


@torch.no_grad()
def record_replay(model, env_id: str, path: str | Path, seed: int = 0, deterministic: bool = True,
                  max_steps: int | None = None, frame_skip: int | None = None, scale: float | None = None,
                  fps: int | None = None, env_kwargs: dict | None = None) -> dict:
    """Render one episode (rgb_array, headless) to a .gif, or an .mp4 (needs `pip install imageio-ffmpeg`): up to
    `max_steps` agent steps, every `frame_skip`-th frame, at `scale` of the env's screen; what is left out comes from
    `replay_settings`. The env is made with `env_kwargs` as `evaluate_policy` makes it. Returns {'return', 'length',
    'path'}."""
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise ValueError(f"replay path must end in .gif or .mp4, got {path.name!r}")
    import os

    import imageio.v3 as iio

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: rgb_array needs no window
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo's default (GLFW) needs a display; EGL renders without one

    env = _make_render_env(env_id, policy_env_kwargs(model, env_id, env_kwargs))
    render_fps = env.metadata.get("render_fps", 30)
    given = {"max_steps": max_steps, "frame_skip": frame_skip, "scale": scale}
    settings = {**replay_settings(env_id, render_fps),
                **{k: v for k, v in given.items() if v is not None}}
    max_steps, frame_skip, scale = settings["max_steps"], settings["frame_skip"], settings["scale"]
    frames = []

    def keep(steps: int) -> None:
        if steps % frame_skip == 0:
            frames.append(env.render())

    try:
        with _seeded_unless(deterministic, model, seed):  # (sampled actions drawn from `seed`, as in run_episodes)
            total, steps = _play_one(model, env, seed, deterministic, max_steps, keep)
        fps = fps or int(render_fps)
    finally:
        env.close()
    frames = np.stack([_downscale(f, scale) for f in frames])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as exc:
            raise ImportError("writing .mp4 replays needs imageio-ffmpeg: pip install imageio-ffmpeg "
                              "(or write a .gif)") from exc
        iio.imwrite(path, frames, plugin="FFMPEG", fps=fps / frame_skip, macro_block_size=1)
    else:
        iio.imwrite(path, frames, duration=1000 * frame_skip / fps, loop=0)
    return {"return": total, "length": steps, "path": str(path)}


@torch.no_grad()
def watch(model, env_id: str, n_episodes: int = 1, seed: int = 0, deterministic: bool = True,
          render_mode: str = "human", env_kwargs: dict | None = None) -> list[float]:
    """Play `n_episodes` (seeds `seed`, `seed + 1`, ...) in a window: `make_env(env_id, render_mode="human")`, the
    observations the policy was trained on (and its env's constructor arguments, as `evaluate_policy`). Returns the
    episodes' returns."""
    env = make_env(env_id, render_mode=render_mode, **policy_env_kwargs(model, env_id, env_kwargs))
    try:
        with _seeded_unless(deterministic, model, seed):
            return [_play_one(model, env, seed + i, deterministic)[0] for i in range(n_episodes)]
    finally:
        env.close()


def _seeded_unless(deterministic: bool, model, seed: int):
    return contextlib.nullcontext() if deterministic else _sampling_seeded(model, seed)


def _play_one(model, env, seed: int, deterministic: bool, max_steps: int | None = None,
              after_step: Callable[[int], None] | None = None) -> tuple[float, int]:
    """One episode of a single env from `reset(seed)`, at most `max_steps` agent steps: (return, steps).
    `after_step(0)` after the reset and `after_step(steps)` after each step (a replay takes its frames there)."""
    obs, _ = env.reset(seed=seed)
    model.eval()
    actor = PolicyActor(model, deterministic, 1)
    total, steps, done = 0.0, 0, False
    if after_step is not None:
        after_step(0)
    while not done and (max_steps is None or steps < max_steps):
        action = actor(obs, lambda: np.asarray(env.get_wrapper_attr("action_masks")()))
        obs, reward, terminated, truncated, _ = env.step(action)
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
        if after_step is not None:
            after_step(steps)
    return total, steps


def replay_settings(env_id: str, render_fps: float) -> dict:
    """How a replay is recorded unless told otherwise, by the kind of env: {'max_steps', 'frame_skip', 'scale'}.
    MuJoCo: ~16 frames/s and at most 100 frames at half size (the textured floor compresses poorly in a GIF); Atari: the
    game's own 160x210 screen (half would be a thumbnail), every other agent step, up to 2,000 of them, about a whole
    game of Pong played well; anything else at half size, every 3rd frame of a 50 frames/s env, else every 2nd."""
    spec = check_env_id(env_id)
    if str(spec.entry_point).startswith("gymnasium.envs.mujoco"):
        skip = max(1, round(render_fps / 16))
        return {"max_steps": min(1000, 100 * skip), "frame_skip": skip, "scale": 0.5}
    if is_atari(spec.id):
        return {"max_steps": 2000, "frame_skip": 2, "scale": 1.0}
    return {"max_steps": 1000, "frame_skip": 3 if render_fps >= 50 else 2, "scale": 0.5}


def _make_render_env(env_id: str, env_kwargs: dict | None = None):
    """The env for a replay: MuJoCo locomotion envs through their "track" camera, which follows the body
    (gymnasium's default view is a free camera that the runner leaves behind), unless `env_kwargs` name another."""
    spec = check_env_id(env_id)
    mujoco = str(spec.entry_point).startswith("gymnasium.envs.mujoco")  # (a model without "track": the free camera)
    camera = {"camera_name": "track"} if mujoco else {}
    return make_env(spec.id, render_mode="rgb_array", **{**camera, **(env_kwargs or {})})


def _downscale(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return frame
    step = int(round(1 / scale))
    return np.ascontiguousarray(frame[::step, ::step])


def policy_source(source: str) -> str:
    """Where `source` names a policy: "zoo" (a shipped env id), "dir" (a local directory) or "hub" (a Hugging Face Hub
    repo id), tried in that order; a name that looks local and is neither raises ValueError naming the closest zoo
    ids. `load_policy` reads the policy, and `recorded_deterministic` its recorded evaluation, from the same place."""
    from .hf_hub import names_a_local_path
    from .zoo import is_zoo_id, zoo_entry

    if is_zoo_id(source):  # a zoo id is never shadowed by a same-named local directory
        return "zoo"
    if Path(source).expanduser().is_dir():
        return "dir"
    # (a bare name is a mistyped zoo id before it is a Hub repo without an owner)
    looks_local = names_a_local_path(source) or "/" not in source or Path(source).expanduser().parent.is_dir()
    if looks_local and "/" in source.replace("\\", "/"):  # a path: the zoo's ids say nothing of it
        raise ValueError(f"{source!r}: no such directory (a policy directory holds model.safetensors + config.json: "
                         "a run's output, its best/ or a policies/update_N/)")
    if looks_local:
        try:
            zoo_entry(source)  # raises, naming the shipped ids and the closest ones
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"{source!r} is not a zoo id ({exc}), a directory holding model.safetensors + "
                             "config.json, or a Hugging Face Hub repo id ('org/name')") from None
    return "hub"


def load_policy(source: str, map_location: str = "cpu"):
    """A policy from a zoo env id, a local directory, or a Hugging Face Hub repo id (`policy_source`)."""
    from .model import PPO2
    from .zoo import load_pretrained

    if policy_source(source) == "zoo":
        # (its sha-checked config names the env the policy plays: 'Pong' loads one that plays ALE/Pong-v5)
        return load_pretrained(source, map_location=map_location)
    return PPO2.from_pretrained(source, map_location=map_location)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ppo2.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="zoo env id (e.g. CartPole-v1), a directory with model.safetensors + config.json, or a Hub repo id")
    p.add_argument("--env", dest="env_id", help="environment id (default: the one recorded with the policy). A "
                   "'module:EnvId' id imports that module to register the env: name it here to allow that; an id the "
                   "policy's own files name is never imported")
    p.add_argument("--env-kwargs", nargs="+", default=(), metavar="KEY=VALUE",
                   help="arguments for the env's constructor, over those recorded with the policy (as train.py's)")
    p.add_argument("-n", "--episodes", type=_positive_int, default=100, help="number of episodes")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--stochastic", dest="deterministic", action="store_false", default=None,
                     help="sample actions (default: as the policy's recorded evaluation played, e.g. an Atari zoo "
                     "entry's; deterministic where none is recorded)")
    how.add_argument("--deterministic", dest="deterministic", action="store_true", default=None,
                     help="play the most likely action")
    p.add_argument("--gif", "--video", dest="gif", help="also write a replay of one episode to this .gif or .mp4 file")
    p.add_argument("--watch", action="store_true", help="play the episodes one after another in a window instead "
                   "(the env in render_mode='human'; Atari: the game in colour, the policy reading its usual frames)")
    p.add_argument("--json", dest="json_out", help="write the results to this JSON file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        model = load_policy(args.source, map_location=args.device)
        env_id = args.env_id or recorded_env_id(model, args.source)
        if not env_id:
            p.error("the policy records no environment id; pass --env")
        return _evaluate_cli(model, env_id, args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def recorded_env_id(model, source: str) -> str | None:
    """The env id a loaded policy's files name, unless it would import a module (`refuse_file_named_module`)."""
    env_id = getattr(model, "env_id", None)
    refuse_file_named_module(env_id, f"{source}'s config.json")
    return env_id


def recorded_deterministic(source: str) -> bool | None:
    """Whether the evaluation a policy was published with played the most likely actions (True) or sampled them
    (False; RL-Zoo's and ppo2's Atari entries), or None where none is recorded: a zoo entry's (zoo.json, sha-pinned
    with the weights), else the results.json beside the weights (train.py's run directories, save_pretrained, a Hub
    repo that push_to_hub filled). `python -m ppo2.evaluate` plays the same way, so that it reproduces that number."""
    from .hf_hub import RESULTS_NAME
    from .io import read_json
    from .zoo import zoo_entry

    kind = policy_source(source)
    if kind == "zoo":
        results = zoo_entry(source).get("eval")
        where = f"the zoo entry for {source!r}"
    else:
        path = Path(source).expanduser() / RESULTS_NAME if kind == "dir" else _hub_results(source)
        if path is None or not path.is_file():
            return None
        results, where = read_json(path), str(path)
    value = results.get("deterministic") if isinstance(results, dict) else None
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{where}: 'deterministic' should be true or false, got {value!r}; pass --deterministic or "
                     "--stochastic to choose")


def _hub_results(repo_id: str) -> Path | None:
    """A Hub repo's results.json, or None where it has none (or, offline, none is cached)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from .hf_hub import RESULTS_NAME

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=RESULTS_NAME))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def check_policy_env(model, env_id: str, env_kwargs: dict | None = None) -> None:
    """Raise ValueError unless `model` can act in `env_id` (shapes, action sizes, bounds) as the evaluation makes
    it: through `make_vector_env`, so an Atari policy is checked against the preprocessed frame stack it plays."""
    envs = make_vector_env(env_id, 1, **policy_env_kwargs(model, env_id, env_kwargs))
    try:
        check_compatible(model, envs.single_observation_space, envs.single_action_space, env_id)
    finally:
        envs.close()


def _evaluate_cli(model, env_id: str, args) -> int:
    recorded = policy_env_kwargs(model, env_id)  # (--env-kwargs go over them)
    env_kwargs = policy_env_kwargs(model, env_id, {**recorded, **parse_env_kwargs(args.env_kwargs)})
    check_policy_env(model, env_id, env_kwargs)
    deterministic, how = args.deterministic, ""
    if deterministic is None:  # (as the policy's recorded evaluation played, where one is recorded)
        recorded = recorded_deterministic(args.source)
        deterministic, how = (True, "") if recorded is None else (recorded, ", as recorded")
    if args.watch:
        for i, ret in enumerate(watch(model, env_id, args.episodes, args.seed, deterministic, env_kwargs=env_kwargs)):
            print(f"episode {i + 1} (seed {args.seed + i}): return {ret:.2f}")
        return 0
    res = evaluate_policy(model, env_id, n_episodes=args.episodes, seed=args.seed, deterministic=deterministic,
                          env_kwargs=env_kwargs)
    made = f"{env_id}({env_kwargs_text(env_kwargs)[2:]})" if env_kwargs else env_id
    print(f"{made}: {res['mean_reward']:.2f} +/- {res['std_reward']:.2f} over {res['n_episodes']} episodes "
          f"(seed {args.seed}, {'deterministic' if deterministic else 'stochastic'}{how})")
    if args.gif:
        rep = record_replay(model, env_id, args.gif, seed=args.seed, deterministic=deterministic, env_kwargs=env_kwargs)
        print(f"replay: {rep['path']} (return {rep['return']:.1f}, {rep['length']} steps)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**res, **({"env_kwargs": env_kwargs} if env_kwargs else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
