"""Robot bags -> the training dataset layout of data/generate.py, so robot and simulator data can be mixed.

    python -m diffuseloco_learning.data.bag2dataset bags/walk1 bags/walk2 --out data/robot.zarr

Per control tick the converter rebuilds what the policy node saw and did, with the same ObservationBuilder and
ActionDecoder as the simulator dataset:

- ticks: one per cyberdog_msgs/MotorCommand (the policy publishes one per 50 Hz tick); a command stream at
  another rate (e.g. another controller) is resampled at config.rates.control_hz (`--resample`);
- tick time: the command's header stamp (taken by the policy right after its tick), or its receive time when the
  stamps are on another clock; sensor samples are matched by their receive time in the bag: the newest
  LegState / Imu received at or before the tick, dropped when older than safety.sensor_timeout (the policy
  would have faulted);
- observation: LegState q, qd (SDK convention -> model via JointConvention), Imu orientation and gyro, and as
  last action the previous tick's command (what the policy loop remembers), zero after a gap;
- goal: the newest diffuseloco_msgs/SkillCommand, clamped to the skill's range exactly as the policy does
  (non-finite or unknown commands are ignored, as the policy ignores them); ticks before the first one are dropped;
- action: ActionDecoder.action(q_des in model convention);
- episodes: a new episode starts after a gap in the ticks longer than `--gap-s` and wherever ticks were dropped;
  with diffuseloco_msgs/PolicyStatus in the bag, only ticks in state RUNNING are kept (the status with the
  command's stamp, which the policy node publishes together with it). Episodes shorter than
  `--min-episode-ticks` are dropped.

The zarr has data/{obs,goal,action,skill,command} and meta/episode_ends, with the config and the conversion
settings in the root attrs (see data/dataset.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from diffuseloco_policy.config import StackConfig, load_config, plain
from diffuseloco_policy.gaits import GaitFollower
from diffuseloco_policy.joints import JointConvention
from diffuseloco_policy.observation import ObservationBuilder, RobotState, observes_body_velocity, observes_gait_phase
from diffuseloco_policy.pd_targets import ActionDecoder
from .dataset import write_dataset

STATE_RUNNING = 2  # diffuseloco_msgs/PolicyStatus.STATE_RUNNING


class BagConversionError(RuntimeError):
    """A bag cannot be converted (missing topics, no usable ticks); the message says why."""


@dataclass(frozen=True)
class TopicSpec:
    key: str
    default: str
    msgtype: str
    required: bool
    by_type: bool = True   # without the topic, the bag's only topic of this type stands in for it


TOPICS = (
    TopicSpec("leg_state", "/cyberdog/leg_state", "cyberdog_msgs/msg/LegState", True),
    TopicSpec("imu", "/cyberdog/imu", "sensor_msgs/msg/Imu", True),
    TopicSpec("motor_cmd", "/cyberdog/motor_cmd", "cyberdog_msgs/msg/MotorCommand", True),
    TopicSpec("skill_cmd", "/diffuseloco/skill_cmd", "diffuseloco_msgs/msg/SkillCommand", True),
    TopicSpec("status", "/diffuseloco/status", "diffuseloco_msgs/msg/PolicyStatus", False),
    # the state estimator's vBody, for configs that observe it; never picked by type: the simulator's
    # ground-truth /sim/base_twist has the same type and must not pass for the estimate
    TopicSpec("body_velocity", "/cyberdog/body_velocity", "geometry_msgs/msg/TwistStamped", False, by_type=False),
)


@dataclass(frozen=True)
class ConvertSettings:
    topics: dict = field(default_factory=dict)   # key -> topic name given by the user (None: default/auto)
    gap_s: float = 0.1                           # a longer pause between ticks starts a new episode
    min_episode_ticks: int = 16
    resample: str = "auto"                       # auto | always | never
    use_status: bool = True


def _ns_to_s(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64) * 1e-9


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class BagStreams:
    """The messages of one bag as arrays (times in ns, joint values in SDK convention as recorded)."""

    leg_recv: np.ndarray
    leg_q: np.ndarray
    leg_qd: np.ndarray
    imu_recv: np.ndarray
    imu_quat: np.ndarray     # (w, x, y, z)
    imu_gyro: np.ndarray
    cmd_recv: np.ndarray
    cmd_stamp: np.ndarray
    cmd_q_des: np.ndarray
    cmd_qd_des: np.ndarray
    skill_recv: np.ndarray
    skill_id: np.ndarray
    skill_cmd: np.ndarray    # (vx, vy, yaw_rate) as sent
    status_recv: Optional[np.ndarray] = None
    status_stamp: Optional[np.ndarray] = None
    status_state: Optional[np.ndarray] = None
    velocity_recv: Optional[np.ndarray] = None
    velocity: Optional[np.ndarray] = None    # (vx, vy, vz) body frame, m/s
    topics: dict = field(default_factory=dict)


def _resolve_topics(path: Path, available: dict[str, str], settings: ConvertSettings) -> dict[str, Optional[str]]:
    """Topic name per stream: the one asked for, else the default, else the only topic of the right type."""
    listing = "\n".join(f"  {t} [{m}]" for t, m in sorted(available.items())) or "  (none)"
    chosen, problems = {}, []
    for spec in TOPICS:
        if spec.key == "status" and not settings.use_status:
            chosen[spec.key] = None
            continue
        asked = settings.topics.get(spec.key)
        name = asked or spec.default
        if name in available:
            if available[name] != spec.msgtype:
                problems.append(f"{name} has type {available[name]}, expected {spec.msgtype}")
            chosen[spec.key] = name
            continue
        same_type = [t for t, m in available.items() if m == spec.msgtype]
        if asked is None and spec.by_type and len(same_type) == 1:
            chosen[spec.key] = same_type[0]
            continue
        chosen[spec.key] = None
        if spec.required:
            hint = (f" (topics of that type: {same_type}; pass --{spec.key.replace('_', '-')}-topic)" if same_type
                    else "")
            problems.append(f"no {spec.msgtype} topic {name}{hint}")
    if problems:
        raise BagConversionError(f"bag {path} cannot be converted:\n  " + "\n  ".join(problems)
                                 + f"\nits topics:\n{listing}")
    return chosen


def read_bag(path: Path, settings: ConvertSettings) -> BagStreams:
    from diffuseloco_policy.bagtypes import open_bag

    with open_bag(path, BagConversionError) as reader:
        available = {c.topic: c.msgtype for c in reader.connections}
        topics = _resolve_topics(Path(path), available, settings)
        by_topic = {name: key for key, name in topics.items() if name is not None}
        rows: dict[str, list] = {key: [] for key in by_topic.values()}
        connections = [c for c in reader.connections if c.topic in by_topic]
        for connection, timestamp, raw in reader.messages(connections=connections):
            rows[by_topic[connection.topic]].append((timestamp, reader.deserialize(raw, connection.msgtype)))
    for key, items in rows.items():
        items.sort(key=lambda item: item[0])
        spec = next(s for s in TOPICS if s.key == key)
        if spec.required and not items:
            raise BagConversionError(f"bag {path}: topic {topics[key]} [{spec.msgtype}] has no messages")

    def recv(key):
        return np.array([t for t, _ in rows[key]], dtype=np.int64)

    def stack(key, get, dtype=np.float64):
        return np.array([get(m) for _, m in rows[key]], dtype=dtype)

    streams = BagStreams(
        leg_recv=recv("leg_state"),
        leg_q=stack("leg_state", lambda m: m.q), leg_qd=stack("leg_state", lambda m: m.qd),
        imu_recv=recv("imu"),
        imu_quat=stack("imu", lambda m: (m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z)),
        imu_gyro=stack("imu", lambda m: (m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z)),
        cmd_recv=recv("motor_cmd"), cmd_stamp=stack("motor_cmd", lambda m: _stamp_ns(m.header), np.int64),
        cmd_q_des=stack("motor_cmd", lambda m: m.q_des), cmd_qd_des=stack("motor_cmd", lambda m: m.qd_des),
        skill_recv=recv("skill_cmd"), skill_id=stack("skill_cmd", lambda m: m.skill, np.int64),
        skill_cmd=stack("skill_cmd", lambda m: (m.vx, m.vy, m.yaw_rate)),
        topics=topics,
    )
    if rows.get("status"):
        streams.status_recv = recv("status")
        streams.status_stamp = stack("status", lambda m: _stamp_ns(m.header), np.int64)
        streams.status_state = stack("status", lambda m: m.state, np.int64)
    if rows.get("body_velocity"):
        streams.velocity_recv = recv("body_velocity")
        streams.velocity = stack("body_velocity", lambda m: (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z))
    for name in ("leg_q", "leg_qd", "cmd_q_des", "cmd_qd_des"):
        value = getattr(streams, name)
        if value.ndim != 2 or value.shape[1] != 12:
            raise BagConversionError(f"bag {path}: {name} arrays have shape {value.shape[1:]}, expected (12,)")
    return streams


def effective_skill_commands(config: StackConfig, ids: np.ndarray, commands: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The skill state after each SkillCommand, as PolicyLoop.set_skill_command keeps it.

    Returns (valid, skill, command): valid[i] is False until the first acceptable command."""
    known = {s.id for s in config.skills}
    valid = np.zeros(len(ids), dtype=bool)
    skill = np.zeros(len(ids), dtype=np.int64)
    command = np.zeros((len(ids), 3))
    current: Optional[tuple[int, np.ndarray]] = None
    for i, (sid, values) in enumerate(zip(ids, commands)):
        if np.all(np.isfinite(values)) and int(sid) in known:
            current = (int(sid), np.array(config.skill(int(sid)).clamp_command(*values)))
        if current is not None:
            valid[i], skill[i], command[i] = True, current[0], current[1]
    return valid, skill, command


