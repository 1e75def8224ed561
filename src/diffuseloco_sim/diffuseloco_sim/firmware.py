"""The CyberDog 2 motor firmware's protection in motor mode, so the simulator reacts to commands as the robot.

From the motor SDK (see shared reference cyberdog.md): q_des is clamped 0.04 rad inside the joint limits and may
move at most 8/10/12 degrees (abad/hip/knee) per frame (a larger request is clipped here, counted, and flagged
in err_flag bits 2-4 by the robot peer); a command gap over 10 ms scales qd_des and tau_des down;
over 500 ms the motors go to high damping; before the first command the motors are passive. A policy stack that
is safe on the simulator without relying on this layer is safe on the robot: our own safety layer is stricter.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from diffuseloco_policy.config import RobotConfig
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.motor_sdk import MotorCommand

GAP_SCALE_S = 0.010        # command older than this: feed-forward terms scaled down
GAP_DAMPING_S = 0.500      # command older than this: high damping
GAP_FEEDFORWARD_SCALE = 0.0
DAMPING_KD = 5.0           # "high damping" gain of the firmware's fallback, N m s / rad


class MotorFirmware:
    """Accepts command frames as the firmware does and says what the motors execute (SDK convention)."""

    def __init__(self, robot: RobotConfig) -> None:
        convention = JointConvention(robot)
        lower, upper = convention.limits_sdk(robot)
        self.lower, self.upper = lower + robot.limit_margin, upper - robot.limit_margin
        self.max_step = robot.frame_step_rad
        self.kp_max, self.kd_max = robot.kp_range[1], robot.kd_range[1]
        self.torque_limit = robot.torque_limit
        self.reset()

    def reset(self) -> None:
        self._accepted: Optional[MotorCommand] = None
        self._fallback = False  # in high damping after a long gap, until the next frame
        self.step_exceeded = np.zeros(3, dtype=bool)   # abad / hip / knee beyond the step limit in the last frame
        self.step_violations = 0                       # frames that asked for more than the step limit

    def receive(self, cmd: MotorCommand, measured_q: np.ndarray) -> None:
        """One command frame: non-finite frames are dropped; targets are step-limited and kept off the limits."""
        if not _finite(cmd):
            return
        # a frame without position gain (the activation's zero frames, damping) moves no joint toward q_des, so it
        # is no step reference: the next frame is compared with the measured pose, as after a fallback
        fresh = self._accepted is None or self._fallback or not np.any(self._accepted.kp)
        reference = measured_q if fresh else self._accepted.q_des
        self._fallback = False
        requested = np.asarray(cmd.q_des, dtype=np.float64)
        positional = bool(np.any(cmd.kp))
        exceeded = np.abs(requested - reference) > self.max_step + 1e-9
        self.step_exceeded = exceeded.reshape(-1, 3).any(axis=0) & positional
        self.step_violations += int(self.step_exceeded.any())
        q_des = np.clip(requested, reference - self.max_step, reference + self.max_step) if positional else requested
        self._accepted = MotorCommand(
            np.clip(q_des, self.lower, self.upper), np.asarray(cmd.qd_des, dtype=np.float64),
            np.clip(cmd.kp, 0.0, self.kp_max), np.clip(cmd.kd, 0.0, self.kd_max),
            np.clip(cmd.tau, -self.torque_limit, self.torque_limit))

    def execute(self, age_s: float, num_joints: int = 12) -> MotorCommand:
        """What the joint loop runs, given the age of the newest accepted frame."""
        if self._accepted is None:
            return MotorCommand.passive(num_joints)
        if age_s > GAP_DAMPING_S or self._fallback:
            self._fallback = True   # the next frame re-seeds the step limit from the measured pose
            z = np.zeros(num_joints)
            return MotorCommand(z, z, z, np.full(num_joints, DAMPING_KD), z)
        if age_s > GAP_SCALE_S:
            c = self._accepted
            return MotorCommand(c.q_des, c.qd_des * GAP_FEEDFORWARD_SCALE, c.kp, c.kd, c.tau * GAP_FEEDFORWARD_SCALE)
        return self._accepted


def _finite(cmd: MotorCommand) -> bool:
    return all(np.all(np.isfinite(a)) for a in (cmd.q_des, cmd.qd_des, cmd.kp, cmd.kd, cmd.tau))
