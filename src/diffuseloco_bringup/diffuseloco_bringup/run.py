"""Start the DiffuseLoco graph without launch_ros: the same nodes and parameter files as the launch files, as
separate processes, with a clean Ctrl-C shutdown (SIGINT to every node, then SIGTERM, then SIGKILL).

    python -m diffuseloco_bringup.run sim --teleop keyboard
    python -m diffuseloco_bringup.run robot --model models/diffuseloco_cyberdog2.onnx --record
    python -m diffuseloco_bringup.run sim --live-view            # Foxglove on ws://127.0.0.1:8765
    python -m diffuseloco_bringup.run sim --teleop web --web-teleop-host 0.0.0.0   # a phone: http://HOST:8080/
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .graph import LOCALHOST, TELEOP_KINDS, NodeSpec, graph, params_file

SHUTDOWN_GRACE_S = 5.0


def node_command(spec: NodeSpec, params: Path, secure: bool = False) -> list[str]:
    """The command line that starts one node exactly as launch_ros would (name, parameter file, overrides; with
    `secure`, its SROS2 enclave: the keystore comes from ROS_SECURITY_KEYSTORE)."""
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(params)]
    if secure:
        cmd += ["--enclave", spec.enclave]
    for key, value in spec.params.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


class Graph:
    """A set of node processes that live and die together."""

    def __init__(self, specs: Sequence[NodeSpec], params: Path, env: Optional[dict] = None,
                 secure: bool = False) -> None:
        self.specs, self.params, self.secure = list(specs), params, secure
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.processes: list[tuple[NodeSpec, subprocess.Popen]] = []

    def start(self) -> None:
        for spec in self.specs:
            interactive = spec.executable == "keyboard_teleop"
            proc = subprocess.Popen(node_command(spec, self.params, self.secure), env=self.env,
                                    stdin=None if interactive else subprocess.DEVNULL)
            self.processes.append((spec, proc))

    def wait(self) -> int:
        """Block until a node exits (or Ctrl-C); return the first non-zero exit code, 0 if none."""
        try:
            while True:
                for spec, proc in self.processes:
                    if proc.poll() is not None:
                        print(f"[run] {spec.name} exited with {proc.returncode}; stopping the graph", file=sys.stderr)
                        return proc.returncode
                time.sleep(0.2)
        except KeyboardInterrupt:
            return 0
        finally:
            self.stop()

    def stop(self) -> None:
        for sig, grace in ((signal.SIGINT, SHUTDOWN_GRACE_S), (signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0)):
            alive = [p for _, p in self.processes if p.poll() is None]
            if not alive:
                return
            for proc in alive:
                proc.send_signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.05)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=("sim", "robot"))
    parser.add_argument("--model", default="", help="ONNX model file (default: the one in the parameter file)")
    parser.add_argument("--teleop", default="keyboard", choices=TELEOP_KINDS)
    parser.add_argument("--record", action="store_true", help="also start the bag recorder")
    parser.add_argument("--params", type=Path, default=None, help="parameter file (default: config/<target>.yaml)")
    parser.add_argument("--live-view", nargs="?", const=LOCALHOST, default=None, metavar="ADDRESS",
                        help="start the Foxglove live view (ws://ADDRESS:8765); it listens on 127.0.0.1 unless "
                             "you name another address of this machine")
    parser.add_argument("--web-teleop-host", default=None, metavar="ADDRESS",
                        help="with --teleop web: the address its page is served on (http://ADDRESS:8080/); "
                             "0.0.0.0 for every interface. No default: you choose which network may drive")
    parser.add_argument("--secure", action="store_true",
                        help="each node in its SROS2 enclave (docs/deployment.md, 'Who may command the robot')")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        specs = graph(args.target, model=args.model, teleop=args.teleop, record=args.record, live_view=args.live_view,
                      web_teleop_host=args.web_teleop_host)
    except ValueError as exc:
        print(f"[run] {exc}", file=sys.stderr)
        return 2
    running = Graph(specs, args.params or params_file(args.target), secure=args.secure)
    running.start()
    return running.wait()


if __name__ == "__main__":
    sys.exit(main())
