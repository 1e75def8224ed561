"""Model files refuse to drive a robot they were not trained for, one mismatch kind per case."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffuseloco_policy.config import TermConfig, config_from_dict, load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_policy.model_file import (ModelMismatchError, compatibility_problems, model_view, read_onnx_info,
                                          skills_lacking, within_trained_ranges)
from diffuseloco_policy.gains import describe_gains, with_model_gains
from diffuseloco_learning.model_checkpoint import load_checkpoint, save_checkpoint
from diffuseloco_policy.runtime import OnnxRuntime

from tiny_model import first_skills

torch.set_num_threads(1)
CFG = load_config()
SPEC = ModelSpec(denoiser=DenoiserConfig(width=32, heads=2, layers=1, dropout_attn=0.0))


def with_robot(**kw):
    return dataclasses.replace(CFG, robot=dataclasses.replace(CFG.robot, **kw))


def with_terms(terms):
    return dataclasses.replace(CFG, observation=dataclasses.replace(CFG.observation, terms=tuple(terms)))


def rescaled(name, scale):
    return [dataclasses.replace(t, scale=scale) if t.name == name else t for t in CFG.observation.terms]


def swap_front_legs(values):
    return tuple(values[3:6]) + tuple(values[0:3]) + tuple(values[6:])


MISMATCHES = {
    "joint_order": (with_robot(joint_names=swap_front_legs(CFG.robot.joint_names)), "joint order"),
    "obs_size": (with_terms(CFG.observation.terms[:-1]), "observation layout differs"),
    "obs_term_name": (with_terms([dataclasses.replace(t, name="joint_vel") if t.name == "joint_velocity" else t
                                  for t in CFG.observation.terms]), "observation layout differs"),
    "obs_term_order": (with_terms([CFG.observation.terms[1], CFG.observation.terms[0], *CFG.observation.terms[2:]]),
                       "observation layout differs"),
    "obs_scale": (with_terms(rescaled("joint_velocity", 0.1)), "'joint_velocity' scale differs"),
    "goal_scale": (dataclasses.replace(CFG, observation=dataclasses.replace(CFG.observation, goal_terms=(
        TermConfig("command", 3, (1.0, 1.0, 1.0)), CFG.observation.goal_terms[1]))), "'command' scale differs"),
    "history": (dataclasses.replace(CFG, observation=dataclasses.replace(CFG.observation, history=4)),
                "history length differs"),
    "action_scale": (dataclasses.replace(CFG, action=dataclasses.replace(CFG.action, scale=0.5)), "action scale"),
    "horizon": (dataclasses.replace(CFG, action=dataclasses.replace(CFG.action, horizon=12)), "action horizon"),
    "control_rate": (dataclasses.replace(CFG, rates=dataclasses.replace(CFG.rates, control_hz=100.0)), "control rate"),
    "default_pose": (with_robot(default_pose=(0.1,) + CFG.robot.default_pose[1:]), "default pose"),
    "kp_beyond_safety": (dataclasses.replace(CFG, safety=dataclasses.replace(CFG.safety, kp_max=CFG.robot.kp - 1.0)),
                         "PD gains outside the robot's safety limits"),
    "kd_beyond_safety": (dataclasses.replace(CFG, safety=dataclasses.replace(CFG.safety, kd_max=CFG.robot.kd - 0.5)),
                         "PD gains outside the robot's safety limits"),
    "skills": (dataclasses.replace(CFG, skills=(dataclasses.replace(CFG.skills[0], name="sit"), *CFG.skills[1:])),
               "skills differ"),
}


def model_files(directory, config, stem: str) -> dict:
    """A freshly initialised model for `config`, as an ONNX export (with its warm graph) and a checkpoint."""
    torch.manual_seed(0)
    policy = build_policy(config, SPEC)
    onnx_path = export_onnx(policy, config, directory / f"{stem}.onnx", warm_steps=(2,))[0]
    return {"onnx": onnx_path, "ckpt": save_checkpoint(directory / f"{stem}.safetensors", policy, config)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return model_files(tmp_path_factory.mktemp("model"), CFG, "policy")


def load(kind, path, robot):
    return read_onnx_info(path, robot) if kind == "onnx" else load_checkpoint(path, robot)[1]


@pytest.mark.parametrize("kind", ["onnx", "ckpt"])
def test_matching_robot_loads_and_non_policy_fields_may_differ(files, kind):
    info = load(kind, files[kind], CFG)
    assert info.config == CFG and info.spec == SPEC
    # limits and protections are the safety layer's business, not the policy's: no refusal
    load(kind, files[kind], with_robot(torque_limit=10.0, limit_margin=0.05))


@pytest.mark.parametrize("kind", ["onnx", "ckpt"])
def test_a_model_loads_on_a_robot_whose_experts_moved_to_other_gains_and_keeps_its_own(files, kind):
    """The gains belong to the data: the robot config's kp/kd (the experts') may move on; the model is driven at
    the kp and kd it was trained with."""
    robot = with_robot(kp=CFG.robot.kp + 15.0, kd=CFG.robot.kd - 1.0)
    info = load(kind, files[kind], robot)
    driven = with_model_gains(robot, info.config)
    assert (driven.robot.kp, driven.robot.kd) == (CFG.robot.kp, CFG.robot.kd) != (robot.robot.kp, robot.robot.kd)
    assert describe_gains(driven).startswith(f"kp {CFG.robot.kp:g}, kd {CFG.robot.kd:g}")


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_each_mismatch_is_refused_with_a_clear_message(files, case):
    robot, message = MISMATCHES[case]
    for kind in ("onnx", "ckpt"):
        with pytest.raises(ModelMismatchError, match=message):
            load(kind, files[kind], robot)


def test_runtime_refuses_mismatched_robot(files):
    with pytest.raises(ModelMismatchError, match="control rate"):
        OnnxRuntime(files["onnx"], robot=MISMATCHES["control_rate"][0], warm_start_steps=2)


def rewrite_onnx(src, dst, edit):
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    edit(meta)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))
    return dst


def set_version(meta):
    meta["diffuseloco.format_version"] = json.dumps(99)


def drop_config(meta):
    del meta["diffuseloco.stack_config"]


def tamper_joint_order(meta):
    meta["diffuseloco.joint_order"] = json.dumps(list(swap_front_legs(CFG.robot.joint_names)))


@pytest.mark.parametrize("edit,message", [(set_version, "unknown model format version 99"),
                                          (drop_config, "missing metadata"),
                                          (lambda m: m.clear(), "missing metadata"),
                                          (tamper_joint_order, "corrupt metadata")])
def test_bad_metadata_is_refused(files, tmp_path, edit, message):
    path = rewrite_onnx(files["onnx"], tmp_path / "bad.onnx", edit)
    with pytest.raises(ModelMismatchError, match=message):
        read_onnx_info(path, CFG)
    with safe_meta(files["ckpt"]) as (tensors, meta):
        edit(meta)
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ModelMismatchError, match=message):
        load_checkpoint(tmp_path / "bad.safetensors", CFG)


class safe_meta:
    """Context manager yielding a checkpoint's tensors and a mutable copy of its metadata."""

    def __init__(self, path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            self.meta = dict(f.metadata())
        self.tensors = load_file(str(path))

    def __enter__(self):
        return self.tensors, self.meta

    def __exit__(self, *exc):
        return False


def test_not_a_model_file_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(100))
    with pytest.raises(ModelMismatchError):
        read_onnx_info(path, CFG)


