"""The one typed configuration of the stack, loaded from YAML.

Every number that describes the robot, the observation layout, the action and the skills lives in a YAML file
(`configs/cyberdog2.yaml` for the shipped robot) and is read into frozen dataclasses here. Code asks the config
instead of hard-coding joint order, scales or rates, so a model file can carry the config it was trained with
and the node can compare it with the robot it is about to drive.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import yaml

from .package_files import package_file

ROBOT_CONFIG = "configs/cyberdog2.yaml"   # the shipped robot, in the package's share directory


class ConfigError(ValueError):
    """A configuration file or dictionary does not describe a valid setup."""


# abad range per robot appearance, rad (cyberdog2-description.yaml, cyberdog2-angular-description.yaml)
ABAD_LIMIT_BY_APPEARANCE = {"standard": 0.6807, "angular": 0.5585}


@dataclass(frozen=True)
class RobotConfig:
    """Body, joint conventions, motor limits and the PD gains shared by experts, data and policy."""

    name: str
    joint_names: tuple[str, ...]
    sdk_sign: tuple[float, ...]
    default_pose: tuple[float, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    velocity_limit: float
    torque_limit: float
    kp: float
    kd: float
    kp_range: tuple[float, float]
    kd_range: tuple[float, float]
    max_target_step_deg: tuple[float, float, float]
    limit_margin: float
    # The robot's appearance decides its abad range (cyberdog_locomotion common/include/utilities/dog_toolkit.hpp:
    # "angular" is the default for board_id >= 4 and loads cyberdog2-angular-description.yaml).
    appearance: str = "standard"

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def position_band_rad(self) -> np.ndarray:
        """The firmware's largest |q_des - q_measured| per joint (rad; sign-free, so either convention), from
        max_target_step_deg: FsmStateMotorCtrl::Run() pulls q_des back to the measured angle +- this in every 2 ms
        frame (sim/firmware.py). Not a limit on the change between frames."""
        return _per_joint_rad(self.max_target_step_deg, self.num_joints)

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for name in ("sdk_sign", "default_pose", "position_lower", "position_upper"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"robot.{name} has {len(getattr(self, name))} entries, expected {n} (one per joint)")
        if any(s not in (1.0, -1.0) for s in self.sdk_sign):
            raise ConfigError("robot.sdk_sign entries must be +1 or -1")
        for j, (lo, q0, hi) in enumerate(zip(self.position_lower, self.default_pose, self.position_upper)):
            if not lo < q0 < hi:
                raise ConfigError(f"default pose of {self.joint_names[j]} ({q0}) is outside its limits [{lo}, {hi}]")
        self._check_appearance()

    def _check_appearance(self) -> None:
        """The abad limits must be the appearance's (the firmware clamps q_des 0.04 rad inside them)."""
        if self.appearance not in ABAD_LIMIT_BY_APPEARANCE:
            raise ConfigError(f"robot.appearance must be one of {sorted(ABAD_LIMIT_BY_APPEARANCE)}, got {self.appearance!r}")
        limit = ABAD_LIMIT_BY_APPEARANCE[self.appearance]
        for j, name in enumerate(self.joint_names):
            if name.endswith("abad") and not (abs(self.position_lower[j] + limit) < 1e-4
                                              and abs(self.position_upper[j] - limit) < 1e-4):
                raise ConfigError(
                    f"robot.appearance {self.appearance!r} has abad limits +-{limit} rad, but {name} is "
                    f"[{self.position_lower[j]}, {self.position_upper[j]}]: set the limits of the robot's appearance "
                    f"(standard +-{ABAD_LIMIT_BY_APPEARANCE['standard']}, angular +-{ABAD_LIMIT_BY_APPEARANCE['angular']})")


@dataclass(frozen=True)
class RatesConfig:
    """Control and joint-loop rates; the model's tick must equal the robot's."""

    control_hz: float
    joint_loop_hz: float

    @property
    def control_dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def frames_per_tick(self) -> int:
        """Firmware command frames (joint-loop periods) in one control tick."""
        return int(round(self.joint_loop_hz / self.control_hz))


