"""The command watchdog: what the skill command becomes when its source stops sending.

Why: every teleop streams SkillCommand (20 Hz). When the source dies (a crashed teleop, a lost Wi-Fi link) the last
command would otherwise drive the robot forever, trotting into whatever is ahead. After
config.WatchdogConfig.command_zero_after_s without a fresh command the velocity goes to zero with the skill kept
(stepping in place is the gentlest stop of a moving gait), after command_stand_after_s the skill becomes stand.
A fresh command from the source lifts it at once. The watchdog arms with the first command: before it the skill is
stand anyway.

Time is the caller's clock (s); the watchdog never reads one.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Optional

from .config import WatchdogConfig


class CommandTimeout(IntEnum):
    """What the command in effect is reduced to."""

    NONE = 0
    ZERO_VELOCITY = 1
    STAND = 2


class CommandWatchdog:
    """Tracks when the last fresh command came; `check` says what the command must be reduced to now."""

    def __init__(self, config: WatchdogConfig) -> None:
        self.zero_after_s = config.command_zero_after_s
        self.stand_after_s = config.command_stand_after_s
        self._last_fresh: Optional[float] = None
        self.state = CommandTimeout.NONE

    def fresh(self, now: float) -> None:
        """A command was accepted at `now`."""
        self._last_fresh = now
        self.state = CommandTimeout.NONE

    def check(self, now: float) -> CommandTimeout:
        """The reduction due at `now` (never relaxed without a fresh command)."""
        if self._last_fresh is None:
            return self.state
        silent = now - self._last_fresh
        due = CommandTimeout.STAND if silent > self.stand_after_s else (
            CommandTimeout.ZERO_VELOCITY if silent > self.zero_after_s else CommandTimeout.NONE)
        self.state = max(self.state, due)
        return self.state

    def describe(self, now: float) -> str:
        """Why the command is reduced ("" when it is not)."""
        if self.state == CommandTimeout.NONE or self._last_fresh is None:
            return ""
        silent = now - self._last_fresh
        if self.state == CommandTimeout.STAND:
            return f"no skill command for {silent:.1f} s (limit {self.stand_after_s:g} s): skill stand"
        return f"no skill command for {silent:.1f} s (limit {self.zero_after_s:g} s): velocity zeroed, skill kept"
