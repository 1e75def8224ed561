"""The last line of defence before a motor command leaves the stack, and the sensor checks that feed the controller.

Everything here is plain Python and numpy so the policy node, the simulator runner and the tests share one
implementation. Joint values are in model convention (see joints.py); the node converts to the SDK convention
after filtering. The filter is deliberately at least as strict as the CyberDog 2 firmware's motor mode
(FsmStateMotorCtrl::Run() in cyberdog_locomotion control/src/fsm_states/fsm_state_motor_ctrl.cpp, modelled in
sim/firmware.py): q_des 0.04 rad inside the joint limits and within 8 / 10 / 12 deg (abad / hip / knee) of the
newest MEASURED joint angle, which the firmware enforces in every 2 ms frame by pulling q_des back without a word;
the SDK README's ranges for the rest (kp 0-200, kd 0-10, qd_des +-12 rad/s, |tau| <= 12 N m). The firmware
would otherwise clip silently and the stack would believe it sent something it did not: every clip here is
reported in the reasons and counted in `SafetyFilter.counts`. Its own q_des step limit per 50 Hz tick
(config.SafetyConfig) is a deployment cap on top.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from .config import StackConfig
from .observation import observes_body_velocity
from .plausibility import RateConsistency, body_rotation, joint_change
from .fast_clip import clip
from .firmware_limits import BAND_MARGIN

ArrayLike = Union[np.ndarray, Sequence[float]]
JOINTS_PER_LEG = 3
_FIELDS = ("q", "dq", "kp", "kd", "tau")


@dataclass(frozen=True, eq=False)
class PDCommand:
    """One PD command for all joints, model convention: tau = tau + kp (q - q_meas) + kd (dq - dq_meas).

    Arrays are copied to read-only float64 so a command cannot change after it was filtered. Values are not
    required to be finite here: the SafetyFilter is the place that decides what to do with bad numbers.
    """

    q: np.ndarray
    dq: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    tau: np.ndarray

    def __post_init__(self) -> None:
        lengths = set()
        for name in _FIELDS:
            try:
                value = np.array(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"PDCommand.{name} is not numeric: {exc}") from exc
            if value.ndim != 1:
                raise ValueError(f"PDCommand.{name} must be one-dimensional, got shape {value.shape}")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
            lengths.add(value.size)
        if len(lengths) != 1:
            raise ValueError(f"PDCommand fields have different lengths {sorted(lengths)}")

    @property
    def num_joints(self) -> int:
        return int(self.q.size)

    @classmethod
    def position(cls, q: ArrayLike, kp: Union[float, ArrayLike], kd: Union[float, ArrayLike]) -> "PDCommand":
        """Track joint targets q with the given gains, no velocity target and no feed-forward torque."""
        q = np.asarray(q, dtype=np.float64)
        return cls(q=q, dq=np.zeros_like(q), kp=np.broadcast_to(kp, q.shape), kd=np.broadcast_to(kd, q.shape),
                   tau=np.zeros_like(q))

    @classmethod
    def damping(cls, kd: Union[float, ArrayLike], q: Optional[ArrayLike] = None, num_joints: int = 12) -> "PDCommand":
        """Pure damping (kp = 0, dq = 0, tau = 0): the joints resist motion but hold no position.

        q does not affect the torque (kp is 0). Pass the measured pose anyway, so that q_des never leaves the
        firmware's band around the measured angle (it would be clamped and flagged in err_flag bits 2-4).
        """
        q = np.zeros(num_joints) if q is None else np.asarray(q, dtype=np.float64)
        return cls(q=q, dq=np.zeros_like(q), kp=np.zeros_like(q), kd=np.broadcast_to(kd, q.shape),
                   tau=np.zeros_like(q))

    @classmethod
    def zero_torque(cls, q: Optional[ArrayLike] = None, num_joints: int = 12) -> "PDCommand":
        """No torque at all (every gain and feed-forward 0). q only keeps q_des where the legs are."""
        return cls.damping(0.0, q=q, num_joints=num_joints)

    def is_finite(self) -> bool:
        return all(bool(np.isfinite(getattr(self, name)).all()) for name in _FIELDS)

    def replace(self, **changes: ArrayLike) -> "PDCommand":
        values = {name: getattr(self, name) for name in _FIELDS}
        values.update(changes)
        return PDCommand(**values)


# The SDK README's range for qd_des (rad/s); nothing in the firmware clamps it, so the filter does.
SDK_VELOCITY_LIMIT = 12.0


class SafetyFilter:
    """Clamps every command into what is safe to send; reports what it changed and counts it.

    Limits are the stricter of `config.robot` (hardware, firmware) and `config.safety` (deployment caps).
    `counts` holds how many filtered commands each kind of clip touched ("q_des band", "q_des step",
    "q_des joint limits", "kp", "kd", "tau_des", "dq_des", "damping").
    """

    def __init__(self, config: StackConfig) -> None:
        robot, safety = config.robot, config.safety
        n = robot.num_joints
        if n % JOINTS_PER_LEG:
            raise ValueError(f"{n} joints are not whole legs of {JOINTS_PER_LEG}")
        self.joint_names = robot.joint_names
        self.num_joints = n
        margin = max(robot.limit_margin, safety.limit_margin)
        self.lower = np.asarray(robot.position_lower, dtype=np.float64) + margin
        self.upper = np.asarray(robot.position_upper, dtype=np.float64) - margin
        if np.any(self.lower >= self.upper):
            raise ValueError(f"a joint-limit margin of {margin} rad leaves no room for some joint")
        self.max_step = config.tick_step_rad   # per tick, relative to the previous q_des (our own cap)
        self.band = robot.position_band_rad * BAND_MARGIN   # around the newest measured angle (the firmware's)
        self.kp_max = min(robot.kp_range[1], safety.kp_max)
        self.kd_max = min(robot.kd_range[1], safety.kd_max)
        self.kp_min = min(max(robot.kp_range[0], 0.0), self.kp_max)
        self.kd_min = min(max(robot.kd_range[0], 0.0), self.kd_max)
        self.torque_limit = min(robot.torque_limit, safety.torque_limit)
        self.velocity_limit = min(robot.velocity_limit, safety.velocity_limit, SDK_VELOCITY_LIMIT)
        self.fallback_kd = float(np.clip(config.controller.damping_kd, self.kd_min, self.kd_max))
        self.fallback_q = np.clip(np.asarray(robot.default_pose, dtype=np.float64), self.lower, self.upper)
        self.counts: collections.Counter = collections.Counter()

    # -------------------------------------------------------------------------------------------- public
    def filter(self, cmd: PDCommand, previous_q_des: Optional[ArrayLike] = None,
               measured_q: Optional[ArrayLike] = None) -> tuple[PDCommand, list[str]]:
        """Return (safe command, what was changed and why).

        previous_q_des: the q_des of the last command actually sent (None before the first one); our per-tick
        step limit is measured from it. If it is None the measured pose (measured_q) is the reference.
        measured_q: the newest measured joint angles. q_des is kept within the firmware's band around them (what
        the firmware would otherwise cut in every frame); a position command without them is refused (damping),
        and so is one whose measured pose is too far outside the joint limits for any q_des to satisfy both.
        Where the step window and the band do not overlap, the band wins: it is what the motors enforce.

        The commanded PD torque is deliberately not bounded here: the motors clamp the joint law's torque to
        the torque limit themselves. Load and velocity feed-forward belong in tau_des and qd_des: the band
        caps the position term at kp x 0.14-0.21 rad.
        """
        safe, reasons = self._filter(cmd, previous_q_des, measured_q)
        for reason in reasons:
            self.counts[_kind(reason)] += 1
        return safe, reasons

    def _filter(self, cmd: PDCommand, previous_q_des: Optional[ArrayLike],
                measured_q: Optional[ArrayLike]) -> tuple[PDCommand, list[str]]:
        if not isinstance(cmd, PDCommand):
            raise TypeError(f"SafetyFilter.filter expects a PDCommand, got {type(cmd).__name__}")
        reasons: list[str] = []
        previous, why = self._vector(previous_q_des, "previous_q_des")
        if why:
            reasons.append(f"{why}: ignored, the measured pose is the step reference")
        measured, why = self._vector(measured_q, "measured_q")
        if why:
            return self._fallback(previous, reasons + [f"{why}: no trustworthy pose, damping instead"])
        reference = previous if previous is not None else measured
        if cmd.num_joints != self.num_joints:
            return self._fallback(reference, reasons + [f"command has {cmd.num_joints} joints, expected {self.num_joints}"])
        if not cmd.is_finite():
            bad = [name for name in _FIELDS if not np.all(np.isfinite(getattr(cmd, name)))]
            return self._fallback(reference, reasons + [f"non-finite {', '.join(bad)}: damping instead"])
        kp = self._clip(cmd.kp, self.kp_min, self.kp_max, "kp", reasons)
        if reference is None and (kp > 0).any():
            return self._fallback(None, reasons + ["position command without previous_q_des or measured_q: damping"])
        if measured is None and (kp > 0).any():
            return self._fallback(reference, reasons + [
                "position command without measured_q: the firmware's band around the measured angle cannot be "
                "kept: damping"])
        positional = bool((kp > 0).any())   # without position gain q_des moves nothing: no band needed
        if positional and ((measured - self.band > self.upper) | (measured + self.band < self.lower)).any():
            return self._fallback(reference, reasons + [
                "measured pose too far outside the joint limits for the firmware's band: damping"])
        kd = self._clip(cmd.kd, self.kd_min, self.kd_max, "kd", reasons)
        tau = self._clip(cmd.tau, -self.torque_limit, self.torque_limit, "tau_des", reasons)
        dq = self._clip(cmd.dq, -self.velocity_limit, self.velocity_limit, "dq_des", reasons)
        low, high = self._position_window(reference, cmd.q, reasons)
        q = clip(cmd.q, low, high)
        if measured is not None and positional:
            q = self._banded(q, measured, reasons)
        return PDCommand(q=q, dq=dq, kp=kp, kd=kd, tau=tau), reasons

    # ----------------------------------------------------------------------------------------- internals
    def _banded(self, q: np.ndarray, measured: np.ndarray, reasons: list[str]) -> np.ndarray:
        """q_des within the firmware's band around the measured angle (and still within the joint limits)."""
        low = np.maximum(self.lower, measured - self.band)
        high = np.minimum(self.upper, measured + self.band)
        outside = (q < low - 1e-12) | (q > high + 1e-12)
        if outside.any():
            reasons.append(f"q_des clamped into the firmware's band around the measured angle: {self._names(outside)}")
        return clip(q, low, high)

    def _vector(self, value: Optional[ArrayLike], name: str) -> tuple[Optional[np.ndarray], str]:
        """A finite joint vector, or (None, why not)."""
        if value is None:
            return None, ""
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None, f"{name} is not numeric"
        if array.shape != (self.num_joints,):
            return None, f"{name} has shape {array.shape}, expected ({self.num_joints},)"
        if not np.isfinite(array).all():
            return None, f"{name} is not finite"
        return array, ""

    def _fallback(self, reference: Optional[np.ndarray], reasons: list[str]) -> tuple[PDCommand, list[str]]:
        """Pure damping; q_des stays at the reference (no gain acts on it)."""
        q = self.fallback_q if reference is None else clip(reference, self.lower, self.upper)
        return PDCommand.damping(self.fallback_kd, q=q), reasons

    def _names(self, mask: np.ndarray) -> str:
        return ", ".join(name for name, hit in zip(self.joint_names, mask) if hit)

    def _clip(self, value: np.ndarray, low: Union[float, np.ndarray], high: Union[float, np.ndarray], label: str,
              reasons: list[str]) -> np.ndarray:
        clipped = clip(value, low, high)
        changed = clipped != value
        if changed.any():
            reasons.append(f"{label} clamped: {self._names(changed)}")
        return clipped

    def _position_window(self, reference: Optional[np.ndarray], q: np.ndarray,
                         reasons: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Joint limits intersected with the per-tick step around the (limit-clipped) reference."""
        outside = (q < self.lower) | (q > self.upper)
        if outside.any():
            reasons.append(f"q_des clamped to joint limits: {self._names(outside)}")
        if reference is None:
            return self.lower, self.upper
        ref = clip(reference, self.lower, self.upper)
        low = np.maximum(self.lower, ref - self.max_step)
        high = np.minimum(self.upper, ref + self.max_step)
        stepped = ~outside & ((q < low) | (q > high))
        if stepped.any():
            reasons.append(f"q_des step limited: {self._names(stepped)}")
        return low, high


def _kind(reason: str) -> str:
    """The counter a filter reason belongs to."""
    if "damping" in reason:
        return "damping"
    if "band" in reason:
        return "q_des band"
    if "step limited" in reason:
        return "q_des step"
    if "joint limits" in reason:
        return "q_des joint limits"
    return reason.split(" ")[0]


# ------------------------------------------------------------------------------------------------ sensors
@dataclass(frozen=True)
class JointSample:
    """The latest joint state (model convention) and when it arrived (node clock, s).

    stamp is the sender's time (message header); it defaults to the receive time and must never go backwards.
    """

    q: ArrayLike
    dq: ArrayLike
    received: float
    stamp: Optional[float] = None


@dataclass(frozen=True)
class ImuSample:
    """The latest body orientation (quaternion w, x, y, z) and gyro (rad/s), with receive time and stamp, and the
    accelerometer (m/s^2) where the source reports one (no model observes it; it is checked as a sign of a sound
    IMU, whose attitude estimate depends on it)."""

    quaternion: ArrayLike
    angular_velocity: ArrayLike
    received: float
    stamp: Optional[float] = None
    linear_acceleration: Optional[ArrayLike] = None


@dataclass(frozen=True)
class VelocitySample:
    """The state estimator's body-frame linear velocity (vBody, m/s), with receive time and stamp. Models with a
    base_linear_velocity observation term use it (for them it is a sensor like the others), and so does the
    outer velocity loop (command_feedback.py)."""

    linear_velocity: ArrayLike
    received: float
    stamp: Optional[float] = None


def roll_pitch(quaternion_wxyz: ArrayLike) -> tuple[float, float]:
    """Roll and pitch (rad, ZYX Euler) of a body-in-world quaternion; the heading does not matter here."""
    w, x, y, z = np.asarray(quaternion_wxyz, dtype=np.float64) / np.linalg.norm(quaternion_wxyz)
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(min(1.0, max(-1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


@dataclass
class _StreamClock:
    last_stamp: float = -math.inf


@dataclass(frozen=True)
class Staleness:
    """The oldest of the joint state and IMU streams this tick, when it is past safety.sensor_timeout but not yet
    lost: how long ago its newest sample was received."""

    stream: str
    age_s: float


class SensorMonitor:
    """Decides each tick whether the sensors can be trusted; returns the first fault found, or None.

    It remembers the newest stamp of each stream so a sample older than one already seen is a fault (a replayed
    or reordered message must not drive the legs), and the recent samples so that a rate that disagrees with the
    change of what it measures is a fault of the sensor that reported it (plausibility.py).
    """

    def __init__(self, config: StackConfig) -> None:
        self.num_joints = config.robot.num_joints
        safety = config.safety
        self.timeout = safety.sensor_timeout
        self.lost_after = safety.stale_damping_after
        self.quaternion_tolerance = safety.quaternion_tolerance
        self.max_tilt = safety.max_tilt
        self.joint_velocity_fault = safety.joint_velocity_fault
        self.q_low = np.asarray(config.robot.position_lower) - safety.joint_limit_tolerance
        self.q_high = np.asarray(config.robot.position_upper) + safety.joint_limit_tolerance
        self.joint_names = config.robot.joint_names
        self.max_angular_velocity = safety.max_angular_velocity
        self.max_acceleration = safety.max_acceleration
        self.max_body_speed = safety.max_body_speed
        self.joint_consistency = safety.joint_velocity_consistency
        self.gyro_consistency = safety.gyro_consistency
        self._joint_rates = RateConsistency(safety.consistency_window, joint_change, safety.consistency_max_interval)
        self._gyro_rates = RateConsistency(safety.consistency_window, body_rotation, safety.consistency_max_interval)
        self.needs_velocity = observes_body_velocity(config)
        # the velocity loop reads vBody too: for it a broken estimate is no fault, only a reading not to use
        self.checks_velocity = self.needs_velocity or config.command_feedback.enabled
        self.velocity_fault: Optional[str] = "not checked: neither the model nor the velocity loop uses vBody"
        self._clocks = {"joint state": _StreamClock(), "IMU": _StreamClock(), "body velocity": _StreamClock()}
        self.staleness: Optional[Staleness] = None  # this tick's stale (not lost) joint state or IMU stream
        self._blind: Optional[tuple[float, float]] = None   # the caller's latest stall (check(blind=...))

    def reset(self) -> None:
        """Forget the stamps and samples seen (after a deliberate restart of a sensor source)."""
        for clock in self._clocks.values():
            clock.last_stamp = -math.inf
        self._joint_rates.reset()
        self._gyro_rates.reset()

    def check(self, now: float, joints: Optional[JointSample], imu: Optional[ImuSample],
              velocity: Optional[VelocitySample] = None,
              blind: Optional[tuple[float, float]] = None) -> Optional[str]:
        """The first fault among: missing, malformed, stale, out of order, implausible values; None if healthy.
        The body velocity is checked whenever it is used, and its verdict kept in `velocity_fault`; it is a fault
        of the tick only when the model observes it. blind: the latest (start, end) in which the caller itself did
        not run; it is not counted in the age of a sample received before its end (the sample waited in the
        caller's queue). Sensors that really stopped are judged as time goes on after it."""
        self.staleness = None
        if not is_finite_number(now):
            return f"invalid clock reading {now!r}"
        self._blind = blind
        fault = self._check_joints(now, joints) or self._check_imu(now, imu)
        if self.checks_velocity:
            self.velocity_fault = self._check_velocity(now, velocity)
            if fault is None and self.needs_velocity:
                fault = self.velocity_fault
        return fault

    def _check_joints(self, now: float, sample: Optional[JointSample]) -> Optional[str]:
        if sample is None:
            return "no joint state received"
        fault = self._timing(now, "joint state", sample.received, sample.stamp, graded=True)
        if fault:
            return fault
        q, fault = _finite_vector(sample.q, self.num_joints, "joint positions")
        if fault:
            return fault
        dq, fault = _finite_vector(sample.dq, self.num_joints, "joint velocities")
        if fault:
            return fault
        outside = (q < self.q_low) | (q > self.q_high)
        if np.any(outside):
            j = int(np.argmax(outside))
            return f"joint position {q[j]:.2f} rad of {self.joint_names[j]} beyond its limit: sensor or message error"
        fast = np.abs(dq) > self.joint_velocity_fault
        if np.any(fast):
            j = int(np.argmax(np.abs(dq)))
            return f"joint velocity {dq[j]:.1f} rad/s at joint {j} beyond {self.joint_velocity_fault:.1f}"
        return self._joint_velocity_plausible(_stamp_of(sample), q, dq)

    def _joint_velocity_plausible(self, stamp: float, q: np.ndarray, dq: np.ndarray) -> Optional[str]:
        """The velocity must integrate to the position change (an encoder's velocity is its differentiated
        position); the joint that disagrees most is named."""
        sums = self._joint_rates.update(stamp, q, dq)
        if sums is None:
            return None
        excess = np.abs(sums.residual) - self.joint_consistency
        if np.all(excess <= 0):
            return None
        j = int(np.argmax(excess))
        return (f"joint velocity sensor of {self.joint_names[j]} implausible: its velocity integrates to "
                f"{sums.integral[j]:+.2f} rad over {sums.span_s * 1000:.0f} ms but its position moved "
                f"{sums.change[j]:+.2f} rad (tolerance {self.joint_consistency:g} rad)")

    def _check_imu(self, now: float, sample: Optional[ImuSample]) -> Optional[str]:
        if sample is None:
            return "no IMU sample received"
        fault = self._timing(now, "IMU", sample.received, sample.stamp, graded=True)
        if fault:
            return fault
        quat, fault = _finite_vector(sample.quaternion, 4, "IMU quaternion")
        if fault:
            return fault
        gyro, fault = _finite_vector(sample.angular_velocity, 3, "IMU angular velocity")
        if fault:
            return fault
        fault = self._check_accelerometer(sample.linear_acceleration)
        if fault:
            return fault
        with np.errstate(over="ignore"):  # a huge quaternion has an infinite norm: still a fault, not a warning
            norm = float(np.linalg.norm(quat))
            rate = float(np.linalg.norm(gyro))
        if abs(norm - 1.0) > self.quaternion_tolerance:
            return f"IMU quaternion norm {norm:.3f} is not 1 (tolerance {self.quaternion_tolerance})"
        if rate > self.max_angular_velocity:
            return (f"IMU gyro reads {rate:.3g} rad/s, beyond the sensor's range {self.max_angular_velocity:g} rad/s: "
                    "gyro or message error")
        roll, pitch = roll_pitch(quat)
        if abs(roll) > self.max_tilt or abs(pitch) > self.max_tilt:
            return f"attitude beyond {self.max_tilt} rad: roll {roll:.2f}, pitch {pitch:.2f}"
        return self._gyro_plausible(_stamp_of(sample), quat, gyro)

    def _check_accelerometer(self, acceleration: Optional[ArrayLike]) -> Optional[str]:
        if acceleration is None:  # a source without one (the simulator's harness)
            return None
        values, fault = _finite_vector(acceleration, 3, "IMU accelerometer values")
        if fault:
            return fault
        with np.errstate(over="ignore"):
            magnitude = float(np.linalg.norm(values))
        if magnitude > self.max_acceleration:
            return (f"IMU accelerometer reads {magnitude:.3g} m/s^2, beyond the sensor's range "
                    f"{self.max_acceleration:g} m/s^2: accelerometer or message error")
        return None

    def _gyro_plausible(self, stamp: float, quat: np.ndarray, gyro: np.ndarray) -> Optional[str]:
        """The gyro must integrate to the rotation between the attitudes (the quaternion derivative)."""
        sums = self._gyro_rates.update(stamp, quat, gyro)
        if sums is None:
            return None
        residual = float(np.linalg.norm(sums.residual))
        if residual <= self.gyro_consistency:
            return None
        return (f"IMU gyro implausible: it integrates to {float(np.linalg.norm(sums.integral)):.2f} rad over "
                f"{sums.span_s * 1000:.0f} ms but the attitude turned {float(np.linalg.norm(sums.change)):.2f} rad "
                f"(disagreement {residual:.2f} rad, tolerance {self.gyro_consistency:g} rad)")

    def _check_velocity(self, now: float, sample: Optional[VelocitySample]) -> Optional[str]:
        if sample is None:
            return "no body velocity estimate received (the state estimator's vBody)"
        velocity, malformed = _finite_vector(sample.linear_velocity, 3, "body velocity")
        fault = self._timing(now, "body velocity", sample.received, sample.stamp) or malformed
        with np.errstate(over="ignore"):
            speed = 0.0 if fault else float(np.linalg.norm(velocity))
        if speed > self.max_body_speed:
            fault = (f"body velocity estimate {speed:.3g} m/s beyond {self.max_body_speed:.1f}: "
                     "estimator or message error")
        return fault

    def _timing(self, now: float, stream: str, received: float, stamp: Optional[float],
                graded: bool = False) -> Optional[str]:
        """Staleness from the receive time; ordering from the sender's stamp (or the receive time).

        graded (the joint state and the IMU): a sample past sensor_timeout is no fault until stale_damping_after;
        in between it is reported in `staleness` and the policy loop rides through or stands (config.py)."""
        if not is_finite_number(received):
            return f"{stream} receive time {received!r} is invalid"
        age = now - received
        if self._blind is not None and age > 0:
            start, end = self._blind
            age = max(0.0, age - max(0.0, min(end, now) - max(received, start)))
        if graded and self.timeout < age <= self.lost_after:
            if self.staleness is None or age > self.staleness.age_s:
                self.staleness = Staleness(stream, age)
        elif graded and age > self.lost_after:
            return f"{stream} lost: {age * 1000:.0f} ms without a new sample (limit {self.lost_after * 1000:.0f} ms)"
        elif age > self.timeout:
            return f"{stream} stale: {age * 1000:.0f} ms old (limit {self.timeout * 1000:.0f} ms)"
        if age < -self.timeout:
            return f"{stream} received {-age * 1000:.0f} ms in the future: clock jump?"
        stamp = received if stamp is None else stamp
        if not is_finite_number(stamp):
            return f"{stream} stamp {stamp!r} is invalid"
        clock = self._clocks[stream]
        if stamp < clock.last_stamp:
            return f"{stream} out of order: stamp {stamp:.3f} older than {clock.last_stamp:.3f}"
        clock.last_stamp = stamp
        return None


def _stamp_of(sample: Union[JointSample, ImuSample]) -> float:
    """The sender's stamp, or the receive time without one (both were checked by _timing)."""
    return float(sample.received if sample.stamp is None else sample.stamp)


def is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def finite_vector(value: Optional[ArrayLike], size: int) -> Optional[np.ndarray]:
    """A copy of `value` as `size` finite floats, or None if it is missing, malformed or not finite."""
    if value is None:
        return None
    array, fault = _finite_vector(value, size, "values")
    return None if fault else array.copy()


def _finite_vector(value: ArrayLike, size: int, label: str) -> tuple[np.ndarray, Optional[str]]:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros(size), f"{label} are not numeric"
    if array.shape != (size,):
        return np.zeros(size), f"{label} have shape {array.shape}, expected ({size},)"
    if not np.all(np.isfinite(array)):
        return array, f"{label} contain NaN or inf"
    return array, None
