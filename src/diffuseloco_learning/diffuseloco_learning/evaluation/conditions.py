"""Named physics conditions beyond the training ranges (configs/robustness.yaml), for the robustness study.

A condition starts from the evaluation's randomized physics (SimConfig.randomized() without pushes: every term
still drawn per episode) and replaces some of it: randomization ranges (payload, motor strength, gain error,
friction, ...), the sensor or actuation latency, pushes, or the spread of physics steps between control ticks.
Everything a condition does not name stays as the matrix's physics has it, so a condition isolates one change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union


from diffuseloco_policy.config import ConfigError, read_yaml
from diffuseloco_sim import SimConfig
from diffuseloco_sim.sim_config import RandomizationConfig
from ..presets import presets_dir

STUDY = "robustness"   # configs/robustness.yaml
_RANGES = {f.name for f in fields(RandomizationConfig)} - {"payload_com_shift"}
_SCALARS = ("sensor_latency_s", "actuation_latency_s", "tick_jitter_steps")


@dataclass(frozen=True)
class Condition:
    """One named change of the evaluation physics."""

    name: str
    about: str = ""
    randomization: dict[str, tuple[float, float]] = field(default_factory=dict)
    sensor_latency_s: Union[float, None] = None
    actuation_latency_s: Union[float, None] = None
    pushes: Union[bool, None] = None
    tick_jitter_steps: float = 0.0

    def apply(self, base: SimConfig) -> SimConfig:
        """`base` with this condition's terms replaced."""
        out = base.with_ranges(**self.randomization) if self.randomization else base
        if self.sensor_latency_s is not None:
            out = replace(out, sensor_latency_s=self.sensor_latency_s)
        if self.actuation_latency_s is not None:
            out = replace(out, actuation_latency_s=self.actuation_latency_s)
        if self.pushes is not None:
            out = replace(out, pushes=replace(out.pushes, enabled=self.pushes))
        return out

    def describe(self) -> str:
        """What the condition changes, e.g. 'payload_mass 1.5-2.5; sensor latency 10 ms'."""
        parts = [f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in self.randomization.items()]
        if self.sensor_latency_s is not None:
            parts.append(f"sensor latency {1000 * self.sensor_latency_s:g} ms")
        if self.actuation_latency_s is not None:
            parts.append(f"actuation latency {1000 * self.actuation_latency_s:g} ms")
        if self.pushes is not None:
            parts.append("pushes on" if self.pushes else "pushes off")
        if self.tick_jitter_steps:
            parts.append(f"tick jitter {self.tick_jitter_steps:g} steps (std)")
        return "; ".join(parts) or "the matrix's physics"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "about": self.about, "changes": self.describe(),
                "randomization": {k: list(v) for k, v in self.randomization.items()},
                "sensor_latency_s": self.sensor_latency_s, "actuation_latency_s": self.actuation_latency_s,
                "pushes": self.pushes, "tick_jitter_steps": self.tick_jitter_steps}


@dataclass(frozen=True)
class Study:
    """A robustness study: the conditions, the matrix every condition runs and the episodes per scenario."""

    name: str
    matrix: str
    seeds: int
    conditions: tuple[Condition, ...]

    def condition(self, name: str) -> Condition:
        for condition in self.conditions:
            if condition.name == name:
                return condition
        raise ConfigError(f"no condition {name!r} in study {self.name} (one of {[c.name for c in self.conditions]})")


def study_path(name: Union[str, Path]) -> Path:
    """A YAML path, or a shipped study's name ('robustness' -> configs/robustness.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = presets_dir() / f"{name}.yaml"
    if not shipped.exists():
        raise ConfigError(f"no robustness study {name!r} (a YAML path, or {STUDY})")
    return shipped


def load_study(name: Union[str, Path] = STUDY) -> Study:
    path = study_path(name)
    data = read_yaml(path, "robustness study")
    return study_from_dict(data, where=path.name)


def study_from_dict(data: Any, where: str = "study") -> Study:
    _known(data, {"name", "matrix", "seeds", "conditions"}, where)
    conditions = data.get("conditions") or {}
    if not isinstance(conditions, dict) or not conditions:
        raise ConfigError(f"{where}: conditions must be a non-empty mapping of name -> changes")
    seeds = int(data.get("seeds", 1))
    if seeds < 1:
        raise ConfigError(f"{where}.seeds must be >= 1, got {seeds}")
    return Study(str(data.get("name", where)), str(data.get("matrix", "eval_default")), seeds,
                 tuple(condition_from_dict(str(name), spec, f"{where}.conditions.{name}")
                       for name, spec in conditions.items()))


def condition_from_dict(name: str, spec: Any, where: str) -> Condition:
    _known(spec, {"about", "randomization", "pushes", *_SCALARS}, where)
    ranges = spec.get("randomization") or {}
    _known(ranges, _RANGES, f"{where}.randomization")
    parsed = {key: _range(value, f"{where}.randomization.{key}") for key, value in ranges.items()}
    scalars = {key: _non_negative(spec[key], f"{where}.{key}") for key in _SCALARS if key in spec}
    pushes = spec.get("pushes")
    if pushes is not None and not isinstance(pushes, bool):
        raise ConfigError(f"{where}.pushes must be true or false, got {pushes!r}")
    condition = Condition(name, str(spec.get("about", "")), parsed, pushes=pushes, **scalars)
    if condition.describe() == "the matrix's physics":
        raise ConfigError(f"{where}: changes nothing")
    return condition


def _range(value: Any, where: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected [low, high], got {value!r}") from None
    if not low <= high or low < 0.0:
        raise ConfigError(f"{where}: expected 0 <= low <= high, got [{low}, {high}]")
    return (low, high)


def _non_negative(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not (math.isfinite(number) and number >= 0.0):
        raise ConfigError(f"{where}: expected a number >= 0, got {value!r}")
    return number


def _known(data: Any, keys: set, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(data) - set(keys)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
