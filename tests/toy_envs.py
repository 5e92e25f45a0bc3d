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


class IntegerIdentityEnv(IdentityEnv):
    """IdentityEnv with the target given as an integer observation: `kind` "discrete" (Discrete(n, start=-2)),
    "multidiscrete" (the target, then a distractor, MultiDiscrete([n, 3], start=[1, 0])), "multibinary" (the
    target's bit set among n), "dict" ({"target": Discrete(n), "noise": a 2-vector}) or "tuple" (a distractor, then
    the target: Tuple(Discrete(3), Discrete(n, start=5)), as Blackjack observes) or "grid" (a 2-D Box: noise, then
    the target's one-hot). Reward 1 for naming the
    target: 20 per episode for a policy that reads its observations, n times less by chance."""

    def __init__(self, kind: str = "discrete", n: int = 4, ep_length: int = 20):
        super().__init__(n, ep_length)
        self.kind = kind
        self.observation_space = {
            "discrete": spaces.Discrete(n, start=-2),
            "multidiscrete": spaces.MultiDiscrete([n, 3], start=[1, 0]),
            "multibinary": spaces.MultiBinary(n),
            "dict": spaces.Dict({"target": spaces.Discrete(n), "noise": spaces.Box(-1.0, 1.0, (2,), np.float32)}),
            "tuple": spaces.Tuple((spaces.Discrete(3), spaces.Discrete(n, start=5))),
            "mixed": spaces.Tuple((spaces.Discrete(n), spaces.Box(-1.0, 1.0, (2,), np.float32))),  # (refused)
            "grid": spaces.Box(-1.0, 1.0, (2, n), np.float32),
        }[kind]

    def _obs(self):
        if self.kind == "discrete":
            return self.target - 2
        if self.kind == "multidiscrete":
            return np.array([self.target + 1, self.np_random.integers(3)], np.int64)
        if self.kind == "multibinary":
            return (np.arange(self.n) == self.target).astype(np.int8)
        if self.kind == "grid":  # (a 2-D Box: noise in the first row, the target's one-hot in the second)
            return np.stack([self.np_random.uniform(-1, 1, self.n), np.arange(self.n) == self.target]).astype(np.float32)
        if self.kind == "tuple":  # (a distractor first, as Blackjack's entries are: plain ints in a tuple)
            return int(self.np_random.integers(3)), self.target + 5
        return {"target": self.target, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}


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


class LivesEnv(CountEnv):
    """CountEnv with an Atari-like life counter in its info: 3 lives, one lost every 3rd step; the game ends (terminated)
    with the last one, after 9 steps and a return of 9."""

    def reset(self, *, seed=None, options=None):
        obs, _ = super().reset(seed=seed)
        self.lives = 3
        return obs, {"lives": self.lives}

    def step(self, action):
        obs, reward, _, truncated, _ = super().step(action)
        if self.t % 3 == 0:
            self.lives -= 1
        return obs, reward, self.lives == 0, truncated, {"lives": self.lives}


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


class RecallEnv(gym.Env):
    """A cue (one-hot of k) at the first step, then `delay` blank steps, then the agent must name the cue: reward 1
    if right. Only a policy with memory beats chance (1/k); episodes are delay + 2 steps."""

    def __init__(self, k: int = 3, delay: int = 2):
        self.k, self.delay = k, delay
        self.observation_space = spaces.Box(0.0, 1.0, (k + 1,), np.float32)  # cue one-hot, then "answer now" flag
        self.action_space = spaces.Discrete(k)

    def _obs(self):
        o = np.zeros(self.k + 1, np.float32)
        if self.t == 0:
            o[self.cue] = 1.0
        if self.t == self.delay + 1:
            o[self.k] = 1.0
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(self.k))
        return self._obs(), {}

    def step(self, action):
        answer = self.t == self.delay + 1
        reward = float(answer and int(action) == self.cue)
        self.t += 1
        return self._obs(), reward, answer, False, {}


