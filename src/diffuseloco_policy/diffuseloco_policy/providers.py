"""Where ONNX Runtime runs the sampler: an ordered list of execution providers (TensorRT, CUDA, CPU).

Why a module of its own: the node, the evaluation harness and the benchmarks all name providers the same way,
and what was asked must never quietly differ from what runs. The rule:

- The user names providers in order of preference, separated by ',' or '/' (the evaluation's policy options use
  ',' themselves): `tensorrt,cuda,cpu`. Names are `tensorrt`, `cuda` and `cpu`; an unknown name, a repeated one
  or one after `cpu` (ONNX Runtime would never give it a node) is refused. CPU is always the last fallback: it is
  added when not named.
- A provider this onnxruntime build does not offer (the PyPI `onnxruntime` wheel has only the CPU) is skipped
  with a warning by default; with `required` the runtime refuses to open, naming the providers the build has.
- The same holds after the session opens: ONNX Runtime falls back to the CPU by itself when, say, a CUDA library
  is missing at load time, so the providers the session reports are checked against the plan too.

TensorRT builds an engine for each graph when its session opens or at its first run (the node's warm-up, before any
tick; the first time tens of seconds to minutes on a Jetson) and caches it under `engine_cache` (default
~/.cache/diffuseloco/tensorrt), in a directory per graph file content and onnxruntime version, so only the first
start with a new model pays for it.
Only onnxruntime and the standard library are imported: this runs in the robot image.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

CPU = "cpu"
DEFAULT_PROVIDERS = CPU
# our names -> ONNX Runtime's, in the order ONNX Runtime itself prefers them
ORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", CPU: "CPUExecutionProvider"}
SHORT_NAMES = {ort: short for short, ort in ORT_NAMES.items()}


class ProviderError(ValueError):
    """A provider list that cannot be honoured: malformed, or a required provider that is not there."""


@dataclass(frozen=True)
class ProviderChoice:
    """What the user asked for: provider names in order (CPU last), whether each must be there, the TensorRT
    engine cache directory (None: default_engine_cache())."""

    names: tuple[str, ...] = (CPU,)
    required: bool = False
    engine_cache: Optional[Path] = None

    def text(self) -> str:
        return ",".join(self.names)

    def is_cpu_only(self) -> bool:
        return self.names == (CPU,)


@dataclass(frozen=True)
class ProviderPlan:
    """What the session is opened with: ONNX Runtime's provider entries (name, options), our names for them, and
    warnings for the providers asked for but skipped."""

    entries: tuple[tuple[str, dict[str, Any]], ...]
    names: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def parse_providers(text: Union[str, Sequence[str]], required: bool = False,
                    engine_cache: Union[str, Path, None] = None) -> ProviderChoice:
    """'tensorrt,cuda,cpu' (or 'cuda/cpu', or a list of names) -> a checked ProviderChoice with CPU last."""
    parts = re.split(r"[,/]", text) if isinstance(text, str) else list(text)
    names = [str(p).strip().lower() for p in parts if str(p).strip()]
    if not names:
        raise ProviderError(f"providers {text!r}: name at least one of {', '.join(ORT_NAMES)}")
    unknown = [n for n in names if n not in ORT_NAMES]
    if unknown:
        raise ProviderError(f"providers {text!r}: unknown {', '.join(map(repr, unknown))}; "
                            f"use {', '.join(ORT_NAMES)} in order of preference, e.g. tensorrt,cuda,cpu")
    if len(set(names)) != len(names):
        raise ProviderError(f"providers {text!r}: a provider is named twice")
    if CPU in names and names[-1] != CPU:
        raise ProviderError(f"providers {text!r}: cpu is the last fallback, nothing can follow it")
    if names[-1] != CPU:
        names.append(CPU)
    cache = Path(engine_cache).expanduser() if engine_cache else None
    return ProviderChoice(tuple(names), bool(required), cache)


def default_engine_cache() -> Path:
    """TensorRT engines are per model and per GPU: a user cache directory, not the (read-only) install share/."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffuseloco" / "tensorrt"


