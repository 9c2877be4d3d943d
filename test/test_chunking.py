"""ActionQueue: interpolation, expiry, bounded memory and continuity at chunk switches."""
import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig

DT = 0.05      # chunk step period
TICK = 0.002   # 500 Hz control loop
T = 10


def ramp_chunk(start_time, offset=0.0, columns=3, slope=0.2):
    """Rows of a straight-line motion: value(t) = slope * t + offset (+ column index)."""
    times = start_time + DT * np.arange(T)
    return slope * times[:, None] + offset + np.arange(columns)[None, :]


def stream(queue, t0, t1, tick=TICK):
    """(times, actions) sampled at control rate; None entries become NaN rows."""
    times = np.arange(t0, t1 - 1e-9, tick)
    out = []
    for t in times:
        action = queue.action_at(float(t))
        out.append(np.full(3, np.nan) if action is None else action)
    return times, np.array(out)


def max_tick_jump(actions):
    steps = np.abs(np.diff(actions, axis=0))
    return float(np.nanmax(steps))


def own_step_difference(*chunks):
    return max(float(np.abs(np.diff(c, axis=0)).max()) for c in chunks)


def test_single_chunk_interpolates_between_rows_and_runs_dry():
    queue = ActionQueue()
    chunk = ramp_chunk(1.0)
    assert queue.add(chunk, stamp=1.0, step_period_s=DT, now=1.0)
    np.testing.assert_allclose(queue.action_at(1.0), chunk[0])
    np.testing.assert_allclose(queue.action_at(1.0 + 3 * DT), chunk[3])
    np.testing.assert_allclose(queue.action_at(1.0 + 3.5 * DT), (chunk[3] + chunk[4]) / 2)
    np.testing.assert_allclose(queue.action_at(1.0 + (T - 1) * DT), chunk[-1])
    assert queue.action_at(1.0 + (T - 1) * DT + 1e-3) is None
    assert len(queue) == 0  # expired chunk dropped


def test_hold_mode_keeps_each_row_for_one_step():
    queue = ActionQueue(BlendConfig(interpolate=False))
    chunk = ramp_chunk(0.0)
    queue.add(chunk, stamp=0.0, step_period_s=DT, now=0.0)
    np.testing.assert_allclose(queue.action_at(2 * DT + 0.01), chunk[2])
    np.testing.assert_allclose(queue.action_at(2 * DT + 0.049), chunk[2])
    np.testing.assert_allclose(queue.action_at((T - 1) * DT + 0.049), chunk[-1])
    assert queue.action_at(T * DT) is None


def test_nothing_before_the_first_chunk_applies():
    queue = ActionQueue()
    assert queue.action_at(0.0) is None
    queue.add(ramp_chunk(1.0), stamp=1.0, step_period_s=DT, now=0.9)
    assert queue.action_at(0.95) is None
    assert queue.action_at(1.0) is not None


def test_chunk_that_expired_before_arrival_is_dropped():
    queue = ActionQueue()
    assert not queue.add(ramp_chunk(0.0), stamp=0.0, step_period_s=DT, now=1.0)
    assert queue.expired_on_arrival == 1
    assert len(queue) == 0
    assert queue.action_at(1.0) is None


@pytest.mark.parametrize('strategy', ['crossfade', 'ensemble'])
def test_offset_chunks_blend_without_a_jump(strategy):
    """A new chunk offset by a constant from the old one: the blended stream has no tick-to-tick
    jump larger than the chunks' own step difference, while plain replacement jumps."""
    offset = 0.2
    old = ramp_chunk(0.0)
    new = ramp_chunk(0.15, offset=offset)
    tolerance = own_step_difference(old, new)
    assert offset > 10 * tolerance  # a hard switch would be far outside the tolerance

    def run(config):
        queue = ActionQueue(config)
        queue.add(old, stamp=0.0, step_period_s=DT, now=0.0)
        times, first = stream(queue, 0.0, 0.2)
        # Inference latency: the chunk computed from the 0.15 s observation arrives at 0.2 s.
        queue.add(new, stamp=0.15, step_period_s=DT, now=0.2)
        later_times, second = stream(queue, 0.2, 0.15 + (T - 1) * DT)
        return np.concatenate([times, later_times]), np.concatenate([first, second])

    times, blended = run(BlendConfig(strategy=strategy, blend_window_s=0.1))
    assert not np.isnan(blended).any()
    assert max_tick_jump(blended) <= tolerance
    # Before the new chunk arrived the output is the old chunk; after the window, the new one.
    before = times < 0.2 - 1e-9
    np.testing.assert_allclose(blended[before], 0.2 * times[before, None] + np.arange(3),
                               atol=1e-12)
    if strategy == 'crossfade':
        after = times > 0.2 + 0.1 + 1e-9
        np.testing.assert_allclose(blended[after],
                                   0.2 * times[after, None] + offset + np.arange(3), atol=1e-12)

    _, replaced = run(BlendConfig(strategy='replace'))
    assert max_tick_jump(replaced) == pytest.approx(offset, rel=0.05)


