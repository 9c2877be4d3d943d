"""The motoros2 profile live: sim_node (driver motoros2) plays Yaskawa MotoROS2 over DDS, and the
runtime's point-queue client (drivers/motoros2_client.PointQueueOutput) drives it.

One simulator runs for the whole module (a start costs seconds of CPU). Waits are on answers or
on what the robot reports (joint_states, robot_status), never on wall time for an assertion: the
sim runs below real time on a loaded machine. Facts: driver-interfaces.md §2, §4.1.
"""
from __future__ import annotations

from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
import numpy as np
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectoryPoint
import pytest

from noetra_ros.drivers.motoros2_client import PointQueueOutput
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import SENSOR_DATA
from ros_harness import NodeProcess

pytestmark = pytest.mark.ros

FollowJointTrajectory = interface_type('control_msgs', 'action', 'FollowJointTrajectory')
RobotStatus = interface_type('industrial_msgs', 'msg', 'RobotStatus')
TFMessage = interface_type('tf2_msgs', 'msg', 'TFMessage')
StartTrajMode = interface_type('motoros2_interfaces', 'srv', 'StartTrajMode')
StartPointQueueMode = interface_type('motoros2_interfaces', 'srv', 'StartPointQueueMode')
QueueTrajPoint = interface_type('motoros2_interfaces', 'srv', 'QueueTrajPoint')
QueueResultEnum = interface_type('motoros2_interfaces', 'msg', 'QueueResultEnum')
InitTrajEnum = interface_type('motoros2_interfaces', 'msg', 'InitTrajEnum')
ReadSingleIO = interface_type('motoros2_interfaces', 'srv', 'ReadSingleIO')

NAMES = [f'joint_{i}' for i in range(1, 7)]
FANUC = [f'J{i}' for i in range(1, 7)]
# One small, slow camera (the sim needs one); no episode end (no arm reset) during the module.
SIM = {'driver': 'motoros2', 'robot': 'yaskawa_gp8', 'cameras': ['scene_camera'],
       'camera_width': 32, 'camera_height': 24, 'camera_rate_hz': 1.0,
       'episode_timeout_s': 3600.0}
WAIT_S = 120.0  # wall limit of any one wait: generous, the machine is shared
# Small moves of the base and the wrist: they keep the arm clear of the table and its objects.
MOVE = np.array([0.2, 0.0, 0.0, 0.0, 0.0, 0.3])
RELIABLE_READER = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope='module')
def motoros2_sim(ros_domain_id, tmp_path_factory):
    with NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path_factory.mktemp('motoros2')) as sim:
        sim.wait_log('sim ready', WAIT_S)
        yield sim


def duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class Client:
    """A probe node with MotoROS2's client side: topics, services, the action."""

    def __init__(self, ros_context, sim):
        ros_context.start()
        self.ros, self.sim = ros_context, sim
        self.probe = ros_context.probe('motoros2_client')
        node = self.probe.node
        self.joints = self.probe.record('joint_states', JointState, qos=SENSOR_DATA)
        self.status = self.probe.record('robot_status', RobotStatus, qos=SENSOR_DATA)
        self.probe.publisher('sim/motoros2/inject_fault', String)
        self.services = {name: node.create_client(kind, name) for name, kind in (
            ('start_traj_mode', StartTrajMode), ('start_point_queue_mode', StartPointQueueMode),
            ('stop_traj_mode', Trigger), ('queue_traj_point', QueueTrajPoint),
            ('read_single_io', ReadSingleIO))}
        self.action = ActionClient(node, FollowJointTrajectory, 'follow_joint_trajectory')
        ros_context.wait_matched(self.probe, WAIT_S)
        ros_context.spin_until(lambda: self.action.server_is_ready() and all(
            c.service_is_ready() for c in self.services.values()), WAIT_S, 'the servers')
        ros_context.spin_until(lambda: self.joints and self.status, WAIT_S,
                               'joint_states and robot_status')

    def call(self, name: str, request):
        future = self.services[name].call_async(request)
        self.ros.spin_until(future.done, WAIT_S, f'the {name} answer')
        return future.result()

    def position(self) -> np.ndarray:
        msg = self.joints[-1].msg
        by_name = dict(zip(msg.name, msg.position))
        return np.array([by_name[n] for n in NAMES])

    def latest_status(self):
        return self.status[-1].msg

    def queue(self, positions, t: float, names=NAMES) -> tuple[int, str]:
        point = JointTrajectoryPoint(positions=[float(v) for v in positions],
                                     velocities=[0.0] * 6, time_from_start=duration(t))
        answer = self.call('queue_traj_point', QueueTrajPoint.Request(joint_names=list(names),
                                                                      point=point))
        return answer.result_code.value, answer.message

    def goal(self, names, start, end, seconds: float):
        goal = FollowJointTrajectory.Goal()
        goal.trajectory.joint_names = list(names)
        goal.trajectory.points = [
            JointTrajectoryPoint(positions=[float(v) for v in start], velocities=[0.0] * 6,
                                 time_from_start=duration(0.0)),
            JointTrajectoryPoint(positions=[float(v) for v in end], velocities=[0.0] * 6,
                                 time_from_start=duration(seconds))]
        feedback = []
        sent = self.action.send_goal_async(goal, feedback_callback=lambda f: feedback.append(
            f.feedback))
        self.ros.spin_until(sent.done, WAIT_S, 'the goal response')
        handle = sent.result()
        assert handle.accepted, 'MotoROS2 accepts every goal it answers'
        finished = handle.get_result_async()
        self.ros.spin_until(finished.done, WAIT_S, 'the goal result')
        return finished.result(), feedback

    def settled(self) -> bool:
        status = self.latest_status()
        return status.in_motion.val == 0

    def destroy(self) -> None:
        self.action.destroy()


def test_motoros2_interface_modes_goals_and_the_point_queue(ros_context, motoros2_sim):
    client = Client(ros_context, motoros2_sim)
    probe = client.probe
    # joint_states is best effort (sensor data): a reliable reader never matches it.
    reliable = []
    probe.node.create_subscription(JointState, 'joint_states', reliable.append, RELIABLE_READER)
    tf = probe.record('tf', TFMessage)
    start_count = len(client.joints)
    ros_context.spin_until(lambda: len(client.joints) > start_count + 50 and tf, WAIT_S,
                           '50 more joint_states and a tf message')
    assert reliable == []
    names = list(client.joints[-1].msg.name)
    assert names[:6] == NAMES and len(names) > 6  # the sim gripper's fingers appended
    frames = [(t.header.frame_id, t.child_frame_id) for t in tf[-1].msg.transforms]
    assert frames == [('world', 'r1/base'), ('r1/base', 'r1/flange'), ('r1/flange', 'r1/tool0')]

    # A fresh controller: servos off, so motion is impossible and a goal says why (-100106).
    status = client.latest_status()
    assert (status.motion_possible.val, status.drives_powered.val) == (0, 0)
    here = client.position()
    answer, _ = client.goal(NAMES, here, here + MOVE, 2.0)
    assert answer.status == GoalStatus.STATUS_ABORTED and answer.result.error_code == -100106

    # Point queue: the first point must be where the robot is.
    started = client.call('start_point_queue_mode', StartPointQueueMode.Request())
    assert started.result_code.value == 1
    ros_context.spin_until(lambda: client.latest_status().motion_possible.val == 1, WAIT_S,
                           'robot_status motion_possible after the start')
    assert client.latest_status().drives_powered.val == 1
    answer, _ = client.goal(NAMES, here, here + MOVE, 2.0)
    assert answer.result.error_code == -100209  # ready, but not in trajectory mode
    here = client.position()
    assert client.queue(here, 0.0) == (QueueResultEnum.SUCCESS, '')
    assert client.queue(here, 0.04, FANUC) == (QueueResultEnum.INVALID_JOINT_LIST,
                                               QueueResultEnum.INVALID_JOINT_LIST_STR)
    # A 1.5 s segment: longer than the 0.8 s increment queue, so the next point is BUSY.
    moved = here + np.array([0.05, 0, 0, 0, 0, 0])
    assert client.queue(moved, 1.5)[0] == QueueResultEnum.SUCCESS
    assert client.queue(moved, 1.6) == (QueueResultEnum.BUSY, QueueResultEnum.BUSY_STR)
    ros_context.spin_until(lambda: np.allclose(client.position(), moved, atol=2e-3)
                           and client.settled(), WAIT_S, 'the queued point reached')
    stopped = client.call('stop_traj_mode', Trigger.Request())
    assert stopped.success, stopped.message

    # Trajectory mode: a valid goal succeeds and the arm is where it ends.
    assert client.call('start_traj_mode', StartTrajMode.Request()).result_code.value == 1
    here = client.position()
    answer, feedback = client.goal(NAMES, here, here + MOVE, 2.0)
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.error_string
    assert answer.result.error_code == 0
    np.testing.assert_allclose(client.position(), here + MOVE, atol=0.01)
    assert feedback and list(feedback[-1].joint_names) == NAMES
    # FANUC's names: accepted, then aborted with MotoROS2's "invalid joint name".
    here = client.position()
    answer, feedback = client.goal(FANUC, here, here + MOVE, 2.0)
    assert answer.status == GoalStatus.STATUS_ABORTED and feedback == []
    assert answer.result.error_code == -100206
    assert answer.result.error_string == InitTrajEnum.INIT_TRAJ_INVALID_JOINTNAME_STR
    # An I/O read at an address MotoROS2 refuses: its code and text.
    io = client.call('read_single_io', ReadSingleIO.Request(address=9))
    assert (io.result_code, io.success) == (1001, False)
    log = motoros2_sim.log_text()
    assert ('follow_joint_trajectory (result -100206) refused: 206 INIT_TRAJ_INVALID_JOINTNAME'
            in log)
    assert 'queue_traj_point refused: 5 INVALID_JOINT_LIST' in log
    client.destroy()


