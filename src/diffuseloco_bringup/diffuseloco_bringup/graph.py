"""The node graph, defined once: the launch files (robot and simulator) and the launch-free dev runner both
build their processes from here, so `ros2 launch` on the robot and `python -m diffuseloco_bringup.run` on a dev
machine start the same nodes with the same parameter files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

try:  # installed by colcon: configs live in the package's share directory
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
except ImportError:  # pragma: no cover - the ROS wheels always ship ament_index_python
    get_package_share_directory = None

PACKAGE = "diffuseloco_bringup"
SOURCE_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

# Executable name (console script, `ros2 run` name) -> Python module that provides `main()`.
EXECUTABLES = {
    "sim_node": "diffuseloco_policy.nodes.sim_node",
    "policy_node": "diffuseloco_policy.nodes.policy_node",
    "teleop_node": "diffuseloco_policy.nodes.teleop_node",
    "keyboard_teleop": "diffuseloco_policy.nodes.keyboard_teleop",
    "script_teleop": "diffuseloco_policy.nodes.script_teleop",
    "recorder": "diffuseloco_policy.nodes.recorder",
    "lcm_bridge": "diffuseloco_policy.nodes.lcm_bridge_node",
}
TELEOP_KINDS = ("joy", "keyboard", "script", "none")


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    package: str
    executable: str
    name: str
    params: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        return EXECUTABLES[self.executable]


def config_dir() -> Path:
    """The bringup config folder: the source tree in a dev checkout, share/ when installed by colcon."""
    if SOURCE_CONFIG_DIR.is_dir():
        return SOURCE_CONFIG_DIR
    if get_package_share_directory is None:
        raise FileNotFoundError("diffuseloco_bringup configs not found")
    try:
        return Path(get_package_share_directory(PACKAGE)) / "config"
    except PackageNotFoundError as exc:
        raise FileNotFoundError("diffuseloco_bringup is not installed and no source tree is present") from exc


def graph(target: str, model: str = "", teleop: str = "joy", record: bool = False) -> list[NodeSpec]:
    """The nodes for `target` ('sim' or 'robot'). On the robot the joint and IMU topics come from the LCM bridge
    (lcm_bridge, talking to the motor SDK's firmware over LCM); in simulation from the MuJoCo node on the very
    same topics."""
    if target not in ("sim", "robot"):
        raise ValueError(f"unknown target {target!r}: expected 'sim' or 'robot'")
    if teleop not in TELEOP_KINDS:
        raise ValueError(f"unknown teleop kind {teleop!r}: expected one of {TELEOP_KINDS}")
    policy_params = {"model": model} if model else {}
    nodes = [NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy", policy_params)]
    if target == "sim":
        nodes.insert(0, NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"))
    else:
        nodes.insert(0, NodeSpec("diffuseloco_policy", "lcm_bridge", "lcm_bridge"))
    teleop_executable = {"joy": "teleop_node", "keyboard": "keyboard_teleop", "script": "script_teleop"}
    if teleop in teleop_executable:
        nodes.append(NodeSpec("diffuseloco_policy", teleop_executable[teleop], "teleop"))
    if record:
        nodes.append(NodeSpec("diffuseloco_policy", "recorder", "recorder"))
    return nodes


def params_file(target: str) -> Path:
    """The ROS 2 parameter file of a target (one file, a section per node name)."""
    return config_dir() / f"{target}.yaml"
