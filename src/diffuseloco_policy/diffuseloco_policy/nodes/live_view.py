"""The live view: a Foxglove WebSocket server (foxglove-sdk) that streams the graph's topics to Foxglove, in
simulation and on the robot. Open Foxglove, connect to ws://HOST:PORT and load config/foxglove/diffuseloco.json
from the bringup package (docs/getting_started.md, "Watching the robot live").

Each listed topic is forwarded as it is on the wire (CDR) with its full ROS 2 definition as the channel's schema
(ros2msg, message_definitions.py), so Foxglove decodes every message type, ours included. A topic is picked up
once the graph shows it (checked every second), so a cmd_vel publisher started later appears too. The latched
topics (/robot_description, /tf_static) are sent again whenever a client subscribes, since they are published
once.

Read-only: the server advertises no client-publish, parameter or service capability, so nothing can command the
robot through it. It binds to `host`, 127.0.0.1 by default: another interface only when the operator names it
(anyone who reaches that interface sees the telemetry).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import foxglove
from foxglove.websocket import ServerListener
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from .message_definitions import DefinitionNotFound, message_class, ros2msg_schema
from .parameters import declare_parameters
from .spin import run_node

DEFAULT_TOPICS = ["/diffuseloco/status", "/diffuseloco/skill_cmd", "/cmd_vel", "/cyberdog/motor_cmd",
                  "/joint_states", "/odom", "/tf", "/tf_static", "/robot_description", "/diagnostics", "/rosout"]
LATCHED = frozenset({"/tf_static", "/robot_description"})
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# best effort, volatile: receives from every publisher, reliable or not (nodes/qos.py)
STREAM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


class LiveViewError(RuntimeError):
    """The server cannot start (a port in use, an address not on this machine)."""


class _Forwarded:
    """One topic on its way to the server: the channel and, for a latched topic, its newest message."""

    def __init__(self, channel: foxglove.Channel, latched: bool) -> None:
        self.channel, self.latched = channel, latched
        self.last: Optional[bytes] = None
        self.count = 0

    def forward(self, data: bytes) -> None:
        self.count += 1
        if self.latched:
            self.last = data
        self.channel.log(data, log_time=time.time_ns())


class _Subscriptions(ServerListener):
    """The server's listener: notes which channels a client subscribed to, for the node to resend the latched
    ones (the other callbacks keep the protocol's defaults)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: set[int] = set()

    def on_subscribe(self, client, channel) -> None:
        with self.lock:
            self.pending.add(channel.id)

    def take(self) -> set[int]:
        with self.lock:
            taken, self.pending = self.pending, set()
        return taken


class LiveViewNode(Node):
    def __init__(self) -> None:
        super().__init__("live_view")
        p = declare_parameters(self, {"host": "127.0.0.1", "port": 8765, "topics": list(DEFAULT_TOPICS),
                                      "name": "DiffuseLoco-ROS"})
        self.wanted = [t for t in p["topics"] if t]
        self.foxglove_context = foxglove.Context()
        self.listener = _Subscriptions()
        try:
            self.server = foxglove.start_server(name=p["name"], host=p["host"], port=p["port"],
                                                context=self.foxglove_context, server_listener=self.listener)
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own types for bind errors
            raise LiveViewError(f"the Foxglove server cannot listen on {p['host']}:{p['port']}: {exc}") from exc
        self.forwarded: dict[str, Optional[_Forwarded]] = {}   # None: a topic that cannot be forwarded
        self.create_timer(1.0, self._discover)
        self.create_timer(0.1, self._resend_latched)
        self._discover()
        self.get_logger().info(f"live view on ws://{p['host']}:{self.server.port} (Foxglove), "
                               f"{len(self.wanted)} topics: {', '.join(self.wanted)}")
        if p["host"] not in ("127.0.0.1", "localhost", "::1"):
            self.get_logger().warning(f"the live view listens on {p['host']}: whoever reaches that address sees "
                                      "the robot's telemetry (it accepts no commands)")

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic not in self.wanted or topic in self.forwarded:
                continue
            if len(types) != 1:
                self.get_logger().warning(f"{topic} carries several types {types}: not forwarded",
                                          throttle_duration_sec=10.0)
                continue
            self._forward(topic, types[0])

    def _forward(self, topic: str, type_name: str) -> None:
        try:
            schema = foxglove.Schema(name=type_name, encoding="ros2msg", data=ros2msg_schema(type_name).encode())
            msg_type = message_class(type_name)
        except (DefinitionNotFound, ImportError, AttributeError, ValueError) as exc:
            self.get_logger().warning(f"{topic} ({type_name}) not forwarded: {exc}", throttle_duration_sec=10.0)
            self.forwarded[topic] = None   # do not try again every second
            return
        channel = foxglove.Channel(topic, schema=schema, message_encoding="cdr", context=self.foxglove_context)
        forwarded = _Forwarded(channel, topic in LATCHED)
        self.forwarded[topic] = forwarded
        self.create_subscription(msg_type, topic, forwarded.forward, LATCHED_QOS if topic in LATCHED else STREAM_QOS,
                                 raw=True)

    def _resend_latched(self) -> None:
        subscribed = self.listener.take()
        for forwarded in self.forwarded.values():
            if forwarded is not None and forwarded.latched and forwarded.last is not None \
                    and forwarded.channel.id() in subscribed:
                forwarded.channel.log(forwarded.last, log_time=time.time_ns())

    def destroy_node(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> None:
    run_node(LiveViewNode, args, refuse=(LiveViewError,))


if __name__ == "__main__":
    main()
