"""The pipeline: one command from the experts to a model file, its card, its evaluation and the comparisons,
which skips what is done, resumes an interrupted training, and redoes exactly what a changed setting touches.

The end-to-end tests run a tiny recipe (a few thousand transitions, a few dozen training steps, two short
evaluation episodes per policy); the shipped recipe is checked against the shipped file and its card.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from diffuseloco_policy.config import ConfigError, load_config
from diffuseloco_policy.gains import kp_scales
from diffuseloco_policy.model_file import read_onnx_info
from diffuseloco_learning.data.dataset import dataset_attrs
from diffuseloco_learning.pipeline import RunOptions, Runner, build_steps, load_recipe
from diffuseloco_learning.pipeline.__main__ import main
from diffuseloco_learning.pipeline.recipe import candidate_model, stage_dict
from diffuseloco_learning.pipeline.runner import Manifest, decide
from diffuseloco_learning.pipeline.ship import ShipGate, gate_problems
from diffuseloco_learning.presets import presets_dir
from diffuseloco_learning.training import Trainer
from diffuseloco_learning.training.checkpoint import read_checkpoint
from diffuseloco_learning.training.config import load_train_config, train_config_from_dict
from diffuseloco_learning.training.export import narrow_envelope, parse_envelope
from diffuseloco_learning.training.model_card import card_section, verify_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "diffuseloco_cyberdog2.onnx"
SMALL = {"model": {"denoiser": {"width": 32, "heads": 2, "layers": 1}}, "batch_size": 32, "warmup_steps": 5,
         "checkpoint_every": 10, "log_every": 5, "threads": 1}


def tiny_recipe(root: Path, second_steps: int = 30) -> dict:
    """The shipped recipe's shape at toy size: two datasets (clean and DART), two stages, the same export
    settings, the three comparisons; evaluation on the tiny matrix, one 2 s episode per scenario."""
    return {
        "name": "tiny", "work_dir": str(root / "work"), "device": "cpu",
        "experts": {"episodes": 1, "seconds": 1.0, "max_fall_rate": 0.5, "args": ["--skills", "trot", "--ideal"]},
        "datasets": [{"name": "clean", "transitions": 1200, "seed": 0, "episode_s": 3.0},
                     {"name": "dart", "transitions": 600, "seed": 1, "episode_s": 3.0, "action_noise": 0.15}],
        "stages": [{"name": "first", "config": "train_small_qd", "datasets": ["clean"],
                    "overrides": {**SMALL, "total_steps": 20}},
                   {"name": "second", "config": "train_small_qd", "datasets": ["clean", "dart"], "resume": True,
                    "overrides": {**SMALL, "total_steps": second_steps}}],
        "export": {"model": str(root / "models" / "tiny.onnx"), "envelope": ["bound.vx=0:0.3"],
                   "gain_scales": ["trot=0.9"]},
        "evaluation": {"scenarios": "eval_tiny", "seeds": 1, "seed": 7, "policy_options": "warm=2,noise=0",
                       "plots": False, "args": ["--duration", "2.0"]},
        "ship": {"max_falls": None, "max_error_ratio": None},   # a toy model: shipped whatever it does
        "comparisons": {"table": str(root / "docs" / "table.md"), "variants": [
            {"name": "mlp_bc", "about": "an MLP", "policy_options": "",
             "train": {"model": {"kind": "bc_mlp", "mlp": {"hidden": [32, 32]}, "predict_velocity": True}}},
            {"name": "current_frame", "about": "current frame", "train": {"delayed": False},
             "data": {"expert_on_current_frame": True}},
            {"name": "open_loop", "about": "open loop", "ablation": "open_loop_chunk"}]},
    }


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def stamps(work: Path) -> dict[str, str]:
    return {name: entry.get("stamp") for name, entry in Manifest(work).steps.items()}


class StepCounter:
    """Counts training steps per run directory, and interrupts one run at a chosen step as Ctrl-C would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: dict[str, int] = {}
        self.interrupt: tuple[str, int] | None = None
        original = Trainer.train_step

        def train_step(trainer: Trainer, batch):
            name = str(trainer.out_dir)
            if self.interrupt == (name, trainer.step):
                raise KeyboardInterrupt
            self.steps[name] = self.steps.get(name, 0) + 1
            return original(trainer, batch)

        monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny recipe run as a user would: interrupted in its first training stage, run again to the end, run
    a third time with nothing changed. Returns what each run did."""
    root = tmp_path_factory.mktemp("pipeline")
    recipe = write_recipe(root / "tiny.yaml", tiny_recipe(root))
    work = root / "work"
    with pytest.MonkeyPatch.context() as monkeypatch:
        counter = StepCounter(monkeypatch)
        counter.interrupt = (str(work / "train" / "first"), 12)
        interrupted = main([str(recipe), "--workers", "1"])
        after_interrupt = json.loads((work / "manifest.json").read_text())["steps"]
        counter.interrupt, counter.steps = None, {}
        finished = main([str(recipe), "--workers", "1"])
        trained = dict(counter.steps)
        before = stamps(work)
        counter.steps = {}
        again = main([str(recipe), "--workers", "1"])
        return {"root": root, "recipe": recipe, "work": work, "codes": (interrupted, finished, again),
                "after_interrupt": after_interrupt, "trained": trained, "retrained": dict(counter.steps),
                "stamps": (before, stamps(work))}


def test_an_interrupted_training_resumes_from_its_checkpoint(tiny):
    assert tiny["codes"][:2] == (130, 0)
    first = tiny["after_interrupt"]["train/first"]
    assert first["status"] == "running" and "data/clean" in tiny["after_interrupt"]
    # the second run trained the first stage's remaining 8 steps only, then the second stage's 10
    runs = tiny["work"] / "train"
    assert tiny["trained"][str(runs / "first")] == 20 - 12
    assert tiny["trained"][str(runs / "second")] == 30 - 20
    assert tiny["trained"][str(tiny["work"] / "comparisons" / "mlp_bc" / "train" / "first")] == 20
    final = read_checkpoint(runs / "second" / "ckpt_latest")["state"]
    assert final["step"] == 30


def test_a_second_run_skips_everything(tiny):
    assert tiny["codes"][2] == 0
    before, after = tiny["stamps"]
    assert before == after and all(before.values())
    assert tiny["retrained"] == {}


def test_the_model_file_carries_the_recipes_deployment_settings_and_a_verified_card(tiny):
    model = tiny["root"] / "models" / "tiny.onnx"
    info = read_onnx_info(model)
    assert info.config.skill("bound").vx == (0.0, 0.3)
    assert kp_scales(info.config)["trot"] == pytest.approx(0.9)
    card = model.with_suffix(".md")
    assert verify_card(card) == []
    data = "\n".join(card_section(card, "Data"))
    assert "`clean.zarr`" in data and "`dart.zarr`" in data and "DART" in data
    training = "\n".join(card_section(card, "Training"))
    assert "`first`: trained from scratch" in training and "`second`: resumed from the run above at step 20" in training
    evaluation = "\n".join(card_section(card, "Evaluation"))
    assert "| tiny |" in evaluation and "| experts |" in evaluation


def test_the_comparisons_are_trained_on_the_same_budget_with_one_change_each(tiny):
    work = tiny["work"]
    for variant in ("mlp_bc", "current_frame"):
        state = read_checkpoint(work / "comparisons" / variant / "train" / "second" / "ckpt_latest")["state"]
        assert state["step"] == 30
    mlp = read_onnx_info(work / "comparisons" / "mlp_bc" / "mlp_bc.onnx")
    assert mlp.spec.kind == "bc_mlp" and kp_scales(mlp.config)["trot"] == pytest.approx(0.9)
    current = read_onnx_info(work / "comparisons" / "current_frame" / "current_frame.onnx")
    assert current.spec.kind == "diffusion" and not current.spec.delayed_inputs
    for name in ("clean_current_frame", "dart_current_frame"):
        assert dataset_attrs(work / "data" / f"{name}.zarr")["generator"]["expert_delayed"] is False
    assert dataset_attrs(work / "data" / "dart_current_frame.zarr")["generator"]["action_noise_std"] == 0.15
    open_loop = json.loads((work / "eval" / "open_loop" / "results.json").read_text())
    assert open_loop["policies"][0]["replan_every"] == 8


def test_the_table_has_one_row_per_policy_from_the_same_episodes(tiny):
    table = (tiny["root"] / "docs" / "table.md").read_text()
    merged = json.loads((tiny["work"] / "eval" / "comparisons" / "results.json").read_text())
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| policy")]
    labels = [row.split(" | ")[0][2:] for row in rows[:5]]
    assert labels == ["tiny", "mlp_bc", "current_frame", "open_loop (open_loop_chunk8)", "experts"]
    for row, label in zip(rows, labels):
        overall = merged["summary"][label]["overall"]
        cells = row.split(" | ")
        assert cells[2:4] == [str(overall["episodes"]), str(overall["falls"])]
        assert cells[5] == ("-" if overall["error_vx"] is None else f"{overall['error_vx']:.3f}")
    experts = rows[4].split(" | ")
    assert experts[5] != "-" and experts[6] == "+0 %"   # the experts walk, and match themselves


def test_a_changed_training_setting_redoes_training_export_evaluation_and_card_but_not_data(tiny, tmp_path):
    work = tiny["work"]
    write_recipe(tiny["recipe"], tiny_recipe(tiny["root"], second_steps=34))
    before = stamps(work)
    assert main([str(tiny["recipe"]), "--workers", "1", "--no-comparisons"]) == 0
    after = stamps(work)
    redone = {name for name in after if after[name] != before.get(name)}
    assert redone == {"train/second", "export", "eval/tiny", "eval/card", "card", "ship"}
    assert read_checkpoint(work / "train" / "second" / "ckpt_latest")["state"]["step"] == 34


def test_a_candidate_that_misses_the_gate_leaves_the_shipped_files_as_they_were(tiny, capsys):
    """The same run with a strict gate: nothing but the ship step runs, it refuses, the shipped files stay."""
    shipped = tiny["root"] / "models"
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    strict = tiny_recipe(tiny["root"], second_steps=34)
    strict["ship"] = {"max_falls": 0, "max_error_ratio": 0.01}   # 100 times better than the experts: never
    code = main([str(write_recipe(tiny["root"] / "strict.yaml", strict)), "--workers", "1", "--no-comparisons"])
    assert code == 1
    err = capsys.readouterr().err
    assert "stopped at ship" in err and "does not replace" in err and "falls in 2 episodes (at most 0" in err
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    assert (tiny["work"] / "model" / "tiny.onnx").is_file()   # the candidate is kept


def report_with(falls: int, errors: tuple[float, float], experts: tuple[float, float] = (0.05, 0.08)) -> dict:
    def overall(f, e):
        return {"episodes": 120, "falls": f, "error_vx": e[0], "error_yaw_rate": e[1]}
    return {"summary": {"model": {"overall": overall(falls, errors)}, "experts": {"overall": overall(0, experts)}}}


@pytest.mark.parametrize("falls, errors, problems", [
    (0, (0.052, 0.083), []),                                  # within 5 % on both axes
    (1, (0.050, 0.080), ["1 falls in 120 episodes"]),
    (0, (0.060, 0.080), ["vx tracking error 0.0600 is 1.20 x"]),
    (2, (0.050, 0.090), ["2 falls", "yaw_rate tracking error 0.0900 is 1.12 x"]),
])
def test_the_ship_gate_names_each_miss(falls, errors, problems):
    found = gate_problems(report_with(falls, errors), "model", "experts", ShipGate(max_falls=0, max_error_ratio=1.05))
    assert len(found) == len(problems)
    assert all(found[i].startswith(p) for i, p in enumerate(problems))


def test_a_tracking_gate_without_the_experts_is_a_miss_not_a_pass():
    found = gate_problems(report_with(0, (0.05, 0.08)), "model", None, ShipGate())
    assert found == ["max_error_ratio needs the experts evaluated on the same episodes (evaluation.experts)"]


# -- the shipped recipe ---------------------------------------------------------------------------------------
def card_datasets(card: Path) -> dict[str, tuple[int, int, float]]:
    """name -> (seed, transitions, DART std) as the card's Data section states them."""
    text = "\n".join(card_section(card, "Data"))
    found = {}
    for match in re.finditer(r"- `(\w+)\.zarr` from .*?\(seed (\d+),(.*?)\n  - ([\d,]+) transitions", text):
        noise = re.search(r"DART\), std ([\d.]+)", match.group(3))
        found[match.group(1)] = (int(match.group(2)), int(match.group(4).replace(",", "")),
                                 float(noise.group(1)) if noise else 0.0)
    return found


