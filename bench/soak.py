"""Soak test of the full simulated graph (not a unit test): simulator, policy node, recorder, for a long time.

Reports deadline misses, tick jitter, memory growth of every node process (RSS sampled each 10 s; growth =
last minute's mean minus the first minute's mean after warm-up) and bag integrity (the bag is read back and its
message counts compared with what the nodes published: ticks for commands and status), and the host's steal time
(on a VM, time the hypervisor ran something else while a vCPU wanted to run: it stalls even SCHED_FIFO threads, so
read deadline misses next to it). The policy is the small preset's size with untrained weights and a +-0.02
action range (the dog stands while the sampler does its full work each tick), or `--model expert` to walk with the
expert stand-in.

Usage: .venv/bin/python bench/soak.py [--minutes 10] [--preset small]      (1 hour for a release: --minutes 60)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from rosbags.highlevel import AnyReader

from bench_control_loop import DiagnosticsReader, standing_model
from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.srv import SetControllerState


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def steal_s() -> float:
    """CPU time the hypervisor gave to others while this machine's vCPUs wanted to run (all vCPUs, /proc/stat);
    on a VM, a thread whose vCPU is descheduled stalls whatever its scheduling priority."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else float("nan")


def bag_counts(bag: Path) -> dict[str, int]:
    with AnyReader([bag]) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--model", default="", help="'expert' to walk with the expert stand-in")
    parser.add_argument("--realtime-priority", type=int, default=30,
                        help="the policy node's SCHED_FIFO priority (30 as in robot.yaml; 0: normal scheduling)")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(standing_model(args.preset, Path(tmp) / "policy.onnx"))
        params = yaml.safe_load(params_file("sim").read_text())
        params["diffuseloco_policy"]["ros__parameters"].update(model=model, warm_start_steps=2,
                                                                realtime_priority=args.realtime_priority)
        bag = Path(tmp) / "soak_bag"
        params["recorder"]["ros__parameters"].update(output=str(bag))
        params_path = Path(tmp) / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        specs = [NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"),
                 NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy"),
                 NodeSpec("diffuseloco_policy", "recorder", "recorder")]
        graph = Graph(specs, params_path)
        reader = DiagnosticsReader()
        graph.start()
        memory: dict[str, list[tuple[float, float]]] = {s.name: [] for s in specs}
        try:
            assert reader.request(SetControllerState.Request.REQUEST_STAND_UP), "STAND_UP refused"
            assert reader.request(SetControllerState.Request.REQUEST_RUN), "RUN refused"
            start, steal_start = time.monotonic(), steal_s()
            jitter_p99, miss_timeline = [], []
            while time.monotonic() - start < args.minutes * 60:
                time.sleep(10.0)
                t = time.monotonic() - start
                for spec, proc in graph.processes:
                    memory[spec.name].append((t, rss_mib(proc.pid)))
                jitter_p99.append(float(reader.latest.get("jitter_p99_ms", "nan")))
                miss_timeline.append((round(t), int(reader.latest.get("deadline_misses", -1))))
                assert all(p.poll() is None for _, p in graph.processes), "a node died during the soak"
            final = dict(reader.latest)
            steal = steal_s() - steal_start
        finally:
            graph.stop()
            reader.close()
        counts = bag_counts(bag)
    ticks, misses = int(final["ticks"]), int(final["deadline_misses"])
    reason = "" if final["state"] == "RUNNING" else f" ({final.get('message', '')})"
    print(f"\nsoak: {args.minutes:.0f} min, policy {'expert stand-in' if args.model == 'expert' else args.preset}, "
          f"state {final['state']}{reason}")
    print(f"  ticks {ticks}, deadline misses {misses}, worst 20 s jitter p99 {np.nanmax(jitter_p99):.3f} ms, "
          f"median of the 20 s jitter p99s {np.nanmedian(jitter_p99):.3f} ms")
    print(f"  plans that came late and were waited for (inference_wait_ms): {final.get('plans_waited_for', 'n/a')}; "
          f"host steal time {steal:.1f} s of {os.cpu_count()} vCPUs x {args.minutes * 60:.0f} s")
    print(f"  deadline misses over time (s after RUN, total): {miss_timeline}")
    for name, samples in memory.items():
        t = np.array([s[0] for s in samples])
        rss = np.array([s[1] for s in samples])
        first, last = rss[(t >= 60) & (t < 120)], rss[t >= t[-1] - 60]
        growth = (last.mean() - first.mean()) if len(first) and len(last) else float("nan")
        print(f"  {name:20s} RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB, growth after warm-up {growth:+.1f} MiB")
    print("  bag:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"  bag motor commands {counts.get('/cyberdog/motor_cmd', 0)} vs policy ticks {ticks} "
          f"(the recorder starts a moment after the policy node)")


if __name__ == "__main__":
    main()
