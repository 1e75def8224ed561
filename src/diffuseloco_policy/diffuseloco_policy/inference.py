"""Inference off the control tick's critical path.

The delayed-input design makes this possible: the action for tick t depends on s[t-8..t-1] only, so the
sampler for tick t can start as soon as s[t-1] is in the history (at tick t-1) and has a whole control period to
finish. `InferenceWorker` runs the sampler in one background thread (onnxruntime and torch release the GIL while
they compute); the control tick only submits a window and, one tick later, takes the result, waiting for it at most
a small budget (the policy node's inference_wait_ms). A result that is not ready by then is a deadline miss,
counted, and the caller falls back to the previous plan. Each result carries when its job was submitted, started
and finished (`JobTimes`), so a miss can be told apart: a tick that came early after a late one (little time
since the submit), a worker that could not start (queue delay), or a slow sampler.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class JobTimes:
    """When one sampler job was submitted, started and finished (time.monotonic() seconds; None: not yet). For
    deadline diagnostics: start - submit is the wait for the inference thread to run (a core, the GIL; on a VM
    also the host running its vCPU), finish - start the sampler itself."""

    tick: int
    submitted_s: float
    started_s: Optional[float] = None
    finished_s: Optional[float] = None

    @property
    def queue_delay_s(self) -> Optional[float]:
        return None if self.started_s is None else self.started_s - self.submitted_s

    @property
    def sampler_s(self) -> Optional[float]:
        return None if self.finished_s is None or self.started_s is None else self.finished_s - self.started_s


@dataclass(frozen=True)
class InferenceResult:
    """An action chunk for the tick it was submitted for, how long the sampler took and when it ran."""

    tick: int
    chunk: Optional[np.ndarray]
    latency_s: float
    error: Optional[str] = None
    times: Optional[JobTimes] = None


class InferenceWorker:
    """One background thread, one job at a time; a new submit replaces a job that has not started."""

    def __init__(self, sampler: Sampler, reset: Optional[Callable[[], None]] = None) -> None:
        """reset: forgets the sampler's state (a warm start's previous chunk); run in the worker thread before a
        job submitted with fresh=True, so it can never race with a sample in flight."""
        self._sampler = sampler
        self._reset = reset or (lambda: None)
        self._cond = threading.Condition()
        self._job: Optional[tuple[int, np.ndarray, np.ndarray, bool, float]] = None
        self._result: Optional[InferenceResult] = None
        self._busy = False
        self._running: Optional[JobTimes] = None
        self._finished: deque[JobTimes] = deque(maxlen=4)  # the newest jobs' times, taken or not
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
            self._job = (tick, obs_window.copy(), goal_window.copy(), fresh, time.monotonic())
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

    def job_times(self, tick: int) -> Optional[JobTimes]:
        """When the newest job for `tick` was submitted, started and finished, as far as it got (queued, running or
        one of the last few finished); None if no such job is known."""
        with self._cond:
            if self._job is not None and self._job[0] == tick:
                return JobTimes(tick, self._job[4])
            if self._running is not None and self._running.tick == tick:
                return self._running
            return next((t for t in reversed(self._finished) if t.tick == tick), None)

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
                tick, obs, goal, fresh, submitted = self._job
                job = JobTimes(tick, submitted, time.monotonic())
                self._job, self._busy, self._running = None, True, job
            if fresh:
                self._reset()
            result = self._sample(job, obs, goal)
            with self._cond:
                self._result, self._busy, self._running = result, False, None
                self._finished.append(result.times)
                self._cond.notify_all()

    def _sample(self, job: JobTimes, obs: np.ndarray, goal: np.ndarray) -> InferenceResult:
        start = time.monotonic()
        try:
            chunk = np.asarray(self._sampler(obs, goal), dtype=np.float64)
            error = None if np.all(np.isfinite(chunk)) else "sampler returned non-finite actions"
        except Exception as exc:  # noqa: BLE001 - any sampler failure must become a reported fault, not a dead thread
            chunk, error = None, f"sampler failed: {type(exc).__name__}: {exc}"
        finish = time.monotonic()
        return InferenceResult(job.tick, None if error else chunk, finish - start, error,
                               JobTimes(job.tick, job.submitted_s, job.started_s, finish))


def describe_job(job: Optional[JobTimes], take_s: float, now_s: float) -> str:
    """How the hand-over of one sampler job went, relative to the control tick's take at take_s (monotonic s),
    for a deadline-miss log line: 'submitted 18.3 ms before the take, waited 0.1 ms for the inference thread,
    sampled for 21.0 ms, finished 2.8 ms after the take'."""
    if job is None:  # the worker forgets a queued job that a newer submit replaced: it never ran
        return "no record (still queued when the next tick replaced it, so it never ran)"
    text = f"submitted {(take_s - job.submitted_s) * 1e3:.1f} ms before the take"
    if job.started_s is None:
        return f"{text}, not started {(now_s - job.submitted_s) * 1e3:.1f} ms after submission"
    text += f", waited {job.queue_delay_s * 1e3:.1f} ms for the inference thread"
    if job.finished_s is None:
        return f"{text}, still sampling {(now_s - job.started_s) * 1e3:.1f} ms after it started"
    after = job.finished_s - take_s
    return (f"{text}, sampled for {job.sampler_s * 1e3:.1f} ms, finished {abs(after) * 1e3:.1f} ms "
            f"{'after' if after >= 0 else 'before'} the take")
