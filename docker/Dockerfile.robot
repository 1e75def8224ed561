# DiffuseLoco-ROS for the CyberDog 2's onboard NX board (arm64). Build on an arm64 host or with buildx:
#   docker buildx build --platform linux/arm64 -f docker/Dockerfile.robot -t diffuseloco-robot .
# Run on the robot (host network: LCM multicast to the motion-control board and DDS; models mounted):
#   docker run --rm -it --network host --ipc host -v /home/mi/models:/models:ro diffuseloco-robot
# See docs/deployment.md. NOT BUILT in this repository's CI (no Docker engine there): verify on an arm64 host.
FROM ros:jazzy-ros-base-noble

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV ROS_DISTRO=jazzy \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

WORKDIR /ws
# Only the robot's packages: the simulator (diffuseloco_sim) and the learning side (diffuseloco_learning, torch)
# never enter this image. Package manifests first: the rosdep layer is rebuilt only when dependencies change;
# rosdep installs ROS's joy package (teleop:=joy starts its game_controller_node).
COPY src/cyberdog_msgs/package.xml src/cyberdog_msgs/package.xml
COPY src/diffuseloco_msgs/package.xml src/diffuseloco_msgs/package.xml
COPY src/diffuseloco_policy/package.xml src/diffuseloco_policy/package.xml
COPY src/diffuseloco_bringup/package.xml src/diffuseloco_bringup/package.xml
# hadolint ignore=DL3008
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src --ignore-src -y --rosdistro "${ROS_DISTRO}" \
    && apt-get install -y --no-install-recommends python3-pip ros-jazzy-launch-ros ros-jazzy-rmw-fastrtps-cpp \
    && rm -rf /var/lib/apt/lists/*

# Python dependencies rosdep does not know: onnx and onnxruntime (aarch64 wheels on PyPI; the model file's
# metadata and the sampler), lcm (the bridge), rosbags (recorder), foxglove-sdk (live view), websockets (web
# teleop). numpy stays ROS's own (1.26, same ABI as rclpy).
# tests/test_robot_install.py checks that these and package.xml provide every import of the robot's nodes.
COPY docker/requirements-robot.txt /tmp/requirements-robot.txt
RUN python3 -m pip install -r /tmp/requirements-robot.txt "numpy<2"

COPY src/cyberdog_msgs /ws/src/cyberdog_msgs
COPY src/diffuseloco_msgs /ws/src/diffuseloco_msgs
COPY src/diffuseloco_policy /ws/src/diffuseloco_policy
COPY src/diffuseloco_bringup /ws/src/diffuseloco_bringup
# src/diffuseloco_policy/models links to ../../models: the shipped policies, installed to share/ by colcon
COPY models /ws/models
RUN . "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --merge-install --event-handlers console_direct- \
    && rm -rf build log

COPY docker/entrypoint.sh /entrypoint.sh
ENV RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
ENTRYPOINT ["/entrypoint.sh"]
# The shipped model by default (share/diffuseloco_policy/models); mount others and pass model:=/models/NAME.onnx
CMD ["ros2", "launch", "diffuseloco_bringup", "robot.launch.py"]
