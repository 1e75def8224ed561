"""Deepen a trained diffusion policy: more decoder layers that start as the identity, for init_from.

    python -m diffuseloco_learning.training.deepen --model models/diffuseloco_cyberdog2.onnx --layers 4 \\
        --out out/models/deep4.safetensors

Why: capacity is a lever on trot's heading wobble (docs/research/policy_eval/tracking.md), and training a deeper model
from scratch costs many hours on a 2-core CPU. The decoder blocks are pre-norm residual blocks,
so a new block whose three output projections (self-attention, cross-attention, MLP) are zero adds nothing: the
deeper model samples exactly what the file samples, and fine-tuning it (init_from) starts from the trained
behaviour instead of from noise. The new blocks' other weights keep their fresh initialization, so their
gradients are not zero once the output projections move.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Optional

import torch

from ..diffusion.policy import DiffusionPolicy, build_policy
from diffuseloco_policy.model_file import ModelInfo, ModelMismatchError
from diffuseloco_learning.model_checkpoint import save_checkpoint
from .from_onnx import read_policy

OUTPUT_PROJECTIONS = ("self_attn.proj", "cross_attn.proj", "mlp.2")


def deepen(policy: DiffusionPolicy, info: ModelInfo, layers: int, seed: int = 0) -> DiffusionPolicy:
    """A copy of `policy` with `layers` decoder blocks; the added ones start as the identity (checked)."""
    if not isinstance(policy, DiffusionPolicy):
        raise ModelMismatchError("only a diffusion policy has decoder layers to add")
    have = policy.spec.denoiser.layers
    if layers <= have:
        raise ModelMismatchError(f"the model has {have} layers already; deepen adds layers (asked for {layers})")
    spec = dataclasses.replace(policy.spec, denoiser=dataclasses.replace(policy.spec.denoiser, layers=layers))
    torch.manual_seed(seed)
    deeper = build_policy(info.config, spec, info.normalizer)
    state = deeper.state_dict()
    state.update({key: value.clone() for key, value in policy.state_dict().items()})
    for block in range(have, layers):
        for name in OUTPUT_PROJECTIONS:
            state[f"denoiser.blocks.{block}.{name}.weight"].zero_()
            state[f"denoiser.blocks.{block}.{name}.bias"].zero_()
    deeper.load_state_dict(state)
    deeper.eval()
    error = same_noise_predictions(policy.eval(), deeper)
    if error > 1e-6:
        raise RuntimeError(f"the deepened model predicts differently from the source ({error:.2e}); not deepened")
    return deeper


def same_noise_predictions(a: DiffusionPolicy, b: DiffusionPolicy, batch: int = 4) -> float:
    """The largest difference between two denoisers' noise predictions on random normalized inputs at every
    training timestep (the denoiser, not the sampled actions: those saturate at the clip and hide differences)."""
    g = torch.Generator().manual_seed(0)
    d = a.dims
    steps = a.scheduler.num_train_steps
    sample = torch.randn(batch * steps, d.horizon, d.action_dim, generator=g)
    obs = torch.randn(batch * steps, d.history, d.obs_dim, generator=g)
    goal = torch.randn(batch * steps, d.history, d.goal_dim, generator=g)
    t = torch.arange(steps).repeat_interleave(batch)
    with torch.no_grad():
        return (a.denoiser(sample, t, obs, goal) - b.denoiser(sample, t, obs, goal)).abs().max().item()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.training.deepen",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help=".onnx, .safetensors or a checkpoint directory")
    parser.add_argument("--layers", required=True, type=int, help="decoder layers of the deeper model")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    args = parser.parse_args(argv)
    try:
        policy, info = read_policy(args.model)
        deeper = deepen(policy, info, args.layers)
    except (ModelMismatchError, RuntimeError) as error:
        parser.error(str(error))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, deeper, info.config, extra={"diffuseloco.deepened_from": str(args.model)})
    params = sum(p.numel() for p in deeper.parameters())
    print(f"{args.out}: {args.model} with {args.layers} layers ({params / 1e6:.2f} M parameters), same samples")


if __name__ == "__main__":
    main()
