"""`clip`: np.clip's own ufunc, called without np.clip's Python layers, for code that clips small arrays often.

Why: np.clip passes through three Python functions (fromnumeric.clip, ndarray.clip, _methods._clip) before it
reaches numpy's `clip` ufunc; on arrays of 4-12 values that costs about 2 us a call against 0.3 us for the ufunc,
and the expert and its gait clock clip some 40 arrays per 50 Hz tick (bench/bench_expert_rollout.py). It is the
very ufunc np.clip ends in, so every result is bit for bit the same. Should a numpy release move it, np.clip is
used instead.
"""

from __future__ import annotations

import numpy as np

try:
    from numpy._core.umath import clip
except ImportError:  # pragma: no cover - a numpy that keeps the ufunc elsewhere
    clip = np.clip

__all__ = ["clip"]
