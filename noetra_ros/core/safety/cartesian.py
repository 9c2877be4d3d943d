"""The Cartesian limiter: the tool frame stays inside the workspace box and under the tool speed.

It runs after the joint limiter, on two steps that limiter produced for the same state: the
step toward the command (`track`) and the braking step (`brake`, every joint decelerating at
a_max). Every blend `brake + f * (track - brake)` for f in [0, 1] is itself within every joint
limit (position, velocity, acceleration: each is an interval, and a blend of two points of an
interval stays in it), so the limiter picks the largest f whose tool motion is allowed:

  * the tool point stays in the box, and moves no faster than max_tool_speed;
  * (f > 0 only) inside workspace_slowdown_m of a face the speed toward it shrinks linearly;
  * (f > 0 only) braking from the new state keeps the tool in the box, checked along the
    continuous per-joint braking path (`joint_limiter.braking_positions`) against the box
    shrunk by LOOKAHEAD_MARGIN_M: the arm starts braking early enough that reaching a face never
    needs more than a_max.

Braking (f = 0) is always taken when it keeps the tool in the box and under the speed limit.
When it does not, braking every joint by one common factor (the direction of motion kept) is
tried next. Only when that fails too (the arm was armed at a face, a profile was tightened, or
the look-ahead missed the path's curvature by more than its margin) does the step become a
shorter part of the braking step: the tool limits win over the acceleration limit, and the step
reports it (counted as 'cartesian_overrode_accel').

The tool position comes from an injected function (q -> xyz or None when the kinematics fail);
nothing here keeps state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from noetra_ros.core.safety.joint_limiter import braking_positions

ToolPoint = Callable[[np.ndarray], 'np.ndarray | None']

# The braking path is checked against the box shrunk by this much (m): room for the curvature of
# the tool path between look-ahead samples and for discrete braking at a dt other than assumed.
LOOKAHEAD_MARGIN_M = 1e-3
LOOKAHEAD_SAMPLES = 8
_BISECTION_STEPS = 10
_REL_TOL = 1e-9
_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class ToolLimits:
    """The tool-frame limits in force for one step (all in the robot base frame)."""

    box_lower: np.ndarray | None  # the workspace box (widened to the tool where it was armed
    box_upper: np.ndarray | None  # outside, see SafetySupervisor.workspace_bounds)
    max_tool_speed: float | None  # m/s
    slowdown_m: float             # band inside each face where the approach speed shrinks


@dataclass(frozen=True, eq=False)
class CartesianStep:
    """The step the tool limits allow: joint positions, tool point, and what acted."""

    position: np.ndarray
    tool: np.ndarray | None
    fraction: float          # 1: the tracking step; 0: the braking step; < 0 never
    interventions: frozenset[str]
    accel_overridden: bool   # shorter than the braking step: the acceleration bound gave way
    fk_failed: bool          # the kinematics failed on a candidate


def limit_tool_step(tool_point: ToolPoint, position: np.ndarray, tool: np.ndarray,
                    track: np.ndarray, brake: Callable[[], np.ndarray],
                    acceleration: np.ndarray, dt: float, limits: ToolLimits,
                    gentle: Callable[[], np.ndarray] | None = None) -> CartesianStep:
    """The largest blend of the tracking step `track` and the braking step (both joint
    positions one step from `position`, where the tool is at `tool`) that the tool limits
    allow; see the module doc.

    The braking steps are asked for only when needed (most cycles the tracking step passes):
    `brake()` gives the braking step, `gentle()` a second one within the joint limits (every
    joint slowed by the same factor, so the direction of motion is kept). The gentle one is
    used when braking at a_max would turn the arm enough to raise the tool speed over the
    limit: the blend of the two braking steps closest to `brake()` that keeps the tool limits
    is then taken before the acceleration bound gives way.
    """
    if np.array_equal(track, position):
        return CartesianStep(track, tool, 1.0, frozenset(), False, False)  # standing still
    checker = _Checker(tool_point, position, tool, acceleration, dt, limits)
    full = checker.check(track)
    if not full.failures:
        return checker.result(1.0, full, set())
    acted = set(full.failures - {'fk'})
    braking_step = brake()
    stopping = np.array_equal(track, braking_step)
    braking = checker.check(braking_step, soft=False)
    if braking.hard_ok:
        if stopping:
            return checker.result(1.0, braking, acted)
        fraction, best = _largest_fraction(checker, track, braking_step, full, braking)
        return checker.result(fraction, best, acted)
    if full.hard_ok:
        # Braking itself would break a hard limit while the tracking step does not (a rare
        # geometry): keep the tracking step, which keeps the acceleration bound too.
        return checker.result(1.0, full, acted)
    acted |= braking.failures - {'fk'}
    if gentle is not None:
        steered = _closest_allowed(checker, braking_step, gentle())
        if steered is not None:
            return checker.result(0.0, steered, acted)
    return _shortened_brake(checker, braking_step, acted)


def blend(start: np.ndarray, end: np.ndarray, fraction: float) -> np.ndarray:
    """start + fraction (end - start), exactly `start` / `end` at 0 / 1 and never outside the
    box they span (rounding must not push a joint past a bound either of them respects)."""
    if fraction <= 0.0:
        return start
    if fraction >= 1.0:
        return end
    return np.clip(start + fraction * (end - start), np.minimum(start, end),
                   np.maximum(start, end))


def _closest_allowed(checker: _Checker, brake: np.ndarray, gentle: np.ndarray
                     ) -> _Candidate | None:
    """The point of the segment brake -> gentle closest to `brake` that keeps the hard tool
    limits (bisection), or None when even `gentle` does not."""
    cand = checker.check(gentle, soft=False)
    if not cand.hard_ok:
        return None
    lo, hi, best = 0.0, 1.0, cand
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        trial = checker.check(blend(brake, gentle, mid), soft=False)
        if trial.hard_ok:
            hi, best = mid, trial
        else:
            lo = mid
    return best


@dataclass(frozen=True, eq=False)
class _Candidate:
    position: np.ndarray
    tool: np.ndarray | None
    failures: frozenset[str]
    hard_failures: frozenset[str] = frozenset()

    @property
    def hard_ok(self) -> bool:
        """Inside the box and under the tool speed (the limits that are never given up)."""
        return not self.hard_failures


class _Checker:
    """Evaluates candidate steps against the tool limits, counting kinematics failures."""

    def __init__(self, tool_point: ToolPoint, position: np.ndarray, tool: np.ndarray,
                 acceleration: np.ndarray, dt: float, limits: ToolLimits) -> None:
        self.tool_point = tool_point
        self.position = position
        self.tool = tool
        self.acceleration = acceleration
        self.dt = dt
        self.limits = limits
        self.fk_failed = False
        lo, hi = limits.box_lower, limits.box_upper
        if lo is not None and hi is not None:
            # Shrunk for the look-ahead, but never past where the tool already is.
            self.ahead_lower = np.minimum(lo + LOOKAHEAD_MARGIN_M, tool)
            self.ahead_upper = np.maximum(hi - LOOKAHEAD_MARGIN_M, tool)

    def point(self, q: np.ndarray) -> np.ndarray | None:
        p = self.tool_point(q)
        if p is None:
            self.fk_failed = True
        return p

    def check(self, q: np.ndarray, soft: bool = True) -> _Candidate:
        """The step to joint positions `q` and the checks it fails: the hard ones (kinematics,
        box, tool speed) always, the soft ones (slowdown band, look-ahead) with `soft`, i.e.
        when there is a slower step to fall back to."""
        p = self.point(q)
        if p is None:
            return _Candidate(q, None, frozenset({'fk'}), frozenset({'fk'}))
        lim, p0, dt = self.limits, self.tool, self.dt
        hard: set[str] = set()
        box = lim.box_lower is not None and lim.box_upper is not None
        if box and (np.any(p < lim.box_lower) or np.any(p > lim.box_upper)):
            hard.add('workspace_limited')
        vtool = lim.max_tool_speed
        if vtool is not None and np.linalg.norm(p - p0) > vtool * dt * (1.0 + _REL_TOL):
            hard.add('tool_speed_limited')
        bad = set(hard)
        if soft and not bad:
            if box and vtool is not None and lim.slowdown_m > 0.0:
                u = (p - p0) / dt
                room = np.where(u > 0.0, lim.box_upper - p0, p0 - lim.box_lower)
                cap = vtool * np.clip(room / lim.slowdown_m, 0.0, 1.0)
                if np.any(np.abs(u) > cap * (1.0 + _REL_TOL) + _EPS):
                    bad.add('workspace_slowdown')
            if box and not bad and not self._stop_stays_inside(q, p):
                bad.add('workspace_limited')  # braking early for the box
        return _Candidate(q, p, frozenset(bad), frozenset(hard))

    def _stop_stays_inside(self, q: np.ndarray, p: np.ndarray) -> bool:
        """Braking at a_max from the state after the step `q` (tool at `p`) keeps the tool
        in the look-ahead box."""
        velocity = (q - self.position) / self.dt
        path = braking_positions(q, velocity, self.acceleration, LOOKAHEAD_SAMPLES)
        if len(path) == 1 and np.array_equal(path[0], q):
            return True  # at rest after this step: the step's own check covers it
        stop = self.point(path[-1])
        if stop is None or not self._inside_ahead(stop):
            return False
        # Far from every face compared with how far the stop goes, the path between can only
        # reach a face by curving out further than its own length: one point is enough. This
        # saves the kinematics on most cycles and only ever affects smoothness: the step's own
        # check still keeps the tool in the box.
        reach = float(np.linalg.norm(stop - p))
        clearance = min(float(np.min(np.minimum(p, stop) - self.ahead_lower)),
                        float(np.min(self.ahead_upper - np.maximum(p, stop))))
        if clearance > 2.0 * reach:
            return True
        for point in path[:-1]:
            sample = self.point(point)
            if sample is None or not self._inside_ahead(sample):
                return False
        return True

    def _inside_ahead(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= self.ahead_lower) and np.all(p <= self.ahead_upper))

    def result(self, fraction: float, cand: _Candidate, acted: set[str],
               overridden: bool = False) -> CartesianStep:
        return CartesianStep(cand.position, cand.tool, fraction, frozenset(acted), overridden,
                             self.fk_failed)


def _largest_fraction(checker: _Checker, track: np.ndarray, brake: np.ndarray,
                      full: _Candidate, braking: _Candidate) -> tuple[float, _Candidate]:
    """Largest f in [0, 1] whose blend of `brake` toward `track` passes every check (braking
    passes the hard ones).

    Over one short step the tool moves almost along a line, so the largest fraction that
    satisfies the linearised box / speed / slowdown checks is tried first and confirmed with
    the real kinematics; bisection covers the curvature and the look-ahead.
    """
    if full.tool is not None and braking.tool is not None:
        guess = _linear_fraction(checker, braking.tool, full.tool) * 0.999
        for _ in range(3):
            if guess <= 0.0:
                break
            cand = checker.check(blend(brake, track, guess))
            if not cand.failures:
                return guess, cand
            guess *= 0.8
    lo, hi, best = 0.0, 1.0, braking
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        cand = checker.check(blend(brake, track, mid))
        if cand.failures:
            hi = mid
        else:
            lo, best = mid, cand
    return lo, best


def _linear_fraction(checker: _Checker, p_brake: np.ndarray, p_track: np.ndarray) -> float:
    """Largest f (on a grid of 1/64) with the tool point p_brake + f (p_track - p_brake) inside
    the box, under the slowdown caps near its faces and under the speed limit, treating the
    tool path as straight."""
    lim, p0, dt = checker.limits, checker.tool, checker.dt
    fractions = np.linspace(0.0, 1.0, 65)[1:]
    steps = (p_brake - p0)[None, :] + fractions[:, None] * (p_track - p_brake)[None, :]
    ok = np.ones(len(fractions), dtype=bool)
    if lim.max_tool_speed is not None:
        ok &= np.linalg.norm(steps, axis=1) <= lim.max_tool_speed * dt
    if lim.box_lower is not None and lim.box_upper is not None:
        points = p0 + steps
        ok &= np.all((points >= lim.box_lower) & (points <= lim.box_upper), axis=1)
        if lim.max_tool_speed is not None and lim.slowdown_m > 0.0:
            u = steps / dt
            room = np.where(u > 0.0, lim.box_upper - p0, p0 - lim.box_lower)
            cap = lim.max_tool_speed * np.clip(room / lim.slowdown_m, 0.0, 1.0)
            ok &= np.all(np.abs(u) <= cap, axis=1)
    # A guess (the real kinematics confirm it): the usable range ends at the first failure.
    failed = np.flatnonzero(~ok)
    count = len(fractions) if failed.size == 0 else int(failed[0])
    return 0.0 if count == 0 else float(fractions[count - 1])


def _shortened_brake(checker: _Checker, brake: np.ndarray, acted: set[str]) -> CartesianStep:
    """Part of the braking step (from standing still) that keeps the tool limits: the
    acceleration bound gives way."""
    q0 = checker.position
    lo, hi = 0.0, 1.0
    best = _Candidate(q0.copy(), checker.tool, frozenset())
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        cand = checker.check(blend(q0, brake, mid), soft=False)
        if cand.hard_ok:
            lo, best = mid, cand
        else:
            hi = mid
    return CartesianStep(best.position, best.tool, 0.0, frozenset(acted), True,
                         checker.fk_failed)
