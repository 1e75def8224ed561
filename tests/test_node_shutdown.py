"""How every node stops (nodes/spin.py): a second Ctrl-C during the clean-up ends it without a traceback."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.node import Node

from diffuseloco_policy.nodes.spin import run_node


class InterruptedWhileCleaningUp(Node):
    """Stops itself as an external shutdown would, then gets a Ctrl-C while it is being destroyed."""

    destroyed = False

    def __init__(self) -> None:
        super().__init__("interrupted_while_cleaning_up")
        self.create_timer(0.01, rclpy.shutdown)

    def destroy_node(self) -> None:
        type(self).destroyed = True
        super().destroy_node()
        raise KeyboardInterrupt


def test_a_second_ctrl_c_during_the_clean_up_ends_the_node_quietly():
    try:
        run_node(InterruptedWhileCleaningUp)
    except KeyboardInterrupt:   # caught here, or it would stop the whole test run
        pytest.fail("the Ctrl-C during the clean-up escaped run_node")
    assert InterruptedWhileCleaningUp.destroyed
    assert not rclpy.ok()
