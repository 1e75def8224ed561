"""Recover a trainable torch policy from an exported ONNX model file, so a shipped model can be fine-tuned.

    python -m diffuseloco_learning.training.from_onnx --model models/diffuseloco_cyberdog2.onnx --out out/default.safetensors
    # then: init_from: out/default.safetensors in a training config (or the .onnx itself)

Why: a model file is often all that is left of a training run (the shipped default's checkpoint is gone), and
the next stage of training should start from it, not from scratch. Everything the torch policy holds is in the
file, but not always under its own name:
- most weights are initializers named after their state-dict key (`policy.<key>`);
- a Linear applied to (B, T, W) activations exports as MatMul with an anonymous, transposed weight, followed by
  an Add of its named bias: the bias names the weight; the causal self-attention's query/key/value Linear
  (graphs with a `time.table`) is the transposed weight input of a fused Attention node beside its named bias;
- the condition tokens' position embedding is folded into one anonymous constant (slots 1..2 To);
- the exporter bakes the timestep token's keys/values per denoising step into `time.k_<step>_<layer>` /
  `time.v_<step>_<layer>`, which folds away slot 0 of the position embedding. It is the one 'width' vector that
  makes the cond encoder reproduce every baked entry, so it is fitted (L-BFGS in float64) to them.
The recovered policy is then run against every graph of the file (full sampler and warm starts) on random inputs
and refused unless it matches to 1e-4, the exporter's own tolerance: a recovery that is not exact fails loudly
instead of fine-tuning a different model.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..diffusion.policy import DiffusionPolicy, Policy, build_policy
from ..diffusion.transformer import timestep_embedding
from ..export import DeterministicSampler, FullSampler, WarmSampler, verify_graph
from diffuseloco_policy.model_file import INPUT_GOAL, INPUT_NOISE, INPUT_OBS, INPUT_PREV, warm_graphs
from diffuseloco_policy.model_file import ModelInfo, ModelMismatchError, load_onnx
from diffuseloco_learning.model_checkpoint import load_checkpoint, save_checkpoint
from .checkpoint import ema_weights_path

WEIGHT_PREFIX = "policy."
TIME_PREFIX = "time."
COND_POS = "denoiser.cond_pos_emb"


def recover_policy(path: Union[str, Path], verify: bool = True) -> tuple[Policy, ModelInfo]:
    """The torch policy an exported file computes (eval mode), and the file's metadata."""
    path = Path(path)
    model, info = load_onnx(path)
    policy = build_policy(info.config, info.spec, info.normalizer)
    initializers, graph = _initializers(model), GraphIndex.of(model)
    state = policy.state_dict()
    recovered = _named_weights(initializers, state)
    recovered.update(_matmul_weights(graph, initializers, state))
    if isinstance(policy, DiffusionPolicy):
        recovered[COND_POS] = _cond_position_tokens(graph, initializers, state[COND_POS])
    recovered.update({k: v for k, v in state.items() if k not in recovered and _from_metadata(k)})
    missing = sorted(set(state) - set(recovered))
    if missing:
        raise ModelMismatchError(f"{path}: cannot find {missing} in the graph; it was not written by this exporter")
    policy.load_state_dict(recovered)
    policy.eval()
    if isinstance(policy, DiffusionPolicy):
        _fit_time_position(policy, _baked_time_table(initializers, policy))
    if verify:
        _verify_against_file(policy, path)
    return policy, info


def read_policy(path: Union[str, Path]) -> tuple[Policy, ModelInfo]:
    """A policy from any model file: an exported .onnx (recovered and checked), a .safetensors model file, or
    a checkpoint directory (its EMA weights)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return recover_policy(path)
    return load_checkpoint(ema_weights_path(path))


def _initializers(model: Any) -> dict[str, torch.Tensor]:
    from onnx import numpy_helper

    return {i.name: torch.from_numpy(np.array(numpy_helper.to_array(i))) for i in model.graph.initializer}


def _from_metadata(key: str) -> bool:
    """Normalizer bounds that no graph reads (only scale and offset are used): build_policy took them from the
    file's metadata already."""
    return key.endswith(".input_min") or key.endswith(".input_max")


def _named_weights(initializers: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in initializers.items():
        key = name[len(WEIGHT_PREFIX):]
        if name.startswith(WEIGHT_PREFIX) and key in state:
            _check_shape(key, value, state[key])
            out[key] = value
    return out


@dataclass(frozen=True)
class GraphIndex:
    """Which nodes read each tensor, and which op type wrote it: the two ways the recovery walks the graph."""

    consumers: dict[str, list[Any]]
    producer_op: dict[str, str]

    @classmethod
    def of(cls, model: Any) -> "GraphIndex":
        consumers: dict[str, list[Any]] = {}
        for node in model.graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        return cls(consumers, {out: node.op_type for node in model.graph.node for out in node.output})


def _matmul_weights(graph: GraphIndex, initializers: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                    ) -> dict[str, torch.Tensor]:
    """Anonymous MatMul weights, named by the bias their product is added to (and transposed back); the same
    for the weight of a fused Attention node, named by its bias input."""
    consumers, out = graph.consumers, {}
    for name, value in initializers.items():
        if name.startswith((WEIGHT_PREFIX, TIME_PREFIX)):
            continue
        for node in consumers.get(name, []):
            bias = node.input[2] if node.op_type == "Attention" and node.input[1] == name else ""
            if bias.startswith(WEIGHT_PREFIX) and bias.endswith(".bias"):
                key = bias[len(WEIGHT_PREFIX):-len("bias")] + "weight"
                if key in state:
                    _check_shape(key, value.T, state[key])
                    out[key] = value.T.contiguous()
                continue
            if node.op_type != "MatMul" or node.input[1] != name:
                continue
            for add in consumers.get(node.output[0], []):
                bias = next((x for x in add.input if x != node.output[0]), "")
                if add.op_type == "Add" and bias.startswith(WEIGHT_PREFIX) and bias.endswith(".bias"):
                    key = bias[len(WEIGHT_PREFIX):-len("bias")] + "weight"
                    if key in state:
                        _check_shape(key, value.T, state[key])
                        out[key] = value.T.contiguous()
    return out


def _cond_position_tokens(graph: GraphIndex, initializers: dict[str, torch.Tensor], template: torch.Tensor
                          ) -> torch.Tensor:
    """cond_pos_emb with slots 1.. from the folded constant added to the concatenated observation/goal tokens;
    slot 0 (the timestep's) stays zero until _fit_time_position."""
    want = tuple(template[:, 1:].shape)
    for name, value in initializers.items():
        if name.startswith((WEIGHT_PREFIX, TIME_PREFIX)) or tuple(value.shape) != want:
            continue
        for node in graph.consumers.get(name, []):
            if node.op_type == "Add" and any(graph.producer_op.get(x) == "Concat" for x in node.input if x != name):
                out = torch.zeros_like(template)
                out[:, 1:] = value
                return out
    raise ModelMismatchError(f"no constant of shape {want} added to the condition tokens; not this exporter's graph")


def _check_shape(key: str, value: torch.Tensor, expected: torch.Tensor) -> None:
    if tuple(value.shape) != tuple(expected.shape):
        raise ModelMismatchError(f"{key}: the graph holds shape {tuple(value.shape)}, the model's metadata says "
                                 f"{tuple(expected.shape)}")


def _baked_time_table(initializers: dict[str, torch.Tensor], policy: DiffusionPolicy) -> torch.Tensor:
    """(steps, layers, 2, heads, 1, head_dim): the timestep token's keys and values the full graph holds, as one
    table (export.BakedTimeTable) or, in older files, one constant per step and layer."""
    if TIME_PREFIX + "table" in initializers:
        return initializers[TIME_PREFIX + "table"][:, :, :, :, :1, :]
    layers = len(policy.denoiser.blocks)
    try:
        table = [[torch.stack([initializers[f"{TIME_PREFIX}k_{j}_{layer}"], initializers[f"{TIME_PREFIX}v_{j}_{layer}"]])
                  for layer in range(layers)] for j in policy.full_indices()]
    except KeyError as missing:
        raise ModelMismatchError(f"the graph has no baked time entry {missing}; is it a full-sampler graph?")
    return torch.stack([torch.stack(row) for row in table])[:, :, :, 0, :, :1, :]


def _time_keys_values(policy: DiffusionPolicy, slot0: torch.Tensor) -> torch.Tensor:
    """What the denoiser's time_kv computes for every full-sampler step with position slot 0 = slot0, in the
    layout of _baked_time_table."""
    den = policy.denoiser
    timesteps = torch.tensor([policy.scheduler.timesteps[i] for i in policy.full_indices()])
    token = timestep_embedding(timesteps, den.config.width).to(slot0.dtype)[:, None, :] + slot0
    memory = den.cond_encoder(token)
    per_layer = [torch.stack(block.cross_attn.kv(memory), dim=1) for block in den.blocks]  # (S, 2, h, 1, d) each
    return torch.stack(per_layer, dim=1)


def _fit_time_position(policy: DiffusionPolicy, baked: torch.Tensor) -> None:
    """Set cond_pos_emb slot 0 to the vector that reproduces the baked time table (a 'width'-dim least squares
    through the cond encoder; the exact answer exists, so the residual is rounding)."""
    work = _float64_copy(policy)
    target = baked.to(torch.float64)
    slot0 = torch.zeros(1, 1, policy.denoiser.config.width, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([slot0], lr=1.0, max_iter=200, history_size=50, tolerance_grad=1e-14,
                                  tolerance_change=1e-18, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = ((_time_keys_values(work, slot0) - target) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(5):
        optimizer.step(closure)
    with torch.no_grad():
        policy.denoiser.cond_pos_emb[:, :1] = slot0.detach().to(policy.denoiser.cond_pos_emb.dtype)


def _float64_copy(policy: DiffusionPolicy) -> DiffusionPolicy:
    import copy

    work = copy.deepcopy(policy).double()
    for parameter in work.parameters():
        parameter.requires_grad_(False)
    return work


def _verify_against_file(policy: Policy, path: Path) -> None:
    """Every graph of the file (the full sampler and each warm start beside it) against the recovered policy."""
    if isinstance(policy, DiffusionPolicy):
        verify_graph(FullSampler(policy), [INPUT_OBS, INPUT_GOAL, INPUT_NOISE], path)
        for warm in warm_graphs(path):
            _, info = load_onnx(warm)
            verify_graph(WarmSampler(policy, int(info.graph["steps"])),
                         [INPUT_OBS, INPUT_GOAL, INPUT_PREV, INPUT_NOISE], warm)
    else:
        verify_graph(DeterministicSampler(policy), [INPUT_OBS, INPUT_GOAL], path)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.training.from_onnx",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="exported model file (.onnx)")
    parser.add_argument("--out", required=True, type=Path, help="torch model file to write (.safetensors)")
    args = parser.parse_args(argv)
    try:
        policy, info = recover_policy(args.model)
    except (ModelMismatchError, RuntimeError) as error:
        parser.error(str(error))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, policy, info.config, extra={"diffuseloco.recovered_from": str(args.model)})
    print(f"{args.out}: the weights of {args.model}, matched against its graphs to 1e-4")


if __name__ == "__main__":
    main()
