"""A recipe as an ordered list of steps: what each runs, what it reads, what it writes, and what it depends on.

A step's `settings` are everything its outputs depend on besides its inputs (the steps whose outputs it reads);
the runner redoes a step when they change. How a step runs (device, the workers of data generation and
evaluation, progress bars) is left out: the same recipe gives the same model on a laptop and on a GPU server.

Order: experts -> datasets -> training stages -> export (with the deployment settings) -> evaluation of the model
and of the experts on the same episodes -> card (it reads the evaluation) -> the comparisons (their datasets, stages,
exports and evaluations) -> the comparison table -> ship: the candidate replaces the shipped file if its
evaluation clears the recipe's gate. Only the table and the ship step write outside the work directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from diffuseloco_policy.config import load_config, plain
from ..evaluation.scenarios import resolve_matrix_path
from ..experts.controller import ExpertParams
from ..training.checkpoint import LATEST, latest_checkpoint
from diffuseloco_sim import SimConfig
from .recipe import (Recipe, StageRecipe, VariantRecipe, candidate_model, dataset_path, generator_argv, run_dir,
                     stage_dict, variant_dataset, variant_model)
from .ship import ship
from .table import write_table
from .tools import command_line, run_tool

# training settings that change how a run goes, not what it learns
RUN_ONLY = ("device", "progress", "threads", "num_workers", "data_on_device")
EXPERTS_LABEL = "experts"


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs its steps; none of it changes what a step makes."""

    device: str = "auto"
    workers: int = 1
    progress: bool = False


@dataclass
class Step:
    """One unit of work. `run(resume)` does it; `resume` is True only for a resumable step that was interrupted
    with the same settings. `scratch`: directories (inside the work dir) a fresh run starts without."""

    name: str
    command: str
    settings: dict[str, Any]
    run: Callable[[bool], None]
    outputs: tuple[Path, ...]
    inputs: tuple[str, ...] = ()
    scratch: tuple[Path, ...] = ()
    resumable: bool = False
    check: Optional[Callable[[], None]] = None   # after the step, run or skipped: may stop the pipeline
    resume_command: Optional[str] = None         # what `run(True)` runs, when it differs from `command`

    def shown(self, resume: bool) -> str:
        return self.resume_command if resume and self.resume_command else self.command


def tool_step(name: str, module: str, argv: list[str], settings: dict[str, Any], **kwargs: Any) -> Step:
    """A step that is one tool call."""
    return Step(name, command_line(module, argv), settings, lambda resume: run_tool(module, argv), **kwargs)


