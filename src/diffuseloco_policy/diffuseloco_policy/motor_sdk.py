"""Plain data types the simulator exchanges, shaped like the robot's motor SDK messages.

They mirror LCM `motor_ctrl_lcmt` (command) and `leg_control_data` / the state estimator (state) so that the
ROS simulator node can translate them 1:1 to cyberdog_msgs. All joint arrays are SDK order (FR, FL, RR, RL x
abad, hip, knee) and, unless a name says otherwise, SDK sign convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotorCommand:
    """One motor frame: tau = tau + kp (q_des - q) + kd (qd_des - qd) per joint, SDK convention."""

    q_des: np.ndarray
    qd_des: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    tau: np.ndarray

    @classmethod
    def position(cls, q_des: np.ndarray, kp: float, kd: float) -> "MotorCommand":
        """A pure position command with scalar gains, as the policy sends it."""
        q = np.asarray(q_des, dtype=np.float64)
        return cls(q, np.zeros_like(q), np.full_like(q, kp), np.full_like(q, kd), np.zeros_like(q))

    @classmethod
    def passive(cls, num_joints: int = 12) -> "MotorCommand":
        """Zero gains and torque: the motors are limp (what the robot does before it gets a command)."""
        z = np.zeros(num_joints)
        return cls(z, z, z, z, z)


@dataclass(frozen=True)
class JointState:
    """Measured joint positions, velocities and estimated torques (SDK convention)."""

    q: np.ndarray
    qd: np.ndarray
    tau_est: np.ndarray


@dataclass(frozen=True)
class ImuReading:
    """Body orientation (w, x, y, z, world frame), body-frame gyro (rad/s) and accelerometer (m/s^2)."""

    quaternion: np.ndarray
    gyro: np.ndarray
    accelerometer: np.ndarray
