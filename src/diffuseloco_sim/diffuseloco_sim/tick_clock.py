"""How many physics steps pass between two control ticks: exactly one control period, or a jittered one."""

from __future__ import annotations

import numpy as np


class TickClock:
    """Physics steps between two control ticks: exactly one control period, or a jittered one.

    The evaluation harness and the data generator normally tick every 10 physics steps. In the live graph the
    simulator and the policy node each keep the wall clock on their own, and on a loaded 2-core machine without
    SCHED_FIFO the simulated time between two motor commands varied: 1 to 29 steps, standard deviation 1.5-3.7 in
    the demo's bags of 2026-12-03. jitter_steps draws each period from a normal distribution with that standard
    deviation around the nominal one (clipped to 1 .. 2 x nominal - 1, so the mean stays nominal), from its own
    random stream, so the episode's physics draws are the same with and without jitter. Used by
    `evaluation --tick-jitter` and `data.generate --tick-jitter`."""

    def __init__(self, nominal_steps: int, jitter_steps: float, seed: int) -> None:
        if not (jitter_steps >= 0.0 and np.isfinite(jitter_steps)):
            raise ValueError(f"tick jitter must be a finite number of steps >= 0, got {jitter_steps}")
        self.nominal, self.jitter = nominal_steps, jitter_steps
        self._rng = np.random.default_rng([seed, 0x71C])

    def next_period(self) -> int:
        if self.jitter == 0.0:
            return self.nominal
        drawn = int(round(self.nominal + self.jitter * self._rng.standard_normal()))
        return int(np.clip(drawn, 1, 2 * self.nominal - 1))
