"""Declare-and-read helpers so every node documents its parameters the same way, and the one
guard that keeps every parameter of a node read-only once it has started."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from noetra_ros.core.errors import ConfigError

_ARRAY_TYPES = (Parameter.Type.BYTE_ARRAY, Parameter.Type.BOOL_ARRAY,
                Parameter.Type.INTEGER_ARRAY, Parameter.Type.DOUBLE_ARRAY,
                Parameter.Type.STRING_ARRAY)


class ReadOnlyGuard:
    """An on-set-parameters callback that refuses every change to a declared parameter.

    Declaring a new parameter is still allowed (rclpy runs the same callbacks for it), so the
    guard can be installed before a node has declared everything. It covers the parameters
    rclpy declares itself, `use_sim_time` above all: switching the clock source of a running
    supervisor would change what "stale" means while it is ARMED.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._suspended = False

    def __call__(self, parameters: list[Parameter]) -> SetParametersResult:
        if self._suspended:
            return SetParametersResult(successful=True)
        changed = [p.name for p in parameters if self._node.has_parameter(p.name)]
        if not changed:
            return SetParametersResult(successful=True)
        return SetParametersResult(
            successful=False,
            reason=f'{", ".join(changed)}: every parameter of node {self._node.get_name()!r} '
                   f'is read-only after start-up; restart the node with the new value')

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Let the node's own start-up code complete a declaration (see declare_parameters)."""
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = False


_GUARDS: WeakKeyDictionary[Node, ReadOnlyGuard] = WeakKeyDictionary()


def read_only_guard(node: Node) -> ReadOnlyGuard:
    """The node's ReadOnlyGuard, installed on first use (one per node)."""
    guard = _GUARDS.get(node)
    if guard is None:
        guard = _GUARDS[node] = ReadOnlyGuard(node)
        node.add_on_set_parameters_callback(guard)
    return guard


def _declared_type(name: str, default: Any) -> Parameter.Type:
    if isinstance(default, (list, tuple)) and not default:
        # An empty list says nothing of its element type (rclpy would call it a byte array);
        # every list parameter of this package that may be empty is a list of names.
        return Parameter.Type.STRING_ARRAY
    try:
        return Parameter.Type.from_parameter_value(default)
    except TypeError as exc:
        raise ConfigError(f'parameter {name}: default {default!r} has no ROS parameter type') \
            from exc


def declare_parameters(node: Node, table: dict[str, tuple[Any, str]],
                       read_only: bool = True) -> dict[str, Any]:
    """Declare each `name: (default, description)` and return the values in effect.

    Every parameter gets a value of its declared type, so the standard parameter services
    (`get_parameters`, `ros2 param dump`) can read all of them: a list parameter left empty
    (default [] or an override of []) is declared typed and set to an empty list of that type.
    A value of the wrong type in the parameters file raises ConfigError naming the parameter.
    After the call the node refuses every parameter change (`ReadOnlyGuard`); `read_only`
    also marks the descriptors, so `ros2 param describe` shows it.
    """
    guard = read_only_guard(node)
    values = {}
    for name, (default, description) in table.items():
        param_type = _declared_type(name, default)
        descriptor = ParameterDescriptor(description=description, read_only=read_only)
        try:
            if param_type in _ARRAY_TYPES:
                value = _declare_array(node, guard, name, default, param_type, descriptor)
            else:
                _widen_integer_override(node, name, param_type)
                value = node.declare_parameter(name, default, descriptor).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ConfigError(f'parameter {name}: {exc}') from exc
        if isinstance(value, (list, tuple)) or type(value).__name__ == 'array':
            value = list(value)
        values[name] = value
    return values


def _widen_integer_override(node: Node, name: str, param_type: Parameter.Type) -> None:
    """`rate_hz: 20` in a YAML file is an integer; a double parameter takes it as 20.0, as a
    person writing the file means it (rclpy alone refuses it as the wrong type). Only an
    integer override of a double parameter is widened; every other mismatch stays an error.
    rclpy keeps the overrides in `Node._parameter_overrides` (no public accessor)."""
    if param_type is not Parameter.Type.DOUBLE:
        return
    overrides = getattr(node, '_parameter_overrides', None)
    override = overrides.get(name) if isinstance(overrides, dict) else None
    if override is not None and override.type_ is Parameter.Type.INTEGER:
        overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(override.value))


def _declare_array(node: Node, guard: ReadOnlyGuard, name: str, default: Any,
                   param_type: Parameter.Type, descriptor: ParameterDescriptor) -> list:
    # An empty default or an empty list in a parameters file leaves the declared parameter
    # without a value (rclpy cannot type []), and `get_parameters` then answers nothing for
    # any request that names it. So it is declared writable, given an empty list of its type,
    # then marked read-only.
    writable = ParameterDescriptor(description=descriptor.description)
    value = node.declare_parameter(name, list(default) if default else param_type,
                                   writable).value
    if value is None:
        value = []
        with guard.suspended():
            result, = node.set_parameters([Parameter(name, param_type, value)])
        if not result.successful:
            raise ConfigError(f'parameter {name}: cannot set it to []: {result.reason}')
    if descriptor.read_only:
        node.set_descriptor(name, ParameterDescriptor(
            description=descriptor.description, read_only=True, type=param_type.value))
    return list(value)
