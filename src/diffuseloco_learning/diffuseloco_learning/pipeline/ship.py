"""The last step of a recipe: the candidate model replaces the shipped file only if its evaluation clears the gate.

Every step before it writes inside the work directory: the export, its evaluation and its card are a candidate.
A re-learned model that falls, or tracks worse than the experts by more than the recipe allows, leaves the
shipped file and its card untouched (a run of hours must not silently replace a validated model with a worse
one). The gate reads the merged report of the model and the experts on the same episodes (eval/card).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from diffuseloco_policy.model_file import copy_model, warm_graphs


@dataclass(frozen=True)
class ShipGate:
    """What the candidate's evaluation must show to replace the shipped file. None: not checked.

    max_falls: falls over the whole evaluation. max_error_ratio: the pooled vx and yaw-rate tracking errors
    against the experts' on the same episodes (1.05: at most 5 % above theirs)."""

    max_falls: Optional[int] = 0
    max_error_ratio: Optional[float] = 1.05


class ShipRefused(RuntimeError):
    """The candidate did not clear the gate: the shipped file stays as it was."""


TRACKED_AXES = ("vx", "yaw_rate")


def gate_problems(report: dict[str, Any], model: str, experts: Optional[str], gate: ShipGate) -> list[str]:
    """What the candidate's evaluation misses, one sentence each; empty when it clears the gate."""
    summary = report["summary"]
    if model not in summary:
        return [f"the report has no policy {model!r} (it has {sorted(summary)})"]
    mine = summary[model]["overall"]
    problems = []
    if gate.max_falls is not None and mine["falls"] > gate.max_falls:
        problems.append(f"{mine['falls']} falls in {mine['episodes']} episodes (at most {gate.max_falls} allowed)")
    if gate.max_error_ratio is None:
        return problems
    if experts is None or experts not in summary:
        return problems + ["max_error_ratio needs the experts evaluated on the same episodes (evaluation.experts)"]
    theirs = summary[experts]["overall"]
    for axis in TRACKED_AXES:
        ours, reference = mine.get(f"error_{axis}"), theirs.get(f"error_{axis}")
        if ours is None or not reference:
            problems.append(f"{axis} tracking error missing from the report")
        elif ours / reference > gate.max_error_ratio:
            problems.append(f"{axis} tracking error {ours:.4f} is {ours / reference:.2f} x the experts' "
                            f"{reference:.4f} (at most {gate.max_error_ratio:.2f} x allowed)")
    return problems


def ship(candidate: Path, target: Path, report: Path, model_label: str, experts_label: Optional[str],
         gate: ShipGate) -> list[Path]:
    """Copy the candidate's files over the target's when the report clears the gate; otherwise refuse and touch
    nothing. Returns the files written."""
    problems = gate_problems(json.loads(report.read_text()), model_label, experts_label, gate)
    if problems:
        raise ShipRefused(f"{candidate} does not replace {target}: " + "; ".join(problems)
                          + f" (see {report.with_suffix('.md')}); the candidate stays where it is")
    for stale in warm_graphs(target):   # a candidate with fewer warm-start graphs leaves none of the old ones
        stale.unlink()
    written = copy_model(candidate, target)
    written.append(target.with_suffix(".md"))
    shutil.copyfile(candidate.with_suffix(".md"), written[-1])
    return written
