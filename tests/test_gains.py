"""Per-skill policy gains (gains.py): the scale a model file carries reaches the motor command of that skill,
ramps at a switch, never applies outside RUNNING, and bad scales are refused wherever they can enter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffuseloco_policy.config import MAX_KP_SCALE, MIN_KP_SCALE, ConfigError, load_config
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from diffuseloco_learning.evaluation.policies import make_policy, parse_gains
from diffuseloco_policy.gains import GAIN_SLEW_PER_S, SkillGains, describe_scales, kp_scales, with_kp_scales
from diffuseloco_policy.policy_loop import PolicyLoop

from test_controller import standing
from test_policy_loop import drive_to_running, synthetic_samples, zero_sampler

CONFIG = load_config()
DT = CONFIG.rates.control_dt
KP = CONFIG.robot.kp
TUNED = with_kp_scales(CONFIG, {"trot": 0.8, "bound": 1.2})


@pytest.mark.parametrize("scale", [MIN_KP_SCALE - 0.01, MAX_KP_SCALE + 0.01, 0.0, float("nan")])
def test_a_skill_scale_outside_the_bounds_is_refused(scale):
    with pytest.raises(ConfigError, match="kp_scale"):
        with_kp_scales(CONFIG, {"trot": scale})


def test_unknown_skills_are_refused():
    with pytest.raises(ConfigError, match="unknown skills"):
        with_kp_scales(CONFIG, {"gallop": 1.1})


def test_scales_round_trip_through_a_config_dict_and_default_to_one():
    from diffuseloco_policy.config import config_from_dict

    assert kp_scales(config_from_dict(TUNED.to_dict())) == {"stand": 1.0, "trot": 0.8, "pace": 1.0, "bound": 1.2, "hop": 1.0}
    data = CONFIG.to_dict()
    for skill in data["skills"]:
        del skill["kp_scale"]  # a model file written before the field existed
    assert set(kp_scales(config_from_dict(data)).values()) == {1.0}
    assert describe_scales(kp_scales(TUNED)) == "trot x0.8, bound x1.2"


def test_the_schedule_ramps_at_a_switch_and_rests_at_one_outside_running():
    gains = SkillGains(TUNED)
    trot, bound = TUNED.skill("trot").id, TUNED.skill("bound").id
    ramp = [gains.update(trot, True) for _ in range(20)]
    step = GAIN_SLEW_PER_S * DT
    assert ramp[0] == pytest.approx(1.0 - step)
    assert np.all(np.abs(np.diff([1.0, *ramp])) <= step + 1e-12)
    assert ramp[-1] == pytest.approx(0.8)
    up = [gains.update(bound, True) for _ in range(30)]
    assert np.all(np.abs(np.diff([0.8, *up])) <= step + 1e-12) and up[-1] == pytest.approx(1.2)
    assert gains.update(bound, False) == 1.0
    assert gains.update(bound, True) == pytest.approx(1.0 + step)  # a new run starts again from robot.kp


def running_controller():
    controller, now = standing()
    assert controller.request(ControllerRequest.RUN)[0]
    return controller, now, np.asarray(CONFIG.robot.default_pose)


@pytest.mark.parametrize("scale, sent", [(0.8, 0.8), (1.2, 1.2), (5.0, MAX_KP_SCALE), (0.1, MIN_KP_SCALE),
                                         (float("nan"), 1.0)])
def test_the_controller_sends_the_scaled_gain_with_policy_targets_only(scale, sent):
    controller, now, q = running_controller()
    command = controller.tick(now + DT, q, q, None, None, scale)
    assert controller.state == ControllerState.RUNNING
    np.testing.assert_allclose(command.kp, KP * sent)
    np.testing.assert_allclose(command.kd, CONFIG.robot.kd)
    held = controller.tick(now + 2 * DT, q, None, None, None, scale)  # no plan yet: the hold keeps the stand gains
    np.testing.assert_allclose(held.kp, CONFIG.controller.stand_kp)


def test_the_policy_loop_drives_each_skill_with_its_scale():
    loop = PolicyLoop(TUNED, zero_sampler, inference_wait_s=0.5)
    try:
        reports = drive_to_running(loop, [])
        assert reports[-1].state == ControllerState.RUNNING
        np.testing.assert_allclose(reports[-1].command.kp, KP)  # stand: robot.kp
        loop.set_skill_command(TUNED.skill("trot").id, 0.3, 0.0, 0.0)
        now, sent = loop.last_tick_at, []
        for k in range(40):
            now += DT
            sent.append(loop.tick(now, *synthetic_samples(100 + k, now)).command.kp[0])
        assert sent[0] < KP and sent[-1] == pytest.approx(0.8 * KP)
        assert np.all(np.abs(np.diff(sent)) <= KP * GAIN_SLEW_PER_S * DT + 1e-9)
    finally:
        loop.close()


def test_evaluation_gains_option_is_checked_and_the_experts_keep_robot_kp():
    assert parse_gains("trot:0.8/bound:1.1", CONFIG) == {"stand": 1.0, "trot": 0.8, "pace": 1.0, "bound": 1.1,
                                                         "hop": 1.0}
    assert set(parse_gains("none", CONFIG).values()) == {1.0}
    for bad in ("trot=0.8", "trot:fast", "gallop:1.1", "trot:2.0"):
        with pytest.raises(ValueError):
            parse_gains(bad, CONFIG)
    with pytest.raises(ValueError, match="experts run at robot.kp"):
        make_policy("expert,gains=trot:0.8", CONFIG)
    assert make_policy("expert", CONFIG).kp_scales == {}


def test_the_evaluation_drives_a_model_at_its_data_gains_and_the_experts_at_the_robot_configs():
    """As the node does (gains.with_model_gains): the shipped file's kp/kd, whatever the robot config's experts use."""
    from diffuseloco_policy.model_file import default_model_path, read_onnx_info

    trained = read_onnx_info(default_model_path(), CONFIG).config
    policy = make_policy(str(default_model_path()), CONFIG)
    try:
        assert policy.joint_gains == (trained.robot.kp, trained.robot.kd)
        assert policy.describe()["joint_gains"] == policy.joint_gains
    finally:
        policy.close()
    assert make_policy("expert", CONFIG).joint_gains is None
