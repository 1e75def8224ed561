"""On a bimodal toy dataset the diffusion policy learns and keeps both modes; the MLP baseline averages them.

Same observation and goal for every sample; half the demonstrated chunks are +0.5 everywhere, half -0.5
(the action normalizer is fitted on [-1, 1] so the modes are not at the sampler's clipping bounds).

Finding recorded here: with the reference scheduler (10 steps, squaredcos_cap_v2, clip_sample on) a minority of
sampled chunks split between the modes across tokens (later tokens flip). The capped last beta (0.999) makes
alpha_bar at t=9 tiny (1/sqrt(alpha_bar_9) is ~200), so the first step's x0 is clipped element by element and
injects independent per-token pushes. Sampling the same weights without clipping was coherent in one run and
diverged in another, so it is no fix; the thresholds below allow that minority.
"""

import numpy as np
import pytest
import torch

from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import DenoiserConfig, MLPConfig, ModelSpec, build_policy
from diffuseloco_policy.normalizer import MinMaxNormalizer, PolicyNormalizer

torch.set_num_threads(1)
CFG = load_config()
MODE = 0.5
BATCH, STEPS = 64, 300


def dataset(n: int, g: torch.Generator):
    obs = torch.zeros(n, 8, 42) + 0.3
    goal = torch.zeros(n, 8, CFG.observation.goal_dim) + 0.1
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    action = sign[:, None, None] * MODE + 0.02 * torch.randn(n, 16, 12, generator=g)
    return obs, goal, action


def normalizer():
    return PolicyNormalizer(MinMaxNormalizer.identity(42), MinMaxNormalizer.identity(CFG.observation.goal_dim),
                            MinMaxNormalizer.from_limits(-np.ones(12), np.ones(12)))


def train(spec: ModelSpec, lr: float):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    policy = build_policy(CFG, spec, normalizer())
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    losses = []
    for _ in range(STEPS):
        loss = policy.compute_loss(*dataset(BATCH, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return policy.eval(), np.array(losses)


@pytest.fixture(scope="module")
def diffusion():
    spec = ModelSpec(denoiser=DenoiserConfig(width=64, heads=4, layers=2, dropout_attn=0.0))
    return train(spec, lr=2e-3)


@pytest.fixture(scope="module")
def mlp():
    return train(ModelSpec(kind="bc_mlp", mlp=MLPConfig(hidden=(128, 128))), lr=1e-3)


def test_diffusion_loss_decreases(diffusion):
    _, losses = diffusion
    assert losses[-30:].mean() < 0.5 * losses[:10].mean(), (losses[:10].mean(), losses[-30:].mean())


@torch.no_grad()
def test_diffusion_reproduces_both_modes(diffusion, max_between=0.25):
    policy, _ = diffusion
    n = 64
    obs, goal, _ = dataset(n, torch.Generator().manual_seed(1))
    actions, _ = policy.sample(obs, goal, torch.randn(policy.noise_shape(n), generator=torch.Generator().manual_seed(2)))
    executed = policy.action_for_tick(actions).mean(dim=1)  # the action actually sent, per sample
    frac_pos = (executed > 0).float().mean().item()
    assert 0.2 < frac_pos < 0.8, f"one mode collapsed: {frac_pos:.2f} of samples positive"
    distance = (executed.abs() - MODE).abs()
    assert distance.median() < 0.1, f"executed actions are not near a mode: median distance {distance.median():.3f}"
    between = (executed.abs() < 0.25).float().mean().item()
    assert between < max_between, f"{between:.2f} of executed actions average the two modes"
    chunk_means = actions.mean(dim=(1, 2))
    assert (chunk_means.abs() < 0.25).float().mean().item() < max_between + 0.05


@torch.no_grad()
def test_warm_start_stays_in_its_mode(diffusion):
    """Real-time iteration keeps the mode the previous tick chose: no flipping between gaits tick to tick."""
    policy, _ = diffusion
    n = 32
    obs, goal, _ = dataset(n, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    _, clean = policy.sample(obs, goal, torch.randn(policy.noise_shape(n), generator=g))
    start = clean.mean(dim=(1, 2))
    decided = start.abs() > 0.7 * MODE  # chunks that picked a mode (the action normalizer is the identity)
    assert decided.float().mean() > 0.5
    sign = torch.sign(start)
    for _ in range(5):
        actions, clean = policy.sample_warm(obs, goal, clean, torch.randn(policy.noise_shape(n, 2), generator=g), steps=2)
        assert torch.equal(torch.sign(clean.mean(dim=(1, 2)))[decided], sign[decided])
        assert (actions - sign[:, None, None] * MODE).abs()[decided].mean() < 0.1


@torch.no_grad()
def test_mlp_baseline_averages_the_modes(mlp):
    policy, losses = mlp
    obs, goal, _ = dataset(16, torch.Generator().manual_seed(1))
    actions, _ = policy.sample(obs, goal)
    assert actions.abs().mean() < 0.1, f"MLP should predict the average (~0), got {actions.abs().mean():.3f}"
    assert torch.equal(policy.sample(obs, goal)[0], actions)  # deterministic
    assert losses[-30:].mean() < losses[:10].mean()
