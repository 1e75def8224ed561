"""The policies that ship in models/ (the default the node loads, and the first preview; see their cards): intact
(the card's hashes), accepted by the robot config, carrying their envelope, and trotting without a fall.

These tests need the file: a checkout without it fails here instead of silently skipping.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from diffuseloco_bringup.graph import params_file
from diffuseloco_policy.config import load_config
from diffuseloco_learning.evaluation import load_matrix
from diffuseloco_learning.evaluation.cli import evaluate, robot_config
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from diffuseloco_policy.model_file import default_model_path, model_view, skills_lacking, within_trained_ranges
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_learning.evaluation.episode import samples
from diffuseloco_sim import CyberDogSim
from diffuseloco_policy.runtime import load_runtime
from diffuseloco_learning.training.model_card import verify_card

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
# file stem -> whether the model predicts the experts' velocity feed-forward (ModelSpec.predict_velocity)
SHIPPED = {"diffuseloco_cyberdog2_preview": False, "diffuseloco_cyberdog2": True}
CONFIG = load_config()


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def model(request) -> Path:
    return MODELS_DIR / f"{request.param}.onnx"


def test_the_card_matches_the_shipped_files(model):
    assert model.is_file(), f"{model} is missing: the shipped policy is part of the repository"
    assert verify_card(model.with_suffix(".md")) == []


def test_it_loads_against_the_robot_config_with_its_warm_start_graph(model):
    runtime = load_runtime(model, robot=CONFIG, warm_start_steps=2)
    assert runtime.info.spec.kind == "diffusion" and runtime.info.spec.delayed_inputs
    assert runtime.info.spec.predict_velocity == SHIPPED[model.stem]
    assert runtime.warm_start_steps == 2


@pytest.fixture(scope="module")
def allowed(model):
    """The robot config with the commands the policy node would give this model (cut to the file's ranges), as
    `evaluation --ranges-from` builds it."""
    return robot_config(None, model)


def test_its_file_limits_trot_to_the_envelope_it_was_checked_in(model, allowed):
    """Outside it the models fell on some seeds (the preview at 1 m/s and in fast right turns, the default at 1 m/s
    trot and 0.4 m/s bound); the node clamps commands to the file's ranges."""
    trot = allowed.skill("trot")
    assert trot.vx == (-0.15, 0.6) and trot.yaw_rate == (-0.5, 0.5)
    assert CONFIG.skill("trot").vx[1] > trot.vx[1]
    bound = allowed.skill("bound").vx
    assert bound == ((0.0, 0.3) if model.resolve() == default_model_path().resolve() else CONFIG.skill("bound").vx)


def test_the_default_is_what_the_node_loads_when_no_model_is_named():
    default = default_model_path()
    assert default.name in {f"{stem}.onnx" for stem in SHIPPED} and default.is_file()


@pytest.fixture(scope="module")
def short_run(model, allowed, tmp_path_factory):
    """eval_smoke: trot at full forward speed, turning left and right, and stand -> trot, randomized physics,
    6 s each, through the deployed PolicyLoop (with its velocity loop) and the sampler settings the bringup
    configs give the node; speeds within the ranges the model file allows, as the policy node clamps them."""
    params = yaml.safe_load(params_file("robot").read_text())["diffuseloco_policy"]["ros__parameters"]
    spec = f"{model},warm={params['warm_start_steps']},noise={params['noise_scale']},label=shipped"
    report = evaluate([spec], load_matrix("eval_smoke", allowed), allowed, seeds=1,
                      out=tmp_path_factory.mktemp("eval"), ablations=["none"], plots=False, log=lambda *_: None)
    return report["summary"]["shipped"]


def test_it_trots_without_falling_and_starts_from_stand(short_run):
    overall = short_run["overall"]
    assert overall["episodes"] == 4 and overall["falls"] == 0
    assert overall["transitions"] == 1 and overall["transition_success"] == 1.0


def test_the_trot_is_diagonal_and_tracks_the_command(short_run):
    trot = short_run["skills"]["trot"]
    assert trot["expected_share"] > 0.8
    # at the envelope's top (0.6 m/s) the preview walks about 0.45, the feed-forward model 0.6
    # (docs/research/policy_eval/tracking.md); standing still would miss by the whole command (0.3-0.6 m/s)
    assert trot["mean_error_vx"] < 0.2 and trot["error_yaw_rate"] < 0.25


def test_it_runs_with_the_robot_config_over_its_own_skills_and_refuses_hop(model):
    """The robot config has hop, the shipped files do not: they load against it, run over their four skills (the
    goal they are fed has their one-hot) and the loop refuses hop, keeping trot in effect; the dog trots on."""
    runtime = load_runtime(model, robot=CONFIG, warm_start_steps=2, noise_scale=0.0)
    lacking = skills_lacking(CONFIG, runtime.info.config)
    assert lacking == {CONFIG.skill("hop").id: "hop"}
    view = model_view(within_trained_ranges(CONFIG, runtime.info.config), runtime.info.config)
    loop = PolicyLoop(view, runtime.predict, inference_wait_s=1.0, reset_sampler=runtime.reset,
                      lacking_skills=lacking)
    sim = CyberDogSim(CONFIG, seed=0)
    dt = CONFIG.rates.control_dt

    def ticks(n: int, t0: float) -> float:
        for k in range(n):
            report = loop.tick(t0 + k * dt, *samples(sim, t0 + k * dt))
            sim.command_pd(report.command.q, report.command.dq, report.command.kp, report.command.kd,
                           report.command.tau)
            loop.worker.wait_idle(5.0)   # the sampler sees the state it was given, whatever the machine load
            sim.step()
        return t0 + n * dt

    try:
        t = ticks(2, 0.0)
        assert loop.request(ControllerRequest.STAND_UP)[0]
        while not loop.controller.stand_complete and t < 5.0:
            t = ticks(1, t)
        assert loop.request(ControllerRequest.RUN)[0]
        loop.set_skill_command(CONFIG.skill("trot").id, 0.3, 0.0, 0.0)
        t = ticks(100, t)
        state = loop.set_skill_command(CONFIG.skill("hop").id, 0.3, 0.0, 0.0)
        assert state.skill == CONFIG.skill("trot").id and "refused skill hop" in loop.skill_refusal
        t = ticks(100, t)
        assert loop.controller.state == ControllerState.RUNNING and not sim.fallen()
        assert loop.skill.skill == CONFIG.skill("trot").id and loop.sampler_failures == 0
    finally:
        loop.close()


def test_it_can_be_fine_tuned_from_the_file_alone(model):
    """Its weights come back from the graphs (checked there against every graph to 1e-4), so a next training
    stage can start from the shipped file without the checkpoint it was exported from."""
    from diffuseloco_learning.training.from_onnx import recover_policy

    policy, info = recover_policy(model)
    assert info.spec.predict_velocity == SHIPPED[model.stem]
    assert sum(p.numel() for p in policy.parameters()) > 600_000
