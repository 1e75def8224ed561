"""The robot graph as the robot image runs it, against the LCM robot peer; run by tests/test_robot_install.py.

    python robot_venv_check.py PREFIX ROBOT_PYTHON SCRIPT

The LCM bridge, the policy node and the script teleop start from PREFIX (installed as colcon installs them) with
ROBOT_PYTHON, the interpreter of a virtual environment that holds only the robot image's Python packages
(docker/requirements-robot.txt, numpy, pyyaml) and the ROS wheels: no torch, MuJoCo or zarr, no source tree.
They read the installed robot.yaml (LCM URLs overridden to ttl=0). The peer (this project's environment: it
needs MuJoCo) plays the motion-control board. SCRIPT stands the dog up and trots. This process watches the ROS
side and prints a JSON summary as its last line. Run it inside a private network namespace, or at least with
ttl=0 URLs, so no LCM packet leaves the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.qos import qos_profile_sensor_data

from colcon_prefix import executable, installed_env
from ros_probe import Probe

UDPM = "udpm://239.255.76.67:7667?ttl=0"
UDPM_ESTIMATOR = "udpm://239.255.76.67:7669?ttl=0"
TIMEOUT_S = 90.0


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def main(prefix: Path, robot_python: str, script: Path) -> dict:
    env = installed_env(prefix, Path(robot_python).resolve().parents[1])
    params = str(prefix / "share" / "diffuseloco_bringup" / "config" / "robot.yaml")
    logs = script.parent
    # The motion-control board runs its loop in real time; so does its stand-in here (SCHED_FIFO above the bridge's
    # 40), or a loaded test machine starves it and the policy node rightly damps on stale joint states.
    realtime = ["chrt", "-f", "45"] if shutil.which("chrt") and os.geteuid() == 0 else []
    peer = start([*realtime, sys.executable, "-m", "diffuseloco_sim.lcm_robot_peer", "--lcm-url", UDPM,
                  "--estimator-url", UDPM_ESTIMATOR, "--report-s", "0.5"], dict(env, PYTHONPATH=""),
                 logs / "peer.log")
    nodes = {
        "lcm_bridge": [robot_python, str(executable(prefix, "diffuseloco_policy", "lcm_bridge")), "--ros-args",
                       "-r", "__node:=lcm_bridge", "--params-file", params, "-p", f"lcm_url:={UDPM}",
                       "-p", f"estimator_lcm_url:={UDPM_ESTIMATOR}"],
        "diffuseloco_policy": [robot_python, str(executable(prefix, "diffuseloco_policy", "policy_node")),
                               "--ros-args", "-r", "__node:=diffuseloco_policy", "--params-file", params],
        "teleop": [robot_python, str(executable(prefix, "diffuseloco_policy", "script_teleop")), "--ros-args",
                   "-r", "__node:=teleop", "--params-file", params, "-p", f"script:={script}"],
    }
    probe = Probe("robot_venv_check")
    velocities: list[tuple[float, float]] = []
    lock = threading.Lock()

    def on_velocity(msg: TwistStamped) -> None:
        with lock:
            velocities.append((time.monotonic(), msg.twist.linear.x))
    probe.node.create_subscription(TwistStamped, "/cyberdog/body_velocity", on_velocity, qos_profile_sensor_data)
    processes = {name: start(cmd, env, logs / f"{name}.log") for name, cmd in nodes.items()}
    summary: dict = {"torch_in_robot_python": subprocess.run([robot_python, "-c", "import torch"],
                                                             capture_output=True).returncode == 0}
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and processes["teleop"].poll() is None:
            if any(p.poll() is not None for n, p in processes.items() if n != "teleop"):
                break
            time.sleep(0.2)
        with probe.lock:
            states = [s.state_name for _, s in probe.statuses]
            trot = [s for _, s in probe.statuses if s.state_name == "RUNNING" and s.active_skill == 1]
        with lock:
            recent = [vx for t, vx in velocities if t > time.monotonic() - 2.0]
        summary.update({
            "exit_codes": {n: p.poll() for n, p in processes.items()},
            "states_seen": sorted(set(states)),
            "trot_ticks": len(trot),
            "mean_vx_last_2s": float(np.mean(recent)) if recent else None,
            "velocity_messages": len(velocities),
            "faults": sorted({s.last_fault for _, s in probe.statuses if s.last_fault}),
        })
    finally:
        for p in [*processes.values(), peer]:
            if p.poll() is None:
                p.terminate()
        for p in [*processes.values(), peer]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        probe.close()
    reports = [json.loads(line) for line in (logs / "peer.log").read_text().splitlines() if line.startswith("{")]
    summary["peer_final"] = reports[-1] if reports else None
    summary["logs"] = {name: (logs / f"{name}.log").read_text()[-1500:] for name in [*nodes, "peer"]}
    return summary


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))), flush=True)
