"""Property tests of the pure joint limiter (core/safety/joint_limiter.py).

Hypothesis draws limits (1-4 joints, with and without a soft band and a jerk limit), a start at
rest anywhere inside the bounds, and a sequence of steps: random wanted velocities (huge and
non-finite ones included), references followed with `tracking_velocity`, stop requests,
dt from 1 % to 200 % of the period, and speed scales. Every step from such a reachable state
is checked against the guarantees in the module docstring, and from the end state a stop is
run to rest to show it is always feasible.
"""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import given, HealthCheck, settings, strategies as st

from noetra_ros.core.safety.joint_limiter import (
    acceleration_resolution, braking_positions, gentle_braking_velocity, JointMotion,
    limit_joint_step, stop_speed, tracking_velocity, uniform_scale)
from noetra_ros.core.safety.profile import EffectiveJointLimits

REL = 1e-9
ABS = 1e-9
# Deterministic by default, like test_safety_fuzz.py; NOETRA_FUZZ_EXAMPLES=5000 explores more.
_DEEP = os.environ.get('NOETRA_FUZZ_EXAMPLES')
PROPERTY = settings(max_examples=int(_DEEP) if _DEEP else 200, deadline=None,
                    derandomize=not _DEEP, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def frozen(values) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def make_limits(lower, upper, velocity, acceleration, jerk=None, soft_band=0.0,
                margin=0.0) -> EffectiveJointLimits:
    n = len(lower)
    return EffectiveJointLimits(
        names=tuple(f'j{i}' for i in range(n)), lower=frozen(lower), upper=frozen(upper),
        safe_lower=frozen(np.array(lower) + margin), safe_upper=frozen(np.array(upper) - margin),
        soft_band=soft_band, velocity=frozen(velocity), acceleration=frozen(acceleration),
        jerk=None if jerk is None else frozen([jerk] * n))


# ------------------------------------------------------------------------------ strategies
@st.composite
def setups(draw):
    n = draw(st.integers(1, 4))
    floats = lambda lo, hi: st.lists(st.floats(lo, hi), min_size=n, max_size=n)  # noqa: E731
    lower = draw(floats(-3.0, -0.05))
    upper = draw(floats(0.05, 3.0))
    limits = make_limits(
        lower, upper, draw(floats(0.1, 10.0)), draw(floats(0.5, 50.0)),
        jerk=draw(st.one_of(st.none(), st.floats(5.0, 2000.0))),
        soft_band=draw(st.sampled_from([0.0, 0.0, 0.05, 0.2])),
        margin=draw(st.sampled_from([0.0, 0.02])))
    period = draw(st.floats(0.001, 0.05))
    start = draw(floats(0.0, 1.0))
    return limits, period, start


wish = st.one_of(st.floats(-30.0, 30.0), st.floats(-30.0, 30.0), st.floats(-1.0, 1.0),
                 st.sampled_from([0.0, 1e300, -1e300, float('nan'), float('inf')]))
step_op = st.tuples(
    st.sampled_from(['wish', 'wish', 'track', 'track', 'stop']),
    st.lists(wish, min_size=4, max_size=4),
    st.one_of(st.just(1.0), st.just(1.0), st.floats(0.01, 2.0)),
    st.one_of(st.just(1.0), st.just(1.0), st.sampled_from([0.0, 0.5]), st.floats(0.0, 1.0)))


# ------------------------------------------------------------------------------ checking
def check_step(before: JointMotion, after, limits: EffectiveJointLimits, lo, hi, dt,
               stopping: bool) -> None:
    q, v, a = after.motion.position, after.motion.velocity, after.motion.acceleration
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(v)) and np.all(np.isfinite(a))
    assert np.all(q >= lo - ABS) and np.all(q <= hi + ABS)
    vmax, amax = limits.velocity, limits.acceleration
    assert np.all(np.abs(v) <= vmax * (1 + REL) + ABS), (v, vmax)
    dv = np.abs(v - before.velocity)
    assert np.all(dv <= amax * dt * (1 + REL) + ABS), (dv, amax * dt)
    # A stop stays feasible: the braking distance at a_max fits in the room ahead.
    room = np.where(v > 0.0, hi - q, q - lo)
    assert np.all(v * v / (2.0 * amax) <= room * (1 + REL) + ABS), (v, room)
    if stopping:
        assert np.all(np.abs(v) <= np.abs(before.velocity) + ABS)
        assert np.all(v * before.velocity >= 0.0)  # never reverses
    if limits.jerk is not None and 'jerk_overridden' not in after.interventions:
        da = np.abs(a - before.acceleration)
        assert np.all(da <= limits.jerk * dt * (1 + REL) + ABS + acceleration_resolution(q, dt))
    if 'jerk_overridden' in after.interventions:
        # Only a stop, a bound or the velocity limit may override the jerk limit.
        assert limits.jerk is not None
        assert stopping or 'braking_to_limit' in after.interventions or (
            np.any(np.abs(v) >= vmax * (1 - 1e-6))), after.interventions


