"""Inference off the control tick's critical path.

The delayed-input design makes this possible: the action for tick t depends on s[t-8..t-1] only, so the
sampler for tick t can start as soon as s[t-1] is in the history (at tick t-1) and has a whole control period to
finish. `InferenceWorker` runs the sampler in one background thread (onnxruntime and torch release the GIL while
they compute); the control tick only submits a window and, one tick later, takes the result. A result that is
not ready at its tick is a deadline miss, counted, and the caller falls back to the previous plan.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class InferenceResult:
    """An action chunk for the tick it was submitted for, and how long the sampler took."""

    tick: int
    chunk: Optional[np.ndarray]
    latency_s: float
    error: Optional[str] = None


class InferenceWorker:
    """One background thread, one job at a time; a new submit replaces a job that has not started."""

    def __init__(self, sampler: Sampler, reset: Optional[Callable[[], None]] = None) -> None:
        """reset: forgets the sampler's state (a warm start's previous chunk); run in the worker thread before a
        job submitted with fresh=True, so it can never race with a sample in flight."""
        self._sampler = sampler
        self._reset = reset or (lambda: None)
        self._cond = threading.Condition()
        self._job: Optional[tuple[int, np.ndarray, np.ndarray, bool]] = None
        self._result: Optional[InferenceResult] = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="policy-inference", daemon=True)
        self._thread.start()

    def submit(self, tick: int, obs_window: np.ndarray, goal_window: np.ndarray, fresh: bool = False) -> bool:
        """Queue the sampler for `tick` (copies of the windows); False if the previous job is still running.
        fresh: reset the sampler first (kept if this job replaces an unstarted fresh one)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("inference worker is closed")
            busy = self._busy
            fresh = fresh or (self._job is not None and self._job[3])
            self._job = (tick, obs_window.copy(), goal_window.copy(), fresh)
            self._cond.notify()
            return not busy

    def take(self, tick: int, wait_s: float = 0.0) -> Optional[InferenceResult]:
        """The newest finished result for `tick` or an earlier tick, waiting at most wait_s for the one for
        `tick`. A late result (result.tick < tick) is still the freshest plan there is: the caller steps into it
        by the ticks it is late. None if nothing has finished since the last take."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                if self._result is not None and self._result.tick == tick:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._result is None or self._result.tick > tick:
                return None
            result, self._result = self._result, None
            return result

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no job is queued or running (True), or timeout_s passed (False). For simulation
        harnesses that advance simulated time only once the sampler has seen the state it was given."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._job is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                tick, obs, goal, fresh = self._job
                self._job, self._busy = None, True
            if fresh:
                self._reset()
            result = self._sample(tick, obs, goal)
            with self._cond:
                self._result, self._busy = result, False
                self._cond.notify_all()

    def _sample(self, tick: int, obs: np.ndarray, goal: np.ndarray) -> InferenceResult:
        start = time.perf_counter()
        try:
            chunk = np.asarray(self._sampler(obs, goal), dtype=np.float64)
            error = None if np.all(np.isfinite(chunk)) else "sampler returned non-finite actions"
        except Exception as exc:  # noqa: BLE001 - any sampler failure must become a reported fault, not a dead thread
            chunk, error = None, f"sampler failed: {type(exc).__name__}: {exc}"
        return InferenceResult(tick, None if error else chunk, time.perf_counter() - start, error)
