"""What every teleop node shares: publishing SkillCommand at a steady rate and asking the policy node for
controller state changes through its service (asynchronously: a teleop must never block on the robot)."""

from __future__ import annotations

from typing import Callable, Optional

from diffuseloco_msgs.msg import SkillCommand
from diffuseloco_msgs.srv import SetControllerState
from rclpy.node import Node

from ..command_classes import describe_command_classes, parse_command_classes, with_command_classes
from ..config import StackConfig, load_config
from ..controller import ControllerRequest
from ..teleop import TeleopCommand
from .parameters import declare_parameters


class TeleopNode(Node):
    """Base class: parameters, the SkillCommand publisher and the state-request client."""

    def __init__(self, name: str, extra_parameters: Optional[dict] = None) -> None:
        super().__init__(name)
        # command_classes: the class map of a class model ("walk=trot+pace,jump=bound+hop"): skills then select
        # their class, and the class's name is a skill to bind (command_classes.py); "" = the config's own
        defaults = {"config": "", "skill_command_topic": "/diffuseloco/skill_cmd", "command_classes": "",
                    "state_service": "/diffuseloco/set_state", "publish_rate_hz": 20.0, **(extra_parameters or {})}
        self.params = declare_parameters(self, defaults)
        self.stack: StackConfig = load_config(self.params["config"] or None)
        if self.params["command_classes"]:
            self.stack = with_command_classes(self.stack, parse_command_classes(self.params["command_classes"]))
            self.get_logger().info(f"command classes: {describe_command_classes(self.stack)}")
        self.command_pub = self.create_publisher(SkillCommand, self.params["skill_command_topic"], 10)
        self.state_client = self.create_client(SetControllerState, self.params["state_service"])
        self.request_source = "teleop"   # how this teleop names itself to the policy node (subclasses: their source)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def publish_command(self, command: TeleopCommand) -> None:
        msg = SkillCommand(skill=int(command.skill), vx=float(command.vx), vy=float(command.vy),
                           yaw_rate=float(command.yaw_rate), source=command.source)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.command_pub.publish(msg)

    def send_request(self, request: ControllerRequest,
                     on_answer: Optional[Callable[[bool], None]] = None) -> None:
        """Ask for a state change; on_answer(accepted) is called with the answer (False if none can come)."""
        if not self.state_client.service_is_ready():
            self.get_logger().warning(f"{request.name} not sent: the policy node's state service is not available")
            if on_answer is not None:
                on_answer(False)
            return
        future = self.state_client.call_async(SetControllerState.Request(request=int(request),
                                                                         source=self.request_source))
        future.add_done_callback(lambda f, r=request: self._log_response(r, f, on_answer))

    def _log_response(self, request: ControllerRequest, future, on_answer) -> None:
        response = future.result()
        if on_answer is not None:
            on_answer(bool(response is not None and response.accepted))
        if response is None:
            self.get_logger().error(f"{request.name}: no answer from the policy node")
        elif response.accepted:
            self.get_logger().info(f"{request.name}: {response.message}")
        else:
            self.get_logger().warning(f"{request.name} refused: {response.message}")
