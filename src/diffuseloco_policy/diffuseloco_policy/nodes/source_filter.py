"""Messages accepted from one known publisher per topic: the motor commands from the stack's policy node, each
sensor stream from its driver (the LCM bridge on the robot, the simulator node in simulation).

Why: on a ROS domain anyone may publish on any topic. A foreign node publishing MotorCommand was obeyed beside
the policy's commands (kp 200 / kd 10, or limp kp = kd = 0, which tipped the dog), and a publisher stamping its
sensor messages slightly ahead of the real ones replaced the sensor stream. Every message carries its publisher's
gid (rclpy MessageInfo); the graph says which node each publisher gid belongs to. A message from any other
publisher than the configured node's is dropped, counted and reported as an ERROR naming the intruder (the safe
reaction: the robot goes on with what the stack sends, and the operator is told).

This stops mistakes and stray tools, not an attacker who names a node after ours: that is what SROS2's access
control is for (docs/deployment.md, "Who may command the robot").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from rclpy.node import Node

from ..log_text import shorten


UNNAMED = "a publisher discovery has not named"


def node_fqn(name: str, namespace: str) -> str:
    return f"{namespace.rstrip('/')}/{name}"


@dataclass
class _Intruder:
    node: str
    dropped: int = 0


@dataclass
class SourceFilter:
    """For one subscription: which publisher gids are the expected node's, and what others tried.

    expected: the publishing node's fully qualified name ("/lcm_bridge"); "" trusts the first publisher seen
    (each topic's first source is pinned) and still reports any second one.
    """

    node: Node
    topic: str
    expected: str
    allowed: set = field(default_factory=set)         # publisher gids of the expected node
    names: dict = field(default_factory=dict)         # gid -> node name, as the graph last showed them
    intruders: dict = field(default_factory=dict)     # gid -> _Intruder
    _pinned: Optional[str] = None
    _refreshed_at: float = -1.0
    _unnamed: dict = field(default_factory=dict)      # gid -> when its first message came, while unnamed

    REFRESH_S = 0.5           # a foreign gid re-reads the graph at most this often (it may send at 500 Hz)
    UNKNOWN_REFRESH_S = 0.02  # a gid whose node discovery has not named yet: soon again
    UNNAMED_AFTER_S = 0.25    # ... and reported as foreign if it stays unnamed this long

    def accept(self, info: dict) -> bool:
        """Whether a message with this MessageInfo comes from the expected publisher."""
        gid = _gid(info)
        if gid is None:          # an rmw without publisher gids: nothing to check against
            return True
        if gid in self.allowed:
            return True
        now = time.monotonic()
        wait = self.UNKNOWN_REFRESH_S if gid not in self.names else self.REFRESH_S
        if now - self._refreshed_at >= wait:
            self._refreshed_at = now
            self._refresh(gid)
            if gid in self.allowed:
                return True
        first_seen = self._unnamed.setdefault(gid, now) if gid not in self.names else now
        if gid in self.names or now - first_seen > self.UNNAMED_AFTER_S:
            self._note_intruder(gid)   # a known node's publisher, or one discovery has not named for long: not ours
        return False                   # (a new publisher is dropped until discovery names its node, a few ms)

    def _refresh(self, sender: bytes) -> None:
        """Re-read the topic's publishers from the graph: a gid is allowed when its node is the expected one (with
        no node configured, the node of the first message's publisher, pinned for good). DDS discovery can show
        an endpoint before its node's name ("_NODE_NAME_UNKNOWN_"): such a publisher is not judged yet."""
        publishers = self.node.get_publishers_info_by_topic(self.topic)
        self.names = {bytes(p.endpoint_gid): node_fqn(p.node_name, p.node_namespace) for p in publishers
                      if p.node_name and "_NODE_NAME_UNKNOWN_" not in p.node_name}
        if not self.expected and self._pinned is None and sender in self.names:
            self._pinned = self.names[sender]
            self.node.get_logger().info(f"{self.topic}: accepting messages from {shorten(self._pinned)} only")
        expected = self.expected or self._pinned
        self.allowed = {gid for gid, name in self.names.items() if name == expected}
        for gid, intruder in self.intruders.items():   # reported before discovery named it: name it now
            if intruder.node == UNNAMED and gid in self.names:
                intruder.node = self.names[gid]
                self.node.get_logger().error(f"the foreign publisher on {self.topic} is {shorten(intruder.node)}")

    def _note_intruder(self, gid: bytes) -> None:
        name = self.names.get(gid, UNNAMED)
        intruder = self.intruders.setdefault(gid, _Intruder(name))
        intruder.dropped += 1
        if intruder.dropped == 1:
            self.node.get_logger().error(
                f"foreign publisher {shorten(name)} on {self.topic}: its messages are ignored (only "
                f"{self.expected or self._pinned or 'the first publisher'} is accepted)")

    @property
    def problem(self) -> str:
        """The diagnostics text: "" while nobody else published."""
        if not self.intruders:
            return ""
        who = ", ".join(f"{shorten(i.node)} ({i.dropped} dropped)" for i in self.intruders.values())
        return f"foreign publisher on {self.topic}: {who}"


def filtered(source: SourceFilter, callback: Callable) -> Callable:
    """A subscription callback (msg, info) that passes only the expected publisher's messages to callback(msg)."""
    def on_message(msg, info) -> None:
        if source.accept(info):
            callback(msg)
    return on_message


def _gid(info: dict) -> Optional[bytes]:
    gid = (info or {}).get("publisher_gid")
    data = None if gid is None else gid.get("data")
    return None if not data else bytes(data)
