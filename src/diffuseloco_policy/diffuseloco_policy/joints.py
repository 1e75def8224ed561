"""The one place where joint values cross between the motor SDK's convention and the model's.

Both conventions use the SDK's joint order (FR, FL, RR, RL legs, each abad, hip, knee). They differ in sign: the
SDK's user side (its C++ CustomInterface structs, and our `cyberdog_msgs`) flips hip and knee relative to the
firmware's internal convention, in which the knee is positive when bent. The LCM wire itself (`motor_ctrl`,
`leg_control_data`) carries the INTERNAL convention: CustomInterface applies the flip on both ways (checked in
the SDK sources; bridge/lcm_bridge.py does the same with this class). The policy, its observations, the
experts and the MuJoCo model all use the internal ("model") convention. The map is its own inverse, so one
function per direction would just be the same multiplication: `to_sdk` and `to_model` exist for readability.
Gains (kp, kd) carry no sign; positions, velocities and torques flip.
"""

from __future__ import annotations

import numpy as np

from .config import RobotConfig

LEGS = ("FR", "FL", "RR", "RL")
LEG_JOINTS = ("abad", "hip", "knee")


class JointConvention:
    """Sign map between SDK and model conventions for one robot."""

    def __init__(self, robot: RobotConfig) -> None:
        self.sign = np.asarray(robot.sdk_sign, dtype=np.float64)

    def to_sdk(self, model_values: np.ndarray) -> np.ndarray:
        """Positions, velocities or torques in model convention -> SDK convention."""
        return np.asarray(model_values, dtype=np.float64) * self.sign

    def to_model(self, sdk_values: np.ndarray) -> np.ndarray:
        """Positions, velocities or torques in SDK convention -> model convention."""
        return np.asarray(sdk_values, dtype=np.float64) * self.sign

    def limits_sdk(self, robot: RobotConfig) -> tuple[np.ndarray, np.ndarray]:
        """Joint limits expressed in SDK convention (a flipped joint swaps lower and upper)."""
        lower = self.to_sdk(np.asarray(robot.position_lower))
        upper = self.to_sdk(np.asarray(robot.position_upper))
        return np.minimum(lower, upper), np.maximum(lower, upper)
