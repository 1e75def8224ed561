"""Experts behind the deployed pipeline: (action_t, action_next) -> ActionDecoder -> SafetyFilter (per-tick step
limit ON) -> q_des and qd_des to the simulator. Each walks a short stretch in the commanded direction."""

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy import kinematics as kin
from diffuseloco_policy.gaits import GAITS
from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_sim import SimConfig


def test_inverse_kinematics_round_trip():
    q = np.tile([0.0, -0.785, 1.222], (4, 1)) + np.random.default_rng(0).uniform(-0.3, 0.3, (4, 3))
    np.testing.assert_allclose(kin.inverse(kin.forward(q)), q, atol=1e-9)


def test_the_feet_velocity_is_the_jacobian_times_the_joint_rates():
    """kin.foot_velocity (two forward passes, the estimator's 500 Hz path) against the full Jacobian and against
    the feet's motion over a short time."""
    rng = np.random.default_rng(1)
    q = np.tile([0.0, -0.785, 1.222], (4, 1)) + rng.uniform(-0.3, 0.3, (4, 3))
    qd = rng.normal(0.0, 10.0, (4, 3))
    expected = np.einsum("lij,lj->li", kin.jacobian(q), qd)
    np.testing.assert_allclose(kin.foot_velocity(q, qd), expected, atol=1e-7)
    dt = 1e-6
    np.testing.assert_allclose(kin.foot_velocity(q, qd), (kin.forward(q + dt * qd) - kin.forward(q)) / dt, atol=1e-4)


def _run(rollout, schedule):
    """Ticks along [(skill, command, ticks)]; checks every command against the per-tick step limit."""
    config = rollout.config
    limit = np.tile(np.radians(config.safety.max_target_step_deg), 4) + 1e-9
    decoder = ActionDecoder(config)
    ticks = []
    for skill, command, n in schedule:
        for _ in range(n):
            previous = rollout.last_q_des.copy()   # what was sent last tick (the sim's hold pose at first)
            tick = rollout.tick(config.skill(skill).id, command)
            assert np.all(np.abs(tick.target - previous) <= limit), "a command broke the per-tick step limit"
            np.testing.assert_allclose(decoder.position(tick.action), tick.target, atol=1e-12)
            ticks.append(tick)
            assert not rollout.sim.fallen()
    return ticks


@pytest.mark.parametrize("skill,command", [
    ("stand", (0, 0, 0)), ("trot", (1.0, 0, 0)), ("trot", (-0.5, 0, 0)), ("trot", (0, 0.3, 0)), ("trot", (0, -0.3, 0)),
    ("trot", (0, 0, 1.0)), ("trot", (0, 0, -1.0)), ("trot", (0.6, 0.15, -0.5)),
    ("pace", (0.3, 0, 0)), ("pace", (-0.2, 0, 0)), ("pace", (0, 0, 0.5)), ("bound", (0.3, 0, 0)), ("bound", (0, 0, 0)),
    ("bound", (0, 0, 0.3)), ("hop", (0.4, 0, 0)), ("hop", (0, 0, 0)), ("hop", (0.2, 0, 0.3)), ("hop", (0.1, 0, -0.3))])
def test_expert_moves_as_commanded(skill, command):
    rollout = ExpertRollout(load_config())
    assert rollout.rate_limit
    _run(rollout, [("stand", (0, 0, 0), 25), (skill, command, 75)])
    velocities = []
    for _ in range(100):   # sample while running (a gait's velocity oscillates within each stride)
        _run(rollout, [(skill, command, 1)])
        velocities.append([*rollout.sim.base_velocity_heading(), rollout.sim.yaw_rate()])
    mean = np.mean(velocities, axis=0)
    np.testing.assert_allclose(mean, command, atol=0.12)


