"""Web teleop: a phone's browser as the joystick, under the joystick's rules.

No ROS and no server here: the web teleop node hands over every text message a page sends (with the page's
connection id and the receive time) and publishes what comes back (SkillCommand, SetControllerState calls).
The page (web/web_teleop.html) speaks JSON text messages:

    {"type": "drive", "deadman": true, "vx": 0.5, "vy": 0.0, "yaw": -0.2}   sticks in [-1, 1], sent on every change
                                                                          and every `heartbeat` s while open
    {"type": "skill", "skill": 1}                                         a SkillCommand.SKILL_* id
    {"type": "request", "request": "STAND_UP"}                            STAND_UP, RUN, GET_DOWN, DAMPING, CLEAR_ESTOP
    {"type": "estop"}                                                     (or the request ESTOP)

The rules are the gamepad's (teleop.py), so a phone is no looser than the joystick:
- the dead-man must be held in the newest drive message, else zero velocity (the skill stays); choosing a skill,
  STAND_UP, RUN and CLEAR_ESTOP also need it, as on the gamepad; GET_DOWN and DAMPING do not;
- the e-stop never needs the dead-man, and every page may press it, the driving one or a watching one;
- the driving page silent beyond `timeout`, or disconnected, means zero velocity (the skill stays);
- sticks go through the same dead zone and scaling as the gamepad's, into the active skill's range;
- a malformed message (not JSON, not an object, an unknown type, a field missing, of the wrong type or not
  finite, too long) is refused with its reason and, from the driver, zeroes the velocity like a malformed Joy
  message; it never raises.

Several pages at once: one driver at a time. A page becomes the driver by acting (holding the dead-man, choosing a
skill, a request) while no page drives, and stays the driver until it disconnects or falls silent beyond
`timeout`. The others watch: they see the state and may press the e-stop, nothing else. Not last-writer-wins:
two phones on the sticks would alternate the command with every message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .config import ConfigError, SkillConfig, StackConfig, from_dict, read_yaml
from .controller import ControllerRequest
from .safety import is_finite_number
from .teleop import TeleopCommand, apply_deadzone, scale_stick

R = ControllerRequest
# What the page may ask beyond skills and the e-stop, and which of it needs the dead-man (as on the gamepad).
PAGE_REQUESTS = {R.STAND_UP: True, R.RUN: True, R.GET_DOWN: False, R.DAMPING: False, R.CLEAR_ESTOP: True}
DRIVER, VIEWER = "driver", "viewer"


@dataclass(frozen=True)
class WebTeleopSettings:
    """The web teleop's rules and limits; loaded from YAML (the bringup's config/teleop_web.yaml)."""

    timeout: float = 0.5            # s without a message from the driving page -> zero velocity, the seat is free
    heartbeat: float = 0.1          # s between the page's drive messages while nothing changes
    deadzone: float = 0.05          # of full stick travel, as the gamepad's
    max_message_bytes: int = 512    # longer messages are refused unread
    source: str = "web"             # SkillCommand.source and SetControllerState.source

    def __post_init__(self) -> None:
        if not self.timeout > 0.0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if not 0.0 < self.heartbeat < self.timeout:
            raise ConfigError(f"heartbeat must be positive and shorter than the timeout ({self.timeout} s), "
                              f"got {self.heartbeat}")
        if not 0.0 <= self.deadzone < 1.0:
            raise ConfigError(f"deadzone must be in [0, 1), got {self.deadzone}")
        if self.max_message_bytes < 64:
            raise ConfigError(f"max_message_bytes must be at least 64, got {self.max_message_bytes}")
        if not self.source.strip():
            raise ConfigError("source must name the teleop")


def load_web_settings(path: Union[str, Path]) -> WebTeleopSettings:
    """Read the web teleop settings YAML; unknown or missing keys are refused with their path."""
    path = Path(path)
    return from_dict(WebTeleopSettings, read_yaml(path, "teleop config"), where=path.name)


@dataclass(frozen=True)
class WebResult:
    """What one page message asks for: controller requests (to send now), whether the command to publish changed
    (publish it now: the path is event-driven), and why the message was refused ("" if it was not)."""

    requests: tuple[ControllerRequest, ...] = ()
    changed: bool = False
    refusal: str = ""


@dataclass(frozen=True)
class RobotView:
    """What the page shows of the robot: the policy node's status and the measured body velocity."""

    state: str = "unknown"
    skill: str = ""
    command: tuple[float, float, float] = (0.0, 0.0, 0.0)
    measured: Optional[tuple[float, float, float]] = None
    fault: str = ""


