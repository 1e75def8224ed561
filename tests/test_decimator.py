"""The decimator that turns the drivers' 500 Hz into 50 Hz joint states and odometry, on the samples' clock."""

import numpy as np
import pytest

from diffuseloco_policy.decimator import Decimator


def test_500_hz_samples_become_50_hz_even_with_jitter_and_gaps():
    rng = np.random.default_rng(0)
    times = np.arange(0.0, 10.0, 0.002) + rng.normal(0.0, 0.0002, 5000)
    times = np.delete(times, rng.choice(5000, 1000, replace=False))     # a fifth of the samples lost
    decimator = Decimator(50.0)
    kept = [t for t in times if decimator.due(t)]
    assert 495 <= len(kept) <= 505
    assert np.min(np.diff(kept)) >= 0.01 - 0.001     # never closer than half a period
    assert abs(np.median(np.diff(kept)) - 0.02) < 0.001


def test_a_clock_that_steps_back_starts_over():
    decimator = Decimator(50.0)
    assert decimator.due(100.0) and not decimator.due(100.01)
    assert decimator.due(5.0) and decimator.due(5.02)
    with pytest.raises(ValueError):
        Decimator(0.0)
