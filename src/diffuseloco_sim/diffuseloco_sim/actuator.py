"""The motor boards: the joint PD law the CyberDog 2's motor drivers close themselves, and their torque limits.

On the robot `LegController::UpdateCommand` (MiRoboticsLab/cyberdog_locomotion,
common/src/controllers/leg_controller.cpp) sends q_des, qd_des, kp, kd and the feed-forward torque to the motor
boards every 2 ms frame, and the boards close tau = tau_ff + kp (q_des - q) + kd (qd_des - qd) themselves, far
faster than the frame (shared reference cyberdog-firmware.md, "Where the joint PD runs"). A simulator that
evaluates that law once per 2 ms physics step and holds the torque is a different actuator: with the robot's
0.00287 kg m^2 rotor inertia a kd of 3 makes its velocity error change sign every step. So the frame is held here
for 2 ms, as the boards hold it, and the law is integrated by MuJoCo:

- "implicit" (the default, docs/research/actuator/README.md): each joint's `general` actuator (gain 1, affine
  bias) gets bias = [0, -kp, -kd] and ctrl = kp q_des + kd qd_des + tau_ff, so the implicitfast integrator treats
  the kd term implicitly and the 2 ms step behaves like the boards' fast loop;
- "explicit": the law is evaluated once per physics step and applied as a torque (bias 0); at a fine step
  (ActuatorConfig.reference(), 0.05 ms) this is the reference the implicit law was measured against.

Either way the total joint torque is limited to +-12 N m times the episode's motor strength, and the firmware's
torque-speed curve (`torque_speed_limits`) narrows that further; both are written to the actuators' forcerange
each physics step. A frame takes effect `latency_s` after its 2 ms boundary (the boards' own delay, randomized):
a physics step that the switch falls inside runs the time-weighted blend of the old and the new law, which is
exact for the explicit reference's fine step and costs nothing extra at 2 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import mujoco
import numpy as np

from diffuseloco_policy.motor_sdk import MotorCommand

# Torque-speed curve of the CyberDog 2 joint actuators, joint side (MiRoboticsLab/cyberdog_locomotion
# common/include/dynamics/actuator_model.hpp GetAcuatorTorque, parameters from common/include/dynamics/cyberdog.hpp)
FULL_TORQUE_SPEED = 11.5192     # n1, rad/s: full torque in either direction up to this speed
ZERO_TORQUE_SPEED = 30.9970     # n2, rad/s: torque in the direction of motion has fallen linearly to zero here
CUTOFF_SPEED = 60.0             # n3, rad/s: no torque at all beyond this speed
PD_METHODS = ("implicit", "explicit")


def torque_speed_limits(qd: np.ndarray, tau_max: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) joint torque the actuator can deliver at joint velocity qd (rad/s), for a torque limit tau_max.

    Why: the firmware's actuator model (actuator_model.hpp) caps the torque in the direction of motion by a
    torque-speed (TN) curve: full tau_max up to n1 = 11.5192 rad/s, falling linearly to zero at n2 = 30.997 rad/s,
    zero from there on (only braking torque left), and no torque in either direction beyond n3 = 60 rad/s. Braking
    torque (against the motion) keeps the full tau_max below n3. The battery-voltage limit in the same function
    never binds inside this curve for the CyberDog 2 (24 V, KT 0.05, R 0.173: it reaches zero torque only at
    ~31 rad/s and allows ~80 N m at rest), so it is not modelled.
    """
    qd = np.asarray(qd, dtype=np.float64)
    tau_max = np.broadcast_to(np.asarray(tau_max, dtype=np.float64), qd.shape)
    speed = np.abs(qd)
    running = speed < CUTOFF_SPEED
    fading = np.clip((ZERO_TORQUE_SPEED - speed) / (ZERO_TORQUE_SPEED - FULL_TORQUE_SPEED), 0.0, 1.0)
    along = np.where(running, fading * tau_max, 0.0)      # torque pushing the way the joint already moves
    against = np.where(running, tau_max, 0.0)             # braking torque
    forward = qd >= 0.0
    return -np.where(forward, against, along), np.where(forward, along, against)


