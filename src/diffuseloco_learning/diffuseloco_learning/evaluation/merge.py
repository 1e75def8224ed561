"""Merge evaluation runs into one comparison (one report, one table, one chart).

    python -m diffuseloco_learning.evaluation.merge out/eval_diffusion out/eval_mlp out/eval_expert --out out/compare
    python -m diffuseloco_learning.evaluation.merge out/eval/model_2000 out/eval/model_3000 ... --out out/pooled

Why: each policy can be evaluated in its own process (both cores busy, or one machine each), at its own number of
episodes, and over several seed sets. Runs of different policies are compared when they used the same scenario
matrix, physics, command ranges, velocity loop and seeding; runs of one policy label on different base seeds are
pooled (six seed sets -> one row of 720 episodes). Every summary is recomputed from the episodes, so counts add
up (falls, episodes, transitions) and rates and bounds follow from them; older report files are read the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from . import seeding
from .report import markdown, plot_comparison, reference_label, summarize_policy


class MergeError(ValueError):
    """The runs cannot be combined: different matrices or physics, or the same episodes twice."""


def load_run(path: Path) -> dict[str, Any]:
    file = path / "results.json" if path.is_dir() else path
    try:
        run = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MergeError(f"{file}: not a readable evaluation report ({exc})") from exc
    missing = [key for key in ("meta", "policies", "matrix", "episodes") if key not in run]
    if missing:
        raise MergeError(f"{file}: not an evaluation report (no {', '.join(missing)}); it cannot be merged")
    return run


def comparison_basis(run: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two runs to be compared episode for episode (the base seed is checked apart)."""
    meta = run["meta"]
    return {"command_ranges": meta.get("command_ranges"), "command_feedback": meta.get("command_feedback"),
            "matrix": run["matrix"], "physics": meta["physics"], "seeding": seeding.scheme_of(meta),
            "condition": meta.get("condition")}


def _check_basis(runs: list[dict[str, Any]], sources: list[str]) -> None:
    basis = comparison_basis(runs[0])
    for run, source in zip(runs[1:], sources[1:]):
        for key, value in comparison_basis(run).items():
            if value != basis[key]:
                raise MergeError(f"{source}: {key} differs from {sources[0]}'s; the runs are not comparable")


def _pool(runs: list[dict[str, Any]], sources: list[str]) -> tuple[dict[str, list], dict[str, dict], dict]:
    """label -> its episodes from every run, its policy entry, and the base seeds it ran."""
    episodes: dict[str, list] = {}
    policies: dict[str, dict] = {}
    base_seeds: dict[str, list[int]] = {}
    for run, source in zip(runs, sources):
        base = run["meta"]["base_seed"]
        for label, eps in run["episodes"].items():
            if base in base_seeds.get(label, []):
                raise MergeError(f"policy label {label!r} appears in more than one run with base_seed {base} "
                                 "(use label=NAME to tell policies apart, or pool runs of other seed sets)")
            base_seeds.setdefault(label, []).append(base)
            episodes.setdefault(label, []).extend(eps)
        for entry in run["policies"]:
            known = policies.setdefault(entry["label"], {**entry, "source_runs": []})
            known["source_runs"].append(source)
    for label, eps in episodes.items():
        keys = [(e["scenario"], e["seed"]) for e in eps]
        if len(set(keys)) != len(keys):
            raise MergeError(f"policy {label!r}: the same episode (scenario and seed) in more than one run; "
                             "seed sets overlap")
    return episodes, policies, base_seeds


def merge_runs(runs: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    _check_basis(runs, sources)
    episodes, policies, base_seeds = _pool(runs, sources)
    seed_sets = {label: sorted(seeds) for label, seeds in base_seeds.items()}
    if len({tuple(seeds) for seeds in seed_sets.values()}) > 1:
        raise MergeError("the policies ran different base_seed sets (" + "; ".join(
            f"{label}: {seeds}" for label, seeds in seed_sets.items()) + "); they did not meet the same robots")
    matrix = runs[0]["matrix"]
    gaits, min_two_feet = matrix.get("gaits", {}), matrix["transition"]["min_two_feet"]
    summary = {label: summarize_policy(eps, gaits, min_two_feet) for label, eps in episodes.items()}
    episode_sets = {frozenset((e["scenario"], e["seed"]) for e in eps) for eps in episodes.values()}
    merged_policies = list(policies.values())
    first = runs[0]["meta"]
    bases = next(iter(seed_sets.values()))
    meta = dict(first)
    meta.update(seeds="; ".join(f"{label}: {len(eps)} episodes over {len(matrix['scenarios'])} scenarios"
                                for label, eps in episodes.items()),
                base_seed=bases[0] if len(bases) == 1 else ", ".join(str(b) for b in bases),
                physics_draws=len({e["seed"] for eps in episodes.values() for e in eps}),
                wall_s=sum(r["meta"]["wall_s"] for r in runs), sources=sources,
                duration_s=max(r["meta"]["duration_s"] for r in runs),
                feedback_off=[label for r in runs for label in r["meta"].get("feedback_off", [])],
                policy_gains={k: v for r in runs for k, v in r["meta"].get("policy_gains", {}).items()},
                policy_notes={k: v for r in runs for k, v in r["meta"].get("policy_notes", {}).items()},
                reference=reference_label(merged_policies), same_episodes=len(episode_sets) == 1)
    return {"meta": meta, "matrix": matrix, "policies": merged_policies, "summary": summary, "episodes": episodes,
            "plots": [str(Path(source) / p) for run, source in zip(runs, sources) for p in run.get("plots", [])]}


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
