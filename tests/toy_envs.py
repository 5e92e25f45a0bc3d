"""Small environments whose right answers are known, registered under the ppo2test/ namespace."""
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class IdentityEnv(gym.Env):
    """Observe a one-hot target, get reward 1 for naming it. Any working policy-gradient learner solves it
    in seconds; a broken one stays at chance (1/n per step)."""

    def __init__(self, n: int = 4, ep_length: int = 20):
        self.n, self.ep_length = n, ep_length
        self.observation_space = spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = spaces.Discrete(n)

    def _obs(self):
        o = np.zeros(self.n, np.float32)
        o[self.target] = 1.0
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.target = 0, int(self.np_random.integers(self.n))
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.target)
        self.t += 1
        self.target = int(self.np_random.integers(self.n))
        return self._obs(), reward, False, self.t >= self.ep_length, {}


class CountEnv(gym.Env):
    """obs = [steps taken]; reward 1 per step; terminates after `terminate_at` steps (if set)."""

    def __init__(self, terminate_at: int | None = None):
        self.terminate_at = terminate_at
        self.observation_space = spaces.Box(0.0, 1000.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([float(self.t)], np.float32), 1.0, terminated, False, {}


class NaNRewardEnv(CountEnv):
    """Healthy for `healthy_steps` steps, then rewards become NaN."""

    def __init__(self, healthy_steps: int = 100):
        super().__init__(terminate_at=None)
        self.healthy_steps, self.total = healthy_steps, 0

    def step(self, action):
        obs, reward, term, trunc, info = super().step(action)
        self.total += 1
        return obs, float("nan") if self.total > self.healthy_steps else reward, term, trunc, info


class NaNObsBoxEnv(CountEnv):
    """Box actions; observations become NaN after `healthy_steps` steps. Counts the non-finite actions it
    receives (a policy fed NaN observations would send NaN actions)."""

    nan_actions_seen = 0

    def __init__(self, healthy_steps: int = 40):
        super().__init__(terminate_at=None)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.healthy_steps, self.total = healthy_steps, 0

    def step(self, action):
        if not np.isfinite(action).all():
            NaNObsBoxEnv.nan_actions_seen += 1
        obs, reward, term, trunc, info = super().step(action)
        self.total += 1
        return (obs * np.nan if self.total > self.healthy_steps else obs), reward, term, trunc, info


class TupleActionEnv(CountEnv):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))


class ImageObsEnv(CountEnv):
    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)


class ScoreEnv(CountEnv):
    """Rewards 5, -3, 0, 2, then the episode terminates: return 4, and 1 once rewards are clipped to their sign."""

    REWARDS = (5.0, -3.0, 0.0, 2.0)

    def step(self, action):
        obs, _, _, truncated, info = super().step(action)
        t = int(self.t)
        return obs, self.REWARDS[t - 1], t >= len(self.REWARDS), truncated, info


def register_all():
    for name, entry, kwargs in [
        ("Identity-v0", IdentityEnv, {}),
        ("Count-v0", CountEnv, {"terminate_at": 3}),
        ("CountTruncated-v0", CountEnv, {}),
        ("NaNReward-v0", NaNRewardEnv, {}),
        ("NaNObsBox-v0", NaNObsBoxEnv, {}),
        ("TupleAction-v0", TupleActionEnv, {}),
        ("ImageObs-v0", ImageObsEnv, {}),
        ("Score-v0", ScoreEnv, {}),
    ]:
        env_id = f"ppo2test/{name}"
        if env_id not in gym.registry:
            max_steps = {"CountTruncated-v0": 4, "NaNReward-v0": 50}.get(name)
            gym.register(env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=max_steps)


register_all()
