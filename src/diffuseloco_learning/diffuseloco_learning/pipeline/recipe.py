"""The recipe of a model: one YAML file that states everything from the experts to the model file and its card.

    name: diffuseloco_cyberdog2
    work_dir: out/pipeline/diffuseloco_cyberdog2      # datasets, runs, evaluations, the manifest
    experts: {episodes: 20, seconds: 20.0, max_fall_rate: 0.1}
    datasets:
      - {name: experts_qd, transitions: 1000000, seed: 0}
      - {name: experts_qd_dart, transitions: 500000, seed: 1, action_noise: 0.15}
    stages:                                           # training runs, in order
      - {name: train_small_qd, config: train_small_qd, datasets: [experts_qd]}
      - {name: train_small_qd_dart, config: train_small_qd_dart, datasets: [experts_qd, experts_qd_dart],
         resume: true}                                # continues the stage above
    export: {model: models/x.onnx, envelope: [bound.vx=0:0.3], gain_scales: [trot=0.9]}
    evaluation: {scenarios: eval_default, seeds: 4, seed: 2000, policy_options: "warm=2,noise=0"}
    card: {notes: models/x.notes.md}
    comparisons:                                      # the paper's baselines, trained on the same budget
      table: docs/.../table.md
      variants:
        - {name: mlp_bc, train: {model: {kind: bc_mlp}}, policy_options: ""}
        - {name: current_frame, train: {delayed: false}, data: {expert_on_current_frame: true}}
        - {name: open_loop, ablation: open_loop_chunk}

A stage's `config` is a training preset (or a path); `overrides` merge onto it the way a training config's
`base:` does, and the recipe fills in its datasets and out_dir. A comparison changes every stage (`train`) and
every dataset (`data`, generator settings) in the same way, so it gets exactly the model's budget with one thing
different; a comparison that changes neither re-evaluates the model itself (an evaluation `ablation`).
Relative paths are relative to the current directory (run from the repository root).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union


from diffuseloco_policy.config import ConfigError, from_dict, read_yaml
from ..presets import presets_dir
from ..training.config import load_train_dict, merge_config, resolve_preset, train_config_from_dict
from .ship import ShipGate

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")   # names become file and directory names
RESERVED = ("experts", "card", "comparisons")        # evaluation directories of the recipe's own
ABLATIONS = ("none", "open_loop_chunk", "current_frame")
DATA_FIELDS = ("expert_on_current_frame", "action_noise", "episode_s")   # what a comparison may vary in the data


@dataclass(frozen=True)
class ExpertsRecipe:
    """The experts' own evaluation before any data is made from them (experts.evaluate, acting one tick late
    as the generator records them). A skill falling more often than max_fall_rate stops the pipeline: data from
    experts that fall is not worth hours of generation and training."""

    episodes: int = 20
    seconds: float = 20.0
    seed: int = 0
    max_fall_rate: Optional[float] = 0.1
    args: tuple[str, ...] = ()              # further experts.evaluate options, e.g. [--skills, trot]


@dataclass(frozen=True)
class DatasetRecipe:
    """One `data.generate` run."""

    name: str
    transitions: int
    seed: int
    episode_s: float = 20.0
    action_noise: float = 0.0               # DART: std of the disturbance on the executed targets
    expert_on_current_frame: bool = False   # experts act on s[t] (the current-frame ablation's teachers)
    args: tuple[str, ...] = ()              # further generator options, as on its command line


@dataclass(frozen=True)
class StageRecipe:
    """One training run: a preset plus overrides, on named datasets; `resume` continues the stage before it."""

    name: str
    config: str
    datasets: tuple[str, ...]
    resume: bool = False
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportRecipe:
    """The model file and the deployment settings it carries (training.export's --envelope and --gain-scale).
    `model` is where the file ships; the export, its evaluation and its card are made in the work directory
    first (candidate_model) and copied there only when the evaluation clears the recipe's `ship` gate."""

    model: str
    envelope: tuple[str, ...] = ()          # SKILL.FIELD=LOW:HIGH
    gain_scales: tuple[str, ...] = ()       # SKILL=SCALE


@dataclass(frozen=True)
class EvaluationRecipe:
    """The evaluation harness's run of the model, and of the experts on the same episodes."""

    scenarios: str = "eval_default"
    seeds: Optional[int] = None             # episodes per scenario; None: the matrix's
    seed: int = 0                           # the base seed (the episodes' physics draws)
    policy_options: str = ""                # appended to the model's policy spec, e.g. "warm=2,noise=0"
    experts: Optional[str] = "expert,feedback=off"   # the experts' policy spec; None: not evaluated
    plots: bool = True
    args: tuple[str, ...] = ()              # further evaluation options, e.g. [--pushes]


@dataclass(frozen=True)
class CardRecipe:
    """model_card's hand-written notes, appended to the generated card; the card goes beside the model."""

    notes: Optional[str] = None


@dataclass(frozen=True)
class VariantRecipe:
    """One comparison: the model's recipe with one change, evaluated on the model's episodes."""

    name: str
    about: str = ""                         # what differs, for the table
    train: dict = field(default_factory=dict)   # merged into every stage's config
    data: dict = field(default_factory=dict)    # generator settings changed in every dataset (DATA_FIELDS)
    ablation: str = "none"                  # the evaluation's variant (open_loop_chunk: execute whole chunks)
    policy_options: Optional[str] = None    # None: the evaluation's policy_options

    @property
    def retrains(self) -> bool:
        return bool(self.train or self.data)


@dataclass(frozen=True)
class ComparisonsRecipe:
    table: str
    variants: tuple[VariantRecipe, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    work_dir: str
    datasets: tuple[DatasetRecipe, ...]
    stages: tuple[StageRecipe, ...]
    export: ExportRecipe
    evaluation: EvaluationRecipe = field(default_factory=EvaluationRecipe)
    card: CardRecipe = field(default_factory=CardRecipe)
    experts: Optional[ExpertsRecipe] = field(default_factory=ExpertsRecipe)
    device: str = "auto"                    # training: auto (cuda if torch sees one) | cpu | cuda
    comparisons: Optional[ComparisonsRecipe] = None
    ship: ShipGate = field(default_factory=ShipGate)

    def __post_init__(self) -> None:
        check_recipe(self)

    def dataset(self, name: str) -> DatasetRecipe:
        return next(d for d in self.datasets if d.name == name)


def check_recipe(recipe: Recipe) -> None:
    """Refuse what would fail hours later: unknown or repeated names, a first stage that resumes nothing,
    settings out of range, comparisons whose data changes are not generator settings."""
    for kind, names in (("dataset", [d.name for d in recipe.datasets]), ("stage", [s.name for s in recipe.stages]),
                        ("comparison", [v.name for v in recipe.comparisons.variants] if recipe.comparisons else [])):
        for name in names:
            if not NAME.match(name):
                raise ConfigError(f"recipe {recipe.name}: {kind} name {name!r} must be letters, digits, _ . -")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"recipe {recipe.name}: {kind} names repeated: {repeated}")
    if not NAME.match(recipe.name) or recipe.name in RESERVED:
        raise ConfigError(f"recipe name {recipe.name!r} must be letters, digits, _ . - and none of {RESERVED}")
    for where, mapping in [*((f"stage {s.name}.overrides", s.overrides) for s in recipe.stages),
                           *((f"comparison {v.name}.{key}", getattr(v, key)) for v in
                             (recipe.comparisons.variants if recipe.comparisons else ()) for key in ("train", "data"))]:
        if not isinstance(mapping, dict):
            raise ConfigError(f"{where}: expected a mapping, got {mapping!r}")
    if not recipe.datasets or not recipe.stages:
        raise ConfigError(f"recipe {recipe.name}: at least one dataset and one training stage are needed")
    if recipe.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"recipe {recipe.name}: device must be auto, cpu or cuda, got {recipe.device!r}")
    for dataset in recipe.datasets:
        if dataset.transitions < 1:
            raise ConfigError(f"dataset {dataset.name}: transitions must be >= 1")
    known = {d.name for d in recipe.datasets}
    for index, stage in enumerate(recipe.stages):
        missing = [d for d in stage.datasets if d not in known]
        if missing or not stage.datasets:
            raise ConfigError(f"stage {stage.name}: datasets {missing or '[]'} are not among the recipe's "
                              f"{sorted(known)}")
        if stage.resume and index == 0:
            raise ConfigError(f"stage {stage.name}: the first stage has no stage before it to resume")
    if recipe.experts is not None and recipe.experts.episodes < 1:
        raise ConfigError("experts: episodes must be >= 1")
    if recipe.comparisons:
        for variant in recipe.comparisons.variants:
            _check_variant(recipe, variant)


