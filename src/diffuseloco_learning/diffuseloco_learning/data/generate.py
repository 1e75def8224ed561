"""Dataset generation CLI: expert rollouts with random skills, commands, switches, randomization and pushes.

    python -m diffuseloco_learning.data.generate --out data/experts.zarr --transitions 1000000 --seed 0 --workers 1

Episode i is driven entirely by a generator seeded from (seed, i), so the same seed gives identical arrays for
any number of workers. The observation of tick t is built from the state measured at t and the action applied
at t-1; the delayed-history slicing happens at training time. An episode that falls is cut `trim_before_fall_s`
before the fall: the expert's last second of losing balance is not a demonstration worth cloning.

DAgger data: `--learner models/x.onnx --learner-share 0.5` lets that policy drive half of the ticks, in short
stretches, while the expert labels every tick (experts/dagger.py). Each worker process opens the model once.

Unlabelled-gait data: `--command-classes walk=trot+pace,jump=bound+hop` merges skills into command classes
(config.CommandClassConfig): the experts are unchanged, but each goal names the class, not the gait, and commands
are drawn from the class's range, so the same goal maps to several gaits (docs/research/multimodality.md). The
class map is part of the config stored in the attrs; training takes it from there. data/skill keeps the gait the
expert walked (for analysis; no model input reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm import tqdm

from diffuseloco_policy.command_classes import EXAMPLE, parse_command_classes, with_command_classes
from diffuseloco_policy.config import ConfigError, StackConfig, load_config, plain
from ..experts.controller import ExpertParams
from ..experts.dagger import LearnerInTheLoop, LearnerShare, learner_rng
from ..experts.rollout import ActionNoise, ExpertRollout, random_schedule
from diffuseloco_policy.pd_targets import ActionDecoder
from diffuseloco_policy.model_file import skill_problems
from diffuseloco_policy.runtime import PolicyRuntime, load_runtime
from diffuseloco_sim import SimConfig
from .dataset import EpisodeArrays, write_dataset


MIN_EPISODE_TICKS = 50   # 1 s: shorter (trimmed) episodes give the training windows nothing


@dataclasses.dataclass(frozen=True)
class GenerateSettings:
    """What shapes the episodes; stored in the dataset's attrs."""

    seed: int = 0
    episode_s: float = 20.0
    segment_s: tuple[float, float] = (2.0, 6.0)
    randomize: bool = True
    expert_delayed: bool = True   # experts act on s[t-1] like the deployed policy (False: on s[t], the first dataset)
    trim_before_fall_s: float = 1.0   # a falling episode keeps only the ticks up to this long before the fall
    action_noise_std: float = 0.0     # DART: executed targets disturbed by this much (action units), labels clean
    action_noise_correlation_s: float = 0.1
    learner: Optional[str] = None     # DAgger: an exported delayed-input model that drives part of each episode
    learner_warm_steps: int = 2       # its warm start, as deployed
    learner_share: float = 0.5        # fraction of ticks it drives
    learner_stretch_s: float = 0.1    # mean length of its turns
    tick_jitter_steps: float = 0.0    # std of the physics steps between ticks (sim/tick_clock.py); 0: exact
    top_speed_share: float = 0.0      # commands with their speed from the outer quarter of the skill's range
    kp_scale: Optional[tuple[float, float]] = None   # the motors' position-gain draw; None: the randomized range


def episode_seed(seed: int, index: int) -> int:
    """Independent, reproducible per-episode seed."""
    return int(np.random.SeedSequence(entropy=seed, spawn_key=(index,)).generate_state(1)[0])


@dataclasses.dataclass
class Episode:
    """One rolled-out episode: its arrays (trimmed before a fall), and counts over every tick it ran."""

    arrays: dict[str, np.ndarray]
    fell: bool
    ticks: int               # before the fall trim
    learner_ticks: int = 0   # of those, driven by the learner (DAgger)


