"""Real-time scheduling for the policy process, so that a busy machine cannot delay the control tick.

Why: on a shared CPU (the simulator, the recorder, the robot's own services) a normal-priority process can wait
longer than a 20 ms tick for a core, and the tick then has no fresh plan (a deadline miss). Under SCHED_FIFO the
policy's threads run as soon as they are ready, ahead of every normal process; the kernel's RT throttling
(sched_rt_runtime_us, 95 % by default) still leaves the rest of the machine some time if something spins.

All threads of the process get the policy, including the ones rclpy/DDS and ONNX Runtime already started, and
threads started later inherit it from their creator. Without the privilege (CAP_SYS_NICE or root) nothing changes
and the caller is told why, so the node still runs, only without the guarantee.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

MAX_SAFE_PRIORITY = 80  # leave the top of the range (kernel threads, watchdogs, the motor firmware) alone


@dataclass(frozen=True)
class SchedulingResult:
    applied: bool
    threads: int
    message: str


def process_threads() -> list[int]:
    return sorted(int(tid) for tid in os.listdir("/proc/self/task"))


def use_fifo_scheduling(priority: int) -> SchedulingResult:
    """Put every thread of this process under SCHED_FIFO at `priority` (1..80); 0 leaves scheduling as it is."""
    if priority == 0:
        return SchedulingResult(False, 0, "real-time scheduling off (realtime_priority 0)")
    if not 1 <= priority <= MAX_SAFE_PRIORITY:
        raise ConfigError(f"realtime_priority must be 0 (off) or 1..{MAX_SAFE_PRIORITY}, got {priority}")
    if not hasattr(os, "sched_setscheduler") or not Path("/proc/self/task").is_dir():
        return SchedulingResult(False, 0, "real-time scheduling unavailable on this platform; normal priority")
    param = os.sched_param(priority)
    changed = 0
    for tid in process_threads():
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            changed += 1
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except PermissionError:
            return SchedulingResult(False, changed, "no permission for SCHED_FIFO (needs CAP_SYS_NICE, e.g. "
                                                    "docker run --cap-add SYS_NICE); running at normal priority")
    return SchedulingResult(True, changed, f"SCHED_FIFO priority {priority} on {changed} threads")


def thread_policy(tid: int) -> tuple[int, int]:
    """(scheduling policy, priority) of one thread of this process, for checks and diagnostics."""
    return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority
