"""Expert evaluation CLI: velocity tracking, falls, contact patterns, speed, and a GIF per skill.

    MUJOCO_GL=egl python -m diffuseloco_learning.experts.evaluate --episodes 50 --seconds 20 --out eval/experts

Per skill: N randomized episodes (SimConfig.randomized(): noise, latency, domain randomization, pushes), the
command resampled every `--segment` seconds over the skill's whole range. Tracking error of a segment is
|mean velocity - command| over the segment after a 1.5 s settling time (a gait's velocity oscillates within
a stride, so per-sample errors would measure the gait, not the tracking); the per-tick error, which the policy
evaluation reports and which does measure the gait's wobble, is reported beside it. Contact pattern: among ticks with
exactly two feet down, the share where the pair is diagonal, lateral or front/rear; and (hop) the share of ticks
with the four feet together, all down or all in the air. Firmware: the share of 2 ms
frames in which the firmware's position band (sim/firmware.py) pulled back some q_des, and the largest |qd_des|
sent; the safety filter's band clips per tick beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from diffuseloco_policy.config import StackConfig, load_config
from diffuseloco_sim import SimConfig
from .controller import ExpertParams
from .rollout import FEEDFORWARDS, ExpertRollout, Segment, random_schedule, sample_command

PAIRS = {"diagonal": [(0, 3), (1, 2)], "lateral": [(0, 2), (1, 3)], "front_rear": [(0, 1), (2, 3)]}
SETTLE_S = 1.5


def contact_pattern(contacts: np.ndarray) -> dict[str, float]:
    """Share of two-feet-down ticks per pair type (FR, FL, RR, RL columns)."""
    two = contacts[contacts.sum(axis=1) == 2]
    if len(two) == 0:
        return {name: 0.0 for name in PAIRS}
    return {name: float(np.mean([any(row[a] and row[b] for a, b in pairs) for row in two]))
            for name, pairs in PAIRS.items()}


def in_step_share(contacts: np.ndarray) -> float:
    """Share of ticks whose four feet are together, all down or all in the air (FR, FL, RR, RL columns): a hop's
    pattern. A stand scores 1 too; what tells a hop is its flight ticks (episode.pattern_share checks them)."""
    contacts = np.asarray(contacts, dtype=bool).reshape(-1, 4)
    down = contacts.sum(axis=1)
    return float(np.mean((down == 0) | (down == 4))) if len(contacts) else 0.0


def evaluate_episode(rollout: ExpertRollout, segments: Sequence[Segment], seed: int) -> dict:
    """Run one scheduled episode; per-segment tracking errors, contacts, fall, safety-filter interventions."""
    rollout.reset(seed=seed)
    sim, hz = rollout.sim, rollout.config.rates.control_hz
    errors, tick_errors, contacts = [], [], []
    filt = {"ticks": 0, "step_limited": 0, "torque_limited": 0, "band_limited": 0, "max_qd_des": 0.0}
    for segment in segments:
        velocities = []
        for i in range(segment.ticks):
            tick = rollout.tick(segment.skill, segment.command)
            filt["ticks"] += 1
            filt["step_limited"] += any("step limited" in r for r in tick.filter_reasons)
            filt["torque_limited"] += any("torque limit" in r for r in tick.filter_reasons)
            filt["band_limited"] += any("band" in r for r in tick.filter_reasons)
            filt["max_qd_des"] = max(filt["max_qd_des"], float(np.max(np.abs(tick.velocity_target))))
            if sim.fallen():
                return {"fell": True, "errors": errors, "tick_errors": tick_errors, "contacts": contacts,
                        "filter": filt, "firmware": _firmware_counts(sim)}
            if i >= SETTLE_S * hz:
                velocities.append([*sim.base_velocity_heading(), sim.yaw_rate()])
                contacts.append(sim.foot_contacts())
        if velocities:
            errors.append(np.abs(np.mean(velocities, axis=0) - np.array(segment.command)))
            tick_errors.append(np.abs(np.array(velocities) - np.array(segment.command)).mean(axis=0))
    return {"fell": False, "errors": errors, "tick_errors": tick_errors, "contacts": contacts, "filter": filt,
            "firmware": _firmware_counts(sim)}


def _firmware_counts(sim) -> dict:
    """Motor-mode frames of the episode and those in which the firmware's band pulled back a q_des (kp > 0)."""
    return {"frames": sim.firmware.frames, "clamped": sim.firmware.clamped_frames}


