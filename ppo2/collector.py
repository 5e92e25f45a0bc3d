"""Step 1 of an update: run the policy in the vector env and fill the rollout buffer.

Environments autoreset in gymnasium's NEXT_STEP mode (see ppo2.envs). Row t of the rollout holds the
observation acted on at step t; when step t-1 ended an episode, row t is the reset step: its action was
ignored, so it is marked invalid and left out of the update, and its value V(final observation) is
exactly the bootstrap a time-limit truncation at step t-1 needs.

With `life_loss` (Atari), a step on which the game lost a life is terminal to the learner (no value bootstrapped
across it: baselines' EpisodicLifeEnv) but not an episode end: the game goes on and logged episodes are whole games.
In a game with FIRE, ppo2's ALE envs press it on the next step instead of the agent's action (baselines' FireResetEnv,
ppo2/envs.py), and that row, marked by the info's 'fire_step', is left out as an autoreset step is.

Observations are an array or a dict of arrays (ppo2/observations.py); images are stored as uint8.
"""
from __future__ import annotations

import math

from collections import deque
from typing import Any, Callable

import numpy as np
import torch

from .envs import get_env_state, set_env_state
from .errors import NonFiniteEnvError
from .moments import merge_moments
from .observations import check_finite, describe, encode_obs, has_images, needs_encoding, tree_map, tree_zeros

__all__ = ["RolloutStorage", "Collector", "RewardScaler"]


