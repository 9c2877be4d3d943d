"""CommandStream: action chunks -> a command stream at the driver's rate, continuous at switches."""
import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from noetra_ros.core.command_stream import (
    CommandStream, StaleChunkError, StreamConfig, row_velocities)
from noetra_ros.core.errors import CommandError, ConfigError

NAMES = ('j1', 'j2', 'j3')


def _stream(rate_hz=250.0, interpolation='cubic', min_join_s=0.05, start=(0.0, 0.0, 0.0)):
    stream = CommandStream(NAMES, StreamConfig(rate_hz, interpolation, min_join_s))
    stream.reset(0.0, start)
    return stream


def _chunk(rng, start, steps=20, spread=0.05):
    """A random-walk chunk of `steps` rows starting near `start` (an offset, as a new chunk
    from a later observation would have)."""
    walk = np.cumsum(rng.normal(0.0, 0.02, (steps, len(NAMES))), axis=0)
    return np.asarray(start) + rng.uniform(-spread, spread, len(NAMES)) + walk


def _run(stream, chunks, arrivals, duration_s):
    """Tick the stream for duration_s, adding chunk i (rows, stamp, step) when the tick time
    reaches arrivals[i]; returns the ticks (t, q, v, a) and the states just before / after
    each switch."""
    ticks, switches = [], []
    pending = list(zip(arrivals, chunks))
    while stream.next_tick_time <= duration_s + 1e-12:
        now = stream.next_tick_time
        while pending and pending[0][0] <= now + 1e-12:
            _, (rows, stamp, step) = pending.pop(0)
            before = stream.sample(now)
            stream.add_uniform_chunk(rows, stamp, step, now)
            switches.append((before, stream.sample(now)))
        point = stream.tick()
        ticks.append((point.t, point.positions, point.velocities, point.accelerations))
    t = np.array([row[0] for row in ticks])
    q, v, a = (np.array([row[i] for row in ticks]) for i in (1, 2, 3))
    return t, q, v, a, switches


def _scenario(interpolation, rate_hz=250.0, seed=3):
    """Chunks of 20 rows at 20 Hz, one every 0.2 s, arriving 0.09 s after their stamp and each
    offset from the last one (as a new observation gives), for 2 s."""
    rng = np.random.default_rng(seed)
    stream = _stream(rate_hz, interpolation)
    chunks, arrivals, start = [], [], np.zeros(len(NAMES))
    for i in range(10):
        stamp = 0.2 * i
        rows = _chunk(rng, start)
        chunks.append((rows, stamp, 0.05))
        arrivals.append(stamp + 0.09)
        start = rows[4]
    return stream, _run(stream, chunks, arrivals, 2.2)


# ---------------------------------------------------------------- continuity at switches
@pytest.mark.parametrize('interpolation', ['cubic', 'quintic'])
def test_state_is_unchanged_by_every_switch(interpolation):
    stream, (_, _, _, _, switches) = _scenario(interpolation)
    assert stream.switches == len(switches) == 10
    for before, after in switches:
        np.testing.assert_array_equal(after.positions, before.positions)
        np.testing.assert_allclose(after.velocities, before.velocities, atol=1e-12)
        if interpolation == 'quintic':
            np.testing.assert_allclose(after.accelerations, before.accelerations, atol=1e-9)


@pytest.mark.parametrize('interpolation', ['cubic', 'quintic'])
@pytest.mark.parametrize('rate_hz', [125.0, 250.0, 500.0])
def test_finite_differences_at_the_stream_rate_show_no_jump(interpolation, rate_hz):
    """A position step would make (q[n+1] - q[n]) / dt far exceed the largest velocity, a
    velocity step (v[n+1] - v[n]) / dt far exceed the largest acceleration."""
    _, (t, q, v, a, switches) = _scenario(interpolation, rate_hz)
    dt = 1.0 / rate_hz
    np.testing.assert_allclose(np.diff(t), dt, rtol=1e-9)
    speed = np.abs(np.diff(q, axis=0)) / dt
    accel = np.abs(np.diff(v, axis=0)) / dt
    # 10 % margin: the true peak of |v| or |a| can fall between two samples.
    assert speed.max() <= 1.1 * np.abs(v).max() + 1e-9
    assert accel.max() <= 1.1 * np.abs(a).max() + 1e-9
    # Not a standing robot: every chunk starts 0.05 rad away from where the last one led.
    assert np.abs(v).max() > 0.3
    assert len(switches) == 10