@dataclass
class _Driver:
    client: int
    received: float
    sticks: tuple[float, float, float] = (0.0, 0.0, 0.0)
    deadman: bool = False


class _Refused(ValueError):
    """A page message that breaks the protocol or the rules; its text goes back to the page."""


class WebTeleop:
    """The pages connected to one robot: who drives, the skill, the sticks. Feed it every page message; ask it for
    the command at publish time. Not thread-safe: the node serialises the calls."""

    def __init__(self, settings: WebTeleopSettings, stack: StackConfig, skill: Union[int, str] = "stand") -> None:
        self.settings = settings
        self.stack = stack
        self._skill: SkillConfig = stack.command(skill)   # with command classes a skill selects its class
        self._clients: set[int] = set()
        self._driver: Optional[_Driver] = None

    # ------------------------------------------------------------------------------------------ queries
    @property
    def skill(self) -> int:
        return self._skill.id

    def role(self, client: int, now: float) -> str:
        driver = self._live_driver(now)
        return DRIVER if driver is not None and driver.client == client else VIEWER

    def command(self, now: float) -> TeleopCommand:
        """The command to publish now: zero velocity without a live driver holding the dead-man."""
        stopped = TeleopCommand(self._skill.id, source=self.settings.source)
        driver = self._live_driver(now)
        if driver is None or not driver.deadman:
            return stopped
        bounds = (self._skill.vx, self._skill.vy, self._skill.yaw_rate)
        velocity = (scale_stick(s, b) for s, b in zip(driver.sticks, bounds))
        return TeleopCommand(self._skill.id, *self._skill.clamp_command(*velocity), source=self.settings.source)

    def hello(self) -> str:
        """The first message to a page: the skills and requests to offer, and how often to send."""
        return json.dumps({"type": "hello", "skills": [{"id": s.id, "name": s.name} for s in self.stack.commands],
                           "requests": [r.name for r in PAGE_REQUESTS], "heartbeat_s": self.settings.heartbeat,
                           "timeout_s": self.settings.timeout})

    def state_message(self, client: int, now: float, robot: RobotView) -> str:
        """The state pushed to one page: its role, what this teleop commands, and the robot's status."""
        command = self.command(now)
        driver = self._live_driver(now)
        return json.dumps({
            "type": "state", "role": self.role(client, now), "driven": driver is not None,
            "deadman": bool(driver is not None and driver.client == client and driver.deadman),
            "skill": {"id": self._skill.id, "name": self._skill.name},
            "command": [round(v, 3) for v in (command.vx, command.vy, command.yaw_rate)],
            "robot": {"state": robot.state, "skill": robot.skill, "command": [round(v, 3) for v in robot.command],
                      "measured": None if robot.measured is None else [round(v, 3) for v in robot.measured],
                      "fault": robot.fault}})

    # ----------------------------------------------------------------------------------------- messages
    def connect(self, client: int) -> None:
        self._clients.add(client)

    def disconnect(self, client: int, now: float) -> WebResult:
        """A page went away: if it drove, the velocity is zero from now and the seat is free."""
        self._clients.discard(client)
        if self._driver is None or self._driver.client != client:
            return WebResult()
        before = self.command(now)
        self._driver = None
        return WebResult(changed=self.command(now) != before)

    def on_message(self, client: int, text: Union[str, bytes], now: float) -> WebResult:
        """Handle one message from page `client`, received at `now` (s, the node's clock)."""
        if not is_finite_number(now):
            return WebResult(refusal=f"message with invalid receive time {now!r} ignored")
        if client not in self._clients:
            return WebResult(refusal=f"page {client} is not connected")
        before = self.command(now)
        try:
            requests = self._handle(client, self._parse(text), now)
        except _Refused as exc:
            self._stop_driver(client, now)
            return WebResult(changed=self.command(now) != before, refusal=str(exc))
        return WebResult(requests, self.command(now) != before)

    # ---------------------------------------------------------------------------------------- internals
    def _parse(self, text: Union[str, bytes]) -> dict:
        if isinstance(text, (bytes, bytearray)):
            raise _Refused("binary messages are not part of the protocol: send JSON text")
        if len(text.encode()) > self.settings.max_message_bytes:
            raise _Refused(f"message longer than {self.settings.max_message_bytes} bytes")
        try:
            data = json.loads(text)
        except ValueError:
            raise _Refused("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise _Refused('expected a JSON object with a "type"')
        return data

    def _handle(self, client: int, data: dict, now: float) -> tuple[ControllerRequest, ...]:
        kind = data["type"]
        if kind == "estop":     # every page, never the dead-man: stopping is everyone's right
            self._touch(client, now)
            return (R.ESTOP,)
        handler = {"drive": self._drive, "skill": self._choose_skill, "request": self._request}.get(kind)
        if handler is None:
            raise _Refused(f"unknown message type {kind!r}; known: drive, skill, request, estop")
        return handler(client, data, now)

    def _drive(self, client: int, data: dict, now: float) -> tuple[ControllerRequest, ...]:
        deadman = _field(data, "deadman", bool)
        sticks = tuple(_stick(data, name) for name in ("vx", "vy", "yaw"))
        driver = self._seat(client, now, claim=deadman)
        if driver is None:   # a watching page's heartbeat is fine; its dead-man is not
            if deadman:
                raise _Refused("driving refused: another page drives; this one may only watch and press the e-stop")
            return ()
        driver.received = now
        driver.deadman = deadman
        driver.sticks = tuple(apply_deadzone(s, self.settings.deadzone) for s in sticks)
        return ()

    def _choose_skill(self, client: int, data: dict, now: float) -> tuple[ControllerRequest, ...]:
        skill_id = _field(data, "skill", int)
        try:
            skill = self.stack.command(skill_id)
        except ConfigError as exc:
            raise _Refused(str(exc)) from None
        self._needs_deadman(self._driving(client, now, f"skill {skill.name}"), f"skill {skill.name}")
        self._skill = skill
        return ()

    def _request(self, client: int, data: dict, now: float) -> tuple[ControllerRequest, ...]:
        name = _field(data, "request", str)
        if name == R.ESTOP.name:   # however the e-stop is asked for, it is an e-stop
            self._touch(client, now)
            return (R.ESTOP,)
        request = next((r for r in PAGE_REQUESTS if r.name == name), None)
        if request is None:
            raise _Refused(f"unknown request {name!r}; known: ESTOP, {', '.join(r.name for r in PAGE_REQUESTS)}")
        driver = self._driving(client, now, request.name)
        if PAGE_REQUESTS[request]:
            self._needs_deadman(driver, request.name)
        return (request,)

    def _driving(self, client: int, now: float, what: str) -> _Driver:
        """The page's driver seat (taken if free), or a refusal for a watching page."""
        driver = self._seat(client, now, claim=True)
        if driver is None:
            raise _Refused(f"{what} refused: another page drives; this one may only watch and press the e-stop")
        driver.received = now
        return driver

    def _needs_deadman(self, driver: _Driver, what: str) -> None:
        if not driver.deadman:
            raise _Refused(f"{what} refused: hold the dead-man")

    def _seat(self, client: int, now: float, claim: bool) -> Optional[_Driver]:
        """This page's driver state: its seat, or a free seat it claims; None for a watching page."""
        driver = self._live_driver(now)
        if driver is not None:
            return driver if driver.client == client else None
        if not claim:
            return None
        self._driver = _Driver(client, now)
        return self._driver

    def _live_driver(self, now: float) -> Optional[_Driver]:
        """The driver, unless silent beyond the timeout (then the seat is free)."""
        driver = self._driver
        if driver is None or not is_finite_number(now) or now - driver.received > self.settings.timeout \
                or now < driver.received:
            return None
        return driver

    def _touch(self, client: int, now: float) -> None:
        driver = self._live_driver(now)
        if driver is not None and driver.client == client:
            driver.received = now

    def _stop_driver(self, client: int, now: float) -> None:
        """A malformed message from the driver: stop moving, keep the seat and the skill."""
        driver = self._live_driver(now)
        if driver is not None and driver.client == client:
            driver.sticks, driver.deadman, driver.received = (0.0, 0.0, 0.0), False, now


def _field(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)   # JSON from JavaScript has no integer type of its own
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Refused(f'"{name}" must be {"a boolean" if kind is bool else "an integer" if kind is int else "text"}, '
                       f"got {value!r}")
    return value


def _stick(data: dict, name: str) -> float:
    value = data.get(name)
    if not is_finite_number(value):
        raise _Refused(f'"{name}" must be a finite number in [-1, 1], got {value!r}')
    return max(-1.0, min(1.0, float(value)))
