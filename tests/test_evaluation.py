"""The evaluation CLI: policies through the deployed PolicyLoop in the simulator, metrics from ground truth."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffuseloco_policy.command_feedback import without_feedback
from diffuseloco_policy.config import load_config
from diffuseloco_learning.evaluation import EvalPolicy, LoopOptions, load_matrix, make_policy, run_episode
from diffuseloco_learning.evaluation.scenarios import matrix_from_dict
from diffuseloco_learning.evaluation.cli import evaluate, main
from diffuseloco_sim.tick_clock import TickClock
from diffuseloco_learning.evaluation.report import bar_value
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_sim import CyberDogSim, SimConfig

from tiny_model import export_standing_model, first_skills

CONFIG = load_config()


@pytest.fixture(scope="module")
def standing_model(tmp_path_factory):
    return export_standing_model(tmp_path_factory.mktemp("model") / "standing.onnx")


@pytest.fixture(scope="module")
def cli_run(standing_model, tmp_path_factory):
    """The CLI end to end on the tiny matrix: the standing model and the experts."""
    out = tmp_path_factory.mktemp("eval")
    assert main(["--policy", str(standing_model), "--policy", "expert", "--scenarios", "eval_tiny",
                 "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_cli_writes_results_json_markdown_and_plots(cli_run):
    out, report = cli_run
    labels = [p["label"] for p in report["policies"]]
    assert labels == ["standing[onnx]", "expert"]
    assert report["policies"][0]["kind"] == "diffusion" and report["policies"][1]["kind"] == "expert"
    for label in labels:
        episodes = report["episodes"][label]
        assert {e["scenario"] for e in episodes} == {"trot_vx+0.50", "stand_to_trot"}
        assert all(e["latency"]["calls"] > 100 and e["deadline_misses"] == 0 for e in episodes)
        assert set(report["summary"][label]["groups"]) == {"speed", "switch"}
    table = (out / "results.md").read_text()
    assert "| standing[onnx] | speed |" in table and "| expert | switch |" in table
    assert f"Command ranges (the scenarios' speeds are fractions of them): {CONFIG.describe_command_ranges()}." in table
    assert "trot vx [-0.5, 1]" in table and "every episode draws its own physics" in table
    assert report["plots"] and all((out / p).stat().st_size > 1000 for p in report["plots"])
    assert any(p.startswith("velocity_") for p in report["plots"])
    assert any(p.startswith("contacts_") for p in report["plots"])


def test_a_standing_policy_asked_to_trot_fails_the_metrics(cli_run):
    """The tiny model only holds the default pose: asked to trot at 0.5 m/s it stays put, so the ground-truth
    tracking error is ~0.5 and the switch to trot is not a success (no diagonal gait appears)."""
    _, report = cli_run
    summary = report["summary"]["standing[onnx]"]
    speed = summary["scenarios"]["trot_vx+0.50"]
    assert speed["error_vx"] == pytest.approx(0.5, abs=0.05)
    switch = summary["groups"]["switch"]
    assert switch["transitions"] == 1 and switch["transition_success"] == 0.0
    assert summary["skills"]["trot"]["gait"]["four_feet_share"] > 0.9


def test_the_experts_track_better_than_the_standing_policy(cli_run):
    _, report = cli_run
    expert, standing = report["summary"]["expert"], report["summary"]["standing[onnx]"]
    assert expert["overall"]["falls"] == 0
    assert expert["scenarios"]["trot_vx+0.50"]["error_vx"] < 0.15
    assert expert["overall"]["error_vx"] < standing["overall"]["error_vx"] - 0.2
    assert expert["groups"]["switch"]["transition_success"] == 1.0
    assert expert["skills"]["trot"]["gait"]["diagonal"] > 0.8


def _trot_only(duration: float = 1.5):
    matrix = load_matrix("eval_tiny", CONFIG)
    trot = next(s for s in matrix.scenarios if s.name == "trot_vx+0.50")
    return dataclasses.replace(matrix, scenarios=(dataclasses.replace(trot, duration_s=duration),))


def test_ablation_variants_are_run_and_reported(standing_model, tmp_path):
    report = evaluate([str(standing_model)], _trot_only(), CONFIG, seeds=1, out=tmp_path,
                      ablations=["current_frame", "open_loop_chunk"], plots=False, log=lambda *_: None)
    by_label = {p["label"]: p for p in report["policies"]}
    assert set(by_label) == {"standing[onnx] (current_frame)", "standing[onnx] (open_loop_chunk8)"}
    assert by_label["standing[onnx] (current_frame)"]["current_frame"] is True
    assert by_label["standing[onnx] (open_loop_chunk8)"]["replan_every"] == 8
    calls = {label: report["episodes"][label][0]["latency"]["calls"] for label in by_label}
    # open loop: one chunk per 8 ticks instead of one per tick
    assert calls["standing[onnx] (open_loop_chunk8)"] < calls["standing[onnx] (current_frame)"] / 6


def test_a_current_frame_model_runs_on_the_current_frame(tmp_path):
    model = export_standing_model(tmp_path / "current.onnx", delayed_inputs=False)
    report = evaluate([str(model)], _trot_only(), CONFIG, seeds=1, out=tmp_path / "eval", ablations=["none"],
                      plots=False, log=lambda *_: None)
    (entry,) = report["policies"]
    assert entry["label"] == "current[onnx]" and entry["current_frame"] is True


def test_episodes_are_reproducible(standing_model):
    matrix = _trot_only(1.0)
    sim = CyberDogSim(CONFIG, SimConfig.randomized().without_pushes())
    policy = make_policy(f"{standing_model},warm=2", CONFIG)
    first, trace_a = run_episode(CONFIG, sim, policy, matrix.scenarios[0], matrix, seed=3)
    second, trace_b = run_episode(CONFIG, sim, policy, matrix.scenarios[0], matrix, seed=3)
    np.testing.assert_array_equal(trace_a.achieved, trace_b.achieved)
    assert first["segments"] == second["segments"]


def test_warm_zero_means_the_full_sampler(standing_model):
    assert make_policy(f"{standing_model},warm=0", CONFIG).runtime.warm_start_steps is None
    assert make_policy(f"{standing_model},warm=2", CONFIG).runtime.warm_start_steps == 2


class Collapse(EvalPolicy):
    """A 'policy' that folds the legs: the robot lies down, which must count as a fall."""

    label = kind = "collapse"

    def sample(self, obs_window, goal_window):
        action = ActionDecoder(CONFIG).action(np.asarray(CONFIG.controller.lying_pose))
        return np.repeat(action[None], CONFIG.action.horizon, axis=0)


def test_a_collapsing_policy_is_a_fall_and_ends_the_episode():
    matrix = _trot_only(3.0)
    sim = CyberDogSim(CONFIG)
    result, trace = run_episode(CONFIG, sim, Collapse(), matrix.scenarios[0], matrix, seed=0,
                                options=LoopOptions(inference_wait_s=1.0))
    assert result["fell"] and result["fall_reason"] == "fallen"
    assert result["survival_s"] < 3.0 and trace.t[-1] == pytest.approx(result["fall_time_s"])


def test_default_matrix_covers_speeds_turns_and_every_skill_switch():
    matrix = load_matrix("eval_default", CONFIG)
    names = {s.name for s in matrix.scenarios}
    skills = [s.name for s in CONFIG.skills]
    moving = [s for s in CONFIG.skills if s.vx != (0.0, 0.0)]
    for a in skills:
        for b in skills:
            if a != b:
                assert f"{a}_to_{b}" in names
    for skill in moving:
        assert f"{skill.name}_turn_left" in names and f"{skill.name}_turn_right" in names
        speeds = [s for s in matrix.scenarios if s.group == "speed" and s.segments[-1].skill == skill.id]
        assert len(speeds) >= 2
        assert all(skill.vx[0] <= s.segments[-1].command[0] <= skill.vx[1] for s in speeds)
    left = next(s for s in matrix.scenarios if s.name == "trot_turn_left")
    assert left.segments[-1].command[2] > 0
    assert matrix.randomized and matrix.seeds == 5
    assert all(s.duration_s == 20.0 and s.segments[0].lead_in for s in matrix.scenarios)
    switch = next(s for s in matrix.scenarios if s.name == "trot_to_pace")
    assert [seg.skill for seg in switch.segments] == [0, CONFIG.skill("trot").id, CONFIG.skill("pace").id]


@pytest.mark.parametrize("skill", ["bound", "trot"])
def test_the_top_speed_matrices_hold_one_skill_at_the_top_of_its_range(skill):
    matrix = load_matrix(f"eval_{skill}_top", CONFIG)
    held = CONFIG.skill(skill)
    (scenario,) = matrix.scenarios
    assert scenario.segments[-1].skill == held.id and scenario.segments[-1].command[0] == held.vx[1]
    assert matrix.randomized and matrix.seeds == 16 and scenario.duration_s == 20.0


def _standing_policy(kind: str):
    """A tiny untrained policy of `kind` whose actions stay within +-0.02 (the legs hold the default pose)."""
    import torch

    from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, build_policy
    from diffuseloco_learning.diffusion.mlp import MLPConfig
    from diffuseloco_policy.normalizer import PolicyNormalizer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    normalizer = PolicyNormalizer.fit(rng.normal(size=(64, CONFIG.observation.obs_dim)),
                                      rng.normal(size=(64, CONFIG.observation.goal_dim)),
                                      rng.uniform(-0.02, 0.02, size=(64, 12)))
    spec = ModelSpec(kind=kind, denoiser=DenoiserConfig(width=32, heads=2, layers=1, dropout_attn=0.0),
                     mlp=MLPConfig(hidden=(32,)))
    return build_policy(CONFIG, spec, normalizer)


def test_mlp_baseline_onnx_and_torch_checkpoints_run_through_the_same_loop(tmp_path):
    from diffuseloco_learning.export import export_onnx
    from diffuseloco_learning.model_checkpoint import save_checkpoint

    mlp_onnx = export_onnx(_standing_policy("bc_mlp"), CONFIG, tmp_path / "mlp.onnx")[0]
    diffusion_ckpt = save_checkpoint(tmp_path / "diffusion.safetensors", _standing_policy("diffusion"), CONFIG)
    report = evaluate([str(mlp_onnx), f"{diffusion_ckpt},warm=2,label=torch-diffusion"], _trot_only(2.0), CONFIG,
                      seeds=1, out=tmp_path / "out", ablations=["none"], plots=False, log=lambda *_: None)
    kinds = {p["label"]: (p["kind"], p["backend"], p["warm_start_steps"]) for p in report["policies"]}
    assert kinds == {"mlp[onnx]": ("bc_mlp", "onnx", None), "torch-diffusion": ("diffusion", "torch", 2)}
    for label in kinds:
        episode = report["episodes"][label][0]
        assert not episode["fell"] and episode["sampler_errors"] == 0 and episode["latency"]["calls"] > 50
        assert report["summary"][label]["overall"]["error_vx"] == pytest.approx(0.5, abs=0.1)


def test_runs_of_different_policies_merge_into_one_comparison(standing_model, tmp_path):
    from diffuseloco_learning.evaluation.merge import MergeError, load_run, main as merge_main, merge_runs

    quiet = dict(plots=False, log=lambda *_: None)
    evaluate([f"{standing_model},label=standing"], _trot_only(), CONFIG, seeds=1, out=tmp_path / "a",
             ablations=["none"], **quiet)
    evaluate(["expert"], _trot_only(), CONFIG, seeds=2, out=tmp_path / "b", ablations=["none"], **quiet)
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "all")]) == 0
    merged = json.loads((tmp_path / "all" / "results.json").read_text())
    assert list(merged["summary"]) == ["standing", "expert"]
    assert merged["summary"]["expert"]["overall"]["episodes"] == 2
    table = (tmp_path / "all" / "results.md").read_text()
    assert "| standing | **all** | 1 |" in table and "| expert | **all** | 2 |" in table
    assert (tmp_path / "all" / "comparison.png").stat().st_size > 1000

    with pytest.raises(MergeError, match="more than one run"):
        merge_runs([load_run(tmp_path / "a"), load_run(tmp_path / "a")], ["a", "a2"])
    evaluate(["expert"], _trot_only(), CONFIG, seeds=1, out=tmp_path / "c", ablations=["none"], base_seed=5, **quiet)
    with pytest.raises(MergeError, match="base_seed"):
        merge_runs([load_run(tmp_path / "a"), load_run(tmp_path / "c")], ["a", "c"])
    trot = CONFIG.skill("trot")
    narrowed = dataclasses.replace(CONFIG, skills=tuple(dataclasses.replace(s, vx=(0.0, 0.6)) if s is trot else s
                                                        for s in CONFIG.skills))
    evaluate(["expert"], _trot_only(), narrowed, seeds=1, out=tmp_path / "d", ablations=["none"], **quiet)
    assert "trot vx [0, 0.6]" in (tmp_path / "d" / "results.md").read_text()
    with pytest.raises(MergeError, match="command_ranges"):   # an envelope run is not the full-range run
        merge_runs([load_run(tmp_path / "b"), load_run(tmp_path / "d")], ["b", "d"])
    evaluate(["expert"], _trot_only(), without_feedback(CONFIG), seeds=2, out=tmp_path / "e", ablations=["none"],
             **quiet)
    with pytest.raises(MergeError, match="command_feedback"):  # a run without the velocity loop in its config
        merge_runs([load_run(tmp_path / "b"), load_run(tmp_path / "e")], ["b", "e"])


def test_a_merged_report_states_the_gains_of_every_run(standing_model, tmp_path):
    from diffuseloco_learning.evaluation.merge import load_run, merge_runs

    quiet = dict(plots=False, log=lambda *_: None)
    evaluate(["expert"], _trot_only(), CONFIG, seeds=1, out=tmp_path / "a", ablations=["none"], **quiet)
    evaluate([f"{standing_model},label=soft,gains=trot:0.8"], _trot_only(), CONFIG, seeds=1, out=tmp_path / "b",
             ablations=["none"], **quiet)
    merged = merge_runs([load_run(tmp_path / "a"), load_run(tmp_path / "b")], ["a", "b"])
    assert merged["meta"]["policy_gains"] == {"expert": "robot.kp in every skill", "soft": "trot x0.8"}


class RecordingZeroPolicy(EvalPolicy):
    """Holds the default pose and records the command term of the newest goal frame it is given."""

    label = kind = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[np.ndarray] = []
        self._term = CONFIG.observation.goal_slices()["command"]
        self._scale = np.asarray(next(t.scale for t in CONFIG.observation.goal_terms if t.name == "command"))

    def sample(self, obs_window, goal_window):
        self.commands.append(goal_window[-1, self._term] / self._scale)
        return np.zeros((CONFIG.action.horizon, CONFIG.robot.num_joints))


def test_the_velocity_loop_raises_the_models_command_of_a_dog_that_does_not_move():
    """A policy that stands still, asked to trot at 0.5 m/s: inside the loop the command it is given climbs toward
    the range's top; with the loop off it stays the user's. The scored command is the user's in both."""
    matrix = _trot_only(3.5)
    seen = {}
    for name, config in (("on", CONFIG), ("off", without_feedback(CONFIG))):
        policy = RecordingZeroPolicy()
        result, trace = run_episode(config, CyberDogSim(config), policy, matrix.scenarios[0], matrix, seed=0)
        seen[name] = np.array(policy.commands)[-50:, 0]
        assert result["segments"][0]["command"][0] == pytest.approx(0.5)
        np.testing.assert_allclose(trace.command[-1], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(seen["off"], 0.5, atol=1e-6)
    top = min(0.5 + CONFIG.command_feedback.max_correction[0], CONFIG.skill("trot").vx[1])
    assert seen["on"][-1] == pytest.approx(top) and np.all(np.diff(seen["on"]) >= 0)


def test_feedback_off_in_a_policy_spec_runs_that_policy_without_the_loop(standing_model, tmp_path):
    report = evaluate([f"{standing_model},label=raw,feedback=off", f"{standing_model},label=looped"], _trot_only(0.5),
                      CONFIG, seeds=1, out=tmp_path, ablations=["none"], plots=False, log=lambda *_: None)
    assert {p["label"]: p["command_feedback"] for p in report["policies"]} == {"raw": False, "looped": True}
    assert report["meta"]["feedback_off"] == ["raw"]
    assert "Outer velocity loop: velocity loop on (" in (tmp_path / "results.md").read_text()
    assert "; off for raw." in (tmp_path / "results.md").read_text()
    with pytest.raises(ValueError, match="feedback=on\\|off"):
        make_policy(f"{standing_model},feedback=maybe", CONFIG)


def test_noise_in_a_policy_spec_sets_the_samplers_temperature(standing_model):
    policy = make_policy(f"{standing_model},warm=2,noise=0.25", CONFIG)
    assert policy.runtime.noise_scale == 0.25 and policy.label == "standing[onnx,noise0.25]"
    assert policy.describe()["noise_scale"] == 0.25
    assert make_policy(f"{standing_model},warm=0,noise=1", CONFIG).label == "standing[onnx,warm0,noise1]"
    assert make_policy(str(standing_model), CONFIG).runtime.noise_scale == 0.0   # as deployed
    with pytest.raises(ValueError, match="noise_scale"):
        make_policy(f"{standing_model},noise=2", CONFIG)


def test_an_unscored_metric_is_charted_as_missing_not_as_perfect():
    """A policy that falls in every episode has no tracking error: its chart bar must not read as 0 error."""
    assert bar_value(None) == (0.0, " n/a")
    assert bar_value(0.151) == (0.151, " 0.151")


def test_pushes_are_switched_on_from_the_command_line(tmp_path, capsys):
    """--pushes runs a matrix's randomized physics with the shoves on, and the report says so; on a matrix of
    nominal physics it is refused (pushes belong to the randomized setting)."""
    out = tmp_path / "pushed"
    assert main(["--policy", "expert", "--scenarios", "eval_smoke", "--seeds", "1", "--duration", "1.0",
                 "--pushes", "--no-plots", "--out", str(out)]) == 0
    physics = json.loads((out / "results.json").read_text())["meta"]["physics"]
    assert physics == "SimConfig.randomized()"
    with pytest.raises(SystemExit) as refused:
        main(["--policy", "expert", "--scenarios", "eval_tiny", "--pushes", "--out", str(tmp_path / "x")])
    assert refused.value.code == 2 and "nominal physics" in capsys.readouterr().err


def test_tick_clock_jitters_around_the_nominal_period_reproducibly():
    assert {TickClock(10, 0.0, seed=1).next_period() for _ in range(100)} == {10}
    clock = TickClock(10, 3.0, seed=1)
    periods = np.array([clock.next_period() for _ in range(4000)])
    assert periods.min() >= 1 and periods.max() <= 19
    assert abs(periods.mean() - 10.0) < 0.2 and 2.6 < periods.std() < 3.4
    again = TickClock(10, 3.0, seed=1)
    np.testing.assert_array_equal(periods, [again.next_period() for _ in range(4000)])
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tick jitter"):
            TickClock(10, bad, seed=0)


class TimedCollapse(Collapse):
    """Collapse, noting the simulated time at every tick."""

    def __init__(self):
        super().__init__()
        self.times = []

    def before_tick(self, sim):
        self.times.append(sim.time)


@pytest.mark.parametrize("jitter", [0.0, 3.0])
def test_tick_jitter_varies_the_simulated_time_between_ticks(jitter):
    """The live graph's separate wall clocks, in the harness: with jitter the simulator advances a varying number
    of physics steps between ticks, without it exactly one control period."""
    matrix = _trot_only(2.0)
    policy, sim = TimedCollapse(), CyberDogSim(CONFIG)
    run_episode(CONFIG, sim, policy, matrix.scenarios[0], matrix, seed=0,
                options=LoopOptions(inference_wait_s=1.0, tick_jitter_steps=jitter))
    steps = np.round(np.diff(policy.times) / sim.physics_dt).astype(int)
    assert len(steps) > 50
    if jitter:
        assert len(set(steps)) > 5 and abs(steps.mean() - sim.steps_per_tick) < 1.0
    else:
        assert set(steps) == {sim.steps_per_tick}
    assert LoopOptions(tick_jitter_steps=jitter).name == ("tick_jitter3" if jitter else "deployed")


def test_tick_jitter_is_set_from_the_command_line_and_reported(tmp_path):
    out = tmp_path / "jittered"
    assert main(["--policy", "expert", "--scenarios", "eval_smoke", "--seeds", "1", "--duration", "1.0",
                 "--tick-jitter", "2", "--no-plots", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["meta"]["tick_jitter_steps"] == 2.0
    assert [p["ablation"] for p in report["policies"]] == ["tick_jitter2"]
    assert "jittered by a standard deviation of 2" in (out / "results.md").read_text()


def test_gains_in_a_policy_spec_reach_the_motors_and_the_report(standing_model, tmp_path, monkeypatch):
    """gains= drives the model's skill at that multiple of robot.kp in the simulator (RUNNING only; standing up
    keeps the controller's gains), and the report says which gains each policy ran with."""
    from diffuseloco_sim import CyberDogSim

    sent: list[float] = []
    original = CyberDogSim.command_pd
    monkeypatch.setattr(CyberDogSim, "command_pd",
                        lambda self, q, dq, kp=None, kd=None, tau=None: sent.append(float(np.max(kp))) or
                        original(self, q, dq, kp, kd, tau))
    report = evaluate([f"{standing_model},label=soft,gains=trot:0.7", f"{standing_model},label=plain"],
                      _trot_only(1.5), CONFIG, seeds=1, out=tmp_path, ablations=["none"], plots=False,
                      log=lambda *_: None)
    kp, stand = CONFIG.robot.kp, CONFIG.controller.stand_kp   # the model's data gains; standing up at the controller's
    driven = [k for k in sent if k > 0]   # passive ticks send kp 0
    assert any(k == pytest.approx(0.7 * kp) for k in driven)
    assert min(driven) == pytest.approx(min(0.7 * kp, stand)) and max(driven) == pytest.approx(max(kp, stand))
    assert report["meta"]["policy_gains"] == {"soft": "trot x0.7", "plain": "robot.kp in every skill"}
    assert "Policy gains (multiples of robot.kp): soft: trot x0.7." in (tmp_path / "results.md").read_text()


def test_the_hop_matrix_covers_speeds_turns_and_every_switch_to_and_from_hop():
    matrix = load_matrix("eval_hop", CONFIG)
    hop = CONFIG.skill("hop")
    others = [s.name for s in CONFIG.skills if s.name != "hop"]
    switches = {s.name for s in matrix.scenarios if s.group == "switch"}
    assert switches == {f"{a}_to_hop" for a in others} | {f"hop_to_{b}" for b in others}
    speeds = [s.segments[-1].command for s in matrix.scenarios if s.group == "speed"]
    assert {c[0] for c in speeds} == {0.0, 0.25 * hop.vx[1], 0.5 * hop.vx[1], hop.vx[1]}
    turns = {s.name: s.segments[-1].command for s in matrix.scenarios if s.group == "turn"}
    assert turns["hop_turn_left"][2] == hop.yaw_rate[1] and turns["hop_turn_right"][2] == hop.yaw_rate[0]
    assert matrix.gaits["hop"] == "in_step"
    everything = load_matrix("eval_default", CONFIG)
    assert {"hop_to_bound", "bound_to_hop", "hop_turn_left"} <= {s.name for s in everything.scenarios}


def test_a_model_without_a_skill_skips_its_scenarios_and_says_so(tmp_path):
    """A model trained before the robot config gained hop runs every scenario it can, over its own skills, and the
    report names the hop scenarios it did not run (a table that silently lacked them would read as complete).
    The experts run them all."""
    older = export_standing_model(tmp_path / "older.onnx", config=first_skills(CONFIG, len(CONFIG.skills) - 1))
    matrix = matrix_from_dict({
        "name": "hop_check", "seeds": 1, "episode": {"duration_s": 2.0, "lead_in_s": 0.5, "settle_s": 0.5},
        "physics": {"randomized": False}, "gaits": {"trot": "diagonal", "hop": "in_step"},
        "groups": [{"name": "speed", "kind": "speed", "skills": ["trot", "hop"], "vx_fractions": [0.5]},
                   {"name": "switch", "kind": "switch", "skills": ["trot", "hop"], "at_s": 1.0}]}, CONFIG)
    logged = []
    report = evaluate([str(older), "expert"], matrix, CONFIG, seeds=1, out=tmp_path / "eval", ablations=["none"],
                      plots=False, log=logged.append)
    label = report["policies"][0]["label"]
    skipped = report["meta"]["skipped"]
    assert list(skipped) == [label] and skipped[label]["skills"] == ["hop"]
    trot_only = {s.name for s in matrix.scenarios if "hop" not in s.name}
    assert trot_only and {e["scenario"] for e in report["episodes"][label]} == trot_only
    assert set(skipped[label]["scenarios"]) == {s.name for s in matrix.scenarios} - trot_only
    assert {e["scenario"] for e in report["episodes"]["expert"]} == {s.name for s in matrix.scenarios}
    assert report["summary"]["expert"]["overall"]["falls"] == 0
    text = (tmp_path / "eval" / "results.md").read_text()
    assert f"{label} has no skill hop in its model file, 3 scenario(s) not run" in text and "trot_to_hop" in text
    assert any("skipping 3 scenario(s)" in line for line in logged)


def test_the_hop_pattern_needs_its_feet_together_and_in_the_air():
    """in_step: the share of ticks with the four feet together; 0 without flight ticks (a stand's feet are
    together too), and a trot scores low."""
    from diffuseloco_learning.evaluation.episode import gait_stats, pattern_share

    hop = np.array([[1, 1, 1, 1]] * 6 + [[0, 0, 1, 1]] + [[0, 0, 0, 0]] * 5, dtype=bool)
    stand = np.ones((12, 4), dtype=bool)
    trot = np.array([[1, 0, 0, 1], [0, 1, 1, 0]] * 6, dtype=bool)
    assert pattern_share(gait_stats(hop), "in_step", 0.2) == pytest.approx(11 / 12)
    assert pattern_share(gait_stats(stand), "in_step", 0.2) == 0.0
    assert pattern_share(gait_stats(trot), "in_step", 0.2) == 0.0
    assert load_matrix("eval_default", CONFIG).gaits["hop"] == "in_step"
