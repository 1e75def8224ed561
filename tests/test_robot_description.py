"""The robot description (URDF on /robot_description) against the simulator's MJCF, and the legs' frames (/tf)
against kinematics.py: both files loaded in MuJoCo side by side, every body compared (mass, centre of mass,
inertia, frame at random joint angles), every joint (axis, limits) in the published convention."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from diffuseloco_policy import kinematics
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.leg_frames import LegFrames
from diffuseloco_policy.package_files import package_file
from diffuseloco_policy.robot_description import urdf
from diffuseloco_sim.simulator import MJCF

CONFIG = load_config()
ROBOT = CONFIG.robot
SIGN = np.asarray(ROBOT.sdk_sign)
RENAMED = {"trunk": "base_link"}   # MJCF body -> URDF link where the names differ


def load_urdf(text: str) -> mujoco.MjModel:
    """The URDF in MuJoCo with every link kept as a body (MuJoCo fuses fixed links by default)."""
    root = ET.fromstring(text)
    extension = ET.SubElement(root, "mujoco")
    ET.SubElement(extension, "compiler", fusestatic="false", discardvisual="true")
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


@pytest.fixture(scope="module")
def models() -> tuple[mujoco.MjModel, mujoco.MjModel]:
    return mujoco.MjModel.from_xml_path(str(package_file("diffuseloco_sim", MJCF))), load_urdf(urdf(ROBOT))


def full_inertia(model: mujoco.MjModel, body: int) -> np.ndarray:
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, model.body_iquat[body])
    rotation = rotation.reshape(3, 3)
    return rotation @ np.diag(model.body_inertia[body]) @ rotation.T


def body_pairs(mjcf: mujoco.MjModel, described: mujoco.MjModel) -> list[tuple[str, int, int]]:
    names = [mjcf.body(i).name for i in range(1, mjcf.nbody)]
    return [(name, i + 1, described.body(RENAMED.get(name, name)).id) for i, name in enumerate(names)]


def test_every_body_has_the_mjcf_mass_centre_of_mass_and_inertia(models):
    mjcf, described = models
    pairs = body_pairs(mjcf, described)
    assert len(pairs) == 1 + 4 * 4   # trunk, then abad, thigh, calf, foot per leg
    for name, i, j in pairs:
        assert described.body_mass[j] == pytest.approx(mjcf.body_mass[i], abs=1e-9), name
        if mjcf.body_mass[i] > 0:
            np.testing.assert_allclose(described.body_ipos[j], mjcf.body_ipos[i], atol=1e-9, err_msg=name)
            np.testing.assert_allclose(full_inertia(described, j), full_inertia(mjcf, i), atol=1e-9, err_msg=name)
    assert mujoco.mj_getTotalmass(described) == pytest.approx(mujoco.mj_getTotalmass(mjcf), abs=1e-9)
    assert mujoco.mj_getTotalmass(described) == pytest.approx(8.5184, abs=1e-4)


def test_joints_are_the_configs_in_the_sdk_convention(models):
    """Axes and limits: the MJCF's (model convention) times sdk_sign; a flipped joint's limits swap. The motor
    limits are the config's."""
    mjcf, described = models
    mjcf_data, described_data = mujoco.MjData(mjcf), mujoco.MjData(described)
    mujoco.mj_kinematics(mjcf, mjcf_data)
    mujoco.mj_kinematics(described, described_data)
    for index, name in enumerate(ROBOT.joint_names):
        i, j = mjcf.joint(name).id, described.joint(name).id
        np.testing.assert_allclose(described_data.xaxis[j], SIGN[index] * mjcf_data.xaxis[i], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(described.jnt_range[j], np.sort(SIGN[index] * mjcf.jnt_range[i]), atol=1e-9,
                                   err_msg=name)
    knee = described.joint("FR_knee")
    assert knee.range[1] < 0, "a bent knee is negative in the SDK convention"
    root = ET.fromstring(urdf(ROBOT))
    limits = [j.find("limit") for j in root.iter("joint") if j.get("type") == "revolute"]
    assert len(limits) == 12
    assert {float(l.get("effort")) for l in limits} == {ROBOT.torque_limit}
    assert {float(l.get("velocity")) for l in limits} == {ROBOT.velocity_limit}


def test_frames_match_the_mjcf_at_random_joint_angles(models):
    mjcf, described = models
    mjcf_data, described_data = mujoco.MjData(mjcf), mujoco.MjData(described)
    rng = np.random.default_rng(3)
    lower, upper = np.asarray(ROBOT.position_lower), np.asarray(ROBOT.position_upper)
    for _ in range(20):
        q_model = rng.uniform(lower, upper)
        mjcf_data.qpos[:] = 0.0
        mjcf_data.qpos[3] = 1.0                     # the trunk at the origin, level: its frame is the world's
        mjcf_data.qpos[7:19] = q_model
        for index, name in enumerate(ROBOT.joint_names):
            described_data.qpos[described.joint(name).qposadr[0]] = SIGN[index] * q_model[index]
        mujoco.mj_kinematics(mjcf, mjcf_data)
        mujoco.mj_kinematics(described, described_data)
        for name, i, j in body_pairs(mjcf, described):
            np.testing.assert_allclose(described_data.xpos[j], mjcf_data.xpos[i], atol=1e-9, err_msg=name)
            np.testing.assert_allclose(described_data.xmat[j], mjcf_data.xmat[i], atol=1e-9, err_msg=name)
        np.testing.assert_allclose(described_data.xpos[described.body("imu_link").id], mjcf_data.site("imu").xpos,
                                   atol=1e-9)


def compose(transforms, leaf: str) -> np.ndarray:
    """Position of `leaf`'s origin in the root frame, following the transforms' parent links."""
    by_child = {t.child: t for t in transforms}
    point, frame = np.zeros(3), leaf
    while frame in by_child:
        t = by_child[frame]
        x, y, z, w = t.rotation
        rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                             [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                             [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        point = np.asarray(t.translation) + rotation @ point
        frame = t.parent
    assert frame == "base_link", frame
    return point


def test_the_leg_frames_put_the_feet_where_kinematics_does():
    frames = LegFrames(ROBOT)
    convention = JointConvention(ROBOT)
    rng = np.random.default_rng(5)
    for _ in range(20):
        q_model = rng.uniform(ROBOT.position_lower, ROBOT.position_upper)
        transforms = frames.static() + frames.moving_transforms(convention.to_sdk(q_model))
        feet = np.array([compose(transforms, f"{leg}_foot") for leg in ("FR", "FL", "RR", "RL")])
        np.testing.assert_allclose(feet, kinematics.forward(q_model.reshape(4, 3)), atol=1e-12)
    assert len(frames.moving_transforms(np.zeros(12))) == 12 and len(frames.static()) == 5
    with pytest.raises(ValueError):
        frames.moving_transforms(np.zeros(11))
    with pytest.raises(ValueError):
        frames.moving_transforms(np.full(12, np.nan))


def test_a_config_with_other_joints_gets_no_description():
    import dataclasses
    other = dataclasses.replace(ROBOT, joint_names=tuple(f"{n}_joint" for n in ROBOT.joint_names))
    with pytest.raises(ValueError, match="not the CyberDog 2's"):
        urdf(other)
    assert json.dumps(urdf(ROBOT))   # plain text, as std_msgs/String carries it
