"""Fault-injection suite: bad input through real topics (and bad model files) against the running nodes.

For every case: the defined safe reaction happens, the reason is reported, no published command is ever outside
the limits, and no node crashes. The test process plays the robot (joint state and IMU at 200 Hz), the joystick
and the operator. docs/fault_injection.md lists the cases and reactions; `test_the_suite_detects_a_disabled_safety_layer`
proves the checks can fail.
Cases that start their own policy node (bad model files, slow inference, the broken-safety control case) live in
test_fault_injection_models.py, so that no two policy nodes ever share the topics.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rclpy
import yaml
from sensor_msgs.msg import Joy

from cyberdog_msgs.msg import LegState, MotorCommand
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from geometry_msgs.msg import TwistStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from ros_probe import Probe, running_teleop
from test_ros_graph import assert_safe, write_params
from tiny_model import export_standing_model

CONFIG = load_config()
STAND_SDK = JointConvention(CONFIG.robot).to_sdk(np.asarray(CONFIG.robot.default_pose))
R = SetControllerState.Request
S = PolicyStatus


class FakeRobot:
    """Publishes joint state and IMU from a thread; tests change what (and how) it publishes on the fly."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.period = 0.005
        self.stamp_offset = 0.0        # added to the node clock in the message stamps
        self.frozen_stamp = None       # if set: every message carries this stamp (a stuck source)
        self.q, self.qd = STAND_SDK.copy(), np.zeros(12)
        self.quaternion, self.gyro = np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(3)
        self.acceleration = np.array([0.0, 0.0, 9.81])
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def healthy(self) -> None:
        self.period, self.stamp_offset, self.frozen_stamp = 0.005, self.stamp_offset, None
        self.q, self.qd = STAND_SDK.copy(), np.zeros(12)
        self.quaternion, self.gyro = np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(3)
        self.acceleration = np.array([0.0, 0.0, 9.81])
        self.running.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.running.is_set():
                self.publish()
            time.sleep(self.period)

    def publish(self, stamp_shift: float = 0.0) -> None:
        node = self.probe.node
        now = node.get_clock().now().nanoseconds * 1e-9
        t = self.frozen_stamp if self.frozen_stamp is not None else now + self.stamp_offset + stamp_shift
        sec = int(t)
        leg = LegState()
        leg.header.stamp.sec, leg.header.stamp.nanosec = sec, int((t - sec) * 1e9)
        leg.q, leg.qd = self.q.astype(np.float32), self.qd.astype(np.float32)
        self.probe.leg_pub.publish(leg)
        imu = self.probe_imu(leg.header.stamp)
        self.probe.imu_pub.publish(imu)

    def probe_imu(self, stamp):
        from sensor_msgs.msg import Imu

        imu = Imu()
        imu.header.stamp = stamp
        imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = (float(v) for v in self.quaternion)
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in self.gyro)
        a = imu.linear_acceleration
        a.x, a.y, a.z = (float(v) for v in self.acceleration)
        return imu

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_standing_model(tmp_path_factory.mktemp("model") / "policy.onnx")


@pytest.fixture(scope="module")
def policy_node(model, tmp_path_factory):
    params = write_params(tmp_path_factory.mktemp("params"), model)
    graph = Graph([NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params)
    graph.start()
    probe = Probe()
    robot = FakeRobot(probe)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "the policy node's status")
        yield graph, probe, robot
    finally:
        robot.close()
        probe.close()
        graph.stop()


