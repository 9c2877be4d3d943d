"""Declare-and-read helpers so every node documents its parameters the same way."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter


def declare_parameters(node: Node, table: dict[str, tuple[Any, str]],
                       read_only: bool = False) -> dict[str, Any]:
    """Declare each `name: (default, description)` and return the values in effect.

    A string-list default of [] cannot carry a type, so such parameters are declared as
    STRING_ARRAY explicitly.
    """
    values = {}
    for name, (default, description) in table.items():
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        if isinstance(default, list) and not default:
            param = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor)
            value = param.value or []
        else:
            value = node.declare_parameter(name, default, descriptor).value
        if isinstance(value, (list, tuple)) or type(value).__name__ == 'array':
            value = list(value)
        values[name] = value
    return values
