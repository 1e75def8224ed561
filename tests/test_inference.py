"""The hand-over between the control tick and the inference worker: when each sampler job was submitted, started
and finished, how a deadline-miss log line describes it, the tick's bounded wait for a late plan, and how the tick
timing reports that wait. The samplers are stand-ins that block or sleep, so every state (queued, running,
finished) can be observed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from diffuseloco_policy.inference import InferenceWorker, JobTimes, describe_job
from diffuseloco_policy.timing import TickTiming

OBS, GOAL = np.zeros((8, 4)), np.zeros((8, 2))


class GatedSampler:
    """Blocks each call until released; `started` is set when a call begins."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, obs, goal):
        self.started.set()
        assert self.release.wait(timeout=5.0)
        return np.zeros((4, 3))


@pytest.fixture
def gated():
    sampler = GatedSampler()
    worker = InferenceWorker(sampler)
    yield sampler, worker
    sampler.release.set()
    worker.close()


def test_a_result_carries_when_its_job_was_submitted_started_and_finished():
    worker = InferenceWorker(lambda obs, goal: (time.sleep(0.01), np.zeros((4, 3)))[1])
    try:
        before = time.monotonic()
        worker.submit(3, OBS, GOAL)
        result = worker.take(3, wait_s=1.0)
        after = time.monotonic()
    finally:
        worker.close()
    t = result.times
    assert result.tick == t.tick == 3
    assert before <= t.submitted_s <= t.started_s <= t.finished_s <= after
    assert t.sampler_s >= 0.01 and result.latency_s == pytest.approx(t.sampler_s, abs=1e-3)
    assert t.queue_delay_s == pytest.approx(t.started_s - t.submitted_s)


def test_job_times_follow_a_job_from_queued_to_running_to_finished(gated):
    sampler, worker = gated
    worker.submit(1, OBS, GOAL)
    assert sampler.started.wait(timeout=5.0)
    worker.submit(2, OBS, GOAL)                     # queued behind the running job
    running, queued = worker.job_times(1), worker.job_times(2)
    assert running.started_s is not None and running.finished_s is None and running.sampler_s is None
    assert queued.started_s is None and queued.queue_delay_s is None
    assert worker.job_times(7) is None
    sampler.release.set()
    assert worker.wait_idle(5.0)
    first, second = worker.job_times(1), worker.job_times(2)
    assert first.finished_s is not None and second.finished_s is not None
    assert second.started_s >= first.finished_s     # it waited for the first job: its queue delay shows it
    assert second.queue_delay_s >= second.started_s - first.finished_s
    assert worker.take(2).times == second           # the taken result carries the same times


def test_describe_job_says_how_far_the_job_got():
    assert describe_job(None, 1.0, 1.0).startswith("no record")
    queued = describe_job(JobTimes(5, submitted_s=10.000), take_s=10.015, now_s=10.035)
    assert queued == "submitted 15.0 ms before the take, not started 35.0 ms after submission"
    running = describe_job(JobTimes(5, 10.000, 10.0004), take_s=10.015, now_s=10.035)
    assert running.endswith("waited 0.4 ms for the inference thread, still sampling 34.6 ms after it started")
    late = describe_job(JobTimes(5, 10.000, 10.0004, 10.0194), take_s=10.015, now_s=10.035)
    assert late.endswith("sampled for 19.0 ms, finished 4.4 ms after the take")
    early = describe_job(JobTimes(5, 10.000, 10.0004, 10.0054), take_s=10.015, now_s=10.035)
    assert early.endswith("finished 9.6 ms before the take")


def test_tick_timing_keeps_the_last_two_start_to_start_intervals():
    timing = TickTiming(0.02)
    for start in (0.0, 0.020, 0.047, 0.060):   # the third tick 7 ms late, the fourth on schedule
        timing.tick_started(start)
    assert timing.intervals_ms == pytest.approx((13.0, 27.0))


def test_a_wait_for_the_plan_counts_as_a_late_start_in_the_jitter():
    timing = TickTiming(0.02)
    for start, wait in ((0.0, 0.0), (0.020, 0.0), (0.040, 0.004), (0.060, 0.0)):  # the third waited 4 ms
        timing.tick_started(start)
        timing.tick_finished(start + wait + 0.0005, start, plan_wait_s=wait)
    assert timing.intervals_ms == pytest.approx((20.0, 20.0))      # the starts themselves were on time
    assert timing.jitter_ms.percentile(100) == pytest.approx(4.0)  # 24 ms to the third, 16 ms from it
    assert timing.last_jitter_ms == pytest.approx(4.0)
    assert timing.compute_ms.percentile(100) == pytest.approx(4.5)


def test_take_waits_for_the_plan_at_most_its_budget():
    worker = InferenceWorker(lambda obs, goal: (time.sleep(0.08), np.zeros((4, 3)))[1])
    try:
        worker.submit(1, OBS, GOAL)
        start = time.monotonic()
        assert worker.take(1, wait_s=0.0) is None                 # no budget: not ready is a miss at once
        assert time.monotonic() - start < 0.02
        start = time.monotonic()
        assert worker.take(1, wait_s=0.02) is None                # the plan needs longer than the budget
        assert 0.02 <= time.monotonic() - start < 0.06
        result = worker.take(1, wait_s=1.0)                        # within the budget: taken as soon as it is in
        assert result.tick == 1 and time.monotonic() - result.times.finished_s < 0.02
    finally:
        worker.close()


def test_sample_spacing_is_the_robot_clock_time_between_the_samples_of_consecutive_ticks():
    timing = TickTiming(0.02)
    assert np.isnan(timing.sample_spacing_ms.std())
    stamps = [100.0, 100.020, 100.040, 100.066, 100.080, 100.080, 100.100]  # one 6 ms late, then one repeated
    for stamp in stamps:
        timing.sample_used(stamp)
    spacing = np.diff(stamps) * 1000.0
    assert len(timing.sample_spacing_ms) == len(spacing)
    assert timing.sample_spacing_ms.std() == pytest.approx(np.std(spacing))
    summary = timing.summary()
    assert summary["sample_spacing_p50_ms"] == pytest.approx(20.0)
    # reported as the robust std (half the 15.9-84.1 percentile spread), which one outlier cannot inflate
    low, high = np.percentile(spacing, [15.87, 84.13])
    assert summary["sample_spacing_std_ms"] == pytest.approx((high - low) / 2.0)