def stand_up(probe: Probe, robot: FakeRobot) -> None:
    """Healthy sensors, controller STANDING_UP (from whatever state the previous case left). A precondition, not
    the case under test: if the fake robot in this process stalls past the 50 ms sensor timeout right after the
    request (seen under the full suite on a 2-core VM), the node rightly damps, and the stand-up is asked again
    (3 tries, each failure's fault in the message)."""
    robot.healthy()
    faults = []
    for _ in range(3):
        if probe.latest_status().state == S.STATE_ESTOP:
            probe.request_until_accepted(R.REQUEST_CLEAR_ESTOP, 5.0, "CLEAR_ESTOP")
        probe.request_until_accepted(R.REQUEST_STAND_UP, 15.0, "STAND_UP accepted")
        try:
            probe.wait_for(lambda: probe.latest_status().state == S.STATE_STANDING_UP, 1.0, "STANDING_UP")
            return
        except AssertionError:
            faults.append(probe.latest_status().last_fault)
    raise AssertionError(f"no STANDING_UP after 3 stand-up requests; faults: {faults}")


def inject(robot: FakeRobot, case: str) -> None:
    if case == "nan_joint_position":
        robot.q = STAND_SDK.copy()
        robot.q[4] = np.nan
    elif case == "inf_joint_velocity":
        robot.qd = np.zeros(12)
        robot.qd[7] = np.inf
    elif case == "inf_imu_gyro":
        robot.gyro = np.array([0.0, np.inf, 0.0])
    elif case == "nan_imu_quaternion":
        robot.quaternion = np.array([np.nan, 0.0, 0.0, 0.0])
    elif case == "non_unit_quaternion":
        robot.quaternion = np.array([1.2, 0.0, 0.0, 0.0])
    elif case == "attitude_beyond_limit":
        robot.quaternion = np.array([np.cos(0.7), np.sin(0.7), 0.0, 0.0])  # roll 1.4 rad
    elif case == "joint_velocity_beyond_limit":
        robot.qd = np.full(12, 60.0)
    elif case == "lying_joint_velocity":          # finite, under the 38 rad/s bound, and nothing moves
        robot.qd = np.full(12, 30.0)
    elif case == "gyro_beyond_its_range":
        robot.gyro = np.array([0.0, 0.0, 1000.0])
    elif case == "gyro_1e30":
        robot.gyro = np.array([1e30, 0.0, 0.0])
    elif case == "lying_gyro":                    # within the gyro's range, but the attitude does not turn
        robot.gyro = np.array([0.0, 0.0, 5.0])
    elif case == "nan_accelerometer":
        robot.acceleration = np.array([np.nan, 0.0, 9.81])
    elif case == "sensors_silent":
        robot.running.clear()
    elif case == "stuck_source_repeats_stamp":
        robot.frozen_stamp = robot.probe.node.get_clock().now().nanoseconds * 1e-9
    else:
        raise ValueError(case)


# case -> words the reported reason must contain
DAMPING_CASES = {
    "nan_joint_position": "nan or inf",
    "inf_joint_velocity": "nan or inf",
    "inf_imu_gyro": "nan or inf",
    "nan_imu_quaternion": "nan or inf",
    "non_unit_quaternion": "norm",
    "attitude_beyond_limit": "attitude",
    "joint_velocity_beyond_limit": "joint velocity",
    "lying_joint_velocity": "joint velocity sensor of fr_abad implausible",
    "gyro_beyond_its_range": "imu gyro reads 1e+03 rad/s, beyond the sensor's range",
    "gyro_1e30": "imu gyro reads 1e+30 rad/s",
    "lying_gyro": "imu gyro implausible",
    "nan_accelerometer": "imu accelerometer values contain nan or inf",
    "sensors_silent": "joint state lost",           # after stale_damping_after (0.5 s), not the 50 ms freshness
    "stuck_source_repeats_stamp": "joint state lost",
}


