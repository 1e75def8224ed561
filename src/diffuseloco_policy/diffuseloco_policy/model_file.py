"""What a model file carries, and the check that it fits the robot it is about to drive.

Why: a policy is only valid for the exact joint order, observation layout and scales, history length, action
scale, control rate, default pose and gains it was trained with. Every model file (exported ONNX graph or torch
checkpoint) therefore embeds the full StackConfig and the model's own settings as JSON strings, and loading
compares them with the robot's config and refuses with a ModelMismatchError listing every difference. Weights
are stored without pickle: ONNX initializers, or safetensors for torch checkpoints.

Skills are the one place a model may differ: the robot's skill list grows (a new gait ships in the config before
a model trained on it), and the models already in use must keep running. A model whose skills are the robot's
first ones (same ids and names, in order), with its skill one-hot over exactly those, loads; it runs over its own
skills (model_view) and a command for a skill it lacks is refused by the policy loop (skills_lacking). Training
needs the exact set (exact_skills): a dataset's goals are stored with their one-hot.

Command classes (config.CommandClassConfig) are the model's too: a class model (trained on data whose goals name
'walk', not trot or pace) runs on a robot config without classes over its own class map (model_view), and a robot
config with a map of its own runs only models with that map (class_problems).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union


from .command_classes import class_map, describe_command_classes
from .config import ConfigError, StackConfig, TermConfig, config_from_dict
from .model_spec import ModelSpec, PolicyDims
from .normalizer import PolicyNormalizer
from .package_files import share_dir

FORMAT_VERSION = 1
DEFAULT_MODEL = "models/diffuseloco_cyberdog2.onnx"   # the shipped model, in share/diffuseloco_policy
SUPPORTED_FORMAT_VERSIONS = (1,)
PREFIX = "diffuseloco."
# The exported graphs' input and output names (diffuseloco_learning.export writes them, runtime.py feeds them).
INPUT_OBS, INPUT_GOAL, INPUT_NOISE, INPUT_PREV = "obs_history", "goal_history", "noise", "prev_clean"
OUTPUT_ACTIONS, OUTPUT_CLEAN = "actions", "clean"
# What a graph computes its matrix products in: fp32 as exported, or int8 weights (diffuseloco_learning.quantize).
PRECISION_FP32, PRECISION_INT8 = "fp32", "int8"
KEYS = ("format_version", "stack_config", "model", "normalizer", "observation_layout", "joint_order", "rates",
        "scheduler", "graph")


class ModelMismatchError(ValueError):
    """The model file is unreadable, of an unknown version, or was trained for a different robot setup."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything a loader learns from a model file's metadata."""

    format_version: int
    config: StackConfig
    spec: ModelSpec
    normalizer: PolicyNormalizer
    graph: dict[str, Any]

    @property
    def dims(self) -> PolicyDims:
        return PolicyDims.from_config(self.config, self.spec.predict_velocity)


def observation_layout(config: StackConfig) -> dict[str, Any]:
    """Human-readable layout: term names, sizes and scales, in order, and the history length."""
    def terms(ts: tuple[TermConfig, ...]) -> list[dict[str, Any]]:
        return [{"name": t.name, "size": t.size, "scale": t.scale} for t in ts]

    obs = config.observation
    layout = {"history": obs.history, "obs_dim": obs.obs_dim, "goal_dim": obs.goal_dim, "terms": terms(obs.terms),
              "goal_terms": terms(obs.goal_terms)}
    if config.command_classes:   # what the skill one-hot names: the classes (files without classes read as before)
        layout["command_classes"] = class_map(config)
    return layout


def build_metadata(policy: Any, config: StackConfig, graph: Optional[dict[str, Any]] = None) -> dict[str, str]:
    """The metadata_props / safetensors metadata of a model file: JSON strings under 'diffuseloco.*' keys.
    `policy` is a diffuseloco_learning policy module (its spec, normalizer and scheduler are read)."""
    spec = policy.spec
    scheduler = {**spec.scheduler.to_dict(), "timesteps": getattr(getattr(policy, "scheduler", None), "timesteps", [])}
    values: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "stack_config": config.to_dict(),
        "model": spec.to_dict(),
        "normalizer": policy.normalizer.to_dict(),
        "observation_layout": observation_layout(config),
        "joint_order": list(config.robot.joint_names),
        "rates": {"control_hz": config.rates.control_hz, "joint_loop_hz": config.rates.joint_loop_hz},
        "scheduler": scheduler if spec.kind == "diffusion" else None,
        "graph": graph or {},
    }
    return {PREFIX + k: json.dumps(v) for k, v in values.items()}


