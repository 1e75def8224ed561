"""Publishing a 500 Hz stream at a lower rate on its own clock: samples are let through on a grid of one period
(with 1 ms of stamp jitter), so a lost sample delays one output, not all that follow. A clock that steps back, or a
sample more than half a period late, starts the grid over, so two outputs are never closer than half a period.

Why on the samples' clock and not a timer: a timer in a busy process fires late and drops ticks, while the
samples keep their spacing; this way the decimated stream keeps its rate as long as its source does.
"""

from __future__ import annotations

from typing import Optional

JITTER_S = 1e-3


class Decimator:
    def __init__(self, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise ValueError(f"a rate must be positive, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._next: Optional[float] = None

    def due(self, t: float) -> bool:
        """Whether the sample at time t (s) is let through."""
        if self._next is None or t < self._next - 2.0 * self.period:    # the first sample, or the clock went back
            self._next = t + self.period
            return True
        if t < self._next - JITTER_S:
            return False
        self._next += self.period
        if self._next - t < 0.5 * self.period:     # this sample came late (samples lost): the grid starts over here
            self._next = t + self.period
        return True
