"""Export a trained checkpoint's EMA model to ONNX (full sampler + warm-start graphs), verified against torch.

    python -m diffuseloco_learning.training.export --checkpoint out/train_small/ckpt_latest --out models/policy.onnx
    python -m diffuseloco_learning.training.export --from-model models/a.onnx --out models/b.onnx --envelope ...
    python -m diffuseloco_learning.training.export --from-model models/a.onnx --out models/b.onnx --gain-scale trot=0.8
    python -m diffuseloco_learning.training.export --from-model models/a.onnx --out models/a_int8.onnx --precision int8
    python -m diffuseloco_learning.training.export --from-model models/a.onnx --out models/a_new.onnx --regraph

Writes models/policy.onnx and models/policy.warm<k>.onnx for each --warm-steps entry (default: the model's
warm_start_steps), each checked once in ONNX Runtime against the torch model to 1e-4 by export_onnx.
--weights model exports the raw (non-EMA) weights instead, for debugging.

--envelope SKILL.FIELD=LOW:HIGH (repeatable; FIELD is vx, vy or yaw_rate) narrows a skill's command range in the
file below what the model was trained on. The policy node clamps commands to the file's ranges (and logs the
narrowing at start), so a model that is only trusted inside part of its training ranges ships with that
envelope enforced, not merely documented. Widening a range is refused: the model has never seen those commands.

--gain-scale SKILL=SCALE (repeatable) sets the multiple of robot.kp the node drives that skill's PD targets with
(SkillConfig.kp_scale, gains.py): the gains the model was validated with travel in the file, like its envelope.
Scales outside [0.7, 1.3] (config.MIN_KP_SCALE, MAX_KP_SCALE) are refused.

--precision int8 writes the graphs with int8 weights in their matrix products (quantize.py): about 2x faster for the
paper-size model on a CPU, actions within quantization error of fp32 (docs/research/performance.md). The file is
checked against the fp32 graphs it comes from and refused if their actions differ by more than the tolerance.

--from-model changes the envelope, the gain scales or the precision of a file that is already exported (and of its warm-start
graphs) without its checkpoint: the graphs are copied untouched and only the embedded stack config changes, so
the new file computes exactly what the old one did. Its ranges can only shrink against the source file's, which
may already carry an envelope.

--regraph (with --from-model) writes the file's weights through today's sampler graph instead of copying its graphs:
the exporter now joins every step's cond and time keys/values once per sample and keeps activations
(B, T, W), which runs the same math in fewer graph nodes (docs/research/performance.md). The weights are recovered
from the file (training/from_onnx.py, checked against every graph of it), exported and checked against torch, and
the new graphs are compared with the source's on check inputs; any difference above REGRAPH_TOLERANCE refuses the
file. --envelope, --gain-scale and --precision int8 apply as without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from diffuseloco_policy.config import MAX_KP_SCALE, MIN_KP_SCALE, ConfigError, StackConfig
from ..export import export_onnx
from ..quantize import write_int8_model
from diffuseloco_policy.model_file import copy_model, warm_graphs, warm_path
from diffuseloco_policy.gains import with_kp_scales
from diffuseloco_policy.model_file import (INPUT_NOISE, PRECISION_FP32, PRECISION_INT8, PREFIX, ModelMismatchError,
                                          graph_precision, load_onnx)
from diffuseloco_learning.model_checkpoint import load_checkpoint
from .checkpoint import ema_weights_path

RANGE_FIELDS = ("vx", "vy", "yaw_rate")
# Largest |new - source| action difference --regraph accepts: the recovery and the export each hold their graphs
# to the exporter's 1e-4 against torch, so two graphs of the same weights may differ by the sum.
REGRAPH_TOLERANCE = 2e-4


def parse_envelope(entries: Sequence[str]) -> dict[tuple[str, str], tuple[float, float]]:
    """'trot.vx=-0.25:0.5' -> {('trot', 'vx'): (-0.25, 0.5)}."""
    limits = {}
    for entry in entries:
        try:
            key, bounds = entry.split("=")
            skill, field = key.split(".")
            low, high = (float(b) for b in bounds.split(":"))
        except ValueError:
            raise ConfigError(f"envelope entry {entry!r}: expected SKILL.FIELD=LOW:HIGH, e.g. trot.vx=-0.25:0.5")
        if field not in RANGE_FIELDS:
            raise ConfigError(f"envelope entry {entry!r}: field must be one of {RANGE_FIELDS}")
        if low > high:
            raise ConfigError(f"envelope entry {entry!r}: LOW is above HIGH")
        limits[(skill, field)] = (low, high)
    return limits


def narrow_envelope(config: StackConfig, limits: Mapping[tuple[str, str], tuple[float, float]]) -> StackConfig:
    """The config with the given command ranges; each must lie inside the trained one (unknown skills and wider
    ranges are a ConfigError naming the entry)."""
    skills = []
    for skill in config.skills:
        changes = {}
        for field in RANGE_FIELDS:
            if (skill.name, field) not in limits:
                continue
            (low, high), (trained_low, trained_high) = limits[(skill.name, field)], getattr(skill, field)
            if low < trained_low or high > trained_high:
                raise ConfigError(f"envelope {skill.name}.{field}=[{low}, {high}] is wider than the model's range "
                                  f"[{trained_low}, {trained_high}]: it was never trained or checked on those "
                                  "commands")
            changes[field] = (low, high)
        skills.append(dataclasses.replace(skill, **changes))
    unknown = {name for name, _ in limits} - {s.name for s in config.skills}
    if unknown:
        raise ConfigError(f"envelope names unknown skills {sorted(unknown)}; the model's: "
                          f"{[s.name for s in config.skills]}")
    return dataclasses.replace(config, skills=tuple(skills))


def parse_gain_scales(entries: Sequence[str]) -> dict[str, float]:
    """'trot=0.8' -> {'trot': 0.8}."""
    scales = {}
    for entry in entries:
        try:
            skill, value = entry.split("=")
            scales[skill] = float(value)
        except ValueError:
            raise ConfigError(f"gain scale entry {entry!r}: expected SKILL=SCALE, e.g. trot=0.8")
    return scales


def deployment_config(config: StackConfig, limits: Mapping[tuple[str, str], tuple[float, float]],
                      scales: Mapping[str, float]) -> StackConfig:
    """The model's config with the deployment choices of the command line: a narrower envelope, per-skill gains."""
    return with_kp_scales(narrow_envelope(config, limits), scales)


