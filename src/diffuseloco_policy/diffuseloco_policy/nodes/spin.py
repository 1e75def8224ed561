"""The one way our nodes start and stop: init, build, spin until Ctrl-C / SIGTERM / shutdown, clean up."""

from __future__ import annotations

from typing import Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None,
             refuse: tuple[type[BaseException], ...] = ()) -> None:
    """Spin the node `factory` builds. Exceptions in `refuse` raised while building it end the process with
    exit code 2 and the reason logged (a node that must not start, e.g. a mismatched model)."""
    rclpy.init(args=args)
    try:
        node = factory()
    except refuse as exc:
        rclpy.logging.get_logger("diffuseloco").fatal(f"refusing to start: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from exc
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