def parse_metadata(metadata: Mapping[str, str], source: str = "model file") -> ModelInfo:
    """Read and cross-check a model file's metadata; any problem is a ModelMismatchError naming the file."""
    missing = [PREFIX + k for k in KEYS if PREFIX + k not in metadata]
    if missing:
        raise ModelMismatchError(f"{source}: missing metadata {missing}; not a DiffuseLoco-ROS model file "
                                 "or written by an incompatible exporter")
    try:
        values = {k: json.loads(metadata[PREFIX + k]) for k in KEYS}
    except json.JSONDecodeError as exc:
        raise ModelMismatchError(f"{source}: corrupt metadata: {exc}") from exc
    version = values["format_version"]
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelMismatchError(f"{source}: unknown model format version {version!r}; this loader reads "
                                 f"{list(SUPPORTED_FORMAT_VERSIONS)}")
    try:
        config = config_from_dict(values["stack_config"])
        spec = ModelSpec.from_dict(values["model"])
        normalizer = PolicyNormalizer.from_dict(values["normalizer"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelMismatchError(f"{source}: corrupt metadata: {exc}") from exc
    _check_redundant(values, config, spec, normalizer, source)
    return ModelInfo(version, config, spec, normalizer, values["graph"])


def _check_redundant(values: dict[str, Any], config: StackConfig, spec: ModelSpec, normalizer: PolicyNormalizer,
                     source: str) -> None:
    """The readable copies must agree with the embedded config, or the file was edited inconsistently."""
    expected = {"joint_order": list(config.robot.joint_names),
                "observation_layout": json.loads(json.dumps(observation_layout(config))),
                "rates": {"control_hz": config.rates.control_hz, "joint_loop_hz": config.rates.joint_loop_hz}}
    bad = [k for k, v in expected.items() if values[k] != v]
    dims = PolicyDims.from_config(config, spec.predict_velocity)
    if (normalizer.obs.dim, normalizer.goal.dim, normalizer.action.dim) != (dims.obs_dim, dims.goal_dim, dims.action_dim):
        bad.append("normalizer")
    if bad:
        raise ModelMismatchError(f"{source}: corrupt metadata: {bad} disagree with the embedded stack config")


def _close(a: Any, b: Any, tol: float = 1e-6) -> bool:
    a, b = (a,) if not isinstance(a, tuple) else a, (b,) if not isinstance(b, tuple) else b
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=0.0, abs_tol=tol) for x, y in zip(a, b))


def _skill_ids(config: StackConfig) -> list[tuple[int, str]]:
    return [(s.id, s.name) for s in config.skills]


def skill_problems(model: StackConfig, robot: StackConfig, exact: bool = False) -> list[str]:
    """Why the model's skills do not fit the robot's ([] when they do): equal, or (exact False) the robot's first
    skills, same ids and names in the same order."""
    mine, theirs = _skill_ids(model), _skill_ids(robot)
    if mine == theirs:
        return []
    names = f"model {[s.name for s in model.skills]} vs robot {[s.name for s in robot.skills]}"
    if exact:
        return [f"skills differ: {names} (data and training need the same skills, ids and order)"]
    if len(mine) < len(theirs) and theirs[:len(mine)] == mine:
        return []
    return [f"skills differ: {names}; a model may lack skills the robot lists after its own, but its skills must "
            "be the robot's first ones, with the same ids and names in the same order"]


def class_problems(model: StackConfig, robot: StackConfig, exact: bool = False) -> list[str]:
    """Why the model's command classes do not fit the robot config ([] when they do): equal maps, or (exact
    False) a robot config without classes, which runs the model over the model's map (model_view)."""
    if model.command_classes == robot.command_classes or not (exact or robot.command_classes):
        return []
    why = ("data and training need the same class map" if exact else
           "a robot config with a class map runs only models with that map")
    return [f"command classes differ: model {describe_command_classes(model)} vs robot "
            f"{describe_command_classes(robot)} ({why})"]


