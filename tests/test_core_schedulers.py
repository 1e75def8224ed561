"""Our table-driven DDPM/DDIM steps reproduce diffusers' schedulers to 1e-5 (diffusers used only here)."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffuseloco_learning.diffusion.schedulers import NoiseScheduler, SchedulerConfig

torch.set_num_threads(1)
SHAPE = (4, 16, 12)
COMMON = dict(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2", clip_sample=True, prediction_type="epsilon")


def reference(kind: str, steps: int):
    if kind == "ddpm":
        ref = DDPMScheduler(variance_type="fixed_small", **COMMON)
    else:
        ref = DDIMScheduler(**COMMON)
    ref.set_timesteps(steps)
    return ref


@pytest.mark.parametrize("kind,steps", [("ddpm", 10), ("ddpm", 5), ("ddim", 10), ("ddim", 5), ("ddim", 3), ("ddim", 2)])
def test_each_step_matches_diffusers(kind, steps):
    ours = NoiseScheduler(SchedulerConfig(kind=kind, num_inference_steps=steps))
    ref = reference(kind, steps)
    assert ours.timesteps == [int(t) for t in ref.timesteps]
    torch.testing.assert_close(torch.tensor(ours.alphas_cumprod, dtype=torch.float32), ref.alphas_cumprod,
                               rtol=0, atol=1e-7)
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(ref.timesteps):
        sample = torch.randn(SHAPE, generator=g) * 1.5
        eps = torch.randn(SHAPE, generator=g)
        seed = 1000 + i
        out = ref.step(eps, t, sample, generator=torch.Generator().manual_seed(seed))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))  # the same draw diffusers makes
        prev, x0 = ours.step(i, eps, sample, noise)
        torch.testing.assert_close(x0, out.pred_original_sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(prev, out.prev_sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_whole_chain_matches_diffusers(kind):
    """Chained steps with a smooth fake denoiser, so errors would compound if any coefficient were off."""
    ours = NoiseScheduler(SchedulerConfig(kind=kind, num_inference_steps=10 if kind == "ddpm" else 4))
    ref = reference(kind, len(ours.timesteps))
    g = torch.Generator().manual_seed(3)
    x_ref = x_ours = torch.randn(SHAPE, generator=g)
    unclipped = 0
    for i, t in enumerate(ref.timesteps):
        seed = 77 + i
        eps_ref, eps_ours = 0.8 * torch.tanh(x_ref), 0.8 * torch.tanh(x_ours)
        out = ref.step(eps_ref, t, x_ref, generator=torch.Generator().manual_seed(seed))
        x_ref = out.prev_sample
        x_ours, x0 = ours.step(i, eps_ours, x_ours, torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)))
        unclipped += int((x0.abs() < 0.999).sum())
        torch.testing.assert_close(x_ours, x_ref, rtol=0, atol=1e-5)
    assert unclipped > 0  # the comparison is not only over clipped values


def test_add_noise_matches_diffusers():
    ours = NoiseScheduler(SchedulerConfig())
    ref = reference("ddpm", 10)
    x0, noise = torch.rand(SHAPE) * 2 - 1, torch.randn(SHAPE)
    t = torch.tensor([0, 4, 9, 7])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.add_noise_at(x0, noise, 6), ref.add_noise(x0, noise, torch.tensor([6] * 4)),
                               rtol=0, atol=1e-6)


def test_warm_start_indices_are_the_low_noise_tail():
    s = NoiseScheduler(SchedulerConfig())
    assert [s.timesteps[i] for i in s.warm_start_indices(3)] == [2, 1, 0]
    with pytest.raises(ValueError):
        s.warm_start_indices(11)
