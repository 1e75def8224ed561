"""MuJoCo simulation of the CyberDog 2 behind the motor SDK's interface (no ROS imports here)."""

from .interfaces import ImuReading, JointState, MotorCommand
from .sim_config import NoiseConfig, PushConfig, RandomizationConfig, SimConfig
from .simulator import MODEL_PATH, CyberDogSim, EpisodeParams

__all__ = ["CyberDogSim", "EpisodeParams", "ImuReading", "JointState", "MODEL_PATH", "MotorCommand",
           "NoiseConfig", "PushConfig", "RandomizationConfig", "SimConfig"]
