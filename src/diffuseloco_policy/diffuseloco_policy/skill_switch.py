"""Skill switches at speed: the skill in effect changes only once the dog has slowed down.

Why: a joystick switches skills at any speed, and the clone is least sure of itself in a switch. In the harness,
bound at the top of its envelope (0.3 m/s) switched straight to stand fell in 3 of 64 randomized episodes, where
the experts did not fall and eval_default's switches at half speed never fell (docs/policy_eval/tracking.md). So a
requested switch first brings the old skill's planar command down to `switch_speed` at `deceleration`, and the new
skill takes over once the command is there and the measured body speed (vBody) has followed (without a sound
vBody, once the command is there). It takes over after `max_wait_s` at the latest, so a wrong estimate delays a
switch but never blocks it. A switch at or
below `switch_speed` (from stand, or between slow commands) is immediate, and a request for the skill in effect
(a changed command, or a switch called off) takes effect at once.

The user's command stays what is requested: the evaluation scores it, and the node logs it. The skill and command
in effect are what the model is given and what PolicyStatus reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .config import SkillSwitchConfig, StackConfig


@dataclass
class SkillCommandState:
    """A skill and its velocity command, clamped to the skill's range; `note` says what was refused or changed."""

    skill: int = 0
    command: np.ndarray = field(default_factory=lambda: np.zeros(3))
    note: str = ""


class SkillSwitchGate:
    """Turns the requested skill command into the one in effect, one update per control tick (not thread-safe)."""

    def __init__(self, config: StackConfig) -> None:
        self.stack = config
        self.config: SkillSwitchConfig = config.skill_switch
        self.dt = config.rates.control_dt
        self.requested = SkillCommandState()
        self.in_effect = SkillCommandState()
        self.waited_s = 0.0  # how long the pending switch has waited

    @property
    def pending(self) -> bool:
        return self.requested.skill != self.in_effect.skill

    def request(self, state: SkillCommandState, running: bool) -> SkillCommandState:
        """Take a new requested command; returns the one in effect until the next update. Only a switch to
        another skill while the policy runs waits for the dog to slow down."""
        self.requested = state
        if not (self.config.enabled and running and self.pending):
            return self._take_over()
        return self.in_effect

    def update(self, measured_planar: Optional[np.ndarray], running: bool) -> SkillCommandState:
        """The skill command in effect this tick. measured_planar: vBody's (vx, vy), None without a sound one.
        Not running (standing up, damping): nothing walks, so a switch has nothing to wait for."""
        if not (self.config.enabled and running and self.pending):
            return self._take_over()
        self.waited_s += self.dt
        command = self._slowed_command()
        self.in_effect = SkillCommandState(self.in_effect.skill, command, self.in_effect.note)
        if self.waited_s >= self.config.max_wait_s - 1e-9 or self._slow_enough(command, measured_planar):
            return self._take_over()
        return self.in_effect

    def _take_over(self) -> SkillCommandState:
        self.in_effect, self.waited_s = self.requested, 0.0
        return self.in_effect

    def _slowed_command(self) -> np.ndarray:
        """The old skill's command one tick closer to the requested one, its planar speed cut to switch_speed and
        its change to deceleration * dt; yaw stays (a turn does not unsettle a switch as speed does)."""
        old = self.stack.skill(self.in_effect.skill)
        target = np.array(self.requested.command[:2], dtype=np.float64)
        speed = float(np.hypot(*target))
        if speed > self.config.switch_speed:
            target *= self.config.switch_speed / speed
        current = np.asarray(self.in_effect.command, dtype=np.float64)
        step = target - current[:2]
        largest = self.config.deceleration * self.dt
        length = float(np.hypot(*step))
        if length > largest:
            step *= largest / length
        planar = current[:2] + step
        return np.array(old.clamp_command(float(planar[0]), float(planar[1]), float(current[2])))

    def _slow_enough(self, command: np.ndarray, measured_planar: Optional[np.ndarray]) -> bool:
        limit = self.config.switch_speed + 1e-9
        if math.hypot(command[0], command[1]) > limit:
            return False
        return measured_planar is None or math.hypot(measured_planar[0], measured_planar[1]) <= limit
