"""Bad input through real topics: the test process plays the robot (joint state and IMU) or the joystick, and
checks the node's reaction. Every command the policy node publishes meanwhile must stay safe."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from ros_probe import Probe
from sensor_msgs.msg import Joy
from test_ros_graph import assert_safe, write_params
from tiny_model import export_standing_model

CONFIG = load_config()
STAND_SDK = JointConvention(CONFIG.robot).to_sdk(np.asarray(CONFIG.robot.default_pose))
R = SetControllerState.Request


class FakeRobot:
    """Publishes joint state and IMU at 200 Hz from a thread; what it publishes can be changed on the fly."""

    def __init__(self, probe: Probe) -> None:
        self.probe, self.q = probe, STAND_SDK.copy()
        self.quaternion = (1.0, 0.0, 0.0, 0.0)
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.running.is_set():
                self.probe.publish_sensors(self.q, self.quaternion)
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


@pytest.fixture(scope="module")
def policy_node(tmp_path_factory):
    model = export_standing_model(tmp_path_factory.mktemp("model") / "policy.onnx")
    params = write_params(tmp_path_factory.mktemp("params"), model)
    graph = Graph([NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params)
    graph.start()
    probe = Probe()
    robot = FakeRobot(probe)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "the policy node's status")
        yield probe, robot
    finally:
        robot.close()
        probe.close()
        graph.stop()


def stand_up(probe: Probe, robot: FakeRobot) -> None:
    robot.q, robot.quaternion = STAND_SDK.copy(), (1.0, 0.0, 0.0, 0.0)
    robot.running.set()
    if probe.latest_status().state in (PolicyStatus.STATE_DAMPING,):
        probe.request(R.REQUEST_GET_DOWN)
    probe.wait_for(lambda: probe.request(R.REQUEST_STAND_UP).accepted, 15.0, "STAND_UP accepted")
    probe.wait_for(lambda: probe.latest_status().state == PolicyStatus.STATE_STANDING_UP, 1.0, "STANDING_UP")


@pytest.mark.parametrize("fault,expected", [
    ("nan_joint", "nan"),
    ("tilted", "attitude"),
    ("silent", "stale"),
])
def test_bad_sensor_data_leads_to_damping_with_the_reason(policy_node, fault, expected):
    probe, robot = policy_node
    stand_up(probe, robot)
    start = probe.now()
    if fault == "nan_joint":
        q = STAND_SDK.copy()
        q[4] = np.nan
        robot.q = q
    elif fault == "tilted":
        robot.quaternion = (np.cos(0.7), np.sin(0.7), 0.0, 0.0)  # 1.4 rad roll
    else:
        robot.running.clear()
    probe.wait_for(lambda: probe.latest_status().state == PolicyStatus.STATE_DAMPING, 1.0, f"DAMPING on {fault}")
    assert expected in probe.latest_status().last_fault.lower(), probe.latest_status().last_fault
    time.sleep(0.1)
    damped = probe.commands_since(probe.now() - 0.06)
    assert damped and all(np.all(np.asarray(c.kp_des) == 0) for _, c in damped)
    assert_safe(probe.commands_since(start - 1.0))


@pytest.fixture(scope="module")
def teleop_node(tmp_path_factory):
    params = write_params(tmp_path_factory.mktemp("params"), Path("unused.onnx"))
    graph = Graph([NodeSpec("diffuseloco_policy", "teleop_node", "teleop")], params)
    graph.start()
    probe = Probe("joy_probe")
    try:
        probe.wait_for(lambda: len(probe.skill_commands) > 0, 60.0, "the teleop node's SkillCommand")
        yield probe
    finally:
        probe.close()
        graph.stop()


def test_joystick_loss_zeroes_the_velocity_command(teleop_node):
    probe = teleop_node
    mapping = yaml.safe_load((params_file("sim").parent / "teleop_gamepad.yaml").read_text())
    trot_button = next(a["buttons"] for a in mapping["actions"] if a.get("skill") == "trot")
    axes, held = [0.0] * 6, [0] * 15
    for b in mapping["deadman_buttons"]:
        held[b] = 1
    pressed = list(held)
    for b in trot_button:
        pressed[b] = 1
    for buttons in [held] * 5 + [pressed] * 3 + [held] * 3:   # dead-man held, press and release "trot"
        probe.joy_pub.publish(Joy(axes=axes, buttons=buttons))
        time.sleep(0.02)
    axes[mapping["vx"]["index"]] = 1.0                  # then full forward
    for _ in range(30):
        probe.joy_pub.publish(Joy(axes=axes, buttons=held))
        time.sleep(0.02)
    moving = probe.skill_commands[-1][1]
    assert moving.vx >= 0.9 * CONFIG.skill("trot").vx[1] > 0, moving   # full stick = top of the trot range
    lost = probe.now()
    time.sleep(mapping["timeout"] + 0.3)
    after = [m for t, m in probe.skill_commands if t > lost + mapping["timeout"] + 0.1]
    assert after and all(m.vx == 0.0 and m.vy == 0.0 and m.yaw_rate == 0.0 for m in after)
