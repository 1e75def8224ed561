"""Export a trained checkpoint's EMA model to ONNX (full sampler + warm-start graphs), verified against torch.

    python -m diffuseloco_policy.training.export --checkpoint out/train_small/ckpt_latest --out models/policy.onnx

Writes models/policy.onnx and models/policy.warm<k>.onnx for each --warm-steps entry (default: the model's
warm_start_steps), each checked once in ONNX Runtime against the torch model to 1e-4 by export_onnx.
--weights model exports the raw (non-EMA) weights instead, for debugging.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence, Union

from ..export import export_onnx
from ..model_file import load_checkpoint
from .checkpoint import ema_weights_path


def export_checkpoint(checkpoint: Union[str, Path], out: Union[str, Path], warm_steps: Optional[Sequence[int]] = None,
                      weights: str = "ema") -> list[Path]:
    policy, info = load_checkpoint(ema_weights_path(checkpoint, weights))
    if warm_steps is None:
        warm_steps = (info.spec.warm_start_steps,) if info.spec.kind == "diffusion" else ()
    return export_onnx(policy, info.config, out, warm_steps=tuple(warm_steps), verify=True)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_policy.training.export",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (or a .safetensors model file)")
    parser.add_argument("--out", required=True, type=Path, help="full-sampler graph path, e.g. models/policy.onnx")
    parser.add_argument("--warm-steps", type=int, nargs="*", default=None,
                        help="warm-start graphs to write (default: the model's warm_start_steps)")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema")
    args = parser.parse_args(argv)
    for path in export_checkpoint(args.checkpoint, args.out, args.warm_steps, args.weights):
        print(path)


if __name__ == "__main__":
    main()
