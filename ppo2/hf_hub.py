"""Saving, loading and sharing policies: local directories and the Hugging Face Hub.

A saved policy is a directory (or Hub repo) holding

    model.safetensors   the state dict (weights and observation-normaliser buffers)
    config.json         PPO2 constructor arguments + `weights_sha256` (+ env_id when known, and the env's
                        constructor arguments, env_kwargs, where it was trained with some)
    results.json        evaluation: mean/std return, episodes, seeds  (optional)
    replay.gif          a rendered episode                                 (optional)
    README.md           model card with the Hub's reinforcement-learning model-index metadata

`from_pretrained` checks model.safetensors against config.json's sha256 before deserialising it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ._version import __version__
from .env_ids import is_atari
from .env_kwargs import env_kwargs_text, frame_options, policy_env_kwargs, validate_env_kwargs
from .io import IntegrityError, atomic_write_json, read_json, read_safetensors_header, read_verified_bytes, save_tensors

__all__ = ["save_pretrained", "publish_pretrained", "from_pretrained", "push_to_hub", "model_card", "build_model"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
RESULTS_NAME = "results.json"
META_KEYS = ("model_type", "ppo2_version", "weights_sha256", "env_id", "env_kwargs")


def save_pretrained(model, save_directory: str | os.PathLike, env_id: str | None = None,
                    results: dict | None = None, replay: str | os.PathLike | None = None,
                    env_kwargs: dict | None = None) -> Path:
    """Write the policy to `save_directory` (created if needed); returns the directory. `env_id` and `env_kwargs`
    (the env's constructor arguments): the policy's own (`model.env_id`, `model.env_kwargs`, set by the trainer)
    unless given; another env than the policy's own is recorded without the policy's arguments."""
    env_id, env_kwargs = recorded_env(model, env_id, env_kwargs)
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    config = model.get_config()
    digest = save_tensors(out / WEIGHTS_NAME, model.state_dict(), metadata={"format": "pt"})
    meta = {"model_type": "ppo2", "ppo2_version": __version__, "weights_sha256": digest}
    if env_id:
        meta["env_id"] = env_id
    if env_id and env_kwargs:
        meta["env_kwargs"] = env_kwargs
    atomic_write_json(out / CONFIG_NAME, {**meta, **config})
    if results is not None:
        atomic_write_json(out / RESULTS_NAME, results)
    if replay is not None and Path(replay).resolve() != (out / Path(replay).name).resolve():
        shutil.copyfile(replay, out / Path(replay).name)
    return out


def recorded_env(model, env_id: str | None = None, env_kwargs: dict | None = None) -> tuple[str | None, dict]:
    """(env id, constructor arguments) to record with `model`: those given, else the model's own; the model's
    arguments go only with the model's own env."""
    env_id = env_id or getattr(model, "env_id", None)
    return env_id, policy_env_kwargs(model, env_id, env_kwargs)


def publish_pretrained(model, directory: str | os.PathLike, keep: int = 3, **kwargs) -> Path:
    """`save_pretrained` into `directory` as one atomic step, for a directory that readers may load at any moment
    (a run's best/ while it trains). The policy is written complete into a new hidden sibling, `.NAME-<k>`, and
    `directory` is a symbolic link that `os.replace` turns to it at once: a reader that resolves the link once
    (`from_pretrained` does) reads one version's config and weights, never a mix. The newest `keep` versions stay,
    so a reader that resolved the link a moment ago still finds its files. Without symbolic links (some Windows
    setups) the old directory is swapped out by renames: a reader may then miss the directory for a moment, but
    still never sees a mix."""
    target = Path(directory)
    parent, name = target.parent, target.name
    parent.mkdir(parents=True, exist_ok=True)
    versions = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in parent.glob(f".{name}-*")
                      if p.name.rsplit("-", 1)[1].isdigit())
    k = versions[-1][0] + 1 if versions else 1
    stage = parent / f".{name}-{k}"
    shutil.rmtree(stage, ignore_errors=True)
    save_pretrained(model, stage, **kwargs)
    link = parent / f".{name}.link-{k}"
    try:
        link.unlink(missing_ok=True)
        os.symlink(stage.name, link, target_is_directory=True)
    except OSError:  # no symbolic links here: rename the old directory away, the new one into place
        old = parent / f".{name}.old-{k}"
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        os.replace(stage, target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        return target
    if target.is_dir() and not target.is_symlink():  # a real directory from an earlier version of ppo2
        old = parent / f".{name}.old-{k}"
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(link, target)
    for _, stale in versions[:max(0, len(versions) + 1 - keep)]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def split_config(config: dict) -> tuple[dict, dict]:
    """(metadata, constructor kwargs) of a config.json."""
    if not isinstance(config, dict):
        raise IntegrityError(f"config.json must hold a JSON object, got {type(config).__name__}")
    meta = {k: config[k] for k in META_KEYS if k in config}
    return meta, {k: v for k, v in config.items() if k not in META_KEYS}


def build_model(model_cls, config_path: Path, weights_path: Path, weights_sha256: str | None = None,
                config_sha256: str | None = None, map_location: str | torch.device = "cpu",
                policy_net=None, value_net=None, encoder=None):
    """Rebuild a `model_cls` (PPO2) from config.json + model.safetensors, verifying hashes before
    deserialising. (The class comes in as an argument: this module never imports the model.)"""
    from safetensors.torch import load as st_load

    from .validation import check_state, validate_config

    PPO2 = model_cls
    meta, kwargs = split_config(read_json(config_path, expected_sha256=config_sha256))
    try:
        kwargs = validate_config(kwargs)
    except ValueError as exc:
        raise IntegrityError(f"{config_path}: {exc}") from None
    if "env_id" in meta and not isinstance(meta["env_id"], str):
        raise IntegrityError(f"{config_path}: 'env_id' must be a string, got {meta['env_id']!r}")
    if "env_kwargs" in meta and "env_id" not in meta:
        raise IntegrityError(f"{config_path}: 'env_kwargs' without the 'env_id' they are for")
    try:
        env_kwargs = validate_env_kwargs(meta.get("env_kwargs", {}), meta.get("env_id"), "'env_kwargs'")
    except ValueError as exc:
        raise IntegrityError(f"{config_path}: {exc}") from None
    expected = weights_sha256 or meta.get("weights_sha256")
    if expected is None:
        raise IntegrityError(f"{config_path} records no weights_sha256; refusing to load unverified weights")
    data = read_verified_bytes(weights_path, expected)
    header = read_safetensors_header(data, str(weights_path))
    # The architecture the config describes is built on the meta device (no memory) and compared with the
    # tensors the file holds, so a config that names huge sizes is refused before anything is allocated.
    own = policy_net is not None or encoder is not None
    with torch.device("cpu" if own else "meta"):  # (a user's own network runs on its device)
        skeleton = PPO2.from_config(kwargs, policy_net=policy_net, value_net=value_net, encoder=encoder)
    wanted = {k: (_ST_DTYPES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in skeleton.state_dict().items()}
    if wanted != header:
        diff = sorted(k for k in wanted.keys() | header.keys() if wanted.get(k) != header.get(k))
        raise IntegrityError(
            f"{weights_path} does not match {config_path}: " + "; ".join(
                f"{k}: config expects {wanted.get(k, 'nothing')}, file has {header.get(k, 'nothing')}" for k in diff[:5]))
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises several types
        raise IntegrityError(f"{weights_path}: not a valid safetensors file ({exc})") from exc
    model = PPO2.from_config(kwargs, policy_net=policy_net, value_net=value_net, encoder=encoder)
    model.load_state_dict(state)
    try:
        check_state(model)
    except ValueError as exc:
        raise IntegrityError(f"{weights_path}: {exc}") from None
    model.env_id, model.env_kwargs = meta.get("env_id"), env_kwargs
    return model.to(map_location).eval()


_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def from_pretrained(model_cls, repo_id_or_path: str | os.PathLike, revision: str | None = None,
                    cache_dir: str | None = None, token: str | bool | None = None, local_files_only: bool = False,
                    map_location: str | torch.device = "cpu", policy_net=None, value_net=None, encoder=None):
    """Load a `model_cls` policy (PPO2.from_pretrained) from a local directory or a Hugging Face Hub repo id.

    Hub downloads go through `huggingface_hub.hf_hub_download` (so HF_HUB_CACHE, HF_HUB_OFFLINE, tokens
    and revisions behave as everywhere else in the Hub ecosystem)."""
    path = Path(repo_id_or_path).expanduser()
    if path.is_dir():
        # The path is resolved once per attempt: a directory that publish_pretrained swaps in is read as one version.
        # If that version is pruned while it is read (a writer publishing faster than this reader reads), the files
        # vanish rather than change, and the newest version is read instead.
        for attempt in range(5):
            real = path.resolve()
            try:
                return build_model(model_cls, real / CONFIG_NAME, real / WEIGHTS_NAME, map_location=map_location,
                                   policy_net=policy_net, value_net=value_net, encoder=encoder)
            except FileNotFoundError:
                if real == path.absolute() or attempt == 4 or real.exists():
                    raise
    if path.exists():
        raise ValueError(f"{path} is a file; expected a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}, "
                         "or a Hub repo id such as 'org/ppo2-CartPole-v1'")
    if names_a_local_path(repo_id_or_path):  # (not something the Hub would be asked for)
        raise FileNotFoundError(f"no directory {path}: expected a directory holding {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}, or a Hub repo id such as 'org/ppo2-CartPole-v1'")
    from huggingface_hub import hf_hub_download

    kwargs = dict(repo_id=str(repo_id_or_path), revision=revision, cache_dir=cache_dir, token=token,
                  local_files_only=local_files_only)
    config_path = hf_hub_download(filename=CONFIG_NAME, **kwargs)
    weights_path = hf_hub_download(filename=WEIGHTS_NAME, **kwargs)
    return build_model(model_cls, Path(config_path), Path(weights_path), map_location=map_location,
                       policy_net=policy_net, value_net=value_net, encoder=encoder)


def names_a_local_path(source: str | os.PathLike) -> bool:
    """Whether `source` can only be a local path: a PathLike, or a string a Hub repo id ('name' or 'org/name')
    cannot be: absolute, starting with ~ or ., with a backslash, or more than one /."""
    if not isinstance(source, str):
        return True
    return (source.startswith(("/", "~", ".")) or "\\" in source or source.count("/") > 1
            or Path(source).is_absolute())


def model_card(repo_id: str, env_id: str, results: dict | None, train_config: dict | None = None,
               replay_name: str | None = None, recurrent: bool = False, env_masks: bool = False,
               env_kwargs: dict | None = None) -> str:
    """A Hub model card whose YAML carries the reinforcement-learning `model-index` metadata (written by
    huggingface_hub's ModelCardData/EvalResult, so the Hub's leaderboards parse it). Its usage loop carries a
    recurrent policy's state and passes the env's `action_masks()` to a policy that takes them."""
    from huggingface_hub import EvalResult, ModelCardData

    score = f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}" if results is not None else None
    evals = [EvalResult(task_type="reinforcement-learning", task_name="reinforcement-learning", dataset_type=env_id,
                        dataset_name=env_id, metric_type="mean_reward", metric_name="mean_reward", metric_value=score,
                        verified=False)] if score is not None else None
    data = ModelCardData(library_name="ppo2", model_name="PPO2", eval_results=evals,
                         tags=["reinforcement-learning", "deep-reinforcement-learning", env_id, "ppo2", "ppo"])
    lines = ["---", data.to_yaml(), "---"]
    body = [
        f"# PPO2 agent playing {env_id}",
        "",
        f"A [ppo2](https://github.com/andompesta/ppo2) policy trained on `{env_id}` with Proximal Policy Optimization.",
        "",
    ]
    if replay_name:
        body += [f"![replay]({replay_name})", ""]
    if results is not None:
        body += ["## Evaluation", "",
                 f"Mean return **{score}** over {results['n_episodes']} "
                 f"{'deterministic' if results.get('deterministic', True) else 'sampled-action'} episodes "
                 f"(seeds {results.get('seed', 0)}..{results.get('seed', 0) + results['n_episodes'] - 1}).", ""]
    atari, own_module = is_atari(env_id), ":" in env_id
    options = frame_options(env_kwargs, env_id)  # (ppo2's wrappers, not the constructor's arguments)
    args = env_kwargs_text({k: v for k, v in (env_kwargs or {}).items() if k not in options})
    wrapped = f", wrapped as ppo2.obs_wrappers does ({env_kwargs_text(options)[2:]})" if options else ""
    body += [
        "## Usage", "",
        "```python",
        *((["from ppo2.envs import make_env"] if options else ["import gymnasium as gym"]) if own_module else []),
        "from ppo2 import PPO2",
        "",
        f'model = PPO2.from_pretrained("{repo_id}")',
        f'env = make_env("{env_id}"{env_kwargs_text(env_kwargs)})  # (ppo2.envs.make_env: imports '
        f'{env_id.partition(":")[0]}, your env\'s module{wrapped})' if own_module and options
        else f'env = gym.make("{env_id}"{args})  # (imports {env_id.partition(":")[0]}, your env\'s module)' if own_module
        else "env = model.make_env()  # the game's frames as the policy saw them: 84x84 gray, 4 stacked" if atari
        else f'env = model.make_env()  # gym.make("{env_id}"{args}){wrapped}',
        "obs, _ = env.reset(seed=0)",
        "done = False",
    ]
    masks = ", action_masks=env.get_wrapper_attr(\"action_masks\")()" if env_masks else ""
    # (the usage plays as the evaluation above did: an Atari policy's score is of sampled actions, as RL-Zoo's)
    deterministic = "True" if results is None or results.get("deterministic", True) else "False"
    if recurrent:  # stable-baselines3's RecurrentPPO contract: the LSTM state in and out, zeroed at episode starts
        body += ["state, start = None, True", "while not done:",
                 f"    action, state = model.predict(obs, state=state, episode_start=[start], "
                 f"deterministic={deterministic}{masks})",
                 "    start = False"]
    else:
        body += ["while not done:", f"    action, _ = model.predict(obs, deterministic={deterministic}{masks})"]
    body += [
        "    obs, reward, terminated, truncated, _ = env.step(action)",
        "    done = terminated or truncated",
        "```", "",
    ]
    if train_config:
        body += ["## Training configuration", "", "```json", json.dumps(train_config, indent=2), "```", ""]
    return "\n".join(lines) + "\n\n" + "\n".join(body)


def push_to_hub(model, repo_id: str, env_id: str | None = None, results: dict | None = None,
                replay: str | os.PathLike | None = None, train_config: dict | None = None,
                commit_message: str = "Upload PPO2 policy", private: bool | None = None,
                token: str | None = None, revision: str | None = None):
    """Upload the policy (weights, config, results, replay, model card) to a Hub model repo."""
    from huggingface_hub import HfApi

    env_id, env_kwargs = recorded_env(model, env_id)
    if not env_id:
        raise ValueError("push_to_hub needs env_id (the environment the policy plays) for the model card")
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, tmp, env_id=env_id, results=results, replay=replay, env_kwargs=env_kwargs)
        replay_name = Path(replay).name if replay is not None else None
        mask_config = getattr(model, "mask_config", None)
        card = model_card(repo_id, env_id, results, train_config, replay_name,
                          recurrent=getattr(model, "memory", None) is not None,
                          env_masks=mask_config is not None and mask_config.applied and mask_config.source == "method",
                          env_kwargs=env_kwargs)
        (folder / "README.md").write_text(card)
        if train_config is not None:
            atomic_write_json(folder / "train_config.json", train_config)
        api = HfApi(token=token)
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message=commit_message, revision=revision)
