"""torchrun / torch.distributed on this CPU machine: 2 processes, gloo, localhost."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import REPO, hub_load
from ppo2 import PPO2
from ppo2.distributed import DistContext, free_port
from ppo2.losses import normalize_advantages


def torchrun(*args, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(REPO / "train.py"), "--no-progress", "--no-tensorboard", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _fixed_batch():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 4, generator=g)
    actions = torch.randint(0, 2, (64,), generator=g)
    returns, adv = torch.randn(64, generator=g), torch.randn(64, generator=g)
    return obs, actions, returns, adv


def _loss(model, obs, actions, returns, adv, all_reduce_sum=None, normalize=False):
    if normalize:  # (as the update does: over the whole minibatch, every rank's share together)
        adv = normalize_advantages(adv, all_reduce_sum)
    with torch.no_grad():
        old_v, _, old_nlp, _ = model(obs, action=actions)
    v, _, nlp, ent = model(obs, action=actions)
    return model.loss(returns, v, nlp, ent, adv, old_v + 0.1, old_nlp + 0.05, 0.2, 0.01, 0.5)[0]


def _rank_grads(rank, world, port, out_dir, normalize):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    ctx = DistContext.from_env(torch.device("cpu"), timeout_s=60)
    torch.manual_seed(100 + rank)  # different init per rank: the broadcast must fix it
    model = PPO2(4, 16, 2)
    ctx.broadcast_module(model)
    obs, actions, returns, adv = _fixed_batch()
    half = slice(rank * 32, (rank + 1) * 32)
    _loss(model, obs[half], actions[half], returns[half], adv[half], ctx.all_reduce_sum, normalize).backward()
    ctx.average_gradients(model)
    torch.save({n: p.grad for n, p in model.named_parameters()} | {f"param.{n}": p.detach() for n, p in model.named_parameters()},
               f"{out_dir}/rank{rank}.pt")
    ctx.close()


@pytest.mark.parametrize("normalize", [False, True])
def test_averaged_gradient_of_split_batch_equals_single_process_gradient(tmp_path, normalize):
    """Each rank's loss on its half of the minibatch, gradients averaged: the whole minibatch's gradient, with the
    advantages normalised over the whole minibatch too (not over each half)."""
    mp.spawn(_rank_grads, args=(2, free_port(), str(tmp_path), normalize), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    model = PPO2(4, 16, 2)
    model.load_state_dict({k[len("param."):]: v for k, v in r0.items() if k.startswith("param.")}, strict=False)
    _loss(model, *_fixed_batch(), normalize=normalize).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(r0[name], p.grad, rtol=1e-5, atol=1e-6)
        assert torch.equal(r0[name], r1[name])  # both ranks hold the same averaged gradient
        assert torch.equal(r0[f"param.{name}"], r1[f"param.{name}"])  # and started from rank 0's weights


def test_torchrun_two_ranks_stay_identical_and_output_loads(tmp_path):
    out = tmp_path / "ddp"
    res = torchrun("--env", "CartPole-v1", "--total-timesteps", 32 * 16 * 6, "--no-stop-at-target", "--normalize-obs",
                   "--output-dir", out, "--checkpoint-interval", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["updates"] == 6
    assert len(summary["weights_sha256_all_ranks"]) == 64  # assert_in_sync raised otherwise
    model = hub_load("ppo2", pretrained=str(out))
    assert float(model.obs_count) > 32 * 16 * 5  # normaliser saw both ranks' observations
    # resume restores every rank
    res = torchrun("--env", "CartPole-v1", "--total-timesteps", 32 * 16 * 8, "--no-stop-at-target", "--normalize-obs",
                   "--resume", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["updates"] == 8


def test_torchrun_trains_a_recurrent_policy_identically_on_both_ranks_and_resumes(tmp_path):
    """Each rank carries its own envs' LSTM state; the averaged gradients keep the weights identical (checked at
    the end of the run); resume restarts the episodes (and their memory) on every rank."""
    out = tmp_path / "lstm"
    common = ["--env", "CartPoleNoVel-v1", "--num-envs", 8, "--num-minibatches", 2, "--no-stop-at-target",
              "--eval-interval", 0, "--checkpoint-interval", 2]
    res = torchrun(*common, "--total-timesteps", 8 * 32 * 4, "--output-dir", out)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["updates"] == 4 and len(summary["weights_sha256_all_ranks"]) == 64
    assert hub_load("ppo2", pretrained=str(out)).recurrent
    res = torchrun(*common, "--total-timesteps", 8 * 32 * 6, "--resume", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["updates"] == 6


@pytest.mark.slow
def test_torchrun_two_ranks_solve_cartpole(tmp_path):
    res = torchrun("--env", "CartPole-v1", "--seed", 1, "--output-dir", tmp_path / "solve")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "solve" / "summary.json").read_text())
    assert summary["stop_reason"] == "target_reward" and summary["solved_at"]["mean_reward"] >= 475


def test_killed_rank_fails_the_job_instead_of_hanging(tmp_path):
    out, port = tmp_path / "kill", free_port()
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), "--env", "CartPole-v1", "--total-timesteps", "50000000",
             "--no-stop-at-target", "--no-progress", "--no-tensorboard", "--eval-interval", "0",
             "--checkpoint-interval", "2", "--dist-timeout", "30", "--output-dir", str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "latest.json").exists():
        time.sleep(0.2)
    assert (out / "checkpoints" / "latest.json").exists(), procs[0].communicate(timeout=5)[0] if procs[0].poll() is not None else "no checkpoint"
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    output, _ = procs[0].communicate(timeout=90)  # must not hang
    assert procs[0].returncode != 0
    assert time.time() - t0 < 90
    assert "lost contact with the other ranks" in output, output[-2000:]
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    model = hub_load("ppo2", pretrained=str(out / "checkpoints" / latest["dir"]))
    assert model.input_dim == 4


def test_two_node_launch_on_one_machine_trains_stays_identical_and_resumes(tmp_path):
    """Two `torchrun --nnodes=2` launchers meeting through a c10d rendezvous on localhost: the multi-node
    path (rendezvous, global ranks from two agents) without a second machine."""
    out = tmp_path / "nodes"

    def launch(*args):
        port = free_port()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
               f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=ppo2-{port}", str(REPO / "train.py"), "--env",
               "CartPole-v1", "--no-stop-at-target", "--no-progress", "--no-tensorboard", "--no-plot",
               "--checkpoint-interval", "2", *map(str, args)]
        nodes = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        logs = [n.communicate(timeout=240)[0] for n in nodes]
        assert all(n.returncode == 0 for n in nodes), "\n".join(log[-2000:] for log in logs)
        return json.loads((out / "summary.json").read_text())

    summary = launch("--total-timesteps", 32 * 16 * 6, "--output-dir", out)
    assert summary["world_size"] == 2 and summary["updates"] == 6
    assert len(summary["weights_sha256_all_ranks"]) == 64  # every rank ended with the same weights
    first = summary["weights_sha256_all_ranks"]
    summary = launch("--total-timesteps", 32 * 16 * 8, "--resume", out)
    assert summary["world_size"] == 2 and summary["updates"] == 8
    assert summary["weights_sha256_all_ranks"] != first
    model = hub_load("ppo2", pretrained=str(out))
    assert model.input_dim == 4


# ---- --processes: the command line starts the ranks itself -------------------------------------------------------
def _train_py(*args, timeout=300, **popen):
    cmd = [sys.executable, str(REPO / "train.py"), "--no-progress", "--no-tensorboard", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_processes_flag_trains_as_torchrun_does(tmp_path):
    """`--processes 2` starts two ranks itself: the same run, to the bit, as torchrun's two ranks; the summary
    records the user's command and the checkpoints the number of ranks, so that a resume starts as many."""
    common = ["--env", "CartPole-v1", "--total-timesteps", 32 * 16 * 4, "--no-stop-at-target", "--eval-interval", 0,
              "--checkpoint-interval", 2]
    res = _train_py(*common, "--processes", 2, "--output-dir", tmp_path / "own")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.count("done: ") == 1 and res.stderr == ""  # one report (rank 0's), no launcher noise
    ref = torchrun(*common, "--output-dir", tmp_path / "torchrun")
    assert ref.returncode == 0, ref.stderr[-3000:]
    own = json.loads((tmp_path / "own" / "summary.json").read_text())
    assert own["world_size"] == 2 and own["command"].split() == [str(REPO / "train.py"), "--no-progress",
                                                                     "--no-tensorboard", *map(str, common), "--processes", "2",
                                                                     "--output-dir", str(tmp_path / "own")]
    assert own["weights_sha256_all_ranks"] == json.loads((tmp_path / "torchrun" / "summary.json").read_text())[
        "weights_sha256_all_ranks"]
    state = json.loads(next((tmp_path / "own" / "checkpoints").glob("update_*/state.json")).read_text())
    assert state["config"]["processes"] == 2 and state["world_size"] == 2
    res = _train_py("--resume", tmp_path / "own", "--total-timesteps", 32 * 16 * 6)  # no flag: two ranks again
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "own" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["updates"] == 6


