"""Robot state -> the policy's observation and goal vectors, following the layout in the config.

The same builder serves the simulator's dataset generator, the bag converter and the policy node, so a model
sees identical numbers in training and on the robot. Joint values here are in model convention (see joints.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .config import ConfigError, StackConfig, TermConfig


@dataclass(frozen=True)
class RobotState:
    """One proprioceptive sample in model convention.

    quaternion is (w, x, y, z) of the body in the world frame, as the CyberDog state estimator reports it;
    angular_velocity is the body-frame gyro reading (rad/s); linear_velocity is the state estimator's body-frame
    velocity estimate (vBody, m/s) where the source has one (only models with a base_linear_velocity term need it).
    """

    joint_position: np.ndarray
    joint_velocity: np.ndarray
    quaternion: np.ndarray
    angular_velocity: np.ndarray
    linear_velocity: Optional[np.ndarray] = None


def projected_gravity(quaternion_wxyz: np.ndarray) -> np.ndarray:
    """World gravity direction (0, 0, -1) expressed in the body frame: encodes roll and pitch, not heading."""
    w, x, y, z = np.asarray(quaternion_wxyz, dtype=np.float64) / np.linalg.norm(quaternion_wxyz)
    # Third row of the world-from-body rotation matrix, negated: R^T @ (0, 0, -1).
    return -np.array([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)])


BODY_VELOCITY_TERM = "base_linear_velocity"


def observes_body_velocity(config: StackConfig) -> bool:
    """Whether the observation has the state estimator's vBody: then it is a sensor the source must deliver."""
    return any(t.name == BODY_VELOCITY_TERM for t in config.observation.terms)


APPLIED_ACTION_TERM = "applied_action"


def observes_applied_action(config: StackConfig) -> bool:
    """Whether a frame carries the action sent in its own tick: known once the tick has acted, so the frame can
    only be recorded after acting (the deployed delayed design; not the current-frame ablation)."""
    return any(t.name == APPLIED_ACTION_TERM for t in config.observation.terms)


GAIT_PHASE_TERM = "gait_phase"
GAIT_PHASE_SIZE = 12    # sin and cos of each leg's phase, then its stance flag (gaits.py)


def observes_gait_phase(config: StackConfig) -> bool:
    """Whether the goal has the gait clock: then whoever builds goals must run a GaitFollower beside it."""
    return any(t.name == GAIT_PHASE_TERM for t in config.observation.goal_terms)


def _estimated_velocity(state: RobotState) -> np.ndarray:
    if state.linear_velocity is None:
        raise ValueError(f"observation term {BODY_VELOCITY_TERM!r} needs the state estimator's body velocity (vBody), "
                         "and this robot state carries none")
    return np.asarray(state.linear_velocity, dtype=np.float64)


def _applied(action: Optional[np.ndarray]) -> np.ndarray:
    if action is None:
        raise ValueError(f"observation term {APPLIED_ACTION_TERM!r} needs the action sent in the frame's tick, and "
                         "none was given")
    return np.asarray(action, dtype=np.float64)


def _gait_phase(value: Optional[np.ndarray]) -> np.ndarray:
    if value is None:
        raise ValueError(f"goal term {GAIT_PHASE_TERM!r} needs the gait schedule's phase features (a GaitFollower "
                         "fed the skill commands), and none were given")
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (GAIT_PHASE_SIZE,):
        raise ValueError(f"gait phase features have shape {value.shape}, expected ({GAIT_PHASE_SIZE},)")
    return value


# (state at t, action sent at t-1, action sent at t or None) -> the term's values
TermReader = Callable[[RobotState, np.ndarray, Optional[np.ndarray]], np.ndarray]


