#!/usr/bin/env python
"""Add a train.py run to the shipped policy zoo (weights/).

    python scripts/add_to_zoo.py RUN_DIR --command "python train.py --env CartPole-v1 --seed 1" \
        --trained-on "2-core CPU"
    python scripts/add_to_zoo.py --readme-only      # regenerate the README's zoo table from weights/zoo.json

Takes RUN_DIR/best (the best policy by the run's own periodic evaluation; RUN_DIR itself if there is no
best/), evaluates it on 100 deterministic episodes (sampled actions with --stochastic, as RL-Zoo plays Atari;
drawn from the seed, so they replay too) with seeds 0..99 (never used during training: the
trainer evaluates on seeds from 1,000,000), writes a replay GIF, draws the learning curve again from the run's
metrics, and records the entry with the sha256 of every file in weights/zoo.json, then regenerates the README's zoo
table from it (tests/test_first_contact.py keeps the two equal).
"""
import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ppo2.config import TrainConfig  # noqa: E402
from ppo2.evaluate import evaluate_policy, record_replay  # noqa: E402
from ppo2.hf_hub import save_pretrained  # noqa: E402
from ppo2.model import PPO2  # noqa: E402
from ppo2.observations import has_images  # noqa: E402
from ppo2.io import atomic_write_json, read_json, sha256_file  # noqa: E402
from ppo2.plotting import plot_learning_curve  # noqa: E402
from ppo2.rundir import segment_changes  # noqa: E402
from ppo2.trainer import curve_settings  # noqa: E402