def test_the_shipped_recipe_states_the_datasets_stages_and_deployment_settings_of_the_shipped_file():
    recipe = load_recipe("pipeline_default")
    card = SHIPPED.with_suffix(".md")
    assert {d.name: (d.seed, d.transitions, d.action_noise) for d in recipe.datasets} == card_datasets(card)
    assert all(d.episode_s == 20.0 and not d.expert_on_current_frame for d in recipe.datasets)
    training = "\n".join(card_section(card, "Training"))
    blocks = dict(re.findall(r"training config: (\w+)</summary>\n\n```yaml\n(.*?)```", training, re.S))
    assert [s.name for s in recipe.stages] == list(blocks)
    ignored = ("out_dir", "datasets", "device", "progress", "threads", "data_on_device", "num_workers")
    for stage in recipe.stages:
        stated = train_config_from_dict(yaml.safe_load(blocks[stage.name])).to_dict()   # with today's defaults
        ours = stage_dict(recipe, stage)
        assert {k: v for k, v in ours.items() if k not in ignored} == \
               {k: v for k, v in stated.items() if k not in ignored}, stage.name
        assert [Path(d).name for d in ours["datasets"]] == [Path(d).name for d in stated["datasets"]]
    assert [s.resume for s in recipe.stages] == [False, True, True]
    # the recipe's envelope and gains are the next model's (the experts' full ranges); the shipped file predates
    # hop and was narrowed (its card states how), so only their form is checked against the robot config
    narrow_envelope(load_config(), parse_envelope(recipe.export.envelope))
    assert recipe.export.model == "models/diffuseloco_cyberdog2.onnx"
    assert recipe.ship.max_falls == 0 and recipe.ship.max_error_ratio is not None
    assert recipe.evaluation.policy_options == "warm=2,noise=0"   # as the bringup configs run it


