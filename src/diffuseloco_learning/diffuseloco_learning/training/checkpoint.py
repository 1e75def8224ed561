"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a directory `ckpt_<step>` (and `ckpt_latest`, a symlink to the newest one):

    model.safetensors      training weights        } model_file.save_checkpoint format: the stack config,
    ema.safetensors        EMA weights (ship this) } model spec and normalizer as metadata; load_checkpoint /
                                                      TorchRuntime.from_checkpoint open them directly
    optimizer.safetensors  AdamW state tensors as 'state.<param index>.<name>'
    rng.safetensors        per-rank RNG states (uint8): 'rank<r>.torch', 'rank<r>.noise', 'rank<r>.cuda'
    state.json             step, EMA step, world size, optimizer param groups, numpy/python RNG, train config

Loading uses safetensors.load_file and json only: nothing is unpickled. A directory is written under a temporary
name and renamed into place, so a crash mid-write never leaves a half checkpoint behind `ckpt_latest`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from diffuseloco_policy.config import StackConfig, plain
from diffuseloco_learning.model_checkpoint import save_checkpoint

FORMAT = "diffuseloco-train-checkpoint"
VERSION = 1
LATEST = "ckpt_latest"


class CheckpointError(ValueError):
    """A training checkpoint is missing, incomplete or of an unknown format."""


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """AdamW state_dict split into flat tensors and JSON-able param groups."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"optimizer state {name!r} is not a tensor; cannot store it without pickle")
            tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
    return tensors, plain(sd["param_groups"])


def optimizer_state_dict(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in groups]
    return {"state": state, "param_groups": groups}


def host_rng_state() -> dict[str, Any]:
    """numpy's and Python's global RNG states as JSON (the trainer does not draw from them, kept for user code)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss]}


def set_host_rng_state(state: dict[str, Any]) -> None:
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def write_checkpoint(out_dir: Union[str, Path], step: int, policy: torch.nn.Module, ema_model: torch.nn.Module,
                     stack: StackConfig, optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor],
                     state: dict[str, Any], keep: int = 3) -> Path:
    """Write ckpt_<step>, point ckpt_latest at it, and delete numbered checkpoints beyond the newest `keep`."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"ckpt_{step:08d}"
    tmp = out_dir / f".tmp_ckpt_{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    extra = {"diffuseloco.train_step": str(step)}
    save_checkpoint(tmp / "model.safetensors", policy, stack, extra)
    save_checkpoint(tmp / "ema.safetensors", ema_model, stack, extra)
    opt_tensors, groups = optimizer_tensors(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
    body = {"format": FORMAT, "version": VERSION, "step": step, "param_groups": groups,
            "host_rng": host_rng_state(), **state}
    (tmp / "state.json").write_text(json.dumps(body, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    link = out_dir / LATEST
    tmp_link = out_dir / f".tmp_latest_{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(final.name)
    os.replace(tmp_link, link)
    numbered = sorted(p for p in out_dir.glob("ckpt_[0-9]*") if p.is_dir())
    for old in numbered[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: Union[str, Path]) -> dict[str, Any]:
    """Everything in a checkpoint directory: 'state' (JSON), 'model', 'ema', 'optimizer', 'rng' (tensor dicts)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file() or not (path / "state.json").exists():
        raise CheckpointError(f"{path}: not a training checkpoint directory (no state.json)")
    try:
        state = json.loads((path / "state.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}/state.json: {exc}") from exc
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(f"{path}: unknown checkpoint format {state.get('format')!r} v{state.get('version')!r}")
    out: dict[str, Any] = {"state": state}
    for name in ("model", "ema", "optimizer", "rng"):
        file = path / f"{name}.safetensors"
        if not file.exists():
            raise CheckpointError(f"{path}: missing {file.name}")
        out[name] = load_file(str(file))
    return out


def ema_weights_path(path: Union[str, Path], which: str = "ema") -> Path:
    """The safetensors model file inside a checkpoint directory (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{which}.safetensors"
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    return path


def latest_checkpoint(out_dir: Union[str, Path]) -> Optional[Path]:
    link = Path(out_dir) / LATEST
    return link if (link / "state.json").exists() else None
