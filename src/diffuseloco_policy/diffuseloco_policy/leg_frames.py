"""The legs' frames for /tf, as robot_state_publisher would compute them from the URDF: one transform per joint,
parent -> child, the joint's origin followed by its rotation about the published axis by the joint's angle.

Joint angles are in the published (SDK) convention, the values of LegState and JointState; the revolute joints'
transforms change with them (/tf), the fixed ones never (/tf_static). Composed from base_link to a foot, they
give kinematics.forward's foot position (tests/test_robot_description.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Joint, body
from .config import RobotConfig
from .robot_description import published_axis


@dataclass(frozen=True)
class FrameTransform:
    """parent -> child: translation (m) and rotation as a quaternion (x, y, z, w), ROS's order."""

    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]


class LegFrames:
    """The transforms of one robot's joint tree."""

    def __init__(self, robot: RobotConfig) -> None:
        joints = body()[1]
        self.moving: list[Joint] = sorted((j for j in joints if not j.fixed), key=lambda j: j.index)
        self.fixed: list[Joint] = [j for j in joints if j.fixed]
        self.axes = np.array([published_axis(j, robot) for j in self.moving])

    def static(self) -> list[FrameTransform]:
        """The fixed joints' transforms (feet, IMU): /tf_static."""
        return [FrameTransform(j.parent, j.child, j.origin, (0.0, 0.0, 0.0, 1.0)) for j in self.fixed]

    def moving_transforms(self, q: np.ndarray) -> list[FrameTransform]:
        """The revolute joints' transforms for joint angles q (published convention, config order): /tf.
        A q of another length, or non-finite, raises ValueError."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (len(self.moving),) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint angles must be {len(self.moving)} finite values, got {q.shape}")
        half = 0.5 * q
        xyz = self.axes * np.sin(half)[:, None]
        return [FrameTransform(j.parent, j.child, j.origin, (float(v[0]), float(v[1]), float(v[2]), float(np.cos(h))))
                for j, v, h in zip(self.moving, xyz, half)]
