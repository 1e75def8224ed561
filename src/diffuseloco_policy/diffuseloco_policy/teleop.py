"""Teleoperation logic: joystick and keyboard input -> skill commands and controller requests.

No ROS here: the teleop node hands over the fields of sensor_msgs/Joy (axes, buttons, receive time) or the key
strings it read from the terminal, and publishes what comes back (SkillCommand, SetControllerState calls).

Safety habits of real robot teleops, all built in:
- a dead-man button: no dead-man, no velocity (the skill may still be chosen);
- joystick silence beyond `timeout` zeroes the velocity (the skill stays), as does a malformed message;
- requests fire on button press edges, never on held levels, and not for buttons already held when the
  joystick (re)appears, except the e-stop, which fires whenever its chord is held on a fresh connection;
- when one button chord is part of another that is fully held, only the larger one acts (so "RB + B" is the
  e-stop and does not also select skill B), and the e-stop never needs the dead-man;
- velocities are scaled to, and clamped into, the active skill's trained range from the stack config.

Command classes (config.CommandClassConfig, for a class model): with a class map in the stack config a skill name
selects its class (trot and pace both select 'walk'), the class's own name does too, and the command carries the
class's id (its first skill's) and its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union


from .config import ConfigError, SkillConfig, StackConfig, from_dict, read_yaml
from .controller import ControllerRequest
from .safety import is_finite_number


# ------------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class TeleopCommand:
    """The content of a diffuseloco_msgs/SkillCommand (header aside)."""

    skill: int
    vx: float = 0.0
    vy: float = 0.0
    yaw_rate: float = 0.0
    source: str = ""

    def stopped(self) -> "TeleopCommand":
        """Same skill, zero velocity."""
        return replace(self, vx=0.0, vy=0.0, yaw_rate=0.0)


def make_command(stack: StackConfig, skill: Union[int, str], vx: float, vy: float, yaw_rate: float,
                 source: str = "") -> tuple[Optional[TeleopCommand], str]:
    """A command within the skill's range: (command, "" or what was clamped), or (None, why it was refused).

    Unknown skills and non-numeric or non-finite velocities are refused; out-of-range velocities are clamped.
    """
    try:
        spec = stack.command(skill)
    except ConfigError as exc:
        return None, str(exc)
    values = (vx, vy, yaw_rate)
    if not all(is_finite_number(v) for v in values):
        return None, f"velocity {values!r} refused: not finite numbers"
    clamped = spec.clamp_command(*(float(v) for v in values))
    note = ""
    if clamped != tuple(float(v) for v in values):
        note = f"velocity clamped to the {spec.name} range: {tuple(round(c, 3) for c in clamped)}"
    return TeleopCommand(spec.id, *clamped, source=source), note



def describe_selection(stack: StackConfig, skill: int) -> str:
    """'trot', or for a command class 'walk (trot or pace)': what the operator just selected."""
    command_class = stack.command_class(skill)
    name = stack.command(skill).name
    return name if command_class is None else f"{name} ({' or '.join(command_class.skills)})"


def _request(name: str, where: str) -> ControllerRequest:
    try:
        return ControllerRequest[name.upper()]
    except KeyError:
        raise ConfigError(f"{where}: unknown request {name!r}; known: {[r.name for r in ControllerRequest]}") from None


# -------------------------------------------------------------------------------------------- gamepad
@dataclass(frozen=True)
class AxisMapping:
    """One stick axis: its index in Joy.axes, and whether to flip it so that + is forward / left / CCW."""

    index: int
    invert: bool = False

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ConfigError(f"axis index {self.index} is negative")


@dataclass(frozen=True)
class ButtonAction:
    """A chord (all listed buttons held) that selects a skill or sends a controller request on its press edge."""

    buttons: tuple[int, ...]
    request: str = ""             # a SetControllerState request name, e.g. STAND_UP
    skill: str = ""               # a skill name from the stack config, e.g. trot
    requires_deadman: bool = False

    def __post_init__(self) -> None:
        if not self.buttons or any(b < 0 for b in self.buttons):
            raise ConfigError(f"button chord {self.buttons} must list non-negative button indexes")
        if bool(self.request) == bool(self.skill):
            raise ConfigError(f"button chord {self.buttons}: give exactly one of request or skill")
        if self.request:
            _request(self.request, f"button chord {self.buttons}")

    @property
    def label(self) -> str:
        return f"{'+'.join(map(str, self.buttons))} ({self.request or self.skill})"


@dataclass(frozen=True)
class GamepadMapping:
    """How a gamepad's Joy message maps onto commands; loaded from YAML (see teleop_gamepad.yaml)."""

    vx: AxisMapping
    vy: AxisMapping
    yaw_rate: AxisMapping
    actions: tuple[ButtonAction, ...]
    deadman_buttons: tuple[int, ...] = ()
    deadzone: float = 0.1
    timeout: float = 0.5
    source: str = "joystick"

    def __post_init__(self) -> None:
        if not 0.0 <= self.deadzone < 1.0:
            raise ConfigError(f"deadzone must be in [0, 1), got {self.deadzone}")
        if not self.timeout > 0.0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if any(b < 0 for b in self.deadman_buttons):
            raise ConfigError("deadman_buttons must be non-negative indexes")
        chords = [frozenset(a.buttons) for a in self.actions]
        if len(set(chords)) != len(chords):
            raise ConfigError("two actions share the same button chord")
        if not any(a.request.upper() == "ESTOP" for a in self.actions):
            raise ConfigError("the gamepad mapping has no ESTOP chord")

    @property
    def axis_count(self) -> int:
        return 1 + max(self.vx.index, self.vy.index, self.yaw_rate.index)

    @property
    def button_count(self) -> int:
        return 1 + max([b for a in self.actions for b in a.buttons] + list(self.deadman_buttons))


