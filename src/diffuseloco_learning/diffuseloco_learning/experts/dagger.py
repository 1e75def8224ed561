"""A trained policy taking turns with the expert inside an expert episode, which still labels every tick (DAgger).

Why: the clone's closed-loop errors are systematic (it steps a little early every stride and the drift
compounds, docs/research/policy_eval/tracking.md), and neither clean expert data nor DART's random disturbance shows it
the states its own habits lead to. DAgger (Ross et al., 2011) records those states with the expert's action as
the label, so the next model learns how to come back from them.

Who drives is a two-state Markov chain per tick: the learner takes over for stretches of mean length
`stretch_s` and drives `share` of the ticks on average. Short stretches matter here because the experts keep
time with their own free-running gait clock: after a long stretch the robot's legs would be out of step with
that clock and the labels would contradict the history the model sees; a few ticks of drift is what a
correction label can fix. The learner runs exactly as deployed: its own delayed window s[t-8..t-1] (history.py),
warm-started sampler, receding horizon (chunk[execute_index], with the next entry as the velocity feed-forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.history import ObservationHistory
from diffuseloco_policy.runtime import PolicyRuntime


@dataclass(frozen=True)
class LearnerShare:
    """How much of an episode the learner drives, and in stretches of what mean length."""

    share: float = 0.5        # long-run fraction of ticks driven by the learner
    stretch_s: float = 0.1    # mean length of one learner stretch (geometric)

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0 or self.stretch_s <= 0.0:
            raise ValueError(f"LearnerShare needs 0 < share < 1 and stretch_s > 0, got {self}")

    def switch_probabilities(self, control_hz: float) -> tuple[float, float]:
        """(expert -> learner, learner -> expert) per tick, so that stretches and the share come out as asked."""
        hand_back = min(1.0, 1.0 / (self.stretch_s * control_hz))
        take_over = min(1.0, self.share * hand_back / (1.0 - self.share))
        return take_over, hand_back


def learner_rng(seed: int) -> np.random.Generator:
    """The learner's own stream (its sampler noise and the turn-taking), apart from the simulator's and DART's."""
    return np.random.default_rng([seed, 0xDA66])


class LearnerInTheLoop:
    """The learner's history, sampler and turn-taking for one rollout. Feed it every tick's frame with record()."""

    def __init__(self, runtime: PolicyRuntime, config: StackConfig, share: LearnerShare,
                 rng: np.random.Generator) -> None:
        if not runtime.info.spec.delayed_inputs:
            raise ValueError("the learner must be a delayed-input model: the rollout feeds it s[t-8..t-1]")
        self.runtime, self.rng = runtime, rng
        self.history = ObservationHistory.from_config(config)
        self.execute_index = config.action.execute_index
        self.take_over, self.hand_back = share.switch_probabilities(config.rates.control_hz)
        self.driving = False
        self.ticks_driven = 0

    def reset(self) -> None:
        """A new episode: empty history, no warm-start chunk, the expert in control."""
        self.history.reset()
        self.runtime.reset()
        self.driving, self.ticks_driven = False, 0

    def propose(self) -> Optional[np.ndarray]:
        """The learner's chunk for this tick, or None while it has no frame to look at (the first tick). Sampled
        every tick, driving or not, so its warm start carries over exactly as on the robot."""
        if len(self.history) == 0:
            return None
        obs, goal = self.history.window()
        return self.runtime.predict(obs, goal, self.rng)

    def drives(self) -> bool:
        """Advance the turn-taking by one tick; True when the learner's chunk is executed this tick."""
        flip = self.hand_back if self.driving else self.take_over
        if self.rng.random() < flip:
            self.driving = not self.driving
        drives = self.driving and len(self.history) > 0   # nothing to act on before the first frame
        self.ticks_driven += int(drives)
        return drives

    def record(self, observation: np.ndarray, goal: np.ndarray) -> None:
        self.history.push(observation, goal)
