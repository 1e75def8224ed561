"""The ROS-free core of the LCM bridge: conversions between the CyberDog 2 motor SDK's LCM messages and our data
types, the command relay (hold / re-send / stop, motor-mode activation), and a small LCM endpoint with its own
`handle_timeout` thread. nodes/lcm_bridge_node.py puts ROS around it; bridge/lcm_robot_peer.py plays the robot.

Sign convention (verified against the SDK sources, MiRoboticsLab/cyberdog_motor_sdk src/custom_interface.cpp
and src/CustomInterface.cpp): ON THE LCM WIRE (`motor_ctrl`, `leg_control_data`) joint positions, velocities and
torques are in the firmware's INTERNAL convention (knee positive when bent) - the model convention of joints.py.
The SDK's C++ CustomInterface multiplies by (1, -1, -1) per leg on the way out (MotorCmdSend) and on the way in
(leg data handler) so that its users see the "user" convention (knee negative when bent). Our cyberdog_msgs carry
that user ("SDK") convention, so this bridge does exactly what CustomInterface does: it flips hip and knee with
joints.JointConvention (the one place for it). Gains carry no sign. Cartesian per-leg vectors (p, v, force_est,
force_desired) are not joint values and pass unchanged; the limit flags are per leg and pass unchanged.

Frames (REP 103 / 105): the CyberDog body frame is x forward, y left, z up (SDK README 1.3), which is REP 103's
base frame, so no axis is remapped. sensor_msgs/Imu gets orientation = state_estimator.quat (w, x, y, z; body in
the world frame, ROS stores x, y, z, w - conversions.imu_msg does the reordering by name), angular_velocity =
omegaBody and linear_acceleration = aBody (both body frame). The omegaWorld / aWorld fields are world frame and
not used for the Imu (the SDK's own example copies omegaWorld / aWorld into its "IMU" struct; REP 145 wants body
frame). LegState.header.frame_id is the trunk frame ("base"), Imu.header.frame_id the IMU frame ("imu_link").
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..joints import JointConvention
from ..firmware_limits import (  # noqa: F401 - the firmware's err_flag bits, re-exported for the bridge's users
    ERR_BAND_ABAD, ERR_BAND_BITS, ERR_BAND_HIP, ERR_BAND_KNEE, ERR_GAP_DAMPING, ERR_GAP_WARNING, GAP_ERROR_MS,
    decode_err_flag, position_band_rad)
from ..motor_sdk import ImuReading, JointState
from ..motor_sdk import MotorCommand as SdkMotorCommand
from .stall_posture import StallPosture
from .lcm_types import leg_control_data_lcmt, motor_ctrl_lcmt, motor_ctrl_state_lcmt, spi_data_t, state_estimator_lcmt

NUM_JOINTS = 12
NUM_LEGS = 4

# Channels and URLs of the motor SDK (cyberdog.md). ttl=0: the default never leaves this host; on the robot the
# NX board and the motion-control board are different hosts, so robot.yaml sets a ttl that reaches the MC board.
MOTOR_CTRL = "motor_ctrl"
MOTOR_CTRL_STATE = "motor_ctrl_state"
LEG_CONTROL_DATA = "leg_control_data"
STATE_ESTIMATOR = "state_estimator"
SPI_DATA = "spi_data"
DEFAULT_LCM_URL = "udpm://239.255.76.67:7667?ttl=0"
DEFAULT_ESTIMATOR_LCM_URL = "udpm://239.255.76.67:7669?ttl=0"

FRAME_RATE_HZ = 500.0          # the firmware's joint loop: one motor_ctrl frame per 2 ms
DEFAULT_HOLD_S = 0.1           # the newest command is re-sent while younger than this
FIRMWARE_DAMPING_GAP_S = GAP_ERROR_MS / 1000.0

# spi_data flags per motor (cyberdog_locomotion common/include/utilities/toolkit.hpp ResolveErrorFlags /
# ResolveWarnFlags; the SDK's custom_interface.cpp stops on any flags & MOTOR_FAULT_MASK)
MOTOR_FAULT_MASK = 0x3FFFFFFF  # bits 30-31 are the motor's mode, everything else an error or a warning
MOTOR_MODE_RUNNING = -0x80000000   # mode 2 in bits 30-31 (int32): the motor runs under command
MOTOR_FLAG_NAMES = {0: "offline", 1: "coil thermal shutdown (over 100 C)", 2: "motor driver chip error",
                    3: "bus under voltage (< 10 V)", 4: "bus over voltage (> 30 V)", 5: "B phase overcurrent (> 78 A)",
                    6: "C phase overcurrent (> 78 A)", 8: "encoder not calibrated", 9: "overload error 1",
                    10: "overload error 2", 11: "overload error 3", 12: "overload error 4", 13: "overload error 5",
                    14: "overload error 6", 15: "overload error 7", 16: "overload error 8",
                    17: "A phase overcurrent (> 78 A)", 24: "coil temperature high (over 95 C)",
                    25: "hall sensor calibration error", 26: "torque calibration data illegal",
                    27: "torque calibration zero offset overfit"}
TEMPERATURE_SCALE = 0.1        # spi_data tmp_* are in 0.1 C (leg_controller.cpp)


def decode_motor_flags(flag: int) -> list[str]:
    """The errors and warnings one spi_data flag word reports (its mode bits ignored), lowest bit first."""
    flag &= MOTOR_FAULT_MASK
    names = [MOTOR_FLAG_NAMES.get(bit, f"bit {bit}") for bit in range(30) if flag & (1 << bit)]
    return names


# ----------------------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class LegData:
    """Everything `leg_control_data` carries, joint arrays in SDK (user) convention, float64 / int arrays."""

    q: np.ndarray
    qd: np.ndarray
    tau_est: np.ndarray
    p: np.ndarray
    v: np.ndarray
    force_est: np.ndarray
    force_desired: np.ndarray
    q_abad_limit: np.ndarray
    q_hip_limit: np.ndarray
    q_knee_limit: np.ndarray

    @property
    def joint_state(self) -> JointState:
        return JointState(self.q, self.qd, self.tau_est)


@dataclass(frozen=True)
class MotorCtrlState:
    err_flag: int
    ctrl_topic_interval: float   # the firmware's command gap, milliseconds

    @property
    def damping(self) -> bool:
        return bool(self.err_flag & ERR_GAP_DAMPING)

    def describe(self) -> list[str]:
        return decode_err_flag(self.err_flag)


@dataclass(frozen=True)
class MotorData:
    """What `spi_data` carries: the motor boards' own q, qd, tau (SDK user convention, SDK joint order), each
    motor's flag word, the SPI driver status and the motor temperatures (C)."""

    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    flags: np.ndarray
    driver_status: int
    temperature: np.ndarray

    def faults(self) -> dict[int, list[str]]:
        """Joint index -> what its flag reports, for every motor with flags & MOTOR_FAULT_MASK (what stops the SDK)."""
        return {j: decode_motor_flags(int(f)) for j, f in enumerate(self.flags) if int(f) & MOTOR_FAULT_MASK}


