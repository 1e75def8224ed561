"""SafetyFilter and SensorMonitor: whatever comes in, what goes out is within the robot's and firmware's limits."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffuseloco_policy.config import MAX_RAMP_FRAMES, ConfigError, config_from_dict, load_config
from diffuseloco_policy.safety import ImuSample, JointSample, PDCommand, SafetyFilter, SensorMonitor, roll_pitch

CONFIG = load_config()
ROBOT = CONFIG.robot
FILTER = SafetyFilter(CONFIG)
N = ROBOT.num_joints
DEFAULT = np.asarray(ROBOT.default_pose)
FIRMWARE_BAND = np.tile(np.radians([8.0, 10.0, 12.0]), 4)   # |q_des - q_measured| the firmware allows in every frame
TOL = 1e-9


def assert_within_limits(cmd: PDCommand, flt: SafetyFilter, reference=None, measured=None) -> None:
    """Every invariant the filter promises, checked independently of how it gets there."""
    assert cmd.is_finite()
    assert cmd.num_joints == flt.num_joints
    assert np.all(cmd.q >= flt.lower - TOL) and np.all(cmd.q <= flt.upper + TOL)
    assert np.all(cmd.kp >= 0) and np.all(cmd.kp <= flt.kp_max + TOL)
    assert np.all(cmd.kd >= 0) and np.all(cmd.kd <= flt.kd_max + TOL)
    assert np.all(np.abs(cmd.tau) <= flt.torque_limit + TOL)
    assert np.all(np.abs(cmd.dq) <= flt.velocity_limit + TOL)
    if measured is not None and np.any(cmd.kp > 0):
        assert np.all(np.abs(cmd.q - measured) <= FIRMWARE_BAND + TOL), "what the firmware keeps is what we send"
    if reference is not None:
        ref = np.clip(reference, flt.lower, flt.upper)
        step_ok = np.abs(cmd.q - ref) <= flt.max_step + TOL
        if measured is None:
            assert np.all(step_ok)
        else:   # where the step window misses the band, the band wins (the firmware enforces it)
            overlap = (ref - flt.max_step <= measured + flt.band) & (ref + flt.max_step >= measured - flt.band)
            assert np.all(step_ok | ~overlap)


def position(q, kp=30.0, kd=3.0) -> PDCommand:
    return PDCommand.position(q, kp, kd)


# ------------------------------------------------------------------------------------------- PDCommand
def test_damping_and_zero_torque_constructors():
    cmd = PDCommand.damping(2.0)
    assert cmd.num_joints == 12
    assert np.all(cmd.kp == 0) and np.all(cmd.kd == 2.0)
    assert np.all(cmd.q == 0) and np.all(cmd.dq == 0) and np.all(cmd.tau == 0)
    zero = PDCommand.zero_torque()
    for name in ("q", "dq", "kp", "kd", "tau"):
        assert np.all(getattr(zero, name) == 0)
    held = PDCommand.damping(1.0, q=DEFAULT)
    assert np.array_equal(held.q, DEFAULT) and np.all(held.kp == 0)


def test_pd_command_is_immutable_and_checks_shapes():
    cmd = position(DEFAULT)
    with pytest.raises(ValueError):
        cmd.q[0] = 1.0
    with pytest.raises(ValueError, match="different lengths"):
        PDCommand(q=np.zeros(12), dq=np.zeros(11), kp=np.zeros(12), kd=np.zeros(12), tau=np.zeros(12))
    with pytest.raises(ValueError, match="not numeric"):
        PDCommand(q=["a"] * 12, dq=np.zeros(12), kp=np.zeros(12), kd=np.zeros(12), tau=np.zeros(12))


# ---------------------------------------------------------------------------------------- SafetyFilter
def test_shipped_filter_is_at_least_as_strict_as_the_firmware():
    """fsm_state_motor_ctrl.cpp: 0.04 rad inside the bounds, 8/10/12 deg around the measured angle; SDK README:
    kp 0-200, kd 0-10, qd_des +-12 rad/s, |tau| <= 12 N m."""
    assert np.all(FILTER.max_step <= MAX_RAMP_FRAMES * FIRMWARE_BAND + 1e-12), "a tick's step is a few band widths"
    assert np.all(FILTER.band <= FIRMWARE_BAND)
    assert np.all(FILTER.lower >= np.asarray(ROBOT.position_lower) + 0.04 - 1e-12)
    assert np.all(FILTER.upper <= np.asarray(ROBOT.position_upper) - 0.04 + 1e-12)
    assert FILTER.kp_max <= 200 and FILTER.kd_max <= 10 and FILTER.torque_limit <= 12
    assert FILTER.velocity_limit <= 12.0


def test_a_safe_command_passes_unchanged():
    cmd = position(DEFAULT)
    safe, reasons = FILTER.filter(cmd, previous_q_des=DEFAULT, measured_q=DEFAULT)
    assert reasons == []
    for name in ("q", "dq", "kp", "kd", "tau"):
        assert np.array_equal(getattr(safe, name), getattr(cmd, name))


@pytest.mark.parametrize("field", ["q", "dq", "kp", "kd", "tau"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_give_damping_with_a_reason(field, bad):
    values = {name: getattr(position(DEFAULT), name).copy() for name in ("q", "dq", "kp", "kd", "tau")}
    values[field][4] = bad
    safe, reasons = FILTER.filter(PDCommand(**values), previous_q_des=DEFAULT, measured_q=DEFAULT)
    assert np.all(safe.kp == 0) and np.all(safe.kd == FILTER.fallback_kd) and np.all(safe.tau == 0)
    assert np.array_equal(safe.q, DEFAULT)  # the firmware's reference stays where it was
    assert any("non-finite" in r and field in r for r in reasons)


def test_step_limit_per_tick_is_16_20_24_degrees():
    tick_step = np.tile(np.radians([16.0, 20.0, 24.0]), 4)   # two firmware frames' worth
    target = DEFAULT + 1.0
    safe, reasons = FILTER.filter(position(target, kp=0.0, kd=1.0), previous_q_des=DEFAULT)
    assert np.allclose(safe.q - DEFAULT, tick_step)
    assert any("step limited" in r for r in reasons)
    down, _ = FILTER.filter(position(DEFAULT - 1.0, kp=0.0, kd=1.0), previous_q_des=DEFAULT)
    assert np.allclose(DEFAULT - down.q, tick_step)


def test_joint_limits_are_clamped_with_the_margin():
    upper = np.asarray(ROBOT.position_upper)
    safe, reasons = FILTER.filter(position(upper + 5.0, kp=0.0, kd=1.0), previous_q_des=upper)
    assert np.allclose(safe.q, upper - 0.04)
    assert any("joint limits" in r for r in reasons)


def test_gains_torque_and_velocity_are_capped():
    cmd = PDCommand(q=DEFAULT, dq=np.full(N, 100.0), kp=np.full(N, 500.0), kd=np.full(N, -2.0), tau=np.full(N, -50.0))
    safe, reasons = FILTER.filter(cmd, previous_q_des=DEFAULT, measured_q=DEFAULT)
    assert np.all(safe.kp == CONFIG.safety.kp_max) and np.all(safe.kd == 0.0)
    assert np.all(safe.tau == -12.0) and np.all(safe.dq == FILTER.velocity_limit)
    assert {r.split(" ")[0] for r in reasons} >= {"kp", "kd", "tau_des", "dq_des"}


def test_a_velocity_feedforward_within_the_sdk_range_passes_unchanged_and_beyond_it_is_clamped():
    """The plan's joint velocity (pd_targets.py) is not throttled inside the SDK README's +-12 rad/s."""
    dq = np.tile([2.0, 9.0, -11.5], 4)
    cmd = PDCommand(q=DEFAULT, dq=dq, kp=np.full(N, 30.0), kd=np.full(N, 3.0), tau=np.zeros(N))
    safe, reasons = FILTER.filter(cmd, previous_q_des=DEFAULT, measured_q=DEFAULT - 0.1)
    np.testing.assert_array_equal(safe.dq, dq)
    np.testing.assert_array_equal(safe.q, DEFAULT)
    assert reasons == []
    fast, reasons = FILTER.filter(cmd.replace(dq=np.tile([2.0, 9.0, -14.0], 4)), previous_q_des=DEFAULT,
                                  measured_q=DEFAULT)
    np.testing.assert_array_equal(fast.dq, np.tile([2.0, 9.0, -12.0], 4))
    assert reasons == ["dq_des clamped: FR_knee, FL_knee, RR_knee, RL_knee"]


def test_a_far_measured_pose_pulls_the_target_into_the_firmwares_band_and_says_so():
    """The firmware would pull q_des back to the measured angle +- 8/10/12 deg in every frame without a word
    (fsm_state_motor_ctrl.cpp): the filter does it first, reports it and counts it."""
    flt = SafetyFilter(CONFIG)
    measured = DEFAULT - 0.5     # the legs were pushed far from the previous target
    safe, reasons = flt.filter(position(DEFAULT, kp=30.0), previous_q_des=DEFAULT, measured_q=measured)
    np.testing.assert_allclose(safe.q, measured + flt.band)
    assert np.all(np.abs(safe.q - measured) < FIRMWARE_BAND)
    assert np.all(safe.kp == 30.0) and len(reasons) == 1 and "firmware's band" in reasons[0]
    assert flt.counts["q_des band"] == 1
    flt.filter(position(DEFAULT, kp=30.0), previous_q_des=DEFAULT, measured_q=DEFAULT)
    assert flt.counts["q_des band"] == 1, "a target inside the band is not counted"


def test_wrong_length_or_missing_reference_gives_damping():
    short = PDCommand.position(np.zeros(11), 30.0, 3.0)
    safe, reasons = FILTER.filter(short, previous_q_des=DEFAULT)
    assert safe.num_joints == N and np.all(safe.kp == 0) and "11 joints" in reasons[0]
    safe, reasons = FILTER.filter(position(DEFAULT))
    assert np.all(safe.kp == 0) and "without previous_q_des or measured_q" in reasons[-1]
    safe, reasons = FILTER.filter(position(DEFAULT), previous_q_des=DEFAULT)
    assert np.all(safe.kp == 0) and "without measured_q" in reasons[-1], "no band without the measured pose"
    damping, reasons = FILTER.filter(PDCommand.damping(1.0, q=DEFAULT))
    assert reasons == [] and np.all(damping.kd == 1.0)


def test_invalid_measured_or_previous_pose_is_handled():
    safe, reasons = FILTER.filter(position(DEFAULT), previous_q_des=DEFAULT, measured_q=[math.nan] * N)
    assert np.all(safe.kp == 0) and "measured_q is not finite" in reasons[0]
    assert np.array_equal(safe.q, DEFAULT)  # q_des stays at the previous one
    safe, reasons = FILTER.filter(position(DEFAULT), previous_q_des=[0.0] * 3, measured_q=DEFAULT)
    assert np.all(safe.kp == 30.0) and "previous_q_des has shape (3,)" in reasons[0]
    with pytest.raises(TypeError):
        FILTER.filter("not a command", previous_q_des=DEFAULT)


def test_a_tick_step_of_more_than_three_band_widths_is_refused():
    data = CONFIG.to_dict()
    data["safety"]["max_target_step_deg"] = [8.0, 10.0, 40.0]   # more than 3 widths of the knee's 12 deg band
    with pytest.raises(ConfigError, match="knee .* firmware frames"):
        config_from_dict(data)


def test_the_stricter_of_robot_and_safety_sections_wins():
    data = CONFIG.to_dict()
    data["safety"].update(max_target_step_deg=[2.0, 2.0, 2.0], kp_max=500.0, limit_margin=0.1, torque_limit=20.0)
    flt = SafetyFilter(config_from_dict(data))
    assert np.allclose(flt.max_step, np.radians(2.0))
    assert flt.kp_max == 200.0 and flt.torque_limit == 12.0
    assert np.allclose(flt.upper, np.asarray(ROBOT.position_upper) - 0.1)


@pytest.mark.parametrize("key,value,message", [
    ("kp_max", 0.0, "kp_max must be positive"),
    ("sensor_timeout", -1.0, "sensor_timeout must be positive"),
    ("max_target_step_deg", [8.0, 0.0, 12.0], "max_target_step_deg"),
    ("limit_margin", -0.1, "limit_margin must be >= 0"),
    ("max_tilt", "big", "expected a number"),
])
def test_invalid_safety_config_is_refused(key, value, message):
    data = CONFIG.to_dict()
    data["safety"][key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


wild = st.floats(allow_nan=True, allow_infinity=True, width=64)
joint_arrays = hnp.arrays(np.float64, N, elements=wild)
# Finite but anything from tiny to 1e308, mixed with values in the working range so both paths are exercised.
finite = st.floats(allow_nan=False, allow_infinity=False) | st.floats(-300.0, 300.0)
finite_arrays = hnp.arrays(np.float64, N, elements=finite)
poses = hnp.arrays(np.float64, N, elements=st.floats(-4.0, 4.0))


@settings(max_examples=250, deadline=None)
@given(q=finite_arrays, dq=finite_arrays, kp=finite_arrays, kd=finite_arrays, tau=finite_arrays,
       previous=st.none() | poses, measured=st.none() | poses)
def test_any_finite_input_is_clamped_within_limits(q, dq, kp, kd, tau, previous, measured):
    cmd = PDCommand(q=q, dq=dq, kp=kp, kd=kd, tau=tau)
    safe, _ = FILTER.filter(cmd, previous_q_des=previous, measured_q=measured)
    reference = previous if previous is not None else measured
    assert_within_limits(safe, FILTER, reference=reference, measured=measured)


@settings(max_examples=100, deadline=None)
@given(q=joint_arrays, dq=joint_arrays, kp=joint_arrays, kd=joint_arrays, tau=joint_arrays,
       previous=st.none() | poses, measured=st.none() | poses)
def test_any_input_leaves_the_filter_within_limits(q, dq, kp, kd, tau, previous, measured):
    cmd = PDCommand(q=q, dq=dq, kp=kp, kd=kd, tau=tau)
    safe, reasons = FILTER.filter(cmd, previous_q_des=previous, measured_q=measured)
    reference = previous if previous is not None else measured
    assert_within_limits(safe, FILTER, reference=reference, measured=measured)
    if not cmd.is_finite():
        assert np.all(safe.kp == 0) and reasons


@settings(max_examples=100, deadline=None)
@given(q=poses, previous=poses)
def test_filtering_twice_changes_nothing_more(q, previous):
    """A filtered command is a fixed point: the node may filter again (e.g. on re-send) without drift."""
    once, _ = FILTER.filter(position(q), previous_q_des=previous, measured_q=previous)
    twice, reasons = FILTER.filter(once, previous_q_des=previous, measured_q=previous)
    assert reasons == [] and np.array_equal(once.q, twice.q)


# ---------------------------------------------------------------------------------------- SensorMonitor
def quat_from_rpy(roll: float, pitch: float, yaw: float = 0.0) -> np.ndarray:
    cr, sr, cp, sp = math.cos(roll / 2), math.sin(roll / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array([cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy])


def healthy(now: float = 10.0):
    joints = JointSample(q=DEFAULT, dq=np.zeros(N), received=now - 0.01)
    imu = ImuSample(quaternion=[1.0, 0.0, 0.0, 0.0], angular_velocity=[0.0, 0.0, 0.0], received=now - 0.005)
    return joints, imu


def test_healthy_sensors_give_no_fault():
    joints, imu = healthy()
    assert SensorMonitor(CONFIG).check(10.0, joints, imu) is None


def test_roll_pitch_matches_the_construction():
    roll, pitch = roll_pitch(quat_from_rpy(0.3, -0.2, 1.0))
    assert roll == pytest.approx(0.3) and pitch == pytest.approx(-0.2)


@pytest.mark.parametrize("change,message", [
    (lambda j, i: (None, i), "no joint state"),
    (lambda j, i: (j, None), "no IMU"),
    (lambda j, i: (dataclasses.replace(j, q=[math.nan] * N), i), "NaN or inf"),
    (lambda j, i: (dataclasses.replace(j, dq=[math.inf] * N), i), "NaN or inf"),
    (lambda j, i: (dataclasses.replace(j, q=[0.0] * 11), i), r"shape \(11,\)"),
    (lambda j, i: (dataclasses.replace(j, q="twelve"), i), "shape|numeric"),
    (lambda j, i: (j, dataclasses.replace(i, quaternion=[1.0, 0.0, 0.0])), r"shape \(3,\)"),
    (lambda j, i: (j, dataclasses.replace(i, angular_velocity=[0.0, math.nan, 0.0])), "angular velocity"),
    (lambda j, i: (j, dataclasses.replace(i, quaternion=[1.1, 0.0, 0.0, 0.0])), "norm 1.100"),
    (lambda j, i: (j, dataclasses.replace(i, quaternion=[0.0, 0.0, 0.0, 0.0])), "norm 0.000"),
    (lambda j, i: (dataclasses.replace(j, received=9.4), i), "joint state lost: 600 ms"),
    (lambda j, i: (j, dataclasses.replace(i, received=9.3)), "IMU lost: 700 ms"),
    (lambda j, i: (j, dataclasses.replace(i, received=11.0)), "future"),
    (lambda j, i: (dataclasses.replace(j, received=math.nan), i), "receive time"),
    (lambda j, i: (j, dataclasses.replace(i, quaternion=quat_from_rpy(1.2, 0.0))), "attitude.*roll 1.20"),
    (lambda j, i: (j, dataclasses.replace(i, quaternion=quat_from_rpy(0.0, -1.1))), "attitude.*pitch -1.10"),
    (lambda j, i: (dataclasses.replace(j, dq=np.full(N, 40.0)), i), "joint velocity 40.0"),
])
def test_each_sensor_fault_is_named(change, message):
    joints, imu = change(*healthy())
    fault = SensorMonitor(CONFIG).check(10.0, joints, imu)
    assert fault is not None
    assert re.search(message, fault), fault


def test_out_of_order_stamps_are_a_fault_until_a_newer_sample_arrives():
    monitor = SensorMonitor(CONFIG)
    joints, imu = healthy()
    assert monitor.check(10.0, dataclasses.replace(joints, stamp=5.0), imu) is None
    assert monitor.check(10.0, dataclasses.replace(joints, stamp=5.0), imu) is None  # same sample again is fine
    fault = monitor.check(10.0, dataclasses.replace(joints, stamp=4.9), imu)
    assert fault and "joint state out of order" in fault
    assert monitor.check(10.0, dataclasses.replace(joints, stamp=5.02), imu) is None
    assert monitor.check(10.0, joints, dataclasses.replace(imu, stamp=20.0)) is None  # each stream has its own
    fault = monitor.check(10.0, joints, dataclasses.replace(imu, stamp=19.5))
    assert fault and "IMU out of order" in fault


@pytest.mark.parametrize("age,stale", [(0.03, None), (0.1, 0.1), (0.4, 0.4)])
def test_stale_but_not_lost_samples_are_graded_not_faults(age, stale):
    """Past sensor_timeout and up to stale_damping_after a joint state or IMU sample is no fault: its age is in
    `staleness` (the policy loop rides through or stands), and the oldest stream is the one reported."""
    joints, imu = healthy()
    monitor = SensorMonitor(CONFIG)
    assert monitor.check(10.0, dataclasses.replace(joints, received=10.0 - age),
                         dataclasses.replace(imu, received=10.0 - age / 2)) is None
    if stale is None:
        assert monitor.staleness is None
    else:
        assert monitor.staleness.stream == "joint state" and monitor.staleness.age_s == pytest.approx(stale)
    assert monitor.check(10.0, *healthy()) is None and monitor.staleness is None


def test_the_staleness_grades_must_be_ordered():
    data = CONFIG.to_dict()
    data["safety"].update(stale_stand_after=0.04)
    with pytest.raises(ConfigError, match="sensor_timeout < stale_stand_after < stale_damping_after"):
        config_from_dict(data)


def test_invalid_clock_and_configurable_limits():
    joints, imu = healthy()
    assert "invalid clock" in SensorMonitor(CONFIG).check(math.nan, joints, imu)
    data = CONFIG.to_dict()
    data["safety"].update(sensor_timeout=0.2, stale_stand_after=0.3, stale_damping_after=0.6, max_tilt=1.5)
    relaxed = SensorMonitor(config_from_dict(data))
    assert relaxed.check(10.0, dataclasses.replace(joints, received=9.9),
                         dataclasses.replace(imu, quaternion=quat_from_rpy(1.2, 0.0))) is None


@settings(max_examples=200, deadline=None)
@given(q=joint_arrays, dq=joint_arrays, quat=hnp.arrays(np.float64, 4, elements=wild),
       gyro=hnp.arrays(np.float64, 3, elements=wild), age=wild)
def test_monitor_never_raises_and_flags_every_non_finite_input(q, dq, quat, gyro, age):
    joints = JointSample(q=q, dq=dq, received=10.0 - age if math.isfinite(age) else age)
    imu = ImuSample(quaternion=quat, angular_velocity=gyro, received=10.0)
    fault = SensorMonitor(CONFIG).check(10.0, joints, imu)
    if not all(np.all(np.isfinite(a)) for a in (q, dq, quat, gyro)) or not math.isfinite(age):
        assert fault is not None
    assert fault is None or isinstance(fault, str)


# ----------------------------------------------------------------------------- SensorMonitor: plausibility
def stream(monitor: SensorMonitor, ticks: int, q=None, dq=None, quaternion=None, gyro=None, acceleration=None,
           t0: float = 10.0, dt: float = 0.02):
    """`ticks` samples 20 ms apart, each a function of the tick (or a constant); returns every tick's fault."""
    def at(value, k, default):
        value = default if value is None else value
        return value(k) if callable(value) else value
    faults = []
    for k in range(ticks):
        now = t0 + k * dt
        joints = JointSample(at(q, k, DEFAULT), at(dq, k, np.zeros(N)), received=now - 0.002)
        imu = ImuSample(at(quaternion, k, [1.0, 0.0, 0.0, 0.0]), at(gyro, k, np.zeros(3)), received=now - 0.002,
                        linear_acceleration=at(acceleration, k, [0.0, 0.0, 9.81]))
        faults.append(monitor.check(now, joints, imu))
    return faults


