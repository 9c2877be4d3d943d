"""Action chunks (5-30 Hz rows) in, a command stream at the driver's rate (125-500 Hz) out.

A policy emits chunks of joint targets a few times a second; a ros2_control driver runs its
controllers at 500 Hz (fanuc_driver's default) and MotoROS2 takes points every few milliseconds.
Stepping the controller to a new target 20 times a second asks it for a velocity jump at every
step. `CommandStream` instead keeps one piecewise-polynomial plan and samples it at any time:

* **At a chunk switch** (`add_chunk(..., now)`) the new plan starts from the stream's own state
  at `now` (position, velocity and, for quintic, acceleration of the plan being replaced), so
  position and velocity (and acceleration, quintic) are continuous whatever the new chunk says.
  The first segment joins that state to the first row that is at least `min_join_s` ahead;
  rows before it are in the past (the chunk is stamped with its observation, inference took
  time) and are used only to estimate velocities.
* **After the join** the plan passes exactly through every following row at its time, with
  a cubic Hermite (C1) or quintic (C2) segment between rows. Row velocities (and accelerations)
  are finite differences of the rows; the last row gets velocity and acceleration zero, so a
  stream that receives no new chunk comes to rest on the last row instead of drifting on.

This is the interpolation ros2_control's joint_trajectory_controller (JTC) applies: its spline
interpolator is cubic when points carry positions + velocities and quintic when they also carry
accelerations, and a new trajectory is joined from the controller's current state
(`Trajectory::set_point_before_trajectory_msg`, "the point before the trajectory message is
replaced/appended"). Source: ros2_controllers, joint_trajectory_controller/doc/trajectory.rst
(https://docs.ros.org/en/jazzy/p/joint_trajectory_controller/doc/trajectory.html) and the
`Trajectory` class reference (control.ros.org, humble / rolling API). `plan` returns the plan
as the core `JointTrajectory`, which `core/trajectory.py` samples with the same rule.

Pure numpy, one clock (seconds) for stamps, `now` and sample times. Not thread-safe: one owner
(the policy node's timer) calls it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from noetra_ros.core.errors import CommandError, ConfigError
from noetra_ros.core.trajectory import JointTrajectory

INTERPOLATIONS = ('cubic', 'quintic')


class StaleChunkError(CommandError):
    """Every row of a chunk is closer than `min_join_s` to now: the stream keeps its plan."""


def _finite_number(value: object, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ConfigError(f'{label} must be a finite number, got {value!r}')
    return float(value)


@dataclass(frozen=True)
class StreamConfig:
    """How the stream is sampled and how a new chunk is joined.

    rate_hz: the driver's command rate (125 / 250 / 500 Hz are the usual ones), in (0, 10000].
    interpolation: 'cubic' (position + velocity continuous, JTC with velocities) or 'quintic'
    (acceleration too, JTC with accelerations). min_join_s: shortest join from the current
    state to a new chunk; at least one stream period, because a shorter join would be a step.
    """

    rate_hz: float = 250.0
    interpolation: str = 'cubic'
    min_join_s: float = 0.05

    def __post_init__(self) -> None:
        rate = _finite_number(self.rate_hz, 'rate_hz')
        if not 0.0 < rate <= 10000.0:
            raise ConfigError(f'rate_hz must be in (0, 10000] Hz, got {rate}')
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f'interpolation {self.interpolation!r} is not known (valid: '
                              f'{", ".join(INTERPOLATIONS)})')
        join = _finite_number(self.min_join_s, 'min_join_s')
        if join < 1.0 / rate:
            raise ConfigError(f'min_join_s ({join} s) must be at least one stream period '
                              f'({1.0 / rate} s at {rate} Hz): a shorter join is a step')

    @property
    def period_s(self) -> float:
        """Seconds between two stream samples."""
        return 1.0 / float(self.rate_hz)


@dataclass(frozen=True)
class StreamPoint:
    """The stream's state at time t: positions, velocities, accelerations (joint order)."""

    t: float
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray


