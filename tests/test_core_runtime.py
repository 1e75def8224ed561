"""ONNX single-graph samplers and the torch module give the same actions for the same noise (1e-4)."""

import numpy as np
import pytest
import torch

from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, SchedulerConfig, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_policy.model_file import read_onnx_info
from diffuseloco_policy.normalizer import PolicyNormalizer
from diffuseloco_policy.runtime import OnnxRuntime, load_runtime
from diffuseloco_learning.torch_runtime import TorchRuntime

torch.set_num_threads(1)
CFG = load_config()
# ONNX Runtime's fused float32 kernels against torch's, through 10 sampler steps of a model whose weights are
# scaled 8x (below): the entries agree to 1e-5 (p99); the largest of 192 differed by 1.05e-4 with a five-skill goal.
TOL = 2e-4


def fitted_normalizer(seed=0):
    rng = np.random.default_rng(seed)
    return PolicyNormalizer.fit(rng.normal(size=(64, 42)) * 2, rng.normal(size=(64, CFG.observation.goal_dim)), rng.normal(size=(64, 12)) * 0.5)


@pytest.fixture(scope="module", params=["ddpm", "ddim", "bc_mlp"])
def runtimes(request, tmp_path_factory):
    kind = request.param
    torch.manual_seed(0)
    spec = ModelSpec(kind="bc_mlp" if kind == "bc_mlp" else "diffusion",
                     denoiser=DenoiserConfig(width=64, heads=4, layers=2, dropout_attn=0.0),
                     scheduler=SchedulerConfig(kind=kind if kind != "bc_mlp" else "ddpm",
                                               num_inference_steps=10 if kind != "ddim" else 5))
    policy = build_policy(CFG, spec, fitted_normalizer())
    with torch.no_grad():  # larger-than-init weights so outputs are not all clipped or near zero
        for p in policy.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    path = export_onnx(policy, CFG, tmp_path_factory.mktemp(kind) / "policy.onnx", warm_steps=(2, 3))[0]
    warm = None if kind == "bc_mlp" else 2
    info = read_onnx_info(path, CFG)
    return OnnxRuntime(path, CFG, warm_start_steps=warm), TorchRuntime(policy, info, warm_start_steps=warm), path


def histories(batch, seed=0):
    rng = np.random.default_rng(seed)
    shape = () if batch is None else (batch,)
    return (rng.normal(size=shape + (8, 42)).astype(np.float32) * 2,
            rng.normal(size=shape + (8, CFG.observation.goal_dim)).astype(np.float32))


@pytest.mark.parametrize("batch", [None, 1, 3])
def test_full_and_warm_start_parity(runtimes, batch):
    onnx_rt, torch_rt, _ = runtimes
    obs, goal = histories(batch)
    b = 1 if batch is None else batch
    for tick in range(3):  # tick 0 full sampler, then warm starts from each backend's own previous chunk
        warm = tick > 0 and onnx_rt.is_diffusion
        shape = onnx_rt.noise_shape(b, warm)
        noise = None if shape is None else np.random.default_rng(tick).standard_normal(shape).astype(np.float32)
        a_onnx = onnx_rt.predict(obs, goal, noise, warm=warm if onnx_rt.is_diffusion else None)
        a_torch = torch_rt.predict(obs, goal, noise, warm=warm if torch_rt.is_diffusion else None)
        assert a_onnx.shape == ((16, 12) if batch is None else (batch, 16, 12))
        np.testing.assert_allclose(a_onnx, a_torch, rtol=0, atol=TOL)
        clean = onnx_rt._prev_clean
        assert np.mean(np.abs(clean) < 0.99) > 0.2, "outputs mostly clipped: parity would be vacuous"
        assert np.std(a_onnx) > 0.05


def test_warm_start_graphs_with_three_steps(runtimes):
    _, torch_rt, path = runtimes
    if not torch_rt.is_diffusion:  # the deterministic baseline has no warm start and must say so
        obs, goal = histories(2, seed=5)
        with pytest.raises(RuntimeError, match="warm start requested but not enabled"):
            torch_rt.predict(obs, goal, None, warm=True)
        return
    onnx3 = load_runtime(path, CFG, warm_start_steps=3)
    torch3 = TorchRuntime(torch_rt.policy, torch_rt.info, warm_start_steps=3)
    obs, goal = histories(2, seed=5)
    prev = np.random.default_rng(1).uniform(-1, 1, size=(2, 16, 12)).astype(np.float32)
    noise = np.random.default_rng(2).standard_normal((2, 4, 16, 12)).astype(np.float32)
    a1, c1 = onnx3.sample_warm(obs, goal, prev, noise)
    a2, c2 = torch3.sample_warm(obs, goal, prev, noise)
    np.testing.assert_allclose(a1, a2, rtol=0, atol=TOL)
    np.testing.assert_allclose(c1, c2, rtol=0, atol=TOL)


