"""Command classes in the ROS graph: the joystick teleop with a class map sends class commands, and the policy node
refuses a class model whose map its robot config cannot honour (exit 2 with the reason, no traceback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from diffuseloco_bringup.graph import NodeSpec
from diffuseloco_bringup.run import node_command
from diffuseloco_policy.command_classes import parse_command_classes, with_command_classes
from diffuseloco_policy.config import load_config
from ros_probe import running_teleop
from test_fault_injection import publish_joy_until
from test_ros_graph import write_params
from tiny_model import export_standing_model

CONFIG = load_config()
MAP = "walk=trot+pace,jump=bound+hop"
CLASSES = with_command_classes(CONFIG, parse_command_classes(MAP))
DEADMAN, PACE_BUTTON, VX_AXIS = 9, 2, 1   # LB, X, left stick up (config/teleop_gamepad.yaml)


@pytest.fixture(scope="module")
def class_teleop(tmp_path_factory):
    params = write_params(tmp_path_factory.mktemp("params_classes"), Path("unused.onnx"))
    values = yaml.safe_load(params.read_text())
    values["teleop"]["ros__parameters"]["command_classes"] = MAP
    params.write_text(yaml.safe_dump(values))
    with running_teleop(params, "class_joy_probe") as probe:
        yield probe


def test_the_joystick_teleop_sends_class_commands(class_teleop):
    """Pace's button selects class walk: the command carries walk's id and full stick reaches walk's top speed
    (pace's, the class's common range), not trot's."""
    walk = CLASSES.command("walk")
    axes, held = [0.0] * 6, [0] * 15
    held[DEADMAN] = 1
    pressed = list(held)
    pressed[PACE_BUTTON] = 1
    publish_joy_until(class_teleop, axes, held, lambda m: True, "the dead-man held")
    publish_joy_until(class_teleop, axes, pressed, lambda m: m.skill == walk.id, "walk selected by pace's button")
    axes[VX_AXIS] = 1.0
    moving = publish_joy_until(class_teleop, axes, held, lambda m: m.vx > 0.0, "full stick forward")
    assert moving.skill == walk.id and moving.vx == pytest.approx(walk.vx[1])
    assert walk.vx[1] < CONFIG.skill("trot").vx[1]


def test_the_policy_node_refuses_a_class_model_its_robot_config_cannot_honour(tmp_path):
    model = export_standing_model(tmp_path / "classes.onnx", config=CLASSES)
    robot = tmp_path / "robot_walk_only.yaml"
    robot.write_text(yaml.safe_dump(with_command_classes(CONFIG, parse_command_classes("walk=trot+pace")).to_dict()))
    params = write_params(tmp_path, model)
    values = yaml.safe_load(params.read_text())
    values["diffuseloco_policy"]["ros__parameters"]["config"] = str(robot)
    params.write_text(yaml.safe_dump(values))
    spec = NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")
    result = subprocess.run(node_command(spec, params), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "refusing to start" in output and "command classes differ" in output, output[-2000:]
    assert "Traceback" not in output
