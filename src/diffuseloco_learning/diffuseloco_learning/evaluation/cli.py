"""Evaluate policies in the simulator over a scenario matrix.

    python -m diffuseloco_learning.evaluation --policy models/x.onnx --policy expert \\
        --scenarios eval_default --seeds 5 --out out/eval [--ablation none current_frame open_loop_chunk] \\
        [--workers 16]

Every policy runs through the deployed PolicyLoop (stand up, RUN, the scenario's commands), and a bare model
path runs as the policy node runs that file: its command envelope (the run's ranges are cut to every model's
envelope, so the experts meet the same commands), its per-skill gains, its warm start, no sampler noise and the
stack's velocity loop. Options (spec keys, --full-ranges) are the ablations. Every episode draws its own physics
(seeding.py), the same for every policy. Writes results.json (every episode and the summaries), results.md
(tables per policy x group and per policy x skill, falls with a 95 % bound, every policy against the experts)
and PNG plots (commanded vs achieved velocity and a contact raster for one episode per skill and one switch).
A model trained on fewer skills than the robot config lists runs over its own (as the policy node runs it); the
scenarios with a skill it lacks are skipped, and the report names them. --workers N runs the episodes in N
processes with the same results (episode_pool.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from diffuseloco_policy.command_feedback import describe as describe_feedback, without_feedback
from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_policy.gains import describe_scales, with_kp_scales
from diffuseloco_policy.model_file import model_view, skills_lacking, within_trained_ranges
from diffuseloco_sim import SimConfig
from . import seeding
from .conditions import STUDY, Condition, load_study
from .episode import LoopOptions
from .episode_pool import EpisodeJob, Setting, run_episodes
from .policies import EXPERT, EvalPolicy, make_policy, parse_spec, trained_config
from .report import markdown, plot_episode, reference_label, summarize_policy
from .scenarios import Scenario, ScenarioMatrix, load_matrix
from .seeding import episode_seed

ABLATIONS = ("none", "current_frame", "open_loop_chunk")


def variant_parts(variant: str) -> set[str]:
    """'none', 'current_frame', 'open_loop_chunk' or a '+' combination of the last two -> the ablations in it."""
    parts = set(variant.split("+")) - {"none"}
    unknown = parts - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablation {sorted(unknown)}; choose from {ABLATIONS} (combine with '+')")
    return parts


def loop_options(variant: str, config: StackConfig, inference_wait_s: float, open_loop_ticks: Optional[int],
                 delayed_inputs: bool = True, tick_jitter_steps: float = 0.0) -> LoopOptions:
    """The loop settings of a variant (see variant_parts). A model trained on the current frame (delayed_inputs
    False) always runs with it: feeding it the delayed window would be a mismatch, not the ablation."""
    parts = variant_parts(variant)
    longest = config.action.horizon - config.action.execute_index
    replan = (open_loop_ticks or longest) if "open_loop_chunk" in parts else 1
    current_frame = "current_frame" in parts or not delayed_inputs
    return LoopOptions(inference_wait_s, current_frame=current_frame, replan_every=replan,
                       tick_jitter_steps=tick_jitter_steps)


def sim_config(matrix: ScenarioMatrix) -> SimConfig:
    if not matrix.randomized:
        return SimConfig()
    randomized = SimConfig.randomized()
    return randomized if matrix.pushes else randomized.without_pushes()


def representative(matrix: ScenarioMatrix) -> dict[str, str]:
    """stem -> scenario to plot: per skill, its single-skill scenario with the fastest forward command, and one
    switch (between two moving skills if there is one)."""
    chosen: dict[str, tuple[float, str]] = {}
    switches: list[tuple[bool, str]] = []
    for scenario in matrix.scenarios:
        scored = [s for s in scenario.segments if not s.lead_in]
        skills = {s.skill for s in scored}
        if len(skills) == 1:
            key, vx = f"skill{scored[0].skill}", max(s.command[0] for s in scored)
            if key not in chosen or vx > chosen[key][0]:
                chosen[key] = (vx, scenario.name)
        elif skills:
            switches.append((all(s.command[0] != 0.0 for s in scored), scenario.name))
    out = {key: name for key, (_, name) in chosen.items()}
    if switches:
        out["switch"] = next((name for moving, name in switches if moving), switches[0][1])
    return out


def physics_description(matrix: ScenarioMatrix, condition: Optional[Condition] = None) -> str:
    base = (("SimConfig.randomized()" + ("" if matrix.pushes else " without pushes")) if matrix.randomized
            else "ideal (no noise, latency, randomization)")
    return base + (f"; condition {condition.name}: {condition.describe()}" if condition else "")


def episode_plan(matrix: ScenarioMatrix, seeds: int, base_seed: int, stream: str = "") -> list[tuple[Any, int, int]]:
    """(scenario, index, seed) of every episode: each its own physics draw, the same list for every policy."""
    return [(scenario, i, episode_seed(base_seed, scenario.name, i, stream))
            for scenario in matrix.scenarios for i in range(seeds)]
def runnable(policy: EvalPolicy, matrix: ScenarioMatrix, config: StackConfig
             ) -> tuple[StackConfig, list[Scenario], dict[str, Any]]:
    """The config a policy runs with (a model over fewer skills than the robot's: over its own, model_view), the
    scenarios it can run, and what it skips ({} when nothing): the skills it lacks and the scenarios using them."""
    if policy.trained is None:
        return config, list(matrix.scenarios), {}
    lacking = skills_lacking(config, policy.trained)
    keep = [s for s in matrix.scenarios if not {seg.skill for seg in s.segments} & set(lacking)]
    skipped = [s.name for s in matrix.scenarios if s not in keep]
    return model_view(config, policy.trained), keep, (
        {"skills": sorted(lacking.values()), "scenarios": skipped} if lacking else {})


def policy_loop_config(policy: EvalPolicy, policy_config: StackConfig) -> StackConfig:
    """The config a policy's loop runs with: with or without the outer velocity loop, at its per-skill gains, and a
    model at its data's joint gains, as the node drives it (gains.py)."""
    loop_config = with_kp_scales(policy_config if policy.command_feedback else without_feedback(policy_config),
                                 {**{s.name: 1.0 for s in policy_config.skills}, **policy.kp_scales})
    if policy.joint_gains is not None:
        kp, kd = policy.joint_gains
        loop_config = replace(loop_config, robot=replace(loop_config.robot, kp=kp, kd=kd))
    return loop_config


def jobs_of(policy: EvalPolicy, spec: str, matrix: ScenarioMatrix, config: StackConfig,
            plan: list[tuple[Any, int, int]], ablations: list[str], options_for: Callable[[str, bool], LoopOptions],
            traced: set[str], log=print) -> tuple[list[dict[str, Any]], list[EpisodeJob], dict[str, Any]]:
    """A policy's report entries (one per ablation), its episodes of the plan (the first episode of a scenario in
    `traced` brings its trace back for the plots) and what it skips (runnable)."""
    for note in policy.notes:
        log(f"{policy.label}: {note}")
    policy_config, scenarios, skips = runnable(policy, matrix, config)
    loop_config = policy_loop_config(policy, policy_config)
    if skips:
        log(f"{policy.label}: no skill {', '.join(skips['skills'])} in the model file; skipping "
            f"{len(skips['scenarios'])} scenario(s): {', '.join(skips['scenarios'])}")
    runs = {s.name for s in scenarios}
    entries, jobs = [], []
    for variant in ablations:
        options = options_for(variant, policy.delayed_inputs)
        label = policy.label if variant == "none" else f"{policy.label} ({options.name})"
        entries.append({**policy.describe(), "label": label, "spec": spec, "ablation": options.name,
                        "current_frame": options.current_frame, "replan_every": options.replan_every,
                        "command_feedback": loop_config.command_feedback.enabled})
        jobs += [EpisodeJob(spec, label, loop_config, options, scenario, i, seed,
                            keep_trace=i == 0 and scenario.name in traced)
                 for scenario, i, seed in plan if scenario.name in runs]
    return entries, jobs, skips


def evaluate(policy_specs: list[str], matrix: ScenarioMatrix, config: StackConfig, seeds: int, out: Path,
             ablations: list[str], inference_wait_s: float = 1.0, open_loop_ticks: Optional[int] = None,
             base_seed: int = 0, plots: bool = True, log=print, tick_jitter_steps: float = 0.0,
             condition: Optional[Condition] = None, ranges_from: str = "the robot config",
             workers: int = 1) -> dict[str, Any]:
    """Run every policy (and ablation) on the same episodes; write results.json and results.md to `out`.
    condition: a robustness condition (conditions.py) applied to the matrix's physics, with its own episode draws.
    workers: processes the episodes run in (1: this one); the results do not depend on it (episode_pool.py)."""
    if base_seed < 0 or seeds < 1 or workers < 1:
        raise ValueError(f"base seed must be >= 0, seeds >= 1 and workers >= 1, got {base_seed}, {seeds} and "
                         f"{workers}")
    out.mkdir(parents=True, exist_ok=True)
    physics = sim_config(matrix) if condition is None else condition.apply(sim_config(matrix))
    if condition is not None and condition.tick_jitter_steps:
        tick_jitter_steps = condition.tick_jitter_steps
    for variant in ablations:
        variant_parts(variant)  # an unknown name fails before any run
    plan = episode_plan(matrix, seeds, base_seed, condition.name if condition else "")
    traced = set(representative(matrix).values()) if plots else set()

    def options_for(variant: str, delayed_inputs: bool) -> LoopOptions:
        return loop_options(variant, config, inference_wait_s, open_loop_ticks, delayed_inputs, tick_jitter_steps)

    policies, jobs, skipped, opened = [], [], {}, {}
    start = time.perf_counter()
    try:
        for spec in policy_specs:
            policy = make_policy(spec, config, seed=base_seed)
            if workers == 1:
                opened[spec] = policy   # the serial run drives this one; worker processes open their own
            try:
                entries, policy_jobs, skips = jobs_of(policy, spec, matrix, config, plan, ablations, options_for,
                                                      traced, log)
            finally:
                if workers > 1:
                    policy.close()
            policies += entries
            jobs += policy_jobs
            skipped.update({entry["label"]: skips for entry in entries if skips})
        episodes: dict[str, list[dict[str, Any]]] = {entry["label"]: [] for entry in policies}
        plot_files = []
        setting = Setting(config, physics, matrix, base_seed)
        for job, (result, trace) in zip(jobs, run_episodes(jobs, setting, workers, opened)):
            episodes[job.label].append(result)
            outcome = f"FELL at {result['fall_time_s']:.2f} s ({result['fall_reason']})" if result["fell"] else "ok"
            log(f"[{time.perf_counter() - start:7.1f} s] {job.name}: {outcome}")
            if trace is not None:
                title = f"{job.label}: {job.scenario.name} (seed {job.seed})"
                plot_files += [str(p.relative_to(out)) for p in
                               plot_episode(trace, title, out, f"{job.label}_{job.scenario.name}")]
    finally:
        for policy in opened.values():
            policy.close()
    summary = {label: summarize_policy(eps, matrix.gaits, matrix.transition.min_two_feet)
               for label, eps in episodes.items()}
    meta = {"matrix": matrix.name, "seeds": seeds, "base_seed": base_seed, "seeding": seeding.SCHEME,
            "physics_draws": len({seed for _, _, seed in plan}),
            "physics": physics_description(matrix, condition),
            "condition": condition.to_dict() if condition else None,
            "duration_s": max(s.duration_s for s in matrix.scenarios), "settle_s": matrix.settle_s,
            "inference_wait_s": inference_wait_s, "tick_jitter_steps": tick_jitter_steps, "robot": config.robot.name,
            "command_ranges": config.describe_command_ranges(), "command_ranges_from": ranges_from,
            "command_feedback": describe_feedback(config.command_feedback),
            "feedback_off": [p["label"] for p in policies if not p["command_feedback"]],
            "policy_gains": {p["label"]: describe_scales(p["kp_scales"]) for p in policies},
            "policy_notes": {p["label"]: p["notes"] for p in policies if p.get("notes")},
            "reference": reference_label(policies), "same_episodes": True,
            "skipped": skipped,
            "wall_s": time.perf_counter() - start}
    report = {"meta": meta, "policies": policies, "matrix": matrix.to_dict(config), "summary": summary,
              "episodes": episodes, "plots": plot_files}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(summary, meta))
    return report


