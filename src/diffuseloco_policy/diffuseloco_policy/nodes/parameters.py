"""Node parameters, declared from a dict of defaults and checked against the defaults' types.

Why not plain declare_parameter: rclpy fixes a parameter's type from its default, so a params file that writes
`noise_scale: 0` (an integer where 0.0 was declared) makes it raise its own exception from the constructor, which
reads as a crash. Here every parameter is declared with dynamic typing and checked by us: an integer is taken
where a float is expected (0 means 0.0), and anything else of the wrong type is a ParameterTypeError that names
the parameter, which run_node turns into "refusing to start" with exit code 2.
"""

from __future__ import annotations

from typing import Any, Mapping

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


class ParameterTypeError(ValueError):
    """A parameter was given a value of another type than its default's."""


def _fits(value: Any, default: Any) -> bool:
    """Whether `value` may stand where `default` was declared: the same type, or an integer for a float."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and (not default or all(_fits(v, default[0]) for v in value))
    return isinstance(value, type(default))


def checked_value(name: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default` (an integer widened to a float), or a ParameterTypeError naming `name`."""
    if not _fits(value, default):
        raise ParameterTypeError(f"parameter {name!r} must be of the type of its default {default!r}, got {value!r}")
    if isinstance(default, float):
        return float(value)
    if isinstance(default, (list, tuple)) and default and isinstance(default[0], float):
        return [float(v) for v in value]
    return list(value) if isinstance(default, (list, tuple)) else value


def declare_parameters(node: Node, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Declare each parameter with its default and return the checked values, by name."""
    dynamic = ParameterDescriptor(dynamic_typing=True)
    return {name: checked_value(name, node.declare_parameter(name, default, dynamic).value, default)
            for name, default in defaults.items()}
