"""The MuJoCo CyberDog 2 on the robot's own topics and message types, so the policy node cannot tell sim from robot.

It subscribes to the motor command (cyberdog_msgs/MotorCommand) and plays the part of the LCM bridge and the
firmware. The bridge is the robot's own relay (diffuseloco_policy.bridge.lcm_bridge.CommandRelay): it re-sends the
newest command every 2 ms joint-loop frame for `bridge_hold_s` after it arrived, its q_des moved along qd_des
between policy ticks; then the policy node counts as stalled and the relay stands the dog, holds it
`stall_hold_s`, lies it down (bridge/stall_posture.py) and stops, so the firmware's gap rules take over (over
10 ms qd_des and tau_des divided, over 500 ms kd 4 for ~2.5 s, then limp). The firmware is sim/firmware.py, run
by the simulator every 2 ms frame (the position band around the measured angle included). One difference from the robot, on purpose: the simulated dog
starts standing with motor mode already entered and activated, so there is no ~2.5 s wait for all-zero frames
here (the policy node's controller starts in PASSIVE and would never send them itself; on the robot the LCM
bridge does). The LCM path (lcm_bridge + bridge/lcm_robot_peer.py) reproduces the activation. After a gap over
500 ms, though, the firmware needs the activation like the robot: restart the node. It runs the 500 Hz joint
law in MuJoCo and publishes cyberdog_msgs/LegState and
sensor_msgs/Imu at `state_rate_hz`. Pacing is real time by default; with `real_time_factor` != 1 it publishes
/clock so the other nodes run on simulated time (`use_sim_time`). Ground truth for evaluation (never for the
policy) goes to /sim/base_twist (heading-frame velocity, yaw rate) and /sim/base_pose, and as nav_msgs/Odometry
(odom -> base_link, REP 105: the world frame stands for odom, so it never drifts) on `odom_topic`, at 50 Hz.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import rclpy
from cyberdog_msgs.msg import LegState, MotorCommand
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState

from diffuseloco_policy.bridge.lcm_bridge import CommandRelay
from diffuseloco_policy.bridge.stall_posture import StallPosture, StallTiming
from diffuseloco_policy.config import load_config
from . import CyberDogSim, SimConfig
from diffuseloco_policy.decimator import Decimator
from diffuseloco_policy.nodes.conversions import (body_velocity_msg, imu_msg, joint_state_msg, leg_state_msg,
                                                  motor_command_from_msg, odometry_msg, seconds_to_stamp)
from diffuseloco_policy.nodes.parameters import declare_parameters
from diffuseloco_policy.nodes.source_filter import SourceFilter, filtered
from diffuseloco_policy.nodes.spin import run_node, use_realtime_scheduling

COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


class SimulatorNode(Node):
    """Steps the simulator in its own thread, paced against the wall clock."""

    def __init__(self) -> None:
        super().__init__("cyberdog_sim")
        p = self._declare_parameters()
        self.config = load_config(p["config"] or None)
        sim_config = SimConfig.randomized() if p["randomize"] else SimConfig()
        if not p["pushes"]:
            sim_config = sim_config.without_pushes()
        # every frame comes from the relay below, so the firmware's gap is the time since the newest relay frame
        self.sim = CyberDogSim(self.config, sim_config, seed=p["seed"], bridge_hold_s=0.0)
        self.relay = self._relay(p)
        self.real_time_factor = p["real_time_factor"]
        self.publish_clock = p["publish_clock"] or self.real_time_factor != 1.0
        frame_s = self.sim.steps_per_frame * self.sim.physics_dt
        self.frames_per_state = max(1, int(round(1.0 / (p["state_rate_hz"] * frame_s))))
        self.steps_per_state = self.frames_per_state * self.sim.steps_per_frame
        self._lock = threading.Lock()
        self._stop = threading.Event()

        self.leg_pub = self.create_publisher(LegState, p["leg_state_topic"], qos_profile_sensor_data)
        self.imu_pub = self.create_publisher(Imu, p["imu_topic"], qos_profile_sensor_data)
        self.velocity_pub = self.create_publisher(TwistStamped, p["body_velocity_topic"], qos_profile_sensor_data)
        self.twist_pub = self.create_publisher(TwistStamped, "/sim/base_twist", 10)
        self.pose_pub = self.create_publisher(PoseStamped, "/sim/base_pose", 10)
        self.odom_pub = self.create_publisher(Odometry, p["odom_topic"], 10) if p["odom_topic"] else None
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10) \
            if p["joint_state_topic"] else None
        self.joint_decimator = Decimator(p["joint_state_rate_hz"])
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        # only the stack's policy node commands the simulated motors, as the bridge does on the robot
        self.command_source = SourceFilter(self, p["motor_command_topic"], p["command_source"])
        self.create_subscription(MotorCommand, p["motor_command_topic"], filtered(self.command_source,
                                                                                 self._on_command), COMMAND_QOS)
        self._thread = threading.Thread(target=self._run, name="sim-loop", daemon=True)
        self._thread.start()
        self._realtime(p["realtime_priority"])
        self.get_logger().info(
            f"simulating {self.config.robot.name} at {1.0 / (self.steps_per_state * self.sim.physics_dt):.0f} Hz "
            f"state rate, real-time factor {self.real_time_factor or 'unlimited'}")

    def _declare_parameters(self) -> dict:
        defaults = {
            "config": "", "seed": 0, "randomize": False, "pushes": False, "real_time_factor": 1.0,
            "publish_clock": False, "state_rate_hz": 500.0, "bridge_hold_s": 0.1, "stall_posture": True,
            "stall_hold_s": StallTiming.hold_s, "leg_state_topic": "/cyberdog/leg_state",
            "imu_topic": "/cyberdog/imu", "body_velocity_topic": "/cyberdog/body_velocity",
            "motor_command_topic": "/cyberdog/motor_cmd", "realtime_priority": 0,
            "command_source": "",   # the node whose MotorCommand is obeyed ("" pins the first publisher)
            "odom_topic": "/odom",  # ground truth as nav_msgs/Odometry ("" = none)
            "joint_state_topic": "/joint_states", "joint_state_rate_hz": 50.0,   # sensor_msgs/JointState, named
        }
        return declare_parameters(self, defaults)

    def _relay(self, p: dict) -> CommandRelay:
        """The LCM bridge's relay, as the robot runs it; the simulated dog starts in motor mode, activated."""
        stall = StallPosture(self.config, StallTiming(self.config.controller.stale_stand_duration,
                                                      p["stall_hold_s"])) if p["stall_posture"] else None
        return CommandRelay(hold_s=p["bridge_hold_s"], require_activation=False, stall_posture=stall,
                            advance_s=self.config.rates.control_dt)

    def _realtime(self, priority: int) -> None:
        """SCHED_FIFO for the stepping loop, as the robot's firmware keeps its joint loop: under a normal priority
        on a busy 2-core machine the loop stalled for up to 14 ms and then caught up in a burst, so the frames
        between two policy ticks varied by 1.5-3.3 (std), which made bound lag and the dog fall in the demo
        (docs/research/policy_eval/tracking.md, "The live graph's gap was its timing"). Only a paced loop gets it:
        unpaced, it would hold a core."""
        if priority and self.real_time_factor <= 0:
            self.get_logger().warning("realtime_priority ignored: an unpaced simulator (real_time_factor 0) under "
                                      "SCHED_FIFO would hold a core")
            return
        use_realtime_scheduling(self, priority)

    def _on_command(self, msg: MotorCommand) -> None:
        try:
            command = motor_command_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"dropped a malformed motor command: {exc}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self.relay.submit(command, self.sim.time)

    def _run(self) -> None:
        period = self.steps_per_state * self.sim.physics_dt
        next_wall = time.monotonic()
        while not self._stop.is_set() and rclpy.ok():
            with self._lock:
                for _ in range(self.frames_per_state):
                    self._relay_frame()
                    self.sim.step(self.sim.steps_per_frame)
            try:
                self._publish_state()
            except Exception:  # noqa: BLE001 - publishing races the shutdown of the context on Ctrl-C
                if not rclpy.ok():
                    return
                raise
            if self.real_time_factor > 0:
                next_wall += period / self.real_time_factor
                delay = next_wall - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:  # fell far behind (e.g. a loaded machine): don't try to catch up in a burst
                    next_wall = time.monotonic()

    def _relay_frame(self) -> None:
        """One 2 ms frame from the relay to the firmware (none while it is silent). The relay is not told the
        measured angle: it needs it only for the damping frames after a motor fault, which the sim node does not
        raise, and reading the simulated joint state every frame would cost a noise draw per frame."""
        frame = self.relay.frame(self.sim.time)
        if frame is not None:
            self.sim.command(frame)

    def _stamp(self):
        return seconds_to_stamp(self.sim.time) if self.publish_clock else self.get_clock().now().to_msg()

    def _publish_state(self) -> None:
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=seconds_to_stamp(self.sim.time)))
        stamp = self._stamp()
        joints, imu = self.sim.joint_state(), self.sim.imu()
        self.leg_pub.publish(leg_state_msg(joints, stamp, foot_forces=self.sim.foot_forces()))
        if self.joint_pub is not None and self.joint_decimator.due(self.sim.time):
            self.joint_pub.publish(joint_state_msg(joints, self.config.robot.joint_names, stamp))
        self.imu_pub.publish(imu_msg(imu, stamp))
        self.velocity_pub.publish(body_velocity_msg(self.sim.body_velocity(joints, imu), stamp))
        if self.sim.step_count % (10 * self.steps_per_state) == 0:
            self._publish_ground_truth(stamp)

    def _publish_ground_truth(self, stamp) -> None:
        twist = TwistStamped()
        twist.header.stamp, twist.header.frame_id = stamp, "base_heading"
        vx, vy = self.sim.base_velocity_heading()
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.angular.z = float(vx), float(vy), self.sim.yaw_rate()
        self.twist_pub.publish(twist)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "world"
        x, y, z = (float(v) for v in self.sim.base_position())
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, z
        w, qx, qy, qz = (float(v) for v in self.sim.data.qpos[3:7])
        pose.pose.orientation.w, pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z = w, qx, qy, qz
        self.pose_pub.publish(pose)
        if self.odom_pub is not None:
            self.odom_pub.publish(odometry_msg(self.sim.base_position(), self.sim.data.qpos[3:7],
                                               self.sim.base_velocity_body(), self.sim.base_angular_velocity_body(),
                                               stamp))

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args: Optional[list[str]] = None) -> None:
    run_node(SimulatorNode, args)


if __name__ == "__main__":
    main()
