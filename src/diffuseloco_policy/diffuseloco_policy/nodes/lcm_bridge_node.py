"""ROS 2 <-> CyberDog 2 motor SDK (LCM) bridge, executable `lcm_bridge`; runs beside the firmware on the robot.

LCM -> ROS (each LCM channel handled in its own `handle_timeout` thread, published as it arrives):
  leg_control_data (udpm :7667)  -> cyberdog_msgs/LegState on leg_state_topic (all fields: q, qd, tau_est, p, v,
                                    force_est, force_desired, limit flags; frame `leg_frame_id`)
  state_estimator  (udpm :7669)  -> sensor_msgs/Imu on imu_topic (quat w,x,y,z -> orientation, omegaBody, aBody;
                                    frame `imu_frame_id`), and vBody -> geometry_msgs/TwistStamped (twist.linear,
                                    m/s, body frame `leg_frame_id`) on body_velocity_topic, and the estimate
                                    as nav_msgs/Odometry on odom_topic at odom_rate_hz (p, quat, vBody,
                                    omegaBody: odom -> base_link, REP 105); q, qd, tau_est also as
                                    sensor_msgs/JointState (joint names) on joint_state_topic at 50 Hz
  motor_ctrl_state (udpm :7667)  -> cyberdog_msgs/MotorControlState on motor_ctrl_state_topic (err_flag;
                                    ctrl_topic_interval is the firmware's command gap in MILLISECONDS)
  spi_data         (udpm :7667)  -> the motor boards' flags and temperatures: any flag & 0x3FFFFFFF (what stops
                                    the official SDK) latches damping frames with the decoded reason (logged as
                                    an error); temperatures, flags and the decoded err_flag bits go to
                                    /diagnostics (diagnostic_msgs/DiagnosticArray, once a second and on a change
                                    of level), WARN from motor_temperature_warn_c
ROS -> LCM:
  cyberdog_msgs/MotorCommand on motor_command_topic -> motor_ctrl, re-sent every 2 ms (rate_hz) by a sender
  thread while the newest command is younger than hold_s. Then the policy node has stalled or died: the bridge
  stands the dog, holds it stall_hold_s, lies it down (bridge/stall_posture.py; /diagnostics ERROR meanwhile) and
  goes silent, so the firmware's gap rules (> 10 ms qd_des and tau_des divided by gap / 10 ms, > 500 ms kd 4
  for ~2.5 s, then limp) leave a lying dog limp. A fresh command ends the posture. Commands with a wrong
  length or non-finite values are dropped with a warning, never forwarded. Between policy ticks each frame's q_des
  moves along its qd_des (one tick at most); the firmware's clamps of q_des into its band around the measured
  angle (motor_ctrl_state err_flag bits 2-4) are counted, logged and reported in /diagnostics. Motor-mode activation (all-zero
  frames until the firmware's motor_ctrl_state clears err_flag bit 1, ~2.5 s) as bridge/lcm_bridge.CommandRelay
  documents.
Joint values are flipped between the SDK user convention (ROS side) and the firmware's internal convention
(LCM side) with joints.JointConvention - see bridge/lcm_bridge.py for the evidence.
Stamps: the LCM messages carry no usable common clock, so ROS stamps are the bridge's receive time.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from cyberdog_msgs.msg import LegState, MotorCommand, MotorControlState
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState

from ..bridge.lcm_bridge import (
    DEFAULT_ESTIMATOR_LCM_URL, DEFAULT_HOLD_S, DEFAULT_LCM_URL, FRAME_RATE_HZ, LEG_CONTROL_DATA, MOTOR_CTRL,
    MOTOR_CTRL_STATE, SPI_DATA, STATE_ESTIMATOR, CommandRelay, LcmEndpoint, LegData, MotorCtrlState, MotorData,
    command_problem, imu_reading_from_estimator, leg_data_from_lcm, motor_ctrl_from_command, motor_ctrl_state_from_lcm,
    motor_data_from_lcm)
from ..bridge.lcm_types import leg_control_data_lcmt, motor_ctrl_state_lcmt, spi_data_t, state_estimator_lcmt
from ..bridge.stall_posture import StallPosture, StallTiming
from ..config import load_config
from ..joints import JointConvention
from ..motor_sdk import MotorCommand as SdkMotorCommand
from ..decimator import Decimator
from ..motor_sdk import JointState as SdkJointState
from .conversions import body_velocity_msg, imu_msg, joint_state_msg, odometry_msg
from .parameters import declare_parameters
from .source_filter import SourceFilter, filtered
from .spin import run_node, use_realtime_scheduling

COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
MOTOR_TEMPERATURE_WARN_C = 70.0   # the firmware lets a motor back into service only under 74 C (cyberdog_controller.hpp)


def motor_fault_reason(data: MotorData, joint_names) -> Optional[str]:
    """The reason to stop for a spi_data message, or None: every motor whose flag has bits in 0x3FFFFFFF."""
    faults = data.faults()
    if not faults:
        return None
    parts = [f"{joint_names[j]} (flag 0x{int(data.flags[j]) & 0xFFFFFFFF:08x}: {', '.join(names)})"
             for j, names in faults.items()]
    return "motor error flag, damping as the SDK stops: " + "; ".join(parts)


def bridge_diagnostics(motors: Optional[MotorData], state: Optional[MotorCtrlState], fault: Optional[str],
                       band_clamps: int, joint_names, temperature_warn_c: float,
                       stall_phase: str = "") -> list[DiagnosticStatus]:
    """The motors (temperatures, flags, fault) and motor mode (err_flag bits, command gap, the firmware's band
    clamps, a stall posture for a silent policy node) as DiagnosticStatus entries."""
    motor = DiagnosticStatus(name="lcm_bridge: motors", hardware_id="cyberdog2")
    if motors is None:
        motor.level, motor.message = DiagnosticStatus.STALE, "no spi_data received"
    else:
        hot = [n for n, t in zip(joint_names, motors.temperature) if t >= temperature_warn_c]
        if fault is not None:
            motor.level, motor.message = DiagnosticStatus.ERROR, fault
        elif hot:
            motor.level = DiagnosticStatus.WARN
            motor.message = f"motor temperature at or over {temperature_warn_c:g} C: {', '.join(hot)}"
        else:
            motor.level, motor.message = DiagnosticStatus.OK, "motors healthy"
        motor.values = [KeyValue(key=f"{n} temperature C", value=f"{t:.1f}") for n, t in zip(joint_names, motors.temperature)]
        # flags and err_flag as plain integers: every value is one number a plotting tool can read (the
        # message names the bits)
        motor.values += [KeyValue(key=f"{n} flags", value=str(int(f) & 0xFFFFFFFF)) for n, f in zip(joint_names, motors.flags)]
        motor.values.append(KeyValue(key="max temperature C", value=f"{float(np.max(motors.temperature)):.1f}"))
    mode = DiagnosticStatus(name="lcm_bridge: motor mode", hardware_id="cyberdog2")
    if state is None:
        mode.level, mode.message = DiagnosticStatus.STALE, "no motor_ctrl_state received"
    else:
        bits = state.describe()
        mode.level = DiagnosticStatus.WARN if bits else DiagnosticStatus.OK
        mode.message = "; ".join(bits) if bits else "motor mode active"
        mode.values = [KeyValue(key="err_flag", value=str(int(state.err_flag))),
                       KeyValue(key="ctrl_topic_interval ms", value=f"{state.ctrl_topic_interval:.1f}")]
    if stall_phase and stall_phase != "done":
        mode.level = DiagnosticStatus.ERROR
        mode.message = f"policy node silent: stall posture ({stall_phase})"
    mode.values.append(KeyValue(key="firmware band clamps (reports)", value=str(band_clamps)))
    mode.values.append(KeyValue(key="stall posture", value=stall_phase or "none"))
    return [motor, mode]


def leg_state_from_data(data: LegData, stamp, frame_id: str) -> LegState:
    msg = LegState()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    for name in ("q", "qd", "tau_est", "p", "v", "force_est", "force_desired"):
        setattr(msg, name, np.asarray(getattr(data, name), dtype=np.float32))
    for name in ("q_abad_limit", "q_hip_limit", "q_knee_limit"):
        setattr(msg, name, np.asarray(getattr(data, name), dtype=np.int32))
    return msg


def command_from_ros(msg: MotorCommand) -> SdkMotorCommand:
    """No length check here (command_problem does it, so a bad message is reported, not raised)."""
    return SdkMotorCommand(*(np.asarray(a, dtype=np.float64)
                             for a in (msg.q_des, msg.qd_des, msg.kp_des, msg.kd_des, msg.tau_des)))


class LcmBridgeNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("lcm_bridge", **node_kwargs)
        p = self._declare_parameters()
        config = load_config(p["config"] or None)
        robot = config.robot
        self.convention = JointConvention(robot)
        self.leg_frame_id, self.imu_frame_id = p["leg_frame_id"], p["imu_frame_id"]
        self.period = 1.0 / p["rate_hz"]
        self.joint_names = robot.joint_names
        stall = StallPosture(config, StallTiming(config.controller.stale_stand_duration, p["stall_hold_s"])) \
            if p["stall_posture"] else None
        self.relay = CommandRelay(hold_s=p["hold_s"], require_activation=p["require_activation"],
                                  stall_posture=stall,
                                  advance_s=config.rates.control_dt)
        self.temperature_warn_c = p["motor_temperature_warn_c"]
        self.dropped = 0
        self._motors: Optional[MotorData] = None
        self._hot = False
        self._reported_clips = 0
        self._stall_phase = ""

        self.leg_pub = self.create_publisher(LegState, p["leg_state_topic"], qos_profile_sensor_data)
        self.imu_pub = self.create_publisher(Imu, p["imu_topic"], qos_profile_sensor_data)
        self.velocity_pub = self.create_publisher(TwistStamped, p["body_velocity_topic"], qos_profile_sensor_data)
        self.state_pub = self.create_publisher(MotorControlState, p["motor_ctrl_state_topic"], 10)
        self.odom_pub = self.create_publisher(Odometry, p["odom_topic"], 10) if p["odom_topic"] else None
        self.odom_decimator = Decimator(p["odom_rate_hz"])
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10) \
            if p["joint_state_topic"] else None
        self.joint_decimator = Decimator(p["joint_state_rate_hz"])
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # only the stack's policy node commands the motors (nodes/source_filter.py): another publisher is ignored
        self.command_source = SourceFilter(self, p["motor_command_topic"], p["command_source"])
        self.create_subscription(MotorCommand, p["motor_command_topic"], filtered(self.command_source,
                                                                                 self._on_command), COMMAND_QOS)

        self.rx = LcmEndpoint(p["lcm_url"], "lcm-rx")
        self.rx.subscribe(LEG_CONTROL_DATA, leg_control_data_lcmt.decode, self._on_leg_data)
        self.rx.subscribe(MOTOR_CTRL_STATE, motor_ctrl_state_lcmt.decode, self._on_motor_ctrl_state)
        self.rx.subscribe(SPI_DATA, spi_data_t.decode, self._on_spi_data)
        self.estimator = LcmEndpoint(p["estimator_lcm_url"], "lcm-estimator")
        self.estimator.subscribe(STATE_ESTIMATOR, state_estimator_lcmt.decode, self._on_estimator)
        self.tx = LcmEndpoint(p["lcm_url"], "lcm-tx")   # publishes only; a memq URL shares the rx instance
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="motor-ctrl-sender", daemon=True)
        for endpoint in (self.rx, self.estimator):
            endpoint.start()
        self._sender.start()
        use_realtime_scheduling(self, p["realtime_priority"])
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"bridging LCM {p['lcm_url']} (+ estimator {p['estimator_lcm_url']}): motor_ctrl at {p['rate_hz']:.0f} Hz, "
            f"hold {p['hold_s']} s, activation {'required' if p['require_activation'] else 'off'}")

    def _declare_parameters(self) -> dict:
        defaults = {
            "config": "", "lcm_url": DEFAULT_LCM_URL, "estimator_lcm_url": DEFAULT_ESTIMATOR_LCM_URL,
            "rate_hz": FRAME_RATE_HZ, "hold_s": DEFAULT_HOLD_S, "require_activation": True,
            "leg_state_topic": "/cyberdog/leg_state", "imu_topic": "/cyberdog/imu",
            "body_velocity_topic": "/cyberdog/body_velocity",
            "motor_command_topic": "/cyberdog/motor_cmd", "motor_ctrl_state_topic": "/cyberdog/motor_ctrl_state",
            "leg_frame_id": "base", "imu_frame_id": "imu_link", "realtime_priority": 0,
            # the node whose MotorCommand is forwarded ("" pins the first publisher); any other is ignored
            "command_source": "",
            "motor_temperature_warn_c": MOTOR_TEMPERATURE_WARN_C,
            # a silent policy node: stand, hold this long, lie down, then silence (bridge/stall_posture.py);
            # false: silence at once, the firmware's gap rules drop the dog
            "stall_posture": True, "stall_hold_s": StallTiming.hold_s,
            # the state estimator's pose and velocity as nav_msgs/Odometry ("" = none), at this rate
            "odom_topic": "/odom", "odom_rate_hz": 50.0,
            # leg_control_data's q, qd, tau_est as sensor_msgs/JointState with the joint names ("" = none)
            "joint_state_topic": "/joint_states", "joint_state_rate_hz": 50.0,
        }
        return declare_parameters(self, defaults)

    # ------------------------------------------------------------------------------------------- ROS -> LCM
    def _on_command(self, msg: MotorCommand) -> None:
        cmd = command_from_ros(msg)
        problem = command_problem(cmd)
        if problem is not None:
            self.dropped += 1
            self.get_logger().warning(f"dropped a motor command ({problem}); not forwarded",
                                      throttle_duration_sec=1.0)
            return
        self.relay.submit(cmd, time.monotonic())

    def _send_loop(self) -> None:
        next_time = time.monotonic()
        was_sending, was_active = False, self.relay.active
        while not self._stop.is_set():
            now = time.monotonic()
            frame = self.relay.frame(now)
            if frame is not None:
                self.tx.publish(MOTOR_CTRL, motor_ctrl_from_command(frame, self.convention))
            was_sending = self._log_transitions(frame is not None, was_sending, was_active)
            self._log_stall(now)
            was_active = self.relay.active
            next_time += self.period
            delay = next_time - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -0.05:   # far behind (loaded machine): resynchronize instead of bursting
                next_time = time.monotonic()

    def _log_transitions(self, sending: bool, was_sending: bool, was_active: bool) -> bool:
        log = self.get_logger()
        if sending and not was_sending:
            log.info("sending motor_ctrl frames" + ("" if self.relay.active else " (all-zero: activating motor mode)"))
        elif was_sending and not sending:
            log.warning(f"no fresh MotorCommand for {self.relay.hold_s} s: stopped sending; the firmware's gap "
                        "protection takes over")
        if self.relay.active and not was_active:
            log.info("motor mode active: forwarding commands")
        elif was_active and not self.relay.active:
            log.warning("motor mode not active (firmware damping or long gap): sending all-zero frames to "
                        "re-activate while commands are fresh")
        return sending

    def _log_stall(self, now: float) -> None:
        phase = self.relay.stall_phase(now)
        if phase == self._stall_phase:
            return
        timing = self.relay.stall_posture.timing if self.relay.stall_posture is not None else None
        if phase == "stand":
            self.get_logger().error(f"policy node silent for {self.relay.hold_s} s: standing the dog, lying it "
                                    f"down after {timing.stand_s + timing.hold_s:.1f} s unless commands resume")
        elif phase == "lie down":
            self.get_logger().error("policy node still silent: lying the dog down, then the firmware's gap "
                                    "protection leaves the motors limp")
        elif self._stall_phase in ("stand", "hold", "lie down") and not phase:
            self.get_logger().warning("motor commands resumed: the stall posture ended")
        self._stall_phase = phase

    # ------------------------------------------------------------------------------------------- LCM -> ROS
    def _stamp(self):
        return self.get_clock().now().to_msg()

    def _on_leg_data(self, msg: leg_control_data_lcmt) -> None:
        try:
            data = leg_data_from_lcm(msg, self.convention)
        except ValueError as exc:
            self.get_logger().warning(f"bad leg_control_data: {exc}", throttle_duration_sec=1.0)
            return
        self.relay.on_measured(data.q)
        stamp = self._stamp()
        self._publish(self.leg_pub, leg_state_from_data(data, stamp, self.leg_frame_id))
        if self.joint_pub is not None and self.joint_decimator.due(time.monotonic()):
            self._publish(self.joint_pub, joint_state_msg(SdkJointState(data.q, data.qd, data.tau_est),
                                                          self.joint_names, stamp))

    def _on_estimator(self, msg: state_estimator_lcmt) -> None:
        stamp = self._stamp()
        self._publish(self.imu_pub, imu_msg(imu_reading_from_estimator(msg), stamp, self.imu_frame_id))
        self._publish(self.velocity_pub, body_velocity_msg(np.asarray(msg.vBody, dtype=np.float64), stamp,
                                                           self.leg_frame_id))
        self._publish_odometry(msg, stamp)

    def _publish_odometry(self, msg: state_estimator_lcmt, stamp) -> None:
        """The estimator's position, orientation, vBody and omegaBody as Odometry, at odom_rate_hz of its 500 Hz.
        A message with a non-finite value or no orientation is skipped."""
        if self.odom_pub is None:
            return
        quat = np.asarray(msg.quat, dtype=np.float64)
        values = [np.asarray(v, dtype=np.float64) for v in (msg.p, msg.vBody, msg.omegaBody)]
        norm = float(np.linalg.norm(quat))
        if not (np.all(np.isfinite(quat)) and norm > 0.5 and all(np.all(np.isfinite(v)) for v in values)):
            return
        if not self.odom_decimator.due(time.monotonic()):
            return
        self._publish(self.odom_pub, odometry_msg(values[0], quat / norm, values[1], values[2], stamp))

    def _on_spi_data(self, msg: spi_data_t) -> None:
        try:
            data = motor_data_from_lcm(msg, self.convention)
        except ValueError as exc:
            self.get_logger().warning(f"bad spi_data: {exc}", throttle_duration_sec=1.0)
            return
        self._motors = data
        hot = bool(np.any(data.temperature >= self.temperature_warn_c))
        reason = motor_fault_reason(data, self.joint_names)
        if reason is not None and self.relay.motor_fault(reason):
            self.get_logger().error(reason + "; restart the bridge after the robot was checked (e-stop)")
            self._publish_diagnostics()
        elif hot != self._hot:
            self._hot = hot
            if hot:
                self.get_logger().warning(f"motor temperature at or over {self.temperature_warn_c:g} C")
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        clamps = self.relay.firmware_clamps
        if clamps > self._reported_clips:
            self.get_logger().warning(f"the firmware clamped q_des into its band around the measured angle in "
                                      f"{clamps - self._reported_clips} motor_ctrl_state reports (so far: "
                                      f"{self.relay.firmware_clamp_counts})")
            self._reported_clips = clamps
        out = DiagnosticArray()
        out.header.stamp = self._stamp()
        out.status = bridge_diagnostics(self._motors, self.relay.last_state, self.relay.fault, clamps,
                                        self.joint_names, self.temperature_warn_c, self._stall_phase)
        self._publish(self.diag_pub, out)

    def _on_motor_ctrl_state(self, msg: motor_ctrl_state_lcmt) -> None:
        state = motor_ctrl_state_from_lcm(msg)
        self.relay.on_state(state, time.monotonic())
        out = MotorControlState(err_flag=state.err_flag, ctrl_topic_interval=state.ctrl_topic_interval)
        out.header.stamp = self._stamp()
        self._publish(self.state_pub, out)

    def _publish(self, publisher, msg) -> None:
        try:
            publisher.publish(msg)
        except Exception:  # noqa: BLE001 - an LCM thread may race the context's shutdown on Ctrl-C
            if not self.context.ok():
                return
            raise

    def destroy_node(self) -> None:
        self._stop.set()
        self._sender.join(timeout=1.0)
        for endpoint in (self.rx, self.estimator):
            endpoint.stop()
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> None:
    run_node(LcmBridgeNode, args)


if __name__ == "__main__":
    main()
