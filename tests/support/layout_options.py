"""The robot config with optional layout terms the paper's inputs do not have: the gait clock among the goal
terms, the action sent in a frame's own tick among the observation terms."""

from __future__ import annotations

import dataclasses

from diffuseloco_policy.config import StackConfig, TermConfig
from diffuseloco_policy.observation import APPLIED_ACTION_TERM, GAIT_PHASE_SIZE, GAIT_PHASE_TERM


def with_gait_phase(config: StackConfig, size: int = GAIT_PHASE_SIZE) -> StackConfig:
    """config whose goal ends with the gait_phase term."""
    terms = config.observation.goal_terms + (TermConfig(GAIT_PHASE_TERM, size, 1.0),)
    return dataclasses.replace(config, observation=dataclasses.replace(config.observation, goal_terms=terms))


def with_applied_action(config: StackConfig) -> StackConfig:
    """config whose observation ends with the applied_action term."""
    terms = config.observation.terms + (TermConfig(APPLIED_ACTION_TERM, config.robot.num_joints, 1.0),)
    return dataclasses.replace(config, observation=dataclasses.replace(config.observation, terms=terms))
