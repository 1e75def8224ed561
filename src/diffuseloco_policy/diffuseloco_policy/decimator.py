"""Publishing a 500 Hz stream at a lower rate on its own clock: the first sample at least one period (less 1 ms
of stamp jitter) after the last one let through. A clock that steps back starts over.

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
        self._last: Optional[float] = None

    def due(self, t: float) -> bool:
        """Whether the sample at time t (s) is let through; if so it becomes the last one."""
        last = self._last
        if last is None or t - last >= self.period - JITTER_S or t < last:
            self._last = t
            return True
        return False
