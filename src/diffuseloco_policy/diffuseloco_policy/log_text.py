"""Text that comes from outside (a message's `source`, a request's caller) on its way into logs and status.

Why: a sender controls these strings. A megabyte `source` logged with every refused command floods the log and the
status topic, and control characters can forge log lines. Everything the stack repeats from a message goes
through `shorten` first.
"""

from __future__ import annotations

SOURCE_LIMIT = 64  # characters of a sender's name kept in logs


def shorten(text: object, limit: int = SOURCE_LIMIT) -> str:
    """`text` as one printable line of at most `limit` characters, with "..." (and the full length) when cut."""
    value = text if isinstance(text, str) else str(text)
    line = "".join(c if c.isprintable() else "?" for c in value[:limit])
    return line if len(value) <= limit else f"{line}... ({len(value)} characters)"
