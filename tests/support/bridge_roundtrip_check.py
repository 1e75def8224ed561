"""The LCM bridge end to end against the robot-playing LCM peer; run by tests/test_bridge_roundtrip.py.

    python bridge_roundtrip_check.py ns     # inside a private network namespace (unshare -n, lo only):
                                            #   peer and bridge node as processes, LCM over udpm ttl=0 on lo
    python bridge_roundtrip_check.py memq   # fallback without namespaces: peer, bridge node and checker in
                                            #   THIS process, LCM over the in-process memq:// provider

This process plays the policy (publishes MotorCommand on ROS), watches LegState / Imu / MotorControlState on
ROS, and listens to `motor_ctrl` on LCM itself (what the robot receives). Each check that fails raises; the
last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from cyberdog_msgs.msg import LegState, MotorCommand, MotorControlState
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState

from diffuseloco_policy.bridge import lcm_bridge as lb
from diffuseloco_policy.bridge.lcm_types import motor_ctrl_lcmt
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.nodes.lcm_bridge_node import COMMAND_QOS
from diffuseloco_policy.nodes.spin import BackgroundNode

CONFIG = load_config()
CONVENTION = JointConvention(CONFIG.robot)
UDPM = "udpm://239.255.76.67:7667?ttl=0"
UDPM_ESTIMATOR = "udpm://239.255.76.67:7669?ttl=0"
MEMQ = "memq://"
HOLD_S = 0.1
STALL_HOLD_S = 0.2   # the bridge's stall posture: stand 0.5 s, hold this, lie down 2 s, then silence
STALL_S = CONFIG.controller.stale_stand_duration + STALL_HOLD_S + 2.0
# faults the peer raises at these simulated times (after the command phase): a hot motor, then a motor error
HOT_JOINT, HOT_C, HOT_AT = 7, 82.0, 12.0
FAULT_JOINT, FAULT_FLAG, FAULT_AT = 4, 1 << 4, 14.0      # FL hip: bus over voltage


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def check_odometry(w: "Watcher") -> None:
    """/odom: the state estimator's pose (p, quat) and body-frame velocity (vBody, omegaBody) at 50 Hz of its
    500 Hz, odom -> base_link; the orientation and velocity those of the Imu and vBody published with it."""
    w.wait_for(lambda: len(w.odometry) > 50, 10.0, "1 s of /odom from the bridge")
    with w.lock:
        odometry, imus, velocities = list(w.odometry), list(w.imus), list(w.velocities)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in odometry]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    check(35.0 < rate < 65.0, f"/odom at 50 Hz, got {rate:.1f}")
    check(all((m.header.frame_id, m.child_frame_id) == ("odom", "base_link") for m in odometry), "odom frames")
    imu_at = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in imus}
    velocity_at = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in velocities}
    matched = 0
    for m in odometry[-20:]:
        key = (m.header.stamp.sec, m.header.stamp.nanosec)
        if key not in imu_at or key not in velocity_at:
            continue
        o, q = m.pose.pose.orientation, imu_at[key].orientation
        check(np.allclose([o.w, o.x, o.y, o.z], [q.w, q.x, q.y, q.z], atol=1e-6), "odom orientation = the IMU's")
        v, vb = m.twist.twist.linear, velocity_at[key].twist.linear
        check(np.allclose([v.x, v.y, v.z], [vb.x, vb.y, vb.z], atol=1e-6), "odom twist = vBody (m/s, body frame)")
        a, g = m.twist.twist.angular, imu_at[key].angular_velocity
        check(np.allclose([a.x, a.y, a.z], [g.x, g.y, g.z], atol=1e-6), "odom angular = omegaBody (rad/s)")
        matched += 1
    check(matched >= 5, f"odometry stamped like the Imu and vBody it came with ({matched} of 20)")
    check(0.0 < odometry[-1].pose.pose.position.z < 0.4, f"the lying robot's height {odometry[-1].pose.pose.position}")


def check_joint_states(w: "Watcher") -> None:
    """/joint_states: 50 Hz of leg_control_data by joint name, LegState's q, qd and tau_est at the same stamp."""
    w.wait_for(lambda: len(w.joint_states) > 50, 10.0, "1 s of /joint_states from the bridge")
    with w.lock:
        joints, legs = list(w.joint_states), list(w.legs)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in joints]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    check(35.0 < rate < 65.0, f"/joint_states at 50 Hz, got {rate:.1f}")
    check(list(joints[-1].name) == list(CONFIG.robot.joint_names), f"joint names {joints[-1].name}")
    leg_at = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in legs}
    matched = [(j, leg_at[(j.header.stamp.sec, j.header.stamp.nanosec)]) for j in joints[-20:]
               if (j.header.stamp.sec, j.header.stamp.nanosec) in leg_at]
    check(len(matched) >= 5, f"joint states stamped like their LegState ({len(matched)} of 20)")
    for joint_state, leg in matched:
        for ours, theirs in ((joint_state.position, leg.q), (joint_state.velocity, leg.qd),
                             (joint_state.effort, leg.tau_est)):
            check(np.allclose(ours, np.asarray(theirs, dtype=np.float64), atol=1e-6), "joint states = LegState")


