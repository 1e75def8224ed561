"""The MuJoCo CyberDog 2 behind LCM, playing the robot's motion-control board for tests and dry runs (no ROS).

It receives `motor_ctrl` (internal convention on the wire, converted to the SDK user convention for
sim/firmware.py), runs the firmware protection and the 500 Hz joint law in the simulator, and publishes
`leg_control_data` and `state_estimator` (separate URL, port 7669) every frame and `motor_ctrl_state` every
`state_every` frames. It emulates the SDK's motor-mode handshake: err_flag bit 1 is set at start and after a
command gap over 500 ms; while it is set, non-zero frames are ignored (motors passive at start, high damping
after a gap) and `activation_frames` consecutive all-zero frames clear it. Bit 0 is set while the gap exceeds
10 ms; bits 2-4 are set while the newest frame asked for a bigger abad / hip / knee q_des step than the firmware
allows (the step is clipped; `status()` counts such frames). (Not emulated: the real firmware's 2 s lying-down
wait before a reset.)

    python -m diffuseloco_sim.lcm_robot_peer --duration 10
    python -m diffuseloco_sim.lcm_robot_peer --lcm-url 'udpm://239.255.76.67:7667?ttl=0'

Keep LCM on this host: ttl=0 URLs, ideally inside a private network namespace (see docs/deployment.md).
It prints "ready" once subscribed, one JSON status line per `--report-s`, and a final JSON line at exit.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from typing import Optional

import numpy as np

from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from . import CyberDogSim, SimConfig
from .firmware import GAP_DAMPING_S, GAP_SCALE_S, MotorFirmware
from diffuseloco_policy.bridge.lcm_bridge import (
    DEFAULT_ESTIMATOR_LCM_URL, DEFAULT_LCM_URL, ERR_GAP_DAMPING, ERR_GAP_WARNING, ERR_STEP_ABAD, ERR_STEP_HIP,
    ERR_STEP_KNEE, LEG_CONTROL_DATA, MOTOR_CTRL,
    MOTOR_CTRL_STATE, NUM_LEGS, STATE_ESTIMATOR, LcmEndpoint, LegData, MotorCtrlState, command_from_motor_ctrl,
    is_zero_frame, leg_control_data_lcm, motor_ctrl_state_lcm, state_estimator_lcm)
from diffuseloco_policy.bridge.lcm_types import motor_ctrl_lcmt


class LcmRobotPeer:
    def __init__(self, lcm_url: str = DEFAULT_LCM_URL, estimator_url: str = DEFAULT_ESTIMATOR_LCM_URL,
                 config: Optional[str] = None, seed: int = 0, state_every: int = 5, activation_frames: int = 3,
                 real_time: bool = True) -> None:
        self.config = load_config(config)
        self.sim = CyberDogSim(self.config, SimConfig().without_pushes(), seed=seed)
        self.convention = JointConvention(self.config.robot)
        self.firmware = MotorFirmware(self.config.robot)
        self.state_every, self.activation_frames, self.real_time = state_every, activation_frames, real_time
        self.err_flag = ERR_GAP_DAMPING            # as the firmware: communication error until activated
        self._zero_run = 0
        self._last_frame_time: Optional[float] = None   # sim time of the newest accepted frame
        self._interval = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.frames_received = self.frames_ignored = self.activations = 0
        self.last_frame: Optional[motor_ctrl_lcmt] = None
        self.rx = LcmEndpoint(lcm_url, "peer-rx")
        self.rx.subscribe(MOTOR_CTRL, motor_ctrl_lcmt.decode, self._on_motor_ctrl)
        self.tx = LcmEndpoint(lcm_url, "peer-tx")
        self.estimator = LcmEndpoint(estimator_url, "peer-estimator")

    # ------------------------------------------------------------------------------------------- commands
    def _on_motor_ctrl(self, msg: motor_ctrl_lcmt) -> None:
        with self._lock:
            now = self.sim.time
            if self._last_frame_time is not None:
                self._interval = now - self._last_frame_time
            self.frames_received += 1
            self.last_frame = msg
            zero = is_zero_frame(msg)
            if self.err_flag & ERR_GAP_DAMPING:
                self._zero_run = self._zero_run + 1 if zero else 0
                if self._zero_run < self.activation_frames:
                    self.frames_ignored += 1
                    return
                self.err_flag &= ~ERR_GAP_DAMPING
                self.firmware.reset()
                self.activations += 1
            self.firmware.receive(command_from_motor_ctrl(msg, self.convention),
                                  self.convention.to_sdk(self.sim.true_joint_position()))
            self.err_flag &= ~(ERR_STEP_ABAD | ERR_STEP_HIP | ERR_STEP_KNEE)
            for bit, exceeded in zip((ERR_STEP_ABAD, ERR_STEP_HIP, ERR_STEP_KNEE), self.firmware.step_exceeded):
                self.err_flag |= bit if exceeded else 0
            self._last_frame_time = now

    def _executed(self):
        """The command the joint loop runs this frame, updating err_flag from the command gap."""
        with self._lock:
            if self.err_flag & ERR_GAP_DAMPING or self._last_frame_time is None:
                return self.firmware.execute(math.inf)   # passive before the first frame, damping after
            gap = self.sim.time - self._last_frame_time
            if gap > GAP_DAMPING_S:
                self.err_flag |= ERR_GAP_DAMPING
                self._zero_run = 0
            self.err_flag = self.err_flag | ERR_GAP_WARNING if gap > GAP_SCALE_S else self.err_flag & ~ERR_GAP_WARNING
            return self.firmware.execute(gap)

    # -------------------------------------------------------------------------------------------- sensors
    def _publish(self) -> None:
        joints, imu, forces = self.sim.joint_state(), self.sim.imu(), self.sim.foot_forces()
        zeros, no_limits = np.zeros(12), np.zeros(NUM_LEGS, dtype=np.int32)
        data = LegData(joints.q, joints.qd, joints.tau_est, zeros, zeros, forces.reshape(12), zeros,
                       no_limits, no_limits, no_limits)
        self.tx.publish(LEG_CONTROL_DATA, leg_control_data_lcm(data, self.convention))
        velocity_world = self.sim.base_rotation() @ self.sim.body_velocity(joints, imu)   # the estimator's, not truth
        self.estimator.publish(STATE_ESTIMATOR, state_estimator_lcm(
            imu, timestamp=int(self.sim.time * 1e6), position=self.sim.base_position(),
            velocity_world=velocity_world, contact=self.sim.foot_contacts().astype(np.float64)))
        if self.sim.step_count % self.state_every == 0:
            with self._lock:
                state = MotorCtrlState(self.err_flag, self._interval)
            self.tx.publish(MOTOR_CTRL_STATE, motor_ctrl_state_lcm(state))

    # --------------------------------------------------------------------------------------------- running
    def status(self) -> dict:
        with self._lock:
            last = self.last_frame
            return {"time": round(self.sim.time, 3), "frames_received": self.frames_received,
                    "frames_ignored": self.frames_ignored, "activations": self.activations,
                    "err_flag": self.err_flag, "base_height": round(self.sim.base_height(), 4),
                    "last_q_des_wire": None if last is None else [round(v, 4) for v in last.q_des],
                    "last_kp": None if last is None else [round(v, 3) for v in last.kp_des],
                    "step_violations": self.firmware.step_violations, "decode_errors": self.rx.errors}

    def run(self, duration: Optional[float] = None, report_s: float = 0.0) -> None:
        self.rx.start()
        dt = self.sim.physics_dt
        next_wall = start = time.monotonic()
        next_report = report_s
        while not self._stop.is_set() and (duration is None or self.sim.time < duration):
            self.sim.command(self._executed())
            self.sim.step(1)
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
    parser.add_argument("--activation-frames", type=int, default=3)
    args = parser.parse_args(argv)
    peer = LcmRobotPeer(args.lcm_url, args.estimator_url, args.config, args.seed,
                        activation_frames=args.activation_frames)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: peer.stop())
    print("ready", flush=True)
    try:
        peer.run(args.duration, args.report_s)
    finally:
        peer.close()
        print(json.dumps({"final": True, **peer.status()}), flush=True)


if __name__ == "__main__":
    main()
