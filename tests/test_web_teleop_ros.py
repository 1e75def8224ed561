"""The web teleop node in a live ROS graph: a WebSocket client, then the real page in Debian's headless Chromium
(selenium), drive it, and the test watches what arrives on ROS: SkillCommands on /diffuseloco/skill_cmd and
controller requests at a stand-in for the policy node's /diffuseloco/set_state service.

"Within one tick", asserted without a stopwatch race: the node's steady keep-alive publish runs here at one tick
per KEEP_ALIVE_S (longer than the whole module), so no tick falls inside a test and every SkillCommand the probe
sees was forwarded on receipt of a page message: a teleop that waited for its next tick to publish would show
none. The time from the browser action to the ROS receipt is also bounded, generously (MARGIN_TICKS control
ticks of the policy node: a loaded 2-core machine delays a process by tens of milliseconds, never by seconds),
and printed in control ticks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from diffuseloco_msgs.msg import PolicyStatus, SkillCommand
from diffuseloco_msgs.srv import SetControllerState
from geometry_msgs.msg import TwistStamped
from rclpy.qos import qos_profile_sensor_data
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from diffuseloco_bringup.graph import params_file, web_teleop_spec
from diffuseloco_bringup.run import Graph, node_command
from diffuseloco_policy.config import load_config
from diffuseloco_policy.controller import ControllerRequest as R
from free_port import free_port
from ros_probe import Probe

STACK = load_config()
TROT = STACK.skill("trot")
CONTROL_TICK_S = 1.0 / STACK.rates.control_hz
KEEP_ALIVE_S = 600.0          # the teleop's steady publish period in these tests: never within a test
MARGIN_TICKS = 250            # 5 s at 50 Hz: a browser gesture (moves of 50 ms) reaching ROS on a loaded machine
WAIT_S = MARGIN_TICKS * CONTROL_TICK_S
ROOT = Path(__file__).resolve().parents[1]


class StateService:
    """Stands in for the policy node's SetControllerState service: accepts and records every request."""

    def __init__(self, probe: Probe) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[float, int, str]] = []
        probe.node.create_service(SetControllerState, "/diffuseloco/set_state", self._answer)

    def _answer(self, request, response):
        with self.lock:
            self.requests.append((time.monotonic(), int(request.request), request.source))
        response.accepted, response.message = True, "recorded"
        return response

    def since(self, t: float) -> list[tuple[float, int, str]]:
        with self.lock:
            return [r for r in self.requests if r[0] >= t]


class Web:
    """The running node, the probe on its topics, the stand-in service."""

    def __init__(self, probe: Probe, service: StateService, port: int) -> None:
        self.probe, self.service, self.port = probe, service, port
        self.url = f"http://127.0.0.1:{port}/"

    def commands_since(self, t: float) -> list[tuple[float, SkillCommand]]:
        with self.probe.lock:
            return [(tr, m) for tr, m in self.probe.skill_commands if tr >= t]

    def wait_command(self, since: float, condition, what: str) -> tuple[float, SkillCommand]:
        """The first SkillCommand received after `since` that meets `condition`; its latency is asserted."""
        found: list = []

        def arrived() -> bool:
            found[:] = [(t, m) for t, m in self.commands_since(since) if condition(m)]
            return bool(found)

        self.probe.wait_for(arrived, WAIT_S, what)
        t, msg = found[0]
        assert msg.source == "web"
        print(f"{what}: on ROS {(t - since) / CONTROL_TICK_S:.1f} control ticks after the page's action")
        return t, msg

    def wait_request(self, since: float, request: R, what: str) -> None:
        self.probe.wait_for(lambda: any(r == request for _, r, _ in self.service.since(since)), WAIT_S, what)
        t, _, source = next(r for r in self.service.since(since) if r[1] == request)
        assert source == "web"
        print(f"{what}: at the service {(t - since) / CONTROL_TICK_S:.1f} control ticks after the page's action")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web_teleop")
    port = free_port()
    params = yaml.safe_load(params_file("sim").read_text())
    params["teleop"]["ros__parameters"].update(web_port=port, publish_rate_hz=1.0 / KEEP_ALIVE_S)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    probe = Probe("web_probe", source="test")
    service = StateService(probe)
    graph = Graph([web_teleop_spec("127.0.0.1")], path)
    graph.start()
    try:
        probe.wait_for(lambda: _answers(port), 60.0, "the web teleop's page")
        probe.wait_for(lambda: probe.node.count_clients("/diffuseloco/set_state") >= 2, 30.0, "its service client")
        web = Web(probe, service, port)
        warm_up(web)
        yield web
    finally:
        graph.stop()
        probe.close()


