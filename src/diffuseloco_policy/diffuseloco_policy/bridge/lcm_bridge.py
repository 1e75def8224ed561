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
from ..motor_sdk import ImuReading, JointState
from ..motor_sdk import MotorCommand as SdkMotorCommand
from .lcm_types import leg_control_data_lcmt, motor_ctrl_lcmt, motor_ctrl_state_lcmt, state_estimator_lcmt

NUM_JOINTS = 12
NUM_LEGS = 4

# Channels and URLs of the motor SDK (cyberdog.md). ttl=0: the default never leaves this host; on the robot the
# NX board and the motion-control board are different hosts, so robot.yaml sets a ttl that reaches the MC board.
MOTOR_CTRL = "motor_ctrl"
MOTOR_CTRL_STATE = "motor_ctrl_state"
LEG_CONTROL_DATA = "leg_control_data"
STATE_ESTIMATOR = "state_estimator"
DEFAULT_LCM_URL = "udpm://239.255.76.67:7667?ttl=0"
DEFAULT_ESTIMATOR_LCM_URL = "udpm://239.255.76.67:7669?ttl=0"

FRAME_RATE_HZ = 500.0          # the firmware's joint loop: one motor_ctrl frame per 2 ms
DEFAULT_HOLD_S = 0.1           # the newest command is re-sent while younger than this
FRAME_STEP_MARGIN = 0.99       # the relay's q_des ramp per frame, as a fraction of the firmware's step limit
# motor_ctrl_state.err_flag bits (SDK README 2.1)
ERR_GAP_WARNING = 0x01         # command gap > 10 ms: qd_des / tau_des decay
ERR_GAP_DAMPING = 0x02         # command gap > 500 ms (and at start-up): high damping until all-zero frames
ERR_STEP_ABAD, ERR_STEP_HIP, ERR_STEP_KNEE = 0x04, 0x08, 0x10
FIRMWARE_DAMPING_GAP_S = 0.5


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
    ctrl_topic_interval: float

    @property
    def damping(self) -> bool:
        return bool(self.err_flag & ERR_GAP_DAMPING)


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
    * Once the newest command is older than `hold_s` the relay sends NOTHING. It never invents commands: when
      the publisher (policy node) dies or hangs, the firmware's own gap protection takes over - after 10 ms it
      scales qd_des / tau_des down, after 500 ms it switches to high damping (kp 0, kd 10) and the robot lies
      down. That is the designed-in, on-robot fail-safe; re-sending a stale command forever would defeat it.
      hold_s (0.1 s = 5 missed policy ticks) rides through scheduling jitter without masking a dead policy.
    * Motor-mode activation (SDK README 2.2 and CustomInterface): the firmware starts with err_flag bit 1 set
      and ignores commands until it has received all-zero frames; the same holds after every > 500 ms gap.
      With `require_activation`, while activation is needed and a fresh command exists, the relay sends
      all-zero frames (limp motors) instead of the command, until a motor_ctrl_state received AFTER the
      activation began reports bit 1 clear; then it forwards the command. Activation is needed at start, when
      the firmware reports bit 1, and after the relay itself has been silent for longer than 500 ms.
    * Step ramp (`max_frame_step`): the firmware bounds the q_des change per frame (8/10/12 deg, err_flag bits
      2-4 otherwise); the policy may change q_des more per 50 Hz tick (config.SafetyConfig). The relay never sends
      a frame whose q_des is further than that from the previous frame's: a larger change is reached over the
      next frames, at most 3 for the shipped per-tick limit. After a frame without position gain (the activation's zero
      frames, damping) the reference is the measured pose (`on_measured`), as in the firmware model
      (sim/firmware.py); before any measurement such a frame is sent as it is.
    """

    def __init__(self, hold_s: float = DEFAULT_HOLD_S, require_activation: bool = True,
                 max_frame_step: Optional[np.ndarray] = None) -> None:
        """max_frame_step: largest q_des change per frame (rad, per joint, SDK order); None sends q_des as given."""
        if hold_s <= 0:
            raise ValueError("hold_s must be positive")
        if max_frame_step is not None and not np.all(np.asarray(max_frame_step) > 0):
            raise ValueError("max_frame_step entries must be positive")
        self.hold_s = hold_s
        self.require_activation = require_activation
        # 1 % under the firmware's bound: the wire carries float32, whose rounding must not tip a step over it
        self.max_frame_step = None if max_frame_step is None else _array(max_frame_step) * FRAME_STEP_MARGIN
        self._last_q_des: Optional[np.ndarray] = None   # q_des of the last frame sent with position gain
        self._measured_q: Optional[np.ndarray] = None   # newest measured joint positions (SDK convention)
        self._lock = threading.Lock()
        self._latest: Optional[SdkMotorCommand] = None
        self._latest_time = -math.inf
        self._last_sent_time = -math.inf
        self._activation_since: Optional[float] = None    # when the current activation began
        self._active = not require_activation
        self.last_state: Optional[MotorCtrlState] = None
        self.frames_sent = 0
        self.zero_frames_sent = 0

    @property
    def active(self) -> bool:
        """Motor mode confirmed: commands are forwarded (always True without `require_activation`)."""
        return self._active

    def submit(self, cmd: SdkMotorCommand, now: float) -> None:
        """A new command (already checked with command_problem)."""
        with self._lock:
            self._latest, self._latest_time = cmd, now

    def on_measured(self, q: np.ndarray) -> None:
        """The newest measured joint positions (SDK convention): the ramp's reference after a gain-free frame."""
        with self._lock:
            self._measured_q = _array(q)

    def on_state(self, state: MotorCtrlState, now: float) -> None:
        """A motor_ctrl_state from the firmware."""
        with self._lock:
            self.last_state = state
            if not self.require_activation:
                return
            if state.damping:
                if self._active:
                    self._active, self._activation_since = False, None
            elif self._activation_since is not None and now > self._activation_since:
                self._active, self._activation_since = True, None

    def fresh(self, now: float) -> bool:
        return self._latest is not None and now - self._latest_time <= self.hold_s

    def frame(self, now: float) -> Optional[SdkMotorCommand]:
        """The frame to send now (SDK user convention), or None: send nothing."""
        with self._lock:
            if not self.fresh(now):
                return None
            if self.require_activation and self._active and now - self._last_sent_time > FIRMWARE_DAMPING_GAP_S:
                self._active = False   # we were silent long enough for the firmware to fall back to damping
            self._last_sent_time = now
            self.frames_sent += 1
            if self._active:
                out = self._ramped(self._latest)
            else:
                if self._activation_since is None:
                    self._activation_since = now
                self.zero_frames_sent += 1
                out = zero_frame()
            self._last_q_des = out.q_des if np.any(out.kp) else None
            return out

    def _ramped(self, cmd: SdkMotorCommand) -> SdkMotorCommand:
        """`cmd` with q_des moved from the last frame's by at most max_frame_step (the same object if within)."""
        reference = self._last_q_des if self._last_q_des is not None else self._measured_q
        if self.max_frame_step is None or reference is None or not np.any(cmd.kp):
            return cmd
        step = np.asarray(cmd.q_des, dtype=np.float64) - reference
        if np.all(np.abs(step) <= self.max_frame_step):
            return cmd
        q_des = reference + np.clip(step, -self.max_frame_step, self.max_frame_step)
        return SdkMotorCommand(q_des, cmd.qd_des, cmd.kp, cmd.kd, cmd.tau)


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
