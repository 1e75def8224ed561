"""The robot path as users install it.

- The robot's executables import without torch, MuJoCo or zarr (and without the sim and learning packages).
- Every import of the robot package is provided by what the robot image installs: package.xml (rosdep) and
  docker/requirements-robot.txt; the few optional imports (torch runtime, expert stand-in, evdev) happen only on
  request, inside functions.
- The packages installed as colcon installs them, without symlinks, into a temporary prefix: every run-time file
  is found there through the ament index, and every node of the robot and the simulated graph starts from the
  prefix with the installed bringup parameter files and reaches its ready state.
- The robot graph (LCM bridge, policy node, teleop) run in a virtual environment that holds only the robot
  image's Python packages and the ROS wheels, against the LCM robot peer: it stands up and trots.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from colcon_prefix import ROOT, colcon_install, executable, installed_env, site_packages
from ros_probe import Probe

POLICY = ROOT / "src" / "diffuseloco_policy"
ROBOT_VENV = ROOT / ".venv-robot"
BLOCKED = ("torch", "mujoco", "zarr", "diffuseloco_sim", "diffuseloco_learning")
# Imported only inside a function, on request, and absent from the robot image by design.
ON_REQUEST = {"diffuseloco_learning": "the torch runtime and the expert stand-in (dev machines)",
              "evdev": "the joystick driver of the wheels environment (the robot runs ROS's joy)",
              "matplotlib": "the simulated demo's plot (bringup's demo.py, dev machines)"}
ROSDEP_PYTHON = {"python3-numpy": "numpy", "python3-yaml": "yaml"}
PIP_IMPORT_NAMES = {"onnxruntime": "onnxruntime", "onnx": "onnx", "lcm": "lcm", "rosbags": "rosbags",
                    "foxglove-sdk": "foxglove", "websockets": "websockets"}
NAMESPACE_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def console_scripts(package: str) -> dict[str, str]:
    source = (ROOT / "src" / package / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+)\s*=\s*([\w.]+):\w+"', source))


# ------------------------------------------------------------------------------------ what the image holds
def test_robot_executables_import_without_torch_mujoco_or_zarr():
    modules = sorted(set(console_scripts("diffuseloco_policy").values()) | {"diffuseloco_bringup.graph",
                                                                           "diffuseloco_bringup.run"})
    program = f"""
import importlib, importlib.abc, json, sys
BLOCKED = {BLOCKED!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(name + " is not in the robot image")
sys.meta_path.insert(0, Block())
for module in {modules!r}:
    importlib.import_module(module)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def module_imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level names a module imports: (at module level, only inside functions)."""
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = {node.module.split(".")[0]}
        else:
            continue
        (inner if id(node) in nested else top).update(names)
    return top, inner - top


def robot_image_provides() -> set[str]:
    """Import names the robot image provides beyond the standard library: the ROS packages package.xml
    declares (rosdep installs them; the module is named as the package), rosdep's Python keys, the pip list."""
    provided = {"diffuseloco_policy", "diffuseloco_bringup", "launch", "launch_ros"}
    for package in ("diffuseloco_policy", "diffuseloco_bringup"):
        xml = (ROOT / "src" / package / "package.xml").read_text()
        for dep in re.findall(r"<(?:exec_)?depend>([\w-]+)</(?:exec_)?depend>", xml):
            provided.add(ROSDEP_PYTHON.get(dep, dep))
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "docker" / "requirements-robot.txt").read_text(), re.M)
    provided |= {PIP_IMPORT_NAMES[p] for p in pins}
    return provided


def test_every_robot_import_is_provided_by_the_robot_image():
    provided = robot_image_provides() | set(sys.stdlib_module_names)
    missing, optional_at_top = {}, {}
    for package in ("diffuseloco_policy", "diffuseloco_bringup"):
        for path in sorted((ROOT / "src" / package / package).rglob("*.py")):
            top, inner = module_imports(path)
            rel = str(path.relative_to(ROOT))
            if top - provided:
                missing[rel] = sorted(top - provided)
            if top & set(ON_REQUEST):
                optional_at_top[rel] = sorted(top & set(ON_REQUEST))
            if inner - provided - set(ON_REQUEST):
                missing[rel] = sorted(inner - provided - set(ON_REQUEST))
    assert not missing, f"imports the robot image does not provide (package.xml / requirements-robot.txt): {missing}"
    assert not optional_at_top, f"optional imports must stay inside the function that needs them: {optional_at_top}"