# ------------------------------------------------------------------------------------------------ conversions
def _array(values, n: int = NUM_JOINTS, dtype=np.float64) -> np.ndarray:
    a = np.asarray(values, dtype=dtype)
    if a.shape != (n,):
        raise ValueError(f"expected {n} values, got shape {a.shape}")
    return a


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def motor_ctrl_from_command(cmd: SdkMotorCommand, convention: JointConvention) -> motor_ctrl_lcmt:
    """Our command (SDK user convention) -> the `motor_ctrl` frame on the wire (internal convention)."""
    msg = motor_ctrl_lcmt()
    msg.q_des = _floats(convention.to_model(_array(cmd.q_des)))
    msg.qd_des = _floats(convention.to_model(_array(cmd.qd_des)))
    msg.kp_des = _floats(_array(cmd.kp))
    msg.kd_des = _floats(_array(cmd.kd))
    msg.tau_des = _floats(convention.to_model(_array(cmd.tau)))
    return msg


def command_from_motor_ctrl(msg: motor_ctrl_lcmt, convention: JointConvention) -> SdkMotorCommand:
    """A `motor_ctrl` frame from the wire -> SDK user convention (what the robot peer feeds its firmware model)."""
    return SdkMotorCommand(convention.to_sdk(_array(msg.q_des)), convention.to_sdk(_array(msg.qd_des)),
                           _array(msg.kp_des), _array(msg.kd_des), convention.to_sdk(_array(msg.tau_des)))


def zero_frame() -> SdkMotorCommand:
    """The all-zero frame the SDK uses to enter motor mode and clear err_flag bit 1 (limp motors)."""
    return SdkMotorCommand.passive(NUM_JOINTS)