def _as_model(robot: StackConfig, model: StackConfig) -> StackConfig:
    """The robot config over the model's skills and command classes, the skill one-hot (if any) sized to the
    commands they leave; a ModelMismatchError where the robot's ranges leave a class no common command."""
    if len(model.skills) == len(robot.skills) and model.command_classes == robot.command_classes:
        return robot
    size = len(model.commands)
    goal = tuple(dataclasses.replace(t, size=size) if t.name == "skill" else t for t in robot.observation.goal_terms)
    try:
        return dataclasses.replace(robot, skills=robot.skills[:len(model.skills)],
                                   command_classes=model.command_classes,
                                   observation=dataclasses.replace(robot.observation, goal_terms=goal))
    except ConfigError as exc:
        raise ModelMismatchError(f"the model's command classes ({describe_command_classes(model)}) cannot run on "
                                 f"this robot config: {exc}") from exc


def model_view(robot: StackConfig, model: StackConfig) -> StackConfig:
    """The robot config as this model runs it: over the model's skills (the robot's first ones; check with
    skill_problems first) and command classes, the goal's skill one-hot sized to its commands, so the goal it is
    fed has its layout."""
    problems = skill_problems(model, robot) + class_problems(model, robot)
    if problems:
        raise ModelMismatchError("; ".join(problems))
    return _as_model(robot, model)


def skills_lacking(robot: StackConfig, model: StackConfig) -> dict[int, str]:
    """The robot's skills (id -> name) that the model was not trained on: commands for them are refused."""
    known = {s.id for s in model.skills}
    return {s.id: s.name for s in robot.skills if s.id not in known}


def compatibility_problems(model: StackConfig, robot: StackConfig, exact_skills: bool = False) -> list[str]:
    """Every way the model's training setup differs from the robot's in something the policy depends on. A model
    over the robot's first skills, or with a class map the robot config lacks, fits unless exact_skills (training:
    datasets and a fine-tune's start)."""
    problems = skill_problems(model, robot, exact_skills) + class_problems(model, robot, exact_skills)
    if not skill_problems(model, robot) and not class_problems(model, robot):
        try:   # a prefix, maybe with classes: the goal layout is compared over the model's commands
            robot = _as_model(robot, model)
        except ModelMismatchError as exc:
            problems.append(str(exc))
    mr, rr = model.robot, robot.robot
    if mr.joint_names != rr.joint_names:
        problems.append(f"joint order/names differ: model {list(mr.joint_names)} vs robot {list(rr.joint_names)}")
    mo, ro = model.observation, robot.observation
    if mo.history != ro.history:
        problems.append(f"observation history length differs: model {mo.history} vs robot {ro.history}")
    for label, a, b in (("observation", mo.terms, ro.terms), ("goal", mo.goal_terms, ro.goal_terms)):
        if [(t.name, t.size) for t in a] != [(t.name, t.size) for t in b]:
            problems.append(f"{label} layout differs: model {[(t.name, t.size) for t in a]} vs robot "
                            f"{[(t.name, t.size) for t in b]} (sizes {sum(t.size for t in a)} vs {sum(t.size for t in b)})")
        else:
            for ta, tb in zip(a, b):
                if not _close(ta.scale, tb.scale):
                    problems.append(f"{label} term {ta.name!r} scale differs: model {ta.scale} vs robot {tb.scale}")
    ma, ra = model.action, robot.action
    if ma.horizon != ra.horizon or ma.execute_index != ra.execute_index:
        problems.append(f"action horizon/execute index differ: model {ma.horizon}/{ma.execute_index} vs robot "
                        f"{ra.horizon}/{ra.execute_index}")
    if not _close(ma.scale, ra.scale):
        problems.append(f"action scale differs: model {ma.scale} vs robot {ra.scale}")
    if not _close(model.rates.control_hz, robot.rates.control_hz):
        problems.append(f"control rate differs: model {model.rates.control_hz} Hz vs robot {robot.rates.control_hz} Hz")
    if not _close(mr.default_pose, rr.default_pose):
        problems.append(f"default pose differs: model {list(mr.default_pose)} vs robot {list(rr.default_pose)}")
    safety = robot.safety
    if not (0.0 < mr.kp <= safety.kp_max and 0.0 <= mr.kd <= safety.kd_max):
        problems.append(f"PD gains outside the robot's safety limits: model kp {mr.kp} kd {mr.kd} vs kp_max "
                        f"{safety.kp_max} kd_max {safety.kd_max} (the node drives a model at its data's gains)")
    if not (_close(mr.position_lower, rr.position_lower, 1e-4) and _close(mr.position_upper, rr.position_upper, 1e-4)):
        problems.append(f"joint limits differ (robot appearance: model {mr.appearance!r}, robot {rr.appearance!r}): "
                        f"model [{list(mr.position_lower)}, {list(mr.position_upper)}] vs robot "
                        f"[{list(rr.position_lower)}, {list(rr.position_upper)}]")
    return problems


