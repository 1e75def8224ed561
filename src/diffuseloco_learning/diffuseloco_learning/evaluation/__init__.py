"""Policy evaluation in the simulator: any policy (diffusion ONNX/torch, MLP baseline, experts) through the
deployed PolicyLoop over a scenario matrix, measured from ground truth (see cli.py, episode.py)."""

from .episode import LoopOptions, run_episode
from .policies import EvalPolicy, ExpertPolicy, RuntimePolicy, make_policy
from .scenarios import Scenario, ScenarioMatrix, Segment, load_matrix

__all__ = ["EvalPolicy", "ExpertPolicy", "LoopOptions", "RuntimePolicy", "Scenario", "ScenarioMatrix", "Segment",
           "load_matrix", "make_policy", "run_episode"]