def _segment_coefficients(times: np.ndarray, q: np.ndarray, v: np.ndarray,
                          a: np.ndarray | None) -> np.ndarray:
    """Polynomial coefficients (segments, 6, joints) in tau = t - t_i, lowest power first.

    Cubic Hermite when `a` is None (matches position and velocity at both ends), else the
    quintic that matches position, velocity and acceleration at both ends.
    """
    span = np.diff(times)[:, None]
    p0, p1, v0, v1 = q[:-1], q[1:], v[:-1], v[1:]
    delta = p1 - p0
    coeffs = np.zeros((span.shape[0], 6, q.shape[1]))
    coeffs[:, 0] = p0
    coeffs[:, 1] = v0
    if a is None:
        coeffs[:, 2] = (3.0 * delta / span - 2.0 * v0 - v1) / span
        coeffs[:, 3] = (-2.0 * delta / span + v0 + v1) / span**2
        return coeffs
    a0, a1 = a[:-1], a[1:]
    coeffs[:, 2] = 0.5 * a0
    coeffs[:, 3] = (20 * delta - (8 * v1 + 12 * v0) * span - (3 * a0 - a1) * span**2) \
        / (2 * span**3)
    coeffs[:, 4] = (-30 * delta + (14 * v1 + 16 * v0) * span + (3 * a0 - 2 * a1) * span**2) \
        / (2 * span**4)
    coeffs[:, 5] = (12 * delta - 6 * (v1 + v0) * span - (a0 - a1) * span**2) / (2 * span**5)
    return coeffs


