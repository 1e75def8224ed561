"""How closely each way of integrating the motor boards' PD law follows the boards' own fast loop, and what it costs.

The CyberDog 2's motor boards close tau = tau_ff + kp (q_des - q) + kd (qd_des - qd) far faster than the 2 ms
frame (shared reference cyberdog-firmware.md, "Where the joint PD runs"). The reference here is that law
evaluated explicitly every 0.05 ms (ActuatorConfig.reference()), the frame held for 2 ms as the boards hold it.
Against it: the law evaluated explicitly once per physics step at 2, 1 and 0.5 ms, MuJoCo's implicit actuator
(kd implicit in the implicitfast integrator) at 2 and 1 ms, and the model as it was before (armature 0.015,
damping 0.05, dry friction 0.1, 0.06 kg feet, the old calf inertia and abad centre of mass, explicit at 2 ms).

Scenarios, at the config's gains (kp 30, kd 3) unless named otherwise:
- hang_step: the robot hung (CyberDogSim.hang), every joint's q_des stepped inside the firmware's position band
  and back; the joint angles compared every 2 ms frame over 1 s.
- hang_step_kd5: the same at kd 5, the largest kd the safety filter lets through (safety.kd_max).
- stand_squat: standing on the floor, the hips and knees stepped into a squat and back, 2 s.
- trot: the trot expert at 0.8 m/s, closed loop on the reference for 4 s; each method then replays every 20 ms
  tick from the reference's state with the reference's frame, and its joint angles after the tick are compared.
- hang_step_latency: hang_step with the frame taking effect 1 ms after its boundary (the latency randomization).
Cost: simulated seconds per CPU second of the simulator's step() during the trot replay (process CPU time, one
core, the best of nine replays taken round-robin over the methods: on a shared machine wall time and single
runs are noisy).
Stability of the explicit law: it diverges once kd dt / I exceeds 2 for the stiffest mode, I the smallest
eigen-inertia of the leg joints (1 / largest eigenvalue of the joint block of M^-1); printed per step for the
model's rotor inertia and for the low end of its randomization (x 0.8).

Usage: python bench/actuator_fidelity.py [--out docs/research/actuator/fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import mujoco
import numpy as np

from diffuseloco_learning.experts.rollout import ExpertRollout
from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_policy.package_files import package_file
from diffuseloco_sim import ActuatorConfig, CyberDogSim, MotorCommand, SimConfig
from diffuseloco_sim.simulator import MJCF

STEP_MODEL = np.tile([0.10, 0.14, 0.18], 4)        # rad, inside the 8 / 10 / 12 deg position band
SQUAT_MODEL = np.tile([0.0, -0.12, 0.18], 4)       # rad, model convention: hips -0.12, knees +0.18
REPEATS = 9                                        # timed trot replays per method, round-robin (the best counts)


@dataclass(frozen=True)
class Method:
    name: str
    actuator: ActuatorConfig
    legacy_model: bool = False


METHODS = (
    Method("before: old model, explicit", ActuatorConfig("explicit", 0.002), legacy_model=True),
    Method("explicit", ActuatorConfig("explicit", 0.002)),
    Method("explicit", ActuatorConfig("explicit", 0.001)),
    Method("explicit", ActuatorConfig("explicit", 0.0005)),
    Method("implicit", ActuatorConfig("implicit", 0.002)),
    Method("implicit", ActuatorConfig("implicit", 0.001)),
    Method("reference check: explicit", ActuatorConfig("explicit", 0.0001)),
)
REFERENCE = Method("reference: explicit", ActuatorConfig.reference())


def legacy_model_file(directory: Path) -> Path:
    """The model as it was before the actuator and body parameters were taken from the source."""
    spec = mujoco.MjSpec.from_file(str(package_file("diffuseloco_sim", MJCF)))
    for joint in spec.joints:
        if joint.type == mujoco.mjtJoint.mjJNT_HINGE:
            joint.armature, joint.damping, joint.frictionloss = 0.015, [0.05, 0.0, 0.0], 0.1
    for leg in ("FR", "FL", "RR", "RL"):
        spec.body(f"{leg}_calf").inertia = [0.0003, 0.0003, 0.00001]
        abad = spec.body(f"{leg}_abad")
        abad.ipos = [0.0, 0.030 if leg in ("FL", "RL") else -0.030, 0.0]
        foot = spec.body(f"{leg}_foot")
        foot.mass, foot.inertia, foot.ipos, foot.explicitinertial = 0.06, [9e-6] * 3, [0.0] * 3, True
    path = directory / "cyberdog2_before.xml"
    path.write_text(spec.to_xml())
    return path


def make_sim(config: StackConfig, method: Method, legacy: Path, latency_s: float = 0.0) -> CyberDogSim:
    sim_config = SimConfig(actuator=method.actuator).with_ranges(motor_latency_s=(latency_s, latency_s))
    return CyberDogSim(config, sim_config, model_path=legacy if method.legacy_model else None)


def frame_samples(sim: CyberDogSim, seconds: float,
                  command_at: Callable[[float], Optional[MotorCommand]]) -> np.ndarray:
    """Joint angles at every 2 ms frame boundary while command_at(t) (None: keep the last) drives the robot."""
    samples = []
    for _ in range(int(round(seconds / 0.002))):
        cmd = command_at(sim.time)
        if cmd is not None:
            sim.command(cmd)
        sim.step(sim.steps_per_frame)
        samples.append(sim.true_joint_position())
    return np.array(samples)


def hang_step(sim: CyberDogSim, kd: Optional[float] = None) -> np.ndarray:
    sim.hang()
    pose = np.array(sim.config.robot.default_pose)
    kp, kd = sim.config.robot.kp, sim.config.robot.kd if kd is None else kd
    pose, stepped = sim.convention.to_sdk(pose), sim.convention.to_sdk(pose + STEP_MODEL)
    def command_at(t: float) -> MotorCommand:
        return MotorCommand.position(stepped if 0.2 <= t < 0.6 else pose, kp, kd)
    return frame_samples(sim, 1.0, command_at)


def stand_squat(sim: CyberDogSim) -> np.ndarray:
    pose = np.array(sim.config.robot.default_pose)
    kp, kd = sim.config.robot.kp, sim.config.robot.kd
    def command_at(t: float) -> MotorCommand:
        target = pose + SQUAT_MODEL if 0.5 <= t < 1.25 else pose
        return MotorCommand.position(sim.convention.to_sdk(target), kp, kd)
    return frame_samples(sim, 2.0, command_at)


@dataclass
class TrotRecord:
    states: list          # full MuJoCo integration state before each tick
    frames: list          # the SDK frame sent at each tick
    q_after: np.ndarray   # joint angles after each tick


def record_trot(config: StackConfig, seconds: float = 4.0) -> TrotRecord:
    """The trot expert closed loop on the reference, every tick's starting state and frame kept."""
    rollout = ExpertRollout(config, SimConfig(actuator=REFERENCE.actuator))
    sim = rollout.sim
    sent: list = []
    original = sim.command
    sim.command = lambda cmd: (sent.append(cmd), original(cmd))[1]   # keep each frame as sent
    states, q_after = [], []
    stand, trot = config.skill("stand").id, config.skill("trot").id
    for k in range(int(seconds * config.rates.control_hz)):
        states.append(_state(sim))
        rollout.tick(stand if k < 25 else trot, (0.0, 0.0, 0.0) if k < 25 else (0.8, 0.0, 0.0))
        q_after.append(sim.true_joint_position())
        assert not sim.fallen(), "the reference trot fell"
    return TrotRecord(states, sent, np.array(q_after))


