"""Small expert-like datasets in the data/dataset.py zarr layout, without running the simulator.

Each episode is a periodic gait: actions are sinusoids whose phase advances per tick, the observation holds
(noisy) joint terms and the previous action, the goal is the command and the skill one-hot. Frame values also
encode the global tick number in obs[:, 0] (unique, so window tests can see exactly which ticks were picked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_policy.config import plain
from diffuseloco_learning.data.dataset import write_dataset


def synthetic_episodes(lengths, seed: int = 0, config: StackConfig | None = None) -> list[dict[str, np.ndarray]]:
    config = config or load_config()
    rng = np.random.default_rng(seed)
    obs_dim, goal_dim = config.observation.obs_dim, config.observation.goal_dim
    n_skills = len(config.skills)
    episodes, tick0 = [], 0
    for length in lengths:
        skill = int(rng.integers(n_skills))
        freq = 0.1 + 0.05 * skill
        command = rng.uniform(-0.5, 0.5, size=3).astype(np.float32)
        phase = np.arange(length)[:, None] * 2 * np.pi * freq + np.linspace(0, np.pi, 12)[None, :]
        action = (0.5 * np.sin(phase) + 0.02 * rng.standard_normal((length, 12))).astype(np.float32)
        obs = (0.1 * rng.standard_normal((length, obs_dim))).astype(np.float32)
        obs[:, 0] = tick0 + np.arange(length)              # global tick id (window tests)
        obs[:, 6:18] = 0.8 * np.roll(action, 1, axis=0)    # joint position follows the action
        obs[1:, 30:42] = action[:-1]                        # last_action
        obs[0, 30:42] = 0.0
        goal = np.zeros((length, goal_dim), np.float32)
        goal[:, :3] = command * np.array([2.0, 2.0, 0.25], np.float32)
        goal[:, 3 + config.command_index(skill)] = 1.0   # the skill's one-hot, or its command class's
        goal[:, 0] += 1e-3 * (tick0 + np.arange(length))   # goal frames are distinguishable too
        episodes.append({"obs": obs, "goal": goal, "action": action,
                         "skill": np.full(length, skill, np.int8), "command": np.tile(command, (length, 1))})
        tick0 += length
    return episodes


def write_synthetic(path: Path, lengths=(120, 90, 150), seed: int = 0, config: StackConfig | None = None) -> Path:
    config = config or load_config()
    write_dataset(path, synthetic_episodes(lengths, seed, config), plain({"config": config.to_dict(),
                                                                              "generator": {"synthetic": True}}))
    return path
