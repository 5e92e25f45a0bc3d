"""The PPO2 (and A2C) trainer. One update reads top to bottom like Algorithm 1 of the PPO paper:

    1. collect    run the policy for num_steps in num_envs environments, then V(s_t) and log pi(a_t|s_t)
                  of the whole rollout in one batched pass                        (ppo2/collector.py)
    2. GAE        bootstrap from V(s_T) and compute advantages and returns          (ppo2/gae.py)
    3. flatten    drop the autoreset steps, flatten time x envs into one batch
    4. update     update_epochs passes of num_minibatches clipped-surrogate steps   (ppo2/update.py: the
                  autograd reference; for the built-in MLP the same update with hand-derived gradients,
                  ppo2/fused.py, tested equal to it)
    5. log / evaluate / checkpoint                     (ppo2/outputs.py, ppo2/evaluate.py, ppo2/checkpoint.py)

`Trainer.learn` is that loop; the rest of this module sets the run up and keeps its state.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint, optimizer_state_from_flat, save_checkpoint
from .collector import Collector, RewardScaler, RolloutStorage
from .config import OUTPUT_ONLY, TrainConfig, config_from_args, given_options, resume_conflicts
from .distributed import DistContext, launch_local, resolve_processes
from .distributions import UniformBlock
from .envs import check_env_id, check_spaces, make_vector_env, refuse_file_named_module, seeds_each_env
from .errors import NonFiniteEnvError, NonFiniteError, NonFiniteLossError
from .evaluate import EvaluationInterrupted, evaluate_policy, evaluation_result, run_episodes
from .fused import FusedPPO
from .gae import compute_gae
from .hf_hub import build_model, publish_pretrained, save_pretrained
from .io import staged_dir
from .masks import MaskSource
from .model import PPO2
from .moments import pooled_sums
from .observations import tree_map, vector_part
from .optim import AdamState
from .outputs import METRICS, LineProgress, RunOutputs
from .rundir import holds_run, provenance, snapshot_dir
from .speed import NUMPY_MAX_BATCH, limit_blas_threads, numpy_policy, preprocess_once
from .update import Batch, SequenceBatch, explained_variance, ppo_update
from .validation import check_compatible

__all__ = ["Trainer", "train", "main", "cli", "NonFiniteError", "NonFiniteLossError", "NonFiniteEnvError", "RolloutStorage",
           "Batch", "ppo_update"]


# A run is "solved" when fresh episodes show, at 95% one-sided confidence, a mean return at the target: their mean
# less 1.645 standard errors reaches it. Without the margin, 5 of 40 CartPole runs stopped on policies that scored
# below 475 on 100 further episodes (benchmarks/held_out.py; benchmarks/results/held_out_cartpole_no_margin.jsonl).
CONFIRM_Z = 1.645


class Trainer:
    """Owns the environments, model, optimizer and run directory of one training run.

    >>> trainer = Trainer(TrainConfig.for_env("CartPole-v1"))
    >>> model = trainer.learn()
    """

    METRICS = METRICS

    def __init__(self, config: TrainConfig, model: PPO2 | None = None, policy_net: nn.Module | None = None,
                 value_net: nn.Module | None = None, encoder: nn.Module | None = None):
        self.config = cfg = config.validated()
        self.device = _resolve_device(cfg.device)
        self.dist = DistContext.from_env(self.device, cfg.dist_timeout)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank % torch.cuda.device_count())
            self.dist.device = self.device
        if cfg.num_envs % self.dist.world_size:
            raise ValueError(f"num_envs={cfg.num_envs} must be divisible by the number of ranks ({self.dist.world_size})")
        if not self.dist.enabled and cfg.processes > 1:
            raise ValueError(f"processes={cfg.processes}: a Trainer (and train()) runs in this process; the command "
                             "line (train.py, python -m ppo2) starts several, or run this under torchrun")
        if cfg.processes != self.dist.world_size:  # (0, "one per core", is the command line's to start; the run
            self.config = cfg = cfg.replace(processes=self.dist.world_size)  # records what it was)
        self.num_envs = cfg.num_envs // self.dist.world_size
        torch.set_num_threads(cfg.torch_threads)
        limit_blas_threads(cfg.torch_threads)  # (the collector's numpy policy steps: ppo2/speed.py)
        torch.manual_seed(cfg.seed + self.dist.rank)

        # environments (created before any training, so a bad env id or space fails fast)
        self.envs = self._make_envs(self.num_envs)
        self.eval_envs = self.confirm_envs = None
        self._eval_split: bool | None = None  # (every rank plays a share of the evaluation: _split_evaluation)
        obs_spec, action_space, masks = check_spaces(self.envs, cfg.env_id, cfg.action_mask)

        # model + optimizer
        if model is None:
            model = PPO2(observation_space=obs_spec, hidden_dim=cfg.hidden_dim, action_space=action_space,
                         shared_latent=cfg.shared_latent and (cfg.shared_lstm or not cfg.recurrent),
                         normalize_obs=cfg.normalize_obs, log_std_init=cfg.log_std_init, policy_net=policy_net,
                         value_net=value_net, encoder=encoder if encoder is not None else cfg.encoder,
                         recurrent=cfg.recurrent, lstm_hidden=cfg.lstm_hidden, shared_lstm=cfg.shared_lstm,
                         action_mask=masks.to_json() if masks is not None else False)
        check_compatible(model, self.envs.single_observation_space, action_space, cfg.env_id)
        model.env_id, model.env_kwargs = cfg.env_id, dict(cfg.env_kwargs)
        self.model = model.to(self.device).set_precision(cfg.precision, self.device)
        self.dist.broadcast_module(self.model)
        # the hand-derived update (ppo2/fused.py) where it applies; else the autograd reference, ppo_update
        reason = FusedPPO.unsupported_reason(self.model, cfg.optimizer, cfg.algo) if cfg.fused else "--no-fused"
        params = list(self.model.parameters())
        if cfg.optimizer == "adam":
            # Adam in torch.optim.Adam's layout, stepped by its fused kernel (one kernel per step instead of a dozen
            # per parameter), without building one: that imports torch._dynamo (ppo2/optim.py)
            self.optimizer = AdamState(params, lr=cfg.learning_rate, eps=cfg.optimizer_eps)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.99, eps=cfg.optimizer_eps,
                                                 foreach=True)
        self.fused = FusedPPO(self.model, self.optimizer) if reason is None else None
        self.update_path = "fused" if reason is None else f"autograd ({reason})"
        # (a recurrent policy's rollout runs the model itself, its LSTM state and all; the fused update only trains it)
        feed_forward = self.fused if self.fused and self.model.memory is None else None
        self.sample_action = feed_forward.sample_action if feed_forward else self.model._sample
        self.evaluate_rollout = feed_forward.evaluate if feed_forward else self._evaluate_rollout
        self.value_of = feed_forward.value_of if feed_forward else self.model._value_of
        RolloutStorage.check_memory(cfg.num_steps, self.num_envs, model.obs_spec, cfg.env_id)
        memory = self.model.memory
        self.storage = RolloutStorage(cfg.num_steps, self.num_envs, model.obs_spec, model.action_head.action_shape,
                                      model.action_head.action_dtype, mask_size=model.mask_size,
                                      memory_shape=(memory.towers, self.num_envs, memory.hidden) if memory else None,
                                      window=cfg.bptt_steps)

        # run state
        self.update = 0
        self.global_step = 0
        self.elapsed = 0.0  # training seconds before this process (resume)
        self.best_eval: dict | None = None
        self.last_eval: dict | None = None
        self.solved_at: dict | None = None
        scaler = RewardScaler(self.num_envs, cfg.gamma, cfg.reward_clip) if cfg.normalize_reward else None
        mask_source = (MaskSource(self.model.mask_config, self.model.action_spec, cfg.env_id)
                       if self.model.mask_config is not None else None)
        self.collector = Collector(self.envs, cfg.env_id, self.storage, self.device, reset_seed=self._env_seed(0),
                                   reward_scaler=scaler, clip_reward=cfg.clip_reward, masks=mask_source,
                                   life_loss=cfg.life_loss_terminal)
        self._stop_signal: int | None = None
        self.last_checkpoint: Path | None = None
        self.checkpointed_update: int | None = None  # (on every rank: the update the last checkpoint holds)

        # the code and platform this run computes with, taken now: the modules it runs are loaded by now
        self.provenance = provenance() if self.dist.is_main else None
        # the stretches of the run, one per start or resume, with what each computed with: a run is reproduced by
        # one command and one commit only where they all agree (scripts/add_to_zoo.py checks)
        self.segments = [self._segment(0)] if self.dist.is_main else []
        self.output_dir = self._choose_output_dir()
        self.outputs: RunOutputs | None = None
        if cfg.resume:
            self._load(cfg.resume)

    # --------------------------------------------------------------------------------------------
    def _choose_output_dir(self) -> Path:
        """Where this run writes. A directory that already holds a run is never reused silently: an explicit
        --output-dir is refused (unless --resume continues it or --overwrite replaces it), and the default
        runs/<env>__<algo>__<seed> moves on to the first free runs/<env>__<algo>__<seed>__2, __3, ..."""
        cfg = self.config
        if cfg.resume:
            return Path(cfg.resume)  # (the checkpoint's run directory; _load settles it)
        if cfg.output_dir is not None:
            out = Path(cfg.output_dir)
            earlier = holds_run(out) if self.dist.is_main and not cfg.overwrite else ""
            if earlier:
                raise ValueError(f"{out} already holds a training run ({earlier}); pass --resume {out} to continue "
                                 "it, --overwrite to replace it, or another --output-dir")
            return out
        base = Path("runs") / f"{cfg.env_id.replace(':', '_').replace('/', '_')}__{cfg.algo}__{cfg.seed}"
        if cfg.overwrite or not holds_run(base):
            return base
        n = 2
        while holds_run(Path(f"{base}__{n}")):
            n += 1
        return Path(f"{base}__{n}")

    def _env_seed(self, offset: int) -> int:
        return self.config.seed + 10_007 * self.dist.rank + 7919 * offset

    def _restart_episodes(self) -> None:
        """Fresh episodes, seeded by the update they begin at, and the sampler reseeded: where a resumed run's envs
        could not be restored, and wherever `restart_episodes_at` repeats that in a run that goes straight through."""
        self.collector.restart(seed=self._env_seed(self.update))
        torch.manual_seed(self.config.seed + self.dist.rank + 1_000_003 * self.update)

    def _make_envs(self, num_envs: int):
        """`num_envs` of the run's env, as every env it trains, evaluates and confirms on is made (id, vectorisation,
        constructor arguments)."""
        cfg = self.config
        return make_vector_env(cfg.env_id, num_envs, cfg.vectorization, **cfg.env_kwargs)

    @property
    def target_reward(self) -> float | None:
        return target_reward(self.config)

    # --------------------------------------------------------------------------------------------
    # 1. collect
    # --------------------------------------------------------------------------------------------
    def collect_rollout(self) -> None:
        self.model.eval()
        if self.fused is not None:
            self.fused.pull()  # act with the model's current weights (a resume or a user may have set them)
        self.collector.collect(self.policy_step(), self.evaluate_rollout, self.value_of, self.model.action_head.to_env,
                               where=f"update {self.update + 1}")

    def policy_step(self) -> Callable[[Any, Any, Any], tuple]:
        """This rollout's policy step, (observations, action masks, LSTM memory) (numpy) -> (sampled actions, LSTM
        state after) (numpy): through numpy for the built-in MLP on CPU with up to NUMPY_MAX_BATCH envs per process (a
        numpy call costs a fraction of a torch call at these sizes; the same weights and random numbers), else in
        torch (`sample_action`, or the recurrent model's `_step`). A feed-forward model with an image encoder also
        returns (V(s), -log pi(a|s)) from the same pass (`PPO2._act`): the encoder is most of its cost, and
        the collector then skips the batched evaluation that would run it again on the whole rollout."""
        if self.device.type == "cpu" and self.num_envs <= NUMPY_MAX_BATCH:
            policy = numpy_policy(self.model)
            if policy is not None and self.model.action_head.builtin:
                uniforms = UniformBlock(self.storage.values.shape[0])  # one rollout's uniforms at once
                return lambda obs, mask, memory: policy.sample(obs, uniforms, mask, memory)
        to_device, on_cpu = self.collector.to_device, self.device.type == "cpu"

        def numpy_of(t: torch.Tensor) -> np.ndarray:
            return t.numpy() if on_cpu else t.cpu().numpy()

        def mask_of(mask):
            return None if mask is None else torch.from_numpy(mask).to(self.device)

        if self.model.memory is not None:
            def step(obs, mask, memory):
                action, state = self.model._step(to_device(obs), self.collector.memory_tensors(*memory), mask_of(mask))
                return numpy_of(action), tuple(numpy_of(s) for s in state)
            return step
        if self.model.encoder is not None and self.fused is None:
            def evaluated_step(obs, mask, memory):
                value, action, neg_log_prob, _ = self.model._act(to_device(obs), mask_of(mask))
                return numpy_of(action), None, (numpy_of(value), numpy_of(neg_log_prob))
            return evaluated_step
        sample = self.sample_action
        return lambda obs, mask, memory: (numpy_of(sample(to_device(obs), mask_of(mask))), None)

    def _evaluate_rollout(self, obs: Any, actions: torch.Tensor, mask: torch.Tensor | None = None,
                          memory: tuple | None = None, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """V(s) and -log pi(a|s) of a whole rollout; image models go in chunks to bound activation memory (a
        recurrent one runs its sequences whole)."""
        n = actions.shape[0]
        if self.model.encoder is None or n <= chunk or memory is not None:
            value, neg_log_prob, _ = self.model.value_and_evaluate(obs, actions, mask, memory)
            return value, neg_log_prob
        parts = [self._evaluate_rollout(tree_map(lambda t: t[i:i + chunk], obs), actions[i:i + chunk],
                                        None if mask is None else mask[i:i + chunk], None, chunk)
                 for i in range(0, n, chunk)]
        return torch.cat([v for v, _ in parts]), torch.cat([nlp for _, nlp in parts])

    # --------------------------------------------------------------------------------------------
    # 2 + 3. advantages, then one flat batch of the valid rows
    # --------------------------------------------------------------------------------------------
    def compute_batch(self) -> tuple[Batch, float]:
        s, cfg = self.storage, self.config
        values = s.tensor("values")
        next_values = torch.cat([values[1:], s.tensor("next_value")[None]])
        advantages, returns = compute_gae(s.tensor("rewards"), values, next_values, s.tensor("terminations"),
                                          s.tensor("truncations"), cfg.gamma, cfg.gae_lambda)
        valid = s.tensor("valid").reshape(-1)
        obs = s.flat_obs()
        flat = [s.tensor("actions").reshape(-1, *s.actions.shape[2:]), s.tensor("neg_log_probs").reshape(-1),
                values.reshape(-1), advantages.reshape(-1), returns.reshape(-1)]
        masks = None if s.masks is None else s.tensor("masks").reshape(-1, s.masks.shape[-1])
        to = self.device
        if s.starts is not None:
            # a recurrent policy trains on whole sequences, autoreset rows included (they carry the state; the loss
            # leaves them out): time-major rows, the state before the first, which rows begin an episode. With
            # bptt_steps W < T, each env's rollout is cut into T / W sequences of W steps, each from the state the
            # rollout had where it begins: W rows of (T / W) * N columns
            T, N = s.starts.shape
            C = T // s.window

            def cut(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(C, s.window, N, *t.shape[1:]).transpose(0, 1).reshape(T * N, *t.shape[1:])

            if C > 1:
                obs, flat, valid = tree_map(cut, obs), [cut(t) for t in flat], cut(valid)
                masks = None if masks is None else cut(masks)
            starts = s.starts.reshape(C, s.window, N).transpose(1, 0, 2).reshape(s.window, C * N)
            states = tuple(a.transpose(1, 0, 2, 3).reshape(a.shape[1], C * N, a.shape[3]) for a in s.states)
            state, starts = self.collector.memory_tensors(states, starts)
            batch = SequenceBatch(tree_map(lambda t: t.to(to), obs), *(t.to(to) for t in flat),
                                  masks=None if masks is None else masks.to(to), valid=valid.to(to), state=state,
                                  starts=starts)
            return batch, explained_variance(batch.values[batch.valid], batch.returns[batch.valid])
        if not bool(valid.all()):
            idx = valid.nonzero().squeeze(1)
            obs = tree_map(lambda t: t.index_select(0, idx), obs)
            flat = [t.index_select(0, idx) for t in flat]
            masks = None if masks is None else masks.index_select(0, idx)
        batch = Batch(tree_map(lambda t: t.to(to), obs), *(t.to(to) for t in flat),
                      masks=None if masks is None else masks.to(to))
        return batch, explained_variance(batch.values, batch.returns)

    def update_policy(self, batch: Batch, clip_range: float) -> dict[str, float]:
        """4. update_epochs x num_minibatches gradient steps (fused, or the autograd reference)."""
        cfg, dist = self.config, self.dist
        if batch.actions.shape[0] == 0 and not dist.enabled:  # every row was an autoreset step: nothing to learn from
            nan = float("nan")
            return {"loss": nan, "pg_loss": nan, "value_loss": nan, "entropy": nan, "approx_kl": nan,
                    "clip_fraction": nan, "epochs": 0}
        common = dict(update_epochs=cfg.update_epochs, num_minibatches=cfg.num_minibatches, clip_range=clip_range,
                      ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                      norm_adv=cfg.norm_adv, clip_value_loss=cfg.clip_value_loss, target_kl=cfg.target_kl,
                      any_rank=dist.any, all_reduce_sum=dist.all_reduce_sum if dist.enabled else None)
        if self.fused is not None:
            return self.fused.update(batch, all_reduce_mean=dist.all_reduce_mean_ if dist.enabled else None, **common)
        batch = dataclasses.replace(batch, obs=preprocess_once(self.model, batch.obs))  # (images only: ppo2/speed.py)
        return ppo_update(self.model, self.optimizer, batch, algo=cfg.algo,
                          average_gradients=dist.average_gradients if dist.enabled else None, **common)

    def _update_obs_stats(self) -> None:
        if not self.model.normalize_obs:
            return
        valid = self.storage.valid
        obs = torch.from_numpy(vector_part(self.model.obs_spec, self.storage.obs)[valid])  # (never the images)
        count, sums, squares = pooled_sums(obs, lambda t: self.dist.all_reduce_sum(t.to(self.device)).cpu())
        if count < 1:
            return
        mean = sums / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        self.model.update_obs_stats(mean, var, count)

    # --------------------------------------------------------------------------------------------
    # the loop
    # --------------------------------------------------------------------------------------------
    def learn(self) -> PPO2:
        cfg = self.config
        num_updates = cfg.num_updates
        self._open_outputs()
        handlers = self._install_signal_handlers()
        start = time.perf_counter() - self.elapsed
        bar = self._progress_bar()
        stop_reason = "total_timesteps"
        try:
            while self.update < num_updates:
                if self.update in cfg.restart_episodes_at:
                    self._restart_episodes()
                frac = 1.0 - self.update / num_updates
                lr = cfg.learning_rate * (frac if cfg.anneal_lr else 1.0)
                clip = cfg.clip_range * (frac if cfg.anneal_clip_range else 1.0)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr

                t0 = time.perf_counter()
                self.collect_rollout()
                batch, ev = self.compute_batch()
                stats = self.update_policy(batch, clip)
                self._update_obs_stats()
                self.update += 1
                self.global_step += cfg.batch_size
                sps = cfg.batch_size / max(time.perf_counter() - t0, 1e-9)

                solved = False
                if cfg.eval_interval and (self.update % cfg.eval_interval == 0 or self.update == num_updates):
                    solved = self.evaluate(start)
                self._log(stats, ev, lr, clip, sps, time.perf_counter() - start)
                if bar is not None:
                    bar.update(cfg.batch_size)
                    shown = {"steps/s": f"{sps:,.0f}"}
                    recent = self.collector.recent_return()
                    if np.isfinite(recent):  # (none until the first training episode ends: long games, pixels)
                        shown["return"] = f"{recent:.1f}"
                    if self.last_eval is not None:  # (the latest evaluation's mean)
                        shown["eval"] = f"{self.last_eval['mean_reward']:.1f}"
                    bar.set_postfix(refresh=False, **shown)

                stop_requested = self.dist.any(self._stop_signal is not None)
                if stop_requested:
                    stop_reason = f"signal {signal.Signals(self._stop_signal or signal.SIGTERM).name}"
                elif solved:
                    stop_reason = "target_reward"
                if stop_requested or solved or (cfg.checkpoint_interval and self.update % cfg.checkpoint_interval == 0):
                    self.elapsed = time.perf_counter() - start
                    self.save_checkpoint()
                if cfg.snapshot_interval and self.update % cfg.snapshot_interval == 0:
                    self.save_snapshot()
                if stop_requested or solved:
                    break
            else:
                if self.checkpointed_update != self.update:
                    self.elapsed = time.perf_counter() - start
                    self.save_checkpoint()  # unless the last update's interval checkpoint already wrote it
            self.elapsed = time.perf_counter() - start
            self.stop_reason = stop_reason
            self.weights_sha256 = self.dist.assert_in_sync(self.model)  # every rank ends with the same policy
            self._finish()
            self.dist.barrier()
        finally:
            if bar is not None:
                bar.close()
            self._restore_signal_handlers(handlers)
            self._close_outputs()
        return self.model

    # --------------------------------------------------------------------------------------------
    # evaluation (rank 0, or every rank its share of the episodes; the decision to stop is shared with every rank)
    # --------------------------------------------------------------------------------------------
    def evaluate(self, start: float | None = None) -> bool:
        """The periodic evaluation (sampled actions with --no-eval-deterministic); True (on every rank) when it reaches
        the target and training should stop.
        `start` is the perf_counter at which training started: times recorded include this evaluation."""
        cfg = self.config
        solved = False
        res = self._play_evaluation()
        if res is None:  # a signal cut the episodes short: the loop checkpoints and exits after this update
            return self.dist.broadcast_flag(False)
        # rank 0 holds the results; under a split evaluation every rank does, and every rank plays its share of a
        # confirmation (solved_at is then the same on every rank, as a resume loads it)
        if self.dist.is_main or self._eval_split:
            elapsed = time.perf_counter() - start if start is not None else 0.0
            res.update(update=self.update, global_step=self.global_step, time_s=elapsed)
            if self.dist.is_main:
                self.last_eval = res
                if self.best_eval is None or res["mean_reward"] >= self.best_eval["mean_reward"]:
                    self.best_eval = res
                    publish_pretrained(self.model, self.output_dir / "best", env_id=cfg.env_id, results=res)
            target = self.target_reward
            if target is not None and res["mean_reward"] >= target and self.solved_at is None:
                # a periodic evaluation that reaches the target is the best of several draws (a winner's curse):
                # the run counts as solved only once fresh episodes confirm it
                confirmed = self._confirm(res, target)
                if confirmed is not None:
                    self.solved_at = {"global_step": self.global_step, "update": self.update, "time_s": elapsed,
                                      "mean_reward": confirmed["mean_reward"], "std_reward": confirmed["std_reward"],
                                      "n_episodes": confirmed["n_episodes"],
                                      "eval_mean_reward": res["mean_reward"]}
                    solved = cfg.stop_at_target
            elif target is not None and res["mean_reward"] >= target and cfg.stop_at_target:
                solved = True
        return self.dist.broadcast_flag(solved)

    def _stopping(self) -> bool:
        return self._stop_signal is not None

    def _play_evaluation(self) -> dict | None:
        """The evaluation episodes, played by rank 0 or by every rank its share (`_split_evaluation`):
        `evaluate_policy`'s result on rank 0 (on every rank when split), {} on a rank that only waits for rank 0,
        None when a signal cut them short (on every rank that knows it; rank 0's answer reaches the others)."""
        cfg = self.config
        if self._eval_split is None:  # (decided once: every rank builds the same kind of envs, so agrees)
            self._eval_split = self._split_evaluation()
        if not self._eval_split and not self.dist.is_main:
            return {}
        return self._play("eval_envs", cfg.eval_episodes, cfg.eval_seed)

    def _play(self, envs_attr: str, n: int, seed: int) -> dict | None:
        """`n` episodes seeded from `seed` in the envs kept at `envs_attr` (made on first use, closed when a signal
        leaves their episodes midway): this process all of them, or under a split evaluation this rank its share
        (rank r plays seeds seed + r*k ... + r*k + k - 1, and sampled actions as those rows of one process's batch),
        the results gathered on every rank. `evaluate_policy`'s result for all `n`, or None (on every rank that
        plays) when a signal cut any of them short."""
        cfg, world = self.config, self.dist.world_size if self._eval_split else 1
        share = n // world
        envs = getattr(self, envs_attr)
        if envs is None:
            envs = self._make_envs(share)
            setattr(self, envs_attr, envs)
        try:
            if world == 1:
                return evaluate_policy(self.model, cfg.env_id, n, seed=seed, envs=envs,
                                       deterministic=cfg.eval_deterministic, stop=self._stopping)
            returns, lengths = run_episodes(self.model, envs, seed, deterministic=cfg.eval_deterministic,
                                            stop=self._stopping, share=(self.dist.rank * share, n))
            cut = 0.0
        except EvaluationInterrupted:  # SIGTERM / Ctrl-C
            envs.close()
            setattr(self, envs_attr, None)  # (its episodes were left midway)
            if world == 1:
                return None
            returns, lengths, cut = np.zeros(share), np.zeros(share), 1.0
        mine = torch.from_numpy(np.concatenate([[cut], returns, lengths]).astype(np.float64))
        every = torch.stack(self.dist.all_gather(mine.to(self.device))).cpu().numpy()  # (ranks, 1 + 2 * share)
        if every[:, 0].any():
            return None
        return evaluation_result(cfg.env_id, every[:, 1:1 + share].reshape(-1),
                                 every[:, 1 + share:].reshape(-1).astype(np.int64), seed, cfg.eval_deterministic)

    def _split_evaluation(self) -> bool:
        """Whether every rank plays its share of the evaluation episodes (instead of rank 0 playing them all while
        the others wait): under several ranks, for envs that seed sub-environment i with seed + i, so that the
        shares are the episodes one process would play (a confirmation's too: `_confirm`). Sampled actions too
        where the action head is a built-in one (each share draws the random numbers of its rows of the whole batch:
        `distributions.drawn_as_rows`); a torch.distributions class of the user's samples in its own way, so rank 0
        plays those. Builds this rank's evaluation envs."""
        cfg, world = self.config, self.dist.world_size
        if not self.dist.enabled or cfg.eval_episodes % world or cfg.confirm_episodes % world:
            return False
        if not (cfg.eval_deterministic or self.model.action_head.builtin):
            return False
        envs = self._make_envs(cfg.eval_episodes // world)
        if seeds_each_env(envs):
            self.eval_envs = envs
            return True
        envs.close()
        return False

    def _confirm(self, res: dict, target: float) -> dict | None:
        """Play `confirm_episodes` fresh episodes (never played before in this run: their seed moves on with the
        update) with the policy that just reached `target`; their results, if their mean reaches it too, else None.
        A confirmed policy is the run's best/ (with the confirmation as its results). Under a split evaluation every
        rank calls this and plays its share of the episodes, as it does of the evaluation's."""
        cfg = self.config
        if cfg.confirm_episodes == 0:
            return res
        seed = cfg.eval_seed + 500_000 + 1_000 * self.update
        check = self._play("confirm_envs", cfg.confirm_episodes, seed)
        if check is None:  # (a signal cut the episodes short)
            return None
        check.update(update=self.update, global_step=self.global_step, time_s=res["time_s"])
        # the episodes' mean less CONFIRM_Z standard errors: a one-sided 95% lower bound on the policy's mean return
        bound = check["mean_reward"] - CONFIRM_Z * check["std_reward"] / cfg.confirm_episodes ** 0.5
        check["lower_bound"] = bound
        res["confirmation"] = {**_brief(check), "lower_bound": bound}
        if bound < target:
            return None
        self.best_eval = check
        if self.dist.is_main:
            publish_pretrained(self.model, self.output_dir / "best", env_id=cfg.env_id, results=check)
        return check

    # --------------------------------------------------------------------------------------------
    # checkpoints and resume
    # --------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes the checkpoint (every rank calls this at the same updates: the ranks' reward-scaler
        statistics, each from its own envs, are gathered into it)."""
        self.checkpointed_update = self.update
        scaler = self.collector.reward_scaler
        rank_scalers = (torch.stack(self.dist.all_gather(scaler.state_row()))
                        if self.dist.enabled and scaler is not None else None)
        if not self.dist.is_main:
            return None
        state = {"update": self.update, "global_step": self.global_step, "elapsed": self.elapsed,
                 "config": self.config.to_dict(), "world_size": self.dist.world_size,
                 "best_eval": self.best_eval, "last_eval": self.last_eval, "solved_at": self.solved_at,
                 "segments": self.segments}
        tensors = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.dist.enabled:
            collector, collector_tensors = self.collector.state()
            state["collector"] = collector
            tensors.update(collector_tensors)
        if rank_scalers is not None:
            tensors["collector.reward_scalers"] = rank_scalers
        self.last_checkpoint = save_checkpoint(self.output_dir, self.update, self.model, self.optimizer, state, tensors)
        return self.last_checkpoint

    def save_snapshot(self) -> Path | None:
        """Rank 0 keeps the policy as it is after this update (--snapshot-interval), with this update's evaluation
        where one ran, written whole before it appears (`staged_dir`). A resume drops those after its checkpoint
        (RunOutputs) and writes them anew."""
        if not self.dist.is_main:
            return None
        final = snapshot_dir(self.output_dir, self.update)
        evaluated = self.last_eval if self.last_eval is not None and self.last_eval["update"] == self.update else None
        with staged_dir(final) as stage:
            save_pretrained(self.model, stage, env_id=self.config.env_id, results=evaluated)
        return final

    def _load(self, path: str) -> None:
        ckpt, state, tensors, sha256 = load_checkpoint(path)  # every file verified against the checkpoint's manifest
        saved_config = self._check_resumed_config(path, state)
        saved = build_model(PPO2, ckpt / "config.json", ckpt / "model.safetensors", weights_sha256=sha256["model.safetensors"],
                            config_sha256=sha256["config.json"])
        if saved.get_config() != self.model.get_config():
            raise ValueError(f"checkpoint {ckpt} holds a different model ({saved.get_config()}) from the one this run "
                             f"builds ({self.model.get_config()})")
        self.model.load_state_dict(saved.state_dict())
        opt_tensors = {k: v.to(self.device) if k.endswith(("exp_avg", "exp_avg_sq", "square_avg")) else v
                       for k, v in tensors.items() if k.startswith("optim.")}
        try:
            self.optimizer.load_state_dict(optimizer_state_from_flat(opt_tensors, state["optimizer"]))
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ValueError(f"checkpoint {ckpt}: its optimizer state does not fit this run ({exc})") from None
        counters = {k: state.get(k) for k in ("update", "global_step", "elapsed")}
        if not (all(isinstance(counters[k], int) and not isinstance(counters[k], bool) and counters[k] >= 0
                    for k in ("update", "global_step"))
                and isinstance(counters["elapsed"], (int, float)) and 0 <= counters["elapsed"] < float("inf")):
            raise ValueError(f"checkpoint {ckpt}: its run state is invalid ({counters}); expected whole numbers >= 0 "
                             "for update and global_step and a finite elapsed time >= 0")
        self.update, self.global_step, self.elapsed = state["update"], state["global_step"], state["elapsed"]
        self.best_eval, self.last_eval, self.solved_at = state["best_eval"], state["last_eval"], state["solved_at"]
        if saved_config.target_reward != self.config.target_reward:
            self.solved_at = None  # (the old target's; the new one is confirmed afresh: target_change_conflict)
        scaler = self.collector.reward_scaler
        if scaler is not None and "collector.reward_scalers" in tensors:  # a checkpoint of several ranks
            scaler.load_rank_rows(tensors["collector.reward_scalers"], self.dist.rank, self.dist.world_size)
        if not self.dist.enabled and self.collector.load_state(state.get("collector"), tensors):
            torch.set_rng_state(tensors["rng.torch"])
        elif self.update not in self.config.restart_episodes_at:
            # envs whose state a checkpoint cannot hold (ALE, Box2D, MuJoCo, per-rank envs under torchrun): the
            # episodes restart here (learn(): _restart_episodes), and the configuration says so, so that the run's
            # train_config.json reproduces it in one go
            self.config = self.config.replace(
                restart_episodes_at=tuple(sorted((*self.config.restart_episodes_at, self.update))))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.output_dir = Path(path) if (Path(path) / "checkpoints").is_dir() else ckpt.parent.parent
        self.resumed_from = ckpt
        if self.dist.is_main:
            # (a stretch that began at this update or later left nothing this checkpoint holds)
            earlier = [x for x in _earlier_segments(ckpt, state) if x["from_update"] < self.update]
            self.segments = [*earlier, self._segment(self.update)]

    def _segment(self, from_update: int) -> dict:
        """What the run computes with from `from_update` on: its ranks, code and platform (`provenance`)."""
        return {"from_update": from_update, "world_size": self.dist.world_size, **(self.provenance or {})}

    def _check_resumed_config(self, path: str, state: dict) -> TrainConfig:
        """The rules `train.py --resume` applies (resumed_config), for a configuration built in Python
        (`ppo2.train(..., resume=path)`): what trains must be the checkpoint's, a changed target must be one the run
        so far allows, and the episode restarts recorded so far are kept (this run's train_config.json must name
        them all to reproduce it). Returns the checkpoint's own configuration."""
        mine = {k: v for k, v in self.config.to_dict().items() if k not in OUTPUT_ONLY and k != "restart_episodes_at"}
        saved, resumed = resumed_config(state, mine, f"resume {path}", named_env=self.config.env_id)
        restarts = sorted({*resumed.restart_episodes_at, *self.config.restart_episodes_at})
        self.config = self.config.replace(restart_episodes_at=tuple(restarts))
        return saved

    # --------------------------------------------------------------------------------------------
    # signals: finish the current update, checkpoint, exit cleanly
    # --------------------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_signal is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(handlers) -> None:
        for sig, old in (handlers or {}).items():
            signal.signal(sig, old)

    # --------------------------------------------------------------------------------------------
    # logging and outputs (rank 0)
    # --------------------------------------------------------------------------------------------
    def _progress_bar(self):
        if not (self.config.progress and self.dist.is_main):
            return None
        total = self.config.num_updates * self.config.batch_size
        if not sys.stderr.isatty() and "ipykernel" not in sys.modules:  # (output to a file: lines, not redraws;
            # a notebook's stderr is no terminal either, but tqdm.auto draws its widget there)
            return LineProgress(total, initial=self.global_step, desc=self.config.env_id)
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.global_step, unit="step", unit_scale=True, dynamic_ncols=True,
                    desc=self.config.env_id, mininterval=0.5)

    def _open_outputs(self) -> None:
        if self.dist.is_main:
            cfg = self.config
            self.outputs = RunOutputs(self.output_dir, cfg.to_dict(), resumed_at=self.update,
                                      overwrite=cfg.overwrite and not cfg.resume, tensorboard=cfg.tensorboard,
                                      plot=cfg.plot, **curve_settings(cfg))

    def _log(self, stats: dict, ev: float, lr: float, clip: float, sps: float, elapsed: float) -> None:
        if self.outputs is None:
            return
        evaluated = self.last_eval is not None and self.last_eval["update"] == self.update
        c = self.collector
        row = {"update": self.update, "global_step": self.global_step, "time_s": round(elapsed, 4), "sps": round(sps, 1),
               "episode_return": c.recent_return(), "episode_length": c.recent_length(), "episodes": c.episodes,
               "eval_return": self.last_eval["mean_reward"] if evaluated else "",
               "eval_std": self.last_eval["std_reward"] if evaluated else "",
               "learning_rate": lr, "clip_range": clip, "explained_variance": ev, **stats}
        self.outputs.log(row)

    def _close_outputs(self) -> None:
        if self.outputs is not None:
            self.outputs.close()  # (its companion may still be writing TensorBoard events and the plot)

    def wait_for_outputs(self) -> None:
        """Wait for the companion process that writes TensorBoard events and the learning curve."""
        if self.outputs is not None:
            self.outputs.wait()

    def _finish(self) -> None:
        """Final weights + config (loadable by the hub entrypoint), summary and learning curve."""
        if not self.dist.is_main:
            return
        self.outputs.flush()
        save_pretrained(self.model, self.output_dir, env_id=self.config.env_id, results=self.last_eval)
        self.outputs.write_summary({
            "env_id": self.config.env_id, "algo": self.config.algo, "global_step": self.global_step,
            "updates": self.update, "wall_time_s": round(self.elapsed, 3), "stop_reason": self.stop_reason,
            "solved_at": self.solved_at, "last_eval": _brief(self.last_eval), "best_eval": _brief(self.best_eval),
            "world_size": self.dist.world_size, "weights_sha256_all_ranks": self.weights_sha256,
            "update_path": self.update_path, "command": os.environ.get("PPO2_COMMAND") or (" ".join(sys.argv) if sys.argv else None),
            "provenance": self.provenance, "segments": self.segments})
        if self.config.push_to_hub:
            self.push_to_hub(self.config.push_to_hub)

    def push_to_hub(self, repo_id: str):
        """Upload the trained policy with its evaluation, a replay GIF and a model card."""
        from .evaluate import record_replay
        from .hf_hub import push_to_hub

        replay = self.output_dir / "replay.gif"
        cfg = self.config
        record_replay(self.model, cfg.env_id, replay, seed=cfg.eval_seed, deterministic=cfg.eval_deterministic)
        results = self.last_eval or evaluate_policy(self.model, cfg.env_id, cfg.eval_episodes, seed=cfg.eval_seed,
                                                    deterministic=cfg.eval_deterministic)
        return push_to_hub(self.model, repo_id, env_id=self.config.env_id, results=results, replay=replay,
                           train_config=self.config.to_dict())

    def close(self) -> None:
        self.envs.close()
        for envs in (self.eval_envs, self.confirm_envs):
            if envs is not None:
                envs.close()


def _brief(res: dict | None) -> dict | None:
    if res is None:
        return None
    return {k: res[k] for k in ("mean_reward", "std_reward", "n_episodes", "seed", "global_step", "time_s") if k in res}


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def train(config: TrainConfig | str | None = None, *, model: PPO2 | None = None, policy_net: nn.Module | None = None,
          value_net: nn.Module | None = None, encoder: nn.Module | None = None, **overrides: Any) -> PPO2:
    """Train and return a policy.

    `train("CartPole-v1")` (or `train(env_id="CartPole-v1")`) uses the CartPole preset; any TrainConfig field can be
    overridden by keyword. Pass `encoder` (any observations) or `policy_net` / `value_net` (vectors) to train your own
    networks, or a whole `model`. `env_id` may be "module:EnvId" (gymnasium's form for your own env)."""
    if isinstance(config, str):
        if "env_id" in overrides:
            raise TypeError(f"train() got the env id twice: {config!r} and env_id={overrides['env_id']!r}")
        config, overrides["env_id"] = None, config
    elif config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig or an env id (str) first, got {type(config).__name__}")
    if config is None:
        config = TrainConfig.for_env(overrides.pop("env_id", "CartPole-v1"), overrides.pop("algo", "ppo"), **overrides)
    elif overrides:
        config = config.replace(**overrides)
    trainer = Trainer(config, model=model, policy_net=policy_net, value_net=value_net, encoder=encoder)
    try:
        trained = trainer.learn()
        trainer.wait_for_outputs()
    finally:
        trainer.close()
    trained.env_id, trained.env_kwargs = config.env_id, dict(config.env_kwargs)
    trained.trainer_summary = {"global_step": trainer.global_step, "solved_at": trainer.solved_at,
                               "last_eval": trainer.last_eval, "output_dir": str(trainer.output_dir),
                               "stop_reason": getattr(trainer, "stop_reason", None)}
    return trained


def target_reward(config: TrainConfig) -> float | None:
    """The evaluation mean a run aims at: --target-reward, else the env's own reward threshold (None: none)."""
    if config.target_reward is not None:
        return config.target_reward
    return check_env_id(config.env_id).reward_threshold


def curve_settings(config: TrainConfig) -> dict:
    """How a run's learning curve is titled and labelled (its companion process; scripts/add_to_zoo.py redraws a zoo
    entry's from the run's metrics.csv with these)."""
    return {"title": f"{config.algo.upper()} on {config.env_id}", "target": target_reward(config),
            "eval_deterministic": config.eval_deterministic}


def _earlier_segments(ckpt: Path, state: dict) -> list[dict]:
    """The segments a checkpoint's run had so far (Trainer._segment), checked; a checkpoint written before runs
    recorded them holds one segment of unknown code and platform."""
    segments = state.get("segments")
    if segments is None:
        return [{"from_update": 0, "world_size": state.get("world_size"), "commit": None}]
    starts = [x.get("from_update") if isinstance(x, dict) else None for x in segments] if isinstance(segments, list) else []
    if not (starts and all(isinstance(u, int) and not isinstance(u, bool) for u in starts) and starts[0] == 0
            and starts == sorted(starts) and starts[-1] <= state["update"]):
        raise ValueError(f"checkpoint {ckpt}: its run segments are invalid ({str(segments)[:200]}); expected a list "
                         "of objects whose from_update rise from 0 to at most the checkpoint's update")
    return segments


def _resume_config(path: str, given: dict[str, Any]) -> TrainConfig:
    """`train.py --resume`: the checkpoint's own configuration (verified before it is read), with the flags the user
    passed, as resumed_config allows."""
    from .checkpoint import load_checkpoint

    _, state, _, _ = load_checkpoint(path)
    return resumed_config(state, given, f"--resume {path}", named_env=given.get("env_id"))[1]


def resumed_config(state: dict, given: dict[str, Any], where: str,
                   named_env: str | None = None) -> tuple[TrainConfig, TrainConfig]:
    """The resume rules, stated once for `train.py --resume` and for a resume built in Python: a checkpoint's
    configuration (`state["config"]`) may be resumed with the settings in `given` only where RESUME_MAY_CHANGE lets
    them differ and a changed target is one the run so far allows (target_change_conflict). Returns the checkpoint's
    configuration and the resumed one; refuses with every reason at once."""
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the checkpoint's training configuration is invalid ({exc})") from None
    if named_env != saved.env_id:  # (an id the user named is theirs to import; one a file names is not)
        refuse_file_named_module(saved.env_id, f"{where}: the checkpoint")
    problems = resume_conflicts(saved, given)
    resumed = conflict = None
    if not problems:
        resumed = saved.replace(**given)
        conflict = target_change_conflict(saved, resumed, state.get("best_eval"), state.get("solved_at"))
    if problems or conflict:
        raise ValueError(f"{where}: " + "; ".join(problems or [conflict]) + ". A resumed run keeps its checkpoint's "
                         "settings (all but those ppo2.config.RESUME_MAY_CHANGE names) and may change its target only "
                         "as its evaluations so far allow; drop or match these, or start a new run")
    return saved, resumed


def target_change_conflict(saved: TrainConfig, resumed: TrainConfig, best_eval: dict | None,
                           solved_at: dict | None) -> str | None:
    """Why a resume may not change `target_reward` / `stop_at_target` (None if it may). Neither changes what is
    trained, only when the run stops and which evaluations are confirmed, so a changed one is allowed where the run's
    evaluations so far are those a run with the new setting from the start would have seen: none reached a new
    target (`best_eval` is the best of them while no target has been confirmed; `solved_at` names the evaluation
    that triggered a confirmation), a lowered target is not below one already confirmed, and a run that had its
    target confirmed without stopping is not told to stop at it now (it would have stopped then). The resumed run
    then confirms its new target afresh (the trainer forgets the old one's `solved_at`)."""
    old, new = saved.target_reward, resumed.target_reward
    if new != old:
        if solved_at is not None and (new is None or old is None or new < old):
            return (f"--target-reward {new}: this run's target {old} was already confirmed at update "
                    f"{solved_at.get('update')}, and a lower target would have been confirmed earlier")
        reached = [e for e in (best_eval and best_eval.get("mean_reward"),
                               solved_at and solved_at.get("eval_mean_reward")) if e is not None]
        if new is not None and reached and max(reached) >= new:
            return (f"--target-reward {new}: an evaluation of this run already reached {max(reached)}, which a run "
                    f"with that target would have confirmed (and perhaps stopped at) then")
    elif resumed.stop_at_target and not saved.stop_at_target and solved_at is not None:
        return (f"--stop-at-target: this run's target {old} was confirmed at update {solved_at.get('update')}, "
                "where a run that stops at it would have stopped")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer = None
    try:
        config, args = config_from_args(argv)
        if args.print_config:
            return 0
        if config.resume:
            config = _resume_config(config.resume, given_options(args))
        if "WORLD_SIZE" not in os.environ:  # (under torchrun, torchrun decides)
            processes = resolve_processes(config.processes, config.num_envs, config.device)
            if processes > 1:
                return launch_local(argv, processes, config.torch_threads)
        trainer = Trainer(config)
        trainer.learn()
    except NonFiniteError as exc:
        last = getattr(trainer, "last_checkpoint", None)
        resumed = getattr(trainer, "resumed_from", None)
        if last is not None:
            where = f"Last good checkpoint: {last}"
        elif resumed is not None:
            where = (f"No checkpoint was written since this run resumed from {resumed}, which led here; resume from "
                     "an earlier checkpoint (name its directory) or start again")
        else:
            where = "No checkpoint was written yet"
        print(f"error: training stopped at update {trainer.update + 1 if trainer else '?'}: {exc}. {where}",
              file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError) as exc:  # user errors: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if trainer is not None and trainer.dist.enabled:
            print(f"error: rank {trainer.dist.rank} lost contact with the other ranks ({exc}). "
                  f"The last checkpoint in {trainer.output_dir / 'checkpoints'} is intact; resume with --resume.",
                  file=sys.stderr)
            return 1
        raise
    finally:
        if trainer is not None:
            trainer.wait_for_outputs()  # every file the run promised is complete when the command returns
            trainer.close()
            trainer.dist.close()
    if trainer.dist.is_main:
        msg = f"done: {trainer.global_step} steps in {trainer.elapsed:.1f}s ({trainer.stop_reason})"
        if trainer.last_eval:
            msg += f"; eval {trainer.last_eval['mean_reward']:.1f} +/- {trainer.last_eval['std_reward']:.1f}"
        if trainer.solved_at:
            s = trainer.solved_at
            msg += (f"; solved at step {s['global_step']}: {s['mean_reward']:.1f} +/- {s.get('std_reward', 0.0):.1f} "
                    f"over {s.get('n_episodes', '?')} fresh episodes")
        msg += f"\noutputs: {trainer.output_dir}"
        print(msg)
    return 0


def cli() -> None:
    """train.py and `ppo2-train`: `main()`, then exit without tearing the interpreter down. Freeing torch's
    objects at shutdown takes about a second here and nobody waits for it: by now every file is written and
    closed, the environments and the process group are closed, and stdout/stderr are flushed below.

    Before main(), everything imported so far (~260k objects, nearly all torch's, alive until the process
    ends) is moved out of the garbage collector's sight with gc.freeze(): its full collections then scan only
    what training allocates (one full collection of the imports costs ~0.09 s here, and more would follow)."""
    gc.freeze()
    gc.enable()  # (train.py turns collection off while it imports)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
