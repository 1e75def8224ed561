"""MuJoCo CyberDog 2 that behaves like the robot's motor interface.

The simulator takes exactly what the motor SDK takes (q_des, qd_des, kp, kd, tau per joint, SDK convention).
Every 2 ms frame the firmware's motor mode (sim/firmware.py: the command-gap rules, the joint-limit clamp, the
position band around the measured joint angle, the soft joint limits) turns the newest frame into what the motor
boards run, and the boards (sim/actuator.py) hold it for the frame and close the joint law
tau = tau_ff + kp (q_des - q) + kd (qd_des - qd) themselves, as the robot's motor drivers do: by default through
MuJoCo's implicit actuator at a 2 ms physics step (SimConfig.actuator), clamped to the motor limit and the
firmware's torque-speed curve. It reports what the robot reports: joint state in SDK convention and the IMU.

The direct path (`command`) plays a client plus the LCM bridge: by default the newest frame counts as re-sent
every frame (as bridge/lcm_bridge.CommandRelay re-sends a fresh command), so the gap rules never act; with
`bridge_hold_s` the re-sending stops that long after the newest frame and the firmware's gap rules take over
(the reset's holding frame is kept up until the first `command`, so a client that connects late finds the robot
standing in motor mode).
An episode starts standing with motor mode already entered and activated (err_flag bit 1 clear): the robot's
~2.5 s activation wait with all-zero frames is reproduced by the LCM path (bridge/lcm_robot_peer.py, which
starts the firmware out of motor mode), not by every episode. Latency, noise, randomization and pushes come from a
SimConfig and a seeded numpy Generator, so a seed reproduces an episode exactly. Ground-truth accessors
(velocity, contacts, falls) exist for experts, evaluation and tests; a policy must not use them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mujoco
import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.fast_clip import clip
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.observation import RobotState
from diffuseloco_policy.package_files import package_file
from .actuator import MotorBoards
from .firmware import FRAME_S, MotorFirmware
from diffuseloco_policy.motor_sdk import ImuReading, JointState, MotorCommand
from .sim_config import SimConfig
from .state_estimator import LegOdometry

MJCF = "assets/cyberdog2.xml"   # the MuJoCo CyberDog 2, in the package's share directory
FOOT_GEOMS = ("FR_foot", "FL_foot", "RR_foot", "RL_foot")
FALL_HEIGHT = 0.12      # m, trunk origin height below which the robot counts as fallen
FALL_TILT = 1.0         # rad, |roll| or |pitch| beyond which the robot counts as fallen
HANG_SCALE = 1000.0     # how much heavier the trunk is made while hung


@dataclass(frozen=True)
class EpisodeParams:
    """The physical parameters drawn for one episode (kept for logs and the dataset's metadata)."""

    friction: float
    payload_mass: float
    payload_com: tuple[float, float]
    kp_scale: float
    kd_scale: float
    motor_strength: float
    armature_scale: float = 1.0           # rotor inertia on every joint, times the model's 0.00287 kg m^2
    joint_friction_scale: float = 1.0     # dry friction on every joint, times the model's 0.246 N m
    motor_latency_s: float = 0.0          # a frame takes effect this long after its 2 ms boundary


@dataclass(frozen=True)
class _Snapshot:
    """Raw (noise-free) sensor values at one physics step, for the sensor-latency buffer."""

    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    quat: np.ndarray
    gyro: np.ndarray
    acc: np.ndarray


class CyberDogSim:
    """One simulated CyberDog 2 with the motor SDK's command and state interface."""

    def __init__(self, config: StackConfig, sim_config: Optional[SimConfig] = None, seed: int = 0,
                 model_path: Optional[Path] = None, bridge_hold_s: Optional[float] = None) -> None:
        """bridge_hold_s: how long the newest frame is re-sent every 2 ms (None: until the next one)."""
        self.config = config
        self.bridge_hold_s = bridge_hold_s
        self.sim_config = sim_config or SimConfig()
        self.model = mujoco.MjModel.from_xml_path(str(model_path or package_file("diffuseloco_sim", MJCF)))
        self.model.opt.timestep = self.sim_config.actuator.physics_dt_s
        self.data = mujoco.MjData(self.model)
        self.convention = JointConvention(config.robot)
        self.rng = np.random.default_rng(seed)
        self.physics_dt = float(self.model.opt.timestep)
        self._control_dt = config.rates.control_dt
        self.steps_per_tick = int(round(self._control_dt / self.physics_dt))
        self.torque_limit = float(config.robot.torque_limit)
        self._trunk = self.model.body("trunk").id
        self._foot_geoms = np.array([self.model.geom(n).id for n in FOOT_GEOMS])
        self._trunk_geoms = np.array([self.model.geom("trunk").id])
        self._floor = self.model.geom("floor").id
        self._nominal_mass = float(self.model.body_mass[self._trunk])
        self._nominal_ipos = self.model.body_ipos[self._trunk].copy()
        self._nominal_inertia = self.model.body_inertia[self._trunk].copy()
        self._nominal_armature = self.model.dof_armature[6:18].copy()
        self._nominal_frictionloss = self.model.dof_frictionloss[6:18].copy()
        self._sensor_adr = {n: int(self.model.sensor(n).adr[0]) for n in ("imu_quat", "imu_gyro", "imu_acc")}
        # views into MuJoCo's arrays, fetched once: every physics step reads them (each attribute access and
        # slice builds a new numpy view)
        self._q, self._qd = self.data.qpos[7:19], self.data.qvel[6:18]
        sensors, a = self.data.sensordata, self._sensor_adr
        self._imu_views = (sensors[a["imu_quat"]:a["imu_quat"] + 4], sensors[a["imu_gyro"]:a["imu_gyro"] + 3],
                           sensors[a["imu_acc"]:a["imu_acc"] + 3])
        self._sensor_delay = int(round(self.sim_config.sensor_latency_s / self.physics_dt))
        self._actuation_delay = int(round(self.sim_config.actuation_latency_s / self.physics_dt))
        self.steps_per_frame = max(1, int(round(FRAME_S / self.physics_dt)))
        self.firmware = MotorFirmware(config.robot, position_band=self.sim_config.firmware_position_band)
        self.boards = MotorBoards(self.model, self.data, self.sim_config.actuator.pd, self.torque_limit)
        self.odometry = LegOdometry()
        self.reset()

    # ----------------------------------------------------------------------------------------------- lifecycle
    def reset(self, seed: Optional[int] = None, joint_position: Optional[np.ndarray] = None,
              base_height: float = 0.265, motor_mode: bool = True) -> EpisodeParams:
        """Start an episode standing at the default pose (or a given model-convention pose); draw its parameters.
        motor_mode: start in motor mode, activated, holding the pose with the config's gains; False: out of motor
        mode with no frame yet (passive motors, the robot's state before a client connects)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        q0 = np.asarray(self.config.robot.default_pose if joint_position is None else joint_position, dtype=np.float64)
        self.data.qpos[:7] = (0.0, 0.0, base_height, 1.0, 0.0, 0.0, 0.0)
        self.data.qpos[7:19] = q0
        self.params = self._draw_params()
        self._apply_params(self.params)
        mujoco.mj_forward(self.model, self.data)
        self.step_count = 0
        self.applied_torque = np.zeros(12)
        self.firmware.reset(activated=motor_mode)
        hold = MotorCommand.position(q0, self.config.robot.kp, self.config.robot.kd)
        self._frame: Optional[MotorCommand] = hold if motor_mode else None   # newest frame (internal convention)
        self._frame_step = 0                       # physics step at which the newest frame arrived
        self._connected = True
        self._commanded = False                    # no command() yet: the reset's holding frame is kept up
        self._motors = hold if motor_mode else MotorCommand.passive(12)   # what the motor boards run
        p = self.params
        self.boards.reset(self._motors, p.kp_scale, p.kd_scale, p.motor_strength, p.motor_latency_s)
        self._pending: collections.deque = collections.deque()
        self._history: collections.deque = collections.deque(maxlen=self._sensor_delay + 1)
        self._history.append(self._snapshot())
        self._next_push = self._draw_push_time()
        self.odometry.reset()
        return self.params

    @property
    def time(self) -> float:
        return self.step_count * self.physics_dt

    def _draw_params(self) -> EpisodeParams:
        r = self.sim_config.randomization
        u = lambda lo_hi: float(self.rng.uniform(*lo_hi))  # noqa: E731 - tiny local helper
        shift = r.payload_com_shift
        return EpisodeParams(
            friction=u(r.friction), payload_mass=u(r.payload_mass),
            payload_com=(float(self.rng.uniform(-shift, shift)), float(self.rng.uniform(-shift, shift))),
            kp_scale=u(r.kp_scale), kd_scale=u(r.kd_scale), motor_strength=u(r.motor_strength),
            armature_scale=u(r.armature_scale), joint_friction_scale=u(r.joint_friction_scale),
            motor_latency_s=u(r.motor_latency_s))

    def _apply_params(self, p: EpisodeParams) -> None:
        """Friction on floor and feet (MuJoCo uses the larger of the pair), the payload on the trunk, and the
        joints' rotor inertia and dry friction (the gain error, strength and latency live on the motor boards)."""
        self.model.dof_armature[6:18] = self._nominal_armature * p.armature_scale
        self.model.dof_frictionloss[6:18] = self._nominal_frictionloss * p.joint_friction_scale
        self.model.geom_friction[self._floor, 0] = p.friction
        self.model.geom_friction[self._foot_geoms, 0] = p.friction
        mass = self._nominal_mass + p.payload_mass
        com = self._nominal_ipos.copy()
        com[:2] += np.array(p.payload_com) * p.payload_mass / mass
        self.model.body_mass[self._trunk] = mass
        self.model.body_ipos[self._trunk] = com
        self.model.body_inertia[self._trunk] = self._nominal_inertia   # undoes hang()

    def hang(self, height: float = 0.6) -> None:
        """Hold the trunk still in the air, like a robot hung from a stand (where the SDK README has the first
        tests run): the trunk is lifted to `height`, its mass and inertia made HANG_SCALE times larger and its
        own weight carried by an applied force, so the legs swing freely without moving it noticeably (their
        weight lowers it by millimetres a second). Until the next reset."""
        self.data.qpos[2] = height
        self.data.qvel[:6] = 0.0
        self.model.body_mass[self._trunk] *= HANG_SCALE
        self.model.body_inertia[self._trunk] *= HANG_SCALE
        self.data.xfrc_applied[self._trunk, 2] = -self.model.body_mass[self._trunk] * self.model.opt.gravity[2]
        mujoco.mj_forward(self.model, self.data)
        self._history.append(self._snapshot())

    # ------------------------------------------------------------------------------------------------- command
    def command(self, cmd: MotorCommand) -> None:
        """Send one motor frame (SDK convention); it reaches the firmware after the actuation latency."""
        frame = self._internal(cmd)
        self._commanded = True
        if self._actuation_delay == 0:
            self._frame, self._frame_step = frame, self.step_count
        else:
            self._pending.append((self.step_count + self._actuation_delay, frame))

    def disconnect(self) -> None:
        """No more frames (a client that died): the firmware's gap rules act from the newest frame's arrival."""
        self._pending.clear()
        self._connected = False

    def command_position(self, q_des_model: np.ndarray, kp: Optional[float] = None, kd: Optional[float] = None) -> None:
        """Convenience for experts and policies: a model-convention position target with the config's gains."""
        kp = self.config.robot.kp if kp is None else kp
        kd = self.config.robot.kd if kd is None else kd
        self.command(MotorCommand.position(self.convention.to_sdk(q_des_model), kp, kd))

    def command_pd(self, q_des_model: np.ndarray, qd_des_model: np.ndarray, kp=None, kd=None, tau_model=None) -> None:
        """A model-convention PD command (q_des, qd_des, optional gains and feed-forward torque; the config's gains
        by default), converted to the SDK convention with JointConvention and sent as one motor frame."""
        q = np.asarray(q_des_model, dtype=np.float64)
        kp = self.config.robot.kp if kp is None else kp
        kd = self.config.robot.kd if kd is None else kd
        tau = np.zeros_like(q) if tau_model is None else np.asarray(tau_model, dtype=np.float64)
        to_sdk = self.convention.to_sdk
        self.command(MotorCommand(to_sdk(q), to_sdk(qd_des_model), np.broadcast_to(np.asarray(kp, float), q.shape).copy(),
                                  np.broadcast_to(np.asarray(kd, float), q.shape).copy(), to_sdk(tau)))

    def _internal(self, cmd: MotorCommand) -> MotorCommand:
        """An SDK-convention frame in the firmware's internal (model) convention, as it travels on the LCM wire.
        Its arrays are read-only: the frame is re-sent every 2 ms and the motor boards keep what they derive from
        its gains while the same frame's arrays come back (actuator.GainScale)."""
        to_model = self.convention.to_model
        arrays = (to_model(cmd.q_des), to_model(cmd.qd_des), np.array(cmd.kp, dtype=np.float64),
                  np.array(cmd.kd, dtype=np.float64), to_model(cmd.tau))
        for array in arrays:
            array.flags.writeable = False
        return MotorCommand(*arrays)

    def _gap_ms(self) -> float:
        """Milliseconds since the firmware last received a frame: 0 while the bridge re-sends the newest one."""
        hold = self.bridge_hold_s if self._connected else 0.0
        if hold is None or (self._connected and not self._commanded):
            return 0.0    # the episode's own holding frame counts as re-sent until the first command
        age = (self.step_count - self._frame_step) * self.physics_dt
        return 0.0 if age <= hold + 1e-9 else 1000.0 * (age - hold)

    @property
    def err_flag(self) -> int:
        """The firmware's motor_ctrl_state.err_flag after the latest frame."""
        return self.firmware.err_flag

    # ---------------------------------------------------------------------------------------------------- step
    def step(self, n_steps: Optional[int] = None) -> None:
        """Advance by n physics steps (one 50 Hz control period by default).

        Only the last steps' sensor snapshots and delivered torques are kept: a reading can come only after this
        returns, and then it sees the snapshot sensor_latency_s old at most, so the earlier steps' would never be
        read (computing them was a tenth of a step's cost)."""
        n = self.steps_per_tick if n_steps is None else n_steps
        observed_from = n - (self._sensor_delay + 1)
        for index in range(n):
            self._physics_step(observed=index >= observed_from)

    def _relayed_frame(self) -> Optional[MotorCommand]:
        """The newest frame as the bridge re-sends it now (bridge/lcm_bridge.CommandRelay): its q_des moved along
        qd_des for one control tick (MotorCommand.advanced). A frame that arrives every 2 ms (the sim node's and
        the robot peer's own relay) is fresh here and passes unchanged."""
        if self._frame is None:
            return None
        age = (self.step_count - self._frame_step) * self.physics_dt
        return self._frame.advanced(age, self._control_dt)

    def _physics_step(self, observed: bool = True) -> None:
        while self._pending and self._pending[0][0] <= self.step_count:
            self._frame, self._frame_step = self._pending.popleft()[1], self.step_count
        if self.step_count % self.steps_per_frame == 0:
            self._motors = self.firmware.run(self._relayed_frame(), self._gap_ms(), self._q, self._qd)
            self.boards.hold(self._motors)
        if self.step_count * self.physics_dt >= self._next_push:   # self.time; never without pushes (inf)
            self._push()
        self.boards.apply()
        mujoco.mj_step(self.model, self.data)
        self.step_count += 1
        if observed:
            self.applied_torque = self.boards.applied_torque()
            if self._sensor_delay:
                self._history.append(self._snapshot())

    def _snapshot(self) -> _Snapshot:
        quat, gyro, acc = self._imu_views
        return _Snapshot(self._q.copy(), self._qd.copy(), self.applied_torque.copy(), quat.copy(), gyro.copy(),
                         acc.copy())

    # --------------------------------------------------------------------------------------------------- pushes
    def _draw_push_time(self) -> float:
        p = self.sim_config.pushes
        return self.time + float(self.rng.uniform(*p.interval_s)) if p.enabled else float("inf")

    def _push(self) -> None:
        p = self.sim_config.pushes
        angle = self.rng.uniform(-np.pi, np.pi)
        speed = self.rng.uniform(0.5, 1.0) * p.max_velocity
        self.apply_push(speed * np.array([np.cos(angle), np.sin(angle)]), float(self.rng.uniform(-1, 1)) * p.max_yaw_rate)
        self._next_push = self._draw_push_time()

    def apply_push(self, delta_velocity_xy: np.ndarray, delta_yaw_rate: float = 0.0) -> None:
        """Shove the trunk: add a world-frame horizontal velocity (m/s) and a yaw rate (rad/s) instantly."""
        self.data.qvel[0:2] += delta_velocity_xy
        self.data.qvel[5] += delta_yaw_rate

    # ---------------------------------------------------------------------------------------- robot's sensors
    def _reading(self) -> _Snapshot:
        """The sensor values the robot would report now: sensor_latency_s old (fresh when there is none)."""
        return self._history[0] if self._sensor_delay else self._snapshot()

    def joint_state(self) -> JointState:
        """What `leg_control_data` reports: q, qd, tau_est in SDK convention, with latency and noise."""
        snap, noise = self._reading(), self.sim_config.noise
        q = snap.q + self._noise(noise.joint_position, 12)
        qd = snap.qd + self._noise(noise.joint_velocity, 12)
        to_sdk = self.convention.to_sdk
        return JointState(to_sdk(q), to_sdk(qd), to_sdk(snap.tau))

    def imu(self) -> ImuReading:
        """What the IMU / state estimator reports: quaternion (w, x, y, z), gyro and accelerometer (body frame)."""
        snap, noise = self._reading(), self.sim_config.noise
        quat = snap.quat
        if noise.orientation > 0:
            quat = _perturb_quaternion(quat, self._noise(noise.orientation, 3))
        return ImuReading(quat, snap.gyro + self._noise(noise.gyro, 3), snap.acc + self._noise(noise.accelerometer, 3))

    def robot_state(self) -> RobotState:
        """The measured state in model convention, ready for ObservationBuilder (same latency and noise), with
        the body velocity a state estimator derives from these readings."""
        joints, imu = self.joint_state(), self.imu()
        to_model = self.convention.to_model
        return RobotState(to_model(joints.q), to_model(joints.qd), imu.quaternion, imu.gyro,
                          self.body_velocity(joints, imu))

    def body_velocity(self, joints: JointState, imu: ImuReading) -> np.ndarray:
        """The state estimator's vBody (body frame, m/s) from these readings and the feet now on the ground:
        leg odometry (sim/state_estimator.py), never the ground truth."""
        to_model = self.convention.to_model
        return self.odometry.update(to_model(joints.q), to_model(joints.qd), imu.gyro, self.foot_contacts())

    def _noise(self, std: float, n: int) -> np.ndarray:
        return self.rng.normal(0.0, std, n) if std > 0 else np.zeros(n)

    # ------------------------------------------------------------------------------------------- ground truth
    def base_rotation(self) -> np.ndarray:
        """World-from-body rotation matrix of the trunk (true)."""
        return self.data.xmat[self._trunk].reshape(3, 3)

    def base_velocity_body(self) -> np.ndarray:
        """True linear velocity of the trunk origin in the body frame (m/s)."""
        return self.base_rotation().T @ self.data.qvel[0:3]

    def base_angular_velocity_body(self) -> np.ndarray:
        """True angular velocity of the trunk in the body frame (rad/s): MuJoCo's free joint holds it that way."""
        return self.data.qvel[3:6].copy()

    def base_velocity_heading(self) -> np.ndarray:
        """True (vx, vy) in the yaw-only heading frame: what a velocity command refers to."""
        yaw = self.yaw()
        c, s = np.cos(yaw), np.sin(yaw)
        vx, vy = self.data.qvel[0], self.data.qvel[1]
        return np.array([c * vx + s * vy, -s * vx + c * vy])

    def yaw_rate(self) -> float:
        """True angular rate about the trunk's z axis (rad/s): MuJoCo gives a free joint's angular velocity in the
        body frame, so this is the yaw rate of a level trunk and differs from the world-z rate by the tilt's cosine
        (under 1 % below 8 deg of roll or pitch)."""
        return float(self.data.qvel[5])

    def yaw(self) -> float:
        w, x, y, z = self.data.qpos[3:7]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def roll_pitch(self) -> tuple[float, float]:
        w, x, y, z = self.data.qpos[3:7]
        roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
        pitch = np.arcsin(clip(2 * (w * y - z * x), -1.0, 1.0))   # np.clip's ufunc: asked every tick
        return float(roll), float(pitch)

    def base_height(self) -> float:
        return float(self.data.qpos[2])

    def base_position(self) -> np.ndarray:
        return self.data.qpos[0:3].copy()

    def true_joint_position(self) -> np.ndarray:
        """Model-convention joint positions without latency or noise."""
        return self.data.qpos[7:19].copy()

    def foot_contacts(self) -> np.ndarray:
        """Which feet (FR, FL, RR, RL) touch the floor now."""
        return self._touching(self._foot_geoms)

    def _touching(self, geoms: np.ndarray) -> np.ndarray:
        """For each geom, whether some contact involves it: MuJoCo's contact list read as arrays, in one pass
        (it is asked every tick, and a Python loop over contact structs costs more than the rest of the tick's
        sensor readout)."""
        contact = self.data.contact
        in_contact = np.concatenate((contact.geom1, contact.geom2))
        return (geoms[:, None] == in_contact[None, :]).any(axis=1)

    def foot_forces(self) -> np.ndarray:
        """Ground reaction force on each foot (FR, FL, RR, RL) in the world frame, N, shape (4, 3): what the
        robot's leg controller reports as force_est, here exact."""
        forces = np.zeros((4, 3))
        wrench = np.zeros(6)
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            for leg, geom in enumerate(self._foot_geoms):
                if geom in (c.geom1, c.geom2):
                    mujoco.mj_contactForce(self.model, self.data, i, wrench)
                    world = c.frame.reshape(3, 3).T @ wrench[:3]  # contact frame -> world, force on geom2
                    forces[leg] += world if geom == c.geom2 else -world
        return forces

    def trunk_on_ground(self) -> bool:
        return bool(self._touching(self._trunk_geoms)[0])

    def fallen(self) -> bool:
        """Trunk too low, too tilted, or touching the ground: the episode failed."""
        roll, pitch = self.roll_pitch()
        return (self.base_height() < FALL_HEIGHT or abs(roll) > FALL_TILT or abs(pitch) > FALL_TILT
                or self.trunk_on_ground())


def _perturb_quaternion(q: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """q composed with a small body-frame rotation (rotation vector), renormalized."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return q
    axis = rotvec / angle
    dq = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
    out = np.empty(4)
    mujoco.mju_mulQuat(out, q, dq)
    return out / np.linalg.norm(out)
