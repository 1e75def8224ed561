"""Run a recipe's steps, skipping what is done: the manifest of the work directory.

manifest.json holds, per step: its settings and their hash, the stamps of the inputs it was made from, the
sha256 of the files it wrote, its status (running / done), its command and how long it took. A step is skipped
when it is done, its settings hash is unchanged, every input still carries the stamp it was made from and its
outputs are there (files unchanged). Otherwise it runs, and a step that runs gets a new stamp, so every step that
reads it runs after it. A resumable step (training) found `running` with unchanged settings was interrupted: it
goes on from its last checkpoint; with changed settings it starts over, its old directories removed first.

Only directories inside the work directory are ever removed; files outside it (the comparison table in the docs,
the shipped model and its card) are written only by the table and ship steps.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from diffuseloco_policy.config import plain
from .steps import Step, file_digest

MANIFEST = "manifest.json"


def settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps(plain(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: to name which setting changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = flatten(plain(old)), flatten(plain(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def output_digests(outputs: Sequence[Path]) -> dict[str, Optional[str]]:
    """sha256 of each file output; a directory output (a dataset) is checked for presence only."""
    return {str(p): file_digest(p) for p in outputs}


class Manifest:
    """The work directory's record of what each step made, written atomically after every change."""

    def __init__(self, work_dir: Path) -> None:
        self.path = Path(work_dir) / MANIFEST
        self.steps: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self.steps = json.loads(self.path.read_text()).get("steps", {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}")
        tmp.write_text(json.dumps({"steps": self.steps}, indent=1))
        os.replace(tmp, self.path)

    def stamp(self, name: str) -> Optional[str]:
        entry = self.steps.get(name)
        return entry.get("stamp") if entry and entry.get("status") == "done" else None


@dataclass
class Decision:
    """Whether a step runs, why, and whether it resumes."""

    run: bool
    reason: str
    resume: bool = False


def decide(step: Step, manifest: Manifest, redone: set[str], redo: Sequence[str] = ()) -> Decision:
    entry = manifest.steps.get(step.name)
    key = settings_hash(step.settings)
    stamps = {name: manifest.stamp(name) for name in step.inputs}
    if entry is None:
        return Decision(True, "not made yet")
    if any(fnmatch.fnmatchcase(step.name, pattern) for pattern in redo):
        return Decision(True, "asked to redo (--redo)")
    same = entry.get("key") == key and entry.get("inputs") == stamps and not redone.intersection(step.inputs)
    if entry.get("status") == "running":
        if same and step.resumable:
            return Decision(True, "interrupted: resuming from its last checkpoint", resume=True)
        return Decision(True, "interrupted: starting over")
    if entry.get("key") != key:
        keys = changed_keys(entry.get("settings", {}), step.settings)
        return Decision(True, "settings changed: " + (", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")))
    redone_inputs = sorted(redone.intersection(step.inputs)) or sorted(
        name for name in step.inputs if entry.get("inputs", {}).get(name) != stamps[name])
    if redone_inputs:
        return Decision(True, "its inputs were redone: " + ", ".join(redone_inputs))
    recorded = entry.get("outputs", {})
    for path in step.outputs:
        if not path.exists():
            return Decision(True, f"{path} is missing")
        if recorded.get(str(path)) is not None and file_digest(path) != recorded[str(path)]:
            return Decision(True, f"{path} changed since it was made")
    return Decision(False, "done")


@dataclass
class Outcome:
    name: str
    decision: Decision
    seconds: float = 0.0


@dataclass
class Runner:
    """Runs steps in order against a work directory's manifest. log: where progress lines go."""

    work_dir: Path
    log: Callable[[str], None] = print
    manifest: Manifest = field(init=False)
    current: Optional[str] = field(default=None, init=False)   # the step running or being checked

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.manifest = Manifest(self.work_dir)

    def plan(self, steps: Sequence[Step], redo: Sequence[str] = ()) -> list[Outcome]:
        """What a run would do, without doing it: a step that would run marks its readers as redone."""
        redone: set[str] = set()
        plan = []
        for step in steps:
            decision = decide(step, self.manifest, redone, redo)
            if decision.run:
                redone.add(step.name)
            plan.append(Outcome(step.name, decision))
        return plan

    def run(self, steps: Sequence[Step], redo: Sequence[str] = ()) -> list[Outcome]:
        redone: set[str] = set()
        outcomes = []
        for step in steps:
            self.current = step.name
            decision = decide(step, self.manifest, redone, redo)
            if not decision.run:
                self.log(f"[pipeline] {step.name}: done, skipped")
                outcomes.append(Outcome(step.name, decision))
            else:
                self.log(f"[pipeline] {step.name}: {decision.reason}\n[pipeline]   {step.shown(decision.resume)}")
                seconds = self._run(step, decision.resume)
                redone.add(step.name)
                outcomes.append(Outcome(step.name, decision, seconds))
                self.log(f"[pipeline] {step.name}: done in {seconds:.1f} s")
            if step.check is not None:
                step.check()
        self.current = None
        return outcomes

    def _run(self, step: Step, resume: bool) -> float:
        if not resume:
            for directory in step.scratch:
                self._remove(directory)
        entry = {"status": "running", "key": settings_hash(step.settings), "settings": plain(step.settings),
                 "inputs": {name: self.manifest.stamp(name) for name in step.inputs}, "command": step.shown(resume)}
        self.manifest.steps[step.name] = entry
        self.manifest.save()
        start = time.perf_counter()
        step.run(resume)   # an exception leaves the entry `running`: the next run resumes or starts over
        seconds = time.perf_counter() - start
        self.manifest.steps[step.name] = {**entry, "status": "done", "stamp": uuid.uuid4().hex[:12],
                                          "outputs": output_digests(step.outputs), "seconds": round(seconds, 1)}
        self.manifest.save()
        return seconds

    def _remove(self, path: Path) -> None:
        """Remove a step's old directory, refusing anything outside the work directory."""
        root, target = self.work_dir.resolve(), Path(path).resolve()
        if root == target or root not in target.parents:
            raise ValueError(f"{path}: only directories inside the work directory {self.work_dir} are removed")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
