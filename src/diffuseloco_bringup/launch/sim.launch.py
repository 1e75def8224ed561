"""The DiffuseLoco graph on the MuJoCo CyberDog 2: `ros2 launch diffuseloco_bringup sim.launch.py teleop:=keyboard`."""

from diffuseloco_bringup.launch_description import describe


def generate_launch_description():
    return describe("sim")
