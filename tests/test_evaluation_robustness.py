"""Robustness beyond the training ranges: each named condition changes the simulator parameters it names (and
nothing else), and the study runs model and experts on the same draws, side by side."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffuseloco_policy.config import ConfigError, load_config
from diffuseloco_learning.evaluation.cli import evaluate, main as evaluate_main, sim_config
from diffuseloco_learning.evaluation.conditions import load_study, study_from_dict
from diffuseloco_learning.evaluation.robustness import main as robustness_main
from diffuseloco_learning.evaluation.scenarios import load_matrix
from diffuseloco_sim import CyberDogSim, SimConfig

from tiny_model import export_standing_model

CONFIG = load_config()
STUDY = load_study()
BASE = SimConfig.randomized().without_pushes()   # eval_default's physics


@pytest.mark.parametrize("name, field, low, high", [
    ("payload", "payload_mass", 1.5, 2.5), ("weak_motors", "motor_strength", 0.8, 0.85),
    ("weak_motors", "kp_scale", 0.8, 0.85), ("low_friction", "friction", 0.3, 0.5)])
def test_a_condition_draws_its_parameter_in_its_range_and_leaves_the_rest(name, field, low, high):
    sim = CyberDogSim(CONFIG, STUDY.condition(name).apply(BASE))
    nominal = CyberDogSim(CONFIG, BASE)
    drawn = [dataclasses.asdict(sim.reset(seed=s)) for s in range(20)]
    values = np.array([d[field] for d in drawn])
    assert low <= values.min() and values.max() <= high and np.ptp(values) > 0.2 * (high - low)
    training = getattr(BASE.randomization, field)
    assert values.max() <= training[0] or values.min() >= training[1]   # outside what the data saw
    untouched = "armature_scale"
    assert [d[untouched] for d in drawn] == [dataclasses.asdict(nominal.reset(seed=s))[untouched] for s in range(20)]


def test_the_sensor_latency_condition_delays_the_reported_joints_by_10_ms():
    for config, lag in ((SimConfig(), 0), (STUDY.condition("sensor_latency").apply(SimConfig()), 5)):
        sim = CyberDogSim(CONFIG, config)
        sim.command_position(np.asarray(CONFIG.robot.default_pose) + 0.3)
        true, reported = [], []
        for _ in range(20):
            sim.step(1)   # one 2 ms physics step
            true.append(sim.data.qpos[7:19].copy())
            reported.append(sim.robot_state().joint_position.copy())
        true, reported = np.array(true), np.array(reported)
        np.testing.assert_allclose(reported[lag:], true[:len(true) - lag], atol=1e-12)
        assert not np.allclose(reported[lag + 1:], true[:len(true) - lag - 1])


def test_the_shipped_study_names_the_conditions_beyond_training():
    assert [c.name for c in STUDY.conditions] == ["payload", "weak_motors", "low_friction", "sensor_latency",
                                                 "tick_jitter"]
    assert STUDY.condition("sensor_latency").sensor_latency_s == 0.010 > BASE.sensor_latency_s
    assert STUDY.condition("tick_jitter").tick_jitter_steps == 3.0
    scenarios = len(load_matrix(STUDY.matrix, CONFIG).scenarios)
    assert scenarios * STUDY.seeds * len(STUDY.conditions) >= 1000   # the full study: 1,000+ episodes per policy


@pytest.mark.parametrize("spec, message", [
    ({"conditions": {"x": {"randomization": {"payload": [1, 2]}}}}, "unknown keys"),
    ({"conditions": {"x": {"randomization": {"friction": [0.5, 0.3]}}}}, "low <= high"),
    ({"conditions": {"x": {"sensor_latency_s": -0.01}}}, ">= 0"),
    ({"conditions": {"x": {"about": "nothing"}}}, "changes nothing"),
    ({"conditions": {}}, "non-empty"),
])
def test_a_bad_study_is_refused_with_the_place_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        study_from_dict(spec, where="bad.yaml")


def _short(matrix_name: str = "eval_smoke", duration: float = 0.8):
    matrix = load_matrix(matrix_name, CONFIG)
    kept = tuple(dataclasses.replace(s, duration_s=duration) for s in matrix.scenarios if s.group == "speed")
    return dataclasses.replace(matrix, scenarios=kept, settle_s=0.1)


def test_a_condition_reaches_every_episode_of_every_policy_with_its_own_draws(tmp_path):
    payload = STUDY.condition("payload")
    nominal = evaluate(["expert"], _short(), CONFIG, seeds=2, out=tmp_path / "n", ablations=["none"], plots=False,
                       log=lambda *_: None)
    report = evaluate(["expert", "expert,feedback=off,label=own"], _short(), CONFIG, seeds=2, out=tmp_path / "p",
                      ablations=["none"], plots=False, log=lambda *_: None, condition=payload)
    drawn = [e["physics"] for e in report["episodes"]["expert"]]
    assert all(1.5 <= d["payload_mass"] <= 2.5 for d in drawn)
    assert drawn == [e["physics"] for e in report["episodes"]["own"]]          # the same robots for both
    assert not {e["seed"] for e in report["episodes"]["expert"]} & {e["seed"] for e in nominal["episodes"]["expert"]}
    assert report["meta"]["condition"]["name"] == "payload" and "payload_mass 1.5-2.5" in report["meta"]["physics"]
    assert sim_config(_short()) == BASE


def test_the_tick_jitter_condition_jitters_the_loop_and_refuses_a_second_jitter(tmp_path, capsys):
    report = evaluate(["expert"], _short(), CONFIG, seeds=1, out=tmp_path, ablations=["none"],
                      plots=False, log=lambda *_: None, condition=STUDY.condition("tick_jitter"))
    assert report["meta"]["tick_jitter_steps"] == 3.0 and report["policies"][0]["ablation"] == "tick_jitter3"
    with pytest.raises(SystemExit):
        evaluate_main(["--policy", "expert", "--condition", "tick_jitter", "--tick-jitter", "2",
                       "--out", str(tmp_path / "x")])
    assert "sets the tick jitter itself" in capsys.readouterr().err


def test_the_study_puts_model_and_experts_side_by_side_and_resumes(tmp_path, capsys):
    model = export_standing_model(tmp_path / "standing.onnx")
    out = tmp_path / "study"
    args = ["--policy", str(model), "--policy", "expert", "--conditions", "payload", "low_friction",
            "--scenarios", "eval_tiny", "--seeds", "1", "--duration", "0.8", "--no-plots", "--out", str(out)]
    assert robustness_main(args) == 0
    report = json.loads((out / "robustness.json").read_text())
    assert [c["name"] for c in report["conditions"]] == ["payload", "low_friction"]
    for condition in report["conditions"]:
        assert set(condition["summary"]) == {"standing[onnx]", "expert"}
    friction = json.loads((out / "low_friction" / "results.json").read_text())["episodes"]["expert"]
    assert all(0.3 <= e["physics"]["friction"] <= 0.5 for e in friction)
    table = (out / "robustness.md").read_text()
    assert "| payload | payload_mass 1.5-2.5 | standing[onnx] |" in table
    assert "| low_friction | friction 0.3-0.5 | expert |" in table
    assert "falls <= expert" in table and report["totals"]["expert"]["episodes"] == 2
    capsys.readouterr()
    assert robustness_main(args) == 0
    assert "payload: already in" in capsys.readouterr().out