def load_gamepad_mapping(path: Union[str, Path]) -> GamepadMapping:
    """Read a gamepad mapping YAML; unknown or missing keys are refused with their path."""
    path = Path(path)
    data = read_yaml(path, "teleop config")
    return from_dict(GamepadMapping, data, where=path.name)


@dataclass(frozen=True)
class JoyResult:
    """What one Joy message asks for: controller requests (e-stop first), whether the skill changed, warnings."""

    requests: tuple[ControllerRequest, ...] = ()
    skill_changed: bool = False
    warnings: tuple[str, ...] = ()


@dataclass
class _JoyState:
    received: Optional[float] = None
    sticks: tuple[float, float, float] = (0.0, 0.0, 0.0)
    deadman: bool = False
    complete: frozenset = field(default_factory=frozenset)   # indexes of actions whose chord is held


class GamepadTeleop:
    """Stateful joystick handler: feed it every Joy message, ask it for the command at publish time."""

    def __init__(self, mapping: GamepadMapping, stack: StackConfig, skill: Union[int, str] = 0) -> None:
        self.mapping = mapping
        self.stack = stack
        self._skill: SkillConfig = stack.command(skill)
        self._action_skill = {i: stack.command(a.skill).id for i, a in enumerate(mapping.actions) if a.skill}
        self._action_request = {i: _request(a.request, a.label) for i, a in enumerate(mapping.actions) if a.request}
        chords = [frozenset(a.buttons) for a in mapping.actions]
        # An action is shadowed while any strictly larger chord containing it is held.
        self._supersets = {i: [j for j, other in enumerate(chords) if c < other] for i, c in enumerate(chords)}
        self._state = _JoyState()

    @property
    def skill(self) -> int:
        return self._skill.id

    def on_joy(self, axes: Sequence[float], buttons: Sequence[float], received: float) -> JoyResult:
        """Handle one Joy message (its axes, buttons and the node's receive time in seconds)."""
        state = self._state
        if not is_finite_number(received):
            return JoyResult(warnings=(f"joystick message with invalid receive time {received!r} ignored",))
        if state.received is not None and received < state.received:
            return JoyResult(warnings=("joystick message older than the previous one ignored",))
        pressed, why = self._read_buttons(buttons)
        if why is None and len(axes) < self.mapping.axis_count:
            why = f"joystick has {len(axes)} axes, the mapping needs {self.mapping.axis_count}"
        if why is not None:
            # Not the layout we expect: stop moving, keep the button history so nothing fires spuriously.
            state.sticks, state.deadman = (0.0, 0.0, 0.0), False
            return JoyResult(warnings=(why + ": velocity zeroed",))
        fresh = state.received is None or received - state.received > self.mapping.timeout
        warnings: list[str] = []
        sticks = tuple(self._stick(axes, m, warnings) for m in (self.mapping.vx, self.mapping.vy, self.mapping.yaw_rate))
        deadman = all(pressed[b] for b in self.mapping.deadman_buttons)
        complete = frozenset(i for i, a in enumerate(self.mapping.actions) if all(pressed[b] for b in a.buttons))
        fired = self._edges(complete, fresh)
        self._state = _JoyState(received=float(received), sticks=sticks, deadman=deadman, complete=complete)
        return self._act(fired, deadman, warnings)

    def command(self, now: float) -> TeleopCommand:
        """The command to publish now: zero velocity without a recent message or without the dead-man."""
        state = self._state
        stopped = TeleopCommand(self._skill.id, source=self.mapping.source)
        if state.received is None or not is_finite_number(now) or now - state.received > self.mapping.timeout:
            return stopped
        if not state.deadman:
            return stopped
        vx, vy, yaw = (scale_stick(s, r) for s, r in zip(state.sticks, (self._skill.vx, self._skill.vy, self._skill.yaw_rate)))
        return TeleopCommand(self._skill.id, *self._skill.clamp_command(vx, vy, yaw), source=self.mapping.source)

    # ----------------------------------------------------------------------------------------- internals
    def _read_buttons(self, buttons: Sequence[float]) -> tuple[list[bool], Optional[str]]:
        if len(buttons) < self.mapping.button_count:
            return [], f"joystick has {len(buttons)} buttons, the mapping needs {self.mapping.button_count}"
        if not all(is_finite_number(b) for b in buttons):
            return [], "joystick buttons are not numbers"
        return [float(b) > 0.5 for b in buttons], None

    def _stick(self, axes: Sequence[float], axis: AxisMapping, warnings: list[str]) -> float:
        """Axis value in [-1, 1] after the deadzone (rescaled so the output still starts at 0)."""
        value = axes[axis.index]
        if not is_finite_number(value):
            warnings.append(f"axis {axis.index} is not finite: treated as centred")
            return 0.0
        return apply_deadzone(float(value) * (-1.0 if axis.invert else 1.0), self.mapping.deadzone)

    def _edges(self, complete: frozenset, fresh: bool) -> list[int]:
        """Actions whose chord became held now and is not shadowed by a larger held chord."""
        before = frozenset() if fresh else self._state.complete
        fired = []
        for i in sorted(complete - before):
            if any(j in complete for j in self._supersets[i]):
                continue
            if fresh and self._action_request.get(i) != ControllerRequest.ESTOP:
                continue  # held while the joystick (re)appeared: not a deliberate press
            fired.append(i)
        return fired

    def _act(self, fired: list[int], deadman: bool, warnings: list[str]) -> JoyResult:
        requests: list[ControllerRequest] = []
        skill_changed = False
        for i in fired:
            action = self.mapping.actions[i]
            if action.requires_deadman and not deadman:
                warnings.append(f"{action.label} ignored: hold the dead-man button")
                continue
            if i in self._action_skill:
                skill_changed |= self._action_skill[i] != self._skill.id
                self._skill = self.stack.command(self._action_skill[i])
            else:
                requests.append(self._action_request[i])
        requests.sort(key=lambda r: r != ControllerRequest.ESTOP)  # e-stop first, order otherwise kept
        return JoyResult(tuple(requests), skill_changed, tuple(warnings))


