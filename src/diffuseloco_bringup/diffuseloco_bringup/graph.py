"""The node graph, defined once: the launch files (robot and simulator) and the launch-free dev runner both
build their processes from here, so `ros2 launch` on the robot and `python -m diffuseloco_bringup.run` on a dev
machine start the same nodes with the same parameter files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from diffuseloco_policy.package_files import share_dir

PACKAGE = "diffuseloco_bringup"
ENCLAVE_ROOT = "/diffuseloco"    # SROS2: one enclave per node under this path

# Executable name (console script, `ros2 run` name) -> Python module that provides `main()` in the launch-free
# runner. The joystick is ROS's `joy` game_controller_node under launch_ros; where ROS is not installed (the PyPI
# wheels have no `joy`) the runner starts our evdev driver, which publishes the same Joy layout.
EXECUTABLES = {
    "game_controller_node": "diffuseloco_policy.nodes.joy_driver",
    "sim_node": "diffuseloco_sim.sim_node",
    "policy_node": "diffuseloco_policy.nodes.policy_node",
    "teleop_node": "diffuseloco_policy.nodes.teleop_node",
    "keyboard_teleop": "diffuseloco_policy.nodes.keyboard_teleop",
    "script_teleop": "diffuseloco_policy.nodes.script_teleop",
    "recorder": "diffuseloco_policy.nodes.recorder",
    "lcm_bridge": "diffuseloco_policy.nodes.lcm_bridge_node",
    "robot_state": "diffuseloco_policy.nodes.robot_state",
    "live_view": "diffuseloco_policy.nodes.live_view",
    "web_teleop": "diffuseloco_policy.nodes.web_teleop",
}
TELEOP_KINDS = ("joy", "keyboard", "script", "web", "none")
LOCALHOST = "127.0.0.1"   # where the live view listens unless the operator names another address


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    package: str
    executable: str
    name: str
    params: dict = field(default_factory=dict)

    @property
    def enclave(self) -> str:
        """The node's SROS2 enclave (config/sros2/policy.xml): what it may publish, subscribe and call."""
        return f"{ENCLAVE_ROOT}/{self.name}"

    @property
    def module(self) -> str:
        return EXECUTABLES[self.executable]


def config_dir() -> Path:
    """The bringup config folder: share/diffuseloco_bringup/config when installed, the source tree in a checkout."""
    return share_dir(PACKAGE) / "config"


def graph(target: str, model: str = "", teleop: str = "joy", record: bool = False,
          live_view: Optional[str] = None, web_teleop_host: Optional[str] = None) -> list[NodeSpec]:
    """The nodes for `target` ('sim' or 'robot'). On the robot the joint and IMU topics come from the LCM bridge
    (lcm_bridge, talking to the motor SDK's firmware over LCM); in simulation from the MuJoCo node on the very
    same topics. robot_state always runs (robot description, joint states, /tf). live_view: the address the
    Foxglove server listens on (None: no live view; LOCALHOST unless the operator names another).
    web_teleop_host: the address the web teleop's page is served on, needed by teleop 'web' and only by it (it
    has no default: the operator chooses which network may drive the robot)."""
    if target not in ("sim", "robot"):
        raise ValueError(f"unknown target {target!r}: expected 'sim' or 'robot'")
    if teleop not in TELEOP_KINDS:
        raise ValueError(f"unknown teleop kind {teleop!r}: expected one of {TELEOP_KINDS}")
    policy_params = {"model": model} if model else {}
    nodes = [NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy", policy_params),
             NodeSpec("diffuseloco_policy", "robot_state", "robot_state")]
    if target == "sim":
        nodes.insert(0, NodeSpec("diffuseloco_sim", "sim_node", "cyberdog_sim"))
    else:
        nodes.insert(0, NodeSpec("diffuseloco_policy", "lcm_bridge", "lcm_bridge"))
    if (teleop == "web") != (web_teleop_host is not None):
        raise ValueError("the web teleop needs an address to listen on, and only it takes one: teleop 'web' with "
                         "web_teleop_host (0.0.0.0 for every interface, or one of this machine's addresses)")
    teleop_executable = {"joy": "teleop_node", "keyboard": "keyboard_teleop", "script": "script_teleop"}
    if teleop == "joy":  # the driver that turns the pad into /joy, then the teleop that reads it
        nodes.append(NodeSpec("joy", "game_controller_node", "joy"))
    if teleop in teleop_executable:
        nodes.append(NodeSpec("diffuseloco_policy", teleop_executable[teleop], "teleop"))
    if teleop == "web":
        nodes.append(web_teleop_spec(web_teleop_host))
    if record:
        nodes.append(NodeSpec("diffuseloco_policy", "recorder", "recorder"))
    if live_view is not None:
        nodes.append(live_view_spec(live_view))
    return nodes


def live_view_spec(host: str = LOCALHOST) -> NodeSpec:
    """The Foxglove live view, listening on `host` (an address of this machine; refused when empty)."""
    if not host.strip():
        raise ValueError("the live view needs an address to listen on (127.0.0.1 for this machine only)")
    return NodeSpec("diffuseloco_policy", "live_view", "live_view", {"host": host.strip()})


def web_teleop_spec(host: str) -> NodeSpec:
    """The web teleop, serving its page on `host` (an address of this machine or 0.0.0.0; refused when empty). It
    is the graph's teleop: one node named teleop drives the robot at a time."""
    if not host.strip():
        raise ValueError("the web teleop needs an address to listen on (0.0.0.0 for every interface, or one of "
                         "this machine's addresses)")
    return NodeSpec("diffuseloco_policy", "web_teleop", "teleop", {"web_host": host.strip()})


def params_file(target: str) -> Path:
    """The ROS 2 parameter file of a target (one file, a section per node name)."""
    return config_dir() / f"{target}.yaml"
