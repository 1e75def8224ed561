"""The comparison table: the model, each comparison and the experts on the same episodes, one row each.

Read from the evaluation harness's merged report (evaluation.merge has already refused runs on different
episodes, matrices or command ranges), so every number is the harness's own; the harness's full tables follow
the summary table in the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

EXPERTS = "experts"


def summary_label(summary: Mapping[str, Any], label: str) -> Optional[str]:
    """The report's label for a policy run as `label`: the evaluation appends an ablation's name in brackets."""
    return next((key for key in summary if key == label or key.startswith(f"{label} (")), None)


def _f(value: Optional[float], fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def relative(value: Optional[float], reference: Optional[float]) -> str:
    """'+12 %' against the experts; '-' where either is missing or the reference is zero."""
    if value is None or not reference:
        return "-"
    return f"{100.0 * (value / reference - 1.0):+.0f} %"


def gait_column(skills: Mapping[str, Any]) -> str:
    """Each skill's share of its expected contact pattern, e.g. 'trot 0.99 / pace 1.00'."""
    shares = [f"{name} {_f(s.get('expected_share'), '.2f')}" for name, s in skills.items()
              if s.get("expected_pattern") and name != "stand"]
    return " / ".join(shares) or "-"


def row(label: str, about: str, summary: Mapping[str, Any], experts: Optional[Mapping[str, Any]]) -> str:
    overall = summary["overall"]
    reference = experts["overall"] if experts else {}
    switches = ("-" if overall.get("transition_success") is None
                else f"{round(overall['transition_success'] * overall['transitions'])} / {overall['transitions']}")
    return (f"| {label} | {about or '-'} | {overall['episodes']} | {overall['falls']} | {switches} | "
            f"{_f(overall.get('error_vx'))} | {relative(overall.get('error_vx'), reference.get('error_vx'))} | "
            f"{_f(overall.get('error_yaw_rate'))} | "
            f"{relative(overall.get('error_yaw_rate'), reference.get('error_yaw_rate'))} | "
            f"{gait_column(summary.get('skills', {}))} |")


def table_markdown(report: Mapping[str, Any], model: str, about: Mapping[str, str]) -> str:
    summary, meta = report["summary"], report["meta"]
    experts_label = summary_label(summary, EXPERTS)
    experts = summary[experts_label] if experts_label else None
    order = [(model, "the model as deployed"), *about.items()] + ([(EXPERTS, "the teachers")] if experts else [])
    lines = [f"# The paper's comparisons: {model}", "",
             f"Written by `python -m diffuseloco_learning.pipeline` (recipe `{model}`) from the evaluation "
             f"harness's reports of the same episodes: matrix {meta['matrix']}, base seed {meta['base_seed']}, "
             f"{meta['physics']}; command ranges {meta.get('command_ranges', 'not recorded')}. Each comparison is "
             "the model's recipe with the one change its row names: the same datasets (generated again where the "
             "change is in the data), stages, steps and deployment settings.", "",
             "| policy | what differs | episodes | falls | switches ok | vx err | vs experts | yaw err | vs experts "
             "| expected contact pattern |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, what in order:
        key = summary_label(summary, label)
        if key is None:
            raise ValueError(f"the merged report has no policy {label!r}; it has {sorted(summary)}")
        lines.append(row(key, what, summary[key], experts))
    return "\n".join(lines) + "\n"


def write_table(merged: Path, out: Path, model: str, about: Mapping[str, str]) -> Path:
    """The summary table, then the merged report's own tables, into `out` (a markdown file in the docs)."""
    report = json.loads(merged.read_text())
    harness = (merged.parent / "results.md").read_text() if (merged.parent / "results.md").is_file() else ""
    demoted = [("#" + line if line.startswith("#") else line) for line in harness.splitlines()]
    out.parent.mkdir(parents=True, exist_ok=True)
    body = table_markdown(report, model, about)
    if demoted:
        body += "\n" + "\n".join(demoted) + "\n"
    out.write_text(body)
    return out
