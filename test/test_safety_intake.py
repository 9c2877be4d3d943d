"""The supervisor's message intake on its own (core/safety/intake.py): parsing, whole-message
rejection with its code and consequence, trajectories as the core JointTrajectory type, and the
trajectory rule (by default a trajectory lives command_timeout_s like any command; a profile
may allow whole trajectories up to a horizon)."""
from __future__ import annotations

import numpy as np
import pytest

from noetra_ros.core.safety import intake
from noetra_ros.core.safety.intake import Consequence, Rejection
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.trajectory import JointTrajectory

NAMES = ('j1', 'j2', 'j3')
LIMITS = JointLimits.from_arrays(NAMES, [-2.0, -1.5, -2.5], [2.0, 1.5, 2.5], [2.0, 3.0, 4.0])
PROFILE = SafetyProfile(name='test')
NOW = 100.0
NAN, INF = float('nan'), float('inf')


def positions(names=NAMES, values=(0.1, 0.2, 0.3), stamp=NOW, last=None, profile=PROFILE):
    return intake.parse_positions(names, values, stamp, NOW, LIMITS, profile, last)


def trajectory(times=(0.0, 0.5), points=((0, 0, 0), (0.5, 0.5, 0.5)), velocities=None,
               names=NAMES, stamp=NOW, profile=PROFILE, last=None):
    return intake.parse_trajectory(names, times, points, velocities, stamp, NOW, LIMITS,
                                   profile, last)


def assert_rejected(result, code: str, consequence: Consequence) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.code == code and result.consequence is consequence, result
    assert f'({code})' in result.reason
    return result


