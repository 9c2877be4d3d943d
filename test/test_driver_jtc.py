"""fanuc_driver's scaled joint trajectory controller without ROS (noetra_ros/core/drivers/jtc.py):
every reject rule, preemption, cancel, tolerances, speed scaling, the STMO stop, query_state, the
robot status and forward_position_controller's size rule."""
from types import SimpleNamespace

import numpy as np
import pytest

from noetra_ros.core.drivers import jtc
from noetra_ros.core.drivers.jtc import (
    ControllerEvent, FanucRobotStatus, JointToleranceData, TrajectoryController, TrajectoryData,
    TrajectoryPointData as Point)
from noetra_ros.core.errors import CommandError, ConfigError

JOINTS = tuple(f'J{i}' for i in range(1, 7))
HZ = 500
PERIOD = 1.0 / HZ


def trajectory(*points, names=JOINTS, stamp=0.0):
    return TrajectoryData(joint_names=tuple(names), points=tuple(points), stamp_s=stamp)


def point(t, q, v=(), a=(), effort=()):
    """A point whose positions are `q` on every joint when `q` is a number."""
    def full(x):
        return tuple(float(x) for _ in JOINTS) if np.isscalar(x) else tuple(x)
    return Point(positions=full(q), time_from_start_s=t,
                 velocities=full(v) if v != () else (), accelerations=full(a) if a != () else (),
                 effort=full(effort) if effort != () else ())


class Arm:
    """A perfect position servo (measured = last setpoint), or a stuck one (`stuck=True`)."""

    def __init__(self, q=0.0, stuck=False):
        self.q = np.full(len(JOINTS), float(q))
        self.qd = np.zeros(len(JOINTS))
        self.stuck = stuck
        self.now = 0.0

    def step(self, controller, steps=1):
        events = []
        for _ in range(steps):
            setpoint, velocity, new = controller.update(self.now, self.q, self.qd)
            events += new
            if not self.stuck:
                self.q, self.qd = setpoint, velocity
            self.now += PERIOD
        return events

    def run_until(self, controller, predicate, limit_s=30.0):
        """Step until predicate(events so far) holds; the events."""
        events = []
        while not predicate(events):
            assert self.now < limit_s, f'not reached after {limit_s} s of updates: {events}'
            events += self.step(controller)
        return events


def started(arm=None):
    controller = TrajectoryController(JOINTS, HZ)
    arm = arm or Arm()
    arm.step(controller)
    return controller, arm


def ended(events):
    return any(e.kind in ('succeeded', 'aborted', 'canceled') for e in events)


# ---------------------------------------------------------------- validate: every reject rule
GOOD = trajectory(point(1.0, 0.5))


@pytest.mark.parametrize('message, needle', [
    (trajectory(point(1.0, 0.5), names=JOINTS[:5]), '5 joint names'),
    (trajectory(point(1.0, 0.5), names=[f'joint_{i}' for i in range(1, 7)]),
     "['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6'] are not joints"),
    (trajectory(point(1.0, 0.5), names=('J1', 'J1', 'J2', 'J3', 'J4', 'J5')),
     "['J1'] appear more than once"),
    (trajectory(), 'no points'),
    (trajectory(point(1.0, 0.5, v=0.1)), 'non-zero velocity'),
    (trajectory(point(1.0, 0.5), stamp=5.0), 'in the past'),
    (trajectory(point(1.0, 0.5), point(1.0, 0.6)), 'not strictly increasing'),
    (trajectory(point(1.0, 0.5), point(0.5, 0.6)), 'not strictly increasing'),
    (trajectory(Point(positions=(0.0,) * 5, time_from_start_s=1.0)), '5 positions for 6'),
    (trajectory(point(1.0, 0.5, v=(0.0,) * 3)), '3 velocities for 6'),
    (trajectory(point(1.0, 0.5, v=0.0, a=(0.0,) * 2)), '2 accelerations for 6'),
    (trajectory(point(1.0, 0.5, effort=1.0)), 'carries effort'),
    (trajectory(point(1.0, float('nan'))), 'non-finite value in positions'),
    (trajectory(point(-1.0, 0.5), point(1.0, 0.5)), 'negative time_from_start'),
])
def test_every_reject_rule_names_its_cause(message, needle):
    controller = TrajectoryController(JOINTS, HZ)
    reason = controller.validate(message, now=10.0)
    assert reason is not None and needle in reason, reason
    with pytest.raises(CommandError, match='.'):
        controller.submit(message, now=10.0, goal_id='g')
    assert controller.active_goal is None


