"""Writing test bags with rosbags: timestamped messages in, an MCAP rosbag2 folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rosbags.rosbag2 import StoragePlugin, Writer


def write_mcap(path: Path, items: Iterable[tuple[int, str, str, Any]], typestore) -> Path:
    """items: (receive time ns, topic, message type, message); written in time order, one connection a topic."""
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for t, topic, msgtype, msg in sorted(items, key=lambda item: item[0]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(connections[topic], t, typestore.serialize_cdr(msg, msgtype))
    return path
