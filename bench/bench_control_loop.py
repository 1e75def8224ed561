"""Control-tick timing of the policy node with inference running (not a test).

Starts the simulator node and the policy node (separate processes, loopback), stands the dog up, runs the policy
and reads the node's own timing statistics from /diagnostics: tick jitter (|actual - nominal 20 ms period|), the
tick's compute time (everything on the tick besides inference, which runs one tick ahead in its own thread),
and the age of the newest joint sample when the command that uses it is published. The model has the chosen
preset's size and real sampler graphs; its weights are untrained and its action range is +-0.02, so the dog
stands while the sampler does its full work every tick.

Usage: .venv/bin/python bench/bench_control_loop.py [--preset small] [--seconds 30] [--warm-start 2] [--precision int8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from diffuseloco_msgs.srv import SetControllerState

from diffuseloco_bringup.graph import NodeSpec, params_file
from diffuseloco_bringup.run import Graph
from diffuseloco_policy.config import load_config
from diffuseloco_learning.diffusion import DenoiserConfig, ModelSpec, SchedulerConfig, build_policy
from diffuseloco_learning.export import export_onnx
from diffuseloco_learning.quantize import write_int8_model
from diffuseloco_policy.nodes.spin import BackgroundNode
from diffuseloco_policy.normalizer import PolicyNormalizer


def standing_model(preset: str, path: Path) -> Path:
    config = load_config()
    rng = np.random.default_rng(0)
    normalizer = PolicyNormalizer.fit(rng.normal(size=(256, config.observation.obs_dim)),
                                      rng.normal(size=(256, config.observation.goal_dim)),
                                      rng.uniform(-0.02, 0.02, size=(256, 12)))
    spec = ModelSpec(kind="diffusion", denoiser=DenoiserConfig.preset(preset),
                     scheduler=SchedulerConfig(kind="ddpm", num_inference_steps=10), warm_start_steps=2)
    return export_onnx(build_policy(config, spec, normalizer).eval(), config, path, warm_steps=(2, 3))[0]


class DiagnosticsReader(BackgroundNode):
    def __init__(self) -> None:
        super().__init__("bench_control_loop")
        self.latest: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.client = self.node.create_client(SetControllerState, "/diffuseloco/set_state")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "diffuseloco_policy":
                self.latest = {kv.key: kv.value for kv in status.values} | {"message": status.message}

    def request(self, request: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.wait_for_service(timeout_sec=1.0):
                future = self.client.call_async(SetControllerState.Request(request=request, source="script"))
                while not future.done() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if future.done() and future.result().accepted:
                    return True
            time.sleep(0.2)
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warm-start", type=int, default=2, help="warm-start steps (0 = full sampler every tick)")
    parser.add_argument("--providers", default="cpu", help="the policy node's execution providers (tensorrt,cuda,cpu)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                        help="int8: the node runs the model's int8 file (export --precision int8)")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = standing_model(args.preset, Path(tmp) / "policy.onnx")
        if args.precision == "int8":
            model = write_int8_model(model, Path(tmp) / "policy_int8.onnx")[0]
        params = yaml.safe_load(params_file("sim").read_text())
        params["diffuseloco_policy"]["ros__parameters"].update(model=str(model), warm_start_steps=args.warm_start,
                                                          providers=args.providers)
        params_path = Path(tmp) / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        graph = Graph([NodeSpec("diffuseloco_policy", "sim_node", "cyberdog_sim"),
                       NodeSpec("diffuseloco_policy", "policy_node", "diffuseloco_policy")], params_path)
        reader = DiagnosticsReader()
        graph.start()
        try:
            assert reader.request(SetControllerState.Request.REQUEST_STAND_UP), "STAND_UP refused"
            assert reader.request(SetControllerState.Request.REQUEST_RUN), "RUN refused"
            time.sleep(args.seconds)  # the node's rolling window covers the last 1000 ticks (20 s)
            stats = dict(reader.latest)
        finally:
            graph.stop()
            reader.close()
    sampler = f"warm start {args.warm_start} steps" if args.warm_start else "full 10-step sampler"
    print(f"\npolicy node, {args.preset} preset ({args.precision}), {sampler}, 50 Hz, simulator at 500 Hz on the same 2 cores")
    for key in ("execution_providers", "state", "ticks", "deadline_misses", "inference_latency_ms", "jitter_p50_ms",
                "jitter_p99_ms", "tick_compute_p50_ms", "tick_compute_p99_ms", "sensor_to_command_p50_ms",
                "sensor_to_command_p99_ms"):
        print(f"  {key:26s} {stats.get(key, 'n/a')}")


if __name__ == "__main__":
    main()
