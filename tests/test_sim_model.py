"""The MuJoCo CyberDog 2: stands under PD, obeys the motor law, and matches the SDK's order and signs."""

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_sim import CyberDogSim, MotorCommand


@pytest.fixture(scope="module")
def config():
    return load_config()


def test_stands_at_default_pose(config):
    sim = CyberDogSim(config)
    for _ in range(100):
        sim.command_position(np.array(config.robot.default_pose))
        sim.step()
        assert not sim.fallen()
    assert 0.23 < sim.base_height() < 0.28
    assert sim.foot_contacts().all()


def test_joint_law_matches_formula(config):
    """Targets within the firmware's position band (8 deg and more) of the pose, so the firmware passes them as
    they are (tests/test_firmware.py checks what it does to the others)."""
    sim = CyberDogSim(config)
    rng = np.random.default_rng(1)
    offsets = np.clip(rng.normal(0, 0.05, 12), -0.13, 0.13)
    cmd = MotorCommand(q_des=sim.convention.to_sdk(np.array(config.robot.default_pose)) + offsets,
                       qd_des=rng.normal(0, 1, 12), kp=rng.uniform(10, 60, 12), kd=rng.uniform(0.5, 3, 12),
                       tau=rng.normal(0, 2, 12))
    sim.command(cmd)
    js = sim.joint_state()                     # state the law will see on the next physics step
    sim.step(1)
    expected = np.clip(cmd.tau + cmd.kp * (cmd.q_des - js.q) + cmd.kd * (cmd.qd_des - js.qd), -12, 12)
    np.testing.assert_allclose(sim.joint_state().tau_est, expected, atol=1e-9)
    np.testing.assert_allclose(sim.data.actuator_force, sim.convention.to_model(expected), atol=1e-9)


def test_sdk_sign_and_order(config):
    sim = CyberDogSim(config)
    assert sim.data.body("FR_abad").xpos[0] > 0 and sim.data.body("FR_abad").xpos[1] < 0
    assert sim.data.body("RL_abad").xpos[0] < 0 and sim.data.body("RL_abad").xpos[1] > 0
    q0_model = sim.true_joint_position()
    sdk = sim.convention.to_sdk(q0_model)
    sdk[1] += 0.2                               # FR hip, SDK convention
    sim.command(MotorCommand.position(sdk, 60.0, 2.0))
    sim.step(50)
    assert sim.true_joint_position()[1] - q0_model[1] < -0.1
    np.testing.assert_allclose(sim.joint_state().q, sim.convention.to_sdk(sim.true_joint_position()), atol=1e-12)


def test_imu_quaternion_upright(config):
    sim = CyberDogSim(config)
    for _ in range(25):                         # land first: at reset the feet hover a few mm (free fall)
        sim.command_position(np.array(config.robot.default_pose))
        sim.step()
    imu = sim.imu()
    np.testing.assert_allclose(imu.quaternion, [1, 0, 0, 0], atol=2e-2)
    assert imu.accelerometer[2] > 9.0           # specific force points up when standing
