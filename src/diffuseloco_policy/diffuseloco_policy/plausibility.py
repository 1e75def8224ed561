"""Whether a measured rate agrees with the change of what it is the rate of: joint velocity against joint position,
gyro against attitude.

Why: a finite value within its bounds can still be false, and a false rate goes straight into the observation (a
joint velocity of 30 rad/s on every joint while nothing moved flipped the dog). A real encoder's velocity is its
differentiated position, and the IMU's attitude is its integrated gyro, so over a short window the rate must
integrate to the change, up to the differentiator's filter lag and the error of integrating samples taken a tick
apart. One interval's residual (change minus trapezoid integral of the rate) is noisy; their sum over a window
(config.SafetyConfig.consistency_window) is not, and a lying rate piles up in it tick after tick.

Plain numpy, no clock of its own: the caller passes the sender's stamps.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Difference = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowSums:
    """Over the window: what the rate integrates to, what the measured value changed by, and the time covered."""

    integral: np.ndarray
    change: np.ndarray
    span_s: float

    @property
    def residual(self) -> np.ndarray:
        return self.change - self.integral


class RateConsistency:
    """Sums, over the last `window_s` seconds of samples, the integral of a rate and the change of its value."""

    def __init__(self, window_s: float, difference: Difference, max_interval_s: Optional[float] = None) -> None:
        """difference(previous value, value): the change between two samples, in the rate's units times seconds.
        max_interval_s: the longest interval between two samples whose rates are integrated (default: the window);
        a longer one starts a new window, since the trapezoid of two rates that far apart says little about a
        fast motion between them (a trotting knee over a 60 ms stall of the process: 0.2 rad of error)."""
        self.window_s = window_s
        self.max_interval_s = window_s if max_interval_s is None else max_interval_s
        self.difference = difference
        self._intervals: deque[tuple[float, float, np.ndarray, np.ndarray]] = deque()  # (start, end, integral, change)
        self._last: Optional[tuple[float, np.ndarray, np.ndarray]] = None            # (stamp, value, rate)

    def reset(self) -> None:
        """Forget every sample (a restarted source, a gap): the next one starts a new window."""
        self._intervals.clear()
        self._last = None

    def update(self, stamp: float, value: np.ndarray, rate: np.ndarray) -> Optional[WindowSums]:
        """Add a sample (finite values); returns the window's sums, or None while there is nothing to compare.

        The same sample again (a tick without a new message) adds nothing. A gap longer than the window (a stale
        stream, a source restart, a forward stamp jump) starts a new window: what happened in it is unknown.
        """
        if self._last is not None:
            dt = stamp - self._last[0]
            if dt == 0.0:
                return self._sums()
            if not 0.0 < dt <= self.max_interval_s:
                self.reset()
        if self._last is not None:
            last_stamp, last_value, last_rate = self._last
            dt = stamp - last_stamp
            self._intervals.append((last_stamp, stamp, 0.5 * (last_rate + rate) * dt,
                                    self.difference(last_value, value)))
        self._last = (stamp, np.array(value, dtype=np.float64), np.array(rate, dtype=np.float64))
        while self._intervals and stamp - self._intervals[0][0] > self.window_s + 1e-9:
            self._intervals.popleft()
        return self._sums()

    def _sums(self) -> Optional[WindowSums]:
        if not self._intervals:
            return None
        integral = np.sum([i[2] for i in self._intervals], axis=0)
        change = np.sum([i[3] for i in self._intervals], axis=0)
        return WindowSums(integral, change, self._intervals[-1][1] - self._intervals[0][0])


def joint_change(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    return current - previous


def body_rotation(previous_wxyz: np.ndarray, current_wxyz: np.ndarray) -> np.ndarray:
    """The rotation from one body-in-world attitude to the next, as a body-frame rotation vector (rad): what a
    body-frame gyro integrates to (the quaternion derivative q' = q (0, w) / 2, integrated over the interval)."""
    p = np.asarray(previous_wxyz, dtype=np.float64) / np.linalg.norm(previous_wxyz)
    c = np.asarray(current_wxyz, dtype=np.float64) / np.linalg.norm(current_wxyz)
    pw, pv = p[0], -p[1:]                       # the conjugate of the previous attitude ...
    cw, cv = c[0], c[1:]                        # ... times the current one
    w = pw * cw - pv @ cv
    v = pw * cv + cw * pv + np.cross(pv, cv)
    if w < 0.0:                                 # q and -q are the same attitude: take the short way round
        w, v = -w, -v
    sine = float(np.linalg.norm(v))
    if sine < 1e-12:
        return 2.0 * v
    return (2.0 * math.atan2(sine, w) / sine) * v
