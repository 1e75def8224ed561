"""A skill switch sent as a teleop SkillCommand reaches the policy node and changes the gait of the simulated
dog: trot puts diagonal feet down together, pace lateral ones, bound front and rear pairs, hop all four. It runs
twice: with the expert stand-in (the plumbing, whatever the model), and with the policy node's default, the shipped
diffusion model (no model named, the sim bringup's sampler settings), which was trained before hop joined the
skills: the node refuses hop for it and keeps the gait in effect. The gait is read from the robot-side topic,
LegState.force_est. Each gait's motor commands carry the position gain its model file sets for that skill
(gains.py; the expert stand-in runs at the robot's kp)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from diffuseloco_bringup.graph import NodeSpec
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config
from diffuseloco_learning.experts.evaluate import contact_pattern, in_step_share
from diffuseloco_policy.gains import kp_scales
from diffuseloco_policy.model_file import read_onnx_info
from ros_probe import Probe
from test_ros_graph import tolerant_of_stalls, write_params

CONFIG = load_config()
R = SetControllerState.Request
CONTACT_N = 5.0  # a foot carrying more than this is on the ground
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "diffuseloco_cyberdog2.onnx"


@pytest.fixture(scope="module", params=["expert", "default model"])
def dog_graph(request, tmp_path_factory):
    model = "expert" if request.param == "expert" else ""   # "": the node loads models/diffuseloco_cyberdog2.onnx
    driven = CONFIG if model else read_onnx_info(DEFAULT_MODEL).config   # a model runs at its data's gains
    scales = {name: driven.robot.kp * scale for name, scale in kp_scales(driven).items()}
    params = tolerant_of_stalls(write_params(tmp_path_factory.mktemp("params"), model))
    graph = Graph([NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"),
                   NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params)
    graph.start()
    probe = Probe()
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "the policy node's status")
        yield probe, scales   # skill -> the kp its targets go out with
    finally:
        probe.close()
        graph.stop()


def pattern_between(probe: Probe, start: float, end: float) -> dict[str, float]:
    with probe.lock:
        forces = np.array([f[:, 2] for t, f in probe.foot_forces if start <= t < end])
    return contact_pattern(forces > CONTACT_N)


def test_a_skill_switch_changes_the_gait(dog_graph):
    probe, kp_driven = dog_graph
    probe.request_until_accepted(R.REQUEST_STAND_UP, 15.0, "STAND_UP accepted")
    probe.request_until_accepted(R.REQUEST_RUN, CONFIG.controller.stand_up_duration + 5.0, "RUN")
    phases, kp = {}, {}
    for skill in ("trot", "pace", "bound"):
        probe.stream_skill(CONFIG.skill(skill).id, vx=0.2)   # streamed, as a teleop does (command watchdog)
        probe.wait_for(lambda s=skill: probe.latest_status().active_skill == CONFIG.skill(s).id, 2.0, skill)
        time.sleep(1.5)                      # let the gait settle
        start = probe.now()
        time.sleep(2.0)
        phases[skill] = pattern_between(probe, start, probe.now())
        kp[skill] = np.array([np.asarray(c.kp_des) for _, c in probe.commands_since(start)])
    status = probe.latest_status()
    assert status.state == PolicyStatus.STATE_RUNNING, status.last_fault
    trot, pace, bound = phases["trot"], phases["pace"], phases["bound"]
    assert trot["diagonal"] > 0.8 and trot["lateral"] < 0.2, trot
    assert pace["lateral"] > 0.8 and pace["diagonal"] < 0.2, pace
    assert bound["front_rear"] > 0.8 and bound["diagonal"] < 0.2 and bound["lateral"] < 0.2, bound
    for skill, sent in kp.items():
        np.testing.assert_allclose(sent, kp_driven[skill], err_msg=skill)
    hop = CONFIG.skill("hop").id
    diagnostics: list = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: diagnostics.extend(
        s for s in msg.status if s.name == "diffuseloco_policy"), 10)
    probe.stream_skill(hop, vx=0.2)
    if "hop" in kp_driven:      # the expert stand-in hops: the four feet together, with flights between
        probe.wait_for(lambda: probe.latest_status().active_skill == hop, 2.0, "hop")
        time.sleep(1.5)
        start = probe.now()
        time.sleep(2.0)
        with probe.lock:
            feet = np.array([f[:, 2] for t, f in probe.foot_forces if t >= start]) > CONTACT_N
        assert in_step_share(feet) > 0.8 and np.mean(~feet.any(axis=1)) > 0.15, feet.sum(axis=1)
    else:                    # the shipped model has no hop: refused, bound kept, at zero velocity, still running
        time.sleep(1.5)
        status = probe.latest_status()
        assert status.active_skill == CONFIG.skill("bound").id and not np.any(status.command), status
        assert status.state == PolicyStatus.STATE_RUNNING, status.last_fault
        probe.wait_for(lambda: any(s.level == DiagnosticStatus.WARN for s in diagnostics), 3.0, "a WARN diagnostic")
        warned = next(s for s in diagnostics if s.level == DiagnosticStatus.WARN)
        refusal = next(kv.value for kv in warned.values if kv.key == "skill_command")
        assert refusal.startswith("refused skill hop") and "bound kept" in refusal and warned.message == refusal
