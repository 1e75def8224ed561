"""TickTiming's sample spacing: a robust spread, so that one bad stamp does not read as seconds of jitter."""

import numpy as np

from diffuseloco_policy.timing import RollingStats, TickTiming


def test_one_bad_stamp_does_not_inflate_the_sample_spacing_spread():
    rng = np.random.default_rng(0)
    timing = TickTiming(0.02)
    stamp = 100.0
    for k in range(1000):
        stamp += 0.02 + rng.normal(0.0, 0.002)
        timing.sample_used(stamp + (227.0 if k == 10 else 0.0))       # one stamp 227 s ahead, then normal ones
    summary = timing.summary()
    assert abs(summary["sample_spacing_p50_ms"] - 20.0) < 0.5
    assert 1.5 < summary["sample_spacing_std_ms"] < 2.5, summary


def test_the_robust_spread_is_the_std_of_normal_samples():
    stats = RollingStats(5000)
    for value in np.random.default_rng(1).normal(20.0, 3.0, 5000):
        stats.add(value)
    assert abs(stats.robust_std() - 3.0) < 0.15 and abs(stats.std() - 3.0) < 0.15
