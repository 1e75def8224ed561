"""Command classes (unlabelled-gait data): the class map in the config, the generator option, the model file, the
policy loop and node's view of a class model, teleop class commands, and training taking the map from the data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import zarr

from diffuseloco_policy.command_classes import (describe_command, format_command_classes, parse_command_classes,
                                                with_command_classes)
from diffuseloco_policy.config import ConfigError, config_from_dict, load_config
from diffuseloco_policy.model_file import (ModelMismatchError, PREFIX, compatibility_problems, load_onnx, model_view,
                                           read_onnx_info, within_trained_ranges)
from diffuseloco_policy.observation import ObservationBuilder
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.runtime import load_runtime
from diffuseloco_policy.teleop import GamepadTeleop, KeyboardMapping, TeleopCommand, apply_key, make_command

from test_teleop import PAD, joy
from tiny_model import export_standing_model

ROBOT = load_config()
MAP = "walk=trot+pace,jump=bound+hop"
CLASSES = with_command_classes(ROBOT, parse_command_classes(MAP))
TROT, PACE, BOUND, HOP = (ROBOT.skill(n) for n in ("trot", "pace", "bound", "hop"))


# ---------------------------------------------------------------------------------------------- config
def test_a_class_commands_where_every_gait_of_it_was_demonstrated():
    """The class's range is the intersection of its gaits' (pace's inside trot's; bound's yaw inside hop's), its
    id its first skill's, and the goal's one-hot runs over stand, walk and jump."""
    stand, walk, jump = CLASSES.commands
    assert [c.name for c in CLASSES.commands] == ["stand", "walk", "jump"] and (walk.id, jump.id) == (1, 3)
    assert (walk.vx, walk.vy, walk.yaw_rate) == (PACE.vx, PACE.vy, PACE.yaw_rate)
    assert (jump.vx, jump.vy, jump.yaw_rate) == (BOUND.vx, BOUND.vy, BOUND.yaw_rate) and HOP.yaw_rate != BOUND.yaw_rate
    assert walk.strafe_turn_budget == TROT.strafe_turn_budget > 0
    assert CLASSES.observation.goal_dim == ROBOT.observation.goal_dim - 2
    for key in ("trot", "pace", TROT.id, PACE.id, "walk"):
        assert CLASSES.command(key) == walk
    assert CLASSES.command("stand") == ROBOT.skill("stand") and ROBOT.command("pace") == PACE


def test_class_goals_are_the_same_for_every_gait_of_the_class():
    builder = ObservationBuilder(CLASSES)
    trot, pace, hop = (builder.goal([0.1, 0.0, 0.2], s.id) for s in (TROT, PACE, HOP))
    np.testing.assert_array_equal(trot, pace)
    assert trot.shape == (6,) and list(trot[3:]) == [0, 1, 0] and list(hop[3:]) == [0, 0, 1]
    labelled = ObservationBuilder(ROBOT)
    assert not np.array_equal(labelled.goal([0.1, 0, 0.2], TROT.id), labelled.goal([0.1, 0, 0.2], PACE.id))


def test_the_class_map_round_trips_and_a_labelled_config_does_not_grow_a_key():
    assert config_from_dict(CLASSES.to_dict()) == CLASSES
    assert "command_classes" not in ROBOT.to_dict() and "command_classes" in CLASSES.to_dict()
    assert parse_command_classes(format_command_classes(CLASSES.command_classes)) == CLASSES.command_classes
    assert parse_command_classes("") == ()


@pytest.mark.parametrize("text,message", [
    ("walk=trot", "at least two skills"),
    ("walk=trot+amble", "unknown skills"),
    ("rest=stand+trot", "stand cannot be in a class"),
    ("walk=trot+pace,run=pace+bound", "in another class"),
    ("trot=pace+bound", "taken by a skill"),
    ("walk:trot+pace", "expected NAME=SKILL"),
    ("walk=trot+", "expected NAME=SKILL"),
])
def test_bad_class_maps_are_refused_with_the_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        with_command_classes(ROBOT, parse_command_classes(text))


def test_classes_whose_gaits_share_no_command_or_the_gait_clock_are_refused():
    forward = dataclasses.replace(BOUND, vx=(0.5, 0.8))
    robot = dataclasses.replace(ROBOT, skills=tuple(forward if s.name == "bound" else s for s in ROBOT.skills))
    with pytest.raises(ConfigError, match="vx ranges .* do not overlap"):
        with_command_classes(robot, parse_command_classes("jump=bound+pace"))
    goal = ROBOT.observation.goal_terms + (dataclasses.replace(ROBOT.observation.goal_terms[0], name="gait_phase",
                                                               size=12, scale=1.0),)
    clocked = dataclasses.replace(ROBOT, observation=dataclasses.replace(ROBOT.observation, goal_terms=goal))
    with pytest.raises(ConfigError, match="gait_phase"):
        with_command_classes(clocked, parse_command_classes(MAP))


# ------------------------------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    return export_standing_model(tmp_path_factory.mktemp("classes") / "walk_jump.onnx", config=CLASSES)


def test_the_model_file_carries_the_class_map_and_runs_over_it(class_model):
    """The map travels in the embedded config and in the readable layout; a robot config without classes runs
    the model over them (its goal one-hot over stand, walk, jump), a labelled model over the skills."""
    model, info = load_onnx(class_model)
    layout = json.loads({p.key: p.value for p in model.metadata_props}[PREFIX + "observation_layout"])
    assert layout["command_classes"] == {"walk": ["trot", "pace"], "jump": ["bound", "hop"]}
    assert info.config.command_classes == CLASSES.command_classes
    assert read_onnx_info(class_model, ROBOT).config == CLASSES
    view = model_view(within_trained_ranges(ROBOT, info.config), info.config)
    assert view.commands == CLASSES.commands and view.observation.goal_dim == 6
    runtime = load_runtime(class_model, robot=ROBOT, warm_start_steps=2)
    chunk = runtime.predict(np.zeros((8, view.observation.obs_dim)), np.zeros((8, 6)))
    assert chunk.shape == (ROBOT.action.horizon, 12) and np.all(np.isfinite(chunk))


def test_a_class_map_the_robot_config_cannot_honour_is_refused(class_model):
    """A robot config with a map of its own runs only models with that map (node and runtime refuse with the
    reason), training needs the data's exact map, and robot ranges that leave a class no common command refuse."""
    other = with_command_classes(ROBOT, parse_command_classes("walk=trot+pace"))
    with pytest.raises(ModelMismatchError, match="command classes differ: model walk = trot \\+ pace, jump"):
        load_runtime(class_model, robot=other)
    (problem,) = compatibility_problems(CLASSES, ROBOT, exact_skills=True)
    assert "command classes differ" in problem and "training need the same class map" in problem
    assert compatibility_problems(CLASSES, ROBOT) == [] and compatibility_problems(CLASSES, CLASSES, True) == []
    narrow = dataclasses.replace(ROBOT, skills=tuple(dataclasses.replace(s, vx=(0.35, 1.0)) if s.name == "trot" else s
                                                    for s in ROBOT.skills))
    with pytest.raises(ModelMismatchError, match="cannot run on this robot config: .*vx ranges"):
        model_view(within_trained_ranges(narrow, CLASSES), CLASSES)
    assert any("cannot run on this robot config" in p for p in compatibility_problems(CLASSES, narrow))


