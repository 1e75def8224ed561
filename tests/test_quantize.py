"""Int8 model files (diffuseloco_learning.quantize, export --precision int8): the shipped model's actions stay
within quantization error of fp32, the file round-trips through the export command and the runtime, and a file
that would mix precisions or quantize twice is refused."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy.model_file import (PRECISION_FP32, PRECISION_INT8, ModelMismatchError, copy_model,
                                           default_model_path, graph_precision, read_onnx_info, warm_path)
from diffuseloco_policy.runtime import OnnxRuntime
from diffuseloco_learning.quantize import (MEAN_ACTION_TOLERANCE, check_inputs, compare_actions, gemm_to_matmul,
                                           inline_shared_weights, quantize_graph, write_int8_model)
from diffuseloco_learning.training.export import main as export_main

from tiny_model import export_standing_model


@pytest.fixture(scope="module")
def shipped_int8(tmp_path_factory):
    """The shipped model and its warm-start graph, and the int8 file written from them."""
    tmp = tmp_path_factory.mktemp("int8")
    source = copy_model(default_model_path(), tmp / "shipped.onnx")[0]
    return source, write_int8_model(source, tmp / "shipped_int8.onnx")


def test_gemm_rewrite_computes_the_same_graph_in_fp32():
    """The Gemm -> MatMul + Add rewrite alone is exact (up to float rounding): only the int8 step changes values.
    The shipped file's graph multiplies (B * T, W) rows with Gemm; graphs with a baked time table use MatMul."""
    source = default_model_path()
    model = onnx.load(str(source))
    gemms = sum(n.op_type == "Gemm" for n in model.graph.node)
    rewritten = gemm_to_matmul(model)
    assert gemms > 0 and not any(n.op_type == "Gemm" for n in rewritten.graph.node)
    info = read_onnx_info(source)
    error = compare_actions(source, rewritten.SerializeToString(), check_inputs(info, info.graph["steps"]))
    assert error["max"] < 1e-5


def _constant_weight_matmuls(model) -> int:
    constants = {init.name for init in model.graph.initializer}
    return sum(n.op_type == "MatMul" and n.input[1] in constants for n in model.graph.node)


def test_every_weight_of_a_new_export_is_quantized(tmp_path):
    """The exporter hands each denoising step an Identity of a shared weight; after inlining them every weight
    product is a MatMul of a constant (which the quantizer needs), and none is left in fp32."""
    source = export_standing_model(tmp_path / "m.onnx", preset="tiny")
    model = onnx.load(str(source))
    before = _constant_weight_matmuls(model)
    inlined = inline_shared_weights(onnx.load(str(source)))
    assert not any(n.op_type == "Identity" and n.input[0] in {i.name for i in inlined.graph.initializer}
                   for n in inlined.graph.node)
    assert _constant_weight_matmuls(inlined) > before
    info = read_onnx_info(source)
    assert compare_actions(source, inlined.SerializeToString(), check_inputs(info, info.graph["steps"]))["max"] == 0.0
    quantized = quantize_graph(onnx.load(str(source)))
    assert _constant_weight_matmuls(quantized) == 0
    ops = [n.op_type for n in quantized.graph.node]
    assert ops.count("MatMulInteger") == _constant_weight_matmuls(inlined)
    assert ops.count("QAttention") == [n.op_type for n in model.graph.node].count("Attention") > 0


def test_the_shipped_models_int8_actions_stay_within_tolerance_of_fp32(shipped_int8):
    """Full sampler and warm start, on inputs within the data's ranges and the node's zero noise."""
    source, written = shipped_int8
    for fp32, int8 in zip([source, warm_path(source, 2)], written):
        info = read_onnx_info(fp32)
        error = compare_actions(fp32, int8, check_inputs(info, info.graph["steps"]))
        assert 0.0 < error["mean"] <= MEAN_ACTION_TOLERANCE   # quantized (not a copy), and close
        assert error["max"] < 0.5   # action units (0.25 rad): no input is thrown far off


def test_the_int8_file_runs_in_the_runtime_like_the_fp32_one(shipped_int8):
    source, (full, warm) = shipped_int8
    assert warm == warm_path(full, 2) and warm.exists()
    config = load_config()
    runtimes = [OnnxRuntime(path, config, warm_start_steps=2, noise_scale=0.0) for path in (source, full)]
    assert [rt.precision for rt in runtimes] == [PRECISION_FP32, PRECISION_INT8]
    assert runtimes[0].info.config == runtimes[1].info.config
    d = runtimes[0].dims
    rng = np.random.default_rng(1)
    obs, goal = rng.standard_normal((d.history, d.obs_dim)) * 0.1, rng.standard_normal((d.history, d.goal_dim)) * 0.1
    for warm_start in (False, True):
        a, b = (rt.predict(obs, goal, warm=warm_start) for rt in runtimes)
        assert a.shape == b.shape and np.isfinite(b).all()
        assert 0.0 < np.abs(a - b).mean() < MEAN_ACTION_TOLERANCE


def test_export_from_model_with_precision_int8_round_trips(tmp_path):
    source = export_standing_model(tmp_path / "a.onnx", preset="tiny")
    out = tmp_path / "a_int8.onnx"
    export_main(["--from-model", str(source), "--out", str(out), "--precision", "int8",
                 "--envelope", "trot.vx=0:0.4"])
    info, fp32 = read_onnx_info(out), read_onnx_info(source)
    assert graph_precision(info.graph) == PRECISION_INT8
    assert graph_precision(read_onnx_info(warm_path(out, 2)).graph) == PRECISION_INT8
    assert info.spec == fp32.spec and info.normalizer.obs.scale.tolist() == fp32.normalizer.obs.scale.tolist()
    assert next(s for s in info.config.skills if s.name == "trot").vx == (0.0, 0.4)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Gemm" not in ops and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}


def test_an_int8_file_is_not_quantized_again_and_mixed_graphs_are_refused(shipped_int8, tmp_path):
    source, (full, _) = shipped_int8
    with pytest.raises(ModelMismatchError, match="already int8"):
        write_int8_model(full, tmp_path / "twice.onnx")
    mixed = tmp_path / "mixed.onnx"
    shutil.copy(full, mixed)
    shutil.copy(warm_path(source, 2), warm_path(mixed, 2))   # an fp32 warm-start graph beside an int8 full one
    with pytest.raises(ModelMismatchError, match="warm-start graph is fp32"):
        OnnxRuntime(mixed, load_config(), warm_start_steps=2)
