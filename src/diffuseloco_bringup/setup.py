"""ament_python package holding launch files and configs; installs them under share/ for `ros2 launch`."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffuseloco_bringup"

setup(
    name=PACKAGE,
    version="0.2.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/sros2", glob("config/sros2/*.xml")),
        # the live view's layouts (scripts/write_layouts.py)
        (f"share/{PACKAGE}/config/foxglove", glob("config/foxglove/*.json")),
        (f"share/{PACKAGE}/config/plotjuggler", glob("config/plotjuggler/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="DiffuseLoco-ROS maintainers",
    maintainer_email="maintainers@diffuseloco-ros.dev",
    description="Launch files, configs and a dev runner for DiffuseLoco-ROS",
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
