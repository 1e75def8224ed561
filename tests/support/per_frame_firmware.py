"""The firmware model this project used before it followed the firmware source: kept only as a negative control
for tests/test_firmware.py, which must tell it apart from the real behaviour.

Its semantics (all of them wrong against FsmStateMotorCtrl::Run()): q_des limited to 8 / 10 / 12 deg from the
PREVIOUS frame's q_des (not from the measured angle); a gap over 10 ms ZEROES qd_des and tau_des; a gap
over 500 ms gives kd 5 only until the next frame; no activation wait on entering motor mode; no soft joint
limits. Same interface as sim.firmware.MotorFirmware.run (internal convention, gap in ms).
"""

from __future__ import annotations

import numpy as np

from diffuseloco_sim.firmware import position_band_rad
from diffuseloco_policy.motor_sdk import MotorCommand


class PerFrameFirmware:
    def __init__(self, robot) -> None:
        self.lower = np.asarray(robot.position_lower) + robot.limit_margin
        self.upper = np.asarray(robot.position_upper) - robot.limit_margin
        self.step = position_band_rad(robot.num_joints)
        self.err_flag = 0
        self._accepted = None
        self._seen = None

    def run(self, frame, gap_ms, q, qd) -> MotorCommand:
        if frame is None:
            return MotorCommand.passive(len(self.lower))
        if frame is not self._seen:       # a new frame: step-limit it against the previous accepted one
            self._seen = frame
            reference = q if self._accepted is None or not np.any(self._accepted.kp) else self._accepted.q_des
            q_des = np.clip(frame.q_des, reference - self.step, reference + self.step) if np.any(frame.kp) else frame.q_des
            self._accepted = MotorCommand(np.clip(q_des, self.lower, self.upper), frame.qd_des, frame.kp, frame.kd,
                                          frame.tau)
        c, z = self._accepted, np.zeros(len(self.lower))
        if gap_ms > 500.0:
            self.err_flag |= 0x03
            return MotorCommand(z, z, z, np.full(len(z), 5.0), z)
        if gap_ms > 10.0:
            self.err_flag |= 0x01
            return MotorCommand(c.q_des, c.qd_des * 0.0, c.kp, c.kd, c.tau * 0.0)
        self.err_flag = 0
        return c
