"""Denoiser caching and masks, warm-start semantics, receding horizon, checkpoints (torch only, tiny models)."""

import numpy as np
import pytest
import torch

from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, build_policy, shift_chunk
from diffuseloco_learning.diffusion.transformer import select_time
from diffuseloco_learning.model_checkpoint import load_checkpoint, save_checkpoint
from diffuseloco_policy.normalizer import PolicyNormalizer

torch.set_num_threads(1)
CFG = load_config()
TINY = ModelSpec(denoiser=DenoiserConfig(width=64, heads=4, layers=2, dropout_attn=0.0))


def make_policy(seed: int = 0, spec: ModelSpec = TINY):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    normalizer = PolicyNormalizer.fit(rng.normal(size=(64, 42)), rng.normal(size=(64, CFG.observation.goal_dim)), rng.normal(size=(64, 12)))
    return build_policy(CFG, spec, normalizer).eval()


def inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 42, generator=g), torch.randn(batch, 8, CFG.observation.goal_dim, generator=g)


def test_presets_have_the_reference_sizes():
    sizes = {p: sum(x.numel() for x in make_policy(spec=ModelSpec(denoiser=DenoiserConfig.preset(p))).parameters())
             for p in ("paper", "small", "tiny")}
    assert 6.7e6 < sizes["paper"] < 7.1e6
    assert 1.1e6 < sizes["small"] < 1.3e6
    assert 0.6e6 < sizes["tiny"] < 0.75e6


def test_cached_cond_equals_full_forward():
    policy = make_policy()
    obs, goal = inputs()
    x = torch.randn(2, 16, 12)
    full = policy.denoiser(x, torch.tensor([4, 4]), obs, goal)
    den = policy.denoiser
    cached = den.denoise(x, den.encode_cond(obs, goal), select_time(den.time_kv(torch.tensor([9, 4, 0])), 1))
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


def test_masks_are_causal():
    """Action token i must not depend on later action tokens, nor on observation/goal tokens of later ticks."""
    den = make_policy().denoiser
    obs, goal = inputs()
    x, t = torch.randn(2, 16, 12), torch.tensor([3, 3])
    base = den(x, t, obs, goal)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    torch.testing.assert_close(den(x2, t, obs, goal)[:, :5], base[:, :5])
    assert not torch.allclose(den(x2, t, obs, goal)[:, 5:], base[:, 5:])
    obs2, goal2 = obs.clone(), goal.clone()
    obs2[:, 6:] += 1.0
    goal2[:, 6:] += 1.0
    out = den(x, t, obs2, goal2)
    torch.testing.assert_close(out[:, :6], base[:, :6])
    assert not torch.allclose(out[:, 6:], base[:, 6:])


def test_warm_start_is_shift_renoise_and_last_k_steps():
    policy = make_policy()
    obs, goal = inputs()
    prev = torch.rand(2, 16, 12) * 2 - 1
    noise = torch.randn(policy.noise_shape(2, 3))
    actions, clean = policy.sample_warm(obs, goal, prev, noise, steps=3)
    # by hand: shift, noise to timestep 2, then DDPM steps at t = 2, 1, 0
    sched = policy.scheduler
    x = sched.add_noise(shift_chunk(prev), noise[:, 0], torch.tensor([2, 2]))
    obs_n, goal_n = policy.obs_norm.normalize(obs), policy.goal_norm.normalize(goal)
    for j, (i, t) in enumerate(zip((7, 8, 9), (2, 1, 0))):
        eps = policy.denoiser(x, torch.tensor([t, t]), obs_n, goal_n)
        x, _ = sched.step(i, eps, x, noise[:, j + 1])
    torch.testing.assert_close(clean, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(actions, policy.action_norm.unnormalize(x), rtol=0, atol=1e-5)


def test_shift_chunk_and_receding_horizon_index():
    chunk = torch.arange(16.0).reshape(1, 16, 1).expand(1, 16, 12)
    shifted = shift_chunk(chunk)
    assert shifted[0, :, 0].tolist() == list(range(1, 16)) + [15]
    assert make_policy().action_for_tick(chunk)[0, 0].item() == CFG.action.execute_index == 8


def test_sampler_is_deterministic_given_noise_and_noise_matters():
    policy = make_policy()
    obs, goal = inputs()
    n1, n2 = torch.randn(policy.noise_shape(2)), torch.randn(policy.noise_shape(2))
    a1, _ = policy.sample(obs, goal, n1)
    torch.testing.assert_close(policy.sample(obs, goal, n1)[0], a1, rtol=0, atol=0)
    assert not torch.allclose(policy.sample(obs, goal, n2)[0], a1)


@pytest.mark.parametrize("kind", ["diffusion", "bc_mlp"])
def test_checkpoint_round_trip(tmp_path, kind):
    policy = make_policy(spec=ModelSpec(kind=kind, denoiser=TINY.denoiser))
    path = save_checkpoint(tmp_path / "p.safetensors", policy, CFG)
    loaded, info = load_checkpoint(path, robot=CFG)
    assert info.spec == policy.spec and info.config == CFG
    obs, goal = inputs()
    noise = torch.randn(policy.noise_shape(2) or (2, 11, 16, 12))
    torch.testing.assert_close(loaded.sample(obs, goal, noise)[0], policy.sample(obs, goal, noise)[0], rtol=0, atol=0)
