"""The robot_state_publisher's part of the standard ROS robot interfaces of the CyberDog 2, for rviz, Foxglove,
PlotJuggler and navigation stacks, in simulation and on the robot alike:

  /robot_description  std_msgs/String, the URDF (robot_description.py), latched: reliable, transient local
  /tf                 tf2_msgs/TFMessage: the twelve leg joints' transforms for each sensor_msgs/JointState on
                      joint_state_topic, with its stamp, and odom -> base_link for each nav_msgs/Odometry on
                      odom_topic
  /tf_static          the fixed frames (feet, imu_link), latched

The joint states and the odometry come from the robot's driver, which has the data at 500 Hz and publishes them
at 50 Hz (the simulator node, the LCM bridge): a Python node taking the 500 Hz LegState itself spent a fifth of a
core on it. Joint states are accepted from that driver only (sensor_source, as the policy node does), by name; a
message that lacks a joint or has a non-finite angle is skipped.
"""

from __future__ import annotations

from typing import Optional

from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from ..config import load_config
from ..leg_frames import FrameTransform, LegFrames
from ..robot_description import urdf
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
            "config": "", "joint_state_topic": "/joint_states", "odom_topic": "/odom",
            "description_topic": "/robot_description",
            # the node whose joint states are accepted ("/cyberdog_sim", "/lcm_bridge"; "" pins the first one)
            "sensor_source": "",
        })
        robot = load_config(p["config"] or None).robot
        self.joint_names = list(robot.joint_names)
        self.frames = LegFrames(robot)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", LATCHED_QOS)
        description_pub = self.create_publisher(String, p["description_topic"], LATCHED_QOS)
        description_pub.publish(String(data=urdf(robot)))
        stamp = self.get_clock().now().to_msg()
        self.tf_static_pub.publish(TFMessage(transforms=[transform_msg(f, stamp) for f in self.frames.static()]))
        self.joint_source = SourceFilter(self, p["joint_state_topic"], p["sensor_source"])
        self.create_subscription(JointState, p["joint_state_topic"], filtered(self.joint_source, self._on_joints), 10)
        self.create_subscription(Odometry, p["odom_topic"], self._on_odometry, 10)
        self.get_logger().info(f"{robot.name}: robot description on {p['description_topic']}, the legs' /tf from "
                               f"{p['joint_state_topic']}, odom -> base_link from {p['odom_topic']}")

    def _on_odometry(self, msg: Odometry) -> None:
        self.tf_pub.publish(TFMessage(transforms=[odometry_transform(msg)]))

    def _on_joints(self, msg: JointState) -> None:
        position = dict(zip(msg.name, msg.position))
        missing = [n for n in self.joint_names if n not in position]
        try:
            if missing or len(msg.position) != len(msg.name):
                raise ValueError(f"joints missing or without a position: {missing or 'lengths differ'}")
            transforms = self.frames.moving_transforms([position[n] for n in self.joint_names])
        except ValueError as exc:
            self.get_logger().warning(f"joint state skipped: {exc}", throttle_duration_sec=1.0)
            return
        self.tf_pub.publish(TFMessage(transforms=[transform_msg(f, msg.header.stamp) for f in transforms]))


def main(args: Optional[list[str]] = None) -> None:
    run_node(RobotStateNode, args, refuse=(ValueError, OSError))


if __name__ == "__main__":
    main()
