"""JointTrajectory validation and interpolation (JTC semantics), and the shared command checks."""
import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from noetra_ros.core.commands import validate_joint_names, validate_joint_vector, validate_scalar
from noetra_ros.core.errors import CommandError
from noetra_ros.core.trajectory import JointTrajectory

NAMES = ('a', 'b')


def _traj(times, positions, velocities=None, accelerations=None, names=NAMES):
    return JointTrajectory(names, times, positions, velocities, accelerations)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize('times, needle', [
    ([1.0, 1.0], 'strictly increasing'),
    ([2.0, 1.0], 'strictly increasing'),
    ([-0.1, 1.0], 'negative'),
    ([0.0, math.nan], 'non-finite'),
    ([], 'non-empty'),
])
def test_bad_times_rejected_with_reason(times, needle):
    with pytest.raises(CommandError, match=needle):
        _traj(times, np.zeros((max(len(times), 1), 2)))


def test_bad_points_rejected_with_field_name():
    with pytest.raises(CommandError, match='positions.*shape'):
        _traj([1.0, 2.0], np.zeros((2, 3)))
    with pytest.raises(CommandError, match=r'positions: non-finite value at \(point, joint\) '
                                           r'\[1, 0\]'):
        _traj([1.0, 2.0], [[0, 0], [math.inf, 0]])
    with pytest.raises(CommandError, match='velocities.*shape'):
        _traj([1.0, 2.0], np.zeros((2, 2)), velocities=np.zeros((3, 2)))
    with pytest.raises(CommandError, match='accelerations: given without velocities'):
        _traj([1.0, 2.0], np.zeros((2, 2)), accelerations=np.zeros((2, 2)))
    with pytest.raises(CommandError, match='duplicate'):
        _traj([1.0], [[0, 0]], names=('a', 'a'))
    with pytest.raises(CommandError, match='empty'):
        _traj([1.0], np.zeros((1, 0)), names=())


def test_arrays_are_frozen_copies():
    positions = np.zeros((1, 2))
    traj = _traj([1.0], positions)
    positions[0, 0] = 5.0
    assert traj.positions[0, 0] == 0.0
    with pytest.raises(ValueError):
        traj.positions[0, 0] = 1.0


# ---------------------------------------------------------------- interpolation
def test_linear_known_values():
    traj = _traj([1.0, 3.0], [[0.0, 1.0], [2.0, -1.0]])
    assert traj.degree == 'linear'
    q, qd = traj.sample(2.0)
    np.testing.assert_allclose(q, [1.0, 0.0])
    np.testing.assert_allclose(qd, [1.0, -1.0])
    # Holds point 0 before its time and the last point after the end, at rest.
    np.testing.assert_allclose(traj.sample(0.5)[0], [0.0, 1.0])
    q_end, qd_end = traj.sample(10.0)
    np.testing.assert_allclose(q_end, [2.0, -1.0])
    np.testing.assert_allclose(qd_end, [0.0, 0.0])


def test_cubic_hermite_known_values():
    # p0 = 0, v0 = 0 -> p1 = 1, v1 = 0 over T = 2: q(T/2) = 0.5, qd(T/2) = 1.5 / T.
    traj = _traj([0.0, 2.0], [[0.0, 0.0], [1.0, 0.0]], velocities=np.zeros((2, 2)))
    assert traj.degree == 'cubic'
    q, qd = traj.sample(1.0)
    assert q[0] == pytest.approx(0.5)
    assert qd[0] == pytest.approx(0.75)
    # q(T/4) = 3 s^2 - 2 s^3 at s = 1/4
    assert traj.sample(0.5)[0][0] == pytest.approx(3 / 16 - 2 / 64)
    # Velocity boundary conditions are honoured.
    traj_v = _traj([0.0, 1.0], [[0.0, 0.0], [0.0, 0.0]], velocities=[[1.0, 0.0], [-1.0, 0.0]])
    assert traj_v.sample(1e-6)[1][0] == pytest.approx(1.0, abs=1e-4)
    assert traj_v.sample(1 - 1e-6)[1][0] == pytest.approx(-1.0, abs=1e-4)


def test_quintic_known_values_and_boundary_conditions():
    # Rest-to-rest quintic = minimum jerk: q(T/2) = 0.5, qd(T/2) = 1.875 / T.
    traj = _traj([0.0, 2.0], [[0.0, 0.0], [1.0, 0.0]], velocities=np.zeros((2, 2)),
                 accelerations=np.zeros((2, 2)))
    assert traj.degree == 'quintic'
    q, qd = traj.sample(1.0)
    assert q[0] == pytest.approx(0.5)
    assert qd[0] == pytest.approx(1.875 / 2.0)
    # Acceleration boundary conditions: finite-difference the velocity at both ends.
    traj_a = _traj([0.0, 1.0], [[0.0, 0.0], [1.0, 0.0]], velocities=[[0.5, 0], [0.2, 0]],
                   accelerations=[[2.0, 0], [-1.0, 0]])
    h = 1e-5
    acc_start = (traj_a.sample(2 * h)[1][0] - traj_a.sample(h)[1][0]) / h
    acc_end = (traj_a.sample(1 - h)[1][0] - traj_a.sample(1 - 2 * h)[1][0]) / h
    assert acc_start == pytest.approx(2.0, abs=1e-3)
    assert acc_end == pytest.approx(-1.0, abs=1e-3)
    assert traj_a.sample(1 - 1e-9)[0][0] == pytest.approx(1.0, abs=1e-6)


def test_anchored_starts_from_state_at_receipt():
    traj = _traj([2.0], [[1.0, 1.0]])
    anchored = traj.anchored([0.0, -1.0])
    assert anchored.num_points == 2
    np.testing.assert_allclose(anchored.sample(0.0)[0], [0.0, -1.0])
    np.testing.assert_allclose(anchored.sample(1.0)[0], [0.5, 0.0])
    # A first point at t = 0 replaces the current state (nothing to prepend).
    at_zero = _traj([0.0, 1.0], [[3.0, 3.0], [4.0, 4.0]])
    assert at_zero.anchored([0.0, 0.0]) is at_zero
    # Cubic trajectories take the measured start velocity.
    cubic = _traj([1.0], [[0.0, 0.0]], velocities=[[0.0, 0.0]]).anchored([0, 0], [1.0, 0.0])
    assert cubic.sample(1e-6)[1][0] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(CommandError, match='start state'):
        traj.anchored([0.0, math.nan])


def test_reordered_maps_names_and_rejects_mismatch():
    traj = JointTrajectory(('b', 'a'), [1.0], [[2.0, 1.0]])
    ordered = traj.reordered(('a', 'b'))
    assert ordered.joint_names == ('a', 'b')
    np.testing.assert_allclose(ordered.positions, [[1.0, 2.0]])
    with pytest.raises(CommandError, match='unknown joint'):
        traj.reordered(('a', 'c'))
    with pytest.raises(CommandError, match='missing joint'):
        JointTrajectory(('a',), [1.0], [[0.0]]).reordered(('a', 'b'))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3),
       st.lists(st.floats(-2, 2), min_size=3, max_size=3),
       st.sampled_from(['linear', 'cubic', 'quintic']))
def test_sample_is_continuous_and_hits_every_point(points, vels, degree):
    times = [0.5, 1.0, 2.0]
    positions = np.column_stack([points, np.zeros(3)])
    velocities = np.column_stack([vels, np.zeros(3)]) if degree != 'linear' else None
    accelerations = np.zeros((3, 2)) if degree == 'quintic' else None
    traj = _traj(times, positions, velocities, accelerations)
    for t, p in zip(times, points):
        assert traj.sample(t)[0][0] == pytest.approx(p, abs=1e-9)
        below, above = traj.sample(t - 1e-7)[0][0], traj.sample(t + 1e-7)[0][0]
        assert abs(below - above) < 1e-5


# ---------------------------------------------------------------- shared command checks
def test_validate_joint_vector():
    np.testing.assert_allclose(validate_joint_vector([1, 2], 2, 'cmd'), [1.0, 2.0])
    with pytest.raises(CommandError, match='cmd: expected 3 values, got 2'):
        validate_joint_vector([1, 2], 3, 'cmd')
    with pytest.raises(CommandError, match=r'non-finite value\(s\) at index \[1\]'):
        validate_joint_vector([1.0, math.nan], 2, 'cmd')
    with pytest.raises(CommandError, match='flat vector'):
        validate_joint_vector([[1.0, 2.0]], 2, 'cmd')
    with pytest.raises(CommandError, match='not numeric'):
        validate_joint_vector(['x', 'y'], 2, 'cmd')
    with pytest.raises(CommandError, match='not finite'):
        validate_scalar(math.inf, 'gripper')
    assert validate_joint_names(['b', 'a'], ['a', 'b'], 'cmd') == [1, 0]
    with pytest.raises(CommandError, match='duplicate'):
        validate_joint_names(['a', 'a'], ['a', 'b'], 'cmd')
