"""The URDF of the CyberDog 2, generated from body.py and the robot config, for /robot_description.

Joint convention: the one of every joint array on the stack's ROS topics, the motor SDK's user side
(cyberdog_msgs, joints.py): hip and knee turn about +y, so a bent knee is negative, and `sensor_msgs/JointState`
carries LegState's values unchanged. The axes and limits are the model convention's (body.py, the robot config)
multiplied by the config's sdk_sign, a flipped joint's limits swapped. Effort and velocity limits are the motor
limits of the config.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

import numpy as np

from .body import Inertial, Joint, Link, Shape, body
from .config import RobotConfig


def _num(values: Iterable[float]) -> str:
    return " ".join(format(float(v) + 0.0, ".10g") for v in values)   # + 0.0: no "-0"


def published_axis(joint: Joint, robot: RobotConfig) -> tuple[float, float, float]:
    """The joint's axis in the published (SDK) convention."""
    sign = robot.sdk_sign[joint.index]
    return tuple(sign * a for a in joint.axis)


def published_limits(joint: Joint, robot: RobotConfig) -> tuple[float, float]:
    """(lower, upper) in the published (SDK) convention."""
    sign = robot.sdk_sign[joint.index]
    ends = sorted((sign * robot.position_lower[joint.index], sign * robot.position_upper[joint.index]))
    return ends[0], ends[1]


def _inertial(parent: ET.Element, inertial: Inertial) -> None:
    element = ET.SubElement(parent, "inertial")
    ET.SubElement(element, "origin", xyz=_num(inertial.com), rpy="0 0 0")
    ET.SubElement(element, "mass", value=_num([inertial.mass]))
    ixx, iyy, izz, ixy, ixz, iyz = inertial.inertia
    ET.SubElement(element, "inertia", **{k: _num([v]) for k, v in
                                         (("ixx", ixx), ("ixy", ixy), ("ixz", ixz), ("iyy", iyy), ("iyz", iyz),
                                          ("izz", izz))})


def _visual(parent: ET.Element, shape: Shape, material: str) -> None:
    element = ET.SubElement(parent, "visual")
    ET.SubElement(element, "origin", xyz=_num(shape.origin), rpy=_num((np.pi / 2, 0, 0) if shape.along_y else (0, 0, 0)))
    geometry = ET.SubElement(element, "geometry")
    if shape.kind == "box":
        ET.SubElement(geometry, "box", size=_num(shape.size))
    elif shape.kind == "cylinder":
        ET.SubElement(geometry, "cylinder", radius=_num(shape.size[:1]), length=_num(shape.size[1:]))
    elif shape.kind == "sphere":
        ET.SubElement(geometry, "sphere", radius=_num(shape.size))
    else:
        raise ValueError(f"unknown shape {shape.kind!r}")
    colour = ET.SubElement(element, "material", name=material)
    ET.SubElement(colour, "color", rgba=_num(shape.rgba))


def _link(robot_element: ET.Element, link: Link) -> None:
    element = ET.SubElement(robot_element, "link", name=link.name)
    if link.inertial is not None:
        _inertial(element, link.inertial)
    for i, shape in enumerate(link.shapes):
        _visual(element, shape, f"{link.name}_{i}")


def _joint(robot_element: ET.Element, joint: Joint, robot: RobotConfig) -> None:
    element = ET.SubElement(robot_element, "joint", name=joint.name, type="fixed" if joint.fixed else "revolute")
    ET.SubElement(element, "parent", link=joint.parent)
    ET.SubElement(element, "child", link=joint.child)
    ET.SubElement(element, "origin", xyz=_num(joint.origin), rpy="0 0 0")
    if joint.fixed:
        return
    ET.SubElement(element, "axis", xyz=_num(published_axis(joint, robot)))
    lower, upper = published_limits(joint, robot)
    ET.SubElement(element, "limit", lower=_num([lower]), upper=_num([upper]), effort=_num([robot.torque_limit]),
                  velocity=_num([robot.velocity_limit]))


def urdf(robot: RobotConfig) -> str:
    """The robot description as URDF text. The config's joint names must be body.py's (the CyberDog 2 layout)."""
    links, joints = body()
    moving = {j.name: j.index for j in joints if not j.fixed}
    if set(moving) != set(robot.joint_names) or any(robot.joint_names[i] != n for n, i in moving.items()):
        raise ValueError(f"the robot config's joints {robot.joint_names} are not the CyberDog 2's in its order: "
                         f"no description for them")
    root = ET.Element("robot", name=robot.name)
    for link in links:
        _link(root, link)
    for joint in joints:
        _joint(root, joint, robot)
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