def test_valid_messages_pass_and_a_future_stamp_is_fine():
    controller = TrajectoryController(JOINTS, HZ)
    assert controller.validate(GOOD, now=10.0) is None
    # Any order of the controller's names; the stamp puts the end at 11.5 > now.
    shuffled = trajectory(point(1.0, 0.5), names=tuple(reversed(JOINTS)), stamp=10.5)
    assert controller.validate(shuffled, now=10.0) is None
    # A final velocity below single-precision epsilon counts as zero (JTC's rule).
    assert controller.validate(trajectory(point(1.0, 0.5, v=1e-9)), now=0.0) is None


def test_inactive_controller_refuses_everything():
    controller = TrajectoryController(JOINTS, HZ)
    controller.active = False
    assert controller.validate(GOOD, now=0.0) == 'the controller is not active'


def test_message_conversion_reads_a_ros_shaped_object():
    def duration(sec, nanosec):
        return SimpleNamespace(sec=sec, nanosec=nanosec)
    msg = SimpleNamespace(
        header=SimpleNamespace(stamp=duration(3, 500_000_000)), joint_names=list(JOINTS),
        points=[SimpleNamespace(positions=[0.1] * 6, velocities=[], accelerations=[], effort=[],
                                time_from_start=duration(1, 250_000_000))])
    data = jtc.trajectory_data_from_msg(msg)
    assert data.stamp_s == pytest.approx(3.5)
    assert data.joint_names == JOINTS
    assert data.points[0].time_from_start_s == pytest.approx(1.25)
    assert data.points[0].positions == (0.1,) * 6 and data.points[0].velocities == ()


def test_spline_degree_follows_the_fields_and_joints_are_reordered():
    def degree(*points):
        return jtc.core_trajectory(trajectory(*points), JOINTS).degree
    assert degree(point(1.0, 0.5)) == 'linear'
    assert degree(point(1.0, 0.5, v=0.0)) == 'cubic'
    assert degree(point(1.0, 0.5, v=0.0, a=0.0)) == 'quintic'
    # Velocities on some points only: linear throughout (documented deviation).
    assert degree(point(0.5, 0.2, v=0.1), point(1.0, 0.5)) == 'linear'
    reversed_names = trajectory(point(1.0, tuple(range(6))), names=tuple(reversed(JOINTS)))
    spline = jtc.core_trajectory(reversed_names, JOINTS)
    assert spline.positions[0].tolist() == [5, 4, 3, 2, 1, 0]


# ---------------------------------------------------------------- execution
def test_holds_the_measured_position_until_a_trajectory_comes():
    controller = TrajectoryController(JOINTS, HZ)
    arm = Arm(q=0.3)
    setpoint, velocity, events = controller.update(0.0, arm.q, arm.qd)
    assert setpoint.tolist() == [0.3] * 6 and not velocity.any() and events == []
    assert controller.holding


def test_goal_runs_from_the_measured_state_and_succeeds_at_the_last_point():
    controller, arm = started(Arm(q=0.2))
    assert controller.submit(trajectory(point(1.0, 0.7)), arm.now, goal_id='g') == []
    assert controller.active_goal == 'g'
    arm.step(controller, int(0.5 * HZ))
    # Linear from the measured 0.2 (first update) to 0.7 at 1 s after the first sample.
    assert arm.q[0] == pytest.approx(0.2 + 0.5 * (0.5 - PERIOD) / 1.0, abs=2e-3)
    events = arm.run_until(controller, ended)
    assert events == [ControllerEvent('succeeded', 'g', jtc.SUCCESSFUL, jtc.SUCCESS_TEXT)]
    assert arm.q == pytest.approx([0.7] * 6)
    assert controller.active_goal is None and controller.holding
    # After success the controller holds the last point itself.
    setpoint, _, _ = controller.update(arm.now, np.full(6, 0.69), np.zeros(6))
    assert setpoint == pytest.approx([0.7] * 6)


