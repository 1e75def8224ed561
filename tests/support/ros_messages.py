"""Helpers for ROS message tests: filling a message with random values and naming message types."""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np

_ARRAY = re.compile(r"^(?P<base>[\w/]+)\[(?P<size>\d*)\]$")
_SEQUENCE = re.compile(r"^sequence<(?P<base>[\w/]+)(, \d+)?>$")
_INTS = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
         "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "octet": np.uint8, "char": np.uint8}


def message_class(type_name: str) -> type:
    """'pkg/msg/Type' -> the generated Python class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def random_message(cls: type, rng: np.random.Generator) -> Any:
    """An instance of `cls` with every field set to a random value of its type (nested ones too)."""
    msg = cls()
    for field, ros_type in cls.get_fields_and_field_types().items():
        setattr(msg, field, _random_value(ros_type, rng))
    return msg


def _random_value(ros_type: str, rng: np.random.Generator) -> Any:
    array = _ARRAY.match(ros_type)
    sequence = _SEQUENCE.match(ros_type)
    if array or sequence:
        base = (array or sequence).group("base")
        size = int(array.group("size")) if array and array.group("size") else int(rng.integers(1, 5))
        values = [_random_value(base, rng) for _ in range(size)]
        if base in ("float", "float32"):
            return np.asarray(values, dtype=np.float32)
        if base in ("double", "float64"):
            return np.asarray(values, dtype=np.float64)
        if base in _INTS:
            return np.asarray(values, dtype=_INTS[base])
        return values
    if ros_type in ("float", "float32"):
        return float(np.float32(rng.normal(scale=10.0)))
    if ros_type in ("double", "float64"):
        return float(rng.normal(scale=10.0))
    if ros_type in _INTS:
        info = np.iinfo(_INTS[ros_type])
        return int(rng.integers(info.min, min(info.max, 2**62), endpoint=True))
    if ros_type == "boolean":
        return bool(rng.integers(0, 2))
    if ros_type == "string":
        return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz_ 0123456789"), size=int(rng.integers(0, 20))))
    return random_message(message_class(_as_msg_type(ros_type)), rng)


def _as_msg_type(ros_type: str) -> str:
    package, name = ros_type.split("/")
    return f"{package}/msg/{name}"
