"""bag_timing counts the robot's joint-loop frames between motor commands in a recorded run, the spread the
evaluation harness replays with --tick-jitter."""

from __future__ import annotations

import numpy as np
import pytest
from bag_writing import write_mcap

from diffuseloco_policy.bagtypes import make_typestore
from diffuseloco_policy.bag_timing import BagTimingError, main, read_stamps, recorded_timing

TS = make_typestore()
T0, MS = 1_700_000_000 * 10**9, 10**6
PERIODS_FRAMES = [8, 12] * 40 + [10] * 20   # frames (2 ms) between consecutive commands


def _header(t):
    Header, Time = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="")


def command_stamps():
    """Commands 1 ms after a frame, so no frame stamp ties with a command's; a 1 s pause before the last one."""
    frames = np.concatenate([[0], np.cumsum(PERIODS_FRAMES)])
    stamps = [T0 + int(f) * 2 * MS + MS for f in frames]
    return stamps + [stamps[-1] + 1000 * MS]


def write_bag(path, with_commands=True):
    z12, f32 = np.zeros(12, np.float32), np.zeros(12, np.float32)
    items = []
    for j in range(sum(PERIODS_FRAMES) + 600):
        t = T0 + j * 2 * MS
        items.append((t, "/cyberdog/leg_state", "cyberdog_msgs/msg/LegState", TS.types["cyberdog_msgs/msg/LegState"](
            header=_header(t), q=z12, qd=z12, tau_est=z12, p=z12, v=z12, force_est=z12, force_desired=z12,
            q_abad_limit=np.zeros(4, np.int32), q_hip_limit=np.zeros(4, np.int32),
            q_knee_limit=np.zeros(4, np.int32))))
    if with_commands:
        for t in command_stamps():
            items.append((t + 300_000, "/cyberdog/motor_cmd", "cyberdog_msgs/msg/MotorCommand",
                          TS.types["cyberdog_msgs/msg/MotorCommand"](header=_header(t), q_des=f32, qd_des=f32,
                                                                     kp_des=f32, kd_des=f32, tau_des=f32)))
    return write_mcap(path, items, TS)


def test_frames_between_commands_are_counted_and_a_pause_is_left_out(tmp_path):
    leg, commands = read_stamps(write_bag(tmp_path / "run"))
    timing = recorded_timing(leg, commands)
    assert timing.intervals == len(PERIODS_FRAMES)        # the 1 s pause is not a tick interval
    assert timing.histogram == {8: 40, 10: 20, 12: 40}
    assert timing.frames_mean == pytest.approx(np.mean(PERIODS_FRAMES))
    assert timing.frames_std == pytest.approx(np.std(PERIODS_FRAMES))
    assert timing.frame_period_ms == pytest.approx(2.0) and timing.frame_rate_hz == pytest.approx(500.0)
    assert timing.command_period_ms == pytest.approx(20.0)
    assert "--tick-jitter 1.8" in timing.describe()


def test_a_bag_without_commands_is_a_clear_error(tmp_path, capsys):
    bag = write_bag(tmp_path / "no_commands", with_commands=False)
    with pytest.raises(BagTimingError, match="/cyberdog/motor_cmd has 0 message"):
        read_stamps(bag)
    assert main([str(bag), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "motor_cmd has 0 message" in err and "cannot open bag" in err
