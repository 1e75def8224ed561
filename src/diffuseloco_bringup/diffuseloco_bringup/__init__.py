"""Bringup for DiffuseLoco-ROS: where the launch files and configs live, and the launch-free dev runner."""

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
