"""Control-tick timing statistics: how regular the 50 Hz tick is (jitter), how long the tick's own work takes
(the overhead on top of inference, which runs off the tick, plus any wait for a late plan), how old the
newest sensor sample is when the command that uses it leaves, and how far apart, on the robot's clock, the joint
samples of consecutive ticks are. Kept over a rolling window so diagnostics show the recent behaviour."""

from __future__ import annotations

import numpy as np


class RollingStats:
    """The last `size` samples of one quantity, in a preallocated ring."""

    def __init__(self, size: int = 1000) -> None:
        self._values = np.zeros(size)
        self._count = 0

    def add(self, value: float) -> None:
        self._values[self._count % len(self._values)] = value
        self._count += 1

    def percentile(self, q: float) -> float:
        n = len(self)
        return float(np.percentile(self._values[:n], q)) if n else float("nan")

    def std(self) -> float:
        n = len(self)
        return float(np.std(self._values[:n])) if n else float("nan")

    def robust_std(self) -> float:
        """Half the spread between the 15.9th and 84.1st percentiles: the standard deviation of normal samples,
        untouched by a few outliers (one sample of a clock jump made the plain std of 1000 samples read 227 s)."""
        n = len(self)
        if not n:
            return float("nan")
        low, high = np.percentile(self._values[:n], [15.87, 84.13])
        return float(high - low) / 2.0

    def __len__(self) -> int:
        return min(self._count, len(self._values))


class TickTiming:
    """Jitter (|actual - nominal period|, where a tick that had to wait for its plan counts as starting that much
    later), tick compute time (start to publish, the wait included) and sensor age, all in milliseconds."""

    def __init__(self, period_s: float, window: int = 1000) -> None:
        self.period_s = period_s
        self.jitter_ms = RollingStats(window)
        self.compute_ms = RollingStats(window)
        self.sensor_age_ms = RollingStats(window)
        self.sample_spacing_ms = RollingStats(window)
        self._last_sample_stamp: float | None = None
        self.last_jitter_ms = 0.0
        self.intervals_ms = (float("nan"), float("nan"))  # start-to-start: the last tick's, the one before's
        self._last_start: float | None = None
        self._last_ready: float | None = None  # the previous tick's start plus its wait for the plan

    def tick_started(self, now_s: float) -> None:
        if self._last_start is not None:
            self.intervals_ms = ((now_s - self._last_start) * 1000.0, self.intervals_ms[0])
        self._last_start = now_s

    def tick_finished(self, now_s: float, sensor_received_s: float | None, plan_wait_s: float = 0.0) -> None:
        """now_s: when the command went out; plan_wait_s: how long the tick waited for a late plan."""
        if self._last_start is not None:
            ready = self._last_start + plan_wait_s
            if self._last_ready is not None:
                self.last_jitter_ms = abs(ready - self._last_ready - self.period_s) * 1000.0
                self.jitter_ms.add(self.last_jitter_ms)
            self._last_ready = ready
            self.compute_ms.add((now_s - self._last_start) * 1000.0)
        if sensor_received_s is not None:
            self.sensor_age_ms.add((now_s - sensor_received_s) * 1000.0)

    def sample_used(self, stamp_s: float) -> None:
        """The sender's stamp of the joint sample a tick used. The model was trained on observations exactly one
        period apart on the robot's clock; when the robot's loop and this node's tick drift against each other
        (a busy machine, no SCHED_FIFO) that spacing varies, and by 6 ms (std) the policy and the experts fall in
        the harness (`evaluation --tick-jitter 3`; docs/research/policy_eval/tracking.md, "The live graph's gap was
        its timing"). A repeated sample
        (no new one since the last tick) counts as 0 ms apart. The spread is reported as a robust std
        (RollingStats.robust_std): one bad stamp must not read as seconds of jitter for the next 1000 ticks."""
        if self._last_sample_stamp is not None:
            self.sample_spacing_ms.add((stamp_s - self._last_sample_stamp) * 1000.0)
        self._last_sample_stamp = stamp_s

    def summary(self) -> dict[str, float]:
        return {"jitter_p50_ms": self.jitter_ms.percentile(50), "jitter_p99_ms": self.jitter_ms.percentile(99),
                "tick_compute_p50_ms": self.compute_ms.percentile(50),
                "tick_compute_p99_ms": self.compute_ms.percentile(99),
                "sensor_to_command_p50_ms": self.sensor_age_ms.percentile(50),
                "sensor_to_command_p99_ms": self.sensor_age_ms.percentile(99),
                "sample_spacing_p50_ms": self.sample_spacing_ms.percentile(50),
                "sample_spacing_std_ms": self.sample_spacing_ms.robust_std()}
