"""The robot's appearance (standard or angular, cyberdog_locomotion dog_toolkit.hpp) is a config choice that decides
the abad range, and a model trained with other joint limits is refused."""

from __future__ import annotations

import pytest

from diffuseloco_policy.config import ConfigError, config_from_dict, load_config
from diffuseloco_policy.model_file import ModelMismatchError, check_compatible, compatibility_problems

CONFIG = load_config()


def angular() -> dict:
    data = CONFIG.to_dict()
    data["robot"]["appearance"] = "angular"
    for j in (0, 3, 6, 9):
        data["robot"]["position_lower"][j], data["robot"]["position_upper"][j] = -0.5585, 0.5585
    return data


def test_the_shipped_config_is_the_standard_appearance():
    assert CONFIG.robot.appearance == "standard"
    assert CONFIG.robot.position_upper[0] == pytest.approx(0.6807)


def test_an_appearance_whose_abad_limits_differ_is_refused():
    data = CONFIG.to_dict()
    data["robot"]["appearance"] = "angular"          # standard limits left in place
    with pytest.raises(ConfigError, match="appearance 'angular' has abad limits"):
        config_from_dict(data)
    data["robot"]["appearance"] = "round"
    with pytest.raises(ConfigError, match="appearance must be one of"):
        config_from_dict(data)


def test_a_model_with_other_joint_limits_is_refused_with_the_appearances():
    robot = config_from_dict(angular())
    problems = compatibility_problems(CONFIG, robot)
    assert len(problems) == 1 and "joint limits differ" in problems[0] and "'angular'" in problems[0]
    with pytest.raises(ModelMismatchError, match="robot appearance: model 'standard', robot 'angular'"):
        check_compatible(CONFIG, robot)
    check_compatible(robot, robot)
