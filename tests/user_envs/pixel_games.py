"""A user's own environments (not part of ppo2): a pixel task and a Dict task."""
import gymnasium as gym
import numpy as np
from gymnasium import spaces

SIDE = 36


def _frame(rng, right):
    img = rng.integers(0, 60, (SIDE, SIDE), dtype=np.uint8)
    y = int(rng.integers(0, SIDE - 8))
    x = int(rng.integers(SIDE // 2, SIDE - 8)) if right else int(rng.integers(0, SIDE // 2 - 8))
    img[y:y + 8, x:x + 8] = 255
    return img


class BrightSide(gym.Env):
    """Which half of the picture holds the bright square? 8 pictures per episode, +1 per right answer."""

    def __init__(self, episode_length=8):
        self.observation_space = spaces.Box(0, 255, (SIDE, SIDE, 1), np.uint8)
        self.action_space = spaces.Discrete(2)
        self.episode_length = episode_length

    def _obs(self):
        self.right = bool(self.np_random.integers(2))
        return _frame(self.np_random, self.right)[:, :, None]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == int(self.right))
        self.t += 1
        return self._obs(), reward, self.t >= self.episode_length, False, {}


class SideWithFlag(gym.Env):
    """The same picture, plus a flag in a vector: flag +1 asks for the bright side, -1 for the other one.
    Only a policy that reads both keys of the Dict can score above chance."""

    def __init__(self, episode_length=8):
        self.observation_space = spaces.Dict({
            "screen": spaces.Box(0, 255, (SIDE, SIDE), np.uint8),
            "flag": spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
        self.action_space = spaces.Discrete(2)
        self.episode_length = episode_length

    def _obs(self):
        self.right = bool(self.np_random.integers(2))
        self.flip = bool(self.np_random.integers(2))
        flag = np.array([-1.0 if self.flip else 1.0, self.np_random.uniform(-1, 1)], np.float32)
        return {"screen": _frame(self.np_random, self.right), "flag": flag}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == int(self.right != self.flip))
        self.t += 1
        return self._obs(), reward, self.t >= self.episode_length, False, {}


gym.register("BrightSide-v0", entry_point=BrightSide, reward_threshold=7.5)
gym.register("SideWithFlag-v0", entry_point=SideWithFlag, reward_threshold=7.5)
