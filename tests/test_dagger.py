"""DAgger data: a trained policy drives stretches of an expert episode from its own delayed window, through the
same decoder and safety filter, and the recorded action stays the expert's on every tick."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from diffuseloco_policy.config import load_config
from diffuseloco_policy.model_file import model_view, read_onnx_info
from diffuseloco_learning.data import generate as gen
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.experts.dagger import LearnerInTheLoop, LearnerShare
from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_policy.pd_targets import ActionDecoder
CONFIG = load_config()
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "diffuseloco_cyberdog2_preview.onnx"


class FakeRuntime:
    """Returns a constant chunk (the default pose: stand still) and keeps the windows it was shown."""

    def __init__(self, delayed_inputs: bool = True) -> None:
        self.info = SimpleNamespace(spec=SimpleNamespace(delayed_inputs=delayed_inputs))
        self.windows: list[np.ndarray] = []
        self.resets = 0

    def predict(self, obs, goal, rng):
        self.windows.append(np.array(obs))
        return np.zeros((CONFIG.action.horizon, CONFIG.robot.num_joints))

    def reset(self) -> None:
        self.resets += 1


class RecordingLearner(LearnerInTheLoop):
    def drives(self) -> bool:
        drove = super().drives()
        self.turns.append(drove)
        return drove


def _learner(share=LearnerShare(0.5, 0.1), seed=0, runtime=None) -> RecordingLearner:
    learner = RecordingLearner(runtime or FakeRuntime(), CONFIG, share, np.random.default_rng(seed))
    learner.turns = []
    return learner


@pytest.mark.parametrize("share", [LearnerShare(0.5, 0.1), LearnerShare(0.2, 0.3)])
def test_turns_come_out_at_the_asked_share_and_stretch(share):
    learner = _learner(share)
    learner.record(np.zeros(CONFIG.observation.obs_dim), np.zeros(CONFIG.observation.goal_dim))
    turns = np.array([learner.drives() for _ in range(40000)])
    starts = np.flatnonzero(np.diff(turns.astype(int)) == 1)
    assert abs(turns.mean() - share.share) < 0.03
    stretch_ticks = turns.sum() / len(starts)
    assert abs(stretch_ticks - share.stretch_s * CONFIG.rates.control_hz) < 0.1 * share.stretch_s * 50


def test_bad_shares_and_current_frame_learners_are_refused():
    for share, stretch in ((0.0, 0.1), (1.0, 0.1), (0.5, 0.0)):
        with pytest.raises(ValueError):
            LearnerShare(share, stretch)
    with pytest.raises(ValueError, match="delayed-input"):
        LearnerInTheLoop(FakeRuntime(delayed_inputs=False), CONFIG, LearnerShare(), np.random.default_rng(0))


def test_the_learner_drives_its_turns_and_the_expert_labels_every_tick():
    """A learner that only ever asks for the stand pose, trotting at 0.4 m/s with the expert: on its turns the
    executed target is its (filtered) stand pose, elsewhere the expert's; the label is the expert's every tick,
    and the learner is shown s[t-8..t-1] exactly as recorded."""
    decoder = ActionDecoder(CONFIG)
    learner = _learner()
    rollout = ExpertRollout(CONFIG, seed=0, delayed=True, learner=learner)
    ticks = [rollout.tick(CONFIG.skill("trot").id, (0.4, 0.0, 0.0)) for _ in range(100)]
    turns = np.array(learner.turns)
    assert 25 < turns.sum() < 75 and not turns[0]   # no frame to act on at tick 0
    executed_is_label = np.array([np.allclose(decoder.action(t.target), t.action) for t in ticks])
    np.testing.assert_array_equal(executed_is_label[~turns], True)
    assert not executed_is_label[turns].any()   # the expert's trot targets are not the stand pose
    towards_stand = [np.abs(decoder.action(t.target)).sum() < np.abs(t.action).sum() for t in np.array(ticks)[turns]]
    assert all(towards_stand)
    last_action = CONFIG.observation.slices()["last_action"]
    for tick, following in zip(ticks[:-1], ticks[1:]):   # the history records what was executed, not the label
        np.testing.assert_allclose(following.observation[last_action], decoder.action(tick.target), atol=1e-9)
    history = CONFIG.observation.history
    observations = np.array([t.observation for t in ticks], dtype=np.float32)
    windows = learner.runtime.windows      # one per tick from tick 1 on
    assert len(windows) == 99
    np.testing.assert_array_equal(windows[50 - 1], observations[50 - history:50])


def test_generated_dagger_data_records_the_learner_and_reproduces(tmp_path):
    """With the shipped model as the learner (over its own skills: the data's config is the robot config without
    the skills the model lacks): the measured share is near the asked one, the dataset says which model drove, and
    the same seed gives the same arrays."""
    config = model_view(CONFIG, read_onnx_info(SHIPPED_MODEL, CONFIG).config)
    settings = gen.GenerateSettings(seed=4, episode_s=2.0, learner=str(SHIPPED_MODEL), learner_share=0.5)
    stats = gen.generate(config, tmp_path / "a.zarr", 150, settings, workers=1, progress=False)
    gen.generate(config, tmp_path / "b.zarr", 150, settings, workers=1, progress=False)
    a, b = load_dataset(tmp_path / "a.zarr"), load_dataset(tmp_path / "b.zarr")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert 0.3 < stats["learner_share"] < 0.7
    import zarr
    assert zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs["generator"]["learner"] == str(SHIPPED_MODEL)


@pytest.mark.parametrize("extra, message", [(["--action-noise", "0.1"], "use one"),
                                            (["--learner-share", "1.0"], "share")])
def test_the_cli_refuses_conflicting_or_bad_learner_options(tmp_path, capsys, extra, message):
    args = ["--out", str(tmp_path / "x.zarr"), "--transitions", "10", "--learner", str(SHIPPED_MODEL), *extra]
    with pytest.raises((SystemExit, ValueError)) as raised:
        gen.main(args)
    text = str(raised.value) + capsys.readouterr().err
    assert message in text and not (tmp_path / "x.zarr").exists()


def test_the_cli_refuses_a_learner_without_a_skill_of_the_data(tmp_path, capsys):
    """The shipped model has no hop: it would be fed the data's goals, whose one-hot has a hop entry it never saw
    (on the robot it runs over its own skills; here the data decides)."""
    with pytest.raises(SystemExit):
        gen.main(["--out", str(tmp_path / "x.zarr"), "--transitions", "10", "--learner", str(SHIPPED_MODEL)])
    error = capsys.readouterr().err
    assert f"--learner {SHIPPED_MODEL}: skills differ" in error and "need the same skills" in error
    assert not (tmp_path / "x.zarr").exists()


def test_the_cli_refuses_a_missing_learner(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gen.main(["--out", str(tmp_path / "x.zarr"), "--learner", str(tmp_path / "none.onnx")])
    assert "no such model file" in capsys.readouterr().err


def test_a_reset_with_a_seed_replays_the_learners_turns():
    """ExpertRollout.reset(seed) reseeds the learner's stream too, so an episode with a learner replays exactly."""
    learner = _learner()
    rollout = ExpertRollout(CONFIG, seed=0, delayed=True, learner=learner)
    runs = []
    for _ in range(2):
        rollout.reset(seed=7)
        learner.turns = []
        targets = [rollout.tick(CONFIG.skill("trot").id, (0.3, 0.0, 0.0)).target for _ in range(40)]
        runs.append((list(learner.turns), np.array(targets)))
    assert runs[0][0] == runs[1][0] and any(runs[0][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_the_cli_refuses_a_learner_made_for_another_robot_config(tmp_path, capsys):
    """The shipped model against a config that also observes the body velocity: refused before any worker starts,
    with the loader's reason."""
    import yaml

    from velocity_config import observing_velocity

    other = tmp_path / "robot.yaml"
    other.write_text(yaml.safe_dump(observing_velocity(CONFIG).to_dict()))
    with pytest.raises(SystemExit):
        gen.main(["--out", str(tmp_path / "x.zarr"), "--config", str(other), "--learner", str(SHIPPED_MODEL)])
    error = capsys.readouterr().err
    assert f"--learner {SHIPPED_MODEL}:" in error and "observation" in error
    assert not (tmp_path / "x.zarr").exists()
