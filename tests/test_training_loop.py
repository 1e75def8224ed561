"""Training loop: the loss falls, checkpoints are pickle-free, resume is bit-exact, the EMA model exports."""

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from synthetic_data import write_synthetic

from diffuseloco_policy.config import ConfigError, load_config
from diffuseloco_learning.evaluation.cli import robot_config
from diffuseloco_learning.evaluation.policies import make_policy
from diffuseloco_policy.gains import kp_scales
from diffuseloco_policy.model_file import read_onnx_info, within_trained_ranges
from diffuseloco_learning.model_checkpoint import load_checkpoint
from diffuseloco_policy.runtime import OnnxRuntime
from diffuseloco_learning.torch_runtime import TorchRuntime
from diffuseloco_learning.training import EMASection, ModelSection, TrainConfig, Trainer, ema_decay, lr_factor
from diffuseloco_learning.training import __main__ as cli
from diffuseloco_learning.training.checkpoint import read_checkpoint
from diffuseloco_learning.training.config import load_train_config
from pathlib import Path
from diffuseloco_learning.training.export import main as export_main

RESEARCH = Path(__file__).resolve().parents[1] / "docs" / "research" / "presets"  # experiment-only presets

torch.set_num_threads(1)
TINY = ModelSection(preset="tiny", denoiser={"width": 32, "heads": 2, "layers": 2, "dropout_attn": 0.1})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("data") / "d.zarr", lengths=(120, 90, 150))


