"""Diffusion policy core (no ROS): denoiser, baseline, schedulers and the policies that combine them."""

from .mlp import MLPActor, MLPConfig
from .policy import BCPolicy, DiffusionPolicy, ModelSpec, Policy, PolicyDims, build_policy, shift_chunk
from .schedulers import NoiseScheduler, SchedulerConfig
from .transformer import TRANSFORMER_PRESETS, DenoiserConfig, TransformerDenoiser

__all__ = [
    "BCPolicy", "DenoiserConfig", "DiffusionPolicy", "MLPActor", "MLPConfig", "ModelSpec", "NoiseScheduler",
    "Policy", "PolicyDims", "SchedulerConfig", "TRANSFORMER_PRESETS", "TransformerDenoiser", "build_policy",
    "shift_chunk",
]