def test_cubic_goal_passes_through_its_points_with_their_velocities():
    controller, arm = started()
    message = trajectory(point(1.0, 0.5, v=0.5), point(2.0, 1.0, v=0.0))
    controller.submit(message, arm.now, goal_id='g')
    # Point 0 lies 1 s + one period after the first update; step onto it exactly.
    arm.step(controller, HZ + 1)
    state = controller.state()
    assert state.reference_positions == pytest.approx([0.5] * 6, abs=1e-9)
    assert state.reference_velocities == pytest.approx([0.5] * 6, abs=1e-9)
    assert ended(arm.run_until(controller, ended))
    assert arm.q == pytest.approx([1.0] * 6)


def test_goal_stays_active_outside_goal_tolerance_without_a_deadline():
    controller, arm = started(Arm(stuck=True))
    controller.submit(trajectory(point(0.2, 0.1)), arm.now, goal_id='g')  # 0.1 < path 0.25
    assert arm.step(controller, 5 * HZ) == []  # 0.1 rad off the end, goal_time 0: waits
    assert controller.active_goal == 'g'
    arm.q = np.full(6, 0.07)  # inside the 0.05 goal tolerance of 0.1
    assert arm.step(controller) == [
        ControllerEvent('succeeded', 'g', jtc.SUCCESSFUL, jtc.SUCCESS_TEXT)]


def test_goal_time_tolerance_from_the_goal_aborts_late_goals():
    controller, arm = started(Arm(stuck=True))
    tolerances, warning = jtc.resolve_tolerances(controller.default_tolerances, JOINTS,
                                                 goal_time_s=0.5)
    assert warning is None and tolerances.goal_time_s == 0.5
    controller.submit(trajectory(point(0.2, 0.1)), arm.now, goal_id='g', tolerances=tolerances)
    events = arm.run_until(controller, ended)
    assert len(events) == 1 and events[0].kind == 'aborted'
    assert events[0].error_code == jtc.GOAL_TOLERANCE_VIOLATED
    assert 'goal_time_tolerance exceeding by 0.5' in events[0].text
    assert arm.now == pytest.approx(0.2 + 0.5, abs=0.01)


def test_path_tolerance_breach_aborts_and_holds_the_measured_position():
    controller, arm = started(Arm(stuck=True))
    controller.submit(trajectory(point(1.0, 1.0)), arm.now, goal_id='g')
    events = arm.run_until(controller, ended)
    assert events == [ControllerEvent('aborted', 'g', jtc.PATH_TOLERANCE_VIOLATED,
                                      jtc.PATH_TOLERANCE_TEXT)]
    # 0.25 rad of a 1 rad/s ramp: about 0.25 s in.
    assert arm.now == pytest.approx(0.25, abs=0.01)
    setpoint, velocity, _ = controller.update(arm.now, arm.q, arm.qd)
    assert setpoint.tolist() == [0.0] * 6 and not velocity.any() and controller.holding


def test_a_topic_trajectory_breaching_the_path_tolerance_holds_with_a_notice():
    controller, arm = started(Arm(stuck=True))
    controller.submit(trajectory(point(1.0, 1.0)), arm.now)
    events = arm.run_until(controller, lambda ev: bool(ev))
    assert events[0].kind == 'hold' and events[0].goal_id is None
    assert events[0].error_code == jtc.PATH_TOLERANCE_VIOLATED
    assert controller.holding


