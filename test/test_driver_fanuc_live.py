"""The fanuc profile live: sim_node (driver fanuc) plays fanuc_driver's controllers over DDS.

One simulator runs for the whole module (a start costs seconds of CPU); each test begins by
putting the robot back into a state that accepts motion (speed 100 %, faults cleared, motion
control started). Waits are on sim time (joint_states stamps) or on answers, never on wall time
for an assertion: the sim runs below real time on a loaded machine.
"""
from __future__ import annotations

import math

from builtin_interfaces.msg import Duration
import numpy as np
from rclpy.action import ActionClient
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Int32, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
import pytest

from noetra_ros.core.drivers import jtc
from noetra_ros.qos import FANUC_STATUS
from noetra_ros.interface_packages import interface_type
from ros_harness import NodeProcess, stamp_s

pytestmark = pytest.mark.ros

FollowJointTrajectory = interface_type('control_msgs', 'action', 'FollowJointTrajectory')
ControllerState = interface_type('control_msgs', 'msg', 'JointTrajectoryControllerState')
QueryTrajectoryState = interface_type('control_msgs', 'srv', 'QueryTrajectoryState')
RobotStatus = interface_type('fanuc_msgs', 'msg', 'RobotStatus')
SwitchControlState = interface_type('fanuc_msgs', 'srv', 'SwitchControlState')

J_NAMES = [f'J{i}' for i in range(1, 7)]
ACTION = 'joint_trajectory_controller/follow_joint_trajectory'
# 250 Hz: this 2-core machine, shared with other jobs, does not keep a 500 Hz Python sim at real
# time; the controller's rules do not depend on the rate (sim time is what they count).
CONTROL_HZ = 250
# One small, slow camera (a sim needs at least one): its rendering must not eat the CPU the
# 250 Hz loop needs. No episode end (and arm reset) during the module.
SIM = {'driver': 'fanuc', 'control_hz': CONTROL_HZ, 'cameras': ['scene_camera'],
       'camera_width': 32, 'camera_height': 24, 'camera_rate_hz': 1.0,
       'episode_timeout_s': 3600.0}
WAIT_S = 120.0  # wall limit of any one wait: generous, the machine is shared
# Small moves of the base and the wrist: they keep the arm clear of the table and its objects.
MOVE = np.array([0.25, 0.0, 0.0, 0.0, 0.0, 0.3])
STATUS_GOAL_ABORTED = 6  # action_msgs/GoalStatus
STATUS_GOAL_SUCCEEDED = 4


@pytest.fixture(scope='module')
def fanuc_sim(ros_domain_id, tmp_path_factory):
    with NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path_factory.mktemp('fanuc')) as sim:
        sim.wait_log('sim ready', WAIT_S)
        yield sim


class Client:
    """A probe node with the fanuc client side: action client, topics, services."""

    def __init__(self, ros_context, sim):
        ros_context.start()
        self.ros = ros_context
        self.sim = sim
        self.probe = ros_context.probe('fanuc_client')
        node = self.probe.node
        self.joints = self.probe.record('joint_states', JointState)
        self.status = self.probe.record('fanuc_gpio_controller/robot_status', RobotStatus,
                                        qos=FANUC_STATUS)
        self.probe.publisher('speed_scaling_factor', Int32)
        self.probe.publisher('sim/fanuc/inject_fault', String)
        self.probe.publisher('joint_trajectory_controller/joint_trajectory', JointTrajectory)
        self.action = ActionClient(node, FollowJointTrajectory, ACTION)
        self.switch = node.create_client(SwitchControlState,
                                         'fanuc_gpio_controller/switch_control_state')
        self.query = node.create_client(QueryTrajectoryState,
                                        'joint_trajectory_controller/query_state')
        ros_context.wait_matched(self.probe, WAIT_S)
        ros_context.spin_until(lambda: self.action.server_is_ready()
                               and self.switch.service_is_ready(), WAIT_S, 'the servers')
        self.feedback: list = []
        self.ready_for_motion()

    # ------------------------------------------------------------ state
    def latest(self) -> JointState:
        self.ros.spin_until(lambda: bool(self.joints), WAIT_S, 'joint_states')
        return self.joints[-1].msg

    def positions(self) -> np.ndarray:
        msg = self.latest()
        by_name = dict(zip(msg.name, msg.position))
        return np.array([by_name[n] for n in J_NAMES])

    def sim_time(self) -> float:
        return stamp_s(self.latest().header.stamp)

    def wait_sim_time(self, seconds: float) -> None:
        """Spin until `seconds` of sim time have passed (joint_states stamps)."""
        until = self.sim_time() + seconds
        self.ros.spin_until(lambda: self.sim_time() >= until, WAIT_S,
                            f'{seconds} s of sim time')

    def last_status(self):
        self.status.clear()
        self.ros.spin_until(lambda: bool(self.status), WAIT_S, 'robot_status')
        return self.status[-1].msg

    # ------------------------------------------------------------ commands
    def call(self, client, request):
        future = client.call_async(request)
        self.ros.spin_until(future.done, WAIT_S, f'{client.srv_name} answer')
        return future.result()

    def switch_control_state(self, status: int) -> int:
        return self.call(self.switch, SwitchControlState.Request(status=status)).result

    def inject(self, fault: str) -> None:
        self.probe.publish('sim/fanuc/inject_fault', String(data=fault))

    def speed(self, percent: int) -> None:
        self.probe.publish('speed_scaling_factor', Int32(data=percent))

    def ready_for_motion(self) -> None:
        self.speed(100)
        self.inject('clear')
        self.ros.spin_until(lambda: self.switch_control_state(jtc.SWITCH_START) == 0, WAIT_S,
                            'switch_control_state START accepted')
        self.ros.spin_until(lambda: self.last_status().motion_possible, WAIT_S,
                            'motion_possible')

    def send(self, goal):
        future = self.action.send_goal_async(goal, feedback_callback=self.feedback.append)
        self.ros.spin_until(future.done, WAIT_S, 'the goal answer')
        return future.result()

    def result(self, handle):
        future = handle.get_result_async()
        self.ros.spin_until(future.done, WAIT_S, 'the goal result')
        return future.result()


