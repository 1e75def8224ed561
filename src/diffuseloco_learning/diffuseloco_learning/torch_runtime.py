"""The torch backend of the policy runtime: the torch module itself (eval mode, no grad), e.g. straight from
training or a checkpoint. It gives the same numbers as the exported ONNX graph for the same noise (a core test
holds them to 1e-4); the robot uses ONNX (diffuseloco_policy.runtime), this one debugs and trains."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.model_file import ModelInfo
from diffuseloco_policy.runtime import Pair, PolicyRuntime
from .diffusion.policy import Policy
from .model_checkpoint import load_checkpoint


class TorchRuntime(PolicyRuntime):
    """The torch module itself (eval mode, no grad), e.g. straight from training or a checkpoint."""

    def __init__(self, policy: Policy, info: ModelInfo, warm_start_steps: Optional[int] = None,
                 threads: Optional[int] = None, seed: int = 0, noise_scale: float = 1.0) -> None:
        super().__init__(info, warm_start_steps, seed, noise_scale)
        self.policy = policy.eval()
        if threads is not None:
            torch.set_num_threads(threads)
        self._full_time = self._warm_time = None
        if self.is_diffusion:  # weights are frozen here, so the timestep tokens' keys/values are constants
            with torch.no_grad():
                self._full_time = policy.time_table(policy.full_indices())
                if self.warm_start_steps is not None:
                    self._warm_time = policy.time_table(policy.warm_indices(self.warm_start_steps))

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], robot: Optional[StackConfig] = None,
                        warm_start_steps: Optional[int] = None, threads: Optional[int] = None,
                        seed: int = 0, noise_scale: float = 1.0) -> "TorchRuntime":
        policy, info = load_checkpoint(path, robot)
        return cls(policy, info, warm_start_steps, threads=threads, seed=seed, noise_scale=noise_scale)

    @torch.no_grad()
    def sample_full(self, obs: np.ndarray, goal: np.ndarray, noise: Optional[np.ndarray]) -> Pair:
        if not self.is_diffusion:
            return _numpy(self.policy.sample(*_tensors(obs, goal)))
        return _numpy(self.policy.sample(*_tensors(obs, goal, noise), time=self._full_time))

    @torch.no_grad()
    def sample_warm(self, obs: np.ndarray, goal: np.ndarray, prev_clean: np.ndarray, noise: np.ndarray) -> Pair:
        o, g, p, n = _tensors(obs, goal, prev_clean, noise)
        return _numpy(self.policy.sample_warm(o, g, p, n, steps=self.warm_start_steps, time=self._warm_time))


def _tensors(*arrays: Optional[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays if a is not None]


def _numpy(pair: tuple[torch.Tensor, torch.Tensor]) -> Pair:
    return pair[0].numpy(), pair[1].numpy()