def test_velocity_feedforward_goes_through_qd_des():
    """Walking, the expert sends nonzero qd_des (its plan's velocity) while q_des moves only tick by tick."""
    rollout = ExpertRollout(load_config())
    ticks = _run(rollout, [("stand", (0, 0, 0), 25), ("trot", (0.4, 0, 0), 50)])
    assert max(np.abs(t.velocity_target).max() for t in ticks[30:]) > 1.0


def test_skill_switches_mid_motion():
    rollout = ExpertRollout(load_config())
    _run(rollout, [("stand", (0, 0, 0), 25), ("trot", (0.3, 0, 0), 60), ("pace", (0.3, 0, 0), 60),
                   ("bound", (0.3, 0, 0), 60), ("hop", (0.3, 0, 0), 60), ("trot", (0.3, 0, 0.3), 60),
                   ("hop", (0.2, 0, -0.2), 60), ("pace", (0.2, 0, 0), 60), ("hop", (0.3, 0, 0), 60),
                   ("bound", (0.3, 0, 0), 60), ("hop", (0.2, 0, 0), 60), ("stand", (0, 0, 0), 40)])


def test_hop_keeps_the_four_feet_together_and_flies():
    """Hop (pronk): the four feet land and lift together, with a flight between. Its stance carries the flight's
    share of the weight too: over a stride the planned support averages the body weight. From a stand it starts
    with a push (all feet in stance), never by lifting all four feet at once."""
    config = load_config()
    rollout = ExpertRollout(config)
    _run(rollout, [("stand", (0, 0, 0), 25)])
    expert = rollout.expert
    first = []
    for _ in range(3):
        _run(rollout, [("hop", (0.3, 0, 0), 1)])
        first.append(expert.stance.copy())
    assert np.all(first), "the first ticks of a hop from a stand push off with every foot"
    contacts, support = [], []
    for _ in range(150):
        _run(rollout, [("hop", (0.3, 0, 0), 1)])
        contacts.append(rollout.sim.foot_contacts())
        support.append(expert._load_share().sum())
    down = np.array(contacts).sum(axis=1)
    assert np.mean(down == 0) > 0.2, "a flight phase in every stride"
    assert np.mean((down == 0) | (down == 4)) > 0.8, "the feet together"
    stride = int(round(GAITS["hop"].period / config.rates.control_dt))
    assert abs(np.mean(support[-10 * stride:]) - 1.0) < 0.1
    assert max(support) > 1.5, "the stance pushes for the flight"


def test_only_a_hop_has_its_legs_in_step():
    from diffuseloco_policy.gaits import GaitClock

    assert GaitClock(GAITS["hop"]).in_step() == 1.0
    assert all(GaitClock(GAITS[name]).in_step() == 0.0 for name in ("trot", "pace", "bound"))


def test_bound_shifts_support_force_against_pitch():
    """Bound levels the trunk through the gravity feed-forward: nose-up moves planned support from the front pair
    to the rear pair (and nose-down the other way); level, the shares are the gait's own."""
    from diffuseloco_learning.experts.controller import ExpertController
    from diffuseloco_policy.observation import RobotState

    config = load_config()
    expert = ExpertController(config)
    expert.set_skill("bound")
    expert.latched[:] = False
    share = np.full(4, 0.25)

    def state(pitch, rate=0.0):      # rotation about body y: positive pitch is nose-down
        quat = np.array([np.cos(pitch / 2), 0.0, np.sin(pitch / 2), 0.0])
        return RobotState(joint_position=np.zeros(12), joint_velocity=np.zeros(12), quaternion=quat,
                          angular_velocity=np.array([0.0, rate, 0.0]))

    np.testing.assert_allclose(expert._pitch_shared(share, state(0.0)), share)
    up = expert._pitch_shared(share, state(-0.1))      # nose-up
    assert up[:2].max() < 0.25 < up[2:].min()
    down = expert._pitch_shared(share, state(0.1, rate=0.5))
    assert down[:2].min() > 0.25 > down[2:].max()


