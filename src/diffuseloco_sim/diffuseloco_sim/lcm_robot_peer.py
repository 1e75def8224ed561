"""The MuJoCo CyberDog 2 behind LCM, playing the robot's motion-control board for tests and dry runs (no ROS).

It receives `motor_ctrl` (the firmware's internal convention on the wire) and hands every frame to the simulator,
whose firmware model (sim/firmware.py, the one FsmStateMotorCtrl::Run() + LegController::UpdateCommand model)
runs each 2 ms frame with the command gap in milliseconds since the newest frame arrived: nothing re-sends
frames here, so the gap rules act exactly as on the robot. The robot starts out of motor mode (passive, lying
down after a moment); the first frame enters motor mode with err_flag bit 1 set, so a client must send all-zero
frames for ~2.5 s before its gains take effect, and again after any gap over 500 ms (kd 4 for ~2.5 s, then limp).
It publishes `leg_control_data`, `spi_data` (motor readings, flags, temperatures) and `state_estimator` (separate
URL, port 7669) every frame and `motor_ctrl_state` (err_flag, ctrl_topic_interval in ms) every `state_every`
frames. For fault tests a motor flag or a motor temperature can be raised on purpose (`inject_motor_flag`,
`set_temperature`, or --fault JOINT:FLAG@T and --temperature JOINT:CELSIUS@T on the command line).
(Not emulated: the real firmware's 2 s lying-down wait before a reset, the remote control's priority.)

    python -m diffuseloco_sim.lcm_robot_peer --duration 10
    python -m diffuseloco_sim.lcm_robot_peer --lcm-url 'udpm://239.255.76.67:7667?ttl=0'

Keep LCM on this host: ttl=0 URLs, ideally inside a private network namespace (see docs/deployment.md).
It prints "ready" once subscribed, one JSON status line per `--report-s`, and a final JSON line at exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Optional

import numpy as np

from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from . import CyberDogSim, SimConfig
from diffuseloco_policy.bridge.lcm_bridge import (
    DEFAULT_ESTIMATOR_LCM_URL, DEFAULT_LCM_URL, LEG_CONTROL_DATA, MOTOR_CTRL, MOTOR_CTRL_STATE, MOTOR_MODE_RUNNING,
    NUM_JOINTS, NUM_LEGS, SPI_DATA, STATE_ESTIMATOR, LcmEndpoint, LegData, MotorCtrlState, MotorData,
    command_from_motor_ctrl, is_zero_frame, leg_control_data_lcm, motor_ctrl_state_lcm, spi_data_lcm,
    state_estimator_lcm)
from diffuseloco_policy.bridge.lcm_types import motor_ctrl_lcmt

MOTOR_TEMPERATURE_C = 35.0   # what the simulated motors report unless a test sets otherwise


class LcmRobotPeer:
    def __init__(self, lcm_url: str = DEFAULT_LCM_URL, estimator_url: str = DEFAULT_ESTIMATOR_LCM_URL,
                 config: Optional[str] = None, seed: int = 0, state_every: int = 5, real_time: bool = True) -> None:
        self.config = load_config(config)
        # no re-sending between frames (bridge_hold_s 0): the gap is the real one since the newest frame arrived
        self.sim = CyberDogSim(self.config, SimConfig().without_pushes(), seed=seed, bridge_hold_s=0.0)
        self.sim.reset(motor_mode=False)
        self.firmware = self.sim.firmware
        self.convention = JointConvention(self.config.robot)
        self.state_every, self.real_time = state_every, real_time
        self._last_frame_time: Optional[float] = None   # sim time of the newest frame
        self._lock = threading.RLock()   # _step applies scheduled faults under it
        self._stop = threading.Event()
        self.frames_received = self.zero_frames_received = self.activations = 0
        self._was_damping = True
        self.last_frame: Optional[motor_ctrl_lcmt] = None
        self.motor_flags = np.full(NUM_JOINTS, MOTOR_MODE_RUNNING, dtype=np.int64)
        self.temperature = np.full(NUM_JOINTS, MOTOR_TEMPERATURE_C)
        self._scheduled: list[tuple[float, str, int, float]] = []   # (sim time, "flag" | "temperature", joint, value)
        self.rx = LcmEndpoint(lcm_url, "peer-rx")
        self.rx.subscribe(MOTOR_CTRL, motor_ctrl_lcmt.decode, self._on_motor_ctrl)
        self.tx = LcmEndpoint(lcm_url, "peer-tx")
        self.estimator = LcmEndpoint(estimator_url, "peer-estimator")

    @property
    def err_flag(self) -> int:
        return self.firmware.err_flag

    # ------------------------------------------------------------------------------------------- faults
    def inject_motor_flag(self, joint: int, flag: int) -> None:
        """Raise error / warning bits in one motor's spi_data flag word (its mode bits stay)."""
        with self._lock:
            self.motor_flags[joint] |= int(flag)

    def set_temperature(self, joint: int, celsius: float) -> None:
        with self._lock:
            self.temperature[joint] = float(celsius)

    def schedule(self, at_s: float, kind: str, joint: int, value: float) -> None:
        """Apply a fault at simulated time at_s: kind "flag" (value: the bits) or "temperature" (value: C)."""
        if kind not in ("flag", "temperature"):
            raise ValueError(f"unknown fault kind {kind!r}")
        self._scheduled.append((at_s, kind, joint, value))

    def _apply_scheduled(self) -> None:
        due = [f for f in self._scheduled if f[0] <= self.sim.time]
        for fault in due:
            self._scheduled.remove(fault)
            _, kind, joint, value = fault
            if kind == "flag":
                self.inject_motor_flag(joint, int(value))
            else:
                self.set_temperature(joint, value)

    # ------------------------------------------------------------------------------------------- commands
    def _on_motor_ctrl(self, msg: motor_ctrl_lcmt) -> None:
        with self._lock:
            self.frames_received += 1
            self.zero_frames_received += int(is_zero_frame(msg))
            self.last_frame = msg
            self._last_frame_time = self.sim.time
            self.sim.command(command_from_motor_ctrl(msg, self.convention))

    def _step(self) -> None:
        """One 2 ms frame: the firmware runs the newest frame with the gap since it arrived, physics, counters."""
        with self._lock:
            self._apply_scheduled()
            self.sim.step(1)
            damping = bool(self.firmware.err_flag & 0x02)
            if self._was_damping and not damping:
                self.activations += 1
            self._was_damping = damping

    # -------------------------------------------------------------------------------------------- sensors
    def _publish(self) -> None:
        joints, imu, forces = self.sim.joint_state(), self.sim.imu(), self.sim.foot_forces()
        zeros, no_limits = np.zeros(12), np.zeros(NUM_LEGS, dtype=np.int32)
        data = LegData(joints.q, joints.qd, joints.tau_est, zeros, zeros, forces.reshape(12), zeros,
                       no_limits, no_limits, no_limits)
        self.tx.publish(LEG_CONTROL_DATA, leg_control_data_lcm(data, self.convention))
        with self._lock:
            motors = MotorData(joints.q, joints.qd, joints.tau_est, self.motor_flags.copy(), 0, self.temperature.copy())
        self.tx.publish(SPI_DATA, spi_data_lcm(motors, self.convention))
        velocity_world = self.sim.base_rotation() @ self.sim.body_velocity(joints, imu)   # the estimator's, not truth
        self.estimator.publish(STATE_ESTIMATOR, state_estimator_lcm(
            imu, timestamp=int(self.sim.time * 1e6), position=self.sim.base_position(),
            velocity_world=velocity_world, contact=self.sim.foot_contacts().astype(np.float64)))
        if self.sim.step_count % self.state_every == 0 and self.firmware.in_motor_mode:
            with self._lock:
                interval_ms = 1000.0 * (self.sim.time - self._last_frame_time) if self._last_frame_time is not None else 0.0
                state = MotorCtrlState(self.firmware.err_flag, interval_ms)
            self.tx.publish(MOTOR_CTRL_STATE, motor_ctrl_state_lcm(state))

