"""One evaluation episode: the deployed PolicyLoop driving the simulator, measured from ground truth.

The loop is the one the robot runs: PASSIVE -> STAND_UP -> (stand complete) -> RUN, then the scenario's commands
through set_skill_command; each tick its command goes to the simulator with command_pd (q_des, qd_des, gains),
exactly the motor frame the node would publish. Simulated time drives the loop; the sampler runs in its real
inference thread. For determinism the loop waits up to inference_wait_s (default 1 s) for each chunk and the
harness lets the sampler finish (InferenceWorker.wait_idle) before simulated time advances, so results do not
depend on machine load; the sampler's wall-clock time is recorded separately (latency, over-budget calls).

Metrics (all from the simulator's ground truth, never from the policy's inputs):
- tracking, per scored segment after settle_s: mean per-tick |achieved - commanded| of vx, vy (heading frame)
  and yaw rate ("abs_error"), and |segment mean - commanded| ("mean_error", the expert evaluator's metric);
- a fall: sim.fallen(), or the controller leaving RUNNING (a fault); the episode stops there; survival time;
- transitions (a skill change after a scored segment): no fall within window_s, and the new skill's contact
  pattern (experts.evaluate.contact_pattern) in (switch + pattern_from_s, switch + window_s];
- contact pattern per segment (diagonal / lateral / front_rear shares of two-feet-down ticks, four-feet share, and
  the share of ticks with the four feet together, all down or all up: a hop's in_step);
- gait modes (modes.py) per segment and, per command (a class, or a skill of its own), per episode: which gait
  the policy walked, how purely, and how often it changed gait unbidden;
- sampler latency (per call) and PolicyLoop deadline misses;
- the episode's physics draw (the simulator's EpisodeParams: friction, payload, gain and strength scales, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from diffuseloco_policy.config import StackConfig
from diffuseloco_policy.controller import ControllerRequest, ControllerState
from ..experts.evaluate import contact_pattern, in_step_share
from diffuseloco_policy.policy_loop import PolicyLoop
from diffuseloco_policy.safety import ImuSample, JointSample, VelocitySample
from diffuseloco_sim import CyberDogSim
from diffuseloco_sim.tick_clock import TickClock
from .modes import episode_modes, stretch_modes
from .policies import EvalPolicy
from .scenarios import Scenario, ScenarioMatrix


@dataclass(frozen=True)
class LoopOptions:
    """How the PolicyLoop is built: the deployed design by default, or an ablation."""

    inference_wait_s: float = 1.0
    current_frame: bool = False
    replan_every: int = 1
    tick_jitter_steps: float = 0.0

    @property
    def name(self) -> str:
        parts = (["current_frame"] if self.current_frame else []) + (
            [f"open_loop_chunk{self.replan_every}"] if self.replan_every > 1 else []) + (
            [f"tick_jitter{self.tick_jitter_steps:g}"] if self.tick_jitter_steps > 0 else [])
        return "+".join(parts) or "deployed"


@dataclass
class Trace:
    """Per-tick record of an episode (for plots; not written to results.json)."""

    t: np.ndarray          # s after RUN
    command: np.ndarray    # (T, 3) in effect
    achieved: np.ndarray   # (T, 3) vx, vy (heading frame), yaw rate
    contacts: np.ndarray   # (T, 4) FR, FL, RR, RL
    skill: np.ndarray      # (T,)


def samples(sim: CyberDogSim, now: float) -> tuple[JointSample, ImuSample, VelocitySample]:
    """What the robot's drivers would deliver now, stamped `now`: joint state, IMU and the estimator's vBody."""
    state = sim.robot_state()
    return (JointSample(state.joint_position, state.joint_velocity, now, now),
            ImuSample(state.quaternion, state.angular_velocity, now, now),
            VelocitySample(state.linear_velocity, now, now))


def run_episode(config: StackConfig, sim: CyberDogSim, policy: EvalPolicy, scenario: Scenario,
                matrix: ScenarioMatrix, seed: int, options: LoopOptions = LoopOptions()
                ) -> tuple[dict[str, Any], Trace]:
    physics = asdict(sim.reset(seed=seed))   # this episode's draw, kept with its result
    policy.start_episode(seed)
    loop = PolicyLoop(config, policy, inference_wait_s=options.inference_wait_s, reset_sampler=policy.reset,
                      current_frame=options.current_frame, replan_every=options.replan_every)
    dt, hz = config.rates.control_dt, config.rates.control_hz
    clock = TickClock(sim.steps_per_tick, options.tick_jitter_steps, seed)
    try:
        t_run = _stand_up_and_run(loop, sim, policy, dt, clock)
        trace, fall = _run_schedule(loop, sim, policy, scenario, dt, hz, clock)
        misses = loop.deadline_misses
    finally:
        loop.close()
    segments = _segments(config, scenario, matrix, trace)
    result = {"scenario": scenario.name, "group": scenario.group, "seed": seed, "physics": physics, "run_at_s": t_run,
              **fall, "survival_s": fall["fall_time_s"] if fall["fell"] else scenario.duration_s,
              "segments": segments, "modes": episode_modes(segments),
              "transitions": _transitions(config, scenario, matrix, trace, fall),
              "latency": latency_stats(policy.latencies, dt), "sampler_errors": policy.errors,
              "deadline_misses": misses}
    return result, trace


def _tick(loop: PolicyLoop, sim: CyberDogSim, policy: EvalPolicy, clock: TickClock, wait_s: float = 5.0):
    now = sim.time
    policy.before_tick(sim)
    report = loop.tick(now, *samples(sim, now))
    c = report.command
    sim.command_pd(c.q, c.dq, c.kp, c.kd, c.tau)
    loop.worker.wait_idle(wait_s)  # the sampler sees the state it was given, whatever the machine load
    sim.step(clock.next_period())
    return report


def _stand_up_and_run(loop: PolicyLoop, sim: CyberDogSim, policy: EvalPolicy, dt: float, clock: TickClock
                      ) -> float:
    for _ in range(2):
        _tick(loop, sim, policy, clock)
    accepted, message = loop.request(ControllerRequest.STAND_UP, source="evaluation")
    if not accepted:
        raise RuntimeError(f"STAND_UP refused: {message}")
    limit = int((loop.config.controller.stand_up_duration + 2.0) / dt)
    for _ in range(limit):
        _tick(loop, sim, policy, clock)
        if loop.controller.stand_complete:
            break
    accepted, message = loop.request(ControllerRequest.RUN, source="evaluation")
    if not accepted:
        raise RuntimeError(f"RUN refused: {message}")
    return sim.time


def _run_schedule(loop: PolicyLoop, sim: CyberDogSim, policy: EvalPolicy, scenario: Scenario, dt: float,
                  hz: float, clock: TickClock) -> tuple[Trace, dict[str, Any]]:
    n = int(round(scenario.duration_s * hz))
    t, cmd, vel, feet, skills = [], [], [], [], []
    fall = {"fell": False, "fall_time_s": None, "fall_reason": ""}
    current = -1
    for k in range(n):
        t_rel = k * dt
        index = scenario.segment_at(t_rel)
        if index != current:
            segment = scenario.segments[index]
            loop.set_skill_command(segment.skill, *segment.command)
            current = index
        report = _tick(loop, sim, policy, clock)
        t.append(t_rel + dt)
        cmd.append(loop.skill.command.copy())
        vel.append([*sim.base_velocity_heading(), sim.yaw_rate()])
        feet.append(sim.foot_contacts())
        skills.append(loop.skill.skill)
        reason = ""
        if sim.fallen():
            reason = "fallen"
        elif report.state != ControllerState.RUNNING:
            reason = f"controller {report.state.name}: {loop.last_fault or report.fault or 'left RUNNING'}"
        if reason:
            fall = {"fell": True, "fall_time_s": round(t_rel + dt, 4), "fall_reason": reason}
            break
    trace = Trace(np.array(t), np.array(cmd).reshape(-1, 3), np.array(vel).reshape(-1, 3),
                  np.array(feet, dtype=bool).reshape(-1, 4), np.array(skills, dtype=int))
    return trace, fall


def gait_stats(contacts: np.ndarray) -> dict[str, Any]:
    """contact_pattern's shares plus the counts needed to pool them over segments."""
    contacts = np.asarray(contacts, dtype=bool).reshape(-1, 4)
    down = contacts.sum(axis=1)
    return {"ticks": int(len(contacts)), "two_feet_ticks": int(np.sum(down == 2)),
            "four_feet_share": float(np.mean(down == 4)) if len(contacts) else 0.0,
            "flight_ticks": int(np.sum(down == 0)), "in_step": in_step_share(contacts),
            **contact_pattern(contacts)}


