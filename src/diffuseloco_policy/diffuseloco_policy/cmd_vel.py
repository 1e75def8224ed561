"""A velocity-only command stream (geometry_msgs/Twist on /cmd_vel, from a navigation stack) beside the teleop.

What cmd_vel may do: set vx, vy and the yaw rate of the skill in effect, within that skill's range (the policy
loop clamps it as it clamps a teleop's). Nothing else: it cannot choose a skill, stand the robot up, run it or
clear an e-stop (those stay with the teleops and the state service, control_sources), so with the skill at stand
it moves nothing. Its velocity is never more than a teleop's.

How it shares the command with a teleop, which streams SkillCommand at 20 Hz even when its sticks are idle:
- a teleop asking for a velocity (dead-man held, stick moved) has the robot: cmd_vel is ignored until that teleop
  has asked for none for `hold_s`;
- a teleop asking for none passes on its skill with the newest cmd_vel velocity, if that is younger than `hold_s`;
- otherwise each cmd_vel message sets the velocity of the skill in effect.
A cmd_vel stream that stops is treated like a silent teleop: after `hold_s` (the command watchdog's zero-velocity
limit) the velocity is zero; without a teleop the loop's command watchdog then zeroes and stands as it does for
any silent source.

Time is the caller's clock (s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .safety import is_finite_number


@dataclass(frozen=True)
class Velocity:
    """vx, vy (m/s) and yaw rate (rad/s) of a command, REP 103 body axes."""

    vx: float = 0.0
    vy: float = 0.0
    yaw_rate: float = 0.0

    @property
    def moving(self) -> bool:
        return any(v != 0.0 for v in (self.vx, self.vy, self.yaw_rate))

    def as_array(self) -> np.ndarray:
        return np.array([self.vx, self.vy, self.yaw_rate])


def velocity_from_twist(linear_x: float, linear_y: float, angular_z: float) -> Optional[Velocity]:
    """A Twist's planar part as a command, None if any of it is not a finite number (refused)."""
    values = (linear_x, linear_y, angular_z)
    if not all(is_finite_number(v) for v in values):
        return None
    return Velocity(*(float(v) for v in values))


class VelocityInput:
    """Merges cmd_vel into the teleop's skill commands (module docstring)."""

    def __init__(self, hold_s: float) -> None:
        if not hold_s > 0:
            raise ValueError(f"hold_s must be positive, got {hold_s}")
        self.hold_s = hold_s
        self._velocity: Optional[Velocity] = None
        self._velocity_at: Optional[float] = None
        self._teleop_moving_at: Optional[float] = None
        self.received = 0
        self.ignored = 0

    def teleop(self, requested: Velocity, now: float) -> Velocity:
        """The velocity to pass on with a teleop's command."""
        if requested.moving:
            self._teleop_moving_at = now
            return requested
        fresh = self.fresh_velocity(now)
        return fresh if fresh is not None else requested

    def cmd_vel(self, velocity: Velocity, now: float) -> Optional[Velocity]:
        """The velocity to set for the skill in effect, or None while a teleop's sticks have the robot."""
        self.received += 1
        self._velocity, self._velocity_at = velocity, now
        if self.teleop_has_robot(now):
            self.ignored += 1
            return None
        return velocity

    def fresh_velocity(self, now: float) -> Optional[Velocity]:
        """The newest cmd_vel velocity if younger than hold_s."""
        if self._velocity_at is None or now - self._velocity_at > self.hold_s:
            return None
        return self._velocity

    def teleop_has_robot(self, now: float) -> bool:
        return self._teleop_moving_at is not None and now - self._teleop_moving_at <= self.hold_s

    def describe(self, now: float) -> str:
        """For diagnostics: 'idle', 'in use' or 'overridden by a teleop'."""
        if self.fresh_velocity(now) is None:
            return "idle"
        return "overridden by a teleop" if self.teleop_has_robot(now) else "in use"