def test_a_joint_velocity_the_positions_do_not_show_is_a_fault_of_that_sensor():
    """30 rad/s on every joint while no joint moves: finite, under the 38 rad/s bound, and false."""
    faults = stream(SensorMonitor(CONFIG), 5, dq=np.full(N, 30.0))
    assert faults[0] is None                                   # one sample: nothing to compare yet
    fault = next(f for f in faults if f)
    assert faults.index(fault) <= 2, faults                      # within 40 ms
    assert re.search(r"joint velocity sensor of FR_abad implausible: .*\+\d\.\d\d rad .* moved \+0\.00 rad", fault)


def test_joint_velocities_that_match_the_motion_pass_with_noise_and_uneven_spacing():
    """A fast sinusoidal swing (12 rad/s peak, 3 Hz) with encoder noise, a 5 ms differentiator lag and sample spacing
    of 20 +- 3 ms: the velocity integrates to the position change within the tolerance."""
    rng = np.random.default_rng(0)
    monitor = SensorMonitor(CONFIG)
    t = 10.0 + np.cumsum(rng.uniform(0.017, 0.023, 300))
    amplitude, omega, lag = 0.6, 2 * np.pi * 3.0, 0.005
    for now in t:
        q = DEFAULT + amplitude * np.sin(omega * now) + rng.normal(0, 0.005, N)
        dq = amplitude * omega * np.cos(omega * (now - lag)) + rng.normal(0, 0.1, N)
        assert monitor.check(now, JointSample(q, dq, now - 0.001, stamp=now),
                             ImuSample([1.0, 0.0, 0.0, 0.0], np.zeros(3), now - 0.001, stamp=now)) is None


