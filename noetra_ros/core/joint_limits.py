"""Joint limits as the robot description states them (URDF <limit> tags): one type for everyone.

`load_robot_description(robot).limits` (core/robot_model.py) is the JointLimits of an arm read
from its URDF; the simulator, the expert, the supervisor and the policy runtime all take it from
there. A `JointLimits` can also be built from plain arrays (tests, other URDF sources);
`JointLimits.from_robot_model` reads the duck-typed attributes of a robot model (`joint_names`,
`lower`, `upper`, `velocity_limits`, `effort_limits`). Safety profiles may only tighten these
limits (see core/safety/profile.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError


def _frozen_array(name: str, values: Any, count: int) -> np.ndarray:
    """A read-only float64 copy of `values` with `count` elements, or ConfigError."""
    try:
        arr = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f'{name}={values!r} is not a list of numbers ({exc})') from exc
    if arr.shape != (count,):
        raise ConfigError(f'{name} has {arr.size} values; {count} (one per joint) are required')
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class JointLimits:
    """Per-joint hard limits in the controller's joint order (rad, rad/s, N m).

    Every joint must have finite position limits (lower < upper) and a positive finite velocity
    limit: the supervisor clamps positions and steps, which needs both. Effort may be infinite
    when the source does not publish it (arm_facts.yaml lists several `effort: null`).
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def __post_init__(self) -> None:
        names = self.names
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f'names={names!r} must be a sequence of non-empty strings')
        names = tuple(names)
        if not names:
            raise ConfigError('names=() is empty; at least one joint is required')
        if len(set(names)) != len(names):
            raise ConfigError(f'names={names!r} contains duplicates')
        n = len(names)
        lower = _frozen_array('lower', self.lower, n)
        upper = _frozen_array('upper', self.upper, n)
        velocity = _frozen_array('velocity', self.velocity, n)
        effort = _frozen_array('effort', self.effort, n)
        for i, name in enumerate(names):
            if not (np.isfinite(lower[i]) and np.isfinite(upper[i]) and lower[i] < upper[i]):
                raise ConfigError(f'joint {name}: lower={lower[i]}, upper={upper[i]}; finite '
                                  'limits with lower < upper are required')
            if not (np.isfinite(velocity[i]) and velocity[i] > 0.0):
                raise ConfigError(f'joint {name}: velocity={velocity[i]}; a finite value > 0 '
                                  'is required')
            if np.isnan(effort[i]) or effort[i] <= 0.0:
                raise ConfigError(f'joint {name}: effort={effort[i]}; a value > 0 (inf allowed) '
                                  'is required')
        object.__setattr__(self, 'names', names)
        object.__setattr__(self, 'lower', lower)
        object.__setattr__(self, 'upper', upper)
        object.__setattr__(self, 'velocity', velocity)
        object.__setattr__(self, 'effort', effort)

    @classmethod
    def from_arrays(cls, names: Sequence[str], lower: Sequence[float], upper: Sequence[float],
                    velocity: Sequence[float],
                    effort: Sequence[float | None] | None = None) -> 'JointLimits':
        """Build from arrays; a missing effort (None, or None entries) becomes +inf."""
        n = len(names)
        if effort is None:
            effort_values = [np.inf] * n
        else:
            effort_values = [np.inf if e is None else e for e in effort]
        # Converted (and checked) here already so the fields are arrays as declared.
        return cls(tuple(names), _frozen_array('lower', lower, n),
                   _frozen_array('upper', upper, n), _frozen_array('velocity', velocity, n),
                   _frozen_array('effort', effort_values, n))

    @classmethod
    def from_robot_model(cls, model: Any) -> 'JointLimits':
        """Read `joint_names`, `lower`, `upper`, `velocity_limits`, `effort_limits` of a model."""
        effort = getattr(model, 'effort_limits', None)
        if effort is not None:
            effort = [None if (e is None or not np.isfinite(e) or e <= 0) else e for e in effort]
        return cls.from_arrays(list(model.joint_names), model.lower, model.upper,
                               model.velocity_limits, effort)

    @property
    def count(self) -> int:
        """Number of joints."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of joint `name` in the joint order (ConfigError when unknown)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f'unknown joint {name!r}; joints are {list(self.names)}') from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointLimits):
            return NotImplemented
        return (self.names == other.names
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in ('lower', 'upper', 'velocity', 'effort')))

    __hash__ = None  # type: ignore[assignment]

    def relaxations(self, new: 'JointLimits') -> list[str]:
        """Human-readable list of the ways `new` is looser than `self` (empty: not looser)."""
        if new.names != self.names:
            return [f'joint names change from {list(self.names)} to {list(new.names)}']
        out = []
        for i, name in enumerate(self.names):
            if new.lower[i] < self.lower[i]:
                out.append(f'{name}.lower {self.lower[i]:.6g} -> {new.lower[i]:.6g}')
            if new.upper[i] > self.upper[i]:
                out.append(f'{name}.upper {self.upper[i]:.6g} -> {new.upper[i]:.6g}')
            if new.velocity[i] > self.velocity[i]:
                out.append(f'{name}.velocity {self.velocity[i]:.6g} -> {new.velocity[i]:.6g}')
            if new.effort[i] > self.effort[i]:
                out.append(f'{name}.effort {self.effort[i]:.6g} -> {new.effort[i]:.6g}')
        return out