def test_goal_tolerances_override_the_defaults_per_joint():
    defaults = jtc.default_tolerances(6)
    resolved, warning = jtc.resolve_tolerances(
        defaults, JOINTS,
        path=[JointToleranceData('J1', position=-1.0), JointToleranceData('J2', position=0.0),
              JointToleranceData('J3', position=2.0)],
        goal=[JointToleranceData('J6', position=0.01)])
    assert warning is None
    assert resolved.path.tolist() == [0.0, 0.25, 2.0, 0.25, 0.25, 0.25]
    assert resolved.goal.tolist() == [0.05] * 5 + [0.01]
    for bad in ([JointToleranceData('joint_1', position=0.1)],
                [JointToleranceData('J1', position=-2.0)],
                [JointToleranceData('J1', velocity=-0.5)]):
        kept, warning = jtc.resolve_tolerances(defaults, JOINTS, path=bad)
        assert kept is defaults and 'default tolerances used' in warning
    kept, warning = jtc.resolve_tolerances(defaults, JOINTS, goal_time_s=-3.0)
    assert kept is defaults and 'goal_time_tolerance' in warning


def test_removed_path_tolerance_lets_a_lagging_goal_run():
    controller, arm = started(Arm(stuck=True))
    removed, _ = jtc.resolve_tolerances(
        controller.default_tolerances, JOINTS,
        path=[JointToleranceData(j, position=-1.0) for j in JOINTS])
    controller.submit(trajectory(point(1.0, 1.0)), arm.now, goal_id='g', tolerances=removed)
    assert arm.step(controller, 2 * HZ) == []  # no path check; the end waits for the arm
    assert controller.active_goal == 'g'


# ---------------------------------------------------------------- preempt, topic, cancel
def test_a_new_goal_preempts_the_active_one():
    controller, arm = started()
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='first')
    arm.step(controller, HZ // 2)
    events = controller.submit(trajectory(point(1.0, -0.2)), arm.now, goal_id='second')
    assert events == [ControllerEvent('aborted', 'first', jtc.INVALID_GOAL, jtc.PREEMPTED_TEXT)]
    assert controller.active_goal == 'second'
    assert arm.run_until(controller, ended) == [
        ControllerEvent('succeeded', 'second', jtc.SUCCESSFUL, jtc.SUCCESS_TEXT)]
    assert arm.q == pytest.approx([-0.2] * 6)


def test_a_topic_message_replaces_the_trajectory_but_not_the_goal():
    controller, arm = started()
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='g')
    arm.step(controller, HZ // 2)
    assert controller.submit(trajectory(point(0.5, 0.1)), arm.now) == []
    assert controller.active_goal == 'g'
    events = arm.run_until(controller, ended)
    assert events[0].kind == 'succeeded' and events[0].goal_id == 'g'
    assert arm.q == pytest.approx([0.1] * 6)


def test_cancel_ends_the_goal_canceled_and_holds():
    controller, arm = started()
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='g')
    arm.step(controller, HZ // 2)
    where = arm.q.copy()
    assert controller.cancel('other') == []
    assert controller.cancel('g') == [ControllerEvent('canceled', 'g', jtc.SUCCESSFUL, '')]
    arm.step(controller)
    held = arm.q.copy()  # the position measured at the last update (one period behind)
    assert held == pytest.approx(where, abs=0.5 * PERIOD + 1e-9)
    arm.step(controller, HZ // 2)
    assert arm.q.tolist() == held.tolist() and controller.holding
    assert controller.cancel('g') == []


def test_robot_moved_under_a_goal_aborts_it_and_holds_there():
    controller, arm = started()
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='g')
    arm.step(controller, 10)
    events = controller.robot_moved(np.full(6, -0.4))
    assert events == [ControllerEvent('aborted', 'g', jtc.PATH_TOLERANCE_VIOLATED,
                                      jtc.SIM_RESET_TEXT)]
    setpoint, _, _ = controller.update(arm.now, np.full(6, -0.4), np.zeros(6))
    assert setpoint == pytest.approx([-0.4] * 6)


# ---------------------------------------------------------------- stamps
def test_future_stamp_stretches_the_first_segment_to_the_stamp():
    controller, arm = started()
    now = arm.now
    controller.submit(trajectory(point(1.0, 1.0), stamp=now + 1.0), now, goal_id='g')
    arm.step(controller, HZ)  # 1 s into a 2 s segment from the measured 0 to 1.0
    assert arm.q[0] == pytest.approx(0.5, abs=2e-3)
    assert ended(arm.run_until(controller, ended))
    assert arm.now == pytest.approx(now + 2.0, abs=0.01)


def test_stamp_in_the_past_joins_the_trajectory_where_it_is_now():
    controller, arm = started(Arm(q=1.0))
    now = arm.now
    # Started 1 s ago: 0.5 at 0.5 s, 2.0 at 2.0 s, so it is at 1.0 (where the arm is) now.
    message = trajectory(point(0.5, 0.5), point(2.0, 2.0), stamp=now - 1.0)
    controller.submit(message, now, goal_id='g')
    arm.step(controller)
    assert arm.q[0] == pytest.approx(1.0 + PERIOD, abs=1e-9)
    assert ended(arm.run_until(controller, ended))
    assert arm.now == pytest.approx(now + 1.0, abs=0.01)


# ---------------------------------------------------------------- speed scaling
def test_speed_percent_is_clamped_and_lagged():
    scaling = jtc.SpeedScaling()
    assert scaling.set_percent(-5) == 0 and scaling.set_percent(250) == 100
    scaling.set_percent(0)
    assert scaling.advance(0.002) == pytest.approx(0.01 * 100 * (1 - 0.002 / 0.2))
    scaling.set_collaborative(float('nan'))
    assert scaling.collaborative == 1.0
    scaling.set_collaborative(0.5)
    assert scaling.factor == pytest.approx(0.5 * 0.01 * scaling.filtered_percent)


def test_speed_scaling_zero_pauses_the_trajectory_and_100_resumes_it():
    controller, arm = started()
    controller.speed_scaling.set_percent(0)
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='g')
    assert arm.step(controller, 10 * HZ) == []
    # The lag lets trajectory time run on for about tau (0.2 s) after the step to 0.
    progress = controller.state().trajectory_time - (arm.now - 10.0)
    assert 0.15 < progress < 0.25
    assert arm.q[0] == pytest.approx(progress / 2.0, abs=0.01) and controller.active_goal == 'g'
    controller.speed_scaling.set_percent(100)
    assert ended(arm.run_until(controller, ended, limit_s=20.0))
    assert arm.q == pytest.approx([1.0] * 6)


