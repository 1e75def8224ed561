"""Every interface we define (and the sensor messages the policy consumes) crosses a real process boundary
through rclpy intact. No skip: the set-up installs ROS 2, so a missing rclpy is a failure."""

from __future__ import annotations

import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ros_messages import message_class, random_message

MESSAGE_TYPES = [
    "diffuseloco_msgs/msg/SkillCommand",
    "diffuseloco_msgs/msg/PolicyStatus",
    "cyberdog_msgs/msg/MotorCommand",
    "cyberdog_msgs/msg/LegState",
    "cyberdog_msgs/msg/MotorControlState",
    "sensor_msgs/msg/JointState",
    "sensor_msgs/msg/Imu",
]
ECHO = Path(__file__).resolve().parent / "support" / "echo_node.py"


def topic_for(type_name: str) -> str:
    return "/roundtrip/" + type_name.replace("/msg/", "_").lower()


@pytest.fixture(scope="module")
def echo_process():
    specs = [f"{t}:{topic_for(t)}" for t in MESSAGE_TYPES]
    proc = subprocess.Popen([sys.executable, str(ECHO), *specs], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", "echo node did not start"
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a loaded machine can stall the DDS teardown; cleanup, not a test
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def node():
    rclpy.init()
    node = rclpy.create_node("round_trip_test")
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.mark.parametrize("type_name", MESSAGE_TYPES)
def test_message_round_trips_between_processes(type_name, echo_process, node):
    cls = message_class(type_name)
    rng = np.random.default_rng(zlib.crc32(type_name.encode()))
    sent = [random_message(cls, rng) for _ in range(3)]
    received = []
    # transient local: a message published before the far side has matched this endpoint still arrives
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = node.create_publisher(cls, topic_for(type_name), qos)
    subscription = node.create_subscription(cls, topic_for(type_name) + "/echo", received.append, qos)
    try:
        deadline = time.monotonic() + 20.0
        while (publisher.get_subscription_count() == 0 or subscription.get_publisher_count() == 0):
            assert time.monotonic() < deadline, "the echo process was never discovered"
            rclpy.spin_once(node, timeout_sec=0.05)
        for msg in sent:
            publisher.publish(msg)
        while len(received) < len(sent) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_publisher(publisher)
        node.destroy_subscription(subscription)
    assert received == sent


def test_random_messages_differ():
    """The round trip compares real content: two random fills of a message are not equal by accident."""
    cls = message_class("cyberdog_msgs/msg/MotorCommand")
    rng = np.random.default_rng(0)
    assert random_message(cls, rng) != random_message(cls, rng)