def apply_deadzone(value: float, deadzone: float) -> float:
    """A stick reading clipped to [-1, 1], 0 inside the dead zone, the rest rescaled so the output still starts at
    0 (no jump to `deadzone` speed when the stick leaves it). Shared by every stick-like input (gamepad, web page)
    so they feel and stop alike."""
    value = max(-1.0, min(1.0, value))
    if abs(value) <= deadzone:
        return 0.0
    return math.copysign((abs(value) - deadzone) / (1.0 - deadzone), value)


def scale_stick(stick: float, bounds: tuple[float, float]) -> float:
    """Stick in [-1, 1] -> velocity: full forward reaches the range's top, full back its bottom, centre 0."""
    low, high = bounds
    return stick * max(high, 0.0) if stick >= 0.0 else -stick * min(low, 0.0)


# ------------------------------------------------------------------------------------------- keyboard
VELOCITY_ACTIONS = {"vx_up": (0, 1.0), "vx_down": (0, -1.0), "vy_up": (1, 1.0), "vy_down": (1, -1.0),
                    "yaw_up": (2, 1.0), "yaw_down": (2, -1.0)}

DEFAULT_KEYS = {
    "w": "vx_up", "s": "vx_down",     # forward / back
    "a": "vy_up", "d": "vy_down",     # left / right (REP 103: +y is left)
    "q": "yaw_up", "e": "yaw_down",   # turn left (CCW) / right
    "x": "stop",                      # zero velocity, skill unchanged
    "1": "skill:stand", "2": "skill:trot", "3": "skill:pace", "4": "skill:bound", "5": "skill:hop",
    "space": "request:ESTOP", "u": "request:STAND_UP", "r": "request:RUN", "j": "request:GET_DOWN",
    "p": "request:DAMPING", "c": "request:CLEAR_ESTOP",
}


