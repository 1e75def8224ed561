"""ament_python package: built by colcon on the robot, or `pip install -e` into the project's virtual env."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffuseloco_policy"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    package_data={PACKAGE: ["configs/*.yaml", "sim/assets/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/configs", glob(f"{PACKAGE}/configs/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="DiffuseLoco-ROS maintainers",
    maintainer_email="maintainers@diffuseloco-ros.dev",
    description="DiffuseLoco diffusion locomotion policy, simulator and ROS 2 nodes for the CyberDog 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = diffuseloco_policy.nodes.sim_node:main",
            "policy_node = diffuseloco_policy.nodes.policy_node:main",
            "teleop_node = diffuseloco_policy.nodes.teleop_node:main",
            "keyboard_teleop = diffuseloco_policy.nodes.keyboard_teleop:main",
            "script_teleop = diffuseloco_policy.nodes.script_teleop:main",
            "recorder = diffuseloco_policy.nodes.recorder:main",
            "lcm_bridge = diffuseloco_policy.nodes.lcm_bridge_node:main",
            "bag2dataset = diffuseloco_policy.data.bag2dataset:main",
        ],
    },
)