@dataclass(frozen=True)
class TermConfig:
    """One named slice of the observation (or goal) vector with its scale."""

    name: str
    size: int
    scale: Union[float, tuple[float, ...]] = 1.0

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ConfigError(f"observation term {self.name!r} must have a positive size")
        if isinstance(self.scale, tuple) and len(self.scale) != self.size:
            raise ConfigError(f"observation term {self.name!r}: {len(self.scale)} scales for size {self.size}")


@dataclass(frozen=True)
class ObservationConfig:
    """Layout of the proprioceptive observation and the goal (command + skill), and the history length To."""

    history: int
    terms: tuple[TermConfig, ...]
    goal_terms: tuple[TermConfig, ...]

    @property
    def obs_dim(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def goal_dim(self) -> int:
        return sum(t.size for t in self.goal_terms)

    def slices(self) -> dict[str, slice]:
        """Where each proprioceptive term sits in the observation vector."""
        return _slices(self.terms)

    def goal_slices(self) -> dict[str, slice]:
        return _slices(self.goal_terms)


def _slices(terms: tuple[TermConfig, ...]) -> dict[str, slice]:
    out, start = {}, 0
    for term in terms:
        out[term.name] = slice(start, start + term.size)
        start += term.size
    return out


@dataclass(frozen=True)
class ActionConfig:
    """Action chunk geometry and how an action maps to a joint target."""

    horizon: int
    execute_index: int
    scale: float
    # Send the plan's velocity (next action minus this one, per tick) as qd_des. With the joint law
    # kp (q_des - q) + kd (qd_des - qd) this is the velocity feed-forward a PD-tracked gait needs, without
    # moving q_des ahead of the trajectory (which the firmware's per-frame step limit would cut).
    velocity_feedforward: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.execute_index < self.horizon:
            raise ConfigError(f"action.execute_index {self.execute_index} outside the horizon {self.horizon}")


# A policy's per-skill gain may differ from the gains its data was made with, but not by much: the data's motors
# were randomized over kp x [0.9, 1.1], and a gait far outside that was never seen.
MIN_KP_SCALE, MAX_KP_SCALE = 0.7, 1.3


@dataclass(frozen=True)
class SkillConfig:
    """A skill the policy ships, its message id and its command range."""

    name: str
    id: int
    vx: tuple[float, float]
    vy: tuple[float, float]
    yaw_rate: tuple[float, float]
    # > 0: strafing and turning share a budget, |vy| / vy_max + |yaw_rate| / yaw_max <= this (both scaled back
    # together); each alone still reaches its whole range. 0: the plain box.
    strafe_turn_budget: float = 0.0
    # The policy's position gain in this skill, as a multiple of robot.kp. A model file carries the scales it was
    # validated with (training.export --gain-scale) and the node drives each skill with them: a gait cloned at kp
    # 30 may run steadier softer or stiffer (docs/research/policy_eval/tracking.md, "Per-skill gains"). The
    # experts, the data and
    # standing up always use robot.kp.
    kp_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.strafe_turn_budget < 0:
            raise ConfigError(f"skill {self.name}: strafe_turn_budget must be >= 0, got {self.strafe_turn_budget}")
        if not MIN_KP_SCALE <= self.kp_scale <= MAX_KP_SCALE:
            raise ConfigError(f"skill {self.name}: kp_scale must be in [{MIN_KP_SCALE}, {MAX_KP_SCALE}], got "
                              f"{self.kp_scale}")

    def clamp_command(self, vx: float, vy: float, yaw_rate: float) -> tuple[float, float, float]:
        """The command limited to this skill's range: what the expert and policy were trained on."""
        vx, vy, yaw_rate = _clip(vx, self.vx), _clip(vy, self.vy), _clip(yaw_rate, self.yaw_rate)
        if self.strafe_turn_budget > 0:
            used = _share(vy, self.vy) + _share(yaw_rate, self.yaw_rate)
            if used > self.strafe_turn_budget:
                scale = self.strafe_turn_budget / used
                vy, yaw_rate = vy * scale, yaw_rate * scale
        return vx, vy, yaw_rate


@dataclass(frozen=True)
class CommandClassConfig:
    """Skills commanded as one, as DiffuseLoco's reference data shares one command token between trot and pace and
    one between bound and hop. A class model's goal names the class, never the gait: its data is unlabelled, the
    same goal maps to several gaits, and the policy has to pick one from its observation history and keep it
    (docs/research/multimodality.md). A class is commanded by the id of any of its skills; its own id is its
    first skill's (class_command)."""

    name: str
    skills: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.skills) < 2:
            raise ConfigError(f"command class {self.name}: a class merges at least two skills, got {list(self.skills)}")
        if len(set(self.skills)) != len(self.skills):
            raise ConfigError(f"command class {self.name}: a skill is listed twice in {list(self.skills)}")


