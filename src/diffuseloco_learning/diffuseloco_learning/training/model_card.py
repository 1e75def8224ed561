"""Write the model card that ships beside a trained policy in models/.

    python -m diffuseloco_learning.training.model_card --model models/diffuseloco_cyberdog2.onnx \\
        --run out/train_small [out/train_finetune] --dataset data/experts.zarr [...] --eval out/eval_shipped/results.json \\
        [--notes notes.md] --out models/diffuseloco_cyberdog2.md

A file made from another shipped file by `export --from-model` (a narrower envelope, other per-skill gains) has
no training runs of its own: with --derived-from SOURCE_CARD the card takes the source card's Data and Training
sections, once it has checked that the source's files are intact and that both files hold the same graphs and
weights. A model fine-tuned from
another file (`init_from`) takes that file's Data and Training from --base-card, checked by the hash the run
recorded, before its own.

Why generated: every number in the card (file hashes, model size, data, training, evaluation) is read from the
artifacts themselves, so the card cannot drift from the files it describes; `verify_card` re-checks the hashes
(the shipped-model test does, so a model swapped without its card fails CI). Hand-written context goes in
--notes and is appended as is.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Optional, Sequence

import yaml

from ..diffusion.policy import build_policy
from ..evaluation.report import markdown as evaluation_markdown
from diffuseloco_policy.command_classes import describe_command_classes
from diffuseloco_policy.model_file import warm_graphs
from diffuseloco_policy.gains import describe_scales, kp_scales
from diffuseloco_policy.model_file import read_onnx_info
from .trainer import INIT_RECORD

HASH_ROW = re.compile(r"^\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})` \|$")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(model: Path) -> list[Path]:
    """The full-sampler graph and its warm-start siblings (name.warm<k>.onnx)."""
    return [model, *warm_graphs(model)]


def files_section(model: Path) -> list[str]:
    lines = ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| `{p.name}` | {p.stat().st_size} | `{sha256(p)}` |" for p in model_files(model)]
    return lines


def model_section(model: Path) -> list[str]:
    info = read_onnx_info(model)
    spec, config = info.spec, info.config
    params = sum(p.numel() for p in build_policy(config, spec, info.normalizer).parameters())
    if spec.kind == "diffusion":
        d, s = spec.denoiser, spec.scheduler
        network = (f"transformer denoiser, width {d.width}, {d.heads} heads, {d.layers} layers; "
                   f"{s.kind.upper()} {s.num_inference_steps} steps ({s.num_train_steps} trained), "
                   f"warm start {spec.warm_start_steps} steps")
    else:
        network = f"MLP {list(spec.mlp.hidden)} (behaviour cloning, deterministic)"
    obs = config.observation
    timing = "delayed s[t-{0}..t-1]".format(obs.history) if spec.delayed_inputs else \
        "current frame s[t-{0}..t] (ablation)".format(obs.history - 1)
    feedforward = (" and the velocity feed-forward (qd_des) to send with each, as the experts sent it"
                   if spec.predict_velocity else " (qd_des: the step to the next one)")
    return ["## Model", "",
            f"- {spec.kind}: {network}; {params / 1e6:.2f} M parameters",
            f"- inputs: {obs.history} frames, {timing}; observation {obs.obs_dim}-d "
            f"({', '.join(t.name for t in obs.terms)}), goal {obs.goal_dim}-d "
            f"({', '.join(t.name for t in obs.goal_terms)})",
            f"- output: {config.action.horizon}-step chunk of {len(config.robot.joint_names)} joint targets"
            f"{feedforward}, executed index {config.action.execute_index} (receding horizon, replanned every tick)",
            f"- robot: {config.robot.name}, joints {', '.join(config.robot.joint_names)}; control "
            f"{config.rates.control_hz:.0f} Hz, joint loop {config.rates.joint_loop_hz:.0f} Hz",
            f"- command ranges the file accepts (the policy node clamps to them): {config.describe_command_ranges()}",
            *([f"- command classes (unlabelled gaits: the goal names the class, the model picks the gait): "
               f"{describe_command_classes(config)}; a class commands "
               + ", ".join(f"{c.name} vx {list(c.vx)} vy {list(c.vy)} yaw {list(c.yaw_rate)}"
                           for c in config.commands if config.command_class(c.id) is not None)]
              if config.command_classes else []),
            f"- position gains the node drives each skill with: kp {config.robot.kp:g}, "
            f"{describe_scales(kp_scales(config))} (the data: kp {config.robot.kp:g} on motors randomized about it)",
            "- the file embeds its stack config and normalizer; the loader refuses a robot config that differs in "
            "what the policy depends on (layouts, rates, pose, joint limits, skills other than the robot's first "
            "ones); the node drives the file's own gains"]


def data_section(datasets: Sequence[Path]) -> list[str]:
    lines = ["## Data", ""]
    for dataset in datasets:
        lines += _dataset_lines(dataset)
    return lines


def _dataset_lines(dataset: Path) -> list[str]:
    import zarr

    attrs = dict(zarr.open_group(str(dataset), mode="r").attrs)
    stats, generator = attrs.get("stats", {}), attrs.get("generator", {})
    noise = generator.get("action_noise_std")
    disturbance = (f"; executed targets disturbed by correlated noise (DART), std {noise} action units, "
                   f"{generator.get('action_noise_correlation_s')} s time constant, labels the experts' own"
                   if noise else "")
    if generator.get("tick_jitter_steps"):
        disturbance += (f"; the physics steps between control ticks jittered by a standard deviation of "
                        f"{generator['tick_jitter_steps']:g}")
    if generator.get("learner"):
        disturbance += (f"; `{Path(generator['learner']).name}` drove {stats.get('learner_share', 0.0):.0%} of the "
                        f"ticks in turns of {generator.get('learner_stretch_s')} s on average, labels the experts' "
                        f"own (DAgger)")
    return [f"- `{dataset.name}` from `python -m diffuseloco_learning.data.generate` (seed {generator.get('seed')}, "
            f"{generator.get('episode_s')} s episodes, skill segments {generator.get('segment_s')} s, "
            f"randomized physics {generator.get('randomize')}); the experts act on "
            f"{'s[t-1], like the policy' if generator.get('expert_delayed', False) else 's[t], the current frame'}"
            f"{disturbance}",
            f"  - {stats.get('transitions', 0):,} transitions in {stats.get('episodes', 0):,} episodes of the "
            f"expert controllers; {stats.get('falls', 0)} episodes ended in a fall (cut "
            f"{stats.get('fall_trim_s', 0.0)} s before it)"]


def training_section(runs: Sequence[Path], earlier: Sequence[str] = (), earlier_details: Sequence[str] = ()
                     ) -> list[str]:
    """One bullet per run; each run after the first continued the one before it: resumed it (the steps add up to
    the last run's step count) or started from its EMA weights (init_from); the exported weights are the last
    run's. earlier / earlier_details: the bullets and config blocks of the stages before the first run (a model
    fine-tuned from another file)."""
    lines, details = ["## Training", "", *earlier], list(earlier_details)
    for stage, run in enumerate(runs):
        cfg = yaml.safe_load((run / "train_config.yaml").read_text())
        with (run / "loss.csv").open() as f:
            rows = list(csv.DictReader(f))
        log_every, batch = int(cfg["log_every"]), int(cfg["batch_size"])
        first, last = int(rows[0]["step"]) - log_every, int(rows[-1]["step"])
        wall_s = sum(log_every * batch / float(r["samples_per_s"]) for r in rows)
        tail = [float(r["loss"]) for r in rows[-20:]]
        data = ", ".join(f"`{Path(d).name}`" for d in cfg["datasets"])
        what = _origin(run, stage, runs[stage - 1] if stage else None, first)
        lines += [f"- `{run.name}`: {what} on {data}, to step {last:,} of batch {batch} "
                  f"({(last - first) * batch / 1e6:.1f} M samples), about {wall_s / 3600:.1f} h of compute on "
                  f"{cfg['device']} with {cfg['threads']} thread(s); AdamW lr {cfg['lr']}, betas {cfg['betas']}, "
                  f"weight decay {cfg['weight_decay']}, cosine schedule over {cfg['total_steps']} steps after "
                  f"{cfg['warmup_steps']} warm-up steps, EMA (power {cfg['ema']['power']}); final training loss "
                  f"(mean of the last {len(tail)} logs): {sum(tail) / len(tail):.4f}"]
        details += ["", f"<details><summary>training config: {run.name}</summary>", "", "```yaml",
                    yaml.safe_dump(cfg).strip(), "```", "", "</details>"]
    return lines + ["- `python -m diffuseloco_learning.training` with the config(s) below; the EMA weights of the last "
                    "run are exported"] + details


def _origin(run: Path, stage: int, previous: Optional[Path], first: int) -> str:
    """How a run started: from scratch, resuming the run above, or fine-tuning (init_from) a file or the run
    above's EMA weights with a fresh optimizer."""
    record = initial_file(run)
    if record is None:
        return f"resumed from the run above at step {first:,}" if stage else "trained from scratch"
    source = Path(record["path"])
    if previous is not None and source.resolve().parent == previous.resolve():
        return "fine-tuned from the EMA weights of the run above with a fresh optimizer and the same normalizer,"
    return (f"fine-tuned from `{source.name}` (sha256 `{record['sha256']}`{', trained as above' if not stage else ''})"
            f" with a fresh optimizer and the same normalizer,")