class MaskedChoiceEnv(gym.Env):
    """Each step a random set of legal actions (at least one) and a target among them, shown one-hot; reward 1 for
    the target. An illegal action raises: a masked policy must never take one. `mask_in` "obs" puts the mask under
    the Dict key `action_mask`; "method" gives it through `action_masks()` (sb3-contrib's convention)."""

    def __init__(self, space: str = "discrete", mask_in: str = "obs", n: int = 5):
        self.kind, self.mask_in, self.n = space, mask_in, n
        if space == "discrete":
            self.action_space, self.size, self.groups = spaces.Discrete(n), n, [n]
        elif space == "multidiscrete":
            self.action_space, self.size, self.groups = spaces.MultiDiscrete([n, 3]), n + 3, [n, 3]
        else:  # multibinary: 2 entries per bit ([0 legal, 1 legal])
            self.action_space, self.size, self.groups = spaces.MultiBinary(n), 2 * n, [2] * n
        box = spaces.Box(0.0, 1.0, (self.size,), np.float32)
        if mask_in == "obs":
            self.observation_space = spaces.Dict({"obs": box, "action_mask": spaces.MultiBinary(self.size)})
        else:
            self.observation_space = box
        self.illegal = 0

    def _draw(self):
        mask, target = np.zeros(self.size, np.int8), np.zeros(self.size, np.float32)
        start = 0
        for g in self.groups:
            legal = self.np_random.random(g) < 0.5
            legal[self.np_random.integers(g)] = True
            mask[start:start + g] = legal
            target[start + int(self.np_random.choice(np.flatnonzero(legal)))] = 1.0
            start += g
        self.mask, self.target = mask, target

    def _obs(self):
        return {"obs": self.target.copy(), "action_mask": self.mask.copy()} if self.mask_in == "obs" else self.target.copy()

    def action_masks(self):
        return self.mask.astype(bool)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._obs(), {}

    def step(self, action):
        chosen = np.zeros(self.size, bool)
        a = np.atleast_1d(np.asarray(action)).astype(np.int64)
        start = 0
        for g, v in zip(self.groups, a if self.kind != "multibinary" else a):
            chosen[start + int(v)] = True
            start += g
        if (chosen & (self.mask == 0)).any():
            raise AssertionError(f"illegal action {action} under mask {self.mask}")
        reward = float((chosen & (self.target > 0)).sum()) / len(self.groups)
        self.t += 1
        self._draw()
        return self._obs(), reward, False, self.t >= 20, {}


class PixelMaskedEnv(MaskedChoiceEnv):
    """MaskedChoiceEnv seen through a 36x36 gray image (the target's column lit) beside a vector, with the mask under
    `action_mask`: a Dict of an image, a vector and a mask."""

    def __init__(self):
        super().__init__(n=3)
        self.observation_space = spaces.Dict({"screen": spaces.Box(0, 255, (36, 36, 1), np.uint8),
                                              "pos": spaces.Box(0.0, 1.0, (3,), np.float32),
                                              "action_mask": spaces.MultiBinary(3)})

    def _obs(self):
        screen = np.zeros((36, 36, 1), np.uint8)
        screen[:, 12 * int(self.target.argmax()):12 * int(self.target.argmax()) + 12] = 255
        return {"screen": screen, "pos": self.target.copy(), "action_mask": self.mask.copy()}


class LockEnv(gym.Env):
    """The README's masking example: press 6 digits, each once, in order (reward 1 for the right one). In the terminal
    state every digit is used, so the mask allows nothing: the action after it is the ignored autoreset step."""

    def __init__(self):
        self.observation_space, self.action_space = spaces.Box(0, 1, (6,), np.float32), spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.used = np.zeros(6, bool)
        return self.used.astype(np.float32), {}

    def action_masks(self):
        return ~self.used

    def step(self, a):
        if self.used[a]:
            raise AssertionError(f"digit {a} pressed twice")
        self.used[a] = True
        return self.used.astype(np.float32), float(a == self.used.sum() - 1), bool(self.used.all()), False, {}


def register_all():
    for name, entry, kwargs in [
        ("Identity-v0", IdentityEnv, {}),
        ("Count-v0", CountEnv, {"terminate_at": 3}),
        ("Lives-v0", LivesEnv, {}),
        ("CountTruncated-v0", CountEnv, {}),
        ("NaNReward-v0", NaNRewardEnv, {}),
        ("NaNObsBox-v0", NaNObsBoxEnv, {}),
        ("TupleAction-v0", TupleActionEnv, {}),
        ("ImageObs-v0", ImageObsEnv, {}),
        ("IntegerIdentity-v0", IntegerIdentityEnv, {}),
        ("Score-v0", ScoreEnv, {}),
        ("Recall-v0", RecallEnv, {}),
        ("PixelMasked-v0", PixelMaskedEnv, {}),
        ("Lock-v0", LockEnv, {}),
        ("MaskedChoice-v0", MaskedChoiceEnv, {}),
        ("MaskedChoiceMethod-v0", MaskedChoiceEnv, {"mask_in": "method"}),
        ("MaskedMultiDiscrete-v0", MaskedChoiceEnv, {"space": "multidiscrete"}),
        ("MaskedMultiBinary-v0", MaskedChoiceEnv, {"space": "multibinary", "mask_in": "method"}),
    ]:
        env_id = f"ppo2test/{name}"
        if env_id not in gym.registry:
            max_steps = {"CountTruncated-v0": 4, "NaNReward-v0": 50}.get(name)
            gym.register(env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=max_steps)


register_all()
