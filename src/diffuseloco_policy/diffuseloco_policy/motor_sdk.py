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

    def advanced(self, age_s: float, horizon_s: float) -> "MotorCommand":
        """This command as a 500 Hz relay sends it `age_s` after it was issued: q_des moved along qd_des.

        Why: the policy ticks at 50 Hz and the firmware compares q_des with the measured angle every 2 ms
        (firmware_limits.py). Held for a whole tick, q_des falls behind a joint that follows qd_des: at 10 rad/s
        it is 0.2 rad behind after 20 ms, the knee's whole band, and the position term pulls back against the
        velocity term. Moved along qd_des, the setpoint and its velocity agree, as a trajectory does. Only for
        horizon_s (the plan's tick); after that q_des stays where the plan ended and qd_des is zero, so a late
        command does not carry the legs on."""
        # (count_nonzero rather than any: a fifth of the cost on 12 values, and the simulator asks every 2 ms)
        if age_s <= 0.0 or horizon_s <= 0.0 or not np.count_nonzero(self.qd_des):   # the method: 2 ms relay path
            return self
        if age_s <= horizon_s:
            return MotorCommand(self.q_des + self.qd_des * age_s, self.qd_des, self.kp, self.kd, self.tau)
        return MotorCommand(self.q_des + self.qd_des * horizon_s, np.zeros_like(self.qd_des), self.kp, self.kd,
                            self.tau)

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