def _tilted(roll=0.0, pitch=0.0):
    from diffuseloco_policy.observation import RobotState

    cr, sr, cp, sp = np.cos(roll / 2), np.sin(roll / 2), np.cos(pitch / 2), np.sin(pitch / 2)
    quat = np.array([cr * cp, sr * cp, cr * sp, -sr * sp])      # roll about x, then pitch about y (w, x, y, z)
    return RobotState(joint_position=np.zeros(12), joint_velocity=np.zeros(12), quaternion=quat,
                      angular_velocity=np.zeros(3))


def _trotting_expert():
    from diffuseloco_learning.experts.controller import ExpertController

    expert = ExpertController(load_config())
    expert.set_skill("trot")
    expert.latched[:] = False
    expert.clock.phase = 0.2     # FR and RL mid-stance, FL and RR mid-swing
    return expert


def test_turning_lands_feet_outward_and_leans_the_support_inward():
    """Left turn at speed: the centripetal acceleration points left (+y); touchdowns move right by depth / g times
    it, and the planned support force gets the matching +y component."""
    expert = _trotting_expert()
    expert.cmd[:] = (0.8, 0.0, 0.5)
    accel = expert._turn_acceleration(np.array([0.8, 0.0, 0.5]))
    np.testing.assert_allclose(accel, [0.0, 0.4])
    straight = expert._foot_plan(np.array([0.8, 0.0, 0.5]), np.array([0.8, 0.0, 0.5]), np.zeros(2), False)[0]
    expert = _trotting_expert()
    expert.cmd[:] = (0.8, 0.0, 0.5)
    turning = expert._foot_plan(np.array([0.8, 0.0, 0.5]), np.array([0.8, 0.0, 0.5]), accel, False)[0]
    swing = ~expert.stance
    assert swing.any()
    shift = expert.p.turn_placement_gain * expert.p.foot_depth / 9.81 * 0.4
    moved = turning[:, 1] - straight[:, 1]
    assert np.all(moved[swing] < -0.3 * shift) and np.all(moved[swing] >= -shift - 1e-12)   # mid-swing, on its way
    np.testing.assert_allclose(moved[~swing], 0.0, atol=1e-12)          # stance feet keep sweeping where they are
    # the support force (the torque feed-forward): the same feet, pushing the trunk toward the turn's centre
    pos = turning.copy()
    level = _tilted()
    with_turn = expert._joint_targets(pos, np.zeros((4, 3)), level, accel)[2]
    without = expert._joint_targets(pos, np.zeros((4, 3)), level, np.zeros(2))[2]
    loaded = expert._load_share() > 0
    assert np.abs(with_turn - without)[loaded].max() > 1e-3
    assert np.abs(with_turn - without)[~loaded].max() < 1e-12


@pytest.mark.parametrize("tilt,expected_give_way", [(0.0, 0.0), (0.1, 0.0), (0.25, 0.5), (0.5, 1.0)])
def test_a_tilted_trunk_stops_asking_for_acceleration(tilt, expected_give_way):
    """Between tilt_guard's two angles the swept velocity blends from the tracked one to the measured one and the
    integrators drain by the same share; below the first angle nothing changes."""
    expert = _trotting_expert()
    assert expert.p.tilt_guard == (0.15, 0.35)
    for state in (_tilted(pitch=-tilt), _tilted(roll=tilt)):
        expert.integral[:] = (0.2, -0.1, 0.3)
        tracked, measured = np.array([0.4, 0.1, 0.2]), np.array([-0.1, 0.0, 0.0])
        out = expert._tilt_guarded(tracked, measured, state)
        np.testing.assert_allclose(out[:2], tracked[:2] + expected_give_way * (measured[:2] - tracked[:2]), atol=1e-6)
        assert out[2] == tracked[2]
        np.testing.assert_allclose(expert.integral, np.array([0.2, -0.1, 0.3]) * (1 - expected_give_way), atol=1e-6)