@pytest.mark.parametrize('strategy', ['crossfade', 'ensemble'])
def test_a_chunk_arriving_just_before_the_old_horizon_ends_blends_smoothly(strategy):
    queue = ActionQueue(BlendConfig(strategy=strategy, blend_window_s=0.1))
    old = ramp_chunk(0.0)
    new = ramp_chunk(0.2, offset=0.2)
    queue.add(old, stamp=0.0, step_period_s=DT, now=0.0)
    first = stream(queue, 0.0, 0.44)[1]
    queue.add(new, stamp=0.2, step_period_s=DT, now=0.44)  # 10 ms before the old one ends
    second = stream(queue, 0.44, 0.2 + (T - 1) * DT)[1]
    series = np.concatenate([first, second])
    assert not np.isnan(series).any()
    assert max_tick_jump(series) <= own_step_difference(old, new)


def test_pure_act_ensembling_jumps_but_faded_ensembling_does_not():
    """Many overlapping chunks arriving every other step, each offset by a constant: ACT's
    average jumps when chunks join or leave; fading between averages stays continuous."""
    offset = 0.05

    def run(window):
        queue = ActionQueue(BlendConfig(strategy='ensemble', blend_window_s=window,
                                        ensemble_coeff=0.01))
        chunks, series = [], []
        for i in range(12):
            stamp = i * 2 * DT
            chunk = ramp_chunk(stamp, offset=offset * i)
            chunks.append(chunk)
            queue.add(chunk, stamp=stamp, step_period_s=DT, now=stamp)
            series.append(stream(queue, stamp, stamp + 2 * DT)[1])
        return np.concatenate(series), own_step_difference(*chunks)

    ramped, tolerance = run(window=2 * DT)
    assert max_tick_jump(ramped) <= tolerance
    jumpy, tolerance = run(window=0.0)
    assert max_tick_jump(jumpy) > tolerance


def test_ensemble_uses_act_exponential_weights():
    m = 0.5
    queue = ActionQueue(BlendConfig(strategy='ensemble', blend_window_s=0.0, ensemble_coeff=m))
    queue.add(np.full((T, 3), 1.0), stamp=0.0, step_period_s=DT, now=0.0)
    queue.add(np.full((T, 3), 3.0), stamp=0.1, step_period_s=DT, now=0.1)
    w_old, w_new = 1.0, math.exp(-m)  # the oldest chunk has index 0 (ACT)
    expected = (w_old * 1.0 + w_new * 3.0) / (w_old + w_new)
    np.testing.assert_allclose(queue.action_at(0.2), np.full(3, expected))


def test_crossfade_holds_an_old_chunk_that_runs_out_during_the_fade():
    queue = ActionQueue(BlendConfig(strategy='crossfade', blend_window_s=0.2))
    old = ramp_chunk(0.0)
    queue.add(old, stamp=0.0, step_period_s=DT, now=0.0)
    times, first = stream(queue, 0.0, 0.4)
    new = ramp_chunk(0.4, offset=0.1)
    queue.add(new, stamp=0.4, step_period_s=DT, now=0.4)  # old ends at 0.45, fade ends at 0.6
    later, second = stream(queue, 0.4, 0.4 + (T - 1) * DT)
    series = np.concatenate([first, second])
    assert not np.isnan(series).any()
    assert max_tick_jump(series) <= own_step_difference(old, new)


def test_a_new_fade_during_a_fade_stays_continuous():
    queue = ActionQueue(BlendConfig(strategy='crossfade', blend_window_s=0.15))
    chunks = [ramp_chunk(0.05 * i, offset=0.03 * i) for i in range(4)]
    series = []
    for i, chunk in enumerate(chunks):
        queue.add(chunk, stamp=0.05 * i, step_period_s=DT, now=0.05 * i)
        series.append(stream(queue, 0.05 * i, 0.05 * (i + 1))[1])
    series.append(stream(queue, 0.2, 0.15 + (T - 1) * DT)[1])
    series = np.concatenate(series)
    assert not np.isnan(series).any()
    assert max_tick_jump(series) <= own_step_difference(*chunks)