FRESH_SEED = 2_000_000  # neither the recorded seeds (0..99), the trainer's (1,000,000..), nor CI's fresh set (777,000..)
RL_ZOO_PPO = {  # RL-Zoo's published PPO scores (the goals we must match or beat)
    "CartPole-v1": "500.00 +/- 0.00", "Acrobot-v1": "-73.50 (goal)", "LunarLander-v3": "242 (goal)",
    "Pendulum-v1": "-172 (goal)",
    # MuJoCo: the best published PPO score at 1M steps (issue #11's table)
    "Hopper-v5": "2,410 +/- 10 (RL-Zoo3, v3)", "HalfCheetah-v5": "5,819 +/- 664 (RL-Zoo3, v3)",
    "Walker2d-v5": "3,479 +/- 822 (RL-Zoo3, v3)", "Ant-v5": "1,327 +/- 452 (RL-Zoo3, v3)",
    "Humanoid-v5": "716 (CleanRL, v4)",
    # the POMDP tasks (velocities removed): RL-Zoo's RecurrentPPO, at the same budget
    "CartPoleNoVel-v1": "500.00 +/- 0.00 (RL-Zoo RecurrentPPO)",
    "PendulumNoVel-v1": "-217.9 +/- 140 (RL-Zoo RecurrentPPO)",
    "MountainCarContinuousNoVel-v0": "91.5 (RL-Zoo RecurrentPPO)",
    # Atari at 10M steps (issue #29): RL-Zoo3 PPO on the NoFrameskip-v4 games
    "ALE/Pong-v5": "20.99 (RL-Zoo3, NoFrameskip-v4)", "ALE/Breakout-v5": "398 (RL-Zoo3, NoFrameskip-v4)",
    "PongNoFrameskip-v4": "20.99 (RL-Zoo3)", "BreakoutNoFrameskip-v4": "398 (RL-Zoo3)",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("--command", help="the exact train.py command that produced the run")
    p.add_argument("--trained-on", help="where it ran (machine, device)")
    p.add_argument("--readme-only", action="store_true", help="only regenerate the README's zoo table")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--fresh-episodes", type=int, default=None,
                   help="a second, larger evaluation on other seeds (default: 1000, or 200 for image observations)")
    p.add_argument("--stochastic", action="store_true",
                   help="sample the actions in every evaluation (RL-Zoo's way with Atari) instead of the most likely")
    p.add_argument("--check-episodes", type=int, default=None,
                   help="the evaluation CI replays (seeds 0..N-1); default: 10 for image observations, whose 100 "
                        "episodes take minutes, else all of --episodes")
    p.add_argument("--weights-dir", type=Path, default=REPO / "weights")
    args = p.parse_args()
    if args.readme_only:
        write_readme_table(args.weights_dir)
        return 0
    if args.run_dir is None or not args.command or not args.trained_on:
        p.error("RUN_DIR, --command and --trained-on are required (or --readme-only)")

    run = args.run_dir
    source = run / "best" if (run / "best" / "model.safetensors").exists() else run
    model = PPO2.from_pretrained(source)
    summary = read_json(run / "summary.json")
    env_id = summary["env_id"]
    prov = summary.get("provenance") or {}
    if not prov.get("commit") or prov.get("dirty"):
        raise SystemExit(f"error: {run} was not trained from a clean, committed checkout (provenance {prov}); "
                         "a zoo entry must name the commit that reproduces it")
    changed = segment_changes(summary.get("segments"))
    if changed:
        raise SystemExit(f"error: {run} was not trained by one command on one platform: it was resumed with "
                         + "; ".join(changed) + ". Its command and commit would not reproduce its weights; train it "
                         "again, resuming it only with the same code, ranks, threads and platform")
    if summary.get("segments") is None:
        print(f"note: {run} was trained before runs recorded their segments; only its last stretch's code and "
              "platform are known", file=sys.stderr)
    train_config = read_json(run / "train_config.json")
    if train_config.get("env_kwargs"):
        raise SystemExit(f"error: {run} trained on {env_id} made with {train_config['env_kwargs']}: the zoo names a "
                         f"policy by its env id alone, and pretrained={env_id!r} must mean the env as gymnasium makes "
                         "it. Publish this one with push_to_hub (its config.json records the arguments)")
    differences = command_differences(args.command, train_config)
    if differences:
        raise SystemExit(f"error: --command does not resolve to the run's configuration ({run / 'train_config.json'}): "
                         + "; ".join(f"{k} {mine!r} where the run had {theirs!r}" for k, (mine, theirs) in differences.items())
                         + ". Name those options in the command (a run of N ranks: --processes N) so that it reproduces "
                         "the run on any machine")
    deterministic = not args.stochastic

    def recorded(res: dict) -> dict:
        """An evaluation as the entry records it, with the command that plays it again."""
        first, n = res["seed"], res["n_episodes"]
        return {"mean_reward": res["mean_reward"], "std_reward": res["std_reward"], "n_episodes": n,
                "seeds": f"{first}..{first + n - 1}", "deterministic": deterministic,
                "command": f"python -m ppo2.evaluate {env_id} -n {n} --seed {first}"
                           + ("" if deterministic else " --stochastic")}
    res = evaluate_policy(model, env_id, n_episodes=args.episodes, seed=0, deterministic=deterministic)
    print(f"{env_id}: {res['mean_reward']:.2f} +/- {res['std_reward']:.2f} over {args.episodes} episodes")
    # a larger set of episodes never used to train or to choose the policy: what a user will see
    n_fresh = args.fresh_episodes or default_fresh_episodes(model)
    fresh = evaluate_policy(model, env_id, n_episodes=n_fresh, seed=FRESH_SEED, deterministic=deterministic)
    fresh_se = fresh["std_reward"] / fresh["n_episodes"] ** 0.5
    print(f"{env_id}: {fresh['mean_reward']:.2f} (standard error {fresh_se:.2f}) over {n_fresh} fresh episodes")
    n_check = args.check_episodes
    if n_check is None:
        n_check = min(10, args.episodes) if has_images(model.obs_spec) else args.episodes
    if not 1 <= n_check <= args.episodes:
        raise SystemExit(f"error: --check-episodes must be between 1 and --episodes ({args.episodes}), got {n_check}")
    check = (evaluate_policy(model, env_id, n_episodes=n_check, seed=0, deterministic=deterministic)
             if n_check < args.episodes else None)

    out = args.weights_dir / env_id
    if out.exists():
        shutil.rmtree(out)
    save_pretrained(model, out, env_id=env_id, results=res)
    record_replay(model, env_id, out / "replay.gif", seed=0, deterministic=deterministic)  # (its replay_settings)
    # drawn again from the run's metrics with this checkout's labels (a run trained with older code may have
    # labelled sampled-action evaluations as deterministic), as the run's own companion draws it
    plot_learning_curve(run / "metrics.csv", out / "learning_curve.png", **curve_settings(TrainConfig.from_dict(train_config)))
    shutil.copyfile(run / "metrics.csv", out / "metrics.csv")
    best_step = read_json(source / "results.json").get("global_step", summary["global_step"]) if source != run else summary["global_step"]

    index_path = args.weights_dir / "zoo.json"
    index = read_json(index_path) if index_path.exists() else {"default": "CartPole-v1", "policies": {}}
    index["policies"][env_id] = {
        "env_id": env_id,
        "dir": env_id,
        "sha256": {name: sha256_file(out / name) for name in ("model.safetensors", "config.json")},
        "config": {k: v for k, v in read_json(out / "config.json").items() if k not in ("weights_sha256",)},
        "command": args.command,
        "trained_on": args.trained_on,
        "commit": summary["provenance"]["commit"],
        "platform": {k: v for k, v in summary["provenance"].items() if k not in ("commit", "dirty")},
        # (a resumed run's file names the directory it resumed; its command reproduces it without: restart_episodes_at
        # holds where its episodes restarted)
        "train_config": {k: (None if k == "resume" else v) for k, v in train_config.items() if k != "output_dir"},
        "training_steps": int(best_step),
        "run_steps": int(summary["global_step"]),
        "run_wall_time_s": summary["wall_time_s"],
        "eval": recorded(res),
        "eval_fresh": {**recorded(fresh), "standard_error": fresh_se},
        "rl_zoo_ppo": RL_ZOO_PPO.get(env_id),
    }
    if check is not None:  # what tests/test_zoo.py replays in CI
        index["policies"][env_id]["eval_check"] = recorded(check)
    if summary.get("solved_at"):  # the run's wall clock to its target (confirmed on fresh episodes)
        index["policies"][env_id]["target"] = dict(summary["solved_at"], target_reward=train_config["target_reward"])
    index["policies"] = dict(sorted(index["policies"].items()))
    atomic_write_json(index_path, index)
    if args.weights_dir.resolve() == (REPO / "weights").resolve():
        write_readme_table(args.weights_dir)
    else:  # (the README shows the shipped zoo only)
        print(f"README.md left as it is: {args.weights_dir} is not {REPO / 'weights'}")
    return 0


