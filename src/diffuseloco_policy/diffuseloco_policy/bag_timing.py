"""How regular a recorded run's control ticks were, counted in the robot's own joint-loop frames.

The policy is trained and evaluated with exactly one control period (10 joint-loop frames at 500 Hz) between two
commands. In a live graph the policy node ticks on its own wall clock and the robot, or the simulator standing in
for it, on another, so the frames between two commands vary. The policy and the experts both lose bound, and
sometimes fall, when that count varies by 3 frames (docs/research/policy_eval/tracking.md, "The live graph's gap
was its timing"). This reads a bag's
LegState stamps (one per joint-loop frame) and MotorCommand stamps, counts the frames between consecutive
commands, and prints the spread, which `python -m diffuseloco_learning.evaluation --tick-jitter` replays in the
harness:

    python -m diffuseloco_policy.bag_timing BAG [BAG ...]

Both streams must be stamped on one clock: the simulator and the policy node on one machine, or the bridge and
the policy node on the robot's computer.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

LEG_TOPIC = "/cyberdog/leg_state"
COMMAND_TOPIC = "/cyberdog/motor_cmd"
GAP_PERIODS = 5   # a pause longer than this many control periods (a stop, a restart) is not a tick interval


class BagTimingError(RuntimeError):
    """A bag whose timing cannot be read (a missing or empty stream); the message says which."""


@dataclass(frozen=True)
class RecordedTiming:
    """Joint-loop frames between consecutive motor commands, and the command period itself."""

    intervals: int
    frames_mean: float
    frames_std: float
    frames_p1: float
    frames_p99: float
    histogram: dict[int, int]
    frame_period_ms: float       # median LegState interval: the joint loop as recorded
    frame_rate_hz: float         # LegStates per second over the whole bag (below nominal: a loop behind real time)
    command_period_ms: float
    command_period_std_ms: float

    def describe(self) -> str:
        counts = " ".join(f"{k}:{v}" for k, v in sorted(self.histogram.items()))
        return (f"{self.intervals} tick intervals; joint-loop frames between commands: mean {self.frames_mean:.2f}, "
                f"std {self.frames_std:.2f}, 1-99 % {self.frames_p1:.0f}-{self.frames_p99:.0f} "
                f"(frame period {self.frame_period_ms:.2f} ms, {self.frame_rate_hz:.0f} frames/s); command period "
                f"{self.command_period_ms:.2f} "
                f"+- {self.command_period_std_ms:.2f} ms\n  frames: count  {counts}\n"
                f"  replay in the harness: --tick-jitter {self.frames_std:.1f}")


def read_stamps(path: Path, leg_topic: str = LEG_TOPIC, command_topic: str = COMMAND_TOPIC
                ) -> tuple[np.ndarray, np.ndarray]:
    """Header stamps (ns, sorted) of the joint-state and the motor-command streams."""
    from .bagtypes import open_bag

    stamps: dict[str, list[int]] = {leg_topic: [], command_topic: []}
    with open_bag(path, BagTimingError) as reader:
        connections = [c for c in reader.connections if c.topic in stamps]
        for connection, _, raw in reader.messages(connections=connections):
            header = reader.deserialize(raw, connection.msgtype).header
            stamps[connection.topic].append(int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec))
    for topic, values in stamps.items():
        if len(values) < 2:
            raise BagTimingError(f"bag {path}: {topic} has {len(values)} message(s); its timing needs at least 2")
    return np.sort(np.asarray(stamps[leg_topic])), np.sort(np.asarray(stamps[command_topic]))


def recorded_timing(leg_ns: np.ndarray, command_ns: np.ndarray, control_period_s: float = 0.02) -> RecordedTiming:
    """Per pair of consecutive commands no more than GAP_PERIODS control periods apart: the frames stamped in
    (first, second], and the command period."""
    gaps = np.diff(command_ns)
    kept = gaps <= int(GAP_PERIODS * control_period_s * 1e9)
    frames = np.diff(np.searchsorted(leg_ns, command_ns, side="right"))[kept]
    if len(frames) == 0:
        raise BagTimingError("no two consecutive motor commands within "
                             f"{GAP_PERIODS} control periods of each other")
    periods = gaps[kept] * 1e-6
    values, counts = np.unique(frames, return_counts=True)
    p1, p99 = np.percentile(frames, [1, 99])
    return RecordedTiming(intervals=int(len(frames)), frames_mean=float(frames.mean()),
                          frames_std=float(frames.std()), frames_p1=float(p1), frames_p99=float(p99),
                          histogram={int(v): int(c) for v, c in zip(values, counts)},
                          frame_period_ms=float(np.median(np.diff(leg_ns)) * 1e-6),
                          frame_rate_hz=float((len(leg_ns) - 1) / ((leg_ns[-1] - leg_ns[0]) * 1e-9)),
                          command_period_ms=float(periods.mean()), command_period_std_ms=float(periods.std()))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_policy.bag_timing",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("bags", nargs="+", type=Path)
    parser.add_argument("--leg-state-topic", default=LEG_TOPIC)
    parser.add_argument("--motor-cmd-topic", default=COMMAND_TOPIC)
    parser.add_argument("--control-period", type=float, default=0.02, help="s (the config's 50 Hz by default)")
    args = parser.parse_args(argv)
    failed = False
    for bag in args.bags:
        try:
            leg, commands = read_stamps(bag, args.leg_state_topic, args.motor_cmd_topic)
            print(f"{bag}: {recorded_timing(leg, commands, args.control_period).describe()}")
        except BagTimingError as exc:
            print(f"{bag}: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
