"""A separate-process ROS 2 peer for round-trip tests: republishes every message it gets on `<topic>/echo`.

Usage: python echo_node.py pkg/msg/Type:/topic [pkg/msg/Type:/topic ...]
It prints "ready" once its publishers and subscriptions exist, and exits on SIGTERM/SIGINT (rclpy's own
signal handlers shut the context down, which ends the spin).
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_messages import message_class


def main(argv: list[str]) -> None:
    rclpy.init()
    node = rclpy.create_node("round_trip_echo")
    # transient local: a message published before the far side has matched this endpoint still arrives
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    keep = []
    for spec in argv:
        type_name, topic = spec.split(":")
        cls = message_class(type_name)
        publisher = node.create_publisher(cls, f"{topic}/echo", qos)
        keep.append(node.create_subscription(cls, topic, publisher.publish, qos))
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