def test_stream_passes_through_rows_after_the_join_and_ends_at_rest():
    stream = _stream()
    rows = np.array([[0.0, 0.1, 0.2], [0.1, 0.2, 0.1], [0.3, 0.1, 0.0], [0.4, 0.0, -0.1],
                     [0.4, 0.1, -0.2]])
    reached = stream.add_uniform_chunk(rows, stamp=0.0, step_period_s=0.1, now=0.02)
    assert reached == pytest.approx(0.1)  # row 0 is in the past, row 1 is 0.08 s ahead
    ticks = {round(stream.next_tick_time, 9): stream.tick() for _ in range(150)}
    for k in range(1, 5):  # the 250 Hz grid hits every row time (multiples of 4 ms)
        np.testing.assert_allclose(ticks[round(0.1 * k, 9)].positions, rows[k], atol=1e-12)
    assert not np.allclose(ticks[0.0].positions, rows[0])  # row 0 is not replayed
    end = ticks[0.4]
    np.testing.assert_allclose(end.velocities, 0.0, atol=1e-12)
    np.testing.assert_allclose(ticks[0.5].positions, rows[-1])
    np.testing.assert_array_equal(ticks[0.5].velocities, 0.0)
    inner_velocity = ticks[0.2].velocities
    np.testing.assert_allclose(inner_velocity, (rows[3] - rows[1]) / 0.2, atol=1e-12)


@pytest.mark.parametrize('interpolation', ['cubic', 'quintic'])
def test_plan_is_the_core_trajectory_sampled_the_jtc_way(interpolation):
    stream = _stream(interpolation=interpolation, start=(0.1, -0.2, 0.3))
    rng = np.random.default_rng(7)
    stream.add_uniform_chunk(_chunk(rng, (0.1, -0.2, 0.3)), 0.0, 0.05, now=0.03)
    plan = stream.plan
    assert plan.degree == interpolation
    np.testing.assert_array_equal(plan.positions[0], (0.1, -0.2, 0.3))
    for t in np.linspace(0.031, plan.duration + 0.02, 97):
        q, v = plan.sample(t - stream.plan_start)
        point = stream.sample(t)
        np.testing.assert_allclose(point.positions, q, atol=1e-10)
        np.testing.assert_allclose(point.velocities, v, atol=1e-8)


def test_stream_holds_reset_state_until_a_chunk_arrives():
    stream = _stream(start=(0.5, 0.6, 0.7))
    for _ in range(10):
        point = stream.tick()
        np.testing.assert_array_equal(point.positions, (0.5, 0.6, 0.7))
        np.testing.assert_array_equal(point.velocities, 0.0)


# ---------------------------------------------------------------- rate handling
@pytest.mark.parametrize('rate_hz', [125.0, 250.0, 500.0])
def test_ticks_follow_the_rate_without_drift(rate_hz):
    stream = CommandStream(NAMES, StreamConfig(rate_hz=rate_hz))
    stream.reset(10.0, (0.0, 0.0, 0.0))
    times = [stream.tick().t for _ in range(int(rate_hz))]
    assert times[0] == 10.0
    np.testing.assert_allclose(np.diff(times), 1.0 / rate_hz, rtol=1e-9)
    for _ in range(100 * int(rate_hz)):
        stream.tick()
    assert stream.next_tick_time == pytest.approx(10.0 + 101.0, abs=1e-9)


