"""The model card is generated from the artifacts it describes, and its hashes catch a swapped or broken file."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from synthetic_data import write_synthetic
from tiny_model import export_standing_model

from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import build_policy
from diffuseloco_policy.model_file import read_onnx_info
from diffuseloco_learning.evaluation import load_matrix
from diffuseloco_learning.evaluation.cli import evaluate
from diffuseloco_learning.training import TrainConfig
from diffuseloco_learning.training.model_card import card_hashes, sha256, verify_card, write_card


def write_run(run, datasets, total_steps, rows):
    """A training out_dir as the trainer leaves it: its config and the loss log (step, loss)."""
    run.mkdir()
    cfg = TrainConfig(datasets=tuple(str(d) for d in datasets), out_dir=str(run), total_steps=total_steps,
                      log_every=50)
    (run / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    with (run / "loss.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr", "ema_decay", "samples_per_s"])
        writer.writerows([[step, loss, 1e-4, 0.9, 500.0] for step, loss in rows])
    return run


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    model = export_standing_model(root / "models" / "dog.onnx")
    dataset = write_synthetic(root / "d.zarr")
    run = write_run(root / "run", [dataset], 100, [(50, 0.5), (100, 0.25)])
    config = load_config()
    matrix = load_matrix("eval_tiny", config)
    evaluate([str(model)], matrix, config, seeds=1, out=root / "eval", ablations=["none"], plots=False,
             log=lambda *_: None)
    notes = root / "notes.md"
    notes.write_text("## Limitations\n\nA test model.\n")
    return write_card(model, [run], [dataset], root / "eval" / "results.json", model.with_suffix(".md"), notes)


def test_card_lists_every_file_with_its_hash(card):
    hashes = card_hashes(card)
    assert set(hashes) == {"dog.onnx", "dog.warm2.onnx"}
    assert hashes["dog.onnx"] == sha256(card.parent / "dog.onnx")
    assert verify_card(card) == []


def test_card_reads_its_numbers_from_the_artifacts(card):
    text = card.read_text()
    assert "trained from scratch on `d.zarr`, to step 100 of batch 256 (0.0 M samples)" in text
    assert "final training loss (mean of the last 2 logs): 0.3750" in text
    info = read_onnx_info(card.parent / "dog.onnx")
    params = sum(p.numel() for p in build_policy(info.config, info.spec, info.normalizer).parameters())
    assert f"{params / 1e6:.2f} M parameters" in text and "delayed s[t-8..t-1]" in text
    trot = info.config.skill("trot")
    assert f"trot vx [{trot.vx[0]:g}, {trot.vx[1]:g}] vy [{trot.vy[0]:g}, {trot.vy[1]:g}]" in text
    assert "| dog[onnx] | **all** | 2 |" in text  # the evaluation table of the two eval_tiny scenarios
    assert text.rstrip().endswith("A test model.")


def test_a_changed_or_missing_file_fails_verification(card, tmp_path):
    copy = tmp_path / card.name
    copy.write_text(card.read_text())
    (tmp_path / "dog.onnx").write_bytes((card.parent / "dog.onnx").read_bytes()[:-1] + b"\0")
    problems = verify_card(copy)
    assert any("dog.onnx: sha256 differs" in p for p in problems)
    assert any("dog.warm2.onnx: listed in dog.md but missing" in p for p in problems)
    empty = tmp_path / "empty.md"
    empty.write_text("# nothing\n")
    assert verify_card(empty) == [f"{empty}: lists no files"]


def test_a_fine_tuned_model_lists_both_runs_and_every_dataset(card, tmp_path):
    """A model resumed on other data (the DART fine-tune) has a lineage: the card names both runs in order, the
    step the second resumed at, and the loss and data of each."""
    noisy = write_synthetic(tmp_path / "noisy.zarr")
    first = write_run(tmp_path / "base", [tmp_path / "clean.zarr"], 100, [(50, 0.5), (100, 0.25)])
    second = write_run(tmp_path / "finetune", [tmp_path / "clean.zarr", noisy], 200, [(150, 0.4), (200, 0.2)])
    model = card.parent / "dog.onnx"
    out = write_card(model, [first, second], [noisy], card.parent.parent / "eval" / "results.json",
                     tmp_path / "dog.md")
    text = out.read_text()
    assert "- `base`: trained from scratch on `clean.zarr`, to step 100" in text
    assert "- `finetune`: resumed from the run above at step 100 on `clean.zarr`, `noisy.zarr`, to step 200" in text
    assert "final training loss (mean of the last 2 logs): 0.3750" in text
    assert "final training loss (mean of the last 2 logs): 0.3000" in text
    assert text.count("<summary>training config:") == 2 and "- `noisy.zarr` from" in text


def test_a_model_fine_tuned_from_a_file_carries_that_files_lineage(card, tmp_path):
    """init_from: the card starts with the data and training of the file the run started from (from that file's
    card, matched by the hash the run recorded), then the fine-tune's own."""
    from diffuseloco_learning.training.trainer import INIT_RECORD, record_initial_file

    fresh = write_synthetic(tmp_path / "fresh.zarr", seed=5)
    run = write_run(tmp_path / "tune", [fresh], 60, [(50, 0.3), (60, 0.2)])
    record_initial_file(card.parent / "dog.onnx", run / INIT_RECORD)
    results = card.parent.parent / "eval" / "results.json"
    text = write_card(card.parent / "dog.onnx", [run], [fresh], results, tmp_path / "tuned.md",
                      base_card=card).read_text()
    data = text[text.index("## Data"):text.index("## Training")]
    assert data.index("- `d.zarr` from") < data.index("- `fresh.zarr` from")
    training = text[text.index("## Training"):text.index("## Evaluation")]
    assert training.index("- `run`: trained from scratch") < training.index(
        f"- `tune`: fine-tuned from `dog.onnx` (sha256 `{sha256(card.parent / 'dog.onnx')}`")
    assert training.count("- `python -m diffuseloco_learning.training` with the config(s)") == 1
    assert training.index("- `tune`:") < training.index("- `python -m") < training.index("<details>")
    assert data.count("- `fresh.zarr` from") == 1 and "was trained on these" in data
    assert training.count("<summary>training config:") == 2

    # a fine-tune of the run before it in the list (init_from its checkpoint) says so instead of naming a file
    chained = write_run(tmp_path / "chained", [fresh], 60, [(50, 0.3), (60, 0.2)])
    (chained / INIT_RECORD).write_text(json.dumps({"path": str(run / "ckpt_latest"), "sha256": "ab" * 32}))
    text = write_card(card.parent / "dog.onnx", [run, chained], [fresh], results, tmp_path / "chained.md",
                      base_card=card).read_text()
    assert ("- `chained`: fine-tuned from the EMA weights of the run above with a fresh optimizer and the same "
            "normalizer, on `fresh.zarr`, to step 60") in text

    with pytest.raises(ValueError, match="give that file's card"):
        write_card(card.parent / "dog.onnx", [run], [fresh], results, tmp_path / "x.md")
    (run / INIT_RECORD).write_text((run / INIT_RECORD).read_text().replace(sha256(card.parent / "dog.onnx"), "0" * 64))
    with pytest.raises(ValueError, match="does not list dog.onnx with the sha256"):
        write_card(card.parent / "dog.onnx", [run], [fresh], results, tmp_path / "x.md", base_card=card)


