"""The main job (`make demo`): the whole ROS graph, headless, driven by a scripted teleop sequence.

The MuJoCo CyberDog 2 node, the policy node, the script teleop (stand up -> trot forward -> turn -> pace ->
bound -> stand -> get down, config/demo_script.yaml) and the bag recorder run as separate processes, exactly as
the dev runner starts them. This process watches: it prints a per-segment table of commanded vs achieved
velocity (ground truth from the simulator), and writes the plot and the bag under --out.

The policy is the shipped model in models/ when there is one; otherwise the expert controllers stand in
("model: expert", simulation only), and every output line says so.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from geometry_msgs.msg import TwistStamped

from diffuseloco_policy.config import load_config
from diffuseloco_policy.bag_timing import BagTimingError, RecordedTiming, read_stamps, recorded_timing
from diffuseloco_policy.model_file import default_model_path
from diffuseloco_policy.nodes.spin import BackgroundNode
from diffuseloco_policy.package_files import PackageFileNotFound

from .graph import LOCALHOST, NodeSpec, live_view_spec, params_file, web_teleop_spec
from .run import Graph

SETTLE_S = 1.0  # seconds of each segment left out of the achieved-velocity mean (gait transition)
WEB_TELEOP_PORT = 8080   # the teleop section's web_port in config/sim.yaml


@dataclass(frozen=True)
class Segment:
    skill: str
    command: tuple[float, float, float]
    achieved: tuple[float, float, float]
    seconds: float
    states: str


class Monitor(BackgroundNode):
    """Records skill commands, policy status and the simulator's ground-truth velocity with receive times."""

    def __init__(self) -> None:
        super().__init__("demo_monitor")
        self.commands: list[tuple[float, SkillCommand]] = []
        self.twists: list[tuple[float, TwistStamped]] = []
        self.status: list[tuple[float, PolicyStatus]] = []
        for topic, cls, store in (("/diffuseloco/skill_cmd", SkillCommand, self.commands),
                                  ("/sim/base_twist", TwistStamped, self.twists),
                                  ("/diffuseloco/status", PolicyStatus, self.status)):
            self.node.create_subscription(cls, topic, lambda m, s=store: s.append((time.monotonic(), m)), 100)


def segments(monitor: Monitor, config) -> list[Segment]:
    """Split the run where the commanded (skill, velocity) changes; average the ground truth in each piece."""
    key = lambda m: (m.skill, round(m.vx, 3), round(m.vy, 3), round(m.yaw_rate, 3))  # noqa: E731
    bounds: list[tuple[float, SkillCommand]] = []
    for t, msg in monitor.commands:
        if not bounds or key(msg) != key(bounds[-1][1]):
            bounds.append((t, msg))
    ends = [t for t, _ in bounds[1:]] + [monitor.commands[-1][0] if monitor.commands else 0.0]
    twist_t = np.array([t for t, _ in monitor.twists])
    twist_v = np.array([(m.twist.linear.x, m.twist.linear.y, m.twist.angular.z) for _, m in monitor.twists])
    states = [(t, s.state_name) for t, s in monitor.status]
    out = []
    for (start, msg), end in zip(bounds, ends):
        if end - start < 0.5:
            continue
        mask = (twist_t >= start + SETTLE_S) & (twist_t < end)
        achieved = tuple(twist_v[mask].mean(axis=0)) if mask.any() else (float("nan"),) * 3
        seen = [name for t, name in states if start <= t < end]
        changes = [name for i, name in enumerate(seen) if i == 0 or name != seen[i - 1]]
        out.append(Segment(config.skill(int(msg.skill)).name, (msg.vx, msg.vy, msg.yaw_rate), achieved,
                           end - start, " -> ".join(changes)))
    return out


def table(rows: Sequence[Segment]) -> str:
    lines = ["| # | skill | s | cmd vx | cmd vy | cmd yaw | vx | vy | yaw rate | controller |", "|" + "---|" * 10]
    for i, r in enumerate(rows, 1):
        values = " | ".join(f"{v:+.2f}" for v in (*r.command, *r.achieved))
        lines.append(f"| {i} | {r.skill} | {r.seconds:.1f} | {values} | {r.states} |")
    return "\n".join(lines)


