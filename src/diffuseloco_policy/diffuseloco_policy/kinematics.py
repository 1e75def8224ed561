"""Leg kinematics of the CyberDog 2 in model convention, vectorized over the four legs.

Geometry matches diffuseloco_sim/assets/cyberdog2.xml: abad axis +x at the hip origin, hip and knee axes -y (knee positive
when bent), the thigh 0.094 m outboard of the abad axis. Positions are of the foot sphere's centre in the trunk
frame. Analytic inverse kinematics keeps the 50 Hz expert cheap; the Jacobian is numerical because it is only
needed for the feed-forward terms and a central difference of this closed form is exact to 1e-9.
"""

from __future__ import annotations

import numpy as np

HIP_ORIGINS = np.array([[0.164, -0.042, 0.0], [0.164, 0.042, 0.0], [-0.164, -0.042, 0.0], [-0.164, 0.042, 0.0]])
SIDE = np.array([-1.0, 1.0, -1.0, 1.0])    # -1 right legs, +1 left legs
ABAD_OFFSET = 0.094
THIGH = 0.12
CALF = 0.17391


def forward(q: np.ndarray) -> np.ndarray:
    """Joint angles (..., 4, 3) -> foot positions (..., 4, 3) in the trunk frame.

    Leading axes evaluate several poses in one pass (the Jacobian's six, the estimator's three): numpy's sin and
    cos give every element the same bits whatever array it sits in, so a batch equals its poses one by one."""
    a, h, k = q[..., 0], q[..., 1], q[..., 2]
    x = THIGH * np.sin(h) + CALF * np.sin(h + k)
    z = -THIGH * np.cos(h) - CALF * np.cos(h + k)
    y = SIDE * ABAD_OFFSET
    ca, sa = np.cos(a), np.sin(a)
    feet = np.empty(q.shape)   # the three columns written in place: np.stack costs more than the maths
    feet[..., 0], feet[..., 1], feet[..., 2] = x, y * ca - z * sa, y * sa + z * ca
    return HIP_ORIGINS + feet


def foot_velocity(q: np.ndarray, qd: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """J(q) qd (4, 3): the feet's velocity relative to the trunk, as one central difference along qd. Two
    forward passes instead of the full Jacobian's six: the simulator's state estimator runs this at 500 Hz."""
    return (forward(q + eps * qd) - forward(q - eps * qd)) / (2.0 * eps)


def feet_and_velocity(q: np.ndarray, qd: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(forward(q), foot_velocity(q, qd)) from one batched forward pass: what the state estimator needs."""
    ahead, behind, feet = forward(np.stack([q + eps * qd, q - eps * qd, q]))
    return feet, (ahead - behind) / (2.0 * eps)


def inverse(p: np.ndarray) -> np.ndarray:
    """Foot positions (4, 3) in the trunk frame -> joint angles (4, 3), knee bent backwards (positive)."""
    rel = p - HIP_ORIGINS
    px, py, pz = rel[:, 0], rel[:, 1], rel[:, 2]
    d = SIDE * ABAD_OFFSET
    length = np.sqrt(np.maximum(py * py + pz * pz - d * d, 1e-6))
    abad = np.arctan2(pz, py) - np.arctan2(-length, d)
    abad = (abad + np.pi) % (2 * np.pi) - np.pi
    reach2 = px * px + length * length
    cos_knee = np.clip((reach2 - THIGH ** 2 - CALF ** 2) / (2 * THIGH * CALF), -1.0, 1.0)
    knee = np.arccos(cos_knee)
    hip = np.arctan2(px, length) - np.arctan2(CALF * np.sin(knee), THIGH + CALF * np.cos(knee))
    return np.stack([abad, hip, knee], axis=1)


def jacobian(q: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """d foot position / d joint angles, shape (4, 3, 3): [leg, xyz, joint]. The six forward passes of the
    central differences go through `forward` as one batch."""
    dq = np.zeros((3,) + q.shape)
    for j in range(3):
        dq[j, :, j] = eps
    feet = forward(np.concatenate([q + dq, q - dq]))
    jac = np.empty((4, 3, 3))
    for j in range(3):
        jac[:, :, j] = (feet[j] - feet[3 + j]) / (2 * eps)
    return jac
