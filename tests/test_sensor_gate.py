"""SensorGate: newer stamps pass, reordered and repeated ones are dropped and counted, a restarted source is
accepted once the old stream has gone stale."""

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
