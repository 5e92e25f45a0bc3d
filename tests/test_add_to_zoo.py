"""scripts/add_to_zoo.py end to end, on the path the Atari entries take: a two-update PongNoFrameskip-v4 run added to
a temporary zoo, then found, loaded and checked as the shipped zoo is (tests/test_zoo.py)."""
import importlib.util
import json
import subprocess
import sys

import pytest

pytest.importorskip("ale_py")

from conftest import REPO  # noqa: E402
from ppo2 import PPO2  # noqa: E402
from ppo2.evaluate import evaluate_policy  # noqa: E402
from ppo2.io import sha256_file  # noqa: E402
from ppo2.zoo import load_pretrained, load_zoo, zoo_entry, zoo_table  # noqa: E402

COMMAND = ("python train.py --env PongNoFrameskip-v4 --seed 3 --num-envs 2 --num-steps 32 --num-minibatches 2 "
           "--update-epochs 1 --total-timesteps 128 --eval-interval 2 --eval-episodes 2 --processes 1")


def _add_to_zoo():
    spec = importlib.util.spec_from_file_location("add_to_zoo", REPO / "scripts" / "add_to_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory):
    """A finished two-update Pong run, as train.py leaves it (learning curve drawn); its provenance marked clean, as
    a run from a clean checkout records it (this test may run in a working tree with changes)."""
    out = tmp_path_factory.mktemp("zoo") / "run"
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *COMMAND.split()[2:], "--output-dir", str(out),
                           "--no-progress", "--no-tensorboard"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    summary["provenance"].update(commit="c" * 40, dirty=False)
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def _run_script(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["add_to_zoo.py", *map(str, argv)])
    return _add_to_zoo().main()


@pytest.mark.xdist_group("pong_run")  # (one worker trains the module's Pong run for both)
def test_an_atari_run_becomes_an_entry_that_loads_and_replays(pong_run, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    readme = (REPO / "README.md").read_bytes()
    assert _run_script(monkeypatch, pong_run, "--command", COMMAND, "--trained-on", "a test", "--episodes", 3,
                       "--check-episodes", 2, "--fresh-episodes", 2, "--weights-dir", weights) == 0
    assert (REPO / "README.md").read_bytes() == readme  # (the README shows the shipped zoo only)
    entry = load_zoo(weights)["PongNoFrameskip-v4"]  # (load_zoo checks the index's hashes against the files)
    files = weights / "PongNoFrameskip-v4"
    assert entry["sha256"] == {name: sha256_file(files / name) for name in ("model.safetensors", "config.json")}
    assert entry["sha256"]["model.safetensors"] == sha256_file(pong_run / "best" / "model.safetensors")
    assert (files / "replay.gif").read_bytes()[:6] == b"GIF89a"
    assert (files / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert entry["commit"] == "c" * 40 and entry["trained_on"] == "a test" and entry["command"] == COMMAND
    assert "output_dir" not in entry["train_config"] and entry["train_config"]["env_id"] == "PongNoFrameskip-v4"
    assert entry["run_steps"] == 128 and entry["rl_zoo_ppo"] == "20.99 (RL-Zoo3)"
    # the recorded evaluations are the ones their commands play again: 3 episodes from seed 0, the 2 CI replays
    policy = PPO2.from_pretrained(files)
    for key, n in (("eval", 3), ("eval_check", 2)):
        recorded, again = entry[key], evaluate_policy(policy, "PongNoFrameskip-v4", n_episodes=n, seed=0)
        assert recorded["n_episodes"] == n and recorded["seeds"] == f"0..{n - 1}" and recorded["deterministic"]
        assert (recorded["mean_reward"], recorded["std_reward"]) == (again["mean_reward"], again["std_reward"])
        assert recorded["command"] == f"python -m ppo2.evaluate PongNoFrameskip-v4 -n {n} --seed 0"
    assert entry["eval_fresh"]["n_episodes"] == 2 and entry["eval_fresh"]["seeds"] == "2000000..2000001"
    assert "over 2 fresh episodes" in capsys.readouterr().out
    # (a pixel entry's fresh set is 200 episodes unless told: 1,000 Atari games would take hours)
    assert _add_to_zoo().default_fresh_episodes(policy) == 200
    # a user's short name finds it; the table shows it
    assert zoo_entry("Pong", weights)["env_id"] == "PongNoFrameskip-v4"
    assert load_pretrained("Pong", weights_dir=weights).env_id == "PongNoFrameskip-v4"
    assert "| PongNoFrameskip-v4 | " in zoo_table(weights) and "(2 episodes)" in zoo_table(weights)


@pytest.mark.xdist_group("pong_run")  # (one worker trains the module's Pong run for both)
def test_a_run_from_a_changed_checkout_or_a_command_that_differs_is_refused(pong_run, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    with pytest.raises(SystemExit, match="processes 0 where the run had 1"):  # (one rank per core, by default)
        _run_script(monkeypatch, pong_run, "--command", COMMAND.replace(" --processes 1", ""), "--trained-on", "x",
                    "--episodes", 1, "--fresh-episodes", 1, "--weights-dir", weights)
    summary = json.loads((pong_run / "summary.json").read_text())
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    for name in ("best", "train_config.json", "metrics.csv"):
        (dirty / name).symlink_to(pong_run / name)
    summary["provenance"]["dirty"] = True
    (dirty / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="clean, committed checkout"):
        _run_script(monkeypatch, dirty, "--command", COMMAND, "--trained-on", "x", "--weights-dir", weights)
    # a run resumed on other code or with other ranks: its command and commit would not reproduce it
    assert [s["from_update"] for s in summary["segments"]] == [0] and summary["segments"][0]["world_size"] == 1
    first = {**summary["segments"][0], "commit": "c" * 40, "dirty": False}
    summary["provenance"]["dirty"] = False
    summary["segments"] = [first, {**first, "from_update": 1, "commit": "d" * 40, "world_size": 2}]
    (dirty / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match=r"resumed with world_size 1 -> 2 at update 1; commit 'c{40}' -> 'd{40}' at upd"):
        _run_script(monkeypatch, dirty, "--command", COMMAND, "--trained-on", "x", "--weights-dir", weights)
    # a run begun before runs recorded their segments (ppo2.trainer._earlier_segments) and resumed since
    summary["segments"] = [{"from_update": 0, "world_size": 1, "commit": None}, {**first, "from_update": 1}]
    (dirty / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match=r"resumed with code and platform unknown for updates 0\.\.0 \(trained before"):
        _run_script(monkeypatch, dirty, "--command", COMMAND, "--trained-on", "x", "--weights-dir", weights)
    # a run on an env made with constructor arguments: the zoo's id would name another env
    summary["segments"] = [first]
    (dirty / "summary.json").write_text(json.dumps(summary))
    config = json.loads((pong_run / "train_config.json").read_text())
    (dirty / "train_config.json").unlink()
    (dirty / "train_config.json").write_text(json.dumps({**config, "env_kwargs": {"full_action_space": True}}))
    with pytest.raises(SystemExit, match=r"made with \{'full_action_space': True\}: the zoo names a policy by its env id"):
        _run_script(monkeypatch, dirty, "--command", COMMAND, "--trained-on", "x", "--weights-dir", weights)
    assert not weights.exists()  # nothing written by a refused run
