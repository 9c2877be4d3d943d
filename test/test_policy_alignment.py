"""InputAligner: which samples a policy step is built from, and why a step is refused.

policy_node builds every command from one aligned set; these tests pin the rules without ROS:
nearest sample within the stamp tolerance, a reference younger than max_input_age_s, bounded
history, and a reason that names the source for every refusal.
"""
import math

from hypothesis import given, settings, strategies as st
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.policy.alignment import InputAligner

SOURCES = ('joints', 'scene_camera', 'wrench')
# Binary fractions, so offsets such as 1.0 - 0.75 are exact and boundary cases really are equal.
TOLERANCE_S = 0.25
MAX_AGE_S = 0.5


def make_aligner(history=8):
    return InputAligner(SOURCES, 'joints', TOLERANCE_S, MAX_AGE_S, history=history)


def feed(aligner, source, stamp, value=None):
    aligner.add(source, stamp, received=stamp, value=value if value is not None else stamp)


@pytest.mark.parametrize('kwargs, message', [
    ({'reference': 'camera'}, "reference source 'camera' is not among"),
    ({'tolerance_s': -0.01}, 'stamp tolerance must be a finite value >= 0, got -0.01'),
    ({'tolerance_s': math.nan}, 'stamp tolerance must be a finite value >= 0, got nan'),
    ({'tolerance_s': math.inf}, 'stamp tolerance must be a finite value >= 0, got inf'),
    ({'max_age_s': 0.0}, 'max input age must be > 0, got 0.0'),
    ({'max_age_s': math.nan}, 'max input age must be > 0, got nan'),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs, message):
    settings_ = {'sources': SOURCES, 'reference': 'joints', 'tolerance_s': TOLERANCE_S,
                 'max_age_s': MAX_AGE_S, **kwargs}
    with pytest.raises(ConfigError, match=message):
        InputAligner(**settings_)


def test_nothing_received_names_the_reference_then_the_missing_source():
    aligner = make_aligner()
    result = aligner.align(now=0.0)
    assert not result.ok and result.samples is None
    assert result.reason == 'no joints received yet'
    feed(aligner, 'joints', 1.0)
    feed(aligner, 'scene_camera', 1.0)
    result = aligner.align(now=1.0)
    assert not result.ok
    assert result.reason == 'no wrench received yet'


def test_each_source_contributes_its_sample_nearest_to_the_reference():
    aligner = make_aligner()
    for stamp in (0.5, 0.875, 1.125, 1.5):
        feed(aligner, 'scene_camera', stamp, value=f'frame@{stamp}')
    feed(aligner, 'wrench', 1.0 - 0.0625, value='wrench-early')
    feed(aligner, 'wrench', 1.0 + 0.125, value='wrench-late')
    feed(aligner, 'joints', 1.0, value='q')
    result = aligner.align(now=1.0)
    assert result.ok and result.reason == ''
    assert set(result.samples) == set(SOURCES)
    assert result.samples['joints'].value == 'q'
    # 0.875 and 1.125 are equally near (0.125): the earlier one in the history wins the tie.
    assert result.samples['scene_camera'].stamp == 0.875
    assert result.samples['wrench'].value == 'wrench-early'


def test_a_source_outside_the_tolerance_is_named_with_its_signed_offset():
    aligner = make_aligner()
    feed(aligner, 'joints', 2.0)
    feed(aligner, 'scene_camera', 2.0 - 0.375)
    feed(aligner, 'wrench', 2.0)
    result = aligner.align(now=2.0)
    assert not result.ok
    assert result.reason == ('scene_camera is -0.375 s from joints '
                             f'(stamp_tolerance_s {TOLERANCE_S})')
    # Exactly at the tolerance is still aligned (the bound is inclusive).
    feed(aligner, 'scene_camera', 2.0 + TOLERANCE_S)
    assert aligner.align(now=2.0).samples['scene_camera'].stamp == 2.0 + TOLERANCE_S


def test_a_stale_reference_is_refused_with_its_age():
    aligner = make_aligner()
    for source in SOURCES:
        feed(aligner, source, 3.0)
    assert aligner.align(now=3.0 + MAX_AGE_S).ok  # exactly max_age_s old: still usable
    result = aligner.align(now=3.75)
    assert not result.ok
    assert result.reason == f'joints is stale: 0.750 s old (max_input_age_s {MAX_AGE_S})'


def test_a_reference_from_the_future_beyond_the_tolerance_is_refused():
    aligner = make_aligner()
    for source in SOURCES:
        feed(aligner, source, 5.0)
    assert aligner.align(now=5.0 - TOLERANCE_S).ok
    result = aligner.align(now=4.5)
    assert not result.ok
    assert result.reason == 'joints stamp is 0.500 s in the future'


def test_an_explicit_reference_stamp_is_used_and_reported_when_evicted():
    aligner = make_aligner(history=3)
    for stamp in (1.0, 1.125, 1.25):
        feed(aligner, 'joints', stamp)
        feed(aligner, 'scene_camera', stamp)
        feed(aligner, 'wrench', stamp)
    result = aligner.align(now=1.25, reference_stamp=1.125)
    assert result.ok
    assert {s.stamp for s in result.samples.values()} == {1.125}
    feed(aligner, 'joints', 1.375)  # history 3: the sample at 1.0 is dropped
    result = aligner.align(now=1.375, reference_stamp=1.0)
    assert not result.ok
    assert result.reason == 'joints at 1.000 s is gone'


def test_history_is_bounded_and_latest_is_the_newest():
    aligner = make_aligner(history=4)
    assert aligner.latest('wrench') is None
    for k in range(10):
        feed(aligner, 'wrench', k * 0.125)
    assert aligner.latest('wrench').stamp == 9 * 0.125
    # Only the last 4 wrench samples (0.75 .. 1.125 s) remain, so the nearest to a reference at
    # 0 s is the oldest of those, and it is outside the tolerance.
    feed(aligner, 'joints', 0.0)
    feed(aligner, 'scene_camera', 0.0)
    result = aligner.align(now=0.0, reference_stamp=0.0)
    assert result.reason == f'wrench is +0.750 s from joints (stamp_tolerance_s {TOLERANCE_S})'


def test_stale_sources_lists_missing_and_old_ones_and_clear_forgets_everything():
    aligner = make_aligner()
    assert aligner.stale_sources(now=0.0) == list(SOURCES)
    feed(aligner, 'joints', 10.0)
    feed(aligner, 'scene_camera', 10.0 - 0.75)
    assert aligner.stale_sources(now=10.0) == ['scene_camera', 'wrench']
    feed(aligner, 'wrench', 10.0)
    aligner.clear()
    assert aligner.latest('joints') is None
    assert aligner.align(now=10.0).reason == 'no joints received yet'


@settings(max_examples=200, deadline=None)
@given(stamps=st.lists(st.tuples(st.sampled_from(SOURCES),
                                 st.integers(0, 64).map(lambda k: k / 32)),
                       min_size=1, max_size=30),
       now_offset=st.integers(-16, 32).map(lambda k: k / 32))
def test_any_accepted_set_is_fresh_within_tolerance_and_nearest(stamps, now_offset):
    aligner = make_aligner(history=50)
    for source, stamp in stamps:
        feed(aligner, source, stamp)
    reference = aligner.latest('joints')
    now = (reference.stamp if reference else 0.0) + now_offset
    result = aligner.align(now=now)
    if not result.ok:
        assert result.reason  # every refusal says why
        return
    ref = result.samples['joints']
    assert ref is reference
    assert -TOLERANCE_S <= now - ref.stamp <= MAX_AGE_S
    for source, sample in result.samples.items():
        assert abs(sample.stamp - ref.stamp) <= TOLERANCE_S
        offered = [stamp for s, stamp in stamps if s == source]
        assert abs(sample.stamp - ref.stamp) == min(abs(x - ref.stamp) for x in offered)
