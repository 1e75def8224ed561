"""ROS 2 message definitions as the "ros2msg" schema text that Foxglove and MCAP use: the type's own .msg file,
then every type it uses, once each, after a line of 80 '=' and `MSG: package/Type`.

Why: the live view forwards the DDS bytes (CDR) of each topic unchanged, and a client can decode them only with
the full definition. The definitions come from the installed interface packages (share/<package>/msg/*.msg,
found through the ament index), so they are always those of the types on the wire.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

SEPARATOR = "=" * 80
PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "string", "wstring"})


class DefinitionNotFound(LookupError):
    """A message type whose .msg file is not installed."""


def split_type(type_name: str) -> tuple[str, str]:
    """'pkg/msg/Type' or 'pkg/Type' -> ('pkg', 'Type')."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"not a message type name: {type_name!r}")


def message_class(type_name: str) -> type:
    """The generated Python class of 'pkg/msg/Type'."""
    package, name = split_type(type_name)
    return getattr(importlib.import_module(f"{package}.msg"), name)


def share_dirs(package: str) -> list[Path]:
    """Where share/<package> may be: through the ament index (a sourced install), else in a prefix above the
    package's Python module (the ROS wheels install a prefix at the virtual environment's root and set no
    AMENT_PREFIX_PATH)."""
    candidates = []
    try:
        candidates.append(Path(get_package_share_directory(package)))
    except (PackageNotFoundError, LookupError, OSError):   # OSError: AMENT_PREFIX_PATH unset
        pass
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        module = Path(next(iter(spec.submodule_search_locations))).resolve()
        candidates += [parent / "share" / package for parent in module.parents]
    return candidates


def definition_text(package: str, name: str) -> str:
    for share in share_dirs(package):
        path = share / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise DefinitionNotFound(f"no installed definition of {package}/msg/{name} (share/{package}/msg/{name}.msg)")


def used_types(package: str, text: str) -> list[tuple[str, str]]:
    """The message types a definition's fields use, in order, as (package, Type)."""
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or "=" in fields[0]:
            continue
        base = re.sub(r"\[[^\]]*\]$", "", fields[0]).split("<=")[0]
        if base in PRIMITIVES:
            continue
        used = split_type(base) if "/" in base else (package, base)
        if used not in found:
            found.append(used)
    return found


def ros2msg_schema(type_name: str) -> str:
    """The full definition of 'pkg/msg/Type' with its dependencies (depth first, each once)."""
    package, name = split_type(type_name)
    main = definition_text(package, name)
    seen: list[tuple[str, str]] = []
    texts: dict[tuple[str, str], str] = {}

    def visit(pkg: str, text: str) -> None:
        for used in used_types(pkg, text):
            if used in seen:
                continue
            seen.append(used)
            texts[used] = definition_text(*used)
            visit(used[0], texts[used])

    visit(package, main)
    parts = [main.rstrip("\n")]
    parts += [f"{SEPARATOR}\nMSG: {pkg}/{typ}\n{texts[(pkg, typ)].rstrip(chr(10))}" for pkg, typ in seen]
    return "\n".join(parts) + "\n"