def test_half_speed_takes_twice_as_long():
    controller, arm = started()
    controller.speed_scaling.set_percent(50)
    arm.step(controller, 3 * HZ)  # let the lag settle at 50 %
    start = arm.now
    controller.submit(trajectory(point(1.0, 0.5)), start, goal_id='g')
    arm.run_until(controller, ended)
    assert arm.now - start == pytest.approx(2.0, abs=0.02)


# ---------------------------------------------------------------- STMO (motion_possible)
def test_motion_not_possible_aborts_with_fanucs_text_and_holds_until_restarted():
    controller, arm = started()
    controller.submit(trajectory(point(2.0, 1.0)), arm.now, goal_id='g')
    arm.step(controller, HZ // 2)
    where = arm.q.copy()
    controller.motion_possible = False
    assert arm.step(controller) == [
        ControllerEvent('aborted', 'g', jtc.INVALID_GOAL, jtc.STMO_INACTIVE_TEXT)]
    arm.step(controller, HZ)
    assert arm.q == pytest.approx(where)
    # A goal accepted meanwhile is aborted at the next update; a topic message is dropped.
    controller.submit(trajectory(point(1.0, 0.0)), arm.now, goal_id='late')
    assert arm.step(controller) == [
        ControllerEvent('aborted', 'late', jtc.INVALID_GOAL, jtc.STMO_INACTIVE_TEXT)]
    controller.submit(trajectory(point(1.0, 0.0)), arm.now)
    arm.step(controller, HZ)
    assert arm.q == pytest.approx(where)
    # Restarted: the old trajectory is not resumed; the arm holds until a new one comes.
    controller.motion_possible = True
    arm.step(controller, HZ)
    assert arm.q == pytest.approx(where) and controller.holding
    controller.submit(trajectory(point(0.5, 0.0)), arm.now, goal_id='again')
    assert arm.run_until(controller, ended)[0].kind == 'succeeded'
    # A second stop holds where the arm is then, not where the first one held it.
    controller.submit(trajectory(point(1.0, -0.5)), arm.now)
    arm.step(controller, HZ // 2)
    second = arm.q.copy()
    controller.motion_possible = False
    arm.step(controller, HZ)
    assert arm.q == pytest.approx(second) and abs(second[0] - where[0]) > 0.2


# ---------------------------------------------------------------- query_state, state
def test_query_state_answers_inside_the_running_trajectory_only():
    controller, arm = started()
    assert not controller.query(arm.now).success  # holding
    controller.submit(trajectory(point(1.0, 1.0)), arm.now, goal_id='g')
    arm.step(controller)
    t = controller.state().trajectory_time
    answer = controller.query(t + 0.5)
    assert answer.success and answer.message == ''
    assert answer.positions == pytest.approx([0.5] * 6, abs=2e-3)
    # The first segment runs from the measured state one period before point 0's 1 s.
    assert answer.velocities == pytest.approx([1.0 / (1.0 + PERIOD)] * 6)
    assert answer.accelerations == pytest.approx([0.0] * 6, abs=1e-6)
    late = controller.query(t + 5.0)
    assert not late.success and 'after the trajectory end' in late.message
    assert late.positions == pytest.approx([1.0] * 6)
    assert 'before the trajectory started' in controller.query(t - 5.0).message
    controller.active = False
    assert controller.query(t).message == 'the controller is not active'


def test_state_reports_reference_feedback_error_and_output():
    controller, arm = started(Arm(stuck=True))
    controller.submit(trajectory(point(1.0, 0.2)), arm.now, goal_id='g')
    arm.step(controller, HZ // 2)
    state = controller.state()
    assert state.feedback_positions.tolist() == [0.0] * 6
    assert state.reference_positions == pytest.approx([0.1] * 6, abs=2e-3)
    assert state.error_positions == pytest.approx(state.reference_positions)
    assert state.output_positions == pytest.approx(state.reference_positions)
    assert state.speed_scaling_factor == 1.0


def test_measured_state_of_the_wrong_size_is_refused():
    controller = TrajectoryController(JOINTS, HZ)
    with pytest.raises(CommandError, match='expected 6 positions'):
        controller.update(0.0, np.zeros(5), np.zeros(5))
    with pytest.raises(ConfigError, match='distinct'):
        TrajectoryController(('J1', 'J1'), HZ)


# ---------------------------------------------------------------- robot status, forward command
def test_robot_status_faults_and_switch_control_state():
    status = FanucRobotStatus()
    assert (status.motion_possible, status.e_stopped, status.in_error, status.tp_enabled,
            status.contact_stop_mode) == (True, False, False, False, 0)
    status.inject('e_stop')
    assert status.e_stopped and not status.motion_possible
    assert status.switch_control_state(jtc.SWITCH_START) == (
        jtc.SWITCH_FAILED, 'cannot start motion control while e_stopped')
    status.inject('error')
    status.inject('clear')
    assert not status.e_stopped and not status.in_error and not status.motion_possible
    assert status.switch_control_state(jtc.SWITCH_START)[0] == jtc.SWITCH_OK
    assert status.motion_possible
    status.inject('stmo_off')
    assert not status.motion_possible and not status.in_error
    assert status.switch_control_state(jtc.SWITCH_START)[0] == jtc.SWITCH_OK
    assert status.switch_control_state(jtc.SWITCH_STOP)[0] == jtc.SWITCH_OK
    assert not status.motion_possible
    assert status.switch_control_state(7)[0] == jtc.SWITCH_FAILED
    with pytest.raises(ValueError, match="unknown fault 'fire'"):
        status.inject('fire')


def test_forward_command_needs_one_finite_value_per_joint():
    assert jtc.forward_command([0.1] * 6, 6).tolist() == [0.1] * 6
    with pytest.raises(CommandError, match=r'command size \(5\) does not match the 6 joints'):
        jtc.forward_command([0.1] * 5, 6)
    with pytest.raises(CommandError, match='non-finite'):
        jtc.forward_command([0.1] * 5 + [float('inf')], 6)
