"""The velocity feed-forward a model predicts (ModelSpec.predict_velocity): the generator records the qd_des the
experts sent, a model trained with it carries it in every chunk entry, and the decoder sends it as it is; a chunk
the decoder cannot read is a failed sampler call, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_data import write_synthetic

from diffuseloco_policy.config import load_config
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.data.generate import GenerateSettings, generate
from diffuseloco_learning.evaluation.episode import samples
from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.runtime import OnnxRuntime
from diffuseloco_learning.torch_runtime import TorchRuntime
from diffuseloco_sim import CyberDogSim
from diffuseloco_learning.training import ModelSection, TrainConfig, Trainer
from diffuseloco_learning.training.export import main as export_main

torch.set_num_threads(1)
CONFIG = load_config()
JOINTS, HORIZON = CONFIG.robot.num_joints, CONFIG.action.horizon
DECODER = ActionDecoder(CONFIG)


def test_the_decoder_sends_a_predicted_feedforward_as_it_is():
    rng = np.random.default_rng(0)
    actions, steps = rng.normal(size=(HORIZON, JOINTS)), rng.normal(size=(HORIZON, JOINTS))
    index = CONFIG.action.execute_index
    q, qd, tau = DECODER.chunk_targets(np.concatenate([actions, steps], axis=1), index)
    np.testing.assert_allclose(q, DECODER.position(actions[index]))
    np.testing.assert_allclose(qd, CONFIG.action.scale * CONFIG.rates.control_hz * steps[index])
    np.testing.assert_allclose(DECODER.velocity_step(qd), steps[index])
    assert not tau.any()
    q, qd, tau = DECODER.chunk_targets(actions, index)  # actions alone: the step to the next one
    np.testing.assert_allclose(DECODER.velocity_step(qd), actions[index + 1] - actions[index])
    assert not tau.any()


def test_a_chunk_with_a_torque_block_sends_it_as_tau_des():
    rng = np.random.default_rng(1)
    actions, steps, torques = (rng.normal(size=(HORIZON, JOINTS)) for _ in range(3))
    index = CONFIG.action.execute_index
    targets = DECODER.chunk_targets(np.concatenate([actions, steps, torques], axis=1), index)
    np.testing.assert_allclose(targets.tau, torques[index])
    np.testing.assert_allclose(DECODER.velocity_step(targets.dq), steps[index])
    DECODER.check_chunk(np.concatenate([actions, steps, torques], axis=1), HORIZON)


@pytest.mark.parametrize("shape", [(HORIZON, JOINTS + 1), (HORIZON - 1, JOINTS), (HORIZON, 2 * JOINTS, 1)])
def test_a_chunk_the_decoder_cannot_read_is_a_failed_call_not_a_crash(shape):
    with pytest.raises(ValueError, match="chunk of shape"):
        DECODER.check_chunk(np.zeros(shape), HORIZON)
    sim = CyberDogSim(CONFIG)
    loop = PolicyLoop(CONFIG, lambda obs, goal: np.zeros(shape), inference_wait_s=0.05)
    try:
        for k in range(5):
            now = k * CONFIG.rates.control_dt
            report = loop.tick(now, *samples(sim, now))
            assert report.command.is_finite()
            sim.step()
    finally:
        loop.close()
    assert "chunk of shape" in loop.last_fault


def test_the_generator_records_the_feedforward_the_experts_sent(tmp_path, monkeypatch):
    sent = []
    tick = ExpertRollout.tick

    def recording_tick(self, skill, command):
        record = tick(self, skill, command)
        sent.append(record.velocity_target)
        return record

    monkeypatch.setattr(ExpertRollout, "tick", recording_tick)
    path = tmp_path / "gen.zarr"
    generate(CONFIG, path, 100, GenerateSettings(seed=0, episode_s=2.0), workers=1, progress=False)
    data = load_dataset(path)
    assert data["action_velocity"].shape == (100, JOINTS)
    np.testing.assert_allclose(DECODER.from_step(data["action_velocity"].astype(np.float64)), np.array(sent[:100]),
                               rtol=1e-5, atol=1e-4)
    assert np.abs(data["action_velocity"]).max() > 0.01  # the experts moved and sent a feed-forward


def _train(datasets, out, **model):
    section = ModelSection(preset="tiny", denoiser={"width": 32, "heads": 2, "layers": 2, "dropout_attn": 0.0},
                           **model)
    cfg = TrainConfig(datasets=tuple(str(d) for d in datasets), out_dir=str(out), model=section, batch_size=16,
                      lr=3e-3, warmup_steps=2, total_steps=8, checkpoint_every=8, progress=False, seed=1)
    return Trainer(cfg)


def test_a_model_that_predicts_the_feedforward_carries_it_in_every_chunk_entry(tmp_path):
    data = tmp_path / "gen.zarr"
    generate(CONFIG, data, 120, GenerateSettings(seed=2, episode_s=2.0), workers=1, progress=False)
    trainer = _train([data], tmp_path / "run", predict_velocity=True)
    assert trainer.normalizer.action.dim == 2 * JOINTS
    trainer.train()
    path = tmp_path / "policy.onnx"
    export_main(["--checkpoint", str(tmp_path / "run" / "ckpt_latest"), "--out", str(path)])
    runtime = OnnxRuntime(path, CONFIG, warm_start_steps=2)
    assert runtime.info.spec.predict_velocity and runtime.info.dims.action_dim == 2 * JOINTS
    batch = trainer.data.get_batch(np.arange(0, 120, 30))
    obs, goal = batch["obs"].numpy(), batch["goal"].numpy()
    noise = np.random.default_rng(0).standard_normal(runtime.noise_shape(len(obs), warm=False)).astype(np.float32)
    chunk = runtime.predict(obs, goal, noise)
    assert chunk.shape == (len(obs), HORIZON, 2 * JOINTS)
    np.testing.assert_allclose(chunk, TorchRuntime(trainer.ema.model, runtime.info).predict(obs, goal, noise),
                               atol=1e-4)


def test_data_without_the_feedforward_is_refused_by_a_model_that_predicts_it(tmp_path):
    old = write_synthetic(tmp_path / "old.zarr")  # the layout before action_velocity existed
    assert "action_velocity" not in load_dataset(old)
    with pytest.raises(ValueError, match="action_velocity"):
        _train([old], tmp_path / "run", predict_velocity=True)
    assert _train([old], tmp_path / "run2").normalizer.action.dim == JOINTS
