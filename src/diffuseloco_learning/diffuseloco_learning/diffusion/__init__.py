"""The torch side of the diffusion policy (no ROS): denoiser, baseline, schedulers and the policies that combine
them. Their settings (ModelSpec and the configs in it) are plain data in diffuseloco_policy.model_spec, so the
robot reads a model file without torch."""

from diffuseloco_policy.model_spec import (TRANSFORMER_PRESETS, DenoiserConfig, MLPConfig, ModelSpec, PolicyDims,
                                           SchedulerConfig)
from .mlp import MLPActor
from .policy import BCPolicy, DiffusionPolicy, Policy, build_policy, shift_chunk
from .schedulers import NoiseScheduler
from .transformer import TransformerDenoiser

__all__ = [
    "BCPolicy", "DenoiserConfig", "DiffusionPolicy", "MLPActor", "MLPConfig", "ModelSpec", "NoiseScheduler",
    "Policy", "PolicyDims", "SchedulerConfig", "TRANSFORMER_PRESETS", "TransformerDenoiser", "build_policy",
    "shift_chunk",
]