def evaluate_skill(config: StackConfig, skill: Optional[int], episodes: int, seconds: float, segment_s: float,
                   seed: int, params: ExpertParams, sim_config: SimConfig, rate_limit: bool = True,
                   delayed: bool = False, feedforward: str = "plan") -> dict:
    """Aggregate over episodes; skill None means random skill switches every segment. delayed: the experts act
    one tick late, on s[t-1], as the dataset generator records them by default. feedforward: see ExpertRollout."""
    rng = np.random.default_rng(seed)
    rollout = ExpertRollout(config, sim_config, seed=seed, expert_params=params, rate_limit=rate_limit,
                            delayed=delayed, feedforward=feedforward)
    hz = config.rates.control_hz
    falls, errors, tick_errors, contacts, sim_time = 0, [], [], [], 0.0
    filt = {"ticks": 0, "step_limited": 0, "torque_limited": 0, "band_limited": 0}
    max_qd_des, frames, clamped = 0.0, 0, 0
    start = time.perf_counter()
    for ep in range(episodes):
        if skill is None:
            segments = random_schedule(config, rng, int(seconds * hz), segment_s=(segment_s, segment_s))
        else:
            segments = [Segment(0, (0.0, 0.0, 0.0), int(0.5 * hz))] + [
                Segment(skill, sample_command(config, skill, rng), int(segment_s * hz))
                for _ in range(int(seconds / segment_s))]
        result = evaluate_episode(rollout, segments, seed=int(rng.integers(2**31)))
        falls += int(result["fell"])
        errors += result["errors"]
        tick_errors += result["tick_errors"]
        contacts += result["contacts"]
        for key in filt:
            filt[key] += result["filter"][key]
        max_qd_des = max(max_qd_des, result["filter"]["max_qd_des"])
        frames += result["firmware"]["frames"]
        clamped += result["firmware"]["clamped"]
        sim_time += rollout.sim.time
    wall = time.perf_counter() - start
    err = np.mean(errors, axis=0) if errors else np.full(3, np.nan)
    per_tick = np.mean(tick_errors, axis=0) if tick_errors else np.full(3, np.nan)
    return {"episodes": episodes, "falls": falls, "fall_rate": falls / episodes,
            "error_vx": float(err[0]), "error_vy": float(err[1]), "error_yaw_rate": float(err[2]),
            "tick_error_vx": float(per_tick[0]), "tick_error_vy": float(per_tick[1]),
            "tick_error_yaw_rate": float(per_tick[2]),
            "contacts": ({**contact_pattern(np.array(contacts)), "in_step": in_step_share(np.array(contacts))}
                         if contacts else {}),
            "step_limited_ticks": filt["step_limited"] / max(filt["ticks"], 1),
            "torque_limited_ticks": filt["torque_limited"] / max(filt["ticks"], 1),
            "band_limited_ticks": filt["band_limited"] / max(filt["ticks"], 1),
            "firmware_clamped_frames": clamped / max(frames, 1), "max_abs_qd_des": max_qd_des,
            "realtime_factor": sim_time / wall}


def render_gif(config: StackConfig, skill: int, command: Sequence[float], path: Path, seconds: float = 4.0,
               params: Optional[ExpertParams] = None, size: tuple[int, int] = (128, 168), every: int = 4) -> None:
    """A short, small headless GIF (needs MUJOCO_GL=egl) of the expert from the tracking camera.

    Defaults: 168x128 pixels, every 4th control tick (12.5 fps), which keeps a 4 s clip well under 1.5 MB.
    """
    import imageio.v2 as imageio
    import mujoco

    rollout = ExpertRollout(config, SimConfig(), expert_params=params)
    frames = []
    hz = config.rates.control_hz
    with mujoco.Renderer(rollout.sim.model, *size) as renderer:
        for k in range(int(seconds * hz)):
            rollout.tick(skill if k > 25 else 0, command)
            if k % every == 0:
                renderer.update_scene(rollout.sim.data, camera="track")
                frames.append(renderer.render())
    imageio.mimsave(path, frames, duration=1000.0 * every / hz, loop=0)


