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
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu

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


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


class Watcher(BackgroundNode):
    """ROS side (probe node spinning in a thread) and LCM side (motor_ctrl listener)."""

    def __init__(self, lcm_url: str) -> None:
        super().__init__("bridge_check")
        self.lock = threading.Lock()
        self.legs: list[LegState] = []
        self.imus: list[Imu] = []
        self.velocities: list[TwistStamped] = []
        self.states: list[MotorControlState] = []
        self.frames: list[tuple[float, motor_ctrl_lcmt]] = []
        n = self.node
        n.create_subscription(LegState, "/cyberdog/leg_state", self._keep(self.legs), qos_profile_sensor_data)
        n.create_subscription(Imu, "/cyberdog/imu", self._keep(self.imus), qos_profile_sensor_data)
        n.create_subscription(TwistStamped, "/cyberdog/body_velocity", self._keep(self.velocities),
                              qos_profile_sensor_data)
        n.create_subscription(MotorControlState, "/cyberdog/motor_ctrl_state", self._keep(self.states), 10)
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
                             "--estimator-url", UDPM_ESTIMATOR, "--report-s", "0.5", "--duration", "60"],
                            env=env, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    bridge = subprocess.Popen([sys.executable, "-m", "diffuseloco_policy.nodes.lcm_bridge_node", "--ros-args",
                               "-p", f"lcm_url:={UDPM}", "-p", f"estimator_lcm_url:={UDPM_ESTIMATOR}",
                               "-p", f"hold_s:={HOLD_S}"], env=env, stdin=subprocess.DEVNULL)
    return [peer, bridge]


class InProcess:
    """memq fallback: the peer in a thread and the bridge node in an executor thread of this process."""

    def __init__(self) -> None:
        from diffuseloco_sim.lcm_robot_peer import LcmRobotPeer
        from diffuseloco_policy.nodes.lcm_bridge_node import LcmBridgeNode

        self.peer = LcmRobotPeer(MEMQ, MEMQ)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter("lcm_url", value=MEMQ), Parameter("estimator_lcm_url", value=MEMQ),
                     Parameter("hold_s", value=HOLD_S)]
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
        # 1. the robot's state reaches ROS
        w.wait_for(lambda: len(w.legs) > 500 and len(w.imus) > 500 and len(w.velocities) > 500 and len(w.states) > 2,
                   60.0, "LegState, Imu, body velocity and MotorControlState from the bridge (1 s of them: the limp "
                   "robot has settled)")
        with w.lock:
            leg, imu, velocity, state = w.legs[-1], w.imus[-1], w.velocities[-1], w.states[-1]
        check(leg.header.frame_id == "base" and imu.header.frame_id == "imu_link"
              and velocity.header.frame_id == "base", "frame ids")
        v = velocity.twist.linear
        check(np.isfinite([v.x, v.y, v.z]).all() and np.linalg.norm([v.x, v.y, v.z]) < 0.3,
              f"vBody of a robot lying still: {v}")
        check(all(leg.q[i] < -0.3 for i in (2, 5, 8, 11)), f"knees negative (SDK convention) on ROS: {list(leg.q)}")
        q = imu.orientation
        check(abs(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z - 1.0) < 1e-3 and q.w > 0.9, f"upright quaternion {q}")
        check(abs(imu.linear_acceleration.z - 9.81) < 3.0, f"gravity in aBody: {imu.linear_acceleration}")
        check(state.err_flag & lb.ERR_GAP_DAMPING, "the firmware starts in its communication-error state")
        check(not w.frames, "no motor_ctrl before the first MotorCommand")
        summary["leg_state_q_before"] = [round(float(v), 3) for v in leg.q]

        # 2. commands: activation with zero frames, then the command, re-sent at ~500 Hz; bad ones dropped
        target_model = np.asarray(CONFIG.robot.default_pose)
        target_sdk = CONVENTION.to_sdk(target_model)
        t0 = time.monotonic()
        tick = 0
        while time.monotonic() - t0 < 3.0:
            bad = "nan" if tick in (30, 60) else ""   # wrong lengths cannot cross ROS: float32[12] is fixed
            w.command(target_sdk, kp=30.0, kd=1.0, bad=bad)
            tick += 1
            time.sleep(0.02)
        t_stop = time.monotonic()
        with w.lock:
            leg = w.legs[-1]   # the pose reached while commanded
        time.sleep(0.6)
        with w.lock:
            frames = list(w.frames)
            state = w.states[-1]
        check(len(frames) > 0, "motor_ctrl frames reached LCM")
        zero = [lb.is_zero_frame(m) for _, m in frames]
        first_real = zero.index(False) if False in zero else None
        check(zero[0] and first_real is not None and not any(zero[first_real:]),
              "all-zero activation frames first, then only the command")
        wire = np.array([m.q_des for _, m in frames[first_real:]])
        check(np.all(np.isfinite(wire)), "no non-finite value was forwarded")
        # from the measured (lying) pose the bridge ramps q_des in within the firmware's per-frame step (the peer
        # counts any frame beyond it); then every frame carries the target in the internal convention
        frame_step = CONFIG.robot.frame_step_rad
        check(np.all(np.abs(np.diff(wire, axis=0)) <= frame_step + 1e-5), "frame steps within the firmware's")
        at_target = np.all(np.isclose(wire, target_model, atol=1e-5), axis=1)
        ramp = int(np.argmax(at_target)) if at_target.any() else len(wire)
        check(at_target[ramp:].all() and ramp <= 20, f"motor_ctrl carries the target after a {ramp}-frame ramp")
        summary["ramp_frames"] = ramp
        check(np.allclose([m.kp_des for _, m in frames[first_real:]], 30.0), "gains forwarded")
        duration = frames[-1][0] - frames[0][0]
        rate = (len(frames) - 1) / duration if duration > 0 else 0.0
        check(rate > 250.0, f"re-sent at about 500 Hz, got {rate:.0f} Hz")
        last_frame = frames[-1][0]
        check(last_frame - t_stop < HOLD_S + 0.1, f"sending stopped {last_frame - t_stop:.3f} s after the last command")
        errors = np.abs(np.asarray(leg.q, dtype=np.float64) - target_sdk)
        check(float(np.max(errors)) < 0.25, f"the simulated robot followed the command: |q - target| {errors.round(2)}")
        summary.update(frames=len(frames), zero_frames=int(sum(zero)), rate_hz=round(rate), hold_after_stop_s=round(
            last_frame - t_stop, 3), max_joint_error_rad=round(float(np.max(errors)), 3),
            err_flag_after_stop=int(state.err_flag), states_seen=sorted({int(s.err_flag) for s in w.states}))
        check(0 in summary["states_seen"], "the peer reported motor mode active (err_flag 0) at some point")
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
