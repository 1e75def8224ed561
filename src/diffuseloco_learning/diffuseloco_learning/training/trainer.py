"""The training loop: AdamW + cosine/warm-up, EMA, periodic safe checkpoints, exact resume, optional DDP.

Recipe (reference: DiffuseLoco / diffusion_policy): AdamW with betas (0.9, 0.95), weight decay on Linear
weights only (biases, LayerNorm and position embeddings excluded, as diffusion_policy's transformer does),
learning rate warmed up linearly then decayed on a cosine to 0 at `total_steps`, EMA of the weights (power
0.75, max 0.9999). The normalizer is fitted on all training ticks and lives in the model's buffers; a fine-tuning
run (`init_from`) keeps the normalizer of the model it starts from.

Determinism (what makes resume exact): everything random is a function of the seed and the step.
  - data order: epoch e is DistributedSampler's permutation seeded (seed + e); batch b of the epoch is the b-th
    slice of it, with e, b = divmod(step, batches_per_epoch), so a resumed run fetches the same batches;
  - diffusion noise/timesteps come from a dedicated generator, dropout from the global torch RNG; both are
    saved per rank and restored;
  - the learning rate is a pure function of the step.
On CPU a resumed run is bit-identical to an uninterrupted one (tested).

Distributed: under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) the process group is gloo on CPU and nccl
on CUDA; each rank draws batch_size / world_size samples from its DistributedSampler shard; DDP averages the
gradients, so all ranks keep identical weights and identical EMAs; only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from diffuseloco_policy.command_classes import describe_classes, with_command_classes
from diffuseloco_policy.config import CommandClassConfig, ConfigError, StackConfig, config_from_dict, load_config
from ..data.dataset import dataset_attrs
from ..diffusion import ModelSpec, build_policy
from ..diffusion.policy import Policy
from diffuseloco_policy.model_file import compatibility_problems
from diffuseloco_policy.normalizer import MinMaxNormalizer, PolicyNormalizer
from .checkpoint import ema_weights_path, optimizer_state_dict, read_checkpoint, set_host_rng_state, write_checkpoint
from .config import TrainConfig, train_config_from_dict
from .ema import EMA
from .windows import EpisodeWindows, collate_batch

CSV_FIELDS = ("step", "loss", "lr", "ema_decay", "samples_per_s")
INIT_RECORD = "init_from.json"   # in out_dir: the file (path and sha256) a fine-tune started from


def lr_factor(step: int, warmup: int, total: int) -> float:
    """diffusers' 'cosine' schedule with linear warm-up (num_cycles 0.5), evaluated for the update that
    follows `step` completed updates (the first update uses 1 / warmup, not 0)."""
    s = step + 1
    if s < warmup:
        return s / max(1, warmup)
    progress = (s - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def optim_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on Linear weights; none on biases, norms and embeddings (diffusion_policy's split)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class LossModule(nn.Module):
    """forward = the policy's training loss, so DDP's gradient hooks see it."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, action: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.policy.compute_loss(obs, goal, action, generator=generator)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but CUDA is not available")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device_setting: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (env://); a plain `python -m` run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), pick_device(device_setting)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_setting, local)
    info = DistInfo(rank, world, local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        info.initialized_here = True
    return info, device


def _no_buffer_sync() -> dict[str, bool]:
    """The normalizer buffers are identical on every rank: skip DDP's per-forward buffer broadcast (the keyword
    was renamed in recent torch)."""
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def fit_normalizer(windows: EpisodeWindows) -> PolicyNormalizer:
    """PolicyNormalizer.fit over every tick, computed from float32 min/max (same numbers, no float64 copy of
    a multi-GB dataset)."""
    arrays = windows.arrays()
    return PolicyNormalizer(*(MinMaxNormalizer.from_limits(arrays[k].min(axis=0), arrays[k].max(axis=0))
                              for k in ("obs", "goal", "action")))


def check_datasets(cfg: TrainConfig, stack) -> None:
    for path in cfg.datasets:
        attrs = dataset_attrs(path)
        if "config" not in attrs:
            raise ConfigError(f"{path}: dataset has no 'config' attribute; set check_dataset_config: false to use it")
        problems = compatibility_problems(config_from_dict(attrs["config"]), stack, exact_skills=True)
        if problems:
            raise ConfigError(f"{path} was recorded for a different setup:\n - " + "\n - ".join(problems))
        generator = attrs.get("generator", {})
        if cfg.delayed and not generator.get("expert_delayed", False) and not generator.get("synthetic"):
            warnings.warn(f"{path}: its experts reacted to the current frame s[t]; a delayed-input model has to "
                          "anticipate that reaction (regenerate with experts acting on s[t-1], the default now)",
                          stacklevel=2)


def dataset_command_classes(paths: list[str]) -> tuple[CommandClassConfig, ...]:
    """The class map the datasets were made with (their config attrs; none for data without one). They must
    agree: a model has one goal layout."""
    maps = {}
    for path in paths:
        attrs = dataset_attrs(path)
        maps[str(path)] = config_from_dict(attrs["config"]).command_classes if "config" in attrs else ()
    if len(set(maps.values())) > 1:
        described = "; ".join(f"{path}: {describe_classes(classes)}" for path, classes in maps.items())
        raise ConfigError(f"the datasets were made with different command classes ({described}); a model is "
                          "trained on one class map")
    return next(iter(maps.values()), ())


def training_stack(cfg: TrainConfig) -> StackConfig:
    """The config the model is trained for: the robot config with the datasets' command classes, so unlabelled-gait
    data trains a class model without a flag (the model file then carries the class map). A robot config with a
    class map of its own must match the data's (check_datasets)."""
    stack = load_config(cfg.robot_config)
    classes = dataset_command_classes(cfg.datasets)
    return with_command_classes(stack, classes) if classes and not stack.command_classes else stack


def record_initial_file(source: Path, record: Path) -> None:
    """Which file a fine-tune started from, by content: the path alone may later hold another model (a shipped
    file replaced by the one trained from it), and the model card names the source by this hash."""
    digest = hashlib.sha256(ema_weights_path(source).read_bytes()).hexdigest()   # a checkpoint: its EMA weights
    record.write_text(json.dumps({"path": str(source), "sha256": digest}, indent=1) + "\n")


def load_initial_policy(cfg: TrainConfig, stack) -> Policy:
    """The policy a fine-tuning run starts from (`init_from`): its weights and its normalizer, which the weights
    were trained against (refitting it on new data would silently change what every weight means). Refused when
    the file's model or robot setup is not the one this config trains."""
    from .from_onnx import read_policy   # local: onnx is only needed when a run starts from a file

    path = Path(cfg.init_from)
    policy, info = read_policy(path)
    if info.spec != cfg.spec():
        raise ConfigError(f"init_from {path}: its model {info.spec} is not the config's {cfg.spec()}")
    problems = compatibility_problems(info.config, stack, exact_skills=True)
    if problems:
        raise ConfigError(f"init_from {path} was trained for a different setup:\n - " + "\n - ".join(problems))
    return policy


class Trainer:
    """Builds data, model, optimizer and EMA from a TrainConfig; `train()` runs (or resumes) the loop."""

    def __init__(self, cfg: TrainConfig, resume: Optional[str] = None, dist_info: Optional[DistInfo] = None,
                 device: Optional[torch.device] = None) -> None:
        if dist_info is None:
            dist_info, device = init_distributed(cfg.device)
        self.cfg, self.dist = cfg, dist_info
        self.device = device if device is not None else pick_device(cfg.device, dist_info.local_rank)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.batch_size % dist_info.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by world size {dist_info.world_size}")
        self.local_batch = cfg.batch_size // dist_info.world_size
        self.out_dir = Path(cfg.out_dir)
        self.stack = training_stack(cfg)
        if cfg.check_dataset_config:
            check_datasets(cfg, self.stack)
        self.data = EpisodeWindows.for_config(cfg.datasets, self.stack, delayed=cfg.delayed,
                                              predict_velocity=cfg.model.predict_velocity)
        # a resumed run takes weights and normalizer from its checkpoint: the file it started from is not re-read
        initial = load_initial_policy(cfg, self.stack) if cfg.init_from and not resume else None
        self.normalizer = initial.normalizer if initial else fit_normalizer(self.data)
        if cfg.data_on_device and self.device.type == "cuda":
            self.data.to(self.device)
        self.sampler = DistributedSampler(self.data, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // self.local_batch
        if self.batches_per_epoch < 1:
            raise ConfigError(f"dataset has {len(self.data)} samples, fewer than one batch of {cfg.batch_size}")

        self.spec: ModelSpec = cfg.spec()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.policy = build_policy(self.stack, self.spec, self.normalizer)
        if initial is not None:
            self.policy.load_state_dict(initial.state_dict())
        self.policy.to(self.device)
        self.ema = EMA(self.policy, cfg.ema)
        self.optimizer = torch.optim.AdamW(optim_groups(self.policy, cfg.weight_decay), lr=cfg.lr,
                                           betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        stream = cfg.seed * 1_000_003 + 1000 * (dist_info.rank + 1)
        torch.manual_seed(stream)  # dropout, per rank
        self.noise = torch.Generator(device=self.device).manual_seed(stream + 1)
        self.step = 0
        if resume:
            self._load(resume)
            self.normalizer = self.policy.normalizer   # the checkpoint's, not the one fitted above
        self.loss_module: nn.Module = LossModule(self.policy)
        if dist_info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = nn.parallel.DistributedDataParallel(self.loss_module, device_ids=ids,
                                                                   **_no_buffer_sync())
        self.history: list[dict[str, float]] = []  # logged rows of this invocation

    # -- data ---------------------------------------------------------------------------------------------
    def _batches(self, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from `start_step` on; the order depends only on the seed and the step."""
        epoch, first = divmod(start_step, self.batches_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
            chunks = [order[b * self.local_batch:(b + 1) * self.local_batch]
                      for b in range(first, self.batches_per_epoch)]
            if self.cfg.num_workers > 0 and not isinstance(self.data.data["obs"], torch.Tensor):
                loader = DataLoader(self.data, batch_sampler=[c.tolist() for c in chunks], collate_fn=collate_batch,
                                    num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
                                    generator=torch.Generator())  # never touches the global (dropout) RNG
                yield from loader
            else:
                for chunk in chunks:
                    yield self.data.get_batch(chunk)
            epoch, first = epoch + 1, 0

    # -- loop ---------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return self.cfg.lr * lr_factor(step, self.cfg.warmup_steps, self.cfg.total_steps)

    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.policy.train()
        loss = self.loss_module(batch["obs"], batch["goal"], batch["action"], generator=self.noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.ema.update(self.policy)
        self.step += 1
        return loss.detach()

    def train(self, max_steps: Optional[int] = None) -> list[dict[str, float]]:
        """Run until total_steps, or `max_steps` more steps; checkpoint every N steps and at the end."""
        cfg, main = self.cfg, self.dist.is_main
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            if cfg.init_from and not (self.out_dir / INIT_RECORD).exists():
                record_initial_file(Path(cfg.init_from), self.out_dir / INIT_RECORD)
            self._trim_csv()
        bar = None
        if main and cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=cfg.total_steps, initial=self.step, unit="step", dynamic_ncols=True)
        window_loss, window_steps, window_start = torch.zeros((), device=self.device), 0, time.perf_counter()
        last_saved = self.step
        batches = self._batches(self.step)
        try:
            while self.step < end:
                window_loss += self.train_step(next(batches))
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == end:
                    row = self._log(window_loss, window_steps, time.perf_counter() - window_start)
                    if bar is not None:
                        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                                        sps=f"{row['samples_per_s']:.0f}")
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if self.step % cfg.checkpoint_every == 0:
                    saving = time.perf_counter()
                    self.save()
                    last_saved = self.step
                    window_start += time.perf_counter() - saving  # samples/s counts training time only
        except KeyboardInterrupt:
            if not self.dist.enabled:
                print(f"\ninterrupted at step {self.step}; saving a checkpoint")
                self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
        if self.step != last_saved:
            self.save()
        return self.history

    def _log(self, loss_sum: torch.Tensor, steps: int, seconds: float) -> dict[str, float]:
        mean = loss_sum / max(steps, 1)
        if self.dist.enabled:
            dist.all_reduce(mean)
            mean = mean / self.dist.world_size
        if not math.isfinite(float(mean.item())):
            raise FloatingPointError(f"training loss is {mean.item()} at step {self.step}; last good checkpoint: "
                                     f"{self.out_dir / 'ckpt_latest'}")
        row = {"step": self.step, "loss": float(mean.item()), "lr": self.lr_at(self.step - 1),
               "ema_decay": self.ema.decay, "samples_per_s": steps * self.cfg.batch_size / max(seconds, 1e-9)}
        self.history.append(row)
        if self.dist.is_main:
            path = self.out_dir / "loss.csv"
            new = not path.exists()
            with path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        return row

    def _trim_csv(self) -> None:
        """After a resume, drop rows logged past the checkpoint by the interrupted run."""
        path = self.out_dir / "loss.csv"
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    # -- checkpoints --------------------------------------------------------------------------------------
    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        mine = {"torch": torch.get_rng_state(), "noise": self.noise.get_state().cpu()}
        if self.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.dist.enabled:
            return {f"rank0.{k}": v for k, v in mine.items()}
        out = {}
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        for key, value in sorted(mine.items()):  # fixed-size uint8 states: all_gather works on them
            parts = [torch.empty_like(value, device=comm) for _ in range(self.dist.world_size)]
            dist.all_gather(parts, value.to(comm))
            out.update({f"rank{r}.{key}": p.cpu() for r, p in enumerate(parts)})
        return out

    def save(self) -> Optional[Path]:
        """Checkpoint (a collective under DDP: every rank must call it; only rank 0 writes)."""
        rng = self._rng_tensors()
        if not self.dist.is_main:
            return None
        state = {"ema_step": self.ema.optimization_step, "ema_decay": self.ema.decay,
                 "world_size": self.dist.world_size, "train_config": self.cfg.to_dict()}
        return write_checkpoint(self.out_dir, self.step, self.policy, self.ema.model, self.stack, self.optimizer,
                                rng, state, keep=self.cfg.keep_checkpoints)

    def _load(self, path: str) -> None:
        ckpt = read_checkpoint(path)
        state = ckpt["state"]
        saved_spec = train_config_from_dict(state["train_config"]).spec()
        if saved_spec != self.spec:
            raise ConfigError(f"{path}: checkpoint model {saved_spec} differs from the config's {self.spec}")
        if state["world_size"] != self.dist.world_size and self.dist.is_main:
            print(f"warning: {path} was written with world size {state['world_size']}, resuming with "
                  f"{self.dist.world_size}: the data order differs from an uninterrupted run")
        self.policy.load_state_dict(ckpt["model"])
        self.ema.model.load_state_dict(ckpt["ema"])
        self.ema.optimization_step, self.ema.decay = int(state["ema_step"]), float(state["ema_decay"])
        self.optimizer.load_state_dict(optimizer_state_dict(ckpt["optimizer"], state["param_groups"]))
        self.step = int(state["step"])
        rng, r = ckpt["rng"], self.dist.rank
        if f"rank{r}.torch" in rng:
            torch.set_rng_state(rng[f"rank{r}.torch"])
            self.noise.set_state(rng[f"rank{r}.noise"].to(self.noise.get_state().device))
            if self.device.type == "cuda" and f"rank{r}.cuda" in rng:
                torch.cuda.set_rng_state(rng[f"rank{r}.cuda"], self.device)
        elif self.dist.is_main:
            print(f"warning: {path} has no RNG state for rank {r}; keeping the freshly seeded one")
        set_host_rng_state(state["host_rng"])

    def ranks_in_sync(self) -> bool:
        """True when every rank holds rank 0's weights exactly (a DDP sanity check; trivially true alone)."""
        if not self.dist.enabled:
            return True
        flat = torch.cat([p.detach().reshape(-1) for p in self.policy.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        same = torch.tensor([1.0 if torch.equal(flat, ref) else 0.0], device=flat.device)
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        return bool(same.item() == 1.0)

    def close(self) -> None:
        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
