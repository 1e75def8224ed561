"""Joystick and keyboard teleop: dead-man, timeout, deadzone, press edges, chords, skill ranges, bad input."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffuseloco_policy.config import ConfigError, from_dict, load_config
from diffuseloco_policy.controller import ControllerRequest as R
from diffuseloco_policy.teleop import (DEFAULT_KEYS, GamepadMapping, GamepadTeleop, JoyResult, KeyboardMapping,
                                       TeleopCommand, apply_key, load_gamepad_mapping, load_keyboard_mapping, make_command)

ROOT = Path(__file__).resolve().parents[1]
BRINGUP_CONFIG = ROOT / "src" / "diffuseloco_bringup" / "config"
STACK = load_config()
PAD = load_gamepad_mapping(BRINGUP_CONFIG / "teleop_gamepad.yaml")
KEYS = load_keyboard_mapping(BRINGUP_CONFIG / "teleop_keyboard.yaml")

# game_controller_node layout (see the YAML)
A, B, X, Y, BACK, START, LB, RB, DPAD_UP = 0, 1, 2, 3, 4, 6, 9, 10, 11
LX, LY, RX = 0, 1, 2
TROT = STACK.skill("trot")


def joy(*pressed: int, lx: float = 0.0, ly: float = 0.0, rx: float = 0.0) -> tuple[list[float], list[int]]:
    axes = [0.0] * 6
    axes[LX], axes[LY], axes[RX] = lx, ly, rx
    buttons = [0] * 15
    for b in pressed:
        buttons[b] = 1
    return axes, buttons


class Pad:
    """A teleop plus a clock, so tests read like operator actions."""

    def __init__(self, skill="trot", connect=True):
        self.teleop = GamepadTeleop(PAD, STACK, skill=skill)
        self.t = 100.0
        if connect:  # the joystick's first message, nothing held: later presses are edges
            assert self.send() == JoyResult()

    def send(self, *pressed, dt=0.02, **sticks):
        self.t += dt
        return self.teleop.on_joy(*joy(*pressed, **sticks), received=self.t)

    def command(self, dt=0.0):
        return self.teleop.command(self.t + dt)


# --------------------------------------------------------------------------------------------- config
def test_shipped_gamepad_mapping_is_consistent():
    assert PAD.deadman_buttons == (LB,)
    assert PAD.timeout == 0.5
    teleop = GamepadTeleop(PAD, STACK)  # every skill name resolves
    assert teleop.skill == 0
    estop = [a for a in PAD.actions if a.request == "ESTOP"]
    assert len(estop) == 1 and not estop[0].requires_deadman and len(estop[0].buttons) >= 2
    assert {a.skill for a in PAD.actions if a.skill} == {s.name for s in STACK.skills}
    assert {a.request for a in PAD.actions if a.request} == {r.name for r in R}


def test_shipped_keyboard_mapping_equals_the_built_in_default():
    assert KEYS == KeyboardMapping()
    assert KEYS.keys["space"] == "request:ESTOP" and KEYS.keys["u"] == "request:STAND_UP"


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(actions=[a for a in d["actions"] if a.get("request") != "ESTOP"]), "no ESTOP chord"),
    (lambda d: d["actions"].append({"buttons": [5], "request": "JUMP"}), "unknown request 'JUMP'"),
    (lambda d: d["actions"].append({"buttons": [5], "request": "RUN", "skill": "trot"}), "exactly one"),
    (lambda d: d["actions"].append({"buttons": [6], "skill": "trot"}), "same button chord"),
    (lambda d: d.update(deadzone=1.0), "deadzone"),
    (lambda d: d.update(timeout=0), "timeout"),
    (lambda d: d.update(vx={"index": -1}), "negative"),
    (lambda d: d.update(rumble=True), "unknown keys"),
])
def test_invalid_gamepad_mappings_are_refused(change, message):
    import yaml

    data = yaml.safe_load((BRINGUP_CONFIG / "teleop_gamepad.yaml").read_text())
    change(data)
    with pytest.raises(ConfigError, match=message):
        from_dict(GamepadMapping, data)


def test_unknown_skill_in_a_mapping_is_refused_when_bound_to_the_stack():
    bad = dataclasses.replace(PAD, actions=PAD.actions + (dataclasses.replace(PAD.actions[0], buttons=(5,),
                                                                              skill="moonwalk"),))
    with pytest.raises(ConfigError, match="unknown skill 'moonwalk'"):
        GamepadTeleop(bad, STACK)


# ------------------------------------------------------------------------------------------- velocity
def test_no_deadman_means_zero_velocity():
    pad = Pad()
    pad.send(ly=1.0, lx=1.0, rx=1.0)
    assert pad.command() == TeleopCommand(TROT.id, 0.0, 0.0, 0.0, "joystick")


def test_sticks_with_deadman_reach_the_skill_range():
    pad = Pad()
    pad.send(LB, ly=1.0, lx=1.0)
    cmd = pad.command()
    assert (cmd.vx, cmd.vy, cmd.yaw_rate) == (TROT.vx[1], TROT.vy[1], 0.0)
    pad.send(LB, ly=-1.0, rx=1.0)
    cmd = pad.command()
    assert (cmd.vx, cmd.vy, cmd.yaw_rate) == (TROT.vx[0], 0.0, TROT.yaw_rate[1])
    pad.send(LB, ly=1.0, lx=1.0, rx=-1.0)   # strafing and turning at once share the trot's budget
    cmd = pad.command()
    assert (cmd.vx, cmd.vy, cmd.yaw_rate) == TROT.clamp_command(TROT.vx[1], TROT.vy[1], TROT.yaw_rate[0])
    assert 0 < cmd.vy < TROT.vy[1] and TROT.yaw_rate[0] < cmd.yaw_rate < 0
    pad.send(LB, ly=-5.0)   # out-of-range axis values are clipped to full stick
    assert pad.command().vx == TROT.vx[0]


def test_deadzone_and_rescaling():
    pad = Pad()
    pad.send(LB, ly=0.09, lx=-0.1)
    assert pad.command().vx == 0.0 and pad.command().vy == 0.0
    pad.send(LB, ly=0.55)
    assert pad.command().vx == pytest.approx(0.5 * TROT.vx[1])


def test_releasing_the_deadman_stops_at_once():
    pad = Pad()
    pad.send(LB, ly=1.0)
    assert pad.command().vx > 0
    pad.send(ly=1.0)
    assert pad.command().vx == 0.0


def test_joystick_silence_zeroes_velocity_but_keeps_the_skill():
    pad = Pad("pace")
    pad.send(LB, ly=1.0)
    assert pad.command(dt=0.49).vx > 0
    stale = pad.command(dt=0.51)
    assert (stale.vx, stale.vy, stale.yaw_rate) == (0.0, 0.0, 0.0)
    assert stale.skill == STACK.skill("pace").id
    assert pad.teleop.command(math.nan).vx == 0.0


def test_before_any_message_the_command_is_zero_velocity():
    teleop = GamepadTeleop(PAD, STACK, skill="trot")
    assert teleop.command(0.0) == TeleopCommand(TROT.id, source="joystick")


def test_bound_skill_cannot_go_backwards_or_sideways():
    pad = Pad("bound")
    pad.send(LB, ly=-1.0, lx=1.0)
    cmd = pad.command()
    assert cmd.vx == 0.0 and cmd.vy == 0.0


# -------------------------------------------------------------------------------------------- buttons
def test_skill_buttons_need_the_deadman():
    pad = Pad("stand")
    result = pad.send(B)
    assert pad.teleop.skill == 0 and "hold the dead-man" in result.warnings[0]
    pad.send()
    result = pad.send(LB, B)
    assert result.skill_changed and pad.teleop.skill == TROT.id
    pad.send(LB, Y)
    assert pad.teleop.skill == STACK.skill("bound").id


def test_dpad_up_selects_hop_forward_and_turning_only():
    """Hop is D-pad up with the dead-man; full stick forward reaches its top speed, sideways gives nothing (its
    range has no vy), the right stick turns it within its yaw range."""
    hop = STACK.skill("hop")
    pad = Pad("trot")
    assert "hold the dead-man" in pad.send(DPAD_UP).warnings[0] and pad.teleop.skill == TROT.id
    pad.send()
    assert pad.send(LB, DPAD_UP).skill_changed and pad.teleop.skill == hop.id
    pad.send(LB, ly=1.0, lx=1.0, rx=-1.0)
    assert pad.command() == TeleopCommand(hop.id, hop.vx[1], 0.0, hop.yaw_rate[0], source="joystick")


def test_requests_fire_on_press_edges_only():
    pad = Pad()
    assert pad.send(LB, START).requests == (R.STAND_UP,)
    for _ in range(5):
        assert pad.send(LB, START).requests == ()      # held: nothing more
    pad.send(LB)
    assert pad.send(LB, START).requests == (R.STAND_UP,)
    assert pad.send(BACK).requests == (R.GET_DOWN,)   # getting down needs no dead-man


def test_motion_requests_without_deadman_are_ignored_with_a_warning():
    pad = Pad()
    result = pad.send(START)
    assert result.requests == () and "STAND_UP" in result.warnings[0]


def test_chords_shadow_their_parts():
    pad = Pad()
    pad.send(LB)
    assert pad.send(LB, RB).requests == ()
    assert pad.send(LB, RB, START).requests == (R.RUN,)      # not STAND_UP as well
    pad.send(LB)
    result = pad.send(LB, RB, B)
    assert result.requests == (R.ESTOP,) and not result.skill_changed and pad.teleop.skill == TROT.id
    pad.send(LB)
    assert pad.send(LB, RB, BACK).requests == (R.CLEAR_ESTOP,)  # not DAMPING or GET_DOWN


def test_estop_when_its_chord_completes_in_any_order_and_without_deadman():
    pad = Pad()
    pad.send(B)                                   # B alone (no dead-man): ignored skill change
    assert pad.send(B, RB).requests == (R.ESTOP,)
    pad.send()
    pad.send(RB)
    assert pad.send(RB, B).requests == (R.ESTOP,)


def test_buttons_held_at_connection_do_nothing_except_the_estop():
    pad = Pad(connect=False)
    assert pad.send(LB, START).requests == ()     # first message: START was already held
    assert pad.send(LB, START).requests == ()
    fresh = Pad(connect=False)
    assert fresh.send(RB, B).requests == (R.ESTOP,)
    # after a silence longer than the timeout the joystick counts as reconnected
    pad.send(LB)
    assert pad.send(LB, START, dt=1.0).requests == ()


def test_estop_is_reported_first():
    pad = Pad()
    pad.send(LB, RB)
    result = pad.send(LB, RB, B, START)   # RUN and ESTOP chords complete in the same message
    assert result.requests[0] == R.ESTOP and set(result.requests) == {R.ESTOP, R.RUN}


# ----------------------------------------------------------------------------------------- bad input
def test_a_message_with_too_few_buttons_or_axes_stops_the_robot():
    pad = Pad()
    pad.send(LB, ly=1.0)
    pad.t += 0.02
    result = pad.teleop.on_joy([0.0] * 6, [1] * 5, pad.t)
    assert "buttons" in result.warnings[0] and pad.command().vx == 0.0
    result = pad.teleop.on_joy([0.0] * 2, joy(LB)[1], pad.t)
    assert "axes" in result.warnings[0] and pad.command().vx == 0.0


def test_non_finite_axes_are_treated_as_centred():
    pad = Pad()
    result = pad.send(LB, ly=math.nan, lx=1.0)
    assert "not finite" in result.warnings[0]
    cmd = pad.command()
    assert cmd.vx == 0.0 and cmd.vy == TROT.vy[1]


def test_old_or_badly_stamped_messages_are_ignored():
    pad = Pad()
    pad.send(LB, ly=1.0)
    result = pad.teleop.on_joy(*joy(LB, START), received=pad.t - 0.1)
    assert result.requests == () and "older" in result.warnings[0]
    result = pad.teleop.on_joy(*joy(LB, START), received=math.inf)
    assert result.requests == () and "invalid receive time" in result.warnings[0]


axis = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1.5, 1.5)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.tuples(st.lists(axis, min_size=0, max_size=8),
                                   st.lists(st.integers(0, 1), min_size=0, max_size=16),
                                   st.floats(-0.1, 1.0)), min_size=1, max_size=20),
       skill=st.sampled_from([s.name for s in STACK.skills]))
def test_any_joystick_input_gives_a_finite_command_within_the_skill_range(messages, skill):
    teleop, t, latest = GamepadTeleop(PAD, STACK, skill=skill), 0.0, 0.0
    for axes, buttons, dt in messages:
        t += dt                  # may step back: such messages are ignored
        latest = max(latest, t)
        result = teleop.on_joy(axes, buttons, t)
        assert all(isinstance(r, R) for r in result.requests)
        cmd = teleop.command(t)
        spec = STACK.skill(cmd.skill)
        for value, (low, high) in zip((cmd.vx, cmd.vy, cmd.yaw_rate), (spec.vx, spec.vy, spec.yaw_rate)):
            assert math.isfinite(value) and min(low, 0.0) <= value <= max(high, 0.0)
        silent = teleop.command(latest + PAD.timeout + 0.01)
        assert silent == silent.stopped()


# ------------------------------------------------------------------------------------------- keyboard
def press(keys: str, command: TeleopCommand = TeleopCommand(1, source="keyboard")):
    results = []
    for key in keys:
        result = apply_key(command, key, KEYS, STACK)
        command = result.command
        results.append(result)
    return command, results


def test_keys_step_the_velocity_and_clamp_to_the_skill_range():
    cmd, _ = press("www")
    assert cmd.vx == pytest.approx(0.3) and cmd.skill == TROT.id and cmd.source == "keyboard"
    cmd, results = press("w" * 15)
    assert cmd.vx == TROT.vx[1] and "clamped" in results[-1].message
    cmd, _ = press("aqq")
    assert (cmd.vy, cmd.yaw_rate) == (pytest.approx(0.1), pytest.approx(0.4))
    cmd, _ = press("dee")
    assert (cmd.vy, cmd.yaw_rate) == (pytest.approx(-0.1), pytest.approx(-0.4))
    cmd, _ = press("wwwx")
    assert (cmd.vx, cmd.vy, cmd.yaw_rate) == (0.0, 0.0, 0.0) and cmd.skill == TROT.id


def test_skill_keys_clamp_the_current_velocity_into_the_new_range():
    cmd, _ = press("wwwwwwwwdd")          # trot at vx up to 0.8 (clamped to the trot range), vy -0.2
    cmd, results = press("4", cmd)        # bound: vy must be 0, vx within the bound range
    bound, trot = STACK.skill("bound"), STACK.skill("trot")
    assert cmd.skill == bound.id and cmd.vy == 0.0
    assert cmd.vx == pytest.approx(min(0.8, trot.vx[1], bound.vx[1]))
    assert "clamped" in results[0].message
    cmd, _ = press("1", cmd)
    assert cmd.skill == 0 and (cmd.vx, cmd.vy, cmd.yaw_rate) == (0.0, 0.0, 0.0)
    cmd, results = press("5wwwwwwq", cmd)   # hop: forward up to its top, turning within its range
    hop = STACK.skill("hop")
    assert cmd.skill == hop.id and (cmd.vx, cmd.vy) == (hop.vx[1], 0.0) and cmd.yaw_rate == pytest.approx(0.2)
    assert results[0].message == "skill hop"


@pytest.mark.parametrize("key,request_", [(" ", R.ESTOP), ("space", R.ESTOP), ("u", R.STAND_UP),
                                          ("U", R.STAND_UP), ("j", R.GET_DOWN), ("r", R.RUN),
                                          ("p", R.DAMPING), ("c", R.CLEAR_ESTOP)])
def test_request_keys(key, request_):
    before = TeleopCommand(1, 0.2, 0.0, 0.0, "keyboard")
    result = apply_key(before, key, KEYS, STACK)
    assert result.request == request_ and result.command == before


@pytest.mark.parametrize("key", ["z", "", "\x1b", 5, None])
def test_unknown_keys_change_nothing(key):
    before = TeleopCommand(1, 0.2, 0.0, 0.0, "keyboard")
    result = apply_key(before, key, KEYS, STACK)
    assert result.command == before and result.request is None and "unknown key" in result.message


def test_keyboard_mapping_validation():
    with pytest.raises(ConfigError, match="unknown keyboard action"):
        KeyboardMapping(keys={"w": "fly"})
    with pytest.raises(ConfigError, match="unknown request"):
        KeyboardMapping(keys={"k": "request:SELF_DESTRUCT"})
    with pytest.raises(ConfigError, match="must map a string"):
        KeyboardMapping(keys={1: "stop"})
    mapping = KeyboardMapping(keys={**DEFAULT_KEYS, "9": "skill:moonwalk"})
    result = apply_key(TeleopCommand(1), "9", mapping, STACK)
    assert result.command == TeleopCommand(1) and "refused" in result.message


@pytest.mark.parametrize("skill,velocity,expect", [
    ("trot", (0.5, 0.1, 0.2), (0.5, 0.1, 0.2)),
    (1, (5.0, -5.0, 0.0), (STACK.skill("trot").vx[1], STACK.skill("trot").vy[0], 0.0)),
    ("stand", (1.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
])
def test_make_command_clamps(skill, velocity, expect):
    cmd, note = make_command(STACK, skill, *velocity, source="script")
    assert (cmd.vx, cmd.vy, cmd.yaw_rate) == pytest.approx(expect)
    assert bool(note) == (tuple(velocity) != expect)


@pytest.mark.parametrize("skill,velocity,message", [
    (7, (0.0, 0.0, 0.0), "unknown skill 7"),
    ("moonwalk", (0.0, 0.0, 0.0), "unknown skill"),
    ("trot", (math.nan, 0.0, 0.0), "not finite"),
    ("trot", ("fast", 0.0, 0.0), "not finite"),
])
def test_make_command_refuses(skill, velocity, message):
    cmd, why = make_command(STACK, skill, *velocity)
    assert cmd is None and message in why