def test_commands_are_cut_to_the_ranges_the_model_was_trained_on():
    robot = load_config()
    data = robot.to_dict()
    trot = next(s for s in data["skills"] if s["name"] == "trot")
    trot.update(vx=[-0.4, 0.5], vy=[-0.2, 0.2], yaw_rate=[-0.6, 0.6], strafe_turn_budget=0.0)   # an older model
    model = config_from_dict(data)
    cut = within_trained_ranges(robot, model)
    t = cut.skill("trot")
    assert (t.vx, t.vy, t.yaw_rate, t.strafe_turn_budget) == ((-0.4, 0.5), (-0.2, 0.2), (-0.6, 0.6), 1.0)
    assert t.clamp_command(1.0, 0.0, 0.0) == (0.5, 0.0, 0.0)
    assert cut.skill("pace") == robot.skill("pace") and within_trained_ranges(robot, robot) == robot


# ------------------------------------------------------------------ a robot config with more skills than a model
OLDER = first_skills(CFG, len(CFG.skills) - 1)   # a model trained before the robot config gained its last skill


@pytest.fixture(scope="module")
def older_files(tmp_path_factory):
    return model_files(tmp_path_factory.mktemp("older"), OLDER, "older")


@pytest.mark.parametrize("kind", ["onnx", "ckpt"])
def test_a_model_over_the_robots_first_skills_loads_and_runs_over_its_own(older_files, kind):
    info = load(kind, older_files[kind], CFG)
    assert [s.name for s in info.config.skills] == [s.name for s in CFG.skills[:-1]]
    view = model_view(CFG, info.config)
    assert view.skills == CFG.skills[:-1] and view.observation.goal_dim == CFG.observation.goal_dim - 1
    assert skills_lacking(CFG, info.config) == {CFG.skills[-1].id: CFG.skills[-1].name}
    assert skills_lacking(CFG, CFG) == {} and model_view(CFG, CFG) == CFG


