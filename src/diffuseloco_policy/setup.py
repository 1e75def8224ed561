"""ament_python package: built by colcon on the robot, or `pip install -e` into the project's virtual env.

The robot package: the ROS-free core (observation history, normalizer, ONNX runtime, policy loop, controller,
safety, teleop logic, motor-SDK types), the robot-side nodes and the LCM bridge. It imports neither torch, mujoco
nor zarr. Run-time files go to share/diffuseloco_policy (found through the ament index, package_files.py).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffuseloco_policy"

setup(
    name=PACKAGE,
    version="0.2.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/configs", glob("configs/*.yaml")),
        # models/ links to the repository's models/: the shipped policies and their cards
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md")),
        # the web teleop's page (nodes/web_teleop.py serves it)
        (f"share/{PACKAGE}/web", glob("web/*.html")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="DiffuseLoco-ROS maintainers",
    maintainer_email="maintainers@diffuseloco-ros.dev",
    description="DiffuseLoco diffusion locomotion policy for the CyberDog 2: the robot-side core and ROS 2 nodes",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = diffuseloco_policy.nodes.policy_node:main",
            "teleop_node = diffuseloco_policy.nodes.teleop_node:main",
            "joy_driver = diffuseloco_policy.nodes.joy_driver:main",
            "keyboard_teleop = diffuseloco_policy.nodes.keyboard_teleop:main",
            "script_teleop = diffuseloco_policy.nodes.script_teleop:main",
            "recorder = diffuseloco_policy.nodes.recorder:main",
            "lcm_bridge = diffuseloco_policy.nodes.lcm_bridge_node:main",
            "robot_state = diffuseloco_policy.nodes.robot_state:main",
            "live_view = diffuseloco_policy.nodes.live_view:main",
            "web_teleop = diffuseloco_policy.nodes.web_teleop:main",
            "bag_timing = diffuseloco_policy.bag_timing:main",
        ],
    },
)
