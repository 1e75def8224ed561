"""Int8 model files: an exported sampler's weight matrices quantized to int8 with ONNX Runtime's dynamic quantizer.

Why: at batch 1 the denoiser's matrix products (MatMul, and the query/key/value product inside each causal
self-attention's fused Attention kernel, which becomes QAttention) have 16 rows (the action tokens), and in fp32 they are about
two thirds of a paper-size sample's time (docs/research/performance.md). Int8 weights, per output channel, with
the activations quantized on the fly per call, let ONNX Runtime run them as integer dot products (AVX-512 VNNI
or AMX on x86, the dot-product instructions on ARM) and move a quarter of the bytes. Everything else (layer norms,
attention, the scheduler arithmetic, the normalizers) stays fp32. The result is an ordinary ONNX file of standard
and com.microsoft operators that the CPU build of onnxruntime runs; loading it needs neither torch nor this
package.

Files: `write_int8_model(source, out)` quantizes a full-sampler graph and every warm-start graph beside it
(name.warm<k>.onnx), keeps their metadata and adds "precision": "int8" to each graph entry, so the runtime and
the diagnostics can tell which graph runs. The actions differ from fp32 by quantization error, not by 1e-4:
`compare_actions` measures it against the source file on given inputs, and the export refuses a file whose
actions move further than `MEAN_ACTION_TOLERANCE` on average on its check inputs (a broken rewrite moves them by
O(1)); the closed-loop check is the evaluation harness (docs/research/performance.md).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np

from diffuseloco_policy.model_file import (INPUT_GOAL, INPUT_NOISE, INPUT_OBS, INPUT_PREV, OUTPUT_ACTIONS, PREFIX,
                                           PRECISION_FP32, PRECISION_INT8, ModelInfo, ModelMismatchError,
                                           graph_precision, load_onnx, warm_graphs, warm_path)

# Largest mean |int8 - fp32| in action units (0.25 rad each) the export accepts on check_inputs. Measured: 0.015
# for the shipped model, 0.04 for random paper-size weights; on histories recorded in closed loop the shipped
# model's executed actions differ by 0.006 on average (docs/research/performance.md).
MEAN_ACTION_TOLERANCE = 0.05


def inline_shared_weights(model: Any) -> Any:
    """Let every reader of an Identity of a constant read the constant itself, in place, and drop the Identity.

    Why: when a Linear on (B, T, W) activations is used at every step of the unrolled sampler, the exporter
    writes its weight once and hands each step an Identity of it, and ONNX Runtime's dynamic quantizer only
    quantizes a MatMul whose weight is a constant."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    outputs = {out.name for out in graph.output}
    alias = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Identity" and node.input[0] in constants and node.output[0] not in outputs}
    kept = [node for node in graph.node if node.output[0] not in alias or node.op_type != "Identity"]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)
    return model


def gemm_to_matmul(model: Any) -> Any:
    """Rewrite each Gemm with a constant weight as MatMul (+ Add of its bias), in place.

    Why: the exporter writes nn.Linear on (B * T, W) rows as Gemm, and ONNX Runtime's dynamic quantizer only
    quantizes MatMul; ONNX Runtime fuses the Add back into the quantized product (DynamicQuantizeMatMul's bias).
    A weight the unrolled sampler uses at every step gets one transposed copy, shared like the original."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    transposed: dict[str, str] = {}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or node.input[1] not in weights or not plain:
            nodes.append(node)
            continue
        name = node.input[1]
        if attrs.get("transB", 0) and name not in transposed:
            transposed[name] = name + "_t"
            w = numpy_helper.to_array(weights[name]).T
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), transposed[name]))
        product = node.output[0] + "_product" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], transposed.get(name, name)], [product],
                                      name=node.name + "_matmul"))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def quantize_graph(model: Any) -> Any:
    """An fp32 sampler graph -> the same graph with int8 weights (per output channel) in its matrix products."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    metadata = [(p.key, p.value) for p in model.metadata_props]
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(gemm_to_matmul(inline_shared_weights(model)), str(source))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process does not apply to these graphs
        try:
            quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Attention"], extra_options={"MatMulConstBOnly": True})
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(target))
    del quantized.metadata_props[:]
    for key, value in metadata:
        entry = quantized.metadata_props.add()
        entry.key = key
        entry.value = _with_precision(value) if key == PREFIX + "graph" else value
    return quantized


