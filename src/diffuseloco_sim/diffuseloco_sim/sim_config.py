"""Simulator options: latency, sensor noise, domain randomization and the PD integration, one dataclass each.

Defaults describe an ideal robot (no latency, noise or randomization) so that tests are exact; the dataset
generator and the evaluator switch on `SimConfig.randomized()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from diffuseloco_policy.firmware_limits import FRAME_S
from .actuator import PD_METHODS


@dataclass(frozen=True)
class NoiseConfig:
    """Standard deviations of zero-mean Gaussian sensor noise, drawn fresh at each reading."""

    joint_position: float = 0.0      # rad
    joint_velocity: float = 0.0      # rad/s
    gyro: float = 0.0                # rad/s
    accelerometer: float = 0.0       # m/s^2
    orientation: float = 0.0         # rad, small random rotation applied to the quaternion


@dataclass(frozen=True)
class RandomizationConfig:
    """Ranges (uniform) of per-episode physical parameters; (1, 1) or (0, 0) switches a term off."""

    friction: tuple[float, float] = (0.9, 0.9)
    payload_mass: tuple[float, float] = (0.0, 0.0)        # kg added to the trunk
    payload_com_shift: float = 0.0                          # m, max |shift| of the payload in x and y
    kp_scale: tuple[float, float] = (1.0, 1.0)
    kd_scale: tuple[float, float] = (1.0, 1.0)
    motor_strength: tuple[float, float] = (1.0, 1.0)      # scales delivered torque and its limit
    # What the public source cannot settle for a given robot: the rotor inertia (armature) around the reflected
    # 0.00287 kg m^2, the joints' dry friction around the firmware model's 0.246 N m (its simulator URDF says 0.1)
    # and how long after its 2 ms boundary a frame takes effect on the motor boards.
    armature_scale: tuple[float, float] = (1.0, 1.0)
    joint_friction_scale: tuple[float, float] = (1.0, 1.0)
    motor_latency_s: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class ActuatorConfig:
    """How the simulator integrates the motor boards' PD law (sim/actuator.py).

    The default is what docs/research/actuator/README.md chose: MuJoCo's implicit actuator at a 2 ms physics step
    stays within 0.0006 rad of the law evaluated every 0.05 ms (the boards' fast loop) on a hung leg, at any kd,
    for about the cost of an explicit law at 2 ms, which diverges above kd ~3.5 on the robot's rotor inertia.
    `reference()` is that fine explicit integration, for benchmarks and tests.
    """

    pd: str = "implicit"            # "implicit" (kd implicit in MuJoCo's integrator) or "explicit" (torque per step)
    physics_dt_s: float = 0.002     # s, MuJoCo's timestep; a whole number of steps per 2 ms frame

    def __post_init__(self) -> None:
        if self.pd not in PD_METHODS:
            raise ValueError(f"ActuatorConfig.pd must be one of {PD_METHODS}, got {self.pd!r}")
        if not self.physics_dt_s > 0.0 or abs(FRAME_S / self.physics_dt_s - round(FRAME_S / self.physics_dt_s)) > 1e-6:
            raise ValueError(f"ActuatorConfig.physics_dt_s must divide the 2 ms frame, got {self.physics_dt_s}")

    @staticmethod
    def reference() -> "ActuatorConfig":
        """The law evaluated every 0.05 ms: the stand-in for the motor boards' own fast loop."""
        return ActuatorConfig(pd="explicit", physics_dt_s=0.00005)


@dataclass(frozen=True)
class PushConfig:
    """Random shoves: an instantaneous change of the trunk's horizontal velocity every interval."""

    enabled: bool = False
    interval_s: tuple[float, float] = (4.0, 8.0)
    max_velocity: float = 0.4       # m/s, magnitude of the horizontal velocity change
    max_yaw_rate: float = 0.3       # rad/s


@dataclass(frozen=True)
class SimConfig:
    """Everything that makes the simulated robot differ from the ideal model."""

    sensor_latency_s: float = 0.0      # age of the joint and IMU data the robot reports
    actuation_latency_s: float = 0.0   # delay before a motor command takes effect
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    pushes: PushConfig = field(default_factory=PushConfig)
    actuator: ActuatorConfig = field(default_factory=ActuatorConfig)
    # The firmware's `motor_sdk_position_mutation_limit` (on by default on the robot): q_des kept within
    # 8 / 10 / 12 deg of the measured joint angle (sim/firmware.py). Off only for diagnostics.
    firmware_position_band: bool = True

    @staticmethod
    def randomized() -> "SimConfig":
        """The setting used for the dataset and the evaluation: realistic latency, noise, randomization, pushes."""
        return SimConfig(
            sensor_latency_s=0.004,
            actuation_latency_s=0.002,
            noise=NoiseConfig(joint_position=0.005, joint_velocity=0.1, gyro=0.02, accelerometer=0.1, orientation=0.01),
            randomization=RandomizationConfig(
                friction=(0.5, 1.2),
                payload_mass=(0.0, 1.0),
                payload_com_shift=0.03,
                kp_scale=(0.9, 1.1),
                kd_scale=(0.9, 1.1),
                motor_strength=(0.9, 1.1),
                armature_scale=(0.8, 1.2),
                joint_friction_scale=(0.5, 1.5),
                motor_latency_s=(0.0, 0.001),
            ),
            pushes=PushConfig(enabled=True),
        )

    def with_actuator(self, actuator: ActuatorConfig) -> "SimConfig":
        """The same setting with another PD integration (e.g. ActuatorConfig.reference())."""
        return replace(self, actuator=actuator)

    def without_pushes(self) -> "SimConfig":
        return replace(self, pushes=replace(self.pushes, enabled=False))

    def with_ranges(self, **ranges) -> "SimConfig":
        """The same setting with some randomization ranges replaced (e.g. kp_scale=(0.9, 0.93): weak gains only)."""
        return replace(self, randomization=replace(self.randomization, **ranges))