class Watcher(BackgroundNode):
    """ROS side (probe node spinning in a thread) and LCM side (motor_ctrl listener)."""

    def __init__(self, lcm_url: str) -> None:
        super().__init__("bridge_check")
        self.lock = threading.Lock()
        self.legs: list[LegState] = []
        self.imus: list[Imu] = []
        self.velocities: list[TwistStamped] = []
        self.odometry: list[Odometry] = []
        self.joint_states: list[JointState] = []
        self.states: list[MotorControlState] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.frames: list[tuple[float, motor_ctrl_lcmt]] = []
        n = self.node
        n.create_subscription(LegState, "/cyberdog/leg_state", self._on_leg, qos_profile_sensor_data)
        n.create_subscription(Imu, "/cyberdog/imu", self._keep(self.imus), qos_profile_sensor_data)
        n.create_subscription(TwistStamped, "/cyberdog/body_velocity", self._keep(self.velocities),
                              qos_profile_sensor_data)
        n.create_subscription(MotorControlState, "/cyberdog/motor_ctrl_state", self._keep(self.states), 10)
        n.create_subscription(Odometry, "/odom", self._keep(self.odometry), 50)
        n.create_subscription(JointState, "/joint_states", self._keep(self.joint_states), 50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diagnostics), 10)
        self.cmd_pub = n.create_publisher(MotorCommand, "/cyberdog/motor_cmd", COMMAND_QOS)
        self.lcm = lb.LcmEndpoint(lcm_url, "check")
        self.lcm.subscribe(lb.MOTOR_CTRL, motor_ctrl_lcmt.decode, self._on_frame)
        self.lcm.start()

    def _keep(self, store: list):
        def callback(msg) -> None:
            with self.lock:
                store.append(msg)
                del store[:-2000]
        return callback

    def _on_leg(self, msg: LegState) -> None:
        with self.lock:
            self.legs.append(msg)
            del self.legs[:-2000]

    def _on_frame(self, msg: motor_ctrl_lcmt) -> None:
        with self.lock:
            self.frames.append((time.monotonic(), msg))

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            check(time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    def command(self, q_sdk: np.ndarray, kp: float, kd: float, bad: str = "") -> None:
        msg = MotorCommand()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.q_des = np.asarray(q_sdk, dtype=np.float32)
        msg.kp_des, msg.kd_des = np.full(12, kp, np.float32), np.full(12, kd, np.float32)
        if bad == "nan":
            msg.q_des[4] = np.nan
        self.cmd_pub.publish(msg)

    def close(self) -> None:
        self.lcm.stop()
        super().close()


def start_processes(env: dict) -> list[subprocess.Popen]:
    peer = subprocess.Popen([sys.executable, "-m", "diffuseloco_sim.lcm_robot_peer", "--lcm-url", UDPM,
                             "--estimator-url", UDPM_ESTIMATOR, "--report-s", "0.5", "--duration", "60",
                             "--temperature", f"{HOT_JOINT}:{HOT_C}@{HOT_AT}",
                             "--fault", f"{FAULT_JOINT}:{FAULT_FLAG}@{FAULT_AT}"],
                            env=env, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    bridge = subprocess.Popen([sys.executable, "-m", "diffuseloco_policy.nodes.lcm_bridge_node", "--ros-args",
                               "-p", f"lcm_url:={UDPM}", "-p", f"estimator_lcm_url:={UDPM_ESTIMATOR}",
                               "-p", f"hold_s:={HOLD_S}", "-p", f"stall_hold_s:={STALL_HOLD_S}"], env=env,
                              stdin=subprocess.DEVNULL)
    return [peer, bridge]


class InProcess:
    """memq fallback: the peer in a thread and the bridge node in an executor thread of this process."""

    def __init__(self) -> None:
        from diffuseloco_sim.lcm_robot_peer import LcmRobotPeer
        from diffuseloco_policy.nodes.lcm_bridge_node import LcmBridgeNode

        self.peer = LcmRobotPeer(MEMQ, MEMQ)
        self.peer.schedule(HOT_AT, "temperature", HOT_JOINT, HOT_C)
        self.peer.schedule(FAULT_AT, "flag", FAULT_JOINT, FAULT_FLAG)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter("lcm_url", value=MEMQ), Parameter("estimator_lcm_url", value=MEMQ),
                     Parameter("hold_s", value=HOLD_S), Parameter("stall_hold_s", value=STALL_HOLD_S)]
        self.bridge = LcmBridgeNode(context=self.context, parameter_overrides=overrides)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.bridge)
        threading.Thread(target=self._spin, daemon=True).start()
        self.peer_thread = threading.Thread(target=self.peer.run, kwargs={"duration": 60.0}, daemon=True)
        self.peer_thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001
                return

    def close(self) -> None:
        self.peer.stop()
        self.peer_thread.join(timeout=2.0)
        self.bridge.destroy_node()
        self.executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=self.context)


