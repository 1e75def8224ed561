"""Test-wide settings: every ROS test stays on this machine and in a ROS domain of its own.

The variables are set at import, before any test imports rclpy, so no test (or process a test starts, which
inherits the environment) can discover or be discovered by another ROS graph.
"""

import os
import sys
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
# A domain private to this test session: derived from the pid so parallel sessions don't meet.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("MUJOCO_GL", "egl")

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
