"""DDPM and DDIM noise schedulers as precomputed coefficient tables.

Why our own and not diffusers': the whole sampler must unroll into ONE exported graph with no RNG and no Python
control flow depending on tensors, so every step is reduced ahead of time to a handful of float constants:

    x0     = clip(a_t * x - b_t * eps)                       (epsilon prediction, sample clipping)
    x_prev = c_x0 * x0 + c_x * x + c_eps * eps + sigma * z    (z: noise supplied by the caller)

DDPM (fixed_small variance) has c_eps = 0; DDIM with eta = 0 has c_x = 0 and sigma = 0. The tables follow
diffusers' DDPMScheduler / DDIMScheduler ("leading" timestep spacing, set_alpha_to_one) number for number; the
core tests check the step outputs against diffusers to 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from diffuseloco_policy.model_spec import SchedulerConfig, inference_timesteps

def cosine_betas(num_steps: int, max_beta: float = 0.999) -> np.ndarray:
    """squaredcos_cap_v2 betas (Nichol & Dhariwal), rounded to float32 like diffusers so tables agree bitwise."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return np.asarray(betas, dtype=np.float32)


def alphas_cumprod(num_steps: int) -> np.ndarray:
    """Cumulative product of (1 - beta) in float32, the same arithmetic diffusers uses."""
    alphas = torch.from_numpy(1.0 - cosine_betas(num_steps))
    return torch.cumprod(alphas, dim=0).numpy()


@dataclass(frozen=True)
class StepCoefficients:
    """The constants of one reverse step at `timestep` (see the module docstring for the formula)."""

    timestep: int
    a: float
    b: float
    c_x0: float
    c_x: float
    c_eps: float
    sigma: float


class NoiseScheduler:
    """Coefficient tables for training (add_noise) and for an unrolled sampler (step)."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.alphas_cumprod = alphas_cumprod(config.num_train_steps).astype(np.float64)
        self.timesteps = inference_timesteps(config.num_train_steps, config.num_inference_steps)
        self.steps = [self._coefficients(i) for i in range(len(self.timesteps))]
        # Training tables as tensors: indexed by a batch of integer timesteps.
        self.sqrt_ab = torch.tensor(np.sqrt(self.alphas_cumprod), dtype=torch.float32)
        self.sqrt_1m_ab = torch.tensor(np.sqrt(1.0 - self.alphas_cumprod), dtype=torch.float32)

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def _coefficients(self, index: int) -> StepCoefficients:
        t = self.timesteps[index]
        prev_t = self.timesteps[index + 1] if index + 1 < len(self.timesteps) else -1
        ab_t = self.alphas_cumprod[t]
        ab_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else 1.0
        a, b = 1.0 / math.sqrt(ab_t), math.sqrt(1.0 - ab_t) / math.sqrt(ab_t)
        if self.config.kind == "ddim":  # eta = 0: deterministic, no fresh noise
            return StepCoefficients(t, a, b, math.sqrt(ab_prev), 0.0, math.sqrt(1.0 - ab_prev), 0.0)
        alpha_t = ab_t / ab_prev
        beta_t = 1.0 - alpha_t
        c_x0 = math.sqrt(ab_prev) * beta_t / (1.0 - ab_t)
        c_x = math.sqrt(alpha_t) * (1.0 - ab_prev) / (1.0 - ab_t)
        variance = max((1.0 - ab_prev) / (1.0 - ab_t) * beta_t, 1e-20)
        sigma = math.sqrt(variance) if t > 0 else 0.0
        return StepCoefficients(t, a, b, c_x0, c_x, 0.0, sigma)

    def step(self, index: int, eps: torch.Tensor, sample: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step (step number `index` of the inference schedule); returns (x_prev, x0 estimate).

        `noise` is only used where the step is stochastic (DDPM, t > 0); constants are Python floats so a
        traced graph holds them as literals.
        """
        c = self.steps[index]
        x0 = c.a * sample - c.b * eps
        if self.config.clip_sample:
            r = self.config.clip_sample_range
            x0 = x0.clamp(-r, r)
        prev = c.c_x0 * x0
        if c.c_x != 0.0:
            prev = prev + c.c_x * sample
        if c.c_eps != 0.0:
            prev = prev + c.c_eps * eps
        if c.sigma != 0.0:
            prev = prev + c.sigma * noise
        return prev, x0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x0) for a batch of integer timesteps (training, and warm-start re-noising)."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        s = self.sqrt_ab.to(x0.device)[timesteps].reshape(shape)
        n = self.sqrt_1m_ab.to(x0.device)[timesteps].reshape(shape)
        return s * x0 + n * noise

    def add_noise_at(self, x0: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
        """add_noise for one fixed timestep with float constants (traceable without index ops)."""
        ab = float(self.alphas_cumprod[timestep])
        return math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * noise

    def warm_start_indices(self, num_steps: int) -> list[int]:
        """The last `num_steps` steps of the schedule: the low-noise end a warm start re-enters at."""
        if not 1 <= num_steps <= len(self.timesteps):
            raise ValueError(f"warm start needs 1..{len(self.timesteps)} steps, got {num_steps}")
        return list(range(len(self.timesteps) - num_steps, len(self.timesteps)))