def test_the_shipped_comparisons_are_the_shipped_baseline_presets_at_each_stage():
    """The MLP and current-frame comparisons change what train_mlp_qd and train_small_qd_current_frame change
    against train_small_qd, and nothing else, in every stage."""
    recipe = load_recipe("pipeline_default")
    variants = {v.name: v for v in recipe.comparisons.variants}
    base = load_train_config("train_small_qd").to_dict()
    for name, preset in (("mlp_bc", "train_mlp_qd"), ("current_frame", "train_small_qd_current_frame")):
        expected = {k: v for k, v in load_train_config(preset).to_dict().items() if v != base[k]}
        expected.pop("out_dir")
        for stage in recipe.stages:
            model, variant = stage_dict(recipe, stage), stage_dict(recipe, stage, variants[name])
            changed = {k for k in variant if variant[k] != model[k]} - {"out_dir", "datasets"}
            assert changed == set(expected), (name, stage.name)
            assert {k: variant[k] for k in changed} == expected
    assert variants["current_frame"].data == {"expert_on_current_frame": True}
    assert variants["open_loop"].ablation == "open_loop_chunk" and not variants["open_loop"].retrains


def test_the_shipped_recipe_plans_every_step_from_the_experts_to_the_table(tmp_path):
    recipe = load_recipe("pipeline_default")
    names = [step.name for step in build_steps(recipe, RunOptions())]
    assert names[:8] == ["experts", "data/experts_qd", "data/experts_qd_dart", "data/experts_qd_dart2",
                         "train/train_small_qd", "train/train_small_qd_dart", "train/train_small_qd_dart_long",
                         "export"]
    assert names.index("card") > names.index("eval/card") > names.index(f"eval/{recipe.name}")
    assert names[-2:] == ["table", "ship"] and "eval/open_loop" in names and "train/open_loop/train_small_qd" not in names
    assert (presets_dir() / "pipeline_default.yaml").is_file()