def file_digest(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def simulated_world() -> dict[str, Any]:
    """What the experts and their data depend on besides the recipe: the robot config, the experts' parameters
    and the randomized physics. A change to any of them redoes the data."""
    return plain({"robot": load_config().to_dict(), "expert": dataclasses.asdict(ExpertParams()),
                  "physics": dataclasses.asdict(SimConfig.randomized())})


def build_steps(recipe: Recipe, options: RunOptions, comparisons: bool = True) -> list[Step]:
    world = simulated_world()
    steps = [] if recipe.experts is None else [experts_step(recipe, world)]
    steps += model_steps(recipe, options, world, None)
    steps += evaluation_steps(recipe, options, world)
    steps.append(card_step(recipe))
    if comparisons and recipe.comparisons:
        for variant in recipe.comparisons.variants:
            if variant.retrains:
                steps += model_steps(recipe, options, world, variant)
            steps.append(eval_step(recipe, options, variant.name, variant_model(recipe, variant),
                                   export_name(variant if variant.retrains else None), variant.ablation,
                                   variant.policy_options))
        steps.append(table_step(recipe))
    steps.append(ship_step(recipe))   # last: a refused candidate still gets its comparisons
    return steps


# -- experts and data ---------------------------------------------------------------------------------------
def experts_step(recipe: Recipe, world: dict[str, Any]) -> Step:
    experts, out = recipe.experts, Path(recipe.work_dir) / "experts"
    argv = ["--out", str(out), "--episodes", str(experts.episodes), "--seconds", f"{experts.seconds:g}",
            "--seed", str(experts.seed), "--delayed", *experts.args]
    return tool_step("experts", "diffuseloco_learning.experts.evaluate", argv, {"argv": argv, "world": world},
                     outputs=(out / "results.json",), scratch=(out,),
                     check=lambda: check_experts(out / "results.json", experts.max_fall_rate))


class ExpertsFall(RuntimeError):
    """The experts fall more often than the recipe allows: the pipeline stops before making data from them."""


def check_experts(results: Path, max_fall_rate: Optional[float]) -> None:
    """Stop before any data is made from experts that fall too often."""
    if max_fall_rate is None:
        return
    report = json.loads(results.read_text())["results"]
    failing = {name: r for name, r in report.items() if r["fall_rate"] > max_fall_rate}
    if failing:
        listed = ", ".join(f"{name} {r['falls']} of {r['episodes']}" for name, r in failing.items())
        raise ExpertsFall(f"the experts fall too often to learn from ({listed}; at most {max_fall_rate:.0%} "
                          f"allowed by experts.max_fall_rate): see {results.parent / 'results.md'}")


def data_step(recipe: Recipe, name: str, variant: Optional[VariantRecipe], options: RunOptions,
              world: dict[str, Any]) -> Step:
    dataset = variant_dataset(recipe.dataset(name), variant)
    out = dataset_path(recipe, name, variant)
    argv = ["--out", str(out), *generator_argv(dataset), "--workers", str(options.workers)]
    return tool_step(f"data/{dataset.name}", "diffuseloco_learning.data.generate", argv,
                     {"generator": generator_argv(dataset), "world": world}, outputs=(out,), scratch=(out,))


# -- training and export ------------------------------------------------------------------------------------
def model_steps(recipe: Recipe, options: RunOptions, world: dict[str, Any],
                variant: Optional[VariantRecipe]) -> list[Step]:
    """A model's datasets (none for a comparison that trains on the model's), training stages and export."""
    used = list(dict.fromkeys(name for stage in recipe.stages for name in stage.datasets))
    own_data = variant is None or bool(variant.data)
    steps = [data_step(recipe, name, variant, options, world) for name in used] if own_data else []
    previous: Optional[StageRecipe] = None
    for stage in recipe.stages:
        steps.append(train_step(recipe, stage, previous if stage.resume else None, variant, options))
        previous = stage
    steps.append(export_step(recipe, variant))
    return steps


def train_name(stage: StageRecipe, variant: Optional[VariantRecipe]) -> str:
    return f"train/{stage.name}" if variant is None else f"train/{variant.name}/{stage.name}"


def train_step(recipe: Recipe, stage: StageRecipe, resumes: Optional[StageRecipe], variant: Optional[VariantRecipe],
               options: RunOptions) -> Step:
    config = stage_dict(recipe, stage, variant)
    out = run_dir(recipe, stage, variant)
    stem = stage.name if variant is None else f"{variant.name}__{stage.name}"
    config_file = Path(recipe.work_dir) / "configs" / f"{stem}.yaml"
    start = None if resumes is None else run_dir(recipe, resumes, variant) / LATEST
    inputs = tuple(f"data/{variant_dataset(recipe.dataset(n), variant).name}" for n in stage.datasets)
    inputs += () if resumes is None else (train_name(resumes, variant),)
    settings = {"config": {k: v for k, v in config.items() if k not in RUN_ONLY},
                "resumes": None if resumes is None else resumes.name}

    def run(resume: bool) -> None:
        run_config = {**config, "device": options.device, "progress": options.progress,
                      "data_on_device": options.device != "cpu"}   # used on a GPU only; batches gather there
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(run_config, sort_keys=False))
        run_tool("diffuseloco_learning.training", training_argv(config_file, out, start, resume))

    fresh = command_line("diffuseloco_learning.training", training_argv(config_file, out, start, False))
    resumed = command_line("diffuseloco_learning.training", ["--config", str(config_file), "--resume", "auto"])
    return Step(train_name(stage, variant), fresh, settings, run, outputs=(out / LATEST / "ema.safetensors",),
                inputs=inputs, scratch=(out,), resumable=True, resume_command=resumed)