def _state(sim: CyberDogSim) -> np.ndarray:
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(sim.model, spec))
    mujoco.mj_getState(sim.model, sim.data, state, spec)
    return state


def replay_trot(sim: CyberDogSim, record: TrotRecord) -> tuple[np.ndarray, float, float]:
    """Each tick from the reference's state and frame: joint angles after it, simulated s and CPU s of step()."""
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    q_after, cpu = [], 0.0
    for state, frame in zip(record.states, record.frames):
        mujoco.mj_setState(sim.model, sim.data, state, spec)
        sim.command(frame)
        start = time.process_time()
        sim.step()
        cpu += time.process_time() - start
        q_after.append(sim.true_joint_position())
    return np.array(q_after), len(record.frames) * sim.steps_per_tick * sim.physics_dt, cpu


def smallest_joint_inertia(config: StackConfig, armature_scale: float = 1.0) -> float:
    """1 / the largest eigenvalue of the joint block of M^-1 in the standing pose (kg m^2)."""
    sim = CyberDogSim(config)
    sim.model.dof_armature[6:18] *= armature_scale
    mujoco.mj_forward(sim.model, sim.data)
    nv = sim.model.nv
    mass = np.zeros((nv, nv))
    for i in range(nv):
        mujoco.mj_mulM(sim.model, sim.data, mass[i], np.eye(nv)[i])   # M is symmetric: row i = M e_i
    return float(1.0 / np.linalg.eigvalsh(np.linalg.inv(mass)[6:, 6:]).max())