def run_episode(config: StackConfig, settings: GenerateSettings, index: int) -> Episode:
    """One episode from its index alone (so any number of workers gives the same data)."""
    seed = episode_seed(settings.seed, index)
    rng = np.random.default_rng(seed)
    sim_config = episode_physics(settings)
    noise = ActionNoise(settings.action_noise_std, settings.action_noise_correlation_s)
    learner = _learner(config, settings, seed)
    rollout = ExpertRollout(config, sim_config, seed=seed + 1, expert_params=ExpertParams(),
                            delayed=settings.expert_delayed, action_noise=noise, learner=learner,
                            tick_jitter_steps=settings.tick_jitter_steps)
    schedule = random_schedule(config, rng, int(settings.episode_s * config.rates.control_hz),
                               segment_s=settings.segment_s, top_speed_share=settings.top_speed_share)
    episode = EpisodeArrays()
    decoder = ActionDecoder(config)
    for tick in rollout.run(schedule):
        episode.append(tick.observation, tick.goal, tick.action, decoder.velocity_step(tick.velocity_target),
                       tick.skill, tick.command)
    arrays, fell = episode.stacked(), rollout.sim.fallen()
    ticks = len(arrays["obs"])
    if fell:
        keep = max(0, ticks - int(round(settings.trim_before_fall_s * config.rates.control_hz)))
        arrays = {k: v[:keep] for k, v in arrays.items()}
    return Episode(arrays, fell, ticks, 0 if learner is None else learner.ticks_driven)


def episode_physics(settings: GenerateSettings) -> SimConfig:
    """The simulator settings episodes are drawn from. kp_scale narrows the gains' draw: the weak end is where
    bound at its top falls (docs/research/policy_eval/tracking.md, "Four layers trained longer"), and data there is
    the lever to try."""
    if not settings.randomize:
        return SimConfig()
    randomized = SimConfig.randomized()
    return randomized if settings.kp_scale is None else randomized.with_ranges(kp_scale=tuple(settings.kp_scale))


def _learner(config: StackConfig, settings: GenerateSettings, seed: int) -> Optional[LearnerInTheLoop]:
    if settings.learner is None:
        return None
    share = LearnerShare(settings.learner_share, settings.learner_stretch_s)
    runtime = _learner_runtime(config, settings.learner, settings.learner_warm_steps)
    return LearnerInTheLoop(runtime, config, share, learner_rng(seed))


@functools.lru_cache(maxsize=1)
def _learner_runtime(config: StackConfig, path: str, warm_steps: int) -> PolicyRuntime:
    """One ONNX session per worker process (one intra-op thread: the workers already use the cores). The learner
    is fed the data's goals, so it must know exactly the data's skills (a model over fewer would load on the
    robot, over its own, but not here)."""
    runtime = load_runtime(path, robot=config, warm_start_steps=warm_steps or None, intra_op_threads=1)
    problems = skill_problems(runtime.info.config, config, exact=True)
    if problems:
        raise ConfigError(problems[0])
    return runtime


def _worker(args: tuple[StackConfig, GenerateSettings, int]) -> Episode:
    return run_episode(*args)


def episodes(config: StackConfig, settings: GenerateSettings, workers: int) -> Iterator[Episode]:
    """Episodes in index order, computed in parallel when workers > 1 (order, hence data, stays the same)."""
    jobs = ((config, settings, i) for i in range(10**9))
    if workers <= 1:
        yield from map(_worker, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_worker, jobs, chunksize=1)


def generate(config: StackConfig, out: Path, transitions: int, settings: GenerateSettings, workers: int = 1,
             progress: bool = True) -> dict:
    """Roll out episodes until `transitions` ticks are collected (the last one truncated) and write the zarr."""
    collected, falls, total, driven, rolled = [], 0, 0, 0, 0
    start = time.perf_counter()
    bar = tqdm(total=transitions, unit="tick", disable=not progress)
    for outcome in episodes(config, settings, workers):
        arrays, falls = outcome.arrays, falls + int(outcome.fell)
        driven, rolled = driven + outcome.learner_ticks, rolled + outcome.ticks
        if len(arrays["obs"]) < MIN_EPISODE_TICKS:   # fell right after the start: nothing worth keeping
            continue
        take = min(len(arrays["obs"]), transitions - total)
        collected.append({k: v[:take] for k, v in arrays.items()})
        total += take
        bar.update(take)
        if total >= transitions:
            break
    bar.close()
    elapsed = time.perf_counter() - start
    stats = {"transitions": total, "episodes": len(collected), "falls": falls,
             "fall_trim_s": settings.trim_before_fall_s, "seconds": elapsed,
             "ticks_per_second": total / max(elapsed, 1e-9)}
    if settings.learner is not None:   # measured over every tick rolled out (fall trims included)
        stats["learner_share"] = driven / max(rolled, 1)
    attrs = {"config": config.to_dict(), "generator": dataclasses.asdict(settings), "stats": stats,
             "expert": dataclasses.asdict(ExpertParams()),
             "sim": dataclasses.asdict(SimConfig.randomized() if settings.randomize else SimConfig())}
    write_dataset(out, collected, plain(attrs))
    return stats


