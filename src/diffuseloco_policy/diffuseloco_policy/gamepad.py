"""Linux gamepad events -> the standard game-controller layout of sensor_msgs/Joy (no ROS, no evdev here).

Why: on the robot `teleop:=joy` starts ROS's own driver, the `joy` package's game_controller_node, which uses
SDL's controller database so every supported pad publishes the same order (joy/README.md):
  buttons 0 A (cross), 1 B (circle), 2 X (square), 3 Y (triangle), 4 BACK (share), 5 GUIDE, 6 START (options),
          7 left stick, 8 right stick, 9 LB (L1), 10 RB (R1), 11-14 D-pad up / down / left / right
  axes    0 left X, 1 left Y, 2 right X, 3 right Y, 4 left trigger, 5 right trigger
Where ROS is not installed (the PyPI wheels have no `joy`), nodes/joy_driver.py reads the pad's evdev events and
publishes that same layout, so one teleop mapping (config/teleop_gamepad.yaml) serves both. The kernel's event
codes differ between pads, so each layout below says which code is which button; the axis ranges come from the
device itself. Signs follow the ROS driver: a stick pushed left or up is positive; a trigger goes from 0
(released) to -1 (fully pressed), the same inversion applied to every axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

# Linux input-event-codes.h
EV_KEY, EV_ABS = 0x01, 0x03
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
ABS_HAT0X, ABS_HAT0Y = 0x10, 0x11
BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST = 0x130, 0x131, 0x133, 0x134
BTN_TL, BTN_TR, BTN_TL2, BTN_TR2 = 0x136, 0x137, 0x138, 0x139
BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL, BTN_THUMBR = 0x13A, 0x13B, 0x13C, 0x13D, 0x13E

NUM_BUTTONS, NUM_AXES = 15, 6
A, B, X, Y, BACK, GUIDE, START, LEFT_STICK, RIGHT_STICK, LB, RB, DPAD_UP, DPAD_DOWN, DPAD_LEFT, DPAD_RIGHT = range(15)
LEFT_X, LEFT_Y, RIGHT_X, RIGHT_Y, LEFT_TRIGGER, RIGHT_TRIGGER = range(6)
STICK_AXES = {ABS_X: LEFT_X, ABS_Y: LEFT_Y, ABS_RX: RIGHT_X, ABS_RY: RIGHT_Y}
TRIGGER_AXES = {ABS_Z: LEFT_TRIGGER, ABS_RZ: RIGHT_TRIGGER}
_SHARED_BUTTONS = {BTN_SOUTH: A, BTN_EAST: B, BTN_TL: LB, BTN_TR: RB, BTN_SELECT: BACK, BTN_START: START,
                   BTN_MODE: GUIDE, BTN_THUMBL: LEFT_STICK, BTN_THUMBR: RIGHT_STICK}


@dataclass(frozen=True)
class PadLayout:
    """Which kernel key code is which standard button, for one family of pads."""

    name: str
    description: str
    buttons: Mapping[int, int] = field(default_factory=dict)


LAYOUTS: dict[str, PadLayout] = {
    # xpad driver: Xbox 360 / One pads and the Logitech F710 with its back switch on "X" (XInput). The kernel names
    # the X and Y buttons BTN_X (= BTN_NORTH) and BTN_Y (= BTN_WEST) after their labels, not their positions.
    "xbox": PadLayout("xbox", "Xbox-layout pad (xpad: Xbox 360/One, Logitech F710 in XInput mode)",
                      {**_SHARED_BUTTONS, BTN_NORTH: X, BTN_WEST: Y}),
    # hid-playstation / hid-sony: DualShock 4 and DualSense. Triangle is BTN_NORTH, square BTN_WEST, by position.
    "playstation": PadLayout("playstation", "PlayStation pad (hid-playstation / hid-sony: DualShock 4, DualSense)",
                             {**_SHARED_BUTTONS, BTN_NORTH: Y, BTN_WEST: X}),
}


class UnknownPad(ValueError):
    """A pad layout name that is not in LAYOUTS."""


def pad_layout(name: str) -> PadLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise UnknownPad(f"unknown pad {name!r}: expected one of {sorted(LAYOUTS)}") from None


@dataclass(frozen=True)
class AxisRange:
    """A device axis's raw range (evdev absinfo min and max)."""

    minimum: int
    maximum: int


class GamepadState:
    """The pad's current buttons and axes in the standard layout, updated event by event."""

    def __init__(self, layout: PadLayout, ranges: Mapping[int, AxisRange], deadzone: float = 0.05) -> None:
        """ranges: absinfo of the device's ABS axes (code -> range); deadzone: stick travel read as 0."""
        if not 0.0 <= deadzone < 1.0:
            raise ValueError(f"deadzone must be in [0, 1), got {deadzone}")
        self.layout, self.ranges, self.deadzone = layout, dict(ranges), deadzone
        self.buttons = [0] * NUM_BUTTONS
        self.axes = [0.0] * NUM_AXES

    def apply(self, event_type: int, code: int, value: int) -> bool:
        """One evdev event; True if the published state changed."""
        before = (list(self.buttons), list(self.axes))
        if event_type == EV_KEY and code in self.layout.buttons:
            self.buttons[self.layout.buttons[code]] = 1 if value else 0
        elif event_type == EV_ABS and code in STICK_AXES and code in self.ranges:
            self.axes[STICK_AXES[code]] = -self._stick(self.ranges[code], value)
        elif event_type == EV_ABS and code in TRIGGER_AXES and code in self.ranges:
            self.axes[TRIGGER_AXES[code]] = -self._trigger(self.ranges[code], value)
        elif event_type == EV_ABS and code == ABS_HAT0X:
            self.buttons[DPAD_LEFT], self.buttons[DPAD_RIGHT] = int(value < 0), int(value > 0)
        elif event_type == EV_ABS and code == ABS_HAT0Y:
            self.buttons[DPAD_UP], self.buttons[DPAD_DOWN] = int(value < 0), int(value > 0)
        return (self.buttons, self.axes) != before

    def release_all(self) -> None:
        """Everything released (a pad unplugged): no button stays pressed, no stick stays deflected."""
        self.buttons = [0] * NUM_BUTTONS
        self.axes = [0.0] * NUM_AXES

    def _stick(self, axis: AxisRange, value: int) -> float:
        """Raw -> [-1, 1] around the range's centre (+ right / down, as the kernel reports), dead zone -> 0."""
        half = (axis.maximum - axis.minimum) / 2.0
        if half <= 0:
            return 0.0
        x = max(-1.0, min(1.0, (value - (axis.maximum + axis.minimum) / 2.0) / half))
        return 0.0 if abs(x) < self.deadzone else x

    @staticmethod
    def _trigger(axis: AxisRange, value: int) -> float:
        span = axis.maximum - axis.minimum
        return 0.0 if span <= 0 else max(0.0, min(1.0, (value - axis.minimum) / span))
