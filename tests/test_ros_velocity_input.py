"""A model that observes the state estimator's body velocity, in the ROS graph: the policy node subscribes to
/cyberdog/body_velocity only for such a model and treats it as a sensor. Its own module, so that no other
test's graph (another policy node on the same topics and service) is alive beside this one."""

from __future__ import annotations

import dataclasses
import time

import yaml
from geometry_msgs.msg import TwistStamped
from ros_probe import Probe
from tiny_model import export_standing_model
from velocity_config import observing_velocity

from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_msgs.msg import PolicyStatus
from diffuseloco_msgs.srv import SetControllerState
from diffuseloco_policy.config import load_config

CONFIG = load_config()
RELAYED = "/test/body_velocity"
R = SetControllerState.Request


def state(probe: Probe) -> int:
    return probe.latest_status().state


def tolerant_of_relay_stalls(config, timeout_s: float = 0.25):
    """vBody reaches the node through the probe's relay, a Python callback in the test process: on a shared
    2-core machine it can stall past the robot's 0.05 s timeout under the full suite, a fault the node rightly
    damps on (test_ros_graph and test_fault_injection check that reaction), but not what this test is about."""
    return dataclasses.replace(config, safety=dataclasses.replace(
        config.safety, sensor_timeout=timeout_s, stale_stand_after=timeout_s + 0.1,
        stale_damping_after=max(timeout_s + 0.2, config.safety.stale_damping_after)))


def test_a_model_that_observes_the_body_velocity_runs_on_the_simulators_estimate(tmp_path):
    """Robot config and model with the base_linear_velocity term: the policy node subscribes to the simulator's
    vBody stand-in (forwarded here by the probe), runs on it, and damps with the reason when that one stream
    stops while the joint state and IMU keep coming."""
    config_path = tmp_path / "robot.yaml"
    config_path.write_text(yaml.safe_dump(tolerant_of_relay_stalls(observing_velocity(CONFIG)).to_dict()))
    model = export_standing_model(tmp_path / "velocity_policy.onnx", config_path=config_path)
    params = yaml.safe_load(params_file("sim").read_text())
    params["cyberdog_sim"]["ros__parameters"].update(config=str(config_path))
    params["diffuseloco_policy"]["ros__parameters"].update(model=str(model), config=str(config_path),
                                                           warm_start_steps=2, body_velocity_topic=RELAYED,
                                                           sensor_source="")   # vBody comes from the probe
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    graph = Graph([NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"),
                   NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params_path)
    graph.start()
    probe = Probe()
    stop_relay = probe.relay("/cyberdog/body_velocity", RELAYED, TwistStamped)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None and model.name in probe.latest_status().model,
                       60.0, "the velocity-observing policy node's status")
        probe.request_until_accepted(R.REQUEST_STAND_UP, 15.0, "healthy sensors for STAND_UP")
        probe.request_until_accepted(R.REQUEST_RUN, CONFIG.controller.stand_up_duration + 5.0,
                                     "RUN to be accepted after the stand-up")
        probe.wait_for(lambda: state(probe) == PolicyStatus.STATE_RUNNING, 2.0, "RUNNING")
        time.sleep(1.0)
        assert state(probe) == PolicyStatus.STATE_RUNNING, probe.latest_status().last_fault
        stop_relay.set()
        probe.wait_for(lambda: state(probe) == PolicyStatus.STATE_DAMPING, 1.0, "DAMPING without vBody")
        assert "body velocity" in probe.latest_status().last_fault
    finally:
        probe.close()
        graph.stop()