def markdown_table(results: dict) -> str:
    lines = ["| skill | episodes | falls | vx err | vy err | yaw err | diagonal | lateral | front/rear | in step | "
             "step-limited ticks | band-limited ticks | firmware-clamped frames | max abs qd_des | x real time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c = r.get("contacts", {})
        lines.append(f"| {name} | {r['episodes']} | {r['falls']} | {r['error_vx']:.3f} | {r['error_vy']:.3f} | "
                     f"{r['error_yaw_rate']:.3f} | {c.get('diagonal', 0):.2f} | {c.get('lateral', 0):.2f} | "
                     f"{c.get('front_rear', 0):.2f} | {c.get('in_step', 0):.2f} | {r.get('step_limited_ticks', 0):.3f} | "
                     f"{r.get('band_limited_ticks', 0):.3f} | {r.get('firmware_clamped_frames', 0):.3f} | "
                     f"{r.get('max_abs_qd_des', 0):.1f} | {r['realtime_factor']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("eval/experts"))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--segment", type=float, default=5.0)
    parser.add_argument("--skills", nargs="*", default=None, help="skill names (default: all) plus 'switch'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-rate-limit", action="store_true",
                        help="open the SafetyFilter's per-tick q_des step limit (diagnostics; the robot has it)")
    parser.add_argument("--ideal", action="store_true", help="no noise, latency, randomization or pushes")
    parser.add_argument("--delayed", action="store_true",
                        help="experts act on s[t-1], one tick late, as the dataset generator records them")
    parser.add_argument("--feedforward", choices=FEEDFORWARDS, default="plan",
                        help="qd_des from the experts' plan (theirs) or, with --delayed, the step to their next "
                             "target (what a policy predicting actions alone executes; diagnostics)")
    parser.add_argument("--gif", action="store_true", help="render a GIF per skill (MUJOCO_GL=egl)")
    parser.add_argument("--gains", nargs=2, type=float, metavar=("KP", "KD"), default=None,
                        help="joint gains for the experts instead of the robot config's (a candidate for new data: "
                             "a model is trained for the gains of its data)")
    args = parser.parse_args(argv)
    if args.feedforward == "next_action" and not args.delayed:
        parser.error("--feedforward next_action needs --delayed")
    config = load_config()
    if args.gains is not None:
        config = dataclasses.replace(config, robot=dataclasses.replace(config.robot, kp=args.gains[0],
                                                                       kd=args.gains[1]))
    params = ExpertParams()
    rate_limit = not args.no_rate_limit
    sim_config = SimConfig() if args.ideal else SimConfig.randomized()
    names = args.skills or [s.name for s in config.skills] + ["switch"]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        skill = None if name == "switch" else config.skill(name).id
        results[name] = evaluate_skill(config, skill, args.episodes, args.seconds, args.segment, args.seed,
                                       params, sim_config, rate_limit, args.delayed, args.feedforward)
        print(name, results[name], flush=True)
        if args.gif and skill is not None:
            s = config.skill(skill)
            render_gif(config, skill, (s.vx[1] * 0.6, 0.0, 0.0), args.out / f"{name}.gif", params=params)
    report = {"params": dataclasses.asdict(params), "gains": [config.robot.kp, config.robot.kd],
              "rate_limit": rate_limit, "delayed": args.delayed,
              "feedforward": args.feedforward,
              "episodes": args.episodes,
              "seconds": args.seconds, "segment_s": args.segment, "seed": args.seed,
              "sim": "ideal" if args.ideal else "randomized (SimConfig.randomized(), pushes on)",
              "command_ranges": {s.name: {"vx": s.vx, "vy": s.vy, "yaw_rate": s.yaw_rate,
                                          "strafe_turn_budget": s.strafe_turn_budget} for s in config.skills},
              "results": results}
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    (args.out / "results.md").write_text(markdown_table(results))
    print(markdown_table(results))


if __name__ == "__main__":
    main()
