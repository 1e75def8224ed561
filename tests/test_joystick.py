"""The joystick: `teleop:=joy` starts a driver, and the evdev driver publishes the standard game-controller layout
for both pad families, so the shipped teleop mapping drives the robot from either pad.

The driver node runs in this process against a fake evdev device (no /dev/input here): the events a pad's
kernel driver sends go in, sensor_msgs/Joy comes out on ROS and is fed to the real GamepadTeleop.
"""

from __future__ import annotations

import threading
import time
import types
from dataclasses import dataclass

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Joy

from diffuseloco_bringup import graph as graph_module
from diffuseloco_policy import gamepad as gp
from diffuseloco_policy.config import load_config
from diffuseloco_policy.nodes import joy_driver
from diffuseloco_policy.package_files import package_file
from diffuseloco_policy.teleop import GamepadTeleop, load_gamepad_mapping

XBOX_RANGES = {gp.ABS_X: gp.AxisRange(-32768, 32767), gp.ABS_Y: gp.AxisRange(-32768, 32767),
               gp.ABS_RX: gp.AxisRange(-32768, 32767), gp.ABS_RY: gp.AxisRange(-32768, 32767),
               gp.ABS_Z: gp.AxisRange(0, 255), gp.ABS_RZ: gp.AxisRange(0, 255)}
PS_RANGES = {code: gp.AxisRange(0, 255) for code in (gp.ABS_X, gp.ABS_Y, gp.ABS_RX, gp.ABS_RY, gp.ABS_Z, gp.ABS_RZ)}


# ----------------------------------------------------------------------------------------------- the graph
@pytest.mark.parametrize("target", ["sim", "robot"])
def test_teleop_joy_starts_a_joystick_driver_before_the_teleop(target):
    specs = graph_module.graph(target, teleop="joy")
    names = [s.name for s in specs]
    assert "joy" in names and names.index("joy") < names.index("teleop")
    driver = specs[names.index("joy")]
    # launch_ros starts ROS's own driver; the launch-free runner our evdev driver, which publishes the same layout
    assert (driver.package, driver.executable) == ("joy", "game_controller_node")
    assert driver.module == "diffuseloco_policy.nodes.joy_driver"
    assert "<exec_depend>joy</exec_depend>" in package_file("diffuseloco_policy", "package.xml").read_text()


@pytest.mark.parametrize("teleop", ["keyboard", "script", "none"])
def test_other_teleop_kinds_start_no_joystick_driver(teleop):
    assert "joy" not in [s.name for s in graph_module.graph("sim", teleop=teleop)]


# -------------------------------------------------------------------------------------------- pad layouts
@pytest.mark.parametrize("pad,code,button", [
    ("xbox", 0x133, gp.X), ("xbox", 0x134, gp.Y),                 # xpad: BTN_X / BTN_Y by label
    ("playstation", 0x133, gp.Y), ("playstation", 0x134, gp.X),   # hid-playstation: triangle north, square west
    ("xbox", gp.BTN_SOUTH, gp.A), ("playstation", gp.BTN_SOUTH, gp.A),
    ("xbox", gp.BTN_TL, gp.LB), ("playstation", gp.BTN_TR, gp.RB),
    ("xbox", gp.BTN_SELECT, gp.BACK), ("playstation", gp.BTN_START, gp.START),
])
def test_each_pad_maps_its_key_codes_to_the_standard_buttons(pad, code, button):
    state = gp.GamepadState(gp.pad_layout(pad), {})
    assert state.apply(gp.EV_KEY, code, 1)
    assert state.buttons[button] == 1 and sum(state.buttons) == 1
    assert state.apply(gp.EV_KEY, code, 0) and sum(state.buttons) == 0


@pytest.mark.parametrize("pad,ranges,up,left", [("xbox", XBOX_RANGES, -32768, -32768), ("playstation", PS_RANGES, 0, 0)])
def test_sticks_read_left_and_up_positive_whatever_the_raw_range(pad, ranges, up, left):
    state = gp.GamepadState(gp.pad_layout(pad), ranges, deadzone=0.05)
    state.apply(gp.EV_ABS, gp.ABS_Y, up)
    state.apply(gp.EV_ABS, gp.ABS_RX, left)
    assert state.axes[gp.LEFT_Y] == pytest.approx(1.0) and state.axes[gp.RIGHT_X] == pytest.approx(1.0)
    centre = (ranges[gp.ABS_Y].minimum + ranges[gp.ABS_Y].maximum) // 2
    state.apply(gp.EV_ABS, gp.ABS_Y, centre + 1)      # inside the dead zone
    assert state.axes[gp.LEFT_Y] == 0.0
    state.apply(gp.EV_ABS, gp.ABS_Z, ranges[gp.ABS_Z].maximum)
    assert state.axes[gp.LEFT_TRIGGER] == pytest.approx(-1.0)


