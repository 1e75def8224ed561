"""A small, untrained but well-behaved policy file for node tests: a tiny diffusion transformer whose action
normalizer spans only +-0.02, so every action it samples keeps the legs at the default pose (+-0.005 rad). The
node, the sampler, the export and the metadata checks are all real; only the weights are random."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, SchedulerConfig, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_policy.normalizer import PolicyNormalizer


def first_skills(config: StackConfig, count: int) -> StackConfig:
    """The config over its first `count` skills, the skill one-hot sized to them: what a model trained before the
    robot config gained its later skills carries."""
    goal = tuple(dataclasses.replace(t, size=count) if t.name == "skill" else t for t in config.observation.goal_terms)
    return dataclasses.replace(config, skills=config.skills[:count],
                               observation=dataclasses.replace(config.observation, goal_terms=goal))


def export_standing_model(path: Path, seed: int = 0, config_path: Path | None = None, preset: str | None = None,
                          action_range: float = 0.02, delayed_inputs: bool = True,
                          config: Optional[StackConfig] = None) -> Path:
    """preset: a DenoiserConfig preset (default: a 64-wide, 2-layer transformer); action_range: the normalizer's
    action span (0.02 stands still; large values give wild actions for tests that need unsafe proposals); config:
    the config the model is trained for (default: the one at config_path, or the shipped robot config)."""
    config = config or load_config(config_path)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    normalizer = PolicyNormalizer.fit(rng.normal(size=(256, config.observation.obs_dim)),
                                      rng.normal(size=(256, config.observation.goal_dim)),
                                      rng.uniform(-action_range, action_range, size=(256, 12)))
    denoiser = (DenoiserConfig.preset(preset) if preset else
                DenoiserConfig(width=64, heads=4, layers=2, dropout_attn=0.0))
    spec = ModelSpec(kind="diffusion", denoiser=denoiser,
                     scheduler=SchedulerConfig(kind="ddpm", num_inference_steps=10), warm_start_steps=2,
                     delayed_inputs=delayed_inputs)
    policy = build_policy(config, spec, normalizer).eval()
    return export_onnx(policy, config, path, warm_steps=(2,))[0]
