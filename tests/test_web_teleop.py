"""The web teleop's rules (diffuseloco_policy/web_teleop.py), without ROS or a server: a page's JSON messages in,
the command and the controller requests out, under the joystick's rules (dead-man, the skill's range, silence and
disconnection stop the robot, the e-stop needs nothing), with one driving page at a time and malformed messages
refused with a reason."""

from __future__ import annotations

import json

import pytest
import yaml
from diffuseloco_msgs.msg import SkillCommand

from diffuseloco_bringup.graph import params_file
from diffuseloco_policy.config import ConfigError, load_config
from diffuseloco_policy.controller import ControllerRequest as R
from diffuseloco_policy.package_files import package_file
from diffuseloco_policy.teleop import apply_deadzone, scale_stick
from diffuseloco_policy.web_teleop import (DRIVER, VIEWER, RobotView, WebTeleop, WebTeleopSettings,
                                           load_web_settings)

STACK = load_config()
SETTINGS = WebTeleopSettings()
TROT = STACK.skill("trot")
PAGE, OTHER = 1, 2


def drive(deadman: bool = True, vx: float = 0.0, vy: float = 0.0, yaw: float = 0.0) -> str:
    return json.dumps({"type": "drive", "deadman": deadman, "vx": vx, "vy": vy, "yaw": yaw})


def skill(skill_id: int) -> str:
    return json.dumps({"type": "skill", "skill": skill_id})


def request(name: str) -> str:
    return json.dumps({"type": "request", "request": name})


def connected(*clients: int) -> WebTeleop:
    teleop = WebTeleop(SETTINGS, STACK)
    for client in clients:
        teleop.connect(client)
    return teleop


def trotting(teleop: WebTeleop, client: int = PAGE, now: float = 0.0, vx: float = 1.0) -> None:
    """The page holds the dead-man, picks trot and pushes the stick forward."""
    assert teleop.on_message(client, drive(), now).refusal == ""
    assert teleop.on_message(client, skill(SkillCommand.SKILL_TROT), now).refusal == ""
    assert teleop.on_message(client, drive(vx=vx), now).refusal == ""


# ---------------------------------------------------------------------------------------- the joystick's rules
def test_full_stick_with_the_deadman_reaches_the_top_of_the_skills_range():
    teleop = connected(PAGE)
    trotting(teleop)
    command = teleop.command(0.1)
    assert (command.skill, command.vx, command.vy, command.yaw_rate) == (TROT.id, TROT.vx[1], 0.0, 0.0)
    assert command.source == "web"


def test_sticks_are_scaled_and_clamped_like_the_gamepads():
    teleop = connected(PAGE)
    trotting(teleop, vx=-0.6)
    teleop.on_message(PAGE, drive(vx=-0.6, vy=0.7, yaw=-0.4), 0.0)
    expected = TROT.clamp_command(*(scale_stick(apply_deadzone(s, SETTINGS.deadzone), r)
                                    for s, r in zip((-0.6, 0.7, -0.4), (TROT.vx, TROT.vy, TROT.yaw_rate))))
    command = teleop.command(0.0)
    assert (command.vx, command.vy, command.yaw_rate) == pytest.approx(expected)
    teleop.on_message(PAGE, drive(vx=25.0, yaw=-9.0), 0.0)          # beyond the stick's travel: clipped to it
    command = teleop.command(0.0)
    assert (command.vx, command.yaw_rate) == pytest.approx((TROT.vx[1], TROT.yaw_rate[0]))
    teleop.on_message(PAGE, drive(vx=SETTINGS.deadzone / 2), 0.0)   # inside the dead zone
    assert teleop.command(0.0).vx == 0.0


