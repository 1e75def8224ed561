"""The simulator's speed-ups change nothing: seeded runs reproduce, bit for bit, the arrays of the code before
them (tests/support/sim_fingerprint.py says what is run and how the reference is regenerated)."""

import json

import pytest

from sim_fingerprint import REFERENCE, SCENARIOS, fingerprints


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_seeded_runs_are_bit_identical_to_the_reference(scenario):
    expected = json.loads(REFERENCE.read_text())[scenario]
    got = fingerprints([scenario])[scenario]
    assert sorted(got) == sorted(expected), "the scenario records other arrays than the reference"
    differing = [name for name in expected if got[name] != expected[name]]
    assert not differing, f"{scenario}: these arrays differ from the reference: {differing}"


def test_the_fingerprint_sees_a_single_bit():
    """A digest that ignored the last bit of a value could not tell a rounding change from none."""
    import numpy as np
    from sim_fingerprint import Recorder
    a, b = Recorder(), Recorder()
    a.add(x=[1.0, 2.0])
    b.add(x=[1.0, np.nextafter(2.0, 3.0)])
    assert a.digests() != b.digests()
