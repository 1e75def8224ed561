"""Two CPU processes on the gloo backend train together through the real CLI entry point (torchrun's
environment variables): both ranks end with identical weights though each saw different data, the loss is
finite, and only rank 0 writes logs and checkpoints."""

import csv
import os

import numpy as np
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file
from synthetic_data import write_synthetic

from diffuseloco_learning.training import ModelSection, TrainConfig
from free_port import free_port

WORLD = 2


def _worker(rank: int, port: int, config_path: str, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    from diffuseloco_learning.training.__main__ import run

    trainer = run(["--config", config_path, "--no-progress"])
    first = trainer.data.get_batch(np.fromiter(iter(trainer.sampler), np.int64)[:4])["obs"][:, -1, 0]
    tensors = {f"w.{k}": v.contiguous() for k, v in trainer.policy.state_dict().items()}
    tensors["first_ticks"] = first.contiguous()
    tensors["losses"] = torch.tensor([r["loss"] for r in trainer.history])
    save_file(tensors, os.path.join(out, f"rank{rank}.safetensors"))


def test_two_process_gloo_ddp(tmp_path):
    data = write_synthetic(tmp_path / "d.zarr", lengths=(100, 80))
    cfg = TrainConfig(datasets=(str(data),), out_dir=str(tmp_path / "run"), batch_size=32, lr=3e-3, warmup_steps=2,
                      total_steps=6, checkpoint_every=3, log_every=2, progress=False, device="cpu",
                      model=ModelSection(preset="tiny", denoiser={"width": 32, "heads": 2, "dropout_attn": 0.1}))
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    mp.spawn(_worker, args=(free_port(), str(path), str(tmp_path)), nprocs=WORLD, join=True)

    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD))
    weights = [k for k in r0 if k.startswith("w.")]
    assert weights and all(torch.equal(r0[k], r1[k]) for k in weights)
    assert not torch.equal(r0["first_ticks"], r1["first_ticks"])  # the ranks trained on different shards
    assert torch.isfinite(r0["losses"]).all() and torch.equal(r0["losses"], r1["losses"])  # all-reduced mean
    from diffuseloco_learning.model_checkpoint import load_checkpoint
    ckpt = tmp_path / "run" / "ckpt_latest"
    policy, _ = load_checkpoint(ckpt / "model.safetensors")  # rank 0 checkpointed the final weights
    assert all(torch.equal(policy.state_dict()[k[2:]], r0[k]) for k in weights)
    earlier, _ = load_checkpoint(tmp_path / "run" / "ckpt_00000003" / "model.safetensors")
    assert not torch.equal(earlier.denoiser.head.weight, policy.denoiser.head.weight)  # the weights did move
    rng = load_file(str(ckpt / "rng.safetensors"))
    assert {"rank0.torch", "rank1.torch", "rank0.noise", "rank1.noise"} <= set(rng)
    assert not torch.equal(rng["rank0.noise"], rng["rank1.noise"])
    with (tmp_path / "run" / "loss.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4, 6]  # rank 0 only: no duplicate rows
