"""The learning side's shipped presets: training configs (configs/train_*.yaml) and evaluation matrices
(configs/eval_*.yaml), in the package's share directory (diffuseloco_policy.package_files)."""

from __future__ import annotations

from pathlib import Path

from diffuseloco_policy.package_files import share_dir

PACKAGE = "diffuseloco_learning"


def presets_dir() -> Path:
    """The folder of the shipped training and evaluation presets."""
    return share_dir(PACKAGE) / "configs"
