"""A policy node that falls silent: the relay (LCM bridge, and the sim node's copy of it) stands the dog, holds,
lies it down and goes silent (bridge/stall_posture.py), instead of leaving a trotting dog to the firmware's gap
rules, which first freeze its last frame and after 500 ms damp it."""

from __future__ import annotations

import numpy as np
import pytest

from diffuseloco_learning.experts.controller import ExpertController
from diffuseloco_policy.bridge.lcm_bridge import CommandRelay
from diffuseloco_policy.bridge.stall_posture import StallPosture, StallTiming
from diffuseloco_policy.config import load_config
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.motor_sdk import MotorCommand as SdkMotorCommand
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_policy.safety import PDCommand, SafetyFilter
from diffuseloco_policy.stance_support import support_torques
from diffuseloco_sim import CyberDogSim, SimConfig

CONFIG = load_config()
CONVENTION = JointConvention(CONFIG.robot)
DEFAULT = np.asarray(CONFIG.robot.default_pose)
LYING = np.asarray(CONFIG.controller.lying_pose)
HOLD = 0.1
TIMING = StallTiming(stand_s=0.5, hold_s=1.0, lie_down_s=1.0)


def relay(posture: bool = True, activation: bool = False) -> CommandRelay:
    return CommandRelay(hold_s=HOLD, require_activation=activation,
                        stall_posture=StallPosture(CONFIG, TIMING) if posture else None)


def trot_pose_command() -> SdkMotorCommand:
    q = DEFAULT + np.tile([0.05, 0.2, -0.3], 4)
    return SdkMotorCommand.position(CONVENTION.to_sdk(q), CONFIG.robot.kp, CONFIG.robot.kd)


def model_q(frame: SdkMotorCommand) -> np.ndarray:
    return CONVENTION.to_model(np.asarray(frame.q_des))


def test_a_silent_policy_is_stood_held_laid_down_then_left_to_the_firmware():
    r = relay()
    command = trot_pose_command()
    r.submit(command, 0.0)
    assert r.frame(0.05) is command and r.stall_phase(0.05) == ""
    first = r.frame(HOLD + 0.002)                      # the hold ran out: the stand starts where the command was
    assert r.stall_phase(HOLD + 0.002) == "stand" and r.stalls == 1
    np.testing.assert_allclose(model_q(first), model_q(command), atol=1e-4)
    assert np.all(first.kp == CONFIG.controller.stand_kp) and np.all(first.kd == CONFIG.controller.stand_kd)
    assert not np.any(first.qd_des)
    standing = r.frame(HOLD + TIMING.stand_s + 0.1)
    assert r.stall_phase(HOLD + TIMING.stand_s + 0.1) == "hold"
    np.testing.assert_allclose(model_q(standing), DEFAULT)
    np.testing.assert_allclose(CONVENTION.to_model(np.asarray(standing.tau)),
                               support_torques(DEFAULT, CONFIG.controller.support_mass))   # the weight fed forward
    lying_at = HOLD + TIMING.total_s - 1e-3
    np.testing.assert_allclose(model_q(r.frame(lying_at)), LYING, atol=1e-3)
    assert r.frame(HOLD + TIMING.total_s + 0.01) is None            # silence: the firmware's gap rules
    assert r.stall_phase(HOLD + TIMING.total_s + 0.01) == "done"


def test_a_fresh_command_ends_the_stall_posture_at_once():
    r = relay()
    r.submit(trot_pose_command(), 0.0)
    r.frame(0.01)
    assert r.frame(0.3) is not None and r.stall_phase(0.3) == "stand"
    again = trot_pose_command()
    r.submit(again, 0.31)
    assert r.frame(0.312) is again and r.stall_phase(0.312) == ""
    r.frame(0.5)
    assert r.stalls == 2                                 # a second silence is a second stall


def test_no_posture_without_a_forwarded_command_active_motor_mode_or_the_option():
    quiet = relay(posture=False)
    quiet.submit(trot_pose_command(), 0.0)
    quiet.frame(0.01)
    assert quiet.frame(0.2) is None
    inactive = relay(activation=True)                    # the firmware never confirmed motor mode
    inactive.submit(trot_pose_command(), 0.0)
    inactive.frame(0.01)
    assert inactive.frame(0.2) is None and inactive.stalls == 0


def test_stall_timing_refuses_nonsense():
    with pytest.raises(ValueError):
        StallTiming(stand_s=0.0)


def trot_then_stall(posture: bool, stall_s: float, seed: int) -> tuple[bool, float]:
    """Trot at 0.4 m/s on the simulated robot through the relay, as the sim node drives it; the commander is
    silent for stall_s; returns (fell, lowest trunk height over the stall and 1 s after)."""
    sim = CyberDogSim(CONFIG, SimConfig.randomized().without_pushes(), seed=seed, bridge_hold_s=0.0)
    expert, decoder, safety = ExpertController(CONFIG), ActionDecoder(CONFIG), SafetyFilter(CONFIG)
    r = CommandRelay(hold_s=HOLD, require_activation=False, stall_posture=StallPosture(CONFIG) if posture else None,
                     advance_s=CONFIG.rates.control_dt)
    trot, previous, lowest = CONFIG.skill("trot").id, None, np.inf
    stall_from, stall_to = 3.0, 3.0 + stall_s
    ticks = int((stall_to + 1.0) * CONFIG.rates.control_hz)
    for tick in range(ticks):
        now = sim.time
        if not stall_from <= now < stall_to:
            state = sim.robot_state()
            target, target_next = expert.act(state, sim.base_velocity_body()[:2], np.array([0.4, 0.0, 0.0]), trot)
            q, qd = decoder.targets(decoder.action(target), decoder.action(target_next))
            safe, _ = safety.filter(PDCommand(q=q, dq=qd, kp=np.full(12, CONFIG.robot.kp),
                                              kd=np.full(12, CONFIG.robot.kd), tau=expert.torque),
                                    previous, state.joint_position)
            previous = safe.q
            to_sdk = CONVENTION.to_sdk
            r.submit(SdkMotorCommand(to_sdk(safe.q), to_sdk(safe.dq), safe.kp, safe.kd, to_sdk(safe.tau)), now)
        for _ in range(sim.steps_per_tick // sim.steps_per_frame):
            frame = r.frame(sim.time)
            if frame is not None:
                sim.command(frame)
            sim.step(sim.steps_per_frame)
        if now >= stall_from:
            lowest = min(lowest, sim.base_height())
        if sim.fallen():
            return True, lowest
    return False, lowest


def test_a_trotting_dog_whose_policy_stalls_for_a_second_is_stood_not_dropped():
    """Without the posture the firmware keeps the last trot frame, then damps it after 500 ms: the dog sinks.
    With it the dog is standing within the stall, at standing height."""
    fell, lowest = trot_then_stall(posture=True, stall_s=1.0, seed=3)
    assert not fell and lowest > 0.2, lowest
    fell_before, lowest_before = trot_then_stall(posture=False, stall_s=1.0, seed=3)
    assert fell_before or lowest_before < lowest - 0.03, (lowest_before, lowest)
