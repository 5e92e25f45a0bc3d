"""Hugging Face Hub: save/load round trips, a pre-filled offline cache, and a patched upload."""
import json
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from conftest import REPO, act
from ppo2 import PPO2
from ppo2.io import IntegrityError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _model():
    torch.manual_seed(0)
    model = PPO2(3, 16, gym.spaces.Box(-2, 2, (1,), np.float32), normalize_obs=True,
                 distribution=torch.distributions.Laplace)
    model.update_obs_stats(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0]), 100)
    return model


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_pretrained_round_trip_keeps_distribution_and_normaliser(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "m", env_id="Pendulum-v1")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["distribution"] == "torch.distributions.Laplace" and config["env_id"] == "Pendulum-v1"
    loaded = PPO2.from_pretrained(tmp_path / "m")
    assert loaded.action_head.dist_cls is torch.distributions.Laplace and _same(model, loaded)
    assert loaded.env_id == "Pendulum-v1"
    obs = torch.randn(4, 3)
    torch.testing.assert_close(act(loaded, obs), act(model, obs))


def test_a_local_path_is_read_as_one_and_never_sent_to_the_hub(tmp_path, monkeypatch):
    """`~` is the user's home (Python does not expand it: a shell would); a path that is not there is refused as a
    missing directory, not looked up as a Hub repo (which would fail offline with an unrelated message)."""
    import huggingface_hub

    asked = []

    def fake_download(**kwargs):
        asked.append(kwargs["repo_id"])
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("HOME", str(tmp_path))
    model = _model()
    model.save_pretrained(tmp_path / "runs" / "m", env_id="Pendulum-v1")
    assert _same(PPO2.from_pretrained("~/runs/m"), model)
    monkeypatch.chdir(tmp_path)
    for missing in ("~/runs/gone", "./gone", "../gone", "runs/Pendulum-v1__ppo__1/best", str(tmp_path / "gone"),
                    tmp_path / "gone", "runs\\gone"):
        with pytest.raises(FileNotFoundError, match="no directory .*: expected a directory holding config.json"):
            PPO2.from_pretrained(missing)
    assert asked == []
    # torch.hub.load(..., pretrained=...) takes a zoo id or a directory, the same way
    from ppo2.zoo import load_pretrained

    assert _same(load_pretrained("~/runs/m"), model)
    with pytest.raises(FileNotFoundError, match="no directory .*gone: pretrained= takes a zoo env id .*CartPole-v1"):
        load_pretrained("~/runs/gone")
    with pytest.raises(huggingface_hub.errors.LocalEntryNotFoundError):  # a repo id still goes to the Hub
        PPO2.from_pretrained("someone/ppo2-pendulum")
    assert asked == ["someone/ppo2-pendulum"]


def _fill_cache(cache, repo_id, src):
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    snap = folder / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, snap / f.name)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snap


def test_from_pretrained_reads_a_prefilled_offline_cache(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "src", env_id="Pendulum-v1")
    _fill_cache(tmp_path / "hub", "someone/ppo2-pendulum", tmp_path / "src")
    # in-process, through hf_hub_download with an explicit cache dir and revision
    loaded = PPO2.from_pretrained("someone/ppo2-pendulum", cache_dir=str(tmp_path / "hub"), revision=COMMIT,
                             local_files_only=True)
    assert _same(model, loaded)
    # and as a user would: HF_HUB_CACHE + HF_HUB_OFFLINE in the environment
    code = ("from ppo2 import PPO2; m = PPO2.from_pretrained('someone/ppo2-pendulum'); "
            "print(m.env_id, m.action_head.dist_cls.__name__)")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Pendulum-v1", "Laplace"]


