"""Training configuration (YAML -> frozen dataclasses), presets in diffuseloco_learning's configs/train_*.yaml.

Relative dataset and output paths are resolved against the current directory (run from the repository root).
`batch_size` is the GLOBAL batch: under DDP each of the W processes draws batch_size / W samples.

A config may name another as its `base:` and give only what differs (`base: train_small_qd`). The base is looked up
beside the file first, then among the shipped presets; bases may have bases. Mappings merge key by key (a child's
`model: {predict_velocity: true}` keeps the base's other model settings), everything else (lists, numbers,
strings, null) replaces the base's value, and a mapping of another `kind` (`model: {kind: bc_mlp, ...}` over a
diffusion model) replaces the base's mapping whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from diffuseloco_policy.config import ConfigError, from_dict, plain, read_yaml
from ..presets import presets_dir
from ..diffusion import DenoiserConfig, MLPConfig, ModelSpec, SchedulerConfig


@dataclass(frozen=True)
class ModelSection:
    """Which policy to train: a transformer preset (paper/small/tiny) plus overrides, or the MLP baseline."""

    kind: str = "diffusion"                 # diffusion | bc_mlp
    preset: str = "tiny"                    # paper (256/8/6) | small (128/4/4) | tiny (128/4/2)
    denoiser: dict = field(default_factory=dict)   # DenoiserConfig overrides, e.g. {dropout_attn: 0.1}
    scheduler: dict = field(default_factory=dict)  # SchedulerConfig overrides
    mlp: dict = field(default_factory=dict)        # MLPConfig overrides (bc_mlp)
    warm_start_steps: int = 2
    predict_velocity: bool = False          # predict the experts' velocity feed-forward beside each action

    def spec(self) -> ModelSpec:
        mlp = dict(self.mlp)
        if "hidden" in mlp:
            mlp["hidden"] = tuple(int(h) for h in mlp["hidden"])
        try:
            return ModelSpec(kind=self.kind, denoiser=DenoiserConfig.preset(self.preset, **self.denoiser),
                             scheduler=SchedulerConfig(**self.scheduler), mlp=MLPConfig(**mlp),
                             warm_start_steps=self.warm_start_steps, predict_velocity=self.predict_velocity)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model: {exc}") from exc


@dataclass(frozen=True)
class EMASection:
    """diffusion_policy's EMAModel: decay = 1 - (1 + step / inv_gamma) ** -power, clipped to [min, max]."""

    power: float = 0.75
    inv_gamma: float = 1.0
    min_value: float = 0.0
    max_value: float = 0.9999
    update_after_step: int = 0


@dataclass(frozen=True)
class TrainConfig:
    datasets: tuple[str, ...]
    out_dir: str
    model: ModelSection = field(default_factory=ModelSection)
    robot_config: Optional[str] = None      # stack config the model is for; None: the shipped cyberdog2.yaml
    delayed: bool = True                    # False: the non-delayed ablation (obs s[t-To+1..t])
    batch_size: int = 256                   # global batch
    lr: float = 1.0e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1.0e-3
    warmup_steps: int = 500
    total_steps: int = 100_000              # length of the cosine schedule
    grad_clip: float = 0.0                  # max grad norm; 0 disables
    ema: EMASection = field(default_factory=EMASection)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3               # numbered ckpt_<step> directories kept besides ckpt_latest
    log_every: int = 50
    seed: int = 0
    num_workers: int = 0                    # DataLoader workers; 0 fetches batches in the training process
    device: str = "auto"                    # auto (cuda if available) | cpu | cuda
    data_on_device: bool = False            # keep the whole dataset on the GPU (fast gathers), cuda only
    threads: int = 0                        # torch intra-op threads per process; 0 leaves torch's default
    progress: bool = True                   # tqdm bar (rank 0)
    check_dataset_config: bool = True       # refuse datasets recorded for another robot setup
    init_from: Optional[str] = None         # fine-tune: start from this model file's weights and normalizer
                                            # (.safetensors, or an exported .onnx recovered by from_onnx)

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("train config: at least one dataset is required")
        for name in ("batch_size", "total_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} must be >= 1")
        if self.warmup_steps < 0 or self.num_workers < 0 or self.keep_checkpoints < 0:
            raise ConfigError("train config: warmup_steps, num_workers and keep_checkpoints must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train config: device must be auto, cpu or cuda, got {self.device!r}")
        self.model.spec()  # validate early

    def spec(self) -> ModelSpec:
        """The model's spec as its files record it, including the input timing it is trained on."""
        return dataclasses.replace(self.model.spec(), delayed_inputs=self.delayed)

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def train_config_from_dict(data: dict[str, Any], where: str = "train config") -> TrainConfig:
    return from_dict(TrainConfig, _numbers(data), where=where)


def load_train_config(path: Union[str, Path]) -> TrainConfig:
    """Read a training YAML; a bare name like 'train_small' or 'train_small.yaml' finds the shipped preset. A
    `base:` is resolved and merged first (see the module's docstring)."""
    path = resolve_preset(path)
    return train_config_from_dict(load_train_dict(path), where=Path(path).name)


def load_train_dict(path: Union[str, Path], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML of a training config with its `base:` chain merged in (no `base` key left)."""
    path = Path(path)
    data = read_yaml(path, "train config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: a training config is a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path.name}: base must be a preset name or a path, got {base!r}")
    base_path = resolve_base(base, path.parent)
    if not base_path.exists():
        raise ConfigError(f"{path.name}: base {base!r} not found beside it or among the shipped presets")
    key = base_path.resolve()
    if key in _seen or key == path.resolve():
        raise ConfigError(f"{path.name}: base {base!r} leads back to itself")
    return merge_config(load_train_dict(base_path, _seen + (path.resolve(),)), data)


def resolve_base(base: str, beside: Path) -> Path:
    """A base config: a path relative to the config that names it, or a shipped preset name."""
    for candidate in (beside / base, beside / f"{base}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = presets_dir()
    for candidate in (shipped / Path(base).name, shipped / f"{Path(base).name}.yaml"):
        if candidate.is_file():
            return candidate
    return Path(base)


def merge_config(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`: mappings merge key by key, anything else replaces; a mapping with another `kind`
    replaces the base's mapping whole."""
    merged = dict(base)
    for key, value in child.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
            merged[key] = merge_config(old, value)
        else:
            merged[key] = value
    return merged


def resolve_preset(path: Union[str, Path]) -> Path:
    p = Path(path)
    if p.exists():
        return p
    shipped = presets_dir()
    for candidate in (shipped / p.name, shipped / f"{p.name}.yaml"):
        if candidate.exists():
            return candidate
    return p


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads '1e-4' as a string; accept such strings where a number is clearly meant."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") and not value.isalpha() else value
        except ValueError:
            return value
    return value
