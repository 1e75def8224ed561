"""Skill switches at speed (skill_switch.py): the old skill slows down first, the new one takes over once the
command and the measured speed are slow, or after max_wait_s; nothing else waits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffuseloco_policy.config import ConfigError, SkillSwitchConfig, load_config
from diffuseloco_policy.controller import ControllerRequest
from diffuseloco_policy.evaluation.episode import samples
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.sim import CyberDogSim
from diffuseloco_policy.skill_switch import SkillCommandState, SkillSwitchGate

BASE = load_config()
SWITCH = SkillSwitchConfig(enabled=True, switch_speed=0.15, deceleration=1.0, max_wait_s=1.0)
CONFIG = dataclasses.replace(BASE, skill_switch=SWITCH)
DT = CONFIG.rates.control_dt
STAND, TROT, PACE, BOUND = (CONFIG.skill(n).id for n in ("stand", "trot", "pace", "bound"))


def state(skill: int, vx: float = 0.0, vy: float = 0.0, yaw: float = 0.0) -> SkillCommandState:
    return SkillCommandState(skill, np.array(CONFIG.skill(skill).clamp_command(vx, vy, yaw)))


def gate_in(skill_state: SkillCommandState, config=CONFIG) -> SkillSwitchGate:
    gate = SkillSwitchGate(config)
    gate.request(skill_state, running=True)  # the same skill as nothing pending: in effect at once
    gate.request(skill_state, running=False)
    return gate


def ticks_until_switch(gate: SkillSwitchGate, measured, limit: int = 200) -> tuple[int, list[SkillCommandState]]:
    seen = []
    for k in range(1, limit + 1):
        seen.append(gate.update(measured(seen), running=True))
        if not gate.pending:
            return k, seen
    raise AssertionError("the switch never happened")


def test_a_fast_bound_slows_down_before_stand_takes_over():
    gate = gate_in(state(BOUND, 0.3))
    effect = gate.request(state(STAND), running=True)
    assert effect.skill == BOUND and gate.pending
    # the body follows the command one tick later: the switch comes the tick after the command is at switch_speed
    ticks, seen = ticks_until_switch(gate, lambda seen: seen[-1].command[:2] if seen else np.array([0.3, 0.0]))
    vx = [s.command[0] for s in seen[:-1]]
    assert all(s.skill == BOUND for s in seen[:-1]) and seen[-1].skill == STAND
    np.testing.assert_allclose(np.diff([0.3, *vx]), -SWITCH.deceleration * DT)  # one deceleration step a tick
    assert ticks == int(np.ceil((0.3 - 0.15) / (SWITCH.deceleration * DT) - 1e-9)) + 1
    np.testing.assert_array_equal(seen[-1].command, [0.0, 0.0, 0.0])


def test_the_switch_waits_for_the_measured_speed_then_for_max_wait_at_most():
    gate = gate_in(state(TROT, 0.6))
    gate.request(state(PACE, 0.3), running=True)
    body = {"v": 0.6}

    def lagging(seen):  # the body slows down 0.005 m/s a tick: reaches 0.15 after 90 ticks
        body["v"] -= 0.005
        return np.array([body["v"], 0.0])

    ticks, seen = ticks_until_switch(gate, lagging)
    assert ticks == round(SWITCH.max_wait_s / DT)      # 50 ticks: the wait ended before the body got there
    assert seen[-1].skill == PACE and seen[-1].command[0] == pytest.approx(0.3)
    assert seen[-2].command[0] == pytest.approx(0.15)  # the old skill waited at switch_speed

    gate = gate_in(state(TROT, 0.6))
    gate.request(state(PACE, 0.3), running=True)
    body["v"] = 0.3
    ticks, _ = ticks_until_switch(gate, lagging)
    assert ticks == round((0.3 - 0.15) / 0.005)        # 30 ticks: the body was there first


def test_without_a_body_velocity_the_command_alone_decides():
    gate = gate_in(state(BOUND, 0.3))
    gate.request(state(TROT, 0.5), running=True)
    ticks, seen = ticks_until_switch(gate, lambda seen: None)
    assert ticks == 8 and seen[-1].skill == TROT


@pytest.mark.parametrize("case", ["slow", "not running", "disabled", "same skill"])
def test_nothing_else_waits(case):
    config = dataclasses.replace(BASE, skill_switch=dataclasses.replace(SWITCH, enabled=case != "disabled"))
    start = state(TROT, 0.1 if case == "slow" else 0.6)
    gate = gate_in(start, config)
    target = state(TROT, 0.2, yaw=0.3) if case == "same skill" else state(PACE, 0.3)
    effect = gate.request(target, running=case != "not running")
    if case == "slow":  # pending only until the first update sees the dog slow
        assert gate.update(np.array([0.1, 0.0]), running=True) is target
    else:
        assert effect is target and not gate.pending


def test_a_switch_called_off_keeps_the_old_skill_at_the_new_command():
    gate = gate_in(state(TROT, 0.6, yaw=0.4))
    gate.request(state(STAND), running=True)
    for _ in range(5):
        slowed = gate.update(np.array([0.6, 0.0]), running=True)
    assert slowed.skill == TROT and slowed.command[0] == pytest.approx(0.5)
    assert slowed.command[2] == pytest.approx(0.4)   # the turn is kept while slowing down
    effect = gate.request(state(TROT, 0.6, yaw=0.4), running=True)
    assert not gate.pending and effect.command[0] == pytest.approx(0.6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([STAND, TROT, PACE, BOUND]), st.floats(-1, 1), st.floats(-1, 1),
                          st.floats(-1, 1), st.integers(1, 80), st.floats(0, 1)), min_size=1, max_size=8))
def test_the_command_in_effect_stays_in_its_skills_range_and_no_switch_waits_too_long(requests):
    gate = gate_in(state(STAND))
    for skill, vx, vy, yaw, ticks, measured in requests:
        gate.request(state(skill, vx, vy, yaw), running=True)
        for _ in range(ticks):
            previous = gate.in_effect
            effect = gate.update(np.array([measured, 0.0]), running=True)
            skill_range = CONFIG.skill(effect.skill)
            np.testing.assert_allclose(effect.command, skill_range.clamp_command(*effect.command), atol=1e-12)
            if gate.pending:  # slowing down: one bounded step a tick
                assert np.hypot(*(effect.command[:2] - previous.command[:2])) <= SWITCH.deceleration * DT + 1e-9
                assert gate.waited_s < SWITCH.max_wait_s


def test_the_config_refuses_nonsense():
    with pytest.raises(ConfigError, match="deceleration"):
        SkillSwitchConfig(enabled=True, deceleration=0.0)
    with pytest.raises(ConfigError, match="switch_speed"):
        SkillSwitchConfig(switch_speed=-0.1)


def test_the_policy_loop_gives_the_model_the_skill_in_effect():
    """Through PolicyLoop on the simulator: while RUNNING, a switch at speed leaves the old skill in effect (what
    the status reports and the goal carries) and returns the requested one; stopped, a switch is immediate."""
    sim = CyberDogSim(CONFIG, seed=0)
    loop = PolicyLoop(CONFIG, lambda obs, goal: np.zeros((CONFIG.action.horizon, CONFIG.robot.num_joints)),
                      inference_wait_s=0.05)
    try:
        run(loop, sim, 2)
        assert loop.request(ControllerRequest.STAND_UP)[0]
        run(loop, sim, int(CONFIG.controller.stand_up_duration / DT) + 5)
        assert loop.request(ControllerRequest.RUN)[0]
        loop.set_skill_command(BOUND, 0.3, 0.0, 0.0)
        run(loop, sim, 1)
        assert loop.skill.skill == BOUND                       # from stand at rest: at the next tick
        requested = loop.set_skill_command(STAND, 0.0, 0.0, 0.0)
        assert requested.skill == STAND and loop.skill.skill == BOUND
        run(loop, sim, 1)
        skill_slot = CONFIG.observation.goal_slices()["skill"]
        goal = loop.history.window()[1][-1]
        assert np.argmax(goal[skill_slot]) == BOUND and loop.skill.command[0] < 0.3
        assert loop.request(ControllerRequest.DAMPING)[0]
        loop.set_skill_command(TROT, 0.5, 0.0, 0.0)            # not running: at once
        assert loop.skill.skill == TROT
    finally:
        loop.close()


def run(loop: PolicyLoop, sim: CyberDogSim, ticks: int) -> None:
    for _ in range(ticks):
        report = loop.tick(sim.time, *samples(sim, sim.time))
        sim.command_position(report.command.q, kp=report.command.kp, kd=report.command.kd)
        sim.step()