def trajectory(names, target, duration_s: float, stamp=None) -> JointTrajectory:
    msg = JointTrajectory()
    msg.joint_names = list(names)
    sec = int(duration_s)
    msg.points = [JointTrajectoryPoint(
        positions=[float(v) for v in target],
        velocities=[0.0] * len(target),
        time_from_start=Duration(sec=sec, nanosec=int(round((duration_s - sec) * 1e9))))]
    return msg


def goal(names, target, duration_s: float):
    return FollowJointTrajectory.Goal(trajectory=trajectory(names, target, duration_s))


@pytest.fixture
def client(ros_context, fanuc_sim):
    return Client(ros_context, fanuc_sim)


def test_goal_in_fanuc_names_succeeds_within_goal_tolerance(client):
    start = client.positions()
    target = start + MOVE
    handle = client.send(goal(J_NAMES, target, 1.0))
    assert handle.accepted
    answer = client.result(handle)
    assert answer.status == STATUS_GOAL_SUCCEEDED, answer
    assert answer.result.error_code == jtc.SUCCESSFUL
    assert np.max(np.abs(client.positions() - target)) < jtc.DEFAULT_GOAL_TOLERANCE_RAD
    # Feedback in the controller's joints, stamped with the (scaled) trajectory time.
    assert client.feedback and list(client.feedback[-1].feedback.joint_names) == J_NAMES
    # joint_states as joint_state_broadcaster publishes it: J1..J6 first, arm effort NaN.
    msg = client.latest()
    assert list(msg.name[:6]) == J_NAMES and msg.header.frame_id == 'base_link'
    assert all(math.isnan(e) for e in msg.effort[:6]) and len(msg.velocity) == len(msg.name)


def test_goal_in_description_names_is_rejected_and_logged(client):
    mark = client.sim.log_mark()
    target = client.positions()
    handle = client.send(goal([f'joint_{i}' for i in range(1, 7)], target, 1.0))
    assert not handle.accepted
    log = client.sim.wait_log('goal rejected', WAIT_S, since=mark)
    assert "['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6'] are not " \
           'joints of the controller' in log


def test_a_second_goal_preempts_the_first(client):
    start = client.positions()
    first = client.send(goal(J_NAMES, start + MOVE, 6.0))
    assert first.accepted
    client.wait_sim_time(0.5)
    second = client.send(goal(J_NAMES, start - MOVE, 1.0))
    assert second.accepted
    preempted = client.result(first)
    assert preempted.status == STATUS_GOAL_ABORTED
    assert preempted.result.error_code == jtc.INVALID_GOAL
    assert preempted.result.error_string == jtc.PREEMPTED_TEXT
    finished = client.result(second)
    assert finished.status == STATUS_GOAL_SUCCEEDED, finished
    assert np.max(np.abs(client.positions() - (start - MOVE))) < jtc.DEFAULT_GOAL_TOLERANCE_RAD


def test_a_joint_trajectory_message_moves_the_arm(client):
    target = client.positions() - MOVE
    client.probe.publish('joint_trajectory_controller/joint_trajectory',
                         trajectory(J_NAMES, target, 1.0))
    client.ros.spin_until(
        lambda: np.max(np.abs(client.positions() - target)) < jtc.DEFAULT_GOAL_TOLERANCE_RAD,
        WAIT_S, 'the arm at the topic trajectory target')
    # query_state for a time past the end: the end point, success false (JTC's rule).
    later = client.latest().header.stamp
    later.sec += 5
    answer = client.call(client.query, QueryTrajectoryState.Request(time=later))
    assert list(answer.name) == J_NAMES and not answer.success
    assert 'after the trajectory end' in answer.message
    assert np.allclose(answer.position, target)


