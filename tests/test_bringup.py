"""Static checks of the bringup: launch files compile, and every package, executable, module and parameter
file they (and the dev runner) name exists. launch_ros is not installable here, so the graph they share is
checked instead of running them."""

from __future__ import annotations

import ast
import importlib
import itertools
import re
import sys
from pathlib import Path

import pytest
import yaml

from diffuseloco_bringup import graph as graph_module
from diffuseloco_bringup.run import node_command, parse_args

ROOT = Path(__file__).resolve().parents[1]
BRINGUP = ROOT / "src" / "diffuseloco_bringup"
LAUNCH_FILES = sorted((BRINGUP / "launch").glob("*.launch.py"))
COMBINATIONS = list(itertools.product(("sim", "robot"), graph_module.TELEOP_KINDS, (False, True)))


def console_scripts(package: str) -> dict[str, str]:
    """name -> 'module:function' from a package's setup.py, read without running it."""
    source = (ROOT / "src" / package / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+)\s*=\s*([\w.]+:\w+)"', source))


def test_there_is_a_launch_file_for_robot_and_sim():
    assert {p.name for p in LAUNCH_FILES} >= {"robot.launch.py", "sim.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_defines_generate_launch_description(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    compile(tree, str(path), "exec")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def test_launch_description_module_compiles():
    source = BRINGUP / "diffuseloco_bringup" / "launch_description.py"
    compile(source.read_text(), str(source), "exec")


@pytest.mark.parametrize("target,teleop,record", COMBINATIONS)
def test_every_node_of_the_graph_exists(target, teleop, record):
    params = yaml.safe_load(graph_module.params_file(target).read_text())
    web_host = "127.0.0.1" if teleop == "web" else None
    for spec in graph_module.graph(target, teleop=teleop, record=record, web_teleop_host=web_host):
        if spec.package == "joy":  # ROS's joystick driver: a dependency; the runner starts our stand-in for it
            assert "<exec_depend>joy</exec_depend>" in (ROOT / "src" / "diffuseloco_policy" / "package.xml").read_text()
            assert console_scripts("diffuseloco_policy")["joy_driver"] == f"{spec.module}:main"
        else:
            assert (ROOT / "src" / spec.package / "package.xml").is_file(), spec.package
            scripts = console_scripts(spec.package)
            assert scripts.get(spec.executable) == f"{spec.module}:main", f"{spec.executable} is not a console script"
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, "main", None)), f"{spec.module} has no main()"
        assert spec.name in params, f"{graph_module.params_file(target).name} has no section for {spec.name}"
        assert "ros__parameters" in params[spec.name]


def test_dev_runner_starts_nodes_like_launch_ros():
    spec = graph_module.graph("sim", model="m.onnx")[1]
    cmd = node_command(spec, Path("/p.yaml"))
    assert cmd[:3] == [sys.executable, "-m", "diffuseloco_policy.nodes.policy_node"]
    assert cmd[3:] == ["--ros-args", "-r", "__node:=diffuseloco_policy", "--params-file", "/p.yaml",
                       "-p", "model:=m.onnx"]


def test_unknown_targets_and_teleop_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown target"):
        graph_module.graph("moon")
    with pytest.raises(ValueError, match="unknown teleop"):
        graph_module.graph("sim", teleop="telepathy")


def test_the_live_view_is_off_by_default_and_listens_where_it_is_told():
    for target in ("sim", "robot"):
        names = [s.name for s in graph_module.graph(target)]
        assert "robot_state" in names and "live_view" not in names
        params = yaml.safe_load(graph_module.params_file(target).read_text())
        assert params["live_view"]["ros__parameters"]["host"] == "127.0.0.1"
    view = graph_module.graph("sim", live_view=graph_module.LOCALHOST)[-1]
    assert (view.executable, view.params) == ("live_view", {"host": "127.0.0.1"})
    assert parse_args(["sim", "--live-view"]).live_view == "127.0.0.1"
    assert parse_args(["sim", "--live-view", "192.0.2.7"]).live_view == "192.0.2.7"
    assert parse_args(["sim"]).live_view is None
    cmd = node_command(graph_module.graph("robot", live_view="192.0.2.7")[-1], Path("/p.yaml"))
    assert cmd[-2:] == ["-p", "host:=192.0.2.7"]
    with pytest.raises(ValueError, match="address"):
        graph_module.live_view_spec(" ")


def test_the_web_teleop_is_off_by_default_and_needs_a_named_address():
    for target in ("sim", "robot"):
        assert "web_teleop" not in [s.executable for s in graph_module.graph(target)]
        params = yaml.safe_load(graph_module.params_file(target).read_text())
        assert params["teleop"]["ros__parameters"]["web_host"] == ""
    web = graph_module.graph("robot", teleop="web", web_teleop_host="192.0.2.7")
    teleops = [s for s in web if s.name == "teleop"]
    assert [(s.executable, s.params) for s in teleops] == [("web_teleop", {"web_host": "192.0.2.7"})]
    for teleop, host in (("web", None), ("web", " "), ("joy", "0.0.0.0")):
        with pytest.raises(ValueError, match="address"):
            graph_module.graph("sim", teleop=teleop, web_teleop_host=host)
    assert parse_args(["sim", "--teleop", "web", "--web-teleop-host", "0.0.0.0"]).web_teleop_host == "0.0.0.0"
    assert parse_args(["sim"]).web_teleop_host is None
    cmd = node_command(teleops[0], Path("/p.yaml"))
    assert cmd[2] == "diffuseloco_policy.nodes.web_teleop" and cmd[-2:] == ["-p", "web_host:=192.0.2.7"]