def test_the_runtime_takes_the_goal_over_the_models_skills(older_files):
    runtime = OnnxRuntime(older_files["onnx"], robot=CFG, warm_start_steps=2)
    view = model_view(CFG, runtime.info.config)
    obs = np.zeros((view.observation.history, view.observation.obs_dim), np.float32)
    goal = np.zeros((view.observation.history, view.observation.goal_dim), np.float32)
    chunk = runtime.predict(obs, goal, np.random.default_rng(0))
    assert chunk.shape == (CFG.action.horizon, 12) and np.all(np.isfinite(chunk))
    with pytest.raises(ValueError, match="expected histories"):   # the robot's 5-skill goal is not the model's
        runtime.predict(obs, np.zeros((view.observation.history, CFG.observation.goal_dim), np.float32))


SKILL_MISMATCHES = {   # model, robot
    "more skills than the robot": (CFG, OLDER),
    "another order": (dataclasses.replace(OLDER, skills=tuple(
        dataclasses.replace(s, name={"trot": "pace", "pace": "trot"}.get(s.name, s.name)) for s in OLDER.skills)),
        CFG),
    "a renamed skill": (dataclasses.replace(OLDER, skills=(dataclasses.replace(OLDER.skills[0], name="sit"),
                                                          *OLDER.skills[1:])), CFG),
}


@pytest.mark.parametrize("case", sorted(SKILL_MISMATCHES))
def test_any_other_skill_difference_is_still_refused(case, tmp_path):
    """Only a prefix of the robot's skills may load: a model that knows a skill the robot lacks, or the robot's
    skills in another order or under other names, is refused with the reason (and its layout is never guessed)."""
    model, robot = SKILL_MISMATCHES[case]
    torch.manual_seed(0)
    path = export_onnx(build_policy(model, SPEC), model, tmp_path / "m.onnx")[0]
    with pytest.raises(ModelMismatchError, match="skills differ: .*must be the robot's first ones"):
        read_onnx_info(path, robot)
    with pytest.raises(ModelMismatchError, match="skills differ"):
        model_view(robot, model)


def test_a_prefix_model_is_still_refused_for_anything_else(older_files):
    with pytest.raises(ModelMismatchError, match="default pose") as err:
        read_onnx_info(older_files["onnx"], with_robot(default_pose=(0.1,) + CFG.robot.default_pose[1:]))
    assert "skills" not in str(err.value)


def test_training_needs_the_exact_skills():
    """A dataset or a fine-tune's start stores its goals with its own one-hot: no prefix rule there."""
    assert compatibility_problems(OLDER, CFG) == []
    (problem,) = compatibility_problems(OLDER, CFG, exact_skills=True)
    assert "skills differ" in problem and "need the same skills" in problem
    assert compatibility_problems(CFG, CFG, exact_skills=True) == []


def test_ranges_are_cut_for_the_models_skills_and_kept_for_the_others():
    data = OLDER.to_dict()
    next(s for s in data["skills"] if s["name"] == "trot").update(vx=[-0.4, 0.5])
    cut = within_trained_ranges(CFG, config_from_dict(data))
    assert cut.skill("trot").vx == (-0.4, 0.5)
    assert cut.skills[-1] == CFG.skills[-1] and len(cut.skills) == len(CFG.skills)


def test_a_prefix_model_whose_one_hot_is_not_its_own_skills_is_refused(older_files, tmp_path):
    """Its skill one-hot must cover exactly its own skills: a file claiming the robot's first four skills with a
    five-wide one-hot (a goal layout no runtime could build for it) is refused as inconsistent."""
    def widen_one_hot(meta):
        config = json.loads(meta["diffuseloco.stack_config"])
        next(t for t in config["observation"]["goal_terms"] if t["name"] == "skill")["size"] = len(CFG.skills)
        meta["diffuseloco.stack_config"] = json.dumps(config)

    path = rewrite_onnx(older_files["onnx"], tmp_path / "wide.onnx", widen_one_hot)
    with pytest.raises(ModelMismatchError, match="corrupt metadata: goal term 'skill' has size 5 but 4 skills"):
        read_onnx_info(path, CFG)
