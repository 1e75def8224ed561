"""ament_python package: the MuJoCo CyberDog 2 that stands in for the robot (dev machines only, never the robot).

Its simulator node publishes the robot's topics and takes its motor commands; the LCM robot peer plays the
motor-control board behind the LCM bridge. The MJCF goes to share/diffuseloco_sim/assets.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffuseloco_sim"

setup(
    name=PACKAGE,
    version="0.2.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/assets", glob("assets/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="DiffuseLoco-ROS maintainers",
    maintainer_email="maintainers@diffuseloco-ros.dev",
    description="MuJoCo CyberDog 2 behind the motor SDK's interface, its ROS 2 node and an LCM robot peer",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = diffuseloco_sim.sim_node:main",
            "lcm_robot_peer = diffuseloco_sim.lcm_robot_peer:main",
        ],
    },
)