def test_a_trotting_knee_sampled_irregularly_and_across_stalls_is_no_fault():
    """The live graph under load: a knee at 19 rad/s peak, 5 Hz, sampled by ticks whose samples are 2-38 ms apart,
    with a 60-100 ms stall of the process every half second. Integrated across such a stall the velocity
    disagreed with the position change by more than the tolerance (false DAMPINGs in a long trot); samples that far
    apart start a new window instead. A velocity that lies is still caught on the regular ticks (tests above)."""
    rng = np.random.default_rng(1)
    monitor = SensorMonitor(CONFIG)
    gaps = rng.uniform(0.002, 0.038, 600)
    gaps[::25] = rng.uniform(0.06, 0.1, len(gaps[::25]))
    amplitude, omega, lag = np.tile([0.1, 0.4, 0.6], 4), 2 * np.pi * 5.0, 0.005   # abad, hip, knee (19 rad/s)
    for now in 10.0 + np.cumsum(gaps):
        q = DEFAULT + amplitude * np.sin(omega * now) + rng.normal(0, 0.005, N)
        dq = amplitude * omega * np.cos(omega * (now - lag)) + rng.normal(0, 0.1, N)
        assert monitor.check(now, JointSample(q, dq, now - 0.001, stamp=now),
                             ImuSample([1.0, 0.0, 0.0, 0.0], np.zeros(3), now - 0.001, stamp=now)) is None


