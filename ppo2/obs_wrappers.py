"""ppo2's own options for any non-ALE env's frames: what RL-Zoo's `frame_stack` and its frame-skip, resize and
grayscale wrappers do, recorded with the policy so that it plays the env as it was trained.

They travel with the env's constructor arguments (`--env-kwargs frame_stack=4 grayscale=True resize=[64,64]`,
`env_kwargs.OBS_OPTIONS` checks them) because they are part of the env the policy plays; `ppo2.envs` takes them out
before the constructor sees them and wraps each env, in this order. An env whose constructor takes an argument of one
of these names itself (MuJoCo's `frame_skip`, which sets the simulation's time step) gets it instead, as RL-Zoo's
`env_kwargs` would give it.

- `frame_skip=n`: each action repeated n steps, their rewards summed, stopping where the episode ends
  (`SkipFrames`; RL-Zoo's FrameSkip, which its CarRacing settings use with n=2).
- `resize=[H, W]`: image frames resized to H x W, their layout kept ((H, W), (H, W, C) or (C, H, W); OpenCV's area
  interpolation, as gymnasium's ResizeObservation, which takes only channels-last frames).
- `grayscale=True`: RGB frames, (H, W, 3) or (3, H, W), to luminance (H, W) (gymnasium's GrayscaleObservation's
  weights and rounding).
  Both apply to the observation if it is an image, or to each image entry of a Dict (a robot's camera beside its
  joint angles; `TransformFrames`).
- `frame_stack=k`: the last k observations as one (`StackFrames`), so a feed-forward policy sees motion
  (CarRacing's speed, CartPoleNoVel-v1's velocities): vectors end to end, images along their channels.

ALE games are not wrapped: their frames are always 84x84 gray, 4 stacked (`ppo2.envs`).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .env_kwargs import frame_options
from .masks import MASK_KEY
from .observations import _image_spec, is_image_space

__all__ = ["SkipFrames", "StackFrames", "TransformFrames", "pop_obs_wrappers"]


class _Stack:
    """The last `k` observations of one Box space, joined as `StackFrames` describes."""

    def __init__(self, space: spaces.Space, k: int, what: str):
        if not isinstance(space, spaces.Box) or len(space.shape) not in (1, 2, 3):
            raise ValueError(f"frame_stack takes vector or image observations (a Box of 1 to 3 dimensions), got "
                             f"{space}{what}")
        if is_image_space(space):
            self.axis = -1 if _image_spec(space.shape)["channels_last"] else 0
            self.new_axis = len(space.shape) == 2  # (a gray frame gains a channel axis)
        else:
            self.axis, self.new_axis = 0, False
        low, high = np.minimum(space.low, 0), np.maximum(space.high, 0)  # (the zeros before an episode's first)
        self.space = spaces.Box(self.join([low] * k), self.join([high] * k), dtype=space.dtype)
        self.zero = np.zeros(space.shape, space.dtype)
        self.frames: deque = deque(maxlen=k)

    def join(self, frames: list) -> np.ndarray:
        return np.stack(frames, axis=-1) if self.new_axis else np.concatenate(frames, axis=self.axis)

    def reset(self, obs: Any) -> np.ndarray:
        self.frames.extend([self.zero] * (self.frames.maxlen - 1))
        return self.push(obs)

    def push(self, obs: Any) -> np.ndarray:
        self.frames.append(np.asarray(obs, self.zero.dtype))
        return self.join(list(self.frames))


class StackFrames(gym.Wrapper):
    """The last `k` observations as one, oldest first, zeros before an episode's first (SB3's VecFrameStack):
    a vector (d,) becomes (k * d,), an (a, b) Box (k * a, b); an image along its channels: (H, W, C) -> (H, W, k * C),
    (C, H, W) -> (k * C, H, W), a gray (H, W) frame -> (H, W, k). A Dict's entries are stacked each on its own, but
    its `action_mask` (ppo2/masks.py), which says what is legal now, not what was."""

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, spaces.Dict):
            self._stacks = {key: _Stack(sub, k, f" in the Dict's {key!r}") for key, sub in space.spaces.items()
                            if key != MASK_KEY}
            self.observation_space = spaces.Dict({key: self._stacks[key].space if key in self._stacks else sub
                                                  for key, sub in space.spaces.items()})
        else:
            self._stacks = {None: _Stack(space, k, "")}
            self.observation_space = self._stacks[None].space

    def _each(self, obs: Any, fn: str) -> Any:
        if None in self._stacks:
            return getattr(self._stacks[None], fn)(obs)
        return {key: getattr(self._stacks[key], fn)(value) if key in self._stacks else value
                for key, value in obs.items()}

    def reset(self, **kwargs) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        return self._each(obs, "reset"), info

    def step(self, action: Any) -> tuple:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._each(obs, "push"), reward, terminated, truncated, info

    def get_frames(self) -> list:
        """The frames held (JSON data: a resumable checkpoint keeps them with the env's state, `ppo2.envs`)."""
        return [[f.tolist() for f in stack.frames] for stack in self._stacks.values()]

    def set_frames(self, frames: list) -> None:
        for stack, held in zip(self._stacks.values(), frames):
            stack.frames.extend(np.asarray(f, stack.zero.dtype).reshape(stack.zero.shape) for f in held)


class SkipFrames(gym.Wrapper):
    """Each action played `n` times; the rewards summed, the last observation and info returned, stopping early where
    the episode terminates or is truncated."""

    def __init__(self, env: gym.Env, n: int):
        super().__init__(env)
        self.n = int(n)

    def step(self, action: Any) -> tuple:
        total = 0.0
        for _ in range(self.n):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # (gymnasium's GrayscaleObservation: ITU-R BT.709 luma)


def _resize(frame: np.ndarray, size: tuple[int, int], channels_last: bool) -> np.ndarray:
    import cv2  # (opencv-python-headless: `pip install ppo2[atari]`; checked when the wrapper is made)

    hwc = frame if channels_last or frame.ndim == 2 else np.moveaxis(frame, 0, -1)
    out = cv2.resize(np.ascontiguousarray(hwc), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    out = out.reshape(size + hwc.shape[2:])  # (OpenCV drops a single channel's axis)
    return out if channels_last or frame.ndim == 2 else np.moveaxis(out, -1, 0)


def _gray(frame: np.ndarray, channels_last: bool) -> np.ndarray:
    rgb = frame if channels_last else np.moveaxis(frame, 0, -1)
    return np.sum(rgb * GRAY_WEIGHTS, axis=-1).astype(np.uint8)


class _FrameMap:
    """What `resize` and `grayscale` do to one image Box: its new space and the function on its frames."""

    def __init__(self, space: spaces.Box, resize: tuple[int, int] | None, grayscale: bool):
        self.channels_last = _image_spec(space.shape)["channels_last"]
        self.resize, self.grayscale = resize, grayscale
        shape = space.shape
        if resize is not None:
            shape = tuple(resize) + shape[2:] if self.channels_last else shape[:1] + tuple(resize)
        if grayscale:
            shape = shape[:2] if self.channels_last else shape[1:]
        if len(shape) == 3 and _image_spec(shape)["channels_last"] != self.channels_last:
            raise ValueError(f"resize={list(resize)} would turn {space.shape} frames into {shape}, whose channel axis "
                             "reads the other way (ppo2 takes the smaller end as the channels): choose sides larger "
                             "than the channel count")
        self.space = spaces.Box(0, 255, shape, np.uint8)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if self.resize is not None:
            frame = _resize(frame, self.resize, self.channels_last)
        return _gray(frame, self.channels_last) if self.grayscale else frame


def _is_rgb(space: spaces.Space) -> bool:
    return is_image_space(space) and len(space.shape) == 3 and (
        space.shape[-1] if _image_spec(space.shape)["channels_last"] else space.shape[0]) == 3


class TransformFrames(gym.ObservationWrapper):
    """`resize` (to [H, W]: each image) and/or `grayscale` (each RGB image) for an image observation or the entries
    of a Dict; the other entries, an `action_mask` among them, pass as they are. A ValueError where an option finds
    no frame to change: it was meant for another env."""

    def __init__(self, env: gym.Env, resize: tuple[int, int] | None = None, grayscale: bool = False):
        super().__init__(env)
        if resize is not None:
            try:
                import cv2  # noqa: F401
            except ImportError:
                raise ImportError("resize needs OpenCV: pip install 'ppo2[atari]' (opencv-python-headless)") from None
        space = env.observation_space
        size = None if resize is None else (int(resize[0]), int(resize[1]))
        entries = space.spaces if isinstance(space, spaces.Dict) else {None: space}
        self._maps = {key: _FrameMap(sub, size, grayscale and _is_rgb(sub)) for key, sub in entries.items()
                      if is_image_space(sub) and (size is not None or _is_rgb(sub))}
        for option, missing, frames in (("resize", size is not None and not self._maps, "image observations"),
                                        ("grayscale", grayscale and not any(m.grayscale for m in self._maps.values()),
                                         "RGB frames ((H, W, 3) or (3, H, W))")):
            if missing:
                raise ValueError(f"{option} takes {frames}: a uint8 Box with bounds [0, 255], or a Dict with such an "
                                 f"entry; got {space}")
        if isinstance(space, spaces.Dict):
            self.observation_space = spaces.Dict({key: self._maps[key].space if key in self._maps else sub
                                                  for key, sub in space.spaces.items()})
        else:
            self.observation_space = self._maps[None].space

    def observation(self, obs: Any) -> Any:
        if None in self._maps:
            return self._maps[None](obs)
        return {key: self._maps[key](value) if key in self._maps else value for key, value in obs.items()}


def pop_obs_wrappers(kwargs: dict, env_id: str) -> list[Callable[[gym.Env], gym.Env]]:
    """Take ppo2's options for the frames (already checked: `env_kwargs.validate_env_kwargs`) out of `env_id`'s
    arguments, leaving any its constructor takes itself (`env_kwargs.frame_options`); the wrappers they ask for, in
    the order each env gets them."""
    options = frame_options(kwargs, env_id)
    for key in options:
        del kwargs[key]
    resize, grayscale = options.get("resize"), options.get("grayscale", False)
    stack, skip = options.get("frame_stack", 1), options.get("frame_skip", 1)
    wrappers = [] if skip == 1 else [lambda env: SkipFrames(env, skip)]
    if resize is not None or grayscale:
        wrappers.append(lambda env: TransformFrames(env, resize, grayscale))
    if stack > 1:
        wrappers.append(lambda env: StackFrames(env, stack))
    return wrappers