def test_releasing_the_deadman_zeroes_the_velocity_and_keeps_the_skill():
    teleop = connected(PAGE)
    trotting(teleop)
    result = teleop.on_message(PAGE, drive(deadman=False, vx=1.0), 0.1)
    assert result.changed and result.refusal == ""
    command = teleop.command(0.1)
    assert (command.skill, command.vx, command.vy, command.yaw_rate) == (TROT.id, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("message", [skill(SkillCommand.SKILL_TROT), request("STAND_UP"), request("RUN"),
                                     request("CLEAR_ESTOP")])
def test_skills_stand_up_run_and_clear_need_the_deadman(message):
    teleop = connected(PAGE)
    teleop.on_message(PAGE, drive(deadman=False), 0.0)
    result = teleop.on_message(PAGE, message, 0.0)
    assert "hold the dead-man" in result.refusal and result.requests == ()
    assert teleop.skill == STACK.skill("stand").id
    teleop.on_message(PAGE, drive(deadman=True), 0.0)
    held = teleop.on_message(PAGE, message, 0.0)
    assert held.refusal == ""
    assert held.requests or teleop.skill == TROT.id


@pytest.mark.parametrize("name,expected", [("GET_DOWN", R.GET_DOWN), ("DAMPING", R.DAMPING)])
def test_getting_down_and_damping_need_no_deadman(name, expected):
    teleop = connected(PAGE)
    assert teleop.on_message(PAGE, request(name), 0.0).requests == (expected,)


@pytest.mark.parametrize("message", ['{"type": "estop"}', request("ESTOP")])
def test_the_estop_needs_nothing_and_works_from_a_watching_page(message):
    teleop = connected(PAGE, OTHER)
    trotting(teleop)
    assert teleop.role(OTHER, 0.0) == VIEWER
    result = teleop.on_message(OTHER, message, 0.0)
    assert result.requests == (R.ESTOP,) and result.refusal == ""
    assert teleop.on_message(PAGE, message, 0.0).requests == (R.ESTOP,)   # and from the driver, dead-man or not


# --------------------------------------------------------------------------------------- silence and leaving
def test_a_silent_driver_is_stopped_after_the_timeout_and_frees_the_seat():
    teleop = connected(PAGE, OTHER)
    trotting(teleop, now=10.0)
    assert teleop.command(10.0 + 0.9 * SETTINGS.timeout).vx == TROT.vx[1]
    late = 10.0 + 1.1 * SETTINGS.timeout
    assert teleop.command(late).vx == 0.0 and teleop.command(late).skill == TROT.id
    assert teleop.role(PAGE, late) == VIEWER
    assert teleop.on_message(OTHER, drive(vx=1.0), late).refusal == ""      # another page may take over
    assert teleop.role(OTHER, late) == DRIVER and teleop.command(late).vx == TROT.vx[1]


def test_heartbeats_keep_the_driver_alive():
    teleop = connected(PAGE)
    trotting(teleop, now=0.0)
    now = 0.0
    for _ in range(20):
        now += SETTINGS.heartbeat
        assert teleop.on_message(PAGE, drive(vx=1.0), now).changed is False
    assert teleop.command(now).vx == TROT.vx[1]


def test_a_driver_that_disconnects_stops_the_robot_at_once():
    teleop = connected(PAGE, OTHER)
    trotting(teleop)
    assert teleop.disconnect(OTHER, 0.0).changed is False   # a watcher leaving changes nothing
    result = teleop.disconnect(PAGE, 0.0)
    assert result.changed and teleop.command(0.0).vx == 0.0
    assert teleop.on_message(PAGE, drive(vx=1.0), 0.0).refusal   # gone pages are not heard


# ------------------------------------------------------------------------------------------- several pages
def test_one_page_drives_the_others_watch():
    teleop = connected(PAGE, OTHER)
    trotting(teleop)
    assert (teleop.role(PAGE, 0.0), teleop.role(OTHER, 0.0)) == (DRIVER, VIEWER)
    assert teleop.on_message(OTHER, drive(deadman=False), 0.0).refusal == ""   # a watcher's heartbeat is fine
    for message in (drive(vx=-1.0), skill(SkillCommand.SKILL_PACE), request("GET_DOWN")):
        result = teleop.on_message(OTHER, message, 0.0)
        assert "another page drives" in result.refusal and result.requests == ()
    command = teleop.command(0.0)
    assert (command.skill, command.vx) == (TROT.id, TROT.vx[1])


# ------------------------------------------------------------------------------------------ malformed input
MALFORMED = {
    "not JSON": "{vx: 1",
    "not an object": "[1, 2]",
    "no type": '{"deadman": true}',
    "unknown type": '{"type": "fly"}',
    "deadman not a boolean": '{"type": "drive", "deadman": 1, "vx": 0, "vy": 0, "yaw": 0}',
    "stick missing": '{"type": "drive", "deadman": true, "vx": 0.5}',
    "stick not finite": '{"type": "drive", "deadman": true, "vx": NaN, "vy": 0, "yaw": 0}',
    "stick infinite": '{"type": "drive", "deadman": true, "vx": 1e999, "vy": 0, "yaw": 0}',
    "stick as text": '{"type": "drive", "deadman": true, "vx": "1", "vy": 0, "yaw": 0}',
    "unknown skill": skill(99),
    "skill by name": '{"type": "skill", "skill": "trot"}',
    "skill as boolean": '{"type": "skill", "skill": true}',
    "unknown request": request("JUMP"),
    "request as number": '{"type": "request", "request": 0}',
    "too long": json.dumps({"type": "drive", "deadman": True, "vx": 1, "vy": 0, "yaw": 0, "pad": "x" * 600}),
    "binary": b'{"type": "estop"}',
}


@pytest.mark.parametrize("why", MALFORMED)
def test_malformed_messages_are_refused_with_a_reason_and_stop_the_driver(why):
    teleop = connected(PAGE)
    trotting(teleop)
    result = teleop.on_message(PAGE, MALFORMED[why], 0.1)
    assert result.refusal and result.requests == ()
    assert result.changed and teleop.command(0.1).vx == 0.0, "a malformed message stops the driver"
    assert teleop.skill == TROT.id and teleop.role(PAGE, 0.1) == DRIVER
    assert teleop.on_message(PAGE, drive(vx=1.0), 0.2).refusal == ""   # the next good message drives again
    assert teleop.command(0.2).vx == TROT.vx[1]


def test_an_integral_float_is_a_skill_id_and_bad_receive_times_are_ignored():
    teleop = connected(PAGE)
    teleop.on_message(PAGE, drive(), 0.0)
    assert teleop.on_message(PAGE, '{"type": "skill", "skill": 1.0}', 0.0).refusal == ""
    assert teleop.skill == SkillCommand.SKILL_TROT
    assert "invalid receive time" in teleop.on_message(PAGE, drive(), float("nan")).refusal


# ----------------------------------------------------------------------------------------- what pages see
def test_hello_offers_the_skills_by_their_skill_command_ids():
    hello = json.loads(connected().hello())
    ids = {s["name"]: s["id"] for s in hello["skills"]}
    assert ids == {"stand": SkillCommand.SKILL_STAND, "trot": SkillCommand.SKILL_TROT,
                   "pace": SkillCommand.SKILL_PACE, "bound": SkillCommand.SKILL_BOUND, "hop": SkillCommand.SKILL_HOP}
    assert {"STAND_UP", "RUN", "GET_DOWN"} <= set(hello["requests"])
    assert hello["heartbeat_s"] < hello["timeout_s"]


def test_the_state_says_who_drives_and_what_the_robot_does():
    teleop = connected(PAGE, OTHER)
    trotting(teleop)
    robot = RobotView("RUNNING", "trot", (0.5, 0.0, 0.0), (0.48, 0.01, -0.02), "")
    mine, theirs = (json.loads(teleop.state_message(c, 0.0, robot)) for c in (PAGE, OTHER))
    assert (mine["role"], mine["deadman"], theirs["role"], theirs["deadman"]) == (DRIVER, True, VIEWER, False)
    assert mine["skill"] == {"id": TROT.id, "name": "trot"} and mine["command"][0] == pytest.approx(TROT.vx[1])
    assert mine["robot"]["state"] == "RUNNING" and mine["robot"]["measured"] == [0.48, 0.01, -0.02]


# ------------------------------------------------------------------------------------------------ settings
def test_the_shipped_settings_load_and_their_source_may_move_the_robot():
    settings = load_web_settings(package_file("diffuseloco_bringup", "config/teleop_web.yaml"))
    assert settings.heartbeat < settings.timeout <= 0.5
    for target in ("sim", "robot"):
        params = yaml.safe_load(params_file(target).read_text())
        sources = params["diffuseloco_policy"]["ros__parameters"]["control_sources"].split(",")
        assert settings.source in sources, target
        assert params["teleop"]["ros__parameters"]["web_host"] == "", "the page is served only where it is told"


@pytest.mark.parametrize("bad", [{"timeout": 0.0}, {"heartbeat": 0.6}, {"deadzone": 1.0}, {"max_message_bytes": 8},
                                 {"source": " "}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        WebTeleopSettings(**bad)


def test_an_unknown_settings_key_is_refused(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text("timeout: 0.5\nspeed: 9\n")
    with pytest.raises(ConfigError, match="speed"):
        load_web_settings(path)
