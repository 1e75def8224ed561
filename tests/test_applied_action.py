"""The applied_action observation term: each frame also carries the action sent in its own tick. With delayed
inputs the window for tick t ends with s[t-1], recorded after tick t-1 acted, so the model learns what it already
sent for t-1 (which the current frame's last_action would tell) without seeing any sensor reading of tick t."""

from __future__ import annotations

import numpy as np
import pytest
from layout_options import with_applied_action
from test_bag2dataset import write_bag
from test_policy_loop import drive_to_running

from diffuseloco_policy.config import load_config
from diffuseloco_learning.data.bag2dataset import convert
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.data.generate import GenerateSettings, run_episode
from diffuseloco_policy.observation import ObservationBuilder, RobotState
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_policy.policy_loop import PolicyLoop

CONFIG = load_config()
APPLIED_CONFIG = with_applied_action(CONFIG)
SLICES = APPLIED_CONFIG.observation.slices()
LAST, APPLIED = SLICES["last_action"], SLICES["applied_action"]
PLAIN_OBS = CONFIG.observation.obs_dim


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_the_generator_records_the_action_executed_in_the_frames_tick(noise):
    """Row k carries what was executed at tick k: the next row's last action. Without noise that is the recorded
    action; with DART noise it is the disturbed one, not the label."""
    settings = GenerateSettings(seed=0, episode_s=3.0, action_noise_std=noise)
    arrays = run_episode(APPLIED_CONFIG, settings, index=7).arrays
    plain = run_episode(CONFIG, settings, index=7).arrays
    obs = arrays["obs"]
    np.testing.assert_array_equal(obs[:, :PLAIN_OBS], plain["obs"])        # the term only appends
    np.testing.assert_array_equal(obs[:-1, APPLIED], obs[1:, LAST])
    gap = np.abs(obs[:, APPLIED] - arrays["action"]).max()
    assert gap == 0.0 if noise == 0.0 else gap > 0.05


def test_the_policy_loop_records_what_it_sent_and_the_sampler_sees_it_one_tick_later():
    windows, built = [], []
    decoder = ActionDecoder(CONFIG)

    def sampler(obs, goal):
        windows.append(obs.copy())
        k = len(windows)        # a different chunk each call, so every tick sends something new
        return np.full((CONFIG.action.horizon, CONFIG.robot.num_joints), 0.01 * np.sin(k))

    loop = PolicyLoop(APPLIED_CONFIG, sampler, inference_wait_s=5.0)   # every frame's plan is waited for
    reports = drive_to_running(loop, built)
    loop.close()
    frames = np.array(built)
    sent = np.array([decoder.action(r.command.q) for r in reports])
    np.testing.assert_allclose(frames[-len(reports):, APPLIED], sent, atol=1e-6)
    np.testing.assert_array_equal(frames[:-1, APPLIED], frames[1:, LAST])
    assert np.ptp(sent) > 0.005                                             # the check can tell ticks apart
    np.testing.assert_array_equal(windows[-1][-1], frames[len(windows) - 1])   # the input of the next tick


def test_the_current_frame_ablation_cannot_run_such_a_model():
    with pytest.raises(ValueError, match="applied_action.*current-frame"):
        PolicyLoop(APPLIED_CONFIG, lambda obs, goal: None, current_frame=True)


def test_a_frame_without_the_sent_action_is_refused():
    state = RobotState(np.asarray(CONFIG.robot.default_pose), np.zeros(12), np.array([1.0, 0, 0, 0]), np.zeros(3))
    with pytest.raises(ValueError, match="applied_action.*none was given"):
        ObservationBuilder(APPLIED_CONFIG).observation(state, np.zeros(12))


def test_the_bag_converter_takes_it_from_the_recorded_commands(tmp_path):
    convert([write_bag(tmp_path / "walk")], tmp_path / "applied.zarr", APPLIED_CONFIG)
    data = load_dataset(tmp_path / "applied.zarr")
    np.testing.assert_allclose(data["obs"][:, APPLIED], data["action"], atol=1e-6)
    assert data["obs"].shape[1] == PLAIN_OBS + CONFIG.robot.num_joints