def row_velocities(times: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Finite-difference velocity of each row; zero at the last row (the plan ends at rest).

    Interior rows take numpy's second-order difference, which for uneven spacing is a weighted
    mean of the two neighbouring slopes, so no row velocity exceeds the steepest adjacent slope.
    """
    velocities = np.zeros_like(rows)
    if rows.shape[0] >= 2:
        velocities = np.gradient(rows, times, axis=0)
        velocities[-1] = 0.0
    return velocities


def row_accelerations(times: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Finite-difference acceleration of the row velocities; zero at the last row."""
    accelerations = np.zeros_like(velocities)
    if velocities.shape[0] >= 2:
        accelerations = np.gradient(velocities, times, axis=0)
        accelerations[-1] = 0.0
    return accelerations


class CommandStream:
    """One plan, replaced at every chunk, sampled at any time or tick by tick at `rate_hz`."""

    def __init__(self, joint_names: Sequence[str], config: StreamConfig | None = None) -> None:
        """A stream for `joint_names` (the order of every row and output); call `reset` first."""
        names = tuple(str(n) for n in joint_names)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f'joint_names must be non-empty and unique, got {list(names)}')
        self.joint_names = names
        self.config = config or StreamConfig()
        self._quintic = self.config.interpolation == 'quintic'
        self._times = np.zeros(1)
        self._knots_q = np.zeros((1, len(names)))
        self._knots_v = np.zeros((1, len(names)))
        self._knots_a = np.zeros((1, len(names)))
        self._coeffs = np.zeros((0, 6, len(names)))
        self._tick_origin = 0.0
        self._tick_index = 0
        self._started = False
        self.switches = 0
        self.skipped_ticks = 0

    # ---------------------------------------------------------------- state
    def reset(self, t: float, positions: Sequence[float] | np.ndarray) -> None:
        """Hold `positions` (the measured state, robot at rest) from time `t`; ticks restart
        at `t`. The first chunk is joined from there."""
        t = self._time(t, 'reset time')
        q = self._vector(positions, 'reset positions')
        zeros = np.zeros_like(q)[None, :]
        self._set_plan(np.array([t]), q[None, :], zeros, zeros.copy())
        self._tick_origin = t
        self._tick_index = 0
        self._started = True

    @property
    def plan(self) -> JointTrajectory:
        """The current plan as a core JointTrajectory (times from `plan_start`)."""
        self._require_started()
        return JointTrajectory(
            self.joint_names, self._times - self._times[0], self._knots_q, self._knots_v,
            self._knots_a if self._quintic else None)

    @property
    def plan_start(self) -> float:
        """Time of the plan's first knot (the last switch, or the reset)."""
        return float(self._times[0])

    @property
    def plan_end(self) -> float:
        """Time of the plan's last knot; the stream holds it (at rest) afterwards."""
        return float(self._times[-1])

    # ---------------------------------------------------------------- chunks
    def add_uniform_chunk(self, rows: Sequence[Sequence[float]] | np.ndarray, stamp: float,
                          step_period_s: float, now: float) -> float:
        """`add_chunk` for a policy chunk: row k applies at stamp + k * step_period_s."""
        stamp = self._time(stamp, 'chunk stamp')
        if isinstance(step_period_s, bool) or not isinstance(step_period_s, (int, float)) \
                or not math.isfinite(step_period_s) or step_period_s <= 0.0:
            raise CommandError(f'chunk step_period_s must be a finite number > 0, got '
                               f'{step_period_s!r}')
        try:
            values = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CommandError(f'chunk rows are not numeric ({exc})') from None
        count = values.shape[0] if values.ndim >= 1 else 0
        return self.add_chunk(values, stamp + step_period_s * np.arange(count), now)

    def add_chunk(self, rows: Sequence[Sequence[float]] | np.ndarray,
                  row_times: Sequence[float] | np.ndarray, now: float) -> float:
        """Replace the plan at `now` by a join to this chunk, then its rows; returns the join's end.

        rows (K, joints) in `joint_names` order, row_times (K,) absolute, strictly increasing,
        each gap at least one stream period (a row between two ticks would never be commanded).
        Raises CommandError naming the cause (the plan is then unchanged), StaleChunkError if no
        row is at least `min_join_s` after `now`.
        """
        self._require_started()
        now = self._time(now, 'now')
        if now < self.plan_start:
            raise CommandError(f'now ({now} s) is before the last switch ({self.plan_start} s): '
                               'chunks must arrive in time order')
        try:
            values = np.array(rows, dtype=np.float64)
            times = np.array(row_times, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CommandError(f'chunk rows / times are not numeric ({exc})') from None
        joints = len(self.joint_names)
        if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] != joints:
            raise CommandError(f'chunk rows must be (K >= 1, {joints}) in joint order '
                               f'{list(self.joint_names)}, got shape {values.shape}')
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            raise CommandError(f'chunk row {int(bad[0][0])} joint '
                               f'{self.joint_names[int(bad[0][1])]!r} is not finite '
                               f'({values[tuple(bad[0])]}); the whole chunk is rejected')
        if times.shape != (values.shape[0],):
            raise CommandError(f'chunk has {values.shape[0]} rows but {times.size} row times')
        if not np.all(np.isfinite(times)):
            raise CommandError(f'chunk row times are not all finite: {times.tolist()}')
        gaps = np.diff(times)
        if np.any(gaps <= 0.0):
            index = int(np.flatnonzero(gaps <= 0.0)[0]) + 1
            raise CommandError(f'chunk row times must increase strictly: row {index} '
                               f'({times[index]} s) is not after row {index - 1} '
                               f'({times[index - 1]} s)')
        period = self.config.period_s
        if np.any(gaps < period * (1.0 - 1e-9)):
            raise CommandError(f'chunk rows are {float(gaps.min())} s apart, less than the '
                               f'stream period {period} s at {self.config.rate_hz} Hz: rows '
                               'between two ticks would never be commanded')
        ahead = np.flatnonzero(times >= now + self.config.min_join_s)
        if ahead.size == 0:
            raise StaleChunkError(
                f'chunk ends at {times[-1]:.3f} s, less than min_join_s '
                f'({self.config.min_join_s} s) after now ({now:.3f} s): kept the current plan')
        first = int(ahead[0])
        velocities = row_velocities(times, values)
        accelerations = row_accelerations(times, velocities)
        state = self.sample(now)
        self._set_plan(
            np.concatenate([[now], times[first:]]),
            np.vstack([state.positions, values[first:]]),
            np.vstack([state.velocities, velocities[first:]]),
            np.vstack([state.accelerations, accelerations[first:]]))
        self.switches += 1
        return float(times[first])

    # ---------------------------------------------------------------- output
    def sample(self, t: float) -> StreamPoint:
        """The plan at time t; clamped to its first knot before the plan start and held (at
        rest) on the last knot after its end."""
        self._require_started()
        t = self._time(t, 'sample time')
        times = self._times
        if t >= times[-1] or self._coeffs.shape[0] == 0:
            zeros = np.zeros(len(self.joint_names))
            return StreamPoint(t, self._knots_q[-1].copy(), zeros, zeros.copy())
        index = max(int(np.searchsorted(times, t, side='right')) - 1, 0)
        tau = max(t - float(times[index]), 0.0)
        c = self._coeffs[index]
        q = c[0] + tau * (c[1] + tau * (c[2] + tau * (c[3] + tau * (c[4] + tau * c[5]))))
        v = c[1] + tau * (2 * c[2] + tau * (3 * c[3] + tau * (4 * c[4] + tau * 5 * c[5])))
        a = 2 * c[2] + tau * (6 * c[3] + tau * (12 * c[4] + tau * 20 * c[5]))
        return StreamPoint(t, q, v, a)

    @property
    def next_tick_time(self) -> float:
        """Time of the next `tick()`: reset time + n / rate_hz (no drift over long runs)."""
        return self._tick_origin + self._tick_index * self.config.period_s

    def catch_up(self, now: float) -> int:
        """Skip the grid points a late caller missed: afterwards the next tick is the latest
        grid time <= now (never moves backwards). Returns how many ticks were skipped.

        A timer that fires late should still send one period's motion per message (what a
        driver at a fixed rate expects), not a longer stride; after a longer stall the grid
        jumps ahead instead of lagging behind the clock for good.
        """
        self._require_started()
        now = self._time(now, 'now')
        latest = math.floor((now - self._tick_origin) / self.config.period_s + 1e-9)
        skipped = max(0, latest - self._tick_index)
        self._tick_index += skipped
        self.skipped_ticks += skipped
        return skipped

    def tick(self) -> StreamPoint:
        """The sample at the next point of the stream's grid; advances the grid by one period."""
        self._require_started()
        point = self.sample(self.next_tick_time)
        self._tick_index += 1
        return point

    # ---------------------------------------------------------------- helpers
    def _set_plan(self, times: np.ndarray, q: np.ndarray, v: np.ndarray, a: np.ndarray) -> None:
        self._times, self._knots_q, self._knots_v, self._knots_a = times, q, v, a
        self._coeffs = _segment_coefficients(times, q, v, a if self._quintic else None)

    def _require_started(self) -> None:
        if not self._started:
            raise CommandError('command stream has no state yet: call reset() with the '
                               'measured joint positions first')

    @staticmethod
    def _time(value: object, label: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not math.isfinite(float(value)):
            raise CommandError(f'{label} must be a finite number of seconds, got {value!r}')
        return float(value)

    def _vector(self, values: object, label: str) -> np.ndarray:
        try:
            array = np.array(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise CommandError(f'{label}: not numeric ({exc})') from None
        if array.shape != (len(self.joint_names),) or not np.all(np.isfinite(array)):
            raise CommandError(f'{label}: expected {len(self.joint_names)} finite values, '
                               f'got {array.tolist()}')
        return array
