"""CLI: train (or resume) a policy from a YAML config; works alone or under torchrun (DDP).

    python -m diffuseloco_learning.training --config train_small [--resume out/train_small/ckpt_latest] [--max-steps N]
    torchrun --nproc_per_node 4 -m diffuseloco_learning.training --config train_paper

--config takes a path or the name of a shipped preset (diffuseloco_learning's configs/train_*.yaml). With --resume
and no --config, the config stored in the checkpoint is used. --max-steps N stops after N steps of THIS run
(the schedule still spans total_steps), so a long training can be done in several resumed sessions.
--init-from fine-tunes from a model file or checkpoint (the config's init_from): its weights and normalizer.
"""

from __future__ import annotations

import argparse
from typing import Optional

from diffuseloco_policy.config import ConfigError
from .checkpoint import latest_checkpoint, read_checkpoint
from .config import load_train_config, train_config_from_dict
from .trainer import Trainer


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.training", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="train YAML path or shipped preset name (train_small, train_paper)")
    parser.add_argument("--resume", help="checkpoint directory, e.g. out/run/ckpt_latest; 'auto': the out "
                                         "dir's ckpt_latest if there is one")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps of this run")
    parser.add_argument("--out-dir", default=None, help="override out_dir")
    parser.add_argument("--dataset", action="append", default=None, help="override datasets (repeatable)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="override init_from: fine-tune from this model file (.onnx, .safetensors) or checkpoint")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run(argv: Optional[list[str]] = None) -> Trainer:
    args = parse_args(argv)
    resume = args.resume
    if args.config:
        cfg = load_train_config(args.config)
    elif resume and resume != "auto":
        cfg = train_config_from_dict(read_checkpoint(resume)["state"]["train_config"])
    else:
        raise ConfigError("give --config (or --resume with a checkpoint to take the config from)")
    changes = {}
    if args.out_dir:
        changes["out_dir"] = args.out_dir
    if args.dataset:
        changes["datasets"] = tuple(args.dataset)
    if args.init_from:
        changes["init_from"] = args.init_from
    if args.no_progress:
        changes["progress"] = False
    cfg = cfg.replace(**changes) if changes else cfg
    if resume == "auto":
        found = latest_checkpoint(cfg.out_dir)
        resume = str(found) if found else None
    trainer = Trainer(cfg, resume=resume)
    try:
        trainer.train(max_steps=args.max_steps)
        if trainer.dist.enabled and not trainer.ranks_in_sync():
            raise RuntimeError("DDP ranks ended with different weights")
    finally:
        trainer.close()
    if trainer.dist.is_main and trainer.history:
        last = trainer.history[-1]
        print(f"step {trainer.step}: loss {last['loss']:.4f}, {last['samples_per_s']:.0f} samples/s; "
              f"checkpoint {trainer.out_dir / 'ckpt_latest'}")
    return trainer


def main(argv: Optional[list[str]] = None) -> None:
    run(argv)


if __name__ == "__main__":
    main()