@pytest.mark.parametrize("case", DAMPING_CASES)
def test_bad_sensor_data_leads_to_damping_with_the_reason(policy_node, case):
    _, probe, robot = policy_node
    stand_up(probe, robot)
    start = probe.now()
    inject(robot, case)
    probe.wait_for(lambda: probe.latest_status().state == S.STATE_DAMPING, 2.0, f"DAMPING on {case}")
    assert DAMPING_CASES[case] in probe.latest_status().last_fault.lower(), probe.latest_status().last_fault
    settled = probe.now() + 0.04            # a command already on its way when DAMPING was seen may still hold
    probe.wait_for(lambda: len(probe.commands_since(settled)) >= 3, 1.0, "commands after DAMPING")
    damped = probe.commands_since(settled)
    assert all(np.all(np.asarray(c.kp_des) == 0) for _, c in damped)
    assert_safe(probe.commands_since(start - 1.0))


def test_out_of_order_messages_are_dropped_without_stopping(policy_node):
    graph, probe, robot = policy_node
    stand_up(probe, robot)
    start = probe.now()
    for _ in range(50):                       # 50 late messages interleaved with the healthy stream
        robot.publish(stamp_shift=-0.5)
        time.sleep(0.004)
    time.sleep(0.2)
    assert probe.latest_status().state == S.STATE_STANDING_UP, probe.latest_status().last_fault
    assert graph.processes[0][1].poll() is None
    assert_safe(probe.commands_since(start - 1.0))


def test_a_message_burst_at_ten_times_the_rate_is_absorbed(policy_node):
    graph, probe, robot = policy_node
    stand_up(probe, robot)
    start = probe.now()
    robot.period = 0.0005                     # 2 kHz instead of 200 Hz, for a second
    time.sleep(1.0)
    robot.period = 0.005
    window = probe.commands_since(start + 0.1)
    rate = (len(window) - 1) / (window[-1][0] - window[0][0])
    assert abs(rate - CONFIG.rates.control_hz) <= 0.1 * CONFIG.rates.control_hz, f"{rate:.1f} Hz"
    assert probe.latest_status().state == S.STATE_STANDING_UP, probe.latest_status().last_fault
    assert_safe(probe.commands_since(start - 1.0))


def test_a_restarted_sensor_source_damps_then_is_accepted_again(policy_node):
    _, probe, robot = policy_node
    stand_up(probe, robot)
    robot.running.clear()                     # the source dies ...
    probe.wait_for(lambda: probe.latest_status().state == S.STATE_DAMPING, 2.0, "DAMPING while silent")
    robot.stamp_offset -= 100.0               # ... and comes back with its clock started over
    robot.running.set()
    probe.request_until_accepted(R.REQUEST_STAND_UP, 5.0, "STAND_UP after the restart")
    robot.stamp_offset = 0.0


def run_policy(probe: Probe, robot: FakeRobot) -> None:
    """Stand up (stand_up), wait for the stand to complete, then RUN."""
    stand_up(probe, robot)
    probe.request_until_accepted(R.REQUEST_RUN, CONFIG.controller.stand_up_duration + 10.0, "RUN accepted")
    probe.wait_for(lambda: probe.latest_status().state == S.STATE_RUNNING, 1.0, "RUNNING")


def states_since(probe: Probe, t: float) -> set[str]:
    with probe.lock:
        return {m.state_name for tr, m in probe.statuses if tr >= t}


def test_a_short_sensor_stall_is_ridden_through(policy_node):
    """The sensor source stalls for 80 ms (past the 50 ms freshness, within stale_stand_after): the running
    robot keeps its gains and its plan; it used to damp, and a damped trotting dog lies on the floor."""
    _, probe, robot = policy_node
    run_policy(probe, robot)
    start = probe.now()
    robot.running.clear()
    time.sleep(0.08)
    robot.running.set()
    time.sleep(0.3)
    assert states_since(probe, start) == {"RUNNING"}, states_since(probe, start)
    assert all(np.all(np.asarray(c.kp_des) > 0) for _, c in probe.commands_since(start))
    assert_safe(probe.commands_since(start - 1.0))


