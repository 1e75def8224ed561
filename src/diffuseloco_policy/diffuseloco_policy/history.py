"""The delayed observation history: the model for tick t sees the frames of ticks t-To .. t-1, never s[t].

Why delayed: DiffuseLoco feeds s[t-To..t-1] so that the sample for tick t can be computed during tick t-1's
period, hiding the sampler's latency (reference: "delayed inputs"). The chunk it predicts covers ticks
t-To .. t-To+horizon-1, and chunk[execute_index = To] is the action for tick t.

How to use it so the delay cannot go wrong:

    history = ObservationHistory.from_config(config)
    # each control tick t, with the frame built from the state measured at t:
    obs_window, goal_window = history.step(obs_t, goal_t)   # frames t-To..t-1; then s[t] is recorded
    actions = policy(obs_window, goal_window)

`step` copies the window BEFORE it records the current frame, so s[t] can never leak into tick t's input.
To pipeline (compute tick t+1's action during tick t), call `history.window()` after `step`: it returns the
frames t+1-To..t, exactly the input for tick t+1. `push` alone records a frame without reading.

Start-up: before To frames exist the window is padded by repeating the oldest frame (the reference's
pad-before). At the very first tick nothing has been recorded yet; `step` then seeds the history with s[0]
itself (the only frame there is), so tick 0's input is To copies of s[0]. After a `reset()` this repeats.

The goal (command + skill) of each tick is stored alongside its observation, so the goal tokens see the goals
of the same ticks as the observation tokens. Storage is a preallocated ring buffer: `push` is O(1) and reading a
window copies once, into a caller-supplied array if given.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .config import StackConfig


class HistoryEmptyError(RuntimeError):
    """A window was requested before any frame was recorded."""


class ObservationHistory:
    """Ring buffer of the last `history` (observation, goal) frames, oldest first when read."""

    def __init__(self, history: int, obs_dim: int, goal_dim: int) -> None:
        if history < 1:
            raise ValueError("history length must be >= 1")
        self.history = history
        self._obs = np.zeros((history, obs_dim), dtype=np.float32)
        self._goal = np.zeros((history, goal_dim), dtype=np.float32)
        self._next = 0  # slot the next frame is written to
        self._count = 0  # frames recorded since reset, saturating at `history`

    @classmethod
    def from_config(cls, config: StackConfig) -> "ObservationHistory":
        return cls(config.observation.history, config.observation.obs_dim, config.observation.goal_dim)

    @property
    def obs_dim(self) -> int:
        return self._obs.shape[1]

    @property
    def goal_dim(self) -> int:
        return self._goal.shape[1]

    def __len__(self) -> int:
        """Frames actually recorded (at most `history`); the rest of a window is padding."""
        return self._count

    @property
    def is_full(self) -> bool:
        return self._count == self.history

    def reset(self) -> None:
        """Forget every frame (new episode, controller switch): the next step pads from scratch."""
        self._next = 0
        self._count = 0

    def push(self, obs: np.ndarray, goal: np.ndarray) -> None:
        """Record the frame of the tick whose action has just been computed. O(1), no allocation."""
        self._obs[self._next] = obs  # numpy checks the shape and casts to float32
        self._goal[self._next] = goal
        self._next = (self._next + 1) % self.history
        self._count = min(self._count + 1, self.history)

    def window(self, out_obs: Optional[np.ndarray] = None, out_goal: Optional[np.ndarray] = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The input for the NEXT tick: the recorded frames, oldest first, (history, dim) each, padded at the
        front with the oldest frame. Does not include any frame that has not been pushed."""
        if self._count == 0:
            raise HistoryEmptyError("no frame recorded yet: use step() at tick 0, or push() first")
        out_obs = np.empty_like(self._obs) if out_obs is None else out_obs
        out_goal = np.empty_like(self._goal) if out_goal is None else out_goal
        self._read(self._obs, out_obs)
        self._read(self._goal, out_goal)
        return out_obs, out_goal

    def step(self, obs_t: np.ndarray, goal_t: np.ndarray, out_obs: Optional[np.ndarray] = None,
             out_goal: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Input for tick t (frames t-To..t-1), then record s[t] for the next tick. At the first tick after a
        reset the history is seeded with s[t] itself, the only frame available."""
        if self._count == 0:
            self.push(obs_t, goal_t)
            window = self.window(out_obs, out_goal)
            return window
        window = self.window(out_obs, out_goal)
        self.push(obs_t, goal_t)
        return window

    def _read(self, buffer: np.ndarray, out: np.ndarray) -> None:
        """Copy the ring into `out` in time order: two slice copies, or padding + one copy while filling."""
        if self._count < self.history:  # not wrapped yet: frames sit in slots 0..count-1
            pad = self.history - self._count
            out[:pad] = buffer[0]
            out[pad:] = buffer[: self._count]
            return
        split = self.history - self._next
        out[:split] = buffer[self._next:]
        out[split:] = buffer[: self._next]
