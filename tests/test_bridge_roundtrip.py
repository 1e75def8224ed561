"""The LCM bridge node end to end against the robot-playing LCM peer, plus its ROS message conversions.

No LCM packet may leave this host. The round trip therefore runs in a private network namespace with only a
loopback interface (`unshare -n`, lo up, multicast on, 224.0.0.0/4 routed to lo; CI runs as root), and every
URL uses ttl=0 on top. ROS 2 discovery is per network namespace, so the checker that plays the policy node
runs INSIDE the namespace together with the peer and the bridge: this test starts
tests/support/bridge_roundtrip_check.py there and reads its JSON summary. Where unshare is not permitted, the
test falls back to the in-process memq:// LCM provider (peer, bridge node and checker in one process; ROS still
on loopback) and says so in its output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cyberdog_msgs.msg import MotorCommand

from diffuseloco_policy.bridge import lcm_bridge as lb
from diffuseloco_policy.nodes.conversions import imu_msg, seconds_to_stamp
from diffuseloco_policy.nodes.lcm_bridge_node import command_from_ros, leg_state_from_data
from diffuseloco_policy.motor_sdk import ImuReading

CHECKER = Path(__file__).resolve().parent / "support" / "bridge_roundtrip_check.py"
NAMESPACE_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def namespace_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "sh", "-c", NAMESPACE_SETUP], capture_output=True, timeout=10)
    return probe.returncode == 0


def test_default_lcm_urls_never_leave_the_host():
    for url in (lb.DEFAULT_LCM_URL, lb.DEFAULT_ESTIMATOR_LCM_URL):
        assert url.startswith("udpm://239.255.76.67:") and url.endswith("?ttl=0")
    assert ":7669" in lb.DEFAULT_ESTIMATOR_LCM_URL


def test_leg_state_carries_every_field():
    j = np.arange(12, dtype=np.float64)
    data = lb.LegData(j, j + 1, j + 2, j + 3, j + 4, j + 5, j + 6, np.array([1, 0, 0, 0]), np.array([0, 1, 0, 0]),
                      np.array([0, 0, 1, 0]))
    msg = leg_state_from_data(data, seconds_to_stamp(12.5), "base")
    assert msg.header.frame_id == "base" and msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 500_000_000
    for offset, name in enumerate(("q", "qd", "tau_est", "p", "v", "force_est", "force_desired")):
        np.testing.assert_array_equal(getattr(msg, name), j + offset)
    assert list(msg.q_abad_limit) == [1, 0, 0, 0] and list(msg.q_hip_limit) == [0, 1, 0, 0]
    assert list(msg.q_knee_limit) == [0, 0, 1, 0]


def test_imu_message_reorders_the_quaternion_by_name():
    reading = ImuReading(np.array([0.9, 0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    msg = imu_msg(reading, seconds_to_stamp(1.0), "imu_link")
    o = msg.orientation
    assert (o.w, o.x, o.y, o.z) == (0.9, 0.1, 0.2, 0.3) and msg.header.frame_id == "imu_link"
    assert (msg.angular_velocity.x, msg.angular_velocity.z) == (1.0, 3.0)
    assert (msg.linear_acceleration.x, msg.linear_acceleration.z) == (4.0, 6.0)


def test_malformed_ros_commands_are_refused_before_the_relay():
    msg = MotorCommand()
    msg.kp_des = np.full(12, 20.0, np.float32)
    assert lb.command_problem(command_from_ros(msg)) is None
    msg.q_des = np.zeros(11, np.float32)     # rclpy accepts it in-process (DDS would pad it to 12)
    assert "shape" in lb.command_problem(command_from_ros(msg))
    msg.q_des = np.zeros(12, np.float32)
    msg.tau_des[3] = np.nan
    assert "non-finite" in lb.command_problem(command_from_ros(msg))


def test_round_trip_against_the_robot_peer():
    """MotorCommand on ROS -> motor_ctrl on LCM at the peer (activation first: ~2.5 s of zero frames, as the
    firmware's bit 1 wait needs; ~500 Hz re-send; the firmware's band clamps counted on /diagnostics; after hold_s
    the stall posture, then silence; NaN commands dropped), LegState / Imu / MotorControlState back on ROS, and the simulated robot stands up to the
    commanded pose (which checks the sign flips end to end). Then the faults through the real topics: the 600 ms
    gap after the bridge went silent (err_flag bits 0 and 1, ctrl_topic_interval in ms), an over-temperature
    warning on /diagnostics, and a motor error flag in spi_data, after which the bridge sends damping frames and
    reports the decoded reason."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if namespace_available():
        mode = "ns"
        cmd = ["unshare", "-n", "sh", "-c", f"{NAMESPACE_SETUP} && exec {sys.executable} {CHECKER} ns"]
    else:
        mode = "memq"
        print("unshare -n is not permitted here: LCM round trip over the in-process memq:// provider instead")
        cmd = [sys.executable, str(CHECKER), "memq"]
    # own process group: on a timeout the checker's children (peer, bridge node) are ended with it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the round trip did not finish in 240 s:\n{(stdout + stderr)[-6000:]}")
    output = stdout + stderr
    assert proc.returncode == 0, output[-6000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))
    assert summary["mode"] == mode
    assert summary["zero_frames"] >= 1 and summary["frames"] > summary["zero_frames"]
    # re-sent for hold_s, then the stall posture (stand, a 0.2 s hold, lie down), then silence
    assert abs(summary["hold_after_stop_s"] - (0.1 + 2.7)) < 0.3 and summary["max_joint_error_rad"] < 0.25
    assert summary["peer"]["activations"] == 1 and summary["peer"]["decode_errors"] == 0
    assert summary["activation_s"] > 2.3 and summary["interval_after_stop_ms"] > 500.0
    assert "FL_hip" in summary["fault"] and "bus over voltage" in summary["fault"]
    assert "dropped a motor command (q_des has non-finite values)" in output
    assert "motor error flag, damping as the SDK stops" in output