class RewardScaler:
    """Rewards divided by the running standard deviation of the discounted return, as OpenAI baselines'
    VecNormalize does for MuJoCo (its `ret_rms`; Engstrom et al. 2020 call it reward scaling):

        R_t = gamma * R_{t-1} + r_t   (R = 0 after an episode ends),   r'_t = clip(r_t / sqrt(Var[R] + eps), +-clip)

    The mean is not subtracted: the sign of a reward keeps its meaning. Var[R] is a running estimate over
    every (env, step) of the run, merged batch by batch (Chan et al.); the autoreset rows, which baselines'
    envs never show it, are left out. Episode returns that are logged and evaluated stay unscaled."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = float(gamma), float(clip), float(eps)
        self.ret = np.zeros(num_envs, np.float64)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, reward: np.ndarray, done: np.ndarray, valid: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        seen = self.ret[valid]
        if seen.size:
            self.mean, self.var, self.count = merge_moments(self.mean, self.var, self.count, float(seen.mean()),
                                                            float(seen.var()), seen.size)
        scaled = np.clip(reward / np.sqrt(self.var + self.eps), -self.clip, self.clip)
        self.ret[done] = 0.0
        return scaled.astype(np.float32)

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return ({"mean": self.mean, "var": self.var, "count": self.count},
                {"collector.reward_scaler.ret": torch.from_numpy(self.ret.copy())})

    # The largest variance of discounted returns a checkpoint may carry: a return std of 1e8. Beyond it every
    # reward would be scaled to ~0 and training would go on silently on nothing.
    MAX_VAR = 1e16

    def state_row(self) -> torch.Tensor:
        """[mean, var, count]: the statistics one rank contributes to a checkpoint of several ranks."""
        return torch.tensor([self.mean, self.var, self.count], dtype=torch.float64)

    def load_rank_rows(self, rows: torch.Tensor, rank: int, world_size: int) -> None:
        """Restore from the rows of every rank (`state_row`): this rank's own where the run has as many ranks as the
        checkpoint, else the statistics of all of them merged; the episodes in flight start afresh."""
        if rows.dim() != 2 or rows.shape[1] != 3 or rows.shape[0] < 1:
            raise ValueError(f"the checkpoint's per-rank reward-scaler state must be (ranks, 3), got {tuple(rows.shape)}")
        if rows.shape[0] == world_size:
            mean, var, count = (float(v) for v in rows[rank])
        else:
            mean, var, count = (float(v) for v in rows[0])
            for m, v, c in rows[1:].tolist():
                mean, var, count = merge_moments(mean, var, count, m, v, c)
        self.load_state({"mean": mean, "var": var, "count": count},
                        {"collector.reward_scaler.ret": torch.zeros(self.ret.shape, dtype=torch.float64)}, False)

    def load_state(self, state: dict, tensors: dict[str, torch.Tensor], episodes_restored: bool) -> None:
        """Restore from a checkpoint, every value checked: finite, a variance in [0, MAX_VAR], a count > 0."""
        try:
            mean, var, count = (float(state[k]) for k in ("mean", "var", "count"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the checkpoint's reward-scaler state is malformed ({exc}); expected numbers "
                             f"mean, var and count, got {state!r}") from None
        ret = tensors.get("collector.reward_scaler.ret")
        if not (math.isfinite(mean) and math.isfinite(var) and 0.0 <= var <= self.MAX_VAR and math.isfinite(count)
                and count > 0):
            raise ValueError(f"the checkpoint's reward-scaler state is invalid: mean {mean}, var {var}, count {count} "
                             f"(expected finite numbers, 0 <= var <= {self.MAX_VAR:g}, count > 0)")
        if ret is None or tuple(ret.shape) != self.ret.shape or not bool(torch.isfinite(ret).all()):
            raise ValueError(f"the checkpoint's discounted returns are invalid: expected {self.ret.shape[0]} finite "
                             f"numbers, got {None if ret is None else tuple(ret.shape)}")
        self.mean, self.var, self.count = mean, var, count
        # the discounted returns belong to the episodes in flight: kept when those episodes continue
        self.ret = ret.numpy().copy() if episodes_restored else np.zeros_like(self.ret)


def _available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class RolloutStorage:
    """Preallocated, numpy-backed (zero-copy torch views), time-major (T, N, ...)."""

    @staticmethod
    def observation_bytes(num_steps: int, num_envs: int, obs_spec: dict) -> int:
        """What the observations of one rollout take: uint8 images, float32 vectors."""
        def size(spec):
            if spec["type"] == "Dict":
                return sum(size(s) for s in spec["spaces"].values())
            return math.prod(spec["shape"]) * (1 if spec["type"] == "Image" else 4)
        return num_steps * num_envs * size(obs_spec)

    @classmethod
    def check_memory(cls, num_steps: int, num_envs: int, obs_spec: dict, env_id: str = "the environment") -> None:
        """Refuse, before anything is allocated, a rollout whose observations alone (and the float32 copy of them
        that the update makes: 4x for images) exceed the memory this machine has available."""
        obs = cls.observation_bytes(num_steps, num_envs, obs_spec)
        need = obs * (5 if has_images(obs_spec) else 2)
        available = _available_memory()
        if available is not None and need > available:
            raise ValueError(f"{env_id}: a rollout of {num_steps} steps x {num_envs} envs of {describe(obs_spec)} needs "
                             f"about {need / 2**30:.1f} GiB (observations {obs / 2**30:.1f} GiB and their float32 copy), "
                             f"but {available / 2**30:.1f} GiB is available. Use fewer --num-envs or --num-steps, or "
                             "smaller frames (`--env-kwargs resize=[84,84]`, recorded with the policy)")

    def __init__(self, num_steps: int, num_envs: int, obs_spec: dict, action_shape: tuple, action_dtype: torch.dtype,
                 mask_size: int = 0, memory_shape: tuple | None = None, window: int | None = None):
        T, N = num_steps, num_envs
        self.obs_spec = obs_spec
        np_action_dtype = np.int64 if action_dtype == torch.int64 else np.float32
        self.obs = tree_zeros(obs_spec, (T, N))
        self.actions = np.zeros((T, N, *action_shape), np_action_dtype)
        self.neg_log_probs = np.zeros((T, N), np.float32)
        self.values = np.zeros((T, N), np.float32)
        self.rewards = np.zeros((T, N), np.float32)
        self.terminations = np.zeros((T, N), np.float32)
        self.truncations = np.zeros((T, N), np.float32)
        self.valid = np.zeros((T, N), np.bool_)
        self.next_value = np.zeros(N, np.float32)
        # action masks (N rows of mask_size 0/1 entries per step; ppo2/masks.py), where the env has them
        self.masks = np.ones((T, N, mask_size), np.bool_) if mask_size else None
        # recurrent policies (ppo2/memory.py): which rows begin an episode, and the LSTM state before row 0 (state0)
        # and before every `window`-th row (states: (T / window, L, N, H) each, for training on shorter sequences)
        self.window = window or T
        self.starts = np.zeros((T, N), np.bool_) if memory_shape else None
        self.states = (tuple(np.zeros((T // self.window, *memory_shape), np.float32) for _ in range(2))
                       if memory_shape else None)
        self.state0 = (self.states[0][0], self.states[1][0]) if memory_shape else None

    def tensor(self, name: str) -> torch.Tensor:
        return torch.from_numpy(getattr(self, name))

    def flat_obs(self) -> Any:
        """All observations as (T*N, ...) tensors (views of the buffer)."""
        return tree_map(lambda a: torch.from_numpy(a.reshape(-1, *a.shape[2:])), self.obs)


class Collector:
    """The environments' side of training: the current observations, episode bookkeeping, and one rollout
    at a time into `storage`."""

    def __init__(self, envs, env_id: str, storage: RolloutStorage, device: torch.device, reset_seed: int,
                 reward_scaler: RewardScaler | None = None, clip_reward: bool = False, masks=None,
                 life_loss: bool = False):
        """`masks` (a `ppo2.masks.MaskSource`) splits action masks off the observations or asks the envs for them.
        `life_loss`: a lost life (the envs' info 'lives' going down) is terminal to the learner."""
        self.envs, self.env_id, self.storage, self.device = envs, env_id, storage, device
        self.obs_spec = storage.obs_spec
        self.needs_encoding = needs_encoding(self.obs_spec)
        self.masks = masks
        self.reward_scaler = reward_scaler
        self.clip_reward = clip_reward  # train on sign(r) (then scale, if a scaler is set); log the env's r
        self.num_envs = envs.num_envs
        self.life_loss = life_loss
        self.next_obs, info = envs.reset(seed=reset_seed)
        self.next_obs = self._encoded(self.next_obs, "reset")
        self.lives = self._lives(info, "reset")
        self.next_mask = self._split()
        self.prev_done = np.zeros(self.num_envs, np.bool_)
        # recurrent policies: the LSTM state, and which envs' next observation begins an episode (all, after reset)
        self.lstm_state = storage.state0 and tuple(np.zeros_like(a) for a in storage.state0)
        self.next_start = np.ones(self.num_envs, np.bool_)
        self.ep_return = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)
        self.recent_returns: deque = deque(maxlen=20)
        self.recent_lengths: deque = deque(maxlen=20)
        self.episodes = 0
        self.check_finite(self.next_obs, "reset")

    def _encoded(self, obs: Any, where: str) -> Any:
        """The envs' observations as the rest of training takes them: integers one-hot (`encode_obs`), checked
        against their space."""
        if not self.needs_encoding:
            return obs
        try:
            return encode_obs(self.obs_spec, obs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.env_id} ({where}): {exc}") from None

    def check_finite(self, obs: Any, where: str, reward: np.ndarray | None = None) -> None:
        """NaN/inf from the environment stops training before it reaches the update (or, through the
        policy, the actions sent back to the environment)."""
        bad_obs = check_finite(obs)
        bad_rew = None if reward is None or np.isfinite(reward).all() else ~np.isfinite(reward)
        if bad_obs is None and bad_rew is None:
            return
        envs = sorted(set(np.flatnonzero(bad_obs).tolist() if bad_obs is not None else [])
                      | set(np.flatnonzero(bad_rew).tolist() if bad_rew is not None else []))
        what = " and ".join(w for w, b in (("observation", bad_obs), ("reward", bad_rew)) if b is not None)
        raise NonFiniteEnvError(f"{self.env_id} returned a NaN/inf {what} at {where} in sub-environment(s) {envs} "
                                "(nothing from this rollout was used; check the environment or wrap it to sanitise "
                                "its output)")

    def _lives(self, info: dict, where: str) -> np.ndarray | None:
        """Each env's lives left (info 'lives'), where lost lives are terminal; else None."""
        if not self.life_loss:
            return None
        lives = info.get("lives") if isinstance(info, dict) else None
        if lives is None or np.shape(lives) != (self.num_envs,):
            raise ValueError(f"{self.env_id}: life_loss='terminal' needs the envs to report each one's 'lives' in their "
                             f"info (Atari games do); at {where} the info holds {sorted(info) if isinstance(info, dict) else info!r}")
        return np.asarray(lives, np.int64).copy()

    def to_device(self, obs: Any) -> Any:
        on_cpu = self.device.type == "cpu"
        return tree_map(lambda a: torch.from_numpy(a) if on_cpu else torch.from_numpy(a).to(self.device), obs)

    def _split(self, ended: np.ndarray | None = None) -> np.ndarray | None:
        """Take this step's action masks off the observations (or from the envs), checked; None without masks.
        `ended`: the envs whose episode just ended (their next action is ignored, so their mask is not checked)."""
        if self.masks is None:
            return None
        self.next_obs, mask = self.masks.split(self.envs, self.next_obs, ended)
        return mask

    @torch.inference_mode()  # (cheaper per operation than no_grad; nothing collected here is differentiated)
    def collect(self, sample_action: Callable, evaluate: Callable, value_of: Callable, to_env: Callable,
                where: str) -> None:
        """Fill the storage with one rollout: actions sampled step by step (`sample_action(obs, mask, memory)`: the
        envs' observations and action masks, numpy, and for a recurrent policy (LSTM state, episode starts), in;
        numpy actions and the LSTM state after (None for other policies) out), then V(s_t) and log pi(a_t|s_t) of
        every step in one batched pass (the policy does not change during a rollout, so these are the numbers a
        per-step computation would give, for one call instead of num_steps; a recurrent policy runs the rollout's
        sequences from the state they began with). A step that returns a third item, (V(s_t), -log pi(a_t|s_t))
        from the pass that sampled a_t, fills them itself, and the batched pass is skipped."""
        s = self.storage
        T = s.values.shape[0]
        evaluated_steps = 0
        for t in range(T):
            obs = self.next_obs
            if isinstance(obs, dict):
                for k, v in obs.items():
                    s.obs[k][t] = v
                row = {k: v[t] for k, v in s.obs.items()}
            else:
                s.obs[t] = obs
                row = s.obs[t]
            mask = None
            if s.masks is not None:
                s.masks[t] = self.next_mask
                mask = s.masks[t]
            memory = None
            if s.starts is not None:
                if t % s.window == 0:  # the state this stretch of the rollout begins with
                    s.states[0][t // s.window], s.states[1][t // s.window] = self.lstm_state
                s.starts[t] = self.next_start
                memory = (self.lstm_state, s.starts[t])
            action_np, state, *evaluated = sample_action(row, mask, memory)
            s.actions[t] = action_np
            if evaluated:
                s.values[t], s.neg_log_probs[t] = evaluated[0]
                evaluated_steps += 1
            if state is not None:
                self.lstm_state = state

            self.next_obs, reward, terminated, truncated, info = self.envs.step(to_env(action_np))
            self.next_obs = self._encoded(self.next_obs, f"{where}, rollout step {t}")
            self.check_finite(self.next_obs, f"{where}, rollout step {t}", reward)
            done = terminated | truncated
            terminal = terminated  # to the learner
            if self.lives is not None:
                lives = self._lives(info, f"{where}, rollout step {t}")
                terminal = terminated | ((lives < self.lives) & ~done)  # (an autoreset step's new game has more)
                self.lives = lives
            self.next_mask = self._split(done)
            s.valid[t] = ~self.prev_done  # False on the autoreset step: its action was ignored
            if isinstance(info, dict) and "fire_step" in info:  # (Atari: FIRE pressed for it after a lost life)
                s.valid[t] &= ~np.asarray(info["fire_step"], np.bool_)
            train_reward = np.sign(reward) if self.clip_reward else reward
            s.rewards[t] = (train_reward if self.reward_scaler is None
                            else self.reward_scaler(train_reward, done | terminal, s.valid[t]))
            s.terminations[t] = terminal
            s.truncations[t] = truncated

            self.ep_return += reward
            self.ep_length += ~self.prev_done  # (the game's steps: not the autoreset step, which is neither game's)
            if done.any():
                self.recent_returns.extend(self.ep_return[done].tolist())
                self.recent_lengths.extend(self.ep_length[done].tolist())
                self.episodes += int(done.sum())
                self.ep_return[done] = 0.0
                self.ep_length[done] = 0
            # the next observation begins an episode where this row was the autoreset step (it returned the reset obs)
            self.next_start = self.prev_done.copy()
            self.prev_done = done
        N = self.num_envs
        if evaluated_steps < T:
            obs_t = tree_map(lambda x: x.to(self.device), s.flat_obs())
            actions_t = torch.from_numpy(s.actions.reshape(T * N, *s.actions.shape[2:])).to(self.device)
            extra = {}
            if s.masks is not None:
                extra["mask"] = torch.from_numpy(s.masks.reshape(T * N, -1)).to(self.device)
            if s.starts is not None:
                extra["memory"] = self.memory_tensors(s.state0, s.starts)
            values, neg_log_probs = evaluate(obs_t, actions_t, **extra)
            s.values[:] = values.view(T, N).cpu().numpy()
            s.neg_log_probs[:] = neg_log_probs.view(T, N).cpu().numpy()
        next_memory = None if s.starts is None else self.memory_tensors(self.lstm_state, self.next_start[None])
        s.next_value[:] = value_of(self.to_device(self._next_obs_array()), next_memory).cpu().numpy()

    def memory_tensors(self, state: tuple, starts: np.ndarray) -> tuple:
        """((h, c), starts) as float32 tensors on the training device."""
        h, c = (torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in state)
        return (h, c), torch.from_numpy(starts.astype(np.float32)).to(self.device)

    def _next_obs_array(self) -> Any:
        return tree_map(lambda a: np.ascontiguousarray(a, a.dtype if a.dtype == np.uint8 else np.float32), self.next_obs)

    def recent_return(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

    def recent_length(self) -> float:
        return float(np.mean(self.recent_lengths)) if self.recent_lengths else float("nan")

    # ---- checkpoints: everything needed to continue bit-identically (where the env state can be captured)
    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        state = {"env": get_env_state(self.envs), "episodes": self.episodes,
                 "recent_returns": list(self.recent_returns), "recent_lengths": list(self.recent_lengths)}
        obs = self._next_obs_array()
        tensors = {"collector.prev_done": torch.from_numpy(self.prev_done.copy()),
                   "collector.ep_return": torch.from_numpy(self.ep_return.copy()),
                   "collector.ep_length": torch.from_numpy(self.ep_length.copy())}
        if isinstance(obs, dict):
            tensors.update({f"collector.next_obs.{k}": torch.from_numpy(v).clone() for k, v in obs.items()})
        else:
            tensors["collector.next_obs"] = torch.from_numpy(obs).clone()
        if self.reward_scaler is not None:
            state["reward_scaler"], scaler_tensors = self.reward_scaler.state()
            tensors.update(scaler_tensors)
        if self.lstm_state is not None:  # a recurrent policy's memory of the episodes in flight
            tensors["collector.lstm_h"] = torch.from_numpy(self.lstm_state[0].copy())
            tensors["collector.lstm_c"] = torch.from_numpy(self.lstm_state[1].copy())
            tensors["collector.next_start"] = torch.from_numpy(self.next_start.copy())
        if self.next_mask is not None:
            tensors["collector.next_mask"] = torch.from_numpy(np.ascontiguousarray(self.next_mask))
        return state, tensors

    def load_state(self, state: dict, tensors: dict[str, torch.Tensor]) -> bool:
        """Restore from `state()`; False (the episodes start afresh) when the env state was not captured.
        The reward scaling statistics are restored either way."""
        episodes = state is not None and state.get("env") is not None
        if self.reward_scaler is not None and state is not None and "reward_scaler" in state:
            self.reward_scaler.load_state(state["reward_scaler"], tensors, episodes)
        if not episodes:
            return False
        try:
            if isinstance(self.next_obs, dict):
                next_obs = {k: tensors[f"collector.next_obs.{k}"].numpy().copy() for k in self.next_obs}
                same = all(next_obs[k].shape == self.next_obs[k].shape for k in next_obs)
            else:
                next_obs = tensors["collector.next_obs"].numpy().copy()
                same = next_obs.shape == np.shape(self.next_obs)
            names = ["prev_done", "ep_return", "ep_length"] + (["next_start"] if self.lstm_state is not None else [])
            saved = {k: tensors[f"collector.{k}"].numpy().copy() for k in names}
            memory = (tuple(tensors[f"collector.lstm_{k}"].numpy().copy() for k in "hc")
                      if self.lstm_state is not None else None)
            mask = tensors["collector.next_mask"].numpy().copy() if self.next_mask is not None else None
        except KeyError as exc:
            raise ValueError(f"the checkpoint's collector state lacks {exc}") from None
        if not same or any(v.shape != (self.num_envs,) for v in saved.values()):
            raise ValueError(f"the checkpoint's collector state does not fit {self.num_envs} environments of this run")
        if memory is not None:
            if any(m.shape != self.lstm_state[0].shape or not np.isfinite(m).all() for m in memory):
                raise ValueError(f"the checkpoint's LSTM state must be finite, of shape {self.lstm_state[0].shape}; got "
                                 f"{[m.shape for m in memory]}")
            self.lstm_state, self.next_start = memory, saved.pop("next_start").astype(np.bool_)
        if mask is not None:
            if mask.shape != self.next_mask.shape:
                raise ValueError(f"the checkpoint's action masks have shape {mask.shape}, expected {self.next_mask.shape}")
            self.next_mask = mask.astype(np.bool_)
        self.check_finite(next_obs, "the checkpoint's observations", saved["ep_return"])
        set_env_state(self.envs, state["env"])
        self.next_obs = next_obs
        self.prev_done, self.ep_return, self.ep_length = saved["prev_done"], saved["ep_return"], saved["ep_length"]
        self.episodes = state["episodes"]
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        return True

    def restart(self, seed: int) -> None:
        """Fresh episodes from `envs.reset(seed=seed)`: what was in flight (returns, lengths, the reward scaler's
        discounted returns, LSTM memory) is dropped with them."""
        self.next_obs, info = self.envs.reset(seed=seed)
        self.next_obs = self._encoded(self.next_obs, "reset")
        self.lives = self._lives(info, "reset")
        self.next_mask = self._split()
        self.prev_done[:] = False
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        if self.reward_scaler is not None:
            self.reward_scaler.ret[:] = 0.0
        if self.lstm_state is not None:  # fresh episodes: fresh memory
            self.lstm_state = tuple(np.zeros_like(a) for a in self.lstm_state)
            self.next_start[:] = True
