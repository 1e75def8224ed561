"""A bare `--policy MODEL` evaluates what the policy node runs with that file: its command envelope, its per-skill
gains, the node's warm start and sampler noise, the stack's velocity loop. Spec keys and --full-ranges are the
ablations, and a model that cannot run as deployed says so."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from diffuseloco_bringup.graph import params_file
from diffuseloco_policy.config import load_config
from diffuseloco_policy.gains import describe_scales, kp_scales
from diffuseloco_policy.model_file import read_onnx_info, within_trained_ranges
from diffuseloco_policy.runtime import DEPLOYED_NOISE_SCALE, DEPLOYED_WARM_START_STEPS
from diffuseloco_learning.evaluation.cli import main
from diffuseloco_learning.evaluation.policies import make_policy
from diffuseloco_learning.training.export import main as export_main

from tiny_model import export_standing_model

CONFIG = load_config()
SHORT = ["--scenarios", "eval_tiny", "--duration", "1.2", "--no-plots"]


@pytest.fixture(scope="module")
def shipped_like(tmp_path_factory):
    """A model file as the shipped one is made: a warm-start graph beside it, a narrowed trot envelope and a
    per-skill gain in its metadata (export --from-model)."""
    folder = tmp_path_factory.mktemp("models")
    source = export_standing_model(folder / "source.onnx")
    out = folder / "dog.onnx"
    export_main(["--from-model", str(source), "--out", str(out), "--envelope", "trot.vx=0:0.4",
                 "--envelope", "trot.yaw_rate=-0.3:0.3", "--gain-scale", "trot=0.8"])
    return out


def _node_parameters(target: str) -> dict:
    return yaml.safe_load(params_file(target).read_text())["diffuseloco_policy"]["ros__parameters"]


def test_the_node_defaults_are_the_deployed_settings_of_the_bringup_configs():
    """The node's parameter defaults and the evaluation's bare spec read the same constants; the bringup files the
    robot and the simulated graph start with must say the same."""
    for target in ("robot", "sim"):
        params = _node_parameters(target)
        assert (params["warm_start_steps"], params["noise_scale"]) == (DEPLOYED_WARM_START_STEPS, DEPLOYED_NOISE_SCALE)


def test_a_bare_model_runs_with_the_files_envelope_gains_and_the_nodes_sampler(shipped_like, tmp_path):
    out = tmp_path / "bare"
    assert main(["--policy", str(shipped_like), "--policy", "expert", "--out", str(out), *SHORT]) == 0
    report = json.loads((out / "results.json").read_text())
    model, expert = report["policies"]
    trained = read_onnx_info(shipped_like, CONFIG).config
    assert model["label"] == "dog[onnx]" and model["notes"] == []
    assert (model["warm_start_steps"], model["noise_scale"]) == (DEPLOYED_WARM_START_STEPS, DEPLOYED_NOISE_SCALE)
    assert model["kp_scales"] == kp_scales(trained) and model["kp_scales"]["trot"] == 0.8
    assert model["command_feedback"] and expert["command_feedback"]
    # the node's clamp: the run's ranges are the file's envelope, for the experts too (the same episodes)
    allowed = within_trained_ranges(CONFIG, trained)
    assert report["meta"]["command_ranges"] == allowed.describe_command_ranges()
    assert allowed.skill("trot").vx == (0.0, 0.4) and CONFIG.skill("trot").vx[1] > 0.4
    assert {e["scenario"] for e in report["episodes"]["expert"]} == {"trot_vx+0.20", "stand_to_trot"}
    assert report["meta"]["policy_gains"]["dog[onnx]"] == describe_scales(kp_scales(trained))
    assert str(shipped_like) in report["meta"]["command_ranges_from"]


def test_spec_keys_and_full_ranges_are_the_ablations(shipped_like, tmp_path):
    out = tmp_path / "ablated"
    assert main(["--policy", f"{shipped_like},warm=0,noise=1,gains=none,feedback=off", "--full-ranges",
                 "--out", str(out), *SHORT]) == 0
    report = json.loads((out / "results.json").read_text())
    (policy,) = report["policies"]
    assert policy["label"] == "dog[onnx,warm0,noise1]"
    assert (policy["warm_start_steps"], policy["noise_scale"]) == (None, 1.0)
    assert set(policy["kp_scales"].values()) == {1.0} and not policy["command_feedback"]
    assert report["meta"]["command_ranges"] == CONFIG.describe_command_ranges()
    assert {e["scenario"] for e in report["episodes"][policy["label"]]} == {"trot_vx+0.50", "stand_to_trot"}


def test_a_model_without_its_warm_start_graph_runs_the_full_sampler_and_says_so(shipped_like, tmp_path):
    alone = tmp_path / "alone.onnx"
    shutil.copy(shipped_like, alone)
    policy = make_policy(str(alone), CONFIG)
    assert policy.runtime.warm_start_steps is None and policy.label == "alone[onnx,warm0]"
    assert any("alone.warm2.onnx" in note and "would refuse" in note for note in policy.notes)
    assert make_policy(f"{alone},warm=0", CONFIG).notes == []   # asked for: an ablation, not a surprise
