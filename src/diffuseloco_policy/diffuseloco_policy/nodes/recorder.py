"""Bag recorder: chosen topics -> a rosbag2 bag (MCAP by default) written with `rosbags`, readable by `ros2 bag`.

    ros2 run diffuseloco_policy recorder --ros-args -p output:=bags/walk1 \
        -p topics:="['/cyberdog/leg_state', '/cyberdog/imu', '/cyberdog/motor_cmd', '/diffuseloco/skill_cmd']"

(`python -m diffuseloco_policy.nodes.recorder --ros-args ...` works the same without ros2cli.)

Parameters: `output` (bag folder, must not exist; "" -> bags/<YYYYmmdd-HHMMSS>), `topics` (list; the default is
the policy's inputs and outputs), `storage` ("mcap" or "sqlite3"), `bag_version` (rosbag2 metadata version, 8 or
9). Each topic's type comes from the graph; topics that have no publisher yet are picked up when one appears.
Messages arrive serialized (raw subscriptions) and go into the bag byte for byte, stamped with their receive time
on the node's clock (sim time under use_sim_time). Types are registered with rosbags from their .msg files
(data/bagtypes.py), so the bag carries full definitions, our cyberdog_msgs / diffuseloco_msgs included.

QoS: like `ros2 bag record`, a topic is subscribed RELIABLE only if every publisher on it offers RELIABLE, else
BEST_EFFORT (a best-effort subscription matches both kinds; a reliable one would never hear a best-effort sensor
publisher such as LegState/Imu on sensor-data QoS). Durability likewise: TRANSIENT_LOCAL only if all publishers
offer it (to get latched samples), else VOLATILE. History is KEEP_LAST with a deep queue (`queue_depth`) so
a slow write never drops 500 Hz sensor messages. The publishers' offered profiles go into the bag's metadata.

Shutdown: SIGINT and SIGTERM only set a flag (rclpy's own handlers are off, so the context stays up); the loop
then takes what is still queued in the subscriptions for `drain_s`, closes the writer (metadata.yaml, MCAP
summary) and only then shuts ROS down. An exception takes the same path: the bag is always closed.
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from ..bagtypes import ensure_types, make_typestore
from .parameters import declare_parameters

DEFAULT_TOPICS = ["/cyberdog/leg_state", "/cyberdog/imu", "/cyberdog/body_velocity", "/cyberdog/motor_cmd",
                  "/diffuseloco/skill_cmd", "/diffuseloco/status"]
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def default_output() -> Path:
    return Path("bags") / time.strftime("%Y%m%d-%H%M%S")


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the generated Python class (needed by rclpy for the type support, even for raw)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def subscription_qos(offered: list[QoSProfile], depth: int) -> QoSProfile:
    """A profile that matches every publisher in `offered` (see the module doc)."""
    reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _qos_time(duration) -> QosTime:
    ns = int(duration.nanoseconds)
    sec, nsec = divmod(ns, 1_000_000_000)
    if sec > 2**31 - 1:  # rmw's "infinite"
        return QosTime(sec=2**31 - 1, nsec=2**32 - 1)
    return QosTime(sec=sec, nsec=nsec)


def bag_qos(profile: QoSProfile) -> Qos:
    """rclpy profile -> rosbags' metadata entry (the enums share rmw's numbering)."""
    return Qos(history=QosHistory(int(profile.history)), depth=int(profile.depth),
               reliability=QosReliability(int(profile.reliability)), durability=QosDurability(int(profile.durability)),
               deadline=_qos_time(profile.deadline), lifespan=_qos_time(profile.lifespan),
               liveliness=QosLiveliness(int(profile.liveliness)),
               liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__("bag_recorder")
        p = declare_parameters(self, {
            "output": "", "topics": DEFAULT_TOPICS, "storage": "mcap", "bag_version": 8, "queue_depth": 1000,
            "discovery_period_s": 0.25, "drain_s": 0.2,
        })
        self.drain_s = p["drain_s"]   # after a stop: how long messages already received are still taken
        if p["storage"] not in STORAGE:
            raise ValueError(f"storage must be one of {sorted(STORAGE)}, got {p['storage']!r}")
        self.wanted = [self.resolve_topic_name(t) for t in p["topics"]]
        if not self.wanted:
            raise ValueError("no topics to record (parameter 'topics' is empty)")
        self.depth = int(p["queue_depth"])
        self.path = Path(p["output"]) if p["output"] else default_output()
        self.typestore = make_typestore()
        self.writer = Writer(self.path, version=int(p["bag_version"]), storage_plugin=STORAGE[p["storage"]])
        self.writer.open()
        self._lock = threading.Lock()
        self._closed = False
        self.counts: dict[str, int] = {}
        self._subs: dict[str, object] = {}
        self._reliable: dict[str, bool] = {}
        self._warned: set[str] = set()
        self.create_timer(float(p["discovery_period_s"]), self._discover)
        self.get_logger().info(f"recording {self.wanted} to {self.path} ({p['storage']})")
        self._discover()

    # ---------------------------------------------------------------------------------------- discovery
    def _discover(self) -> None:
        graph = dict(self.get_topic_names_and_types())
        for topic in self.wanted:
            types = graph.get(topic, [])
            if topic in self._subs:
                self._check_qos(topic)
            elif len(types) > 1:
                self._warn_once(topic, f"{topic} has several types {types}; not recording it")
            elif types:
                try:
                    self._subscribe(topic, types[0])
                except Exception as exc:  # noqa: BLE001 - one unusable topic must not stop the others
                    self._warn_once(topic, f"cannot record {topic} ({types[0]}): {exc}")

    def _subscribe(self, topic: str, msgtype: str) -> None:
        offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
        if not offered:
            return  # only subscribers so far: wait for a publisher to learn its QoS
        cls = message_class(msgtype)
        ensure_types(self.typestore, [msgtype])
        try:
            profiles = [bag_qos(q) for q in offered]
        except (ValueError, TypeError):
            profiles = []
        with self._lock:
            connection = self.writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                    offered_qos_profiles=profiles)
        qos = subscription_qos(offered, self.depth)
        self.counts[topic] = 0
        self._reliable[topic] = qos.reliability == ReliabilityPolicy.RELIABLE
        self._subs[topic] = self.create_subscription(cls, topic, lambda data: self._write(topic, connection, data),
                                                     qos, raw=True)
        self.get_logger().info(f"recording {topic} [{msgtype}] "
                               f"({'reliable' if self._reliable[topic] else 'best effort'})")

    def _check_qos(self, topic: str) -> None:
        if self._reliable[topic] and any(info.qos_profile.reliability != ReliabilityPolicy.RELIABLE
                                         for info in self.get_publishers_info_by_topic(topic)):
            self._warn_once(topic, f"a best-effort publisher joined {topic} after it was subscribed reliable: "
                                   "its messages are not recorded (restart the recorder to include it)")

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def missing_topics(self) -> list[str]:
        return [t for t in self.wanted if t not in self._subs]

    # ------------------------------------------------------------------------------------------ writing
    def _write(self, topic: str, connection, data: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        with self._lock:
            if self._closed:
                return
            self.writer.write(connection, stamp, data)
            self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag (idempotent): after this no callback writes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.writer.close()
        for topic in self.missing_topics():
            self.get_logger().warning(f"{topic} never had a publisher: not in the bag")
        summary = ", ".join(f"{t}: {n}" for t, n in self.counts.items())
        self.get_logger().info(f"bag {self.path} closed ({summary or 'no messages'})")


def main(args: Optional[list[str]] = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def request_stop(signum, frame) -> None:  # only a flag: the main loop finishes the bag
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        node = Recorder()
    except Exception as exc:  # noqa: BLE001 - bad parameters, existing output folder, unknown types
        rclpy.logging.get_logger("bag_recorder").fatal(f"refusing to start: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from exc
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
        # Messages already delivered to our subscriptions' queues were received before the signal: take them.
        deadline = time.monotonic() + node.drain_s
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
    finally:
        node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
