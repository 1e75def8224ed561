"""The evaluation's episodes in worker processes: the same results as in one process, in the same order."""

from __future__ import annotations

import json
import re
import time

import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_learning.evaluation import LoopOptions, load_matrix
from diffuseloco_learning.evaluation.cli import main
from diffuseloco_learning.evaluation.policies import make_policy
from diffuseloco_learning.evaluation.episode_pool import (WORKER_THREADS, EpisodeFailed, EpisodeJob, EpisodeRunner,
                                                          Setting, run_episodes)
from diffuseloco_sim import SimConfig

from tiny_model import export_standing_model

CONFIG = load_config()
TIMING = ("latency", "wall_s")   # wall-clock measurements: they differ between any two runs


@pytest.fixture(scope="module")
def standing_model(tmp_path_factory):
    return export_standing_model(tmp_path_factory.mktemp("model") / "standing.onnx")


def evaluation(out, model, workers: int) -> dict:
    """The tiny matrix, 2 s episodes, two draws per scenario: the model and the experts."""
    assert main(["--policy", str(model), "--policy", "expert", "--scenarios", "eval_tiny", "--duration", "2.0",
                 "--seeds", "2", "--seed", "3", "--no-plots", "--workers", str(workers), "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def without_timing(value):
    """The report with every wall-clock field left out, at any depth."""
    if isinstance(value, dict):
        return {key: without_timing(v) for key, v in value.items() if key not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def test_episodes_in_two_workers_give_the_serial_results(standing_model, tmp_path):
    serial = evaluation(tmp_path / "serial", standing_model, 1)
    parallel = evaluation(tmp_path / "parallel", standing_model, 2)
    assert list(parallel["episodes"]) == list(serial["episodes"]) == ["standing[onnx]", "expert"]
    for label, episodes in parallel["episodes"].items():
        assert len(episodes) == 4 and len({e["seed"] for e in episodes}) == 4   # two scenarios, two draws each
        assert all(e["latency"]["calls"] > 50 for e in episodes)
    # every episode, its falls, tracking errors, gait shares, seeds and physics, and the summaries built on them
    assert without_timing(parallel) == without_timing(serial)
    # what the comparison rests on differs between the policies, so the runs are not equal by accident
    tracking = {label: [s.get("abs_error") for e in eps for s in e["segments"]]
                for label, eps in serial["episodes"].items()}
    assert tracking["standing[onnx]"] != tracking["expert"]


def test_an_episode_that_raises_in_a_worker_names_itself_and_stops_the_run(tmp_path):
    matrix = load_matrix("eval_tiny", CONFIG)
    setting = Setting(CONFIG, SimConfig(), matrix, 0)
    scenario = matrix.scenarios[0]
    jobs = [EpisodeJob(str(tmp_path / "gone.onnx"), "gone", CONFIG, LoopOptions(), scenario, i, 40 + i)
            for i in range(3)]
    start = time.monotonic()
    with pytest.raises(EpisodeFailed, match=rf"episode gone \| {re.escape(scenario.name)} #0 seed 40 failed: "
                                            r"FileNotFoundError: policy model .*gone.onnx does not exist"):
        list(run_episodes(jobs, setting, workers=2))
    assert time.monotonic() - start < 120


def test_workers_must_be_at_least_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--policy", "expert", "--scenarios", "eval_tiny", "--workers", "0", "--out", str(tmp_path)])
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_a_worker_opens_each_model_once_with_the_serial_runs_threads_unless_the_spec_names_them(standing_model):
    runner = EpisodeRunner(Setting(CONFIG, SimConfig(), load_matrix("eval_tiny", CONFIG), 0), threads=WORKER_THREADS)
    plain, named = runner.policy(str(standing_model)), runner.policy(f"{standing_model},threads=3")
    assert runner.policy(str(standing_model)) is plain
    serial = make_policy(str(standing_model), CONFIG)
    assert plain.runtime.intra_op_threads == serial.runtime.intra_op_threads and named.runtime.intra_op_threads == 3


def test_the_robustness_study_passes_its_workers_on_and_gets_the_serial_results(tmp_path, monkeypatch):
    from diffuseloco_learning.evaluation import cli, robustness

    asked = []

    def recorded(jobs, setting, workers=1, policies=None):
        asked.append(workers)
        return run_episodes(jobs, setting, workers, policies)

    monkeypatch.setattr(cli, "run_episodes", recorded)
    common = ["--policy", "expert", "--scenarios", "eval_tiny", "--seeds", "2", "--duration", "1.5", "--no-plots"]
    study_out = tmp_path / "study"
    assert robustness.main([*common, "--conditions", "payload", "--workers", "2", "--out", str(study_out)]) == 0
    assert main([*common, "--condition", "payload", "--out", str(tmp_path / "serial")]) == 0
    assert asked == [2, 1]
    study = json.loads((study_out / "payload" / "results.json").read_text())
    serial = json.loads((tmp_path / "serial" / "results.json").read_text())
    assert len(serial["episodes"]["expert"]) == 4
    assert without_timing(study["episodes"]) == without_timing(serial["episodes"])
