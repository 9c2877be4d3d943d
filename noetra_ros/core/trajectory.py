"""A ROS-free joint trajectory with the interpolation joint_trajectory_controller (JTC) uses.

The degree of the spline follows the fields the points carry, as JTC's spline interpolation does:
positions only -> linear, positions + velocities -> cubic Hermite, positions + velocities +
accelerations -> quintic. Before the first point the trajectory holds point 0 and after the last
point it holds the last point. A trajectory is executed from the state the robot had when it was
received: `anchored()` prepends that state at t = 0, so the first segment runs from the current
state to point 0 (JTC's `state_before_traj_msg_`) instead of jumping.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from noetra_ros.core.commands import validate_joint_names
from noetra_ros.core.errors import CommandError


def _as_matrix(values: object, field: str, shape: tuple[int, int]) -> np.ndarray:
    """Return `values` as a finite read-only float64 array of `shape` or raise CommandError."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CommandError(f'trajectory {field}: not numeric ({exc})') from None
    if array.shape != shape:
        raise CommandError(
            f'trajectory {field}: expected shape {shape} (points x joints), got {array.shape}')
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        raise CommandError(
            f'trajectory {field}: non-finite value at (point, joint) {bad[0].tolist()}; '
            'the whole trajectory is rejected')
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class JointTrajectory:
    """Joint-space trajectory: times (s, from start) and per-point positions [, vel [, acc]].

    Raises CommandError (naming the field) when names are empty or repeated, times are not finite,
    negative or not strictly increasing, or the point arrays do not match (points x joints).
    """

    joint_names: tuple[str, ...]
    times_from_start: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None
    accelerations: np.ndarray | None = None

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.joint_names)
        if not names:
            raise CommandError('trajectory joint_names: empty; at least one joint is required')
        if len(set(names)) != len(names):
            raise CommandError(f'trajectory joint_names: duplicate names in {list(names)}')
        object.__setattr__(self, 'joint_names', names)
        try:
            times = np.array(self.times_from_start, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CommandError(f'trajectory times_from_start: not numeric ({exc})') from None
        if times.ndim != 1 or times.size == 0:
            raise CommandError(
                'trajectory times_from_start: expected a non-empty 1-D sequence, '
                f'got shape {times.shape}')
        if not np.all(np.isfinite(times)):
            raise CommandError(
                f'trajectory times_from_start: non-finite value in {times.tolist()}')
        if times[0] < 0.0:
            raise CommandError(
                f'trajectory times_from_start: first time {times[0]} is negative; must be >= 0')
        steps = np.diff(times)
        if np.any(steps <= 0.0):
            index = int(np.flatnonzero(steps <= 0.0)[0]) + 1
            raise CommandError(
                'trajectory times_from_start: must be strictly increasing, but point '
                f'{index} ({times[index]} s) is not after point {index - 1} '
                f'({times[index - 1]} s)')
        times.setflags(write=False)
        object.__setattr__(self, 'times_from_start', times)
        shape = (times.size, len(names))
        object.__setattr__(self, 'positions', _as_matrix(self.positions, 'positions', shape))
        if self.velocities is not None:
            object.__setattr__(
                self, 'velocities', _as_matrix(self.velocities, 'velocities', shape))
        if self.accelerations is not None:
            if self.velocities is None:
                raise CommandError(
                    'trajectory accelerations: given without velocities; quintic interpolation '
                    'needs both')
            object.__setattr__(
                self, 'accelerations', _as_matrix(self.accelerations, 'accelerations', shape))

    @property
    def num_points(self) -> int:
        """Number of points."""
        return int(self.times_from_start.size)

    @property
    def duration(self) -> float:
        """Time from start of the last point (s)."""
        return float(self.times_from_start[-1])

    @property
    def degree(self) -> str:
        """'linear', 'cubic' or 'quintic': the interpolation the present fields select."""
        if self.accelerations is not None:
            return 'quintic'
        if self.velocities is not None:
            return 'cubic'
        return 'linear'

    def reordered(self, expected_names: Sequence[str]) -> JointTrajectory:
        """The same trajectory with its joints in `expected_names` order.

        Raises CommandError on unknown, missing or duplicate joint names (JTC rejects those).
        """
        order = validate_joint_names(self.joint_names, expected_names, 'trajectory joint_names')
        if order == list(range(len(order))):
            return self
        return JointTrajectory(
            joint_names=tuple(expected_names),
            times_from_start=self.times_from_start,
            positions=self.positions[:, order],
            velocities=None if self.velocities is None else self.velocities[:, order],
            accelerations=None if self.accelerations is None else self.accelerations[:, order])

    def anchored(self, start_positions: Sequence[float] | np.ndarray,
                 start_velocities: Sequence[float] | np.ndarray | None = None
                 ) -> JointTrajectory:
        """Prepend the state at receipt as a point at t = 0 (if point 0 is later than t = 0).

        Velocities of the start state are used only when the trajectory carries velocities
        (cubic / quintic); the start acceleration is taken as zero for quintic trajectories,
        because the simulator (like most drivers) has no acceleration state interface.
        """
        joints = len(self.joint_names)
        start_q = np.asarray(start_positions, dtype=np.float64).reshape(-1)
        if start_q.shape != (joints,) or not np.all(np.isfinite(start_q)):
            raise CommandError(
                f'trajectory start state: expected {joints} finite positions, got {start_q}')
        if self.times_from_start[0] <= 0.0:
            return self
        start_qd = np.zeros(joints)
        if start_velocities is not None:
            start_qd = np.asarray(start_velocities, dtype=np.float64).reshape(-1)
            if start_qd.shape != (joints,) or not np.all(np.isfinite(start_qd)):
                raise CommandError(
                    f'trajectory start state: expected {joints} finite velocities, got {start_qd}')
        return JointTrajectory(
            joint_names=self.joint_names,
            times_from_start=np.concatenate([[0.0], self.times_from_start]),
            positions=np.vstack([start_q, self.positions]),
            velocities=(None if self.velocities is None
                        else np.vstack([start_qd, self.velocities])),
            accelerations=(None if self.accelerations is None
                           else np.vstack([np.zeros(joints), self.accelerations])))

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities at time `t` (s from start).

        Holds point 0 before its time and the last point after the end (velocity zero there).
        """
        times = self.times_from_start
        if not np.isfinite(t):
            raise CommandError(f'trajectory sample time {t} is not finite')
        if t <= times[0]:
            return self.positions[0].copy(), np.zeros(len(self.joint_names))
        if t >= times[-1]:
            return self.positions[-1].copy(), np.zeros(len(self.joint_names))
        i = int(np.searchsorted(times, t, side='right')) - 1
        t0, t1 = float(times[i]), float(times[i + 1])
        span = t1 - t0
        s = (t - t0) / span
        p0, p1 = self.positions[i], self.positions[i + 1]
        if self.velocities is None:
            return p0 + s * (p1 - p0), (p1 - p0) / span
        v0, v1 = self.velocities[i], self.velocities[i + 1]
        if self.accelerations is None:
            return _hermite(p0, v0, p1, v1, span, s)
        return _quintic(p0, v0, self.accelerations[i], p1, v1, self.accelerations[i + 1],
                        span, s)


def _hermite(p0: np.ndarray, v0: np.ndarray, p1: np.ndarray, v1: np.ndarray,
             span: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite segment at normalised time s in [0, 1]; returns position, velocity."""
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    q = h00 * p0 + h10 * span * v0 + h01 * p1 + h11 * span * v1
    d00 = 6 * s**2 - 6 * s
    d10 = 3 * s**2 - 4 * s + 1
    d01 = -6 * s**2 + 6 * s
    d11 = 3 * s**2 - 2 * s
    qd = (d00 * p0 + d01 * p1) / span + d10 * v0 + d11 * v1
    return q, qd


def _quintic(p0: np.ndarray, v0: np.ndarray, a0: np.ndarray, p1: np.ndarray, v1: np.ndarray,
             a1: np.ndarray, span: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Quintic segment matching position, velocity and acceleration at both ends."""
    T = span
    c0 = p0
    c1 = v0
    c2 = 0.5 * a0
    c3 = (20 * (p1 - p0) - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T**2) / (2 * T**3)
    c4 = (30 * (p0 - p1) + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T**2) / (2 * T**4)
    c5 = (12 * (p1 - p0) - 6 * (v1 + v0) * T - (a0 - a1) * T**2) / (2 * T**5)
    t = s * T
    q = c0 + c1 * t + c2 * t**2 + c3 * t**3 + c4 * t**4 + c5 * t**5
    qd = c1 + 2 * c2 * t + 3 * c3 * t**2 + 4 * c4 * t**3 + 5 * c5 * t**4
    return q, qd