def class_command(command_class: CommandClassConfig, members: Sequence[SkillConfig]) -> SkillConfig:
    """A class as one command entry: its first skill's id, and the command range every member was demonstrated at
    (the intersection of their ranges, the strictest strafe/turn budget). Why the intersection: whichever gait the
    policy picks, the command is one that gait's expert walked, and the command alone does not give the gait away
    (with the union, a fast walk command would only ever have been a trot). The members must share one kp scale:
    the node cannot know which gait's gain to use."""
    def common(field_name: str) -> tuple[float, float]:
        low = max(getattr(m, field_name)[0] for m in members)
        high = min(getattr(m, field_name)[1] for m in members)
        if low > high:
            raise ConfigError(f"command class {command_class.name}: the {field_name} ranges of "
                              f"{[m.name for m in members]} do not overlap, so no command fits every gait")
        return low, high

    scales = {m.kp_scale for m in members}
    if len(scales) > 1:
        raise ConfigError(f"command class {command_class.name}: its skills have different kp_scale "
                          f"{sorted(scales)}; a class is driven with one gain")
    budgets = [m.strafe_turn_budget for m in members if m.strafe_turn_budget > 0]
    return SkillConfig(command_class.name, min(m.id for m in members), common("vx"), common("vy"),
                       common("yaw_rate"), min(budgets, default=0.0), scales.pop())


def _share(value: float, bounds: tuple[float, float]) -> float:
    """|value| as a fraction of the range's reach on its side (0 where the range has none)."""
    reach = bounds[1] if value > 0 else -bounds[0]
    return abs(value) / reach if reach > 0 else 0.0


