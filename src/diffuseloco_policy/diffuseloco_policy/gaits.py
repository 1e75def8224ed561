"""Gait timing tables (period, duty, per-leg phase offsets) and the smooth blend between them.

A gait is a phase clock plus one phase offset per leg (FR, FL, RR, RL); a leg is in stance while its phase is
below the duty factor. Trot moves diagonal pairs together, pace lateral pairs, bound front/rear pairs, hop (a
pronk) all four legs, with a flight between stances. Skill
switches blend offsets and period at a bounded rate so every leg's phase keeps moving forward: no leg is ever
thrown from swing back into stance, which is what makes mid-motion switches safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .fast_clip import clip

if TYPE_CHECKING:
    from .config import StackConfig


@dataclass(frozen=True)
class GaitParams:
    """Timing and swing shape of one periodic gait."""

    period: float
    duty: float
    offsets: tuple[float, float, float, float]
    swing_height: float
    inward: float = 0.03        # m, feet shifted toward the body centre line (support line nearer the COM)
    gather: float = 0.0         # m, feet shifted toward the body centre in x (shorter pitch lever of one pair)
    stance_roll: tuple[float, float] = (0.0, 0.0)    # m/rad, m/(rad/s): stance feet shift in y against roll
    stance_pitch: tuple[float, float] = (0.0, 0.0)   # m/rad, m/(rad/s): stance feet shift in x against pitch
    load_pitch: tuple[float, float] = (0.0, 0.0)     # 1/rad, 1/(rad/s): front/rear load-share shift against pitch
    load_normalize: bool = False                     # True: keep the total planned support force at the body weight


STAND = "stand"
PLAN_LOOKAHEAD = 0.01   # s, the experts read their phases this far ahead to lead the PD lag
GAITS: dict[str, GaitParams] = {
    # Trot steps at 4 Hz: at 1 m/s a 0.30 s period trips (the swing lags, feet scuff) where 0.25 s tracks; its
    # swings ask for up to 17 / 19 deg of hip / knee per tick at 1 m/s, 20 / 24 when turning at 1 rad/s too.
    # Swings 0.04 m high (were 0.05): on the firmware-faithful robot the higher swing's knee outran the PD and the
    # firmware clamped q_des in 1.8 % of the frames, 0.7 % at 0.04 m (docs/research/expert_eval/firmware_robot).
    "trot": GaitParams(period=0.25, duty=0.5, offsets=(0.0, 0.5, 0.5, 0.0), swing_height=0.04),
    # Pace and bound keep a four-feet phase at each handover (duty 0.6: 0.1 of the period twice per stride),
    # which catches the roll (pace) / pitch (bound) the single pair cannot resist; the loaded pair also pushes
    # sideways (pace) or fore-aft (bound) against the tilt. Bound gathers the feet 0.03 m toward the centre in
    # x (shorter pitch lever of each pair). At duty 0.5 pace fell 6/50 and bound 21/50 on SimConfig.randomized().
    # Pace: 0.34 s and 0.04 m swings (were 0.30 s, 0.05 m) for the same reason: clamped frames 3.0 -> 0.4 %.
    "pace": GaitParams(period=0.34, duty=0.6, offsets=(0.0, 0.5, 0.0, 0.5), swing_height=0.04,
                       stance_roll=(0.2, 0.02)),
    # Bound also moves planned support force from the high end of the trunk to the low end (load_pitch, through
    # the gravity feed-forward): nose-up unloads the front pair and loads the rear one, 2.0 per rad + 0.1 per
    # rad/s, +-60 % at most; and swings only 0.04 m high (smaller hops of the loaded pair, smaller pitch swings).
    # Seed-0 50-episode check: 5 falls before, 1 with the load shift alone, 0 with both (see docs/research/expert_eval).
    "bound": GaitParams(period=0.35, duty=0.6, offsets=(0.0, 0.0, 0.5, 0.5), swing_height=0.04, gather=0.03,
                        stance_pitch=(0.2, 0.02), load_pitch=(2.0, 0.1)),
    # Hop: the four legs share one phase; half the stride is flight (0.125 s: the trunk rises ~2 cm, the feet 4 cm
    # over the ground), the stance carries twice the weight (experts/controller.py, _load_share and _bounce). The
    # common offset of a quarter period puts every other gait's legs a quarter period away on either side, so a
    # switch to or from hop moves the pairs in opposite directions (one speeds up, one slows down) and takes 0.25 s
    # instead of 0.5 s with one pair lagging: hop -> bound, with the rear pair lagging half a period, fell in 4 of
    # 30 randomized episodes (the front pair landed alone, braked and reared the trunk), 0 of 30 this way.
    "hop": GaitParams(period=0.25, duty=0.5, offsets=(0.25, 0.25, 0.25, 0.25), swing_height=0.04),
}


# np.isclose(x, 0.5)'s test with its default tolerances, written out: isclose's Python layers cost more than the
# rest of a tick's clock update (it is |x - y| <= atol + rtol |y|, the same comparison, the same result)
_TIE_TOLERANCE = 1e-8 + 1e-5 * 0.5


def _clamp(value: float, limit: float) -> float:
    """value kept within +-limit (limit > 0), on Python floats: what np.clip gives for them, without a ufunc call
    per scalar (the clock glides five of them every tick)."""
    return min(max(value, -limit), limit)


class GaitClock:
    """Phase clock whose offsets, period and swing height glide toward the active gait's values."""

    def __init__(self, gait: GaitParams, offset_rate: float = 1.0, period_rate: float = 0.5,
                 duty_rate: float = 0.5) -> None:
        self.duty_rate = duty_rate          # duty-factor units per second
        self.offset_rate = offset_rate      # phase units per second the offsets may move
        self.period_rate = period_rate      # seconds per second the period may change
        self.target = gait
        self.offsets = np.array(gait.offsets, dtype=np.float64)
        self.period = gait.period
        self.swing_height = gait.swing_height
        self.inward = gait.inward
        self.gather = gait.gather
        self.duty = gait.duty
        self.phase = 0.0

    def restart(self, gait: GaitParams) -> None:
        """Jump to a gait (from standing): the first-listed leg's swing starts now, its partners' stance. A gait
        whose legs share one phase (hop) starts with a stance instead: all four feet lifting from a stand, with no
        push before it, would drop the trunk for the whole flight."""
        self.target = gait
        self.offsets = np.array(gait.offsets, dtype=np.float64)
        self.period, self.swing_height, self.duty = gait.period, gait.swing_height, gait.duty
        self.inward, self.gather = gait.inward, gait.gather
        in_step = bool(np.all(self.offsets == self.offsets[0]))
        self.phase = (-gait.offsets[0] if in_step else gait.duty - gait.offsets[0]) % 1.0

    def advance(self, dt: float) -> None:
        """Move the blend one tick toward the target gait, then advance the phase."""
        t = self.target
        delta = (np.array(t.offsets) - self.offsets + 0.5) % 1.0 - 0.5     # shortest way round the circle
        delta[np.abs(np.abs(delta) - 0.5) <= _TIE_TOLERANCE] = -0.5          # ties: slow the leg, never skip
        self.offsets = (self.offsets + clip(delta, -self.offset_rate * dt, self.offset_rate * dt)) % 1.0
        self.period += _clamp(t.period - self.period, self.period_rate * dt)
        self.swing_height += _clamp(t.swing_height - self.swing_height, 0.2 * dt)
        self.inward += _clamp(t.inward - self.inward, 0.1 * dt)
        self.gather += _clamp(t.gather - self.gather, 0.1 * dt)
        # duty glides slower than any leg's phase advances (1 / period), so no swing leg falls back into stance
        self.duty += _clamp(t.duty - self.duty, self.duty_rate * dt)
        self.phase = (self.phase + dt / self.period) % 1.0

    def in_step(self) -> float:
        """How far all four legs share one phase: 1 in a hop, 0 once any leg is a quarter period or more from the
        first one (trot, pace and bound always have a leg half a period away), linear in between (a switch)."""
        spread = np.abs((self.offsets - self.offsets[0] + 0.5) % 1.0 - 0.5).max()
        return float(clip(1.0 - 4.0 * spread, 0.0, 1.0))

    def leg_phases(self, lookahead: float = 0.0) -> np.ndarray:
        """Each leg's phase in [0, 1), optionally a little ahead in time (to lead the PD lag)."""
        return (self.phase + lookahead / self.period + self.offsets) % 1.0


