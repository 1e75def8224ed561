"""Actions -> PD targets: the last step of the data flow before the safety layer.

An action is a joint position offset (q_des = default_pose + scale * action, model convention). Tracking a
moving target with a PD joint law lags by about kd/kp (0.1 s at 30/3), so gaits need a velocity feed-forward.
We send it where the joint law expects it, as qd_des, computed from the plan itself: the next action of the
predicted chunk (or the expert's plan one tick ahead) minus this one, per tick. Experts, the dataset and the
policy all go through this one function, so a policy trained on expert actions reproduces the expert's commands.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .config import StackConfig


class ActionDecoder:
    """Turns (action for this tick, planned action for the next tick) into (q_des, qd_des), model convention."""

    def __init__(self, config: StackConfig) -> None:
        self.default_pose = np.asarray(config.robot.default_pose, dtype=np.float64)
        self.scale = float(config.action.scale)
        self.control_hz = float(config.rates.control_hz)
        self.feedforward = bool(config.action.velocity_feedforward)

    def position(self, action: np.ndarray) -> np.ndarray:
        return self.default_pose + self.scale * np.asarray(action, dtype=np.float64)

    def action(self, joint_target: np.ndarray) -> np.ndarray:
        """Inverse of position(): how an expert's joint target is stored as an action."""
        return (np.asarray(joint_target, dtype=np.float64) - self.default_pose) / self.scale

    def velocity(self, action: np.ndarray, next_action: Optional[np.ndarray]) -> np.ndarray:
        """The plan's joint velocity over the coming tick; zero without a next action or feed-forward."""
        if next_action is None or not self.feedforward:
            return np.zeros_like(self.default_pose)
        step = np.asarray(next_action, dtype=np.float64) - np.asarray(action, dtype=np.float64)
        return self.scale * step * self.control_hz

    def targets(self, action: np.ndarray, next_action: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        return self.position(action), self.velocity(action, next_action)

    def chunk_targets(self, chunk: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Receding horizon: execute chunk[index], with chunk[index + 1] as the plan's next step (if any)."""
        next_action = chunk[index + 1] if index + 1 < len(chunk) else None
        return self.targets(chunk[index], next_action)
