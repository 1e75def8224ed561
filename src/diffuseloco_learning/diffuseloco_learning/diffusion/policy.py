"""Policies: normalizer + model (+ scheduler) behind one interface the trainer, exporter and evaluator share.

Both `DiffusionPolicy` and the baseline `BCPolicy` take raw (unnormalized) histories
obs (B, To, obs_dim) and goal (B, To, goal_dim) for ticks t-To..t-1 (delayed inputs, see history.py) and return
`(actions, clean)`: the unnormalized action chunk (B, horizon, action_dim) for ticks t-To..t-To+horizon-1 and the
normalized clean chunk a warm start at the next tick begins from. Receding horizon: only
`actions[:, execute_index]` (the action for tick t) is executed, then the policy replans.

Sampling takes its noise as an input (no RNG inside) so one traced graph reproduces exactly what torch computes:
noise has shape (B, S + 1, horizon, action_dim) for S denoising steps; noise[:, 0] starts the chain (pure noise
for the full sampler, the re-noising noise for a warm start) and noise[:, j + 1] is step j's DDPM noise.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.model_spec import ModelSpec, PolicyDims
from diffuseloco_policy.normalizer import PolicyNormalizer
from .mlp import MLPActor
from .normalizer_module import NormalizerModule
from .schedulers import NoiseScheduler
from .transformer import TransformerDenoiser, select_time, stack_time

# The time token's keys/values of a sampler's steps: (steps, layers, 2, heads, 1 + 2 To, head_dim), see
# TransformerDenoiser.join_memory.
TimeTable = torch.Tensor


def shift_chunk(chunk: torch.Tensor) -> torch.Tensor:
    """Advance a chunk by one tick: drop the oldest action and repeat the last (receding-horizon warm start)."""
    return torch.cat([chunk[:, 1:], chunk[:, -1:]], dim=1)


class _PolicyBase(nn.Module):
    """Normalizers and the receding-horizon helpers shared by both policies."""

    def __init__(self, dims: PolicyDims, spec: ModelSpec, normalizer: PolicyNormalizer) -> None:
        super().__init__()
        self.dims, self.spec = dims, spec
        self.obs_norm = NormalizerModule(normalizer.obs)
        self.goal_norm = NormalizerModule(normalizer.goal)
        self.action_norm = NormalizerModule(normalizer.action)

    @property
    def normalizer(self) -> PolicyNormalizer:
        return PolicyNormalizer(self.obs_norm.to_normalizer(), self.goal_norm.to_normalizer(),
                                self.action_norm.to_normalizer())

    def action_for_tick(self, actions: torch.Tensor) -> torch.Tensor:
        """Receding horizon: the action for the current tick, chunk[:, execute_index] (B, action_dim)."""
        return actions[:, self.dims.execute_index]

    def _inputs(self, obs: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.obs_norm.normalize(obs), self.goal_norm.normalize(goal)


class DiffusionPolicy(_PolicyBase):
    """Transformer denoiser + DDPM/DDIM sampler; full and warm-start samplers unroll into one forward."""

    def __init__(self, dims: PolicyDims, spec: ModelSpec, normalizer: PolicyNormalizer) -> None:
        super().__init__(dims, spec, normalizer)
        self.denoiser = TransformerDenoiser(spec.denoiser, dims.obs_dim, dims.goal_dim, dims.action_dim,
                                            dims.history, dims.horizon)
        self.scheduler = NoiseScheduler(spec.scheduler)

    @property
    def num_steps(self) -> int:
        return len(self.scheduler.timesteps)

    def noise_shape(self, batch: int, warm_steps: Optional[int] = None) -> tuple[int, int, int, int]:
        """Shape of the noise input: (B, S + 1, horizon, action_dim) for S = warm_steps or all steps."""
        steps = self.num_steps if warm_steps is None else warm_steps
        return (batch, steps + 1, self.dims.horizon, self.dims.action_dim)

    def compute_loss(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Epsilon-prediction MSE on the normalized chunk, at uniformly drawn training timesteps."""
        obs_n, goal_n = self._inputs(obs, goal)
        x0 = self.action_norm.normalize(action)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = torch.randint(0, self.scheduler.num_train_steps, (x0.shape[0],), generator=generator, device=x0.device)
        pred = self.denoiser(self.scheduler.add_noise(x0, noise, t), t, obs_n, goal_n)
        return F.mse_loss(pred, noise)

    def sample(self, obs: torch.Tensor, goal: torch.Tensor, noise: torch.Tensor,
               time: Optional[TimeTable] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Full sampler from pure noise: returns (actions unnormalized, clean normalized chunk).
        `time` is an optional precomputed `time_table(full_indices())` (constant for fixed weights)."""
        noises = noise.unbind(1)
        return self._run(obs, goal, noises[0], noises[1:], self.full_indices(), time)

    def sample_warm(self, obs: torch.Tensor, goal: torch.Tensor, prev_clean: torch.Tensor, noise: torch.Tensor,
                    steps: Optional[int] = None, time: Optional[TimeTable] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Warm start (real-time iteration): shift the previous tick's clean chunk, re-noise it to the timestep of
        the last `steps` schedule steps, and denoise only those. noise: (B, steps + 1, horizon, action_dim)."""
        indices = self.warm_indices(steps)
        noises = noise.unbind(1)
        start_t = self.scheduler.timesteps[indices[0]]
        x = self.scheduler.add_noise_at(shift_chunk(prev_clean), noises[0], start_t)
        return self._run(obs, goal, x, noises[1:], indices, time)

    def full_indices(self) -> list[int]:
        return list(range(self.num_steps))

    def warm_indices(self, steps: Optional[int] = None) -> list[int]:
        return self.scheduler.warm_start_indices(self.spec.warm_start_steps if steps is None else steps)

    def time_table(self, indices: list[int]) -> TimeTable:
        """Per step, per layer, the timestep token's keys/values, as one tensor: depends on weights and schedule
        only, so a deployed sampler computes it once (export bakes it in as a constant)."""
        device = self.denoiser.pos_emb.device
        timesteps = torch.tensor([self.scheduler.timesteps[i] for i in indices], device=device)
        time = self.denoiser.time_kv(timesteps)
        return stack_time([select_time(time, j) for j in range(len(indices))])

    def _run(self, obs: torch.Tensor, goal: torch.Tensor, x: torch.Tensor, noises: Sequence[torch.Tensor],
             indices: list[int], time: Optional[TimeTable]) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise x through the given schedule steps, with the memory of every step (cond + time token)
        joined once per sample."""
        obs_n, goal_n = self._inputs(obs, goal)
        cond = self.denoiser.encode_cond(obs_n, goal_n)
        memory = self.denoiser.join_memory(cond, self.time_table(indices) if time is None else time)
        for j, index in enumerate(indices):
            eps = self.denoiser.decode(x, memory[j])
            x, _ = self.scheduler.step(index, eps, x, noises[j])
        return self.action_norm.unnormalize(x), x


class BCPolicy(_PolicyBase):
    """MLP behaviour cloning with the DiffusionPolicy interface; noise and the previous chunk are ignored."""

    def __init__(self, dims: PolicyDims, spec: ModelSpec, normalizer: PolicyNormalizer) -> None:
        super().__init__(dims, spec, normalizer)
        self.actor = MLPActor(spec.mlp, dims.obs_dim, dims.goal_dim, dims.action_dim, dims.history, dims.horizon)

    def noise_shape(self, batch: int, warm_steps: Optional[int] = None) -> None:
        """A deterministic policy takes no noise."""
        return None

    def compute_loss(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """MSE between the predicted and the demonstrated normalized chunk."""
        return F.mse_loss(self.actor(*self._inputs(obs, goal)), self.action_norm.normalize(action))

    def sample(self, obs: torch.Tensor, goal: torch.Tensor, noise: Optional[torch.Tensor] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.actor(*self._inputs(obs, goal))
        return self.action_norm.unnormalize(x), x

    def sample_warm(self, obs: torch.Tensor, goal: torch.Tensor, prev_clean: Optional[torch.Tensor] = None,
                    noise: Optional[torch.Tensor] = None, steps: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(obs, goal)


Policy = Union[DiffusionPolicy, BCPolicy]


def build_policy(config: Union[StackConfig, PolicyDims], spec: ModelSpec,
                 normalizer: Optional[PolicyNormalizer] = None) -> Policy:
    """Construct the policy a spec describes (identity normalizer until one is fitted)."""
    dims = config if isinstance(config, PolicyDims) else PolicyDims.from_config(config, spec.predict_velocity)
    normalizer = normalizer or PolicyNormalizer.identity(dims.obs_dim, dims.goal_dim, dims.action_dim)
    cls = DiffusionPolicy if spec.kind == "diffusion" else BCPolicy
    return cls(dims, spec, normalizer)