def config(dataset, out, **kw):
    base = dict(datasets=(str(dataset),), out_dir=str(out), model=TINY, batch_size=32, lr=3e-3, warmup_steps=5,
                total_steps=60, checkpoint_every=20, keep_checkpoints=2, log_every=10, progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(config(dataset, out))
    history = trainer.train()
    return trainer, history, out


def test_loss_decreases_and_is_logged(trained):
    trainer, history, out = trained
    losses = [r["loss"] for r in history]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    with (out / "loss.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(10, 61, 10))
    assert set(rows[0]) == {"step", "loss", "lr", "ema_decay", "samples_per_s"}
    assert float(rows[-1]["samples_per_s"]) > 0 and float(rows[0]["ema_decay"]) > 0


def test_checkpoint_files_are_safe_and_loadable(trained):
    trainer, _, out = trained
    latest = out / "ckpt_latest"
    assert latest.resolve().name == "ckpt_00000060"
    assert sorted(p.name for p in out.glob("ckpt_0*")) == ["ckpt_00000040", "ckpt_00000060"]  # keep 2
    assert sorted(p.name for p in latest.iterdir()) == ["ema.safetensors", "model.safetensors",
                                                         "optimizer.safetensors", "rng.safetensors", "state.json"]
    state = json.loads((latest / "state.json").read_text())
    assert state["step"] == 60 and state["ema_step"] == 60
    ema, info = load_checkpoint(latest / "ema.safetensors", robot=load_config())  # the runtime's loader
    assert info.spec == trainer.spec
    for name, value in ema.state_dict().items():
        assert torch.equal(value, trainer.ema.model.state_dict()[name]), name
    # normalizer fitted on the data is stored with the model
    assert info.normalizer.to_dict() == trainer.normalizer.to_dict()


def test_lr_schedule_and_ema_formula():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(54, 10, 100) == pytest.approx(0.5) and lr_factor(99, 10, 100) == pytest.approx(0.0)
    cfg = EMASection()
    assert ema_decay(0, cfg) == 0.0 and ema_decay(1, cfg) == 0.0
    assert ema_decay(11, cfg) == pytest.approx(1 - 11 ** -0.75)
    assert ema_decay(10**9, cfg) == 0.9999


def _snapshot(trainer):
    opt = trainer.optimizer.state_dict()["state"]
    return ({k: v.clone() for k, v in trainer.policy.state_dict().items()},
            {k: v.clone() for k, v in trainer.ema.model.state_dict().items()},
            {(p, n): v.clone() for p, s in opt.items() for n, v in s.items()})


def _assert_same(a, b):
    for da, db in zip(a, b):
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), k


def test_resume_is_bit_identical(dataset, tmp_path):
    # 11 batches per epoch: the resumed part crosses an epoch boundary; dropout is on (RNG state matters)
    kw = dict(total_steps=16, checkpoint_every=6, keep_checkpoints=5)
    full = Trainer(config(dataset, tmp_path / "full", **kw))
    full.train()
    first = Trainer(config(dataset, tmp_path / "split", **kw))
    first.train(max_steps=7)  # stops off the checkpoint grid: the end-of-run checkpoint is the one resumed
    assert read_checkpoint(tmp_path / "split" / "ckpt_latest")["state"]["step"] == 7
    resumed = Trainer(config(dataset, tmp_path / "split", **kw), resume=str(tmp_path / "split" / "ckpt_latest"))
    assert resumed.step == 7
    resumed.train()
    assert resumed.step == full.step == 16
    _assert_same(_snapshot(full), _snapshot(resumed))
    with (tmp_path / "split" / "loss.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [7, 10, 16]

    # the comparison is sensitive: the same resume with a different noise stream does not match
    other = Trainer(config(dataset, tmp_path / "other", **kw), resume=str(tmp_path / "split" / "ckpt_00000007"))
    other.noise.manual_seed(12345)
    other.train()
    assert not torch.equal(other.policy.denoiser.head.weight, full.policy.denoiser.head.weight)


def test_cli_runs_resumes_and_exports_ema_matching_torch(dataset, tmp_path):
    cfg = config(dataset, tmp_path / "cli", total_steps=40, checkpoint_every=100)
    path = tmp_path / "train.yaml"
    import yaml
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_train_config(path) == cfg
    cli.main(["--config", str(path), "--max-steps", "25", "--no-progress"])
    trainer = cli.run(["--resume", str(tmp_path / "cli" / "ckpt_latest"), "--no-progress"])  # config from ckpt
    assert trainer.step == 40

    onnx_path = tmp_path / "models" / "policy.onnx"
    export_main(["--checkpoint", str(tmp_path / "cli" / "ckpt_latest"), "--out", str(onnx_path)])
    assert (tmp_path / "models" / "policy.warm2.onnx").exists()

    robot = load_config()
    onnx_rt = OnnxRuntime(onnx_path, robot, warm_start_steps=2)
    torch_rt = TorchRuntime(trainer.ema.model, onnx_rt.info, warm_start_steps=2)
    raw_rt = TorchRuntime(trainer.policy, onnx_rt.info, warm_start_steps=2)
    batch = trainer.data.get_batch(np.arange(0, 300, 37))
    obs, goal = batch["obs"].numpy(), batch["goal"].numpy()
    rng = np.random.default_rng(0)
    full_noise = rng.standard_normal(onnx_rt.noise_shape(len(obs), warm=False)).astype(np.float32)
    warm_noise = rng.standard_normal(onnx_rt.noise_shape(len(obs), warm=True)).astype(np.float32)
    got_full, want_full = onnx_rt.predict(obs, goal, full_noise), torch_rt.predict(obs, goal, full_noise)
    np.testing.assert_allclose(got_full, want_full, atol=1e-4)
    got_warm = onnx_rt.predict(obs, goal, warm_noise, warm=True)
    want_warm = torch_rt.predict(obs, goal, warm_noise, warm=True)
    np.testing.assert_allclose(got_warm, want_warm, atol=1e-4)
    # it is the EMA that was exported, not the raw weights (which sample visibly different actions)
    assert np.abs(raw_rt.predict(obs, goal, full_noise) - got_full).max() > 1e-3


def changed_fields(recipe, base) -> set[str]:
    """The top-level training-config fields in which `recipe` differs from `base`."""
    theirs = base.to_dict()
    return {k for k, v in recipe.to_dict().items() if v != theirs[k]}


def test_shipped_presets_load():
    small, paper = load_train_config("train_small"), load_train_config("train_paper.yaml")
    assert small.model.spec().kind == paper.model.spec().kind == "diffusion"
    assert paper.batch_size == 4096 and paper.lr == 1e-4 and paper.betas == (0.9, 0.95)
    assert paper.weight_decay == 1e-3 and paper.ema.power == 0.75 and paper.ema.max_value == 0.9999
    assert paper.model.spec().denoiser.width == 256 and paper.model.spec().denoiser.layers == 6
    assert small.delayed and paper.delayed
    ablation = load_train_config(RESEARCH / "train_small_current_frame.yaml")
    mlp = load_train_config(RESEARCH / "train_mlp.yaml")
    assert not ablation.delayed and not ablation.spec().delayed_inputs and small.spec().delayed_inputs
    assert mlp.spec().kind == "bc_mlp" and mlp.delayed
    # the comparisons differ from the shipped preset only where they are meant to
    for other, field in ((ablation, "delayed"), (mlp, "model")):
        changed = changed_fields(other, small)
        assert changed == {field, "out_dir"}
    # the shipped model's second stage resumes train_small on more data, on to a longer schedule
    finetune = load_train_config("train_small_dart")
    changed = changed_fields(finetune, small)
    assert changed == {"datasets", "out_dir", "total_steps"}
    assert finetune.datasets[0] == small.datasets[0] and finetune.total_steps > small.total_steps
    # the predicted-feed-forward recipe is the shipped one with that switch on (and data that records it)
    for recipe, base in (("train_small_qd", small), ("train_small_qd_dart", finetune)):
        qd = load_train_config(recipe)
        changed = changed_fields(qd, base)
        assert changed == {"datasets", "out_dir", "model"}
        assert qd.spec().predict_velocity and not base.spec().predict_velocity
        assert qd.spec() == dataclasses.replace(base.spec(), predict_velocity=True)
    # and its third stage resumes the second on one more DART run, on to a longer schedule
    second, third = load_train_config("train_small_qd_dart"), load_train_config("train_small_qd_dart_long")
    changed = changed_fields(third, second)
    assert changed == {"datasets", "out_dir", "total_steps"}
    assert third.datasets[:2] == second.datasets and len(third.datasets) == 3
    assert third.total_steps > second.total_steps
    # the comparisons on the feed-forward data differ from its first stage only where they are meant to
    first = load_train_config("train_small_qd")
    ablation_qd, mlp_qd = load_train_config("train_small_qd_current_frame"), load_train_config("train_mlp_qd")
    for other, field in ((ablation_qd, "delayed"), (mlp_qd, "model")):
        changed = changed_fields(other, first)
        assert changed == {field, "out_dir"}
    assert not ablation_qd.spec().delayed_inputs and ablation_qd.spec().predict_velocity
    assert mlp_qd.spec().kind == "bc_mlp" and mlp_qd.spec().predict_velocity and mlp_qd.delayed
    # the fine-tune starts from the shipped file, so it must train that file's model
    fourth = load_train_config("train_small_qd_finetune")
    assert fourth.init_from and fourth.spec() == read_onnx_info(fourth.init_from).spec == third.spec()
    # the capacity probe (docs/research/presets): the fine-tune with 4 decoder layers (deepen), one more DART run
    deep = load_train_config(RESEARCH / "train_deep4_qd.yaml")
    assert deep.spec() == dataclasses.replace(fourth.spec(), denoiser=dataclasses.replace(
        fourth.spec().denoiser, layers=4)) and deep.datasets[:3] == fourth.datasets and len(deep.datasets) == 4
    # and trained longer from the shipped file directly, with one more DART run at the tops of the ranges
    longer = load_train_config(RESEARCH / "train_deep4_qd_long.yaml")
    assert longer.spec() == deep.spec() and longer.datasets[:4] == deep.datasets and len(longer.datasets) == 5
    assert longer.total_steps > deep.total_steps
    # the weak-gain probe fine-tunes the shipped model itself on stage 4's data and the runs at the tops
    weak = load_train_config(RESEARCH / "train_small_qd_weak.yaml")
    assert weak.spec() == fourth.spec() and weak.init_from == fourth.init_from
    assert weak.datasets[:3] == fourth.datasets and set(longer.datasets[-1:]) < set(weak.datasets)


def test_a_preset_names_its_base_and_gives_only_what_differs(tmp_path):
    """`base:` merges mappings key by key, replaces everything else, replaces a mapping of another kind whole,
    finds the base beside the file before the shipped presets, and refuses a loop or a missing base."""
    (tmp_path / "mine.yaml").write_text("base: train_small_qd\ndatasets: [data/mine.zarr]\nout_dir: out/mine\n"
                                        "model: {denoiser: {dropout_attn: 0.2}}\nlr: 1.0e-4\n")
    mine, qd = load_train_config(tmp_path / "mine.yaml"), load_train_config("train_small_qd")
    assert changed_fields(mine, qd) == {"datasets", "out_dir", "model", "lr"}
    assert mine.model.denoiser == {"dropout_attn": 0.2} and mine.model.predict_velocity and mine.model.preset == "tiny"
    assert mine.model.scheduler == qd.model.scheduler and mine.datasets == ("data/mine.zarr",)
    (tmp_path / "mlp.yaml").write_text("base: mine\nmodel: {kind: bc_mlp}\n")   # beside it, before the presets
    mlp = load_train_config(tmp_path / "mlp.yaml")
    assert mlp.model.kind == "bc_mlp" and mlp.model.denoiser == {} and not mlp.model.predict_velocity
    assert mlp.lr == 1e-4 and mlp.datasets == ("data/mine.zarr",)
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_train_config(tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("base: no_such_preset\n")
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "lost.yaml")


def test_every_preset_names_a_base_except_the_roots():
    """The small-model presets share train_small; only it and the paper's recipe stand alone."""
    from diffuseloco_learning.presets import presets_dir
    import yaml

    for path in list(presets_dir().glob("train_*.yaml")) + list(RESEARCH.glob("train_*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert ("base" in data) == (path.stem not in ("train_small", "train_paper")), path.name
        load_train_config(path)


def test_a_current_frame_model_says_so_in_its_files(dataset, tmp_path):
    trainer = Trainer(config(dataset, tmp_path / "run", delayed=False, total_steps=2, checkpoint_every=2))
    trainer.train()
    onnx_path = tmp_path / "policy.onnx"
    export_main(["--checkpoint", str(tmp_path / "run" / "ckpt_latest"), "--out", str(onnx_path)])
    assert not OnnxRuntime(onnx_path, load_config()).info.spec.delayed_inputs
    with pytest.raises(Exception, match="differs"):  # resuming it as a delayed-input run is refused
        Trainer(config(dataset, tmp_path / "run"), resume=str(tmp_path / "run" / "ckpt_latest"))


def test_trains_on_the_generators_output(tmp_path):
    """The real generator's output (public API, 2 short episodes) passes the dataset check and trains."""
    from diffuseloco_learning.data.generate import GenerateSettings, generate

    data = tmp_path / "gen.zarr"
    generate(load_config(), data, 100, GenerateSettings(seed=0, episode_s=1.0), workers=1, progress=False)
    trainer = Trainer(config(data, tmp_path / "run", total_steps=30, batch_size=16, checkpoint_every=100))
    assert len(trainer.data) == 100
    losses = [r["loss"] for r in trainer.train()]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_dataset_for_another_robot_is_refused(tmp_path):
    import dataclasses

    from diffuseloco_policy.config import ConfigError

    robot = load_config()
    other = dataclasses.replace(robot, action=dataclasses.replace(robot.action, scale=0.5))
    data = write_synthetic(tmp_path / "other.zarr", lengths=(40,), config=other)
    with pytest.raises(ConfigError, match="action scale"):
        Trainer(config(data, tmp_path / "run"))


def test_an_envelope_narrows_the_commands_the_file_accepts(trained, tmp_path):
    """A model trusted only in part of its training ranges ships with that envelope in its file, and the command
    clamp the policy node applies (within_trained_ranges) then keeps every command inside it."""
    _, _, out = trained
    onnx_path = tmp_path / "enveloped.onnx"
    export_main(["--checkpoint", str(out / "ckpt_latest"), "--out", str(onnx_path), "--warm-steps",
                 "--envelope", "trot.vx=-0.25:0.5", "--envelope", "trot.yaw_rate=-0.5:0.5"])
    robot = load_config()
    narrowed = within_trained_ranges(robot, read_onnx_info(onnx_path, robot).config)
    trot = narrowed.skill("trot")
    assert trot.vx == (-0.25, 0.5) and trot.yaw_rate == (-0.5, 0.5) and trot.vy == robot.skill("trot").vy
    assert narrowed.skill("pace") == robot.skill("pace")
    assert trot.clamp_command(1.0, 0.0, -1.0) == (0.5, 0.0, -0.5)
    # the evaluation cuts its config the same way, so its speed fractions mean the commands the node will give
    assert robot_config(None, onnx_path) == narrowed


@pytest.mark.parametrize("entry, message", [
    ("trot.vx=-0.25:2.0", "wider than the model.s range"),
    ("gallop.vx=0:1", "unknown skills"),
    ("trot.speed=0:1", "field must be one of"),
    ("trot.vx=0.5:0.1", "LOW is above HIGH"),
    ("trot.vx=fast", "expected SKILL.FIELD=LOW:HIGH"),
])
def test_a_bad_envelope_is_refused_before_anything_is_written(trained, tmp_path, capsys, entry, message):
    _, _, out = trained
    with pytest.raises(SystemExit) as refused:
        export_main(["--checkpoint", str(out / "ckpt_latest"), "--out", str(tmp_path / "x.onnx"),
                     "--envelope", entry])
    assert refused.value.code == 2 and re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The tiny model exported with a trot envelope and a 2-step warm-start graph."""
    _, _, out = trained
    path = tmp_path_factory.mktemp("exported") / "source.onnx"
    export_main(["--checkpoint", str(out / "ckpt_latest"), "--out", str(path), "--warm-steps", "2",
                 "--envelope", "trot.vx=-0.25:0.5"])
    return path


def initializers(path):
    import onnx

    return {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}


def test_a_shipped_file_is_narrowed_without_its_checkpoint(exported, tmp_path):
    """--from-model copies the graphs byte for byte (weights and all), narrows only the embedded ranges, and the
    copy samples exactly what the source samples for the same noise."""
    out = tmp_path / "narrowed.onnx"
    export_main(["--from-model", str(exported), "--out", str(out), "--envelope", "bound.vx=0:0.2"])
    robot = load_config()
    for src, dst in ((exported, out), (exported.with_name("source.warm2.onnx"), tmp_path / "narrowed.warm2.onnx")):
        assert initializers(dst) == initializers(src)
    before, after = read_onnx_info(exported, robot).config, read_onnx_info(out, robot).config
    assert after.skill("bound").vx == (0.0, 0.2) and before.skill("bound").vx != (0.0, 0.2)
    assert after.skill("trot") == before.skill("trot")   # the source's envelope is kept
    assert dataclasses.replace(after, skills=before.skills) == before
    source_rt, copy_rt = (OnnxRuntime(p, robot, warm_start_steps=2) for p in (exported, out))
    rng = np.random.default_rng(0)
    d = source_rt.dims
    obs = rng.standard_normal((2, d.history, d.obs_dim)).astype(np.float32)
    goal = rng.standard_normal((2, d.history, d.goal_dim)).astype(np.float32)
    noise = rng.standard_normal(source_rt.noise_shape(2, warm=False)).astype(np.float32)
    np.testing.assert_array_equal(copy_rt.predict(obs, goal, noise), source_rt.predict(obs, goal, noise))


def test_gain_scales_travel_in_the_file_and_leave_the_graphs_alone(exported, tmp_path):
    """--gain-scale stamps the per-skill gains the node will drive (gains.py) into a copy; the weights and the
    source's envelope stay as they were."""
    out = tmp_path / "tuned.onnx"
    export_main(["--from-model", str(exported), "--out", str(out), "--gain-scale", "trot=0.8",
                 "--gain-scale", "bound=1.1"])
    robot = load_config()
    assert initializers(out) == initializers(exported)
    before, after = read_onnx_info(exported, robot).config, read_onnx_info(out, robot).config
    assert kp_scales(before) == {"stand": 1.0, "trot": 1.0, "pace": 1.0, "bound": 1.0, "hop": 1.0}
    assert kp_scales(after) == {"stand": 1.0, "trot": 0.8, "pace": 1.0, "bound": 1.1, "hop": 1.0}
    assert after.skill("trot").vx == before.skill("trot").vx == (-0.25, 0.5)
    assert make_policy(str(out), robot).kp_scales == kp_scales(after)   # the evaluation runs the file's gains


@pytest.mark.parametrize("extra, message", [
    (["--envelope", "trot.vx=-0.25:0.6"], "wider than the model's range"),   # wider than the source's envelope
    ([], "would only copy the file"),
    (["--gain-scale", "trot=2.0"], "kp_scale must be in"),
    (["--gain-scale", "gallop=1.1"], "unknown skills"),
    (["--gain-scale", "trot:0.8"], "expected SKILL=SCALE"),
    (["--envelope", "bound.vx=0:0.2", "--warm-steps", "3"], "do not apply"),
])
def test_narrowing_a_file_refuses_to_widen_or_to_copy(exported, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as refused:
        export_main(["--from-model", str(exported), "--out", str(tmp_path / "x.onnx"), *extra])
    assert refused.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_narrowing_a_file_refuses_to_overwrite_it_or_take_a_stranger_warm_graph(exported, tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_main(["--from-model", str(exported), "--out", str(exported), "--envelope", "bound.vx=0:0.2"])
    assert "under another name" in capsys.readouterr().err
    import shutil

    stranger = tmp_path / "mixed.onnx"
    shutil.copy(exported, stranger)
    export_main(["--from-model", str(exported), "--out", str(tmp_path / "other.onnx"), "--envelope", "pace.vx=0:0.1"])
    shutil.copy(tmp_path / "other.warm2.onnx", tmp_path / "mixed.warm2.onnx")
    with pytest.raises(SystemExit):
        export_main(["--from-model", str(stranger), "--out", str(tmp_path / "y.onnx"), "--envelope", "bound.vx=0:0.2"])
    assert "does not belong to it" in capsys.readouterr().err
    assert not (tmp_path / "y.onnx").exists()
