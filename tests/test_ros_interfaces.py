"""The standard ROS robot interfaces and the live view in a live graph (simulator, policy node, robot_state,
live_view as separate processes): what `ros2 topic echo / hz / info` would show for each new topic (names,
frames, rates, units, QoS), cmd_vel's effect on the command in effect, the diagnostics values, and a WebSocket
client that subscribes to the Foxglove server and decodes what it streams with an independent CDR reader."""

from __future__ import annotations

import functools
import json
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from websockets.sync.client import connect

from cyberdog_msgs.msg import LegState
from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy import kinematics
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.nodes.policy_node import TEXT_DIAGNOSTICS
from diffuseloco_policy.robot_description import urdf
from free_port import free_port
from ros_probe import Probe
from tiny_model import export_standing_model

CONFIG = load_config()
CONVENTION = JointConvention(CONFIG.robot)
R = SetControllerState.Request
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRANSIENT_LOCAL = 1   # rmw_qos_durability_policy_t, as get_publishers_info_by_topic reports it
LEGS = ("FR", "FL", "RR", "RL")
RATE_HZ = 50.0
RATE_TOLERANCE = 0.2 * RATE_HZ   # a loaded 2-core machine delays timers; 10 or 500 Hz would still fail


def near_rate(hz: float) -> bool:
    return abs(hz - RATE_HZ) < RATE_TOLERANCE


class Watch:
    """Everything the new interfaces publish, with receive times (a probe's extra subscriptions)."""

    def __init__(self, probe: Probe) -> None:
        self.lock = threading.Lock()
        self.streams: dict[str, list] = {name: [] for name in ("joints", "tf", "odom", "pose", "legs", "diag")}
        self.node = probe.node
        n = probe.node
        n.create_subscription(JointState, "/joint_states", self._keep("joints"), 50)
        n.create_subscription(TFMessage, "/tf", self._keep("tf"), 200)
        n.create_subscription(Odometry, "/odom", self._keep("odom"), 50)
        n.create_subscription(PoseStamped, "/sim/base_pose", self._keep("pose"), 50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._keep("diag"), 10)

    def _keep(self, name: str):
        def callback(msg) -> None:
            with self.lock:
                self.streams[name].append((time.monotonic(), msg))
                del self.streams[name][:-3000]
        return callback

    def since(self, name: str, t: float) -> list:
        with self.lock:
            return [(tr, m) for tr, m in self.streams[name] if tr >= t]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interfaces")
    model = export_standing_model(tmp / "policy.onnx")
    params = yaml.safe_load(params_file("sim").read_text())
    # the robot's 0.05 s sensor timeout would damp on a stall of this loaded machine: not what these tests are about
    config = load_config().to_dict()
    config["safety"].update(sensor_timeout=0.25, stale_stand_after=0.35, stale_damping_after=0.6)
    (tmp / "robot.yaml").write_text(yaml.safe_dump(config))
    params["diffuseloco_policy"]["ros__parameters"].update(model=str(model), config=str(tmp / "robot.yaml"))
    port = free_port()
    params["live_view"]["ros__parameters"].update(port=port)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    graph = Graph([NodeSpec("diffuseloco_sim", "sim_node", "cyberdog_sim"),
                   NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy"),
                   NodeSpec("diffuseloco_policy", "robot_state", "robot_state"),
                   NodeSpec("diffuseloco_policy", "live_view", "live_view", {"host": "127.0.0.1"})], path)
    graph.start()
    probe = Probe("interfaces_probe")
    watch = Watch(probe)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None and watch.since("odom", 0.0)
                       and watch.since("joints", 0.0), 90.0, "the policy status, /odom and /joint_states")
        probe.wait_for(lambda: bool(listening_addresses(port)), 30.0, "the live view's server")
        yield probe, watch, port
    finally:
        probe.close()
        graph.stop()


def stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamped_rate(stamps: list[float]) -> float:
    """Messages per second of the publisher's clock, over the stamps' span (what `ros2 topic hz` measures on
    receipt, free of this test process's own delays)."""
    stamps = sorted(stamps)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def test_the_robot_description_is_latched_and_is_the_urdf(live):
    """A subscriber that comes after the description was published still gets it (transient local, as
    robot_state_publisher offers it)."""
    probe, _, _ = live
    received: list[String] = []
    probe.node.create_subscription(String, "/robot_description", received.append, LATCHED)
    probe.wait_for(lambda: bool(received), 10.0, "the latched /robot_description")
    assert received[0].data == urdf(CONFIG.robot)
    infos = probe.node.get_publishers_info_by_topic("/robot_description")
    assert [i.node_name for i in infos] == ["robot_state"]
    assert int(infos[0].qos_profile.durability) == TRANSIENT_LOCAL
    static: list[TFMessage] = []
    probe.node.create_subscription(TFMessage, "/tf_static", static.append, LATCHED)
    probe.wait_for(lambda: bool(static), 10.0, "the latched /tf_static")
    children = {(t.header.frame_id, t.child_frame_id) for t in static[0].transforms}
    assert children == {("base_link", "imu_link")} | {(f"{leg}_calf", f"{leg}_foot") for leg in LEGS}


def test_joint_states_are_named_at_50_hz_in_the_sdk_convention(live):
    """The config's names; LegState's q (rad), qd (rad/s) and tau_est (N m) unchanged, so the SDK convention:
    the standing dog's hips are positive and its bent knees negative (model convention: -0.785, +1.222)."""
    probe, watch, _ = live
    legs = watch.node.create_subscription(LegState, "/cyberdog/leg_state", watch._keep("legs"),
                                          qos_profile_sensor_data)
    start = time.monotonic()
    time.sleep(3.0)
    watch.node.destroy_subscription(legs)
    joints = watch.since("joints", start)
    assert near_rate(stamped_rate([stamp_s(m.header) for _, m in joints])), len(joints)
    latest = joints[-1][1]
    assert list(latest.name) == list(CONFIG.robot.joint_names)
    assert len(latest.position) == len(latest.velocity) == len(latest.effort) == 12
    legs = {stamp_s(m.header): m for _, m in watch.since("legs", start - 1.0)}
    matched = [(m, legs[stamp_s(m.header)]) for _, m in joints[-20:] if stamp_s(m.header) in legs]
    assert len(matched) >= 10, "joint states carry their LegState's stamp"
    for joint_state, leg in matched:
        np.testing.assert_allclose(joint_state.position, np.asarray(leg.q, dtype=np.float64), atol=1e-7)
        np.testing.assert_allclose(joint_state.velocity, np.asarray(leg.qd, dtype=np.float64), atol=1e-7)
        np.testing.assert_allclose(joint_state.effort, np.asarray(leg.tau_est, dtype=np.float64), atol=1e-7)
    probe.request_until_accepted(R.REQUEST_STAND_UP, 15.0, "STAND_UP")
    probe.wait_for(lambda: probe.latest_status().state == PolicyStatus.STATE_STANDING_UP, 2.0, "STANDING_UP")
    time.sleep(CONFIG.controller.stand_up_duration + 0.5)
    q = np.asarray(watch.since("joints", time.monotonic() - 0.5)[-1][1].position).reshape(4, 3)
    assert np.all(q[:, 1] > 0.4) and np.all(q[:, 2] < -0.9), q.round(2)


