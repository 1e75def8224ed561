"""Every policy behind one interface, for PolicyLoop: a timed sampler, its reset, and per-episode hooks.

Policy specs (the CLI's --policy). A bare model path runs what the policy node runs with that file: its 2-step
warm start (when the .warm2.onnx graph is beside it), no sampler noise, the file's per-skill gains, the stack's
velocity loop (and the CLI cuts the command ranges to the file's envelope). Options change one thing each:
  expert                              the expert controllers (ExpertStandIn), fed the simulator's true velocity
  models/x.onnx                       an exported model (diffusion or bc_mlp) through ONNX Runtime, as deployed
  ckpt.safetensors                    a checkpoint through the torch runtime
  ...,warm=K                          K warm-start steps (warm=0: the full sampler every tick; default 2)
  ...,noise=S                         the sampler's temperature in [0, 1] (runtime.py; default 0, as deployed;
                                      1 is the trained DDPM sampler)
  ...,backend=onnx|torch,label=NAME,threads=N   explicit backend, a display name, intra-op threads
  ...,providers=cuda/cpu              ONNX Runtime's execution providers in order (tensorrt, cuda, cpu; providers.py;
                                      default cpu, as deployed); one this build lacks is skipped with a note
  ...,providers_required=on           refuse, instead of skipping, a provider this build lacks
  ...,engine_cache=DIR                TensorRT's engine cache (default ~/.cache/diffuseloco/tensorrt)
  ...,feedback=off                    without the stack's outer velocity loop (command_feedback.py): the raw policy
  ...,gains=trot:0.8/bound:1.1        per-skill kp scales instead of the model file's (gains.py; skills not named run
                                      at robot.kp; gains=none: robot.kp everywhere). The experts always use robot.kp.
A model's label names what differs from deployment: x[onnx] is deployed, x[onnx,warm0,noise1] is not; a model run
on a GPU provider names the providers in use (x[onnx,cuda]).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.gains import kp_scales, with_kp_scales
from diffuseloco_policy.model_file import read_onnx_info, warm_path
from diffuseloco_policy.providers import CPU, DEFAULT_PROVIDERS, parse_providers
from diffuseloco_policy.runtime import (DEPLOYED_NOISE_SCALE, DEPLOYED_WARM_START_STEPS, PolicyRuntime,
                                        load_runtime)

EXPERT = "expert"
OPTIONS = ("warm", "backend", "label", "threads", "feedback", "noise", "gains", "providers", "providers_required",
           "engine_cache")
SWITCHES = ("feedback", "providers_required")  # the options that take on|off


class EvalPolicy:
    """A sampler for PolicyLoop that records how long each call takes (in the inference thread)."""

    label: str = "policy"
    kind: str = "?"
    delayed_inputs: bool = True  # False: a model trained on the current frame (the ablation) is run that way
    command_feedback: bool = True  # False (spec feedback=off): run without the config's outer velocity loop
    trained: Optional[StackConfig] = None  # the config a model file was trained for (None: the experts, any robot)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kp_scales: dict[str, float] = {}  # skill name -> multiple of robot.kp the loop drives it with (absent: 1)
        self.latencies: list[float] = []
        self.errors = 0
        self.notes: list[str] = []  # where the policy does not run as the node would (the CLI prints them)

    @property
    def joint_gains(self) -> Optional[tuple[float, float]]:
        """(kp, kd) of a model's data, which the loop drives it with as the node does; None: the robot config's."""
        return None if self.trained is None else (self.trained.robot.kp, self.trained.robot.kd)

    def __call__(self, obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.sample(obs_window, goal_window)
        except Exception:
            with self._lock:
                self.errors += 1
            raise
        finally:
            with self._lock:
                self.latencies.append(time.perf_counter() - start)

    def sample(self, obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """PolicyLoop's reset_sampler: forget state carried between calls (a warm start's previous chunk)."""

    def start_episode(self, seed: int) -> None:
        """A new episode: fresh state, and noise drawn from `seed` so each episode reproduces on its own."""
        self.reset()
        with self._lock:
            self.latencies, self.errors = [], 0

    def before_tick(self, sim: Any) -> None:
        """Called before each PolicyLoop tick with the simulator (only the expert may read ground truth)."""

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "kp_scales": dict(self.kp_scales),
                "joint_gains": self.joint_gains, "notes": list(self.notes)}

    def close(self) -> None:
        pass


class RuntimePolicy(EvalPolicy):
    """A trained model through runtime.load_runtime: diffusion or bc_mlp, ONNX or torch."""

    def __init__(self, runtime: PolicyRuntime, label: str, source: str, backend: str) -> None:
        super().__init__()
        self.runtime, self.label, self.source, self.backend = runtime, label, source, backend
        self.kind = runtime.info.spec.kind
        self.delayed_inputs = runtime.info.spec.delayed_inputs
        self.kp_scales = kp_scales(runtime.info.config)  # as the file was validated; the node does the same
        self.trained = runtime.info.config
        self._rng = np.random.default_rng(0)

    def sample(self, obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
        return self.runtime.predict(obs_window, goal_window, self._rng)

    def reset(self) -> None:
        self.runtime.reset()

    def start_episode(self, seed: int) -> None:
        super().start_episode(seed)
        self._rng = np.random.default_rng(seed)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": self.source, "backend": self.backend,
                "warm_start_steps": self.runtime.warm_start_steps, "noise_scale": self.runtime.noise_scale,
                "providers": list(self.runtime.providers_in_use)}


class ExpertPolicy(EvalPolicy):
    """The expert controllers as the policy (simulation only: they need the true body velocity)."""

    kind = "expert"

    def __init__(self, config: StackConfig, label: str = EXPERT) -> None:
        from ..experts.stand_in import ExpertStandIn

        super().__init__()
        self.label = label
        self.stand_in = ExpertStandIn(config)

    def sample(self, obs_window: np.ndarray, goal_window: np.ndarray) -> np.ndarray:
        return self.stand_in(obs_window, goal_window)

    def reset(self) -> None:
        self.stand_in.reset()

    def before_tick(self, sim: Any) -> None:
        self.stand_in.set_velocity(*sim.base_velocity_body()[:2])  # what experts/rollout.py gives the expert


def trained_config(path: Path, robot: StackConfig) -> StackConfig:
    """The config a model file carries (its training ranges or shipped envelope, its gains), checked against
    `robot` as the node checks it: an .onnx export or a .safetensors checkpoint, read without building the model."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy model {path} does not exist (or use 'expert')")
    if path.suffix == ".onnx":
        return read_onnx_info(path, robot).config
    from ..model_checkpoint import read_checkpoint_info   # torch-side module: imported for checkpoints only

    return read_checkpoint_info(path, robot).config


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'path,key=value,...' -> (path, options)."""
    path, *options = spec.split(",")
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in OPTIONS or (key in SWITCHES and value not in ("on", "off")):
            raise ValueError(f"policy option {option!r} in {spec!r}: expected warm=K, backend=onnx|torch, "
                             f"label=NAME, threads=N, feedback=on|off, noise=S, gains=SKILL:SCALE/..., "
                             f"providers=NAME/NAME..., providers_required=on|off or engine_cache=DIR")
        parsed[key] = value
    return path, parsed


def make_policy(spec: str, config: StackConfig, seed: int = 0, threads: Optional[int] = None) -> EvalPolicy:
    """threads: a model's intra-op threads where the spec names none (None: the runtime's default). The
    evaluation's worker processes pass 1: the workers between them already use the cores."""
    path, options = parse_spec(spec)
    policy = _make_policy(path, options, config, seed, threads)
    policy.command_feedback = options.get("feedback", "on") == "on"
    runtime_only = [k for k in ("providers", "providers_required", "engine_cache") if k in options]
    if runtime_only and isinstance(policy, ExpertPolicy):
        raise ValueError(f"{spec!r}: {', '.join(runtime_only)} apply to models; the experts run in Python")
    if "gains" in options:
        if isinstance(policy, ExpertPolicy):
            raise ValueError(f"{spec!r}: the experts run at robot.kp; gains= applies to models")
        policy.kp_scales = parse_gains(options["gains"], config)
    return policy