# -- decisions, refusals ---------------------------------------------------------------------------------------
def test_a_step_is_redone_when_a_setting_an_input_or_an_output_changes(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path)))
    steps = {s.name: s for s in build_steps(recipe, RunOptions(device="cpu"))}
    manifest = Manifest(tmp_path / "work")
    export = steps["export"]
    model = candidate_model(recipe)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    from diffuseloco_learning.pipeline.runner import output_digests, settings_hash
    manifest.steps["train/second"] = {"status": "done", "stamp": "s1"}
    manifest.steps["export"] = {"status": "done", "key": settings_hash(export.settings), "settings": export.settings,
                                "inputs": {"train/second": "s1"}, "outputs": output_digests(export.outputs)}
    assert not decide(export, manifest, set()).run
    assert decide(export, manifest, set(), redo=["exp*"]).reason == "asked to redo (--redo)"
    assert decide(export, manifest, {"train/second"}).reason == "its inputs were redone: train/second"
    manifest.steps["train/second"]["stamp"] = "s2"
    assert decide(export, manifest, set()).reason == "its inputs were redone: train/second"
    manifest.steps["train/second"]["stamp"] = "s1"
    model.write_bytes(b"another model")
    assert decide(export, manifest, set()).reason.endswith("changed since it was made")
    model.unlink()
    assert decide(export, manifest, set()).reason.endswith("is missing")
    changed = tiny_recipe(tmp_path)
    changed["export"]["gain_scales"] = ["trot=0.8"]
    other = {s.name: s for s in build_steps(load_recipe(write_recipe(tmp_path / "r2.yaml", changed)), RunOptions())}
    assert decide(other["export"], manifest, set()).reason.startswith("settings changed: argv")