def test_a_longer_sensor_stall_stands_the_robot_and_run_resumes(policy_node):
    """A 300 ms stall: a controlled stand (STANDING_UP from the last targets, stand gains), not DAMPING; RUN is
    accepted again once the sensors are fresh."""
    _, probe, robot = policy_node
    run_policy(probe, robot)
    start = probe.now()
    robot.running.clear()
    time.sleep(0.3)
    robot.running.set()
    probe.wait_for(lambda: "STANDING_UP" in states_since(probe, start), 1.0, "a controlled stand")
    assert "DAMPING" not in states_since(probe, start)
    assert "joint state stale" in probe.latest_status().last_fault and "standing" in probe.latest_status().last_fault
    probe.request_until_accepted(R.REQUEST_RUN, CONFIG.controller.stale_stand_duration + 5.0, "RUN after the stall")
    assert_safe(probe.commands_since(start - 1.0))


def test_a_stalled_policy_process_is_reported_as_its_own_stall(policy_node):
    """The policy process itself stops for 300 ms (SIGSTOP): on waking it stands the robot and says that it was
    its own stall, not the sensors'; no DAMPING."""
    graph, probe, robot = policy_node
    run_policy(probe, robot)
    pid = graph.processes[0][1].pid
    start = probe.now()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.3)
    finally:
        os.kill(pid, signal.SIGCONT)
    probe.wait_for(lambda: "STANDING_UP" in states_since(probe, start), 2.0, "a controlled stand after the stall")
    assert "DAMPING" not in states_since(probe, start)
    assert "policy process stalled" in probe.latest_status().last_fault, probe.latest_status().last_fault
    assert_safe(probe.commands_since(start - 1.0))


def test_a_joint_array_one_short_is_caught(policy_node):
    """rclpy pads a too-short fixed-size array with zeros instead of refusing it: an 11-entry q arrives with the
    RL knee at 0 rad, far outside its range, and the monitor must treat that as a sensor/message error."""
    _, probe, robot = policy_node
    stand_up(probe, robot)
    start = probe.now()
    robot.q = STAND_SDK[:11].copy()
    probe.wait_for(lambda: probe.latest_status().state == S.STATE_DAMPING, 1.0, "DAMPING on a short array")
    assert "rl_knee beyond its limit" in probe.latest_status().last_fault.lower(), probe.latest_status().last_fault
    assert_safe(probe.commands_since(start - 1.0))


def test_invalid_skills_and_out_of_range_velocities_are_refused_or_clamped(policy_node):
    _, probe, robot = policy_node
    trot = CONFIG.skill("trot")
    probe.publish_skill(trot.id, vx=50.0, vy=-9.0, yaw_rate=float("nan"))   # non-finite: refused entirely
    probe.publish_skill(trot.id, vx=50.0, vy=-9.0, yaw_rate=3.0)
    probe.wait_for(lambda: probe.latest_status().active_skill == trot.id, 2.0, "trot active")
    expected = trot.clamp_command(50.0, -9.0, 3.0)   # each axis to its range, then the strafe+turn budget
    assert expected[0] == trot.vx[1] and expected[1] < 0 < expected[2]
    np.testing.assert_allclose(probe.latest_status().command, expected, atol=1e-6)
    probe.publish_skill(200, vx=0.1)
    time.sleep(0.3)
    assert probe.latest_status().active_skill == trot.id
    probe.publish_skill(CONFIG.skill("stand").id)


def diagnostics(probe: Probe) -> list:
    """The policy node's DiagnosticStatus messages from now on (the probe subscribes once per call)."""
    seen: list = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: seen.extend(
        s for s in msg.status if s.name == "diffuseloco_policy"), 10)
    return seen


def value(status, key: str) -> str:
    return next(kv.value for kv in status.values if kv.key == key)


