"""The CyberDog 2's links and joints: one tree that the robot description (URDF) and the leg frames (/tf) are
both built from, so that what rviz or Foxglove draws is the body the simulator moves.

The numbers are the MuJoCo model's (diffuseloco_sim/assets/cyberdog2.xml, written from the published body
parameters): the leg geometry is kinematics.py's, the masses carry the rotors lumped into the link that holds
them (trunk 4.03 + 4 abad rotors, abad link 0.354 + hip rotor, thigh 0.482 + knee rotor; 0.0567 kg each), the feet
have no mass as in the official description. tests/test_robot_description.py loads the generated URDF and the
MJCF side by side in MuJoCo and compares masses, inertias, frames, joint axes and limits.

Frames (REP 103): x forward, y left, z up. `base_link` is the trunk body's frame of the MJCF (the hip joints'
plane), each leg a chain `<leg>_abad` -> `<leg>_thigh` -> `<leg>_calf` -> `<leg>_foot` (the foot sphere's centre),
and `imu_link` the IMU site. Joint axes are stated in the model convention (hip and knee about -y, so the knee is
positive when bent, joints.py); the description turns them into the convention it publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import kinematics as kin
from .joints import LEGS

BASE_LINK = "base_link"
IMU_LINK = "imu_link"
IMU_POSITION = (0.0334, -0.0173, 0.0510)    # the IMU site of the MJCF, in the trunk frame
FOOT_RADIUS = 0.019

ROTOR_MASS = 0.0567
TRUNK_MASS = 4.03 + 4 * ROTOR_MASS          # the abad rotors sit in the trunk
ABAD_MASS = 0.354 + ROTOR_MASS              # the hip rotor
THIGH_MASS = 0.482 + ROTOR_MASS             # the knee rotor
CALF_MASS = 0.116


@dataclass(frozen=True)
class Inertial:
    """Mass (kg), centre of mass (m, link frame) and inertia about it (kg m^2: ixx, iyy, izz, ixy, ixz, iyz)."""

    mass: float
    com: tuple[float, float, float]
    inertia: tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Shape:
    """A visual primitive: 'box' (size = full x, y, z), 'cylinder' (radius, length; along its z axis, turned to
    y when `along_y`) or 'sphere' (radius), centred at `origin` in the link frame."""

    kind: str
    size: tuple[float, ...]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    along_y: bool = False
    rgba: tuple[float, float, float, float] = (0.75, 0.75, 0.78, 1.0)


@dataclass(frozen=True)
class Link:
    name: str
    inertial: Optional[Inertial]
    shapes: tuple[Shape, ...] = ()


@dataclass(frozen=True)
class Joint:
    """A joint of the tree: revolute about `axis` (model convention) with `index` into the robot config's
    joint vectors, or fixed (axis None)."""

    name: str
    parent: str
    child: str
    origin: tuple[float, float, float]
    axis: Optional[tuple[float, float, float]] = None
    index: Optional[int] = None

    @property
    def fixed(self) -> bool:
        return self.axis is None


def _leg(leg: int) -> tuple[list[Link], list[Joint]]:
    """The four links and four joints of one leg (FR, FL, RR, RL order of joints.LEGS)."""
    name, side = LEGS[leg], kin.SIDE[leg]
    front = 1.0 if kin.HIP_ORIGINS[leg][0] > 0 else -1.0
    links = [
        Link(f"{name}_abad", Inertial(ABAD_MASS, (-0.00392 * front, 0.015 * side, -0.000306),
                                      (0.00035, 0.00045, 0.00035, 0.0, 0.0, 0.0)),
             (Shape("cylinder", (0.035, 0.05), (0.0, 0.020 * side, 0.0), along_y=True, rgba=(0.2, 0.2, 0.2, 1.0)),)),
        Link(f"{name}_thigh", Inertial(THIGH_MASS, (0.0, -0.005 * side, -0.025), (0.0011, 0.0012, 0.0003, 0.0, 0.0, 0.0)),
             (Shape("cylinder", (0.018, kin.THIGH), (0.0, 0.0, -kin.THIGH / 2)),)),
        Link(f"{name}_calf", Inertial(CALF_MASS, (0.0, 0.0, -0.087), (0.000668, 0.000674, 0.0000154, 0.0, 0.0, 0.0)),
             (Shape("cylinder", (0.012, 0.15), (0.0, 0.0, -0.075), rgba=(0.3, 0.3, 0.3, 1.0)),)),
        Link(f"{name}_foot", None, (Shape("sphere", (FOOT_RADIUS,), rgba=(0.1, 0.1, 0.1, 1.0)),)),
    ]
    hip = tuple(float(v) for v in kin.HIP_ORIGINS[leg])
    joints = [
        Joint(f"{name}_abad", BASE_LINK, f"{name}_abad", hip, (1.0, 0.0, 0.0), 3 * leg),
        Joint(f"{name}_hip", f"{name}_abad", f"{name}_thigh", (0.0, kin.ABAD_OFFSET * side, 0.0), (0.0, -1.0, 0.0),
              3 * leg + 1),
        Joint(f"{name}_knee", f"{name}_thigh", f"{name}_calf", (0.0, 0.0, -kin.THIGH), (0.0, -1.0, 0.0), 3 * leg + 2),
        Joint(f"{name}_foot_fixed", f"{name}_calf", f"{name}_foot", (0.0, 0.0, -kin.CALF)),
    ]
    return links, joints


def body() -> tuple[list[Link], list[Joint]]:
    """All links (base first) and joints (parents before children)."""
    links = [Link(BASE_LINK, Inertial(TRUNK_MASS, (0.0273, -0.000242, 0.0143), (0.0185, 0.0517, 0.0483, 0.0, -0.0102, 0.0)),
                  (Shape("box", (0.236, 0.19, 0.109), rgba=(0.85, 0.55, 0.15, 1.0)),)),
             Link(IMU_LINK, None)]
    joints = [Joint("imu_fixed", BASE_LINK, IMU_LINK, IMU_POSITION)]
    for leg in range(len(LEGS)):
        leg_links, leg_joints = _leg(leg)
        links += leg_links
        joints += leg_joints
    return links, joints


def moving_joints() -> list[Joint]:
    """The twelve revolute joints in the robot config's order (joint i has index i)."""
    return sorted((j for j in body()[1] if not j.fixed), key=lambda j: j.index)