def _scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW:HIGH, e.g. 0.9:0.93") from None
    if not 0.0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 < LOW <= HIGH")
    return low, high


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--episode-seconds", type=float, default=20.0)
    parser.add_argument("--no-randomize", action="store_true", help="ideal robot: no noise, latency, DR, pushes")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--command-classes", default="", metavar="CLASSES",
                        help=f"merge skills into command classes, e.g. {EXAMPLE}: the goals name the class, not the "
                             "gait (unlabelled-gait data)")
    parser.add_argument("--trim-before-fall", type=float, default=1.0,
                        help="seconds dropped before a fall (the expert losing balance is not a demonstration)")
    # Options that reproduce the datasets of docs/research (investigations that were not shipped); the shipped
    # recipe needs none of them besides --action-noise.
    research = parser.add_argument_group("research options", "reproduce the datasets of docs/research")
    research.add_argument("--expert-on-current-frame", action="store_true",
                          help="experts react to s[t] (the first dataset) instead of acting on s[t-1] like the policy")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="std (action units) of a correlated disturbance on the executed targets; the recorded "
                             "action stays the expert's (DART)")
    parser.add_argument("--action-noise-correlation", type=float, default=0.1, help="its time constant (s)")
    research.add_argument("--learner", type=Path, default=None,
                          help="DAgger: an exported model (.onnx) that drives part of each episode; labels stay the "
                               "expert's")
    research.add_argument("--learner-warm", type=int, default=2, help="its warm-start steps (0: full sampler)")
    research.add_argument("--learner-share", type=float, default=0.5, help="fraction of ticks the learner drives")
    research.add_argument("--learner-stretch", type=float, default=0.1, help="mean length of its turns (s)")
    research.add_argument("--tick-jitter", type=float, default=0.0, metavar="STEPS",
                          help="vary the physics steps between control ticks by this standard deviation (the timing "
                               "of a live graph without real-time scheduling; evaluation --tick-jitter replays it)")
    research.add_argument("--top-speed-share", type=float, default=0.0, metavar="SHARE",
                          help="fraction of commands whose forward speed comes from the outer quarter of the skill's "
                               "range (data at the envelope's tops; 0: uniform)")
    research.add_argument("--kp-scale", type=_scale_range, default=None, metavar="LOW:HIGH",
                          help="draw the motors' position-gain scale from this range instead of the randomized one "
                               "(e.g. 0.9:0.93, the weak end)")
    args = parser.parse_args(argv)
    if args.kp_scale is not None and args.no_randomize:
        parser.error("--kp-scale draws the gains of randomized physics: drop --no-randomize")
    if not 0.0 <= args.top_speed_share <= 1.0:
        parser.error(f"--top-speed-share {args.top_speed_share}: a fraction between 0 and 1")
    if args.learner is not None and args.action_noise > 0.0:
        parser.error("--learner and --action-noise both change what is executed: use one")
    if args.learner is not None and not args.learner.is_file():
        parser.error(f"--learner {args.learner}: no such model file")
    settings = GenerateSettings(seed=args.seed, episode_s=args.episode_seconds, randomize=not args.no_randomize,
                                expert_delayed=not args.expert_on_current_frame,
                                trim_before_fall_s=args.trim_before_fall, action_noise_std=args.action_noise,
                                action_noise_correlation_s=args.action_noise_correlation,
                                learner=None if args.learner is None else str(args.learner),
                                learner_warm_steps=args.learner_warm, learner_share=args.learner_share,
                                learner_stretch_s=args.learner_stretch, tick_jitter_steps=args.tick_jitter,
                                top_speed_share=args.top_speed_share, kp_scale=args.kp_scale)
    config = load_config(args.config)
    if args.command_classes:   # else the config's own (a YAML with a command_classes section works as well)
        try:
            config = with_command_classes(config, parse_command_classes(args.command_classes))
        except ConfigError as error:
            parser.error(f"--command-classes {args.command_classes!r}: {error}")
    if settings.learner is not None:   # what the workers will build, built once here: a bad share, a model for
        try:                           # another robot or a current-frame model fails before any worker starts
            _learner(config, settings, settings.seed)
        except (ValueError, RuntimeError) as error:
            parser.error(f"--learner {args.learner}: {error}")
    stats = generate(config, args.out, args.transitions, settings, args.workers)
    print(stats)


if __name__ == "__main__":
    main()
