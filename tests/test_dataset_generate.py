"""A small generated dataset has the documented layout and is reproducible from its seed."""

import numpy as np
import pytest

import diffuseloco_learning.data.generate as gen
from diffuseloco_policy.config import load_config
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.data.generate import GenerateSettings, generate


def _make(path, seed):
    settings = GenerateSettings(seed=seed, episode_s=2.0)
    generate(load_config(), path, 250, settings, workers=1, progress=False)
    return load_dataset(path)


def test_shapes_episode_ends_and_reproducibility(tmp_path):
    a = _make(tmp_path / "a.zarr", 3)
    b = _make(tmp_path / "b.zarr", 3)
    assert a["obs"].shape == (250, 42) and a["goal"].shape == (250, 8) and a["action"].shape == (250, 12)
    assert a["skill"].shape == (250,) and a["command"].shape == (250, 3)
    assert a["episode_ends"][-1] == 250 and np.all(np.diff(a["episode_ends"]) > 0)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # last_action slot of tick t is the action of tick t-1 within an episode
    np.testing.assert_allclose(a["obs"][1:50, 30:42], a["action"][0:49], atol=1e-6)


def test_falling_episode_is_cut_before_the_fall(monkeypatch):
    """The expert's last second of losing balance is not kept as a demonstration."""
    config = load_config()
    settings = GenerateSettings(seed=0, episode_s=4.0, trim_before_fall_s=1.0)
    standing = gen.run_episode(config, settings, 0).arrays
    fall_at = 150
    original_run = gen.ExpertRollout.run

    def run_then_fall(self, schedule):
        for i, tick in enumerate(original_run(self, schedule)):
            yield tick
            if i + 1 == fall_at:
                self.sim.fallen = lambda: True
                return

    monkeypatch.setattr(gen.ExpertRollout, "run", run_then_fall)
    outcome = gen.run_episode(config, settings, 0)
    fallen = outcome.arrays
    assert outcome.fell and outcome.ticks == fall_at and len(standing["obs"]) == 200
    assert len(fallen["obs"]) == fall_at - 50
    np.testing.assert_array_equal(fallen["obs"], standing["obs"][:fall_at - 50])


def test_tick_jitter_varies_the_simulated_time_per_tick_and_is_recorded(tmp_path):
    """--tick-jitter: the experts' ticks come a varying number of physics steps apart (the same draws for the same
    seed), the setting is kept in the dataset's attrs, and a model card says so."""
    import zarr

    from diffuseloco_learning.experts.rollout import ExpertRollout
    from diffuseloco_learning.training.model_card import data_section

    config = load_config()
    times = {}
    for jitter in (0.0, 3.0, 3.0):
        rollout = ExpertRollout(config, seed=5, tick_jitter_steps=jitter)
        stamps = []
        for _ in range(60):
            stamps.append(rollout.sim.time)
            rollout.tick(0, (0.0, 0.0, 0.0))
        steps = np.round(np.diff(stamps) / rollout.sim.physics_dt).astype(int)
        times.setdefault(jitter, []).append(steps)
    assert set(times[0.0][0]) == {10}
    assert len(set(times[3.0][0])) > 4
    np.testing.assert_array_equal(times[3.0][0], times[3.0][1])
    out = tmp_path / "jittered.zarr"
    generate(config, out, 120, GenerateSettings(seed=1, episode_s=2.0, tick_jitter_steps=2.5), workers=1,
             progress=False)
    assert zarr.open_group(str(out), mode="r").attrs["generator"]["tick_jitter_steps"] == 2.5
    assert "jittered by a standard deviation of 2.5" in "\n".join(data_section([out]))


def test_kp_scale_narrows_the_gain_draw_and_bad_ranges_are_refused():
    from diffuseloco_learning.data.generate import GenerateSettings, episode_physics, main
    from diffuseloco_sim.simulator import CyberDogSim

    weak = episode_physics(GenerateSettings(kp_scale=(0.9, 0.93)))
    assert weak.randomization.kp_scale == (0.9, 0.93)
    assert weak.randomization.friction == episode_physics(GenerateSettings()).randomization.friction
    sim = CyberDogSim(load_config(), weak, seed=0)
    draws = []
    for seed in range(20):
        sim.reset(seed=seed)
        draws.append(sim.params.kp_scale)
    assert 0.9 <= min(draws) and max(draws) <= 0.93
    for bad in (["--kp-scale", "0.93:0.9"], ["--kp-scale", "weak"], ["--kp-scale", "0.9:1", "--no-randomize"]):
        with pytest.raises(SystemExit):
            main(["--out", "/nonexistent/x.zarr", *bad])