def test_memory_is_bounded():
    queue = ActionQueue(BlendConfig(strategy='ensemble', max_chunks=8))
    for i in range(200):
        queue.add(np.zeros((100, 3)), stamp=i * 0.001, step_period_s=DT, now=i * 0.001)
    assert len(queue) == 8
    assert queue.evicted == 192
    crossfade = ActionQueue(BlendConfig(strategy='crossfade', blend_window_s=0.01))
    for i in range(200):
        crossfade.add(np.zeros((100, 3)), stamp=i * 0.02, step_period_s=DT, now=i * 0.02)
        crossfade.action_at(i * 0.02 + 0.015)
    assert len(crossfade) <= 2  # fully faded-in chunks retire their predecessors


def test_time_remaining_reports_the_horizon():
    queue = ActionQueue()
    assert queue.time_remaining(0.0) == 0.0
    queue.add(ramp_chunk(0.0), stamp=0.0, step_period_s=DT, now=0.0)
    assert queue.time_remaining(0.1) == pytest.approx((T - 1) * DT - 0.1)
    queue.clear()
    assert queue.action_at(0.1) is None


def test_malformed_chunks_are_rejected():
    queue = ActionQueue()
    bad = ramp_chunk(0.0)
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match='non-finite'):
        queue.add(bad, stamp=0.0, step_period_s=DT)
    with pytest.raises(InputError, match='shape'):
        queue.add(np.zeros(5), stamp=0.0, step_period_s=DT)
    with pytest.raises(InputError, match='step_period_s'):
        queue.add(np.zeros((3, 3)), stamp=0.0, step_period_s=0.0)
    queue.add(np.zeros((3, 3)), stamp=0.0, step_period_s=DT)
    with pytest.raises(InputError, match='columns'):
        queue.add(np.zeros((3, 4)), stamp=0.0, step_period_s=DT)
    assert len(queue) == 1


def test_the_queue_keeps_its_own_copy():
    queue = ActionQueue()
    chunk = ramp_chunk(0.0)
    queue.add(chunk, stamp=0.0, step_period_s=DT, now=0.0)
    chunk[:] = 99.0
    assert queue.action_at(0.0)[0] == pytest.approx(0.0)


@pytest.mark.parametrize('kwargs, field', [
    ({'strategy': 'average'}, 'strategy'),
    ({'blend_window_s': -0.1}, 'blend_window_s'),
    ({'ensemble_coeff': float('nan')}, 'ensemble_coeff'),
    ({'max_chunks': 0}, 'max_chunks'),
])
def test_bad_blend_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        BlendConfig(**kwargs)


def test_a_stalled_fade_does_not_replay_stale_targets():
    queue = ActionQueue(BlendConfig(strategy='crossfade', blend_window_s=2.0))
    queue.add(ramp_chunk(0.0), stamp=0.0, step_period_s=DT, now=0.0)
    queue.add(ramp_chunk(0.3, offset=0.1), stamp=0.3, step_period_s=DT, now=0.3)
    assert queue.action_at(0.5) is not None   # mid-fade, old chunk held, new one covering
    assert queue.action_at(0.3 + (T - 1) * DT + 0.01) is None  # both horizons over
    assert len(queue) == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(['crossfade', 'ensemble']),
       window=st.floats(0.05, 0.3), latency=st.floats(0.0, 0.2))
def test_random_chunks_never_jump(seed, strategy, window, latency):
    """Random-walk chunks arriving with random latency: every tick-to-tick change is bounded by
    the chunks' own slope plus (value range / blend window) per concurrent chunk, so no switch
    can produce a step of the order of the gap between chunks."""
    rng = np.random.default_rng(seed)
    queue = ActionQueue(BlendConfig(strategy=strategy, blend_window_s=window))
    chunks, series = [], []
    t = 0.0
    for i in range(6):
        stamp = i * 0.12
        chunk = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0) + rng.normal(0, 0.3, 3)
        chunks.append(chunk)
        queue.add(chunk, stamp=stamp, step_period_s=DT, now=stamp + latency * (i > 0))
        while t < stamp + 0.12:
            action = queue.action_at(t)
            if action is not None:
                series.append(action)
            t += TICK
    series = np.array(series)
    values = np.concatenate(chunks)
    slope = max(float(np.abs(np.diff(c, axis=0)).max()) for c in chunks) / DT
    value_range = float(values.max() - values.min())
    # Each fade in progress adds at most value_range / window of slope; count how many
    # arrivals and horizon ends can fall inside one window.
    events = np.array(sorted([i * 0.12 + latency * (i > 0) for i in range(6)]
                             + [i * 0.12 + (T - 1) * DT for i in range(6)]))
    fades = max(int(np.sum((events >= e) & (events <= e + window))) for e in events)
    bound = TICK * (slope + fades * value_range / window) + 1e-9
    assert len(series) > 100
    assert max_tick_jump(series) <= bound
