"""SCHED_FIFO for the policy process: every thread, later threads too, and a clear answer without permission."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from diffuseloco_policy.config import ConfigError
from diffuseloco_policy.realtime import use_fifo_scheduling

# Run in a child process: the test runner itself must keep its normal scheduling.
CHILD = textwrap.dedent("""
    import os, threading
    from diffuseloco_policy.realtime import process_threads, thread_policy, use_fifo_scheduling
    release = threading.Event()
    early = threading.Thread(target=release.wait, daemon=True)
    early.start()
    result = use_fifo_scheduling(7)
    late_policy = []
    late = threading.Thread(target=lambda: late_policy.append(thread_policy(threading.get_native_id())))
    late.start(); late.join()
    policies = {tid: thread_policy(tid) for tid in process_threads()}
    release.set()
    print(result.applied, result.threads, len(policies))
    print(sorted(set(policies.values())), late_policy[0])
    print(result.message)
""")


def test_off_changes_nothing() -> None:
    before = os.sched_getscheduler(0)
    result = use_fifo_scheduling(0)
    assert not result.applied and result.threads == 0
    assert os.sched_getscheduler(0) == before


@pytest.mark.parametrize("priority", [-1, 81, 99])
def test_priority_outside_the_safe_range_is_refused(priority: int) -> None:
    with pytest.raises(ConfigError, match="realtime_priority"):
        use_fifo_scheduling(priority)


def test_every_thread_and_later_threads_run_fifo_or_the_reason_is_given() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    applied_line, policies_line, message = out.stdout.strip().splitlines()
    applied, changed, threads = applied_line.split()
    if applied == "True":
        # the main thread and the early one at least; a library may start a thread after the call (a clean-clone
        # run counted 3 changed and 4 at the end), so the count is not compared: the next line checks that every
        # thread alive at the end, later ones included, runs FIFO
        assert int(changed) >= 2 and int(threads) >= 2
        assert policies_line == f"[({os.SCHED_FIFO}, 7)] ({os.SCHED_FIFO}, 7)"
        assert "SCHED_FIFO priority 7" in message
    else:  # an unprivileged runner: nothing changed, and the log says what is missing
        assert "CAP_SYS_NICE" in message
        assert policies_line.startswith(f"[({os.SCHED_OTHER}, 0)]")
