"""ROS message <-> core data conversions, in one module so every node converts the same way.

Joint arrays in cyberdog_msgs are in SDK order and SDK sign convention; the core's model-convention values
are converted with joints.JointConvention, never here by hand. Quaternions: ROS stores (x, y, z, w); the core
and the CyberDog state estimator use (w, x, y, z).
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from cyberdog_msgs.msg import LegState, MotorCommand
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Imu
from sensor_msgs.msg import JointState as JointStateMsg

from ..motor_sdk import ImuReading, JointState
from ..motor_sdk import MotorCommand as SdkMotorCommand

NUM_JOINTS = 12


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def leg_state_msg(state: JointState, stamp: Time, frame_id: str = "base",
                  foot_forces: np.ndarray | None = None) -> LegState:
    """foot_forces: (4, 3) ground reaction per leg, stored in force_est like the robot's estimate."""
    msg = LegState()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.q, msg.qd, msg.tau_est = (np.asarray(a, dtype=np.float32) for a in (state.q, state.qd, state.tau_est))
    if foot_forces is not None:
        msg.force_est = np.asarray(foot_forces, dtype=np.float32).reshape(12)
    return msg


def joint_state_from_msg(msg: LegState) -> JointState:
    """LegState -> SDK-convention arrays (float64). Wrong lengths raise ValueError: the caller reports it."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (msg.q, msg.qd, msg.tau_est)]
    if any(a.shape != (NUM_JOINTS,) for a in arrays):
        raise ValueError(f"LegState arrays must have {NUM_JOINTS} entries, got {[a.shape for a in arrays]}")
    return JointState(*arrays)


def joint_state_msg(state: JointState, names, stamp: Time) -> JointStateMsg:
    """sensor_msgs/JointState: the joints by name, q (rad), qd (rad/s) and tau_est (N m) as LegState carries
    them, in the SDK convention the robot description's axes are written in (robot_description.py)."""
    msg = JointStateMsg(name=list(names), position=np.asarray(state.q, dtype=np.float64).tolist(),
                        velocity=np.asarray(state.qd, dtype=np.float64).tolist(),
                        effort=np.asarray(state.tau_est, dtype=np.float64).tolist())
    msg.header.stamp = stamp
    return msg


def imu_msg(reading: ImuReading, stamp: Time, frame_id: str = "imu_link") -> Imu:
    msg = Imu()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    w, x, y, z = (float(v) for v in reading.quaternion)
    msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = w, x, y, z
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in reading.gyro)
    a = reading.accelerometer
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in a)
    return msg


def body_velocity_msg(velocity: np.ndarray, stamp: Time, frame_id: str = "base") -> TwistStamped:
    """The state estimator's vBody (body frame, m/s) as twist.linear; the angular part stays zero (the IMU
    carries the gyro)."""
    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in velocity)
    return msg


def body_velocity_from_msg(msg: TwistStamped) -> np.ndarray:
    v = msg.twist.linear
    return np.array([v.x, v.y, v.z])


def imu_reading_from_msg(msg: Imu) -> ImuReading:
    o, g, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
    return ImuReading(np.array([o.w, o.x, o.y, o.z]), np.array([g.x, g.y, g.z]), np.array([a.x, a.y, a.z]))


def motor_command_msg(cmd: SdkMotorCommand, stamp: Time) -> MotorCommand:
    msg = MotorCommand()
    msg.header.stamp = stamp
    msg.q_des, msg.qd_des, msg.kp_des, msg.kd_des, msg.tau_des = (
        np.asarray(a, dtype=np.float32) for a in (cmd.q_des, cmd.qd_des, cmd.kp, cmd.kd, cmd.tau))
    return msg


def motor_command_from_msg(msg: MotorCommand) -> SdkMotorCommand:
    arrays = [np.asarray(a, dtype=np.float64) for a in (msg.q_des, msg.qd_des, msg.kp_des, msg.kd_des, msg.tau_des)]
    if any(a.shape != (NUM_JOINTS,) for a in arrays):
        raise ValueError(f"MotorCommand arrays must have {NUM_JOINTS} entries")
    return SdkMotorCommand(*arrays)


ODOM_FRAME = "odom"        # REP 105: continuous, drifting world-fixed frame
BASE_FRAME = "base_link"   # the trunk (diffuseloco_policy/body.py)


def odometry_msg(position: np.ndarray, quaternion_wxyz: np.ndarray, linear_body: np.ndarray,
                 angular_body: np.ndarray, stamp: Time, frame_id: str = ODOM_FRAME,
                 child_frame_id: str = BASE_FRAME) -> Odometry:
    """nav_msgs/Odometry: the trunk's pose in `frame_id` (m, unit quaternion) and its twist in `child_frame_id`,
    the body frame (m/s, rad/s), as REP 105 and the message define them. The covariances stay zero: neither
    source (simulator ground truth, the robot's estimator) reports one."""
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, frame_id, child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    w, x, y, z = (float(v) for v in quaternion_wxyz)
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = w, x, y, z
    twist = msg.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in linear_body)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in angular_body)
    return msg
