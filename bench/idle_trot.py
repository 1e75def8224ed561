"""A long trot with nothing injected (not a unit test): does anything but a real fault stop the dog?

The simulated graph as `run sim` starts it (simulator and policy node under the bringup parameters, the shipped
model) with this process as the teleop, streaming trot at 0.4 m/s at 20 Hz, for --minutes. Counted: DAMPING
entries with their reasons, controlled stands on stale sensors or a stalled process (STANDING_UP entered from
RUNNING), and collapses (the base below 0.15 m). After a stand it asks RUN again, as an operator would.

Usage: .venv/bin/python bench/idle_trot.py --minutes 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config

R = SetControllerState.Request
COLLAPSED_M = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--vx", type=float, default=0.4)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here too")
    args = parser.parse_args()
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
    from ros_probe import Probe

    trot = load_config().skill("trot").id
    params = yaml.safe_load(params_file("sim").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="idle_trot_"))
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    graph = Graph([NodeSpec("diffuseloco_sim", "sim_node", "cyberdog_sim"),
                   NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], tmp / "params.yaml")
    graph.start()
    probe = Probe("idle_trot_teleop")
    publisher = probe.node.create_publisher(SkillCommand, "/diffuseloco/skill_cmd", 10)
    damping, stands, collapses = Counter(), Counter(), 0
    previous, low = None, True   # the dog starts on the floor: only a drop after standing counts
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "the policy node")
        start = time.monotonic()
        end = start + args.minutes * 60.0
        next_request = 0.0
        while time.monotonic() < end:
            publisher.publish(SkillCommand(skill=trot, vx=args.vx, source="script"))
            status = probe.latest_status()
            if status.state != PolicyStatus.STATE_RUNNING and time.monotonic() >= next_request:
                request = R.REQUEST_RUN if status.state == PolicyStatus.STATE_STANDING_UP else R.REQUEST_STAND_UP
                probe.request(request)
                next_request = time.monotonic() + 1.0
            if previous is not None and status.state != previous:
                if status.state == PolicyStatus.STATE_DAMPING:
                    damping[status.last_fault.split(":")[0]] += 1
                elif status.state == PolicyStatus.STATE_STANDING_UP and previous == PolicyStatus.STATE_RUNNING:
                    stands[status.last_fault.split(":")[0]] += 1
            previous = status.state
            height = probe.pose.pose.position.z if probe.pose is not None else 1.0
            if height < COLLAPSED_M and not low:
                collapses += 1
            low = height < COLLAPSED_M
            time.sleep(0.05)
        summary = {"minutes": args.minutes, "vx": args.vx, "damping": dict(damping), "stands": dict(stands),
                   "collapses": collapses, "ticks": probe.latest_status().ticks,
                   "deadline_misses": probe.latest_status().deadline_misses}
    finally:
        probe.close()
        graph.stop()
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
