"""Episode seeds: one physics draw per episode, reproducible from the base seed, the same for every policy.

An episode's seed draws everything random about it: the simulated robot's physical parameters, sensor noise,
pushes, tick jitter and the sampler's noise. Each (scenario, episode index) gets its own seed, spawned from the
base seed with numpy's SeedSequence, so N episodes over S scenarios are N x S distinct robots and not N robots
repeated in every scenario. The key uses the scenario's name (crc32), not its position in the matrix: adding or
reordering scenarios leaves every other scenario's draws as they were, and two runs that share a scenario and a
base seed meet the same robots there. A stream name (a robustness condition) gives a further independent set.
"""

from __future__ import annotations

import zlib

import numpy as np

# How report files record the scheme; runs with different schemes drew different robots and must not be merged.
SCHEME = "seedsequence-v1"
LEGACY_SCHEME = "base*1000+i"   # reports without a scheme: episode i of every scenario drew base * 1000 + i
DESCRIPTION = ("every episode draws its own physics: seed = SeedSequence(base seed, spawn_key=(crc32(scenario), "
               "episode[, crc32(condition)])), the same for every policy")


def _key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def episode_seed(base_seed: int, scenario: str, index: int, stream: str = "") -> int:
    """The seed of episode `index` of `scenario` (in the robustness `stream`, if any), an int below 2**32."""
    if index < 0:
        raise ValueError(f"episode index must be >= 0, got {index}")
    key = (_key(scenario), index) + ((_key(stream),) if stream else ())
    sequence = np.random.SeedSequence(entropy=int(base_seed), spawn_key=key)
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def scheme_of(meta: dict) -> str:
    """The seeding scheme a report was written with (reports from before the scheme was recorded: legacy)."""
    return meta.get("seeding", LEGACY_SCHEME)


def describe(meta: dict) -> str:
    """One sentence for a report's header: how its episodes were seeded and how many physics draws it holds."""
    if scheme_of(meta) == LEGACY_SCHEME:
        return (f"episode seed i is {meta.get('base_seed')} * 1000 + i in every scenario (an older run: every "
                f"scenario repeats the same physics draws)")
    draws = meta.get("physics_draws")
    return f"{DESCRIPTION}; base seed {meta.get('base_seed')}" + (f", {draws} physics draws" if draws else "")
