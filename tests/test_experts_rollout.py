"""Each expert walks a short stretch without falling, in the commanded direction."""

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy.experts import kinematics as kin
from diffuseloco_policy.experts.rollout import ExpertRollout


def test_inverse_kinematics_round_trip():
    q = np.tile([0.0, -0.785, 1.222], (4, 1)) + np.random.default_rng(0).uniform(-0.3, 0.3, (4, 3))
    np.testing.assert_allclose(kin.inverse(kin.forward(q)), q, atol=1e-9)


@pytest.mark.parametrize("skill,command", [("stand", (0, 0, 0)), ("trot", (0.5, 0, 0)), ("trot", (0, 0.25, 0)),
                                           ("trot", (0, 0, 0.8)), ("pace", (0.4, 0, 0)), ("bound", (0.3, 0, 0))])
def test_expert_moves_as_commanded(skill, command):
    config = load_config()
    rollout = ExpertRollout(config)
    skill_id = config.skill(skill).id
    velocities = []
    for k in range(175):
        rollout.tick(skill_id if k >= 25 else 0, command)
        assert not rollout.sim.fallen()
        if k >= 100:
            velocities.append([*rollout.sim.base_velocity_heading(), rollout.sim.yaw_rate()])
    mean = np.mean(velocities, axis=0)
    np.testing.assert_allclose(mean, command, atol=0.12)
