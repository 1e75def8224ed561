"""launch_ros actions built from graph.py. Imported only by the launch files (launch_ros exists on the robot
and in any ROS 2 install; the dev runner does not need it)."""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from .graph import LOCALHOST, TELEOP_KINDS, graph, params_file

RECORD_CHOICES = ("none", "recorder", "ros2bag")
RECORDED_TOPICS = ["/cyberdog/leg_state", "/cyberdog/imu", "/cyberdog/body_velocity", "/cyberdog/motor_cmd",
                   "/diffuseloco/skill_cmd", "/diffuseloco/status", "/joy"]


def _actions(context: LaunchContext, target: str) -> list:
    model = LaunchConfiguration("model").perform(context)
    teleop = LaunchConfiguration("teleop").perform(context)
    record = LaunchConfiguration("record").perform(context)
    if record not in RECORD_CHOICES:
        raise ValueError(f"record must be one of {RECORD_CHOICES}, got {record!r}")
    secure = LaunchConfiguration("secure").perform(context).lower() in ("true", "1")
    live_view = LaunchConfiguration("live_view").perform(context).lower() in ("true", "1")
    host = LaunchConfiguration("live_view_host").perform(context) if live_view else None
    web_host = LaunchConfiguration("web_teleop_host").perform(context)
    web_host = web_host if teleop == "web" or web_host else None   # named without teleop:=web: graph() says so
    params = str(params_file(target))
    actions = [
        Node(package=spec.package, executable=spec.executable, name=spec.name,
             parameters=[params, spec.params], output="screen", emulate_tty=True,
             ros_arguments=["--enclave", spec.enclave] if secure else None)
        for spec in graph(target, model=model, teleop=teleop, record=record == "recorder", live_view=host,
                          web_teleop_host=web_host)
    ]
    if record == "ros2bag":
        actions.append(ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", *RECORDED_TOPICS], output="screen"))
    return actions


def describe(target: str) -> LaunchDescription:
    """The launch description for 'sim' or 'robot', with the arguments model, teleop and record."""
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="", description="ONNX model file (default: the shipped one)"),
        DeclareLaunchArgument("teleop", default_value="joy", choices=list(TELEOP_KINDS),
                              description="how commands are given"),
        DeclareLaunchArgument("secure", default_value="false", choices=["true", "false"],
                              description="each node in its SROS2 enclave (config/sros2/policy.xml; set "
                                          "ROS_SECURITY_KEYSTORE, ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY)"),
        DeclareLaunchArgument("record", default_value="none", choices=list(RECORD_CHOICES),
                              description="record a bag with our recorder or with `ros2 bag record`"),
        DeclareLaunchArgument("live_view", default_value="false", choices=["true", "false"],
                              description="the Foxglove live view (WebSocket server, port 8765, read-only)"),
        DeclareLaunchArgument("live_view_host", default_value=LOCALHOST,
                              description="the address the live view listens on: this machine only unless you "
                                          "name another of its addresses"),
        DeclareLaunchArgument("web_teleop_host", default_value="",
                              description="teleop:=web serves its page on this address (port 8080): 0.0.0.0 for "
                                          "every interface, or one of this machine's; no default, it must be named"),
        OpaqueFunction(function=_actions, kwargs={"target": target}),
    ])