def _latest(times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the newest sample with time <= each `at` (-1 if none)."""
    return np.searchsorted(times, at, side="right") - 1


def convert_streams(config: StackConfig, s: BagStreams, settings: ConvertSettings, name: str = "bag"
                    ) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Episodes (dicts of per-tick arrays, dataset layout) and per-bag statistics."""
    dt = config.rates.control_dt
    gap_ns = int(settings.gap_s * 1e9)
    convention, builder, decoder = JointConvention(config.robot), ObservationBuilder(config), ActionDecoder(config)
    notes = []

    period = float(np.median(np.diff(s.cmd_recv))) * 1e-9 if len(s.cmd_recv) > 1 else dt
    resample = settings.resample == "always" or (settings.resample == "auto" and abs(period - dt) > 0.2 * dt)
    if resample:
        notes.append(f"command period {period * 1000:.1f} ms: resampled at {config.rates.control_hz:g} Hz")
        ticks = np.arange(s.cmd_recv[0], s.cmd_recv[-1] + 1, int(round(dt * 1e9)), dtype=np.int64)
        cmd_index = _latest(s.cmd_recv, ticks)
        # A grid tick whose newest command is older than the gap threshold has no command.
        has_command = (cmd_index >= 0) & (ticks - s.cmd_recv[np.maximum(cmd_index, 0)] <= gap_ns)
        status_time = ticks
        status_times = s.status_recv
    else:
        clock_offset = np.median(np.abs(s.cmd_recv - s.cmd_stamp)) * 1e-9
        use_stamps = clock_offset < 0.1
        if not use_stamps:
            notes.append(f"command stamps are {clock_offset:.2f} s from their receive times: ticks use receive times")
        ticks = s.cmd_stamp if use_stamps else s.cmd_recv
        order = np.argsort(ticks, kind="stable")
        ticks, cmd_index = ticks[order], order
        has_command = np.ones(len(ticks), dtype=bool)
        status_time = s.cmd_stamp[order]
        status_times = s.status_stamp
    n = len(ticks)

    timeout_ns = int(config.safety.sensor_timeout * 1e9)
    leg = _latest(s.leg_recv, ticks)
    imu = _latest(s.imu_recv, ticks)
    leg_ok = (leg >= 0) & (ticks - s.leg_recv[np.maximum(leg, 0)] <= timeout_ns)
    imu_ok = (imu >= 0) & (ticks - s.imu_recv[np.maximum(imu, 0)] <= timeout_ns)
    skill_valid, skill_ids, skill_cmds = effective_skill_commands(config, s.skill_id, s.skill_cmd)
    sk = _latest(s.skill_recv, ticks)
    skill_ok = (sk >= 0) & skill_valid[np.maximum(sk, 0)]
    if status_times is not None:
        st = _latest(status_times, status_time)
        # The status of this tick carries the command's stamp; accept one at most 1.5 ticks older.
        fresh = (st >= 0) & (status_time - status_times[np.maximum(st, 0)] <= int(1.5 * dt * 1e9))
        running = fresh & (s.status_state[np.maximum(st, 0)] == STATE_RUNNING)
    else:
        running = np.ones(n, dtype=bool)
    velocity, velocity_ok = _body_velocity(config, s, ticks, timeout_ns, name)
    keep = has_command & leg_ok & imu_ok & velocity_ok & skill_ok & running

    q_des = convention.to_model(s.cmd_q_des)
    actions = decoder.action(q_des)                                 # per command
    tick_action = actions[np.maximum(cmd_index, 0)]
    tick_velocity = decoder.velocity_step(convention.to_model(s.cmd_qd_des))[np.maximum(cmd_index, 0)]
    # Last action: the previous tick's command, unless the ticks are a gap apart (then the policy restarted).
    last_action = np.zeros_like(tick_action)
    contiguous = np.zeros(n, dtype=bool)
    contiguous[1:] = (np.diff(ticks) <= gap_ns) & has_command[:-1]
    last_action[1:] = tick_action[:-1]
    last_action[~contiguous] = 0.0

    episodes, current = [], None
    for k in range(n):
        if not keep[k]:
            current = None
            continue
        if current is None or not contiguous[k]:
            current = {key: [] for key in ("obs", "goal", "action", "action_velocity", "skill", "command")}
            episodes.append(current)
            gait = GaitFollower(config) if observes_gait_phase(config) else None   # a run starts standing
        state = RobotState(convention.to_model(s.leg_q[leg[k]]), convention.to_model(s.leg_qd[leg[k]]),
                           s.imu_quat[imu[k]], s.imu_gyro[imu[k]],
                           None if velocity is None else s.velocity[velocity[k]])
        skill, command = int(skill_ids[sk[k]]), skill_cmds[sk[k]]
        current["obs"].append(builder.observation(state, last_action[k], tick_action[k]))
        current["goal"].append(builder.goal(command, skill, None if gait is None else gait.step(skill)))
        current["action"].append(tick_action[k])
        current["action_velocity"].append(tick_velocity[k])
        current["skill"].append(skill)
        current["command"].append(command)
    lengths = [len(e["obs"]) for e in episodes]
    kept = [{k: np.asarray(v) for k, v in e.items()} for e in episodes if len(e["obs"]) >= settings.min_episode_ticks]
    stats = {
        "bag": name, "ticks": n, "resampled": bool(resample), "kept_ticks": int(sum(len(e["obs"]) for e in kept)),
        "episodes": len(kept), "short_episodes_dropped": int(sum(1 for x in lengths if x < settings.min_episode_ticks)),
        "dropped": {"no_command": int(np.sum(~has_command)), "stale_leg_state": int(np.sum(has_command & ~leg_ok)),
                    "stale_imu": int(np.sum(has_command & ~imu_ok)),
                    "stale_body_velocity": int(np.sum(has_command & ~velocity_ok)),
                    "no_skill_command": int(np.sum(~skill_ok)),
                    "not_running": int(np.sum(~running))},
        "topics": {k: v for k, v in s.topics.items()}, "notes": notes,
    }
    return kept, stats


def _body_velocity(config: StackConfig, s: BagStreams, ticks: np.ndarray, timeout_ns: int, name: str
                   ) -> tuple[Optional[np.ndarray], np.ndarray]:
    """Per tick, the index of the newest body-velocity sample and whether it is fresh; (None, all True) when the
    observation does not use it. A config that observes it cannot be fed from a bag without it."""
    if not observes_body_velocity(config):
        return None, np.ones(len(ticks), dtype=bool)
    if s.velocity_recv is None:
        raise BagConversionError(f"bag {name}: the observation has base_linear_velocity (the state estimator's "
                                 f"vBody) but the bag has no body velocity topic (record /cyberdog/body_velocity, "
                                 f"or pass --body-velocity-topic)")
    index = _latest(s.velocity_recv, ticks)
    return index, (index >= 0) & (ticks - s.velocity_recv[np.maximum(index, 0)] <= timeout_ns)


def convert(bags: Sequence[Path], out: Path, config: Optional[StackConfig] = None,
            settings: Optional[ConvertSettings] = None) -> dict:
    """Convert bags and write the zarr dataset; returns the statistics (also stored in the attrs)."""
    config = config or load_config()
    settings = settings or ConvertSettings()
    episodes, per_bag = [], []
    for bag in bags:
        eps, stats = convert_streams(config, read_bag(Path(bag), settings), settings, name=str(bag))
        episodes.extend(eps)
        per_bag.append(stats)
    if not episodes:
        raise BagConversionError("no usable episodes in " + ", ".join(map(str, bags)) + "; per bag: "
                                 + "; ".join(f"{b['bag']}: {b['ticks']} ticks, dropped {b['dropped']}, "
                                             f"{b['short_episodes_dropped']} episodes shorter than "
                                             f"{settings.min_episode_ticks} ticks" for b in per_bag))
    stats = {"transitions": int(sum(len(e["obs"]) for e in episodes)), "episodes": len(episodes), "bags": per_bag}
    attrs = {"config": config.to_dict(), "source": "robot_bags",
             "converter": plain(dataclasses.asdict(settings)), "stats": plain(stats)}
    write_dataset(out, episodes, attrs)
    return stats



def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders (mcap or sqlite3)")
    parser.add_argument("--out", type=Path, required=True, help="zarr dataset to write (overwritten)")
    parser.add_argument("--config", type=Path, default=None, help="stack config (default: the shipped CyberDog 2)")
    for spec in TOPICS:
        parser.add_argument(f"--{spec.key.replace('_', '-')}-topic", default=None,
                            help=f"{spec.msgtype} topic (default {spec.default}, or the bag's only one of that type)")
    parser.add_argument("--gap-s", type=float, default=0.1, help="a longer pause between ticks starts an episode")
    parser.add_argument("--min-episode-ticks", type=int, default=16)
    parser.add_argument("--resample", choices=("auto", "always", "never"), default="auto",
                        help="resample the command stream at the control rate (auto: if it runs at another rate)")
    parser.add_argument("--ignore-status", action="store_true", help="keep ticks whatever the PolicyStatus says")
    args = parser.parse_args(argv)
    settings = ConvertSettings(topics={s.key: getattr(args, f"{s.key}_topic") for s in TOPICS}, gap_s=args.gap_s,
                               min_episode_ticks=args.min_episode_ticks, resample=args.resample,
                               use_status=not args.ignore_status)
    try:
        stats = convert(args.bags, args.out, load_config(args.config), settings)
    except BagConversionError as exc:
        parser.exit(2, f"error: {exc}\n")
    for bag in stats["bags"]:
        print(f"{bag['bag']}: {bag['kept_ticks']} of {bag['ticks']} ticks in {bag['episodes']} episodes, "
              f"dropped {bag['dropped']}" + "".join(f"\n  note: {n}" for n in bag["notes"]))
    print(f"wrote {args.out}: {stats['transitions']} transitions, {stats['episodes']} episodes")


if __name__ == "__main__":
    main()