def initial_file(run: Path) -> Optional[dict[str, str]]:
    """The file (path, sha256) a fine-tune started from (the trainer's init_from record), or None."""
    record = run / INIT_RECORD
    return json.loads(record.read_text()) if record.exists() else None


def base_sections(runs: Sequence[Path], base_card: Optional[Path]) -> tuple[list[str], list[str], list[str]]:
    """Data lines, training bullets and training config blocks of the file the first run was fine-tuned from
    (none for a model trained from scratch); refused unless base_card is that file's card, by the hash the run
    recorded."""
    record = initial_file(runs[0]) if runs else None
    if record is None:
        if base_card:
            raise ValueError(f"--base-card {base_card}: {runs[0] if runs else 'no run'} was not fine-tuned from a file")
        return [], [], []
    name = Path(record["path"]).name
    if base_card is None:
        raise ValueError(f"{runs[0].name} was fine-tuned from {name}: give that file's card (--base-card) for the "
                         "data and training before it")
    if card_hashes(base_card).get(name) != record["sha256"]:
        raise ValueError(f"--base-card {base_card} does not list {name} with the sha256 {runs[0].name} started from")
    lead = f"Before the fine-tune below, `{name}` (sha256 `{record['sha256']}`) was trained on these, as its card says:"
    data = _facts(card_section(base_card, "Data")[2:])
    training = _facts(card_section(base_card, "Training")[2:])
    split = next((i for i, line in enumerate(training) if line.startswith("<details>")), len(training))
    bullets = [line for line in training[:split] if line and not line.startswith("- `python -m")]
    return [lead, "", *data, "", "The fine-tune:", ""], bullets, ["", *training[split:]]