@dataclass(frozen=True)
class MotorLaw:
    """One frame's joint law in affine form, tau = offset - kp q - kd qd (offset = kp q_des + kd qd_des + tau_ff),
    so that frames blend linearly and map directly onto a MuJoCo affine actuator."""

    offset: np.ndarray
    kp: np.ndarray
    kd: np.ndarray

    @staticmethod
    def of(cmd: MotorCommand, kp: np.ndarray, kd: np.ndarray) -> "MotorLaw":
        """The law a frame (internal convention) asks for, with the gains the boards run for it (GainScale)."""
        return MotorLaw(kp * cmd.q_des + kd * cmd.qd_des + cmd.tau, kp, kd)

    def blend(self, new: "MotorLaw", share: float) -> "MotorLaw":
        """The time average over a step in which `new` is in force for `share` of the step and self for the rest.
        Gains that are the same objects in both laws blend to the same values every step: GainScale keeps them."""
        if share >= 1.0:
            return new
        if share <= 0.0:
            return self
        return MotorLaw(_mix(self.offset, new.offset, share), _mix(self.kp, new.kp, share),
                        _mix(self.kd, new.kd, share))

    def torque(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        return self.offset - self.kp * q - self.kd * qd


def _mix(old: np.ndarray, new: np.ndarray, share: float) -> np.ndarray:
    return (1.0 - share) * old + share * new


class GainScale:
    """A frame's kp or kd times the episode's gain error on the boards, as a read-only array, computed once per
    read-only frame array.

    Why: the firmware hands the boards a new frame every 2 ms physics step, but the gains of a tick's frames are
    one read-only array (sim/simulator.py makes them so); scaling it again each step, and rewriting MuJoCo's
    actuator parameters with the same numbers, was a fair share of a step's cost. Only read-only sources are
    remembered (a writable one could change in place); what comes out is never writable, so the boards may tell
    equal gains by identity."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._source: Optional[np.ndarray] = None
        self._scaled: Optional[np.ndarray] = None

    def __call__(self, gains: np.ndarray) -> np.ndarray:
        if gains is self._source:
            return self._scaled
        remember = isinstance(gains, np.ndarray) and not gains.flags.writeable
        if self.scale != 1.0:
            scaled = gains * self.scale
        elif remember and gains.dtype == np.float64:
            scaled = gains
        else:
            scaled = np.array(gains, dtype=np.float64)
        scaled.flags.writeable = False
        if remember:
            self._source, self._scaled = gains, scaled
        return scaled


class MotorBoards:
    """The twelve motor drivers: hold the newest frame's law and have MuJoCo apply it each physics step.

    The joints are the model's qpos[7:19] / qvel[6:18], one actuator each in the same order. This runs every
    physics step, so it writes MuJoCo's arrays only when something changed: the gains when a frame with other
    gains arrives (or while a late frame blends in other gains), the force range when a joint is fast enough for
    the torque-speed curve.
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, method: str, torque_limit: float) -> None:
        if method not in PD_METHODS:
            raise ValueError(f"PD method {method!r}: expected one of {PD_METHODS}")
        self.model, self.data = model, data
        self.implicit = method == "implicit"
        self.torque_limit = float(torque_limit)
        self.dt = float(model.opt.timestep)
        # views into MuJoCo's arrays, fetched once (each attribute access builds a new numpy view)
        self._q, self._qd = data.qpos[7:19], data.qvel[6:18]
        self._ctrl, self._force = data.ctrl, data.actuator_force
        self._range, self._bias = model.actuator_forcerange, model.actuator_biasprm
        self._low, self._high = self._range[:, 0], self._range[:, 1]
        self._bias_kp, self._bias_kd = self._bias[:, 1], self._bias[:, 2]
        model.actuator_gainprm[:, 0] = 1.0
        self._bias[:, :3] = 0.0     # explicit: the torque goes in through ctrl alone
        self.reset(MotorCommand.passive(model.nu))

    def reset(self, cmd: MotorCommand, kp_scale: float = 1.0, kd_scale: float = 1.0, strength: float = 1.0,
              latency_s: float = 0.0) -> None:
        """Start an episode holding cmd, with the episode's gain error, motor strength and board latency."""
        self.kp_scale, self.kd_scale = kp_scale, kd_scale
        self.strength, self.latency_s = strength, latency_s
        self._scale_kp, self._scale_kd = GainScale(kp_scale), GainScale(kd_scale)
        self._current = self._law(cmd)
        self._previous = self._current
        self._step_in_frame = 0
        self._law_written = False
        self._gains_written: tuple = ()           # the (previous, current) gains and share behind the written bias
        self._range_full = False                  # forcerange not yet set to the plain +-limit
        self._qd_before = np.zeros(len(self._qd))

    def _law(self, cmd: MotorCommand) -> MotorLaw:
        return MotorLaw.of(cmd, self._scale_kp(cmd.kp), self._scale_kd(cmd.kd))

    def hold(self, cmd: MotorCommand) -> None:
        """A new firmware frame (internal convention) reaches the boards at this physics step's start."""
        self._previous, self._current = self._law_at_frame_end(), self._law(cmd)
        self._step_in_frame = 0
        self._law_written = False

    def _law_at_frame_end(self) -> MotorLaw:
        """What the boards ran last: the newer frame once its latency has passed (always, for latency < 2 ms)."""
        return self._current if self._step_in_frame * self.dt >= self.latency_s else self._previous

    def _step_share(self) -> float:
        """The share of this physics step in which the current frame is in force (the rest: the previous)."""
        share = ((self._step_in_frame + 1) * self.dt - self.latency_s) / self.dt
        self._step_in_frame += 1
        return min(1.0, max(0.0, share))

    def apply(self) -> None:
        """Write this physics step's law and torque limits into the actuators (call right before mj_step)."""
        blending = self._step_in_frame * self.dt < self.latency_s
        share = self._step_share()
        self._write_limits()
        s = self.strength
        if not self.implicit:
            law = self._previous.blend(self._current, share)
            self._ctrl[:] = s * law.torque(self._q, self._qd)
        elif blending or not self._law_written:
            self._write_law(share, s)
            self._law_written = not blending
        self._qd_before[:] = self._qd

    def _write_law(self, share: float, s: float) -> None:
        """The implicit law into the actuators: ctrl = s x offset, bias = -s x (kp, kd), each blended; the bias
        only when its inputs differ from last time (the same read-only gains and share give the same numbers)."""
        old, new = self._previous, self._current
        written = self._gains_written
        if not (written and old.kp is written[0] and new.kp is written[1] and old.kd is written[2]
                and new.kd is written[3] and share == written[4]):
            law = old.blend(new, share)
            self._bias_kp[:] = -s * law.kp
            self._bias_kd[:] = -s * law.kd
            self._gains_written = (old.kp, new.kp, old.kd, new.kd, share)
        offset = new.offset if share >= 1.0 else old.offset if share <= 0.0 else _mix(old.offset, new.offset, share)
        np.multiply(s, offset, out=self._ctrl)

    def _write_limits(self) -> None:
        """+-limit x strength, narrowed by the torque-speed curve once any joint passes its full-torque speed."""
        limit = self.torque_limit * self.strength
        if np.abs(self._qd).max() < FULL_TORQUE_SPEED:
            if not self._range_full:
                self._low[:], self._high[:] = -limit, limit
                self._range_full = True
            return
        self._low[:], self._high[:] = torque_speed_limits(self._qd, limit)
        self._range_full = False

    def applied_torque(self) -> np.ndarray:
        """The torque the motors delivered over the step just taken (call right after mj_step).

        Explicit: the clamped law at the step's start (MuJoCo's actuator_force). Implicit: the integrator applied
        the kd term at the step's END velocity, so the delivered torque is actuator_force - kd (qd_end - qd_start);
        a joint at its torque limit gets no implicit term (MuJoCo drops the derivative of a clamped force)."""
        force = self._force.copy()
        if not self.implicit:
            return force
        free = (force > self._low) & (force < self._high)
        np.add(force, self._bias_kd * (self._qd - self._qd_before), out=force, where=free)
        return force
