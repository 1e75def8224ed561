"""SensorGate: newer stamps pass, reordered and repeated ones are dropped and counted, invalid stamps are dropped
with the reason, a restarted source is accepted again before the old sample goes stale, and a stamp that jumped
forward does not stop the stream."""

import pytest

from diffuseloco_policy.sensor_gate import SensorGate


def test_newer_stamps_pass_and_older_or_equal_ones_are_dropped():
    gate = SensorGate(stale_after_s=0.05)
    assert gate.offer(1.000, received=10.000) == (True, "")
    assert gate.offer(1.002, received=10.002) == (True, "")
    accepted, note = gate.offer(1.001, received=10.003)
    assert not accepted and "out-of-order" in note
    accepted, note = gate.offer(1.002, received=10.004)
    assert not accepted and "duplicate" in note
    assert (gate.counters.accepted, gate.counters.out_of_order, gate.counters.duplicate) == (2, 1, 1)


def test_a_repeating_source_does_not_refresh_the_sample():
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(5.0, received=0.0)
    assert not any(gate.offer(5.0, received=0.001 * k)[0] for k in range(1, 40))


def test_a_restarted_source_is_accepted_after_the_old_stream_went_stale():
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(100.0, received=1.0)
    assert not gate.offer(0.5, received=1.02)[0]          # within the timeout: a reordered message
    accepted, note = gate.offer(0.6, received=1.2)         # the old stream is stale: a restart
    assert accepted and "restarted" in note and gate.counters.restarts == 1
    assert gate.offer(0.602, received=1.202) == (True, "")


@pytest.mark.parametrize("sec,nanosec,why", [(5, 1_000_000_000, "nanosec 1000000000 outside"),
                                             (5, 4_000_000_000, "nanosec 4000000000 outside"),
                                             (-1, 0, "negative sec -1")])
def test_a_stamp_that_is_no_time_is_dropped_with_the_reason(sec, nanosec, why):
    gate = SensorGate(stale_after_s=0.05)
    assert gate.offer_header(5, 0, received=1.0) == (True, "", 5.0)
    accepted, note, stamp = gate.offer_header(sec, nanosec, received=1.002)
    assert not accepted and stamp is None and why in note and "dropped" in note
    assert gate.counters.invalid_stamp == 1
    assert gate.offer_header(5, 4_000_000, received=1.004)[0]          # the stream goes on undisturbed


def test_a_restarted_source_is_in_use_again_before_the_sample_goes_stale():
    """The restart window is half the stale limit: the monitor (stale after 50 ms) never sees the gap."""
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(100.0, received=1.0)
    assert not gate.offer(0.5, received=1.02)[0]
    accepted, note = gate.offer(0.53, received=1.03)
    assert accepted and "restarted" in note


def test_a_stuck_source_is_never_taken_for_a_restart():
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(5.0, received=0.0)
    assert not any(gate.offer(5.0, received=0.005 * k)[0] for k in range(1, 100))


def test_one_stamp_that_jumped_forward_does_not_stop_the_stream():
    """One message stamped 10 s ahead, then the stream as before: the jump is accepted (the newest data) and
    reported, and the next message, back on the old timeline, is accepted at once instead of being dropped as out
    of order until the stream goes stale."""
    gate = SensorGate(stale_after_s=0.05)
    t, received = 100.0, 1.0
    for k in range(10):
        assert gate.offer(t + 0.005 * k, received + 0.005 * k) == (True, "")
    accepted, note = gate.offer(t + 10.05, received + 0.05)
    assert accepted and "jumped forward 10.000 s" in note and gate.counters.forward_jumps == 1
    accepted, note = gate.offer(t + 0.055, received + 0.055)
    assert accepted and "back on their timeline" in note
    assert gate.offer(t + 0.06, received + 0.06) == (True, "")
    assert not gate.offer(t + 0.01, received + 0.065)[0]              # an old message is still out of order
    assert gate.counters.restarts == 0


def test_a_clock_set_forward_then_back_is_followed_before_the_sample_goes_stale():
    """The sender's clock runs 10 s ahead for a second (so the jump is confirmed), then is set back: the set-back
    stream is accepted as a restart within half the stale limit, before the monitor's stale check could fire."""
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(100.0, received=1.0)
    for k in range(1, 200):
        assert gate.offer(110.0 + 0.005 * k, received=1.0 + 0.005 * k)[0]
    back = [gate.offer(101.0 + 0.005 * k, received=2.0 + 0.005 * k)[0] for k in range(10)]
    gap = (2.0 + 0.005 * back.index(True)) - (1.0 + 0.005 * 199)      # the age the sample in use reached
    assert gap <= 0.05 / 2 + 0.005 + 1e-9, back                       # far from the 50 ms stale limit


def test_a_permanent_forward_jump_is_a_new_timeline():
    gate = SensorGate(stale_after_s=0.05)
    gate.offer(100.0, received=1.0)
    assert gate.offer(200.0, received=1.005)[0]
    assert gate.offer(200.005, received=1.01) == (True, "")
    assert not gate.offer(100.015, received=1.015)[0]                  # the jump was confirmed: old stamps are old
