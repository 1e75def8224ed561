"""The firmware's motor mode (sim/firmware.py) against the public firmware source, rule by rule.

Each test names the behaviour of cyberdog_locomotion it reproduces: FsmStateMotorCtrl::Run()
(control/src/fsm_states/fsm_state_motor_ctrl.cpp) and LegController::UpdateCommand
(common/src/controllers/leg_controller.cpp). The `firmware` fixture also runs the model the project used before
(tests/support/per_frame_firmware.py: a step limit between frames, feed-forward zeroed after 10 ms, kd 5 after
500 ms, no activation wait, no soft limits): the rules in OLD_MODEL_FAILS are run against it too and must each
fail there, so the suite proves it can tell the two apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_sim import CyberDogSim, MotorCommand
from diffuseloco_sim import firmware as fw
from per_frame_firmware import PerFrameFirmware

CONFIG = load_config()
ROBOT = CONFIG.robot
POSE = np.asarray(ROBOT.default_pose)           # internal (model) convention, like the firmware
ZERO_QD = np.zeros(12)
BAND = np.tile(np.radians([8.0, 10.0, 12.0]), 4)


def source_model(activated: bool = True) -> fw.MotorFirmware:
    model = fw.MotorFirmware(ROBOT)
    model.reset(activated=activated)
    return model


def firmware_params(old_fails: bool):
    """The source model always; the old per-frame one where it passes the rule too (where it must fail, the rule
    is listed in OLD_MODEL_FAILS instead)."""
    return ["source"] if old_fails else ["source", "per_frame"]


def make(kind: str):
    return source_model() if kind == "source" else PerFrameFirmware(ROBOT)


def frame(q_des, kp=30.0, kd=1.0, qd_des=0.0, tau=0.0) -> MotorCommand:
    q = np.asarray(q_des, dtype=np.float64)
    return MotorCommand(q, np.broadcast_to(np.asarray(qd_des, float), q.shape).copy(), np.full(12, kp),
                        np.full(12, kd), np.broadcast_to(np.asarray(tau, float), q.shape).copy())


# ------------------------------------------------------------------------- position band (Run(), bits 2-4)
@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_q_des_is_held_within_8_10_12_deg_of_the_measured_angle_in_every_frame(kind):
    """motor_sdk_position_mutation_limit: |q_des - datas_[i].q| > 8/10/12 deg is pulled back to q +- limit in
    EVERY frame, however long the same frame is re-sent: a band around the measured angle, not a step limit."""
    model = make(kind)
    for _ in range(5):                                   # re-sent every frame; the legs do not move (a load)
        out = model.run(frame(POSE + 0.5), 0.0, POSE, ZERO_QD)
    np.testing.assert_allclose(out.q_des, POSE + BAND)


@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_a_small_step_from_the_previous_frame_is_still_clamped_against_the_measured_angle(kind):
    model = make(kind)
    model.run(frame(POSE + 0.1), 0.0, POSE, ZERO_QD)     # within every band
    out = model.run(frame(POSE + 0.25), 0.0, POSE, ZERO_QD)   # 0.15 from the last frame, 0.25 from the legs
    np.testing.assert_allclose(out.q_des, POSE + np.minimum(BAND, 0.25))


def test_band_clamps_set_err_flag_bits_2_to_4_as_the_last_legs_pass_leaves_them():
    """Each leg's pass sets or clears bits 2-4, so after Run() they are the RL leg's; the model counts all."""
    model = source_model()
    q_des = POSE.copy()
    q_des[0] += 0.3                                      # FR abad only
    model.run(frame(q_des), 0.0, POSE, ZERO_QD)
    assert model.err_flag & (fw.ERR_BAND_ABAD | fw.ERR_BAND_HIP | fw.ERR_BAND_KNEE) == 0
    assert model.clamp_counts[0] == 1 and model.clamped_frames == 1
    q_des[9:12] += 0.3                                   # the RL leg too
    model.run(frame(q_des), 0.0, POSE, ZERO_QD)
    assert model.err_flag & 0x1C == 0x1C
    assert fw.decode_err_flag(model.err_flag)[0].startswith("abad q_des clamped")
    model.run(frame(POSE), 0.0, POSE, ZERO_QD)
    assert model.err_flag == 0 and model.clamp_share == pytest.approx(2 / 3)


def test_q_des_is_clamped_0_04_rad_inside_the_joint_bounds():
    """software_limit: q_des clamped to [lower + 0.04, upper - 0.04] (front / rear hip bounds differ)."""
    model = source_model()
    upper, lower = np.asarray(ROBOT.position_upper), np.asarray(ROBOT.position_lower)
    out = model.run(frame(upper + 1.0), 0.0, upper - 0.06, ZERO_QD)
    np.testing.assert_allclose(out.q_des, upper - 0.04)
    out = model.run(frame(lower - 1.0), 0.0, lower + 0.06, ZERO_QD)
    np.testing.assert_allclose(out.q_des, lower + 0.04)
    assert lower[1] != lower[7], "the config carries front and rear hip bounds"


# ------------------------------------------------------------------------------------- command gap (Run())
@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_a_20_ms_gap_divides_qd_des_and_tau_des_by_gap_over_10_ms(kind):
    """Ctrl_Over_Time_War (10 ms, cmd_time_delay in ms): qd_des /= gap / 10, tau_des /= gap / 10, bit 0."""
    model = make(kind)
    out = model.run(frame(POSE, qd_des=4.0, tau=2.0), 20.0, POSE, ZERO_QD)
    np.testing.assert_allclose(out.qd_des, 2.0)
    np.testing.assert_allclose(out.tau, 1.0)
    np.testing.assert_allclose(out.kp, 30.0)
    assert model.err_flag & fw.ERR_GAP_WARNING
    model.run(frame(POSE), 2.0, POSE, ZERO_QD)
    assert not model.err_flag & fw.ERR_GAP_WARNING, "bit 0 clears with the next timely frame"


@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_a_600_ms_gap_gives_kd_4_for_about_2_5_s_then_limp_motors(kind):
    """Ctrl_Over_Time_Err (500 ms): bit 1, zeros with kd 4 while wait_reconnect_ (+1 per leg) < 5000, then zeros."""
    model = make(kind)
    held = frame(POSE, kp=30.0, kd=1.0)
    outs = [model.run(held, 600.0 + 2.0 * k, POSE, ZERO_QD) for k in range(1300)]
    assert model.err_flag & fw.ERR_GAP_DAMPING
    kd4 = [bool(np.all(o.kd == 4.0) and np.all(o.kp == 0.0)) for o in outs]
    limp = [bool(np.all(o.kd == 0.0) and np.all(o.kp == 0.0) and np.all(o.tau == 0.0)) for o in outs]
    assert all(kd4[:1249]) and not any(kd4[1249:]), "kd 4 for 4999 counts: 1249 whole frames, about 2.5 s"
    np.testing.assert_allclose(outs[1249].kd, [4.0] * 9 + [0.0] * 3)   # count 5000 falls on the RL leg
    assert all(limp[1250:]), "then all zeros"


def test_bit_1_clears_only_after_the_wait_and_only_on_an_all_zero_frame():
    """After the wait, a frame with kp = kd = tau = 0 (q_des and qd_des may be anything) and a gap under 500 ms
    clears bit 1; a frame with gains does not, and before the wait nothing does."""
    model = source_model()
    model.run(frame(POSE), 600.0, POSE, ZERO_QD)         # bit 1
    zero = MotorCommand(POSE.copy(), np.ones(12), np.zeros(12), np.zeros(12), np.zeros(12))
    for _ in range(1000):                                # 2 s of zero frames: still waiting
        model.run(zero, 2.0, POSE, ZERO_QD)
    assert model.err_flag & fw.ERR_GAP_DAMPING
    for _ in range(300):                                 # past the wait, but frames with gains
        out = model.run(frame(POSE), 2.0, POSE, ZERO_QD)
    assert model.err_flag & fw.ERR_GAP_DAMPING and np.all(out.kp == 0) and np.all(out.kd == 0), "limp meanwhile"
    model.run(zero, 2.0, POSE, ZERO_QD)
    assert not model.err_flag & fw.ERR_GAP_DAMPING
    out = model.run(frame(POSE + 0.05), 2.0, POSE, ZERO_QD)
    np.testing.assert_allclose(out.kp, 30.0)
    np.testing.assert_allclose(out.q_des, POSE + 0.05)


@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_entering_motor_mode_ignores_gains_until_zero_frames_were_sent_for_2_5_s(kind):
    """OnEnter sets bit 1 ("Need reset error first for safty"): the first frames are replaced by zeros + kd 4."""
    model = fw.MotorFirmware(ROBOT) if kind == "source" else PerFrameFirmware(ROBOT)
    assert np.all(model.run(None, 0.0, POSE, ZERO_QD).kd == 0), "no frame yet: passive"
    out = model.run(frame(POSE), 0.0, POSE, ZERO_QD)
    np.testing.assert_allclose(out.kp, 0.0)
    np.testing.assert_allclose(out.kd, 4.0)
    assert model.err_flag & fw.ERR_GAP_DAMPING


# ------------------------------------------------------------------ soft joint limits (UpdateCommand)
@pytest.mark.parametrize("kind", firmware_params(old_fails=True))
def test_within_0_05_rad_of_a_bound_a_push_outward_is_replaced_by_the_soft_limit(kind):
    """DELTA 0.05, SOFT_KP 20: kp = kd = 0 and tau = 20 ((bound - 0.05) - q) while the PD pushes towards the
    bound (the knee beyond 1 N m); a joint pulled away from the bound keeps its command."""
    model = make(kind)
    upper = np.asarray(ROBOT.position_upper)
    q = POSE.copy()
    q[2] = upper[2] - 0.03                               # FR knee 0.03 rad from its upper bound
    q_des = q.copy()
    q_des[2] = upper[2]                                  # pushes outward: kp * 0.03 + tau 2 > 1 N m
    out = model.run(frame(q_des, tau=2.0), 0.0, q, ZERO_QD)
    assert out.kp[2] == 0.0 and out.kd[2] == 0.0
    assert out.tau[2] == pytest.approx(20.0 * ((upper[2] - 0.05) - q[2]))
    np.testing.assert_allclose(np.delete(out.kp, 2), 30.0)
    inward = q.copy()
    inward[2] -= 0.1
    out = model.run(frame(inward), 0.0, q, ZERO_QD)
    assert out.kp[2] == 30.0


# ------------------------------------------------------------------------------------- in the simulator
def test_the_simulator_runs_every_frame_through_the_firmware():
    """CyberDogSim's joint law gets the firmware's q_des: a target far from the pose pulls with kp x band only."""
    sim = CyberDogSim(CONFIG)
    q = sim.true_joint_position()
    sim.command(MotorCommand.position(sim.convention.to_sdk(q + 0.5), 30.0, 0.0))
    sim.step(1)
    np.testing.assert_allclose(sim.convention.to_model(sim.joint_state().tau_est), np.clip(30.0 * BAND, -12, 12),
                               atol=1e-9)
    assert sim.err_flag & 0x1C == 0x1C and sim.firmware.clamped_frames == 1


def test_a_silent_client_in_the_simulator_gets_the_gap_rules():
    """With the bridge gone (disconnect), the gap grows 2 ms per frame: bit 0 after 10 ms, kd 4 after 500 ms."""
    sim = CyberDogSim(CONFIG)
    sim.step(5)
    sim.disconnect()
    sim.step(6)
    assert sim.err_flag & fw.ERR_GAP_WARNING and not sim.err_flag & fw.ERR_GAP_DAMPING
    sim.step(250)
    assert sim.err_flag & fw.ERR_GAP_DAMPING
    js = sim.joint_state()
    sim.step(1)
    np.testing.assert_allclose(sim.joint_state().tau_est, np.clip(-4.0 * js.qd, -12, 12), atol=0.3)


def test_the_controller_stands_a_lying_dog_up_inside_the_band():
    """On the robot the band caps the stand-up's PD torque: with the weight carried through tau_des
    (controller.support_mass) the dog reaches its standing height; the PD alone at the stand gains does not."""
    import dataclasses

    from diffuseloco_policy.controller import Controller, ControllerRequest
    from diffuseloco_policy.safety import SafetyFilter

    def stand_height(support_mass: float) -> float:
        config = load_config()
        config = dataclasses.replace(config, controller=dataclasses.replace(config.controller,
                                                                            support_mass=support_mass))
        sim = CyberDogSim(config, seed=1)
        sim.reset(joint_position=np.array(config.controller.lying_pose), base_height=0.08)
        controller, safety = Controller(config), SafetyFilter(config)
        previous = None
        for tick in range(200):
            q = sim.robot_state().joint_position
            if tick == 1:
                assert controller.request(ControllerRequest.STAND_UP)[0]
            command, _ = safety.filter(controller.tick(tick * config.rates.control_dt, q), previous, q)
            previous = command.q
            sim.command_pd(command.q, command.dq, command.kp, command.kd, command.tau)
            sim.step()
        return sim.base_height()

    assert stand_height(load_config().controller.support_mass) > 0.25
    assert stand_height(0.0) < 0.2


OLD_MODEL_FAILS = (
    test_q_des_is_held_within_8_10_12_deg_of_the_measured_angle_in_every_frame,
    test_a_small_step_from_the_previous_frame_is_still_clamped_against_the_measured_angle,
    test_a_20_ms_gap_divides_qd_des_and_tau_des_by_gap_over_10_ms,
    test_a_600_ms_gap_gives_kd_4_for_about_2_5_s_then_limp_motors,
    test_entering_motor_mode_ignores_gains_until_zero_frames_were_sent_for_2_5_s,
    test_within_0_05_rad_of_a_bound_a_push_outward_is_replaced_by_the_soft_limit,
)


@pytest.mark.parametrize("rule", OLD_MODEL_FAILS, ids=lambda rule: rule.__name__[5:])
def test_the_old_per_frame_model_breaks_the_rule(rule):
    with pytest.raises(AssertionError):
        rule("per_frame")