def plot(monitor: Monitor, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = monitor.commands[0][0]
    tc = [t - t0 for t, _ in monitor.commands]
    cmd = np.array([(m.vx, m.vy, m.yaw_rate) for _, m in monitor.commands])
    tt = [t - t0 for t, _ in monitor.twists]
    vel = np.array([(m.twist.linear.x, m.twist.linear.y, m.twist.angular.z) for _, m in monitor.twists])
    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
    for k, name in enumerate(("vx [m/s]", "vy [m/s]", "yaw rate [rad/s]")):
        axes[k].plot(tc, cmd[:, k], "k--", label="commanded")
        axes[k].plot(tt, vel[:, k], label=f"achieved ({label})")
        axes[k].set_ylabel(name)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("time [s]")
    fig.suptitle(f"Simulated CyberDog 2, teleop through the ROS graph; policy: {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_params(out: Path, model: str, bag: Path, config: Optional[Path] = None) -> Path:
    params = yaml.safe_load(params_file("sim").read_text())
    params["diffuseloco_policy"]["ros__parameters"]["model"] = model
    params["recorder"]["ros__parameters"]["output"] = str(bag)
    if config is not None:   # the simulated robot and the policy node must agree on it
        for node in ("cyberdog_sim", "diffuseloco_policy", "robot_state"):
            params[node]["ros__parameters"]["config"] = str(config)
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@dataclass(frozen=True)
class DemoRun:
    """What one run of the main job showed: the graph's exit code, the per-segment velocities, every fault the
    policy node reported, and where the plot and the bag went."""

    code: int
    label: str
    rows: list[Segment]
    faults: list[str]
    plot: Optional[Path]
    bag: Path
    timing: Optional[RecordedTiming] = None   # the control ticks' regularity, from the bag (None: unreadable)


def run_demo(out: Path, model: str = "", config: Optional[Path] = None, live_view: Optional[str] = None,
             web_teleop: Optional[str] = None) -> DemoRun:
    """Start the graph, let the script teleop drive it to the end, and read back what the dog did. live_view:
    also start robot_state and the Foxglove live view on this address (None: neither). web_teleop: a phone drives
    instead of the script, through the web teleop's page on this address; the run then lasts until Ctrl-C."""
    out.mkdir(parents=True, exist_ok=True)
    model = model or _shipped_model()
    label = "EXPERT STAND-IN, not a learned policy" if model == "expert" else Path(model).name
    bag = out / time.strftime("bag-%Y%m%d-%H%M%S")
    teleop = "script teleop" if web_teleop is None else "web teleop"
    print(f"DiffuseLoco-ROS demo: simulator + policy node ({label}) + {teleop} + recorder", flush=True)
    specs = [NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"),
             NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy"),
             NodeSpec("diffuseloco_policy", "recorder", "recorder"),
             NodeSpec("diffuseloco_policy", "script_teleop", "teleop") if web_teleop is None
             else web_teleop_spec(web_teleop)]
    if web_teleop is not None:
        print(f"web teleop: open http://{web_teleop}:{WEB_TELEOP_PORT}/ on a phone (or this machine's address "
              "there); Ctrl-C ends the run", flush=True)
    if live_view is not None:
        specs += [NodeSpec("diffuseloco_policy", "robot_state", "robot_state"), live_view_spec(live_view)]
        print(f"live view: connect Foxglove to ws://{live_view}:8765 (layout: the bringup's "
              "config/foxglove/diffuseloco.json)", flush=True)
    monitor = Monitor()
    graph = Graph(specs, write_params(out, model, bag, config))
    try:
        graph.start()
        code = graph.wait()  # the script teleop exits when its sequence ends (the web teleop at Ctrl-C)
    finally:
        graph.stop()
        monitor.close()
    robot = load_config(config)
    rows = segments(monitor, robot)
    faults = sorted({s.last_fault for _, s in monitor.status if s.last_fault})
    plot_path = None
    if monitor.commands and monitor.twists:
        plot_path = out / "velocity.png"
        plot(monitor, plot_path, label)
    return DemoRun(code, label, rows, faults, plot_path, bag, _timing(bag, robot))


def _timing(bag: Path, config) -> Optional[RecordedTiming]:
    try:
        return recorded_timing(*read_stamps(bag), control_period_s=1.0 / config.rates.control_hz)
    except BagTimingError:
        return None


def timing_lines(timing: Optional[RecordedTiming], config) -> list[str]:
    """The run's tick timing, and what to make of it: the policy was trained on exactly one control period of
    joint-loop frames, and a simulator behind real time or a wide spread makes any walk worse (tracking.md,
    "The live graph's gap was its timing")."""
    if timing is None:
        return ["control timing: not readable from the bag"]
    lines = [f"control timing: {timing.frames_mean:.2f} +- {timing.frames_std:.2f} joint-loop frames between "
             f"commands, joint loop at {timing.frame_rate_hz:.0f} of {config.rates.joint_loop_hz:.0f} frames/s"]
    if timing.frame_rate_hz < 0.95 * config.rates.joint_loop_hz:
        lines.append("  the simulator fell behind real time: the machine is too busy for this graph")
    if timing.frames_std > 1.5:
        lines.append("  the spread is above the 1.5 frames the policy tolerates well in the harness: run on a less "
                     "busy machine, and allow SCHED_FIFO (CAP_SYS_NICE) if the nodes logged that they could not "
                     "use it")
    return lines


def _shipped_model() -> str:
    """The policy node's default model when it is there (share/diffuseloco_policy/models), else the experts."""
    try:
        model = default_model_path()
    except PackageFileNotFound:
        return "expert"
    return str(model) if model.is_file() else "expert"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--model", default="", help="ONNX model (default: the shipped one, else the experts), "
                                                     "or 'expert' for the expert stand-in")
    parser.add_argument("--config", type=Path, default=None, help="robot config YAML (default: the shipped one)")
    parser.add_argument("--live-view", nargs="?", const=LOCALHOST, default=None, metavar="ADDRESS",
                        help="watch the run in Foxglove (ws://ADDRESS:8765): listens on 127.0.0.1 unless you name "
                             "another address of this machine")
    parser.add_argument("--web-teleop", default=None, metavar="ADDRESS",
                        help="drive from a phone instead of the script: the web teleop's page on "
                             f"http://ADDRESS:{WEB_TELEOP_PORT}/ (0.0.0.0 for every interface); ends with Ctrl-C")
    args = parser.parse_args(argv)
    run = run_demo(args.out, args.model, args.config, args.live_view, args.web_teleop)
    print(f"\nCommanded vs achieved velocity per segment (policy: {run.label}; achieved = simulator ground truth, "
          f"mean after {SETTLE_S:.0f} s of each segment):")
    print(table(run.rows))
    print("faults: " + ("; ".join(run.faults) if run.faults else "none"))
    print("\n".join(timing_lines(run.timing, load_config(args.config))))
    if run.plot:
        print(f"plot: {run.plot}")
    print(f"bag: {run.bag}")
    return run.code


if __name__ == "__main__":
    raise SystemExit(main())
