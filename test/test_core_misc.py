"""Episode schedule, stamp alignment and statistics (ROS-free)."""
import math

import numpy as np

import pytest

from noetra_ros.core.episodes import EpisodeSchedule
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.stats import percentiles, wilson_interval
from noetra_ros.core.sync import ExactStampSync


def test_schedule_runs_seeds_in_order_and_finishes():
    sched = EpisodeSchedule(episodes=2, first_seed=10, episode_timeout_s=5.0, reset_pause_s=1.0)
    assert sched.reset_due(0.0) and sched.next_seed() == 10
    sched.start(10, 'pick', 0.0)
    assert sched.update(1.0, success=False) is None
    result = sched.update(2.0, success=True)
    assert result.success and result.seed == 10 and result.duration_s == pytest.approx(2.0)
    assert not sched.reset_due(2.5) and sched.reset_due(3.0)
    sched.start(sched.next_seed(), 'pick', 3.0)
    assert sched.seed == 11
    result = sched.update(8.0, success=False)
    assert not result.success and 'timeout' in result.reason
    assert sched.finished and not sched.reset_due(100.0) and sched.next_seed() is None


def test_schedule_rejects_bad_values():
    with pytest.raises(ConfigError, match='episode_timeout_s'):
        EpisodeSchedule(episode_timeout_s=0.0)
    with pytest.raises(ConfigError, match='first_seed'):
        EpisodeSchedule(first_seed=-1)


def test_sync_waits_for_every_key_of_one_stamp():
    sync = ExactStampSync(('a', 'b'))
    assert sync.add('a', 100, 1) is None
    assert sync.add('b', 200, 2) is None          # different step: not a match
    assert sync.add('b', 100, 3) == {'a': 1, 'b': 3}
    assert sync.add('a', 50, 9) is None           # older than a handled step: dropped
    assert sync.add('a', 200, 4) == {'a': 4, 'b': 2}
    assert sync.dropped == 1


def test_sync_bounds_memory():
    sync = ExactStampSync(('a', 'b'), max_pending=4)
    for stamp in range(10):
        sync.add('a', stamp, stamp)
    assert len(sync._pending) == 4 and sync.dropped == 6


def test_wilson_interval_known_values():
    low, high = wilson_interval(95, 100)
    assert low == pytest.approx(0.8883, abs=1e-3) and high == pytest.approx(0.9785, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_percentiles():
    out = percentiles(range(101))
    assert out['p50'] == 50 and out['p99'] == pytest.approx(99) and out['n'] == 101
    assert math.isnan(percentiles([])['p50'])


def test_controller_order_maps_both_ways_and_refuses_non_permutations():
    from noetra_ros.core.commands import controller_order
    order, index = controller_order(['b', 'c', 'a'], ['a', 'b', 'c'])
    robot = np.array([1.0, 2.0, 3.0])
    assert order == ['b', 'c', 'a'] and list(robot[index]) == [2.0, 3.0, 1.0]
    assert list(robot[index][np.argsort(index)]) == [1.0, 2.0, 3.0]
    assert controller_order([], ['a', 'b'])[0] == ['a', 'b']
    for bad in (['a', 'b'], ['a', 'b', 'x'], ['a', 'a', 'b']):
        with pytest.raises(ConfigError, match='permutation'):
            controller_order(bad, ['a', 'b', 'c'])