def training_argv(config_file: Path, out: Path, start: Optional[Path], resume: bool) -> list[str]:
    """An interrupted stage goes on from its own last checkpoint; a fresh stage that continues another starts
    from that one's last."""
    argv = ["--config", str(config_file)]
    if resume and latest_checkpoint(out) is not None:
        return argv + ["--resume", "auto"]
    return argv + ([] if start is None else ["--resume", str(start)])


def export_name(variant: Optional[VariantRecipe]) -> str:
    return "export" if variant is None else f"export/{variant.name}"


def export_step(recipe: Recipe, variant: Optional[VariantRecipe]) -> Step:
    """The last stage's EMA weights with the recipe's deployment settings (a comparison's too: the same
    envelope and per-skill gains, so only what it varies differs)."""
    model = candidate_model(recipe) if variant is None else variant_model(recipe, variant)
    last = recipe.stages[-1]
    argv = ["--checkpoint", str(run_dir(recipe, last, variant) / LATEST), "--out", str(model)]
    for entry in recipe.export.envelope:
        argv += ["--envelope", entry]
    for entry in recipe.export.gain_scales:
        argv += ["--gain-scale", entry]
    return tool_step(export_name(variant), "diffuseloco_learning.training.export", argv, {"argv": argv},
                     outputs=(model,), inputs=(train_name(last, variant),))


# -- evaluation, card, comparisons --------------------------------------------------------------------------
def eval_dir(recipe: Recipe, label: str) -> Path:
    return Path(recipe.work_dir) / "eval" / label


def eval_argv(recipe: Recipe, spec: str, label: str, ablation: str = "none") -> list[str]:
    """The evaluation harness on the recipe's episodes, on the commands the model file accepts."""
    evaluation = recipe.evaluation
    argv = ["--policy", f"{spec},label={label}", "--scenarios", evaluation.scenarios, "--seed", str(evaluation.seed),
            "--out", str(eval_dir(recipe, label)), "--ranges-from", str(candidate_model(recipe))]
    if evaluation.seeds is not None:
        argv += ["--seeds", str(evaluation.seeds)]
    if ablation != "none":
        argv += ["--ablation", ablation]
    if not evaluation.plots:
        argv.append("--no-plots")
    return argv + list(evaluation.args)


def matrix_digest(recipe: Recipe) -> Optional[str]:
    """The scenario matrix's file: editing it changes the episodes, so every evaluation is redone."""
    return file_digest(resolve_matrix_path(recipe.evaluation.scenarios))


def with_workers(argv: list[str], options: RunOptions) -> list[str]:
    """An evaluation's command as this invocation runs it: in options.workers processes. Its results do not depend
    on them (evaluation/episode_pool.py), so the step's settings keep the argv without."""
    return [*argv, "--workers", str(options.workers)]


def eval_step(recipe: Recipe, options: RunOptions, label: str, model: Path, export: str, ablation: str = "none",
              policy_options: Optional[str] = None) -> Step:
    spec_options = recipe.evaluation.policy_options if policy_options is None else policy_options
    spec = ",".join(part for part in (str(model), spec_options) if part)
    argv = eval_argv(recipe, spec, label, ablation)
    out = eval_dir(recipe, label)
    return tool_step(f"eval/{label}", "diffuseloco_learning.evaluation", with_workers(argv, options),
                     {"argv": argv, "matrix": matrix_digest(recipe)}, outputs=(out / "results.json",),
                     inputs=(export,), scratch=(out,))


def experts_eval_step(recipe: Recipe, options: RunOptions, world: dict[str, Any]) -> Step:
    """The experts on the model's episodes. The model is not an input: its file only lends its command ranges,
    which the export's envelope and the robot config fix, so retraining the model does not redo this."""
    argv = eval_argv(recipe, recipe.evaluation.experts, EXPERTS_LABEL)
    out = eval_dir(recipe, EXPERTS_LABEL)
    settings = {"argv": argv, "matrix": matrix_digest(recipe), "envelope": list(recipe.export.envelope),
                "world": world}
    return tool_step(f"eval/{EXPERTS_LABEL}", "diffuseloco_learning.evaluation", with_workers(argv, options),
                     settings, outputs=(out / "results.json",), scratch=(out,))


