"""Execution providers for the ONNX sampler: the list parses and is checked, the CPU runs, a provider this build
lacks is skipped with a warning or refused when required (also when ONNX Runtime itself drops it at session
creation), and the node's parameters and the evaluation's spec options reach the runtime."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from diffuseloco_bringup.graph import NodeSpec, config_dir
from diffuseloco_bringup.run import node_command
from diffuseloco_learning.evaluation.policies import make_policy
from diffuseloco_policy import providers as providers_module
from diffuseloco_policy.config import load_config
from diffuseloco_policy.providers import (ProviderChoice, ProviderError, available_providers, check_session,
                                          parse_providers, plan_providers, session_entries)
from diffuseloco_policy.runtime import OnnxRuntime, load_runtime

from test_ros_graph import write_params
from tiny_model import export_standing_model

CONFIG = load_config()
# the GPU providers this onnxruntime build lacks (the PyPI wheel, here and in the robot image, lacks both)
LACKING = [name for name in ("tensorrt", "cuda") if name not in available_providers()]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_standing_model(tmp_path_factory.mktemp("providers") / "policy.onnx")


@pytest.fixture
def cpu_only_build(monkeypatch):
    """The runtime sees a build that offers only the CPU, whatever this machine's onnxruntime offers."""
    monkeypatch.setattr(providers_module, "available_providers", lambda: ("cpu",))


@pytest.mark.parametrize("text, names", [
    ("tensorrt,cuda,cpu", ("tensorrt", "cuda", "cpu")), ("cuda/cpu", ("cuda", "cpu")),
    (" CUDA , cpu ", ("cuda", "cpu")), ("tensorrt", ("tensorrt", "cpu")), ("cpu", ("cpu",)),
    (["cuda"], ("cuda", "cpu")),
])
def test_a_provider_list_parses_in_order_with_the_cpu_last(text, names):
    assert parse_providers(text).names == names


@pytest.mark.parametrize("text, reason", [
    ("gpu,cpu", "unknown 'gpu'"), ("cuda,openvino", "unknown 'openvino'"), ("", "name at least one"),
    (" , ", "name at least one"), ("cuda,cuda", "named twice"), ("cpu,cuda", "nothing can follow it"),
])
def test_a_malformed_provider_list_is_refused(text, reason):
    with pytest.raises(ProviderError, match=reason):
        parse_providers(text)


def test_a_provider_the_build_lacks_is_skipped_with_a_warning_naming_what_it_has():
    plan = plan_providers(parse_providers("tensorrt,cuda,cpu"), available=("cpu",))
    assert plan.names == ("cpu",) and plan.entries == (("CPUExecutionProvider", {}),)
    assert len(plan.notes) == 1
    assert "tensorrt, cuda not in this onnxruntime build (it has cpu): skipped" in plan.notes[0]


def test_a_required_provider_the_build_lacks_is_refused_naming_what_it_has():
    with pytest.raises(ProviderError, match=r"cuda required but not in this onnxruntime build \(it has cpu\)"):
        plan_providers(parse_providers("cuda,cpu", required=True), available=("cpu",))


def test_tensorrt_is_planned_first_with_an_engine_cache_per_graph_file(tmp_path, model):
    cache = tmp_path / "engines"
    plan = plan_providers(parse_providers("tensorrt,cuda", engine_cache=cache), available=("tensorrt", "cuda", "cpu"))
    assert plan.notes == ()
    names, options = session_entries(plan, model)
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options[0]["trt_engine_cache_enable"] and options[1:] == [{}, {}]
    engines = Path(options[0]["trt_engine_cache_path"])
    assert engines.is_dir() and engines.parent.parent == cache and engines.name.startswith("policy-")
    # a retrained model in the same place gets other engines; the same file, the same ones
    other = tmp_path / "policy.onnx"
    other.write_bytes(model.read_bytes() + b" ")
    assert session_entries(plan, other)[1][0]["trt_engine_cache_path"] != str(engines)
    assert session_entries(plan, model)[1][0]["trt_engine_cache_path"] == str(engines)