def run_steps(limits, period, start, ops):
    lo, hi = np.array(limits.safe_lower), np.array(limits.safe_upper)
    n = len(lo)
    motion = JointMotion.at_rest(lo + np.array(start) * (hi - lo))
    for kind, values, dt_factor, scale in ops:
        dt = period * dt_factor
        values = np.array(values[:n])
        stopping = kind == 'stop'
        if kind == 'track':
            # A reference somewhere (inside or beyond the bounds), moving at the wished speed.
            reference = np.where(np.isfinite(values), values, 0.0) / 10.0
            wanted = tracking_velocity(motion.position, reference, np.clip(
                np.nan_to_num(values), -5.0, 5.0), limits, lo, hi, dt)
        else:
            wanted = values
        after = limit_joint_step(motion, wanted, limits, lo, hi, dt, scale, stopping)
        check_step(motion, after, limits, lo, hi, dt, stopping)
        motion = after.motion
    return motion, lo, hi


@PROPERTY
@given(setups(), st.lists(step_op, min_size=1, max_size=60))
def test_every_step_from_a_reachable_state_keeps_the_limits(setup, ops):
    run_steps(*setup, ops)


@PROPERTY
@given(setups(), st.lists(step_op, min_size=1, max_size=40),
       st.lists(st.floats(0.01, 2.0), min_size=1, max_size=20))
def test_a_stop_is_always_feasible(setup, ops, stop_dt_factors):
    """From any reachable state, stop requests (at any dt) bring every joint to rest inside
    the bounds, never speeding up, within the time braking at a_max (jerk: ramping up to it)
    needs."""
    limits, period, _ = setup
    motion, lo, hi = run_steps(*setup, ops)
    speed = np.abs(motion.velocity)
    amax = limits.acceleration
    # Braking time: v / a_max, plus the ramp a_max / jerk (twice: ramp in, ramp out) with jerk.
    need = float(np.max(speed / amax))
    if limits.jerk is not None:
        need += 2.0 * float(np.max(amax / limits.jerk)) + float(np.max(speed / (0.5 * amax)))
    elapsed = 0.0
    k = 0
    while np.any(motion.velocity != 0.0):
        dt = period * stop_dt_factors[k % len(stop_dt_factors)]
        after = limit_joint_step(motion, np.zeros_like(motion.velocity), limits, lo, hi, dt,
                                 stopping=True)
        check_step(motion, after, limits, lo, hi, dt, stopping=True)
        motion = after.motion
        elapsed += dt
        k += 1
        assert elapsed <= need + 4.0 * period * 2.0 + 1e-9, (elapsed, need)
    assert np.all(motion.position >= lo - ABS) and np.all(motion.position <= hi + ABS)


@PROPERTY
@given(setups(), st.lists(step_op, min_size=1, max_size=20))
def test_the_step_is_a_pure_function(setup, ops):
    limits, period, start = setup
    motion, lo, hi = run_steps(limits, period, start, ops)
    wanted = np.ones_like(motion.position)
    copies = [motion.position.copy(), motion.velocity.copy(), motion.acceleration.copy(),
              lo.copy(), hi.copy(), wanted.copy()]
    first = limit_joint_step(motion, wanted, limits, lo, hi, period)
    second = limit_joint_step(motion, wanted, limits, lo, hi, period)
    for original, now in zip(copies, [motion.position, motion.velocity, motion.acceleration,
                                      lo, hi, wanted]):
        np.testing.assert_array_equal(original, now)
    np.testing.assert_array_equal(first.motion.position, second.motion.position)
    assert first.interventions == second.interventions


# ------------------------------------------------------------------------------ examples
LIMITS = make_limits([-2.0, -1.0], [2.0, 1.0], [1.0, 2.0], [10.0, 5.0])


