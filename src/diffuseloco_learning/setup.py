"""ament_python package: the learning side (dev machines and GPU servers, never the robot).

Expert gait controllers -> datasets (generation, bag conversion) -> training (torch) -> ONNX export -> evaluation
in the simulator. Presets go to share/diffuseloco_learning/configs.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "diffuseloco_learning"

setup(
    name=PACKAGE,
    version="0.2.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/configs", glob("configs/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="DiffuseLoco-ROS maintainers",
    maintainer_email="maintainers@diffuseloco-ros.dev",
    description="Expert gaits, datasets, training, ONNX export and evaluation for DiffuseLoco on the CyberDog 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "bag2dataset = diffuseloco_learning.data.bag2dataset:main",
        ],
    },
)
