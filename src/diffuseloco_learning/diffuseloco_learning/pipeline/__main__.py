"""CLI: run a recipe from the experts to the model file, its card, its evaluation and the comparisons.

    python -m diffuseloco_learning.pipeline pipeline_default                 # the shipped default, from nothing
    python -m diffuseloco_learning.pipeline my_recipe.yaml --device cuda --workers 16
    python -m diffuseloco_learning.pipeline pipeline_default --dry-run       # what would run, and why
    python -m diffuseloco_learning.pipeline pipeline_default --redo 'eval/*'  # these steps and what reads them

Run it again after an interruption: finished steps are skipped and an interrupted training goes on from its
last checkpoint. A changed setting redoes its step and every step after it that reads its outputs.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from typing import Optional

from diffuseloco_policy.config import ConfigError
from .recipe import load_recipe
from .runner import Outcome, Runner
from .ship import ShipRefused
from .steps import ExpertsFall, RunOptions, Step, build_steps
from .tools import ToolError


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.pipeline",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[2:]))
    parser.add_argument("recipe", help="a recipe YAML path or the name of a shipped one (pipeline_default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                        help="training device (default: the recipe's; auto is cuda when torch sees one)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="data generation and evaluation processes (the data and the results are the same "
                             "for any number)")
    parser.add_argument("--no-comparisons", action="store_true", help="stop after the model's card")
    parser.add_argument("--redo", action="append", default=[], metavar="STEP",
                        help="redo these steps (names or patterns, e.g. 'eval/*') and what reads them")
    parser.add_argument("--dry-run", action="store_true", help="list each step and whether it would run, and why")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def describe(outcomes: list[Outcome], steps: Optional[dict[str, Step]] = None) -> str:
    """One line per step: run or skip, why, how long it took; with `steps`, the command of each step to run."""
    lines = []
    for outcome in outcomes:
        what = "run" if outcome.decision.run else "skip"
        took = f" ({outcome.seconds:.1f} s)" if outcome.seconds else ""
        lines.append(f"  {what:4} {outcome.name}: {outcome.decision.reason}{took}")
        if steps and outcome.decision.run:
            lines.append(f"         {steps[outcome.name].shown(outcome.decision.resume)}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        recipe = load_recipe(args.recipe)
        options = RunOptions(device=args.device or recipe.device, workers=args.workers,
                             progress=sys.stderr.isatty())
        steps = build_steps(recipe, options, comparisons=not args.no_comparisons)
        check_patterns(args.redo, [step.name for step in steps])
        device = training_device(options.device)
    except ConfigError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 2
    runner = Runner(recipe.work_dir)
    if args.dry_run:
        plan = runner.plan(steps, args.redo)
        print(f"recipe {recipe.name}, work directory {recipe.work_dir}, training on {device}:\n"
              + describe(plan, {step.name: step for step in steps}))
        return 0
    print(f"[pipeline] recipe {recipe.name}: {len(steps)} steps, work directory {recipe.work_dir}, training on "
          f"{device}, data generation and evaluation on {options.workers} worker(s)")
    try:
        outcomes = runner.run(steps, args.redo)
    except KeyboardInterrupt:
        print(f"[pipeline] interrupted at {runner.current}: run the same command again to go on from there",
              file=sys.stderr)
        return 130
    except (ConfigError, ToolError, ExpertsFall, ShipRefused, ValueError, OSError) as error:
        print(f"[pipeline] stopped at {runner.current}: {error}", file=sys.stderr)
        return 1
    print(f"[pipeline] recipe {recipe.name} complete:\n" + describe(outcomes))
    return 0


def check_patterns(patterns: list[str], names: list[str]) -> None:
    """A --redo that names no step is a typo, not a request to redo nothing."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"--redo {pattern!r} names no step; the steps: {', '.join(names)}")


def training_device(setting: str) -> str:
    """The device the trainer will pick for a setting (its rule: auto is cuda when torch sees one); cuda asked
    for on a machine without it is refused here, before hours of data generation."""
    import torch

    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device here (use auto or cpu)")
    return f"cuda ({torch.cuda.get_device_name(0)})"


if __name__ == "__main__":
    sys.exit(main())