class GaitSchedule:
    """Where every leg is in its gait, from the skill commands alone.

    Standing latches each leg into stance as its swing ends; leaving stand restarts the clock once every leg is
    down; moving, the clock glides toward the selected gait's timing. No sensor enters it, so anything that sees
    the same skill sequence at the same rate (the experts, and a GaitFollower below) computes the same phases.
    """

    def __init__(self, lookahead: float = PLAN_LOOKAHEAD) -> None:
        self.lookahead = lookahead          # s, phases are read this far ahead (the experts lead the PD lag)
        self.clock = GaitClock(GAITS["trot"])
        self.skill = STAND
        self.stance = np.ones(4, dtype=bool)    # the stance the last plan used (FR, FL, RR, RL)
        self.latched = np.ones(4, dtype=bool)   # legs a stand holds down

    def set_skill(self, name: str) -> None:
        """Select the gait to glide into (STAND or a key of GAITS)."""
        self.skill = name
        if name != STAND:
            self.clock.target = GAITS[name]

    def update(self) -> tuple[bool, bool]:
        """This tick's mode: (standing, restarted). Stand: legs latch into stance as their swings end; leaving
        stand restarts the clock once all are down (restarted: the plan's feet start over from where they are)."""
        if self.skill == STAND:
            self.latched |= self.stance
            return bool(self.latched.all()), False
        if self.latched.all():
            self.clock.restart(GAITS[self.skill])
            self.latched[:] = False
            self.stance = self.stance_now()
            return False, True
        if self.latched.any():      # still settling into a stand: keep standing until every foot is down
            self.latched |= self.stance
        return False, False

    def tick(self, dt: float) -> bool:
        """One control tick as the experts take it (mode, clock, stance), for a follower that only needs the
        phases; returns whether the gait stands."""
        standing, _ = self.update()
        if not standing:
            self.clock.advance(dt)
        self.stance = self.stance_now()
        return standing

    def stance_now(self) -> np.ndarray:
        """Legs in stance now: latched ones and those whose phase is below the duty factor."""
        return self.latched | (self.clock.leg_phases(self.lookahead) < self.clock.duty)

    def phase_features(self) -> np.ndarray:
        """The gait_phase goal term (FR, FL, RR, RL): sin and cos of each leg's phase, then its stance flag. On the
        circle, phase 0.99 sits next to 0.01; the flags say which legs the gait holds down, all of them while it
        stands (the clock is frozen then, so the phases alone could not tell)."""
        angle = 2.0 * np.pi * self.clock.leg_phases(self.lookahead)
        return np.concatenate([np.sin(angle), np.cos(angle), self.stance.astype(np.float64)])


