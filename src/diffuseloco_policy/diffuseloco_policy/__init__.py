"""DiffuseLoco-ROS: diffusion locomotion policies for the CyberDog 2.

Data flow, one module a step: sensors -> observation (observation.py) -> delayed history (history.py) ->
normalizer + sampler (diffusion/) -> safety (safety.py) -> PD targets. Nothing in the core imports ROS;
the nodes in nodes/ are thin adapters.
"""

__version__ = "0.2.0"
