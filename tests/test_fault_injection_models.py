"""Fault-injection suite, part 2: cases that start their own policy node (bad model files, inference slower than
the tick) and the control case proving the suite's safety check can fail. Separate from test_fault_injection.py
so that the module-scoped policy node there is gone before any of these start (two nodes would share topics)."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from diffuseloco_bringup.graph import NodeSpec
from diffuseloco_bringup.run import Graph, node_command
from diffuseloco_policy.config import load_config
from ros_probe import Probe
from test_fault_injection import CONFIG, R, S, FakeRobot, model, stand_up  # noqa: F401 - `model` is a fixture
from test_ros_graph import assert_safe, tolerant_of_stalls, write_params
from tiny_model import export_standing_model


# ------------------------------------------------------------------------------------------- model files
def start_policy_node(params: Path) -> subprocess.CompletedProcess:
    spec = NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")
    return subprocess.run(node_command(spec, params), capture_output=True, text=True, timeout=60)


def corrupt_copy(model: Path, tmp: Path) -> Path:
    bad = tmp / "corrupt.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4096] = b"\x00" * 4096
    bad.write_bytes(bytes(data))
    return bad


def mismatched_model(tmp: Path) -> Path:
    """A model whose embedded config has another default pose (trained for another stance)."""
    data = load_config().to_dict()
    data["robot"]["default_pose"] = [0.0, -0.7, 1.3] * 4
    other = tmp / "other_robot.yaml"
    other.write_text(yaml.safe_dump(data))
    return export_standing_model(tmp / "mismatched.onnx", config_path=other)


@pytest.mark.parametrize("case,reason", [("missing", "not found"), ("corrupt", ""), ("mismatched", "default")])
def test_bad_model_files_are_refused_at_start_with_the_reason(model, tmp_path, case, reason):
    path = {"missing": lambda: tmp_path / "nope.onnx", "corrupt": lambda: corrupt_copy(model, tmp_path),
            "mismatched": lambda: mismatched_model(tmp_path)}[case]()
    result = start_policy_node(write_params(tmp_path, path))
    output = (result.stdout + result.stderr).lower()
    assert result.returncode == 2, output[-2000:]
    assert "refusing to start" in output and reason in output, output[-2000:]
    assert "traceback" not in output


def test_a_sampler_temperature_outside_0_1_is_refused_at_start(model, tmp_path):
    params = write_params(tmp_path, model)
    data = yaml.safe_load(params.read_text())
    data["diffuseloco_policy"]["ros__parameters"]["noise_scale"] = 1.5
    params.write_text(yaml.safe_dump(data))
    result = start_policy_node(params)
    output = (result.stdout + result.stderr).lower()
    assert result.returncode == 2 and "refusing to start" in output and "noise_scale" in output, output[-2000:]
    assert "traceback" not in output


@contextmanager
def running_policy(params: Path, overrides: dict, probe_name: str):
    """A policy node with `overrides` in its parameters, the fake robot, and the policy RUNNING; yields the probe.
    The sensor timeout is 0.5 s: these cases are about inference and the safety check, and the fake robot in
    this process stalled up to 320 ms under the full suite (a sensor fault for the robot's 0.05 s)."""
    overrides = dict(overrides)
    config = overrides.pop("config", None)
    data = yaml.safe_load(params.read_text())
    data["diffuseloco_policy"]["ros__parameters"].update(overrides)
    params.write_text(yaml.safe_dump(data))
    tolerant_of_stalls(params, 0.5, Path(config) if config else None)
    graph = Graph([NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params)
    graph.start()
    probe = Probe(probe_name)
    robot = FakeRobot(probe)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "status")
        stand_up(probe, robot)
        time.sleep(CONFIG.controller.stand_up_duration + 0.2)
        run = probe.request(R.REQUEST_RUN)
        assert run.accepted, (run.message, probe.latest_status().last_fault)
        yield probe
    finally:
        robot.close()
        probe.close()
        graph.stop()


def tick_rate(first, last) -> float:
    """The node's control rate between two of its PolicyStatus messages, by its own tick count and stamps: what
    the node did, not when this test process (starved at times on a 2-core machine) happened to receive it."""
    def seconds(status) -> float:
        return status.header.stamp.sec + status.header.stamp.nanosec * 1e-9
    return (last.ticks - first.ticks) / (seconds(last) - seconds(first))


def test_inference_slower_than_the_tick_is_counted_and_stays_safe(tmp_path_factory):
    """The paper-size model without warm start needs more than a 20 ms period here: ticks keep coming at 50 Hz,
    late plans are counted as deadline misses and the node follows its previous plan meanwhile."""
    slow = export_standing_model(tmp_path_factory.mktemp("slow") / "paper.onnx", preset="paper")
    params = write_params(tmp_path_factory.mktemp("params_slow"), slow)
    with running_policy(params, {"warm_start_steps": 0, "intra_op_threads": 1}, "slow_probe") as probe:
        first = probe.latest_status()
        time.sleep(2.0)
        status = probe.latest_status()
        rate = tick_rate(first, status)
        assert status.state == S.STATE_RUNNING and status.deadline_misses > 10, status
        assert status.inference_latency_ms > 1000.0 / CONFIG.rates.control_hz
        assert abs(rate - CONFIG.rates.control_hz) <= 0.1 * CONFIG.rates.control_hz, f"{rate:.1f} Hz"
        assert_safe(probe.commands_since(0.0))


# --------------------------------------------------------------------------------- the suite can fail
def test_the_suite_detects_a_disabled_safety_layer(tmp_path_factory):
    """A deliberately broken fixture: a robot config whose firmware limits are opened up (so the node's safety
    filter lets everything through) and a model with wild actions. The suite's own check, which uses the real
    limits, must catch the unsafe commands."""
    tmp = tmp_path_factory.mktemp("broken")
    data = load_config().to_dict()
    data["robot"]["max_target_step_deg"] = [180.0, 180.0, 180.0]
    data["safety"]["max_target_step_deg"] = [180.0, 180.0, 180.0]
    broken_config = tmp / "no_step_limit.yaml"
    broken_config.write_text(yaml.safe_dump(data))
    wild = export_standing_model(tmp / "wild.onnx", action_range=3.0)
    params = write_params(tmp, wild)
    with running_policy(params, {"config": str(broken_config)}, "broken_probe") as probe:
        time.sleep(1.0)
        with pytest.raises(AssertionError):
            assert_safe(probe.commands_since(0.0))


# ------------------------------------------------------------------------------------------- a failing sampler
def nan_model(model: Path, tmp: Path) -> Path:
    """A copy of `model` (and its warm-start graphs) with a NaN in every weight tensor: it loads and warms up, and
    every plan it makes is NaN."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    for source in model.parent.glob(f"{model.stem}*.onnx"):
        graph = onnx.load(str(source))
        for tensor in graph.graph.initializer:
            weights = numpy_helper.to_array(tensor)
            if weights.dtype == np.float32 and weights.size > 1:
                weights = weights.copy()
                weights.flat[0] = np.nan
                tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
        onnx.save(graph, str(tmp / source.name.replace(model.stem, "nan", 1)))
    return tmp / "nan.onnx"


def test_a_sampler_returning_non_finite_actions_is_a_fault_with_the_reason(model, tmp_path_factory):
    """The node starts (the model loads), stands up (no sampler needed), but refuses RUN with the reason, and
    /diagnostics is ERROR with it: a sampler that only returns NaN is a fault, never a silently frozen pose."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    tmp = tmp_path_factory.mktemp("nan_model")
    params = tolerant_of_stalls(write_params(tmp, nan_model(model, tmp)), 0.5)
    graph = Graph([NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params)
    graph.start()
    probe = Probe("nan_probe")
    robot = FakeRobot(probe)
    seen: list = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: seen.extend(
        s for s in msg.status if s.name == "diffuseloco_policy"), 10)
    try:
        probe.wait_for(lambda: probe.latest_status() is not None, 60.0, "status")
        stand_up(probe, robot)
        time.sleep(CONFIG.controller.stand_up_duration + 0.2)
        run = probe.request(R.REQUEST_RUN)
        assert not run.accepted and "sampler returned non-finite actions" in run.message, run.message
        probe.wait_for(lambda: any(s.level == DiagnosticStatus.ERROR for s in seen), 3.0, "an ERROR diagnostic")
        error = next(s for s in seen if s.level == DiagnosticStatus.ERROR)
        assert "sampler returned non-finite actions" in error.message, error.message
        assert graph.processes[0][1].poll() is None
        assert_safe(probe.commands_since(0.0))
    finally:
        robot.close()
        probe.close()
        graph.stop()