def test_hub_snapshot_with_corrupt_weights_is_refused(tmp_path):
    _model().save_pretrained(tmp_path / "src")
    snap = _fill_cache(tmp_path / "hub", "someone/bad", tmp_path / "src")
    data = bytearray((snap / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (snap / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        PPO2.from_pretrained("someone/bad", cache_dir=str(tmp_path / "hub"), local_files_only=True)


@pytest.fixture
def uploads(monkeypatch):
    """Patch the two HfApi calls that touch the network; keep a copy of what would be uploaded. The fakes are
    strict: every call must bind to the real method's signature (a misspelt keyword such as commit_mesage= is a
    TypeError here, as it would be against the Hub)."""
    import inspect

    captured = {}
    real_create, real_upload = inspect.signature(HfApi.create_repo), inspect.signature(HfApi.upload_folder)

    def create_repo(self, repo_id, **kw):
        real_create.bind(self, repo_id=repo_id, **kw)
        captured["create"] = dict(repo_id=repo_id, **kw)

    def upload_folder(self, repo_id, folder_path, **kw):
        from pathlib import Path

        real_upload.bind(self, repo_id=repo_id, folder_path=folder_path, **kw)
        captured["repo_id"] = repo_id
        captured["files"] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        captured["kw"] = kw
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return captured


def test_push_to_hub_uploads_weights_card_and_metadata(tmp_path, uploads):
    from ppo2.zoo import load_pretrained

    model = load_pretrained(True)
    results = {"mean_reward": 500.0, "std_reward": 0.0, "n_episodes": 10, "seed": 0}
    replay = tmp_path / "replay.gif"
    replay.write_bytes(b"GIF89a")
    assert model.push_to_hub("me/ppo2-CartPole-v1", env_id="CartPole-v1", results=results, replay=replay) == "commit-info"
    files = uploads["files"]
    assert uploads["repo_id"] == "me/ppo2-CartPole-v1" and uploads["kw"]["repo_type"] == "model"
    assert {"model.safetensors", "config.json", "results.json", "replay.gif", "README.md"} <= set(files)
    card = ModelCard(files["README.md"].decode())
    meta = card.data.to_dict()
    assert "reinforcement-learning" in meta["tags"] and meta["library_name"] == "ppo2"
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "reinforcement-learning"
    assert result["dataset"]["name"] == "CartPole-v1"
    assert result["metrics"][0] == {"type": "mean_reward", "value": "500.00 +/- 0.00", "name": "mean_reward",
                                    "verified": False}
    # what was uploaded loads back
    up = tmp_path / "uploaded"
    up.mkdir()
    for name, data in files.items():
        (up / name).write_bytes(data)
    assert _same(model, PPO2.from_pretrained(up))


def test_upload_fake_refuses_what_the_hub_would(uploads):
    with pytest.raises(TypeError):
        HfApi().upload_folder(repo_id="me/x", folder_path=".", commit_mesage="typo")
    with pytest.raises(TypeError):
        HfApi().create_repo(repo_id="me/x", privat=True)


def test_train_py_push_to_hub(tmp_path, uploads):
    from ppo2.trainer import main

    rc = main(["--env", "CartPole-v1", "--total-timesteps", "2048", "--no-progress", "--no-tensorboard",
               "--output-dir", str(tmp_path / "run"), "--push-to-hub", "me/cartpole-run", "--no-stop-at-target"])
    assert rc == 0
    assert uploads["repo_id"] == "me/cartpole-run"
    assert {"model.safetensors", "config.json", "results.json", "replay.gif", "README.md", "train_config.json"} <= set(uploads["files"])
    assert json.loads(uploads["files"]["train_config.json"])["total_timesteps"] == 2048
    assert "model-index" in uploads["files"]["README.md"].decode()


def test_model_card_metadata_parses_as_the_hub_reads_it():
    from huggingface_hub import ModelCard

    from ppo2.hf_hub import model_card

    card = ModelCard(model_card("someone/x", "Pendulum-v1", {"mean_reward": -150.25, "std_reward": 80.5,
                                                             "n_episodes": 100, "seed": 7}))
    result = card.data.eval_results[0]
    assert (result.task_type, result.dataset_type, result.metric_type) == ("reinforcement-learning", "Pendulum-v1", "mean_reward")
    assert result.metric_value == "-150.25 +/- 80.50" and card.data.library_name == "ppo2"
    assert "Pendulum-v1" in card.data.tags and "100 deterministic episodes (seeds 7..106)" in card.text
    sampled = model_card("someone/x", "ALE/Pong-v5", {"mean_reward": 20.9, "std_reward": 0.3, "n_episodes": 100,
                                                      "seed": 0, "deterministic": False})
    assert "100 sampled-action episodes (seeds 0..99)" in sampled  # (RL-Zoo's way to play Atari: said as it was)
    assert "model.predict(obs, deterministic=False)" in sampled  # (and its usage plays that way)
    assert "model.predict(obs, deterministic=True)" in card.text


@pytest.mark.parametrize("env_id, recurrent, env_masks", [("CartPoleNoVel-v1", True, False),
                                                          ("ppo2test/MaskedChoiceMethod-v0", False, True),
                                                          ("ppo2test/MaskedChoiceMethod-v0", True, True)])
def test_model_card_usage_runs_for_recurrent_and_masked_policies(tmp_path, env_id, recurrent, env_masks):
    """The card's usage loop, executed in a fresh interpreter as a reader would run it: the env comes from the policy
    (`model.make_env()`: a NoVel id exists only once ppo2 registers it, which `gym.make` alone did not get), a
    recurrent policy's state goes round the loop, a policy that masks with the env's action_masks() gets them (the env
    raises on an illegal action)."""
    import re
    import subprocess
    import sys

    import toy_envs  # noqa: F401
    from conftest import REPO
    from ppo2 import PPO2
    from ppo2.envs import make_env
    from ppo2.hf_hub import model_card

    env = make_env(env_id)
    PPO2(observation_space=env.observation_space, action_space=env.action_space, recurrent=recurrent,
         lstm_hidden=8, action_mask=True if env_masks else "auto").save_pretrained(tmp_path / "p", env_id=env_id)
    card = model_card("you/repo", env_id, None, recurrent=recurrent, env_masks=env_masks)
    code = re.search(r"```python\n(.+?)\n```", card, flags=re.S).group(1)
    assert ("state=state" in code) == recurrent and ("action_masks=" in code) == env_masks
    assert "model.make_env()" in code and "gym.make(" not in code.replace(f'# gym.make("{env_id}")', "")
    own = "import toy_envs\n" if env_id.startswith("ppo2test/") else ""  # (the user's own env, registered by them)
    code = own + code.replace('"you/repo"', repr(str(tmp_path / "p"))) + "\nassert done"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO / "tests")})
    assert out.returncode == 0, out.stderr[-2000:]


