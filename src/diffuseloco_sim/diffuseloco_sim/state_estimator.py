"""The simulator's stand-in for the CyberDog 2 state estimator's body velocity (`vBody`).

The real robot reports vBody from its own estimator (leg kinematics fused with the IMU). A policy that observes it
must see numbers of the same kind in simulation, never MuJoCo's ground truth, so this rebuilds it from what the
robot measures: a planted foot does not move in the world, so the trunk moves at minus the foot's velocity
relative to the trunk, v = -(J(q) qd + w x p(q)), averaged over the feet in contact. The feet are 0.019 m
spheres that roll while planted; their centres move by the shank's pitch rate times the radius, which the
estimate adds back (without it the estimate reads 7-11 % low; docs/research/policy_eval/tracking.md).
"""

from __future__ import annotations

import numpy as np

from diffuseloco_policy import kinematics as kin

FOOT_RADIUS = 0.019   # m, the foot spheres of assets/cyberdog2.xml


def _cross(w: np.ndarray, p: np.ndarray) -> np.ndarray:
    """w x p for one vector w and rows p (4, 3); np.cross costs several times more on arrays this small."""
    return np.stack([w[1] * p[:, 2] - w[2] * p[:, 1], w[2] * p[:, 0] - w[0] * p[:, 2],
                     w[0] * p[:, 1] - w[1] * p[:, 0]], axis=1)


class LegOdometry:
    """Body-frame linear velocity from joint encoders, the gyro and which feet touch the ground."""

    def __init__(self, foot_radius: float = FOOT_RADIUS) -> None:
        self.foot_radius = foot_radius
        self.reset()

    def reset(self) -> None:
        self.velocity = np.zeros(3)

    def leg_velocities(self, q: np.ndarray, qd: np.ndarray, gyro: np.ndarray) -> np.ndarray:
        """(4, 3): the trunk velocity each leg implies if its foot is planted (model-convention joints)."""
        q, qd = np.asarray(q, dtype=np.float64).reshape(4, 3), np.asarray(qd, dtype=np.float64).reshape(4, 3)
        gyro = np.asarray(gyro, dtype=np.float64)
        feet, relative = kin.feet_and_velocity(q, qd)
        foot_velocity = relative + _cross(gyro, feet)
        # Hip and knee turn about -y, so the shank pitches at w_y - (hip rate + knee rate); a sphere rolling
        # without slip moves its centre by that rate times its radius, forward for a positive pitch rate.
        rolling = np.zeros((4, 3))
        rolling[:, 0] = (gyro[1] - qd[:, 1] - qd[:, 2]) * self.foot_radius
        return rolling - foot_velocity

    def update(self, q: np.ndarray, qd: np.ndarray, gyro: np.ndarray, contacts: np.ndarray) -> np.ndarray:
        """This sample's estimate; in a flight phase (no foot down) the last estimate holds."""
        contacts = np.asarray(contacts, dtype=bool)
        if contacts.any():
            self.velocity = self.leg_velocities(q, qd, gyro)[contacts].mean(axis=0)
        return self.velocity.copy()