def is_zero_frame(msg: motor_ctrl_lcmt) -> bool:
    return not any(any(v != 0.0 for v in getattr(msg, f)) for f in motor_ctrl_lcmt.__slots__)


def leg_data_from_lcm(msg: leg_control_data_lcmt, convention: JointConvention) -> LegData:
    """`leg_control_data` (wire, internal convention) -> LegData (SDK user convention, like cyberdog_msgs)."""
    return LegData(
        q=convention.to_sdk(_array(msg.q)), qd=convention.to_sdk(_array(msg.qd)),
        tau_est=convention.to_sdk(_array(msg.tau_est)),
        p=_array(msg.p), v=_array(msg.v), force_est=_array(msg.force_est), force_desired=_array(msg.force_desired),
        q_abad_limit=_array(msg.q_abad_limit, NUM_LEGS, np.int32), q_hip_limit=_array(msg.q_hip_limit, NUM_LEGS, np.int32),
        q_knee_limit=_array(msg.q_knee_limit, NUM_LEGS, np.int32))


def leg_control_data_lcm(data: LegData, convention: JointConvention) -> leg_control_data_lcmt:
    """LegData (SDK user convention) -> `leg_control_data` on the wire (what the robot peer publishes)."""
    msg = leg_control_data_lcmt()
    msg.q, msg.qd, msg.tau_est = (_floats(convention.to_model(_array(a))) for a in (data.q, data.qd, data.tau_est))
    msg.p, msg.v, msg.force_est, msg.force_desired = (
        _floats(_array(a)) for a in (data.p, data.v, data.force_est, data.force_desired))
    msg.q_abad_limit, msg.q_hip_limit, msg.q_knee_limit = (
        [int(v) for v in _array(a, NUM_LEGS, np.int64)] for a in (data.q_abad_limit, data.q_hip_limit, data.q_knee_limit))
    return msg


def imu_reading_from_estimator(msg: state_estimator_lcmt) -> ImuReading:
    """`state_estimator` -> ImuReading: quat (w, x, y, z) as is, omegaBody, aBody (body frame)."""
    return ImuReading(_array(msg.quat, 4), _array(msg.omegaBody, 3), _array(msg.aBody, 3))


def _rotation(quat_wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = quat_wxyz / np.linalg.norm(quat_wxyz)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rpy_from_quaternion(quat_wxyz) -> np.ndarray:
    w, x, y, z = np.asarray(quat_wxyz, dtype=np.float64)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])


def state_estimator_lcm(reading: ImuReading, timestamp: int = 0, position=None, velocity_world=None,
                        contact=None) -> state_estimator_lcmt:
    """An ImuReading (+ optional estimates) -> `state_estimator` as the firmware fills it (robot peer side).
    World-frame fields are the body-frame ones rotated by the orientation; rpy follows from the quaternion."""
    msg = state_estimator_lcmt()
    quat = _array(reading.quaternion, 4)
    rot = _rotation(quat)
    gyro, acc = _array(reading.gyro, 3), _array(reading.accelerometer, 3)
    msg.quat = _floats(quat)
    msg.rpy = _floats(rpy_from_quaternion(quat))
    msg.omegaBody, msg.omegaWorld = _floats(gyro), _floats(rot @ gyro)
    msg.aBody, msg.aWorld = _floats(acc), _floats(rot @ acc)
    if position is not None:
        msg.p = msg.p_abs = _floats(_array(position, 3))
    if velocity_world is not None:
        v_world = _array(velocity_world, 3)
        msg.vWorld = msg.vWorld_abs = _floats(v_world)
        msg.vBody = msg.vBody_abs = _floats(rot.T @ v_world)
    if contact is not None:
        msg.contactEstimate = _floats(_array(contact, 4))
    msg.timestamp = int(timestamp)
    return msg


_GROUPS = ("abad", "hip", "knee")


def _joints_from_groups(msg, prefix: str) -> np.ndarray:
    """spi_data's per-group arrays (x_abad[4], x_hip[4], x_knee[4]) -> one value per joint, SDK order."""
    return np.stack([np.asarray(getattr(msg, f"{prefix}_{g}"), dtype=np.float64) for g in _GROUPS], axis=1).reshape(-1)