def test_catch_up_skips_missed_ticks_and_never_goes_back():
    stream = CommandStream(NAMES, StreamConfig(rate_hz=250.0))
    stream.reset(1.0, (0.0, 0.0, 0.0))
    assert stream.catch_up(1.0021) == 0  # within the first period: tick 0 is still due
    assert stream.tick().t == 1.0
    assert stream.catch_up(1.0205) == 4  # late by 4 periods: the next tick is 1.020
    assert stream.next_tick_time == pytest.approx(1.020)
    assert stream.catch_up(1.0) == 0  # an earlier clock reading does not rewind the grid
    assert stream.next_tick_time == pytest.approx(1.020)
    assert stream.skipped_ticks == 4


@pytest.mark.parametrize('kwargs, needle', [
    ({'rate_hz': 0.0}, 'rate_hz must be in'),
    ({'rate_hz': -250.0}, 'rate_hz must be in'),
    ({'rate_hz': 20000.0}, 'rate_hz must be in'),
    ({'rate_hz': math.nan}, 'rate_hz must be a finite number'),
    ({'rate_hz': True}, 'rate_hz must be a finite number'),
    ({'rate_hz': '250'}, 'rate_hz must be a finite number'),
    ({'interpolation': 'linear'}, 'interpolation'),
    ({'rate_hz': 125.0, 'min_join_s': 0.004}, 'at least one stream period'),
    ({'min_join_s': math.inf}, 'min_join_s must be a finite number'),
])
def test_bad_config_is_refused_with_the_cause(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        StreamConfig(**kwargs)


def test_rows_denser_than_the_stream_are_refused():
    stream = _stream(rate_hz=125.0)
    with pytest.raises(CommandError, match='less than the stream period'):
        stream.add_uniform_chunk(np.zeros((5, 3)), 0.0, 0.004, now=0.0)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize('rows, times, needle', [
    ([[0.0, math.nan, 0.0], [0.0, 0.0, 0.0]], [0.1, 0.2], "joint 'j2' is not finite"),
    ([[0.0, math.inf, 0.0]], [0.1], 'not finite'),
    ([[0.0, 0.0]], [0.1], r'\(K >= 1, 3\)'),
    (np.zeros((0, 3)), [], r'\(K >= 1, 3\)'),
    ([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]], [0.2, 0.1], 'must increase strictly: row 1'),
    ([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]], [0.2, 0.2], 'must increase strictly'),
    ([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]], [0.2, math.nan], 'not all finite'),
    ([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]], [0.2], '2 rows but 1 row times'),
    ([['a', 0.0, 0.0]], [0.2], 'not numeric'),
])
def test_bad_chunks_are_rejected_whole_and_the_plan_kept(rows, times, needle):
    stream = _stream(start=(0.1, 0.2, 0.3))
    stream.add_chunk([[0.2, 0.2, 0.2], [0.3, 0.3, 0.3]], [0.1, 0.2], now=0.0)
    plan_before = stream.plan
    with pytest.raises(CommandError, match=needle):
        stream.add_chunk(rows, times, now=0.04)
    assert stream.switches == 1
    np.testing.assert_array_equal(stream.plan.positions, plan_before.positions)


def test_stale_chunk_keeps_the_plan():
    stream = _stream()
    stream.add_chunk([[0.2, 0.2, 0.2], [0.3, 0.3, 0.3]], [0.1, 0.2], now=0.0)
    with pytest.raises(StaleChunkError, match='kept the current plan'):
        stream.add_uniform_chunk(np.ones((4, 3)), stamp=0.0, step_period_s=0.05, now=0.12)
    assert stream.plan_end == pytest.approx(0.2)


@pytest.mark.parametrize('call, needle', [
    (lambda s: s.add_uniform_chunk(np.zeros((3, 3)), 0.0, 0.0, now=0.0), 'step_period_s'),
    (lambda s: s.add_uniform_chunk(np.zeros((3, 3)), math.nan, 0.05, now=0.0), 'chunk stamp'),
    (lambda s: s.add_chunk(np.zeros((3, 3)), [1.0, 1.1, 1.2], now=math.inf), 'now must be'),
    (lambda s: s.sample(math.nan), 'sample time'),
    (lambda s: s.reset(0.0, (0.0, 0.0)), 'expected 3 finite values'),
    (lambda s: s.reset(0.0, (0.0, math.nan, 0.0)), 'reset positions'),
])
def test_bad_arguments_name_the_cause(call, needle):
    with pytest.raises(CommandError, match=needle):
        call(_stream())