def test_evaluate_plays_as_the_policy_was_recorded(tmp_path, capsys):
    """`python -m ppo2.evaluate` played the most likely action unless told --stochastic, so a policy published with
    sampled-action scores (RL-Zoo's Atari protocol, ppo2's Atari entries and runs trained so) scored another number
    than its own: it now plays as the evaluation recorded beside its weights did (results.json: a run directory, a
    saved policy, a Hub repo; a zoo entry's eval), and as told where told."""
    from ppo2.evaluate import evaluate_policy, main as evaluate_main

    torch.manual_seed(0)
    model = PPO2(4, 16, 2)  # untrained: sampled and most-likely play score differently
    scores = {d: evaluate_policy(model, "CartPole-v1", 5, deterministic=d)["mean_reward"] for d in (True, False)}
    assert scores[True] != scores[False]
    model.save_pretrained(tmp_path / "sampled", env_id="CartPole-v1", results={"deterministic": False})
    model.save_pretrained(tmp_path / "plain", env_id="CartPole-v1")

    def evaluate(*argv):
        assert evaluate_main([*map(str, argv), "-n", "5"]) == 0
        return capsys.readouterr().out

    out = evaluate(tmp_path / "sampled")
    assert f"{scores[False]:.2f} +/- " in out and "(seed 0, stochastic, as recorded)" in out
    assert f"{scores[True]:.2f} +/- " in evaluate(tmp_path / "sampled", "--deterministic")
    out = evaluate(tmp_path / "plain")
    assert f"{scores[True]:.2f} +/- " in out and "(seed 0, deterministic)" in out
    assert f"{scores[False]:.2f} +/- " in evaluate(tmp_path / "plain", "--stochastic")
    assert "deterministic, as recorded)" in evaluate("CartPole-v1")  # (the classic-control entries: most likely)
    # a Hub repo's results.json, read through the offline cache as a user's HF_HUB_CACHE holds it
    _fill_cache(tmp_path / "hub", "someone/sampled", tmp_path / "sampled")
    _fill_cache(tmp_path / "hub", "someone/plain", tmp_path / "plain")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    for repo, said in (("someone/sampled", f"{scores[False]:.2f} +/- "), ("someone/plain", "(seed 0, deterministic)")):
        out = subprocess.run([sys.executable, "-m", "ppo2.evaluate", repo, "-n", "5"], cwd=REPO, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0 and said in out.stdout, out.stdout + out.stderr
    # an untrusted value is refused, naming what was expected
    (tmp_path / "sampled" / "results.json").write_text(json.dumps({"deterministic": "no"}))
    assert evaluate_main([str(tmp_path / "sampled")]) == 2
    assert "'deterministic' should be true or false, got 'no'" in capsys.readouterr().err
