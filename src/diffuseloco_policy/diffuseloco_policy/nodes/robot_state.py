"""The standard ROS robot interfaces of the CyberDog 2, for rviz, Foxglove, PlotJuggler and navigation stacks:
the robot_state_publisher's part, from the stack's own topics, in simulation and on the robot alike.

  /robot_description  std_msgs/String, the URDF (robot_description.py), latched: reliable, transient local
  /joint_states       sensor_msgs/JointState at rate_hz: the config's joint names, LegState's q (rad), qd (rad/s)
                      and tau_est (N m) unchanged, so in the SDK convention the URDF's axes are written in
  /tf                 tf2_msgs/TFMessage: the twelve leg joints' transforms with each joint state, and
                      odom -> base_link from every nav_msgs/Odometry on odom_topic (the simulator's ground truth,
                      the robot's state estimator through the LCM bridge)
  /tf_static          the fixed frames (feet, imu_link), latched

Joint states are taken from the driver of the joint-state stream only (sensor_source, as the policy node does).
Of its 500 Hz, the first LegState at least 1 / rate_hz (stamps) after the last one published is published, with
its own stamp: the rate follows the robot's clock, not this process's timer, which a busy machine delays. A
malformed LegState is skipped.
"""

from __future__ import annotations

from typing import Optional

from cyberdog_msgs.msg import LegState
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from ..config import load_config
from ..leg_frames import FrameTransform, LegFrames
from ..robot_description import urdf
from .conversions import joint_state_from_msg
from .parameters import declare_parameters
from .source_filter import SourceFilter, filtered
from .spin import run_node

# What robot_state_publisher offers: late joiners (rviz started later) still get the description and the static
# frames.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def transform_msg(frame: FrameTransform, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, frame.parent, frame.child
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in frame.translation)
    r.x, r.y, r.z, r.w = (float(v) for v in frame.rotation)
    return msg


def odometry_transform(odom: Odometry) -> TransformStamped:
    """The Odometry's pose as the transform header.frame_id -> child_frame_id."""
    msg = TransformStamped()
    msg.header = odom.header
    msg.child_frame_id = odom.child_frame_id
    p = odom.pose.pose.position
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = p.x, p.y, p.z
    msg.transform.rotation = odom.pose.pose.orientation
    return msg


class RobotStateNode(Node):
    def __init__(self) -> None:
        super().__init__("robot_state")
        p = declare_parameters(self, {
            "config": "", "leg_state_topic": "/cyberdog/leg_state", "odom_topic": "/odom",
            "joint_state_topic": "/joint_states", "description_topic": "/robot_description",
            "rate_hz": 50.0,
            # the node whose LegState is accepted ("/cyberdog_sim", "/lcm_bridge"; "" pins the first publisher)
            "sensor_source": "",
        })
        if not p["rate_hz"] > 0:
            raise ValueError(f"rate_hz must be positive, got {p['rate_hz']}")
        robot = load_config(p["config"] or None).robot
        self.joint_names = list(robot.joint_names)
        self.frames = LegFrames(robot)
        self.period = 1.0 / p["rate_hz"]
        self._published_stamp: Optional[float] = None
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", LATCHED_QOS)
        description_pub = self.create_publisher(String, p["description_topic"], LATCHED_QOS)
        description_pub.publish(String(data=urdf(robot)))
        stamp = self.get_clock().now().to_msg()
        self.tf_static_pub.publish(TFMessage(transforms=[transform_msg(f, stamp) for f in self.frames.static()]))
        self.leg_source = SourceFilter(self, p["leg_state_topic"], p["sensor_source"])
        self.create_subscription(LegState, p["leg_state_topic"], filtered(self.leg_source, self._on_leg_state),
                                 qos_profile_sensor_data)
        self.create_subscription(Odometry, p["odom_topic"], self._on_odometry, 10)
        self.get_logger().info(f"{robot.name}: robot description on {p['description_topic']}, joint states on "
                               f"{p['joint_state_topic']} and /tf at {p['rate_hz']:g} Hz, odom -> base_link from "
                               f"{p['odom_topic']}")

    def _on_leg_state(self, msg: LegState) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        last = self._published_stamp
        # due one period after the last (less 1 ms of stamp jitter); a stamp that went back starts over
        if last is None or stamp - last >= self.period - 1e-3 or stamp < last:
            self._published_stamp = stamp
            self._publish_joints(msg)

    def _on_odometry(self, msg: Odometry) -> None:
        self.tf_pub.publish(TFMessage(transforms=[odometry_transform(msg)]))

    def _publish_joints(self, msg: LegState) -> None:
        try:
            state = joint_state_from_msg(msg)
            transforms = self.frames.moving_transforms(state.q)
        except ValueError as exc:
            self.get_logger().warning(f"joint state skipped: {exc}", throttle_duration_sec=1.0)
            return
        joints = JointState(name=self.joint_names, position=state.q.tolist(), velocity=state.qd.tolist(),
                            effort=state.tau_est.tolist())
        joints.header.stamp = msg.header.stamp
        self.joint_pub.publish(joints)
        self.tf_pub.publish(TFMessage(transforms=[transform_msg(f, msg.header.stamp) for f in transforms]))


def main(args: Optional[list[str]] = None) -> None:
    run_node(RobotStateNode, args, refuse=(ValueError, OSError))


if __name__ == "__main__":
    main()