def test_the_dpad_hat_becomes_four_buttons():
    state = gp.GamepadState(gp.pad_layout("xbox"), {})
    state.apply(gp.EV_ABS, gp.ABS_HAT0Y, -1)
    state.apply(gp.EV_ABS, gp.ABS_HAT0X, 1)
    assert (state.buttons[gp.DPAD_UP], state.buttons[gp.DPAD_RIGHT]) == (1, 1)
    state.apply(gp.EV_ABS, gp.ABS_HAT0Y, 0)
    assert state.buttons[gp.DPAD_UP] == 0 and state.buttons[gp.DPAD_DOWN] == 0


def test_unknown_pads_and_bad_deadzones_are_refused():
    with pytest.raises(gp.UnknownPad, match="xbox"):
        gp.pad_layout("nintendo")
    with pytest.raises(ValueError):
        gp.GamepadState(gp.pad_layout("xbox"), {}, deadzone=1.5)


def test_the_layout_fits_the_shipped_teleop_mapping():
    mapping = load_gamepad_mapping(package_file("diffuseloco_bringup", "config/teleop_gamepad.yaml"))
    assert mapping.axis_count <= gp.NUM_AXES and mapping.button_count <= gp.NUM_BUTTONS
    assert mapping.deadman_buttons == (gp.LB,)
    skills = {a.skill: a.buttons for a in mapping.actions if a.skill}
    assert skills == {"stand": (gp.A,), "trot": (gp.B,), "pace": (gp.X,), "bound": (gp.Y,), "hop": (gp.DPAD_UP,)}


# ---------------------------------------------------------------------------------- the node, fake evdev
@dataclass
class Event:
    type: int
    code: int
    value: int


class FakeDevice:
    """An evdev InputDevice: capabilities with absinfo, queued events, and an unplug switch."""

    def __init__(self, path: str, ranges: dict, name: str) -> None:
        self.path, self.name, self.queue, self.unplugged = path, name, [], False
        self._abs = [(code, types.SimpleNamespace(min=r.minimum, max=r.maximum)) for code, r in ranges.items()]
        self.lock = threading.Lock()

    def capabilities(self) -> dict:
        keys = [gp.BTN_SOUTH, gp.BTN_EAST, gp.BTN_NORTH, gp.BTN_WEST, gp.BTN_TL, gp.BTN_TR, gp.BTN_START]
        return {gp.EV_ABS: self._abs, gp.EV_KEY: keys}

    def read_one(self):
        with self.lock:
            if self.unplugged:
                raise OSError(19, "No such device")
            return self.queue.pop(0) if self.queue else None

    def push(self, *events: tuple[int, int, int]) -> None:
        with self.lock:
            self.queue.extend(Event(*e) for e in events)

    def close(self) -> None:
        pass


def fake_evdev(devices: dict) -> types.SimpleNamespace:
    keyboard = types.SimpleNamespace(path="/dev/input/event0", name="keyboard", close=lambda: None,
                                     capabilities=lambda: {gp.EV_KEY: [30, 31]})

    def open_device(path):
        if path == "/dev/input/event0":
            return keyboard
        if path not in devices:
            raise OSError(2, "No such file")
        return devices[path]
    return types.SimpleNamespace(InputDevice=open_device, list_devices=lambda: ["/dev/input/event0", *devices])


