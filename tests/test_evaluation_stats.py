"""Evaluation statistics: one physics draw per episode (the same for every policy), per-skill summaries, falls with
an exact confidence bound, merged runs whose counts add up, and older report files still read."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from diffuseloco_policy.config import load_config
from diffuseloco_learning.evaluation import load_matrix
from diffuseloco_learning.evaluation.cli import evaluate
from diffuseloco_learning.evaluation.merge import MergeError, load_run, merge_runs
from diffuseloco_learning.evaluation.report import LEAD_IN, fall_skill, markdown, summarize_policy
from diffuseloco_learning.evaluation.seeding import episode_seed
from diffuseloco_learning.evaluation.stats import binomial_cdf, describe_bound, upper_bound

from tiny_model import export_standing_model

CONFIG = load_config()
ROOT = Path(__file__).resolve().parents[1]
LEGACY_REPORT = ROOT / "docs/research/policy_eval/firmware_robot/results.json"
QUIET = dict(ablations=["none"], plots=False, log=lambda *_: None)


# ------------------------------------------------------------------------------------------------------- seeds
def test_every_episode_of_the_default_matrix_gets_its_own_seed():
    names = [s.name for s in load_matrix("eval_default", CONFIG).scenarios]
    seeds = [episode_seed(2000, name, i) for name in names for i in range(6)]
    assert len(set(seeds)) == len(seeds) == 6 * len(names)
    assert seeds == [episode_seed(2000, name, i) for name in names for i in range(6)]   # reproducible
    assert not set(seeds) & {episode_seed(3000, name, i) for name in names for i in range(6)}
    assert not set(seeds) & {episode_seed(2000, name, i, "payload") for name in names for i in range(6)}
    # keyed by name: a scenario keeps its draws whatever else the matrix holds
    assert episode_seed(2000, "trot_vx+0.50", 3) == episode_seed(2000, "trot_vx+0.50", 3)
    assert all(0 <= s < 2 ** 32 for s in seeds)
    with pytest.raises(ValueError, match="episode index"):
        episode_seed(0, "x", -1)


@pytest.fixture(scope="module")
def standing_model(tmp_path_factory):
    return export_standing_model(tmp_path_factory.mktemp("model") / "standing.onnx")


def _short_smoke(duration: float = 0.8):
    """eval_smoke's speed and turn scenarios (randomized physics), cut to `duration` s after RUN and scored from
    0.1 s into each segment."""
    matrix = load_matrix("eval_smoke", CONFIG)
    kept = tuple(dataclasses.replace(s, duration_s=duration) for s in matrix.scenarios if s.group != "switch")
    return dataclasses.replace(matrix, scenarios=kept, settle_s=0.1)


@pytest.fixture(scope="module")
def two_policies(standing_model, tmp_path_factory):
    """The standing model and the experts, 2 episodes of each of 3 scenarios, randomized physics."""
    out = tmp_path_factory.mktemp("same_draws")
    return evaluate([f"{standing_model},label=model", "expert"], _short_smoke(), CONFIG, seeds=2, out=out,
                    base_seed=8000, **QUIET)


def test_each_episode_draws_its_own_robot_and_every_policy_meets_the_same_ones(two_policies):
    model, expert = two_policies["episodes"]["model"], two_policies["episodes"]["expert"]
    assert len(model) == len(expert) == 6
    seeds = [e["seed"] for e in model]
    assert len(set(seeds)) == 6 and two_policies["meta"]["physics_draws"] == 6
    assert [(e["scenario"], e["seed"], e["physics"]) for e in model] == \
        [(e["scenario"], e["seed"], e["physics"]) for e in expert]
    assert len({e["physics"]["friction"] for e in model}) == 6   # six different robots, not two repeated
    assert seeds == [episode_seed(8000, e["scenario"], i % 2) for i, e in enumerate(model)]


def test_an_episode_reproduces_from_the_seed_in_the_report(two_policies, tmp_path):
    again = evaluate(["expert"], _short_smoke(), CONFIG, seeds=2, out=tmp_path, base_seed=8000, **QUIET)
    first, second = two_policies["episodes"]["expert"], again["episodes"]["expert"]
    assert [(e["seed"], e["physics"], e["segments"]) for e in first] == \
        [(e["seed"], e["physics"], e["segments"]) for e in second]


# ------------------------------------------------------------------------------------------------- the bound
def test_the_fall_bound_matches_known_clopper_pearson_values():
    assert upper_bound(0, 720) == pytest.approx(1 - 0.05 ** (1 / 720)) and round(100 * upper_bound(0, 720), 2) == 0.42
    assert upper_bound(1, 10) == pytest.approx(0.3942, abs=1e-4)     # tables of the exact binomial bound
    assert upper_bound(5, 20) == pytest.approx(0.4556, abs=1e-4)
    assert upper_bound(3, 3) == 1.0 and upper_bound(0, 0) is None
    assert describe_bound(0, 720) == "0 / 720 (<= 0.42 %)"
    for bad in ((3, 2), (-1, 5), (1.0, 5)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            upper_bound(*bad)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_the_bound_leaves_five_percent_for_the_observed_count_or_fewer(counts):
    k, n = counts
    bound = upper_bound(k, n)
    assert k / n < bound < 1.0
    assert binomial_cdf(k, n, bound) == pytest.approx(0.05, abs=1e-6)
    assert upper_bound(k + 1, n) > bound   # one more fall never bounds the rate lower


# --------------------------------------------------------------------------------------- per-skill summaries
def _segment(skill, start, end, error_vx, scored=True):
    entry = {"skill": skill, "command": [0.5, 0.0, 0.0], "start_s": start, "end_s": end, "ticks": 10}
    if scored:
        entry.update(abs_error=[error_vx, 0.0, 0.1], mean_error=[error_vx, 0.0, 0.1], mean_achieved=[0.5, 0, 0],
                     gait={"ticks": 10, "two_feet_ticks": 8, "four_feet_share": 0.2, "diagonal": 1.0,
                           "lateral": 0.0, "front_rear": 0.0})
    return entry


def _episode(scenario, segments, fall_at=None, transitions=()):
    return {"scenario": scenario, "group": "g", "seed": len(scenario), "fell": fall_at is not None,
            "fall_time_s": fall_at, "survival_s": fall_at or 20.0, "segments": segments,
            "transitions": list(transitions), "latency": {"calls": 0}, "deadline_misses": 0, "sampler_errors": 0}


def test_per_skill_summaries_attribute_falls_errors_and_switches_to_the_skill_in_effect():
    """Any skill names (here a fifth, hop): a fall counts for the skill in effect, a switch for its target, and a
    skill's episodes are those that reached it."""
    episodes = [
        _episode("trot", [_segment("trot", 1.0, 20.0, 0.10)]),
        _episode("trot_fall", [_segment("trot", 1.0, 20.0, 0.30)], fall_at=12.0),
        _episode("trot_to_hop", [_segment("trot", 1.0, 10.0, 0.20), _segment("hop", 10.0, 20.0, 0.05)],
                 fall_at=15.0, transitions=[{"from": "trot", "to": "hop", "success": True}]),
        _episode("hop_to_trot", [_segment("hop", 1.0, 10.0, 0.07), _segment("trot", 10.0, 20.0, 0.0, False)],
                 fall_at=9.0, transitions=[{"from": "hop", "to": "trot", "success": False}]),
        _episode("early", [_segment("trot", 1.0, 20.0, 0.0, False)], fall_at=0.4),
    ]
    assert [fall_skill(e) for e in episodes] == [None, "trot", "hop", "hop", LEAD_IN]
    skills = summarize_policy(episodes, {"trot": "diagonal", "hop": "all_feet"}, 0.2)["skills"]
    assert list(skills) == ["trot", "hop", LEAD_IN]
    trot, hop = skills["trot"], skills["hop"]
    assert (trot["episodes"], trot["falls"]) == (3, 1)         # hop_to_trot fell before its trot, early in lead-in
    assert (hop["episodes"], hop["falls"]) == (2, 2)
    assert (skills[LEAD_IN]["episodes"], skills[LEAD_IN]["falls"]) == (5, 1)
    assert trot["error_vx"] == pytest.approx((0.10 + 0.30 + 0.20) / 3)   # scored segments only
    assert hop["error_vx"] == pytest.approx(0.06) and hop["scored_segments"] == 2
    assert (trot["transitions"], trot["transition_success"]) == (1, 0.0)
    assert (hop["transitions"], hop["transition_success"]) == (1, 1.0)
    assert hop["fall_upper95"] == 1.0 and trot["fall_upper95"] == pytest.approx(upper_bound(1, 3))
    overall = summarize_policy(episodes, {}, 0.2)["overall"]
    assert (overall["episodes"], overall["falls"]) == (5, 4)


