"""The bag recorder, run as its own process, writes every message it received before SIGINT/SIGTERM into a
closed, self-describing MCAP bag (our custom types decoded from the bag's own definitions), and subscribes with
a QoS that matches each publisher (best effort for sensor-data publishers, reliable for reliable ones)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
import yaml
from cyberdog_msgs.msg import LegState, MotorCommand
from diffuseloco_msgs.msg import SkillCommand
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Imu

N = 40
TOPICS = {
    "/rec_test/leg_state": (LegState, qos_profile_sensor_data),
    "/rec_test/imu": (Imu, qos_profile_sensor_data),
    "/rec_test/motor_cmd": (MotorCommand, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)),
    "/rec_test/skill_cmd": (SkillCommand, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)),
}
NEVER_PUBLISHED = "/rec_test/nobody"


@pytest.fixture(scope="module")
def node():
    rclpy.init()
    node = rclpy.create_node("recorder_test")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def _messages(rng: np.random.Generator, i: int) -> dict:
    leg = LegState()
    leg.header.stamp.sec, leg.header.frame_id = i, "base"
    leg.q, leg.qd, leg.tau_est = (rng.normal(size=12).astype(np.float32) for _ in range(3))
    imu = Imu()
    imu.header.stamp.sec = i
    imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = (float(v) for v in rng.normal(size=4))
    imu.angular_velocity.z = float(i)
    cmd = MotorCommand()
    cmd.header.stamp.sec = i
    cmd.q_des, cmd.qd_des, cmd.kp_des, cmd.kd_des, cmd.tau_des = (rng.normal(size=12).astype(np.float32)
                                                                  for _ in range(5))
    skill = SkillCommand(skill=i % 4, vx=float(np.float32(0.01 * i)), vy=-0.1, yaw_rate=0.2, source=f"test {i}")
    skill.header.stamp.sec = i
    return dict(zip(TOPICS, (leg, imu, cmd, skill)))


def _record(node, tmp_path, sig: int, settle_s: float):
    bag = tmp_path / "bag"
    log = open(tmp_path / "recorder.log", "w")
    topics = "[" + ", ".join(f"'{t}'" for t in [*TOPICS, NEVER_PUBLISHED]) + "]"
    proc = subprocess.Popen([sys.executable, "-m", "diffuseloco_policy.nodes.recorder", "--ros-args",
                             "-p", f"output:={bag}", "-p", f"topics:={topics}", "-p", "discovery_period_s:=0.1"],
                            stdout=log, stderr=subprocess.STDOUT)
    publishers = {t: node.create_publisher(cls, t, qos) for t, (cls, qos) in TOPICS.items()}
    rng = np.random.default_rng(7)
    sent = {t: [] for t in TOPICS}
    try:
        deadline = time.monotonic() + 20.0
        while not all(p.get_subscription_count() > 0 for p in publishers.values()):
            assert proc.poll() is None, (tmp_path / "recorder.log").read_text()
            assert time.monotonic() < deadline, "the recorder never subscribed: " + (tmp_path / "recorder.log").read_text()
            rclpy.spin_once(node, timeout_sec=0.05)
        qos_seen = {t: [i.qos_profile.reliability for i in node.get_subscriptions_info_by_topic(t)]
                    for t in TOPICS}
        for i in range(N):
            for topic, msg in _messages(rng, i).items():
                publishers[topic].publish(msg)
                sent[topic].append(msg)
            time.sleep(0.003)
        time.sleep(settle_s)
        start = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=10)
        stop_s = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in publishers.values():
            node.destroy_publisher(p)
        log.close()
    assert rc == 0, (tmp_path / "recorder.log").read_text()
    return bag, sent, qos_seen, stop_s


def _read(bag) -> dict:
    """Everything in the bag, decoded with the definitions stored in the bag itself (no typestore given)."""
    out = {}
    with AnyReader([bag]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for connection, timestamp, raw in reader.messages():
            out.setdefault(connection.topic, []).append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return types, out


def _check_bag(bag, sent) -> None:
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    assert metadata["message_count"] == len(TOPICS) * N
    assert (bag / metadata["relative_file_paths"][0]).is_file()
    types, got = _read(bag)
    assert types == {"/rec_test/leg_state": "cyberdog_msgs/msg/LegState", "/rec_test/imu": "sensor_msgs/msg/Imu",
                     "/rec_test/motor_cmd": "cyberdog_msgs/msg/MotorCommand",
                     "/rec_test/skill_cmd": "diffuseloco_msgs/msg/SkillCommand"}
    for topic in TOPICS:
        assert len(got[topic]) == N, f"{topic}: {len(got[topic])} of {N} messages in the bag"
        stamps = [t for t, _ in got[topic]]
        assert stamps == sorted(stamps) and stamps[0] > 1.6e18  # receive times (ns since epoch), in order
        assert [m.header.stamp.sec for _, m in got[topic]] == list(range(N))
    for (_, b), s in zip(got["/rec_test/leg_state"], sent["/rec_test/leg_state"]):
        for field in ("q", "qd", "tau_est"):
            np.testing.assert_array_equal(getattr(b, field), getattr(s, field))
        assert b.header.frame_id == "base"
    for (_, b), s in zip(got["/rec_test/motor_cmd"], sent["/rec_test/motor_cmd"]):
        for field in ("q_des", "qd_des", "kp_des", "kd_des", "tau_des"):
            np.testing.assert_array_equal(getattr(b, field), getattr(s, field))
    for (_, b), s in zip(got["/rec_test/imu"], sent["/rec_test/imu"]):
        assert (b.orientation.w, b.orientation.x, b.orientation.y, b.orientation.z) == \
            (s.orientation.w, s.orientation.x, s.orientation.y, s.orientation.z)
        assert b.angular_velocity.z == s.angular_velocity.z
    for (_, b), s in zip(got["/rec_test/skill_cmd"], sent["/rec_test/skill_cmd"]):
        assert (b.skill, b.vx, b.vy, b.yaw_rate, b.source) == (s.skill, np.float32(s.vx), np.float32(s.vy),
                                                                np.float32(s.yaw_rate), s.source)


def test_sigint_closes_the_bag_with_every_message(node, tmp_path):
    bag, sent, qos_seen, stop_s = _record(node, tmp_path, signal.SIGINT, settle_s=0.3)
    _check_bag(bag, sent)
    assert stop_s < 5.0
    # QoS chosen per publisher: best effort matches the sensor-data publishers, reliable the reliable ones.
    assert qos_seen["/rec_test/leg_state"] == [ReliabilityPolicy.BEST_EFFORT]
    assert qos_seen["/rec_test/imu"] == [ReliabilityPolicy.BEST_EFFORT]
    assert qos_seen["/rec_test/motor_cmd"] == [ReliabilityPolicy.RELIABLE]
    assert qos_seen["/rec_test/skill_cmd"] == [ReliabilityPolicy.RELIABLE]


def test_sigterm_right_after_publishing_loses_nothing(node, tmp_path):
    """No settling time: what was delivered but not yet taken is drained before the bag is closed."""
    bag, sent, _, _ = _record(node, tmp_path, signal.SIGTERM, settle_s=0.0)
    _check_bag(bag, sent)