def _facts(lines: list[str]) -> list[str]:
    """A card section's bullets and <details> blocks without its prose, which speaks of the file it describes
    ('This file is ...') and would be wrong in another file's card."""
    kept, in_details = [], False
    for line in lines:
        in_details = in_details or line.startswith("<details>")
        if in_details or line.startswith(("- ", "  ")) or not line:
            kept.append(line)
        in_details = in_details and not line.startswith("</details>")
    while kept and not kept[0]:
        kept.pop(0)
    return kept


def same_weights(a: Path, b: Path) -> bool:
    """Whether two model files (with their warm-start graphs) hold the same graphs and weights; metadata aside."""
    import onnx

    def graphs(model: Path) -> list[bytes]:
        return [onnx.load(str(p)).graph.SerializeToString() for p in model_files(model)]

    return [p.name.replace(a.stem, "", 1) for p in model_files(a)] == \
        [p.name.replace(b.stem, "", 1) for p in model_files(b)] and graphs(a) == graphs(b)


def card_section(card: Path, heading: str) -> list[str]:
    """The lines of one '## heading' section of a card, up to the next '## ' heading."""
    lines = card.read_text().splitlines()
    start = lines.index(f"## {heading}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    while lines[end - 1] == "":
        end -= 1
    return lines[start:end]


def derived_sections(model: Path, source_card: Path) -> list[list[str]]:
    """Data and Training of the file `model` was made from (refused unless the source is intact and holds the
    same graphs and weights), under a line that says where they come from."""
    problems = verify_card(source_card)
    source = source_card.with_suffix(".onnx")
    if problems:
        raise ValueError(f"--derived-from {source_card}: " + "; ".join(problems))
    if not same_weights(model, source):
        raise ValueError(f"--derived-from {source_card}: {model.name} does not hold the same graphs and weights as "
                         f"{source.name}; only a file made by `export --from-model` can borrow its card")
    origin = (f"This file is `{source.name}` (sha256 `{sha256(source)}`) with other deployment settings, written by "
              f"`python -m diffuseloco_learning.training.export --from-model`: the same graphs and weights; only the "
              f"command ranges or per-skill gains in its metadata differ. Its data and training were these.")
    data, training = card_section(source_card, "Data"), card_section(source_card, "Training")
    return [data[:2] + [origin, ""] + data[2:], training]


def evaluation_section(results: Path) -> list[str]:
    report = json.loads(results.read_text())
    table = evaluation_markdown(report["summary"], report["meta"])
    body = [line.replace("# ", "### ", 1) if line.startswith("#") else line for line in table.splitlines()]
    return ["## Evaluation", "", f"`python -m diffuseloco_learning.evaluation` (`{results}`; "
            f"{report['meta']['wall_s'] / 60:.0f} min wall time):", "", *body]


def write_card(model: Path, runs: Sequence[Path], datasets: Sequence[Path], results: Path, out: Path,
               notes: Optional[Path] = None, derived_from: Optional[Path] = None, base_card: Optional[Path] = None
               ) -> Path:
    """runs: the training runs in order (a fine-tune after the run it resumed); datasets: every dataset they
    read; or derived_from: the card of the file `model` was narrowed from. base_card: the card of the file the
    first run was fine-tuned from (init_from), whose data and training come first."""
    if derived_from:
        provenance = derived_sections(model, derived_from)
    else:
        base_data, base_bullets, base_details = base_sections(runs, base_card)
        data = data_section(datasets)
        data = data[:2] + base_data + [line for line in data[2:] if line not in base_data]
        provenance = [data, training_section(runs, base_bullets, base_details)]
    title = f"# Model card: {model.stem}"
    sections = [[title, "", f"A DiffuseLoco policy for the simulated CyberDog 2, trained offline on expert "
                 f"demonstrations. Run it in simulation with `python -m diffuseloco_bringup.run sim --model {model}`; "
                 f"evaluate it as the node runs it (its envelope, gains and sampler settings) with "
                 f"`python -m diffuseloco_learning.evaluation --policy {model}`."],
                files_section(model), model_section(model), *provenance, evaluation_section(results)]
    if notes:
        sections.append(notes.read_text().rstrip().splitlines())
    out.write_text("\n\n".join("\n".join(s) for s in sections) + "\n")
    return out


def card_hashes(card: Path) -> dict[str, str]:
    """file name -> sha256 as the card lists them."""
    return {m.group(1): m.group(2) for line in card.read_text().splitlines() if (m := HASH_ROW.match(line))}


def verify_card(card: Path) -> list[str]:
    """Problems: a listed file that is missing or whose hash differs, or a card that lists no file."""
    listed = card_hashes(card)
    if not listed:
        return [f"{card}: lists no files"]
    problems = []
    for name, digest in listed.items():
        path = card.parent / name
        if not path.is_file():
            problems.append(f"{name}: listed in {card.name} but missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: sha256 differs from {card.name}")
    return problems


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffuseloco_learning.training.model_card",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the full-sampler .onnx (warm graphs beside it)")
    parser.add_argument("--run", type=Path, nargs="+", default=[],
                        help="training out_dir(s) (train_config.yaml, loss.csv), in order: a fine-tune after the "
                             "run it resumed")
    parser.add_argument("--dataset", type=Path, nargs="+", default=[], help="every dataset the runs read")
    parser.add_argument("--derived-from", type=Path, default=None, metavar="SOURCE_CARD.md",
                        help="instead of --run/--dataset: the card of the file this one was narrowed from")
    parser.add_argument("--base-card", type=Path, default=None, metavar="CARD.md",
                        help="with --run: the card of the file the first run was fine-tuned from (init_from)")
    parser.add_argument("--eval", type=Path, required=True, help="results.json of the evaluation command")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended as is")
    parser.add_argument("--out", type=Path, default=None, help="default: the model path with .md")
    args = parser.parse_args(argv)
    if bool(args.derived_from) == bool(args.run and args.dataset):
        parser.error("give either --run and --dataset (a trained model) or --derived-from (a narrowed copy)")
    try:
        out = write_card(args.model, args.run, args.dataset, args.eval, args.out or args.model.with_suffix(".md"),
                         args.notes, args.derived_from, args.base_card)
    except ValueError as error:
        parser.error(str(error))
    print(out)


if __name__ == "__main__":
    main()
