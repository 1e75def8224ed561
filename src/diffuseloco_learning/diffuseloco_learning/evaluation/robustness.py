"""Robustness beyond the training ranges: every policy under each named condition, side by side.

    python -m diffuseloco_learning.evaluation.robustness --policy models/x.onnx --policy expert \\
        --out out/robustness [--study robustness] [--conditions payload weak_motors] [--seeds 7] [--seed 0] \\
        [--workers 16]

Each condition of the study (configs/robustness.yaml: payload, weak motors, low friction, sensor latency, tick
jitter) runs the study's matrix through `evaluate` into OUT/<condition>/ (results.json, results.md): every
episode its own physics draw, spawned from the base seed and the condition's name, and the same draws for every
policy. OUT/robustness.md and OUT/robustness.json then put the policies side by side per condition and per skill,
with falls, their 95 % upper bound and whether a policy fell more often than the reference (the experts).

A condition whose results already exist for the same policies, matrix, episodes and base seed is not run again,
so a stopped study resumes, and conditions can run in separate processes (--conditions) into one OUT: each
process rewrites the side-by-side report from every condition present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from diffuseloco_policy.config import StackConfig
from .cli import add_policy_arguments, evaluate, run_config, shortened
from .conditions import STUDY, Condition, Study, load_study
from .report import fmt, relative
from .scenarios import ScenarioMatrix, load_matrix
from .stats import percent, upper_bound


def _done(out: Path, specs: list[str], matrix: ScenarioMatrix, seeds: int, base_seed: int) -> bool:
    """Whether OUT/results.json already holds this condition for these policies and episodes."""
    file = out / "results.json"
    if not file.is_file():
        return False
    try:
        report = json.loads(file.read_text())
    except json.JSONDecodeError:
        return False
    meta = report.get("meta", {})
    scenarios = [s.get("name") for s in report.get("matrix", {}).get("scenarios", [])]
    return ([p.get("spec") for p in report.get("policies", [])] == list(specs) and meta.get("seeds") == seeds
            and meta.get("base_seed") == base_seed and scenarios == [s.name for s in matrix.scenarios]
            and meta.get("duration_s") == max(s.duration_s for s in matrix.scenarios))


def run_study(specs: list[str], study: Study, conditions: list[Condition], matrix: ScenarioMatrix,
              config: StackConfig, seeds: int, out: Path, base_seed: int = 0, plots: bool = False, log=print,
              ranges_from: str = "the robot config", workers: int = 1) -> dict[str, Any]:
    """Evaluate every policy under each condition (skipping those already done) and write the side-by-side
    report over every condition of the study found in `out`. workers: processes each condition's episodes run in
    (evaluate; the results do not depend on it)."""
    for condition in conditions:
        where = out / condition.name
        if _done(where, specs, matrix, seeds, base_seed):
            log(f"{condition.name}: already in {where}, not run again")
            continue
        log(f"{condition.name}: {condition.describe()}")
        evaluate(specs, matrix, config, seeds, where, ["none"], base_seed=base_seed, plots=plots, log=log,
                 condition=condition, ranges_from=ranges_from, workers=workers)
    return write_report(study, out)


def _condition_runs(study: Study, out: Path, log=print) -> list[tuple[Condition, dict[str, Any]]]:
    """Every condition of the study with results in `out`; one another process is writing right now is left
    out (its own report will include it)."""
    runs = []
    for condition in study.conditions:
        file = out / condition.name / "results.json"
        if file.is_file():
            try:
                runs.append((condition, json.loads(file.read_text())))
            except json.JSONDecodeError:
                log(f"{condition.name}: {file} is not complete yet, left out of this report")
    return runs


def _totals(runs: list[tuple[Condition, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per policy over all conditions: episodes and falls summed, with the bound on the pooled rate."""
    totals: dict[str, dict[str, Any]] = {}
    for _, report in runs:
        for label, summary in report["summary"].items():
            entry = totals.setdefault(label, {"episodes": 0, "falls": 0})
            entry["episodes"] += summary["overall"]["episodes"]
            entry["falls"] += summary["overall"]["falls"]
    for entry in totals.values():
        entry["fall_upper95"] = upper_bound(entry["falls"], entry["episodes"])
    return totals


def write_report(study: Study, out: Path) -> dict[str, Any]:
    """OUT/robustness.json and OUT/robustness.md from every condition of `study` present in `out`."""
    runs = _condition_runs(study, out)
    if not runs:
        raise FileNotFoundError(f"{out}: no condition of study {study.name} has results yet")
    report = {"study": study.name, "conditions": [
        {**condition.to_dict(), "run": f"{condition.name}/results.json", "meta": run["meta"],
         "summary": {label: {"overall": s["overall"], "skills": s["skills"]} for label, s in run["summary"].items()}}
        for condition, run in runs], "totals": _totals(runs)}
    (out / "robustness.json").write_text(json.dumps(report, indent=1))
    (out / "robustness.md").write_text(markdown(report))
    return report


