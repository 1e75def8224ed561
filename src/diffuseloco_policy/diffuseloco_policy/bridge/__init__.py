"""The CyberDog 2 motor SDK (LCM) behind our ROS interfaces: a ROS-free core (lcm_bridge), the generated LCM
types (lcm_types) and a robot-playing LCM peer for tests (lcm_robot_peer). The ROS node is nodes/lcm_bridge_node."""
