"""Keyboard teleop for a laptop terminal: single key presses -> SkillCommand and controller requests, with the
key map of config/teleop_keyboard.yaml (w/s/a/d/q/e velocity, 1-5 skills, u stand up, r run, j get down,
space e-stop, c clear). Needs a real terminal on stdin."""

from __future__ import annotations

import select
import sys
import termios
import threading
import tty
from pathlib import Path
from typing import Optional

from ..config import ConfigError
from ..teleop import KeyboardMapping, TeleopCommand, apply_key, load_keyboard_mapping
from .spin import run_node
from .teleop_common import TeleopNode


class KeyboardTeleopNode(TeleopNode):
    def __init__(self) -> None:
        super().__init__("teleop", {"mapping": ""})
        if not sys.stdin.isatty():
            raise RuntimeError("keyboard teleop needs an interactive terminal on stdin")
        self.mapping: KeyboardMapping = (load_keyboard_mapping(Path(self.params["mapping"]))
                                         if self.params["mapping"] else KeyboardMapping())
        self.command = TeleopCommand(self.stack.skill("stand").id, source=self.mapping.source)
        self.request_source = self.mapping.source
        self._lock = threading.Lock()
        self.create_timer(1.0 / self.params["publish_rate_hz"], self._publish)
        self._reader = threading.Thread(target=self._read_keys, daemon=True)
        self._reader.start()
        print("keys: w/s vx, a/d vy, q/e yaw, x stop, 1-5 skills, u stand up, r run, j get down, "
              "space E-STOP, c clear e-stop, Ctrl-C quit", flush=True)

    def _publish(self) -> None:
        with self._lock:
            self.publish_command(self.command)

    def _read_keys(self) -> None:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while True:
                ready, _, _ = select.select([sys.stdin], [], [], 0.1)
                if ready:
                    self._on_key(sys.stdin.read(1))
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    def _on_key(self, key: str) -> None:
        with self._lock:
            result = apply_key(self.command, key, self.mapping, self.stack)
            self.command = result.command
        if result.request is not None:
            self.send_request(result.request)
        print(f"\r{result.message:<70}", end="", flush=True)


def main(args: Optional[list[str]] = None) -> None:
    run_node(KeyboardTeleopNode, args, refuse=(RuntimeError, ConfigError))


if __name__ == "__main__":
    main()