def _falls(block: dict[str, Any]) -> str:
    bound = upper_bound(block["falls"], block["episodes"]) if block.get("episodes") else None
    return "-" if not block else f"{block['falls']} / {block['episodes']}" + (
        "" if bound is None else f" (<= {percent(bound)} %)")


def _verdict(mine: dict[str, Any], theirs: Optional[dict[str, Any]]) -> str:
    if not theirs:
        return "-"
    return "yes" if mine["falls"] <= theirs["falls"] else "**no**"


def markdown(report: dict[str, Any]) -> str:
    conditions = report["conditions"]
    first = conditions[0]["meta"]
    reference = first.get("reference")
    lines = [f"# Robustness beyond the training ranges: {report['study']}", "",
             f"Matrix {first['matrix']}, {first['seeds']} episode(s) per scenario and condition, base seed "
             f"{first['base_seed']}; every episode its own physics draw (spawned from the base seed, the scenario, "
             f"the episode and the condition), the same draws for every policy. Each condition replaces only what "
             f"it names in {first['physics'].split(';')[0]}. Command ranges: {first.get('command_ranges')}.", "",
             "Falls: count / episodes and the exact one-sided 95 % upper bound on the rate (Clopper-Pearson). "
             + (f"Tracking errors of other policies relative to {reference}'s." if reference else ""), "",
             "## Per condition", "",
             "| condition | changes | policy | falls | vx err | yaw err | transitions ok |"
             + (f" falls <= {reference} |" if reference else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if reference else "")]
    for c in conditions:
        ref = c["summary"].get(reference, {}).get("overall") if reference else None
        for label, s in c["summary"].items():
            o = s["overall"]
            vx, yaw = fmt(o["error_vx"]), fmt(o["error_yaw_rate"])
            if ref is not None and label != reference:
                vx += f" ({relative(o['error_vx'], ref['error_vx'])})"
                yaw += f" ({relative(o['error_yaw_rate'], ref['error_yaw_rate'])})"
            ok = "-" if o["transition_success"] is None else f"{o['transition_success']:.2f} ({o['transitions']})"
            verdict = f" {_verdict(o, ref) if label != reference else '-'} |" if reference else ""
            lines.append(f"| {c['name']} | {c['changes']} | {label} | {_falls(o)} | {vx} | {yaw} | {ok} |{verdict}")
    lines += ["", "## All conditions", "", "| policy | falls |", "|---|---|"]
    lines += [f"| {label} | {_falls(t)} |" for label, t in report["totals"].items()]
    lines += ["", *_skill_table(conditions)]
    return "\n".join(lines) + "\n"


def _skill_table(conditions: list[dict[str, Any]]) -> list[str]:
    """Per condition and skill, the policies side by side: falls, vx and yaw error."""
    labels = list(dict.fromkeys(label for c in conditions for label in c["summary"]))
    lines = ["## Per condition and skill", "", "Falls while the skill was in effect / episodes that reached it; "
             "vx and yaw error over its scored segments.", "",
             "| condition | skill | " + " | ".join(f"{label} falls | vx err | yaw err" for label in labels) + " |",
             "|---|---|" + "---|---|---|" * len(labels)]
    for c in conditions:
        skills = list(dict.fromkeys(k for s in c["summary"].values() for k in s["skills"]))
        for skill in skills:
            cells = []
            for label in labels:
                k = c["summary"].get(label, {}).get("skills", {}).get(skill, {})
                cells.append(f"{_falls(k) if 'falls' in k else '-'} | {fmt(k.get('error_vx'))} | "
                             f"{fmt(k.get('error_yaw_rate'))}")
            lines.append(f"| {c['name']} | {skill} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.evaluation.robustness",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_policy_arguments(parser)
    parser.add_argument("--study", default=STUDY, help="a study name (configs/<name>.yaml) or YAML path")
    parser.add_argument("--conditions", nargs="+", default=None, metavar="NAME",
                        help="run only these conditions (default: all of the study's)")
    parser.add_argument("--scenarios", default=None, help="matrix instead of the study's (e.g. eval_smoke)")
    parser.add_argument("--out", type=Path, default=Path("out/robustness"))
    args = parser.parse_args(argv)
    study = load_study(args.study)
    conditions = [study.condition(n) for n in args.conditions] if args.conditions else list(study.conditions)
    config, ranges_from = run_config(args, parser)
    matrix = shortened(load_matrix(args.scenarios or study.matrix, config), args.duration)
    try:
        report = run_study(args.policy, study, conditions, matrix, config, args.seeds or study.seeds, args.out,
                           args.seed, plots=not args.no_plots, ranges_from=ranges_from, workers=args.workers)
    except KeyboardInterrupt:
        print("robustness: interrupted; the conditions finished so far are kept, a rerun resumes after them",
              file=sys.stderr)
        return 130
    sys.stdout.write(markdown(report))
    print(f"wrote {args.out / 'robustness.md'}, {args.out / 'robustness.json'} and one folder per condition")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
