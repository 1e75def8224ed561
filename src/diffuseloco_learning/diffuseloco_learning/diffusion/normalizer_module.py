"""The normalizer inside a torch model: its parameters as buffers, so they are saved with the weights and baked
into exported graphs as constants (diffuseloco_policy.normalizer holds the plain arrays the robot reads)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diffuseloco_policy.normalizer import MinMaxNormalizer


class NormalizerModule(nn.Module):
    """A MinMaxNormalizer as buffers: part of a model's state_dict and baked into exported graphs as constants."""

    def __init__(self, normalizer: MinMaxNormalizer) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(normalizer.scale.copy()))
        self.register_buffer("offset", torch.from_numpy(normalizer.offset.copy()))
        self.register_buffer("input_min", torch.from_numpy(normalizer.input_min.copy()))
        self.register_buffer("input_max", torch.from_numpy(normalizer.input_max.copy()))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.offset) / self.scale

    def to_normalizer(self) -> MinMaxNormalizer:
        return MinMaxNormalizer(*(getattr(self, k).detach().cpu().numpy().astype(np.float32)
                                  for k in ("scale", "offset", "input_min", "input_max")))