def export_checkpoint(checkpoint: Union[str, Path], out: Union[str, Path], warm_steps: Optional[Sequence[int]] = None,
                      weights: str = "ema", envelope: Sequence[str] = (), gain_scales: Sequence[str] = (),
                      precision: str = PRECISION_FP32) -> list[Path]:
    limits, scales = parse_envelope(envelope), parse_gain_scales(gain_scales)  # malformed: fails before the load
    policy, info = load_checkpoint(ema_weights_path(checkpoint, weights))
    if warm_steps is None:
        warm_steps = (info.spec.warm_start_steps,) if info.spec.kind == "diffusion" else ()
    config = deployment_config(info.config, limits, scales)
    if precision == PRECISION_FP32:
        return export_onnx(policy, config, out, warm_steps=tuple(warm_steps), verify=True)
    with tempfile.TemporaryDirectory() as tmp:  # the fp32 graphs, verified against torch, are the int8 file's source
        fp32 = export_onnx(policy, config, Path(tmp) / Path(out).name, warm_steps=tuple(warm_steps), verify=True)
        return write_int8_model(fp32[0], out)


def requantize_model_file(source: Union[str, Path], out: Union[str, Path], envelope: Sequence[str] = (),
                          gain_scales: Sequence[str] = ()) -> list[Path]:
    """An fp32 model file (and its warm-start graphs) as an int8 file at `out`, with the deployment changes of
    redeploy_model_file applied first when any are given."""
    if not envelope and not gain_scales:
        return write_int8_model(source, out)
    with tempfile.TemporaryDirectory() as tmp:
        narrowed = redeploy_model_file(source, Path(tmp) / Path(out).name, envelope, gain_scales)
        return write_int8_model(narrowed[0], out)


def regraph_model_file(source: Union[str, Path], out: Union[str, Path], envelope: Sequence[str] = (),
                       gain_scales: Sequence[str] = (), precision: str = PRECISION_FP32) -> list[Path]:
    """The weights of an exported file, written through today's exporter (same warm-start graphs), with the
    deployment changes and the precision asked; refused if the new graphs compute other actions than the file's."""
    from ..quantize import check_inputs, compare_actions
    from .from_onnx import recover_policy

    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ConfigError(f"--from-model {source}: write the new file under another name (--out)")
    limits, scales = parse_envelope(envelope), parse_gain_scales(gain_scales)
    _, info = load_onnx(source)
    if graph_precision(info.graph) != PRECISION_FP32:
        raise ModelMismatchError(f"{source}: --regraph reads the weights of an fp32 file, not "
                                 f"{graph_precision(info.graph)}")
    policy, info = recover_policy(source)   # checked against every graph of the file
    steps = tuple(load_onnx(path)[1].graph["steps"] for path in warm_graphs(source))
    config = deployment_config(info.config, limits, scales)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(policy, config, Path(tmp) / out.name, warm_steps=steps, verify=True)
        for old, new in zip([source] + [warm_path(source, k) for k in steps], fp32):
            inputs = check_inputs(info, load_onnx(old)[1].graph.get("steps", 0))
            inputs[INPUT_NOISE] = np.random.default_rng(0).standard_normal(inputs[INPUT_NOISE].shape, np.float32)
            error = compare_actions(old, new, inputs)["max"]
            if not error <= REGRAPH_TOLERANCE:
                raise ModelMismatchError(f"{old}: the new graph's actions differ by {error:.2e} "
                                         f"(> {REGRAPH_TOLERANCE:.0e}); keep the file's graphs")
        if precision == PRECISION_INT8:
            return write_int8_model(fp32[0], out)
        return copy_model(fp32[0], out)