@pytest.mark.parametrize("rate", [1000.0, 1e30])
def test_a_gyro_beyond_its_range_is_a_fault_of_the_gyro(rate):
    fault = SensorMonitor(CONFIG).check(10.0, healthy()[0], dataclasses.replace(healthy()[1],
                                                                                angular_velocity=[0.0, 0.0, rate]))
    assert fault and fault.startswith("IMU gyro reads") and "beyond the sensor's range 35 rad/s" in fault, fault


def test_a_gyro_the_attitude_does_not_show_is_a_fault_of_the_gyro():
    """A yaw rate of 5 rad/s while the attitude stays put (within the 35 rad/s range, so only the attitude
    can tell)."""
    faults = stream(SensorMonitor(CONFIG), 6, gyro=np.array([0.0, 0.0, 5.0]))
    fault = next(f for f in faults if f)
    assert faults.index(fault) <= 3, faults
    assert fault.startswith("IMU gyro implausible") and "attitude turned 0.00 rad" in fault, fault


def test_a_gyro_that_matches_the_rotation_passes():
    """Roll and yaw rocking at 3 rad/s peak, the attitude integrated from the true rate, gyro noise 0.02 rad/s and
    attitude noise 0.01 rad (the simulator's), 20 +- 3 ms apart."""
    rng = np.random.default_rng(1)
    monitor = SensorMonitor(CONFIG)
    t = 10.0 + np.cumsum(rng.uniform(0.017, 0.023, 300))
    roll, yaw = (lambda s: 0.3 * np.sin(10.0 * s)), (lambda s: 0.2 * np.sin(5.0 * s))
    for now in t:
        quat = quat_from_rpy(roll(now) + rng.normal(0, 0.01), rng.normal(0, 0.01), yaw(now) + rng.normal(0, 0.01))
        gyro = np.array([3.0 * np.cos(10.0 * now), 0.0, 1.0 * np.cos(5.0 * now)]) + rng.normal(0, 0.02, 3)
        fault = monitor.check(now, JointSample(DEFAULT, np.zeros(N), now - 0.001, stamp=now),
                              ImuSample(quat, gyro, now - 0.001, stamp=now))
        assert fault is None, fault