class GaitFollower:
    """The experts' gait schedule replayed from skill ids, one control tick at a time.

    A policy loop (and the bag converter) runs one to build the gait_phase goal term: fed the skill sequence the
    expert saw, it gives the expert's own phases at every tick (tests/test_gait_phase.py), so a model trained
    on expert data sees the same timing on the robot. Only gaits the experts know have a schedule.
    """

    def __init__(self, config: "StackConfig", lookahead: float = PLAN_LOOKAHEAD) -> None:
        unknown = [s.name for s in config.skills if s.name != STAND and s.name not in GAITS]
        if unknown:
            raise ValueError(f"no gait timing for skills {unknown}; the gait phase exists for {sorted(GAITS)} "
                             f"and {STAND!r}")
        self.names = {s.id: s.name for s in config.skills}
        self.dt = config.rates.control_dt
        self.lookahead = lookahead
        self.reset()

    def reset(self) -> None:
        """Standing with every leg down, as the experts start."""
        self.schedule = GaitSchedule(self.lookahead)

    def step(self, skill_id: int) -> np.ndarray:
        """Advance one control tick with this skill in effect; the tick's gait_phase features."""
        self.schedule.set_skill(self.names[int(skill_id)])
        self.schedule.tick(self.dt)
        return self.schedule.phase_features()
