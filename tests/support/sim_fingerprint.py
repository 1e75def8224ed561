"""Fingerprints of seeded simulator runs: SHA-256 digests of every array they produce, bit for bit.

Why: the simulator and the expert rollout are tuned for speed, and a speed-up must not change a single bit of
what a seed produces (datasets and evaluations made before it stay reproducible). The scenarios cover what the
data and the evaluation run: four skills with randomization, sensor and actuation latency, noise, motor latency
and pushes; a jittered tick clock with action noise; the firmware's command-gap rules and the explicit PD law;
and a tiny `data.generate` dataset. tests/data/sim_fingerprint.json holds the digests the code gave before the
speed-up (2026-12, mujoco 4.0.0, numpy 2.4.6, x86-64); regenerate it only for a change that is meant to alter
the physics, and say so in the CHANGELOG:

    PYTHONPATH=... python tests/support/sim_fingerprint.py --write

Bit-exact results depend on the machine's floating point paths (numpy's SIMD kernels, MuJoCo's build): on
another CPU family the digests may differ although nothing changed; the test says which arrays differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_policy.motor_sdk import MotorCommand
from diffuseloco_learning.data.dataset import load_dataset
from diffuseloco_learning.data.generate import GenerateSettings, generate
from diffuseloco_learning.experts.rollout import ActionNoise, ExpertRollout
from diffuseloco_sim import CyberDogSim, SimConfig
from diffuseloco_sim.sim_config import ActuatorConfig, PushConfig

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "sim_fingerprint.json"


class Recorder:
    """Per-name lists of arrays, digested at the end (float64 bytes, so the digest sees every bit)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, **arrays) -> None:
        for name, value in arrays.items():
            self.rows.setdefault(name, []).append(np.asarray(value, dtype=np.float64).ravel())

    def digests(self) -> dict[str, str]:
        return {name: hashlib.sha256(np.concatenate(rows).tobytes()).hexdigest()
                for name, rows in sorted(self.rows.items())}


def _often_pushed() -> SimConfig:
    """The dataset's randomized robot, pushed every 0.3-0.8 s so that a few seconds see several shoves."""
    randomized = SimConfig.randomized()
    return dataclasses.replace(randomized, pushes=PushConfig(enabled=True, interval_s=(0.3, 0.8)))


def _record_sim(recorder: Recorder, sim: CyberDogSim) -> None:
    recorder.add(qpos=sim.data.qpos, qvel=sim.data.qvel, applied_torque=sim.applied_torque,
                 err_flag=[sim.err_flag], contacts=sim.foot_contacts(), fallen=[sim.fallen()],
                 clamps=sim.firmware.clamp_counts)


def _rollout(config: StackConfig, rollout: ExpertRollout, schedule) -> dict[str, str]:
    recorder = Recorder()
    for skill, command, ticks in schedule:
        for _ in range(ticks):
            t = rollout.tick(config.skill(skill).id, command)
            s = t.state
            recorder.add(obs=t.observation, goal=t.goal, action=t.action, target=t.target,
                         velocity_target=t.velocity_target, torque_target=t.torque_target,
                         state=np.concatenate([s.joint_position, s.joint_velocity, s.quaternion,
                                               s.angular_velocity, s.linear_velocity]),
                         reasons=[len(t.filter_reasons)])
            _record_sim(recorder, rollout.sim)
    recorder.add(params=np.hstack(dataclasses.astuple(rollout.sim.params)))
    return recorder.digests()


def skills_randomized(config: StackConfig) -> dict[str, str]:
    """Stand, trot, pace, bound and hop on the randomized, often pushed robot (4.5 s), as data.generate runs it."""
    rollout = ExpertRollout(config, _often_pushed(), seed=7, delayed=True)
    return _rollout(config, rollout, [("stand", (0, 0, 0), 25), ("trot", (0.5, 0.0, 0.2), 50),
                                      ("pace", (0.2, 0.0, 0.0), 50), ("bound", (0.3, 0.0, 0.0), 50),
                                      ("hop", (0.2, 0.0, -0.2), 50)])


def jitter_and_noise(config: StackConfig) -> dict[str, str]:
    """A jittered tick clock (1..19 physics steps per tick) and DART action noise (3 s)."""
    rollout = ExpertRollout(config, _often_pushed(), seed=11, delayed=True, tick_jitter_steps=2.5,
                            action_noise=ActionNoise(std=0.05))
    return _rollout(config, rollout, [("stand", (0, 0, 0), 25), ("trot", (0.3, 0.1, 0.0), 75),
                                      ("bound", (0.2, 0.0, 0.3), 50)])


def firmware_paths(config: StackConfig) -> dict[str, str]:
    """The bridge stops re-sending (gap rules: warning, damping, the reconnect wait), then the explicit PD law."""
    recorder = Recorder()
    sim = CyberDogSim(config, SimConfig.randomized(), seed=3, bridge_hold_s=0.004)
    q0 = np.asarray(config.robot.default_pose, dtype=np.float64)
    for tick in range(20):   # a swaying pose with a velocity feed-forward, then silence for 0.7 s
        q = q0 + 0.15 * np.sin(0.3 * tick + np.arange(12))
        sim.command_pd(q, 2.0 * np.cos(0.3 * tick + np.arange(12)))
        sim.step()
        _record_sim(recorder, sim)
    for _ in range(35):
        sim.step()
        _record_sim(recorder, sim)
    for _ in range(10):      # all-zero frames while bit 1 is set, then a disconnect
        sim.command(MotorCommand.passive(12))
        sim.step()
        _record_sim(recorder, sim)
    sim.disconnect()
    sim.step(40)
    _record_sim(recorder, sim)
    explicit = CyberDogSim(config, SimConfig.randomized().with_actuator(ActuatorConfig(pd="explicit")), seed=4)
    for tick in range(25):
        explicit.command_position(q0 + 0.1 * np.sin(0.2 * tick + np.arange(12)))
        explicit.step()
        _record_sim(recorder, explicit)
        recorder.add(joints=np.concatenate(dataclasses.astuple(explicit.joint_state())),
                     imu=np.concatenate(dataclasses.astuple(explicit.imu())), forces=explicit.foot_forces())
    return recorder.digests()


def tiny_dataset(config: StackConfig) -> dict[str, str]:
    """data.generate: two short randomized episodes (150 transitions), the arrays as written to disk."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(config, Path(tmp) / "d.zarr", 150, GenerateSettings(seed=5, episode_s=1.5), progress=False)
        arrays = load_dataset(Path(tmp) / "d.zarr")
    return {name: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            for name, value in sorted(arrays.items())}


SCENARIOS = {"skills_randomized": skills_randomized, "jitter_and_noise": jitter_and_noise,
             "firmware_paths": firmware_paths, "tiny_dataset": tiny_dataset}


def fingerprints(names=SCENARIOS) -> dict[str, dict[str, str]]:
    config = load_config()
    return {name: SCENARIOS[name](config) for name in names}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: sim_fingerprint.py --write   (rewrites " + str(REFERENCE) + ")")
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(fingerprints(), indent=1, sort_keys=True) + "\n")
    print("wrote", REFERENCE)