def redeploy_model_file(source: Union[str, Path], out: Union[str, Path], envelope: Sequence[str] = (),
                        gain_scales: Sequence[str] = ()) -> list[Path]:
    """Copy an exported model file and its warm-start graphs to `out` with a narrower envelope or new gain scales
    in their metadata.

    Why not re-export: the checkpoint of a shipped model is often gone, and the graphs need no change; copying them
    keeps the weights byte for byte, which the card and the evaluations of the source file then still describe."""
    import onnx

    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ConfigError(f"--from-model {source}: write the new file under another name (--out)")
    if not envelope and not gain_scales:
        raise ConfigError("--from-model without --envelope or --gain-scale would only copy the file")
    limits, scales = parse_envelope(envelope), parse_gain_scales(gain_scales)
    model, info = load_onnx(source)
    config_json = json.dumps(deployment_config(info.config, limits, scales).to_dict())
    graphs = [(model, out)]
    for path in warm_graphs(source):   # every graph is read and checked before anything is written
        warm_model, warm = load_onnx(path)
        if warm.config != info.config or warm.graph.get("sampler") != "warm":
            raise ConfigError(f"{path}: not a warm-start graph of {source}; it does not belong to it")
        graphs.append((warm_model, warm_path(out, warm.graph["steps"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    for graph, target in graphs:
        for entry in graph.metadata_props:
            if entry.key == PREFIX + "stack_config":
                entry.value = config_json
        onnx.save(graph, str(target))
    return [target for _, target in graphs]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.training.export",
                                     description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint directory (or a .safetensors model file)")
    source.add_argument("--from-model", type=Path, metavar="MODEL.onnx",
                        help="an exported file (warm graphs beside it) to copy with a narrower --envelope or "
                             "new --gain-scale values")
    parser.add_argument("--out", required=True, type=Path, help="full-sampler graph path, e.g. models/policy.onnx")
    parser.add_argument("--warm-steps", type=int, nargs="*", default=None,
                        help="warm-start graphs to write (default: the model's warm_start_steps)")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema")
    parser.add_argument("--regraph", action="store_true",
                        help="with --from-model: write the file's weights through today's sampler graph (checked "
                             "against the file) instead of copying its graphs")
    parser.add_argument("--precision", choices=(PRECISION_FP32, PRECISION_INT8), default=PRECISION_FP32,
                        help="int8: int8 weights in the matrix products, checked against fp32 (default fp32)")
    parser.add_argument("--envelope", action="append", default=[], metavar="SKILL.FIELD=LOW:HIGH",
                        help="narrow a skill's command range in the file (repeatable), e.g. trot.vx=-0.25:0.5")
    parser.add_argument("--gain-scale", action="append", default=[], metavar="SKILL=SCALE",
                        help=f"drive a skill with SCALE x robot.kp (repeatable; {MIN_KP_SCALE}-{MAX_KP_SCALE}), "
                             "e.g. trot=0.8")
    args = parser.parse_args(argv)
    if args.from_model and (args.warm_steps is not None or args.weights != "ema"):
        parser.error("--from-model copies the file's graphs as they are: --warm-steps and --weights do not apply")
    if args.regraph and not args.from_model:
        parser.error("--regraph applies to --from-model; a --checkpoint export always writes today's graph")
    try:
        if args.from_model and args.regraph:
            written = regraph_model_file(args.from_model, args.out, args.envelope, args.gain_scale, args.precision)
        elif args.from_model and args.precision == PRECISION_INT8:
            written = requantize_model_file(args.from_model, args.out, args.envelope, args.gain_scale)
        elif args.from_model:
            written = redeploy_model_file(args.from_model, args.out, args.envelope, args.gain_scale)
        else:
            written = export_checkpoint(args.checkpoint, args.out, args.warm_steps, args.weights, args.envelope,
                                        args.gain_scale, args.precision)
    except (ConfigError, ModelMismatchError) as error:
        parser.error(str(error))   # a refusal, not a crash: exit 2 with the reason, nothing written
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