def test_a_resume_under_two_ranks_is_reproduced_in_one_go(tmp_path):
    """Under several ranks a resume always starts fresh episodes (each rank's envs are its own), and each rank keeps
    its own reward-scaler statistics across it (gathered into rank 0's checkpoint); the resumed run's
    train_config.json lists where the episodes restarted, and that configuration, run straight through, gives the
    same weights to the bit. Without the restart the weights differ."""
    import shutil

    common = ["--env", "CartPole-v1", "--num-envs", 4, "--num-steps", 32, "--num-minibatches", 2, "--update-epochs", 2,
              "--normalize-reward", "--total-timesteps", 4 * 32 * 4, "--no-stop-at-target", "--eval-interval", 0,
              "--checkpoint-interval", 2, "--processes", 2, "--no-plot"]
    res = _train_py(*common, "--output-dir", tmp_path / "straight")
    assert res.returncode == 0, res.stderr[-3000:]
    shutil.copytree(tmp_path / "straight", tmp_path / "split")
    res = _train_py("--resume", tmp_path / "split" / "checkpoints" / "update_000002")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "split" / "train_config.json").read_text())["restart_episodes_at"] == [2]
    res = _train_py(*common, "--restart-episodes-at", 2, "--output-dir", tmp_path / "one_go")
    assert res.returncode == 0, res.stderr[-3000:]
    weights = {name: json.loads((tmp_path / name / "summary.json").read_text())["weights_sha256_all_ranks"]
               for name in ("straight", "split", "one_go")}
    assert weights["split"] == weights["one_go"] != weights["straight"]