def test_a_silent_command_source_is_zeroed_then_stood(policy_node):
    """The source sends one trot command and falls silent: zero velocity after 0.5 s (skill kept), stand after 2 s,
    reported in PolicyStatus (the command in effect) and /diagnostics (WARN, with the reason)."""
    _, probe, robot = policy_node
    stand_up(probe, robot)                        # healthy: the watchdog is what /diagnostics reports
    seen = diagnostics(probe)
    trot, stand, w = CONFIG.skill("trot"), CONFIG.skill("stand"), CONFIG.watchdog
    probe.publish_skill(trot.id, vx=0.5)
    probe.wait_for(lambda: probe.latest_status().active_skill == trot.id and probe.latest_status().command[0] == 0.5,
                   2.0, "the trot command in effect")
    moving = probe.now()
    probe.wait_for(lambda: not np.any(probe.latest_status().command), 2 * w.command_zero_after_s + 1.0,
                   "zero velocity")
    assert probe.latest_status().active_skill == trot.id
    zeroed = probe.now()
    probe.wait_for(lambda: probe.latest_status().active_skill == stand.id, w.command_stand_after_s + 1.0, "stand")
    assert zeroed - moving < w.command_zero_after_s + 0.5
    probe.wait_for(lambda: any("skill stand" in value(s, "command_watchdog") for s in seen), 3.0,
                   "the watchdog in /diagnostics")
    status = next(s for s in reversed(seen) if "skill stand" in value(s, "command_watchdog"))
    assert status.level >= DiagnosticStatus.WARN and "no skill command for" in status.message.lower(), status


def test_a_best_effort_command_publisher_reaches_the_node(policy_node):
    """A skill command from a BEST_EFFORT publisher is delivered (the subscription is best-effort compatible)."""
    _, probe, robot = policy_node
    publisher = probe.node.create_publisher(SkillCommand, "/diffuseloco/skill_cmd",
                                            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    pace = CONFIG.skill("pace")
    try:
        def delivered() -> bool:
            publisher.publish(SkillCommand(skill=pace.id, vx=0.1, source="best-effort test"))
            return probe.latest_status().active_skill == pace.id
        probe.wait_for(delivered, 5.0, "a best-effort skill command delivered")
    finally:
        probe.node.destroy_publisher(publisher)
        probe.publish_skill(CONFIG.skill("stand").id)


def test_a_body_velocity_the_velocity_loop_cannot_use_is_reported(policy_node):
    """vBody NaN: no model input here, so no fault, but the velocity loop ignores it with a warning and
    /diagnostics names why."""
    _, probe, robot = policy_node
    seen = diagnostics(probe)
    publisher = probe.node.create_publisher(TwistStamped, "/cyberdog/body_velocity", qos_profile_sensor_data)
    stand_up(probe, robot)
    try:
        def reported() -> bool:
            msg = TwistStamped()
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            msg.twist.linear.x = float("nan")
            publisher.publish(msg)
            return any("body velocity contain nan or inf" in value(s, "body_velocity").lower() for s in seen)
        probe.wait_for(reported, 5.0, "the bad vBody in /diagnostics")
        assert probe.latest_status().state == S.STATE_STANDING_UP, probe.latest_status().last_fault
    finally:
        probe.node.destroy_publisher(publisher)


def test_stamps_that_are_no_time_are_dropped_and_a_forward_jump_keeps_the_stream(policy_node):
    """nanosec >= 1e9 is dropped and counted; single stamps 10 s ahead neither stop the stream nor damp."""
    _, probe, robot = policy_node
    seen = diagnostics(probe)
    stand_up(probe, robot)
    leg = LegState()
    leg.header.stamp.sec, leg.header.stamp.nanosec = 1, 1_500_000_000
    leg.q = STAND_SDK.astype(np.float32)
    for _ in range(5):
        probe.leg_pub.publish(leg)
        robot.publish(stamp_shift=10.0)
        time.sleep(0.2)
    assert probe.latest_status().state == S.STATE_STANDING_UP, probe.latest_status().last_fault
    probe.wait_for(lambda: any(int(value(s, "joint_state_invalid_stamp")) >= 5 for s in seen), 3.0,
                   "invalid stamps counted in /diagnostics")
    assert int(value(seen[-1], "joint_state_forward_jumps")) >= 5


def test_a_qos_mismatch_is_an_error_in_the_diagnostics(policy_node):
    """A transient-local subscriber of the motor commands can never receive our volatile ones: an ERROR with the
    topic and the policy, not only a warning at discovery."""
    _, probe, robot = policy_node
    seen = diagnostics(probe)
    subscription = probe.node.create_subscription(MotorCommand, "/cyberdog/motor_cmd", lambda msg: None, QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        probe.wait_for(lambda: any("/cyberdog/motor_cmd" in value(s, "qos") for s in seen), 5.0,
                       "the QoS mismatch in /diagnostics")
    finally:
        probe.node.destroy_subscription(subscription)
    status = next(s for s in reversed(seen) if "/cyberdog/motor_cmd" in value(s, "qos"))
    assert "DURABILITY" in value(status, "qos")
    assert status.level == DiagnosticStatus.ERROR or probe.latest_status().state in (S.STATE_DAMPING, S.STATE_ESTOP)


def test_a_second_sensor_publisher_is_ignored_and_reported(policy_node):
    """Another node publishes joint states stamped 5 ms ahead of the real ones, with NaN positions: accepted, they
    would replace the stream (the gate keeps the newest stamp) and damp the robot. They are dropped, counted and
    named in /diagnostics; the robot goes on with its own sensors."""
    _, probe, robot = policy_node
    stand_up(probe, robot)
    seen = diagnostics(probe)
    intruder = rclpy.create_node("intruder", context=probe.context)   # a second node beside the probe's
    publisher = intruder.create_publisher(LegState, "/cyberdog/leg_state", qos_profile_sensor_data)
    start = probe.now()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            t = intruder.get_clock().now().nanoseconds * 1e-9 + 0.005
            msg = LegState()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t - int(t)) * 1e9)
            msg.q = np.full(12, np.nan, dtype=np.float32)
            publisher.publish(msg)
            time.sleep(0.005)
        probe.wait_for(lambda: any("foreign publisher" in value(s, "foreign_publishers") for s in seen), 3.0,
                       "the foreign publisher in /diagnostics")
    finally:
        intruder.destroy_node()
    assert "DAMPING" not in states_since(probe, start), probe.latest_status().last_fault
    status = next(s for s in reversed(seen) if "foreign publisher" in value(s, "foreign_publishers"))
    assert "/intruder" in value(status, "foreign_publishers") and status.level == DiagnosticStatus.ERROR
    assert_safe(probe.commands_since(start - 1.0))


