"""Model-based expert: a phase-clock gait controller that acts exactly like the learned policy will.

Every 50 Hz tick it reads what the robot measures (joint state, IMU) plus the true body velocity (allowed for
experts only) and returns two joint position targets in model convention: the one for this tick and its plan
for the next tick (the reference evaluated one control period ahead). The rollout turns the pair into
q_des = target_t and qd_des = (target_next - target_t) / dt with pd_targets.ActionDecoder, exactly as the policy
will turn its predicted chunk into commands, and passes them through the deployed SafetyFilter (per-tick step
limit, joint-limit margin, torque bounds). The recipe follows /work/shared/reference/gaits.md: stance feet sweep
backwards at the commanded velocity (+ yaw), swing feet follow a raised-cosine arc to a Raibert touchdown point,
foot heights of the loaded legs correct roll and pitch, integrators remove steady velocity error, analytic IK maps
feet to joints. Turning, feet land outward and the support force leans inward by the turn's centripetal
acceleration; tilted past tilt_guard, the trunk's attitude comes before catching up on velocity.
The velocity feed-forward of gaits.md (Kd/Kp qdot_ref in q_des) is delivered as qd_des = qdot_ref instead (the
same torque, but q_des moves only as fast as the trajectory). The firmware keeps q_des within 8/10/12 deg of the
MEASURED joint angle (sim/firmware.py), which caps the PD's position term at a few N m, so the load goes through
tau_des: -J^T f with f each foot's planned share of the support force plus a roll/pitch spring-damper distributed
over the loaded feet (_attitude_forces). The plan stays near the measured joints: touchdown and lift-off start from
the measured feet, a stance foot's plan stays within anchor_slack of the measured one, and stance targets lead the
joint (extrapolated to when they act) by at most band_share of the band (_banded), so the PD saturates in the plan
instead of being cut by the firmware. The targets respect the per-tick step limit (plan_step_limit), so the
qd_des the expert sends is the one a policy will derive from consecutive recorded actions. Swing paths are shaped
(trapezoidal lift speed, half ground-speed matching, 0.05 m height) to keep the joint speeds near qd_des's 12 rad/s.
Hop (a pronk) has a flight phase: its stance carries the flight's share of the weight too (_load_share), and the
plan carries the trunk's bounce (_bounce), so that the feet stay on the ground while the trunk dips and keep
their arc above it while it flies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.observation import RobotState, projected_gravity
from diffuseloco_policy import kinematics as kin
from diffuseloco_policy.fast_clip import clip
from diffuseloco_policy.gaits import GAITS, PLAN_LOOKAHEAD, STAND, GaitSchedule

GRAVITY = 9.81
_FORCE_ROWS = np.tile(np.eye(3), 4)   # the net force of four feet's forces: one identity block per leg


@dataclass(frozen=True)
class ExpertParams:
    """Tuning of the expert controller (numbers from gaits.md unless noted)."""

    foot_depth: float = 0.243          # m, nominal foot-centre depth below the hip (the default pose's)
    com_shift_x: float = 0.012         # m, feet placed under the whole-body COM, which sits forward
    lookahead: float = PLAN_LOOKAHEAD  # s, the trajectory is sampled this far ahead to lead the PD lag
    raibert_gain: float = 0.08         # s, touchdown correction per m/s of velocity error
    raibert_clip: float = 0.08         # m
    posture_gain: float = 0.5          # m/m/rad, foot-height correction of roll and pitch (half gaits.md: the
                                       # torque feed-forward levels the trunk; extension a loaded leg cannot give
                                       # only pins its joints against the firmware band)
    posture_rate_gain: float = 0.05    # m/m/(rad/s)
    integral_gain: float = 2.0         # 1/s on vx, vy, yaw-rate error
    integral_limit: float = 0.4        # m/s or rad/s
    yaw_gain: float = 1.0              # proportional yaw-rate correction
    accel_limit: float = 1.5           # m/s^2, slew of the tracked linear command
    yaw_accel_limit: float = 3.0       # rad/s^2
    mass: float = 8.52                 # kg, the official description's (no foot mass); a payload is unknown to it
    stand_return_speed: float = 0.05   # m/s, standing feet drift back to the nominal stance
    stance_box: tuple[float, float] = (0.14, 0.08)   # m, |dx|, |dy| a stance foot may sweep from nominal
    load_ramp: float = 0.04            # s over which a foot takes up / gives up its share of the weight
    load_lead: float = 0.02            # s before touchdown (and after lift-off) the load ramp starts (ends)
    plan_step_limit: bool = True       # the expert's own targets respect the per-tick step limit
    max_reach: float = 0.27            # m, hip-to-foot distance kept below the leg's 0.294 m (IK singularity)
    swing_ramp: float = 0.2            # vertical swing profile: 0 raised cosine, r > 0 trapezoidal speed, ramps r
    swing_apex: float = 0.5            # swing progress at which the foot is highest (< 0.5: more time to land)
    swing_match: float = 0.5           # fraction of the ground speed the swing foot has at lift-off / touchdown
    turn_placement_gain: float = 0.75  # touchdown moved outward by gain * depth / g * the turn's centripetal accel.
    turn_force_gain: float = 1.0       # planned support force gets gain * m * the turn's centripetal acceleration
    tilt_guard: tuple[float, float] = (0.15, 0.35)   # rad of roll/pitch over which velocity gives way to attitude
    resync: bool = True                # touchdown and lift-off start from the measured foot, not the planned one
    attitude_gains: tuple[float, float, float, float] = (40.0, 1.0, 30.0, 1.5)   # N m/rad, N m s/rad: roll, pitch
    # Roll 40 (was 20): at kp 45 / kd 2 a switch from a backward pace into a turning 0.38 m/s bound on the lowest
    # friction rolled the trunk over (1 of 50 switch episodes); at 40 none of 50 per skill or switch falls
    # (docs/research/expert_eval/firmware_robot). Roll 30 / 1 and 40 / 2 each left one pace or bound fall.
    band_share: float = 0.8            # q_des kept within this share of the firmware's band around the joint ...
    band_stance_only: bool = True
    band_lead: float = 0.03            # s, ... extrapolated this far (sensor age + acting a tick late + half a tick)
    anchor_slack: float = 0.02         # m, a stance foot's plan is kept within this of the measured foot (xy)
    # kg m^2, abad / hip / knee: the diagonal of the joint-space inertia at the default pose (rotor 0.00287
    # included); a swing leg's planned joint acceleration times it goes to tau_des (0 = off)
    swing_inertia: tuple[float, float, float] = (0.0131, 0.0091, 0.0044)

    def __post_init__(self) -> None:
        start, full = self.tilt_guard
        if not 0.0 <= start < full:
            raise ValueError(f"tilt_guard must be (start, full) with 0 <= start < full, got {self.tilt_guard}")


class ExpertController:
    """Stand, trot, pace, bound and hop behind one `act` call, with smooth switches between them."""

    def __init__(self, config: StackConfig, params: Optional[ExpertParams] = None) -> None:
        self.config = config
        self.p = params or ExpertParams()
        self.dt = config.rates.control_dt
        robot = config.robot
        self.kp, self.kd = robot.kp, robot.kd
        self.torque_limit = min(robot.torque_limit, config.safety.torque_limit)
        margin = robot.limit_margin
        self.q_low = np.asarray(robot.position_lower).reshape(4, 3) + margin
        self.q_high = np.asarray(robot.position_upper).reshape(4, 3) - margin
        p = self.p
        self.max_step = config.tick_step_rad.reshape(4, 3)   # per tick, as the safety filter
        self.band = np.radians(np.asarray(robot.max_target_step_deg, dtype=np.float64))[None, :] * p.band_share
        self.nominal = kin.HIP_ORIGINS + np.stack(
            [np.full(4, p.com_shift_x), kin.SIDE * (kin.ABAD_OFFSET - GAITS["trot"].inward),
             np.full(4, -p.foot_depth)], axis=1)
        self.reset()

    # ----------------------------------------------------------------------------------------------- state
    def reset(self, joint_target: Optional[np.ndarray] = None, skill: Union[int, str] = STAND) -> None:
        """Forget the past: standing on the given (default) pose, integrators empty."""
        q0 = np.asarray(self.config.robot.default_pose if joint_target is None else joint_target, dtype=np.float64)
        self.last_target = q0.reshape(4, 3).copy()
        self.feet = kin.forward(self.last_target)
        self.anchor = self.feet[:, :2].copy()
        self.measured_feet = self.feet.copy()
        self.gait = GaitSchedule(self.p.lookahead)
        self.cmd = np.zeros(3)
        self.integral = np.zeros(3)
        self.torque = np.zeros(12)                        # tau_des of the targets act() returned last (model conv.)
        self._last_qdot_ref: Optional[np.ndarray] = None  # the plan's joint velocity of the previous tick
        self._attitude_of: Optional[RobotState] = None     # the state _attitude last answered for
        self.set_skill(skill)

    def set_skill(self, skill: Union[int, str]) -> None:
        """Select the gait to glide into (a name or a config skill id)."""
        name = self.config.skill(skill).name if isinstance(skill, int) else skill
        if name != STAND and name not in GAITS:
            raise ValueError(f"no expert for skill {name!r}; have {sorted(GAITS)} and {STAND!r}")
        self.gait.set_skill(name)

    # The gait schedule's state, read and written by the plan below (and by tests that pose the expert).
    skill = property(lambda self: self.gait.skill)
    clock = property(lambda self: self.gait.clock)
    latched = property(lambda self: self.gait.latched)
    stance = property(lambda self: self.gait.stance, lambda self, value: setattr(self.gait, "stance", value))

    # ------------------------------------------------------------------------------------------------- act
    def act(self, state: RobotState, base_velocity: np.ndarray, command: np.ndarray,
            skill: Union[int, str, None] = None) -> tuple[np.ndarray, np.ndarray]:
        """One tick: measured state + true body-frame velocity (vx, vy) + command -> joint targets (12,) for
        this tick and the plan's targets for the next tick (model convention, inside the joint limits)."""
        if skill is not None:
            self.set_skill(skill)
        self.measured_feet = kin.forward(np.asarray(state.joint_position, dtype=np.float64).reshape(4, 3))
        standing = self._update_mode()
        command = np.zeros(3) if self.skill == STAND else np.asarray(command, dtype=np.float64)
        self._slew_command(command)
        measured = np.array([base_velocity[0], base_velocity[1], state.angular_velocity[2]])
        v_eff = self._tilt_guarded(self._velocity_feedback(measured, active=not standing), measured, state)
        turn_accel = self._turn_acceleration(measured)
        if not standing:
            self.clock.advance(self.dt)
        self.nominal[:, 1] = kin.HIP_ORIGINS[:, 1] + kin.SIDE * (kin.ABAD_OFFSET - self.clock.inward)
        self.nominal[:, 0] = kin.HIP_ORIGINS[:, 0] + self.p.com_shift_x - np.sign(kin.HIP_ORIGINS[:, 0]) * self.clock.gather
        pos, vel = self._foot_plan(v_eff, measured, turn_accel, standing)
        if not standing:
            bounce, bounce_rate = self._bounce()
            pos[:, 2] -= bounce
            vel[:, 2] -= bounce_rate
        pos[:, 2] += self._posture_offsets(state)
        if not standing:
            pos[:, :2] += self._stance_attitude_offsets(state)
        target, target_next, torque = self._joint_targets(pos, vel, state, turn_accel)
        target, target_next = self._banded(target, target_next, state)
        target = self._limit(target, self.last_target)
        target_next = self._limit(target_next, target)
        self.last_target = target
        self.torque = clip(torque.ravel(), -self.torque_limit, self.torque_limit)
        return target.ravel().copy(), target_next.ravel().copy()

    def _update_mode(self) -> bool:
        """The gait schedule's mode for this tick (GaitSchedule.update); a restart re-anchors the feet."""
        standing, restarted = self.gait.update()
        if restarted:
            self.anchor = self.feet[:, :2].copy()
        return standing

    def _slew_command(self, command: np.ndarray) -> None:
        limit = np.array([self.p.accel_limit, self.p.accel_limit, self.p.yaw_accel_limit]) * self.dt
        self.cmd += clip(command - self.cmd, -limit, limit)

    def _velocity_feedback(self, measured: np.ndarray, active: bool) -> np.ndarray:
        """Commanded (vx, vy, yaw rate) plus integral action and a yaw-rate P term."""
        p = self.p
        if active:
            self.integral += p.integral_gain * (self.cmd - measured) * self.dt
            self.integral = clip(self.integral, -p.integral_limit, p.integral_limit)
        else:
            self.integral *= 0.9
        v_eff = self.cmd + self.integral
        v_eff[2] += p.yaw_gain * (self.cmd[2] - measured[2])
        return v_eff

    def _tilt_guarded(self, v_eff: np.ndarray, measured: np.ndarray, state: RobotState) -> np.ndarray:
        """A tilted trunk comes first: the linear velocity the feet sweep for blends from the tracked one to the
        measured one (no more acceleration asked for) and the integrators drain, between the guard's two tilts.

        Why: after a push a bound lost speed, the integrators asked the rear pair for thrust, and thrust below the
        COM pitched the nose up until the dog reared over (2/50 randomized episodes); pace and trot lean the same
        way less often. Letting the posture loops recover first and catching up on speed afterwards removed it.
        """
        start, full = self.p.tilt_guard
        roll, pitch, _, _ = self._attitude(state)
        give_way = float(clip((max(abs(roll), abs(pitch)) - start) / (full - start), 0.0, 1.0))
        self.integral *= 1.0 - give_way
        out = v_eff.copy()
        out[:2] += give_way * (measured[:2] - v_eff[:2])
        return out

    def _turn_acceleration(self, measured: np.ndarray) -> np.ndarray:
        """Body-frame centripetal acceleration (ax, ay) of turning at the commanded yaw rate with the measured
        velocity: w x v. Without it the feet push only straight back, the velocity lags the turning trunk, the
        body slides outward and rolls onto its outer feet (the trot's falls turning at speed)."""
        yaw_rate = self.cmd[2]
        return np.array([-yaw_rate * measured[1], yaw_rate * measured[0]])

    # ----------------------------------------------------------------------------------------- foot plan
    def _foot_plan(self, v_eff: np.ndarray, measured: np.ndarray, turn_accel: np.ndarray,
                   standing: bool) -> tuple[np.ndarray, np.ndarray]:
        """Foot positions (4, 3) and velocities (4, 3) in the trunk frame for this tick.

        Touchdown: Raibert's point plus the turn's lean: feet land outward by depth / g * centripetal acceleration
        (times a gain), so that the support pushes the trunk toward the turn's centre as an inverted pendulum.
        """
        nom_xy = self.nominal[:, :2]
        # Velocity of the ground under each foot relative to the body is -(v + w x r).
        foot_speed = v_eff[:2] + v_eff[2] * np.stack([-nom_xy[:, 1], nom_xy[:, 0]], axis=1)
        if standing or self.skill == STAND:
            foot_speed[:] = 0.0
        phases = self.clock.leg_phases(self.p.lookahead)
        duty, period = self.clock.duty, self.clock.period
        stance_now = self.gait.stance_now()
        pos = np.empty((4, 3))
        vel = np.zeros((4, 3))
        t_stance, t_swing = duty * period, (1.0 - duty) * period
        raibert = clip(self.p.raibert_gain * (measured[:2] - self.cmd[:2]), -self.p.raibert_clip, self.p.raibert_clip)
        touchdown_shift = raibert - self.p.turn_placement_gain * self.p.foot_depth / GRAVITY * turn_accel
        for leg in range(4):
            if stance_now[leg]:
                if not self.stance[leg]:
                    self.anchor[leg] = self._start(leg)            # touchdown where the swing ended
                pos[leg, :2], vel[leg, :2] = self._stance_foot(leg, foot_speed[leg], standing)
            else:
                if self.stance[leg]:
                    self.anchor[leg] = self._start(leg)            # lift off where the stance ended
                s = (phases[leg] - duty) / (1.0 - duty)
                touchdown = nom_xy[leg] + foot_speed[leg] * t_stance / 2 + touchdown_shift
                pos[leg], vel[leg] = self._swing_foot(leg, s, touchdown, -foot_speed[leg], t_swing)
            if stance_now[leg]:
                pos[leg, 2] = self.nominal[leg, 2]
        self.stance = stance_now
        self.feet = pos.copy()
        return pos, vel

    def _bounce(self) -> tuple[np.ndarray, np.ndarray]:
        """The trunk's planned height above its touchdown height (4,) and its rate, at each leg's phase, for legs in
        step (hop; GaitClock.in_step weighs it in and out through a switch, 0 for trot, pace and bound). Stance
        carries the body weight / duty (the flight's share too, _load_share), so the trunk dips by a parabola in
        stance and flies one in the air, the two meeting at touchdown and lift-off with the same vertical speed.
        The feet's plan follows it: a stance foot stays on the ground while the trunk dips, a swing foot keeps its
        arc above the ground while the trunk flies. With a plan at a fixed depth the PD fought the bounce: the
        trunk stalled high at lift-off, dropped through the whole flight and landed early on feet still swinging
        forward (braking, and turning the wrong way)."""
        weight = self.clock.in_step()
        duty, period = self.clock.duty, self.clock.period
        if weight == 0.0 or not 0.0 < duty < 1.0:
            return np.zeros(4), np.zeros(4)
        phase = self.clock.leg_phases(self.p.lookahead)
        stance = phase < duty
        rise = GRAVITY * (1.0 / duty - 1.0)                 # net upward acceleration in stance
        u = np.where(stance, phase / duty, (phase - duty) / (1.0 - duty))
        accel, span = np.where(stance, rise, -GRAVITY), np.where(stance, duty, 1.0 - duty) * period
        height = -0.5 * accel * span**2 * u * (1.0 - u)
        rate = -0.5 * accel * span * (1.0 - 2.0 * u)
        return weight * height, weight * rate

    def _start(self, leg: int) -> np.ndarray:
        """Where a touchdown or lift-off starts: the measured foot (resync) or the plan's."""
        return (self.measured_feet if self.p.resync else self.feet)[leg, :2].copy()

    def _stance_foot(self, leg: int, foot_speed: np.ndarray, standing: bool) -> tuple[np.ndarray, np.ndarray]:
        """Stance foot: integrate the backwards sweep; a standing foot creeps back to the nominal stance."""
        nom = self.nominal[leg, :2]
        if self.latched[leg]:
            step = clip(nom - self.anchor[leg], -self.p.stand_return_speed * self.dt, self.p.stand_return_speed * self.dt)
            self.anchor[leg] = self.anchor[leg] + step
            return self.anchor[leg].copy(), step / self.dt
        self.anchor[leg] = self.anchor[leg] - foot_speed * self.dt
        if self.p.anchor_slack > 0.0:   # no wind-up: the firmware would cut a target far from the measured joint
            here = self.measured_feet[leg, :2]
            self.anchor[leg] = clip(self.anchor[leg], here - self.p.anchor_slack, here + self.p.anchor_slack)
        box = np.array(self.p.stance_box)
        self.anchor[leg] = clip(self.anchor[leg], nom - box, nom + box)
        return self.anchor[leg].copy(), -foot_speed

    def _swing_foot(self, leg: int, s: float, touchdown: np.ndarray, ground_speed: np.ndarray,
                    t_swing: float) -> tuple[np.ndarray, np.ndarray]:
        """Swing foot: cubic Hermite from lift-off to touchdown under a raised-cosine height arc.

        The horizontal path leaves and lands with the stance feet's ground speed, so the foot neither scuffs
        nor makes the joint targets jump at lift-off and touchdown (jumps the firmware's step limit would cut).
        """
        h = self.clock.swing_height
        p0, p1, v = self.anchor[leg], touchdown, self.p.swing_match * ground_speed * t_swing
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        pos = np.empty(3)
        vel = np.empty(3)
        pos[:2] = h00 * p0 + h10 * v + h01 * p1 + h11 * v
        vel[:2] = (d00 * p0 + d10 * v + d01 * p1 + d11 * v) / t_swing
        lift, rate = _lift_profile(s, self.p.swing_ramp, self.p.swing_apex)
        pos[2] = self.nominal[leg, 2] + h * lift
        vel[2] = h * rate / t_swing
        return pos, vel

    def _posture_offsets(self, state: RobotState) -> np.ndarray:
        """Foot-height changes that level the trunk: extend the loaded legs on the low side.

        Only loaded feet get them (weighted by the planned load, so the touchdown ramp blends them in): a swing
        foot moved with the posture loop was pulled up on the high side and lowered on the low side, so a rearing
        bound kept its front feet off the ground and dragged its rear feet (bound 2/50 -> 0/200 without it).
        """
        roll, pitch, wx, wy = self._attitude(state)
        x, y = self.nominal[:, 0], self.nominal[:, 1]
        p = self.p
        offset = p.posture_gain * (roll * y - pitch * x) + p.posture_rate_gain * (wx * y - wy * x)
        return offset * self._load_weight()

    def _stance_attitude_offsets(self, state: RobotState) -> np.ndarray:
        """Horizontal shifts of the loaded feet that level the trunk when one pair carries it (pace, bound).

        A lateral pair (pace) cannot resist roll with its vertical forces (both feet are on the support line),
        a front or rear pair (bound) cannot resist pitch: only ground forces in y (abad) or x (hip) below the
        COM can. Shifting the stance feet by +k roll in y and -k pitch in x (plus rate damping) makes the leg PD
        push the ground that way: a roll/pitch posture loop through the stance legs. Weighted by each foot's
        planned load share (full when its pair carries the trunk alone, half in four-feet phases, ramped at
        touchdown and lift-off), so swing feet are untouched and nothing jumps at the handovers.
        """
        gait = self.clock.target
        (kr, dr), (kpi, dpi) = gait.stance_roll, gait.stance_pitch
        if kr == dr == kpi == dpi == 0.0:
            return np.zeros((4, 2))
        roll, pitch, wx, wy = self._attitude(state)
        load = clip(self._load_share() * 2.0, 0.0, 1.0)
        shift = np.array([-(kpi * pitch + dpi * wy), kr * roll + dr * wx])
        return clip(load[:, None] * shift[None, :], -0.04, 0.04)

    def _attitude(self, state: RobotState) -> tuple[float, float, float, float]:
        """Roll, pitch and their rates: what the posture loops level. (Extrapolating the angles by one tick for an
        expert acting on s[t-1] was tried: bound fell more often, 13/20 vs 9/20.) Five loops ask each tick, so
        the answer for the latest state is kept."""
        if self._attitude_of is not state:
            g = projected_gravity(state.quaternion)
            roll, pitch = float(np.arctan2(-g[1], -g[2])), float(np.arcsin(clip(g[0], -1.0, 1.0)))
            self._attitude_of = state
            self._attitude_now = roll, pitch, float(state.angular_velocity[0]), float(state.angular_velocity[1])
        return self._attitude_now

    # ------------------------------------------------------------------------------------------ joints
    def _joint_targets(self, pos: np.ndarray, vel: np.ndarray, state: RobotState,
                       turn_accel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """IK; velocity feed-forward through the plan; gravity and load feed-forward as a torque.

        Returns the joint targets for this tick and the next (the decoder sends qd_des = their difference / dt,
        the plan's joint velocity) and the feed-forward torque tau_des (4, 3): -J^T f with f each foot's planned
        share of the support force. The firmware keeps q_des within 8-12 deg of the measured angle, which caps
        the PD's position term at a few N m: a load carried through a position offset would be cut, so the
        targets are the reference itself and the PD only corrects tracking errors.
        """
        pos = self._within_reach(pos)
        q_ref = kin.inverse(pos)
        jac = kin.jacobian(q_ref)
        qdot_ref = np.linalg.solve(jac, vel[..., None])[..., 0]
        up = -projected_gravity(state.quaternion)                           # world +z in the body frame
        accel = GRAVITY * up + self.p.turn_force_gain * np.append(turn_accel, 0.0)   # what the support must give
        share = self._load_share()
        force = self._pitch_shared(share, state)[:, None] * accel[None, :] * self.p.mass
        force += self._attitude_forces(pos, share, state)
        tau_load = -np.einsum("lij,li->lj", jac, force) + self._swing_acceleration_torque(qdot_ref)
        return q_ref, q_ref + qdot_ref * self.dt, tau_load

    def _swing_acceleration_torque(self, qdot_ref: np.ndarray) -> np.ndarray:
        """Inertia x the plan's joint acceleration for the legs in swing (4, 3): the PD's position term is capped
        by the firmware's band, so a swing that reverses the leg at 10 rad/s within a few ticks would otherwise
        lag the plan by more than the band."""
        previous, self._last_qdot_ref = self._last_qdot_ref, qdot_ref.copy()
        if previous is None or not any(self.p.swing_inertia):
            return np.zeros((4, 3))
        accel = (qdot_ref - previous) / self.dt
        swing = ~self.stance[:, None] & ~self.latched[:, None]
        return np.where(swing, np.asarray(self.p.swing_inertia)[None, :] * accel, 0.0)

    def _attitude_forces(self, pos: np.ndarray, share: np.ndarray, state: RobotState) -> np.ndarray:
        """Extra foot forces (4, 3) that, summing to zero, give the trunk a roll and pitch torque against its tilt
        and tilt rate (a virtual spring and damper on the attitude, delivered through tau_des). Least squares
        weighted by each foot's planned load share: swing feet get none, a lateral pair (pace) resists roll with
        sideways forces and a front or rear pair (bound) pitch with fore-aft ones, which vertical forces cannot."""
        kr, dr, kpi, dpi = self.p.attitude_gains
        if kr == dr == kpi == dpi == 0.0 or share.sum() < 1e-9:
            return np.zeros((4, 3))
        roll, pitch, wx, wy = self._attitude(state)
        torque = np.array([-(kr * roll + dr * wx), -(kpi * pitch + dpi * wy), 0.0])
        r = pos - np.array([self.p.com_shift_x, 0.0, 0.0])
        a = np.zeros((6, 12))
        a[:3] = _FORCE_ROWS
        moment = a[3:].reshape(3, 4, 3)   # [torque axis, leg, force axis]: each leg's cross-product matrix [r]x
        moment[0, :, 1], moment[0, :, 2] = -r[:, 2], r[:, 1]
        moment[1, :, 0], moment[1, :, 2] = r[:, 2], -r[:, 0]
        moment[2, :, 0], moment[2, :, 1] = -r[:, 1], r[:, 0]
        w = np.repeat(share, 3)
        awa = (a * w) @ a.T + 1e-6 * np.eye(6)
        f = w * (a.T @ np.linalg.solve(awa, np.concatenate([np.zeros(3), torque])))
        return f.reshape(4, 3)

    def _pitch_shared(self, share: np.ndarray, state: RobotState) -> np.ndarray:
        """Shift the planned support force from the high end of the trunk to the low end (pitch correction
        through the gravity feed-forward rather than the foot heights)."""
        if self.skill == STAND or self.latched.all():
            return share
        k, d = self.clock.target.load_pitch
        if k == d == 0.0:
            return share
        _, pitch, _, wy = self._attitude(state)
        c = float(clip(k * pitch + d * wy, -0.6, 0.6))
        front = np.sign(kin.HIP_ORIGINS[:, 0])
        out = share * (1.0 + front * c)
        if self.clock.target.load_normalize and out.sum() > 1e-9:
            out *= share.sum() / out.sum()
        return out

    def _within_reach(self, pos: np.ndarray) -> np.ndarray:
        """Pull feet toward the hip so no leg is planned straight (where IK and its Jacobian blow up)."""
        rel = pos - kin.HIP_ORIGINS
        rel_yz = np.linalg.norm(rel[:, 1:], axis=1)
        lateral = kin.ABAD_OFFSET
        sagittal = np.hypot(rel[:, 0], np.sqrt(np.maximum(rel_yz ** 2 - lateral ** 2, 1e-9)))
        scale = np.minimum(1.0, self.p.max_reach / np.maximum(sagittal, 1e-9))
        out = pos.copy()
        out[:, 0] = kin.HIP_ORIGINS[:, 0] + rel[:, 0] * scale
        out[:, 2] = kin.HIP_ORIGINS[:, 2] + rel[:, 2] * scale
        return out

    def _load_weight(self, ahead: float = 0.0) -> np.ndarray:
        """How loaded each foot is planned to be, 0 (in the air) .. 1 (stance), with the touchdown/lift-off ramps."""
        phase = self.clock.leg_phases(self.p.lookahead + ahead)
        duty, period = self.clock.duty, self.clock.period
        since_touchdown = np.where(phase < duty, phase, phase - 1.0) * period   # < 0 in swing: time to touchdown
        until_liftoff = (duty - phase) * period                                   # < 0 in swing: since lift-off
        ramp = clip((np.minimum(since_touchdown, until_liftoff) + self.p.load_lead) / self.p.load_ramp, 0.0, 1.0)
        return np.where(self.latched, 1.0, ramp)

    def _load_share(self, ahead: float = 0.0) -> np.ndarray:
        """Fraction of the body weight each foot carries (1 / the number of feet a gait keeps down), ramped over
        `load_ramp` seconds starting `load_lead` before touchdown and ending `load_lead` after lift-off, so the
        pairs hand the weight over without a gap. (The position offset that delivers it is filtered anyway.)
        """
        if self.latched.all():
            return np.full(4, 0.25)
        weight = self._load_weight(ahead)
        duty = self.clock.duty
        impulse = weight / max(4.0 * duty, float(self.latched.sum()))   # the cycle's mean support is the weight
        if duty <= 0.5 + 1e-6:
            return impulse
        # gaits with four-feet phases: the weight is shared by the feet that are down; legs in step (a switch to
        # or from hop) fly, and their stance must carry the flight's share too
        in_step = self.clock.in_step()
        return in_step * impulse + (1.0 - in_step) * weight / max(float(weight.sum()), 2.0)

    def _banded(self, target: np.ndarray, target_next: np.ndarray,
                state: RobotState) -> tuple[np.ndarray, np.ndarray]:
        """Targets moved so that they lead the joint, extrapolated to when they act, by at most band_share of the
        firmware's band: the PD's position term saturates here, in the plan, instead of being cut by the firmware
        (which keeps q_des within 8-12 deg of the measured angle). The velocity feed-forward is kept."""
        if self.p.band_share <= 0.0:
            return target, target_next
        q = np.asarray(state.joint_position, dtype=np.float64).reshape(4, 3)
        qd = np.asarray(state.joint_velocity, dtype=np.float64).reshape(4, 3)
        expected = q + qd * self.p.band_lead
        shift = clip(target, expected - self.band, expected + self.band) - target
        if self.p.band_stance_only:
            shift[~self.stance] = 0.0
        return target + shift, target_next + shift

    def _limit(self, target: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Joint limits minus the firmware's margin, then (plan_step_limit) the per-tick step from `previous`."""
        target = clip(target, self.q_low, self.q_high)
        if self.p.plan_step_limit:
            target = previous + clip(target - previous, -self.max_step, self.max_step)
        return target


def _lift_profile(s: float, ramp: float, apex: float = 0.5) -> tuple[float, float]:
    """Swing height (0 -> 1 at mid-swing -> 0) and its rate d/ds over swing progress s in [0, 1].

    ramp 0: raised cosine (peak rate pi). ramp r > 0: on the way up and down the speed is a trapezoid with ramps
    of a fraction r of the half swing (peak rate 2 / (1 - r)): the lowest peak joint speed for a given height
    with bounded acceleration, which keeps the knee inside the per-tick step limit.
    """
    # progress u in [0, 1] of the current half (rise before the apex, fall after) and du/ds
    u, du = (s / apex, 1.0 / apex) if s < apex else ((1.0 - s) / (1.0 - apex), -1.0 / (1.0 - apex))
    if ramp <= 0.0:
        return 0.5 * (1.0 - np.cos(np.pi * u)), 0.5 * np.pi * np.sin(np.pi * u) * du
    vmax = 1.0 / (1.0 - ramp)
    acc = vmax / ramp
    if u < ramp:
        f, df = 0.5 * acc * u * u, acc * u
    elif u <= 1.0 - ramp:
        f, df = 0.5 * acc * ramp * ramp + vmax * (u - ramp), vmax
    else:
        f, df = 1.0 - 0.5 * acc * (1.0 - u) ** 2, acc * (1.0 - u)
    return f, df * du
