"""What a model is, as plain data: the policy kind, its hyper-parameters and tensor geometry.

Why a module of its own: a model file stores these settings so the robot can check and run it, and the robot
must read them without the torch modules they configure (diffuseloco_learning.diffusion builds those). Nothing
here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .config import StackConfig

SCHEDULER_KINDS = ("ddpm", "ddim")


POLICY_KINDS = ("diffusion", "bc_mlp")


@dataclass(frozen=True)
class SchedulerConfig:
    """Diffusion schedule settings; stored in model files so the robot samples exactly as training assumed."""

    kind: str = "ddpm"
    num_train_steps: int = 10
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    prediction_type: str = "epsilon"
    variance_type: str = "fixed_small"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULER_KINDS:
            raise ValueError(f"scheduler kind {self.kind!r} not in {SCHEDULER_KINDS}")
        if self.beta_schedule != "squaredcos_cap_v2":
            raise ValueError("only the 'squaredcos_cap_v2' beta schedule is implemented")
        if self.prediction_type != "epsilon" or self.variance_type != "fixed_small":
            raise ValueError("only epsilon prediction with fixed_small variance is implemented")
        if not 1 <= self.num_inference_steps <= self.num_train_steps:
            raise ValueError("need 1 <= num_inference_steps <= num_train_steps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SchedulerConfig":
        return cls(**data)


def inference_timesteps(num_train_steps: int, num_inference_steps: int) -> list[int]:
    """Descending timesteps with diffusers' default 'leading' spacing (e.g. 10/10 -> 9..0, 10/3 -> 6, 3, 0)."""
    ratio = num_train_steps // num_inference_steps
    return [int(t) for t in (np.arange(num_inference_steps) * ratio).round()[::-1]]


@dataclass(frozen=True)
class DenoiserConfig:
    """Transformer hyper-parameters; presets: paper (256/8/6), small (128/4/4), tiny (128/4/2)."""

    width: int = 256
    heads: int = 8
    layers: int = 6
    dropout_attn: float = 0.3
    dropout_emb: float = 0.0
    causal_cond: bool = True

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} not divisible by heads {self.heads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DenoiserConfig":
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "DenoiserConfig":
        if name not in TRANSFORMER_PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(TRANSFORMER_PRESETS)}")
        return cls(**{**TRANSFORMER_PRESETS[name], **overrides})


TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"width": 256, "heads": 8, "layers": 6},
    "small": {"width": 128, "heads": 4, "layers": 4},
    "tiny": {"width": 128, "heads": 4, "layers": 2},
}


@dataclass(frozen=True)
class MLPConfig:
    hidden: tuple[int, ...] = (512, 512, 512)
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MLPConfig":
        return cls(hidden=tuple(int(h) for h in data["hidden"]), dropout=float(data["dropout"]))


@dataclass(frozen=True)
class PolicyDims:
    """Tensor geometry, always derived from the StackConfig so model and robot cannot disagree silently."""

    obs_dim: int
    goal_dim: int
    action_dim: int
    history: int
    horizon: int
    execute_index: int

    @classmethod
    def from_config(cls, config: StackConfig, predict_velocity: bool = False) -> "PolicyDims":
        """predict_velocity (ModelSpec): each chunk entry is an action and its velocity feed-forward."""
        joints = config.robot.num_joints
        return cls(config.observation.obs_dim, config.observation.goal_dim, joints * (2 if predict_velocity else 1),
                   config.observation.history, config.action.horizon, config.action.execute_index)


@dataclass(frozen=True)
class ModelSpec:
    """Which policy and its hyper-parameters; stored in model files to rebuild the module."""

    kind: str = "diffusion"
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    warm_start_steps: int = 2
    delayed_inputs: bool = True   # trained on s[t-To..t-1]; False: the current-frame ablation, s[t-To+1..t]
    # Each chunk entry also holds the velocity feed-forward sent with its action (a per-tick step in action units,
    # data/dataset.py action_velocity), so the robot gets the experts' qd_des; without it the decoder derives
    # qd_des from the next action, which the experts never sent (docs/research/policy_eval/tracking.md).
    predict_velocity: bool = False

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy kind {self.kind!r} not in {POLICY_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "denoiser": self.denoiser.to_dict(), "scheduler": self.scheduler.to_dict(),
                "mlp": self.mlp.to_dict(), "warm_start_steps": self.warm_start_steps,
                "delayed_inputs": self.delayed_inputs, "predict_velocity": self.predict_velocity}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(kind=data["kind"], denoiser=DenoiserConfig.from_dict(data["denoiser"]),
                   scheduler=SchedulerConfig.from_dict(data["scheduler"]), mlp=MLPConfig.from_dict(data["mlp"]),
                   warm_start_steps=int(data["warm_start_steps"]),
                   delayed_inputs=bool(data.get("delayed_inputs", True)),  # files from before the field: delayed
                   predict_velocity=bool(data.get("predict_velocity", False)))
