"""Gait modes from foot contacts: the classifier on gait timing tables and on the experts, the per-episode metrics
(dominant mode, purity, flips) on sequences with known answers, and the modes in an evaluation's report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffuseloco_policy.command_classes import parse_command_classes, with_command_classes
from diffuseloco_policy.config import load_config
from diffuseloco_policy.gaits import GAITS
from diffuseloco_learning.evaluation.cli import evaluate
from diffuseloco_learning.evaluation.modes import (UNCLEAR, classify, flips, mode_summary, pooled_modes,
                                                   stretch_modes)
from diffuseloco_learning.evaluation.scenarios import load_matrix
from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_sim import SimConfig

from tiny_model import export_standing_model

CONFIG = load_config()
HZ = CONFIG.rates.control_hz


def gait(name: str, seconds: float) -> np.ndarray:
    """Foot contacts (FR, FL, RR, RL) of a gait from its timing table: a leg is down while its phase is below the
    duty factor; a stand has all four down."""
    t = np.arange(int(round(seconds * HZ))) / HZ
    if name == "stand":
        return np.ones((len(t), 4), dtype=bool)
    g = GAITS[name]
    return ((t[:, None] / g.period + np.array(g.offsets)[None, :]) % 1.0) < g.duty


def scrambled(seconds: float, seed: int = 0) -> np.ndarray:
    """Contacts with no gait in them: each foot down or up at random, one tick at a time."""
    return np.random.default_rng(seed).random((int(round(seconds * HZ)), 4)) < 0.5


@pytest.mark.parametrize("name", ["stand", "trot", "pace", "bound", "hop"])
def test_each_timing_table_classifies_as_its_gait(name):
    assert classify(gait(name, 3.0), HZ) == [name] * 6


def test_a_gait_change_is_one_flip_and_purity_is_the_dominant_share():
    """4 s of trot then 2 s of pace: 8 + 4 windows, one flip, trot dominant at 8 / 12."""
    modes = pooled_modes([stretch_modes(np.concatenate([gait("trot", 4.0), gait("pace", 2.0)]), HZ)])
    assert modes["counts"] == {"trot": 8, "pace": 4} and modes["flips"] == 1
    assert modes["dominant"] == "trot" and modes["purity"] == pytest.approx(8 / 12)
    back = stretch_modes(np.concatenate([gait("trot", 2.0), gait("pace", 2.0), gait("trot", 2.0)]), HZ)
    assert back["flips"] == 2


def test_one_odd_window_or_an_unclear_stretch_is_no_flip():
    """A gait held for less than a second is not a mode the policy changed to; unclear windows (a stumble) count
    against the purity but neither flip nor dominate."""
    odd = stretch_modes(np.concatenate([gait("trot", 3.0), gait("pace", 0.5), gait("trot", 2.5)]), HZ)
    assert odd["counts"] == {"trot": 11, "pace": 1} and odd["flips"] == 0
    stumble = pooled_modes([stretch_modes(np.concatenate([gait("pace", 2.0), scrambled(1.0), gait("pace", 1.0)]),
                                          HZ)])
    assert stumble["counts"] == {"pace": 6, UNCLEAR: 2} and stumble["flips"] == 0
    assert stumble["dominant"] == "pace" and stumble["purity"] == pytest.approx(6 / 8)
    lost = pooled_modes([stretch_modes(scrambled(2.0, seed=1), HZ)])
    assert lost["dominant"] is None and lost["purity"] is None and lost["counts"] == {UNCLEAR: 4}
    assert flips(["trot", "trot", UNCLEAR, "pace", "pace"]) == 1 and flips(["trot", "pace"] * 3) == 0


def test_across_seeds_the_share_of_each_chosen_mode_per_command():
    """Three episodes of 'walk': two trot purely, one paces after a short trot (a flip): chosen trot 2/3, pace
    1/3; the window shares, the purities and the flips pooled."""
    def episode(*stretches):
        return {"modes": {"walk": pooled_modes([stretch_modes(np.concatenate(stretches), HZ)])}}

    episodes = [episode(gait("trot", 3.0)), episode(gait("trot", 3.0)), episode(gait("trot", 1.0), gait("pace", 2.0))]
    summary = mode_summary(episodes)["walk"]
    assert summary["episodes"] == 3 and summary["chosen_share"] == pytest.approx({"trot": 2 / 3, "pace": 1 / 3})
    assert summary["time_share"] == pytest.approx({"trot": 14 / 18, "pace": 4 / 18})
    assert summary["purity_min"] == pytest.approx(4 / 6) and summary["purity_mean"] == pytest.approx((1 + 1 + 4 / 6) / 3)
    assert summary["flips"] == 1 and summary["episodes_with_flips"] == 1


@pytest.mark.parametrize("skill", ["stand", "trot", "pace", "bound", "hop"])
def test_every_expert_classifies_as_its_own_skill(skill):
    """Two short randomized episodes per skill (pushes included), half its top speed with a turn: after 1 s the
    expert's contacts are its own gait in at least 95 % of the windows."""
    spec = CONFIG.skill(skill)
    command = (0.5 * spec.vx[1], 0.0, 0.5 * spec.yaw_rate[1])
    for seed in (11, 12):
        rollout = ExpertRollout(CONFIG, SimConfig.randomized(), seed=seed, delayed=True)
        contacts = []
        for k in range(int(3.0 * HZ)):
            rollout.tick(spec.id if k >= 25 else 0, command)
            assert not rollout.sim.fallen()
            if k >= 75:
                contacts.append(rollout.sim.foot_contacts())
        modes = pooled_modes([stretch_modes(np.array(contacts), HZ)])
        assert modes["dominant"] == skill and modes["purity"] >= 0.95, (seed, modes)


def test_the_report_has_the_modes_of_a_class_model_per_class_and_of_the_experts_per_skill(tmp_path):
    """A class model asked to trot runs class walk: its segments, episode and summary name walk (this untrained
    model stands, and the metric says so); the experts' trot is trot."""
    classes = with_command_classes(CONFIG, parse_command_classes("walk=trot+pace,jump=bound+hop"))
    model = export_standing_model(tmp_path / "classes.onnx", config=classes)
    matrix = load_matrix("eval_tiny", CONFIG)
    trot = next(s for s in matrix.scenarios if s.name == "trot_vx+0.50")
    matrix = dataclasses.replace(matrix, scenarios=(dataclasses.replace(trot, duration_s=2.5),))
    report = evaluate([f"{model},label=classes", "expert"], matrix, CONFIG, seeds=1, out=tmp_path / "eval",
                      ablations=["none"], plots=False, log=lambda *_: None)
    (segment,) = report["episodes"]["classes"][0]["segments"]
    walk = classes.command("walk")
    assert segment["command_class"] == "walk" and segment["command"] == list(walk.clamp_command(0.5, 0.0, 0.0))
    assert report["episodes"]["classes"][0]["modes"]["walk"]["dominant"] == "stand"
    assert report["summary"]["classes"]["modes"]["walk"]["chosen_share"] == {"stand": 1.0}
    expert = report["summary"]["expert"]["modes"]
    assert list(expert) == ["trot"] and expert["trot"]["chosen_share"] == {"trot": 1.0}
    text = (tmp_path / "eval" / "results.md").read_text()
    assert "## Gait modes per policy and command" in text and "| classes | walk | 1 | stand 1.00 |" in text