def _check_variant(recipe: Recipe, variant: VariantRecipe) -> None:
    if variant.name in (recipe.name, *RESERVED):
        raise ConfigError(f"comparison {variant.name}: the name is the model's or one of {RESERVED}")
    unknown = set(variant.data) - set(DATA_FIELDS)
    if unknown:
        raise ConfigError(f"comparison {variant.name}: data changes {sorted(unknown)} are not generator settings "
                          f"the recipe can vary; choose from {list(DATA_FIELDS)}")
    for dataset in recipe.datasets:
        variant_dataset(dataset, variant)   # the changes' types
    if variant.ablation not in ABLATIONS:
        raise ConfigError(f"comparison {variant.name}: ablation must be one of {ABLATIONS}")
    if not variant.retrains and variant.ablation == "none" and variant.policy_options is None:
        raise ConfigError(f"comparison {variant.name}: changes nothing (no train, data, ablation or policy_options)")
    clashes = {f"{d.name}_{variant.name}" for d in recipe.datasets} & {d.name for d in recipe.datasets}
    if variant.data and clashes:
        raise ConfigError(f"comparison {variant.name}: its datasets would be named like the recipe's {sorted(clashes)}")


def load_recipe(path: Union[str, Path]) -> Recipe:
    """Read a recipe: a path, or the name of a shipped one ('pipeline_default')."""
    path = resolve_recipe(path)
    data = read_yaml(path, "recipe")
    recipe = from_dict(Recipe, data, where=path.name)
    variants = recipe.comparisons.variants if recipe.comparisons else ()
    for stage in recipe.stages:   # every stage's config must load now, not after hours of data generation
        for variant in (None, *(v for v in variants if v.retrains)):
            stage_dict(recipe, stage, variant)
    if recipe.card.notes and not Path(recipe.card.notes).is_file():
        raise ConfigError(f"{path.name}: card notes {recipe.card.notes} do not exist")
    return recipe


