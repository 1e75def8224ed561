"""Which incoming sensor messages may replace the sample the controller uses.

A message whose stamp is not newer than the sample in use is dropped and counted: a reordered packet must not
replace newer data, and a stuck source that repeats its last message must not look fresh (staleness is
measured from the last *new* sample, so a frozen stream ends in damping). A stamp that is not a time at all
(nanoseconds outside 0..1e9, a negative second) is dropped with its reason.

Clock jumps: a source whose stamps jump back (a restart) is accepted again once nothing newer has come for
`restart_after_s`, half the stale limit by default, so that the restarted stream is in use before the sample
goes stale (with the window equal to the stale limit the monitor's stale check and the restart raced, and lost
half the time). A stamp that jumps forward, beyond what the receive clock advanced, is accepted (it is the
newest data) and remembered: if the stream then goes on along its old timeline (the jump was one bad stamp, or
the sender's clock was stepped back) it is accepted at once instead of being dropped as out of order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

NANOSECONDS_PER_SECOND = 1_000_000_000


@dataclass
class GateCounters:
    accepted: int = 0
    out_of_order: int = 0
    duplicate: int = 0
    restarts: int = 0
    invalid_stamp: int = 0
    forward_jumps: int = 0


def stamp_seconds(sec: int, nanosec: int) -> tuple[Optional[float], str]:
    """A message header's stamp in seconds, or (None, why it is not a valid time)."""
    if not 0 <= nanosec < NANOSECONDS_PER_SECOND:
        return None, f"invalid stamp: nanosec {nanosec} outside 0..999999999"
    if sec < 0:
        return None, f"invalid stamp: negative sec {sec}"
    return sec + nanosec * 1e-9, ""


class SensorGate:
    """One stream's gate; `offer` says whether a message with this stamp becomes the new sample."""

    def __init__(self, stale_after_s: float, restart_after_s: Optional[float] = None) -> None:
        self.stale_after_s = stale_after_s
        self.restart_after_s = stale_after_s / 2.0 if restart_after_s is None else restart_after_s
        self.counters = GateCounters()
        self._stamp: Optional[float] = None
        self._received: Optional[float] = None
        self._before_jump: Optional[tuple[float, float]] = None  # (stamp, received) accepted before a forward jump

    def offer_header(self, sec: int, nanosec: int, received: float) -> tuple[bool, str, Optional[float]]:
        """offer() for a raw header stamp: (accept, note, stamp in seconds or None if it is invalid)."""
        stamp, why = stamp_seconds(sec, nanosec)
        if stamp is None:
            self.counters.invalid_stamp += 1
            return False, f"{why}: message dropped", None
        accepted, note = self.offer(stamp, received)
        return accepted, note, stamp

    def offer(self, stamp: float, received: float) -> tuple[bool, str]:
        """(accept, note): note is non-empty when something noteworthy happened (a drop, a jump or a restart)."""
        if self._stamp is None:
            return self._accept(stamp, received, "")
        if stamp > self._stamp:
            return self._newer(stamp, received)
        if self._back_on_old_timeline(stamp, received):
            self._before_jump = None
            return self._accept(stamp, received, f"stamps back on their timeline before the forward jump "
                                                 f"(went back {self._stamp - stamp:.3f} s)")
        if stamp < self._stamp and received - self._received > self.restart_after_s:  # a repeat is no restart
            self.counters.restarts += 1
            return self._accept(stamp, received, f"sensor source restarted (stamp went back {self._stamp - stamp:.3f} s)")
        if stamp == self._stamp:
            self.counters.duplicate += 1
            return False, "duplicate stamp dropped"
        self.counters.out_of_order += 1
        return False, f"out-of-order message dropped ({self._stamp - stamp:.3f} s older than the one in use)"

    def _newer(self, stamp: float, received: float) -> tuple[bool, str]:
        """A newer stamp; one that ran ahead of the receive clock by more than the stale limit is a forward jump."""
        ahead = (stamp - self._stamp) - (received - self._received)
        if ahead <= self.stale_after_s:
            self._before_jump = None  # a newer stamp on the current timeline confirms it
            return self._accept(stamp, received, "")
        self.counters.forward_jumps += 1
        self._before_jump = (self._stamp, self._received)
        return self._accept(stamp, received, f"stamp jumped forward {ahead:.3f} s beyond the receive clock")

    def _back_on_old_timeline(self, stamp: float, received: float) -> bool:
        """After a forward jump: whether this stamp continues the stream as it ran before the jump."""
        if self._before_jump is None:
            return False
        old_stamp, old_received = self._before_jump
        return stamp > old_stamp and abs((stamp - old_stamp) - (received - old_received)) <= self.stale_after_s

    def _accept(self, stamp: float, received: float, note: str) -> tuple[bool, str]:
        self._stamp, self._received = stamp, received
        self.counters.accepted += 1
        return True, note
