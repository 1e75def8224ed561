"""The outer velocity loop: the command the model is given, so that the body tracks the command the user gave.

Why: a cloned gait keeps a bias its teachers did not have. The experts close their own velocity loop with
integrators on the true body velocity; the clone sees eight frames of proprioception and, in closed loop, trots at
about 0.6 of its command (docs/research/policy_eval/tracking.md). The model treats the command as an input like any other,
so the stack closes the loop around it: an integral term on the measured error (forward and lateral speed from the
state estimator's vBody, yaw rate from the gyro) is added to the user's command before it reaches the goal
tokens. The user's command stays what is reported and scored; only the model's input moves.

Safety: the corrected command never leaves the skill's range (the range the model file accepts, so the model is
never asked for speeds it was not trained on), the correction is bounded per axis, it integrates only while the
policy is RUNNING with fresh measurements (and not while the gait is still accelerating after a new skill or
a changed command), and it decays to zero without them (a lost state estimator leaves the
dog at its uncorrected command, never at a stale, inflated one). A new skill starts from zero: each gait has its own
bias. A command that starts, stops or reverses an axis drops that axis's correction, which was learned for the
other direction.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .config import CommandFeedbackConfig, SkillConfig, StackConfig


@dataclass(frozen=True)
class Measured:
    """What the loop compares the command with: body-frame vx, vy (None without a vBody that SensorMonitor passed)
    and the yaw rate from the gyro (of a tick whose IMU sample it passed)."""

    planar: Optional[np.ndarray]
    yaw_rate: float


class CommandFeedback:
    """Integral correction of the model's command, one update per control tick (not thread-safe)."""

    def __init__(self, config: CommandFeedbackConfig, dt: float) -> None:
        self.config = config
        self.dt = dt
        self._ki = np.asarray(config.ki, dtype=np.float64)
        self._limit = np.asarray(config.max_correction, dtype=np.float64)
        self._leak = math.exp(-dt / config.leak_s)
        self.correction = np.zeros(3)
        self._skill: Optional[int] = None
        self._last_command = np.zeros(3)
        self._settled_from = np.zeros(3)  # the command the current settling period started with
        self._settling_ticks = 0          # ticks left before the loop integrates again

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def reset(self) -> None:
        self.correction = np.zeros(3)

    def update(self, skill: SkillConfig, command: np.ndarray, measured: Optional[Measured], running: bool
               ) -> np.ndarray:
        """The command for the model this tick, after integrating the error of the last one."""
        command = np.asarray(command, dtype=np.float64)
        if not self.enabled or not running:
            self.reset()
            self._skill, self._last_command = None, command.copy()
            return command
        if skill.id != self._skill:
            self.reset()
            self._settle(command)
        self.correction[np.sign(command) != np.sign(self._last_command)] = 0.0  # an axis started, stopped or reversed
        if np.max(np.abs(command - self._settled_from)) > self.config.settle_change:
            self._settle(command)
        self._skill, self._last_command = skill.id, command.copy()
        if self._settling_ticks > 0:
            self._settling_ticks -= 1
        else:
            self._integrate(command, measured)
        return self._within_range(skill, command)

    def _settle(self, command: np.ndarray) -> None:
        """A new skill or command: the gait accelerates toward it on its own first, and that transient is not a
        bias to integrate (integrating it wound the command up to the range's top at every start)."""
        self._settled_from = command.copy()
        self._settling_ticks = int(round(self.config.settle_s / self.dt))

    def _integrate(self, command: np.ndarray, measured: Optional[Measured]) -> None:
        """Integrate where there is a measurement; let the rest decay to zero."""
        achieved = np.full(3, np.nan)  # NaN: not measured this tick
        if measured is not None:
            achieved[2] = measured.yaw_rate
            if measured.planar is not None:
                achieved[:2] = measured.planar[:2]
        fresh = np.isfinite(achieved)
        step = self._ki * (command - np.where(fresh, achieved, 0.0)) * self.dt
        self.correction = np.where(fresh, self.correction + step, self.correction * self._leak)
        self.correction = np.clip(self.correction, -self._limit, self._limit)

    def _within_range(self, skill: SkillConfig, command: np.ndarray) -> np.ndarray:
        """command + correction limited to the skill's range; the correction keeps only what was used (no wind-up
        against a range limit).

        A skill's strafe/turn budget scales vy and the yaw rate together, so a vy correction can pull a turn at
        the budget's edge back by more than the loop's authority on yaw (hypothesis: command yaw -1, vy correction
        -0.2 gave a yaw change of 0.51 against a 0.5 bound). Then the correction is scaled down, by bisection, until
        what it changes stays within the bound on every axis."""
        base = np.array(skill.clamp_command(*command))

        def corrected(scale: float) -> np.ndarray:
            return np.array(skill.clamp_command(*(command + scale * self.correction)))

        def within_bound(out: np.ndarray) -> bool:
            return bool(np.all(np.abs(out - base) <= self._limit))

        out = corrected(1.0)
        if not within_bound(out):
            feasible, infeasible = 0.0, 1.0   # scale 0 gives base itself
            for _ in range(30):
                middle = 0.5 * (feasible + infeasible)
                feasible, infeasible = (middle, infeasible) if within_bound(corrected(middle)) else (feasible, middle)
            out = corrected(feasible)
        self.correction = out - base
        return out


def describe(config: CommandFeedbackConfig) -> str:
    """One line for logs and reports."""
    if not config.enabled:
        return "velocity loop off (the model is given the command as it came)"
    return (f"velocity loop on (integral gains {list(config.ki)} 1/s for vx, vy, yaw rate, corrections at most "
            f"{list(config.max_correction)}, vBody for vx and vy, gyro for yaw rate, waiting {config.settle_s:g} s "
            f"after a new skill or command before it integrates)")


def without_feedback(config: StackConfig) -> StackConfig:
    """The same stack config with the velocity loop off (the raw policy, for comparison)."""
    return dataclasses.replace(config, command_feedback=dataclasses.replace(config.command_feedback, enabled=False))