def resolve_recipe(path: Union[str, Path]) -> Path:
    candidate = Path(path)
    if candidate.exists():
        return candidate
    for shipped in (presets_dir() / candidate.name, presets_dir() / f"{candidate.name}.yaml"):
        if shipped.is_file():
            return shipped
    raise ConfigError(f"no recipe {path!r} (a YAML path or one of "
                      f"{sorted(p.stem for p in presets_dir().glob('pipeline_*.yaml'))})")


def stage_dict(recipe: Recipe, stage: StageRecipe, variant: Optional[VariantRecipe] = None) -> dict[str, Any]:
    """The full training config of a stage (no `base:` left, every default written out, as the trainer records it
    in the run): the preset, the stage's overrides, a comparison's changes, then the recipe's datasets and
    out_dir."""
    data = merge_config(load_train_dict(resolve_preset(stage.config)), dict(stage.overrides))
    if variant is not None:
        data = merge_config(data, dict(variant.train))
    data["datasets"] = [str(dataset_path(recipe, name, variant)) for name in stage.datasets]
    data["out_dir"] = str(run_dir(recipe, stage, variant))
    where = f"stage {stage.name}" + (f" of comparison {variant.name}" if variant else "")
    try:
        return train_config_from_dict(data, where=where).to_dict()
    except ConfigError as exc:   # the config's own checks do not know which stage they are in
        raise (exc if str(exc).startswith(where) else ConfigError(f"{where}: {exc}")) from None


def variant_dataset(dataset: DatasetRecipe, variant: Optional[VariantRecipe]) -> DatasetRecipe:
    """The dataset a comparison trains on: the model's, or (a comparison with data changes) its own copy."""
    if variant is None or not variant.data:
        return dataset
    changed = {**dataclasses.asdict(dataset), **variant.data, "name": f"{dataset.name}_{variant.name}"}
    return from_dict(DatasetRecipe, changed, where=f"comparison {variant.name}.data")


def dataset_path(recipe: Recipe, name: str, variant: Optional[VariantRecipe] = None) -> Path:
    return Path(recipe.work_dir) / "data" / f"{variant_dataset(recipe.dataset(name), variant).name}.zarr"


def run_dir(recipe: Recipe, stage: StageRecipe, variant: Optional[VariantRecipe] = None) -> Path:
    base = Path(recipe.work_dir) if variant is None else Path(recipe.work_dir) / "comparisons" / variant.name
    return base / "train" / stage.name


def candidate_model(recipe: Recipe) -> Path:
    """Where the recipe's model is exported, evaluated and carded before the ship step copies it to
    export.model."""
    return Path(recipe.work_dir) / "model" / Path(recipe.export.model).name


def variant_model(recipe: Recipe, variant: VariantRecipe) -> Path:
    """The file a comparison is evaluated from: its own export, or the model's (an evaluation ablation)."""
    if not variant.retrains:
        return candidate_model(recipe)
    return Path(recipe.work_dir) / "comparisons" / variant.name / f"{variant.name}.onnx"


def generator_argv(dataset: DatasetRecipe) -> list[str]:
    """data.generate's command line for a dataset (without --out and --workers)."""
    argv = ["--transitions", str(dataset.transitions), "--seed", str(dataset.seed),
            "--episode-seconds", f"{dataset.episode_s:g}"]
    if dataset.action_noise:
        argv += ["--action-noise", f"{dataset.action_noise:g}"]
    if dataset.expert_on_current_frame:
        argv.append("--expert-on-current-frame")
    return argv + list(dataset.args)
