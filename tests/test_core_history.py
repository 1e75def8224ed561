"""Delayed-input history: the window for tick t holds frames t-To..t-1 (never s[t]), padded at start-up."""

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy.history import HistoryEmptyError, ObservationHistory

TO, OBS, GOAL = 8, 42, 8   # goal: vx, vy, yaw rate and the five-skill one-hot


def frame(t: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame whose every entry encodes its tick, so windows can be read back as tick numbers."""
    return np.full(OBS, t, dtype=np.float32), np.full(GOAL, 100 + t, dtype=np.float32)


def ticks(window: tuple[np.ndarray, np.ndarray]) -> list[int]:
    obs, goal = window
    assert np.all(obs == obs[:, :1]) and np.all(goal == goal[:, :1])
    assert np.array_equal(goal[:, 0] - 100, obs[:, 0]), "goal history must be aligned with observation history"
    return [int(v) for v in obs[:, 0]]


def test_from_config_uses_history_and_dims():
    h = ObservationHistory.from_config(load_config())
    assert (h.history, h.obs_dim, h.goal_dim) == (TO, OBS, GOAL)


def test_window_for_tick_ends_at_previous_tick_and_pads_at_startup():
    h = ObservationHistory(TO, OBS, GOAL)
    for t in range(30):
        window = ticks(h.step(*frame(t)))
        if t == 0:
            assert window == [0] * TO  # seeded with s[0]: the only frame there is
            continue
        expected = [max(t - TO + i, 0) for i in range(TO)]  # t-8..t-1, oldest repeated before 8 frames exist
        assert window == expected, f"tick {t}"
        assert window[-1] == t - 1 and t not in window  # delayed: never the current frame


def test_window_after_step_is_next_ticks_input():
    """Pipelining: after step(s[t]), window() is exactly what step(s[t+1]) will return."""
    h = ObservationHistory(TO, OBS, GOAL)
    for t in range(20):
        h.step(*frame(t))
        ahead = ticks(h.window())
        assert ahead == ticks(h.step(*frame(t + 1)))
        assert ahead[-1] == t


def test_push_is_o1_ring_and_output_buffer_is_reused():
    h = ObservationHistory(TO, OBS, GOAL)
    out_obs, out_goal = np.empty((TO, OBS), np.float32), np.empty((TO, GOAL), np.float32)
    for t in range(3 * TO + 3):  # wraps the ring several times
        h.push(*frame(t))
    obs, goal = h.window(out_obs, out_goal)
    assert obs is out_obs and goal is out_goal
    assert ticks((obs, goal)) == list(range(2 * TO + 3, 3 * TO + 3))
    obs[:] = -1  # the caller's copy; the ring is untouched
    assert ticks(h.window()) == list(range(2 * TO + 3, 3 * TO + 3))


def test_reset_restarts_padding_and_empty_window_raises():
    h = ObservationHistory(TO, OBS, GOAL)
    with pytest.raises(HistoryEmptyError):
        h.window()
    for t in range(12):
        h.push(*frame(t))
    assert h.is_full and len(h) == TO
    h.reset()
    assert len(h) == 0
    with pytest.raises(HistoryEmptyError):
        h.window()
    assert ticks(h.step(*frame(50))) == [50] * TO
    assert ticks(h.step(*frame(51))) == [50] * TO
    assert ticks(h.step(*frame(52))) == [50] * (TO - 1) + [51]


def test_wrong_frame_size_is_rejected():
    h = ObservationHistory(TO, OBS, GOAL)
    with pytest.raises(ValueError):
        h.push(np.zeros(OBS + 1), np.zeros(GOAL))
