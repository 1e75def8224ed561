"""The robot config with the gait clock among the goal terms (a config option: the paper's goal has no clock)."""

from __future__ import annotations

import dataclasses

from diffuseloco_policy.config import StackConfig, TermConfig
from diffuseloco_policy.observation import GAIT_PHASE_SIZE, GAIT_PHASE_TERM


def with_gait_phase(config: StackConfig, size: int = GAIT_PHASE_SIZE) -> StackConfig:
    """config whose goal ends with the gait_phase term."""
    terms = config.observation.goal_terms + (TermConfig(GAIT_PHASE_TERM, size, 1.0),)
    return dataclasses.replace(config, observation=dataclasses.replace(config.observation, goal_terms=terms))