def within_trained_ranges(robot: StackConfig, model: StackConfig) -> StackConfig:
    """The robot config with each skill's command range cut to what the model was trained on (the intersection;
    the stricter strafe+turn budget): a policy is never asked for speeds outside its data. Skills the model lacks
    keep the robot's ranges (it is not run in them: model_view, skills_lacking). The skills must fit
    (check_compatible)."""
    def cut(mine: tuple[float, float], trained: tuple[float, float]) -> tuple[float, float]:
        low, high = max(mine[0], trained[0]), min(mine[1], trained[1])
        return (low, high) if low <= high else (0.0, 0.0)

    def budget(a: float, b: float) -> float:
        return min(x for x in (a, b) if x > 0) if a > 0 or b > 0 else 0.0

    model_view(robot, model)   # a ModelMismatchError unless the skills fit
    cut_skills = tuple(dataclasses.replace(r, vx=cut(r.vx, m.vx), vy=cut(r.vy, m.vy),
                                           yaw_rate=cut(r.yaw_rate, m.yaw_rate),
                                           strafe_turn_budget=budget(r.strafe_turn_budget, m.strafe_turn_budget))
                       for r, m in zip(robot.skills, model.skills))
    return dataclasses.replace(robot, skills=cut_skills + robot.skills[len(cut_skills):])


def check_compatible(model: StackConfig, robot: StackConfig, source: str = "model file") -> None:
    """Refuse (ModelMismatchError listing all differences) unless the model was trained for this robot setup."""
    problems = compatibility_problems(model, robot)
    if problems:
        raise ModelMismatchError(f"{source} was trained for a different setup than robot {robot.robot.name!r}:\n - "
                                 + "\n - ".join(problems))


def load_onnx(path: Union[str, Path]) -> tuple[Any, ModelInfo]:
    """An exported ONNX model (onnx.ModelProto) and its parsed metadata, from one read of the file."""
    import onnx  # local: only needed where ONNX files are handled

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same to the caller
        raise ModelMismatchError(f"{path}: cannot read ONNX model: {exc}") from exc
    return model, parse_metadata({p.key: p.value for p in model.metadata_props}, source=str(path))


def read_onnx_info(path: Union[str, Path], robot: Optional[StackConfig] = None) -> ModelInfo:
    """Metadata of an exported ONNX model, validated against `robot` when given."""
    _, info = load_onnx(path)
    if robot is not None:
        check_compatible(info.config, robot, source=str(path))
    return info


def graph_precision(graph: Mapping[str, Any]) -> str:
    """A graph entry's precision: files without the key were exported in fp32."""
    return str(graph.get("precision", PRECISION_FP32))


def warm_path(path: Union[str, Path], steps: int) -> Path:
    """Where the warm-start graph with `steps` steps lives next to the full graph."""
    path = Path(path)
    return path.with_name(f"{path.stem}.warm{steps}{path.suffix}")


def warm_graphs(path: Union[str, Path]) -> list[Path]:
    """The warm-start graphs beside a full graph (name.warm<k>.onnx), in name order."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.warm*{path.suffix}"))


def copy_model(source: Union[str, Path], out: Union[str, Path]) -> list[Path]:
    """Copy a model file and every warm-start graph beside it to `out` and its siblings (name.warm<k>.onnx); they
    travel together because the runtime finds a warm-start graph by its name next to the full graph. Returns the
    files written, the full graph first."""
    source, out = Path(source), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [source, *warm_graphs(source)]:
        written.append(out.with_name(path.name.replace(source.stem, out.stem, 1)))
        shutil.copyfile(path, written[-1])
    return written


def default_model_path() -> Path:
    """The model the policy node runs when none is named: the shipped one, in share/diffuseloco_policy/models."""
    return share_dir("diffuseloco_policy") / DEFAULT_MODEL