# --------------------------------------------------------------------------- joint states
def test_joint_state_in_any_order_with_extra_joints_is_put_in_joint_order():
    sample = intake.parse_joint_state(('finger', 'j3', 'j1', 'j2'), [0.04, 0.3, 0.1, 0.2],
                                      [0.0, 3.0, 1.0, 2.0], NOW, NOW, NAMES, PROFILE, None)
    assert isinstance(sample, intake.JointStateSample)
    np.testing.assert_array_equal(sample.positions, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(sample.velocities, [1.0, 2.0, 3.0])
    assert sample.stamp == NOW and not sample.velocities_ignored


@pytest.mark.parametrize('velocities, kept, ignored', [
    (None, False, False), ([], False, False), ([1.0, NAN, 0.0], False, True),
    ([1.0, 2.0], False, True), ('fast', False, True), ([1.0, 2.0, 3.0], True, False)])
def test_unusable_joint_state_velocities_drop_only_the_velocities(velocities, kept, ignored):
    sample = intake.parse_joint_state(NAMES, [0.0, 0.0, 0.0], velocities, NOW, NOW, NAMES,
                                      PROFILE, None)
    assert isinstance(sample, intake.JointStateSample)
    assert (sample.velocities is not None) is kept and sample.velocities_ignored is ignored


@pytest.mark.parametrize('names, values, stamp, last, code', [
    (NAMES, [0.0, 0.0], NOW, None, 'malformed'),
    ('j1j2j3', [0.0, 0.0, 0.0], NOW, None, 'malformed'),
    (NAMES, [[0.0, 0.0, 0.0]], NOW, None, 'malformed'),
    (('j1', 'j1', 'j3'), [0.0, 0.0, 0.0], NOW, None, 'names'),
    (('j1', 'j2'), [0.0, 0.0], NOW, None, 'names'),
    (NAMES, [0.0, INF, 0.0], NOW, None, 'nonfinite'),
    (NAMES, [0.0, 0.0, 0.0], 0.0, None, 'zero_stamp'),
    (NAMES, [0.0, 0.0, 0.0], NOW - 0.2, None, 'stale_stamp'),
    (NAMES, [0.0, 0.0, 0.0], NOW + 0.5, None, 'future_stamp'),
    (NAMES, [0.0, 0.0, 0.0], NOW - 0.01, NOW, 'out_of_order'),
])
def test_bad_joint_states_are_dropped_whole_with_the_reason(names, values, stamp, last, code):
    result = intake.parse_joint_state(names, values, None, stamp, NOW, NAMES, PROFILE, last)
    rejection = assert_rejected(result, code, Consequence.DROP)
    assert rejection.reason.startswith('joint_state rejected')


def test_an_invalid_clock_is_a_rejection_not_an_exception():
    assert_rejected(intake.check_time(NAN), 'invalid_clock', Consequence.DROP)
    assert_rejected(intake.check_time(None), 'invalid_clock', Consequence.DROP)
    assert intake.check_time(3) == 3.0


# --------------------------------------------------------------------------- commands
@pytest.mark.parametrize('call, code, consequence', [
    (lambda: positions(names=('j2', 'j1', 'j3')), 'names', Consequence.FAULT),
    (lambda: positions(names=('j1', 'j2')), 'count', Consequence.FAULT),
    (lambda: positions(names='j1j2j3'), 'malformed', Consequence.FAULT),
    (lambda: positions(values=(0.1, 0.2)), 'count', Consequence.FAULT),
    (lambda: positions(values=[[0.1, 0.2, 0.3]]), 'malformed', Consequence.FAULT),
    (lambda: positions(values=(0.1, NAN, 0.3)), 'nonfinite', Consequence.HOLD),
    (lambda: positions(stamp=0.0), 'zero_stamp', Consequence.DROP),
    (lambda: positions(stamp=NOW - 0.5), 'stale_stamp', Consequence.DROP),
    (lambda: positions(stamp=NOW + 0.5), 'future_stamp', Consequence.DROP),
    (lambda: positions(stamp='noon'), 'invalid_stamp', Consequence.DROP),
    (lambda: positions(last=NOW + 0.01), 'out_of_order', Consequence.DROP),
    (lambda: intake.parse_velocities(None, [0.1, INF, 0.0], NOW, NOW, LIMITS, PROFILE, None),
     'nonfinite', Consequence.HOLD),
    (lambda: intake.parse_velocities(('j3', 'j2', 'j1'), [0, 0, 0], NOW, NOW, LIMITS, PROFILE,
                                     None), 'names', Consequence.FAULT),
    (lambda: trajectory(points=((0, 0),)), 'malformed', Consequence.FAULT),
    (lambda: trajectory(points=((0, 0), (0, 0))), 'count', Consequence.FAULT),
    (lambda: trajectory(times=(0.5, 0.2)), 'malformed', Consequence.FAULT),
    (lambda: trajectory(times=(-0.1, 0.2)), 'malformed', Consequence.FAULT),
    (lambda: trajectory(times=(0.0, NAN)), 'nonfinite', Consequence.HOLD),
    (lambda: trajectory(velocities=((0, 0, 0), (INF, 0, 0))), 'nonfinite', Consequence.HOLD),
    (lambda: trajectory(velocities=((0, 0), (0, 0))), 'count', Consequence.FAULT),
    (lambda: trajectory(times=(), points=()), 'malformed', Consequence.FAULT),
    (lambda: trajectory(stamp=NOW - 1.0), 'stale_stamp', Consequence.DROP),
], ids=['order', 'missing-name', 'names-str', 'short', '2d', 'nan', 'zero-stamp', 'stale',
        'future', 'stamp-text', 'out-of-order', 'vel-inf', 'vel-order', 'traj-width',
        'traj-count', 'traj-times-order', 'traj-negative-time', 'traj-time-nan',
        'traj-vel-inf', 'traj-vel-width', 'traj-empty', 'traj-stale'])
def test_bad_commands_are_rejected_whole_with_code_and_consequence(call, code, consequence):
    assert_rejected(call(), code, consequence)


def test_nonfinite_commands_hold_with_a_fixed_reason():
    rejection = assert_rejected(positions(values=(NAN, 0.0, 0.0)), 'nonfinite',
                                Consequence.HOLD)
    assert rejection.state_reason == 'non-finite command'


def test_a_valid_position_command_is_parsed():
    cmd = positions(names=None, values=[0.1, 0.2, 0.3], stamp=NOW - 0.05, last=NOW - 0.06)
    assert isinstance(cmd, intake.PositionCommand)
    np.testing.assert_array_equal(cmd.positions, [0.1, 0.2, 0.3])
    assert cmd.stamp == NOW - 0.05


# --------------------------------------------------------------------------- trajectories
def test_a_trajectory_becomes_the_core_type_with_its_interpolation():
    cmd = trajectory(times=(0.1, 0.5), points=((0, 0, 0), (1, -1, 1)),
                     velocities=((0, 0, 0), (0, 0, 0)))
    assert isinstance(cmd, intake.TrajectoryCommand)
    assert isinstance(cmd.trajectory, JointTrajectory)
    assert cmd.trajectory.degree == 'cubic' and cmd.trajectory.joint_names == NAMES
    assert cmd.stamp == NOW and cmd.whole is False
    # The cubic Hermite midpoint with zero end velocities lies halfway.
    np.testing.assert_allclose(cmd.trajectory.sample(0.3)[0], [0.5, -0.5, 0.5])


def test_trajectory_points_are_kept_inside_the_hard_range():
    cmd = trajectory(points=((0, 0, 0), (9.0, -9.0, 0.0)),
                     velocities=((0, 0, 0), (1e9, 0, 0)))
    assert isinstance(cmd, intake.TrajectoryCommand)
    np.testing.assert_array_equal(cmd.trajectory.positions[-1], [2.0, -1.5, 0.0])
    assert cmd.trajectory.velocities[-1][0] == 2.0 * intake.TRAJECTORY_VELOCITY_GUARD


def test_by_default_any_trajectory_length_is_accepted_but_not_whole():
    """The rule that makes it safe: the supervisor lets it live command_timeout_s only."""
    cmd = trajectory(times=(0.0, 2.0 ** 31), points=((0, 0, 0), (1, 1, 1)))
    assert isinstance(cmd, intake.TrajectoryCommand) and cmd.whole is False


def test_allowed_whole_trajectories_are_bounded_by_the_horizon():
    allowing = PROFILE.replace(allow_whole_trajectories=True, trajectory_horizon_s=4.0)
    inside = trajectory(times=(0.0, 4.0), profile=allowing)
    assert isinstance(inside, intake.TrajectoryCommand) and inside.whole is True
    refused = assert_rejected(trajectory(times=(0.0, 2.0 ** 31), profile=allowing),
                              'too_long', Consequence.HOLD)
    assert 'trajectory_horizon_s 4 s' in refused.detail and '2.14748e+09 s' in refused.detail
    assert refused.state_reason.startswith('trajectory refused (too_long)')


def test_intake_keeps_no_state():
    """The same message gives the same answer twice; the caller's arrays are not changed."""
    points = np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    first = trajectory(points=points)
    second = trajectory(points=points)
    np.testing.assert_array_equal(points[1], [9.0, 0.0, 0.0])
    np.testing.assert_array_equal(first.trajectory.positions, second.trajectory.positions)
