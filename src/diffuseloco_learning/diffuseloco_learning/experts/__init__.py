"""Model-based expert controllers (stand, trot, pace, bound, hop) that generate the DiffuseLoco dataset."""

from .controller import ExpertController, ExpertParams
from diffuseloco_policy.gaits import GAITS, STAND, GaitParams

__all__ = ["ExpertController", "ExpertParams", "GAITS", "GaitParams", "STAND"]