@dataclass(frozen=True)
class KeyboardMapping:
    """Key -> action, and the velocity step per key press. Actions: vx_up, vx_down, vy_up, vy_down, yaw_up,
    yaw_down, stop, skill:<name>, request:<REQUEST>."""

    vx_step: float = 0.1
    vy_step: float = 0.1
    yaw_step: float = 0.2
    keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    source: str = "keyboard"

    def __post_init__(self) -> None:
        for name in ("vx_step", "vy_step", "yaw_step"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"keyboard {name} must be positive")
        if not isinstance(self.keys, Mapping):
            raise ConfigError("keyboard keys must be a mapping of key -> action")
        normalised = {}
        for key, action in self.keys.items():
            if not isinstance(key, str) or not isinstance(action, str):
                raise ConfigError(f"keyboard binding {key!r}: {action!r} must map a string to a string")
            _check_key_action(action)
            normalised[normalise_key(key)] = action
        object.__setattr__(self, "keys", normalised)

    @property
    def steps(self) -> tuple[float, float, float]:
        return (self.vx_step, self.vy_step, self.yaw_step)


def _check_key_action(action: str) -> None:
    kind, _, arg = action.partition(":")
    if action in VELOCITY_ACTIONS or action == "stop" or (kind == "skill" and arg):
        return
    if kind == "request":
        _request(arg, f"keyboard action {action!r}")
        return
    raise ConfigError(f"unknown keyboard action {action!r}")


def load_keyboard_mapping(path: Union[str, Path]) -> KeyboardMapping:
    path = Path(path)
    data = read_yaml(path, "teleop config")
    return from_dict(KeyboardMapping, data, where=path.name)


def normalise_key(key: str) -> str:
    """' ' and 'SPACE' -> 'space'; letters are case-insensitive."""
    if key == " ":
        return "space"
    return key.strip().lower() if key.strip() else key


@dataclass(frozen=True)
class KeyResult:
    """The command after a key press, an optional controller request, and a line for the operator."""

    command: TeleopCommand
    request: Optional[ControllerRequest] = None
    message: str = ""


def apply_key(command: TeleopCommand, key: str, mapping: KeyboardMapping, stack: StackConfig) -> KeyResult:
    """Pure function: the new command (and request) after one key press. Unknown keys change nothing."""
    action = mapping.keys.get(normalise_key(key)) if isinstance(key, str) else None
    if action is None:
        return KeyResult(command, message=f"unknown key {key!r}")
    kind, _, arg = action.partition(":")
    if kind == "request":
        request = ControllerRequest[arg.upper()]
        return KeyResult(command, request=request, message=f"request {request.name}")
    if action == "stop":
        return KeyResult(command.stopped(), message="stop")
    if kind == "skill":
        new, note = make_command(stack, arg, command.vx, command.vy, command.yaw_rate, mapping.source)
        if new is None:
            return KeyResult(command, message=f"skill {arg!r} refused: {note}")
        return KeyResult(new, message=f"skill {describe_selection(stack, new.skill)}" + (f"; {note}" if note else ""))
    index, sign = VELOCITY_ACTIONS[action]
    values = [command.vx, command.vy, command.yaw_rate]
    values[index] = round(values[index] + sign * mapping.steps[index], 6)
    new, note = make_command(stack, command.skill, *values, source=mapping.source)
    if new is None:
        return KeyResult(command, message=note)
    text = f"vx {new.vx:+.2f} m/s, vy {new.vy:+.2f} m/s, yaw {new.yaw_rate:+.2f} rad/s"
    return KeyResult(new, message=text + (f" ({note})" if note else ""))
