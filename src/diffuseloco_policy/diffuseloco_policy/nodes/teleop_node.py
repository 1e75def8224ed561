"""Joystick teleop: sensor_msgs/Joy -> SkillCommand (published at a steady rate, so joystick loss shows up as
zero velocity within `timeout`) and controller requests, through the mapping in config/teleop_gamepad.yaml."""

from __future__ import annotations

from typing import Optional

from sensor_msgs.msg import Joy

from ..config import ConfigError
from ..package_files import package_file
from ..teleop import GamepadTeleop, load_gamepad_mapping
from .spin import run_node
from .teleop_common import TeleopNode

DEFAULT_MAPPING = "config/teleop_gamepad.yaml"   # in share/diffuseloco_bringup


class JoyTeleopNode(TeleopNode):
    def __init__(self) -> None:
        super().__init__("teleop", {"mapping": "", "joy_topic": "/joy"})
        mapping = load_gamepad_mapping(self.params["mapping"] or package_file("diffuseloco_bringup", DEFAULT_MAPPING))
        self.teleop = GamepadTeleop(mapping, self.stack)
        self.request_source = mapping.source
        self.create_subscription(Joy, self.params["joy_topic"], self._on_joy, 10)
        self.create_timer(1.0 / self.params["publish_rate_hz"], lambda: self.publish_command(
            self.teleop.command(self.now_s())))

    def _on_joy(self, msg: Joy) -> None:
        result = self.teleop.on_joy(list(msg.axes), list(msg.buttons), self.now_s())
        for warning in result.warnings:
            self.get_logger().warning(warning, throttle_duration_sec=1.0)
        for request in result.requests:
            self.send_request(request)


def main(args: Optional[list[str]] = None) -> None:
    run_node(JoyTeleopNode, args, refuse=(ConfigError,))   # a bad mapping or class map: its reason, no traceback


if __name__ == "__main__":
    main()
