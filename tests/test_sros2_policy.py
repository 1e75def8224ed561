"""The SROS2 permissions policy (config/sros2/policy.xml) against the graph it protects.

Every node of the robot graph has an enclave with a profile for its node name; each is allowed the topics and
services its parameter file makes it use, and the ones that command the robot belong to one enclave only: motor
commands are published by the policy node alone, sensor data by the bridge alone, skill commands and state requests
by the teleop alone. Both launchers put each node in its enclave when asked. (No SROS2 tooling or security-enabled
DDS build is installable here: the keystore is generated and the enforcement verified on the robot.)
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET

import pytest
import yaml

from diffuseloco_bringup import graph as graph_module
from diffuseloco_bringup.run import node_command
from diffuseloco_policy.package_files import package_file

POLICY = ET.parse(package_file("diffuseloco_bringup", "config/sros2/policy.xml")).getroot()
ROBOT = graph_module.graph("robot", teleop="joy", record=True)
PARAMS = yaml.safe_load(graph_module.params_file("robot").read_text())


def permissions(enclave: str) -> dict[str, set[str]]:
    """(kind -> names) of an enclave's profile, e.g. 'topics publish' -> {'/cyberdog/motor_cmd', ...}."""
    node = next(e for e in POLICY.iter("enclave") if e.get("path") == enclave)
    allowed: dict[str, set[str]] = {}
    for group in node.iter():
        for mode in ("publish", "subscribe", "request", "reply"):
            if group.get(mode) == "ALLOW":
                names = {"/" + child.text.strip().lstrip("/") for child in group if not child.text.startswith("~")}
                allowed.setdefault(f"{group.tag} {mode}", set()).update(names)
    return allowed


def holders(kind: str, name: str) -> set[str]:
    return {spec.name for spec in ROBOT if name in permissions(spec.enclave).get(kind, set())}


@pytest.mark.parametrize("spec", ROBOT, ids=lambda s: s.name)
def test_every_node_has_an_enclave_with_a_profile_for_its_name(spec):
    enclave = next((e for e in POLICY.iter("enclave") if e.get("path") == spec.enclave), None)
    assert enclave is not None, f"no enclave {spec.enclave} in policy.xml"
    assert [p.get("node") for p in enclave.iter("profile")] == [spec.name]


def test_who_may_command_the_robot():
    p = PARAMS["diffuseloco_policy"]["ros__parameters"]
    assert holders("topics publish", p["motor_command_topic"]) == {"diffuseloco_policy"}
    for sensor in (p["leg_state_topic"], p["imu_topic"], p["body_velocity_topic"]):
        assert holders("topics publish", sensor) == {"lcm_bridge"}
    assert holders("topics publish", p["skill_command_topic"]) == {"teleop"}
    state_service = p.get("state_service", "/diffuseloco/set_state")   # the node's default
    assert holders("services request", state_service) == {"teleop"}
    assert holders("services reply", state_service) == {"diffuseloco_policy"}


def test_each_node_may_use_the_topics_its_parameters_name():
    bridge, policy = PARAMS["lcm_bridge"]["ros__parameters"], PARAMS["diffuseloco_policy"]["ros__parameters"]
    assert {bridge["leg_state_topic"], bridge["imu_topic"], bridge["body_velocity_topic"],
            bridge["motor_ctrl_state_topic"]} <= permissions("/diffuseloco/lcm_bridge")["topics publish"]
    assert bridge["motor_command_topic"] in permissions("/diffuseloco/lcm_bridge")["topics subscribe"]
    assert {policy["leg_state_topic"], policy["imu_topic"], policy["body_velocity_topic"],
            policy["skill_command_topic"]} <= permissions("/diffuseloco/diffuseloco_policy")["topics subscribe"]
    assert {policy["status_topic"], "/diagnostics"} <= permissions("/diffuseloco/diffuseloco_policy")["topics publish"]
    recorded = set(PARAMS["recorder"]["ros__parameters"]["topics"])
    assert recorded <= permissions("/diffuseloco/recorder")["topics subscribe"]
    assert "/joy" in permissions("/diffuseloco/teleop")["topics subscribe"]
    web = PARAMS["teleop"]["ros__parameters"]   # the web teleop (teleop:=web) shows these on its page
    assert {web["status_topic"], web["body_velocity_topic"]} <= permissions("/diffuseloco/teleop")["topics subscribe"]
    assert "/joy" in permissions("/diffuseloco/joy")["topics publish"]


def test_the_launchers_put_each_node_in_its_enclave():
    spec = ROBOT[0]
    command = node_command(spec, graph_module.params_file("robot"), secure=True)
    assert command[command.index("--enclave") + 1] == spec.enclave == f"/diffuseloco/{spec.name}"
    assert "--enclave" not in node_command(spec, graph_module.params_file("robot"))
    source = package_file("diffuseloco_bringup", "diffuseloco_bringup/launch_description.py").read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.Constant) and n.value == "--enclave" for n in ast.walk(tree))
    assert any(isinstance(n, ast.Constant) and n.value == "secure" for n in ast.walk(tree))


def test_the_standard_interfaces_have_one_publisher_each_and_the_live_view_only_reads():
    """/tf, /tf_static and /robot_description come from robot_state alone, /joint_states and /odom from the
    bridge alone; cmd_vel reaches the policy node. The live view may read every topic it streams and publish none
    of the robot's."""
    for topic in ("/tf", "/tf_static", "/robot_description"):
        assert holders("topics publish", topic) == {"robot_state"}, topic
    bridge = PARAMS["lcm_bridge"]["ros__parameters"]
    for topic in (bridge["odom_topic"], bridge["joint_state_topic"]):
        assert holders("topics publish", topic) == {"lcm_bridge"}, topic
    state = PARAMS["robot_state"]["ros__parameters"]
    assert {state["joint_state_topic"], state["odom_topic"]} <= permissions("/diffuseloco/robot_state")["topics subscribe"]
    assert PARAMS["diffuseloco_policy"]["ros__parameters"]["cmd_vel_topic"] in \
        permissions("/diffuseloco/diffuseloco_policy")["topics subscribe"]
    live = permissions("/diffuseloco/live_view")
    assert set(PARAMS["live_view"]["ros__parameters"]["topics"]) <= live["topics subscribe"]
    assert live["topics publish"] == {"/rosout", "/parameter_events"}
    assert [p.get("node") for e in POLICY.iter("enclave") if e.get("path") == "/diffuseloco/live_view"
            for p in e.iter("profile")] == ["live_view"]
