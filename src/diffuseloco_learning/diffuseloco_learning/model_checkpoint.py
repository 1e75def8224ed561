"""Torch checkpoints of a policy: weights as safetensors (no pickle) with the metadata an ONNX export carries,
so a checkpoint is validated against the robot exactly like an exported model (diffuseloco_policy.model_file)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.model_file import ModelInfo, ModelMismatchError, build_metadata, check_compatible, parse_metadata
from .diffusion.policy import Policy, build_policy


def save_checkpoint(path: Union[str, Path], policy: Policy, config: StackConfig,
                    extra: Optional[dict[str, str]] = None) -> Path:
    """Torch weights as safetensors (no pickle) with the same metadata an ONNX export carries."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    save_file(tensors, str(path), metadata={**build_metadata(policy, config, {"sampler": "torch"}), **(extra or {})})
    return path


def read_checkpoint_info(path: Union[str, Path], robot: Optional[StackConfig] = None) -> ModelInfo:
    """A checkpoint's metadata (config, spec, normalizer) without its weights, validated against `robot` when
    given; an unreadable file is a ModelMismatchError."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same refusal
        raise ModelMismatchError(f"{path}: cannot read checkpoint: {exc}") from exc
    info = parse_metadata(metadata, source=str(path))
    if robot is not None:
        check_compatible(info.config, robot, source=str(path))
    return info


def load_checkpoint(path: Union[str, Path], robot: Optional[StackConfig] = None) -> tuple[Policy, ModelInfo]:
    """Rebuild a policy from a safetensors checkpoint, validated against `robot` when given (eval mode)."""
    from safetensors.torch import load_file

    info = read_checkpoint_info(path, robot)
    policy = build_policy(info.config, info.spec, info.normalizer)
    policy.load_state_dict(load_file(str(path)))
    return policy.eval(), info
