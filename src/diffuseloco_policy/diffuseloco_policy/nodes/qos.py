"""QoS of the policy node's topics, so that no sender can silently fail to reach it.

Why: ROS drops every message between a publisher and a subscription whose QoS are incompatible, and rclpy says so
only with a warning at discovery. A STOP (or any skill command) from a best-effort publisher never reached our
reliable subscription. Command subscriptions are therefore best-effort with a keep-last queue: a best-effort
subscription receives from reliable and best-effort publishers alike (volatile durability accepts every
publisher too), and commands are streamed, so a lost one is replaced by the next (the command watchdog covers a
stream that stops). Every endpoint also reports an incompatibility that remains (a transient-local subscriber of
our motor commands, for one) as an ERROR in the log and in /diagnostics (QosWatch).
"""

from __future__ import annotations

from typing import Callable

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy

COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)


class QosWatch:
    """Collects QoS incompatibilities of a node's endpoints: logged as errors, kept for diagnostics."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.problems: dict[str, str] = {}

    def subscription(self, topic: str) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(incompatible_qos=self._report(topic, "our subscription", "publisher"))

    def publisher(self, topic: str) -> PublisherEventCallbacks:
        return PublisherEventCallbacks(incompatible_qos=self._report(topic, "our publisher", "subscription"))

    def _report(self, topic: str, ours: str, theirs: str) -> Callable:
        def callback(event) -> None:
            try:
                policy = QoSPolicyKind(int(event.last_policy_kind)).name
            except ValueError:
                policy = str(event.last_policy_kind)
            text = (f"QoS mismatch on {topic}: {event.total_count} {theirs}(s) incompatible with {ours} "
                    f"(policy {policy}); no message passes between them")
            self.problems[topic] = text
            self.node.get_logger().error(text)
        return callback

    def summary(self) -> str:
        return "; ".join(self.problems.values())
