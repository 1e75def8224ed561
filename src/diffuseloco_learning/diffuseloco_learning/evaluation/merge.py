"""Merge evaluation runs of different policies into one comparison (one report, one table, one chart).

    python -m diffuseloco_learning.evaluation.merge out/eval_diffusion out/eval_mlp out/eval_expert --out out/compare

Why: each policy can be evaluated in its own process (both cores busy, or one machine each) and at its own
number of seeds; the runs are comparable when they used the same scenario matrix and base seed, which this
checks before merging (seed i draws the same physics in every run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from .report import markdown, plot_comparison


class MergeError(ValueError):
    """The runs cannot be compared: different matrices or base seeds, or a policy label used twice."""


def load_run(path: Path) -> dict[str, Any]:
    file = path / "results.json" if path.is_dir() else path
    return json.loads(file.read_text())


def comparison_basis(run: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two runs to be compared episode for episode."""
    return {"command_ranges": run["meta"].get("command_ranges"),
            "command_feedback": run["meta"].get("command_feedback"), "matrix": run["matrix"],
            "base_seed": run["meta"]["base_seed"], "physics": run["meta"]["physics"]}


def merge_runs(runs: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    first, basis = runs[0], comparison_basis(runs[0])
    for run, source in zip(runs[1:], sources[1:]):
        for key, value in comparison_basis(run).items():
            if value != basis[key]:
                raise MergeError(f"{source}: {key} differs from {sources[0]}'s; the runs are not comparable")
    merged: dict[str, Any] = {"policies": [], "summary": {}, "episodes": {}, "plots": []}
    seeds = []
    for run, source in zip(runs, sources):
        for label in run["summary"]:
            if label in merged["summary"]:
                raise MergeError(f"policy label {label!r} appears in more than one run (use label=NAME)")
            seeds.append(f"{label}: {run['meta']['seeds']}")
        merged["policies"] += [{**p, "source_run": source} for p in run["policies"]]
        merged["summary"].update(run["summary"])
        merged["episodes"].update(run["episodes"])
        merged["plots"] += [str(Path(source) / p) for p in run["plots"]]
    meta = dict(first["meta"])
    meta.update(seeds="; ".join(seeds), wall_s=sum(r["meta"]["wall_s"] for r in runs), sources=sources,
                duration_s=max(r["meta"]["duration_s"] for r in runs),
                feedback_off=[label for r in runs for label in r["meta"].get("feedback_off", [])],
                policy_gains={k: v for r in runs for k, v in r["meta"].get("policy_gains", {}).items()})
    return {"meta": meta, "matrix": first["matrix"], **merged}


def write_merged(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(report["summary"], report["meta"]))
    return [out / "results.json", out / "results.md", plot_comparison(report["summary"], out / "comparison.png")]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.evaluation.merge",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation out dirs (or their results.json)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = merge_runs([load_run(p) for p in args.runs], [str(p) for p in args.runs])
    for path in write_merged(report, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