def pattern_share(stats: dict[str, Any], pattern: str, min_two_feet: float) -> float:
    """How much of the window shows `pattern` (0 when too few two-feet ticks for a gait to be there; for in_step,
    a hop, too few ticks with all four feet in the air: a stand has its feet together too)."""
    if pattern == "all_feet":
        return stats["four_feet_share"]
    if pattern == "in_step":
        flying = stats.get("flight_ticks", 0) >= min_two_feet * stats["ticks"] > 0
        return stats.get("in_step", 0.0) if flying else 0.0
    if stats["ticks"] == 0 or stats["two_feet_ticks"] < min_two_feet * stats["ticks"]:
        return 0.0
    return stats[pattern]


def _segments(config: StackConfig, scenario: Scenario, matrix: ScenarioMatrix, trace: Trace) -> list[dict]:
    out = []
    for i, segment in enumerate(scenario.segments):
        if segment.lead_in:
            continue
        start, end = segment.start_s, scenario.end_of(i)
        mask = (trace.t > start + matrix.settle_s) & (trace.t <= end + 1e-9)
        # what PolicyLoop put in effect: for a class model the class's command (its range is the class's)
        entry_of = config.command(segment.skill)
        in_effect = entry_of.clamp_command(*segment.command)
        entry = {"skill": config.skill(segment.skill).name, "command": list(in_effect), "start_s": start,
                 "end_s": end, "ticks": int(mask.sum())}
        if config.command_classes:
            entry["command_class"] = entry_of.name
        if mask.any():
            achieved = trace.achieved[mask]
            command = np.asarray(in_effect)
            entry.update(mean_achieved=achieved.mean(axis=0).tolist(),
                         abs_error=np.abs(achieved - command).mean(axis=0).tolist(),
                         mean_error=np.abs(achieved.mean(axis=0) - command).tolist(),
                         gait=gait_stats(trace.contacts[mask]),
                         modes=stretch_modes(trace.contacts[mask], config.rates.control_hz))
        out.append(entry)
    return out


