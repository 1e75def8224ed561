"""Thin rclpy adapters around the ROS-free core: message conversion, parameters, timers. No logic lives here
that a test of the core could not reach."""