def test_a_wish_beyond_the_limits_is_cut_in_the_order_velocity_accel_bound():
    motion = JointMotion.at_rest(np.zeros(2))
    step = limit_joint_step(motion, np.array([5.0, 5.0]), LIMITS, LIMITS.lower, LIMITS.upper,
                            0.01)
    # Velocity: scaled uniformly to 1.0 / 5.0 of the wish (joint 0 at its 1 rad/s) -> (1, 1);
    # acceleration: each joint gains at most a_max * dt.
    np.testing.assert_allclose(step.motion.velocity, [0.1, 0.05])
    assert step.interventions == {'limited_velocity', 'limited_accel'}


def test_braking_to_the_bound_stops_exactly_there():
    motion = JointMotion.at_rest(np.array([1.5, 0.0]))
    lo, hi = LIMITS.lower, LIMITS.upper
    seen = set()
    for _ in range(400):
        step = limit_joint_step(motion, np.array([1.0, 0.0]), LIMITS, lo, hi, 0.01)
        seen |= step.interventions
        motion = step.motion
    assert motion.position[0] == 2.0 and motion.velocity[0] == 0.0
    assert 'braking_to_limit' in seen


def test_a_non_finite_wish_is_a_stop_for_that_joint():
    motion = JointMotion(np.zeros(2), np.array([0.5, 0.5]), np.zeros(2))
    step = limit_joint_step(motion, np.array([float('nan'), 0.5]), LIMITS, LIMITS.lower,
                            LIMITS.upper, 0.01)
    np.testing.assert_allclose(step.motion.velocity, [0.4, 0.5])


def test_stop_speed_is_the_largest_speed_that_can_still_stop_in_the_room():
    distance, accel, dt = np.array([0.0, 0.01, 1.0]), np.array([10.0, 10.0, 10.0]), 0.004
    v = stop_speed(distance, accel, dt)
    np.testing.assert_allclose(v * dt + v * v / (2 * accel), distance, atol=1e-15)
    assert v[0] == 0.0


def test_uniform_scale_keeps_the_direction():
    assert uniform_scale(np.array([2.0, -1.0]), np.array([1.0, 1.0])) == 0.5
    assert uniform_scale(np.array([0.5, 0.0]), np.array([1.0, 1.0])) == 1.0
    assert uniform_scale(np.array([1e308, 1.0]), np.array([0.0, 1.0])) == 0.0


def test_gentle_braking_keeps_the_direction_within_the_acceleration_limit():
    velocity = np.array([1.0, -0.2])
    gentle = gentle_braking_velocity(velocity, LIMITS, 0.01)
    # Joint 0 (1 rad/s, a_max 10) limits the common factor: 1 - 0.1 / 1 = 0.9 (joint 1 could
    # lose 0.05 of its 0.2 rad/s alone, a factor 0.75).
    np.testing.assert_allclose(gentle, 0.9 * velocity)
    assert np.all(np.abs(gentle - velocity) <= LIMITS.acceleration * 0.01 + 1e-15)
    np.testing.assert_array_equal(gentle_braking_velocity(np.zeros(2), LIMITS, 0.01), 0.0)


def test_braking_positions_end_where_braking_at_a_max_stops():
    q, v = np.array([0.0, 0.5]), np.array([2.0, -1.0])
    accel = np.array([10.0, 5.0])
    path = braking_positions(q, v, accel, 8)
    np.testing.assert_allclose(path[-1], q + v * np.abs(v) / (2 * accel))
    assert len(path) == 8 and np.all(np.diff(path[:, 0]) >= 0) and np.all(
        np.diff(path[:, 1]) <= 0)
    np.testing.assert_array_equal(braking_positions(q, np.zeros(2), accel, 8), [q])


def test_discrete_braking_never_goes_further_than_the_continuous_path():
    """What braking_positions relies on: at any dt the steps of a stop cover at most
    v^2 / (2 a)."""
    for dt in (0.001, 0.004, 0.013, 0.05, 0.1):
        for v0 in (0.3, 1.0, 3.9):
            motion = JointMotion(np.zeros(1), np.array([v0]), np.zeros(1))
            limits = make_limits([-10.0], [10.0], [5.0], [15.0])
            while motion.velocity[0] != 0.0:
                motion = limit_joint_step(motion, np.zeros(1), limits, limits.lower,
                                          limits.upper, dt, stopping=True).motion
            assert motion.position[0] <= v0 * v0 / 30.0 + 1e-12
            assert motion.position[0] >= v0 * v0 / 30.0 - v0 * dt / 2.0 - 1e-12
            assert math.isfinite(motion.position[0])