def test_the_data_section_says_which_model_drove_dagger_data(tmp_path):
    """A DAgger dataset names the learner that drove it and its measured share; expert-only data says nothing of it."""
    import zarr

    from diffuseloco_learning.training.model_card import data_section

    plain_data, dagger = write_synthetic(tmp_path / "experts.zarr"), write_synthetic(tmp_path / "dagger.zarr")
    attrs = zarr.open_group(str(dagger), mode="r+").attrs
    attrs["generator"] = {"seed": 2, "learner": "models/preview.onnx", "learner_stretch_s": 0.1}
    attrs["stats"] = {"transitions": 360, "learner_share": 0.513}
    text = "\n".join(data_section([plain_data, dagger]))
    assert "`preview.onnx` drove 51% of the ticks in turns of 0.1 s on average" in text
    assert text.count("DAgger") == 1


def test_a_narrowed_copy_borrows_its_sources_data_and_training(card, tmp_path):
    """A file narrowed by `export --from-model` has no runs of its own: its card takes the source card's Data and
    Training, says where they come from, and lists its own files and ranges."""
    from diffuseloco_learning.training.export import main as export_main

    narrowed = tmp_path / "narrow.onnx"
    export_main(["--from-model", str(card.parent / "dog.onnx"), "--out", str(narrowed), "--envelope",
                 "bound.vx=0:0.2", "--gain-scale", "trot=0.8"])
    out = write_card(narrowed, [], [], card.parent.parent / "eval" / "results.json", tmp_path / "narrow.md",
                     derived_from=card)
    text, source = out.read_text(), card.read_text()
    assert set(card_hashes(out)) == {"narrow.onnx", "narrow.warm2.onnx"} and verify_card(out) == []
    assert f"This file is `dog.onnx` (sha256 `{sha256(card.parent / 'dog.onnx')}`) with other deployment" in text
    assert "trained from scratch on `d.zarr`, to step 100 of batch 256" in text
    for line in source.splitlines():
        if line.startswith("- `d.zarr` from") or line.startswith("<summary>training config"):
            assert line in text
    assert "bound vx [0, 0.2]" in text and "bound vx [0, 0.2]" not in source
    kp = f"kp {load_config().robot.kp:g}"   # the fixture's data: the experts' gains
    assert f"drives each skill with: {kp}, trot x0.8 (" in text
    assert f"drives each skill with: {kp}, robot.kp in every skill (" in source


def test_a_card_is_borrowed_only_by_the_same_weights(card, tmp_path):
    other = export_standing_model(tmp_path / "other.onnx", seed=1)
    with pytest.raises(ValueError, match="does not hold the same graphs and weights"):
        write_card(other, [], [], card.parent.parent / "eval" / "results.json", tmp_path / "other.md",
                   derived_from=card)
    for name in ("dog.onnx", "dog.warm2.onnx"):
        (tmp_path / name).write_bytes((card.parent / name).read_bytes())
    broken = tmp_path / "dog.md"
    broken.write_text(card.read_text().replace(sha256(card.parent / "dog.onnx"), "0" * 64))
    with pytest.raises(ValueError, match="sha256 differs"):
        write_card(tmp_path / "dog.onnx", [], [], card.parent.parent / "eval" / "results.json",
                   tmp_path / "x.md", derived_from=broken)
    assert not (tmp_path / "other.md").exists() and not (tmp_path / "x.md").exists()
