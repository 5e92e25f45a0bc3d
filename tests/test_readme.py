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
