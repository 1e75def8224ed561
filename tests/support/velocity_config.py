"""The robot config with and without the state estimator's body velocity among the observation terms."""

from __future__ import annotations

import dataclasses

from diffuseloco_policy.config import StackConfig, TermConfig

VELOCITY_TERM = TermConfig("base_linear_velocity", 3, 1.0)


def observing_velocity(config: StackConfig, observed: bool = True) -> StackConfig:
    """config whose observation has (after the gyro) or lacks the base_linear_velocity term."""
    terms = tuple(t for t in config.observation.terms if t.name != VELOCITY_TERM.name)
    if observed:
        at = 1 + next(i for i, t in enumerate(terms) if t.name == "base_angular_velocity")
        terms = terms[:at] + (VELOCITY_TERM,) + terms[at:]
    return dataclasses.replace(config, observation=dataclasses.replace(config.observation, terms=terms))