def test_only_loaded_feet_level_the_trunk():
    """Posture foot-height offsets go to the feet the plan loads; a swing foot keeps its path (a rearing bound
    must not pull its front feet further off the ground)."""
    expert = _trotting_expert()
    nose_up = _tilted(pitch=-0.2)
    weight = expert._load_weight()
    assert (weight == 0).any() and (weight == 1).any()
    offsets = expert._posture_offsets(nose_up)
    assert np.all(offsets[weight == 0] == 0.0)
    loaded = weight == 1
    front = kin.HIP_ORIGINS[:, 0] > 0
    assert np.all(offsets[loaded & front] > 0.0) and np.all(offsets[loaded & ~front] < 0.0)   # front up, rear down


class _CountingExpert:
    """Targets that say which call made them: default pose + 0.001 rad x call number, on every joint."""

    def __init__(self, pose):
        self.pose, self.calls = np.asarray(pose, dtype=np.float64), 0
        self.torque = np.zeros(len(self.pose))

    def act(self, state, velocity, command, skill):
        self.calls += 1
        return self.pose + 0.001 * self.calls, self.pose + 0.001 * (self.calls + 1)

    def reset(self):
        self.calls = 0


@pytest.mark.parametrize("delayed", [False, True])
def test_a_delayed_expert_applies_what_it_planned_one_tick_earlier(delayed):
    config = load_config()
    rollout = ExpertRollout(config, seed=0, delayed=delayed)
    rollout.expert = _CountingExpert(config.robot.default_pose)
    sent = [rollout.tick(1, (0.0, 0.0, 0.0)).target for _ in range(5)]
    made_by = [round((q - rollout.expert.pose).mean() / 0.001) for q in sent]
    # current frame: tick k applies call k+1 (made from s[k]); delayed: call k (made from s[k-1]), tick 0 its own
    assert made_by == ([1, 2, 3, 4, 5] if not delayed else [1, 1, 2, 3, 4])


def test_the_next_action_feedforward_sends_the_step_to_the_target_applied_next_tick():
    """The diagnostic convention of a policy that predicts actions alone: qd_des at t is (q_des[t+1] - q_des[t])
    x rate (where the safety filter did not change the next target); the experts' own ("plan") differs from it
    while walking."""
    config = load_config()
    rate = config.rates.control_hz
    gaps = {}
    for feedforward in ("plan", "next_action"):
        rollout = ExpertRollout(config, seed=0, delayed=True, feedforward=feedforward)
        ticks = _run(rollout, [("stand", (0, 0, 0), 25), ("trot", (0.4, 0, 0), 50)])[30:]
        # where the safety filter left both targets as planned (not pulled into the band around the joint)
        pairs = [(a, b) for a, b in zip(ticks[:-1], ticks[1:]) if not a.filter_reasons and not b.filter_reasons]
        assert len(pairs) > 20
        gaps[feedforward] = np.mean([np.abs(a.velocity_target - (b.target - a.target) * rate).mean()
                                     for a, b in pairs])
    assert gaps["next_action"] < 1e-9 < 0.3 < gaps["plan"]
    with pytest.raises(ValueError, match="delayed"):
        ExpertRollout(config, feedforward="next_action")
    with pytest.raises(ValueError, match="feedforward"):
        ExpertRollout(config, delayed=True, feedforward="chunk")


def test_action_noise_disturbs_what_is_executed_and_records_the_experts_action():
    """DART data: the next observation's last action is the executed (disturbed) target, the recorded action is
    the expert's; without noise the two are the same."""
    from diffuseloco_learning.experts.rollout import ActionNoise

    config = load_config()
    decoder = ActionDecoder(config)
    last_action = config.observation.slices()["last_action"]
    for noise, differs in ((ActionNoise(), False), (ActionNoise(std=0.15, correlation_s=0.1), True)):
        rollout = ExpertRollout(config, seed=0, delayed=True, action_noise=noise)
        ticks = [rollout.tick(1, (0.4, 0.0, 0.0)) for _ in range(60)]
        for tick, following in zip(ticks[:-1], ticks[1:]):
            np.testing.assert_allclose(following.observation[last_action], decoder.action(tick.target), atol=1e-9)
        gap = np.mean([np.abs(decoder.action(t.target) - t.action).mean() for t in ticks])
        assert (gap > 0.05) if differs else (gap == 0.0)
        assert not rollout.sim.fallen()


