"""Message types for rosbag2 files written and read with `rosbags` (no rclpy needed).

rosbags ships the standard ROS 2 interfaces (std_msgs, sensor_msgs, ...) in its typestore; our own
(cyberdog_msgs, diffuseloco_msgs) and any other package's types are registered from their `.msg` files, found
in the ament prefixes (AMENT_PREFIX_PATH, the Python environment's prefix, where our wheels install
`share/<pkg>/msg`) or, in a source checkout, under `src/<pkg>/msg`. Types a `.msg` refers to are resolved the
same way, recursively. The bag then carries each type's full definition, so `ros2 bag` and rosbags readers
decode it without our packages installed.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

SOURCE_TREE = Path(__file__).resolve().parents[3]  # .../src (when run from a checkout)
OUR_TYPES = (
    "cyberdog_msgs/msg/LegState",
    "cyberdog_msgs/msg/MotorCommand",
    "cyberdog_msgs/msg/MotorControlState",
    "diffuseloco_msgs/msg/SkillCommand",
    "diffuseloco_msgs/msg/PolicyStatus",
)


class UnknownMessageType(LookupError):
    """No typestore entry and no .msg file for a message type."""


def _prefixes() -> Iterator[Path]:
    seen = set()
    for entry in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if entry and entry not in seen:
            seen.add(entry)
            yield Path(entry)


def find_msg_file(msgtype: str) -> Optional[Path]:
    """The .msg file of 'pkg/msg/Name' in an ament prefix's share dir or the source tree, or None."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    pkg, kind, name = parts
    candidates = [prefix / "share" / pkg / kind / f"{name}.msg" for prefix in _prefixes()]
    candidates.append(SOURCE_TREE / pkg / kind / f"{name}.msg")
    return next((c for c in candidates if c.is_file()), None)


def _referenced_types(definition) -> Iterator[str]:
    """Every 'pkg/msg/Name' string inside a parsed definition (field types, nested arrays and sequences)."""
    if isinstance(definition, str):
        if definition.count("/") == 2:
            yield definition
    elif isinstance(definition, (tuple, list)):
        for item in definition:
            yield from _referenced_types(item)


def ensure_types(typestore: Typestore, msgtypes: Iterable[str]) -> None:
    """Register every type in msgtypes (and what they use) that the typestore lacks, from .msg files."""
    pending = [t for t in msgtypes if t not in typestore.types]
    found: dict = {}
    while pending:
        msgtype = pending.pop()
        if msgtype in found or msgtype in typestore.types:
            continue
        path = find_msg_file(msgtype)
        if path is None:
            raise UnknownMessageType(f"no definition for {msgtype}: not in rosbags' typestore and no .msg file "
                                     f"in {[str(p) for p in _prefixes()]} or {SOURCE_TREE}")
        parsed = get_types_from_msg(path.read_text(), msgtype)
        found.update(parsed)
        for _consts, fields in parsed.values():
            pending.extend(t for t in _referenced_types(fields) if t not in found and t not in typestore.types)
    if found:
        typestore.register(found)


def make_typestore(extra_types: Iterable[str] = ()) -> Typestore:
    """rosbags' ROS 2 typestore plus our interface packages (and any extra types asked for)."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    ensure_types(typestore, [*OUR_TYPES, *extra_types])
    return typestore


@contextmanager
def open_bag(path: Path, error: type[Exception] = RuntimeError) -> Iterator[Any]:
    """An open rosbags AnyReader with our message types. A bag that cannot be opened raises `error` saying why
    (the callers' own error types, so their command lines answer with a message, not a traceback)."""
    from rosbags.highlevel import AnyReader

    try:
        reader = AnyReader([Path(path)], default_typestore=make_typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds for a bad bag folder
        raise error(f"cannot open bag {path}: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()