def available_providers() -> tuple[str, ...]:
    """Our names of the providers this onnxruntime build offers that the stack can use."""
    import onnxruntime as ort

    return tuple(SHORT_NAMES[p] for p in ort.get_available_providers() if p in SHORT_NAMES)


def plan_providers(choice: ProviderChoice, available: Optional[Sequence[str]] = None) -> ProviderPlan:
    """The providers to open a session with: those of `choice` that `available` (default: this build) offers.
    A missing one is a warning, or a ProviderError when the choice is required."""
    available = tuple(available) if available is not None else available_providers()
    missing = [n for n in choice.names if n not in available]
    if missing and choice.required:
        raise ProviderError(f"execution provider {', '.join(missing)} required but not in this onnxruntime build "
                            f"(it has {', '.join(available)}); install a build with it (docs/deployment.md) or "
                            "leave the provider out")
    notes = (f"execution provider {', '.join(missing)} not in this onnxruntime build (it has "
             f"{', '.join(available)}): skipped",) if missing else ()
    names = tuple(n for n in choice.names if n not in missing)
    return ProviderPlan(tuple((ORT_NAMES[n], _options(n, choice)) for n in names), names, notes)


def _options(name: str, choice: ProviderChoice) -> dict[str, Any]:
    """Provider options: TensorRT caches its engines (and its kernel timings) so that a restart does not rebuild
    them (the directory per graph file: session_entries); fp16 stays off, the float32 graph is the one evaluated."""
    if name != "tensorrt":
        return {}
    cache = choice.engine_cache or default_engine_cache()
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)}


def session_entries(plan: ProviderPlan, graph: Union[str, Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """ONNX Runtime's providers and their options for one graph file. TensorRT engines go to a directory of their
    own per onnxruntime version and file content, created here: ONNX Runtime names a cached engine after the
    graph's structure, not its weights, so a retrained model in the same place would otherwise run the old
    engine (its documentation asks to clear the cache whenever the model changes)."""
    names, options = [], []
    for name, opts in plan.entries:
        if "trt_engine_cache_path" in opts:
            cache = engine_dir(Path(opts["trt_engine_cache_path"]), Path(graph))
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ProviderError(f"TensorRT engine cache {cache}: cannot create it ({exc})") from exc
            opts = {**opts, "trt_engine_cache_path": str(cache)}
        names.append(name)
        options.append(opts)
    return names, options


def engine_dir(cache: Path, graph: Path) -> Path:
    """<cache>/onnxruntime-<version>/<graph stem>-<first 16 hex digits of the file's SHA-256>."""
    import onnxruntime as ort

    digest = hashlib.sha256(graph.read_bytes()).hexdigest()[:16]
    return cache / f"onnxruntime-{ort.__version__}" / f"{graph.stem}-{digest}"


def check_session(choice: ProviderChoice, plan: ProviderPlan, session_providers: Sequence[str]) -> tuple[str, ...]:
    """Warnings for planned providers the opened session did not take (ONNX Runtime's own fallback), or a
    ProviderError when the choice is required."""
    in_use = in_use_names(session_providers)
    dropped = [n for n in plan.names if n not in in_use]
    if dropped and choice.required:
        raise ProviderError(f"execution provider {', '.join(dropped)} required but onnxruntime could not start it "
                            f"(the session runs on {', '.join(in_use)}); onnxruntime's log says why")
    return (f"execution provider {', '.join(dropped)} in this onnxruntime build but onnxruntime could not start "
            "it: skipped",) if dropped else ()


def in_use_names(session_providers: Sequence[str]) -> tuple[str, ...]:
    """Our names of a session's providers, in its order."""
    return tuple(SHORT_NAMES.get(p, p) for p in session_providers)
