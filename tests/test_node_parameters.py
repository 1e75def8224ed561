"""Node parameters are checked against their defaults' types: an integer where a float is declared is taken
(`noise_scale: 0` in a params file means 0.0), anything else of the wrong type is refused with the parameter's
name, and a node given one refuses to start (exit 2) instead of crashing in rclpy."""

from __future__ import annotations

import subprocess

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from diffuseloco_bringup.graph import NodeSpec
from diffuseloco_bringup.run import node_command
from diffuseloco_policy.nodes.parameters import ParameterTypeError, checked_value, declare_parameters
from test_ros_graph import write_params

DEFAULTS = {"noise_scale": 1.0, "warm_start_steps": 0, "model": "", "enabled": True, "topics": ["/a", "/b"],
            "gains": [1.0, 2.0]}


@pytest.mark.parametrize("name, value, expected", [
    ("noise_scale", 0, 0.0), ("noise_scale", 0.25, 0.25), ("warm_start_steps", 2, 2), ("model", "m.onnx", "m.onnx"),
    ("enabled", False, False), ("topics", ("/x",), ["/x"]), ("gains", [3, 4.5], [3.0, 4.5]),
])
def test_values_of_the_declared_type_are_taken(name, value, expected):
    got = checked_value(name, value, DEFAULTS[name])
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name, value", [
    ("noise_scale", "0.25"), ("noise_scale", True), ("warm_start_steps", 2.0), ("warm_start_steps", "2"),
    ("warm_start_steps", False), ("model", 3), ("enabled", 1), ("topics", "/a"), ("topics", ["/a", 3]),
    ("gains", ["x"]),
])
def test_values_of_another_type_are_refused_with_the_parameters_name(name, value):
    with pytest.raises(ParameterTypeError, match=f"parameter '{name}'"):
        checked_value(name, value, DEFAULTS[name])


def test_a_node_takes_an_integer_for_a_float_and_refuses_a_string():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = [Parameter("noise_scale", value=0), Parameter("warm_start_steps", value=2)]
        node = rclpy.create_node("params_ok", context=context, parameter_overrides=overrides)
        assert declare_parameters(node, DEFAULTS) == {**DEFAULTS, "noise_scale": 0.0, "warm_start_steps": 2}
        node.destroy_node()
        bad = rclpy.create_node("params_bad", context=context,
                                parameter_overrides=[Parameter("warm_start_steps", value="two")])
        with pytest.raises(ParameterTypeError, match="warm_start_steps"):
            declare_parameters(bad, DEFAULTS)
        bad.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_policy_node_refuses_a_mistyped_parameter_at_start(tmp_path):
    params = write_params(tmp_path, "expert")
    values = yaml.safe_load(params.read_text())
    values["diffuseloco_policy"]["ros__parameters"]["warm_start_steps"] = "two"
    params.write_text(yaml.safe_dump(values))
    spec = NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")
    result = subprocess.run(node_command(spec, params), capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).lower()
    assert result.returncode == 2, output[-2000:]
    assert "refusing to start" in output and "warm_start_steps" in output and "traceback" not in output


def test_the_policy_nodes_defaults_are_the_deployed_settings(monkeypatch):
    """One deployment profile: a node started without a parameter file runs the sampler as the bringup files
    (simulator and robot) and every validated evaluation do, a 2-step warm start without sampler noise."""
    from diffuseloco_bringup.graph import config_dir
    from diffuseloco_policy.nodes import policy_node

    captured = {}
    monkeypatch.setattr(policy_node, "declare_parameters", lambda node, defaults: captured.update(defaults))
    policy_node.PolicyNode._declare_parameters(None)
    assert captured["warm_start_steps"] == 2 and captured["noise_scale"] == 0.0
    for target in ("sim", "robot"):
        deployed = yaml.safe_load((config_dir() / f"{target}.yaml").read_text())["diffuseloco_policy"]["ros__parameters"]
        for name in ("warm_start_steps", "noise_scale"):
            assert deployed[name] == captured[name], (target, name)