def _transitions(config: StackConfig, scenario: Scenario, matrix: ScenarioMatrix, trace: Trace,
                 fall: dict[str, Any]) -> list[dict]:
    out, crit = [], matrix.transition
    for i in range(1, len(scenario.segments)):
        before, after = scenario.segments[i - 1], scenario.segments[i]
        if before.lead_in or before.skill == after.skill:
            continue
        at = after.start_s
        window_end = min(at + crit.window_s, scenario.duration_s)
        name = config.skill(after.skill).name
        expected = matrix.gaits.get(name)
        entry = {"from": config.skill(before.skill).name, "to": name, "at_s": at, "expected": expected}
        if fall["fell"] and fall["fall_time_s"] <= at:
            entry.update(reached=False, survived=False, pattern_share=0.0, success=False)
            out.append(entry)
            continue
        survived = not (fall["fell"] and fall["fall_time_s"] <= window_end)
        mask = (trace.t > at + crit.pattern_from_s) & (trace.t <= window_end + 1e-9)
        share = pattern_share(gait_stats(trace.contacts[mask]), expected, crit.min_two_feet) if expected else None
        established = share is None or share >= crit.min_share
        entry.update(reached=True, survived=survived, pattern_share=share, success=bool(survived and established))
        out.append(entry)
    return out


def latency_stats(latencies: list[float], budget_s: float) -> dict[str, Any]:
    """Sampler wall-clock time per call (ms) and the share of calls over the control period."""
    if not latencies:
        return {"calls": 0}
    ms = np.asarray(latencies) * 1e3
    return {"calls": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "over_budget": float(np.mean(ms > budget_s * 1e3))}
