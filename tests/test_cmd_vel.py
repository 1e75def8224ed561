"""cmd_vel beside the teleop (cmd_vel.py): velocity only, a moving teleop has priority, a silent stream is zeroed
after hold_s; and in the policy loop, a velocity within the skill in effect's range that can never leave stand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffuseloco_policy.cmd_vel import Velocity, VelocityInput, velocity_from_twist
from diffuseloco_policy.config import load_config
from diffuseloco_policy.policy_loop import PolicyLoop

CONFIG = load_config()
HOLD = CONFIG.watchdog.command_zero_after_s
IDLE = Velocity()


def test_cmd_vel_fills_in_for_an_idle_teleop_until_it_falls_silent():
    mux = VelocityInput(HOLD)
    assert mux.teleop(IDLE, 0.0) == IDLE                        # no cmd_vel yet
    assert mux.cmd_vel(Velocity(0.4, 0.1, 0.2), 1.0) == Velocity(0.4, 0.1, 0.2)
    assert mux.teleop(IDLE, 1.0 + HOLD) == Velocity(0.4, 0.1, 0.2)
    assert mux.describe(1.0 + HOLD) == "in use"
    assert mux.teleop(IDLE, 1.01 + HOLD) == IDLE                # the stream stopped: zero, as a silent teleop
    assert mux.describe(1.01 + HOLD) == "idle"


def test_a_moving_teleop_has_the_robot_until_it_has_asked_for_no_velocity_for_hold_s():
    mux = VelocityInput(HOLD)
    stick = Velocity(0.2, 0.0, 0.0)
    assert mux.teleop(stick, 0.0) == stick
    assert mux.cmd_vel(Velocity(1.0), 0.05) is None
    assert mux.teleop(IDLE, 0.1) == Velocity(1.0)               # released: the navigation's fresh velocity
    assert mux.describe(0.1) == "overridden by a teleop" and mux.cmd_vel(Velocity(1.0), 0.2) is None
    assert mux.cmd_vel(Velocity(1.0), HOLD + 0.01) == Velocity(1.0)
    assert (mux.received, mux.ignored) == (3, 2)


def test_a_twist_that_is_not_finite_is_refused():
    assert velocity_from_twist(0.1, 0.0, math.nan) is None
    assert velocity_from_twist(math.inf, 0.0, 0.0) is None
    assert velocity_from_twist(0.1, -0.2, 0.3) == Velocity(0.1, -0.2, 0.3)
    with pytest.raises(ValueError):
        VelocityInput(0.0)


def test_in_the_loop_cmd_vel_is_clamped_to_the_skill_in_effect_and_cannot_leave_stand():
    """What the node does with cmd_vel: set_skill_command with the skill in effect (loop.skill.skill)."""
    loop = PolicyLoop(CONFIG, lambda obs, goal: np.zeros((CONFIG.action.horizon, 12)), command_watchdog=True)
    try:
        stand, trot = CONFIG.skill("stand"), CONFIG.skill("trot")
        state = loop.set_skill_command(loop.skill.skill, 2.0, 0.0, 0.5)
        assert state.skill == stand.id and not state.command.any()
        loop.set_skill_command(trot.id, 0.0, 0.0, 0.0)
        state = loop.set_skill_command(loop.skill.skill, 2.0, 0.0, 0.5)
        assert state.skill == trot.id
        np.testing.assert_allclose(state.command, trot.clamp_command(2.0, 0.0, 0.5))
    finally:
        loop.close()
