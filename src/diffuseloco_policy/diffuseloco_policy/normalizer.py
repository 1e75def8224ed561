"""Per-dimension min-max normalization to [-1, 1] (diffusion_policy's LinearNormalizer, 'limits' mode).

Why: the diffusion sampler clips its clean estimate to [-1, 1], so actions must live there; observations are
scaled the same way so no input dimension dominates the tokens. A dimension that never varies in the data (a
one-hot slot never used, a zero-scaled velocity) gets scale 1 and an offset that maps its value to 0 instead
of a division by zero. The parameters are plain arrays: they travel as JSON in ONNX metadata and as tensors
in checkpoints, never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

RANGE_EPS = 1e-4
ArrayLike = TypeVar("ArrayLike")  # numpy arrays here; torch tensors in diffuseloco_learning


@dataclass(frozen=True)
class MinMaxNormalizer:
    """y = x * scale + offset, per last-axis dimension; the inverse is (y - offset) / scale."""

    scale: np.ndarray
    offset: np.ndarray
    input_min: np.ndarray
    input_max: np.ndarray

    @classmethod
    def fit(cls, data: Any, range_eps: float = RANGE_EPS) -> "MinMaxNormalizer":
        """Fit to data of shape (..., dim), a numpy array or a torch tensor: the data's min maps to -1 and its
        max to +1."""
        x = np.asarray(data.detach().cpu() if _is_tensor(data) else data, dtype=np.float64)
        x = x.reshape(-1, x.shape[-1])
        lo, hi = x.min(axis=0), x.max(axis=0)
        return cls.from_limits(lo, hi, range_eps)

    @classmethod
    def from_limits(cls, lo: np.ndarray, hi: np.ndarray, range_eps: float = RANGE_EPS) -> "MinMaxNormalizer":
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        span = hi - lo
        constant = span < range_eps
        span = np.where(constant, 2.0, span)  # output range width: scale becomes exactly 1 there
        scale = 2.0 / span
        offset = np.where(constant, -lo, -1.0 - scale * lo)  # constant dims: value -> 0, the centre
        return cls(scale.astype(np.float32), offset.astype(np.float32), lo.astype(np.float32), hi.astype(np.float32))

    @classmethod
    def identity(cls, dim: int) -> "MinMaxNormalizer":
        """A pass-through normalizer, for models built before any data is seen."""
        z = np.zeros(dim, dtype=np.float32)
        return cls(np.ones(dim, dtype=np.float32), z, z - 1.0, z + 1.0)

    @property
    def dim(self) -> int:
        return int(self.scale.shape[0])

    def normalize(self, x: ArrayLike) -> ArrayLike:
        scale, offset = self._params_like(x)
        return x * scale + offset

    def unnormalize(self, y: ArrayLike) -> ArrayLike:
        scale, offset = self._params_like(y)
        return (y - offset) / scale

    def _params_like(self, x: Any) -> tuple[Any, Any]:
        if _is_tensor(x):  # a torch tensor: the parameters as tensors of its dtype, on its device
            return x.new_tensor(self.scale), x.new_tensor(self.offset)
        dtype = x.dtype if isinstance(x, np.ndarray) and x.dtype.kind == "f" else np.float64
        return self.scale.astype(dtype), self.offset.astype(dtype)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready plain lists (float32 values written exactly as Python floats)."""
        return {k: [float(v) for v in getattr(self, k)] for k in ("scale", "offset", "input_min", "input_max")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MinMaxNormalizer":
        return cls(*(np.asarray(data[k], dtype=np.float32) for k in ("scale", "offset", "input_min", "input_max")))


@dataclass(frozen=True)
class PolicyNormalizer:
    """The three normalizers a policy needs: observation, goal (command + skill) and action."""

    obs: MinMaxNormalizer
    goal: MinMaxNormalizer
    action: MinMaxNormalizer

    FIELDS = ("obs", "goal", "action")

    @classmethod
    def fit(cls, obs: np.ndarray, goal: np.ndarray, action: np.ndarray) -> "PolicyNormalizer":
        """Fit each part on its data of shape (..., dim), e.g. the whole dataset's (N, dim) arrays."""
        return cls(MinMaxNormalizer.fit(obs), MinMaxNormalizer.fit(goal), MinMaxNormalizer.fit(action))

    @classmethod
    def identity(cls, obs_dim: int, goal_dim: int, action_dim: int) -> "PolicyNormalizer":
        return cls(*(MinMaxNormalizer.identity(d) for d in (obs_dim, goal_dim, action_dim)))

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        return {k: getattr(self, k).to_dict() for k in self.FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PolicyNormalizer":
        return cls(*(MinMaxNormalizer.from_dict(data[k]) for k in cls.FIELDS))


def _is_tensor(x: Any) -> bool:
    """A torch tensor, recognised without importing torch (the robot's runtime has none)."""
    return hasattr(x, "detach") and hasattr(x, "new_tensor")
