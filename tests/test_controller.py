"""The controller state machine: transitions, interpolation from the measured pose, faults and the latched e-stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffuseloco_policy.config import ConfigError, config_from_dict, load_config
from diffuseloco_policy.controller import Controller, ControllerRequest as R, ControllerState as S
from diffuseloco_policy.safety import SafetyFilter
from diffuseloco_policy.stance_support import support_torques

CONFIG = load_config()
DEFAULT = np.asarray(CONFIG.robot.default_pose)
LYING = np.asarray(CONFIG.controller.lying_pose)
DT = CONFIG.rates.control_dt
STAND_T = CONFIG.controller.stand_up_duration


def with_controller(**changes):
    data = CONFIG.to_dict()
    data["controller"].update(changes)
    return config_from_dict(data)


def standing(t0: float = 0.0, config=CONFIG) -> tuple[Controller, float]:
    """A controller that has stood up from the lying pose and holds the default pose; returns it and the time."""
    c = Controller(config)
    c.tick(t0, LYING)
    assert c.request(R.STAND_UP) == (True, f"PASSIVE -> STANDING_UP over {STAND_T:.1f} s")
    t = t0
    while t <= t0 + STAND_T + DT:
        t += DT
        c.tick(t, LYING)
    return c, t


def test_state_and_request_numbers_match_the_messages():
    from diffuseloco_msgs.msg import PolicyStatus
    from diffuseloco_msgs.srv import SetControllerState

    assert {s.name: s.value for s in S} == {n[6:]: getattr(PolicyStatus, n) for n in dir(PolicyStatus)
                                            if n.startswith("STATE_")}
    assert {r.name: r.value for r in R} == {n[8:]: getattr(SetControllerState.Request, n)
                                            for n in dir(SetControllerState.Request) if n.startswith("REQUEST_")}


def test_starts_passive_with_damping_and_refuses_to_move_before_any_sensor_data():
    c = Controller(CONFIG)
    assert c.state == S.PASSIVE and c.last_fault == ""
    ok, message = c.request(R.STAND_UP)
    assert not ok and "no sensor data yet" in message
    cmd = c.tick(0.0, LYING)
    assert np.all(cmd.kp == 0) and np.all(cmd.kd == CONFIG.controller.passive_kd)
    assert np.array_equal(cmd.q, LYING)  # the firmware's q_des reference follows the legs


def test_passive_can_be_zero_torque():
    c = Controller(with_controller(passive_mode="zero_torque"))
    cmd = c.tick(0.0, LYING)
    assert np.all(cmd.kp == 0) and np.all(cmd.kd == 0) and np.all(cmd.tau == 0)


def test_stand_up_interpolates_from_the_pose_measured_at_the_first_tick_after_the_request():
    c = Controller(CONFIG)
    c.tick(0.0, DEFAULT)             # where the legs were before the request: must not be used
    assert c.request(R.STAND_UP)[0]
    start = LYING + 0.05
    first = c.tick(1.0, start)
    assert c.state == S.STANDING_UP
    assert np.allclose(first.q, start) and np.all(first.kp == CONFIG.controller.stand_kp)
    half = c.tick(1.0 + STAND_T / 2, LYING)   # measurements during the move do not move the start
    assert np.allclose(half.q, (start + DEFAULT) / 2)
    assert not c.stand_complete
    done = c.tick(1.0 + STAND_T, LYING)
    assert np.allclose(done.q, DEFAULT) and c.stand_complete
    held = c.tick(1.0 + 3 * STAND_T, DEFAULT)
    assert c.state == S.STANDING_UP and np.allclose(held.q, DEFAULT)


def test_run_needs_a_completed_stand_up_and_holds_the_pose_until_the_policy_acts():
    c = Controller(CONFIG)
    assert c.request(R.RUN) == (False, "RUN refused in PASSIVE: stand up first (STAND_UP)")
    c.tick(0.0, LYING)
    c.request(R.STAND_UP)
    ok, message = c.request(R.RUN)
    assert not ok and "still standing up" in message
    c, t = standing()
    assert c.request(R.RUN) == (True, "STANDING_UP -> RUNNING")
    hold = c.tick(t + DT, DEFAULT, policy_target_q=None)
    assert c.state == S.RUNNING and np.allclose(hold.q, DEFAULT)
    target = DEFAULT + 0.05
    act = c.tick(t + 2 * DT, DEFAULT, policy_target_q=target)
    assert np.allclose(act.q, target)
    assert np.all(act.kp == CONFIG.robot.kp) and np.all(act.kd == CONFIG.robot.kd)
    again = c.tick(t + 3 * DT, DEFAULT, policy_target_q=None)  # a missed deadline holds the last target
    assert np.allclose(again.q, target)
    assert c.request(R.RUN) == (True, "already RUNNING")


def test_auto_run_enters_running_when_the_stand_up_completes():
    c, _ = standing(config=with_controller(auto_run=True))
    assert c.state == S.RUNNING


def test_get_down_goes_to_the_lying_pose_then_passive():
    c, t = standing()
    c.request(R.RUN)
    c.tick(t, DEFAULT, DEFAULT)
    assert c.request(R.GET_DOWN) == (True, f"RUNNING -> GETTING_DOWN over {CONFIG.controller.get_down_duration:.1f} s")
    first = c.tick(t + DT, DEFAULT + 0.02)
    assert c.state == S.GETTING_DOWN and np.allclose(first.q, DEFAULT + 0.02)
    cmd = first
    while c.state == S.GETTING_DOWN:
        t += DT
        last, cmd = cmd, c.tick(t + DT, DEFAULT)
    assert np.allclose(last.q, LYING, atol=1e-2)
    assert c.state == S.PASSIVE and np.all(cmd.kp == 0)


def test_a_sensor_fault_in_an_active_state_drops_to_damping_and_is_kept():
    c, t = standing()
    c.request(R.RUN)
    cmd = c.tick(t + DT, DEFAULT, DEFAULT, fault="IMU stale: 80 ms old")
    assert c.state == S.DAMPING and c.last_fault == "IMU stale: 80 ms old"
    assert np.all(cmd.kp == 0) and np.all(cmd.kd == CONFIG.controller.damping_kd)
    c.tick(t + 2 * DT, DEFAULT, DEFAULT, fault="another fault")
    assert c.last_fault == "IMU stale: 80 ms old"   # why it entered DAMPING, not the latest complaint
    assert not c.request(R.STAND_UP)[0]             # still unhealthy
    c.tick(t + 3 * DT, DEFAULT)
    assert c.request(R.STAND_UP)[0]                 # healthy again: the operator may stand it up


def test_a_fault_in_passive_stays_passive_without_overwriting_last_fault():
    c = Controller(CONFIG)
    c.tick(0.0, LYING, fault="no IMU sample received")
    assert c.state == S.PASSIVE and c.last_fault == ""


@pytest.mark.parametrize("bad", [None, [math.nan] * 12, [0.0] * 11, "not a pose"])
def test_invalid_measurements_count_as_a_fault(bad):
    c, t = standing()
    cmd = c.tick(t + DT, bad)
    assert c.state == S.DAMPING and "measured joint positions" in c.last_fault
    assert cmd.is_finite() and np.all(cmd.kp == 0)


@pytest.mark.parametrize("bad", [[math.nan] * 12, [1.0] * 5, "x"])
def test_an_invalid_policy_target_drops_to_damping(bad):
    c, t = standing()
    c.request(R.RUN)
    cmd = c.tick(t + DT, DEFAULT, bad)
    assert c.state == S.DAMPING and "policy target" in c.last_fault
    assert cmd.is_finite() and np.all(cmd.kp == 0)


def test_invalid_time_counts_as_a_fault():
    c, t = standing()
    cmd = c.tick(math.nan, DEFAULT)
    assert c.state == S.DAMPING and "invalid time" in c.last_fault and cmd.is_finite()


def drive_to(state: S) -> tuple[Controller, float]:
    c, t = standing()
    if state == S.STANDING_UP:
        return c, t
    if state == S.RUNNING:
        c.request(R.RUN)
    elif state == S.GETTING_DOWN:
        c.request(R.GET_DOWN)
    elif state == S.DAMPING:
        c.request(R.DAMPING)
    elif state == S.ESTOP:
        c.request(R.ESTOP)
    elif state == S.PASSIVE:
        c = Controller(CONFIG)
        c.tick(t, LYING)
    assert c.state == state
    return c, t


@pytest.mark.parametrize("state", list(S))
def test_estop_from_every_state_latches_until_cleared_with_healthy_sensors(state):
    c, t = drive_to(state)
    ok, _ = c.request(R.ESTOP, source="joystick")
    assert ok and c.state == S.ESTOP
    if state != S.ESTOP:
        assert c.last_fault == "e-stop requested by joystick"
    for r in (R.STAND_UP, R.RUN, R.GET_DOWN, R.DAMPING):
        ok, message = c.request(r)
        assert not ok and "e-stop is latched" in message and c.state == S.ESTOP
    for k in range(5):
        cmd = c.tick(t + k * DT, DEFAULT, DEFAULT)
        assert c.state == S.ESTOP and np.all(cmd.kp == 0) and np.all(cmd.kd == CONFIG.controller.damping_kd)
    c.tick(t + 6 * DT, DEFAULT, fault="joint state stale: 70 ms old")
    ok, message = c.request(R.CLEAR_ESTOP)
    assert not ok and "joint state stale" in message and c.state == S.ESTOP
    c.tick(t + 7 * DT, DEFAULT)
    assert c.request(R.CLEAR_ESTOP) == (True, "e-stop cleared: PASSIVE")
    assert c.state == S.PASSIVE


@pytest.mark.parametrize("state,request_,accepted,new_state", [
    (S.PASSIVE, R.RUN, False, S.PASSIVE),
    (S.PASSIVE, R.GET_DOWN, True, S.GETTING_DOWN),
    (S.PASSIVE, R.DAMPING, True, S.DAMPING),
    (S.PASSIVE, R.CLEAR_ESTOP, False, S.PASSIVE),
    (S.STANDING_UP, R.STAND_UP, True, S.STANDING_UP),
    (S.RUNNING, R.STAND_UP, True, S.STANDING_UP),       # stop the policy, back to the default pose
    (S.RUNNING, R.GET_DOWN, True, S.GETTING_DOWN),
    (S.GETTING_DOWN, R.STAND_UP, True, S.STANDING_UP),
    (S.GETTING_DOWN, R.RUN, False, S.GETTING_DOWN),
    (S.DAMPING, R.RUN, False, S.DAMPING),
    (S.DAMPING, R.STAND_UP, True, S.STANDING_UP),
    (S.DAMPING, R.GET_DOWN, True, S.GETTING_DOWN),
])
def test_transition_table(state, request_, accepted, new_state):
    c, _ = drive_to(state)
    ok, message = c.request(request_)
    assert ok == accepted and c.state == new_state, message
    assert message


@pytest.mark.parametrize("bad", [6, -1, "STAND_UP", None, 2.5])
def test_unknown_requests_are_refused(bad):
    c, _ = drive_to(S.RUNNING)
    ok, message = c.request(bad)
    assert not ok and "unknown request" in message and c.state == S.RUNNING


def test_stand_up_from_running_starts_from_the_measured_pose():
    c, t = drive_to(S.RUNNING)
    c.tick(t + DT, DEFAULT, DEFAULT + 0.1)
    c.request(R.STAND_UP)
    cmd = c.tick(t + 2 * DT, DEFAULT + 0.03)
    assert np.allclose(cmd.q, DEFAULT + 0.03)


@pytest.mark.parametrize("key,value,message", [
    ("passive_mode", "off", "passive_mode"),
    ("lying_pose", [0.0] * 12, "lying pose of FR_knee"),
    ("lying_pose", [0.0, -1.0, 2.4], "lying_pose has 3 entries"),
    ("auto_run", "yes", "expected true or false"),
    ("stand_up_duration", 0.0, "stand_up_duration must be positive"),
])
def test_invalid_controller_config_is_refused(key, value, message):
    data = CONFIG.to_dict()
    data["controller"][key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_stand_up_and_get_down_pass_the_safety_filter_unchanged():
    """The interpolation is slow enough that the filter never has to step-limit it."""
    flt = SafetyFilter(CONFIG)
    c = Controller(CONFIG)
    c.tick(0.0, LYING)
    c.request(R.STAND_UP)
    previous, measured, t = None, LYING, 0.0
    for k in range(int(2 * STAND_T / DT)):
        t = (k + 1) * DT
        cmd = c.tick(t, measured)
        safe, reasons = flt.filter(cmd, previous, measured)
        assert reasons == [], reasons
        previous, measured = safe.q, safe.q     # a perfectly tracking robot
    c.request(R.GET_DOWN)
    while c.state == S.GETTING_DOWN:
        t += DT
        safe, reasons = flt.filter(c.tick(t, measured), previous, measured)
        assert reasons == []
        previous, measured = safe.q, safe.q


finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-3.0, 3.0)
poses = st.lists(finite_or_not, min_size=12, max_size=12) | st.none() | st.lists(st.floats(-3, 3), max_size=13)
steps = st.tuples(
    st.sampled_from(list(R)) | st.none(),            # a request before the tick, or none
    st.floats(0.0, 0.5) | st.just(math.nan),          # time advance
    poses,                                             # measured q
    poses,                                             # policy target
    st.none() | st.just("sensor fault"),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([S.PASSIVE, S.RUNNING, S.STANDING_UP]), st.lists(steps, min_size=1, max_size=40))
def test_random_operation_never_emits_an_unsafe_command_and_estop_latches(start, sequence):
    c, t = drive_to(start)
    flt, previous, latched = SafetyFilter(CONFIG), None, False
    for request, dt, measured, target, fault in sequence:
        if request is not None:
            ok, message = c.request(request)
            assert isinstance(ok, bool) and message
            if request == R.ESTOP:
                latched = True
            elif request == R.CLEAR_ESTOP and ok:
                latched = False
        t = t + dt if not math.isnan(dt) else dt
        cmd = c.tick(t, measured, target, fault)
        assert cmd.is_finite() and cmd.num_joints == 12
        assert np.all(cmd.kp >= 0) and np.all(cmd.kd >= 0)
        assert (c.state == S.ESTOP) == latched
        if c.state in (S.PASSIVE, S.DAMPING, S.ESTOP):
            assert np.all(cmd.kp == 0)
        valid = measured is not None and len(measured) == 12 and all(map(math.isfinite, measured))
        safe, _ = flt.filter(cmd, previous, measured if valid else None)
        assert safe.is_finite()
        previous = safe.q
        if math.isnan(t):
            t = 0.0


def test_stand_up_carries_the_weight_through_tau_des_from_none_to_all_and_get_down_back():
    """The firmware's band caps the PD's torque (stance_support.py): the stand-up ramps the body's weight into
    tau_des with the move, holds it while standing, and hands it back to the ground while getting down."""
    c = Controller(CONFIG)
    c.tick(0.0, LYING)
    c.request(R.STAND_UP)
    first = c.tick(DT, LYING)
    assert np.allclose(first.tau, 0.0)
    middle = c.tick(DT + STAND_T / 2, LYING)
    full = support_torques(middle.q, CONFIG.controller.support_mass)
    assert np.allclose(middle.tau, 0.5 * full)          # smoothstep(0.5) = 0.5
    held = c.tick(DT + STAND_T + DT, DEFAULT)
    assert np.allclose(held.tau, support_torques(DEFAULT, CONFIG.controller.support_mass))
    knees = slice(2, 12, 3)
    assert np.all(held.tau[knees] < -1.0)               # knees push to extend (model convention: bent > 0)
    c.request(R.GET_DOWN)
    t = DT + STAND_T + 2 * DT
    assert np.allclose(c.tick(t, DEFAULT).tau, held.tau, atol=1e-3)
    assert np.allclose(c.tick(t + CONFIG.controller.get_down_duration - 1e-6, LYING).tau, 0.0, atol=1e-3)
    unsupported, t = standing(config=with_controller(support_mass=0.0))
    assert np.allclose(unsupported.tick(t + DT, DEFAULT).tau, 0.0)


def test_a_stale_sensor_stand_keeps_carrying_the_running_robot():
    c, t = standing()
    c.request(R.RUN)
    c.tick(t + DT, DEFAULT, policy_target_q=DEFAULT)
    assert c.stand_in_place("sensors stale")
    cmd = c.tick(t + 2 * DT, DEFAULT)
    assert np.allclose(cmd.tau, support_torques(cmd.q, CONFIG.controller.support_mass))


def test_running_sends_the_plans_feedforward_torque_and_refuses_a_bad_one():
    c, t = standing()
    c.request(R.RUN)
    tau = np.linspace(-2.0, 2.0, 12)
    cmd = c.tick(t + DT, DEFAULT, policy_target_q=DEFAULT, policy_target_tau=tau)
    np.testing.assert_allclose(cmd.tau, tau)
    assert not c.tick(t + 2 * DT, DEFAULT, policy_target_q=DEFAULT).tau.any()   # a plan without one: none
    bad = c.tick(t + 3 * DT, DEFAULT, policy_target_q=DEFAULT, policy_target_tau=np.full(12, np.nan))
    assert not bad.tau.any() and c.state == S.RUNNING                           # ignored, as a bad velocity is
