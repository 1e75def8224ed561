"""Export a policy's WHOLE sampler (normalize -> all denoising steps -> unnormalize) as one ONNX graph.

Why one graph: per-step Python round trips cost more than the small denoiser itself on a 2-core CPU, and one
graph lets ONNX Runtime fold the per-step constants (timestep tokens, scheduler coefficients) and reuse the
cond memory computed once. Noise is a graph input, so the graph is deterministic and testable against torch.

Files written for `export_onnx(policy, config, "policy.onnx", warm_steps=(2, 3))`:
  policy.onnx        full sampler   inputs obs_history, goal_history, noise          outputs actions, clean
  policy.warm2.onnx  warm start, 2  inputs obs_history, goal_history, prev_clean, noise
  policy.warm3.onnx  warm start, 3  ...
A BCPolicy exports one graph with inputs obs_history, goal_history only. Every file embeds the same metadata
(model_file.build_metadata) plus a 'graph' entry saying which sampler it holds.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from diffuseloco_policy.config import StackConfig
from .diffusion.policy import BCPolicy, DiffusionPolicy, Policy
from diffuseloco_policy.model_file import (INPUT_GOAL, INPUT_NOISE, INPUT_OBS, INPUT_PREV, OUTPUT_ACTIONS,
                                           OUTPUT_CLEAN, build_metadata, warm_path)

OPSET = 17


class BakedTimeTable(nn.Module):
    """A policy's time table (timestep-token keys/values per step and layer) frozen as one buffer, so the traced
    graph holds it as one constant (initializer `time.table`, (steps, layers, 2, heads, 1 + 2 To, head_dim))
    instead of re-running the cond encoder on the timestep every call. Older files (the shipped default among them) hold
    one constant per step and layer instead (`time.k_<step>_<layer>`, `time.v_<step>_<layer>`)."""

    def __init__(self, policy: DiffusionPolicy, indices: list[int]) -> None:
        super().__init__()
        with torch.no_grad():
            self.register_buffer("table", policy.time_table(indices).detach().clone())

    def get(self) -> torch.Tensor:
        return self.table


class FullSampler(nn.Module):
    """Traceable wrapper: (obs, goal, noise) -> (actions, clean)."""

    def __init__(self, policy: DiffusionPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.time = BakedTimeTable(policy, policy.full_indices())

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy.sample(obs, goal, noise, time=self.time.get())


class WarmSampler(nn.Module):
    """Traceable wrapper: (obs, goal, prev_clean, noise) -> (actions, clean) with a fixed number of steps."""

    def __init__(self, policy: DiffusionPolicy, steps: int) -> None:
        super().__init__()
        self.policy, self.steps = policy, steps
        self.time = BakedTimeTable(policy, policy.warm_indices(steps))

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, prev_clean: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy.sample_warm(obs, goal, prev_clean, noise, steps=self.steps, time=self.time.get())


class DeterministicSampler(nn.Module):
    """Traceable wrapper for the BC baseline: (obs, goal) -> (actions, clean)."""

    def __init__(self, policy: BCPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy.sample(obs, goal)



def _export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], path: Path,
                  metadata: dict[str, str], verify: bool) -> Path:
    import onnx

    module.eval()  # torch.onnx.export restores the module's mode afterwards: a fresh wrapper would be training
    outputs = [OUTPUT_ACTIONS, OUTPUT_CLEAN]
    dynamic = {n: {0: "batch"} for n in names + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in the unrolled loop are expected
        torch.onnx.export(module, args, str(path), input_names=names, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    if verify:
        verify_graph(module, names, path)
    return path


def verify_graph(module: nn.Module, names: list[str], path: Path, batch: int = 2, tol: float = 1e-4) -> None:
    """Run the written graph once on random inputs and compare with torch: catches export bugs at export time
    rather than on the robot."""
    import onnxruntime as ort

    module.eval()
    g = torch.Generator().manual_seed(0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: [batch] + list(i.shape[1:]) for i in session.get_inputs()}
    args = [torch.randn(shapes[n], generator=g) for n in names]
    if INPUT_PREV in names:  # a clean chunk lives in [-1, 1]
        i = names.index(INPUT_PREV)
        args[i] = args[i].clamp(-1, 1)
    with torch.no_grad():
        expected = [t.numpy() for t in module(*args)]
    got = session.run([OUTPUT_ACTIONS, OUTPUT_CLEAN], {n: a.numpy() for n, a in zip(names, args)})
    err = max(float(abs(a - b).max()) for a, b in zip(got, expected))
    if not err <= tol:
        raise RuntimeError(f"{path}: ONNX graph differs from torch by {err:.2e} (> {tol:.0e}); export is broken")


def export_onnx(policy: Policy, config: StackConfig, path: Union[str, Path], warm_steps: Sequence[int] = (),
                batch: int = 1, verify: bool = True) -> list[Path]:
    """Write the full-sampler graph to `path` and one warm-start graph per entry of `warm_steps` (the batch
    axis stays dynamic). With `verify`, each graph is run once in ONNX Runtime and compared with torch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = policy.training
    policy.eval()
    d = policy.dims
    obs, goal = torch.zeros(batch, d.history, d.obs_dim), torch.zeros(batch, d.history, d.goal_dim)
    written: list[Path] = []
    try:
        with torch.no_grad():
            if isinstance(policy, BCPolicy):
                meta = build_metadata(policy, config, _graph_info("bc", 0, [INPUT_OBS, INPUT_GOAL]))
                return [_export_graph(DeterministicSampler(policy), (obs, goal), [INPUT_OBS, INPUT_GOAL], path, meta,
                                      verify)]
            names = [INPUT_OBS, INPUT_GOAL, INPUT_NOISE]
            noise = torch.zeros(policy.noise_shape(batch))
            meta = build_metadata(policy, config, _graph_info("full", policy.num_steps, names))
            written.append(_export_graph(FullSampler(policy), (obs, goal, noise), names, path, meta, verify))
            for k in warm_steps:
                names = [INPUT_OBS, INPUT_GOAL, INPUT_PREV, INPUT_NOISE]
                noise = torch.zeros(policy.noise_shape(batch, k))
                prev = torch.zeros(batch, d.horizon, d.action_dim)
                meta = build_metadata(policy, config, _graph_info("warm", k, names))
                written.append(_export_graph(WarmSampler(policy, k), (obs, goal, prev, noise), names,
                                             warm_path(path, k), meta, verify))
    finally:
        policy.train(was_training)
    return written


def _graph_info(sampler: str, steps: int, inputs: list[str]) -> dict[str, Any]:
    return {"sampler": sampler, "steps": steps, "inputs": inputs, "outputs": [OUTPUT_ACTIONS, OUTPUT_CLEAN],
            "noise": "(batch, steps + 1, horizon, action_dim); [:, 0] starts the chain, [:, j + 1] is step j's"}