def test_how_a_step_runs_is_not_a_setting(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path)))
    cpu = {s.name: s.settings for s in build_steps(recipe, RunOptions(device="cpu", workers=1))}
    gpu = {s.name: s.settings for s in build_steps(recipe, RunOptions(device="cuda", workers=16, progress=True))}
    assert cpu == gpu


def test_data_and_evaluation_steps_run_on_the_pipelines_workers(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path)))
    steps = build_steps(recipe, RunOptions(workers=16))
    harness = [s for s in steps if s.command.startswith("python -m diffuseloco_learning.evaluation ")]
    assert {s.name for s in harness} >= {f"eval/{recipe.name}", "eval/experts", "eval/open_loop"}
    assert all(s.command.endswith(" --workers 16") and "--workers" not in s.settings["argv"] for s in harness)
    assert all(s.command.endswith(" --workers 16") for s in steps if s.name.startswith("data/"))


@pytest.mark.parametrize("change, message", [
    (lambda r: r["stages"][0].update(resume=True), "no stage before it"),
    (lambda r: r["stages"][1].update(datasets=["clean", "nope"]), "not among the recipe's"),
    (lambda r: r["datasets"].append(dict(r["datasets"][0])), "names repeated"),
    (lambda r: r["comparisons"]["variants"][0].update(data={"learner": "x.onnx"}), "not generator settings"),
    (lambda r: r["comparisons"]["variants"][1].update(data={"action_noise": "lots"}), "expected a number"),
    (lambda r: r["comparisons"]["variants"][2].update(ablation="backwards"), "ablation must be one of"),
    (lambda r: r["stages"][0]["overrides"].update(batch_sise=3), "unknown keys"),
    (lambda r: r.update(device="tpu"), "device must be"),
    (lambda r: r["comparisons"]["variants"][0].update(train=["delayed"]), "expected a mapping"),
    (lambda r: r["comparisons"]["variants"][0].update(train={"model": {"kind": "gan"}}), "mlp_bc"),
    (lambda r: r["comparisons"]["variants"][0].update(name="experts"), "the model's or one of"),
])
def test_a_recipe_that_would_fail_later_is_refused_when_it_is_read(tmp_path, change, message):
    recipe = tiny_recipe(tmp_path)
    change(recipe)
    with pytest.raises(ConfigError, match=message):
        load_recipe(write_recipe(tmp_path / "bad.yaml", recipe))


def test_only_directories_inside_the_work_directory_are_removed(tmp_path):
    runner = Runner(tmp_path / "work")
    outside = tmp_path / "precious"
    outside.mkdir()
    with pytest.raises(ValueError, match="inside the work directory"):
        runner._remove(outside)
    assert outside.is_dir()


def test_the_experts_check_stops_the_pipeline_before_the_data(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    recipe["experts"]["max_fall_rate"] = -1.0   # every result is "too many falls"
    code = main([str(write_recipe(tmp_path / "r.yaml", recipe)), "--workers", "1"])
    assert code == 1
    assert "stopped at experts: the experts fall too often" in capsys.readouterr().err
    assert not (tmp_path / "work" / "data").exists()


def test_cuda_asked_for_where_torch_sees_none_is_refused_before_any_step(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    assert main([str(recipe), "--device", "cuda"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
    assert main([str(recipe), "--device", "auto", "--dry-run"]) == 0
    assert "training on cpu" in capsys.readouterr().out


def test_a_redo_that_names_no_step_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    assert main([str(recipe), "--redo", "train/frist", "--dry-run"]) == 2
    assert "names no step" in capsys.readouterr().err
    assert main([str(recipe), "--redo", "train/*", "--dry-run"]) == 0
