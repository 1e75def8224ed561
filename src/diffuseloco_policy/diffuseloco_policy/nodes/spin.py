"""The one way our nodes start and stop: init, build, spin until Ctrl-C / SIGTERM / shutdown, clean up."""

from __future__ import annotations

import threading
from typing import Callable, Optional

import rclpy
import rclpy.executors
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ..realtime import use_fifo_scheduling
from .parameters import ParameterTypeError


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None,
             refuse: tuple[type[BaseException], ...] = ()) -> None:
    """Spin the node `factory` builds. Exceptions in `refuse` raised while building it end the process with
    exit code 2 and the reason logged (a node that must not start, e.g. a mismatched model); so does a parameter
    of the wrong type, in every node."""
    rclpy.init(args=args)
    try:
        node = factory()
    except (ParameterTypeError, *refuse) as exc:
        rclpy.logging.get_logger("diffuseloco").fatal(f"refusing to start: {exc}")
        rclpy.try_shutdown()
        raise SystemExit(2) from exc
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        destroy_quietly(node)
        rclpy.try_shutdown()


def destroy_quietly(node: Node) -> None:
    """Destroy the node; a second Ctrl-C while it cleans up (a launcher that forwards SIGINT to a node the terminal
    already interrupted sends two) ends the clean-up early instead of printing a traceback: the process is exiting
    and its threads go with it."""
    try:
        node.destroy_node()
    except KeyboardInterrupt:
        pass


def use_realtime_scheduling(node: Node, priority: int) -> None:
    """SCHED_FIFO for all of the node's process (0: off); call it after the node started its threads."""
    result = use_fifo_scheduling(priority)
    log = node.get_logger().info if result.applied or priority == 0 else node.get_logger().warning
    log(result.message)


class BackgroundNode:
    """A node in an rclpy context of its own, spun by a daemon thread: for tools and tests that watch or drive a
    graph while their main thread does other things (waiting, timing, reading files). close() undoes it all."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context is shutting down under us
                return

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)