class JoyListener(Node):
    def __init__(self) -> None:
        super().__init__("joy_listener")
        self.messages: list[Joy] = []
        self.create_subscription(Joy, "/joy", self.messages.append, 10)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def spin_until(executor, condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
        if condition():
            return True
    return False


@pytest.mark.parametrize("pad,ranges,triangle_code", [("xbox", XBOX_RANGES, 0x134), ("playstation", PS_RANGES, 0x133)])
def test_driver_publishes_joy_that_drives_the_teleop(ros, monkeypatch, pad, ranges, triangle_code):
    """The pad is found among the input devices (a keyboard is skipped), its events come out as Joy in the
    standard layout, and the shipped mapping turns them into a bound skill command with the dead-man held."""
    device = FakeDevice("/dev/input/event7", ranges, f"{pad} pad")
    monkeypatch.setattr(joy_driver, "_evdev", lambda: fake_evdev({device.path: device}))
    rclpy.try_shutdown()
    rclpy.init(args=["--ros-args", "-p", f"pad:={pad}"])     # the node's `pad` parameter picks the layout
    driver = joy_driver.JoyDriverNode()
    listener = JoyListener()
    executor = SingleThreadedExecutor()
    executor.add_node(driver)
    executor.add_node(listener)
    try:
        assert spin_until(executor, lambda: driver.device is not None), "the pad was not found"
        assert driver.device is device
        up = ranges[gp.ABS_Y].minimum
        # dead-man (LB / L1), the Y / triangle button (bound), left stick fully up
        device.push((gp.EV_KEY, gp.BTN_TL, 1), (gp.EV_KEY, triangle_code, 1), (gp.EV_ABS, gp.ABS_Y, up))
        assert spin_until(executor, lambda: any(m.buttons[gp.Y] and m.buttons[gp.LB] and m.axes[gp.LEFT_Y] > 0.99
                                                for m in listener.messages))
        joy = listener.messages[-1]
        assert len(joy.axes) == gp.NUM_AXES and len(joy.buttons) == gp.NUM_BUTTONS
        stack = load_config()
        teleop = GamepadTeleop(load_gamepad_mapping(package_file("diffuseloco_bringup", "config/teleop_gamepad.yaml")),
                               stack)
        teleop.on_joy([0.0] * gp.NUM_AXES, [0] * gp.NUM_BUTTONS, 0.0)          # connect with nothing held
        teleop.on_joy(list(joy.axes), list(joy.buttons), 0.1)
        command = teleop.command(0.1)
        assert command.skill == stack.skill("bound").id
        assert command.vx == pytest.approx(stack.skill("bound").vx[1])
        # with nothing changing, the state is re-published (autorepeat) so the teleop sees a live pad
        count = len(listener.messages)
        assert spin_until(executor, lambda: len(listener.messages) >= count + 3, timeout=2.0)
    finally:
        executor.shutdown()
        driver.destroy_node()
        listener.destroy_node()


def test_an_unplugged_pad_stops_the_joy_stream_and_is_found_again(ros, monkeypatch):
    device = FakeDevice("/dev/input/event7", XBOX_RANGES, "pad")
    devices = {device.path: device}
    monkeypatch.setattr(joy_driver, "_evdev", lambda: fake_evdev(devices))
    monkeypatch.setattr(joy_driver, "RECONNECT_S", 0.2)
    driver, listener = joy_driver.JoyDriverNode(), JoyListener()
    executor = SingleThreadedExecutor()
    executor.add_node(driver)
    executor.add_node(listener)
    try:
        device.push((gp.EV_KEY, gp.BTN_TL, 1))
        assert spin_until(executor, lambda: any(m.buttons[gp.LB] for m in listener.messages))
        device.unplugged = True
        del devices[device.path]
        assert spin_until(executor, lambda: driver.device is None)
        silent_from = len(listener.messages)
        spin_until(executor, lambda: False, timeout=0.8)      # longer than the teleop's 0.5 s timeout
        assert len(listener.messages) == silent_from, "a lost pad must not keep publishing its last state"
        replugged = FakeDevice("/dev/input/event8", XBOX_RANGES, "pad")
        devices[replugged.path] = replugged
        assert spin_until(executor, lambda: len(listener.messages) > silent_from, timeout=3.0)
        assert not any(listener.messages[-1].buttons), "a pad plugged in again starts with every button released"
    finally:
        executor.shutdown()
        driver.destroy_node()
        listener.destroy_node()


def test_without_evdev_the_driver_refuses_with_a_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_evdev(name, *args, **kwargs):
        if name == "evdev":
            raise ImportError("No module named 'evdev'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_evdev)
    with pytest.raises(joy_driver.NoEvdev, match="game_controller_node"):
        joy_driver._evdev()
