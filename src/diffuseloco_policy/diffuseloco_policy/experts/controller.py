"""Model-based expert: a phase-clock gait controller that acts exactly like the learned policy will.

Every 50 Hz tick it reads what the robot measures (joint state, IMU) plus the true body velocity (allowed for
experts only) and returns joint position targets in model convention, to be tracked by the fixed Kp/Kd of the
config. The recipe follows /work/shared/reference/gaits.md: stance feet sweep backwards at the commanded
velocity (+ yaw), swing feet follow a raised-cosine arc to a Raibert touchdown point, foot heights correct roll
and pitch, integrators remove steady velocity error, analytic IK maps feet to joints, and two feed-forwards
(velocity Kd/Kp qdot_ref and gravity -J^T f / Kp) make a pure position target produce the right torques.
The output is then clamped inside the joint limits and rate-limited to what the firmware accepts per frame,
so every recorded action is one the real robot would execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..config import StackConfig
from ..observation import RobotState, projected_gravity
from . import kinematics as kin
from .gaits import GAITS, STAND, GaitClock

GRAVITY = 9.81


@dataclass(frozen=True)
class ExpertParams:
    """Tuning of the expert controller (numbers from gaits.md unless noted)."""

    foot_depth: float = 0.243          # m, nominal foot-centre depth below the hip (the default pose's)
    inward: float = 0.03               # m, feet shifted toward the body centre line (needed for pace)
    com_shift_x: float = 0.012         # m, feet placed under the whole-body COM, which sits forward
    lookahead: float = 0.01            # s, the trajectory is sampled this far ahead to lead the PD lag
    raibert_gain: float = 0.08         # s, touchdown correction per m/s of velocity error
    raibert_clip: float = 0.08         # m
    posture_gain: float = 1.0          # m/m/rad, foot-height correction of roll and pitch
    posture_rate_gain: float = 0.05    # m/m/(rad/s)
    integral_gain: float = 2.0         # 1/s on vx, vy, yaw-rate error
    integral_limit: float = 0.4        # m/s or rad/s
    yaw_gain: float = 1.0              # proportional yaw-rate correction
    accel_limit: float = 1.5           # m/s^2, slew of the tracked linear command
    yaw_accel_limit: float = 3.0       # rad/s^2
    mass: float = 8.76                 # kg, the nominal robot's (payload unknown to the expert)
    stand_return_speed: float = 0.05   # m/s, standing feet drift back to the nominal stance
    stance_box: tuple[float, float] = (0.14, 0.08)   # m, |dx|, |dy| a stance foot may sweep from nominal
    rate_limit: bool = False           # firmware per-frame q_des step limit, applied per 50 Hz tick
    step_limit_scale: float = 1.0      # frames per tick the limit is granted for (2 = frames sent at 100 Hz)
    load_ramp: float = 0.2            # fraction of stance over which a foot takes up / gives up its load
    swing_ff: float = 1.0              # fraction of the Kd/Kp velocity feed-forward used on swing legs
    leg_uniform_limit: bool = False    # scale a leg's whole step (keeps the foot path) instead of clipping joints


class ExpertController:
    """Stand, trot, pace and bound behind one `act` call, with smooth switches between them."""

    def __init__(self, config: StackConfig, params: Optional[ExpertParams] = None) -> None:
        self.config = config
        self.p = params or ExpertParams()
        self.dt = config.rates.control_dt
        robot = config.robot
        self.kp, self.kd = robot.kp, robot.kd
        margin = robot.limit_margin
        self.q_low = np.asarray(robot.position_lower).reshape(4, 3) + margin
        self.q_high = np.asarray(robot.position_upper).reshape(4, 3) - margin
        p = self.p
        self.max_step = np.tile(np.radians(robot.max_target_step_deg), (4, 1)) * p.step_limit_scale
        self.nominal = kin.HIP_ORIGINS + np.stack(
            [np.full(4, p.com_shift_x), kin.SIDE * (kin.ABAD_OFFSET - p.inward), np.full(4, -p.foot_depth)], axis=1)
        self.reset()

    # ----------------------------------------------------------------------------------------------- state
    def reset(self, joint_target: Optional[np.ndarray] = None, skill: Union[int, str] = STAND) -> None:
        """Forget the past: standing on the given (default) pose, integrators empty."""
        q0 = np.asarray(self.config.robot.default_pose if joint_target is None else joint_target, dtype=np.float64)
        self.last_target = q0.reshape(4, 3).copy()
        self.feet = kin.forward(self.last_target)
        self.anchor = self.feet[:, :2].copy()
        self.stance = np.ones(4, dtype=bool)
        self.latched = np.ones(4, dtype=bool)
        self.clock = GaitClock(GAITS["trot"])
        self.skill = STAND
        self.cmd = np.zeros(3)
        self.integral = np.zeros(3)
        self.unlimited_target = self.last_target.copy()
        self.set_skill(skill)

    def set_skill(self, skill: Union[int, str]) -> None:
        """Select the gait to glide into (a name or a config skill id)."""
        name = self.config.skill(skill).name if isinstance(skill, int) else skill
        if name != STAND and name not in GAITS:
            raise ValueError(f"no expert for skill {name!r}; have {sorted(GAITS)} and {STAND!r}")
        self.skill = name
        if name != STAND:
            self.clock.target = GAITS[name]

    # ------------------------------------------------------------------------------------------------- act
    def act(self, state: RobotState, base_velocity: np.ndarray, command: np.ndarray,
            skill: Union[int, str, None] = None) -> np.ndarray:
        """One tick: measured state + true body-frame velocity (vx, vy) + command -> joint targets (12,)."""
        if skill is not None:
            self.set_skill(skill)
        standing = self._update_mode()
        command = np.zeros(3) if self.skill == STAND else np.asarray(command, dtype=np.float64)
        self._slew_command(command)
        measured = np.array([base_velocity[0], base_velocity[1], state.angular_velocity[2]])
        v_eff = self._velocity_feedback(measured, active=not standing)
        if not standing:
            self.clock.advance(self.dt)
        pos, vel = self._foot_plan(v_eff, measured, standing)
        pos[:, 2] += self._posture_offsets(state)
        target = self._joint_targets(pos, vel, state)
        return self._limit(target).ravel().copy()

    def _update_mode(self) -> bool:
        """Stand: legs latch into stance as their swings end. Leaving stand restarts the clock once all are down."""
        if self.skill == STAND:
            self.latched |= self.stance
            return bool(self.latched.all())
        if self.latched.all():
            self.clock.restart(GAITS[self.skill])
            self.latched[:] = False
            self.stance = self.clock.leg_phases(self.p.lookahead) < self.clock.duty
            self.anchor = self.feet[:, :2].copy()
            return False
        if self.latched.any():      # still settling into a stand: keep standing until every foot is down
            self.latched |= self.stance
            return False
        return False

    def _slew_command(self, command: np.ndarray) -> None:
        limit = np.array([self.p.accel_limit, self.p.accel_limit, self.p.yaw_accel_limit]) * self.dt
        self.cmd += np.clip(command - self.cmd, -limit, limit)

    def _velocity_feedback(self, measured: np.ndarray, active: bool) -> np.ndarray:
        """Commanded (vx, vy, yaw rate) plus integral action and a yaw-rate P term."""
        p = self.p
        if active:
            self.integral += p.integral_gain * (self.cmd - measured) * self.dt
            self.integral = np.clip(self.integral, -p.integral_limit, p.integral_limit)
        else:
            self.integral *= 0.9
        v_eff = self.cmd + self.integral
        v_eff[2] += p.yaw_gain * (self.cmd[2] - measured[2])
        return v_eff

    # ----------------------------------------------------------------------------------------- foot plan
    def _foot_plan(self, v_eff: np.ndarray, measured: np.ndarray, standing: bool) -> tuple[np.ndarray, np.ndarray]:
        """Foot positions (4, 3) and velocities (4, 3) in the trunk frame for this tick."""
        nom_xy = self.nominal[:, :2]
        # Velocity of the ground under each foot relative to the body is -(v + w x r).
        foot_speed = v_eff[:2] + v_eff[2] * np.stack([-nom_xy[:, 1], nom_xy[:, 0]], axis=1)
        if standing or self.skill == STAND:
            foot_speed[:] = 0.0
        phases = self.clock.leg_phases(self.p.lookahead)
        duty, period = self.clock.duty, self.clock.period
        stance_now = self.latched | (phases < duty)
        pos = np.empty((4, 3))
        vel = np.zeros((4, 3))
        t_stance, t_swing = duty * period, (1.0 - duty) * period
        raibert = np.clip(self.p.raibert_gain * (measured[:2] - self.cmd[:2]), -self.p.raibert_clip, self.p.raibert_clip)
        for leg in range(4):
            if stance_now[leg]:
                if not self.stance[leg]:
                    self.anchor[leg] = self.feet[leg, :2]          # touchdown where the swing ended
                pos[leg, :2], vel[leg, :2] = self._stance_foot(leg, foot_speed[leg], standing)
            else:
                if self.stance[leg]:
                    self.anchor[leg] = self.feet[leg, :2]          # lift off where the stance ended
                s = (phases[leg] - duty) / (1.0 - duty)
                touchdown = nom_xy[leg] + foot_speed[leg] * t_stance / 2 + raibert
                pos[leg], vel[leg] = self._swing_foot(leg, s, touchdown, -foot_speed[leg], t_swing)
            if stance_now[leg]:
                pos[leg, 2] = self.nominal[leg, 2]
        self.stance = stance_now
        self.feet = pos.copy()
        return pos, vel

    def _stance_foot(self, leg: int, foot_speed: np.ndarray, standing: bool) -> tuple[np.ndarray, np.ndarray]:
        """Stance foot: integrate the backwards sweep; a standing foot creeps back to the nominal stance."""
        nom = self.nominal[leg, :2]
        if self.latched[leg]:
            step = np.clip(nom - self.anchor[leg], -self.p.stand_return_speed * self.dt, self.p.stand_return_speed * self.dt)
            self.anchor[leg] = self.anchor[leg] + step
            return self.anchor[leg].copy(), step / self.dt
        self.anchor[leg] = self.anchor[leg] - foot_speed * self.dt
        box = np.array(self.p.stance_box)
        self.anchor[leg] = np.clip(self.anchor[leg], nom - box, nom + box)
        return self.anchor[leg].copy(), -foot_speed

    def _swing_foot(self, leg: int, s: float, touchdown: np.ndarray, ground_speed: np.ndarray,
                    t_swing: float) -> tuple[np.ndarray, np.ndarray]:
        """Swing foot: cubic Hermite from lift-off to touchdown under a raised-cosine height arc.

        The horizontal path leaves and lands with the stance feet's ground speed, so the foot neither scuffs
        nor makes the joint targets jump at lift-off and touchdown (jumps the firmware's step limit would cut).
        """
        h = self.clock.swing_height
        p0, p1, v = self.anchor[leg], touchdown, ground_speed * t_swing
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        pos = np.empty(3)
        vel = np.empty(3)
        pos[:2] = h00 * p0 + h10 * v + h01 * p1 + h11 * v
        vel[:2] = (d00 * p0 + d10 * v + d01 * p1 + d11 * v) / t_swing
        pos[2] = self.nominal[leg, 2] + 0.5 * h * (1.0 - np.cos(2 * np.pi * s))
        vel[2] = h * np.pi * np.sin(2 * np.pi * s) / t_swing
        return pos, vel

    def _posture_offsets(self, state: RobotState) -> np.ndarray:
        """Foot-height changes that level the trunk: extend the legs on the low side."""
        g = projected_gravity(state.quaternion)
        roll, pitch = np.arctan2(-g[1], -g[2]), np.arcsin(np.clip(g[0], -1.0, 1.0))
        wx, wy = state.angular_velocity[0], state.angular_velocity[1]
        x, y = self.nominal[:, 0], self.nominal[:, 1]
        p = self.p
        return p.posture_gain * (roll * y - pitch * x) + p.posture_rate_gain * (wx * y - wy * x)

    # ------------------------------------------------------------------------------------------ joints
    def _joint_targets(self, pos: np.ndarray, vel: np.ndarray, state: RobotState) -> np.ndarray:
        """IK plus velocity feed-forward (Kd/Kp qdot) and gravity feed-forward (-J^T f / Kp) on stance legs."""
        q_ref = kin.inverse(pos)
        jac = kin.jacobian(q_ref)
        qdot_ref = np.linalg.solve(jac, vel[..., None])[..., 0]
        ff_scale = self._velocity_ff_scale()[:, None]
        target = q_ref + ff_scale * (self.kd / self.kp) * qdot_ref
        share = self._load_share()
        if share.any():
            up = -projected_gravity(state.quaternion)                      # world +z in the body frame
            force = share[:, None] * up[None, :] * self.p.mass * GRAVITY   # ground reaction on each foot
            tau = -np.einsum("lij,li->lj", jac, force)
            target += tau / self.kp
        return target

    def _velocity_ff_scale(self) -> np.ndarray:
        """Velocity feed-forward weight per leg: full in stance and at both ends of a swing, `swing_ff` mid-swing.

        The full Kd/Kp feed-forward of a fast swing asks for target steps far beyond the firmware's per-frame
        limit; lowering it only mid-swing keeps the targets continuous at lift-off and touchdown.
        """
        phases = self.clock.leg_phases(self.p.lookahead)
        s = np.clip((phases - self.clock.duty) / (1.0 - self.clock.duty), 0.0, 1.0)
        return np.where(self.stance, 1.0, 1.0 - (1.0 - self.p.swing_ff) * np.sin(np.pi * s))

    def _load_share(self) -> np.ndarray:
        """Fraction of the body weight each foot carries: ramps in after touchdown and out before lift-off.

        A step change of the gravity feed-forward at every touchdown would be a 10-15 degree jump of the knee
        target, more than the firmware's per-frame limit. Each foot instead takes its share (1 / the number of
        feet a gait keeps down) over the first `load_ramp` of its stance and gives it up over the last; the
        brief shortfall during a trot's exchange of pairs is carried by the PD's position error.
        """
        if self.latched.all():
            return np.full(4, 0.25)
        u = self.clock.leg_phases(self.p.lookahead) / self.clock.duty
        ramp = np.clip(np.minimum(u, 1.0 - u) / self.p.load_ramp, 0.0, 1.0)
        weight = np.where(self.latched, 1.0, np.where(self.stance, ramp, 0.0))
        return weight / max(4.0 * self.clock.duty, float(self.latched.sum()))

    def _limit(self, target: np.ndarray) -> np.ndarray:
        """Joint-limit margin, then the firmware's per-frame step limit relative to the last sent target."""
        target = np.clip(target, self.q_low, self.q_high)
        self.unlimited_target = target.copy()
        if self.p.rate_limit:
            step = target - self.last_target
            if self.p.leg_uniform_limit:
                scale = np.min(self.max_step / np.maximum(np.abs(step), 1e-9), axis=1, keepdims=True)
                step = step * np.minimum(scale, 1.0)
            target = self.last_target + np.clip(step, -self.max_step, self.max_step)
        self.last_target = target
        return target
