"""Web teleop: a phone's browser as the joystick. Serves the page (web/web_teleop.html) and its WebSocket on one
port, and turns what the pages send into SkillCommand and controller requests under the joystick's rules
(web_teleop.py); pushes the policy status and the measured body velocity back to the pages.

Off unless the operator names the address to listen on: `web_host` has no default, an empty one refuses to start
(0.0.0.0 for every interface, or one address such as the robot's 192.168.44.1). Whoever reaches that address can
open the page; only one page drives at a time, and every page has the e-stop.

Event-driven: a page message that changes the command is published at once from the server's thread, and a
request is sent at once. The steady publish at publish_rate_hz, as every teleop's, repeats the command for the
policy node's command watchdog and zeroes a silent page's velocity once its timeout has passed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Optional, Union

from diffuseloco_msgs.msg import PolicyStatus
from geometry_msgs.msg import TwistStamped
from rclpy.qos import qos_profile_sensor_data

from ..config import ConfigError
from ..package_files import package_file
from ..web_server import PageServer, WebServerError
from ..web_teleop import RobotView, WebTeleop, load_web_settings
from .spin import run_node
from .teleop_common import TeleopNode

PAGE = "web/web_teleop.html"                      # in share/diffuseloco_policy
DEFAULT_SETTINGS = "config/teleop_web.yaml"       # in share/diffuseloco_bringup
STATE_PUSH_S = 0.1                                # pages see the robot's state at 10 Hz
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class WebTeleopNode(TeleopNode):
    def __init__(self) -> None:
        super().__init__("teleop", {"web_host": "", "web_port": 8080, "web_settings": "",
                                    "status_topic": "/diffuseloco/status",
                                    "body_velocity_topic": "/cyberdog/body_velocity"})
        p = self.params
        settings = load_web_settings(p["web_settings"] or package_file("diffuseloco_bringup", DEFAULT_SETTINGS))
        self.session = WebTeleop(settings, self.stack)
        self.request_source = settings.source
        self.lock = threading.Lock()   # the server's thread and the executor's share the session
        self.robot = RobotView()
        self.create_subscription(PolicyStatus, p["status_topic"], self._on_status, 10)
        self.create_subscription(TwistStamped, p["body_velocity_topic"], self._on_velocity, qos_profile_sensor_data)
        self.create_timer(1.0 / p["publish_rate_hz"], self._keep_alive)
        self.server = PageServer(package_file("diffuseloco_policy", PAGE).read_bytes(), p["web_host"], p["web_port"],
                                 self, STATE_PUSH_S)
        port = self.server.start()
        self.get_logger().info(f"web teleop on http://{p['web_host']}:{port}/ (one driving page at a time, the "
                               f"e-stop on every page; {settings.timeout:.1f} s of silence stops the robot)")
        if p["web_host"].strip() not in LOOPBACK:
            self.get_logger().warning(f"the web teleop listens on {p['web_host']}: whoever reaches that address can "
                                      "open the page and, holding its dead-man, drive the robot")

    # ------------------------------------------------------------------------------------ the server's side
    def opened(self, client: int) -> list[str]:
        with self.lock:
            self.session.connect(client)
            return [self.session.hello(), self.session.state_message(client, self.now_s(), self.robot)]

    def received(self, client: int, message: Union[str, bytes]) -> list[str]:
        with self.lock:
            now = self.now_s()
            result = self.session.on_message(client, message, now)
            if result.changed:   # forwarded on receipt, not at the next tick
                self.publish_command(self.session.command(now))
            state = self.session.state_message(client, now, self.robot)
        for request in result.requests:
            self.send_request(request)
        if not result.refusal:
            return [state]
        self.get_logger().warning(f"page {client}: {result.refusal}", throttle_duration_sec=1.0)
        return [json.dumps({"type": "refused", "reason": result.refusal}), state]

    def closed(self, client: int) -> None:
        with self.lock:
            now = self.now_s()
            if self.session.disconnect(client, now).changed:
                self.publish_command(self.session.command(now))

    def pushed(self, client: int) -> str:
        with self.lock:
            return self.session.state_message(client, self.now_s(), self.robot)

    # ---------------------------------------------------------------------------------------- ROS's side
    def _keep_alive(self) -> None:
        with self.lock:
            self.publish_command(self.session.command(self.now_s()))

    def _on_status(self, msg: PolicyStatus) -> None:
        try:
            skill = self.stack.command(int(msg.active_skill)).name
        except ConfigError:
            skill = f"skill {msg.active_skill}"
        with self.lock:
            self.robot = replace(self.robot, state=msg.state_name, skill=skill,
                                 command=tuple(float(v) for v in msg.command), fault=msg.last_fault)

    def _on_velocity(self, msg: TwistStamped) -> None:
        measured = (msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z)
        with self.lock:
            self.robot = replace(self.robot, measured=measured)

    def destroy_node(self) -> None:
        server: Optional[PageServer] = getattr(self, "server", None)
        if server is not None:
            server.stop()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> None:
    run_node(WebTeleopNode, args, refuse=(WebServerError, ConfigError))


if __name__ == "__main__":
    main()
