"""The CyberDog 2 firmware's motor mode, one 2 ms frame at a time: what the motor boards get from a `motor_ctrl` frame.

One model, used by the simulator (sim/simulator.py), the ROS simulator node (through the simulator) and the LCM
robot peer (bridge/lcm_robot_peer.py). It reproduces two functions of the public firmware source
(MiRoboticsLab/cyberdog_locomotion, shared reference cyberdog-firmware.md):

`FsmStateMotorCtrl::Run()` (control/src/fsm_states/fsm_state_motor_ctrl.cpp), every frame, leg by leg:
  1. Command gap, in MILLISECONDS since the newest frame arrived (`cmd_time_delay`, command_interface.cpp):
     over 10 ms qd_des and tau_des are divided by gap / 10 ms (not zeroed) and err_flag bit 0 is set (cleared
     again by a gap up to 10 ms). Over 500 ms bit 1 is set.
  2. While bit 1 is set the frame is replaced by zeros with kd = 4 until a counter, stepped once per leg, reaches
     5000 (about 2.5 s), then by all zeros (limp). Bit 1 clears only after that wait, on an all-zero received
     frame (|kp|, |kd|, |tau| <= 0.001) arriving with a gap under 500 ms. Bit 1 is also set on entering motor
     mode (OnEnter), so a client must send all-zero frames for ~2.5 s before its gains take effect.
  3. q_des is clamped 0.04 rad inside the abad, (front / rear) hip and knee bounds.
  4. q_des is clamped to the MEASURED joint angle +- 8 / 10 / 12 deg (abad / hip / knee) and err_flag bit 2 / 3 / 4
     is set when it is (`motor_sdk_position_mutation_limit`, on by default). It is not a limit on the change
     between frames. Each leg's pass sets or clears these bits, so the reported bits are the last leg's (RL); this
     model also counts every joint's clamps (`clamp_counts`, `clamped_frames`).
  Nothing clamps kp, kd, qd_des or tau_des here (the motors clamp the torque).

`LegController::UpdateCommand` (common/src/controllers/leg_controller.cpp, `pos_limit_mode` 0 in motor mode):
  5. Soft joint limits: with the joint within 0.05 rad of a bound and the commanded torque estimate
     tau_ff + kp (q_des - q) + kd (qd_des - qd) pushing towards it (beyond 1 N m for the knee), kp and kd of that
     joint are set to 0 and the feed-forward is replaced by the restoring torque 20 x ((bound +- 0.05) - q).

All joint values here are in the firmware's INTERNAL convention (the model convention of joints.py, the LCM
wire's): the bounds and the soft-limit directions are the firmware's. Before the first frame the robot is not in
motor mode (the FSM enters it on the first `motor_ctrl` frame): the motors are passive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from diffuseloco_policy.config import RobotConfig
from diffuseloco_policy.fast_clip import clip
from diffuseloco_policy.motor_sdk import MotorCommand
from diffuseloco_policy.firmware_limits import (  # noqa: F401 - the firmware's numbers, re-exported here
    GAP_WARNING_MS, GAP_ERROR_MS, FALLBACK_KD, RECONNECT_COUNTS, ZERO_TOLERANCE, JOINT_LIMIT_MARGIN,
    POSITION_BAND_DEG, SOFT_LIMIT_DELTA, SOFT_LIMIT_KP, SOFT_LIMIT_KNEE_TAU, FRAME_S, ERR_GAP_WARNING,
    ERR_GAP_DAMPING, ERR_BAND_ABAD, ERR_BAND_HIP, ERR_BAND_KNEE, ERR_BAND_BITS, ERR_FLAG_NAMES,
    decode_err_flag, position_band_rad)

def is_all_zero(cmd: MotorCommand) -> bool:
    """CheckZero(): every kp, kd and tau_des within ZERO_TOLERANCE of 0 (q_des and qd_des do not matter)."""
    return all(bool(np.all(np.abs(a) <= ZERO_TOLERANCE)) for a in (cmd.kp, cmd.kd, cmd.tau))


@dataclass(frozen=True)
class FrameOutcome:
    """One frame: what the motor boards run (internal convention), the err_flag after it, which joints' q_des the
    position band pulled back (with any gain) and which joints the soft limits took over."""

    command: MotorCommand
    err_flag: int
    band_clamped: np.ndarray
    soft_limited: np.ndarray


class MotorFirmware:
    """FsmStateMotorCtrl::Run() + LegController::UpdateCommand for one robot, frame by frame."""

    def __init__(self, robot: RobotConfig, position_band: bool = True) -> None:
        """position_band: the firmware's `motor_sdk_position_mutation_limit` user parameter (on by default)."""
        self.num_joints = robot.num_joints
        self.lower = np.asarray(robot.position_lower, dtype=np.float64)
        self.upper = np.asarray(robot.position_upper, dtype=np.float64)
        self.band = position_band_rad(self.num_joints)
        self.position_band = position_band
        knee = np.tile([False, False, True], self.num_joints // 3)
        self._soft_tau = np.where(knee, SOFT_LIMIT_KNEE_TAU, 0.0)
        # bounds used every frame, computed once (the same numbers the expressions give each frame)
        self._q_des_low, self._q_des_high = self.lower + JOINT_LIMIT_MARGIN, self.upper - JOINT_LIMIT_MARGIN
        self._low_edge, self._high_edge = self.lower + SOFT_LIMIT_DELTA, self.upper - SOFT_LIMIT_DELTA
        self._no_joint = np.zeros(self.num_joints, dtype=bool)   # shared by every frame that flags no joint
        self._no_joint.flags.writeable = False
        self._band_bits_mask = 0
        for bit in ERR_BAND_BITS:
            self._band_bits_mask |= bit
        self.reset()

    def reset(self, activated: bool = False) -> None:
        """Out of motor mode (passive until a frame arrives), or with activated=True already in motor mode with
        err_flag bit 1 cleared (a simulated robot that starts standing under command)."""
        self.in_motor_mode = activated
        self.err_flag = 0 if activated else ERR_GAP_DAMPING
        self.wait_reconnect = 0
        self.frames = 0                      # frames run in motor mode
        self.clamped_frames = 0              # frames in which the band pulled back a joint with kp > 0
        self.clamp_counts = np.zeros(self.num_joints, dtype=np.int64)   # per joint, with kp > 0
        self.soft_limit_frames = 0
        self._last: Optional[tuple] = None   # FrameOutcome's fields: it is built only when `last` is read

    def enter_motor_mode(self) -> None:
        """OnEnter: err_flag bit 1 set (the client must send all-zero frames first), the wait counter at 0."""
        self.in_motor_mode = True
        self.err_flag |= ERR_GAP_DAMPING
        self.wait_reconnect = 0

    def run(self, frame: Optional[MotorCommand], gap_ms: float, q: np.ndarray, qd: np.ndarray) -> MotorCommand:
        """One 2 ms frame: the newest received frame (None before any), the milliseconds since it arrived, the
        measured joint positions and velocities -> what the motor boards run (internal convention)."""
        if frame is None:
            return MotorCommand.passive(self.num_joints)
        if not self.in_motor_mode:
            self.enter_motor_mode()
        q = np.asarray(q, dtype=np.float64)
        qd = np.asarray(qd, dtype=np.float64)
        cmd = self._motor_ctrl(frame, float(gap_ms), q)
        out, soft = self._soft_limits(cmd, q, qd)
        if soft is not self._no_joint:
            self.soft_limit_frames += int(np.count_nonzero(soft) > 0)
        self._last = (out, self.err_flag, self._last_clamped, soft)
        return out

    @property
    def last(self) -> Optional[FrameOutcome]:
        """The latest frame's outcome (None before the first frame in motor mode)."""
        return None if self._last is None else FrameOutcome(*self._last)

    # ------------------------------------------------------------------------------ FsmStateMotorCtrl::Run()
    def _motor_ctrl(self, frame: MotorCommand, gap_ms: float, q: np.ndarray) -> MotorCommand:
        """Runs every simulated 2 ms, so the arrays are copied only where a rule changes them."""
        q_des = np.asarray(frame.q_des, dtype=np.float64)
        qd_des = np.asarray(frame.qd_des, dtype=np.float64)
        kp = np.asarray(frame.kp, dtype=np.float64)
        kd = np.asarray(frame.kd, dtype=np.float64)
        tau = np.asarray(frame.tau, dtype=np.float64)
        self.frames += 1
        # gap rules (the same for every leg, so applied to all joints at once)
        if gap_ms > GAP_WARNING_MS:
            divisor = gap_ms / GAP_WARNING_MS
            qd_des = qd_des / divisor
            tau = tau / divisor
            self.err_flag |= ERR_GAP_WARNING
            if gap_ms > GAP_ERROR_MS:
                self.err_flag |= ERR_GAP_DAMPING
        else:
            self.err_flag &= ~ERR_GAP_WARNING
        if self.err_flag & ERR_GAP_DAMPING:
            q_des, qd_des, kp, kd, tau = self._damping(is_all_zero(frame), gap_ms)
        else:
            self.wait_reconnect = 0
        q_des = clip(q_des, self._q_des_low, self._q_des_high)
        self._last_clamped = self._no_joint
        if self.position_band:
            q_des = self._position_band(q_des, q, kp)
        return MotorCommand(q_des, qd_des, kp, kd, tau)

    def _damping(self, clear: bool, gap_ms: float) -> tuple[np.ndarray, ...]:
        """Leg by leg: zeros, kd 4 while the counter is under 5000; at 5000 an all-zero frame with a gap under
        500 ms clears bit 1 (the legs after that in this frame get the zeros too, counter reset)."""
        n = self.num_joints
        kd = np.zeros(n)
        for leg in range(n // 3):
            joints = slice(3 * leg, 3 * leg + 3)
            if self.err_flag & ERR_GAP_DAMPING:
                self.wait_reconnect += 1
                if self.wait_reconnect < RECONNECT_COUNTS:
                    kd[joints] = FALLBACK_KD
                elif clear and gap_ms < GAP_ERROR_MS:
                    self.err_flag &= ~ERR_GAP_DAMPING
            else:
                self.wait_reconnect = 0
        return np.zeros(n), np.zeros(n), np.zeros(n), kd, np.zeros(n)

    def _position_band(self, q_des: np.ndarray, q: np.ndarray, kp: np.ndarray) -> np.ndarray:
        """q_des kept within the band around the measured angle; each leg sets or clears the band's err_flag bits,
        so the last leg's (RL) remain."""
        n = self.num_joints
        diff = q_des - q
        over = np.abs(diff) > self.band
        if not np.count_nonzero(over):   # the usual frame: nothing to pull back, every band bit cleared
            # (count_nonzero: a fifth of what ndarray.any costs on 12 values, and this runs every 2 ms)
            self.err_flag &= ~self._band_bits_mask
            return q_des
        q_des = np.where(over, q + np.sign(diff) * self.band, q_des)
        for joint, bit in enumerate(ERR_BAND_BITS):
            if over[n - 3 + joint]:
                self.err_flag |= bit
            else:
                self.err_flag &= ~bit
        effective = over & (kp > 0)
        self._last_clamped = effective
        self.clamp_counts += effective
        self.clamped_frames += int(effective.any())
        return q_des

    # ---------------------------------------------------------------------- LegController::UpdateCommand
    def _soft_limits(self, cmd: MotorCommand, q: np.ndarray, qd: np.ndarray) -> tuple[MotorCommand, np.ndarray]:
        low_edge, high_edge = self._low_edge, self._high_edge
        if not np.count_nonzero((q < low_edge) | (q > high_edge)):   # the usual frame: no joint near a bound
            return cmd, self._no_joint
        tau_estimate = cmd.tau + cmd.kp * (cmd.q_des - q) + cmd.kd * (cmd.qd_des - qd)
        at_low = (q < low_edge) & (tau_estimate < -self._soft_tau)
        at_high = (q > high_edge) & (tau_estimate > self._soft_tau)
        soft = at_low | at_high
        if not soft.any():
            return cmd, soft
        restoring = np.where(at_low, SOFT_LIMIT_KP * (low_edge - q), SOFT_LIMIT_KP * (high_edge - q))
        return MotorCommand(cmd.q_des, cmd.qd_des, np.where(soft, 0.0, cmd.kp), np.where(soft, 0.0, cmd.kd),
                            np.where(soft, restoring, cmd.tau)), soft

    # ------------------------------------------------------------------------------------------- reports
    @property
    def clamp_share(self) -> float:
        """Share of motor-mode frames in which the position band pulled back some joint with kp > 0."""
        return self.clamped_frames / self.frames if self.frames else 0.0
