"""The expert dataset on disk: a zarr group with per-tick arrays and episode boundaries.

Layout (N transitions): data/obs (N, 42) float32, data/goal (N, 7; 19 with the gait clock) float32,
data/action (N, 12) float32, data/action_velocity (N, 12) float32, data/skill (N,) int8, data/command (N, 3)
float32, meta/episode_ends (E,) int64 (exclusive end index of each episode, as in the diffusion_policy replay
buffer), and root attrs holding the stack config and generator settings so a trainer can refuse data made for
another robot or layout.

action_velocity is the velocity feed-forward (qd_des) sent with each action, as a per-tick step in action units
(pd_targets.ActionDecoder.velocity_step). Datasets written before it existed lack it; they still train models
that derive the feed-forward from the next action, and a model that predicts it refuses them (training/windows.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import zarr

ARRAYS = {"obs": np.float32, "goal": np.float32, "action": np.float32, "action_velocity": np.float32,
          "skill": np.int8, "command": np.float32}
OPTIONAL = ("action_velocity",)  # absent from datasets written before it existed


@dataclass
class EpisodeArrays:
    """Per-tick records of one episode, appended tick by tick and stacked at the end."""

    rows: dict[str, list] = field(default_factory=lambda: {k: [] for k in ARRAYS})

    def append(self, obs: np.ndarray, goal: np.ndarray, action: np.ndarray, action_velocity: np.ndarray, skill: int,
               command: np.ndarray) -> None:
        for key, value in zip(ARRAYS, (obs, goal, action, action_velocity, skill, command)):
            self.rows[key].append(value)

    def __len__(self) -> int:
        return len(self.rows["obs"])

    def stacked(self, length: int | None = None) -> dict[str, np.ndarray]:
        n = len(self) if length is None else length
        return {k: np.asarray(v[:n], dtype=ARRAYS[k]) for k, v in self.rows.items()}


def write_dataset(path: Union[str, Path], episodes: list[dict[str, np.ndarray]], attrs: dict[str, Any],
                  chunk: int = 16384) -> None:
    """Concatenate episodes and write the zarr group (overwriting)."""
    root = zarr.open_group(str(path), mode="w")
    lengths = [len(e["obs"]) for e in episodes]
    for key, dtype in ARRAYS.items():
        if key in OPTIONAL and not all(key in e for e in episodes):
            continue
        data = np.concatenate([e[key] for e in episodes]).astype(dtype)
        root.create_array(f"data/{key}", data=data, chunks=(chunk,) + data.shape[1:])
    root.create_array("meta/episode_ends", data=np.cumsum(lengths).astype(np.int64))
    root.attrs.update(attrs)


def load_dataset(path: Union[str, Path]) -> dict[str, np.ndarray]:
    """All arrays of a dataset in memory, keyed by their short names plus 'episode_ends'."""
    root = zarr.open_group(str(path), mode="r")
    out = {key: np.asarray(root[f"data/{key}"][:]) for key in ARRAYS if key not in OPTIONAL or f"data/{key}" in root}
    out["episode_ends"] = np.asarray(root["meta/episode_ends"][:])
    return out


def dataset_attrs(path: Union[str, Path]) -> dict[str, Any]:
    return dict(zarr.open_group(str(path), mode="r").attrs)
