"""The expert controllers behind the policy node's sampler interface, so the full ROS graph (simulator, policy
node with its state machine and safety layer, teleop, recorder) can run before a trained model exists.

SIMULATION ONLY and labelled as such wherever it is used: an expert needs the true body velocity, which the
simulator publishes as ground truth (/sim/base_twist) and the robot does not have. Everything else it reads
comes from the same delayed observation window the diffusion policy gets: the plan for tick t+1 is made from
s[t], and its action and next action are placed at the chunk's execute index, so the node executes it exactly
as it would execute a sampled chunk. Each entry carries the action, the plan's velocity step and the expert's
feed-forward torque (pd_targets.ActionDecoder.chunk_targets): under the firmware's position band the experts carry
the body through tau_des.
"""

from __future__ import annotations

import threading

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.observation import RobotState
from diffuseloco_policy.pd_targets import ActionDecoder
from .controller import ExpertController


def quaternion_from_gravity(gravity_body: np.ndarray) -> np.ndarray:
    """A (w, x, y, z) orientation with the measured roll and pitch and zero heading (experts ignore heading)."""
    gx, gy, gz = np.asarray(gravity_body, dtype=np.float64) / np.linalg.norm(gravity_body)
    pitch, roll = np.arcsin(np.clip(gx, -1.0, 1.0)), np.arctan2(-gy, -gz)
    cr, sr, cp, sp = np.cos(roll / 2), np.sin(roll / 2), np.cos(pitch / 2), np.sin(pitch / 2)
    return np.array([cr * cp, sr * cp, cr * sp, -sr * sp])


class ExpertStandIn:
    """(obs window, goal window) -> action chunk, like a PolicyRuntime, driven by the expert controllers."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.decoder = ActionDecoder(config)
        self.expert = ExpertController(config)
        self.obs_slices = config.observation.slices()
        self.goal_slices = config.observation.goal_slices()
        self.scales = {t.name: np.asarray(t.scale, dtype=np.float64)
                       for t in config.observation.terms + config.observation.goal_terms}
        self._velocity = np.zeros(2)
        self._lock = threading.Lock()

    def set_velocity(self, vx: float, vy: float) -> None:
        """Ground-truth body velocity from the simulator (the one input a policy does not get)."""
        with self._lock:
            self._velocity = np.array([vx, vy], dtype=np.float64)

    def reset(self) -> None:
        self.expert.reset()

    def __call__(self, obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
        state, command, skill = self._decode(obs_window[-1], goal_window[-1])
        with self._lock:
            velocity = self._velocity.copy()
        target, target_next = self.expert.act(state, velocity, command, skill)
        action, next_action = self.decoder.action(target), self.decoder.action(target_next)
        entry = np.concatenate([action, next_action - action, self.expert.torque])
        chunk = np.repeat(np.concatenate([next_action, np.zeros_like(action), self.expert.torque])[None],
                          self.config.action.horizon, axis=0)
        chunk[: self.config.action.execute_index + 1] = entry
        return chunk

    def _decode(self, obs: np.ndarray, goal: np.ndarray) -> tuple[RobotState, np.ndarray, int]:
        term = lambda name: np.asarray(obs[self.obs_slices[name]], dtype=np.float64) / self.scales[name]  # noqa: E731
        state = RobotState(term("joint_position") + self.decoder.default_pose, term("joint_velocity"),
                           quaternion_from_gravity(term("projected_gravity")), term("base_angular_velocity"))
        command = np.asarray(goal[self.goal_slices["command"]], dtype=np.float64) / self.scales["command"]
        skill = int(np.argmax(goal[self.goal_slices["skill"]]))
        return state, command, skill