def evaluation_steps(recipe: Recipe, options: RunOptions, world: dict[str, Any]) -> list[Step]:
    """The model as deployed, the experts on the same episodes, and both in one report for the card."""
    steps = [eval_step(recipe, options, recipe.name, candidate_model(recipe), "export")]
    if recipe.evaluation.experts is None:
        return steps
    steps.append(experts_eval_step(recipe, options, world))
    out = Path(recipe.work_dir) / "eval" / "card"
    argv = [str(eval_dir(recipe, recipe.name)), str(eval_dir(recipe, EXPERTS_LABEL)), "--out", str(out)]
    steps.append(tool_step("eval/card", "diffuseloco_learning.evaluation.merge", argv, {"argv": argv},
                           outputs=(out / "results.json",), inputs=(f"eval/{recipe.name}", f"eval/{EXPERTS_LABEL}"),
                           scratch=(out,)))
    return steps


def card_step(recipe: Recipe) -> Step:
    """The card beside the candidate, generated from the datasets, runs, file and evaluation it describes."""
    model = candidate_model(recipe)
    report = card_report(recipe)
    used = list(dict.fromkeys(name for stage in recipe.stages for name in stage.datasets))
    argv = ["--model", str(model), "--run", *(str(run_dir(recipe, s)) for s in recipe.stages),
            "--dataset", *(str(dataset_path(recipe, n)) for n in used),
            "--eval", str(Path(recipe.work_dir) / report / "results.json"), "--out", str(model.with_suffix(".md"))]
    notes = recipe.card.notes
    if notes:
        argv += ["--notes", notes]
    inputs = ("export", report, *(train_name(s, None) for s in recipe.stages), *(f"data/{n}" for n in used))
    return tool_step("card", "diffuseloco_learning.training.model_card", argv,
                     {"argv": argv, "notes": file_digest(Path(notes)) if notes else None},
                     outputs=(model.with_suffix(".md"),), inputs=inputs)


def card_report(recipe: Recipe) -> str:
    """The evaluation the card and the ship gate read: the model and the experts merged, or the model alone."""
    return "eval/card" if recipe.evaluation.experts is not None else f"eval/{recipe.name}"


def ship_step(recipe: Recipe) -> Step:
    """The candidate, its warm-start graphs and its card over the shipped files, if the evaluation clears the
    recipe's gate (pipeline/ship.py); otherwise the pipeline stops there and the shipped files stay."""
    candidate, target = candidate_model(recipe), Path(recipe.export.model)
    report = Path(recipe.work_dir) / card_report(recipe) / "results.json"
    experts = EXPERTS_LABEL if recipe.evaluation.experts is not None else None

    def run(resume: bool) -> None:
        for path in ship(candidate, target, report, recipe.name, experts, recipe.ship):
            print(f"[pipeline] shipped {path}")

    settings = {"candidate": str(candidate), "target": str(target), "gate": dataclasses.asdict(recipe.ship)}
    return Step("ship", f"copy {candidate.parent}/{candidate.stem}* to {target.parent}/ if {report} clears "
                f"{dataclasses.asdict(recipe.ship)}", settings, run, outputs=(target, target.with_suffix(".md")),
                inputs=("card", card_report(recipe)))


def table_step(recipe: Recipe) -> Step:
    """Every evaluation on the model's episodes merged into one report, and the table in the docs."""
    labels = [recipe.name, *(v.name for v in recipe.comparisons.variants)]
    if recipe.evaluation.experts is not None:
        labels.append(EXPERTS_LABEL)
    merged = Path(recipe.work_dir) / "eval" / "comparisons"
    argv = [*(str(eval_dir(recipe, label)) for label in labels), "--out", str(merged)]
    table = Path(recipe.comparisons.table)
    about = {v.name: v.about for v in recipe.comparisons.variants}

    def run(resume: bool) -> None:
        run_tool("diffuseloco_learning.evaluation.merge", argv)
        write_table(merged / "results.json", table, recipe.name, about)

    settings = {"argv": argv, "about": about, "table": str(table)}
    return Step("table", command_line("diffuseloco_learning.evaluation.merge", argv), settings, run,
                outputs=(table, merged / "results.json"), inputs=tuple(f"eval/{label}" for label in labels),
                scratch=(merged,))
