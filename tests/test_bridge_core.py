"""The LCM bridge's ROS-free core: conversions field by field (signs, frames, quaternion order), command checks,
and the relay's hold / re-send / stop and motor-mode activation logic on a fake clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffuseloco_policy.bridge import lcm_bridge as lb
from diffuseloco_policy.bridge.lcm_types import (leg_control_data_lcmt, motor_ctrl_lcmt, motor_ctrl_state_lcmt,
                                                 state_estimator_lcmt)
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.motor_sdk import ImuReading
from diffuseloco_policy.motor_sdk import MotorCommand as SdkMotorCommand

CONFIG = load_config()
CONVENTION = JointConvention(CONFIG.robot)
SIGN = np.tile([1.0, -1.0, -1.0], 4)   # the SDK's CustomInterface sig[] (user <-> wire)
J = np.arange(12, dtype=np.float64)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def sample_command() -> SdkMotorCommand:
    return SdkMotorCommand(0.1 * J - 0.5, 0.01 * J, 20.0 + J, 0.5 + 0.1 * J, 0.2 * J - 1.0)


# ------------------------------------------------------------------------------------------------ conversions
def test_the_sign_map_is_the_sdks():
    assert np.array_equal(CONVENTION.sign, SIGN)


def test_motor_ctrl_carries_the_internal_convention_and_unsigned_gains():
    cmd = sample_command()
    msg = lb.motor_ctrl_from_command(cmd, CONVENTION)
    assert isinstance(msg, motor_ctrl_lcmt)
    msg = motor_ctrl_lcmt.decode(msg.encode())   # what the firmware sees: float32
    np.testing.assert_array_equal(msg.q_des, f32(cmd.q_des * SIGN))
    np.testing.assert_array_equal(msg.qd_des, f32(cmd.qd_des * SIGN))
    np.testing.assert_array_equal(msg.tau_des, f32(cmd.tau * SIGN))
    np.testing.assert_array_equal(msg.kp_des, f32(cmd.kp))
    np.testing.assert_array_equal(msg.kd_des, f32(cmd.kd))
    back = lb.command_from_motor_ctrl(msg, CONVENTION)
    for name in ("q_des", "qd_des", "kp", "kd", "tau"):
        np.testing.assert_allclose(getattr(back, name), getattr(cmd, name), rtol=1e-6, atol=1e-6)


def test_the_sdk_example_stand_pose_is_the_models_default_pose_on_the_wire():
    """SDK example target (0, 45 deg, -70 deg) in user convention == our model default pose (internal)."""
    user = np.tile(np.radians([0.0, 45.0, -70.0]), 4)
    msg = lb.motor_ctrl_from_command(SdkMotorCommand.position(user, 10.0, 1.0), CONVENTION)
    np.testing.assert_allclose(msg.q_des, CONFIG.robot.default_pose, atol=2e-3)
    assert all(msg.q_des[i] > 0 for i in (2, 5, 8, 11)), "knees are positive (bent) on the wire"


def wire_leg_data() -> leg_control_data_lcmt:
    msg = leg_control_data_lcmt()
    msg.q, msg.qd, msg.tau_est = list(0.1 * J), list(1.0 + J), list(-0.3 * J)
    msg.p, msg.v = list(0.01 * J), list(-0.02 * J)
    msg.force_est, msg.force_desired = list(5.0 * J), list(7.0 - J)
    msg.q_abad_limit, msg.q_hip_limit, msg.q_knee_limit = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]
    return leg_control_data_lcmt.decode(msg.encode())


def test_leg_control_data_field_by_field():
    msg = wire_leg_data()
    data = lb.leg_data_from_lcm(msg, CONVENTION)
    np.testing.assert_allclose(data.q, f32(0.1 * J) * SIGN)
    np.testing.assert_allclose(data.qd, f32(1.0 + J) * SIGN)
    np.testing.assert_allclose(data.tau_est, f32(-0.3 * J) * SIGN)
    # Cartesian per-leg vectors and flags are not joint values: unchanged
    np.testing.assert_allclose(data.p, f32(0.01 * J))
    np.testing.assert_allclose(data.v, f32(-0.02 * J))
    np.testing.assert_allclose(data.force_est, f32(5.0 * J))
    np.testing.assert_allclose(data.force_desired, f32(7.0 - J))
    assert data.q_abad_limit.tolist() == [1, 0, 0, 0] and data.q_hip_limit.tolist() == [0, 1, 0, 0]
    assert data.q_knee_limit.tolist() == [0, 0, 0, 1]
    again = lb.leg_control_data_lcm(data, CONVENTION)   # the peer's direction inverts it exactly
    for name in leg_control_data_lcmt.__slots__:
        np.testing.assert_allclose(getattr(again, name), getattr(msg, name), atol=1e-6)


def test_wrong_lengths_from_lcm_raise():
    msg = wire_leg_data()
    msg.q = msg.q[:11]
    with pytest.raises(ValueError):
        lb.leg_data_from_lcm(msg, CONVENTION)


def test_state_estimator_to_imu_keeps_wxyz_and_uses_body_frame_rates():
    half = math.radians(30.0) / 2   # 30 deg yaw
    reading = ImuReading(np.array([math.cos(half), 0.0, 0.0, math.sin(half)]), np.array([0.1, -0.2, 0.3]),
                         np.array([1.0, 2.0, 9.81]))
    msg = state_estimator_lcmt.decode(lb.state_estimator_lcm(reading, timestamp=123).encode())
    np.testing.assert_allclose(msg.rpy, [0.0, 0.0, math.radians(30.0)], atol=1e-6)
    np.testing.assert_allclose(msg.omegaWorld, [0.1 * math.cos(2 * half) + 0.2 * math.sin(2 * half),
                                                0.1 * math.sin(2 * half) - 0.2 * math.cos(2 * half), 0.3], atol=1e-6)
    msg.omegaWorld, msg.aWorld = [9.0] * 3, [9.0] * 3   # world-frame fields must not leak into the Imu
    imu = lb.imu_reading_from_estimator(msg)
    np.testing.assert_allclose(imu.quaternion, reading.quaternion, atol=1e-7)
    assert imu.quaternion[0] == pytest.approx(math.cos(half), abs=1e-7), "w first"
    np.testing.assert_allclose(imu.gyro, reading.gyro, atol=1e-7)
    np.testing.assert_allclose(imu.accelerometer, reading.accelerometer, atol=1e-6)
    assert msg.timestamp == 123


def test_motor_ctrl_state_round_trip():
    state = lb.MotorCtrlState(lb.ERR_GAP_DAMPING | lb.ERR_BAND_KNEE, 0.002)
    back = lb.motor_ctrl_state_from_lcm(motor_ctrl_state_lcmt.decode(lb.motor_ctrl_state_lcm(state).encode()))
    assert back.err_flag == 0x12 and back.damping and back.ctrl_topic_interval == pytest.approx(0.002)


def test_zero_frames_are_recognised():
    assert lb.is_zero_frame(lb.motor_ctrl_from_command(lb.zero_frame(), CONVENTION))
    assert not lb.is_zero_frame(lb.motor_ctrl_from_command(sample_command(), CONVENTION))


@pytest.mark.parametrize("field,value", [("q_des", np.nan), ("kp", np.inf), ("tau", -np.inf), ("qd_des", "short"),
                                         ("kd", "long")])
def test_bad_commands_are_named(field, value):
    cmd = sample_command()
    a = getattr(cmd, field).copy()
    if value == "short":
        a = a[:11]
    elif value == "long":
        a = np.append(a, 0.0)
    else:
        a[3] = value
    problem = lb.command_problem(SdkMotorCommand(**{**cmd.__dict__, field: a}))
    assert problem is not None and field in problem
    assert lb.command_problem(cmd) is None


# ---------------------------------------------------------------------------------------------------- relay
FRAME = 1.0 / lb.FRAME_RATE_HZ


def run_frames(relay: lb.CommandRelay, start: float, end: float) -> list[tuple[float, object]]:
    out, t = [], start
    while t < end - 1e-9:
        out.append((t, relay.frame(t)))
        t += FRAME
    return out


def test_relay_holds_the_newest_command_then_stops_sending():
    relay = lb.CommandRelay(hold_s=0.1, require_activation=False)
    assert relay.frame(0.0) is None, "nothing is sent before the first command"
    a, b = sample_command(), SdkMotorCommand.position(np.zeros(12), 5.0, 0.5)
    relay.submit(a, 1.0)
    frames = run_frames(relay, 1.0, 1.02)
    assert len(frames) == 10 and all(f is a for _, f in frames), "re-sent every 2 ms frame"
    relay.submit(b, 1.02)
    frames = run_frames(relay, 1.02, 1.3)
    sent = [t for t, f in frames if f is not None]
    assert all(f is b for _, f in frames if f is not None), "the newest command replaces the held one"
    assert sent[-1] == pytest.approx(1.12, abs=1.5 * FRAME), "held for hold_s after it arrived"
    assert all(f is None for t, f in frames if t > 1.12 + 1e-9), "then nothing: the firmware's gap protection"
    relay.submit(a, 2.0)
    assert relay.frame(2.001) is a, "a new command resumes sending"


def test_relay_activates_motor_mode_with_zero_frames_until_the_firmware_confirms():
    relay = lb.CommandRelay(hold_s=0.1, require_activation=True)
    relay.on_state(lb.MotorCtrlState(0, 0.0), 0.5)   # a state from BEFORE the activation does not count
    cmd = sample_command()
    relay.submit(cmd, 1.0)
    frames = run_frames(relay, 1.0, 1.01)
    assert not relay.active
    assert all(lb.command_problem(f) is None and not np.any(f.kp) and not np.any(f.q_des) for _, f in frames)
    relay.on_state(lb.MotorCtrlState(lb.ERR_GAP_DAMPING, 0.002), 1.01)   # firmware still in damping
    assert relay.frame(1.012) is not cmd and not relay.active
    relay.on_state(lb.MotorCtrlState(0, 0.002), 1.014)                   # bit 1 cleared: motor mode
    assert relay.active and relay.frame(1.016) is cmd
    assert relay.zero_frames_sent == 6


def test_relay_reactivates_after_the_firmware_falls_back_or_after_a_long_silence():
    relay = lb.CommandRelay(hold_s=0.1, require_activation=True)
    cmd = sample_command()
    relay.submit(cmd, 0.0)
    relay.frame(0.0)
    relay.on_state(lb.MotorCtrlState(0, 0.002), 0.001)
    assert relay.frame(0.002) is cmd
    relay.on_state(lb.MotorCtrlState(lb.ERR_GAP_DAMPING, 0.6), 0.004)   # the firmware reports damping
    assert not relay.active and lb.is_zero_frame(lb.motor_ctrl_from_command(relay.frame(0.006), CONVENTION))
    relay.on_state(lb.MotorCtrlState(0, 0.002), 0.008)
    assert relay.frame(0.010) is cmd
    relay.submit(cmd, 1.0)   # 0.9 s without a frame: the firmware has fallen back even if no state said so
    assert relay.frame(1.0) is not cmd and not relay.active
    relay.on_state(lb.MotorCtrlState(0, 0.002), 1.001)
    assert relay.frame(1.002) is cmd


def test_relay_refuses_a_nonpositive_hold():
    with pytest.raises(ValueError):
        lb.CommandRelay(hold_s=0.0)


def test_relay_counts_the_firmwares_band_clamps_and_sends_q_des_as_commanded():
    """The firmware pulls q_des back to the measured angle +- 8/10/12 deg every frame and reports it in err_flag
    bits 2-4 (fsm_state_motor_ctrl.cpp): the relay counts every report; it does not clip with its own, older,
    leg data (the firmware's angle is newer) and forwards q_des as the policy node's safety filter left it."""
    relay = lb.CommandRelay(hold_s=0.1, require_activation=False)
    far = np.tile(np.radians([16.0, -20.0, 24.0]), 4)
    b = SdkMotorCommand.position(far, 30.0, 3.0)
    relay.submit(b, 0.0)
    relay.on_measured(np.zeros(12))
    assert relay.frame(0.002) is b
    relay.on_state(lb.MotorCtrlState(err_flag=lb.ERR_BAND_HIP | lb.ERR_BAND_KNEE, ctrl_topic_interval=0.0), 0.003)
    relay.on_state(lb.MotorCtrlState(err_flag=0, ctrl_topic_interval=0.0), 0.004)
    relay.on_state(lb.MotorCtrlState(err_flag=lb.ERR_BAND_KNEE | lb.ERR_GAP_WARNING, ctrl_topic_interval=12.0), 0.005)
    assert relay.firmware_clamps == 2
    assert relay.firmware_clamp_counts == {"abad": 0, "hip": 1, "knee": 2}


def test_relay_sends_damping_after_a_motor_fault_whatever_comes_in():
    """The SDK stops on any spi_data flag & 0x3FFFFFFF (custom_interface.cpp); the bridge latches damping."""
    relay = lb.CommandRelay(hold_s=0.1, require_activation=False)
    relay.on_measured(np.full(12, 0.3))
    relay.submit(sample_command(), 0.0)
    assert relay.motor_fault("FR_knee offline") and not relay.motor_fault("again")
    for t in (0.0, 0.002, 5.0):                         # even long after the last command
        frame = relay.frame(t)
        assert np.all(frame.kp == 0) and np.all(frame.kd == 4.0) and np.all(frame.tau == 0)
        np.testing.assert_array_equal(frame.q_des, np.full(12, 0.3))
    assert relay.fault == "FR_knee offline"


def test_spi_data_round_trip_decodes_flags_and_temperatures():
    motors = lb.MotorData(0.1 * J, 0.2 * J, 0.3 * J - 1.0, np.full(12, lb.MOTOR_MODE_RUNNING), 0, 30.0 + J)
    flags = motors.flags.copy()
    flags[4] |= 1 << 4                                  # FL hip: bus over voltage
    flags[7] |= 1 << 24                                 # RR hip: coil temperature high
    motors = lb.MotorData(motors.q, motors.qd, motors.tau, flags, 0, motors.temperature)
    wire = lb.spi_data_lcm(motors, CONVENTION)
    np.testing.assert_allclose(wire.q_hip, f32(CONVENTION.to_model(motors.q).reshape(4, 3)[:, 1]))
    assert list(wire.tmp_knee) == [320, 350, 380, 410]     # 0.1 C on the wire
    back = lb.motor_data_from_lcm(lb.spi_data_t.decode(wire.encode()), CONVENTION)
    np.testing.assert_allclose(back.q, f32(CONVENTION.to_model(motors.q)) * SIGN, atol=1e-6)
    np.testing.assert_allclose(back.temperature, motors.temperature)
    assert back.faults() == {4: ["bus over voltage (> 30 V)"], 7: ["coil temperature high (over 95 C)"]}
    assert lb.decode_motor_flags(lb.MOTOR_MODE_RUNNING) == [], "the mode bits are no fault (SDK mask 0x3FFFFFFF)"


def test_a_command_moves_its_setpoint_along_its_velocity_for_one_tick_then_stops():
    q = np.linspace(-0.5, 0.5, 12)
    qd = np.linspace(-5.0, 5.0, 12)
    cmd = SdkMotorCommand(q, qd, np.full(12, 30.0), np.full(12, 3.0), np.zeros(12))
    assert cmd.advanced(0.0, 0.02) is cmd
    np.testing.assert_allclose(cmd.advanced(0.01, 0.02).q_des, q + 0.01 * qd)
    np.testing.assert_allclose(cmd.advanced(0.01, 0.02).qd_des, qd)
    late = cmd.advanced(0.05, 0.02)                       # a late command: the plan's tick ended, so did the motion
    np.testing.assert_allclose(late.q_des, q + 0.02 * qd)
    assert not late.qd_des.any()
    assert cmd.advanced(0.01, 0.0) is cmd                 # horizon 0: held, as before


def test_the_relay_sends_the_setpoint_moved_along_qd_des_between_policy_ticks():
    relay = lb.CommandRelay(require_activation=False, advance_s=0.02)
    q, qd = np.zeros(12), np.full(12, 4.0)
    relay.submit(SdkMotorCommand(q, qd, np.full(12, 30.0), np.full(12, 3.0), np.zeros(12)), 1.0)
    sent = [relay.frame(1.0 + k * 0.002) for k in range(12)]
    np.testing.assert_allclose([f.q_des[0] for f in sent], [min(k * 0.002, 0.02) * 4.0 for k in range(12)])
    assert sent[-1].qd_des[0] == 0.0 and sent[5].qd_des[0] == 4.0


def test_the_bridge_diagnostics_values_are_one_number_per_key():
    """Temperatures, flags, err_flag, the command gap and the clamp count as plain numbers (plotting tools read
    each as a series); only the stall posture's phase is a word."""
    from diffuseloco_policy.nodes.lcm_bridge_node import bridge_diagnostics

    flags = np.full(12, lb.MOTOR_MODE_RUNNING)
    flags[4] |= 1 << 4
    motors = lb.MotorData(0.1 * J, 0.2 * J, 0.3 * J, flags, 0, 30.0 + J)
    state = lb.MotorCtrlState(err_flag=lb.ERR_BAND_HIP | lb.ERR_GAP_WARNING, ctrl_topic_interval=12.5)
    statuses = bridge_diagnostics(motors, state, "a fault", 7, CONFIG.robot.joint_names, 70.0, "hold")
    values = {kv.key: kv.value for status in statuses for kv in status.values}
    words = {k: values.pop(k) for k in ("stall posture",)}
    assert words == {"stall posture": "hold"}
    numbers = {k: float(v) for k, v in values.items()}
    assert numbers["err_flag"] == lb.ERR_BAND_HIP | lb.ERR_GAP_WARNING
    assert numbers["FL_hip flags"] == int(flags[4]) & 0xFFFFFFFF and numbers["ctrl_topic_interval ms"] == 12.5
    assert numbers["firmware band clamps (reports)"] == 7 and numbers["max temperature C"] == 41.0
