"""Export the deterministic policy for deployment: ONNX (run it with onnxruntime) or torch.export.

    python -m ppo2.export CartPole-v1 policy.onnx          # a shipped policy
    python -m ppo2.export runs/my_run policy.onnx          # a train.py output directory

The exported graph maps a batch of raw observations to the actions the environment takes: vectors (N, d)
float32, images (N, *shape) uint8 as the env gives them. A Dict is one ONNX input per key, named by the key
(a key that is also the output's name is refused: pass another `output_name`), and one dict argument of the
torch.export program, so inputs are always matched by name, never by position.
Observation normalisation and image scaling are inside; Discrete actions are int64 indices, Box actions
the Gaussian mean clipped to the action bounds (exactly what `model.predict(obs, deterministic=True)`
returns).

A policy that masks actions takes the mask as one more input, `action_mask` (N, mask size) bool (ppo2/masks.py).
A recurrent policy takes its LSTM state and the episode starts as inputs, `state_h`, `state_c` (L, N, H) float32
and `episode_start` (N,) float32 (1 where an episode begins: the state is zeroed there), and returns the state
after as two more outputs, `next_state_h`, `next_state_c`: what `predict(obs, state, episode_start)` takes and
returns (zeros for the first step).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

from .observations import encode_obs
from .speed import Precision

__all__ = ["DeterministicPolicy", "example_inputs", "export_onnx", "export_program", "main"]


class DeterministicPolicy(nn.Module):
    """obs -> environment action, deterministic: the graph that gets exported."""

    def __init__(self, model):
        super().__init__()
        # the exported graph is the float32 reference (a model trained with the bfloat16 encoder included): a shallow
        # copy with its own precision, sharing the parameters, so the caller's model is left as it was
        model = copy.copy(model.eval())
        model.precision = Precision()
        self.model = model
        spec = model.obs_spec
        self.keys = list(spec["spaces"]) if spec["type"] == "Dict" else None
        spec = model.action_spec
        self.box = spec["type"] == "Box"
        if self.box:
            self.register_buffer("low", torch.tensor(spec["low"], dtype=torch.float32))
            self.register_buffer("high", torch.tensor(spec["high"], dtype=torch.float32))
        self.masked = bool(model.mask_size)
        self.recurrent = model.memory is not None

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor], action_mask: torch.Tensor | None = None,
                state_h: torch.Tensor | None = None, state_c: torch.Tensor | None = None,
                episode_start: torch.Tensor | None = None):
        obs = encode_obs(self.model.obs_spec, obs, check=False)  # (integer observations: one-hot in the graph)
        if self.recurrent:
            pi_latent, _, (h, c) = self.model._latents(obs, ((state_h, state_c), episode_start[None]))
            out = self.model._masked(self.model.action_head.output(pi_latent), action_mask)
            return self._clip(self.model.action_head.mode(out)), h, c
        return self._clip(self.model._mode(obs, action_mask))

    def _clip(self, action: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(action, self.high), self.low) if self.box else action


class _KeyedInputs(nn.Module):
    """The ONNX exporter's view of a Dict policy: one positional input per key, in the spec's order, each named by
    its key in the graph (`input_names`), handed to the policy as a dict."""

    def __init__(self, policy: DeterministicPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, *inputs: torch.Tensor):
        n = len(self.policy.keys) if self.policy.keys else 1
        obs, extra = inputs[:n], list(inputs[n:])
        mask = extra.pop(0) if self.policy.masked else None
        return self.policy(dict(zip(self.policy.keys, obs)) if self.policy.keys else obs[0], mask, *extra)


def example_inputs(model, batch: int = 2) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Zero observations in the dtypes the env gives (uint8 images), then an all-legal action mask and the zero LSTM
    state and episode starts where the policy takes them, and the graph's input names."""
    def zeros(spec):
        if "raw_shape" in spec:  # (a 2-D Box as the env gives it)
            return torch.zeros(batch, *spec["raw_shape"])
        if "onehot" in spec:  # (integers as the env gives them: each entry's first value)
            hot = spec["onehot"]
            return torch.tensor(hot["start"], dtype=torch.int64).reshape(hot["raw_shape"]).expand(batch, *hot["raw_shape"]).clone()
        return torch.zeros(batch, *spec["shape"], dtype=torch.uint8 if spec["type"] == "Image" else torch.float32)
    spec = model.obs_spec
    if spec["type"] == "Dict":
        inputs, names = [zeros(s) for s in spec["spaces"].values()], list(spec["spaces"])
    else:
        inputs, names = [zeros(spec)], ["obs"]
    if model.mask_size:
        inputs.append(torch.ones(batch, model.mask_size, dtype=torch.bool))
        names.append("action_mask")
    if model.memory is not None:
        h, c = model.memory.zero_state(batch, like=torch.zeros(()))
        inputs += [h, c, torch.ones(batch)]
        names += ["state_h", "state_c", "episode_start"]
    return tuple(inputs), names