class ObservationBuilder:
    """Assembles observation and goal vectors term by term, as the config lays them out."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.default_pose = np.asarray(config.robot.default_pose, dtype=np.float64)
        self.num_skills = len(config.skills)
        # skill id -> its place in the one-hot: its own, or its command class's (config.commands)
        self._one_hot_index = {s.id: config.command_index(s.id) for s in config.skills}
        self._one_hot_size = len(config.commands)
        self._obs_terms = [(t, self._state_term(t)) for t in config.observation.terms]
        self._goal_names = [t.name for t in config.observation.goal_terms]
        unknown = set(self._goal_names) - {"command", "skill", GAIT_PHASE_TERM}
        if unknown:
            raise ConfigError(f"unknown goal terms {sorted(unknown)}; supported: command, skill, {GAIT_PHASE_TERM}")
        gait = [t for t in config.observation.goal_terms if t.name == GAIT_PHASE_TERM]
        if gait and gait[0].size != GAIT_PHASE_SIZE:
            raise ConfigError(f"goal term {GAIT_PHASE_TERM!r} has {GAIT_PHASE_SIZE} values (sin, cos and stance of "
                              f"four legs), the config says {gait[0].size}")
        self._goal_scales = {t.name: np.asarray(t.scale, dtype=np.float64) for t in config.observation.goal_terms}

    def _state_term(self, term: TermConfig) -> TermReader:
        readers: dict[str, TermReader] = {
            "projected_gravity": lambda s, a, u: projected_gravity(s.quaternion),
            "base_angular_velocity": lambda s, a, u: np.asarray(s.angular_velocity, dtype=np.float64),
            BODY_VELOCITY_TERM: lambda s, a, u: _estimated_velocity(s),
            "joint_position": lambda s, a, u: np.asarray(s.joint_position, dtype=np.float64) - self.default_pose,
            "joint_velocity": lambda s, a, u: np.asarray(s.joint_velocity, dtype=np.float64),
            "last_action": lambda s, a, u: np.asarray(a, dtype=np.float64),
            APPLIED_ACTION_TERM: lambda s, a, u: _applied(u),
        }
        if term.name not in readers:
            raise ConfigError(f"unknown observation term {term.name!r}; supported: {sorted(readers)}")
        return readers[term.name]

    def observation(self, state: RobotState, last_action: np.ndarray,
                    applied_action: Optional[np.ndarray] = None) -> np.ndarray:
        """The proprioceptive observation (float32) for one tick: state measured at t, the action sent at t-1 and,
        where the config has the applied_action term, the action sent at t (after the state was measured)."""
        parts = []
        for term, read in self._obs_terms:
            value = read(state, last_action, applied_action)
            if value.shape != (term.size,):
                raise ValueError(f"observation term {term.name!r} has shape {value.shape}, expected ({term.size},)")
            parts.append(value * np.asarray(term.scale, dtype=np.float64))
        return np.concatenate(parts).astype(np.float32)

    def goal(self, command: np.ndarray, skill_id: int, gait_phase: Optional[np.ndarray] = None) -> np.ndarray:
        """The goal vector (float32): scaled (vx, vy, yaw rate), a one-hot skill and, where the config has the
        term, the gait phase (gaits.py GaitSchedule.phase_features) of the same tick. With command classes the
        one-hot names the skill's class, not the skill: trot and pace give the same goal (the data is unlabelled)."""
        if not 0 <= int(skill_id) < self.num_skills:
            raise ConfigError(f"skill id {skill_id} outside 0..{self.num_skills - 1}")
        parts = []
        for name in self._goal_names:
            if name == "command":
                parts.append(np.asarray(command, dtype=np.float64).reshape(3) * self._goal_scales[name])
            elif name == "skill":
                parts.append(np.eye(self._one_hot_size)[self._one_hot_index[int(skill_id)]])
            else:
                parts.append(_gait_phase(gait_phase) * self._goal_scales[name])
        return np.concatenate(parts).astype(np.float32)

    def action_to_target(self, action: np.ndarray) -> np.ndarray:
        """Policy action -> joint position target in model convention."""
        return self.default_pose + self.config.action.scale * np.asarray(action, dtype=np.float64)

    def target_to_action(self, joint_target: np.ndarray) -> np.ndarray:
        """Inverse of action_to_target: how the dataset stores an expert's joint targets as actions."""
        return (np.asarray(joint_target, dtype=np.float64) - self.default_pose) / self.config.action.scale
