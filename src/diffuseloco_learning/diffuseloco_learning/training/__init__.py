"""Offline training of the multi-skill policy from expert datasets, and export of the trained EMA model.

    python -m diffuseloco_learning.training --config train_small [--resume out/train_small/ckpt_latest] [--max-steps N]
    torchrun --nproc_per_node N -m diffuseloco_learning.training --config train_paper
    python -m diffuseloco_learning.training.export --checkpoint out/train_small/ckpt_latest --out models/policy.onnx
    python -m diffuseloco_learning.training.from_onnx --model models/policy.onnx --out out/policy.safetensors

A config's `init_from` (a .safetensors model file or an exported .onnx) fine-tunes a model instead of starting
from scratch: its weights and normalizer are the run's starting point.
"""

from .config import EMASection, ModelSection, TrainConfig, load_train_config, train_config_from_dict
from .ema import EMA, ema_decay
from .trainer import Trainer, lr_factor
from .windows import EpisodeWindows

__all__ = ["EMA", "EMASection", "EpisodeWindows", "ModelSection", "TrainConfig", "Trainer", "ema_decay",
           "load_train_config", "lr_factor", "train_config_from_dict"]