def test_the_report_sets_each_skill_against_the_experts(two_policies, tmp_path):
    table = markdown(two_policies["summary"], two_policies["meta"])
    assert "## Against expert, on the same episodes" in table
    model, expert = two_policies["summary"]["model"], two_policies["summary"]["expert"]
    ratio = model["skills"]["trot"]["error_vx"] / expert["skills"]["trot"]["error_vx"]
    assert f"| model | trot | {100 * (ratio - 1):+.0f} % |" in table
    assert model["overall"]["falls"] == expert["overall"]["falls"] == 0
    assert "| 0 (<= 39 %) | 0 (<= 39 %) |" in table   # 0 of 6 each: 1 - 0.05 ** (1 / 6) = 39 %


# ------------------------------------------------------------------------------------------------ merged runs
def _with_a_fall(report: dict, label: str) -> dict:
    """The report with its first episode of `label` turned into a fall at 0.3 s (its summary left stale)."""
    changed = copy.deepcopy(report)
    changed["episodes"][label][0].update(fell=True, fall_time_s=0.3, survival_s=0.3)
    return changed


def test_merged_seed_sets_pool_one_policys_counts(tmp_path):
    runs = [evaluate(["expert"], _short_smoke(), CONFIG, seeds=1, out=tmp_path / str(base), base_seed=base,
                     **QUIET) for base in (100, 200)]
    runs[1] = _with_a_fall(runs[1], "expert")
    merged = merge_runs(runs, ["a", "b"])
    overall = merged["summary"]["expert"]["overall"]
    assert (overall["episodes"], overall["falls"]) == (6, 1)          # counts add; the summary is recomputed
    assert overall["fall_upper95"] == pytest.approx(upper_bound(1, 6))
    assert merged["meta"]["physics_draws"] == 6 and merged["meta"]["base_seed"] == "100, 200"
    assert merged["summary"]["expert"]["skills"][LEAD_IN]["falls"] == 1
    with pytest.raises(MergeError, match="same episode"):
        merge_runs([runs[0], dict(runs[0], meta=dict(runs[0]["meta"], base_seed=999))], ["a", "a2"])
    legacy = copy.deepcopy(runs[1])
    del legacy["meta"]["seeding"]
    with pytest.raises(MergeError, match="seeding"):                  # older runs drew other robots
        merge_runs([runs[0], legacy], ["a", "old"])


def test_an_older_report_file_is_read_rendered_and_recounted():
    """A report written before per-episode seeding (no seeding scheme, no per-skill falls) still renders, says
    how its episodes were seeded, and merges into a summary whose counts equal its own."""
    old = load_run(LEGACY_REPORT)
    assert "seeding" not in old["meta"]
    table = markdown(old["summary"], old["meta"])
    assert "episode seed i is 8000 * 1000 + i in every scenario (an older run" in table
    (label,) = old["summary"]
    recounted = merge_runs([old], [str(LEGACY_REPORT)])["summary"][label]
    for key in ("episodes", "falls", "transitions"):
        assert recounted["overall"][key] == old["summary"][label]["overall"][key]
    assert sum(k["falls"] for k in recounted["skills"].values()) == old["summary"][label]["overall"]["falls"]
    assert math.isclose(recounted["overall"]["error_vx"], old["summary"][label]["overall"]["error_vx"])


def test_a_file_that_is_not_a_report_is_refused_clearly(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"summary": {}}))
    with pytest.raises(MergeError, match="not an evaluation report"):
        load_run(tmp_path)