def test_only_the_stacks_teleops_may_stand_up_run_or_clear_an_estop(policy_node):
    """A caller that is none of the configured teleops (control_sources; here an anonymous `ros2 service call`)
    may stop the robot but never clear its e-stop or stand it up; the named teleop still may."""
    _, probe, robot = policy_node
    stand_up(probe, robot)
    anonymous = Probe("anonymous_caller", source="")
    try:
        assert anonymous.request(R.REQUEST_ESTOP).accepted                 # stopping is everyone's right
        for request in (R.REQUEST_CLEAR_ESTOP, R.REQUEST_STAND_UP, R.REQUEST_RUN):
            answer = anonymous.request(request)
            assert not answer.accepted and "an anonymous caller" in answer.message, answer.message
            assert answer.state == S.STATE_ESTOP
        impostor = anonymous.node.create_client(SetControllerState, "/diffuseloco/set_state")
        assert impostor.wait_for_service(timeout_sec=5.0)
        future = impostor.call_async(SetControllerState.Request(request=R.REQUEST_CLEAR_ESTOP, source="hacker"))
        anonymous.wait_for(future.done, 5.0, "an answer")
        assert not future.result().accepted and "hacker" in future.result().message
    finally:
        anonymous.close()
    assert probe.request(R.REQUEST_CLEAR_ESTOP).accepted                  # the script teleop may


