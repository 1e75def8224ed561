"""The workspace itself: packages are real ROS 2 packages, imports work without sourcing anything, and the
config and the message definitions agree."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diffuseloco_policy.config import ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "diffuseloco_policy": "ament_python",
    "diffuseloco_bringup": "ament_python",
    "diffuseloco_msgs": "ament_cmake",
    "cyberdog_msgs": "ament_cmake",
}


@pytest.mark.parametrize("name,build_type", PACKAGES.items())
def test_package_manifest_is_format_3_with_build_type_and_license(name, build_type):
    root = ET.parse(ROOT / "src" / name / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == name
    assert root.findtext("license")
    assert root.find("export/build_type").text == build_type


def test_imports_work_without_sourcing_ros():
    """What the README promises: the venv's python imports rclpy and our messages with a bare environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]}
    code = "import rclpy, diffuseloco_msgs.msg, cyberdog_msgs.msg; rclpy.init(); rclpy.shutdown(); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_skill_ids_in_config_match_the_message_constants():
    from diffuseloco_msgs.msg import SkillCommand

    constants = {name[len("SKILL_"):].lower(): getattr(SkillCommand, name)
                 for name in dir(SkillCommand) if name.startswith("SKILL_")}
    config = load_config()
    assert constants == {s.name: s.id for s in config.skills}


def test_config_round_trips_through_a_plain_dict():
    config = load_config()
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["robot"].pop("kp"), "missing key 'kp'"),
    (lambda d: d["robot"].update(kp_gain=1.0), "unknown keys"),
    (lambda d: d["robot"].update(default_pose=[0.0] * 11), "default_pose has 11 entries"),
    (lambda d: d["robot"].update(kd="high"), "expected a number"),
    (lambda d: d["action"].update(execute_index=16), "outside the horizon"),
    (lambda d: d["skills"].pop(), "goal term 'skill' has size 5"),
])
def test_invalid_configs_are_refused_with_the_reason(mutate, message):
    data = load_config().to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


@pytest.mark.parametrize("loader, what", [
    ("diffuseloco_policy.config:load_config", "config"),
    ("diffuseloco_policy.teleop:load_keyboard_mapping", "teleop config"),
    ("diffuseloco_learning.evaluation.scenarios:load_matrix", "scenario matrix"),
    ("diffuseloco_learning.pipeline.recipe:load_recipe", "recipe"),
])
def test_malformed_or_missing_yaml_is_a_config_error_naming_the_file(loader, what, tmp_path):
    """A typo in any of the stack's YAML files is a ConfigError with the file's name, not a parser traceback."""
    import importlib

    module, name = loader.split(":")
    load = getattr(importlib.import_module(module), name)
    args = (load_config(),) if name == "load_matrix" else ()
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot: [unclosed\n")
    for path in (bad, tmp_path / "missing.yaml"):
        with pytest.raises(ConfigError, match=f"(cannot read|no) {what} .*{path.name}"):
            load(path, *args)
