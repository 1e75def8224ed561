"""The live view's layouts (bringup config/foxglove, config/plotjuggler): the committed files are what
scripts/write_layouts.py writes, and every topic and field they plot is one the live view streams."""

from __future__ import annotations

import importlib.util
import json
import re
import xml.etree.ElementTree as ET

import pytest
import yaml

from diffuseloco_bringup.graph import params_file
from diffuseloco_policy.config import load_config
from diffuseloco_policy.nodes.message_definitions import message_class
from diffuseloco_policy.package_files import package_file
from colcon_prefix import ROOT

CONFIG = load_config()
STREAMED = yaml.safe_load(params_file("sim").read_text())["live_view"]["ros__parameters"]["topics"]
TYPES = {"/diffuseloco/status": "diffuseloco_msgs/msg/PolicyStatus", "/odom": "nav_msgs/msg/Odometry",
         "/cmd_vel": "geometry_msgs/msg/Twist", "/joint_states": "sensor_msgs/msg/JointState",
         "/cyberdog/motor_cmd": "cyberdog_msgs/msg/MotorCommand", "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
         "/rosout": "rcl_interfaces/msg/Log", "/robot_description": "std_msgs/msg/String"}
FIELD = re.compile(r"^(?P<name>\w+)(\[(?P<index>\d+)\])?$")


def generator():
    spec = importlib.util.spec_from_file_location("write_layouts", ROOT / "scripts" / "write_layouts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve(type_name: str, fields: list[str]) -> str:
    """The ROS type at the end of a field path ('twist', 'twist', 'linear', 'x'), or an AssertionError naming the
    missing field; an index needs an array of at least that many entries."""
    for field in fields:
        match = FIELD.match(field)
        assert match, f"not a field: {field!r}"
        assert type_name.count("/") == 2, f"{field}: {type_name} has no fields"
        known = message_class(type_name).get_fields_and_field_types()
        assert match["name"] in known, f"{type_name} has no field {match['name']!r} (has {sorted(known)})"
        type_name = known[match["name"]]
        if match["index"] is not None:
            array = re.match(r"^(?:sequence<(?P<seq>[\w/]+)>|(?P<base>[\w/]+)\[(?P<size>\d+)\])$", type_name)
            assert array, f"{field} indexes {type_name}, not an array"
            assert array["seq"] or int(match["index"]) < int(array["size"]), f"{field} is past {type_name}"
            type_name = array["seq"] or array["base"]
        if "/" in type_name and type_name.count("/") == 1:
            package, name = type_name.split("/")
            type_name = f"{package}/msg/{name}"
    return type_name


def numeric(type_name: str) -> bool:
    return type_name in {"float", "double", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}


def foxglove_paths(node, found: list[str]) -> list[str]:
    """Every message path in the layout: plot and state series 'value', topicPath, topic and topicToRender."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("value", "topicPath", "topic", "topicToRender") and isinstance(value, str):
                found.append(value)
            else:
                foxglove_paths(value, found)
    elif isinstance(node, list):
        for item in node:
            foxglove_paths(item, found)
    return found


def test_the_committed_layouts_are_the_generators():
    for path, text in generator().rendered().items():
        assert path.read_text() == text, f"{path.name} differs: run python scripts/write_layouts.py"
    assert package_file("diffuseloco_bringup", "config/foxglove/diffuseloco.json").is_file()


def test_every_foxglove_path_is_a_streamed_topic_and_field():
    layout = json.loads(package_file("diffuseloco_bringup", "config/foxglove/diffuseloco.json").read_text())
    paths = foxglove_paths(layout, [])
    assert len(paths) > 20
    plotted = 0
    for path in paths:
        topic, _, fields = path.partition(".")
        assert topic in STREAMED, f"{path}: {topic} is not streamed by the live view"
        if fields:
            end = resolve(TYPES[topic], fields.split("."))
            plotted += numeric(end) or end == "string"
    assert plotted > 15
    panels = json.dumps(layout, separators=(",", ":"))
    for needed in ('"panelType":"ThreeDee"', '"/robot_description"', '"panelType":"DiagnosticsSummary"',
                   '"panelType":"Log"', "/odom.twist.twist.linear.x", "/cyberdog/motor_cmd.q_des[1]"):
        assert needed in panels, needed


def test_every_plotjuggler_curve_is_a_streamed_topic_and_field():
    root = ET.parse(package_file("diffuseloco_bringup", "config/plotjuggler/diffuseloco.xml")).getroot()
    curves = [c.get("name") for c in root.iter("curve")]
    assert len(curves) >= 15
    policy_source = package_file("diffuseloco_policy", "diffuseloco_policy/nodes/policy_node.py").read_text()
    for name in curves:
        topic = max((t for t in STREAMED if name.startswith(t + "/")), key=len, default=None)
        assert topic is not None, f"{name}: no streamed topic"
        rest = name[len(topic) + 1:].split("/")
        if topic == "/joint_states":      # PlotJuggler's JointState parser: /joint_states/<joint>/position
            assert rest[0] in CONFIG.robot.joint_names and rest[1:] == ["position"], name
        elif topic == "/diagnostics":     # and its diagnostics parser: /diagnostics/<hardware_id>/<name>/<key>
            assert rest[:2] == [CONFIG.robot.name, "diffuseloco_policy"], name
            assert f'"{rest[2]}"' in policy_source, f"{name}: the policy node reports no key {rest[2]}"
        else:
            assert numeric(resolve(TYPES[topic], rest)), name


@pytest.mark.parametrize("path", ["/odom.twist.twist.linear.w", "/joint_states.position.x", "/cmd_vel.linear[0]",
                                  "/cyberdog/motor_cmd.q_des[12]"])
def test_the_path_check_refuses_a_wrong_field(path):
    topic, _, fields = path.partition(".")
    with pytest.raises(AssertionError):
        resolve(TYPES[topic], fields.split("."))