def _int32(value) -> int:
    """A 32-bit flag word as the signed int32 LCM carries (bit 31 set: negative)."""
    v = int(value) & 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def motor_data_from_lcm(msg: spi_data_t, convention: JointConvention) -> MotorData:
    """`spi_data` (wire, internal convention, per joint group) -> MotorData (SDK user convention, per joint)."""
    return MotorData(q=convention.to_sdk(_joints_from_groups(msg, "q")), qd=convention.to_sdk(_joints_from_groups(msg, "qd")),
                     tau=convention.to_sdk(_joints_from_groups(msg, "tau")), flags=_array(msg.flags, NUM_JOINTS, np.int64),
                     driver_status=int(msg.spi_driver_status),
                     temperature=_joints_from_groups(msg, "tmp") * TEMPERATURE_SCALE)


def spi_data_lcm(data: MotorData, convention: JointConvention) -> spi_data_t:
    """MotorData -> `spi_data` on the wire (what the robot peer publishes)."""
    msg = spi_data_t()
    groups = {"q": convention.to_model(_array(data.q)), "qd": convention.to_model(_array(data.qd)),
              "tau": convention.to_model(_array(data.tau))}
    for prefix, values in groups.items():
        for j, g in enumerate(_GROUPS):
            setattr(msg, f"{prefix}_{g}", _floats(values.reshape(NUM_LEGS, 3)[:, j]))
    tenths = np.round(_array(data.temperature) / TEMPERATURE_SCALE).astype(np.int64).reshape(NUM_LEGS, 3)
    for j, g in enumerate(_GROUPS):
        setattr(msg, f"tmp_{g}", [int(v) for v in tenths[:, j]])
    msg.flags = [_int32(f) for f in _array(data.flags, NUM_JOINTS, np.int64)]
    msg.spi_driver_status = int(data.driver_status)
    return msg


def motor_ctrl_state_from_lcm(msg: motor_ctrl_state_lcmt) -> MotorCtrlState:
    return MotorCtrlState(int(msg.err_flag), float(msg.ctrl_topic_interval))


def motor_ctrl_state_lcm(state: MotorCtrlState) -> motor_ctrl_state_lcmt:
    msg = motor_ctrl_state_lcmt()
    msg.err_flag, msg.ctrl_topic_interval = int(state.err_flag), float(state.ctrl_topic_interval)
    return msg


def command_problem(cmd: SdkMotorCommand) -> Optional[str]:
    """Why a command must not be forwarded (wrong length, non-finite value), or None when it may."""
    for name in ("q_des", "qd_des", "kp", "kd", "tau"):
        a = np.asarray(getattr(cmd, name), dtype=np.float64)
        if a.shape != (NUM_JOINTS,):
            return f"{name} has shape {a.shape}, expected ({NUM_JOINTS},)"
        if not np.all(np.isfinite(a)):
            return f"{name} has non-finite values"
    return None


