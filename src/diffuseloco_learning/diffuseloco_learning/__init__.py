"""DiffuseLoco-ROS, the learning side: expert gaits (experts/) -> datasets (data/) -> the torch diffusion policy
(diffusion/) and its training (training/) -> ONNX export (export.py) -> evaluation in the simulator
(evaluation/). What it produces, a model file, is what the robot package (diffuseloco_policy) runs."""

__version__ = "0.2.0"
