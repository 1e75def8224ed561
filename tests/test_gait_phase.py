"""The gait_phase goal term: the experts' gait clock given to the policy, built the same way by the dataset
generator (from the expert's own schedule), the policy loop and the bag converter (from the skill commands)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from layout_options import with_gait_phase
from test_bag2dataset import COMMAND_TICKS, STANDING_UP, write_bag
from test_policy_loop import drive_to_running

from diffuseloco_policy.config import ConfigError, load_config
from diffuseloco_policy.controller import ControllerState
from diffuseloco_learning.data.bag2dataset import convert
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.data.generate import GenerateSettings, run_episode
from diffuseloco_policy.gaits import GaitFollower, GaitSchedule
from diffuseloco_policy.observation import ObservationBuilder
from diffuseloco_policy.policy_loop import PolicyLoop

CONFIG = load_config()
GAIT_CONFIG = with_gait_phase(CONFIG)
PLAIN_GOAL = CONFIG.observation.goal_dim          # command and skill come first, the clock after them
TROT, STAND = CONFIG.skill("trot").id, CONFIG.skill("stand").id


def followed(skills) -> np.ndarray:
    """What a fresh GaitFollower gives for this skill sequence, one row per tick."""
    follower = GaitFollower(GAIT_CONFIG)
    return np.array([follower.step(int(s)) for s in skills])


def test_the_features_are_points_on_the_circle_and_stance_flags():
    features = followed([STAND] * 5 + [TROT] * 40)
    sin, cos, stance = features[:, :4], features[:, 4:8], features[:, 8:]
    np.testing.assert_allclose(sin**2 + cos**2, 1.0, atol=1e-12)
    assert set(np.unique(stance)) == {0.0, 1.0}
    assert np.all(stance[:5] == 1.0) and np.all(features[:5] == features[0])    # standing: the clock is frozen
    trotting = stance[10:]
    np.testing.assert_array_equal(trotting[:, 0], trotting[:, 3])                # trot: diagonal pairs together
    np.testing.assert_array_equal(trotting[:, 1], trotting[:, 2])
    assert np.all(trotting[:, 0] != trotting[:, 1])


@pytest.mark.parametrize("index,skills", [(7, ("stand", "trot", "bound")),    # trot, stand again, bound
                                          (15, ("stand", "hop", "pace"))])     # hop, then pace
def test_the_generator_records_the_phases_a_follower_computes_from_the_skills(index, skills):
    """The dataset's clock comes from the expert's schedule; a follower fed only the recorded skills (the policy
    loop, the bag converter) reproduces it at every tick, through skill switches."""
    arrays = run_episode(GAIT_CONFIG, GenerateSettings(seed=0, episode_s=8.0), index=index).arrays
    expected, skills = {CONFIG.skill(name).id for name in skills}, arrays["skill"]
    assert set(skills.tolist()) == expected
    plain = run_episode(CONFIG, GenerateSettings(seed=0, episode_s=8.0), index=index).arrays
    np.testing.assert_array_equal(arrays["goal"][:, :PLAIN_GOAL], plain["goal"])  # the term only appends
    np.testing.assert_array_equal(arrays["obs"], plain["obs"])
    np.testing.assert_allclose(arrays["goal"][:, PLAIN_GOAL:], followed(skills), atol=1e-6)
    assert np.ptp(arrays["goal"][:, PLAIN_GOAL:PLAIN_GOAL + 8], axis=0).min() > 1.0   # the phases go round


def test_the_policy_loop_stands_the_clock_until_it_runs_then_follows_the_skill():
    windows, built, states = [], [], []

    def sampler(obs, goal):
        windows.append(goal.copy())
        return np.zeros((CONFIG.action.horizon, CONFIG.robot.num_joints))

    loop = PolicyLoop(GAIT_CONFIG, sampler, inference_wait_s=5.0)   # every frame's plan is waited for
    build_goal = loop.builder.goal

    def recording_goal(*args):
        states.append(loop.controller.state)
        built.append(build_goal(*args))
        return built[-1]

    loop.builder.goal = recording_goal
    loop.set_skill_command(TROT, 0.3, 0.0, 0.0)    # chosen before RUN: the clock must not start before the policy
    try:
        drive_to_running(loop, [])
    finally:
        loop.close()
    running = np.array([s == ControllerState.RUNNING for s in states])
    assert running.sum() >= 20 and (~running).sum() >= 2
    expected = followed(np.where(running, TROT, STAND))
    np.testing.assert_allclose(np.array(built)[:, PLAIN_GOAL:], expected, atol=1e-6)
    assert np.all(expected[~running][:, 8:] == 1.0) and not np.all(expected[running][:, 8:] == 1.0)
    history = CONFIG.observation.history
    np.testing.assert_array_equal(windows[-1], built[len(windows) - history:len(windows)])  # what the model saw


def test_the_bag_converter_runs_the_clock_from_the_recorded_skills(tmp_path):
    bag = write_bag(tmp_path / "walk")
    convert([bag], tmp_path / "gait.zarr", GAIT_CONFIG)
    data = load_dataset(tmp_path / "gait.zarr")
    assert data["goal"].shape == (len([k for k in COMMAND_TICKS if k not in STANDING_UP]), PLAIN_GOAL + 12)
    starts = np.concatenate([[0], data["episode_ends"][:-1]])
    for start, end in zip(starts, data["episode_ends"]):     # every run starts standing, as the loop's does
        np.testing.assert_allclose(data["goal"][start:end, PLAIN_GOAL:], followed(data["skill"][start:end]),
                                   atol=1e-6)
    assert np.ptp(data["goal"][:, PLAIN_GOAL]) > 1.0


def test_a_goal_without_the_phase_is_refused_where_the_config_has_the_term():
    builder = ObservationBuilder(GAIT_CONFIG)
    with pytest.raises(ValueError, match="gait_phase.*GaitFollower"):
        builder.goal(np.zeros(3), TROT)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        builder.goal(np.zeros(3), TROT, np.zeros(4))
    assert ObservationBuilder(CONFIG).goal(np.zeros(3), TROT, GaitSchedule().phase_features()).shape == (PLAIN_GOAL,)


def test_configs_the_clock_cannot_serve_are_refused():
    with pytest.raises(ConfigError, match="12 values"):
        ObservationBuilder(with_gait_phase(CONFIG, size=8))
    gallop = GAIT_CONFIG.skills[:-1] + (dataclasses.replace(GAIT_CONFIG.skills[-1], name="gallop"),)
    with pytest.raises(ValueError, match=r"no gait timing for skills \['gallop'\]"):
        GaitFollower(dataclasses.replace(GAIT_CONFIG, skills=gallop))