def test_chunks_out_of_time_order_and_use_before_reset_are_refused():
    stream = _stream()
    stream.add_chunk(np.zeros((2, 3)), [0.5, 0.6], now=0.3)
    with pytest.raises(CommandError, match='before the last switch'):
        stream.add_chunk(np.zeros((2, 3)), [0.5, 0.6], now=0.2)
    with pytest.raises(CommandError, match=r'call reset\(\)'):
        CommandStream(NAMES).tick()
    with pytest.raises(ConfigError, match='non-empty and unique'):
        CommandStream(('a', 'a'))


# ---------------------------------------------------------------- property
def _hermite_bounds(plan):
    """Largest speed and acceleration a cubic Hermite plan can reach, from its knots alone:
    |q'| <= 1.5 |dp| / T + |v0| + |v1| and |q''| <= 6 |dp| / T^2 + 4 (|v0| + |v1|) / T."""
    span = np.diff(plan.times_from_start)[:, None]
    dp = np.abs(np.diff(plan.positions, axis=0))
    v0, v1 = np.abs(plan.velocities[:-1]), np.abs(plan.velocities[1:])
    return (float((1.5 * dp / span + v0 + v1).max()),
            float((6 * dp / span**2 + 4 * (v0 + v1) / span).max()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rate_hz=st.sampled_from([125.0, 250.0, 500.0]),
       row_rate_hz=st.sampled_from([5.0, 10.0, 20.0, 30.0]),
       latency_s=st.floats(0.0, 0.15), period_steps=st.integers(1, 6),
       rows=st.integers(1, 30))
def test_random_chunks_never_jump_beyond_the_bounds_their_rows_imply(
        seed, rate_hz, row_rate_hz, latency_s, period_steps, rows):
    rng = np.random.default_rng(seed)
    step = 1.0 / row_rate_hz
    stream = CommandStream(NAMES, StreamConfig(rate_hz, 'cubic', 0.05))
    stream.reset(0.0, rng.uniform(-1, 1, 3))
    dt = 1.0 / rate_hz
    speed_bound = accel_bound = 0.0
    last_q = last_v = None
    for i in range(8):
        stamp = i * period_steps * step
        arrival = stamp + latency_s
        while stream.next_tick_time < arrival - 1e-12:
            point = stream.tick()
            if last_q is not None:
                assert np.abs(point.positions - last_q).max() <= dt * speed_bound + 1e-9
                assert np.abs(point.velocities - last_v).max() <= dt * accel_bound + 1e-9
            last_q, last_v = point.positions, point.velocities
        values = rng.uniform(-1, 1, 3) + np.cumsum(rng.normal(0, 0.05, (rows, 3)), axis=0)
        now = stream.next_tick_time
        before = stream.sample(now)
        try:
            stream.add_uniform_chunk(values, stamp, step, now)
        except StaleChunkError:
            continue
        after = stream.sample(now)
        np.testing.assert_array_equal(after.positions, before.positions)
        np.testing.assert_allclose(after.velocities, before.velocities, atol=1e-9)
        plan = stream.plan
        # Row knots: finite-difference velocities never exceed the steepest adjacent row slope.
        times = stamp + step * np.arange(rows)
        slopes = np.abs(np.diff(values, axis=0)) / step if rows > 1 else np.zeros((1, 3))
        assert np.abs(row_velocities(times, values)).max() <= slopes.max() + 1e-9
        speed, accel = _hermite_bounds(plan)
        speed_bound, accel_bound = max(speed_bound, speed), max(accel_bound, accel)
    if (rows - 1) * step >= latency_s + dt + 0.05:  # the first chunk cannot be stale
        assert stream.switches >= 1