def test_estop_latches_from_any_state(policy_node):
    _, probe, robot = policy_node
    stand_up(probe, robot)
    assert probe.request(R.REQUEST_ESTOP).state == S.STATE_ESTOP
    for request in (R.REQUEST_STAND_UP, R.REQUEST_RUN, R.REQUEST_DAMPING):
        assert not probe.request(request).accepted
    time.sleep(0.1)
    assert all(np.all(np.asarray(c.kp_des) == 0) for _, c in probe.commands_since(probe.now() - 0.06))
    assert probe.request(R.REQUEST_CLEAR_ESTOP).accepted


# -------------------------------------------------------------------------------------------- teleop
@pytest.fixture(scope="module")
def teleop_node(tmp_path_factory):
    params = write_params(tmp_path_factory.mktemp("params_joy"), Path("unused.onnx"))
    with running_teleop(params, "joy_probe") as probe:
        yield probe


def publish_joy_until(probe, axes: list, buttons: list, reached: Callable, what: str, timeout: float = 5.0):
    """Streams one joystick state at 50 Hz until the teleop node's newest SkillCommand satisfies `reached`.

    Waiting on the node's answer instead of a fixed number of messages keeps a slow start (discovery, a
    loaded CI machine) from turning into a lost button press."""
    deadline = time.monotonic() + timeout
    after = probe.now()
    while time.monotonic() < deadline:
        probe.joy_pub.publish(Joy(axes=axes, buttons=buttons))
        time.sleep(0.02)
        fresh = [m for t, m in probe.skill_commands if t > after]
        if fresh and reached(fresh[-1]):
            return fresh[-1]
    newest = probe.skill_commands[-1][1] if probe.skill_commands else None
    raise AssertionError(f"{what}: not reached in {timeout} s; newest SkillCommand {newest}")


def test_joystick_loss_zeroes_the_velocity_command(teleop_node):
    probe = teleop_node
    mapping = yaml.safe_load((params_file("sim").parent / "teleop_gamepad.yaml").read_text())
    trot_button = next(a["buttons"] for a in mapping["actions"] if a.get("skill") == "trot")
    axes, held = [0.0] * 6, [0] * 15
    for b in mapping["deadman_buttons"]:
        held[b] = 1
    pressed = list(held)
    for b in trot_button:
        pressed[b] = 1
    trot = CONFIG.skill("trot")
    publish_joy_until(probe, axes, held, lambda m: True, "the dead-man held")
    publish_joy_until(probe, axes, pressed, lambda m: m.skill == trot.id, "trot selected by its button")
    axes[mapping["vx"]["index"]] = 1.0                  # release the button, then full forward
    moving = publish_joy_until(probe, axes, held, lambda m: m.vx >= 0.9 * trot.vx[1] > 0,
                               "full stick = top of the trot range")
    assert moving.skill == trot.id, moving
    lost = time.time()                                  # the node stamps its commands with the system clock
    time.sleep(mapping["timeout"] + 1.0)
    stamped = [(stamp_s(m), m) for _, m in list(probe.skill_commands)]
    after = [(t, m) for t, m in stamped if t > lost]
    zeroed = [t for t, m in after if m.vx == 0.0 and m.vy == 0.0 and m.yaw_rate == 0.0]
    assert zeroed, f"the velocity never went to zero after the joystick fell silent: {after[-3:]}"
    # Judged on the node's own stamps: a loaded machine can delay a queued Joy or the probe's delivery, which
    # shifts when the node's timeout starts, but a command must never move again once it has been zeroed.
    assert all(m.skill == trot.id and (m.vx, m.vy, m.yaw_rate) == (0.0, 0.0, 0.0)
               for t, m in after if t >= zeroed[0]), "a velocity came back without the joystick"
    assert zeroed[0] - lost < mapping["timeout"] + 0.5, f"zeroed {zeroed[0] - lost:.2f} s after the last Joy"


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


