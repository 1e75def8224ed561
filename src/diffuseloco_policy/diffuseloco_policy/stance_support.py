"""Gravity feed-forward for the controller's own moves (stand up, hold, get down), sent as tau_des.

The firmware keeps q_des within 8 / 10 / 12 deg of the measured angle (firmware_limits.py), so a PD at the stand
gains can ask a knee for at most kp * 0.21 rad, about 6 N m at kp 30: not enough to lift a crouched dog's rear by
position error alone. The motor boards add tau_des to the PD torque unclamped (up to the motor limit), so the
weight is carried there and the PD only corrects the pose, as the robot's own locomotion controller does
(cyberdog_locomotion: leg controllers send J^T f through tau_des).

Static balance of one leg with its foot on the ground: tau + J(q)^T f = 0, with f the ground's force on the foot.
With four feet down and the trunk level each carries a quarter of the weight, f = (0, 0, m g / 4).
"""

from __future__ import annotations

import numpy as np

from . import kinematics as kin

GRAVITY = 9.81  # m/s^2


def support_torques(joint_q: np.ndarray, mass: float, gravity: float = GRAVITY) -> np.ndarray:
    """Joint torques (12, model convention) that hold `mass` kg on four feet at pose joint_q, trunk level."""
    q = np.asarray(joint_q, dtype=np.float64).reshape(4, 3)
    force = np.zeros((4, 3))
    force[:, 2] = mass * gravity / 4.0
    return (-np.einsum("lij,li->lj", kin.jacobian(q), force)).reshape(12)
