"""The main job (`make demo`): a scripted teleop sequence on the simulated CyberDog 2, headless.

stand -> trot forward -> trot turning -> pace -> bound -> stand, then a table of commanded vs achieved velocity
per segment (measured in the simulator, after a settling time) and a plot of both over time.

Until a trained diffusion policy ships in models/, the expert gait controllers drive the robot: they are the
teachers the policy is trained from, and the output says so on every line that could be mistaken for a policy
result. The commands pass the same safety filter the policy node uses.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from diffuseloco_policy.config import load_config
from diffuseloco_policy.experts.rollout import ExpertRollout, Segment
from diffuseloco_policy.sim import SimConfig

SETTLE_S = 1.0  # seconds of each segment left out of the achieved-velocity mean (gait transition)


@dataclass(frozen=True)
class SegmentResult:
    name: str
    command: tuple[float, float, float]
    achieved: tuple[float, float, float]
    fell: bool


def script(config) -> list[tuple[str, Segment]]:
    """The teleop sequence, in seconds converted to control ticks."""
    hz = config.rates.control_hz
    steps = [("stand", 2.0, (0.0, 0.0, 0.0)), ("trot", 4.0, (0.6, 0.0, 0.0)), ("trot", 4.0, (0.3, 0.0, 0.6)),
             ("pace", 4.0, (0.3, 0.0, 0.0)), ("bound", 4.0, (0.4, 0.0, 0.0)), ("stand", 3.0, (0.0, 0.0, 0.0))]
    return [(name, Segment(config.skill(name).id, config.skill(name).clamp_command(*cmd), int(seconds * hz)))
            for name, seconds, cmd in steps]


def run(seed: int, randomized: bool) -> tuple[list[SegmentResult], dict[str, np.ndarray], float]:
    config = load_config()
    sim_config = SimConfig.randomized().without_pushes() if randomized else SimConfig()
    rollout = ExpertRollout(config, sim_config, seed=seed)
    rollout.reset(seed)
    trace: dict[str, list] = {"t": [], "cmd": [], "achieved": []}
    results, fallen = [], False
    start = time.perf_counter()
    for name, segment in script(config):
        achieved = []
        for i in range(segment.ticks):
            if fallen:
                break
            rollout.tick(segment.skill, segment.command)
            velocity = (*rollout.sim.base_velocity_heading(), rollout.sim.yaw_rate())
            trace["t"].append(rollout.sim.time)
            trace["cmd"].append(segment.command)
            trace["achieved"].append(velocity)
            if i >= SETTLE_S * config.rates.control_hz:
                achieved.append(velocity)
            fallen = rollout.sim.fallen()
        mean = tuple(np.mean(achieved, axis=0)) if achieved else (float("nan"),) * 3
        results.append(SegmentResult(name, segment.command, mean, fallen))
    wall = time.perf_counter() - start
    return results, {k: np.asarray(v) for k, v in trace.items()}, wall


def table(results: Sequence[SegmentResult]) -> str:
    rows = ["| segment | skill | cmd vx | cmd vy | cmd yaw | vx | vy | yaw rate | fell |", "|" + "---|" * 9]
    for i, r in enumerate(results, 1):
        rows.append(f"| {i} | {r.name} | " + " | ".join(f"{v:+.2f}" for v in (*r.command, *r.achieved))
                    + f" | {'yes' if r.fell else 'no'} |")
    return "\n".join(rows)


def plot(trace: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
    for k, label in enumerate(("vx [m/s]", "vy [m/s]", "yaw rate [rad/s]")):
        axes[k].plot(trace["t"], trace["cmd"][:, k], "k--", label="commanded")
        axes[k].plot(trace["t"], trace["achieved"][:, k], label="achieved (expert)")
        axes[k].set_ylabel(label)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("time [s]")
    fig.suptitle("Simulated CyberDog 2, scripted teleop sequence (expert controllers stand in for the policy)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--randomized", action="store_true", help="noise, latency and physics randomization")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print("DiffuseLoco-ROS demo: no trained diffusion policy ships yet, so the EXPERT controllers drive the "
          "simulated CyberDog 2 (these are expert results, not policy results).")
    results, trace, wall = run(args.seed, args.randomized)
    print(table(results))
    simulated = trace["t"][-1] if len(trace["t"]) else 0.0
    print(f"simulated {simulated:.1f} s in {wall:.1f} s of wall time ({simulated / max(wall, 1e-9):.1f}x real time)")
    plot(trace, args.out / "velocity.png")
    print(f"plot: {args.out / 'velocity.png'}")
    return 1 if any(r.fell for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
