"""The non-diffusion baseline: an MLP that regresses the action chunk from the same histories.

Why: DiffuseLoco's claim is that diffusion keeps the skills' modes apart where plain behaviour cloning averages
them; the evaluator needs a baseline with identical inputs and outputs to show that, so this MLP sees the same
normalized observation and goal histories and predicts the same (horizon, action_dim) chunk, deterministically.
"""

from __future__ import annotations

import torch
from torch import nn

from diffuseloco_policy.model_spec import MLPConfig


class MLPActor(nn.Module):
    """(obs (B, To, obs_dim), goal (B, To, goal_dim)) -> normalized action chunk (B, horizon, action_dim)."""

    def __init__(self, config: MLPConfig, obs_dim: int, goal_dim: int, action_dim: int, history: int,
                 horizon: int) -> None:
        super().__init__()
        self.config, self.horizon, self.action_dim = config, horizon, action_dim
        layers: list[nn.Module] = []
        width = history * (obs_dim + goal_dim)
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.Mish(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, horizon * action_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs.flatten(1), goal.flatten(1)], dim=1)
        return self.net(x).reshape(-1, self.horizon, self.action_dim)