def _per_joint_rad(per_leg_deg: tuple[float, float, float], num_joints: int) -> np.ndarray:
    """An (abad, hip, knee) triple in degrees as one value per joint in radians, leg after leg."""
    return np.tile(np.radians(np.asarray(per_leg_deg, dtype=np.float64)), num_joints // 3)


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return float(min(max(value, bounds[0]), bounds[1]))


@dataclass(frozen=True)
class SafetyConfig:
    """Deployment safety limits: the SafetyFilter and the SensorMonitor read them.

    The command limits may only tighten what `robot` says the hardware and firmware allow: the filter uses the
    stricter of the two (smaller caps and limits; the larger joint-limit margin). The defaults are the CyberDog 2
    firmware's own numbers, so leaving the section out is never looser than the firmware.

    The firmware's own q_des rule is a band around the MEASURED joint angle (robot.max_target_step_deg, 8 / 10 /
    12 deg), which the SafetyFilter keeps in every command. This section's max_target_step_deg is our own cap on
    the change of q_des per 50 Hz TICK, relative to the previous q_des, at most MAX_RAMP_FRAMES band widths
    (StackConfig checks it); velocity_limit bounds qd_des (the SDK README's range is +-12 rad/s, which the filter
    applies in any case).
    """

    limit_margin: float = 0.04                     # rad kept inside the joint limits (firmware: 0.04)
    # per 50 Hz tick (abad, hip, knee), relative to the previous q_des: two band widths; trot at 1 m/s plans up to 17 / 19 deg
    max_target_step_deg: tuple[float, float, float] = (16.0, 20.0, 24.0)
    kp_max: float = 200.0                          # N m/rad
    kd_max: float = 10.0                           # N m s/rad
    torque_limit: float = 12.0                     # N m, bounds tau_des and the commanded PD torque
    velocity_limit: float = 38.19                  # rad/s, bounds qd_des
    # Staleness is graded, since a stall of the sensor source or of this process (a VM, a busy board) is far
    # more common than a lost sensor, and damping a trotting dog drops it on the floor. Up to sensor_timeout a
    # sample is fresh. Older, the tick rides through on the plan it has (a chunk covers 160 ms) and the last
    # sample; older than stale_stand_after, a running robot moves to its standing pose (the motor boards hold it
    # without our sensors); only older than stale_damping_after (the firmware's own fallback after a 500 ms
    # command gap) is the stream lost: DAMPING.
    sensor_timeout: float = 0.05                   # s since a sensor sample was received: fresh up to here
    stale_stand_after: float = 0.15                # s: beyond it a running robot stands (a controlled stand)
    stale_damping_after: float = 0.5               # s: beyond it the stream is lost: DAMPING
    quaternion_tolerance: float = 0.02             # allowed |norm(q) - 1|
    max_tilt: float = 1.0                          # rad, roll or pitch beyond this is a fault
    joint_velocity_fault: float = 38.19            # rad/s, measured |qd| beyond this is a fault
    # rad a measured joint may be beyond its mechanical limit before it counts as a sensor or message error
    # (e.g. a joint array sent one element short arrives zero-padded: a zero knee is far outside its range)
    joint_limit_tolerance: float = 0.1
    # Plausibility (plausibility.py): finite values within the bounds above can still be false. A joint velocity is
    # the encoder's differentiated position, so over `consistency_window` s it must integrate to the position
    # change, up to the differentiator's filter lag (a 5 ms lag across a 40 rad/s swing reversal: 0.2 rad) and
    # the error of integrating 50 Hz samples (at most 0.18 rad per joint in simulation with noise, latency,
    # pushes, impacts and 3-step tick jitter, experts and the shipped model). A velocity that lies by 30 rad/s
    # gathers 0.6 rad per tick. Likewise the gyro must integrate to the rotation between the IMU's attitudes
    # (simulation: at most 0.09 rad, mostly the attitude's noise; a 2.5 rad/s lie crosses 0.25 rad in 0.1 s).
    consistency_window: float = 0.1                # s over which a rate is compared with its integral
    # s: two samples further apart are not integrated (a new window starts). In the live graph the samples a tick
    # sees are 2-38 ms apart under load and up to 100 ms across a stall; integrating a trotting knee (20 rad/s at
    # 4 Hz) over such a stall disagreed by more than the tolerance: 7 false DAMPINGs in a 30-minute trot.
    consistency_max_interval: float = 0.03
    joint_velocity_consistency: float = 0.4        # rad, |integral of qd - change of q| per joint
    gyro_consistency: float = 0.25                 # rad, |integral of the gyro - attitude rotation|
    # Bounds of what the sensors can report at all: beyond them a value is a message or sensor error, not a
    # measurement. IMUs of its class (e.g. the BMI088) measure up to 2000 deg/s (34.9 rad/s) and 24 g (235 m/s^2); in
    # simulation trot, pace and bound with pushes reached 5.4 rad/s and 64 m/s^2 (foot impacts). The robot tops out
    # near 3.2 m/s, so a body-velocity estimate beyond 5 m/s is an estimator or message error.
    max_angular_velocity: float = 35.0             # rad/s, |gyro|
    max_acceleration: float = 250.0                # m/s^2, |accelerometer|
    max_body_speed: float = 5.0                    # m/s, |vBody|

    def __post_init__(self) -> None:
        positive = ("kp_max", "kd_max", "torque_limit", "velocity_limit", "sensor_timeout",
                    "quaternion_tolerance", "max_tilt", "joint_velocity_fault", "joint_limit_tolerance",
                    "consistency_window", "consistency_max_interval", "joint_velocity_consistency", "gyro_consistency",
                    "max_angular_velocity", "max_acceleration", "max_body_speed")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"safety.{name} must be positive, got {getattr(self, name)}")
        if not self.limit_margin >= 0:
            raise ConfigError(f"safety.limit_margin must be >= 0, got {self.limit_margin}")
        if not all(s > 0 for s in self.max_target_step_deg):
            raise ConfigError("safety.max_target_step_deg entries must be positive")
        if not self.sensor_timeout < self.stale_stand_after < self.stale_damping_after:
            raise ConfigError("safety: need sensor_timeout < stale_stand_after < stale_damping_after, got "
                              f"{self.sensor_timeout}, {self.stale_stand_after}, {self.stale_damping_after}")