def test_processes_stop_on_sigterm_with_a_checkpoint_and_a_failed_rank_stops_the_rest(tmp_path):
    out = tmp_path / "run"
    args = ["--env", "CartPole-v1", "--total-timesteps", 50_000_000, "--no-stop-at-target", "--eval-interval", 0,
            "--checkpoint-interval", 2, "--processes", 2, "--output-dir", out]
    proc = _train_py(*args, stdin=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "latest.json").exists():
        time.sleep(0.2)
    assert (out / "checkpoints" / "latest.json").exists(), "no checkpoint"
    ranks = _children(proc.pid)
    assert len(ranks) == 2
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-2000:]
    assert "(signal SIGTERM)" in output and output.count("done: ") == 1
    summary = json.loads((out / "summary.json").read_text())
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["update"] == summary["updates"]  # the checkpoint holds the last update
    assert not any(Path(f"/proc/{r}").exists() and "Z" not in Path(f"/proc/{r}/stat").read_text().split()[2]
                   for r in ranks)

    # a rank that dies: the launcher stops the other at once (it would wait dist_timeout for it) and fails
    proc = _train_py("--resume", out, "--dist-timeout", 600, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(_children(proc.pid)) < 2:
        time.sleep(0.2)
    time.sleep(3)
    os.kill(max(_children(proc.pid)), signal.SIGKILL)  # rank 1 (started second)
    t0 = time.time()
    proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.time() - t0 < 30


def test_resolve_processes(monkeypatch):
    import ppo2.distributed as d

    for cores, envs, want in ((2, 8, 2), (3, 8, 2), (16, 8, 8), (4, 6, 3), (1, 8, 1), (2, 1, 1)):
        monkeypatch.setattr(d, "usable_cores", lambda cores=cores: cores)
        assert d.resolve_processes(0, envs, "cpu") == want
    assert d.resolve_processes(3, 8, "cpu") == 3  # as asked (the launcher refuses a count that does not divide)
    monkeypatch.setattr(d.torch.cuda, "is_available", lambda: True)
    assert d.resolve_processes(0, 8, "cuda") == 1 and d.resolve_processes(0, 8, "auto") == 1


def test_atari_presets_take_one_process_per_core_and_train_runs_in_this_process(tmp_path):
    from ppo2.config import TrainConfig
    from ppo2.trainer import train

    assert TrainConfig.for_env("Pong").processes == 0 and TrainConfig.for_env("Breakout").processes == 0
    with pytest.raises(ValueError, match="runs in this process"):
        train(env_id="CartPole-v1", processes=2)
    model = train(env_id="CartPole-v1", processes=0, total_timesteps=512, eval_interval=0, progress=False,
                  tensorboard=False, plot=False, output_dir=str(tmp_path / "api"))
    state = json.loads(next((tmp_path / "api" / "checkpoints").glob("update_*/state.json")).read_text())
    assert state["config"]["processes"] == 1 and state["world_size"] == 1 and model is not None


@pytest.mark.parametrize("deterministic", [True, False])
def test_ranks_share_the_evaluation_episodes(tmp_path, deterministic):
    """Under two ranks each plays half of the evaluation episodes (rank 1 seeds eval_seed + 2, + 3); together they
    are the episodes one process plays with the same policy, with sampled actions (--no-eval-deterministic) too."""
    import numpy as np

    from ppo2.evaluate import evaluate_policy

    out = tmp_path / "split"
    res = _train_py("--env", "Pendulum-v1", "--num-envs", 4, "--num-steps", 64, "--total-timesteps", 4 * 64 * 4,
                    "--eval-interval", 2, "--eval-episodes", 4, "--processes", 2, "--output-dir", out,
                    "--eval-deterministic" if deterministic else "--no-eval-deterministic")
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((out / "best" / "results.json").read_text())
    assert results["n_episodes"] == 4 and results["seed"] == 1_000_000 and results["deterministic"] is deterministic
    ref = evaluate_policy(hub_load("ppo2", pretrained=str(out / "best")), "Pendulum-v1", 4, seed=results["seed"],
                          deterministic=deterministic)
    assert results["episode_lengths"] == ref["episode_lengths"] == [200] * 4
    np.testing.assert_allclose(results["episode_rewards"], ref["episode_rewards"], rtol=1e-6)
    assert len(set(results["episode_rewards"])) == 4  # four different episodes, not one played twice


@pytest.mark.parametrize("zoo_id, env_id, kwargs", [
    ("Acrobot-v1", "Acrobot-v1", {}),                       # Categorical: one uniform per row
    ("Pendulum-v1", "Pendulum-v1", {}),                     # Gaussian: normals, drawn 16 or more at once
    ("PendulumNoVel-v1", "PendulumNoVel-v1", {}),           # recurrent: the state carried per row
    ("PongNoFrameskip-v4", "PongNoFrameskip-v4", {"max_num_frames_per_episode": 600}),  # pixels, ale-py's vector env
])
def test_sampled_evaluation_split_in_shares_plays_one_processs_episodes(zoo_id, env_id, kwargs):
    """Each rank plays its share of a sampled evaluation (`run_episodes(..., share=(first, total))`): the shares
    together are the episodes one process plays with all the envs, action for action (the returns and lengths of
    sampled play differ with any other draw), and the caller's random state is left as it was."""
    import numpy as np

    from ppo2.envs import make_vector_env
    from ppo2.evaluate import run_episodes
    from ppo2.zoo import load_pretrained

    model = load_pretrained(zoo_id)

    def play(n, share=None):
        envs = make_vector_env(env_id, n, **kwargs)
        try:
            return run_episodes(model, envs, seed=11, deterministic=False, share=share)
        finally:
            envs.close()

    torch.manual_seed(123)
    before = torch.get_rng_state()
    whole = play(4)
    halves = [play(2, share=(first, 4)) for first in (0, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), whole[1])
    # (a matrix product over 2 rows may round differently from one over 4: continuous returns agree to float rounding)
    np.testing.assert_allclose(np.concatenate([h[0] for h in halves]), whole[0], rtol=1e-6)


def test_seeds_each_env():
    from ppo2.envs import make_vector_env, seeds_each_env

    for env_id, want in (("Pendulum-v1", True), ("CartPole-v1", False), ("ALE/Pong-v5", True)):
        envs = make_vector_env(env_id, 2)
        try:
            assert seeds_each_env(envs) is want, env_id
        finally:
            envs.close()


class _TwoRanks:
    """DistContext for one rank of two, the other rank's evaluation share given (returns, lengths)."""

    def __init__(self, rank, other_returns, other_lengths):
        self.rank, self.world_size, self.enabled, self.is_main = rank, 2, True, rank == 0
        self.other = torch.tensor([0.0, *other_returns, *other_lengths], dtype=torch.float64)

    def all_gather(self, tensor):
        return [tensor, self.other] if self.rank == 0 else [self.other, tensor]

    def broadcast_flag(self, flag):
        return flag


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("deterministic", [True, False])
def test_a_rank_plays_its_share_of_the_evaluation_and_rank_0_reports_them_all(tmp_path, monkeypatch, rank,
                                                                               deterministic):
    import ppo2.trainer as trainer_mod
    from ppo2.config import TrainConfig

    t = trainer_mod.Trainer(TrainConfig.for_env("Pendulum-v1", num_envs=4, num_steps=64, total_timesteps=256,
                                                eval_episodes=4, output_dir=str(tmp_path / "run"), progress=False,
                                                tensorboard=False, plot=False, eval_deterministic=deterministic))
    t.dist = _TwoRanks(rank, [-5.0, -6.0], [7, 8])
    played, run = [], trainer_mod.run_episodes
    monkeypatch.setattr(trainer_mod, "run_episodes", lambda model, envs, seed, **kw: played.append(
        (envs.num_envs, seed, kw["share"], kw["deterministic"])) or run(model, envs, seed, **kw))
    assert t.evaluate() is False
    # this rank's two episodes of the four one process plays (seeded, and sampled, as that process plays them)
    assert played == [(2, 1_000_000, (2 * rank, 4), deterministic)]
    if rank == 0:
        res = t.last_eval
        assert res["n_episodes"] == 4 and res["seed"] == 1_000_000 and res["deterministic"] is deterministic
        assert res["episode_rewards"][2:] == [-5.0, -6.0] and res["episode_lengths"] == [200, 200, 7, 8]
        assert res["mean_reward"] == pytest.approx(sum(res["episode_rewards"]) / 4)
    else:
        assert t.last_eval is None  # (rank 0 keeps the results)
    t.close()


@pytest.mark.parametrize("rank", [0, 1])
def test_every_rank_plays_its_share_of_a_confirmation_and_knows_the_run_solved(tmp_path, monkeypatch, rank):
    """An evaluation that reaches the target is confirmed on fresh episodes: under a split evaluation each rank plays
    its share of those too (seeded as one process seeds them), and every rank ends knowing the run is solved and
    stopping; only rank 0 writes best/."""
    import ppo2.trainer as trainer_mod
    from ppo2.config import TrainConfig

    t = trainer_mod.Trainer(TrainConfig.for_env("Pendulum-v1", num_envs=4, num_steps=64, total_timesteps=256,
                                                eval_episodes=4, confirm_episodes=4, target_reward=-10_000.0,
                                                stop_at_target=True, output_dir=str(tmp_path / "run"),
                                                progress=False, tensorboard=False, plot=False,
                                                eval_deterministic=False))
    t.dist = _TwoRanks(rank, [-5.0, -6.0], [7, 8])
    t.update = 3
    played, run = [], trainer_mod.run_episodes
    monkeypatch.setattr(trainer_mod, "run_episodes", lambda model, envs, seed, **kw: played.append(
        (envs.num_envs, seed, kw["share"])) or run(model, envs, seed, **kw))
    monkeypatch.setattr(trainer_mod, "evaluate_policy", lambda *a, **kw: pytest.fail("rank 0 alone"))
    assert t.evaluate() is True  # (stop_at_target: every rank stops)
    assert played == [(2, 1_000_000, (2 * rank, 4)), (2, 1_000_000 + 500_000 + 1_000 * 3, (2 * rank, 4))]
    assert t.solved_at["n_episodes"] == 4 and t.solved_at["update"] == 3
    assert (tmp_path / "run" / "best").exists() is (rank == 0)
    t.close()


def test_rank_0_plays_a_sampled_evaluation_alone_for_a_users_distribution(tmp_path, monkeypatch):
    """A torch.distributions class of the user's samples in its own way (not row by row from uniforms), so its
    sampled evaluation is not split: rank 0 plays every episode while the other ranks wait."""
    import ppo2.trainer as trainer_mod
    from ppo2.config import TrainConfig

    for rank in (0, 1):
        t = trainer_mod.Trainer(TrainConfig.for_env("Pendulum-v1", num_envs=4, num_steps=64, total_timesteps=256,
                                                    eval_episodes=4, output_dir=str(tmp_path / f"run{rank}"),
                                                    progress=False, tensorboard=False, plot=False,
                                                    eval_deterministic=False))
        t.dist = _TwoRanks(rank, [], [])
        t.model.action_head.builtin = False
        played = []
        monkeypatch.setattr(trainer_mod, "evaluate_policy", lambda model, env_id, n, **kw: played.append(n) or {
            "mean_reward": -1.0, "std_reward": 0.0})
        monkeypatch.setattr(trainer_mod, "run_episodes", lambda *a, **kw: pytest.fail("split"))
        t.evaluate()
        assert played == ([4] if rank == 0 else [])
        t.close()


def test_a_signal_during_a_ranks_share_ends_the_evaluation_on_every_rank(tmp_path, monkeypatch):
    """A signal cuts this rank's share short: no results on any rank (the other rank learns it in the gather), the
    half-played envs are closed, and the next evaluation builds fresh ones and plays."""
    import ppo2.trainer as trainer_mod
    from ppo2.config import TrainConfig

    t = trainer_mod.Trainer(TrainConfig.for_env("Pendulum-v1", num_envs=4, num_steps=64, total_timesteps=256,
                                                eval_episodes=4, output_dir=str(tmp_path / "run"), progress=False,
                                                tensorboard=False, plot=False))
    t.dist = _TwoRanks(0, [-5.0, -6.0], [7, 8])
    gathered = []
    t.dist.all_gather = lambda tensor, f=t.dist.all_gather: gathered.append(tensor[0].item()) or f(tensor)
    t._stop_signal = signal.SIGTERM
    assert t.evaluate() is False and t.last_eval is None and t.eval_envs is None and gathered == [1.0]
    t._stop_signal = None
    assert t.evaluate() is False and t.last_eval["n_episodes"] == 4 and gathered == [1.0, 0.0]
    t.close()