def robot_config(path: Optional[Path], ranges_from: Optional[Path] = None) -> StackConfig:
    """The robot config, with `ranges_from` its command ranges cut to that model file's, as the policy node cuts
    them at start: a model shipped with an envelope is then evaluated on the commands it will be given."""
    config = load_config(path)
    if ranges_from is not None:
        config = within_trained_ranges(config, trained_config(ranges_from, config))
    return config


def deployment_config(config: StackConfig, specs: list[str]) -> tuple[StackConfig, str]:
    """The command ranges the policy node would allow every model among `specs` (the intersection of their files'
    envelopes), so that model and experts meet the same commands, and a line saying where they came from."""
    files = list(dict.fromkeys(Path(path) for path, _ in map(parse_spec, specs) if path != EXPERT))
    for file in files:
        config = within_trained_ranges(config, trained_config(file, config))
    return config, (f"the robot config cut to the envelope of {', '.join(str(f) for f in files)}" if files
                    else "the robot config")


def shortened(matrix: ScenarioMatrix, duration: Optional[float]) -> ScenarioMatrix:
    """The matrix with every episode `duration` s long (scenarios whose schedule starts later are dropped)."""
    if duration is None:
        return matrix
    return replace(matrix, scenarios=tuple(replace(s, duration_s=duration) for s in matrix.scenarios
                                           if s.segments[-1].start_s < duration))


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the evaluation and the robustness study share: policies, ranges, seeds, matrix length."""
    parser.add_argument("--policy", action="append", required=True,
                        help="a policy spec (repeat to compare); a bare model path runs as the policy node runs it")
    parser.add_argument("--seeds", type=int, default=None, help="episodes per scenario (default: the matrix's)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (>= 0) every episode's draw is spawned from")
    parser.add_argument("--config", type=Path, default=None, help="robot config (default: the shipped CyberDog 2)")
    ranges = parser.add_mutually_exclusive_group()
    ranges.add_argument("--ranges-from", type=Path, default=None, metavar="MODEL",
                        help="cut the command ranges to this model file's envelope (default: every model policy's, "
                             "as the policy node cuts them)")
    ranges.add_argument("--full-ranges", action="store_true",
                        help="the robot config's full command ranges, even beyond a model file's envelope")
    parser.add_argument("--duration", type=float, default=None, help="override the matrix's episode duration (s)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes to run the episodes in (default 1: this one); the results are the same for "
                             "any number (docs/evaluation.md)")


def run_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[StackConfig, str]:
    """The robot config with the command ranges the run uses, and where they came from (see deployment_config)."""
    if args.seed < 0 or (args.seeds is not None and args.seeds < 1):
        parser.error(f"--seed must be >= 0 and --seeds >= 1 (got {args.seed} and {args.seeds})")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1 (got {args.workers})")
    config = load_config(args.config)
    if args.full_ranges:
        return config, "the robot config (--full-ranges)"
    if args.ranges_from is not None:
        return robot_config(args.config, args.ranges_from), f"the envelope of {args.ranges_from}"
    return deployment_config(config, args.policy)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.evaluation",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="policy specs: expert | PATH.onnx | PATH.safetensors, as deployed, "
                                            "optionally followed by ,warm=K (0: full sampler) ,noise=S (sampler "
                                            "temperature) ,gains=SKILL:SCALE/... ,feedback=off (no outer velocity "
                                            "loop) ,backend=onnx|torch ,label=NAME ,threads=N")
    add_policy_arguments(parser)
    parser.add_argument("--scenarios", default="eval_default", help="matrix name (configs/eval_*.yaml) or YAML path")
    parser.add_argument("--out", type=Path, default=Path("out/eval"))
    parser.add_argument("--ablation", nargs="+", default=["none"],
                        help="variants to run per policy: none (the deployed design), current_frame, "
                             "open_loop_chunk, or a '+' combination")
    parser.add_argument("--open-loop-ticks", type=int, default=None,
                        help="open_loop_chunk: ticks per chunk (default horizon - execute_index)")
    parser.add_argument("--inference-wait", type=float, default=1.0,
                        help="s PolicyLoop waits for a chunk (large = deterministic; latency is reported separately)")
    parser.add_argument("--tick-jitter", type=float, default=0.0, metavar="STEPS",
                        help="vary the physics steps between control ticks by this standard deviation, as the live "
                             "graph's separate wall clocks do (its bags: 1.6-3.3 of the nominal 10)")
    parser.add_argument("--pushes", action="store_true",
                        help="shove the trunk every 4-8 s (SimConfig.randomized()'s pushes), whatever the matrix says")
    parser.add_argument("--condition", default=None, metavar="NAME",
                        help="a robustness condition of --study (payload, weak_motors, low_friction, ...) on top of "
                             "the matrix's physics, with its own episode draws")
    parser.add_argument("--study", default=STUDY, help="the study --condition is read from (configs/robustness.yaml)")
    args = parser.parse_args(argv)
    config, ranges_from = run_config(args, parser)
    matrix = shortened(load_matrix(args.scenarios, config), args.duration)
    if args.pushes:
        if not matrix.randomized:
            parser.error(f"--pushes: matrix {matrix.name} runs nominal physics; pushes come with randomized physics")
        matrix = replace(matrix, pushes=True)
    condition = load_study(args.study).condition(args.condition) if args.condition else None
    if condition is not None and condition.tick_jitter_steps and args.tick_jitter:
        parser.error(f"--tick-jitter: condition {condition.name} sets the tick jitter itself")
    try:
        report = evaluate(args.policy, matrix, config, args.seeds or matrix.seeds, args.out, args.ablation,
                          args.inference_wait, args.open_loop_ticks, args.seed, plots=not args.no_plots,
                          tick_jitter_steps=args.tick_jitter, condition=condition, ranges_from=ranges_from,
                          workers=args.workers)
    except KeyboardInterrupt:
        print("evaluation: interrupted; no results written", file=sys.stderr)
        return 130
    sys.stdout.write(markdown(report["summary"], report["meta"]))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'} and {len(report['plots'])} plots")
    return 0
