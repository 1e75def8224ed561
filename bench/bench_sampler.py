"""Sampler latency, batch 1, one run: the reference-style loop versus our torch path, ONNX graphs and warm starts.

Not a test. Usage: .venv/bin/python bench/bench_sampler.py [--runs 300] [--models paper shipped small] [--providers cuda,cpu]
[--clock auto|wall|cpu]

Models: the paper-size preset (random weights) and the shipped model file (its weights recovered from the file).
ONNX paths: the fp32 graphs as exported, and the int8 file written from them (quantize.py; also at the other
thread count); for the shipped model also its file as shipped, whose graph predates the exporter's current one
(per-step joins of the time token's keys/values, (B * T, W) rows). Speed-ups are against the reference-style loop
of the same model in the same run.

Clock: 'wall' is the latency of a call; 'cpu' the CPU time of the calling thread, with every path on one thread
(ONNX Runtime and torch compute in the caller then), which stays a per-core measure when other jobs share the
cores and wall time mostly measures the scheduler; 'auto' (default) takes 'cpu' when the load average says
another job is running, and the header names the clock.

"Reference-style" reproduces how the original DiffuseLoco code samples: torch eager, a transformer built from
nn.TransformerDecoder (TransformerForDiffusion layout, same sizes as ours), and a Python loop over diffusers'
DDPMScheduler.step that recomputes the whole network (time token, cond encoder, cross-attention memory) every
step. Threads: the ONNX default per model size (2 for width 256, 1 for smaller, performance.md) and the same
count for every torch path of that model. --providers runs the ONNX graphs on ONNX Runtime's execution providers
(providers.py; default cpu); the header names those in use, and a provider this build lacks is skipped with a
printed warning (or refused with --providers-required).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import onnx
import torch
from torch import nn

from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, PolicyDims, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_learning.quantize import write_int8_model
from diffuseloco_learning.training.from_onnx import recover_policy
from diffuseloco_policy.model_file import default_model_path, read_onnx_info
from diffuseloco_policy.providers import ProviderChoice, parse_providers
from diffuseloco_policy.runtime import OnnxRuntime, default_threads
from diffuseloco_learning.torch_runtime import TorchRuntime

REFERENCE = "reference-style loop (torch eager + diffusers)"


class ReferenceTransformer(nn.Module):
    """The original TransformerForDiffusion structure (obs-as-cond, causal masks, norm_first decoder)."""

    def __init__(self, cfg: DenoiserConfig, d: PolicyDims) -> None:
        super().__init__()
        w, t_cond = cfg.width, 1 + 2 * d.history
        self.width = w
        self.input_emb = nn.Linear(d.action_dim, w)
        self.pos_emb = nn.Parameter(torch.zeros(1, d.horizon, w))
        self.obs_emb = nn.Linear(d.obs_dim, w)
        self.goal_emb = nn.Linear(d.goal_dim, w)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, t_cond, w))
        self.encoder = nn.Sequential(nn.Linear(w, 4 * w), nn.Mish(), nn.Linear(4 * w, w))
        layer = nn.TransformerDecoderLayer(w, cfg.heads, 4 * w, cfg.dropout_attn, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.layers)
        t = torch.arange(d.horizon)[:, None]
        self.register_buffer("mask", torch.zeros(d.horizon, d.horizon).masked_fill(t < t.T, float("-inf")))
        s = torch.arange(t_cond)[None, :]
        obs_slot = torch.where(s > d.history, s - d.history, s)
        self.register_buffer("memory_mask", torch.zeros(d.horizon, t_cond).masked_fill(t < obs_slot - 1, float("-inf")))
        self.ln_f = nn.LayerNorm(w)
        self.head = nn.Linear(w, d.action_dim)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        freqs = torch.exp(torch.arange(half) * (-math.log(10000.0) / (half - 1)))
        args = timestep.float().reshape(-1)[:, None] * freqs[None]
        time_emb = torch.cat([args.sin(), args.cos()], -1)[:, None].expand(sample.shape[0], -1, -1)
        cond = torch.cat([time_emb, self.obs_emb(obs), self.goal_emb(goal)], dim=1) + self.cond_pos_emb
        memory = self.encoder(cond)
        x = self.input_emb(sample) + self.pos_emb
        x = self.decoder(x, memory, tgt_mask=self.mask, memory_mask=self.memory_mask)
        return self.head(self.ln_f(x))


def reference_loop(cfg: DenoiserConfig, d: PolicyDims) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """predict_action as in the original code: normalize, loop diffusers DDPMScheduler.step, unnormalize."""
    from diffusers import DDPMScheduler

    model = ReferenceTransformer(cfg, d).eval()
    sched = DDPMScheduler(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          prediction_type="epsilon", variance_type="fixed_small")
    g = torch.Generator().manual_seed(0)
    scale, offset = torch.full((d.action_dim,), 2.0), torch.zeros(d.action_dim)

    @torch.no_grad()
    def predict(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        o = torch.from_numpy(obs)[None] * 0.5
        gl = torch.from_numpy(goal)[None] * 0.5
        traj = torch.randn((1, d.horizon, d.action_dim), generator=g)
        sched.set_timesteps(10)
        for t in sched.timesteps:
            traj = sched.step(model(traj, t, o, gl), t, traj, generator=g).prev_sample
        return ((traj - offset) / scale).numpy()

    return predict


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
CLOCK = CLOCKS["wall"]  # set by main


def choose_clock(name: str) -> str:
    """'auto': CPU time when the 1-minute load average is above half the cores (another job is running)."""
    if name != "auto":
        return name
    return "cpu" if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1) else "wall"


Path_ = tuple[str, Callable[[], object]]  # a row's label and one call of it


def measure(paths: list[Path_], runs: int, block: int = 20, settle: int = 3) -> list[tuple[str, float, float]]:
    """Median and p99 ms of each path over `runs` calls, taken in blocks of `block` calls per path in turn, each
    after `settle` untimed calls: a load that changes during the run (another job's phases) then weighs on
    every path alike, and each block times a path in its steady state (its weights in the caches, as when it
    runs every tick), not just after another path's 100 ms of torch."""
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(max(1, -(-runs // block))):
        for j, (_, fn) in enumerate(paths):
            for _ in range(settle):
                fn()
            for _ in range(block):
                t0 = CLOCK()
                fn()
                times[j].append(CLOCK() - t0)
    return [(label, float(np.median(t) * 1e3), float(np.percentile(t, 99) * 1e3)) for (label, _), t in
            zip(paths, (np.asarray(t[:runs]) for t in times))]


def onnx_paths(label: str, path: Path, config: Any, threads: int, providers: ProviderChoice, obs: np.ndarray,
               goal: np.ndarray, in_use: dict[str, tuple[str, ...]], warm_steps: tuple[int, ...] = (2, 3)
               ) -> list[Path_]:
    """Full sample and warm starts of one model file (its .warm<k>.onnx graphs beside it), one runtime each."""
    rng = np.random.default_rng(0)

    def runtime(k: int) -> OnnxRuntime:
        return OnnxRuntime(path, config, warm_start_steps=k, intra_op_threads=threads, providers=providers)

    def call(rt: OnnxRuntime, warm: bool) -> Callable[[], object]:
        return lambda: rt.predict(obs, goal, rng, warm=warm)

    full = runtime(2)
    in_use[label] = full.providers_in_use
    for note in full.provider_notes:
        print(f"warning: {note}")
    paths = [(f"{label}, full 10-step", call(full, False))]
    for k in warm_steps:
        rt = runtime(k)
        rt.predict(obs, goal, rng, warm=False)
        paths.append((f"{label}, warm start {k} steps", call(rt, True)))
    return paths


def bench_model(name: str, policy: Optional[nn.Module], path: Path, runs: int,
                providers: ProviderChoice = ProviderChoice(), shipped: Optional[Path] = None
                ) -> list[tuple[str, float, float]]:
    """Every path for one model: the reference-style loop, our torch path (when the torch policy is at hand), the
    fp32 graph as exported and the int8 file written from it (quantize.py), each at the model's default threads
    (one thread on the CPU clock); the int8 file also at the other thread count, whose benefit depends on the
    machine (wall clock only). `shipped`: the model's file as shipped, timed beside its new export."""
    config = load_config()
    info = read_onnx_info(path, config)
    cpu_clock = CLOCK is CLOCKS["cpu"]
    threads = 1 if cpu_clock else default_threads(info)
    torch.set_num_threads(threads)
    int8 = write_int8_model(path, path.with_name(path.stem + "_int8.onnx"))[0]
    rng = np.random.default_rng(0)
    d = info.dims
    obs = rng.standard_normal((d.history, d.obs_dim)).astype(np.float32)
    goal = rng.standard_normal((d.history, d.goal_dim)).astype(np.float32)

    in_use: dict[str, tuple[str, ...]] = {}
    ref = reference_loop(info.spec.denoiser, d)
    paths: list[Path_] = [(REFERENCE, lambda: ref(obs, goal))]
    if policy is not None:
        rt = TorchRuntime(policy, info, warm_start_steps=2)
        paths.append(("ours torch, full 10-step", lambda: rt.predict(obs, goal, rng, warm=False)))
    if shipped is not None:
        paths += onnx_paths("shipped file's graph fp32", shipped, config, threads, providers, obs, goal, in_use,
                            warm_steps=(2,))
    paths += onnx_paths("ours onnx fp32", path, config, threads, providers, obs, goal, in_use)
    paths += onnx_paths("ours onnx int8", int8, config, threads, providers, obs, goal, in_use)
    if not cpu_clock:  # the CPU clock counts the calling thread only
        other = 3 - threads
        paths += onnx_paths(f"ours onnx int8 {other} thread(s)", int8, config, other, providers, obs, goal,
                            in_use)[:1]
    rows = measure(paths, runs)
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 2)
    clock = "CPU time of the calling thread" if cpu_clock else "wall time"
    print(f"\n{name} ({params / 1e6:.2f} M weights in matrices), {threads} thread(s) unless named, batch 1, {runs} "
          f"runs, {clock} in ms; onnx on {', '.join(in_use['ours onnx fp32'])} (asked {providers.text()})")
    base = rows[0][1]
    print(f"  {'path':48s} {'median ms':>10s} {'p99 ms':>8s} {'speed-up':>9s}")
    for label, med, p99 in rows:
        print(f"  {label:48s} {med:10.2f} {p99:8.2f} {base / med:8.1f}x")
    return rows


def random_model(preset: str, workdir: Path) -> tuple[nn.Module, Path]:
    """A policy of the preset's size with random weights (latency does not depend on them), exported."""
    config = load_config()
    torch.manual_seed(0)
    policy = build_policy(config, ModelSpec(denoiser=DenoiserConfig.preset(preset))).eval()
    return policy, export_onnx(policy, config, workdir / f"{preset}.onnx", warm_steps=(2, 3))[0]


def shipped_model(workdir: Path) -> tuple[nn.Module, Path]:
    """The shipped model's policy, recovered from its file (and checked against it), exported with 2- and 3-step
    warm-start graphs: the same computation as the shipped file, plus a warm-start length it does not ship."""
    policy, info = recover_policy(default_model_path())
    return policy, export_onnx(policy, info.config, workdir / "shipped.onnx", warm_steps=(2, 3))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["paper", "shipped"],
                        help="'shipped' (the shipped file) or a preset name (random weights): paper, small, tiny")
    parser.add_argument("--providers", default="cpu", help="ONNX Runtime execution providers, e.g. tensorrt,cuda,cpu")
    parser.add_argument("--providers-required", action="store_true", help="refuse a provider this build lacks")
    parser.add_argument("--engine-cache", default=None, help="TensorRT engine cache (default ~/.cache/diffuseloco)")
    parser.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                        help="wall: latency; cpu: CPU time of the calling thread, one thread per path (for a machine "
                             "that other jobs share); auto: cpu when the load average shows another job")
    args = parser.parse_args()
    providers = parse_providers(args.providers, args.providers_required, args.engine_cache)
    global CLOCK
    clock = choose_clock(args.clock)
    CLOCK = CLOCKS[clock]
    load = os.getloadavg()[0]
    print(f"clock: {clock} ({'asked' if args.clock != 'auto' else 'auto'}; load average {load:.1f} on "
          f"{os.cpu_count()} cores)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            policy, path = shipped_model(Path(tmp)) if name == "shipped" else random_model(name, Path(tmp))
            label = f"shipped model ({default_model_path().name})" if name == "shipped" else f"{name} preset"
            shipped = default_model_path() if name == "shipped" else None
            rows = bench_model(label, policy, path, args.runs, providers, shipped)
            results[name] = {row[0]: row[1:] for row in rows}
    if "paper" in results:
        print_targets(results["paper"])


def print_targets(r: dict[str, tuple[float, float]]) -> None:
    """The paper-size targets, met by the fastest ONNX path (the int8 file at default threads)."""
    ref = r[REFERENCE][0]
    for precision in ("fp32", "int8"):
        full_med, full_p99 = r[f"ours onnx {precision}, full 10-step"]
        warm = max(r[f"ours onnx {precision}, warm start {k} steps"][0] for k in (2, 3))
        print(f"\ntargets (paper preset, ONNX {precision}):")
        print(f"  full 10-step >= 3x faster than reference: {ref / full_med:.1f}x  {_met(ref / full_med >= 3)}")
        print(f"  full 10-step p99 <= 10 ms: {full_p99:.1f} ms  {_met(full_p99 <= 10)}")
        print(f"  warm start <= 3 steps >= 8x faster: {ref / warm:.1f}x  {_met(ref / warm >= 8)}")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    main()