@pytest.mark.parametrize("acceleration,message", [
    ([0.0, math.nan, 9.81], "IMU accelerometer values contain NaN or inf"),
    ([0.0, 0.0, 1e4], "IMU accelerometer reads 1e\\+04 m/s\\^2, beyond the sensor's range 250"),
])
def test_a_broken_accelerometer_is_a_fault_of_the_accelerometer(acceleration, message):
    joints, imu = healthy()
    fault = SensorMonitor(CONFIG).check(10.0, joints, dataclasses.replace(imu, linear_acceleration=acceleration))
    assert fault and re.search(message, fault), fault


def test_plausibility_thresholds_come_from_the_config():
    data = CONFIG.to_dict()
    data["safety"].update(joint_velocity_consistency=5.0, max_angular_velocity=2000.0)
    relaxed = config_from_dict(data)
    assert not any(stream(SensorMonitor(relaxed), 5, dq=np.full(N, 30.0)))
    joints, imu = healthy()
    assert SensorMonitor(relaxed).check(10.0, joints, dataclasses.replace(imu, angular_velocity=[0, 0, 1000.0])) \
        is None


def test_a_restart_forgets_the_samples_of_the_old_stream():
    monitor = SensorMonitor(CONFIG)
    stream(monitor, 3)
    monitor.reset()
    jumped = DEFAULT + 0.5                                       # a different pose after the restart: no history
    assert not any(stream(monitor, 3, q=jumped, t0=10.06))
