"""One command from the experts to a shipped model file, its card and the paper's comparisons.

    python -m diffuseloco_learning.pipeline pipeline_default [--device cuda] [--workers 8] [--dry-run]

The recipe (recipe.py, a YAML file) states the datasets, the training stages, the export's deployment settings,
the evaluation and the comparisons; steps.py turns it into the project's own commands; runner.py runs them and
skips what is done (manifest.json in the recipe's work directory).
"""

from .recipe import Recipe, load_recipe
from .runner import Manifest, Runner
from .steps import RunOptions, Step, build_steps

__all__ = ["Manifest", "Recipe", "RunOptions", "Runner", "Step", "build_steps", "load_recipe"]
