"""Scripted teleop: plays a timed list of skill commands and controller requests (YAML), then exits. The demo
and the integration tests drive the graph with it, exactly as a joystick would.

Times count from the moment the policy node's state service is available. A request the controller refuses
(for example STAND_UP before the sensors are healthy) is asked again every RETRY_S until it is accepted or the
next step is due: a script, like an operator, insists.

Script format:
    steps:
      - {at: 0.5, request: STAND_UP}
      - {at: 3.0, request: RUN}
      - {at: 4.0, skill: trot, vx: 0.5, vy: 0.0, yaw_rate: 0.0}
    end: 30.0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from ..config import ConfigError
from ..controller import ControllerRequest
from ..package_files import package_file
from ..teleop import TeleopCommand, make_command
from .spin import run_node
from .teleop_common import TeleopNode

RETRY_S = 0.25
SERVICE_WAIT_S = 60.0
DEFAULT_SCRIPT = "config/demo_script.yaml"   # in share/diffuseloco_bringup


@dataclass(frozen=True)
class Step:
    at: float
    command: Optional[TeleopCommand] = None
    request: Optional[ControllerRequest] = None


def load_script(path: Path, stack) -> tuple[list[Step], float]:
    data = yaml.safe_load(Path(path).read_text())
    steps = []
    for i, raw in enumerate(data.get("steps", [])):
        if "request" in raw:
            steps.append(Step(float(raw["at"]), request=ControllerRequest[raw["request"].upper()]))
            continue
        command, note = make_command(stack, raw["skill"], raw.get("vx", 0.0), raw.get("vy", 0.0),
                                     raw.get("yaw_rate", 0.0), source="script")
        if command is None:
            raise ConfigError(f"{path} step {i}: {note}")
        steps.append(Step(float(raw["at"]), command=command))
    return sorted(steps, key=lambda s: s.at), float(data.get("end", steps[-1].at if steps else 0.0))


class ScriptTeleopNode(TeleopNode):
    def __init__(self) -> None:
        super().__init__("teleop", {"script": ""})
        self.steps, self.end = load_script(Path(self.params["script"]) if self.params["script"]
                                             else package_file("diffuseloco_bringup", DEFAULT_SCRIPT), self.stack)
        self.command = TeleopCommand(self.stack.skill("stand").id, source="script")
        self.request_source = "script"
        if not self.state_client.wait_for_service(timeout_sec=SERVICE_WAIT_S):
            raise ConfigError(f"the policy node's state service did not appear within {SERVICE_WAIT_S:.0f} s")
        self.start = self.now_s()
        self.pending: Optional[ControllerRequest] = None
        self.in_flight = False
        self.next_try = 0.0
        self.create_timer(1.0 / self.params["publish_rate_hz"], self._tick)

    def _tick(self) -> None:
        elapsed = self.now_s() - self.start
        while self.steps and self.steps[0].at <= elapsed:
            step = self.steps.pop(0)
            if step.request is not None:
                self.pending, self.next_try = step.request, elapsed
            else:
                self.command = step.command
                self.get_logger().info(f"t={elapsed:.1f}s {self.stack.skill(step.command.skill).name} "
                                       f"vx={step.command.vx:+.2f} vy={step.command.vy:+.2f} "
                                       f"yaw={step.command.yaw_rate:+.2f}")
        self._insist(elapsed)
        self.publish_command(self.command)
        if elapsed >= self.end:
            raise SystemExit(0)


    def _insist(self, elapsed: float) -> None:
        """Send the pending request; ask again after a refusal until accepted or replaced by the next step."""
        if self.pending is None or self.in_flight or elapsed < self.next_try:
            return
        self.in_flight, request = True, self.pending

        def answered(accepted: bool) -> None:
            self.in_flight = False
            if accepted and self.pending == request:
                self.pending = None
            self.next_try = self.now_s() - self.start + RETRY_S

        self.send_request(request, answered)


def main(args: Optional[list[str]] = None) -> None:
    run_node(ScriptTeleopNode, args, refuse=(ConfigError, KeyError, OSError))


if __name__ == "__main__":
    main()
