"""Bringup for DiffuseLoco-ROS: the node graph (graph.py) that the launch files and the launch-free dev runner
share, the parameter files under config/, and the demo."""
