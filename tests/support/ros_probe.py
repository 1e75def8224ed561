"""A test-side ROS node that watches and drives the graph: records commands and status with receive times, calls
the controller-state service, and can play the robot's sensors. It spins in a background thread so tests can
simply poll for conditions."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
from cyberdog_msgs.msg import LegState, MotorCommand
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from diffuseloco_msgs.srv import SetControllerState
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, Joy

from diffuseloco_policy.nodes.spin import BackgroundNode


class Probe(BackgroundNode):
    def __init__(self, name: str = "test_probe", source: str = "script") -> None:
        """source: how the probe names itself in state requests (it plays the operator's teleop)."""
        super().__init__(name)
        self.source = source
        self.lock = threading.Lock()
        self.commands: list[tuple[float, MotorCommand]] = []
        self.statuses: list[tuple[float, PolicyStatus]] = []
        self.skill_commands: list[tuple[float, SkillCommand]] = []
        self.pose: Optional[PoseStamped] = None
        self.foot_forces: list[tuple[float, np.ndarray]] = []
        n = self.node
        n.create_subscription(MotorCommand, "/cyberdog/motor_cmd", self._keep(self.commands), 50)
        n.create_subscription(PolicyStatus, "/diffuseloco/status", self._keep(self.statuses), 50)
        n.create_subscription(SkillCommand, "/diffuseloco/skill_cmd", self._keep(self.skill_commands), 50)
        n.create_subscription(PoseStamped, "/sim/base_pose", self._on_pose, 10)
        n.create_subscription(LegState, "/cyberdog/leg_state", self._on_leg_state, qos_profile_sensor_data)
        self.client = n.create_client(SetControllerState, "/diffuseloco/set_state")
        self.skill_pub = n.create_publisher(SkillCommand, "/diffuseloco/skill_cmd", 10)
        self.joy_pub = n.create_publisher(Joy, "/joy", 10)
        self.leg_pub = n.create_publisher(LegState, "/cyberdog/leg_state", qos_profile_sensor_data)
        self.imu_pub = n.create_publisher(Imu, "/cyberdog/imu", qos_profile_sensor_data)

    def _keep(self, store: list) -> Callable:
        def callback(msg) -> None:
            with self.lock:
                store.append((time.monotonic(), msg))
        return callback

    def _on_leg_state(self, msg: LegState) -> None:
        with self.lock:
            self.foot_forces.append((time.monotonic(), np.asarray(msg.force_est, dtype=np.float64).reshape(4, 3)))

    def _on_pose(self, msg: PoseStamped) -> None:
        self.pose = msg

    def relay(self, source: str, target: str, msg_type: type) -> threading.Event:
        """Forward source to target (sensor-data QoS) until the returned event is set: a stream a test can cut
        while everything else keeps flowing."""
        stop = threading.Event()
        publisher = self.node.create_publisher(msg_type, target, qos_profile_sensor_data)
        self.node.create_subscription(msg_type, source, lambda msg: stop.is_set() or publisher.publish(msg),
                                      qos_profile_sensor_data)
        return stop

    def now(self) -> float:
        return time.monotonic()

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}{self._status_summary()}")
            time.sleep(0.02)

    def _status_summary(self) -> str:
        """The policy node's last word, so a timed-out wait says why the node did not get there."""
        status = self.latest_status()
        if status is None:
            return " (no policy status received)"
        return f" (policy state {status.state}, last fault: {status.last_fault or 'none'})"

    def latest_status(self) -> Optional[PolicyStatus]:
        with self.lock:
            return self.statuses[-1][1] if self.statuses else None

    def commands_since(self, t: float) -> list[tuple[float, MotorCommand]]:
        with self.lock:
            return [(tr, m) for tr, m in self.commands if tr >= t]

    def request(self, request: int, timeout: float = 5.0) -> SetControllerState.Response:
        assert self.client.wait_for_service(timeout_sec=timeout), "the policy node's service is not available"
        future = self.client.call_async(SetControllerState.Request(request=request, source=self.source))
        self.wait_for(future.done, timeout, f"an answer to request {request}")
        return future.result()

    def request_until_accepted(self, request: int, timeout: float, what: str) -> SetControllerState.Response:
        """Repeat a state request until it is accepted; a timeout names the node's last refusal."""
        answers: list[SetControllerState.Response] = []

        def accepted() -> bool:
            answers.append(self.request(request))
            return answers[-1].accepted

        try:
            self.wait_for(accepted, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last refusal: {answers[-1].message if answers else 'none'}") from None
        return answers[-1]

    def publish_skill(self, skill: int, vx: float = 0.0, vy: float = 0.0, yaw_rate: float = 0.0) -> None:
        self.skill_pub.publish(SkillCommand(skill=skill, vx=vx, vy=vy, yaw_rate=yaw_rate, source="test"))

    def stream_skill(self, skill: int, vx: float = 0.0, vy: float = 0.0, yaw_rate: float = 0.0,
                     rate_hz: float = 20.0) -> None:
        """Publish this command at rate_hz until the next stream_skill or close, as every teleop does: the policy
        node's command watchdog zeroes a command that is not repeated, then stands."""
        self._streamed = (skill, vx, vy, yaw_rate)
        if getattr(self, "_streamer", None) is None:
            self._streamer = threading.Thread(target=self._stream, args=(1.0 / rate_hz,), daemon=True)
            self._streamer.start()

    def _stream(self, period: float) -> None:
        while getattr(self, "_streamed", None) is not None:
            self.publish_skill(*self._streamed)
            time.sleep(period)

    def stop_streaming(self) -> None:
        """The streamed command stops, as when a teleop dies."""
        self._streamed = None
        if getattr(self, "_streamer", None) is not None:
            self._streamer.join(timeout=1.0)
            self._streamer = None

    def close(self) -> None:
        self.stop_streaming()
        super().close()

    def publish_sensors(self, q_sdk: np.ndarray, quaternion_wxyz=(1.0, 0.0, 0.0, 0.0)) -> None:
        stamp = self.node.get_clock().now().to_msg()
        leg = LegState()
        leg.header.stamp = stamp
        leg.q = np.asarray(q_sdk, dtype=np.float32)
        self.leg_pub.publish(leg)
        imu = Imu()
        imu.header.stamp = stamp
        imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = (float(v) for v in quaternion_wxyz)
        self.imu_pub.publish(imu)


@contextlib.contextmanager
def running_teleop(params: Path, probe_name: str) -> Iterator[Probe]:
    """The joystick teleop node alone on `params`, and a probe that has seen its first SkillCommand and is
    connected to its /joy input (the teleop tests' start-up, shared)."""
    from diffuseloco_bringup.graph import NodeSpec
    from diffuseloco_bringup.run import Graph

    graph = Graph([NodeSpec("diffuseloco_policy", "teleop_node", "teleop")], params)
    graph.start()
    probe = Probe(probe_name)
    try:
        probe.wait_for(lambda: len(probe.skill_commands) > 0, 60.0, "the teleop node's SkillCommand")
        probe.wait_for(lambda: probe.joy_pub.get_subscription_count() > 0, 10.0, "the teleop node on /joy")
        yield probe
    finally:
        probe.close()
        graph.stop()
