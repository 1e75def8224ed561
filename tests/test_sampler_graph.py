"""The exported sampler graph (export.py), with its baked time table: the memory of every denoising step is joined once per
sample, activations stay (B, T, W), and the graph computes what the torch policy and the graph of earlier
exports (the shipped file) compute, to the export's 1e-4."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from diffuseloco_policy.config import load_config
from diffuseloco_policy.model_file import (INPUT_NOISE, PRECISION_INT8, copy_model, default_model_path,
                                           graph_precision, read_onnx_info, warm_path)
from diffuseloco_policy.runtime import OnnxRuntime
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_learning.quantize import check_inputs, compare_actions
from diffuseloco_learning.torch_runtime import TorchRuntime
from diffuseloco_learning.training.export import main as export_main

TOLERANCE = 1e-4   # export.verify_graph's


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """A random small-preset policy (4 layers) and its full and 2-step warm-start graphs."""
    config = load_config()
    torch.manual_seed(3)
    policy = build_policy(config, ModelSpec(denoiser=DenoiserConfig.preset("small"))).eval()
    path = export_onnx(policy, config, tmp_path_factory.mktemp("graph") / "small.onnx", warm_steps=(2,))[0]
    return policy, path


def test_the_step_memory_is_joined_once_per_sample(small_export):
    """One node reads the baked time table (the join for all steps and layers), instead of two additions per
    layer and step; the per-step path has no reshapes around attention, and each causal self-attention is one
    fused Attention node (its projection included)."""
    policy, path = small_export
    graph = onnx.load(str(path)).graph
    readers = [n for n in graph.node if "time.table" in n.input]
    assert len(readers) == 1 and readers[0].op_type == "Add"
    ops = Counter(n.op_type for n in graph.node)
    steps, layers = policy.num_steps, policy.spec.denoiser.layers
    assert ops["MultiHeadAttention"] == layers * steps and ops["Attention"] == layers * steps
    assert ops["Split"] < steps and not ops["Gemm"]   # splits once per sample only
    assert ops["Reshape"] < layers * steps   # was 6.5 per layer and step with (B * T, W) rows


@pytest.mark.parametrize("warm", [False, True])
def test_the_graph_computes_what_torch_computes(small_export, warm):
    policy, path = small_export
    config = load_config()
    onnx_rt = OnnxRuntime(path, config, warm_start_steps=2)
    torch_rt = TorchRuntime(policy, onnx_rt.info, warm_start_steps=2)
    d = onnx_rt.dims
    rng = np.random.default_rng(4)
    obs, goal = rng.standard_normal((3, d.history, d.obs_dim)), rng.standard_normal((3, d.history, d.goal_dim))
    noise = rng.standard_normal(onnx_rt.noise_shape(3, False)).astype(np.float32)
    for rt in (onnx_rt, torch_rt):
        rt.predict(obs, goal, noise, warm=False)
    if warm:
        noise = rng.standard_normal(onnx_rt.noise_shape(3, True)).astype(np.float32)
    a, b = (rt.predict(obs, goal, noise, warm=warm) for rt in (onnx_rt, torch_rt))
    assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(a).max() > 0.1   # not a trivially equal pair


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory):
    return copy_model(default_model_path(), tmp_path_factory.mktemp("shipped") / "shipped.onnx")[0]


def test_the_shipped_file_regraphed_computes_what_the_file_computes(shipped_copy, tmp_path, capsys):
    """The shipped file keeps its graph (Gemm rows, one time constant per step and layer) and keeps loading;
    `export --from-model --regraph` writes its weights through today's graph, with the same actions (full sample
    and warm start, random sampler noise)."""
    old = onnx.load(str(shipped_copy)).graph
    assert any(i.name.startswith("time.k_") for i in old.initializer)
    out = tmp_path / "regraphed.onnx"
    export_main(["--from-model", str(shipped_copy), "--out", str(out), "--regraph"])
    assert capsys.readouterr().out.split() == [str(out), str(warm_path(out, 2))]
    assert any(i.name == "time.table" for i in onnx.load(str(out)).graph.initializer)
    info = read_onnx_info(out)
    assert info.config == read_onnx_info(shipped_copy).config
    for before, after in ((shipped_copy, out), (warm_path(shipped_copy, 2), warm_path(out, 2))):
        inputs = check_inputs(info, read_onnx_info(before).graph["steps"], batch=32, seed=5)
        inputs[INPUT_NOISE] = np.random.default_rng(6).standard_normal(inputs[INPUT_NOISE].shape).astype(np.float32)
        assert compare_actions(before, after, inputs)["max"] <= TOLERANCE


def test_regraph_to_int8_and_of_an_int8_file(shipped_copy, tmp_path):
    out = tmp_path / "regraphed_int8.onnx"
    export_main(["--from-model", str(shipped_copy), "--out", str(out), "--regraph", "--precision", "int8"])
    assert graph_precision(read_onnx_info(out).graph) == PRECISION_INT8
    assert any(i.name == "time.table" for i in onnx.load(str(out)).graph.initializer)
    with pytest.raises(SystemExit):   # the weights of an int8 file are not the model's any more
        export_main(["--from-model", str(out), "--out", str(tmp_path / "again.onnx"), "--regraph"])
