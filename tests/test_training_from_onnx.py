"""Recovering a trainable policy from an exported file, and fine-tuning from it (`init_from`)."""

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from synthetic_data import write_synthetic

from diffuseloco_policy.config import ConfigError
from diffuseloco_policy.model_file import ModelMismatchError
from diffuseloco_learning.model_checkpoint import load_checkpoint
from diffuseloco_learning.training import ModelSection, TrainConfig, Trainer
from diffuseloco_learning.training.export import main as export_main
from diffuseloco_learning.training.from_onnx import main as from_onnx_main
from diffuseloco_learning.training.from_onnx import recover_policy

torch.set_num_threads(1)
TINY = ModelSection(preset="tiny", denoiser={"width": 32, "heads": 2, "layers": 2, "dropout_attn": 0.1})


def config(dataset, out, **kw):
    base = dict(datasets=(str(dataset),), out_dir=str(out), model=TINY, batch_size=32, lr=3e-3, warmup_steps=5,
                total_steps=40, checkpoint_every=100, log_every=10, progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny model trained on one dataset and exported (full graph + 2-step warm start), with its trainer."""
    root = tmp_path_factory.mktemp("source")
    dataset = write_synthetic(root / "a.zarr", lengths=(120, 90, 150), seed=0)
    trainer = Trainer(config(dataset, root / "run"))
    trainer.train()
    path = root / "model.onnx"
    export_main(["--checkpoint", str(root / "run" / "ckpt_latest"), "--out", str(path), "--warm-steps", "2"])
    return trainer, path


def test_the_recovered_policy_has_the_trained_weights(source):
    """Every weight comes back, the anonymous MatMul weights and the folded position slots included, and the
    fitted timestep slot reproduces the EMA model's time table."""
    trainer, path = source
    recovered, info = recover_policy(path)
    want, got = trainer.ema.model.state_dict(), recovered.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        if key != "denoiser.cond_pos_emb":
            assert torch.equal(got[key], want[key]), key
    torch.testing.assert_close(got["denoiser.cond_pos_emb"][:, 1:], want["denoiser.cond_pos_emb"][:, 1:],
                               rtol=0, atol=0)
    indices = recovered.full_indices()
    torch.testing.assert_close(recovered.time_table(indices), trainer.ema.model.time_table(indices), rtol=0,
                               atol=1e-5)
    assert info.spec == trainer.spec and info.normalizer.to_dict() == trainer.normalizer.to_dict()


def _rewrite(path, out, change):
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        replacement = change(tensor.name, numpy_helper.to_array(tensor))
        if replacement is not None:
            tensor.CopyFrom(numpy_helper.from_array(replacement, tensor.name))
    onnx.save(model, str(out))
    return out


def test_a_time_table_no_weights_can_produce_is_refused(source, tmp_path):
    """The check against the file can fail: one step's baked keys changed, no position vector reproduces them,
    and the recovery refuses instead of handing back a different model."""
    _, path = source

    def change_step_3_layer_1_keys(name, table):
        if name != "time.table":
            return None
        table = table.copy()
        table[3, 1, 0] += np.float32(0.05) * (table[3, 1, 0] != 0)
        return table

    bad = _rewrite(path, tmp_path / "bad.onnx", change_step_3_layer_1_keys)
    with pytest.raises(RuntimeError, match="differs from torch"):
        recover_policy(bad)


def test_a_graph_without_a_weight_is_refused(source, tmp_path):
    _, path = source
    model = onnx.load(str(path))
    kept = [t for t in model.graph.initializer if t.name != "policy.denoiser.head.bias"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(tmp_path / "cut.onnx"))
    with pytest.raises(ModelMismatchError, match="denoiser.head"):
        recover_policy(tmp_path / "cut.onnx")


def test_the_cli_writes_a_model_file_that_exports_back_to_the_same_actions(source, tmp_path, capsys):
    _, path = source
    out = tmp_path / "recovered.safetensors"
    from_onnx_main(["--model", str(path), "--out", str(out)])
    assert "matched against its graphs" in capsys.readouterr().out
    policy, info = load_checkpoint(out)
    export_main(["--checkpoint", str(out), "--out", str(tmp_path / "again.onnx")])
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    d = info.dims
    feeds = {"obs_history": rng.standard_normal((3, d.history, d.obs_dim)).astype(np.float32),
             "goal_history": rng.standard_normal((3, d.history, d.goal_dim)).astype(np.float32),
             "noise": rng.standard_normal(policy.noise_shape(3)).astype(np.float32)}
    first, again = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["actions"], feeds)[0]
                    for p in (path, tmp_path / "again.onnx"))
    np.testing.assert_allclose(again, first, atol=1e-4)