def difference(q: np.ndarray, reference: np.ndarray) -> dict:
    d = np.abs(q - reference)
    return {"max_rad": float(d.max()), "mean_rad": float(d.mean())}


def run(config: StackConfig) -> dict:
    results: dict = {"methods": [], "explicit_stability": []}
    for scale in (1.0, 0.8):
        inertia = smallest_joint_inertia(config, scale)
        limits = {f"{1e3 * dt:g} ms": 2.0 * inertia / dt for dt in (0.002, 0.001, 0.0005)}
        results["explicit_stability"].append({"armature_scale": scale, "smallest_joint_inertia": inertia,
                                              "largest_stable_kd": limits})
        print(f"armature x{scale}: smallest joint inertia {inertia:.5f} kg m^2, explicit law stable up to kd",
              {k: round(v, 2) for k, v in limits.items()}, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        legacy = legacy_model_file(Path(tmp))
        reference = {"hang_step": hang_step(make_sim(config, REFERENCE, legacy)),
                     "hang_step_kd5": hang_step(make_sim(config, REFERENCE, legacy), kd=5.0),
                     "stand_squat": stand_squat(make_sim(config, REFERENCE, legacy)),
                     "hang_step_latency": hang_step(make_sim(config, REFERENCE, legacy, latency_s=0.001))}
        trot = record_trot(config)
        for method in METHODS:
            row = {"method": method.name, "pd": method.actuator.pd, "physics_dt_ms": 1e3 * method.actuator.physics_dt_s,
                   "hang_step": difference(hang_step(make_sim(config, method, legacy)), reference["hang_step"]),
                   "hang_step_kd5": difference(hang_step(make_sim(config, method, legacy), kd=5.0),
                                               reference["hang_step_kd5"]),
                   "stand_squat": difference(stand_squat(make_sim(config, method, legacy)), reference["stand_squat"]),
                   "hang_step_latency": difference(hang_step(make_sim(config, method, legacy, latency_s=0.001)),
                                                   reference["hang_step_latency"])}
            q, _, _ = replay_trot(make_sim(config, method, legacy), trot)
            row["trot"] = difference(q, trot.q_after)
            results["methods"].append(row)
        speeds = costs(config, (*METHODS, REFERENCE), legacy, trot)
        for row, speed in zip(results["methods"], speeds):
            row["sim_s_per_cpu_s"] = speed
            print(_line(row), flush=True)
        q, _, _ = replay_trot(make_sim(config, REFERENCE, legacy), trot)
        results["reference"] = {"method": REFERENCE.name, "physics_dt_ms": 1e3 * REFERENCE.actuator.physics_dt_s,
                                "trot_replay_self_max_rad": float(np.abs(q - trot.q_after).max()),
                                "sim_s_per_cpu_s": speeds[-1]}
        print("reference", results["reference"], flush=True)
    return results


def costs(config: StackConfig, methods: tuple, legacy: Path, trot: TrotRecord) -> list[float]:
    """Simulated seconds per CPU second of each method's trot replay, the best of REPEATS rounds."""
    best = [np.inf] * len(methods)
    sim_s = 0.0
    for _ in range(REPEATS):
        for i, method in enumerate(methods):
            _, sim_s, cpu_s = replay_trot(make_sim(config, method, legacy), trot)
            best[i] = min(best[i], cpu_s)
    return [sim_s / cpu for cpu in best]


def _line(row: dict) -> str:
    cells = [f"{row['method']:28s} {row['physics_dt_ms']:5.2f} ms"]
    for key in ("hang_step", "hang_step_kd5", "stand_squat", "trot", "hang_step_latency"):
        cells.append(f"{key} {row[key]['max_rad']:.4f}/{row[key]['mean_rad']:.5f}")
    cells.append(f"{row['sim_s_per_cpu_s']:.1f} sim-s/cpu-s")
    return "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here too")
    args = parser.parse_args()
    results = run(load_config())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