# --------------------------------------------------------------------------------------------- running
    def status(self) -> dict:
        with self._lock:
            last = self.last_frame
            fw = self.firmware
            return {"time": round(self.sim.time, 3), "frames_received": self.frames_received,
                    "zero_frames_received": self.zero_frames_received, "activations": self.activations,
                    "err_flag": fw.err_flag, "base_height": round(self.sim.base_height(), 4),
                    "last_q_des_wire": None if last is None else [round(v, 4) for v in last.q_des],
                    "last_kp": None if last is None else [round(v, 3) for v in last.kp_des],
                    "band_clamped_frames": fw.clamped_frames, "motor_mode_frames": fw.frames,
                    "decode_errors": self.rx.errors}

    def run(self, duration: Optional[float] = None, report_s: float = 0.0) -> None:
        self.rx.start()
        dt = self.sim.physics_dt
        next_wall = start = time.monotonic()
        next_report = report_s
        while not self._stop.is_set() and (duration is None or self.sim.time < duration):
            self._step()
            self._publish()
            if report_s and self.sim.time >= next_report:
                print(json.dumps(self.status()), flush=True)
                next_report += report_s
            if self.real_time:
                next_wall += dt
                delay = next_wall - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:
                    next_wall = time.monotonic()
        self.wall_s = time.monotonic() - start

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.rx.stop()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lcm-url", default=DEFAULT_LCM_URL)
    parser.add_argument("--estimator-url", default=DEFAULT_ESTIMATOR_LCM_URL)
    parser.add_argument("--config", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=None, help="simulated seconds (default: until Ctrl-C)")
    parser.add_argument("--report-s", type=float, default=1.0, help="status line period, simulated s (0: none)")
    parser.add_argument("--fault", action="append", default=[], metavar="JOINT:FLAG@T",
                        help="raise motor flag bits (e.g. 4:0x4@6.5: joint 4, bus over voltage, at 6.5 s simulated)")
    parser.add_argument("--temperature", action="append", default=[], metavar="JOINT:CELSIUS@T",
                        help="set a motor temperature at a simulated time (e.g. 7:82@6.5)")
    args = parser.parse_args(argv)
    peer = LcmRobotPeer(args.lcm_url, args.estimator_url, args.config, args.seed)
    for spec in args.fault:
        joint, value, at = _fault_spec(spec)
        peer.schedule(at, "flag", joint, int(value, 0))
    for spec in args.temperature:
        joint, value, at = _fault_spec(spec)
        peer.schedule(at, "temperature", joint, float(value))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: peer.stop())
    print("ready", flush=True)
    try:
        peer.run(args.duration, args.report_s)
    finally:
        peer.close()
        print(json.dumps({"final": True, **peer.status()}), flush=True)


def _fault_spec(spec: str) -> tuple[int, str, float]:
    """"JOINT:VALUE@T" -> (joint, value text, time)."""
    head, at = spec.split("@")
    joint, value = head.split(":")
    return int(joint), value, float(at)


if __name__ == "__main__":
    main()
