"""A skill switch sent as a teleop SkillCommand reaches the policy node and changes the gait of the simulated
dog: trot puts diagonal feet down together, pace lateral ones, bound front and rear pairs. It runs twice: with the
expert stand-in (the plumbing, whatever the model), and with the policy node's default, the shipped diffusion
model (no model named, the sim bringup's sampler settings). The gait is read from the robot-side topic,
LegState.force_est. Each gait's motor commands carry the position gain its model file sets for that skill
(gains.py; the expert stand-in runs at the robot's kp)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from diffuseloco_bringup.graph import NodeSpec
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config
from diffuseloco_learning.experts.evaluate import contact_pattern
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