def test_runtime_state_and_rng(runtimes):
    onnx_rt, _, _ = runtimes
    obs, goal = histories(None)
    onnx_rt.reset()
    a = onnx_rt.predict(obs, goal, np.random.default_rng(7))
    onnx_rt.reset()
    b = onnx_rt.predict(obs, goal, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert onnx_rt.action_for_tick(a).shape == (12,)
    np.testing.assert_array_equal(onnx_rt.action_for_tick(a), a[8])
    with pytest.raises(ValueError):
        onnx_rt.predict(obs[:4], goal)


def test_noise_scale_is_the_samplers_temperature(runtimes):
    """noise_scale multiplies the noise the runtime draws (explicit noise is used as given); at 0 the sampler is
    deterministic whatever the generator. A bc_mlp draws no noise, so the scale changes nothing there."""
    onnx_rt, _, path = runtimes
    obs, goal = histories(None)
    warm_steps = onnx_rt.warm_start_steps
    cool = OnnxRuntime(path, CFG, warm_start_steps=warm_steps, noise_scale=0.25)
    if not onnx_rt.is_diffusion:
        np.testing.assert_array_equal(cool.predict(obs, goal, np.random.default_rng(1)),
                                      onnx_rt.predict(obs, goal, np.random.default_rng(2)))
        return
    for warm in (False, True):
        first = np.random.default_rng(0).standard_normal(cool.noise_shape(1, False), dtype=np.float32)
        for runtime in (cool, onnx_rt):  # the same previous chunk to warm-start from
            runtime.predict(obs, goal, first, warm=False)
        scaled = 0.25 * np.random.default_rng(3).standard_normal(cool.noise_shape(1, warm), dtype=np.float32)
        np.testing.assert_allclose(cool.predict(obs, goal, np.random.default_rng(3), warm=warm),
                                   onnx_rt.predict(obs, goal, scaled, warm=warm), atol=1e-6)
    frozen = OnnxRuntime(path, CFG, warm_start_steps=warm_steps, noise_scale=0.0)
    np.testing.assert_array_equal(frozen.predict(obs, goal, np.random.default_rng(1), warm=False),
                                  frozen.predict(obs, goal, np.random.default_rng(2), warm=False))
    assert not np.allclose(onnx_rt.predict(obs, goal, np.random.default_rng(1), warm=False),
                           onnx_rt.predict(obs, goal, np.random.default_rng(2), warm=False))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="noise_scale"):
            load_runtime(path, CFG, noise_scale=bad)


def test_warm_up_leaves_no_state_behind(runtimes):
    onnx_rt, torch_rt, _ = runtimes
    obs, goal = histories(None)
    for rt in (onnx_rt, torch_rt):
        rt.reset()
        expected = rt.predict(obs, goal, np.random.default_rng(3))
        rt.predict(obs * 0.5, goal, np.random.default_rng(4))  # leaves a previous chunk (warm start armed)
        rt.warm_up()
        # the next call is a full sample again, identical to one from a fresh runtime
        np.testing.assert_array_equal(rt.predict(obs, goal, np.random.default_rng(3)), expected)


def test_export_of_a_training_mode_policy_with_dropout(tmp_path):
    """Export must sample with dropout off (verify compares with torch in eval mode) and restore the mode."""
    torch.manual_seed(0)
    policy = build_policy(CFG, ModelSpec(denoiser=DenoiserConfig(width=32, heads=2, layers=1, dropout_attn=0.3)))
    assert policy.training
    path = export_onnx(policy, CFG, tmp_path / "p.onnx", warm_steps=(2,), verify=True)[0]
    assert policy.training
    obs, goal = histories(2)
    noise = np.random.default_rng(0).standard_normal((2, 11, 16, 12)).astype(np.float32)
    a_onnx, _ = OnnxRuntime(path, CFG).sample_full(obs, goal, noise)
    a_torch, _ = TorchRuntime(policy, read_onnx_info(path)).sample_full(obs, goal, noise)
    np.testing.assert_allclose(a_onnx, a_torch, rtol=0, atol=TOL)
