"""The guides' commands run as written, so a guide that rots fails `make test`; and every relative link in the
README and the guides points at a file that exists.

A guide marks what to run with the fenced block's info string:

    ```bash doc-test [run-for=SECONDS] [keys=KEYS] [expect=TEXT] [bag=PATH]
    ```yaml doc-file=PATH

Blocks run in order, per guide, in a fresh directory that holds `models/` (the shipped files, linked) and what the
guide's earlier blocks wrote. `doc-file` blocks are written to PATH. Each command of a `doc-test` block (a line,
with backslash continuations) must exit 0, with `python` the project's interpreter. `run-for` starts the command
with a terminal on stdin, types KEYS after SECONDS, checks it is still running, stops it with SIGINT and expects a
clean exit and TEXT in its output. `bag=PATH` first writes a small synthetic robot bag there (the one
tests/test_bag2dataset.py checks value by value). Guides use tiny settings in these blocks (a few hundred
transitions, a training step or two) and show the full-size commands in unmarked blocks.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ["docs/getting_started.md", "docs/training.md", "docs/evaluation.md"]
FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass
class Block:
    kind: str                  # "test" or "file"
    text: str
    attrs: dict = field(default_factory=dict)
    line: int = 0

    def commands(self) -> list[str]:
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [c.strip() for c in joined.splitlines() if c.strip() and not c.strip().startswith("#")]


def marked_blocks(path: Path) -> list[Block]:
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        words = m.group(2).split()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            body.append(lines[j])
            j += 1
        attrs = dict(w.split("=", 1) if "=" in w else (w, "") for w in words)
        if "doc-test" in attrs:
            blocks.append(Block("test", "\n".join(body) + "\n", attrs, i + 1))
        elif attrs.get("doc-file"):
            blocks.append(Block("file", "\n".join(body) + "\n", attrs, i + 1))
        i = j + 1
    return blocks


def workdir(tmp_path: Path) -> tuple[Path, dict]:
    (tmp_path / "models").mkdir()
    for f in (ROOT / "models").iterdir():
        if f.suffix == ".onnx":
            (tmp_path / "models" / f.name).symlink_to(f)
    bindir = tmp_path / ".bin"
    bindir.mkdir()
    shim = bindir / "python"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg")
    return tmp_path, env


def run_for(command: str, cwd: Path, env: dict, seconds: float, keys: str, expect: str) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdin=secondary,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(seconds)
        for key in keys:
            os.write(primary, key.encode())
            time.sleep(0.5)
        time.sleep(2.5 if keys else 0.0)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        os.close(primary)
        os.close(secondary)
    text = out.decode(errors="replace")
    assert alive, f"{command} stopped within {seconds} s:\n{text[-3000:]}"
    assert proc.returncode == 0, f"{command} exited {proc.returncode} after Ctrl-C:\n{text[-3000:]}"
    assert expect in text, f"{command}: {expect!r} not in its output:\n{text[-3000:]}"


def prepare_bag(path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_bag2dataset import write_bag

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bag(path)


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guides_commands_run(guide, tmp_path):
    cwd, env = workdir(tmp_path)
    blocks = marked_blocks(ROOT / guide)
    assert any(b.kind == "test" for b in blocks), f"{guide} has no doc-test block"
    for block in blocks:
        where = f"{guide}:{block.line}"
        if block.kind == "file":
            target = cwd / block.attrs["doc-file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            continue
        if block.attrs.get("bag"):
            prepare_bag(cwd / block.attrs["bag"])
        for command in block.commands():
            if "run-for" in block.attrs:
                run_for(command, cwd, env, float(block.attrs["run-for"]), block.attrs.get("keys", ""),
                        block.attrs.get("expect", ""))
                continue
            result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                    timeout=300)
            assert result.returncode == 0, f"{where}: {command}\n{(result.stdout + result.stderr)[-3000:]}"


def test_the_quick_starts_are_among_the_tested_commands():
    commands = " ".join(c for g in GUIDES for b in marked_blocks(ROOT / g) if b.kind == "test" for c in b.commands())
    for needed in ("diffuseloco_bringup.run sim --teleop keyboard", "diffuseloco_learning.evaluation ",
                   "diffuseloco_learning.data.bag2dataset", "diffuseloco_learning.data.generate",
                   "diffuseloco_learning.training ", "--gain-scale"):
        assert needed in commands, needed


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_in_the_readme_and_the_docs_resolve():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "models" / "README.md"]
    pages += [p for p in (ROOT / "docs").rglob("*.md")]
    pages += [p for p in (ROOT / "src").glob("*/README.md")]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://|mailto:|#", target):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)