def parse_gains(value: str, config: StackConfig) -> dict[str, float]:
    """'trot:0.8/bound:1.1' -> every skill's scale (1 where not named); 'none' -> 1 everywhere. Checked like a
    config's (unknown skills, out-of-bounds scales)."""
    scales = {s.name: 1.0 for s in config.skills}
    if value != "none":
        try:
            named = {name: float(scale) for name, scale in (p.split(":") for p in value.split("/"))}
        except ValueError:
            raise ValueError(f"gains={value!r}: expected SKILL:SCALE/SKILL:SCALE, e.g. trot:0.8/bound:1.1, or none")
        scales.update(named)
    with_kp_scales(config, scales)  # a ConfigError for what a config would refuse
    return scales


def _make_policy(path: str, options: dict[str, str], config: StackConfig, seed: int,
                 default_threads: Optional[int]) -> EvalPolicy:
    if path == EXPERT:
        return ExpertPolicy(config, label=options.get("label", EXPERT))
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"policy model {file} does not exist (or use 'expert')")
    backend = options.get("backend") or ("onnx" if file.suffix == ".onnx" else "torch")
    warm = _warm_start(file, backend, options.get("warm"))
    threads = int(options["threads"]) if options.get("threads") else default_threads
    noise = float(options["noise"]) if options.get("noise") else DEPLOYED_NOISE_SCALE
    providers = parse_providers(options.get("providers") or DEFAULT_PROVIDERS,
                                options.get("providers_required") == "on", options.get("engine_cache"))
    runtime = load_runtime(file, robot=config, backend=backend, warm_start_steps=warm, intra_op_threads=threads,
                           seed=seed, noise_scale=noise, providers=providers)
    deployed_warm = DEPLOYED_WARM_START_STEPS if runtime.is_diffusion else None
    settings = ("" if runtime.warm_start_steps == deployed_warm else f",warm{runtime.warm_start_steps or 0}") + (
        "" if noise == DEPLOYED_NOISE_SCALE or not runtime.is_diffusion else f",noise{noise:g}") + (
        "".join(f",{n}" for n in runtime.providers_in_use if n != CPU))
    label = options.get("label") or f"{file.stem}[{backend}{settings}]"
    policy = RuntimePolicy(runtime, label, str(file), backend)
    policy.notes.extend(runtime.provider_notes)
    if runtime.is_diffusion and "warm" not in options and runtime.warm_start_steps is None:
        policy.notes.append(f"{file.name}: no {warm_path(file, DEPLOYED_WARM_START_STEPS).name} beside it, so the "
                            f"full sampler runs; the policy node (warm_start_steps {DEPLOYED_WARM_START_STEPS}) "
                            f"would refuse this file")
    return policy


def _warm_start(file: Path, backend: str, option: Optional[str]) -> Optional[int]:
    """The warm-start steps to open `file` with: the option's (0: none), else the node's default, unless an ONNX
    file lacks its warm-start graph (then the full sampler runs, and make_policy notes it)."""
    if option:
        steps = int(option)
        if steps < 0:
            raise ValueError(f"warm={option}: expected a number of steps >= 0")
        return steps or None
    if backend == "onnx" and not warm_path(file, DEPLOYED_WARM_START_STEPS).exists():
        return None
    return DEPLOYED_WARM_START_STEPS
