"""Actions -> PD targets: the last step of the data flow before the safety layer.

An action is a joint position offset (q_des = default_pose + scale * action, model convention). Tracking a
moving target with a PD joint law lags by about kd/kp (0.1 s at 30/3), so gaits need a velocity feed-forward.
We send it where the joint law expects it, as qd_des: the experts send their plan's velocity (their target for
t+1 as planned at t, minus this one, per tick). A model that predicts actions alone can only derive it from its
chunk's next action, which is the target the expert applied next tick, not the one it planned: with that
feed-forward the experts themselves lag and wobble (docs/research/policy_eval/tracking.md). A model trained with
ModelSpec.predict_velocity predicts the experts' feed-forward beside each action (stored per tick in the
dataset as a step in action units) and the decoder sends it as it is.

Load feed-forward goes through tau_des: the firmware keeps q_des within 8-12 deg of the measured angle, which caps
the position term at a few N m, so a planner that carries the body sends the load as a torque. A chunk may carry
it as a third column block (N m, model convention) after the velocity steps; the expert stand-in does.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .config import StackConfig


class JointTargets(NamedTuple):
    """What a plan asks of the joints for one tick, model convention: q_des, qd_des and tau_des (N m)."""

    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray


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
        if next_action is None:
            return np.zeros_like(self.default_pose)
        return self.from_step(np.asarray(next_action, dtype=np.float64) - np.asarray(action, dtype=np.float64))

    def velocity_step(self, joint_velocity: np.ndarray) -> np.ndarray:
        """A qd_des as the per-tick step in action units it stands for (inverse of from_step): how datasets store
        the feed-forward sent with each action."""
        return np.asarray(joint_velocity, dtype=np.float64) / (self.scale * self.control_hz)

    def from_step(self, step: np.ndarray) -> np.ndarray:
        """qd_des from a per-tick step in action units (zero without feed-forward)."""
        if not self.feedforward:
            return np.zeros_like(self.default_pose)
        return self.scale * self.control_hz * np.asarray(step, dtype=np.float64)

    def targets(self, action: np.ndarray, next_action: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        return self.position(action), self.velocity(action, next_action)

    def check_chunk(self, chunk: np.ndarray, horizon: int) -> None:
        """Refuse (ValueError) a chunk this decoder cannot read: a sampler bug must not reach the motors."""
        joints = len(self.default_pose)
        if chunk.ndim != 2 or chunk.shape[0] != horizon or chunk.shape[1] not in (joints, 2 * joints, 3 * joints):
            raise ValueError(f"chunk of shape {chunk.shape}: expected ({horizon}, {joints}), ({horizon}, "
                             f"{2 * joints}) with the velocity feed-forward or ({horizon}, {3 * joints}) with the "
                             "velocity and torque feed-forward")

    def chunk_targets(self, chunk: np.ndarray, index: int) -> JointTargets:
        """Receding horizon: execute chunk[index]. A chunk of a model that predicts the feed-forward
        (ModelSpec.predict_velocity: entries twice as wide as an action) carries it beside the action, and a
        chunk three actions wide the feed-forward torque after it; otherwise the plan's next step,
        chunk[index + 1] (if any), is the velocity and there is no torque."""
        joints = len(self.default_pose)
        entry = chunk[index]
        if chunk.shape[-1] >= 2 * joints:
            tau = entry[2 * joints:] if chunk.shape[-1] == 3 * joints else np.zeros(joints)
            return JointTargets(self.position(entry[:joints]), self.from_step(entry[joints:2 * joints]),
                                np.array(tau, dtype=np.float64))
        next_action = chunk[index + 1] if index + 1 < len(chunk) else None
        q, dq = self.targets(entry, next_action)
        return JointTargets(q, dq, np.zeros(joints))
