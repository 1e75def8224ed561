"""The DiffuseLoco graph on the CyberDog 2 (the LCM bridge provides the joint and IMU topics):
`ros2 launch diffuseloco_bringup robot.launch.py model:=/path/policy.onnx record:=ros2bag`."""

from diffuseloco_bringup.launch_description import describe


def generate_launch_description():
    return describe("robot")