def test_fine_tuning_starts_from_the_file_and_keeps_its_normalizer(source, tmp_path):
    """init_from: the run starts with the file's weights (policy and EMA) and its normalizer, not one refitted on
    the new data, and training on the new data then moves the weights."""
    trainer, path = source
    other = write_synthetic(tmp_path / "b.zarr", lengths=(100, 140), seed=7)
    tuned = Trainer(config(other, tmp_path / "tune", init_from=str(path), total_steps=10))
    start = tuned.policy.state_dict()
    for key, value in trainer.ema.model.state_dict().items():
        if key != "denoiser.cond_pos_emb":
            assert torch.equal(start[key], value), key
            assert torch.equal(tuned.ema.model.state_dict()[key], value), key
    assert tuned.normalizer.to_dict() == trainer.normalizer.to_dict()
    fresh = Trainer(config(other, tmp_path / "fresh", total_steps=10))
    assert fresh.normalizer.to_dict() != trainer.normalizer.to_dict()   # the new data alone fits another one
    head = tuned.policy.denoiser.head.weight.detach().clone()
    tuned.train()
    assert not torch.equal(tuned.policy.denoiser.head.weight, head)
    saved, _ = load_checkpoint(tmp_path / "tune" / "ckpt_latest" / "ema.safetensors")
    assert saved.normalizer.to_dict() == trainer.normalizer.to_dict()
    record = json.loads((tmp_path / "tune" / "init_from.json").read_text())   # the model card names it by this
    assert record == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    # resumed, the run takes weights and normalizer from its checkpoint (the new data alone would fit another)
    resumed = Trainer(config(other, tmp_path / "tune", init_from=str(path), total_steps=10),
                      resume=str(tmp_path / "tune" / "ckpt_latest"))
    assert resumed.normalizer.to_dict() == trainer.normalizer.to_dict()
    assert torch.equal(resumed.policy.denoiser.head.weight, tuned.policy.denoiser.head.weight)


def test_fine_tuning_refuses_a_file_of_another_model(source, tmp_path):
    _, path = source
    wider = ModelSection(preset="tiny", denoiser={"width": 64, "heads": 2, "layers": 2, "dropout_attn": 0.1})
    other = write_synthetic(tmp_path / "b.zarr", lengths=(100, 140), seed=7)
    with pytest.raises(ConfigError, match="init_from .* is not the config's"):
        Trainer(config(other, tmp_path / "tune", init_from=str(path), model=wider))


def test_the_cli_fine_tunes_from_a_file_given_on_the_command_line(source, tmp_path):
    """--init-from overrides the config's init_from (a shipped preset names the stage it starts from; a user
    starts from the file they have)."""
    import yaml

    from diffuseloco_learning.training import __main__ as cli

    trainer, path = source
    other = write_synthetic(tmp_path / "b.zarr", lengths=(100, 140), seed=7)
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump(config(other, tmp_path / "tune", total_steps=4).to_dict()))
    tuned = cli.run(["--config", str(cfg), "--init-from", str(path), "--max-steps", "2", "--no-progress"])
    assert tuned.cfg.init_from == str(path) and tuned.step == 2
    assert tuned.normalizer.to_dict() == trainer.normalizer.to_dict()
    assert (tmp_path / "tune" / "init_from.json").exists()


def test_a_deepened_model_samples_what_the_file_samples_and_trains(source, tmp_path, capsys):
    """deepen: the added blocks start as the identity (the same actions for the same noise), the file it writes
    is a model a deeper config fine-tunes from, and training moves the new blocks."""
    from diffuseloco_learning.training.deepen import main as deepen_main
    from diffuseloco_learning.training.deepen import same_noise_predictions

    trainer, path = source
    out = tmp_path / "deep.safetensors"
    deepen_main(["--model", str(path), "--layers", "3", "--out", str(out)])
    assert "same samples" in capsys.readouterr().out
    deep, info = load_checkpoint(out)
    assert info.spec.denoiser.layers == 3
    assert same_noise_predictions(deep, trainer.ema.model.eval()) < 1e-6
    # the check can fail: a new block that is not the identity changes the predictions
    deep.denoiser.blocks[2].mlp[2].weight.data.normal_(std=0.1)
    assert same_noise_predictions(deep, trainer.ema.model) > 1e-2

    deeper_model = ModelSection(preset="tiny", denoiser={"width": 32, "heads": 2, "layers": 3, "dropout_attn": 0.1})
    other = write_synthetic(tmp_path / "b.zarr", lengths=(100, 140), seed=7)
    tuned = Trainer(config(other, tmp_path / "tune", init_from=str(out), model=deeper_model, total_steps=6))
    tuned.train()
    assert tuned.policy.denoiser.blocks[2].mlp[2].weight.abs().max() > 0
    with pytest.raises(SystemExit):
        deepen_main(["--model", str(path), "--layers", "2", "--out", str(tmp_path / "same.safetensors")])
    assert "adds layers" in capsys.readouterr().err