def compose(transforms: dict, leaf: str) -> np.ndarray:
    """leaf's origin in base_link from parent -> child TransformStamped's."""
    point, frame = np.zeros(3), leaf
    while frame != "base_link":
        t = transforms[frame]
        x, y, z, w = (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w)
        rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                             [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                             [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        v = t.transform.translation
        point = np.array([v.x, v.y, v.z]) + rotation @ point
        frame = t.header.frame_id
    return point


def test_tf_has_odom_to_base_link_and_the_legs_frames(live):
    """REP 105: odom -> base_link at the odometry's rate and stamp; the leg chain at the joint states' rate puts
    each foot where kinematics.py does for that joint state."""
    _, watch, _ = live
    start = time.monotonic()
    time.sleep(3.0)
    tf = [m for _, m in watch.since("tf", start)]
    odom_tf = [(t.header, t) for m in tf for t in m.transforms if t.child_frame_id == "base_link"]
    assert all(h.frame_id == "odom" for h, _ in odom_tf)
    stamps = [stamp_s(h) for h, _ in odom_tf]
    assert near_rate(stamped_rate(stamps))
    odom = {stamp_s(m.header): m for _, m in watch.since("odom", start)}
    for header, t in odom_tf[-10:]:
        p = odom[stamp_s(header)].pose.pose.position
        assert (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z) == (p.x, p.y, p.z)
    legs = [m for m in tf if m.transforms and m.transforms[0].child_frame_id != "base_link"]
    assert all(len(m.transforms) == 12 for m in legs)
    joints = {stamp_s(m.header): m for _, m in watch.since("joints", start)}
    static = {f"{leg}_foot": _static_foot(leg) for leg in LEGS}
    checked = 0
    for message in legs[-10:]:
        stamp = stamp_s(message.transforms[0].header)
        if stamp not in joints:
            continue
        frames = {t.child_frame_id: t for t in message.transforms} | static
        feet = np.array([compose(frames, f"{leg}_foot") for leg in LEGS])
        q_model = CONVENTION.to_model(np.asarray(joints[stamp].position)).reshape(4, 3)
        np.testing.assert_allclose(feet, kinematics.forward(q_model), atol=1e-6)
        checked += 1
    assert checked >= 5


def _static_foot(leg: str):
    from geometry_msgs.msg import TransformStamped
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = f"{leg}_calf", f"{leg}_foot"
    t.transform.translation.z = -kinematics.CALF
    t.transform.rotation.w = 1.0
    return t


def test_odometry_is_the_simulators_ground_truth_in_si_units(live):
    """Frames odom / base_link, 50 Hz, the pose of /sim/base_pose at the same stamp, and a body-frame twist that
    is the derivative of that pose (m/s): checked while the dog gets down, when the trunk moves."""
    probe, watch, _ = live
    start = time.monotonic()
    probe.request_until_accepted(R.REQUEST_GET_DOWN, 10.0, "GET_DOWN")
    time.sleep(CONFIG.controller.get_down_duration + 0.5)
    odom = [m for _, m in watch.since("odom", start)]
    assert all((m.header.frame_id, m.child_frame_id) == ("odom", "base_link") for m in odom)
    times = np.array([stamp_s(m.header) for m in odom])
    assert near_rate(stamped_rate(list(times)))
    poses = {stamp_s(m.header): m.pose for _, m in watch.since("pose", start)}
    same = [m for m in odom if stamp_s(m.header) in poses]
    assert len(same) > 0.8 * len(odom)
    for m in same:
        p, truth = m.pose.pose.position, poses[stamp_s(m.header)].position
        assert (p.x, p.y, p.z) == (truth.x, truth.y, truth.z)
    position = np.array([[m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z] for m in odom])
    derivative = (position[2:] - position[:-2]) / (times[2:] - times[:-2])[:, None]
    body = []
    for m, v in zip(odom[1:-1], derivative):
        o = m.pose.pose.orientation
        x, y, z, w = o.x, o.y, o.z, o.w
        rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                             [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                             [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        body.append(rotation.T @ v)
    twist = np.array([[m.twist.twist.linear.x, m.twist.twist.linear.y, m.twist.twist.linear.z] for m in odom[1:-1]])
    assert np.max(np.abs(np.array(body)[:, 2])) > 0.05, "the trunk moved while getting down"
    assert np.sqrt(np.mean((twist - np.array(body)) ** 2)) < 0.02


class CmdVel:
    """A cmd_vel publisher streaming at 10 Hz, as a navigation stack's controller does, until stopped."""

    def __init__(self, probe: Probe) -> None:
        self.publisher = probe.node.create_publisher(Twist, "/cmd_vel", 10)
        self.velocity = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.running = True
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            if self.velocity is not None:
                msg = Twist()
                msg.linear.x, msg.linear.y, msg.angular.z = self.velocity
                self.publisher.publish(msg)
            time.sleep(0.1)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=1.0)


def command(probe: Probe) -> tuple[int, list[float]]:
    status = probe.latest_status()
    return int(status.active_skill), [round(float(v), 3) for v in status.command]


def test_cmd_vel_sets_the_velocity_of_the_skill_in_effect_and_nothing_else(live):
    probe, _, _ = live
    trot, stand = CONFIG.skill("trot"), CONFIG.skill("stand")
    nav = CmdVel(probe)
    try:
        probe.stream_skill(trot.id)                                   # a teleop, sticks idle
        nav.velocity = (5.0, 0.0, 0.3)
        probe.wait_for(lambda: command(probe) == (trot.id, [trot.vx[1], 0.0, 0.3]), 3.0,
                       "cmd_vel's velocity, clamped to trot's range")
        probe.stream_skill(trot.id, vx=0.2)                           # the teleop's stick takes over
        probe.wait_for(lambda: command(probe) == (trot.id, [0.2, 0.0, 0.0]), 3.0, "the teleop's velocity")
        time.sleep(0.5)
        assert command(probe) == (trot.id, [0.2, 0.0, 0.0])
        probe.stream_skill(stand.id)                                  # cmd_vel cannot leave stand
        time.sleep(1.0)
        assert command(probe) == (stand.id, [0.0, 0.0, 0.0])
        probe.stream_skill(trot.id)
        probe.wait_for(lambda: command(probe) == (trot.id, [trot.vx[1], 0.0, 0.3]), 3.0, "cmd_vel again")
        nav.velocity = None                                           # the navigation stack falls silent
        stopped = time.monotonic()
        probe.wait_for(lambda: command(probe) == (trot.id, [0.0, 0.0, 0.0]), 2.0, "zero velocity, skill kept")
        assert time.monotonic() - stopped >= CONFIG.watchdog.command_zero_after_s - 0.2
        probe.stop_streaming()                                        # no teleop at all: cmd_vel alone
        time.sleep(0.3)
        nav.velocity = (0.3, 0.0, 0.0)
        probe.wait_for(lambda: command(probe) == (trot.id, [0.3, 0.0, 0.0]), 3.0, "cmd_vel alone")
        nav.velocity = None
        probe.wait_for(lambda: command(probe) == (stand.id, [0.0, 0.0, 0.0]),
                       CONFIG.watchdog.command_stand_after_s + 2.0, "the command watchdog's stand")
    finally:
        nav.close()
        probe.stop_streaming()
    assert probe.latest_status().state in (PolicyStatus.STATE_PASSIVE, PolicyStatus.STATE_GETTING_DOWN,
                                           PolicyStatus.STATE_STANDING_UP, PolicyStatus.STATE_RUNNING)


def test_diagnostics_values_are_one_number_per_key(live):
    _, watch, _ = live
    watch_start = time.monotonic()
    time.sleep(2.5)
    arrays = [m for _, m in watch.since("diag", watch_start)]
    values = [{kv.key: kv.value for kv in s.values} for m in arrays for s in m.status if s.name == "diffuseloco_policy"]
    assert values
    latest = values[-1]
    for key, value in latest.items():
        if key not in TEXT_DIAGNOSTICS:
            float(value)   # raises for "(0.1, 0.2, 0.3)" or "+0.1 +0.2 +0.3"
    for name in ("model_command", "command_correction"):
        assert {f"{name}_{axis}" for axis in ("vx", "vy", "yaw_rate")} <= set(latest)
    assert latest["cmd_vel"] in ("idle", "in use", "overridden by a teleop")


# ------------------------------------------------------------------------------------------------ live view
SUBPROTOCOL = "foxglove.sdk.v1"   # what foxglove-sdk's server speaks (the Foxglove app too)


class FoxgloveClient:
    """A minimal client of the Foxglove WebSocket protocol: advertised channels, JSON subscriptions, binary
    message frames (opcode 1, subscription id, receive time, CDR payload)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.channels: dict[int, dict] = {}
        self.by_topic: dict[str, dict] = {}
        self.messages: dict[str, list[bytes]] = {}
        self.subscriptions: dict[int, str] = {}
        self.server_info: dict = {}

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return
            if isinstance(frame, str):
                self._control(json.loads(frame))
            elif frame[0] == 1:
                subscription, _receive_ns = struct.unpack_from("<IQ", frame, 1)
                self.messages.setdefault(self.subscriptions[subscription], []).append(frame[13:])

    def _control(self, message: dict) -> None:
        if message["op"] == "serverInfo":
            self.server_info = message
        elif message["op"] == "advertise":
            for channel in message["channels"]:
                self.channels[channel["id"]] = channel
                self.by_topic[channel["topic"]] = channel

    def subscribe(self, topics: list[str]) -> None:
        subs = []
        for topic in topics:
            sid = len(self.subscriptions) + 1
            self.subscriptions[sid] = topic
            subs.append({"id": sid, "channelId": self.by_topic[topic]["id"]})
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))



@functools.lru_cache(maxsize=None)
def typestore(name: str, schema: str):
    """rosbags' types from a channel's own schema text: nothing of rclpy."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(schema, name))
    return store


def decode(channel: dict, payload: bytes):
    """The payload read with rosbags from the channel's schema."""
    return typestore(channel["schemaName"], channel["schema"]).deserialize_cdr(payload, channel["schemaName"])


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at `port` (/proc/net/tcp; IPv6 ones from tcp6 as '::')."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add("::" if v6 else socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def test_a_websocket_client_subscribes_to_the_live_view_and_decodes_its_messages(live):
    probe, _, port = live
    assert listening_addresses(port) == {"127.0.0.1"}, "the live view listens on this machine only by default"
    wanted = ["/diffuseloco/status", "/joint_states", "/odom", "/tf", "/cyberdog/motor_cmd", "/diagnostics",
              "/robot_description", "/tf_static"]
    with connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], open_timeout=10, max_size=None) as ws:
        client = FoxgloveClient(ws)
        deadline = time.monotonic() + 15.0
        while not set(wanted) <= set(client.by_topic) and time.monotonic() < deadline:
            client.pump(0.5)
        assert set(wanted) <= set(client.by_topic), sorted(client.by_topic)
        assert client.server_info.get("capabilities", []) == [], "a read-only server: nothing can be published"
        for topic in wanted:
            channel = client.by_topic[topic]
            assert (channel["encoding"], channel["schemaEncoding"]) == ("cdr", "ros2msg"), channel
        client.subscribe(wanted)
        client.pump(3.0)
        assert set(wanted) <= set(client.messages), sorted(client.messages)
        status = decode(client.by_topic["/diffuseloco/status"], client.messages["/diffuseloco/status"][-1])
        assert status.state_name in {s for s in ("PASSIVE", "STANDING_UP", "RUNNING", "GETTING_DOWN", "DAMPING",
                                                 "ESTOP")} and status.ticks > 0
        statuses = [decode(client.by_topic["/diffuseloco/status"], m) for m in client.messages["/diffuseloco/status"]]
        assert near_rate(stamped_rate([stamp_s(m.header) for m in statuses])), len(statuses)   # every tick's
        joints = decode(client.by_topic["/joint_states"], client.messages["/joint_states"][-1])
        assert list(joints.name) == list(CONFIG.robot.joint_names) and len(joints.position) == 12
        odom = decode(client.by_topic["/odom"], client.messages["/odom"][-1])
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        command = decode(client.by_topic["/cyberdog/motor_cmd"], client.messages["/cyberdog/motor_cmd"][-1])
        assert len(command.q_des) == 12 and np.all(np.isfinite(command.q_des))
        diag = decode(client.by_topic["/diagnostics"], client.messages["/diagnostics"][-1])
        assert any(s.name == "diffuseloco_policy" for s in diag.status)
        # published once, long before this client came: sent again to it on subscribing
        description = decode(client.by_topic["/robot_description"], client.messages["/robot_description"][0])
        assert description.data == urdf(CONFIG.robot)
        static = decode(client.by_topic["/tf_static"], client.messages["/tf_static"][0])
        assert len(static.transforms) == 5
