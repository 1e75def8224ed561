"""Which incoming sensor messages may replace the sample the controller uses.

A message whose stamp is not newer than the sample in use is dropped and counted: a reordered packet must not
replace newer data, and a stuck source that repeats its last message must not look fresh (staleness is
measured from the last *new* sample, so a frozen stream ends in damping). A source that restarts (stamps jump
back) is accepted again once the old stream has gone stale, with the restart reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class GateCounters:
    accepted: int = 0
    out_of_order: int = 0
    duplicate: int = 0
    restarts: int = 0


class SensorGate:
    """One stream's gate; `offer` says whether a message with this stamp becomes the new sample."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.counters = GateCounters()
        self._stamp: Optional[float] = None
        self._received: Optional[float] = None

    def offer(self, stamp: float, received: float) -> tuple[bool, str]:
        """(accept, note): note is non-empty when something noteworthy happened (a drop or a restart)."""
        if self._stamp is None or stamp > self._stamp:
            return self._accept(stamp, received, "")
        if self._received is not None and received - self._received > self.stale_after_s:
            self.counters.restarts += 1
            return self._accept(stamp, received, f"sensor source restarted (stamp went back {self._stamp - stamp:.3f} s)")
        if stamp == self._stamp:
            self.counters.duplicate += 1
            return False, "duplicate stamp dropped"
        self.counters.out_of_order += 1
        return False, f"out-of-order message dropped ({self._stamp - stamp:.3f} s older than the one in use)"

    def _accept(self, stamp: float, received: float, note: str) -> tuple[bool, str]:
        self._stamp, self._received = stamp, received
        self.counters.accepted += 1
        return True, note
