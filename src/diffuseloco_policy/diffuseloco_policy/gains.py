"""The gains a policy's PD targets go out with: its data's kp and kd, and per skill a multiple of that kp.

A model learns the robot as its data's gains made it move, so the gains belong to the model, as its normalizer
does: a model file records the kp and kd of its data (its embedded robot config), and the policy node drives that
model with them (with_model_gains), whatever the robot config's experts use now. The safety filter still bounds
them (model_file.compatibility_problems refuses a file whose gains exceed kp_max / kd_max).

Per skill, which multiple of robot.kp the PD targets of the skill in effect go out with:

Why: the experts and their data run every gait at robot.kp, on motors randomized over kp x [0.9, 1.1], so a clone
has seen a band of gains, and within it its gaits are not equally steady. The default model's trot wobbles less
in heading a little softer, and its bound holds a weakly actuated body (heavy payload, weak motors) a little
stiffer (docs/research/policy_eval/tracking.md, "Per-skill gains"). A model file says which scale each skill was
validated with
(SkillConfig.kp_scale); this schedule applies it.

At a skill switch the scale moves toward the new skill's at GAIN_SLEW_PER_S, not in one step: a jump of the gain
is a jump of every joint's torque. Outside RUNNING it rests at 1 (standing up and holding use the controller's own
gains), so a run always starts from robot.kp.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from .config import ConfigError, StackConfig

GAIN_SLEW_PER_S = 1.0  # scale units per second: 0.3 between trot and bound takes 0.3 s


class SkillGains:
    """The kp scale to send this tick; one update per control tick (not thread-safe)."""

    def __init__(self, config: StackConfig) -> None:
        self._targets = {s.id: s.kp_scale for s in config.skills}
        self._step = GAIN_SLEW_PER_S * config.rates.control_dt
        self.scale = 1.0

    def update(self, skill: int, running: bool) -> float:
        """Move toward `skill`'s scale while the policy runs; back to 1 at once when it does not."""
        if not running:
            self.scale = 1.0
            return self.scale
        target = self._targets.get(skill, 1.0)
        self.scale += min(max(target - self.scale, -self._step), self._step)
        return self.scale


def kp_scales(config: StackConfig) -> dict[str, float]:
    """Each skill's scale, by name (what a model file says it was validated with)."""
    return {s.name: s.kp_scale for s in config.skills}


def with_kp_scales(config: StackConfig, scales: Mapping[str, float]) -> StackConfig:
    """The config with the named skills' kp_scale set (others unchanged); an unknown skill or a scale outside the
    bounds is a ConfigError."""
    unknown = set(scales) - {s.name for s in config.skills}
    if unknown:
        raise ConfigError(f"gain scales name unknown skills {sorted(unknown)}; the skills: "
                          f"{[s.name for s in config.skills]}")
    return dataclasses.replace(config, skills=tuple(
        dataclasses.replace(s, kp_scale=float(scales[s.name])) if s.name in scales else s for s in config.skills))


def with_model_gains(config: StackConfig, trained: StackConfig) -> StackConfig:
    """The robot config with the gains the model file was trained and validated with: its data's kp and kd and each
    skill's kp scale (they replace the robot config's own)."""
    robot = dataclasses.replace(config.robot, kp=trained.robot.kp, kd=trained.robot.kd)
    return with_kp_scales(dataclasses.replace(config, robot=robot), kp_scales(trained))


def describe_gains(config: StackConfig) -> str:
    """'kp 30, kd 3, bound x1.1' (the policy's gains in a config)."""
    return f"kp {config.robot.kp:g}, kd {config.robot.kd:g}, {describe_scales(kp_scales(config))}"


def describe_scales(scales: Mapping[str, float]) -> str:
    """'trot x0.8, bound x1.1', or 'robot.kp in every skill'."""
    scaled = [f"{name} x{value:g}" for name, value in scales.items() if value != 1.0]
    return ", ".join(scaled) if scaled else "robot.kp in every skill"
