"""The body velocity a policy may observe: the simulator's leg odometry (its stand-in for the CyberDog 2 state
estimator's vBody), the observation term that reads it, and the sensor checks that guard it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from velocity_config import observing_velocity

from diffuseloco_policy.config import load_config
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from diffuseloco_learning.evaluation.episode import samples
from diffuseloco_policy import kinematics as kin
from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_policy.observation import ObservationBuilder, RobotState
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.safety import ImuSample, JointSample, SensorMonitor, VelocitySample
from diffuseloco_sim import CyberDogSim, SimConfig
from diffuseloco_sim.state_estimator import LegOdometry

CONFIG = load_config()
WITH_VELOCITY = observing_velocity(CONFIG)
WITHOUT_VELOCITY = observing_velocity(CONFIG, observed=False)
DEFAULT = np.asarray(CONFIG.robot.default_pose)


@pytest.mark.parametrize("skill, command", [(1, (0.5, 0.0, 0.0)), (1, (0.0, 0.3, 0.0)), (2, (0.15, 0.0, 0.0))])
def test_leg_odometry_follows_the_true_body_velocity_of_a_walking_robot(skill, command):
    """An expert walks the randomized robot; after the start, the estimate's mean matches the ground truth's and
    its per-tick error stays small (a slipping, lagging or sign-flipped estimate fails). The mean's bound is
    0.06 m/s: with the official body's massless feet a stance foot slides more in a lateral trot, and the planted-
    foot assumption reads that slide as body motion (0.047-0.066 m/s over seeds 2-4 at 0.3 m/s sideways, where the
    heavier feet gave 0.031-0.047; weighting the feet by their load did not help)."""
    rollout = ExpertRollout(CONFIG, SimConfig.randomized().without_pushes(), seed=2, delayed=True)
    estimated, true = [], []
    for k in range(250):
        tick = rollout.tick(0 if k < 50 else skill, (0.0, 0.0, 0.0) if k < 50 else command)
        if k >= 125:
            estimated.append(tick.state.linear_velocity)
            true.append(rollout.sim.base_velocity_body())
    estimated, true = np.array(estimated), np.array(true)
    assert np.abs(estimated[:, :2].mean(axis=0) - true[:, :2].mean(axis=0)).max() < 0.06
    assert np.sqrt(((estimated[:, :2] - true[:, :2]) ** 2).mean()) < 0.12   # zero or sign-flipped: > 0.3


def test_a_planted_rolling_foot_gives_the_trunk_velocity():
    """Kinematic check without physics: trunk moving at v over a planted foot sphere that rolls."""
    odometry = LegOdometry()
    q = DEFAULT.reshape(4, 3).copy()
    qd = np.zeros((4, 3))
    qd[:, 1] = -2.0            # hips swing back: the feet move back relative to the trunk
    foot_velocity = np.einsum("lij,lj->li", kin.jacobian(q), qd)
    rolling = (0.0 - qd[:, 1] - qd[:, 2]) * odometry.foot_radius
    v = odometry.update(q.ravel(), qd.ravel(), np.zeros(3), np.ones(4, dtype=bool))
    assert v[0] == pytest.approx(float(np.mean(rolling - foot_velocity[:, 0])))
    assert v[0] > 0.0


def test_without_a_foot_on_the_ground_the_last_estimate_holds():
    odometry = LegOdometry()
    q, gyro = DEFAULT, np.zeros(3)
    qd = np.tile([0.0, -1.0, 0.0], 4)
    before = odometry.update(q, qd, gyro, np.array([True, False, False, True]))
    during_flight = odometry.update(q, -5 * qd, gyro, np.zeros(4, dtype=bool))
    np.testing.assert_array_equal(before, during_flight)
    odometry.reset()
    np.testing.assert_array_equal(odometry.update(q, qd, gyro, np.zeros(4, dtype=bool)), np.zeros(3))


def test_the_simulator_reports_the_estimate_not_the_ground_truth():
    sim = CyberDogSim(CONFIG, seed=0)
    sim.data.qvel[0] = 0.7       # the trunk slides while its feet are in the air: no foot reports it
    state = sim.robot_state()
    assert state.linear_velocity is not None and abs(state.linear_velocity[0]) < 0.1


def test_the_observation_term_reads_the_estimate_and_refuses_a_state_without_one():
    builder = ObservationBuilder(WITH_VELOCITY)
    state = RobotState(DEFAULT, np.zeros(12), np.array([1.0, 0, 0, 0]), np.zeros(3), np.array([0.4, -0.1, 0.0]))
    obs = builder.observation(state, np.zeros(12))
    assert obs.shape == (WITH_VELOCITY.observation.obs_dim,)
    np.testing.assert_allclose(obs[WITH_VELOCITY.observation.slices()["base_linear_velocity"]], [0.4, -0.1, 0.0])
    with pytest.raises(ValueError, match="vBody"):
        builder.observation(dataclasses.replace(state, linear_velocity=None), np.zeros(12))


def _healthy(now: float):
    return (JointSample(DEFAULT, np.zeros(12), now - 0.01), ImuSample([1.0, 0, 0, 0], np.zeros(3), now - 0.005))


@pytest.mark.parametrize("velocity, fault", [
    (None, "no body velocity"),
    (VelocitySample([0.3, 0.0, 0.0], received=9.0), "stale"),
    (VelocitySample([np.nan, 0.0, 0.0], received=9.99), "body velocity"),
    (VelocitySample([0.3, 0.0], received=9.99), "body velocity"),
    (VelocitySample([40.0, 0.0, 0.0], received=9.99), "beyond"),
])
def test_a_model_that_observes_velocity_treats_its_estimate_as_a_sensor(velocity, fault):
    joints, imu = _healthy(10.0)
    assert SensorMonitor(WITH_VELOCITY).check(10.0, joints, imu, VelocitySample([0.3, 0, 0], 9.99)) is None
    assert fault in (SensorMonitor(WITH_VELOCITY).check(10.0, joints, imu, velocity) or "")
    assert SensorMonitor(WITHOUT_VELOCITY).check(10.0, joints, imu, velocity) is None   # not observed: ignored


def test_the_loop_damps_when_the_velocity_estimate_stops():
    """A model that observes vBody stands up, runs, then loses the estimate: damping with the reason, no crash."""
    sim = CyberDogSim(WITH_VELOCITY, seed=0)
    loop = PolicyLoop(WITH_VELOCITY, lambda obs, goal: np.zeros((16, 12)), inference_wait_s=0.05)
    dt = WITH_VELOCITY.rates.control_dt

    def run(ticks: int, t0: float, drop_velocity: bool = False):
        report = None
        for k in range(ticks):
            now = t0 + k * dt
            joints, imu, velocity = samples(sim, now)
            report = loop.tick(now, joints, imu, None if drop_velocity else velocity)
            sim.command_position(report.command.q, kp=report.command.kp, kd=report.command.kd)
            sim.step()
        return report

    try:
        run(2, 0.0)
        loop.request(ControllerRequest.STAND_UP)
        run(int(WITH_VELOCITY.controller.stand_up_duration / dt) + 5, 2 * dt)
        loop.request(ControllerRequest.RUN)
        assert run(10, loop.last_tick_at + dt).state == ControllerState.RUNNING   # time runs on: no stall
        report = run(3, loop.last_tick_at + dt, drop_velocity=True)
    finally:
        loop.close()
    assert report.state == ControllerState.DAMPING and "body velocity" in (report.fault or loop.last_fault)
    assert np.all(report.command.kp == 0)
