"""Min-max normalizer: [-1, 1] limits, exact round trips, constant dimensions, plain serialization."""

import json

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diffuseloco_policy.normalizer import MinMaxNormalizer, PolicyNormalizer
from diffuseloco_learning.diffusion.normalizer_module import NormalizerModule

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(2, 20), st.integers(1, 6)), elements=finite))
@example(np.array([[-604.25], [-602.0]], dtype=np.float32))
def test_round_trip_and_limits(data):
    norm = MinMaxNormalizer.fit(data)
    y = norm.normalize(data.astype(np.float64))
    assert np.all(np.isfinite(y))
    # the parameters are float32 (they are baked into float32 graphs): the offset carries a relative error of
    # float32's eps, which is large in [-1, 1] units when the data's span is small against its magnitude
    # (hypothesis found [-604.25, -602]: offset 536, -1.00003)
    tol = 1e-5 + 2 * np.finfo(np.float32).eps * (1 + np.abs(norm.offset).max())
    assert y.min() >= -1 - tol and y.max() <= 1 + tol
    span = data.max(0).astype(np.float64) - data.min(0)
    varying = span >= 1e-4
    np.testing.assert_allclose(y.min(0)[varying], -1, atol=max(1e-4, tol))
    np.testing.assert_allclose(y.max(0)[varying], 1, atol=max(1e-4, tol))
    back = norm.unnormalize(y)
    np.testing.assert_allclose(back, data, atol=1e-3 * (1 + np.abs(data).max()))


def test_constant_dims_map_to_zero_with_unit_scale():
    data = np.stack([np.linspace(-2, 4, 11), np.full(11, 3.5), np.zeros(11)], axis=1).astype(np.float32)
    norm = MinMaxNormalizer.fit(data)
    np.testing.assert_array_equal(norm.scale[1:], [1.0, 1.0])
    y = norm.normalize(data)
    np.testing.assert_allclose(y[:, 1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(y[[0, -1], 0], [-1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(norm.unnormalize(y), data, atol=1e-5)


def test_numpy_torch_and_module_agree():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(50, 5)).astype(np.float32) * [1, 10, 0.1, 5, 2]
    norm = MinMaxNormalizer.fit(data)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    y_np = norm.normalize(x)
    y_t = norm.normalize(torch.from_numpy(x))
    y_m = NormalizerModule(norm).normalize(torch.from_numpy(x))
    np.testing.assert_allclose(y_t.numpy(), y_np, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_m.numpy(), y_np, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(NormalizerModule(norm).unnormalize(y_m).numpy(), x, atol=1e-5)


def test_serialization_is_plain_json_and_exact():
    rng = np.random.default_rng(1)
    pn = PolicyNormalizer.fit(rng.normal(size=(20, 42)), rng.normal(size=(20, 7)), rng.normal(size=(20, 12)))
    text = json.dumps(pn.to_dict())  # plain JSON, no pickle
    back = PolicyNormalizer.from_dict(json.loads(text))
    for name in PolicyNormalizer.FIELDS:
        a, b = getattr(pn, name), getattr(back, name)
        np.testing.assert_array_equal(a.scale, b.scale)
        np.testing.assert_array_equal(a.offset, b.offset)
    module = NormalizerModule(pn.action)
    assert set(module.state_dict()) == {"scale", "offset", "input_min", "input_max"}
    np.testing.assert_array_equal(module.to_normalizer().scale, pn.action.scale)
