"""Training samples cut from expert episodes with exactly the run-time delay semantics of history.py.

The sample for tick t of an episode (ticks e0 .. e1-1 in the concatenated arrays):

    obs   s[t-To .. t-1]                (To frames, delayed: never s[t])
    goal  g[t-To .. t-1]                (the goals of the same ticks)
    action a[t-To .. t-To+horizon-1]    (for To = 8, horizon = 16: a[t-8 .. t+7]; chunk[To] is a[t])

Indices before the episode start are clamped to e0 (history.py pads by repeating the oldest recorded frame,
and at tick 0 it seeds itself with s[0], so tick 0 sees To copies of s[0]); action indices past the episode end
are clamped to e1-1 (the last action repeats). With `delayed=False` (the ablation) the observation window is
s[t-To+1 .. t], i.e. what `history.push(s[t]); history.window()` returns at run time; the action chunk is the
same. Every tick of every episode is a sample.

Why fancy indexing: a batch is gathered with one clamped (B, To) and one (B, horizon) index matrix; there is
no per-sample Python loop, so a 4096 batch costs a few milliseconds, and `__getitems__` lets a torch
DataLoader fetch whole batches the same way. Storage can be numpy (host) or torch tensors on a device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from diffuseloco_policy.config import StackConfig
from ..data.dataset import load_dataset

KEYS = ("obs", "goal", "action")


class EpisodeWindows(Dataset):
    """Delayed-input windows over concatenated episodes; item i is the sample of global tick i."""

    def __init__(self, obs: np.ndarray, goal: np.ndarray, action: np.ndarray, episode_ends: np.ndarray,
                 history: int, horizon: int, delayed: bool = True) -> None:
        n = len(obs)
        ends = np.asarray(episode_ends, dtype=np.int64)
        if len(goal) != n or len(action) != n:
            raise ValueError(f"obs/goal/action lengths differ: {len(obs)}, {len(goal)}, {len(action)}")
        if len(ends) == 0 or ends[-1] != n or np.any(np.diff(np.concatenate([[0], ends])) <= 0):
            raise ValueError(f"episode_ends must be increasing and end at {n}, got {ends[:5]}..{ends[-1:]}")
        if history < 1 or horizon < history:
            raise ValueError(f"need 1 <= history <= horizon, got {history}, {horizon}")
        self.history, self.horizon, self.delayed = history, horizon, delayed
        self.data: dict[str, Any] = {"obs": np.asarray(obs, np.float32), "goal": np.asarray(goal, np.float32),
                                     "action": np.asarray(action, np.float32)}
        self.episode_ends = ends
        starts = np.concatenate([[0], ends[:-1]])
        lengths = ends - starts
        # Per sample (= per tick): first and last index of its episode. int32 keeps 4M ticks at 32 MB.
        dtype = np.int32 if n < 2**31 else np.int64
        self._first = np.repeat(starts, lengths).astype(dtype)
        self._last = np.repeat(ends - 1, lengths).astype(dtype)
        # Offsets relative to t: obs t-To..t-1 (delayed) or t-To+1..t; actions t-To..t-To+horizon-1.
        first_obs = -history if delayed else -history + 1
        self._obs_offsets = np.arange(first_obs, first_obs + history, dtype=np.int64)
        self._act_offsets = np.arange(-history, -history + horizon, dtype=np.int64)

    @classmethod
    def from_zarr(cls, paths: Union[str, Path, Sequence[Union[str, Path]]], history: int, horizon: int,
                  delayed: bool = True, predict_velocity: bool = False) -> "EpisodeWindows":
        """Load one or more datasets (data/dataset.py layout) into memory, episodes concatenated in order.
        predict_velocity: each action row is followed by its velocity feed-forward (action_velocity)."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ValueError("no dataset paths given")
        parts = [load_dataset(p) for p in paths]
        if predict_velocity:
            lacking = [str(path) for path, part in zip(paths, parts) if "action_velocity" not in part]
            if lacking:
                raise ValueError(f"{lacking} hold no action_velocity (written before it was recorded): a model "
                                 "that predicts the velocity feed-forward needs data generated since")
            for part in parts:
                part["action"] = np.concatenate([part["action"], part["action_velocity"]], axis=1)
        offsets = np.cumsum([0] + [len(p["obs"]) for p in parts[:-1]])
        ends = np.concatenate([p["episode_ends"] + off for p, off in zip(parts, offsets)])
        return cls(*(np.concatenate([p[k] for p in parts]) for k in KEYS), ends, history, horizon, delayed)

    @classmethod
    def for_config(cls, paths: Union[str, Path, Sequence[Union[str, Path]]], config: StackConfig,
                   delayed: bool = True, predict_velocity: bool = False) -> "EpisodeWindows":
        return cls.from_zarr(paths, config.observation.history, config.action.horizon, delayed, predict_velocity)

    def __len__(self) -> int:
        return len(self._first)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def index_matrices(self, ticks: Union[np.ndarray, Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Clamped global indices: observation/goal (B, To) and action (B, horizon) for the samples `ticks`."""
        t = np.asarray(ticks, dtype=np.int64)
        if t.ndim != 1:
            raise ValueError("ticks must be a 1-D sequence of sample indices")
        if len(t) and (t.min() < 0 or t.max() >= len(self)):
            raise IndexError(f"sample index out of range [0, {len(self)})")
        lo, hi = self._first[t][:, None], self._last[t][:, None]
        obs_idx = np.clip(t[:, None] + self._obs_offsets, lo, hi)
        act_idx = np.clip(t[:, None] + self._act_offsets, lo, hi)
        return obs_idx, act_idx

    def get_batch(self, ticks: Union[np.ndarray, Sequence[int]]) -> dict[str, torch.Tensor]:
        """{'obs': (B, To, obs_dim), 'goal': (B, To, goal_dim), 'action': (B, horizon, action_dim)} tensors."""
        obs_idx, act_idx = self.index_matrices(ticks)
        out = {}
        for key, idx in (("obs", obs_idx), ("goal", obs_idx), ("action", act_idx)):
            store = self.data[key]
            if isinstance(store, torch.Tensor):
                out[key] = store[torch.from_numpy(idx).to(store.device)]
            else:
                out[key] = torch.from_numpy(store[idx])
        return out

    # torch DataLoader: with a batch sampler, `__getitems__` receives the whole batch of indices at once.
    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.get_batch(indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch([int(index)]).items()}

    def to(self, device: Union[str, torch.device]) -> "EpisodeWindows":
        """Move the storage to `device` as tensors (e.g. the whole dataset on the GPU); indices stay numpy."""
        self.data = {k: torch.as_tensor(v).to(device) for k, v in self.data.items()}
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-tick arrays (N, dim), e.g. to fit the normalizer."""
        return {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in self.data.items()}


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataLoader collate_fn for `__getitems__` batches: they are already stacked."""
    return batch