def warm_up(web: Web) -> None:
    """Until a command of the node reaches the probe: DDS matches a writer to a reader on both sides in its own
    time, and a message sent before the writer knows the reader is lost (volatile QoS, as the policy node's)."""
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as ws:
        send(ws, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
        skills = [SkillCommand.SKILL_TROT, SkillCommand.SKILL_STAND]
        deadline = time.monotonic() + 30.0
        while not web.commands_since(0.0) and time.monotonic() < deadline:
            send(ws, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
            send(ws, type="skill", skill=skills[0])
            skills.reverse()
            time.sleep(0.2)
        assert web.commands_since(0.0), "no SkillCommand from the web teleop reached the probe within 30 s"
        send(ws, type="skill", skill=SkillCommand.SKILL_STAND)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def messages(ws, until, timeout: float = WAIT_S) -> list[dict]:
    """Read the server's messages until one meets `until` (returned last), or fail after `timeout`."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
        if until(seen[-1]):
            return seen
    raise AssertionError(f"no such message within {timeout} s; got {seen[-5:]}")


def send(ws, **message) -> None:
    ws.send(json.dumps(message))


# ------------------------------------------------------------------------------------------ one port, one page
def test_the_page_and_its_socket_share_one_port(web):
    with urllib.request.urlopen(web.url, timeout=5) as reply:
        page = reply.read().decode()
        assert reply.headers["Content-Type"].startswith("text/html")
    assert 'id="estop"' in page and "/ws" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page, "no CDN: offline robot"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(web.url + "secrets", timeout=5)
    assert missing.value.code == 404


def test_a_page_of_another_site_may_not_open_the_socket(web):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{web.port}/ws", origin="http://example.com", open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{web.port}/ws", origin=f"http://127.0.0.1:{web.port}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"


# ------------------------------------------------------------------------------------- a WebSocket client drives
def test_a_websocket_client_drives_under_the_joystick_rules(web):
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert {s["name"]: s["id"] for s in hello["skills"]}["trot"] == SkillCommand.SKILL_TROT
        send(ws, type="request", request="STAND_UP")                     # no dead-man: refused, with the reason
        assert "dead-man" in messages(ws, lambda m: m["type"] == "refused")[-1]["reason"]
        send(ws, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
        t0 = time.monotonic()
        send(ws, type="skill", skill=SkillCommand.SKILL_TROT)
        web.wait_command(t0, lambda m: m.skill == SkillCommand.SKILL_TROT, "skill trot")
        t0 = time.monotonic()
        send(ws, type="drive", deadman=True, vx=1.0, vy=0.0, yaw=0.0)
        _, full = web.wait_command(t0, lambda m: m.vx > 0.0, "full stick forward")
        assert (full.skill, full.vx, full.vy, full.yaw_rate) == (TROT.id, pytest.approx(TROT.vx[1]), 0.0, 0.0)
        t0 = time.monotonic()
        send(ws, type="drive", deadman=False, vx=1.0, vy=0.0, yaw=0.0)   # dead-man released, stick still forward
        web.wait_command(t0, lambda m: m.vx == 0.0 and m.skill == TROT.id, "dead-man released")
        t0 = time.monotonic()
        send(ws, type="estop")
        web.wait_request(t0, R.ESTOP, "e-stop")
        state = messages(ws, lambda m: m["type"] == "state" and m["skill"]["name"] == "trot" and not m["deadman"])[-1]
        assert state["role"] == "driver" and state["command"] == [0.0, 0.0, 0.0]


def test_a_second_page_watches_and_may_only_stop(web):
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as driver, \
            connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as watcher:
        send(driver, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
        assert messages(driver, lambda m: m["type"] == "state" and m["role"] == "driver")
        send(watcher, type="skill", skill=SkillCommand.SKILL_PACE)
        assert "another page drives" in messages(watcher, lambda m: m["type"] == "refused")[-1]["reason"]
        assert messages(watcher, lambda m: m["type"] == "state" and m["driven"])[-1]["role"] == "viewer"
        t0 = time.monotonic()
        send(watcher, type="estop")
        web.wait_request(t0, R.ESTOP, "e-stop from the watching page")
        assert not any(m.skill == SkillCommand.SKILL_PACE for _, m in web.commands_since(t0 - 5.0))


def test_malformed_input_is_refused_and_the_server_goes_on(web):
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as ws:
        for bad in ("{not json", '{"type": "drive", "deadman": true, "vx": NaN, "vy": 0, "yaw": 0}', '["estop"]'):
            ws.send(bad)
            assert messages(ws, lambda m: m["type"] == "refused")[-1]["reason"]
        send(ws, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
        assert messages(ws, lambda m: m["type"] == "state" and m["deadman"])[-1]["role"] == "driver"


def test_a_driver_that_disconnects_is_stopped_at_once(web):
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as ws:
        send(ws, type="drive", deadman=True, vx=0.0, vy=0.0, yaw=0.0)
        send(ws, type="skill", skill=SkillCommand.SKILL_TROT)
        t0 = time.monotonic()
        send(ws, type="drive", deadman=True, vx=0.5, vy=0.0, yaw=0.0)
        web.wait_command(t0, lambda m: m.vx > 0.0, "half stick forward")
        t0 = time.monotonic()
        ws.close()   # the dead-man still held: only the disconnection stops it
    web.wait_command(t0, lambda m: m.vx == 0.0, "driver gone")


def test_the_robots_state_and_speed_reach_the_page(web):
    status = PolicyStatus(state=PolicyStatus.STATE_RUNNING, state_name="RUNNING", active_skill=TROT.id,
                          command=[0.4, 0.0, 0.1])
    twist = TwistStamped()
    twist.twist.linear.x, twist.twist.angular.z = 0.37, 0.08
    status_pub = web.probe.node.create_publisher(PolicyStatus, "/diffuseloco/status", 10)
    velocity_pub = web.probe.node.create_publisher(TwistStamped, "/cyberdog/body_velocity", qos_profile_sensor_data)
    with connect(f"ws://127.0.0.1:{web.port}/ws", open_timeout=10) as ws:
        deadline = time.monotonic() + WAIT_S * 5
        while time.monotonic() < deadline:
            status_pub.publish(status)
            velocity_pub.publish(twist)
            robot = messages(ws, lambda m: m["type"] == "state")[-1]["robot"]
            if robot["state"] == "RUNNING" and robot["measured"] is not None:
                break
        assert (robot["state"], robot["skill"]) == ("RUNNING", "trot")
        assert robot["measured"] == pytest.approx([0.37, 0.0, 0.08]) and robot["command"] == pytest.approx([0.4, 0.0, 0.1])


def test_without_an_address_the_node_refuses_to_start(tmp_path):
    spec = web_teleop_spec("127.0.0.1")
    command = node_command(spec, params_file("sim"))[:-2] + ["-p", "web_host:=''", "-p", f"web_port:={free_port()}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no address to listen on" in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------ headless Chromium
def chromium():
    """Debian's chromium, driven by its chromium-driver (scripts/install-system-deps.sh installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in ("chromium", "chromedriver"):
        assert shutil.which(program), f"{program} is missing: run scripts/install-system-deps.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    # a phone: its screen, and touch input
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": 412, "height": 860,
                                                                          "pixelRatio": 2.0, "touch": True}})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def fingers(browser, *steps):
    """Perform touch steps in one go: (finger name, 'down' | 'up' | 'move', element, dy as a fraction of its
    height). Fingers still down at the end stay down (chromedriver keeps them) until release(browser); a later
    call cannot move them on, so each call is a whole gesture."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.interaction import POINTER_TOUCH
    from selenium.webdriver.common.actions.mouse_button import MouseButton

    builder = ActionBuilder(browser)
    sources = {name: builder.add_pointer_input(POINTER_TOUCH, name) for name in dict.fromkeys(s[0] for s in steps)}
    for name, action, element, dy in steps:
        finger = sources[name]
        if action in ("down", "move"):
            finger.create_pointer_move(duration=50, origin=element, x=0, y=int(dy * element.size["height"]))
        if action == "down":
            finger.create_pointer_down(button=MouseButton.LEFT)
        elif action == "up":
            finger.create_pointer_up(MouseButton.LEFT)
        for other in sources.values():   # one step per tick for every finger, so steps happen in order
            if other is not finger:
                other.create_pause(0)
    builder.perform()


def release(browser) -> None:
    """Every finger still down is lifted (WebDriver's Release Actions)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    ActionBuilder(browser).clear_actions()


def test_the_page_in_headless_chromium_drives_the_robot(web, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(web.url)
        WebDriverWait(browser, 30).until(ready.presence_of_element_located((By.ID, "skill-hop")))
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "link").text == "online")
        element = {name: browser.find_element(By.ID, name)
                   for name in ("deadman", "skill-trot", "stick-move", "estop", "req-STAND_UP")}
        assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#skills button")] == \
            ["stand", "trot", "pace", "bound", "hop"]

        # the dead-man held by the thumb; with a finger: trot, then the left stick pushed to the top and held
        t0 = time.monotonic()
        fingers(browser, ("thumb", "down", element["deadman"], 0.0),
                ("finger", "down", element["skill-trot"], 0.0), ("finger", "up", None, 0.0),
                ("finger", "down", element["stick-move"], 0.0), ("finger", "move", element["stick-move"], -0.25),
                ("finger", "move", element["stick-move"], -0.49))
        web.wait_command(t0, lambda m: m.skill == SkillCommand.SKILL_TROT, "trot button")
        _, moving = web.wait_command(t0, lambda m: m.vx >= 0.9 * TROT.vx[1], "stick forward")
        assert moving.skill == TROT.id and abs(moving.vy) < 0.1 * TROT.vy[1]
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "role").text == "driving")
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "command").text.startswith("trot +")
                                         and not b.find_element(By.ID, "command").text.startswith("trot +0.00"))
        shot = tmp_path / "web_teleop.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("WEB_TELEOP_SCREENSHOT"):   # docs/images/web_teleop.png is made this way (docs)
            shutil.copy(shot, ROOT / os.environ["WEB_TELEOP_SCREENSHOT"])

        t0 = time.monotonic()
        release(browser)                                                               # thumb and finger lifted
        web.wait_command(t0, lambda m: m.vx == 0.0 and m.skill == TROT.id, "dead-man let go")

        t0 = time.monotonic()
        fingers(browser, ("finger", "down", element["estop"], 0.0), ("finger", "up", None, 0.0))
        web.wait_request(t0, R.ESTOP, "e-stop button")
    finally:
        browser.quit()