def test_a_labelled_model_is_not_run_over_classes():
    with pytest.raises(ModelMismatchError, match="command classes differ"):
        model_view(CLASSES, ROBOT)


# ------------------------------------------------------------------------------------------ policy loop
def test_the_loop_of_a_class_model_treats_a_gait_command_as_its_class():
    goals = []

    def sampler(obs, goal):
        goals.append(goal)
        return np.zeros((ROBOT.action.horizon, 12))

    loop = PolicyLoop(model_view(ROBOT, CLASSES), sampler)
    try:
        state = loop.set_skill_command(PACE.id, 1.0, 0.0, 0.0)
        assert state.skill == TROT.id and state.command[0] == PACE.vx[1] and "clamped" in state.note
        assert loop.command_class == "id 2 (pace) commands class walk (trot or pace): the model picks the gait"
        assert loop.set_skill_command(HOP.id, 0.2, 0.0, 0.5).skill == BOUND.id
        assert loop.skill.command[2] == BOUND.yaw_rate[1] and "class jump" in loop.command_class
        loop.set_skill_command(0, 0.0, 0.0, 0.0)
        assert loop.skill.skill == 0 and loop.command_class == ""
    finally:
        loop.close()
    assert describe_command(ROBOT, PACE.id) == ""


# --------------------------------------------------------------------------------------------- teleop
def test_teleop_sends_class_commands():
    """With the class map, a gait's key or button selects its class, the class's name can be bound, and the
    command carries the class's id within the class's range."""
    walk = CLASSES.command("walk")
    command, note = make_command(CLASSES, "walk", 1.0, 0.0, 0.0, "keyboard")
    assert command == TeleopCommand(walk.id, walk.vx[1], 0.0, 0.0, "keyboard") and "walk range" in note
    keys = KeyboardMapping(keys={"3": "skill:pace", "9": "skill:jump", "w": "vx_up"})
    result = apply_key(TeleopCommand(0), "3", keys, CLASSES)
    assert result.command.skill == walk.id and result.message == "skill walk (trot or pace)"
    assert apply_key(result.command, "9", keys, CLASSES).command.skill == CLASSES.command("jump").id
    assert apply_key(TeleopCommand(0), "3", keys, ROBOT).command.skill == PACE.id   # labelled: pace itself
    pad = GamepadTeleop(PAD, CLASSES, skill="stand")
    pad.on_joy(*joy(), received=0.0)
    X, LB, LY = 2, 9, 1
    assert pad.on_joy(*joy(LB, X), received=0.02).skill_changed and pad.skill == walk.id
    pad.on_joy(*joy(LB, ly=1.0), received=0.04)
    assert pad.command(0.05) == TeleopCommand(walk.id, walk.vx[1], 0.0, 0.0, "joystick")


