"""The MotoROS2 emulation's controller side and the runtime's point-queue client, ROS-free.

Every code path of core/drivers/motoros2.py (readiness, modes, the FollowJointTrajectory checks
in MotoROS2's order with their codes, execution and its end, the point queue with BUSY, the I/O
table) and core/drivers/point_queue.py (the streaming client), facts from
driver-interfaces.md §2.4-§2.7 and §4.1. The "robot" here tracks its setpoint perfectly
(measured = the previous update's setpoint) unless a test holds a joint back.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from noetra_ros.core.drivers.motoros2 import (ControlGroup, default_joint_names, FailTraj,
                                              fjt_error_code, GoalPoint, InitTraj, IoMemory,
                                              IoResult, MotionReady, MotoRos2Controller,
                                              QueueResult, robot_groups, seconds_to_ns,
                                              select_motion_tool, SelectionResult,
                                              START_TOLERANCE_RAD, TrajectoryGoal)
from noetra_ros.core.drivers.point_queue import PointQueueStreamer
from noetra_ros.core.errors import ConfigError

NAMES = tuple(f'joint_{i}' for i in range(1, 7))
FANUC = tuple(f'J{i}' for i in range(1, 7))
SPEED = [2.0] * 6
DT = 0.01  # MotoROS2's controller_status_monitor_period: the sim's update


def point(positions, t: float, velocities=None) -> GoalPoint:
    positions = tuple(float(v) for v in np.broadcast_to(positions, (6,)))
    velocities = (0.0,) * 6 if velocities is None else tuple(
        float(v) for v in np.broadcast_to(velocities, (6,)))
    return GoalPoint(positions, velocities, seconds_to_ns(t))


def goal(points, names=NAMES, tolerance=(), time_tolerance_s=0.0) -> TrajectoryGoal:
    return TrajectoryGoal(tuple(names), tuple(points), tuple(tolerance),
                          seconds_to_ns(time_tolerance_s))


def controller(mode: str | None = 'trajectory', q0=0.0, **kwargs) -> MotoRos2Controller:
    c = MotoRos2Controller(NAMES, SPEED, **kwargs)
    c.update(0.0, np.full(6, q0))
    if mode == 'trajectory':
        assert c.start_traj_mode().code is MotionReady.READY
    elif mode == 'point_queue':
        assert c.start_point_queue_mode().code is MotionReady.READY
    return c


class Robot:
    """Runs a controller at 100 Hz with a perfectly tracking arm (or a joint held back)."""

    def __init__(self, c: MotoRos2Controller, q0=0.0, t=0.0) -> None:
        self.c, self.t = c, t
        self.q = np.full(6, q0, dtype=float)
        self.stuck: dict[int, float] = {}
        self.outcomes = []

    def step(self, ticks: bool = True):
        # sim_node's order: the driver's update at t, the physics step, then publishing (and
        # the feedback timer) at t + dt, which is also the time of the next update.
        setpoint, velocity = self.c.update(self.t, self.q)
        self.t = round(self.t + DT, 9)
        self.q = setpoint.copy()
        for joint, value in self.stuck.items():
            self.q[joint] = value
        # The FJT feedback timer runs every 20 ms (every second update).
        if ticks and round(self.t / DT) % 2 == 0:
            outcome = self.c.goal_tick(self.t)
            if outcome is not None:
                self.outcomes.append(outcome)
        return setpoint, velocity

    def run(self, seconds: float):
        for _ in range(int(round(seconds / DT))):
            self.step()
        return self.q


# ====================================================================== readiness and modes
def test_a_fresh_controller_is_powered_down_and_says_so():
    c = controller(mode=None)
    assert c.not_ready_code() is MotionReady.NOT_READY_SERVO_OFF
    status = c.robot_status()
    assert (status.mode, status.e_stopped, status.drives_powered, status.motion_possible,
            status.in_motion, status.in_error, status.error_codes) == (
        'AUTO', False, False, False, False, False, ())


def test_not_ready_codes_come_in_motoros2s_order():
    c = controller(mode=None)
    # Set every blocker, then clear them one by one from the first: each time the next shows.
    c.set_estop(True)
    c.set_pendant(play=False, remote=False)
    c.set_hold(True)
    c.raise_alarm(4107)
    c.raise_error(2010)
    c.continuous_cycle = False
    expected = [MotionReady.NOT_READY_ESTOP, MotionReady.NOT_READY_NOT_PLAY,
                MotionReady.NOT_READY_NOT_REMOTE, MotionReady.NOT_READY_HOLD,
                MotionReady.NOT_READY_ALARM, MotionReady.NOT_READY_ERROR,
                MotionReady.NOT_READY_NOT_CONT_CYCLE_MODE, MotionReady.NOT_READY_SERVO_OFF,
                MotionReady.NOT_READY_JOB_NOT_STARTED, MotionReady.NOT_READY_NOT_ON_WAIT_CMD]
    clearing = [lambda: c.set_estop(False), lambda: c.set_pendant(play=True),
                lambda: c.set_pendant(remote=True), lambda: c.set_hold(False),
                lambda: c.alarms.clear(), lambda: c.errors.clear(),
                lambda: setattr(c, 'continuous_cycle', True),
                lambda: setattr(c, 'servo_on', True), lambda: setattr(c, 'job_running', True),
                lambda: setattr(c, 'waiting_for_ros', True)]
    seen = []
    for clear in clearing:
        seen.append(c.not_ready_code())
        clear()
    assert seen == expected
    assert c.not_ready_code() is MotionReady.READY


def test_start_traj_mode_powers_the_robot_and_makes_motion_possible():
    c = controller(mode=None)
    answer = c.start_traj_mode()
    assert answer.code is MotionReady.READY and c.mode == 'trajectory'
    status = c.robot_status()
    assert status.drives_powered and status.motion_possible and status.error_codes == ()
    # Asking again while ready: READY at once.
    assert c.start_traj_mode() == type(answer)(MotionReady.READY, 'already ready')


def test_the_two_modes_exclude_each_other_until_stop_traj_mode():
    c = controller('trajectory')
    assert c.start_point_queue_mode().code is MotionReady.NOT_READY_OTHER_TRAJ_MODE_ACTIVE
    assert c.mode == 'trajectory'
    assert c.stop_traj_mode() == (True, '')
    # stop_traj_mode ends the job's wait for ROS: motion is no longer possible (109)...
    assert c.not_ready_code() is MotionReady.NOT_READY_NOT_ON_WAIT_CMD
    assert not c.robot_status().motion_possible
    # ... until a start call; now the other mode may start.
    assert c.start_point_queue_mode().code is MotionReady.READY and c.mode == 'point_queue'
    assert c.start_traj_mode().code is MotionReady.NOT_READY_OTHER_TRAJ_MODE_ACTIVE


@pytest.mark.parametrize('fault, code', [
    (lambda c: c.set_estop(True), MotionReady.NOT_READY_ESTOP),
    (lambda c: c.set_pendant(play=False), MotionReady.NOT_READY_NOT_PLAY),
    (lambda c: c.set_pendant(remote=False), MotionReady.NOT_READY_NOT_REMOTE),
    (lambda c: c.set_hold(True), MotionReady.NOT_READY_HOLD),
    (lambda c: c.raise_alarm(4107), MotionReady.NOT_READY_ALARM),
    (lambda c: c.raise_error(2010), MotionReady.NOT_READY_ERROR)])
def test_a_start_call_cannot_clear_what_only_the_operator_can(fault, code):
    c = controller(mode=None)
    fault(c)
    answer = c.start_point_queue_mode()
    assert answer.code is code and c.mode == 'none'
    assert not c.robot_status().motion_possible
    if code in (MotionReady.NOT_READY_ALARM, MotionReady.NOT_READY_ERROR):
        assert 'reset_error' in answer.detail


def test_sim_faults_by_name():
    c = controller('trajectory')
    c.inject('e_stop')
    c.inject('hold')
    c.inject('teach')
    c.inject('local')
    c.inject('alarm 4107')
    c.inject('major_alarm')
    c.inject('error')
    assert (c.estop, c.hold, c.play, c.remote) == (True, True, False, False)
    assert [(a.code, a.major) for a in c.alarms] == [(4107, False), (4000, True)]
    assert [e.code for e in c.errors] == [2000]
    c.inject('clear')
    assert (c.estop, c.hold, c.play, c.remote) == (False, False, True, True)
    assert c.in_error() and not c.servo_on  # cleared by reset_error and a start call only
    for bad in ('fire', 'alarm x', 'e_stop 3', 'error 1 2', ''):
        with pytest.raises(ValueError, match='unknown fault'):
            c.inject(bad)


def test_robot_status_lists_alarms_then_the_error_while_motion_is_impossible():
    c = controller('trajectory')
    c.raise_alarm(4107)
    c.raise_error(2010)
    c.set_pendant(play=False)
    status = c.robot_status()
    assert status.in_error and not status.motion_possible and status.mode == 'MANUAL'
    assert status.error_codes == (4107, 2010)
    c.set_estop(True)
    assert c.robot_status().e_stopped and not c.robot_status().drives_powered


def test_reset_error_answers_with_what_still_blocks():
    c = controller('trajectory')
    c.set_pendant(remote=False)
    c.raise_alarm(4107)
    assert c.reset_error().code is MotionReady.NOT_READY_NOT_REMOTE
    c.set_pendant(remote=True)
    c.raise_error(2010, resettable=False)
    assert c.reset_error().code is MotionReady.NOT_READY_ERROR
    c.errors.clear()
    c.raise_alarm(1000, major=True)
    assert c.reset_error().code is MotionReady.NOT_READY_MAJOR_ALARM
    c.alarms = [a for a in c.alarms if not a.major]
    c.raise_alarm(4200, resettable=False)
    answer = c.reset_error()
    assert answer.code is MotionReady.NOT_READY_ALARM and '4200' in answer.detail
    c.alarms.clear()
    c.raise_alarm(4107)
    assert c.reset_error() == type(answer)(MotionReady.READY, 'success')
    assert not c.in_error()


def test_after_an_alarm_is_reset_the_job_must_be_started_again():
    c = controller('trajectory')
    c.raise_alarm(4107)
    robot = Robot(c)
    robot.step()
    assert c.reset_error().code is MotionReady.READY
    # The alarm stopped nothing here (no goal ran): the job still waits, motion is possible.
    assert c.motion_ready()
    c.set_hold(True)
    c.set_hold(False)
    assert c.not_ready_code() is MotionReady.NOT_READY_JOB_NOT_STARTED
    assert c.start_traj_mode().code is MotionReady.READY


def test_controller_configuration_is_checked():
    with pytest.raises(ConfigError, match='duplicates'):
        MotoRos2Controller(['a', 'a'], [1.0, 1.0])
    with pytest.raises(ConfigError, match='max_speed'):
        MotoRos2Controller(NAMES, [1.0] * 5)
    with pytest.raises(ConfigError, match='must be > 0'):
        MotoRos2Controller(NAMES, SPEED, start_tolerance=0.0)
    with pytest.raises(ConfigError, match='no position yet'):
        MotoRos2Controller(NAMES, SPEED).command()


# ====================================================================== FollowJointTrajectory
TWO_POINTS = (point(0.0, 0.0), point(0.3, 1.0))


def refusal(c: MotoRos2Controller, g: TrajectoryGoal) -> int:
    verdict = c.submit_goal(g, 0.0)
    assert verdict.answered and verdict.outcome is not None, verdict
    assert verdict.outcome.status == 'aborted'
    # Delivered by the next feedback tick, once.
    assert c.goal_tick(0.02) == verdict.outcome and c.goal_tick(0.04) is None
    return verdict.outcome.error_code


def test_error_code_is_ros_code_times_100000_minus_motoros2s():
    assert fjt_error_code(-1, 101) == -100101
    assert fjt_error_code(-5, FailTraj.FAIL_TRAJ_CANCEL) == -500300


@pytest.mark.parametrize('points, names, expected', [
    ((point(0.0, 0.0),), NAMES, InitTraj.INIT_TRAJ_TOO_SMALL),
    (TWO_POINTS, NAMES[:5], InitTraj.INIT_TRAJ_INCOMPLETE_JOINTLIST),
    ((point(0.0, 0.0), GoalPoint((0.1,) * 5, (0.0,) * 6, seconds_to_ns(1.0))), NAMES,
     InitTraj.INIT_TRAJ_WRONG_NUMBER_OF_POSITIONS),
    ((point(0.0, 0.0), GoalPoint((0.1,) * 6, (), seconds_to_ns(1.0))), NAMES,
     InitTraj.INIT_TRAJ_WRONG_NUMBER_OF_VELOCITIES),
    (TWO_POINTS, NAMES[:5] + ('joint_1',), InitTraj.INIT_TRAJ_DUPLICATE_JOINT_NAME),
    (TWO_POINTS, FANUC, InitTraj.INIT_TRAJ_INVALID_JOINTNAME),
    ((point(0.0, -0.001), point(0.3, 1.0)), NAMES, InitTraj.INIT_TRAJ_INVALID_TIME),
    ((point(0.0, 0.0), point(0.3, 0.0)), NAMES, InitTraj.INIT_TRAJ_INVALID_TIME),
    # 0.5 ms is 0 whole milliseconds: MotoROS2 compares times in ms.
    ((point(0.0, 0.0), point(0.3, 0.0005)), NAMES, InitTraj.INIT_TRAJ_INVALID_TIME),
    ((point(0.0, 0.0), point(0.3, 1.0), point(0.2, 0.5)), NAMES,
     InitTraj.INIT_TRAJ_BACKWARD_TIME),
    ((point(0.0, 0.0), point(0.3, 1.0, velocities=0.01)), NAMES,
     InitTraj.INIT_TRAJ_INVALID_ENDING_VELOCITY),
    ((point(0.01, 0.0), point(0.3, 1.0)), NAMES, InitTraj.INIT_TRAJ_INVALID_STARTING_POS),
    ((point(0.0, 0.0, velocities=2.5), point(0.3, 1.0)), NAMES,
     InitTraj.INIT_TRAJ_INVALID_VELOCITY),
])
def test_invalid_goals_are_accepted_then_aborted_with_motoros2s_code(points, names, expected):
    c = controller('trajectory')
    assert refusal(c, goal(points, names)) == -100000 - int(expected)
    assert c.counters['goals_refused'] == 1 and not c.goal_active()


def test_the_first_failing_check_decides_in_motoros2s_order():
    c = controller('trajectory')
    off_start = (point(0.05, 0.0), point(0.3, 1.0))
    # Unknown names and a wrong start: names are checked first.
    assert refusal(c, goal(off_start, FANUC)) == -100206
    # A duplicate of joint_1 is found before joint_1's own name check passes on to joint_2.
    dup_and_unknown = ('joint_1', 'J2', 'joint_3', 'joint_4', 'joint_5', 'joint_1')
    assert refusal(c, goal(off_start, dup_and_unknown)) == -100215
    # Readiness before the mode, the mode before the point count.
    single = (point(0.0, 0.0),)
    c.set_hold(True)
    assert refusal(c, goal(single)) == -100107
    c2 = controller('point_queue')
    assert refusal(c2, goal(single)) == -100209


def test_a_goal_before_any_start_call_names_servo_power_and_one_after_stop_the_wait():
    c = controller(mode=None)
    assert refusal(c, goal(TWO_POINTS)) == -100106
    c.start_point_queue_mode()
    assert refusal(c, goal(TWO_POINTS)) == -100209
    c.stop_traj_mode()
    assert refusal(c, goal(TWO_POINTS)) == -100109


def test_equal_times_after_the_first_point_are_allowed():
    c = controller('trajectory')
    verdict = c.submit_goal(goal((point(0.0, 0.0), point(0.1, 0.5), point(0.1, 0.5),
                                  point(0.2, 1.0))), 0.0)
    assert verdict.outcome is None and c.goal_active()


def test_more_than_200_points_are_never_answered_and_change_nothing():
    c = controller('trajectory')
    points = [point(0.001 * k, 0.01 * k) for k in range(201)]
    verdict = c.submit_goal(goal(points), 0.0)
    assert verdict == type(verdict)(False, None)
    assert c.counters['goals_unanswered'] == 1 and c.goal_tick(0.02) is None
    assert not c.goal_active()
    assert c.submit_goal(goal(points[:200]), 0.0).outcome is None


def test_a_valid_goal_runs_the_cubic_through_its_points_and_succeeds():
    c = controller('trajectory')
    assert c.submit_goal(goal(TWO_POINTS), 0.0).outcome is None
    robot = Robot(c)
    robot.run(0.51)  # updates at 0.00 .. 0.50 s
    # Zero end velocities: halfway in time is halfway in position, at the peak speed 1.5 * 0.3.
    setpoint, velocity = c.command()
    np.testing.assert_allclose(setpoint, 0.15, atol=1e-9)
    assert robot.outcomes == []
    robot.step()
    _, velocity = c.command()
    np.testing.assert_allclose(velocity, 0.45, atol=0.01)
    robot.run(0.6)
    np.testing.assert_allclose(robot.q, 0.3, atol=1e-12)
    (outcome,) = robot.outcomes
    assert (outcome.status, outcome.error_code) == ('succeeded', 0)
    assert not c.goal_active() and not c.robot_status().in_motion


def test_goal_joints_in_another_order_are_mapped_by_name():
    c = controller('trajectory')
    order = NAMES[::-1]
    target = np.arange(6) * 0.05  # in `order`
    c.submit_goal(goal((point(0.0, 0.0), point(target, 1.0)), order), 0.0)
    robot = Robot(c)
    robot.run(1.2)
    np.testing.assert_allclose(robot.q, target[::-1], atol=1e-12)
    assert robot.outcomes[0].error_code == 0


def test_goal_tolerance_is_checked_by_name_at_the_end():
    only_joint_2 = (point(0.0, 0.0), point([0.0, 0.3, 0.0, 0.0, 0.0, 0.0], 1.0))

    def run(tolerance):
        c = controller('trajectory')
        c.submit_goal(goal(only_joint_2, tolerance=tolerance), 0.0)
        robot = Robot(c)
        # Cut short at 0.8 s (an e-stop clears the queue): joint_2 ends 0.031 rad short, the
        # others where they should be. (A joint that cannot follow its command never completes:
        # MotoROS2 waits while the arm is more than 30 pulses from the command.)
        robot.run(0.8)
        c.set_estop(True)
        robot.run(0.2)
        return robot.outcomes[0]

    outcome = run(())  # default 0.01
    assert outcome.error_code == -500301 and outcome.status == 'aborted'
    assert 'joint_2' in outcome.detail and 'joint_1' not in outcome.detail
    assert run([('joint_2', 0.05)]).error_code == 0
    assert run([('joint_2', -1.0)]).error_code == 0  # negative: not checked
    assert run([('joint_2', 0.0)]).error_code == -500301  # 0: the default
    assert run([('J2', 0.05)]).error_code == -500301  # unknown names are ignored
    # Several for one joint: the last one counts.
    assert run([('joint_2', 0.05), ('joint_2', 0.001)]).error_code == -500301


def test_goal_time_tolerance_is_two_sided():
    def run(points, tolerance_s=0.0):
        c = controller('trajectory')
        c.submit_goal(goal(points, time_tolerance_s=tolerance_s), 0.0)
        robot = Robot(c)
        robot.run(3.0)
        return robot.outcomes[0]

    # The first point at 1 s: MotoROS2 starts running from it at once, so the arm is done a
    # second early, outside the default 0.5 s.
    early = run((point(0.0, 1.0), point(0.3, 2.0)))
    assert early.error_code == -500302 and early.reason is FailTraj.FAIL_TRAJ_TIME
    assert run((point(0.0, 1.0), point(0.3, 2.0)), tolerance_s=1.1).error_code == 0


def test_cancel_stops_the_arm_and_ends_canceled():
    c = controller('trajectory')
    c.submit_goal(goal(TWO_POINTS), 0.0)
    robot = Robot(c)
    robot.run(0.3)
    where = robot.q.copy()
    outcome = c.cancel_goal()
    assert (outcome.status, outcome.error_code) == ('canceled', -500300)
    robot.run(0.5)
    np.testing.assert_allclose(robot.q, where, atol=1e-12)
    assert robot.outcomes == [outcome]
    assert c.motion_ready() and c.cancel_goal() is None  # the job keeps running


def test_an_alarm_during_a_goal_aborts_it_and_stops_the_job():
    c = controller('trajectory')
    c.submit_goal(goal(TWO_POINTS), 0.0)
    robot = Robot(c)
    robot.run(0.3)
    c.raise_alarm(4107)
    robot.run(0.1)
    (outcome,) = robot.outcomes
    assert (outcome.status, outcome.error_code) == ('aborted', -100303)
    assert '4107' in outcome.detail
    c.reset_error()
    assert c.not_ready_code() is MotionReady.NOT_READY_JOB_NOT_STARTED


def test_an_estop_during_a_goal_stops_it_short_of_its_end():
    c = controller('trajectory')
    c.submit_goal(goal(TWO_POINTS), 0.0)
    robot = Robot(c)
    robot.run(0.3)
    c.set_estop(True)
    robot.run(0.2)
    # No alarm, so the goal ends by its completion checks: short of the end position.
    assert robot.outcomes[0].error_code == -500301
    assert robot.q[0] < 0.2


def test_a_second_goal_reaching_the_controller_while_one_runs_is_203():
    c = controller('trajectory')
    c.submit_goal(goal((point(0.0, 0.0), point(0.3, 2.0))), 0.0)
    Robot(c).run(0.2)
    assert refusal(c, goal(TWO_POINTS)) == -100203


def test_a_later_point_faster_than_its_axis_is_dropped_and_the_arm_stops_before_it():
    c = controller('trajectory')
    points = (point(0.0, 0.0), point(0.1, 0.5), point(0.2, 1.0, velocities=2.5),
              point(0.3, 1.5))
    c.submit_goal(goal(points), 0.0)
    robot = Robot(c)
    robot.run(2.0)
    np.testing.assert_allclose(robot.q, 0.1, atol=1e-12)
    assert c.counters['points_dropped'] == 1
    assert robot.outcomes[0].error_code == -500301


def test_stop_traj_mode_is_refused_while_motion_is_queued():
    c = controller('trajectory')
    c.submit_goal(goal(TWO_POINTS), 0.0)
    robot = Robot(c)
    robot.run(0.2)
    ok, message = c.stop_traj_mode()
    assert not ok and 'still queued' in message and c.mode == 'trajectory'
    robot.run(1.0)
    assert c.stop_traj_mode() == (True, '')


# ====================================================================== the point queue
def queue(c, positions, t, velocities=None, names=NAMES):
    return c.queue_point(names, point(positions, t, velocities)).code


def test_queue_traj_point_needs_the_point_queue_mode():
    assert queue(controller('trajectory'), 0.0, 0.0) is QueueResult.WRONG_MODE
    assert queue(controller(mode=None), 0.0, 0.0) is QueueResult.WRONG_MODE


def test_the_first_point_must_be_the_current_position():
    c = controller('point_queue', q0=0.2)
    assert queue(c, 0.2 + 2 * START_TOLERANCE_RAD, 0.0) is InitTraj.INIT_TRAJ_INVALID_STARTING_POS
    assert queue(c, 0.2, 0.0, names=FANUC) is InitTraj.INIT_TRAJ_INVALID_JOINTNAME
    assert queue(c, 0.2, 0.0, names=NAMES[:5]) is InitTraj.INIT_TRAJ_INCOMPLETE_JOINTLIST
    assert queue(c, 0.2 + 0.5 * START_TOLERANCE_RAD, 0.0) is QueueResult.SUCCESS
    assert c.counters['points_refused'] == 3 and c.counters['points_queued'] == 1


def test_busy_while_the_previous_point_is_not_yet_in_the_increment_queue():
    c = controller('point_queue')
    robot = Robot(c)
    assert queue(c, 0.0, 0.0) is QueueResult.SUCCESS
    # The first point only anchors the queue: nothing runs, so the next one is taken at once.
    assert queue(c, 0.02, 0.04) is QueueResult.SUCCESS
    # The increment task picks it up at the next update: until then, BUSY.
    assert queue(c, 0.04, 0.08) is QueueResult.BUSY
    robot.step()
    assert queue(c, 0.04, 0.08) is QueueResult.SUCCESS
    # A segment longer than the increment queue (0.8 s) stays BUSY until its end is 0.8 s away.
    robot.step()
    assert queue(c, 0.3, 3.08) is QueueResult.SUCCESS
    busy_until = None
    for _ in range(400):
        robot.step()
        if queue(c, 0.3, 3.2) is QueueResult.SUCCESS:
            busy_until = robot.t
            break
    assert busy_until is not None and 3.08 - 0.8 - 0.03 <= busy_until <= 3.08 - 0.8 + 0.03
    assert c.counters['points_busy'] > 100


def test_later_points_are_checked_with_motoros2s_codes():
    c = controller('point_queue')
    robot = Robot(c)
    assert queue(c, 0.0, 0.0) is QueueResult.SUCCESS
    assert queue(c, 0.0, 0.04, names=NAMES[:5]) is QueueResult.INVALID_JOINT_LIST
    assert queue(c, 0.0, 0.04, names=NAMES[:5] + ('joint_1',)) is (
        InitTraj.INIT_TRAJ_DUPLICATE_JOINT_NAME)
    assert queue(c, 0.0, 0.04, names=FANUC) is QueueResult.INVALID_JOINT_LIST
    assert queue(c, 0.0, -0.04) is QueueResult.UNABLE_TO_PROCESS_POINT
    bad = GoalPoint((0.0,) * 6, (), seconds_to_ns(0.04))
    assert c.queue_point(NAMES, bad).code is QueueResult.UNABLE_TO_PROCESS_POINT
    # While BUSY, the joint count is still checked first, the names only after.
    assert queue(c, 0.01, 0.04) is QueueResult.SUCCESS
    assert queue(c, 0.0, 0.08, names=NAMES[:5]) is QueueResult.INVALID_JOINT_LIST
    assert queue(c, 0.0, 0.08, names=FANUC) is QueueResult.BUSY
    robot.step()
    assert c.counters['points_refused'] == 6


def test_queued_points_run_on_one_timeline_and_a_starved_queue_holds():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.1, 0.5)  # a 0.5 s segment
    robot.run(0.3)
    assert 0.0 < robot.q[0] < 0.1
    robot.run(0.25)
    np.testing.assert_allclose(robot.q, 0.1)
    # Nothing queued for a while: the arm holds, the timeline does not run on.
    robot.run(0.5)
    np.testing.assert_allclose(robot.q, 0.1)
    assert not c.robot_status().in_motion
    # The next segment is its time minus the previous point's: 0.2 s, whenever it is queued.
    assert queue(c, 0.2, 0.7) is QueueResult.SUCCESS
    robot.run(0.1)
    assert 0.1 < robot.q[0] < 0.2 and c.robot_status().in_motion
    robot.run(0.12)
    np.testing.assert_allclose(robot.q, 0.2)


def test_a_point_not_after_the_previous_one_adds_no_motion_and_the_next_jumps():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.1, 0.2)
    robot.run(0.3)
    assert queue(c, 0.15, 0.2) is QueueResult.SUCCESS  # same time: accepted, nothing to run
    robot.run(0.1)
    np.testing.assert_allclose(robot.q, 0.1)
    queue(c, 0.15, 0.4)
    setpoint, _ = robot.step()
    # The next segment starts from the skipped point (0.15), not from where the arm is.
    assert setpoint[0] > 0.149


def test_a_point_faster_than_its_axis_stalls_the_queue_until_the_mode_restarts():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    assert queue(c, 0.1, 0.1, velocities=3.0) is QueueResult.SUCCESS
    robot.run(0.05)
    assert c.counters['points_dropped'] == 1
    assert queue(c, 0.1, 0.2) is QueueResult.SUCCESS  # taken, never run
    robot.run(0.3)
    assert queue(c, 0.1, 0.3) is QueueResult.BUSY
    np.testing.assert_allclose(robot.q, 0.0)
    assert c.stop_traj_mode() == (True, '')
    assert c.start_point_queue_mode().code is MotionReady.READY
    assert queue(c, 0.0, 0.0) is QueueResult.SUCCESS
    assert queue(c, 0.05, 0.1) is QueueResult.SUCCESS
    robot.run(0.2)
    np.testing.assert_allclose(robot.q, 0.05)


def test_motion_becoming_impossible_ends_the_point_queue_mode():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.1, 1.0)
    robot.run(0.3)
    c.set_estop(True)
    robot.step()
    assert c.mode == 'none'
    assert queue(c, 0.1, 1.04) is QueueResult.WRONG_MODE
    where = robot.q.copy()
    robot.run(0.3)
    np.testing.assert_allclose(robot.q, where)


def test_a_point_queued_just_after_an_alarm_is_taken_but_never_run():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.05, 0.2)
    robot.step()
    c.raise_alarm(4107)  # clears the queue; the mode drops at the next update
    assert queue(c, 0.06, 0.24) is QueueResult.SUCCESS
    assert queue(c, 0.07, 0.28) is QueueResult.BUSY
    robot.step()
    assert c.mode == 'none'


def test_moved_externally_the_command_follows_and_the_queue_must_restart():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.1, 1.0)
    robot.run(0.2)
    c.moved_externally(np.full(6, 0.5))
    assert c.mode == 'none' and c.queued_motion_s() == 0.0
    np.testing.assert_allclose(c.command()[0], 0.5)
    assert c.start_point_queue_mode().code is MotionReady.READY
    assert queue(c, 0.5, 0.0) is QueueResult.SUCCESS


def test_in_motion_while_motion_is_queued_or_the_arm_lags_the_command():
    c = controller('point_queue')
    robot = Robot(c)
    queue(c, 0.0, 0.0)
    queue(c, 0.2, 0.4)
    robot.step()
    assert c.robot_status().in_motion and c.queued_motion_s() > 0.3
    robot.run(0.5)
    assert not c.robot_status().in_motion
    robot.stuck = {0: 0.2 - 2 * START_TOLERANCE_RAD}
    robot.run(0.02)  # the controller sees the lag in the next measurement
    assert c.robot_status().in_motion


# ====================================================================== I/O and tools
def test_io_addresses_values_and_codes_follow_motoros2():
    io = IoMemory()
    assert io.read_single(10) == (IoResult.OK, 0)
    assert io.read_single(18) == (IoResult.READ_ADDRESS_INVALID, 0)  # bit 8 does not exist
    assert io.read_single(9) == (IoResult.READ_ADDRESS_INVALID, 0)
    assert io.write_single(10, 1) is IoResult.WRITE_ADDRESS_INVALID  # an input
    assert io.write_single(10010, 2) is IoResult.WRITE_VALUE_INVALID
    assert io.write_single(10010, 1) is IoResult.OK
    assert io.read_single(10010) == (IoResult.OK, 1)
    assert io.write_group(1002, 0xA5) is IoResult.OK
    assert io.read_group(1002) == (IoResult.OK, 0xA5)
    assert io.read_single(10027) == (IoResult.OK, 1)  # bit 7 of group 1002
    assert io.write_group(1002, 256) is IoResult.WRITE_VALUE_INVALID
    assert io.write_group(2, 1) is IoResult.WRITE_ADDRESS_INVALID
    assert io.read_group(9999) == (IoResult.READ_ADDRESS_INVALID, 0)
    assert io.write_mregister(12, 65535) is IoResult.OK
    assert io.read_mregister(1000012) == (IoResult.OK, 65535)
    assert io.write_mregister(12, 65536) is IoResult.WRITE_VALUE_INVALID
    assert io.write_mregister(600, 1) is IoResult.WRITE_ADDRESS_INVALID  # read-only M600
    assert io.read_mregister(600) == (IoResult.OK, 0)
    assert io.read_mregister(1000) == (IoResult.READ_ADDRESS_INVALID, 0)


def test_select_motion_tool_codes():
    c = controller('trajectory')
    assert select_motion_tool(c, 0, 3) is SelectionResult.OK
    assert select_motion_tool(c, 1, 3) is SelectionResult.INVALID_CONTROL_GROUP
    assert select_motion_tool(c, 0, 64) is SelectionResult.INVALID_SELECTION_INDEX
    c.set_pendant(remote=False)
    assert select_motion_tool(c, 0, 3) is SelectionResult.INVALID_CONTROLLER_STATE


# ====================================================================== control groups
GROUP_1 = tuple(f'group_1/joint_{j}' for j in range(1, 7))
GROUP_2 = tuple(f'group_2/joint_{j}' for j in range(1, 7))


def test_joint_names_are_joint_m_on_one_group_and_group_n_joint_m_on_several():
    # driver-interfaces.md §2.1: the default joint names of MotoROS2 0.2.x.
    assert default_joint_names([6]) == [list(NAMES)]
    assert default_joint_names([6, 6]) == [list(GROUP_1), list(GROUP_2)]
    assert default_joint_names([6, 7])[1][-1] == 'group_2/joint_7'
    groups = robot_groups(default_joint_names([6, 6]))
    assert [(g.name, g.joint_names) for g in groups] == [('r1', GROUP_1), ('r2', GROUP_2)]
    with pytest.raises(ConfigError, match='1 to 8'):
        robot_groups([[f'group_{g}/joint_1'] for g in range(1, 10)])
    with pytest.raises(ConfigError, match='each with axes'):
        default_joint_names([6, 0])
    with pytest.raises(ConfigError, match='must be the joint names'):
        MotoRos2Controller(GROUP_1 + GROUP_2, [2.0] * 12,
                           groups=robot_groups([GROUP_2, GROUP_1]))


def two_groups(mode: str) -> MotoRos2Controller:
    """r1 at 0.0, r2 at 0.5 rad on every axis."""
    c = MotoRos2Controller(GROUP_1 + GROUP_2, [2.0] * 12, groups=robot_groups([GROUP_1, GROUP_2]))
    c.update(0.0, np.r_[np.zeros(6), np.full(6, 0.5)])
    start = c.start_traj_mode if mode == 'trajectory' else c.start_point_queue_mode
    assert start().code is MotionReady.READY
    return c


def run_tracking(c: MotoRos2Controller, seconds: float, t: float = 0.0):
    """A perfectly tracking robot at 100 Hz with the FJT feedback timer; (time, q, outcomes)."""
    q, outcomes = c.command()[0], []
    for k in range(int(round(seconds / DT))):
        q, _ = c.update(t, q)
        t = round(t + DT, 9)
        if k % 2:
            outcome = c.goal_tick(t)
            if outcome is not None:
                outcomes.append(outcome)
    return t, q, outcomes


def test_a_two_group_goal_must_name_every_axis_and_moves_both_groups():
    c = two_groups('trajectory')
    start1, start2 = np.zeros(6), np.full(6, 0.5)
    # Group 1 alone: MotoROS2 takes no partial goals (reference §2.6): 207.
    only_r1 = TrajectoryGoal(GROUP_1, (point(start1, 0.0), point(start1 + 0.2, 1.0)))
    assert refusal(c, only_r1) == -100207
    # All twelve axes, group 2 named first: mapped by name, both arms move to their targets.
    names = GROUP_2 + GROUP_1
    end2, end1 = start2 - 0.3, start1 + 0.2
    both = TrajectoryGoal(names, (
        GoalPoint(tuple(np.r_[start2, start1]), (0.0,) * 12, 0),
        GoalPoint(tuple(np.r_[end2, end1]), (0.0,) * 12, seconds_to_ns(1.0))))
    assert c.submit_goal(both, 0.0).outcome is None
    _, q, outcomes = run_tracking(c, 1.6)
    r1, r2 = c.split(q)
    np.testing.assert_allclose(r1, end1, atol=1e-9)
    np.testing.assert_allclose(r2, end2, atol=1e-9)
    assert [(o.status, o.error_code) for o in outcomes] == [('succeeded', 0)]
    with pytest.raises(ConfigError, match='6 values for the 12 axes'):
        c.split(r1)


def test_the_point_queue_of_two_groups_takes_points_over_every_axis_only():
    c = two_groups('point_queue')
    here = np.r_[np.zeros(6), np.full(6, 0.5)]

    def queue_names(names, positions, t):
        return c.queue_point(names, GoalPoint(tuple(positions), (0.0,) * len(positions),
                                              seconds_to_ns(t))).code

    # The first point starts the queue: a partial one is an incomplete joint list (207).
    assert queue_names(GROUP_1, here[:6], 0.0) is InitTraj.INIT_TRAJ_INCOMPLETE_JOINTLIST
    assert queue_names(GROUP_1 + GROUP_2, here, 0.0) is QueueResult.SUCCESS
    # Later points: the wrong joint count is 5.
    assert queue_names(GROUP_2, here[6:], 0.5) is QueueResult.INVALID_JOINT_LIST
    target = here + np.r_[np.full(6, 0.1), np.full(6, -0.1)]
    assert queue_names(GROUP_1 + GROUP_2, target, 0.5) is QueueResult.SUCCESS
    _, q, _ = run_tracking(c, 0.7)
    np.testing.assert_allclose(q, target, atol=1e-9)


def test_select_motion_tool_knows_the_controllers_groups():
    c = two_groups('trajectory')
    assert c.groups == (ControlGroup('r1', GROUP_1), ControlGroup('r2', GROUP_2))
    assert select_motion_tool(c, 1, 3) is SelectionResult.OK
    assert select_motion_tool(c, 2, 3) is SelectionResult.INVALID_CONTROL_GROUP


# ====================================================================== the streaming client
class Cell:
    """A PointQueueStreamer calling a MotoRos2Controller directly, as the ROS layer does: one
    call in flight, its answer handed back, the next due call made at once."""

    def __init__(self, c: MotoRos2Controller, streamer: PointQueueStreamer, q0=0.0) -> None:
        self.c, self.s = c, streamer
        self.robot = Robot(c, q0)
        self.calls: list[tuple[str, int]] = []
        self.requests = []
        self.answer_calls = True

    def serve(self, request):
        c = self.c
        if request.service == 'start_point_queue_mode':
            answer = c.start_point_queue_mode()
            return int(answer.code), answer.detail
        if request.service == 'stop_traj_mode':
            ok, message = c.stop_traj_mode()
            return int(ok), message
        answer = c.queue_point(self.s.joint_names, GoalPoint(
            request.positions, request.velocities, request.time_from_start_ns))
        return int(answer.code), answer.detail

    def cycle(self, target):
        self.robot.step()
        now = self.robot.t
        status = self.c.robot_status()
        self.s.on_robot_status(status.e_stopped, status.in_error, status.motion_possible,
                               status.error_codes)
        for _ in range(5):
            request = self.s.step(now, target, self.robot.q)
            if request is None:
                return
            self.requests.append(request)
            if not self.answer_calls:
                return
            code, message = self.serve(request)
            self.calls.append((request.service, code))
            self.s.on_answer(request, code, message, now)


def test_the_streamer_drives_the_arm_after_a_ramping_target():
    cell = Cell(controller(mode=None), PointQueueStreamer(NAMES, 0.04))
    target = np.zeros(6)
    errors = []
    for k in range(300):
        target = np.minimum(target + 0.005, 0.6)  # 0.5 rad/s, then still
        cell.cycle(target)
        if 50 < k < 100:
            errors.append(abs(target[0] - cell.robot.q[0]))
    np.testing.assert_allclose(cell.robot.q, 0.6, atol=1e-9)
    # It trails by (lead_segments + 1) segments at most: 2 * 0.04 s at 0.5 rad/s.
    assert max(errors) <= 0.5 * 2 * 0.04 + 0.006
    services = [service for service, _ in cell.calls]
    assert services[:2] == ['start_point_queue_mode', 'queue_traj_point']
    # Two points go out in the first cycle (one segment of lead): the second finds the first
    # not yet picked up (BUSY) and goes again on the next cycle.
    assert {code for _, code in cell.calls} == {1, 4} and cell.s.counters['busy'] <= 2
    assert cell.s.fault() is None and cell.s.state == 'streaming'
    # Accepted points lie on one timeline, a segment apart.
    times = [r.time_from_start_ns for r, (_, code) in zip(cell.requests, cell.calls)
             if r.service == 'queue_traj_point' and code == 1]
    assert times[0] == 0 and all(b - a == 40_000_000 for a, b in zip(times, times[1:]))


def streaming(s: PointQueueStreamer) -> None:
    """Start answered READY, the first point (at 0) taken: the streamer streams."""
    for service in ('start_point_queue_mode', 'queue_traj_point'):
        request = s.step(0.0, np.zeros(6), np.zeros(6))
        assert request.service == service
        s.on_answer(request, 1, '', 0.0)
    assert s.state == 'streaming'


def test_the_streamer_sends_the_same_slot_again_after_busy_with_the_freshest_target():
    s = PointQueueStreamer(NAMES, 0.04)
    streaming(s)
    second = s.step(0.0, np.full(6, 0.01), np.zeros(6))
    s.on_answer(second, int(QueueResult.BUSY), 'busy', 0.0)
    again = s.step(0.01, np.full(6, 0.02), np.zeros(6))
    assert again.time_from_start_ns == second.time_from_start_ns == 40_000_000
    assert again.positions == (0.02,) * 6
    np.testing.assert_allclose(again.velocities, 0.02 / 0.04)
    assert s.counters['busy'] == 1 and s.fault() is None


def test_the_streamer_caps_point_velocities_to_max_speed():
    s = PointQueueStreamer(NAMES, 0.04, max_speed=[0.5] * 6)
    streaming(s)
    jump = s.step(0.0, np.full(6, 0.2), np.zeros(6))
    np.testing.assert_allclose(jump.velocities, 0.5)


def test_a_refused_start_is_a_fault_retried_every_retry_s():
    c = controller(mode=None)
    c.set_pendant(remote=False)
    cell = Cell(c, PointQueueStreamer(NAMES, 0.04, retry_s=0.5))
    for _ in range(60):
        cell.cycle(np.zeros(6))
    starts = [code for service, code in cell.calls if service == 'start_point_queue_mode']
    assert starts == [105, 105]  # at 0.01 s and after 0.5 s
    assert cell.s.fault().startswith('start_point_queue_mode: 105 NOT_READY_NOT_REMOTE')
    assert len(cell.s.log) == 1  # logged once, not at every retry
    c.set_pendant(remote=True)
    for _ in range(60):
        cell.cycle(np.full(6, 0.01))
    assert cell.s.fault() is None and cell.s.state == 'streaming'
    np.testing.assert_allclose(cell.robot.q, 0.01)


def test_the_streamer_never_starts_while_the_robot_is_estopped_or_in_error():
    c = controller(mode=None)
    c.set_estop(True)
    cell = Cell(c, PointQueueStreamer(NAMES, 0.04))
    for _ in range(20):
        cell.cycle(np.zeros(6))
    assert cell.calls == [] and cell.s.fault() == 'robot_status: e_stopped'
    c.set_estop(False)
    c.raise_alarm(4107)
    cell.cycle(np.zeros(6))
    assert cell.calls == [] and cell.s.fault() == 'robot_status: in_error codes [4107]'
    c.reset_error()
    cell.cycle(np.zeros(6))
    assert cell.calls[0] == ('start_point_queue_mode', 1)


def test_the_streamer_recovers_when_the_robot_leaves_point_queue_mode():
    cell = Cell(controller(mode=None), PointQueueStreamer(NAMES, 0.04))
    for _ in range(30):
        cell.cycle(np.zeros(6))
    cell.c.set_hold(True)  # the pendant's HOLD: the mode drops
    cell.cycle(np.zeros(6))
    cell.cycle(np.zeros(6))
    assert 'robot_status: motion_possible false' in (cell.s.fault() or '') or (
        cell.s.fault() or '').startswith('start_point_queue_mode: 107')
    cell.c.set_hold(False)
    for _ in range(150):
        cell.cycle(np.full(6, 0.05))
    codes = [code for _, code in cell.calls]
    assert int(QueueResult.WRONG_MODE) in codes or 107 in codes
    assert cell.s.fault() is None and cell.s.state == 'streaming'
    np.testing.assert_allclose(cell.robot.q, 0.05)


def test_a_status_older_than_the_start_is_no_fault():
    s = PointQueueStreamer(NAMES, 0.04)
    s.on_robot_status(False, False, False, ())  # servos off: before any start
    start = s.step(0.0, np.zeros(6), np.zeros(6))
    s.on_answer(start, 1, '', 0.0)
    s.on_robot_status(False, False, False, ())  # sent before the start took effect
    assert s.fault() is None
    s.on_robot_status(False, False, True, ())
    s.on_robot_status(False, False, False, ())  # now it dropped
    assert s.fault() == 'robot_status: motion_possible false'


def test_the_streamer_stops_trajectory_mode_before_starting_the_point_queue():
    cell = Cell(controller('trajectory'), PointQueueStreamer(NAMES, 0.04))
    for _ in range(10):
        cell.cycle(np.zeros(6))
    assert [service for service, _ in cell.calls[:4]] == [
        'start_point_queue_mode', 'stop_traj_mode', 'start_point_queue_mode', 'queue_traj_point']
    assert cell.calls[0][1] == 114 and cell.c.mode == 'point_queue'


def test_a_refused_first_point_is_sent_again_with_the_measured_position():
    s = PointQueueStreamer(NAMES, 0.04)
    start = s.step(0.0, np.zeros(6), np.zeros(6))
    s.on_answer(start, 1, '', 0.0)
    first = s.step(0.0, np.zeros(6), np.full(6, 0.1))
    assert first.positions == (0.1,) * 6 and first.time_from_start_ns == 0
    s.on_answer(first, int(InitTraj.INIT_TRAJ_INVALID_STARTING_POS), 'not there', 0.0)
    assert s.fault() == ('first point: 204 INIT_TRAJ_INVALID_STARTING_POS (not there)')
    again = s.step(0.01, np.zeros(6), np.full(6, 0.2))
    assert again.positions == (0.2,) * 6 and again.time_from_start_ns == 0
    s.on_answer(again, 1, '', 0.01)
    assert s.fault() is None and s.state == 'streaming'


def test_points_the_robot_cannot_take_are_a_fault():
    s = PointQueueStreamer(NAMES, 0.04)
    streaming(s)
    point_request = s.step(0.0, np.zeros(6), np.zeros(6))
    s.on_answer(point_request, int(QueueResult.INVALID_JOINT_LIST), 'names', 0.0)
    assert s.fault() == 'queue_traj_point refused: 5 INVALID_JOINT_LIST (names)'
    assert 'cannot take' in s.log[-1]


def test_a_lost_call_times_out_and_the_streamer_starts_over():
    s = PointQueueStreamer(NAMES, 0.04, call_timeout_s=1.0)
    lost = s.step(0.0, np.zeros(6), np.zeros(6))
    assert s.step(0.5, np.zeros(6), np.zeros(6)) is None  # still waiting
    retry = s.step(1.5, np.zeros(6), np.zeros(6))
    assert retry.service == 'start_point_queue_mode' and retry.serial != lost.serial
    assert 'no answer within 1.0 s' in s.fault() and s.counters['timeouts'] == 1
    s.on_answer(lost, 1, '', 1.6)  # the late answer of the lost call is ignored
    assert s.state == 'starting'
    s.on_answer(retry, 1, '', 1.6)
    assert s.state == 'first_point'


def test_hold_queues_a_point_at_rest_then_stops_the_mode_once_the_robot_is_done():
    cell = Cell(controller(mode=None), PointQueueStreamer(NAMES, 0.04))
    target = np.zeros(6)
    for _ in range(40):
        target = target + 0.004
        cell.cycle(target)
    last_point = [r for r in cell.requests if r.service == 'queue_traj_point'][-1]
    cell.s.hold()
    for _ in range(40):
        cell.cycle(None)
    hold_point = [r for r in cell.requests if r.service == 'queue_traj_point'][-1]
    assert hold_point.positions == last_point.positions
    assert hold_point.velocities == (0.0,) * 6
    assert hold_point.time_from_start_ns == last_point.time_from_start_ns + 40_000_000
    assert cell.calls[-1] == ('stop_traj_mode', 1)
    assert cell.s.state == 'idle' and cell.c.mode == 'none'
    np.testing.assert_allclose(cell.robot.q, last_point.positions)
    assert not cell.c.robot_status().in_motion


def test_streamer_settings_and_targets_are_checked():
    with pytest.raises(ConfigError, match='point_queue_segment_s'):
        PointQueueStreamer(NAMES, 0.0)
    with pytest.raises(ConfigError, match='lead_segments'):
        PointQueueStreamer(NAMES, 0.04, lead_segments=-1)
    with pytest.raises(ConfigError, match='max_speed'):
        PointQueueStreamer(NAMES, 0.04, max_speed=[1.0])
    s = PointQueueStreamer(NAMES, 0.04)
    with pytest.raises(ConfigError, match='finite'):
        s.step(0.0, [math.nan] * 6, np.zeros(6))


def test_hold_before_streaming_and_a_refused_stop():
    s = PointQueueStreamer(NAMES, 0.04)
    s.hold()
    assert s.step(0.0, np.zeros(6), np.zeros(6)) is None and not s.stop_requested  # idle
    start = s.step(0.0, np.zeros(6), None)
    s.on_answer(start, 1, '', 0.0)
    assert s.step(0.0, np.zeros(6), None) is None  # the first point needs a measurement
    s.hold()  # mode started, nothing queued: straight to stop_traj_mode
    stop = s.step(0.01, None, None)
    assert stop.service == 'stop_traj_mode'
    s.on_answer(stop, 0, 'motion is still queued', 0.01)
    assert 'stop_traj_mode refused' in s.log[-1] and s.state == 'stopping'
    stop = s.step(0.02, None, None)
    s.on_answer(stop, 1, '', 0.02)
    assert s.state == 'idle' and not s.stop_requested
    assert s.status()['state'] == 'idle' and s.status()['starts'] == 1
    with pytest.raises(ConfigError, match='no joint names'):
        PointQueueStreamer([], 0.04)
    with pytest.raises(ValueError, match='not finite'):
        seconds_to_ns(math.inf)