# ------------------------------------------------------------------------------------------- command relay
class CommandRelay:
    """What to send in each 2 ms firmware frame. ROS-free and clock-free (the caller passes `now`, monotonic s).

    * The newest valid command is held and re-sent every frame while it is younger than `hold_s`: the policy
      runs at 50 Hz, the firmware expects a frame every 2 ms and flags a gap over 10 ms.
    * Once the newest command is older than `hold_s` the policy node has stalled or died. With a `stall_posture`
      (stall_posture.py) the relay then stands the dog from the last target it sent, holds the stand for a few
      seconds in case the policy comes back, lies it down and goes silent; without one it goes silent at once.
      Silence leaves the dog to the firmware's own gap rules (FsmStateMotorCtrl::Run(), sim/firmware.py): over
      10 ms qd_des and tau_des divided by gap / 10 ms, over 500 ms zeros with kd 4 for about 2.5 s, then limp
      motors, which drop a trotting dog. hold_s (0.1 s = 5 missed policy ticks) rides through scheduling jitter
      without masking a dead policy; a fresh command ends the stall posture at once.
    * Motor-mode activation: the firmware sets err_flag bit 1 on entering motor mode and after every gap over
      500 ms, replaces every frame by zeros (kd 4) for about 2.5 s, and clears the bit only after that wait, on
      an all-zero frame. With `require_activation`, while activation is needed and a fresh command exists, the
      relay sends all-zero frames (limp motors) instead of the command, until a motor_ctrl_state received AFTER
      the activation began reports bit 1 clear; then it forwards the command. Activation is needed at start, when
      the firmware reports bit 1, and after the relay itself has been silent for longer than 500 ms.
    * Setpoint between ticks (`advance_s`): the policy sends 50 commands a second, the relay 500 frames; each
      frame's q_des is the command's moved along its qd_des by the command's age (up to one tick), so the
      setpoint moves with the joint as the plan says instead of falling behind it for 20 ms.
    * Position band: the firmware pulls q_des back to the MEASURED joint angle +- 8 / 10 / 12 deg (abad / hip /
      knee) in every frame and reports it in motor_ctrl_state.err_flag bits 2-4; the relay counts those reports
      (`firmware_clamps`, per bit `firmware_clamp_counts`) so that no clamp goes unreported. It does not clip q_des
      itself: the leg data it has are older than the firmware's, and a band around them cut a fast joint's
      setpoint the firmware would have let through (in simulation a bridge that banded per frame clipped 5-12 %
      of a gait's frames, where the firmware clamps 2-4 %). The policy node's safety filter keeps each
      published q_des inside the band around the angle it measured.
    * Motor fault (`motor_fault`): the official SDK stops its control loop on any spi_data motor flag; the relay
      latches the fault and from then on sends damping frames (kp 0, kd `fault_kd`, no torque) whatever comes
      in, until the bridge is restarted.
    """

    def __init__(self, hold_s: float = DEFAULT_HOLD_S, require_activation: bool = True, fault_kd: float = 4.0,
                 stall_posture: Optional[StallPosture] = None, advance_s: float = 0.0) -> None:
        """fault_kd: the damping gain sent after a motor fault (the firmware's own fallback uses 4).
        stall_posture: what to send once commands stop (None: nothing). advance_s: each re-sent frame's q_des
        moves along its qd_des for up to this long (MotorCommand.advanced; the policy's tick, 0 = held)."""
        if hold_s <= 0:
            raise ValueError("hold_s must be positive")
        self.hold_s = hold_s
        self.require_activation = require_activation
        self.fault_kd = float(fault_kd)
        self._measured_q: Optional[np.ndarray] = None   # newest measured joint positions (SDK convention)
        self._lock = threading.Lock()
        self._latest: Optional[SdkMotorCommand] = None
        self._latest_time = -math.inf
        self._last_sent_time = -math.inf
        self._activation_since: Optional[float] = None    # when the current activation began
        self._active = not require_activation
        self.fault: Optional[str] = None
        self.last_state: Optional[MotorCtrlState] = None
        self.frames_sent = 0
        self.zero_frames_sent = 0
        self.firmware_clamps = 0                        # motor_ctrl_state reports with a band bit (2-4) set
        self.firmware_clamp_counts = {"abad": 0, "hip": 0, "knee": 0}
        self.stall_posture = stall_posture
        self.advance_s = float(advance_s)
        self._last_forwarded_q: Optional[np.ndarray] = None   # q_des of the last command frame sent (SDK)
        self._stall_from: Optional[np.ndarray] = None        # where the current stall posture started
        self.stalls = 0                                        # stall postures begun
        self.stall_frames = 0

    @property
    def active(self) -> bool:
        """Motor mode confirmed: commands are forwarded (always True without `require_activation`)."""
        return self._active

    def submit(self, cmd: SdkMotorCommand, now: float) -> None:
        """A new command (already checked with command_problem)."""
        with self._lock:
            self._latest, self._latest_time = cmd, now

    def on_measured(self, q: np.ndarray) -> None:
        """The newest measured joint positions (SDK convention): where the damping frames after a fault hold."""
        with self._lock:
            self._measured_q = _array(q)

    def motor_fault(self, reason: str) -> bool:
        """Latch a motor fault (spi_data flags); True the first time."""
        with self._lock:
            first = self.fault is None
            if first:
                self.fault = reason
            return first

    def on_state(self, state: MotorCtrlState, now: float) -> None:
        """A motor_ctrl_state from the firmware."""
        with self._lock:
            self.last_state = state
            self._count_clamps(state.err_flag)
            if not self.require_activation:
                return
            if state.damping:
                if self._active:
                    self._active, self._activation_since = False, None
            elif self._activation_since is not None and now > self._activation_since:
                self._active, self._activation_since = True, None

    def _count_clamps(self, err_flag: int) -> None:
        bits = [name for name, bit in zip(("abad", "hip", "knee"), ERR_BAND_BITS) if err_flag & bit]
        if bits:
            self.firmware_clamps += 1
            for name in bits:
                self.firmware_clamp_counts[name] += 1

    def fresh(self, now: float) -> bool:
        return self._latest is not None and now - self._latest_time <= self.hold_s

    def frame(self, now: float) -> Optional[SdkMotorCommand]:
        """The frame to send now (SDK user convention), or None: send nothing."""
        with self._lock:
            if self.fault is not None:
                self._last_sent_time = now
                self.frames_sent += 1
                return self._damping()
            if self.require_activation and self._active and now - self._last_sent_time > FIRMWARE_DAMPING_GAP_S:
                self._active = False   # we were silent long enough for the firmware to fall back to damping
            if not self.fresh(now):
                return self._stall_frame(now)
            self._stall_from = None
            self._last_sent_time = now
            self.frames_sent += 1
            if self._active:
                frame = self._latest.advanced(now - self._latest_time, self.advance_s)
                self._last_forwarded_q = np.asarray(frame.q_des, dtype=np.float64)
                return frame
            if self._activation_since is None:
                self._activation_since = now
            self.zero_frames_sent += 1
            return zero_frame()

    def stall_phase(self, now: float) -> str:
        """'' while commands are fresh (or no stall posture runs), else StallPosture.phase()."""
        with self._lock:
            if self.stall_posture is None or self._stall_from is None or self.fresh(now):
                return ""
            return self.stall_posture.phase(self._stall_elapsed(now))

    def _stall_elapsed(self, now: float) -> float:
        """Seconds since the newest command went stale (its hold time ran out)."""
        return now - self._latest_time - self.hold_s

    def _stall_frame(self, now: float) -> Optional[SdkMotorCommand]:
        """The stall posture's frame, or None: no posture, nothing was forwarded yet, motor mode not active, or the
        posture is over."""
        if self.stall_posture is None or self._last_forwarded_q is None or not self._active:
            return None
        if self._stall_from is None:
            self._stall_from = self._last_forwarded_q.copy()
            self.stalls += 1
        frame = self.stall_posture.frame(self._stall_elapsed(now), self._stall_from)
        if frame is None:
            return None
        self._last_sent_time = now
        self.frames_sent += 1
        self.stall_frames += 1
        return frame

    def _damping(self) -> SdkMotorCommand:
        q = self._measured_q if self._measured_q is not None else np.zeros(NUM_JOINTS)
        z = np.zeros(NUM_JOINTS)
        return SdkMotorCommand(q.copy(), z, z, np.full(NUM_JOINTS, self.fault_kd), z)

