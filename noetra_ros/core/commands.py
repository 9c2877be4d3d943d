"""Validation shared by every path that turns outside numbers into joint commands.

The simulator, the rclpy nodes and the safety layer all call these helpers so a command is judged
by one rule: the whole message is rejected (CommandError) when any element is missing or
non-finite, and nothing of it is applied.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from noetra_ros.core.errors import CommandError, ConfigError


def validate_joint_vector(values: object, expected_len: int, what: str) -> np.ndarray:
    """Return `values` as a finite float64 vector of length `expected_len`.

    `what` names the command in the error message (for example 'position command').
    Raises CommandError when the values are not numeric, have the wrong length, or contain NaN /
    Inf (partial NaN included: the whole vector is rejected).
    """
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CommandError(f'{what}: values are not numeric ({exc})') from None
    if vector.ndim != 1:
        raise CommandError(
            f'{what}: expected a flat vector of {expected_len} values, got shape {vector.shape}')
    if vector.shape[0] != expected_len:
        raise CommandError(
            f'{what}: expected {expected_len} values, got {vector.shape[0]}')
    bad = np.flatnonzero(~np.isfinite(vector))
    if bad.size:
        raise CommandError(
            f'{what}: non-finite value(s) at index {bad.tolist()} '
            f'({[float(vector[i]) for i in bad]}); the whole command is rejected')
    return vector.copy()


def validate_scalar(value: object, what: str) -> float:
    """Return `value` as a finite float; raise CommandError naming `what` otherwise."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CommandError(f'{what}: {value!r} is not a number') from None
    if not np.isfinite(number):
        raise CommandError(f'{what}: {number} is not finite')
    return number


def validate_joint_names(names: Sequence[str], expected: Sequence[str], what: str) -> list[int]:
    """Map the joint names of a command onto the expected order.

    Returns, for each expected joint, the index of that joint in `names`, so a command listed in
    another order can be re-ordered. Raises CommandError on duplicates, unknown or missing joints
    (what joint_trajectory_controller checks on receipt).
    """
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise CommandError(f'{what}: duplicate joint name(s) {dupes}')
    unknown = [n for n in names if n not in expected]
    if unknown:
        raise CommandError(f'{what}: unknown joint name(s) {unknown}; expected {list(expected)}')
    missing = [n for n in expected if n not in names]
    if missing:
        raise CommandError(f'{what}: missing joint name(s) {missing}; expected {list(expected)}')
    return [names.index(n) for n in expected]


def controller_order(requested: Sequence[str], joints: Sequence[str],
                     what: str = 'parameter controller_joints') -> tuple[list[str], np.ndarray]:
    """The joint order of a controller and the index that maps onto it.

    `requested` empty means the robot's own order. Returns (order, index) with
    `values_in_robot_order[index]` in controller order (np.argsort(index) maps back).
    Raises ConfigError unless `requested` is a permutation of `joints`.
    """
    order = [str(j) for j in requested] or [str(j) for j in joints]
    if sorted(order) != sorted(joints) or len(set(order)) != len(order):
        raise ConfigError(f'{what}={order} must be a permutation of the robot joints '
                          f'{list(joints)}')
    return order, np.array([list(joints).index(j) for j in order])
