"""A joystick driver where ROS's `joy` package is not installed: a Linux gamepad (evdev) -> sensor_msgs/Joy in the
standard game-controller layout that `joy`'s game_controller_node publishes (gamepad.py), so the teleop mapping
is the same on the robot and in the wheels environment.

    python -m diffuseloco_policy.nodes.joy_driver --ros-args -p pad:=playstation [-p device:=/dev/input/event5]

Parameters: `pad` (xbox | playstation: which kernel code is which button), `device` ("" = the first input
device with sticks and a south button), `deadzone`, `autorepeat_rate` (Hz: the state is re-published at this rate
while nothing changes, as joy does, so the teleop's timeout sees a live pad), `joy_topic`.
Safety: when the pad disappears (unplugged, out of radio range) the driver stops publishing, so the teleop's
0.5 s timeout stops the robot, and it looks for the pad again every second. A pad that is plugged in again
starts with every button released.
"""

from __future__ import annotations

from typing import Any, Optional

from rclpy.node import Node
from sensor_msgs.msg import Joy

from ..gamepad import ABS_X, BTN_SOUTH, EV_ABS, EV_KEY, AxisRange, GamepadState, UnknownPad, pad_layout
from .parameters import declare_parameters
from .spin import run_node

POLL_HZ = 200.0        # how often pending events are read (each read takes all that are queued)
RECONNECT_S = 1.0      # how often a missing pad is looked for


class NoEvdev(RuntimeError):
    """The python `evdev` package is missing."""


def _evdev() -> Any:
    """The evdev module, imported on first use: the robot image uses ROS's joy instead and does not install it."""
    try:
        import evdev
    except ImportError as exc:
        raise NoEvdev("the joystick driver needs the `evdev` package (pip install evdev); on a ROS install "
                      "use the joy package's game_controller_node instead") from exc
    return evdev


def is_gamepad(capabilities: dict) -> bool:
    """A device with a left stick and a south (A / cross) button: keyboards and mice have neither."""
    return ABS_X in _codes(capabilities.get(EV_ABS, [])) and BTN_SOUTH in _codes(capabilities.get(EV_KEY, []))


def _codes(entries: list) -> list:
    """evdev lists ABS capabilities as (code, absinfo) pairs and keys as plain codes."""
    return [e[0] if isinstance(e, tuple) else e for e in entries]


class JoyDriverNode(Node):
    def __init__(self) -> None:
        super().__init__("joy")
        self.params = declare_parameters(self, {"pad": "xbox", "device": "", "deadzone": 0.05,
                                                "autorepeat_rate": 20.0, "joy_topic": "/joy"})
        self.layout = pad_layout(self.params["pad"])
        if self.params["autorepeat_rate"] <= 0:
            raise ValueError(f"autorepeat_rate must be > 0, got {self.params['autorepeat_rate']}")
        self.evdev = _evdev()
        self.publisher = self.create_publisher(Joy, self.params["joy_topic"], 10)
        self.device: Optional[Any] = None
        self.state: Optional[GamepadState] = None
        self._last_publish = 0.0
        self._last_search = -RECONNECT_S
        self.get_logger().info(f"pad layout: {self.layout.description}")
        self.create_timer(1.0 / POLL_HZ, self._poll)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _poll(self) -> None:
        now = self._now()
        if self.device is None:
            if now - self._last_search >= RECONNECT_S:
                self._last_search = now
                self._connect()
            return
        try:
            changed = self._read_events()
        except OSError as exc:  # unplugged: stop publishing, the teleop's timeout stops the robot
            self.get_logger().error(f"joystick {self.device.path} lost ({exc}); waiting for it to come back")
            self._disconnect()
            return
        if changed or now - self._last_publish >= 1.0 / self.params["autorepeat_rate"]:
            self._publish(now)

    def _read_events(self) -> bool:
        changed = False
        while True:
            try:
                event = self.device.read_one()
            except BlockingIOError:
                return changed
            if event is None:
                return changed
            changed |= self.state.apply(event.type, event.code, event.value)

    def _connect(self) -> None:
        path = self.params["device"] or self._find_pad()
        if not path:
            self.get_logger().warning("no gamepad found (readable /dev/input/event* with sticks and buttons)",
                                      throttle_duration_sec=10.0)
            return
        try:
            device = self.evdev.InputDevice(path)
            ranges = {code: AxisRange(info.min, info.max) for code, info in device.capabilities().get(EV_ABS, [])}
        except OSError as exc:
            self.get_logger().warning(f"cannot open joystick {path}: {exc}", throttle_duration_sec=10.0)
            return
        self.device, self.state = device, GamepadState(self.layout, ranges, self.params["deadzone"])
        self.get_logger().info(f"joystick {path} ({device.name}) opened")

    def _find_pad(self) -> str:
        for path in self.evdev.list_devices():
            try:
                device = self.evdev.InputDevice(path)
                found = is_gamepad(device.capabilities())
                device.close()
            except OSError:
                continue
            if found:
                return path
        return ""

    def _disconnect(self) -> None:
        try:
            self.device.close()
        except OSError:
            pass
        self.device, self.state = None, None

    def _publish(self, now: float) -> None:
        msg = Joy(axes=[float(a) for a in self.state.axes], buttons=list(self.state.buttons))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "joy"
        self.publisher.publish(msg)
        self._last_publish = now


def main(args: Optional[list[str]] = None) -> None:
    run_node(JoyDriverNode, args, refuse=(UnknownPad, NoEvdev, ValueError))


if __name__ == "__main__":
    main()
