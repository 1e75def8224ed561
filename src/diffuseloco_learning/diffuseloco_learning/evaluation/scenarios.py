"""The scenario matrix: which command schedules every policy is evaluated on, read from YAML.

A matrix file (configs/eval_default.yaml, configs/eval_tiny.yaml) holds the episode timing, the transition
criteria, the physics and a list of groups. Each group expands into scenarios against the robot config's skill
ranges, so the matrix follows the ranges when they change:

- kind speed: one scenario per skill and vx fraction (f > 0: f * vx_max, f < 0: |f| * vx_min), straight ahead;
- kind turn: per skill, yaw rate +-yaw_fraction of its range (left and right) at vx_fraction * vx_max;
- kind switch: every ordered pair of the skills, switching at at_s, each at vx_fraction * vx_max (with
  `involving: [names]`, only the pairs to or from one of those skills);
- kind schedule: explicit scenarios, `schedule: [[at_s, skill, vx, vy, yaw_rate], ...]`.

`skills` is a list of names, `all`, or `moving` (every skill whose vx range is not just 0). Schedule times
count from RUN; the first `lead_in_s` seconds are always the stand skill (not scored), so a schedule starting
earlier starts at lead_in_s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from diffuseloco_policy.config import ConfigError, SkillConfig, StackConfig, read_yaml
from ..presets import presets_dir

GAIT_PATTERNS = ("diagonal", "lateral", "front_rear", "all_feet", "in_step")


@dataclass(frozen=True)
class Segment:
    """From start_s (seconds after RUN) on: this skill and command. lead_in segments are not scored."""

    start_s: float
    skill: int
    command: tuple[float, float, float]
    lead_in: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    segments: tuple[Segment, ...]
    duration_s: float

    def segment_at(self, t: float) -> int:
        """Index of the segment in effect t seconds after RUN."""
        index = 0
        for i, segment in enumerate(self.segments):
            if segment.start_s <= t + 1e-9:
                index = i
        return index

    def end_of(self, index: int) -> float:
        return self.segments[index + 1].start_s if index + 1 < len(self.segments) else self.duration_s

    def to_dict(self, config: StackConfig) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "duration_s": self.duration_s,
                "schedule": [{"at_s": s.start_s, "skill": config.skill(s.skill).name, "command": list(s.command),
                              "lead_in": s.lead_in} for s in self.segments]}


@dataclass(frozen=True)
class TransitionCriteria:
    window_s: float = 3.0
    pattern_from_s: float = 1.0
    min_share: float = 0.6
    min_two_feet: float = 0.2


@dataclass(frozen=True)
class ScenarioMatrix:
    name: str
    scenarios: tuple[Scenario, ...]
    seeds: int
    settle_s: float
    randomized: bool
    pushes: bool
    transition: TransitionCriteria
    gaits: dict[str, str] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.group for s in self.scenarios))

    def to_dict(self, config: StackConfig) -> dict[str, Any]:
        return {"name": self.name, "seeds": self.seeds, "settle_s": self.settle_s,
                "physics": {"randomized": self.randomized, "pushes": self.pushes},
                "transition": vars(self.transition), "gaits": self.gaits,
                "scenarios": [s.to_dict(config) for s in self.scenarios]}


def resolve_matrix_path(name: Union[str, Path]) -> Path:
    """A path, or the name of a shipped matrix: 'eval_default' / 'default' -> configs/eval_default.yaml."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = presets_dir()
    for candidate in (f"{name}.yaml", f"eval_{name}.yaml"):
        if (shipped / candidate).exists():
            return shipped / candidate
    raise ConfigError(f"no scenario matrix {name!r} (a YAML path or one of "
                      f"{sorted(p.stem for p in shipped.glob('eval_*.yaml'))})")


def load_matrix(name: Union[str, Path], config: StackConfig) -> ScenarioMatrix:
    path = resolve_matrix_path(name)
    data = read_yaml(path, "scenario matrix")
    return matrix_from_dict(data, config, where=path.name)


def matrix_from_dict(data: dict[str, Any], config: StackConfig, where: str = "matrix") -> ScenarioMatrix:
    _known(data, {"name", "seeds", "episode", "transition", "physics", "gaits", "groups"}, where)
    episode = data.get("episode", {})
    _known(episode, {"duration_s", "lead_in_s", "settle_s"}, f"{where}.episode")
    duration, lead_in = float(episode.get("duration_s", 20.0)), float(episode.get("lead_in_s", 1.0))
    physics = data.get("physics", {})
    _known(physics, {"randomized", "pushes"}, f"{where}.physics")
    transition = data.get("transition", {})
    _known(transition, set(vars(TransitionCriteria())), f"{where}.transition")
    gaits = dict(data.get("gaits", {}))
    for skill, pattern in gaits.items():
        config.skill(skill)
        if pattern not in GAIT_PATTERNS:
            raise ConfigError(f"{where}.gaits.{skill}: {pattern!r} is not one of {GAIT_PATTERNS}")
    scenarios: list[Scenario] = []
    for i, group in enumerate(data.get("groups", [])):
        for name, schedule in _expand(group, config, f"{where}.groups[{i}]"):
            scenarios.append(_scenario(name, str(group["name"]), schedule, duration, lead_in, config))
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate scenario names {sorted({n for n in names if names.count(n) > 1})}")
    if not scenarios:
        raise ConfigError(f"{where}: no scenarios")
    return ScenarioMatrix(str(data.get("name", where)), tuple(scenarios), int(data.get("seeds", 1)),
                          float(episode.get("settle_s", 1.5)), bool(physics.get("randomized", True)),
                          bool(physics.get("pushes", False)),
                          TransitionCriteria(**{k: float(v) for k, v in transition.items()}), gaits)


