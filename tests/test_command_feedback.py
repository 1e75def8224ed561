"""The outer velocity loop (command_feedback.py): it closes a lagging gait's bias, never leaves the skill's range,
and lets go without fresh measurements; in PolicyLoop it moves only the model's input, not the user's command."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from diffuseloco_policy.command_feedback import CommandFeedback, Measured
from diffuseloco_policy.config import CommandFeedbackConfig, ConfigError, load_config
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.safety import ImuSample, JointSample, VelocitySample

CONFIG = load_config()
DT = CONFIG.rates.control_dt
TROT, PACE = CONFIG.skill("trot"), CONFIG.skill("pace")
ON = CommandFeedbackConfig(enabled=True, ki=(2.0, 2.0, 2.0), max_correction=(0.5, 0.2, 0.5), leak_s=0.5, settle_s=0.0)


class LaggingGait:
    """A stand-in for a cloned gait: reaches `gain` of its (model) command with a first-order lag of tau s."""

    def __init__(self, gain: float = 0.6, tau: float = 0.3) -> None:
        self.gain, self.alpha = gain, DT / tau
        self.velocity = np.zeros(3)

    def step(self, model_command: np.ndarray) -> np.ndarray:
        self.velocity += self.alpha * (self.gain * np.asarray(model_command) - self.velocity)
        return self.velocity.copy()


def walk(feedback: CommandFeedback, command, seconds: float, gait: LaggingGait, skill=TROT,
         measure=lambda v: Measured(v[:2].copy(), float(v[2]))) -> np.ndarray:
    """Closed loop for `seconds`; returns the achieved velocities per tick."""
    achieved = []
    for _ in range(int(round(seconds / DT))):
        model_command = feedback.update(skill, np.asarray(command, dtype=float), measure(gait.velocity), True)
        achieved.append(gait.step(model_command))
    return np.array(achieved)


def test_the_loop_closes_a_lagging_gaits_bias_and_without_it_the_bias_stays():
    command = [0.3, 0.05, 0.2]
    with_loop = walk(CommandFeedback(ON, DT), command, 6.0, LaggingGait())
    without = walk(CommandFeedback(dataclasses.replace(ON, enabled=False), DT), command, 6.0, LaggingGait())
    np.testing.assert_allclose(without[-1], 0.6 * np.array(command), atol=1e-3)
    np.testing.assert_allclose(with_loop[-1], command, atol=0.01)
    np.testing.assert_allclose(with_loop[-50:].mean(axis=0), command, atol=0.01)
    assert np.all(with_loop.max(axis=0) < 1.2 * np.array(command))  # no large overshoot


def test_the_model_is_never_asked_for_more_than_the_skills_range():
    feedback = CommandFeedback(ON, DT)
    achieved = walk(feedback, [TROT.vx[1], 0.0, 0.0], 5.0, LaggingGait())
    assert feedback.update(TROT, np.array([TROT.vx[1], 0.0, 0.0]), Measured(achieved[-1][:2], 0.0), True)[0] \
        == pytest.approx(TROT.vx[1])
    assert feedback.correction[0] == pytest.approx(0.0)  # nothing wound up against the limit
    assert achieved[-1][0] == pytest.approx(0.6 * TROT.vx[1], abs=1e-3)  # the gait's limit, honestly


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-2, 2), st.floats(-2, 2), st.floats(-3, 3),
                          st.floats(-4, 4), st.floats(-4, 4), st.floats(-4, 4), st.booleans()),
                min_size=1, max_size=60),
       st.sampled_from([s.id for s in CONFIG.skills]))
@example(steps=[(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False), (0.0, 0.0, -1.0, 0.0, 3.0, 0.0, True),
                (0.0, 0.0, -1.0, 0.0, 3.0, -3.0, True)], skill_id=1)  # trot's strafe/turn budget, found in CI
def test_corrected_commands_stay_in_range_and_the_correction_stays_bounded(steps, skill_id):
    skill = CONFIG.skill(skill_id)
    feedback = CommandFeedback(ON, DT)
    for vx, vy, yaw, mvx, mvy, myaw, fresh in steps:
        command = np.array(skill.clamp_command(vx, vy, yaw))
        measured = Measured(np.array([mvx, mvy]) if fresh else None, myaw)
        out = feedback.update(skill, command, measured, True)
        np.testing.assert_allclose(out, skill.clamp_command(*out), atol=1e-12)
        assert np.all(np.abs(feedback.correction) <= np.asarray(ON.max_correction) + 1e-12)
        np.testing.assert_allclose(out, command + feedback.correction, atol=1e-12)


def test_without_a_fresh_body_velocity_the_speed_correction_decays_and_yaw_keeps_its_gyro():
    feedback = CommandFeedback(ON, DT)
    command = np.array([0.3, 0.0, 0.3])
    for _ in range(50):
        feedback.update(TROT, command, Measured(np.array([0.1, 0.0]), 0.1), True)
    vx_before, yaw_before = feedback.correction[0], feedback.correction[2]
    assert vx_before > 0.1 and yaw_before > 0.1
    for _ in range(int(1.5 / DT)):  # three leak time constants without vBody
        feedback.update(TROT, command, Measured(None, 0.1), True)
    assert feedback.correction[0] == pytest.approx(vx_before * np.exp(-3.0), rel=1e-6)
    assert feedback.correction[2] > yaw_before
    yaw_before = feedback.correction[2]
    for _ in range(10):  # no gyro either: nothing measured at all
        feedback.update(TROT, command, None, True)
    assert feedback.correction[2] == pytest.approx(yaw_before * np.exp(-10 * DT / ON.leak_s), rel=1e-6)


def test_after_a_new_skill_or_a_changed_command_the_loop_waits_for_the_gait_to_settle():
    settling = CommandFeedback(dataclasses.replace(ON, settle_s=0.5, settle_change=0.1), DT)
    lagging = Measured(np.array([0.1, 0.0]), 0.0)
    ticks = int(0.5 / DT)

    def hold(command, n):
        return [settling.update(TROT, np.asarray(command), lagging, True)[0] for _ in range(n)]

    assert hold([0.3, 0, 0], ticks) == [0.3] * ticks   # a new skill: nothing integrates for settle_s
    assert hold([0.3, 0, 0], 1)[0] > 0.3
    before = settling.correction[0]
    hold([0.35, 0, 0], ticks)                           # a small change: no pause
    assert settling.correction[0] > before + 0.8 * ON.ki[0] * 0.2 * 0.5
    before = settling.correction[0]
    assert np.allclose(hold([0.5, 0, 0], ticks), 0.5 + before)  # a larger one: kept, but paused
    assert hold([0.5, 0, 0], 1)[0] > 0.5 + before


def test_a_new_skill_a_reversed_axis_or_leaving_running_starts_from_zero():
    feedback = CommandFeedback(ON, DT)
    lagging = Measured(np.array([0.1, 0.0]), 0.0)
    for _ in range(50):
        feedback.update(TROT, np.array([0.3, 0.0, 0.2]), lagging, True)
    assert feedback.correction[0] > 0.1 and feedback.correction[2] > 0.05
    feedback.update(TROT, np.array([-0.3, 0.0, 0.2]), lagging, True)  # vx reversed: its correction is gone
    assert feedback.correction[0] < 0 and feedback.correction[2] > 0.05
    feedback.update(PACE, np.array([0.2, 0.0, 0.2]), lagging, True)
    assert np.all(np.abs(feedback.correction) < 0.02)  # one tick's worth
    feedback.update(PACE, np.array([0.2, 0.0, 0.2]), lagging, False)
    assert np.all(feedback.correction == 0.0)


def test_config_refuses_negative_gains_and_a_non_positive_leak():
    with pytest.raises(ConfigError, match="ki"):
        CommandFeedbackConfig(ki=(-1.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="leak_s"):
        CommandFeedbackConfig(leak_s=0.0)


def test_the_shipped_robot_config_turns_the_loop_on():
    assert CONFIG.command_feedback.enabled


# ------------------------------------------------------------------------------------------ in PolicyLoop
DEFAULT_POSE = np.asarray(CONFIG.robot.default_pose)
COMMAND_TERM = CONFIG.observation.goal_slices()["command"]
COMMAND_SCALE = np.asarray(next(t.scale for t in CONFIG.observation.goal_terms if t.name == "command"))


def vbody(vx: float):
    """A healthy vBody reading vx, received and stamped now."""
    return lambda now: VelocitySample([vx, 0.0, 0.0], now, now)


def loop_goal_commands(feedback: CommandFeedbackConfig, vx_measured: float = 0.1, with_velocity: bool = True,
                       velocity_at=None):
    """Run a PolicyLoop to RUNNING with trot at 0.3 m/s while vBody reads vx_measured (or what velocity_at(now)
    gives); returns the commands the sampler saw in its newest goal frame, per RUNNING tick, and the loop."""
    velocity_at = velocity_at or vbody(vx_measured)
    seen = []

    def sampler(obs, goal):
        seen.append(goal[-1, COMMAND_TERM] / COMMAND_SCALE)
        return np.zeros((CONFIG.action.horizon, CONFIG.robot.num_joints))

    config = dataclasses.replace(CONFIG, command_feedback=feedback)
    loop = PolicyLoop(config, sampler, inference_wait_s=0.5)
    try:
        loop.set_skill_command(TROT.id, 0.3, 0.0, 0.0)
        now = 0.0

        def tick():
            sensors = (JointSample(DEFAULT_POSE, np.zeros(12), now, now), ImuSample([1, 0, 0, 0], np.zeros(3), now, now),
                       velocity_at(now) if with_velocity else None)
            return loop.tick(now, *sensors)

        tick()
        assert loop.request(ControllerRequest.STAND_UP)[0]
        tick()  # the stand-up move starts from the pose measured here
        now = CONFIG.controller.stand_up_duration + 0.5
        tick()
        assert loop.request(ControllerRequest.RUN)[0]
        seen.clear()
        for _ in range(100):
            now += DT
            tick()
        assert loop.controller.state == ControllerState.RUNNING
        np.testing.assert_allclose(loop.skill.command, [0.3, 0.0, 0.0])  # the user's command is untouched
        return np.array(seen), loop
    finally:
        loop.close()


def test_in_the_policy_loop_only_the_models_command_moves():
    seen, loop = loop_goal_commands(dataclasses.replace(ON, settle_s=1.0), vx_measured=0.1)
    np.testing.assert_allclose(seen[:48, 0], 0.3, atol=1e-6)  # the gait's own start is not integrated
    assert seen[-1][0] > 0.3 + 0.8 * ON.ki[0] * 0.2 * 48 * DT  # then ~1 s of a 0.2 m/s error is
    assert np.all(np.diff(seen[50:, 0]) > 0)
    np.testing.assert_allclose(loop.model_command, seen[-1], atol=0.02)


def test_in_the_policy_loop_without_feedback_or_vbody_the_model_sees_the_users_command():
    seen, _ = loop_goal_commands(dataclasses.replace(ON, enabled=False), vx_measured=0.1)
    np.testing.assert_allclose(seen, np.tile([0.3, 0.0, 0.0], (len(seen), 1)), atol=1e-6)
    seen, _ = loop_goal_commands(ON, vx_measured=0.1, with_velocity=False)
    np.testing.assert_allclose(seen[:, 0], 0.3, atol=1e-6)


BROKEN_VBODY = {
    "not finite": lambda now: VelocitySample([np.nan, 0.0, 0.0], now, now),
    "implausible": lambda now: VelocitySample([9.0, 0.0, 0.0], now, now),  # beyond any plausible body speed
    "malformed": lambda now: VelocitySample([0.1, 0.0], now, now),
    "stale": lambda now: VelocitySample([0.1, 0.0, 0.0], now - 1.0, now - 1.0),
    "out of order": lambda now: VelocitySample([0.1, 0.0, 0.0], now, -now),
}


@pytest.mark.parametrize("case", sorted(BROKEN_VBODY))
def test_a_broken_vbody_is_not_integrated_and_is_no_fault_for_a_model_that_does_not_observe_it(case):
    """The loop uses vBody only where SensorMonitor passed it; the monitor's verdict says why not."""
    seen, loop = loop_goal_commands(ON, velocity_at=BROKEN_VBODY[case])  # ON: integrating from the first tick
    np.testing.assert_allclose(seen[:, 0], 0.3, atol=1e-6)
    assert loop.monitor.velocity_fault and not loop.monitor.needs_velocity
    assert loop.last_fault == ""