def default_fresh_episodes(model) -> int:
    """The fresh evaluation's size unless --fresh-episodes says: 1,000 episodes, or 200 for a policy that reads
    images (1,000 Atari games, each thousands of CNN steps, would take hours)."""
    return 200 if has_images(model.obs_spec) else 1000


def command_differences(command: str, train_config: dict) -> dict:
    """{option: (what `command` resolves it to, what the run had)} for every option that differs and decides what
    the run trains (not where its outputs went or how it reported: ppo2.config.OUTPUT_ONLY)."""
    import shlex

    from ppo2.config import OUTPUT_ONLY, config_from_args

    argv = shlex.split(command)
    if argv[:2] != ["python", "train.py"]:
        raise SystemExit(f"error: --command must be a `python train.py ...` command line, got {command!r}")
    resolved = config_from_args(argv[2:])[0].to_dict()
    return {k: (resolved.get(k), v) for k, v in train_config.items()
            if k not in OUTPUT_ONLY and resolved.get(k) != v}


def write_readme_table(weights_dir: Path) -> None:
    """Replace the text between the README's zoo-table markers with `ppo2.zoo.zoo_table`."""
    from ppo2.zoo import ZOO_TABLE_BEGIN, ZOO_TABLE_END, zoo_table

    readme = REPO / "README.md"
    text = readme.read_text()
    if ZOO_TABLE_BEGIN not in text or ZOO_TABLE_END not in text:
        raise SystemExit(f"error: README.md lacks the zoo-table markers {ZOO_TABLE_BEGIN!r} ... {ZOO_TABLE_END!r}")
    head, rest = text.split(ZOO_TABLE_BEGIN, 1)
    tail = rest.split(ZOO_TABLE_END, 1)[1]
    readme.write_text(f"{head}{ZOO_TABLE_BEGIN}\n{zoo_table(weights_dir)}{ZOO_TABLE_END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