def _known(data: Any, keys: set, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(data) - keys
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")


Schedule = list[tuple[float, int, tuple[float, float, float]]]


def _skills(spec: Any, config: StackConfig) -> list[SkillConfig]:
    if spec in (None, "all"):
        return list(config.skills)
    if spec == "moving":
        return [s for s in config.skills if s.vx != (0.0, 0.0)]
    return [config.skill(name) for name in spec]


def _fraction(f: float, bounds: tuple[float, float]) -> float:
    return round(f * bounds[1] if f >= 0 else -f * bounds[0], 4)


def _cruise(skill: SkillConfig, vx_fraction: float) -> tuple[float, float, float]:
    return (_fraction(vx_fraction, skill.vx), 0.0, 0.0)


def _expand(group: dict[str, Any], config: StackConfig, where: str) -> list[tuple[str, Schedule]]:
    kind = group.get("kind")
    common = {"name", "kind", "skills"}
    if kind == "speed":
        _known(group, common | {"vx_fractions"}, where)
        out: dict[str, Schedule] = {}
        for skill in _skills(group.get("skills"), config):
            for f in group.get("vx_fractions", [0.5]):
                vx = _fraction(float(f), skill.vx)
                if f != 0 and vx == 0.0:
                    continue  # outside this skill's range (e.g. backwards for a forward-only skill)
                label = skill.name if skill.vx == (0.0, 0.0) else f"{skill.name}_vx{vx:+.2f}"
                out[label] = [(0.0, skill.id, (vx, 0.0, 0.0))]  # equal commands collapse
        return list(out.items())
    if kind == "turn":
        _known(group, common | {"vx_fraction", "yaw_fraction"}, where)
        out = []
        for skill in _skills(group.get("skills"), config):
            vx = _fraction(float(group.get("vx_fraction", 0.5)), skill.vx)
            for side, sign in (("left", 1.0), ("right", -1.0)):
                yaw = _fraction(sign * float(group.get("yaw_fraction", 0.8)), skill.yaw_rate)
                if yaw != 0.0:
                    out.append((f"{skill.name}_turn_{side}", [(0.0, skill.id, (vx, 0.0, yaw))]))
        return out
    if kind == "switch":
        _known(group, common | {"at_s", "vx_fraction", "involving"}, where)
        at, f = float(group.get("at_s", 10.0)), float(group.get("vx_fraction", 0.5))
        skills = _skills(group.get("skills"), config)
        involving = {s.id for s in _skills(group.get("involving"), config)}
        return [(f"{a.name}_to_{b.name}", [(0.0, a.id, _cruise(a, f)), (at, b.id, _cruise(b, f))])
                for a, b in itertools.permutations(skills, 2) if {a.id, b.id} & involving]
    if kind == "schedule":
        _known(group, {"name", "kind", "scenarios"}, where)
        out = []
        for j, entry in enumerate(group.get("scenarios", [])):
            _known(entry, {"name", "schedule"}, f"{where}.scenarios[{j}]")
            rows = []
            for row in entry["schedule"]:
                if len(row) != 5:
                    raise ConfigError(f"{where}.scenarios[{j}]: schedule rows are [at_s, skill, vx, vy, yaw_rate]")
                rows.append((float(row[0]), config.skill(row[1]).id, tuple(float(v) for v in row[2:])))
            out.append((str(entry["name"]), rows))
        return out
    raise ConfigError(f"{where}: kind must be speed, turn, switch or schedule, got {kind!r}")


def _scenario(name: str, group: str, schedule: Schedule, duration: float, lead_in: float,
              config: StackConfig) -> Scenario:
    stand = config.skill("stand").id
    segments = [Segment(0.0, stand, (0.0, 0.0, 0.0), lead_in=True)] if lead_in > 0 else []
    for at, skill, command in sorted(schedule, key=lambda row: row[0]):
        clamped = config.skill(skill).clamp_command(*command)  # what PolicyLoop will put in effect
        segments.append(Segment(max(at, lead_in), skill, clamped))
    # a later entry at the same time replaces an earlier one
    merged: list[Segment] = []
    for segment in segments:
        if merged and abs(merged[-1].start_s - segment.start_s) < 1e-9:
            merged[-1] = segment
        else:
            merged.append(segment)
    if merged[-1].start_s >= duration:
        raise ConfigError(f"scenario {name}: schedule extends past the episode ({duration} s)")
    return Scenario(name, group, tuple(merged), duration)
