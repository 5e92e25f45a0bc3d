"""The README's set-up is what CI runs: the same install, the exact same test command."""
import re

from conftest import REPO


def _quickstart_commands():
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_two_commands_and_ci_runs_them():
    install, test = _quickstart_commands()
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -r requirements.txt" in install and "train.py --env CartPole-v1" in install
    assert "python3 -m venv .venv" in install and "python3 -m venv .venv" in ci
    assert "requirements.txt" in ci
    assert test.strip() == ci.strip().splitlines()[-1].strip()  # exactly the README's test command


def test_requirements_pin_the_cpu_torch_wheel_while_the_package_declares_a_range():
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()
    assert "--constraint constraints.txt" in (REPO / "requirements.txt").read_text()
    assert '"torch>=2.13"' in (REPO / "pyproject.toml").read_text()


def test_readme_masking_example_runs_and_learns(tmp_path, monkeypatch):
    """The README's action-masking example, executed as written: an env of the user's own with action_masks(),
    trained by ppo2.train, never pressing a digit twice (the env would raise), and learning the order."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```python\n(class Lock.+?)\n```", text, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("import gymnasium as gym\nimport numpy as np\nimport ppo2\n" + block, namespace)
    assert namespace["model"].trainer_summary["last_eval"]["mean_reward"] >= 5.0
    assert namespace["env"].action_masks()[namespace["action"]]


def test_readme_pretrained_example_runs_for_any_zoo_id():
    """The README's first example, executed in a fresh interpreter as written but offline (the local clone) and
    headless: with `model.make_env()` it runs for an id gymnasium alone does not know (the NoVel tasks, registered by
    ppo2), not only for LunarLander, and the loop carries a recurrent policy's memory: CartPoleNoVel is balanced to
    the 500-step limit (without the state it plays memoryless and falls)."""
    import subprocess
    import sys

    text = (REPO / "README.md").read_text()
    section = text.split("## Pretrained policies", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    assert "model.make_env(" in code and "gym.make(" not in code.split("#")[0]
    code = (code.replace("torch.hub.load('andompesta/ppo2', 'ppo2',", f"torch.hub.load({str(REPO)!r}, 'ppo2', source='local',")
                .replace("pretrained='LunarLander-v3'", "pretrained='CartPoleNoVel-v1'")
                .replace('render_mode="human"', 'render_mode="rgb_array"'))
    played = "\nassert done and env.get_wrapper_attr('_elapsed_steps') == 500"  # (it keeps its memory: balances)
    out = subprocess.run([sys.executable, "-c", code + played], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
