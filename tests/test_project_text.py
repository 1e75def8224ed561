"""The project speaks of itself only: no tracked file (code, comments, configs, docs, model cards, file names)
refers to how it was developed, such as numbered work periods or tuning rounds. Facts carry a date, a version or
the reason instead ("since 2026-12-04", "in 0.2.0", "because the firmware limits each frame").

The patterns are assembled from pieces so that this file does not match them itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SESSION = "sess" + "ion"
_ROUND = "rou" + "nd"
_ISSUE = "iss" + "ue"

PATTERNS = {
    "a numbered work period": re.compile(r"\b" + _SESSION + r"s?[- ]?\d", re.IGNORECASE),
    "a work period as a time reference": re.compile(
        r"\b(?:this|that|next|previous|earlier|later|last|one) " + _SESSION + r"\b|\bleft in the " + _SESSION
        + r"\b|\bthe " + _SESSION + r" ran\b", re.IGNORECASE),
    "a numbered tuning round": re.compile(r"\b" + _ROUND + r"s?[- ]?\d", re.IGNORECASE),
    "a tracker reference": re.compile(r"\b" + _ISSUE + r"s? #?\d|\bPR ?#\d|\bpull request #?\d", re.IGNORECASE),
    "a round-numbered data set": re.compile(r"_r\d+\.zarr\b"),
}

BINARY_SUFFIXES = {".png", ".gif", ".jpg", ".onnx", ".safetensors", ".zarr", ".mcap", ".db3"}
SKIP_DIRS = {".git", ".venv", ".venv-robot", "out", "data", "bags", "build", "install", "log", "__pycache__",
             ".pytest_cache", ".hypothesis"}


def tracked_files() -> list[Path]:
    """Files under version control; outside a git checkout (an image's copy), the tree without build output."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
        return [ROOT / p for p in out.stdout.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        return [p for p in ROOT.rglob("*")
                if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)]


def hits_in(text: str) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append((number, name, line.strip()[:160]))
    return found


def test_the_patterns_catch_what_they_are_for():
    samples = [_SESSION + " 18", _SESSION.capitalize() + "-12 probe", "the " + _ROUND + "-4 experts",
               _ROUND.capitalize() + " 2", "targets of " + _ISSUE + " 5", "left in the " + _SESSION + ".",
               "data/experts_r" + "4.zarr"]
    for sample in samples:
        assert hits_in(sample), sample
    for fine in ["ONNX Runtime " + _SESSION + "s", "every test " + _SESSION + " uses a ROS domain",
                 "a" + _ROUND + " 1 m/s", _ROUND + "s the value", "since 2026-12-04", "stage 4"]:
        assert not hits_in(fine), fine


def test_no_file_speaks_of_how_the_project_was_made():
    problems = []
    for path in tracked_files():
        rel = path.relative_to(ROOT).as_posix()
        for _, name, _ in hits_in(rel):
            problems.append(f"{rel}: file name has {name}")
        if path.suffix in BINARY_SUFFIXES or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        for number, name, line in hits_in(data.decode("utf-8", errors="replace")):
            problems.append(f"{rel}:{number}: {name}: {line}")
    assert not problems, "say the fact with a date, a version or the reason:\n" + "\n".join(problems)