# ------------------------------------------------------------------------------------ data and training
@pytest.fixture(scope="module")
def class_data(tmp_path_factory):
    from diffuseloco_learning.data.generate import main

    out = tmp_path_factory.mktemp("gen") / "classes.zarr"
    main(["--out", str(out), "--transitions", "400", "--episode-seconds", "4", "--seed", "2",
          "--command-classes", MAP])
    return out


def test_the_generator_records_the_map_and_writes_class_goals(class_data):
    """--command-classes: the config attrs hold the map; every goal's one-hot names the class of the gait the
    expert walked (kept in data/skill), and every command lies in its class's range."""
    from diffuseloco_learning.data.dataset import dataset_attrs, load_dataset

    attrs, data = dataset_attrs(class_data), load_dataset(class_data)
    assert config_from_dict(attrs["config"]) == CLASSES
    assert data["goal"].shape == (400, 6)
    one_hot = np.argmax(data["goal"][:, 3:], axis=1)
    expected = np.array([CLASSES.command_index(int(s)) for s in data["skill"]])
    np.testing.assert_array_equal(one_hot, expected)
    assert set(np.unique(data["skill"])) - {0}, "the short run must walk or jump at all"
    for skill, command in zip(data["skill"], data["command"]):
        entry = CLASSES.command(int(skill))
        assert np.allclose(command, entry.clamp_command(*command), atol=1e-6)


def test_a_schedule_keeps_the_gait_while_the_class_stays():
    from diffuseloco_learning.experts.rollout import random_schedule

    for seed in range(20):
        segments = random_schedule(CLASSES, np.random.default_rng(seed), 50 * 60)
        for before, after in zip(segments, segments[1:]):
            if CLASSES.command(before.skill) == CLASSES.command(after.skill) and before.skill != 0:
                assert after.skill == before.skill
    labelled = [s.skill for s in random_schedule(ROBOT, np.random.default_rng(0), 50 * 60)]
    assert any(a != b and ROBOT.command(a) != ROBOT.command(0) and CLASSES.command(a) == CLASSES.command(b)
               for a, b in zip(labelled, labelled[1:])), "without classes, gaits of one class follow each other"


def test_the_generator_refuses_a_bad_map(tmp_path, capsys):
    from diffuseloco_learning.data.generate import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x.zarr"), "--transitions", "10", "--command-classes", "walk=trot+amble"])
    assert "unknown skills" in capsys.readouterr().err and not (tmp_path / "x.zarr").exists()


def test_training_takes_the_class_map_from_the_data(class_data, tmp_path):
    """No flag: the trainer's config (and so the model file) gets the datasets' map; datasets with different maps
    are refused."""
    from synthetic_data import write_synthetic

    from diffuseloco_learning.training import TrainConfig
    from diffuseloco_learning.training.trainer import training_stack

    assert training_stack(TrainConfig(datasets=(str(class_data),), out_dir=str(tmp_path))) == CLASSES
    labelled = write_synthetic(tmp_path / "labelled.zarr", lengths=(40,))
    assert training_stack(TrainConfig(datasets=(str(labelled),), out_dir=str(tmp_path))) == ROBOT
    with pytest.raises(ConfigError, match="different command classes"):
        training_stack(TrainConfig(datasets=(str(class_data), str(labelled)), out_dir=str(tmp_path)))
    attrs = dict(zarr.open_group(str(class_data), mode="r").attrs)
    assert attrs["config"]["command_classes"] == [{"name": "walk", "skills": ["trot", "pace"]},
                                                  {"name": "jump", "skills": ["bound", "hop"]}]


def test_a_class_model_trains_on_class_data_and_its_checkpoint_keeps_the_map(class_data, tmp_path):
    from test_training_loop import config as train_config

    from diffuseloco_learning.model_checkpoint import load_checkpoint
    from diffuseloco_learning.training import Trainer

    trainer = Trainer(train_config(class_data, tmp_path / "run", total_steps=3, batch_size=16, checkpoint_every=3,
                                         log_every=1))
    losses = [row["loss"] for row in trainer.train()]
    assert np.all(np.isfinite(losses)) and trainer.stack == CLASSES
    _, info = load_checkpoint(tmp_path / "run" / "ckpt_latest" / "ema.safetensors", ROBOT)
    assert info.config.command_classes == CLASSES.command_classes and info.dims.goal_dim == 6


def test_the_web_teleop_offers_the_classes():
    from diffuseloco_policy.web_teleop import WebTeleop, WebTeleopSettings

    hello = json.loads(WebTeleop(WebTeleopSettings(), CLASSES).hello())
    assert hello["skills"] == [{"id": 0, "name": "stand"}, {"id": 1, "name": "walk"}, {"id": 3, "name": "jump"}]
    assert [s["name"] for s in json.loads(WebTeleop(WebTeleopSettings(), ROBOT).hello())["skills"]] == \
        [s.name for s in ROBOT.skills]