# -------------------------------------------------------------------------------------------- LCM endpoint
_MEMQ_INSTANCES: dict[str, object] = {}
_HANDLED: set[int] = set()
_REGISTRY_LOCK = threading.Lock()


def open_lcm(url: str):
    """An LCM instance for `url`. memq:// is per instance in LCM, so memq URLs share one process-wide instance
    (that is what lets the in-process fallback test put the bridge and the robot peer on one queue)."""
    import lcm  # imported here so the conversions above work without the lcm package

    if url.startswith("memq://"):
        with _REGISTRY_LOCK:
            if url not in _MEMQ_INSTANCES:
                _MEMQ_INSTANCES[url] = lcm.LCM(url)
            return _MEMQ_INSTANCES[url]
    return lcm.LCM(url)


class LcmEndpoint:
    """One LCM instance and a thread running `handle_timeout` on it (one handling thread per instance: a
    shared memq instance is handled by the first endpoint that starts)."""

    def __init__(self, url: str, name: str = "lcm") -> None:
        self.url, self.name = url, name
        self.lc = open_lcm(url)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.errors = 0

    def subscribe(self, channel: str, decode: Callable, handler: Callable) -> None:
        """handler(decoded message); messages that fail to decode (fingerprint mismatch) are counted, not raised."""
        def callback(_channel: str, data: bytes) -> None:
            try:
                msg = decode(data)
            except ValueError:
                self.errors += 1
                return
            handler(msg)
        self.lc.subscribe(channel, callback)

    def publish(self, channel: str, msg) -> None:
        self.lc.publish(channel, msg.encode())

    def start(self) -> None:
        with _REGISTRY_LOCK:
            if id(self.lc) in _HANDLED:
                return
            _HANDLED.add(id(self.lc))
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-handle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.lc.handle_timeout(50)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            with _REGISTRY_LOCK:
                _HANDLED.discard(id(self.lc))
            self._thread = None