def test_ornstein_uhlenbeck_noise_has_the_asked_std_and_correlation():
    from diffuseloco_learning.experts.rollout import ActionNoise, OrnsteinUhlenbeck

    process = OrnsteinUhlenbeck(ActionNoise(std=0.2, correlation_s=0.1), size=12, dt=0.02,
                                rng=np.random.default_rng(0))
    x = np.array([process.sample() for _ in range(20000)])
    assert abs(x.std() - 0.2) < 0.01
    lag1 = np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(12)])
    assert abs(lag1 - np.exp(-0.02 / 0.1)) < 0.02
    with pytest.raises(ValueError):
        ActionNoise(std=-0.1)


def test_the_gait_schedule_depends_on_the_skill_commands_alone():
    """A GaitSchedule that sees only the skill sequence keeps the same phases and stance as the expert walking the
    randomized robot through stand, every gait and back: nothing the robot does enters the gait's timing, so a
    policy loop can reproduce it."""
    from diffuseloco_policy.gaits import GaitSchedule

    config = load_config()
    rollout = ExpertRollout(config, SimConfig.randomized().without_pushes(), seed=1, delayed=True)
    schedule = GaitSchedule(rollout.expert.p.lookahead)
    expert = rollout.expert
    moved = 0
    for name, command, ticks in [("stand", (0, 0, 0), 20), ("trot", (0.5, 0, 0.3), 60), ("pace", (0.2, 0, 0), 60),
                                 ("stand", (0, 0, 0), 40), ("bound", (0.3, 0, 0), 60), ("hop", (0.3, 0, 0.2), 60),
                                 ("stand", (0, 0, 0), 30), ("hop", (0.2, 0, 0), 40), ("trot", (0.8, 0, 0), 40)]:
        for _ in range(ticks):
            rollout.tick(config.skill(name).id, command)
            schedule.set_skill(name)
            schedule.tick(config.rates.control_dt)
            np.testing.assert_array_equal(schedule.clock.leg_phases(), expert.clock.leg_phases())
            np.testing.assert_array_equal(schedule.stance, expert.stance)
            moved += int(not schedule.stance.all())
    assert moved > 100 and not rollout.sim.fallen()


def test_top_speed_share_draws_speeds_from_the_ends_of_each_skills_range():
    """At share 1 every moving command's forward speed lies in the outer quarter of its skill's range (bound and
    trot forward, pace either way); at share 0 the draws are the uniform ones, the same for the same seed."""
    from diffuseloco_learning.experts.rollout import sample_command

    config = load_config()
    rng = np.random.default_rng(0)
    for name in ("trot", "pace", "bound"):
        skill = config.skill(name)
        low, high = skill.vx
        quarter = 0.25 * (high - low)
        speeds = np.array([sample_command(config, skill.id, rng, top_speed_share=1.0)[0] for _ in range(400)])
        outer = (speeds >= high - quarter - 1e-9) | (speeds <= low + quarter + 1e-9)
        assert outer.all(), name
        if abs(low) == abs(high):
            assert (speeds > 0).any() and (speeds < 0).any(), name
        else:
            assert np.mean(speeds >= high - quarter - 1e-9) > 0.6, name
    uniform = np.array([sample_command(config, config.skill("trot").id, np.random.default_rng(s))
                        for s in range(200)])
    same = np.array([sample_command(config, config.skill("trot").id, np.random.default_rng(s), top_speed_share=0.0)
                     for s in range(200)])
    np.testing.assert_array_equal(uniform, same)
    assert np.mean(uniform[:, 0] >= 1.0 - 0.25 * 1.5) < 0.4
    assert sample_command(config, config.skill("stand").id, rng, top_speed_share=1.0) == (0.0, 0.0, 0.0)
