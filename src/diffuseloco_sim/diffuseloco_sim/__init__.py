"""MuJoCo simulation of the CyberDog 2 behind the motor SDK's interface (no ROS imports here)."""

from diffuseloco_policy.motor_sdk import ImuReading, JointState, MotorCommand
from .sim_config import ActuatorConfig, NoiseConfig, PushConfig, RandomizationConfig, SimConfig
from .simulator import MJCF, CyberDogSim, EpisodeParams

__all__ = ["ActuatorConfig", "CyberDogSim", "EpisodeParams", "ImuReading", "JointState", "MJCF", "MotorCommand",
           "NoiseConfig", "PushConfig", "RandomizationConfig", "SimConfig"]