def test_a_provider_the_session_did_not_take_is_reported_or_refused():
    plan = plan_providers(parse_providers("cuda"), available=("cuda", "cpu"))
    notes = check_session(parse_providers("cuda"), plan, ["CPUExecutionProvider"])
    assert len(notes) == 1 and "cuda" in notes[0] and "could not start" in notes[0]
    assert check_session(parse_providers("cuda"), plan, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ()
    with pytest.raises(ProviderError, match="cuda required but onnxruntime could not start it"):
        check_session(parse_providers("cuda", required=True), plan, ["CPUExecutionProvider"])


def test_the_cpu_runs_the_sampler_and_says_so(model):
    default = OnnxRuntime(model, CONFIG, warm_start_steps=2)
    named = OnnxRuntime(model, CONFIG, warm_start_steps=2, providers=parse_providers("cpu", required=True))
    assert default.providers_in_use == named.providers_in_use == ("cpu",)
    assert default.provider_notes == named.provider_notes == ()
    obs = np.random.default_rng(0).normal(size=(8, CONFIG.observation.obs_dim)).astype(np.float32)
    goal = np.zeros((8, CONFIG.observation.goal_dim), np.float32)
    noise = np.random.default_rng(1).standard_normal(default.noise_shape(1, False), dtype=np.float32)
    np.testing.assert_array_equal(default.predict(obs, goal, noise, warm=False),
                                  named.predict(obs, goal, noise, warm=False))


def test_a_runtime_skips_an_unavailable_provider_with_a_note_or_refuses_it(model, cpu_only_build):
    runtime = OnnxRuntime(model, CONFIG, warm_start_steps=2, providers=parse_providers("tensorrt,cuda,cpu"))
    assert runtime.providers_in_use == ("cpu",)
    assert len(runtime.provider_notes) == 1
    assert "tensorrt, cuda not in this onnxruntime build" in runtime.provider_notes[0]
    with pytest.raises(ProviderError, match=r"required but not in this onnxruntime build \(it has cpu\)"):
        OnnxRuntime(model, CONFIG, warm_start_steps=2, providers=parse_providers("cuda,cpu", required=True))


@pytest.mark.parametrize("lacking", LACKING)
def test_onnxruntimes_own_fallback_to_the_cpu_is_reported_or_refused(model, monkeypatch, tmp_path, lacking):
    """The plan believes the build has the provider; ONNX Runtime, which lacks it, opens the session on the CPU."""
    monkeypatch.setattr(providers_module, "available_providers", lambda: (lacking, "cpu"))
    choice = parse_providers(lacking, engine_cache=tmp_path / "engines")
    with pytest.warns(UserWarning):   # onnxruntime's own "not in available provider names"
        runtime = OnnxRuntime(model, CONFIG, warm_start_steps=2, providers=choice)
    assert runtime.providers_in_use == ("cpu",)
    assert len(runtime.provider_notes) == 1 and "could not start" in runtime.provider_notes[0]
    with pytest.raises(ProviderError, match=f"{lacking} required but onnxruntime could not start it"):
        with pytest.warns(UserWarning):
            OnnxRuntime(model, CONFIG, providers=parse_providers(lacking, required=True, engine_cache=tmp_path))


def test_the_torch_backend_takes_no_gpu_provider(model):
    with pytest.raises(ValueError, match="apply to backend 'onnx'"):
        load_runtime(model.with_suffix(".safetensors"), CONFIG, backend="torch", providers=parse_providers("cuda"))


def _node_defaults(monkeypatch) -> dict:
    from diffuseloco_policy.nodes import policy_node

    captured = {}
    monkeypatch.setattr(policy_node, "declare_parameters", lambda node, defaults: captured.update(defaults))
    policy_node.PolicyNode._declare_parameters(None)
    return captured


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))


def test_the_node_parameters_reach_the_runtime_and_its_log(model, monkeypatch, cpu_only_build, tmp_path):
    from diffuseloco_policy.nodes import policy_node

    opened = {}
    real_load = policy_node.load_runtime
    monkeypatch.setattr(policy_node, "load_runtime", lambda *a, **k: opened.setdefault("rt", real_load(*a, **k)))
    params = {**_node_defaults(monkeypatch), "model": str(model), "providers": "cuda/cpu",
              "tensorrt_engine_cache": str(tmp_path)}
    log = _Log()
    node = SimpleNamespace(config=CONFIG, get_logger=lambda: log)
    node._log_providers = lambda runtime, asked: policy_node.PolicyNode._log_providers(node, runtime, asked)
    policy_node.PolicyNode._sampler(node, params)
    runtime = opened["rt"]
    assert runtime.provider_choice == ProviderChoice(("cuda", "cpu"), False, tmp_path)
    assert ("warning", runtime.provider_notes[0]) in log.lines and "cuda not in this" in runtime.provider_notes[0]
    assert ("info", "sampler execution providers in use: cpu (asked: cuda,cpu)") in log.lines
    assert node.execution_providers == "cpu"
    with pytest.raises(ProviderError, match="required"):
        policy_node.PolicyNode._sampler(node, {**params, "providers_required": True})


def test_the_node_and_the_bringup_files_default_to_the_cpu(monkeypatch):
    defaults = _node_defaults(monkeypatch)
    names = ("providers", "providers_required", "tensorrt_engine_cache")
    assert tuple(defaults[name] for name in names) == ("cpu", False, "")
    for target in ("sim", "robot"):
        params = yaml.safe_load((config_dir() / f"{target}.yaml").read_text())
        deployed = params["diffuseloco_policy"]["ros__parameters"]
        for name in names:
            assert deployed[name] == defaults[name], (target, name)


@pytest.mark.parametrize("providers, reason", [("gpu", "unknown 'gpu'"), *[(n, "required but not") for n in LACKING]])
def test_the_node_refuses_to_start_on_a_bad_or_missing_required_provider(model, tmp_path, providers, reason):
    params = write_params(tmp_path, model)
    values = yaml.safe_load(params.read_text())
    values["diffuseloco_policy"]["ros__parameters"].update(providers=providers, providers_required=True)
    params.write_text(yaml.safe_dump(values))
    spec = NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")
    result = subprocess.run(node_command(spec, params), capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "refusing to start" in output and reason in output and "Traceback" not in output


def test_the_evaluation_spec_options_reach_the_runtime(model, cpu_only_build, tmp_path):
    policy = make_policy(f"{model},providers=tensorrt/cuda/cpu,engine_cache={tmp_path}", CONFIG)
    assert policy.runtime.provider_choice == ProviderChoice(("tensorrt", "cuda", "cpu"), False, tmp_path)
    assert policy.describe()["providers"] == ["cpu"] and policy.label == f"{model.stem}[onnx]"
    assert any("tensorrt, cuda not in this onnxruntime build" in note for note in policy.notes)
    assert make_policy(str(model), CONFIG).runtime.provider_choice.names == ("cpu",)
    with pytest.raises(ProviderError, match="required but not in this onnxruntime build"):
        make_policy(f"{model},providers=cuda,providers_required=on", CONFIG)


@pytest.mark.parametrize("spec, reason", [
    ("{model},providers=gpu", "unknown 'gpu'"), ("{model},providers_required=yes", "providers_required=on"),
    ("expert,providers=cuda", "apply to models"),
])
def test_bad_evaluation_provider_options_are_refused(model, spec, reason):
    with pytest.raises(ValueError, match=reason):
        make_policy(spec.format(model=model), CONFIG)