def _with_precision(graph_json: str) -> str:
    return json.dumps({**json.loads(graph_json), "precision": PRECISION_INT8})


def write_int8_model(source: Union[str, Path], out: Union[str, Path], check: bool = True) -> list[Path]:
    """Quantize `source` (a full-sampler model file) and its warm-start graphs to `out` and out.warm<k>.onnx.

    With `check`, every graph is run on check_inputs beside its source and refused (nothing written) if its
    actions differ by more than MEAN_ACTION_TOLERANCE: a model whose weights do not survive int8 stays fp32."""
    import onnx

    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ModelMismatchError(f"{source}: write the int8 file under another name")
    model, info = load_onnx(source)
    if info.spec.kind != "diffusion":
        raise ModelMismatchError(f"{source}: int8 files are written for diffusion samplers, not {info.spec.kind}")
    if graph_precision(info.graph) != PRECISION_FP32:
        raise ModelMismatchError(f"{source}: already {graph_precision(info.graph)}; quantize the fp32 file")
    pairs, steps = [(source, model, out)], {source: info.graph["steps"]}
    for path in warm_graphs(source):
        warm_model, warm = load_onnx(path)
        pairs.append((path, warm_model, warm_path(out, warm.graph["steps"])))
        steps[path] = warm.graph["steps"]
    quantized = [(src, quantize_graph(m), target) for src, m, target in pairs]
    if check:
        for src, q, _ in quantized:
            error = compare_actions(src, q.SerializeToString(), check_inputs(info, steps[src]))["mean"]
            if not error <= MEAN_ACTION_TOLERANCE:
                raise ModelMismatchError(f"{src}: int8 actions differ from fp32 by {error:.3f} on average "
                                         f"(> {MEAN_ACTION_TOLERANCE}); keep the fp32 file")
    out.parent.mkdir(parents=True, exist_ok=True)
    for _, q, target in quantized:
        onnx.save(q, str(target))
    return [target for _, _, target in quantized]


def compare_actions(reference: Union[str, Path, bytes], candidate: Union[str, Path, bytes],
                    inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Max and mean |candidate - reference| of the unnormalized actions, in action units, on the same inputs
    (check_inputs, or histories recorded in closed loop for a real measure)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(m if isinstance(m, bytes) else str(m), options,
                                     providers=["CPUExecutionProvider"]) for m in (reference, candidate)]
    a, b = (s.run([OUTPUT_ACTIONS], {i.name: inputs[i.name] for i in s.get_inputs()})[0] for s in sessions)
    diff = np.abs(b - a)
    return {"max": float(diff.max()), "mean": float(diff.mean())}


def check_inputs(info: ModelInfo, steps: int, batch: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs like the deployed sampler's: histories drawn uniformly within the ranges the normalizer was fitted
    on, a clean chunk in [-1, 1], and zero noise (the node samples at temperature 0). Standard-normal raw inputs
    would lie far outside the training data, where a diffusion chain amplifies any difference."""
    rng = np.random.default_rng(seed)
    d = info.dims

    def within(norm: Any, dim: int) -> np.ndarray:
        u = rng.uniform(-1.0, 1.0, (batch, d.history, dim)).astype(np.float32)
        return norm.unnormalize(u).astype(np.float32)

    return {INPUT_OBS: within(info.normalizer.obs, d.obs_dim), INPUT_GOAL: within(info.normalizer.goal, d.goal_dim),
            INPUT_PREV: rng.uniform(-1.0, 1.0, (batch, d.horizon, d.action_dim)).astype(np.float32),
            INPUT_NOISE: np.zeros((batch, steps + 1, d.horizon, d.action_dim), np.float32)}