def test_speed_scaling_zero_pauses_the_goal_and_100_resumes_it(client):
    start = client.positions()
    target = start + MOVE
    client.speed(0)
    client.wait_sim_time(0.5)  # the 0.2 s lag has all but reached 0 %
    handle = client.send(goal(J_NAMES, target, 1.0))
    assert handle.accepted
    result = handle.get_result_async()
    client.wait_sim_time(3.0)  # three times the goal's own duration
    assert not result.done()
    assert np.max(np.abs(client.positions() - start)) < 0.02, 'the arm moved while paused'
    client.speed(100)
    client.ros.spin_until(result.done, WAIT_S, 'the goal result')
    assert result.result().status == STATUS_GOAL_SUCCEEDED
    # The result and joint_states are two topics with no order between them: under load the
    # result can arrive before the joint_states that showed the arm at its goal (CI: 0.067 rad
    # behind at the result), so wait for the measured arm there.
    client.ros.spin_until(
        lambda: np.max(np.abs(client.positions() - target)) < jtc.DEFAULT_GOAL_TOLERANCE_RAD,
        WAIT_S, 'the measured arm at the goal')


def test_stmo_off_aborts_with_fanucs_text_and_robot_status_reports_it(client):
    start = client.positions()
    handle = client.send(goal(J_NAMES, start + MOVE, 6.0))
    assert handle.accepted
    client.wait_sim_time(0.3)
    client.inject('stmo_off')
    aborted = client.result(handle)
    assert aborted.status == STATUS_GOAL_ABORTED
    assert aborted.result.error_code == jtc.INVALID_GOAL
    assert aborted.result.error_string == jtc.STMO_INACTIVE_TEXT
    status = client.last_status()
    assert not status.motion_possible and not status.e_stopped and not status.in_error
    held = client.positions()
    client.wait_sim_time(0.5)
    assert np.max(np.abs(client.positions() - held)) < 0.01, 'the arm moved without STMO'
    # An e-stop blocks the restart (-1) until it is cleared; then START gives motion back.
    client.inject('e_stop')
    client.ros.spin_until(lambda: client.last_status().e_stopped, WAIT_S, 'e_stopped')
    assert client.switch_control_state(jtc.SWITCH_START) == jtc.SWITCH_FAILED
    client.inject('clear')
    client.ros.spin_until(lambda: not client.last_status().e_stopped, WAIT_S, 'e-stop cleared')
    assert not client.last_status().motion_possible
    assert client.switch_control_state(jtc.SWITCH_START) == jtc.SWITCH_OK
    assert client.last_status().motion_possible
    again = client.send(goal(J_NAMES, held, 0.5))
    assert client.result(again).status == STATUS_GOAL_SUCCEEDED


def test_forward_command_configuration_has_only_the_forward_topic(ros_context, tmp_path):
    """fanuc_forward_command's configuration, in a driver namespace of its own (the module's
    simulator keeps running in the root namespace beside it)."""
    namespace = 'forward_cell'
    params = dict(SIM, command_controller='forward_position_controller',
                  driver_namespace=namespace)
    with NodeProcess.for_node('forward_sim', 'sim_node', params, tmp_path) as sim:
        sim.wait_log('sim ready', WAIT_S)
        ros_context.start()
        probe = ros_context.probe('forward_client')
        joints = probe.record(f'{namespace}/joint_states', JointState)
        command_topic = f'{namespace}/forward_position_controller/commands'
        probe.publisher(command_topic, Float64MultiArray)
        ros_context.wait_matched(probe, WAIT_S)
        ros_context.spin_until(lambda: bool(joints), WAIT_S, 'joint_states')
        names = {name for name, _ in probe.node.get_topic_names_and_types()}
        assert f'/{command_topic}' in names
        assert f'/{namespace}/fanuc_gpio_controller/robot_status' in names
        assert not [n for n in names if n.startswith(f'/{namespace}/joint_trajectory_controller')]
        assert f'/{namespace}/speed_scaling_factor' not in names

        def positions():
            by_name = dict(zip(joints[-1].msg.name, joints[-1].msg.position))
            return np.array([by_name[n] for n in J_NAMES])
        target = positions() + 0.05 * np.sign(MOVE)
        mark = sim.log_mark()
        probe.publish(command_topic, Float64MultiArray(data=[0.0] * 5))  # ignored, logged
        sim.wait_log('command size (5) does not match', WAIT_S, since=mark)
        probe.publish(command_topic, Float64MultiArray(data=[float(v) for v in target]))
        ros_context.spin_until(lambda: np.max(np.abs(positions() - target)) < 0.01, WAIT_S,
                               'the arm at the forward command')
