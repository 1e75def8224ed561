"""Run a trained policy: one interface, two backends (ONNX Runtime by default, torch for debugging/training).

Why an interface: the node, the evaluator and the benchmarks should not care whether actions come from an
exported graph or from the torch module, and both must give the same numbers for the same noise (a core test
holds them to 1e-4). The runtime owns the warm-start state: after each prediction it keeps the clean normalized
chunk, and the next `predict` starts from it (shifted by one tick) when warm start is enabled.

Inputs are raw (unnormalized) histories for ticks t-To..t-1 (see history.py), unbatched (To, dim) or batched
(B, To, dim); the output chunk has the same batching, and `action_for_tick(chunk)` picks the action for tick t.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .config import StackConfig
from .model_file import (INPUT_GOAL, INPUT_NOISE, INPUT_OBS, INPUT_PREV, OUTPUT_ACTIONS, OUTPUT_CLEAN, ModelInfo,
                         ModelMismatchError, graph_precision, read_onnx_info, warm_path)
from .model_spec import inference_timesteps
from .providers import ProviderChoice, ProviderPlan, check_session, in_use_names, plan_providers, session_entries

NoiseSource = Union[np.random.Generator, np.ndarray, None]
Pair = tuple[np.ndarray, np.ndarray]

# The sampler settings the policy node deploys when none are given (and the bringup configs repeat): a 2-step
# warm start from the previous plan and no sampler noise. The evaluation harness runs a bare model with them too.
DEPLOYED_WARM_START_STEPS = 2
DEPLOYED_NOISE_SCALE = 0.0


class PolicyRuntime(ABC):
    """predict(obs_hist, goal_hist, rng_or_noise) -> action chunk, with optional warm start between calls."""

    def __init__(self, info: ModelInfo, warm_start_steps: Optional[int] = None, seed: int = 0,
                 noise_scale: float = 1.0) -> None:
        """noise_scale: the sampler's temperature, multiplying the noise it draws (1: the trained DDPM sampler;
        0: deterministic denoising). Lower temperatures trade the diversity of modes for steadier actions: the
        preview trots with less wobble at 0.25 (docs/research/policy_eval/tracking.md). Explicit noise arrays are used as
        given."""
        if not (math.isfinite(noise_scale) and 0.0 <= noise_scale <= 1.0):
            raise ValueError(f"noise_scale must be in [0, 1], got {noise_scale}")
        self.info = info
        self.dims = info.dims
        self.is_diffusion = info.spec.kind == "diffusion"
        self.warm_start_steps = warm_start_steps if self.is_diffusion else None
        self.noise_scale = float(noise_scale)
        self._rng = np.random.default_rng(seed)
        self._prev_clean: Optional[np.ndarray] = None
        # where the graphs run (providers.py) and why that differs from what was asked; a backend without
        # execution providers runs in this process on the CPU
        self.providers_in_use: tuple[str, ...] = ("cpu",)
        self.provider_notes: tuple[str, ...] = ()

    # -- backend hooks: batched float32 arrays in, (actions, clean) out -------------------------------------
    @abstractmethod
    def sample_full(self, obs: np.ndarray, goal: np.ndarray, noise: Optional[np.ndarray]) -> Pair:
        """Full sampler; noise (B, S + 1, horizon, action_dim) or None for a deterministic policy."""

    @abstractmethod
    def sample_warm(self, obs: np.ndarray, goal: np.ndarray, prev_clean: np.ndarray, noise: np.ndarray) -> Pair:
        """Warm-start sampler with `warm_start_steps` steps from the previous clean chunk (unshifted)."""

    # -- stateful convenience -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the previous chunk: the next predict runs the full sampler."""
        self._prev_clean = None

    def warm_up(self) -> None:
        """Run every graph once on a neutral input and forget the result: the first call pays for lazy
        allocation and kernel selection (tens of ms in ONNX Runtime), which must not land on a control tick."""
        d = self.dims
        obs, goal = np.zeros((d.history, d.obs_dim), np.float32), np.zeros((d.history, d.goal_dim), np.float32)
        self.predict(obs, goal, warm=False)
        if self.warm_start_steps:
            self.predict(obs, goal, warm=True)
        self.reset()

    def noise_shape(self, batch: int, warm: bool) -> Optional[tuple[int, int, int, int]]:
        if not self.is_diffusion:
            return None
        steps = self.warm_start_steps if warm else len(self._full_timesteps())
        return (batch, steps + 1, self.dims.horizon, self.dims.action_dim)

    def _full_timesteps(self) -> list[int]:
        s = self.info.spec.scheduler
        return inference_timesteps(s.num_train_steps, s.num_inference_steps)

    def predict(self, obs_hist: np.ndarray, goal_hist: np.ndarray, rng_or_noise: NoiseSource = None,
                warm: Optional[bool] = None) -> np.ndarray:
        """Action chunk (horizon, action_dim), or (B, horizon, action_dim) for batched input.

        warm=None warm-starts whenever it is enabled and a previous chunk of the same batch exists; True
        requires it (raises if impossible), False forces the full sampler. rng_or_noise is a numpy Generator,
        an explicit noise array of `noise_shape`, or None for the runtime's own generator.
        """
        obs, goal, batched = self._batch(obs_hist, goal_hist)
        b = obs.shape[0]
        can_warm = self.warm_start_steps is not None and self._prev_clean is not None and self._prev_clean.shape[0] == b
        if warm and not can_warm:
            raise RuntimeError("warm start requested but not enabled or no previous chunk of this batch size")
        use_warm = can_warm if warm is None else bool(warm)
        noise = self._noise(rng_or_noise, self.noise_shape(b, use_warm))
        if use_warm:
            actions, clean = self.sample_warm(obs, goal, self._prev_clean, noise)
        else:
            actions, clean = self.sample_full(obs, goal, noise)
        self._prev_clean = clean
        return actions if batched else actions[0]

    def action_for_tick(self, chunk: np.ndarray) -> np.ndarray:
        """Receding horizon: the action for the current tick, chunk[..., execute_index, :]."""
        return chunk[..., self.dims.execute_index, :]

    def _batch(self, obs: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        obs, goal = np.asarray(obs, dtype=np.float32), np.asarray(goal, dtype=np.float32)
        batched = obs.ndim == 3
        if not batched:
            obs, goal = obs[None], goal[None]
        d = self.dims
        if obs.shape[1:] != (d.history, d.obs_dim) or goal.shape[1:] != (d.history, d.goal_dim):
            raise ValueError(f"expected histories (B, {d.history}, {d.obs_dim}) and (B, {d.history}, {d.goal_dim}), "
                             f"got {obs.shape} and {goal.shape}")
        return obs, goal, batched

    def _noise(self, source: NoiseSource, shape: Optional[tuple[int, ...]]) -> Optional[np.ndarray]:
        if shape is None:
            return None
        if isinstance(source, np.ndarray):
            if source.shape != shape:
                raise ValueError(f"noise has shape {source.shape}, expected {shape}")
            return source.astype(np.float32, copy=False)
        rng = source if source is not None else self._rng
        noise = rng.standard_normal(shape, dtype=np.float32)
        return noise if self.noise_scale == 1.0 else noise * np.float32(self.noise_scale)


class OnnxRuntime(PolicyRuntime):
    """ONNX Runtime sessions for the full-sampler graph and (optionally) one warm-start graph.

    providers: the execution providers to run them on (providers.py; default the CPU). A provider this build
    lacks is skipped or, when required, refused; `providers_in_use` and `provider_notes` say what happened, and
    callers report them (the runtime itself logs nothing). `precision` is what the file's graphs compute their
    matrix products in ('fp32', or 'int8' for a file from diffuseloco_learning.quantize); a warm-start graph of
    another precision than its full graph is refused, so one file never mixes them."""

    def __init__(self, path: Union[str, Path], robot: Optional[StackConfig] = None,
                 warm_start_steps: Optional[int] = None, intra_op_threads: Optional[int] = None, seed: int = 0,
                 noise_scale: float = 1.0, providers: Optional[ProviderChoice] = None) -> None:
        info = read_onnx_info(path, robot)
        super().__init__(info, warm_start_steps, seed, noise_scale)
        self.precision = graph_precision(info.graph)
        self.intra_op_threads = intra_op_threads or default_threads(info)
        self.provider_choice = providers or ProviderChoice()
        plan = plan_providers(self.provider_choice)
        self.session = self._open(path, self.intra_op_threads, plan)
        self.providers_in_use = in_use_names(self.session.get_providers())
        notes = list(plan.notes) + list(check_session(self.provider_choice, plan, self.session.get_providers()))
        self.warm_session = None
        if self.warm_start_steps is not None:
            wpath = warm_path(path, self.warm_start_steps)
            if not wpath.exists():
                raise ModelMismatchError(f"{path}: no warm-start graph for {self.warm_start_steps} steps ({wpath})")
            winfo = read_onnx_info(wpath, robot)
            if winfo.graph.get("steps") != self.warm_start_steps or winfo.config != info.config:
                raise ModelMismatchError(f"{wpath}: warm-start graph does not belong to {path}")
            if graph_precision(winfo.graph) != self.precision:
                raise ModelMismatchError(f"{wpath}: warm-start graph is {graph_precision(winfo.graph)}, {path} is "
                                         f"{self.precision}; write both with the same export")
            self.warm_session = self._open(wpath, self.intra_op_threads, plan)
            if self.warm_session.get_providers() != self.session.get_providers():  # the same plan, another outcome
                warm_notes = check_session(self.provider_choice, plan, self.warm_session.get_providers())
                notes += [f"{n} (warm-start graph)" for n in warm_notes]
        self.provider_notes = tuple(dict.fromkeys(notes))

    @staticmethod
    def _open(path: Union[str, Path], threads: int, plan: ProviderPlan) -> object:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # the Mish constant-folding warning is expected and harmless
        providers, provider_options = session_entries(plan, path)
        try:
            session = ort.InferenceSession(str(path), options, providers=providers, provider_options=provider_options)
        except Exception as exc:  # noqa: BLE001
            raise ModelMismatchError(f"{path}: cannot load ONNX model on {', '.join(plan.names)}: {exc}") from exc
        return session

    def sample_full(self, obs: np.ndarray, goal: np.ndarray, noise: Optional[np.ndarray]) -> Pair:
        feed = {INPUT_OBS: obs, INPUT_GOAL: goal}
        if noise is not None:
            feed[INPUT_NOISE] = noise
        actions, clean = self.session.run([OUTPUT_ACTIONS, OUTPUT_CLEAN], feed)
        return actions, clean

    def sample_warm(self, obs: np.ndarray, goal: np.ndarray, prev_clean: np.ndarray, noise: np.ndarray) -> Pair:
        if self.warm_session is None:
            raise RuntimeError("this runtime was opened without a warm-start graph")
        feed = {INPUT_OBS: obs, INPUT_GOAL: goal, INPUT_PREV: prev_clean, INPUT_NOISE: noise}
        actions, clean = self.warm_session.run([OUTPUT_ACTIONS, OUTPUT_CLEAN], feed)
        return actions, clean


def default_threads(info: ModelInfo) -> int:
    """2 intra-op threads pay off for width-256 transformers, 1 is faster for smaller ones (performance.md)."""
    return 2 if info.spec.kind == "diffusion" and info.spec.denoiser.width >= 256 else 1


def load_runtime(path: Union[str, Path], robot: Optional[StackConfig] = None, backend: str = "onnx",
                 warm_start_steps: Optional[int] = None, intra_op_threads: Optional[int] = None,
                 seed: int = 0, noise_scale: float = 1.0,
                 providers: Optional[ProviderChoice] = None) -> PolicyRuntime:
    """Open a model file, validated against `robot`: backend 'onnx' reads an exported .onnx (plus its
    .warm<k>.onnx sibling when warm_start_steps is set), 'torch' a .safetensors checkpoint (threads = torch
    intra-op threads). noise_scale: the sampler's temperature (PolicyRuntime). providers: ONNX Runtime's
    execution providers (providers.py); the torch backend takes none but the CPU."""
    if backend == "onnx":
        return OnnxRuntime(path, robot, warm_start_steps, intra_op_threads, seed, noise_scale, providers)
    if providers is not None and not providers.is_cpu_only():
        raise ValueError(f"execution providers {providers.text()} apply to backend 'onnx', not {backend!r}")
    if backend == "torch":
        return _torch_runtime().from_checkpoint(path, robot, warm_start_steps, intra_op_threads, seed, noise_scale)
    raise ValueError(f"unknown backend {backend!r}; use 'onnx' or 'torch'")


def _torch_runtime() -> type:
    """The torch backend, imported on request only: it lives with the torch modules in diffuseloco_learning,
    which the robot image does not install."""
    try:
        from diffuseloco_learning.torch_runtime import TorchRuntime
    except ImportError as exc:
        raise ModelMismatchError(f"backend 'torch' needs diffuseloco_learning and torch ({exc}); on the robot "
                                 "export the model to ONNX and use backend 'onnx'") from exc
    return TorchRuntime