def test_the_check_above_can_fail():
    """The provision check sees a module-level torch import and an undeclared pip package."""
    provided = robot_image_provides() | set(sys.stdlib_module_names)
    assert "torch" not in provided and "mujoco" not in provided and "zarr" not in provided
    assert {"numpy", "yaml", "rclpy", "onnxruntime", "lcm", "joy"} <= provided


# ------------------------------------------------------------------------------- colcon install, no symlinks
@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colcon")
    colcon_install(root / "install", root / "build")
    return root / "install"


def run_installed(prefix: Path, code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=installed_env(prefix), cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_installed_nodes_find_every_run_time_file_through_the_ament_index(prefix, tmp_path):
    """From a neutral directory, with only the prefix on the paths: the modules are the installed copies, and the
    model, the robot config, the parameter files, the teleop script and mappings, the web teleop's page, the MJCF
    and the presets are read from share/."""
    out = run_installed(prefix, """
import json
import diffuseloco_policy, diffuseloco_sim, diffuseloco_bringup, diffuseloco_learning
from diffuseloco_policy.config import default_robot_config
from diffuseloco_policy.package_files import share_dir, package_file
from diffuseloco_policy.model_file import default_model_path
from diffuseloco_policy.nodes.script_teleop import DEFAULT_SCRIPT
from diffuseloco_policy.nodes.teleop_node import DEFAULT_MAPPING
from diffuseloco_policy.nodes.web_teleop import DEFAULT_SETTINGS, PAGE
from diffuseloco_bringup.graph import params_file
from diffuseloco_sim.simulator import MJCF
from diffuseloco_learning.presets import presets_dir
print(json.dumps({
    "modules": [m.__file__ for m in (diffuseloco_policy, diffuseloco_sim, diffuseloco_bringup, diffuseloco_learning)],
    "files": [str(p) for p in (default_robot_config(), default_model_path(),
              package_file("diffuseloco_bringup", DEFAULT_SCRIPT), package_file("diffuseloco_bringup", DEFAULT_MAPPING),
              package_file("diffuseloco_bringup", DEFAULT_SETTINGS), package_file("diffuseloco_policy", PAGE),
              params_file("robot"), params_file("sim"), package_file("diffuseloco_sim", MJCF),
              presets_dir() / "eval_default.yaml", presets_dir() / "train_small.yaml")]}))
""", tmp_path)
    found = json.loads(out.splitlines()[-1])
    assert all(Path(m).is_relative_to(site_packages(prefix)) for m in found["modules"]), found["modules"]
    for path in map(Path, found["files"]):
        assert path.is_relative_to(prefix / "share") and path.is_file(), path
    assert (prefix / "share" / "diffuseloco_policy" / "models" / "diffuseloco_cyberdog2.warm2.onnx").is_file()
    for package in ("diffuseloco_policy", "diffuseloco_sim", "diffuseloco_learning", "diffuseloco_bringup"):
        assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file()


def test_a_missing_share_file_is_a_clear_error(prefix, tmp_path):
    out = run_installed(prefix, """
import os
from diffuseloco_policy.package_files import PackageFileNotFound, package_file
try:
    package_file("diffuseloco_bringup", "config/no_such.yaml")
except PackageFileNotFound as exc:
    print("error:", exc)
os.environ["AMENT_PREFIX_PATH"] = ""
try:
    package_file("diffuseloco_bringup", "config/sim.yaml")
except PackageFileNotFound as exc:
    print("error:", exc)
""", tmp_path)
    assert "config/no_such.yaml not found" in out and "source the install's setup script" in out


def start_node(prefix: Path, package: str, name: str, node: str, params: Path, cwd: Path, *overrides: str):
    cmd = [str(executable(prefix, package, name)), "--ros-args", "-r", f"__node:={node}", "--params-file", str(params)]
    for override in overrides:
        cmd += ["-p", override]
    log = (cwd / f"{node}.log").open("w")
    return subprocess.Popen(cmd, env=installed_env(prefix), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(processes: dict) -> None:
    for p in processes.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in processes.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_every_node_starts_from_the_installed_prefix(prefix, tmp_path):
    """The simulated graph (simulator, policy node with the shipped model, the demo script teleop, the recorder)
    and the joystick pair (driver and teleop), each started as launch_ros starts it, PREFIX/lib/PKG/EXE with the
    installed sim.yaml, reach their ready state: the simulator publishes joint states, the policy node its status,
    the script stands the dog up through the policy node's service, both teleops publish commands, the recorder
    writes its bag. (The robot graph's nodes start from the prefix in the robot-image test below.)"""
    params = prefix / "share" / "diffuseloco_bringup" / "config" / "sim.yaml"
    specs = [("diffuseloco_sim", "sim_node", "cyberdog_sim", ()),
             ("diffuseloco_policy", "policy_node", "diffuseloco_policy", ()),
             ("diffuseloco_policy", "script_teleop", "teleop", ()),
             ("diffuseloco_policy", "recorder", "recorder", (f"output:={tmp_path / 'bag'}",)),
             ("diffuseloco_policy", "joy_driver", "joy", ()),
             ("diffuseloco_policy", "teleop_node", "joy_teleop", ())]
    probe = Probe("install_probe")
    processes = {}
    try:
        processes = {node: start_node(prefix, pkg, exe, node, params, tmp_path, *extra) for pkg, exe, node, extra in specs}
        deadline = time.monotonic() + 90
        ready = {}
        while time.monotonic() < deadline:
            with probe.lock:
                states = {s.state_name for _, s in probe.statuses}
                sources = {c.source for _, c in probe.skill_commands}
                legs = len(probe.foot_forces)
            names = set(probe.node.get_node_names())
            ready = {"cyberdog_sim": legs > 0, "diffuseloco_policy": bool(states),
                     "teleop": "script" in sources and bool(states - {"PASSIVE"}),
                     "joy_teleop": "joystick" in sources, "joy": "joy" in names,
                     "recorder": "recorder" in names and (tmp_path / "bag").exists()}
            if all(ready.values()) or any(p.poll() is not None for p in processes.values()):
                break
            time.sleep(0.3)
        exited = {n: p.poll() for n, p in processes.items() if p.poll() is not None}
        logs = {n: (tmp_path / f"{n}.log").read_text()[-1200:] for n in processes}
        assert not exited, f"nodes exited: {exited}\n{json.dumps(logs, indent=1)}"
        assert all(ready.values()), f"not ready: {ready}\n{json.dumps(logs, indent=1)}"
    finally:
        stop(processes)
        probe.close()


# ---------------------------------------------------------------------------------- the robot image's Python
@pytest.fixture(scope="module")
def robot_python() -> str:
    python = ROBOT_VENV / "bin" / "python"
    assert python.is_file(), f"{python} is missing: `make test` builds it from docker/requirements-robot.txt"
    return str(python)


def test_the_robot_environment_holds_only_the_robot_image_packages(robot_python):
    done = subprocess.run([robot_python, "-c", "import importlib.util, json; print(json.dumps({m: "
                           "importlib.util.find_spec(m) is not None for m in ('torch', 'mujoco', 'zarr', "
                           "'onnxruntime', 'lcm', 'rosbags', 'rclpy', 'cyberdog_msgs', 'diffuseloco_policy')}))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found == {"torch": False, "mujoco": False, "zarr": False, "onnxruntime": True, "lcm": True,
                     "rosbags": True, "rclpy": True, "cyberdog_msgs": True, "diffuseloco_policy": False}


def namespace_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "sh", "-c", NAMESPACE_SETUP], capture_output=True, timeout=10).returncode == 0


def test_robot_graph_stands_up_and_trots_in_the_robot_image_environment(prefix, robot_python, tmp_path):
    script = tmp_path / "trot.yaml"
    script.write_text(yaml.safe_dump({"steps": [{"at": 1.0, "request": "STAND_UP"}, {"at": 4.0, "request": "RUN"},
                                                {"at": 5.0, "skill": "trot", "vx": 0.4}], "end": 12.0}))
    checker = [sys.executable, str(ROOT / "tests" / "support" / "robot_venv_check.py"), str(prefix), robot_python,
               str(script)]
    if namespace_available():  # no LCM packet can leave: the namespace has only loopback
        cmd = ["unshare", "-n", "sh", "-c", f"{NAMESPACE_SETUP} && exec " + " ".join(checker)]
    else:
        print("unshare -n is not permitted here: LCM with ttl=0 on this host's loopback instead")
        cmd = checker
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "support"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    logs = summary.pop("logs")
    report = json.dumps(summary, indent=1) + "\n" + json.dumps(logs, indent=1)
    assert summary["torch_in_robot_python"] is False
    assert summary["exit_codes"]["teleop"] == 0, report          # the script ran to its end
    assert summary["exit_codes"]["lcm_bridge"] is None and summary["exit_codes"]["diffuseloco_policy"] is None, report
    assert {"STANDING_UP", "RUNNING"} <= set(summary["states_seen"]) and not summary["faults"], report
    assert summary["trot_ticks"] > 200, report                    # > 4 s of trot at 50 Hz
    assert summary["mean_vx_last_2s"] is not None and summary["mean_vx_last_2s"] > 0.15, report
    assert summary["peer_final"]["base_height"] > 0.2 and summary["peer_final"]["activations"] == 1, report
