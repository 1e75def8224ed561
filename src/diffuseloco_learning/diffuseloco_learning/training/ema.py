"""Exponential moving average of the weights, with diffusion_policy's EMAModel warm-up formula.

decay(step) = 1 - (1 + s / inv_gamma) ** -power, s = max(0, step - update_after_step - 1), clipped to
[min_value, max_value], and 0 while s <= 0 (the EMA copies the weights at the first updates). With power 0.75
the decay reaches 0.999 after ~10k steps and 0.9999 after ~215k.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .config import EMASection


def ema_decay(step: int, cfg: EMASection) -> float:
    s = max(0, step - cfg.update_after_step - 1)
    if s <= 0:
        return 0.0
    value = 1.0 - (1.0 + s / cfg.inv_gamma) ** -cfg.power
    return max(cfg.min_value, min(value, cfg.max_value))


class EMA:
    """Holds the averaged copy of a model; `update(model)` after every optimizer step."""

    def __init__(self, model: nn.Module, cfg: EMASection) -> None:
        self.cfg = cfg
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.optimization_step = 0
        self.decay = 0.0

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        self.decay = ema_decay(self.optimization_step, self.cfg)
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            if p.requires_grad:
                ema_p.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)
            else:
                ema_p.copy_(p.detach())
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.optimization_step += 1
        return self.decay
