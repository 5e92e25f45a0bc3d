"""Deployment exports pick the same actions as the torch model."""
import numpy as np
import pytest
import torch

from ppo2.export import export_onnx, export_program, main
from ppo2.zoo import load_pretrained
from conftest import act

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "LunarLander-v3"])
def test_onnx_policy_matches_torch(tmp_path, env_id):
    model = load_pretrained(env_id)
    path = export_onnx(model, tmp_path / "policy.onnx")
    session = ort.InferenceSession(str(path))
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(256, model.input_dim)) * 2).astype(np.float32)
    (onnx_actions,) = session.run(None, {"obs": obs})
    torch_actions, _ = model.predict(obs, deterministic=True)
    if model.action_spec["type"] == "Box":
        np.testing.assert_allclose(onnx_actions, torch_actions, atol=1e-5)
        assert np.abs(onnx_actions).max() <= 2.0  # clipped to Pendulum's bounds
    else:
        np.testing.assert_array_equal(onnx_actions, torch_actions)
    (one,) = session.run(None, {"obs": obs[:1]})  # dynamic batch
    assert one.shape[0] == 1


def test_torch_export_program_matches(tmp_path):
    model = load_pretrained("Acrobot-v1")
    program = export_program(model)
    obs = torch.randn(64, model.input_dim)
    assert torch.equal(program.module()(obs), act(model, obs))


def test_export_cli(tmp_path, capsys):
    assert main(["CartPole-v1", str(tmp_path / "p.onnx")]) == 0
    assert (tmp_path / "p.onnx").stat().st_size > 1000