def output_names(model, output_name: str = "action") -> list[str]:
    return [output_name] + (["next_state_h", "next_state_c"] if model.memory is not None else [])


def export_onnx(model, path: str | Path, opset: int = 17, output_name: str = "action") -> Path:
    """Write an ONNX file with a dynamic batch dimension; input 'obs' (one per key, named by it, for a Dict),
    output `output_name`."""
    path = Path(path)
    example, names = example_inputs(model)
    outputs = output_names(model, output_name)
    if output_name in names or output_name in outputs[1:]:
        raise ValueError(f"the observation key {output_name!r} is also the output's name, and ONNX names must be "
                         f"unique (the exporter would rename the input); pass output_name=... (--output-name) with "
                         f"another name, e.g. 'env_action'")
    path.parent.mkdir(parents=True, exist_ok=True)
    policy = _KeyedInputs(DeterministicPolicy(model.cpu()))
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter needs no extra packages (the dynamo one needs onnxscript) and handles
        # this static MLP exactly; tests check the ONNX actions against the torch model's
        warnings.simplefilter("ignore", DeprecationWarning)
        batch_axis = {n: {1: "batch"} if n.startswith(("state_", "next_state_")) else {0: "batch"}
                      for n in names + outputs}
        torch.onnx.export(policy, example, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=batch_axis, opset_version=opset, dynamo=False)
    return path


def export_program(model) -> torch.export.ExportedProgram:
    """The same policy as a `torch.export` program (dynamic batch), for torch-native deployment. Its first argument is
    the observation tensor, or for a Dict policy a dict of tensors by key (`program.module()(obs)`); then, where the
    policy takes them, `action_mask`, and `state_h`, `state_c`, `episode_start` (returning (action, h, c))."""
    policy = DeterministicPolicy(model.cpu())
    batch = torch.export.Dim("batch", min=1)
    example, names = example_inputs(model)
    n = len(policy.keys) if policy.keys else 1
    obs, extra = example[:n], list(example[n:])
    args = (dict(zip(names, obs)),) if policy.keys else (obs[0],)
    shapes: list = [{k: {0: batch} for k in names[:n]} if policy.keys else {0: batch}]
    kwargs, kw_shapes = {}, {}
    for name, value in zip(names[n:], extra):
        kwargs[name] = value
        kw_shapes[name] = {1: batch} if name.startswith("state_") else {0: batch}
    return torch.export.export(policy, args, kwargs=kwargs or None,
                               dynamic_shapes={"obs": shapes[0], **kw_shapes} if kwargs else tuple(shapes))


def main(argv: list[str] | None = None) -> int:
    from .evaluate import load_policy

    p = argparse.ArgumentParser(prog="python -m ppo2.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="zoo env id, a policy directory, or a Hub repo id")
    p.add_argument("output", help="output path: .onnx for ONNX, .pt2 for torch.export")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--output-name", default="action", help="the ONNX output's name")
    args = p.parse_args(argv)
    try:
        model = load_policy(args.source)
        if args.output.endswith(".pt2"):
            torch.export.save(export_program(model), args.output)
        else:
            export_onnx(model, args.output, opset=args.opset, output_name=args.output_name)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