def main(mode: str) -> dict:
    check(mode in ("ns", "memq"), f"unknown mode {mode}")
    summary: dict = {"mode": mode}
    processes: list[subprocess.Popen] = []
    in_process = None
    if mode == "ns":
        processes = start_processes(dict(os.environ))
        check(processes[0].stdout.readline().strip() == "ready", "the robot peer did not start")
    else:
        in_process = InProcess()
    watcher = Watcher(UDPM if mode == "ns" else MEMQ)
    try:
        w = watcher
        # 1. the robot's state reaches ROS; no motor_ctrl_state yet: the firmware publishes it in motor mode only
        w.wait_for(lambda: len(w.legs) > 500 and len(w.imus) > 500 and len(w.velocities) > 500, 60.0,
                   "LegState, Imu and body velocity from the bridge (1 s of them: the limp robot has settled)")
        with w.lock:
            leg, imu, velocity = w.legs[-1], w.imus[-1], w.velocities[-1]
        check(leg.header.frame_id == "base" and imu.header.frame_id == "imu_link"
              and velocity.header.frame_id == "base", "frame ids")
        v = velocity.twist.linear
        check(np.isfinite([v.x, v.y, v.z]).all() and np.linalg.norm([v.x, v.y, v.z]) < 0.3,
              f"vBody of a robot lying still: {v}")
        check(all(leg.q[i] < -0.3 for i in (2, 5, 8, 11)), f"knees negative (SDK convention) on ROS: {list(leg.q)}")
        q = imu.orientation
        check(abs(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z - 1.0) < 1e-3 and q.w > 0.9, f"upright quaternion {q}")
        check(abs(imu.linear_acceleration.z - 9.81) < 3.0, f"gravity in aBody: {imu.linear_acceleration}")
        check(not w.frames, "no motor_ctrl before the first MotorCommand")
        check_odometry(w)
        check_joint_states(w)
        summary["leg_state_q_before"] = [round(float(v), 3) for v in leg.q]

        # 2. commands: activation with zero frames (~2.5 s, until the firmware clears bit 1), then the command,
        #    re-sent at ~500 Hz with q_des inside the firmware's band around the measured pose; bad ones dropped
        target_model = np.asarray(CONFIG.robot.default_pose)
        target_sdk = CONVENTION.to_sdk(target_model)
        t0 = time.monotonic()
        tick, active_since = 0, None
        while active_since is None or time.monotonic() - active_since < 3.0:   # 3 s after the activation
            check(time.monotonic() - t0 < 40.0, "motor mode activated within 40 s")
            bad = "nan" if tick in (30, 60) else ""   # wrong lengths cannot cross ROS: float32[12] is fixed
            w.command(target_sdk, kp=30.0, kd=1.0, bad=bad)
            tick += 1
            time.sleep(0.02)
            with w.lock:
                if active_since is None and any(s.err_flag & lb.ERR_GAP_DAMPING == 0 for s in w.states[-5:]):
                    active_since = time.monotonic()
        t_stop = time.monotonic()
        with w.lock:
            leg = w.legs[-1]   # the pose reached while commanded
            first_states = [int(s.err_flag) for s in w.states[:3]]
        # the peer's simulated time may run slower than the wall clock: wait for the firmware's verdict on the gap
        w.wait_for(lambda: w.states[-1].err_flag & 0x03 == 0x03, 30.0, "err_flag bits 0 and 1 after the gap")
        with w.lock:
            frames = list(w.frames)
            state = w.states[-1]
        check(len(frames) > 0, "motor_ctrl frames reached LCM")
        check(all(f & lb.ERR_GAP_DAMPING for f in first_states) and first_states,
              f"the firmware enters motor mode with err_flag bit 1 set: {first_states}")
        zero = [lb.is_zero_frame(m) for _, m in frames]
        first_real = zero.index(False) if False in zero else None
        check(zero[0] and first_real is not None and not any(zero[first_real:]),
              "all-zero activation frames first, then only the command")
        activation_s = frames[first_real][0] - frames[0][0]
        # the firmware waits 1250 frames (2.5 s simulated; the peer may run slower than real time on a busy machine)
        check(activation_s > 2.3, f"the activation took {activation_s:.2f} s (the firmware waits ~2.5 s)")
        commanded = [m for t, m in frames[first_real:] if t <= t_stop + HOLD_S]   # before the stall posture
        wire = np.array([m.q_des for m in commanded])
        check(np.all(np.isfinite(wire)), "no non-finite value was forwarded")
        # the wire carries the command as the policy node sent it (no qd_des here: nothing to move along); the
        # firmware pulls it into its band around the legs while they rise from the lying pose and reports that in
        # err_flag bits 2-4, which the bridge counts
        check(np.allclose(wire, target_model, atol=1e-5), "motor_ctrl carries the commanded q_des unchanged")
        def clamp_reports() -> int:
            with w.lock:
                values = [kv.value for array in w.diagnostics for st in array.status for kv in st.values
                          if kv.key == "firmware band clamps (reports)"]
            return max((int(v) for v in values), default=0)
        w.wait_for(lambda: clamp_reports() > 10, 5.0, "the bridge's count of the firmware's band clamps")
        summary["band_reports"] = clamp_reports()
        check(np.allclose([m.kp_des for m in commanded], 30.0), "gains forwarded")
        duration = frames[-1][0] - frames[0][0]
        rate = (len(frames) - 1) / duration if duration > 0 else 0.0
        check(rate > 250.0, f"re-sent at about 500 Hz, got {rate:.0f} Hz")
        last_frame = frames[-1][0]
        # silent commander: the command is re-sent for hold_s, the stall posture (stand gains) runs, then silence
        posture = [m for t, m in frames if t > t_stop + HOLD_S + 0.05]
        check(len(posture) > 100 and all(np.allclose(m.kp_des, CONFIG.controller.stand_kp) for m in posture),
              f"after the commands stopped the bridge stood the dog at the stand gains ({len(posture)} frames)")
        check(HOLD_S + STALL_S - 0.3 < last_frame - t_stop < HOLD_S + STALL_S + 0.3,
              f"sending stopped {last_frame - t_stop:.3f} s after the last command (hold, stall posture)")
        front = slice(0, 6)   # the front legs get there; the rear ones, lifting the body, stay short of it
        errors = np.abs(np.asarray(leg.q, dtype=np.float64) - target_sdk)
        before = np.abs(np.asarray(summary["leg_state_q_before"]) - target_sdk)
        knees = slice(2, 12, 3)
        check(float(np.max(errors[front])) < 0.25 and np.all(errors[knees] < before[knees]),
              f"the simulated robot followed the command: |q - target| {errors.round(2)} (before {before.round(2)})")
        # 3. a 600 ms gap: the firmware's reaction (bits 0 and 1, the gap in MILLISECONDS)
        check(state.err_flag & 0x03 == 0x03 and state.ctrl_topic_interval > 500.0,
              f"after the bridge went silent: err_flag {state.err_flag}, interval {state.ctrl_topic_interval} ms")
        summary.update(frames=len(frames), zero_frames=int(sum(zero)), rate_hz=round(rate), hold_after_stop_s=round(
            last_frame - t_stop, 3), max_joint_error_rad=round(float(np.max(errors[front])), 3),
            rear_joint_error_rad=[round(float(e), 3) for e in errors[6:]], activation_s=round(activation_s, 2),
            err_flag_after_stop=int(state.err_flag), interval_after_stop_ms=round(float(state.ctrl_topic_interval), 1),
            states_seen=sorted({int(s.err_flag) for s in w.states}))
        check(0 in summary["states_seen"], "the peer reported motor mode active (err_flag 0) at some point")

        # 4. an over-temperature warning and a motor error flag from spi_data, on /diagnostics and on the wire
        def status(level, words):
            with w.lock:
                arrays = list(w.diagnostics)
            for array in arrays:
                for st in array.status:
                    if st.name == "lcm_bridge: motors" and st.level == level and all(x in st.message for x in words):
                        return st
            return None
        w.wait_for(lambda: status(DiagnosticStatus.WARN, ["temperature", CONFIG.robot.joint_names[HOT_JOINT]]), 90.0,
                   "a WARN diagnostic for the hot motor")
        hot = status(DiagnosticStatus.WARN, ["temperature"])
        values = {kv.key: kv.value for kv in hot.values}
        check(values[f"{CONFIG.robot.joint_names[HOT_JOINT]} temperature C"] == f"{HOT_C:.1f}", f"temperature {values}")
        with w.lock:
            sent_before = len(w.frames)
        w.wait_for(lambda: status(DiagnosticStatus.ERROR, ["motor error flag", "bus over voltage"]), 60.0,
                   "an ERROR diagnostic naming the motor fault")
        time.sleep(0.3)
        with w.lock:
            damping = [m for _, m in w.frames[sent_before:]]
        check(len(damping) > 50 and all(np.allclose(m.kp_des, 0.0) and np.allclose(m.kd_des, 4.0) for m in damping[-50:]),
              "after the motor fault the bridge sends damping frames (kp 0, kd 4) although no command is fresh")
        summary.update(hot_motor=hot.message, fault=status(DiagnosticStatus.ERROR, ["motor error flag"]).message)
    finally:
        watcher.close()
        if in_process is not None:
            summary["peer"] = in_process.peer.status()
            in_process.close()
        for proc in reversed(processes):
            proc.terminate()
        for proc in reversed(processes):
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
        if processes:
            lines = [line for line in processes[0].stdout.read().splitlines() if line.startswith("{")]
            summary["peer"] = json.loads(lines[-1]) if lines else None
            summary["exit_codes"] = [p.returncode for p in processes]
    return summary


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "ns")), flush=True)
