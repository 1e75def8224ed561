"""The policy node's ROS-free pipeline on the simulated robot: delayed inputs, off-tick inference, state machine,
safety, deadline accounting. The samplers are stand-ins with known behaviour, so every assertion is about the
loop itself."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from diffuseloco_learning.evaluation.episode import samples
from diffuseloco_policy.model_file import model_view, skills_lacking
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.safety import ImuSample, JointSample
from diffuseloco_sim import CyberDogSim

from tiny_model import first_skills

CONFIG = load_config()
DT = CONFIG.rates.control_dt
HORIZON, JOINTS = CONFIG.action.horizon, CONFIG.robot.num_joints


def zero_sampler(obs, goal):
    """Actions 0 = the default pose: a 'policy' that stands still."""
    return np.zeros((HORIZON, JOINTS))


def next_tick(loop: PolicyLoop) -> float:
    """The time of the loop's next tick, one period after its last: tests keep time continuous, since a tick
    that comes long after the previous one is a stall of the policy process (and a running robot stands)."""
    return loop.last_tick_at + DT


def run(loop: PolicyLoop, sim: CyberDogSim, ticks: int, t0: float = 0.0, wait: float = 0.0):
    reports = []
    for k in range(ticks):
        now = t0 + k * DT
        report = loop.tick(now, *samples(sim, now))
        sim.command_position(report.command.q, kp=report.command.kp, kd=report.command.kd)
        sim.step()
        reports.append(report)
        time.sleep(wait)
    return reports


@pytest.fixture
def sim():
    return CyberDogSim(CONFIG, seed=0)


def test_stand_up_then_run_keeps_the_dog_standing_within_limits(sim):
    loop = PolicyLoop(CONFIG, zero_sampler, inference_wait_s=0.05)
    try:
        run(loop, sim, 2)
        assert loop.request(ControllerRequest.STAND_UP)[0]
        run(loop, sim, int(CONFIG.controller.stand_up_duration / DT) + 5, t0=2 * DT)
        assert loop.request(ControllerRequest.RUN)[0]
        reports = run(loop, sim, 100, t0=next_tick(loop))
        assert loop.controller.state == ControllerState.RUNNING
        assert not sim.fallen() and sim.base_height() > 0.2
        step = np.deg2rad(np.tile(CONFIG.safety.max_target_step_deg, 4)) + 1e-9
        q = np.array([r.command.q for r in reports])
        assert np.all(np.abs(np.diff(q, axis=0)) <= step)
        np.testing.assert_allclose(q[-1], CONFIG.robot.default_pose, atol=1e-6)
    finally:
        loop.close()


def test_the_sampler_never_sees_the_current_frame(sim):
    """Each window handed to the sampler ends with the frame of the tick it was submitted at, and its action is
    used one tick later: the action for tick t is computed from s[t-8..t-1]."""
    seen = []

    def recording_sampler(obs, goal):
        seen.append(obs[-1].copy())
        return np.zeros((HORIZON, JOINTS))

    loop = PolicyLoop(CONFIG, recording_sampler, inference_wait_s=0.05)
    frames = []
    original = loop.builder.observation

    def spy(*args):
        frames.append(original(*args))
        return frames[-1]

    loop.builder.observation = spy
    try:
        run(loop, sim, 12)
    finally:
        loop.close()
    assert len(seen) >= 11
    for k, last in enumerate(seen):  # the k-th sampler call was submitted at tick k, for tick k + 1
        np.testing.assert_array_equal(last, frames[k])
        assert not np.array_equal(last, frames[k + 1]) if k + 1 < len(frames) else True


def test_a_slow_sampler_counts_deadline_misses_and_follows_the_old_plan(sim):
    release = threading.Event()

    def slow_sampler(obs, goal):
        release.wait(timeout=1.0)
        return np.zeros((HORIZON, JOINTS))

    loop = PolicyLoop(CONFIG, slow_sampler, inference_wait_s=0.0)
    try:
        run(loop, sim, 5)
        assert loop.deadline_misses >= 3
    finally:
        release.set()
        loop.close()


def test_a_failing_sampler_is_a_reported_fault_not_a_crash(sim):
    def broken_sampler(obs, goal):
        raise RuntimeError("onnxruntime exploded")

    loop = PolicyLoop(CONFIG, broken_sampler, inference_wait_s=0.05)
    try:
        reports = run(loop, sim, 5)
    finally:
        loop.close()
    assert "onnxruntime exploded" in loop.last_fault
    assert all(r.command.is_finite() for r in reports)


def test_stale_sensors_lead_to_damping_with_the_reason(sim):
    loop = PolicyLoop(CONFIG, zero_sampler, inference_wait_s=0.05)
    try:
        run(loop, sim, 2)
        loop.request(ControllerRequest.STAND_UP)
        run(loop, sim, 10, t0=2 * DT)
        now = 11 * DT
        joints, imu, _ = samples(sim, now)
        report = run_stale(loop, sim, now, SAFETY.stale_damping_after + 0.1, joints, imu)[-1]   # no new sample
    finally:
        loop.close()
    assert report.state == ControllerState.DAMPING
    assert "joint state lost" in (report.fault or "")
    assert np.all(report.command.kp == 0)


# ------------------------------------------------------------------------------------- graded staleness
SAFETY = CONFIG.safety


def run_stale(loop: PolicyLoop, sim: CyberDogSim, t0: float, seconds: float, joints, imu) -> list:
    """Ticks from t0 on with the same (ever older) samples: a stalled sensor source, the robot still moving."""
    reports = []
    for k in range(int(round(seconds / DT))):
        report = loop.tick(t0 + (k + 1) * DT, joints, imu)
        sim.command_position(report.command.q, kp=report.command.kp, kd=report.command.kd)
        sim.step()
        reports.append(report)
    return reports


def test_a_short_sensor_stall_is_ridden_through_on_the_plan(sim):
    """Up to stale_stand_after the running robot keeps its gains and follows its plan: no damping, no stand."""
    loop = running_loop(sim, zero_sampler)
    try:
        t0 = next_tick(loop)
        run(loop, sim, 10, t0=t0)
        now = t0 + 9 * DT
        joints, imu, _ = samples(sim, now)
        reports = run_stale(loop, sim, now, SAFETY.stale_stand_after - DT, joints, imu)
        assert all(r.state == ControllerState.RUNNING and r.fault is None for r in reports)
        assert all(np.all(r.command.kp > 0) for r in reports)
        ridden = [r for r in reports if r.stale]
        assert ridden and "joint state stale" in ridden[-1].stale and "riding through" in ridden[-1].stale
        assert loop.stale_reaction == "ride"
        run(loop, sim, 3, t0=next_tick(loop))
        assert loop.stale == "" and loop.controller.state == ControllerState.RUNNING
    finally:
        loop.close()


def test_a_longer_stall_stands_the_running_robot_from_its_last_targets(sim):
    """Past stale_stand_after: STANDING_UP from the last targets (no jump) to the default pose with the stand
    gains, the reason reported; RUN is refused while stale and accepted once the sensors are fresh again."""
    loop = running_loop(sim, zero_sampler)
    try:
        t0 = next_tick(loop)
        run(loop, sim, 10, t0=t0)
        now = t0 + 9 * DT
        last_target = loop._last_q_des.copy()
        joints, imu, _ = samples(sim, now)
        reports = run_stale(loop, sim, now, 0.4, joints, imu)
        stood = [r for r in reports if r.state == ControllerState.STANDING_UP]
        assert stood and all(r.state != ControllerState.DAMPING for r in reports)
        first = stood[0]
        assert "standing until it is fresh" in first.stale and "standing" in loop.last_fault
        step = np.deg2rad(np.tile(SAFETY.max_target_step_deg, 4))
        assert np.all(np.abs(first.command.q - last_target) <= step)
        assert np.all(first.command.kp == CONFIG.controller.stand_kp)
        refused, why = loop.request(ControllerRequest.RUN)
        assert not refused and "stale" in why
        later = run(loop, sim, int(CONFIG.controller.stale_stand_duration / DT) + 5, t0=next_tick(loop))
        np.testing.assert_allclose(later[-1].command.q, CONFIG.robot.default_pose, atol=1e-6)
        assert loop.stale == "" and not sim.fallen()
        assert loop.request(ControllerRequest.RUN)[0]
    finally:
        loop.close()


def test_a_lost_stream_damps(sim):
    loop = running_loop(sim, zero_sampler)
    try:
        now = next_tick(loop)
        run(loop, sim, 5, t0=now)
        joints, imu, _ = samples(sim, now + 4 * DT)
        reports = run_stale(loop, sim, now + 4 * DT, SAFETY.stale_damping_after + 0.1, joints, imu)
    finally:
        loop.close()
    assert reports[-1].state == ControllerState.DAMPING and "lost" in loop.last_fault
    assert any(r.state == ControllerState.STANDING_UP for r in reports), "it stood before the stream was lost"


def test_a_stall_of_the_policy_process_is_reported_as_such(sim):
    """A tick that comes long after the previous one, with samples as old as the gap: the process stalled, not
    the sensors."""
    loop = running_loop(sim, zero_sampler)
    try:
        now = next_tick(loop)
        run(loop, sim, 5, t0=now)
        last = now + 4 * DT
        joints, imu, _ = samples(sim, last)
        report = loop.tick(last + 0.1, joints, imu)       # 100 ms without a tick; the samples are from the last
    finally:
        loop.close()
    assert "policy process stalled: 100 ms" in report.stale and report.state == ControllerState.RUNNING


def test_a_long_stall_of_the_policy_process_stands_it_and_is_no_sensor_loss(sim):
    """1.2 s without a tick (SIGSTOP, a swapping board): the samples waited in this process's queue, so their age
    is not the sensors' (SensorMonitor.check blind). It stands in place from the measured pose (the bridge stood
    the dog meanwhile) instead of damping for a 'lost' stream; if no new sample comes, it damps in time."""
    loop = running_loop(sim, zero_sampler)
    try:
        now = next_tick(loop)
        run(loop, sim, 5, t0=now)
        last = now + 4 * DT
        joints, imu, _ = samples(sim, last)
        woke = loop.tick(last + 1.2, joints, imu)
        assert woke.state == ControllerState.STANDING_UP, (woke.state, woke.fault)
        assert "policy process stalled: 1200 ms" in loop.last_fault
        np.testing.assert_allclose(woke.command.q, joints.q, atol=1e-9)   # from where the legs are
        # the executor may run a second, catching-up tick before the queued samples: still no sensor fault
        again = loop.tick(last + 1.2 + 0.001, joints, imu)
        assert again.state == ControllerState.STANDING_UP, (again.state, again.fault)
        reports = run_stale(loop, sim, last + 1.2 + 0.001, SAFETY.stale_damping_after + 0.1, joints, imu)
        assert reports[-1].state == ControllerState.DAMPING and "lost" in loop.last_fault   # really silent
    finally:
        loop.close()


def test_unknown_skills_and_out_of_range_speeds_are_refused_or_clamped():
    loop = PolicyLoop(CONFIG, zero_sampler)
    try:
        assert loop.set_skill_command(99, 0.1, 0, 0).note.startswith("refused unknown skill")
        assert loop.skill.skill == 0
        trot = CONFIG.skill("trot")
        state = loop.set_skill_command(trot.id, 5.0, 0.0, -9.0)
        assert state.command[0] == trot.vx[1] and state.command[2] == trot.yaw_rate[0]
        assert loop.set_skill_command(trot.id, float("nan"), 0, 0).note.startswith("refused")
    finally:
        loop.close()


def test_a_skill_the_model_lacks_is_refused_and_the_skill_in_effect_kept():
    """A model trained before the robot config gained hop runs over its own skills (its goal: their one-hot). A
    hop command is refused with the reason: trot stays in effect at zero velocity, and streamed refused commands
    keep the source alive (the watchdog does not stand the robot). The next trot command is accepted again."""
    model = first_skills(CONFIG, len(CONFIG.skills) - 1)
    hop, trot = CONFIG.skill("hop").id, CONFIG.skill("trot").id
    lacking = skills_lacking(CONFIG, model)
    assert lacking == {hop: "hop"}
    seen = []

    def sampler(obs, goal):
        seen.append(goal.shape)
        return np.zeros((HORIZON, JOINTS))

    sim = CyberDogSim(CONFIG, seed=0)
    loop = PolicyLoop(model_view(CONFIG, model), sampler, inference_wait_s=0.05, command_watchdog=True,
                      lacking_skills=lacking)
    try:
        loop.set_skill_command(trot, 0.5, 0.0, 0.0)
        state = loop.set_skill_command(hop, 0.3, 0.0, 0.1)
        assert state.skill == trot and not np.any(state.command)
        assert loop.skill_refusal.startswith("refused skill hop") and "trot kept" in loop.skill_refusal
        for k in range(int((CONFIG.watchdog.command_stand_after_s + 0.5) / DT)):
            loop.set_skill_command(hop, 0.3, 0.0, 0.0)
            loop.tick(k * DT, *samples(sim, k * DT))
            sim.step()
        assert loop.skill.skill == trot and loop.command_timeout == ""
        assert seen and set(seen) == {(CONFIG.observation.history, CONFIG.observation.goal_dim - 1)}
        loop.set_skill_command(trot, 0.2, 0.0, 0.0)
        assert loop.skill_refusal == "" and loop.skill.command[0] == 0.2
    finally:
        loop.close()
    with pytest.raises(ValueError, match="lacking_skills"):
        PolicyLoop(CONFIG, zero_sampler, lacking_skills={hop: "hop"})


def test_strafing_and_turning_share_the_trot_budget():
    trot = CONFIG.skill("trot")
    assert trot.strafe_turn_budget == 1.0
    assert trot.clamp_command(1.0, 0.0, -1.0) == (1.0, 0.0, -1.0), "each axis alone reaches its whole range"
    assert trot.clamp_command(0.0, 0.3, 0.0) == (0.0, 0.3, 0.0)
    vx, vy, yaw = trot.clamp_command(1.0, 0.3, 1.0)
    assert vx == 1.0 and vy == pytest.approx(0.15) and yaw == pytest.approx(0.5), "scaled back together"
    vx, vy, yaw = trot.clamp_command(-0.2, -0.1, 0.4)                   # inside the budget: untouched
    assert (vx, vy, yaw) == (-0.2, -0.1, 0.4)
    assert CONFIG.skill("pace").clamp_command(0.0, 0.2, 0.6) == (0.0, 0.2, 0.6), "other skills: the plain box"


def test_a_sensor_gap_restarts_history_and_sampler(sim):
    """After a fault the history is rebuilt from fresh frames and the warm start is dropped: frames from before
    the gap never reach the sampler again."""
    calls = []
    resets = []

    def sampler(obs, goal):
        calls.append(obs.copy())
        return np.zeros((HORIZON, JOINTS))

    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=0.05, reset_sampler=lambda: resets.append(len(calls)))
    try:
        run(loop, sim, 10)
        before = len(resets)
        loop.tick(0.5, None, None)               # no sensors: fault, a hole in the history
        run(loop, sim, 3, t0=1.0)
    finally:
        loop.close()
    assert before == 1 and len(resets) == 2      # once at start, once after the gap
    first_after = calls[resets[-1]]
    np.testing.assert_array_equal(first_after, np.repeat(first_after[-1:], len(first_after), axis=0))


# ----------------------------------------------------------------------------------------- ablation options
DEFAULT_POSE = np.asarray(CONFIG.robot.default_pose)
E = CONFIG.action.execute_index


def synthetic_samples(k: int, now: float) -> tuple[JointSample, ImuSample]:
    """Healthy sensor samples whose joint positions differ from tick to tick, so every frame is unique."""
    q = DEFAULT_POSE + 1e-3 * np.sin(0.7 * k + np.arange(JOINTS))
    return JointSample(q, np.zeros(JOINTS), now, now), ImuSample([1.0, 0.0, 0.0, 0.0], np.zeros(3), now, now)


def drive_to_running(loop: PolicyLoop, frames: list) -> list:
    """Tick a loop (no simulator) through PASSIVE -> STANDING_UP -> RUNNING; returns the reports of 24 RUNNING
    ticks, with `frames` collecting every observation the loop builds (one per tick)."""
    original = loop.builder.observation
    loop.builder.observation = lambda *args: frames.append(original(*args)) or frames[-1]
    now, k = 0.0, 0
    for request in (ControllerRequest.STAND_UP, None):
        loop.tick(now, *synthetic_samples(k, now))
        k += 1
        if request is not None:
            assert loop.request(request)[0]
    now = CONFIG.controller.stand_up_duration + 0.5   # the stand-up move is time based
    loop.tick(now, *synthetic_samples(k, now))
    k += 1
    assert loop.request(ControllerRequest.RUN)[0]
    reports = []
    for _ in range(24):
        now += DT
        reports.append(loop.tick(now, *synthetic_samples(k, now)))
        k += 1
    assert loop.controller.state == ControllerState.RUNNING
    return reports


def executed(report) -> float:
    """The action value a RUNNING tick executed (the samplers below fill actions with one value per row)."""
    return float(np.round((report.command.q[0] - DEFAULT_POSE[0]) / CONFIG.action.scale, 6))


@pytest.mark.parametrize("current_frame", [False, True])
def test_current_frame_option_feeds_s_t_to_the_sampler_for_tick_t(current_frame):
    """Default: the chunk executed at tick t was sampled from a window ending at s[t-1]. current_frame: from a
    window ending at s[t] (sampled within tick t)."""
    seen = []

    def sampler(obs, goal):
        seen.append(obs[-1].copy())
        return np.full((HORIZON, JOINTS), 1e-3 * (len(seen) - 1))  # the call index, readable from q_des

    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=1.0, current_frame=current_frame)
    frames = []
    try:
        reports = drive_to_running(loop, frames)
    finally:
        loop.close()
    first_running_tick = len(frames) - len(reports)
    for i, report in enumerate(reports[2:], start=2):  # skip the first ticks after RUN (plan restart)
        call = int(round(executed(report) / 1e-3))
        tick = first_running_tick + i
        newest = tick if current_frame else tick - 1
        np.testing.assert_array_equal(seen[call][None], np.asarray(frames[newest])[None].astype(np.float32))


@pytest.mark.parametrize("current_frame", [False, True])
def test_open_loop_option_executes_chunk_entries_and_replans_every_n_ticks(current_frame):
    calls = []

    def sampler(obs, goal):
        calls.append(len(calls))
        return 1e-3 * np.repeat(np.arange(HORIZON, dtype=float)[:, None], JOINTS, axis=1)  # row i holds i

    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=1.0, replan_every=4, current_frame=current_frame)
    try:
        reports = drive_to_running(loop, [])
        ticks = loop.ticks
    finally:
        loop.close()
    indices = [int(round(executed(r) / 1e-3)) for r in reports[4:]]
    # entries execute_index .. execute_index+3 in turn, a fresh chunk every 4 ticks
    start = indices.index(E)
    assert indices[start:start + 12] == [E, E + 1, E + 2, E + 3] * 3
    assert abs(len(calls) - ticks / 4) <= 2


def test_receding_horizon_default_replans_every_tick():
    calls = []

    def sampler(obs, goal):
        calls.append(1)
        return 1e-3 * np.repeat(np.arange(HORIZON, dtype=float)[:, None], JOINTS, axis=1)

    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=1.0)
    try:
        reports = drive_to_running(loop, [])
        ticks = loop.ticks
    finally:
        loop.close()
    assert {int(round(executed(r) / 1e-3)) for r in reports[2:]} == {E}
    assert len(calls) >= ticks - 1  # one call per tick (the last one may still be in flight at close)


def test_open_loop_interval_must_fit_the_chunk():
    with pytest.raises(ValueError, match="replan_every"):
        PolicyLoop(CONFIG, zero_sampler, replan_every=HORIZON - E + 1)


def test_late_chunks_are_still_used_and_the_misses_counted(sim):
    """A sampler slower than the tick: every tick misses its deadline, yet each chunk that does finish becomes
    the plan (entered at the tick it has reached), so the robot never runs on a plan older than one sample."""
    calls = []

    def slow_sampler(obs, goal):
        time.sleep(1.6 * DT)
        calls.append(len(calls))
        return np.full((HORIZON, JOINTS), 0.001 * len(calls))

    loop = PolicyLoop(CONFIG, slow_sampler, inference_wait_s=0.0)
    try:
        run(loop, sim, 2)
        loop.request(ControllerRequest.STAND_UP)
        run(loop, sim, int(CONFIG.controller.stand_up_duration / DT) + 5, t0=2 * DT, wait=DT)
        loop.request(ControllerRequest.RUN)
        misses_before = loop.deadline_misses
        reports = run(loop, sim, 30, t0=next_tick(loop), wait=DT)
    finally:
        loop.close()
    assert loop.deadline_misses - misses_before >= 20
    offsets = {round(float(np.mean(r.command.q - np.asarray(CONFIG.robot.default_pose))) / CONFIG.action.scale, 4)
               for r in reports}
    assert len(offsets) >= 5, offsets   # the plan kept changing as late chunks arrived


@pytest.mark.parametrize("wait_s, misses", [(0.0, "some"), (0.2, "none")])
def test_a_plan_a_little_late_is_waited_for_within_the_budget(sim, wait_s, misses):
    """Back-to-back ticks leave the sampler no time (like a tick that follows a late one closely): with a wait
    budget longer than the sampler the tick waits for its plan, without one it counts a miss and follows the
    previous plan."""
    def sampler(obs, goal):
        time.sleep(0.01)
        return np.zeros((HORIZON, JOINTS))

    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=wait_s)
    try:
        reports = run(loop, sim, 6)
    finally:
        loop.close()
    if misses == "none":
        assert loop.deadline_misses == 0 and loop.last_miss is None and loop.plans_waited_for >= 3
        assert max(r.plan_wait_s for r in reports) >= 0.005   # the wait is reported (the tick jitter counts it)
    else:
        assert loop.deadline_misses >= 3 and loop.plans_waited_for == 0
        assert loop.last_miss.due == loop.last_miss.tick and loop.last_miss.take_s > 0


# ---------------------------------------------------------------------------------- sampler failure, watchdog
def running_loop(sim, sampler, **options) -> PolicyLoop:
    """A loop stood up and RUNNING on the simulator (stand-up at 2 ticks, RUN once the stand is complete)."""
    loop = PolicyLoop(CONFIG, sampler, inference_wait_s=0.5, **options)
    run(loop, sim, 2)
    assert loop.request(ControllerRequest.STAND_UP)[0]
    run(loop, sim, int(CONFIG.controller.stand_up_duration / DT) + 5, t0=2 * DT)
    assert loop.request(ControllerRequest.RUN)[0], loop.controller.last_fault
    return loop


def test_a_sampler_returning_non_finite_actions_damps_a_running_robot_with_the_reason(sim):
    """One bad plan is followed through on the previous plan; WatchdogConfig.sampler_failures in a row are a fault:
    DAMPING (the controller's fault path), the reason reported, RUN refused until the sampler recovers."""
    broken = threading.Event()

    def sampler(obs, goal):
        return np.full((HORIZON, JOINTS), np.nan) if broken.is_set() else np.zeros((HORIZON, JOINTS))

    loop = running_loop(sim, sampler)
    limit = CONFIG.watchdog.sampler_failures
    try:
        broken.set()
        reports = run(loop, sim, limit + 2, t0=next_tick(loop))
        states = [r.state for r in reports]
        assert states[:limit] == [ControllerState.RUNNING] * limit      # the previous plan carries the first ones
        assert states[-1] == ControllerState.DAMPING, states
        assert "sampler returned non-finite actions" in loop.last_fault, loop.last_fault
        assert loop.sampler_fault and np.all(reports[-1].command.kp == 0)
        assert all(r.command.is_finite() for r in reports)
        assert loop.request(ControllerRequest.STAND_UP)[0]               # standing needs no sampler ...
        run(loop, sim, int(CONFIG.controller.stand_up_duration / DT) + 5, t0=next_tick(loop))
        accepted, message = loop.request(ControllerRequest.RUN)
        assert not accepted and "non-finite" in message, message         # ... running does
        broken.clear()
        run(loop, sim, 3, t0=next_tick(loop))
        assert loop.sampler_fault == "" and loop.request(ControllerRequest.RUN)[0]
    finally:
        loop.close()


def test_a_single_failed_plan_is_followed_through_on_the_previous_plan(sim):
    calls = []

    def sampler(obs, goal):
        calls.append(len(calls))
        if len(calls) == 200:
            raise RuntimeError("one bad sample")
        return np.zeros((HORIZON, JOINTS))

    loop = running_loop(sim, sampler)
    try:
        reports = run(loop, sim, 200 - len(calls) + 5, t0=next_tick(loop))
    finally:
        loop.close()
    assert "one bad sample" in loop.last_fault and loop.sampler_failures == 0
    assert all(r.state == ControllerState.RUNNING for r in reports)


def commanded(loop: PolicyLoop, t0: float, seconds: float, sim) -> list:
    """(time, skill, command) for every tick of `seconds` without a new command."""
    out = []
    for k in range(int(round(seconds / DT))):
        now = t0 + k * DT
        loop.tick(now, *samples(sim, now))
        out.append((now - t0, loop.skill.skill, loop.skill.command.copy()))
    return out


def test_a_silent_command_source_is_zeroed_then_stood():
    """The node's loop (command_watchdog=True): a trot command and then silence: zero velocity after
    command_zero_after_s with the skill kept, stand after command_stand_after_s; a fresh command lifts it."""
    sim = CyberDogSim(CONFIG, seed=0)
    w = CONFIG.watchdog
    trot, stand = CONFIG.skill("trot").id, CONFIG.skill("stand").id
    loop = PolicyLoop(CONFIG, zero_sampler, command_watchdog=True)
    try:
        loop.set_skill_command(trot, 0.5, 0.0, 0.2)
        trace = commanded(loop, 0.0, w.command_stand_after_s + 0.2, sim)
        moving = [t for t, s, c in trace if s == trot and np.any(c != 0)]
        zeroed = [t for t, s, c in trace if s == trot and not np.any(c)]
        stood = [t for t, s, c in trace if s == stand and not np.any(c)]
        assert moving and zeroed and stood and max(moving) < min(zeroed) <= max(zeroed) < min(stood), trace
        assert abs(min(zeroed) - w.command_zero_after_s) <= 1.5 * DT
        assert abs(min(stood) - w.command_stand_after_s) <= 1.5 * DT
        assert "no skill command for" in loop.command_timeout and "skill stand" in loop.command_timeout
        loop.set_skill_command(trot, 0.3, 0.0, 0.0)                       # the source is back
        trace = commanded(loop, 10.0, 0.2, sim)
        assert all(s == trot and c[0] == 0.3 for _, s, c in trace) and loop.command_timeout == ""
    finally:
        loop.close()


def test_without_the_watchdog_a_command_holds_as_in_the_evaluation_harness():
    sim = CyberDogSim(CONFIG, seed=0)
    loop = PolicyLoop(CONFIG, zero_sampler)
    try:
        loop.set_skill_command(CONFIG.skill("trot").id, 0.5, 0.0, 0.0)
        trace = commanded(loop, 0.0, CONFIG.watchdog.command_stand_after_s + 0.5, sim)
    finally:
        loop.close()
    assert all(c[0] == 0.5 for _, _, c in trace)


def test_a_megabyte_source_is_cut_before_it_reaches_the_fault_text():
    loop = PolicyLoop(CONFIG, zero_sampler)
    try:
        assert loop.request(ControllerRequest.ESTOP, source="x" * 1_000_000 + "\n\x1b[31mforged")[0]
    finally:
        loop.close()
    assert len(loop.controller.last_fault) < 200 and "\n" not in loop.controller.last_fault
    assert "xxx... (1000012 characters)" in loop.controller.last_fault, loop.controller.last_fault
