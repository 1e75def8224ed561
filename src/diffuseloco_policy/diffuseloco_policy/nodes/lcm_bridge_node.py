"""ROS 2 <-> CyberDog 2 motor SDK (LCM) bridge, executable `lcm_bridge`; runs beside the firmware on the robot.

LCM -> ROS (each LCM channel handled in its own `handle_timeout` thread, published as it arrives):
  leg_control_data (udpm :7667)  -> cyberdog_msgs/LegState on leg_state_topic (all fields: q, qd, tau_est, p, v,
                                    force_est, force_desired, limit flags; frame `leg_frame_id`)
  state_estimator  (udpm :7669)  -> sensor_msgs/Imu on imu_topic (quat w,x,y,z -> orientation, omegaBody, aBody;
                                    frame `imu_frame_id`), and vBody -> geometry_msgs/TwistStamped (twist.linear,
                                    m/s, body frame `leg_frame_id`) on body_velocity_topic
  motor_ctrl_state (udpm :7667)  -> cyberdog_msgs/MotorControlState on motor_ctrl_state_topic
ROS -> LCM:
  cyberdog_msgs/MotorCommand on motor_command_topic -> motor_ctrl, re-sent every 2 ms (rate_hz) by a sender
  thread while the newest command is younger than hold_s, then nothing (the firmware's gap protection takes
  over: > 10 ms feed-forward scaled down, > 500 ms high damping). Commands with a wrong length or non-finite
  values are dropped with a warning, never forwarded. Motor-mode activation (all-zero frames until the
  firmware's motor_ctrl_state clears err_flag bit 1) as bridge/lcm_bridge.CommandRelay documents.
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
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu

from ..bridge.lcm_bridge import (
    DEFAULT_ESTIMATOR_LCM_URL, DEFAULT_HOLD_S, DEFAULT_LCM_URL, FRAME_RATE_HZ, LEG_CONTROL_DATA, MOTOR_CTRL,
    MOTOR_CTRL_STATE, STATE_ESTIMATOR, CommandRelay, LcmEndpoint, LegData, command_problem, imu_reading_from_estimator,
    leg_data_from_lcm, motor_ctrl_from_command, motor_ctrl_state_from_lcm)
from ..bridge.lcm_types import leg_control_data_lcmt, motor_ctrl_state_lcmt, state_estimator_lcmt
from ..config import load_config
from ..joints import JointConvention
from ..motor_sdk import MotorCommand as SdkMotorCommand
from .conversions import body_velocity_msg, imu_msg
from .parameters import declare_parameters
from .source_filter import SourceFilter, filtered
from .spin import run_node, use_realtime_scheduling

COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


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
        robot = load_config(p["config"] or None).robot
        self.convention = JointConvention(robot)
        self.leg_frame_id, self.imu_frame_id = p["leg_frame_id"], p["imu_frame_id"]
        self.period = 1.0 / p["rate_hz"]
        self.relay = CommandRelay(hold_s=p["hold_s"], require_activation=p["require_activation"],
                                  max_frame_step=robot.frame_step_rad)
        self.dropped = 0

        self.leg_pub = self.create_publisher(LegState, p["leg_state_topic"], qos_profile_sensor_data)
        self.imu_pub = self.create_publisher(Imu, p["imu_topic"], qos_profile_sensor_data)
        self.velocity_pub = self.create_publisher(TwistStamped, p["body_velocity_topic"], qos_profile_sensor_data)
        self.state_pub = self.create_publisher(MotorControlState, p["motor_ctrl_state_topic"], 10)
        # only the stack's policy node commands the motors (nodes/source_filter.py): another publisher is ignored
        self.command_source = SourceFilter(self, p["motor_command_topic"], p["command_source"])
        self.create_subscription(MotorCommand, p["motor_command_topic"], filtered(self.command_source,
                                                                                 self._on_command), COMMAND_QOS)

        self.rx = LcmEndpoint(p["lcm_url"], "lcm-rx")
        self.rx.subscribe(LEG_CONTROL_DATA, leg_control_data_lcmt.decode, self._on_leg_data)
        self.rx.subscribe(MOTOR_CTRL_STATE, motor_ctrl_state_lcmt.decode, self._on_motor_ctrl_state)
        self.estimator = LcmEndpoint(p["estimator_lcm_url"], "lcm-estimator")
        self.estimator.subscribe(STATE_ESTIMATOR, state_estimator_lcmt.decode, self._on_estimator)
        self.tx = LcmEndpoint(p["lcm_url"], "lcm-tx")   # publishes only; a memq URL shares the rx instance
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="motor-ctrl-sender", daemon=True)
        for endpoint in (self.rx, self.estimator):
            endpoint.start()
        self._sender.start()
        use_realtime_scheduling(self, p["realtime_priority"])
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
        self._publish(self.leg_pub, leg_state_from_data(data, self._stamp(), self.leg_frame_id))

    def _on_estimator(self, msg: state_estimator_lcmt) -> None:
        stamp = self._stamp()
        self._publish(self.imu_pub, imu_msg(imu_reading_from_estimator(msg), stamp, self.imu_frame_id))
        self._publish(self.velocity_pub, body_velocity_msg(np.asarray(msg.vBody, dtype=np.float64), stamp,
                                                           self.leg_frame_id))

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
