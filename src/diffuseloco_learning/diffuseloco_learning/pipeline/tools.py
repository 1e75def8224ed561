"""The project's command-line tools, called in this process with their own argument lists.

Why their command lines and not their functions: each step is then exactly the command a person would type (the
manifest and the log show it, ready to copy), and a tool's defaults and checks stay the tool's own, so a change
to, say, the evaluation harness's defaults reaches the pipeline without touching it. Why in this process: a
fresh interpreter per step would import torch and MuJoCo a dozen times, which is most of a small recipe's time.
"""

from __future__ import annotations

import importlib
import shlex
from typing import Callable, Sequence

# the module a person runs with `python -m` -> the module holding its main(argv)
ENTRY_POINTS = {
    "diffuseloco_learning.experts.evaluate": "diffuseloco_learning.experts.evaluate",
    "diffuseloco_learning.data.generate": "diffuseloco_learning.data.generate",
    "diffuseloco_learning.training": "diffuseloco_learning.training.__main__",
    "diffuseloco_learning.training.export": "diffuseloco_learning.training.export",
    "diffuseloco_learning.training.model_card": "diffuseloco_learning.training.model_card",
    "diffuseloco_learning.evaluation": "diffuseloco_learning.evaluation.cli",
    "diffuseloco_learning.evaluation.merge": "diffuseloco_learning.evaluation.merge",
}


class ToolError(RuntimeError):
    """A tool refused its arguments or failed; the message names the command."""


def command_line(module: str, argv: Sequence[str]) -> str:
    """The shell command of a tool call, as a person would type it."""
    return shlex.join(["python", "-m", module, *argv])


def entry_point(module: str) -> Callable[[list[str]], object]:
    if module not in ENTRY_POINTS:
        raise ToolError(f"{module} is not one of the tools the pipeline runs: {sorted(ENTRY_POINTS)}")
    return importlib.import_module(ENTRY_POINTS[module]).main


def run_tool(module: str, argv: Sequence[str]) -> None:
    """Run a tool's main(argv); a non-zero exit (argparse's refusals included) is a ToolError."""
    main = entry_point(module)
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    if code not in (None, 0):
        raise ToolError(f"`{command_line(module, argv)}` exited with {code}")