@dataclass(frozen=True)
class ControllerConfig:
    """The controller state machine: passive behaviour, stand-up / get-down timing, gains and the lying pose."""

    passive_mode: str = "damping"        # "damping" or "zero_torque" in PASSIVE
    passive_kd: float = 1.0              # N m s/rad, PASSIVE damping
    damping_kd: float = 3.0              # N m s/rad, DAMPING and ESTOP
    stand_up_duration: float = 2.0       # s, measured pose -> default pose
    get_down_duration: float = 2.0       # s, measured pose -> lying pose
    stand_kp: float = 30.0               # gains while standing up, holding and getting down
    stand_kd: float = 3.0
    # kg the legs carry through tau_des during those moves (stance_support.py): the robot's mass (the official
    # description's 8.52 kg, links and rotors, no foot mass), 0 = none
    support_mass: float = 8.52
    # Folded legs, body a few cm above the ground (model convention, abad/hip/knee per leg).
    lying_pose: tuple[float, ...] = (0.0, -1.1, 2.4) * 4
    auto_run: bool = False               # enter RUNNING as soon as the stand-up completes
    # s, a running robot's move from its last targets to default_pose when its sensors go stale (safety.
    # stale_stand_after): quick, since the gait is interrupted mid-stride, yet without a velocity jump
    stale_stand_duration: float = 0.5

    def __post_init__(self) -> None:
        if self.passive_mode not in ("damping", "zero_torque"):
            raise ConfigError(f"controller.passive_mode must be 'damping' or 'zero_torque', got {self.passive_mode!r}")
        for name in ("stand_up_duration", "get_down_duration", "stale_stand_duration"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"controller.{name} must be positive, got {getattr(self, name)}")
        for name in ("passive_kd", "damping_kd", "stand_kp", "stand_kd", "support_mass"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"controller.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class CommandFeedbackConfig:
    """The outer velocity loop around the policy (command_feedback.py): integral gains and bounds per axis (vx, vy,
    yaw rate). Off unless the robot config turns it on; a deployment setting, not part of what a model learned."""

    enabled: bool = False
    ki: tuple[float, float, float] = (2.0, 2.0, 2.0)              # correction per unit error per second (1/s)
    max_correction: tuple[float, float, float] = (0.5, 0.2, 0.5)  # m/s, m/s, rad/s
    leak_s: float = 0.5   # s, decay time constant of an axis's correction without a fresh measurement
    settle_s: float = 1.0  # s after a new skill or command before the loop integrates (the gait's own transient)
    settle_change: float = 0.1  # a command change beyond this (m/s or rad/s, any axis) starts a new settling period

    def __post_init__(self) -> None:
        if not all(k >= 0 for k in self.ki) or not all(m >= 0 for m in self.max_correction):
            raise ConfigError("command_feedback.ki and max_correction must be >= 0")
        if not self.leak_s > 0:
            raise ConfigError(f"command_feedback.leak_s must be positive, got {self.leak_s}")
        if not (self.settle_s >= 0 and self.settle_change > 0):
            raise ConfigError("command_feedback.settle_s must be >= 0 and settle_change positive")


@dataclass(frozen=True)
class WatchdogConfig:
    """What the policy loop does when its inputs stop making sense (policy_loop.py, command_watchdog.py).

    Commands: every teleop streams SkillCommand (20 Hz); when the stream stops, its last command must not drive
    the robot forever. After `command_zero_after_s` without a fresh command the velocity goes to zero (the skill
    stays: a trot in place is the gentlest stop), after `command_stand_after_s` the skill becomes stand. The
    joystick teleop zeroes its own command after 0.5 s; this catches a teleop that died.

    Sampler: a failed plan (an exception, non-finite actions) leaves the previous plan, which was made for the
    next ticks too (horizon - execute_index - 1 of them), so one failure is followed through like a deadline miss:
    a stochastic sampler can produce one bad sample and a good one the tick after. `sampler_failures` failures in a
    row (3: 60 ms at 50 Hz, well within the previous plan) mean the sampler is broken: a fault, DAMPING.
    """

    command_zero_after_s: float = 0.5
    command_stand_after_s: float = 2.0
    sampler_failures: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.command_zero_after_s <= self.command_stand_after_s:
            raise ConfigError(f"watchdog: need 0 < command_zero_after_s ({self.command_zero_after_s}) <= "
                              f"command_stand_after_s ({self.command_stand_after_s})")
        if self.sampler_failures < 1:
            raise ConfigError(f"watchdog.sampler_failures must be >= 1, got {self.sampler_failures}")


MAX_RAMP_FRAMES = 3   # a tick may move q_des by at most this many widths of the firmware's band (firmware frames)


@dataclass(frozen=True)
class StackConfig:
    """Everything a policy, a simulator or a node needs to agree on."""

    robot: RobotConfig
    rates: RatesConfig
    observation: ObservationConfig
    action: ActionConfig
    skills: tuple[SkillConfig, ...] = field(default_factory=tuple)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    command_feedback: CommandFeedbackConfig = field(default_factory=CommandFeedbackConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    # Empty: every skill is its own command (a labelled model). Otherwise the goal's skill one-hot runs over the
    # classes and the skills in none (`commands`): a class model (CommandClassConfig, command_classes.py).
    command_classes: tuple[CommandClassConfig, ...] = ()

    def __post_init__(self) -> None:
        self._check_lying_pose()
        self._check_step_limit()
        ids = [s.id for s in self.skills]
        if ids != list(range(len(ids))):
            raise ConfigError(f"skill ids must be 0..{len(ids) - 1} in order, got {ids}")
        self._check_command_classes()
        skill_term = self.observation.goal_slices().get("skill")
        if skill_term is not None and skill_term.stop - skill_term.start != len(self.commands):
            listed = (f"{len(self.skills)} skills are listed" if not self.command_classes else
                      f"the command classes leave {len(self.commands)} commands ({[c.name for c in self.commands]})")
            raise ConfigError(f"goal term 'skill' has size {skill_term.stop - skill_term.start} but {listed}")

    def _check_command_classes(self) -> None:
        """Each class merges known skills, none twice, never stand: the command watchdog and the stale-sensor
        reaction command stand itself, which must stay stand. A class model cannot have the gait clock (the
        gait_phase goal term): it would tell the model the gait its goal must not name."""
        names = {s.name for s in self.skills}
        seen: set[str] = set()
        for command_class in self.command_classes:
            where = f"command class {command_class.name}"
            if command_class.name in names or command_class.name in seen:
                raise ConfigError(f"{where}: the name is taken by a skill or another class")
            unknown = [s for s in command_class.skills if s not in names]
            if unknown:
                raise ConfigError(f"{where}: unknown skills {unknown}; known: {sorted(names)}")
            if "stand" in command_class.skills:
                raise ConfigError(f"{where}: stand cannot be in a class (the command watchdog and the stale-sensor "
                                  "reaction command stand, which must stay a stand)")
            taken = [s for s in command_class.skills if s in seen]
            if taken:
                raise ConfigError(f"{where}: skills {taken} are in another class too")
            seen.update(command_class.skills)
            seen.add(command_class.name)
        if self.command_classes and any(t.name == "gait_phase" for t in self.observation.goal_terms):
            raise ConfigError("command classes and the gait_phase goal term exclude each other: the gait clock "
                              "tells the model which gait its class goal leaves open")

    def _check_lying_pose(self) -> None:
        pose, robot = self.controller.lying_pose, self.robot
        if len(pose) != robot.num_joints:
            raise ConfigError(f"controller.lying_pose has {len(pose)} entries, expected {robot.num_joints}")
        for j, (lo, q, hi) in enumerate(zip(robot.position_lower, pose, robot.position_upper)):
            if not lo < q < hi:
                raise ConfigError(f"lying pose of {robot.joint_names[j]} ({q}) is outside its limits [{lo}, {hi}]")

    def _check_step_limit(self) -> None:
        """The per-tick q_des step may be at most MAX_RAMP_FRAMES widths of the firmware's band: a larger change
        could only be a jump the band cuts anyway."""
        ramp = min(MAX_RAMP_FRAMES, self.rates.frames_per_tick)
        per_frame = self.robot.max_target_step_deg
        for joint, tick, frame in zip(("abad", "hip", "knee"), self.safety.max_target_step_deg, per_frame):
            if tick > ramp * frame + 1e-9:
                raise ConfigError(f"safety.max_target_step_deg for {joint} ({tick} deg per tick) is more than {ramp} "
                                  f"firmware frames of its {frame} deg band (robot.max_target_step_deg): a change "
                                  f"that large is cut by the firmware's band around the measured angle anyway")

    @property
    def tick_step_rad(self) -> np.ndarray:
        """Our largest q_des change per 50 Hz tick, per joint (rad): the safety filter's step cap, which the
        experts' plans respect too (see _check_step_limit)."""
        return _per_joint_rad(self.safety.max_target_step_deg, self.robot.num_joints)

    def skill(self, key: Union[int, str]) -> SkillConfig:
        """Look a skill up by id or name; unknown skills are a clear error, not an IndexError."""
        for s in self.skills:
            if s.id == key or s.name == key:
                return s
        raise ConfigError(f"unknown skill {key!r}; known: {[s.name for s in self.skills]}")

    @functools.cached_property
    def commands(self) -> tuple[SkillConfig, ...]:
        """What a command names and the goal's skill one-hot runs over, in id order: each skill in no class as
        itself, each command class as one entry (class_command). Without classes: the skills."""
        classed = {name for c in self.command_classes for name in c.skills}
        entries = [s for s in self.skills if s.name not in classed]
        entries += [class_command(c, [self.skill(name) for name in c.skills]) for c in self.command_classes]
        return tuple(sorted(entries, key=lambda entry: entry.id))

    def command(self, key: Union[int, str]) -> SkillConfig:
        """The command entry a skill or class id or name stands for: a skill in no class is its own entry, a skill
        in a class stands for the class (a class model asked for pace walks, and picks the gait itself)."""
        for entry in self.commands:
            if entry.id == key or entry.name == key:
                return entry
        name = self.skill(key).name   # a ConfigError for an unknown key
        return self.command(next(c.name for c in self.command_classes if name in c.skills))

    def command_index(self, key: Union[int, str]) -> int:
        """Where the command entry of a skill or class sits in the goal's one-hot."""
        return self.commands.index(self.command(key))

    def command_class(self, key: Union[int, str]) -> Union[CommandClassConfig, None]:
        """The class a skill or class id or name belongs to, None for a skill in no class."""
        name = self.command(key).name
        return next((c for c in self.command_classes if c.name == name), None)

    def describe_command_ranges(self) -> str:
        """The moving skills' command ranges in one line, for reports that must say which ranges they ran with
        (a model file's envelope can narrow them)."""
        def span(r: tuple[float, float]) -> str:
            return f"[{r[0]:g}, {r[1]:g}]"
        return "; ".join(f"{s.name} vx {span(s.vx)} vy {span(s.vy)} yaw {span(s.yaw_rate)}" for s in self.skills
                         if any(r != (0.0, 0.0) for r in (s.vx, s.vy, s.yaw_rate)))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts, as YAML or JSON would hold them (for model metadata and checkpoints). A labelled
        config has no command_classes key, so its files and datasets read as before the classes existed."""
        data = plain(dataclasses.asdict(self))
        if not self.command_classes:
            del data["command_classes"]
        return data


def plain(value: Any) -> Any:
    """Plain JSON/YAML data: dicts with string keys, lists for tuples, Python numbers for numpy (or torch)
    scalars. One function for config dicts, model metadata, dataset attrs and checkpoint state."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from plain YAML data, refusing unknown or missing keys with the key's path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key {name!r}")
            continue
        kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature errors are programming errors
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: {errors}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def read_yaml(path: Union[str, Path], what: str) -> Any:
    """The parsed YAML of a file; an unreadable file or malformed YAML is a ConfigError naming `what` and the path
    (every config-like file of the stack is read through here, so a typo never surfaces as a parser traceback)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def load_config(path: Union[str, Path, None] = None) -> StackConfig:
    """Read a stack config from YAML (the shipped CyberDog 2 config by default)."""
    path = Path(path) if path is not None else default_robot_config()
    return from_dict(StackConfig, read_yaml(path, "config"), where=path.name)


def default_robot_config() -> Path:
    """The shipped CyberDog 2 config file (share/diffuseloco_policy/configs/cyberdog2.yaml when installed)."""
    return package_file("diffuseloco_policy", ROBOT_CONFIG)


def config_from_dict(data: dict[str, Any]) -> StackConfig:
    """Rebuild a config, for example the one embedded in a model file."""
    return from_dict(StackConfig, data)