def test_point_queue_output_drives_the_arm_and_reports_faults(ros_context, motoros2_sim):
    client = Client(ros_context, motoros2_sim)
    node = client.probe.node
    output = PointQueueOutput(node, NAMES, '', 0.04)
    start = client.position()
    goal = start + np.array([-0.15, 0.0, 0.0, 0.0, 0.0, -0.2])
    clock = node.get_clock()
    began = clock.now().nanoseconds * 1e-9

    def tick():
        # The supervisor's limited target: a ramp at 0.2 rad/s towards the goal.
        now = clock.now().nanoseconds * 1e-9
        step = np.clip(goal - start, -0.2 * (now - began), 0.2 * (now - began))
        output.send(start + step, now)

    timer = node.create_timer(0.01, tick)
    # (robot_status keeps in_motion true while points keep coming: the queue is never empty.)
    ros_context.spin_until(lambda: np.allclose(client.position(), goal, atol=0.005), WAIT_S,
                           f'the arm at the streamed target ({output.status()})')
    status = output.status()
    assert output.fault() is None and status['point_queue_state'] == 'streaming'
    assert status['point_queue_points_accepted'] > 20
    # The robot stops: the client names the cause for the supervisor.
    client.probe.publish('sim/motoros2/inject_fault', String(data='e_stop'))
    ros_context.spin_until(lambda: output.fault() == 'robot_status: e_stopped', WAIT_S,
                           'the e-stop reported')
    client.probe.publish('sim/motoros2/inject_fault', String(data='clear'))
    # Released: the client starts the point queue again by itself (servos back on) and streams.
    ros_context.spin_until(lambda: output.fault() is None
                           and output.status()['point_queue_state'] == 'streaming', WAIT_S,
                           'streaming again after the e-stop')
    assert output.status()['point_queue_starts'] >= 2
    # Stop: a point at rest, then stop_traj_mode once the robot has run its queue.
    node.destroy_timer(timer)
    timer = node.create_timer(0.01, lambda: output.hold(clock.now().nanoseconds * 1e-9))
    ros_context.spin_until(lambda: output.status()['point_queue_state'] == 'idle', WAIT_S,
                           f'the point queue stopped ({output.status()})')
    node.destroy_timer(timer)
    ros_context.spin_until(lambda: client.latest_status().motion_possible.val == 0, WAIT_S,
                           'motion_possible false: stop_traj_mode ends the wait for ROS')
    np.testing.assert_allclose(client.position(), goal, atol=0.005)
    client.destroy()
