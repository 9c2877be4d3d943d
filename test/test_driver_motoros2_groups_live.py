"""A MotoROS2 multi-group controller live: sim_node (driver motoros2) with a second arm
(`extra_arms`) plays one controller with two robot groups over DDS.

Facts (driver-interfaces.md): §2.1 names (`group_<g>/joint_<j>` on a multi-group controller,
robots in group order), §2.2 topics (`joint_states` over every group, one
`ctrl_groups/r<g>/joint_states` per group, tf per robot from `world`), §2.6 / §2.7 (goals and
points must name every configured axis: 207 / 5). Waits are on answers or on what the robot
reports, never on wall time for an assertion.
"""
from __future__ import annotations

from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
import numpy as np
from rclpy.action import ActionClient
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectoryPoint
import pytest

from noetra_ros.core.robot_model import load_robot_description, matrix_to_quaternion
from noetra_ros.core.sim.world import EXTRA_ARM_BASE_POSES
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

GROUP_1 = [f'group_1/joint_{j}' for j in range(1, 7)]
GROUP_2 = [f'group_2/joint_{j}' for j in range(1, 7)]
ALL = GROUP_1 + GROUP_2
SECOND_ARM = 'yaskawa_hc10'
# One small, slow camera (the sim needs one); no episode end (no arm reset) during the module.
SIM = {'driver': 'motoros2', 'robot': 'yaskawa_gp8', 'extra_arms': [SECOND_ARM],
       'cameras': ['scene_camera'], 'camera_width': 32, 'camera_height': 24,
       'camera_rate_hz': 1.0, 'episode_timeout_s': 3600.0}
WAIT_S = 120.0  # wall limit of any one wait: generous, the machine is shared
# Small moves of the base and the wrist of each arm.
MOVE_1 = np.array([0.2, 0.0, 0.0, 0.0, 0.0, 0.3])
MOVE_2 = np.array([-0.25, 0.0, 0.0, 0.0, 0.0, -0.3])


def duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def point(positions, seconds: float) -> JointTrajectoryPoint:
    return JointTrajectoryPoint(positions=[float(v) for v in positions],
                                velocities=[0.0] * len(positions),
                                time_from_start=duration(seconds))


@pytest.fixture(scope='module')
def two_arm_sim(ros_domain_id, tmp_path_factory):
    with NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path_factory.mktemp('groups')) as sim:
        sim.wait_log('sim ready', WAIT_S)
        yield sim


def test_two_groups_publish_drive_and_refuse_partial_goals_and_points(ros_context, two_arm_sim):
    ros_context.start()
    probe = ros_context.probe('multi_group_client')
    node = probe.node
    joints = probe.record('joint_states', JointState, qos=SENSOR_DATA)
    groups = {g: probe.record(f'ctrl_groups/{g}/joint_states', JointState, qos=SENSOR_DATA)
              for g in ('r1', 'r2')}
    status = probe.record('robot_status', RobotStatus, qos=SENSOR_DATA)
    tf = probe.record('tf', TFMessage)
    services = {name: node.create_client(kind, name) for name, kind in (
        ('start_traj_mode', StartTrajMode), ('start_point_queue_mode', StartPointQueueMode),
        ('stop_traj_mode', Trigger), ('queue_traj_point', QueueTrajPoint))}
    action = ActionClient(node, FollowJointTrajectory, 'follow_joint_trajectory')
    ros_context.wait_matched(probe, WAIT_S)
    ros_context.spin_until(lambda: action.server_is_ready() and all(
        c.service_is_ready() for c in services.values()), WAIT_S, 'the servers')
    ros_context.spin_until(lambda: joints and status and tf and all(groups.values()), WAIT_S,
                           'joint_states, both groups\' joint_states, robot_status and tf')

    def call(name, request):
        future = services[name].call_async(request)
        ros_context.spin_until(future.done, WAIT_S, f'the {name} answer')
        return future.result()

    def position() -> np.ndarray:
        by_name = dict(zip(joints[-1].msg.name, joints[-1].msg.position))
        return np.array([by_name[n] for n in ALL])

    def goal(names, start, end, seconds):
        request = FollowJointTrajectory.Goal()
        request.trajectory.joint_names = list(names)
        request.trajectory.points = [point(start, 0.0), point(end, seconds)]
        sent = action.send_goal_async(request)
        ros_context.spin_until(sent.done, WAIT_S, 'the goal response')
        assert sent.result().accepted, 'MotoROS2 accepts every goal it answers'
        finished = sent.result().get_result_async()
        ros_context.spin_until(finished.done, WAIT_S, 'the goal result')
        return finished.result()

    def queue(names, positions, t):
        answer = call('queue_traj_point', QueueTrajPoint.Request(
            joint_names=list(names), point=point(positions, t)))
        return answer.result_code.value

    # joint_states: every group's axes in group order, then the main arm's gripper fingers.
    names = list(joints[-1].msg.name)
    assert names[:12] == ALL and len(names) > 12
    assert [list(groups[g][-1].msg.name) for g in ('r1', 'r2')] == [GROUP_1, GROUP_2]
    second = load_robot_description(SECOND_ARM, with_gripper=False)
    np.testing.assert_allclose(groups['r2'][-1].msg.position, second.home, atol=2e-3)
    # tf: one message, r1's chain then r2's; r2's base where the sim put that arm.
    transforms = tf[-1].msg.transforms
    assert [(t.header.frame_id, t.child_frame_id) for t in transforms] == [
        ('world', 'r1/base'), ('r1/base', 'r1/flange'), ('r1/flange', 'r1/tool0'),
        ('world', 'r2/base'), ('r2/base', 'r2/flange'), ('r2/flange', 'r2/tool0')]
    (x, y, z), yaw = EXTRA_ARM_BASE_POSES[0]
    expected = np.array([[np.cos(yaw), -np.sin(yaw), 0.0, x], [np.sin(yaw), np.cos(yaw), 0.0, y],
                         [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]])
    expected = expected @ second.model.fk(second.home, 'base')
    base = transforms[3].transform
    np.testing.assert_allclose([base.translation.x, base.translation.y, base.translation.z],
                               expected[:3, 3], atol=1e-6)
    quaternion = [base.rotation.x, base.rotation.y, base.rotation.z, base.rotation.w]
    assert abs(abs(np.dot(quaternion, matrix_to_quaternion(expected[:3, :3]))) - 1.0) < 1e-6

    # Trajectory mode: one controller, one start for both groups.
    assert call('start_traj_mode', StartTrajMode.Request()).result_code.value == 1
    ros_context.spin_until(lambda: status[-1].msg.motion_possible.val == 1, WAIT_S,
                           'robot_status motion_possible after the start')
    here = position()
    # Group 1's joints alone: MotoROS2 refuses partial goals (accepted, aborted, 207).
    answer = goal(GROUP_1, here[:6], here[:6] + MOVE_1, 2.0)
    assert answer.status == GoalStatus.STATUS_ABORTED
    assert answer.result.error_code == -100207
    assert answer.result.error_string == InitTrajEnum.INIT_TRAJ_INCOMPLETE_JOINTLIST_STR
    # All twelve axes: both arms move to their targets.
    target = here + np.r_[MOVE_1, MOVE_2]
    answer = goal(ALL, here, target, 2.0)
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.error_string
    assert answer.result.error_code == 0
    np.testing.assert_allclose(position(), target, atol=0.01)
    ros_context.spin_until(lambda: np.allclose(groups['r2'][-1].msg.position, target[6:],
                                               atol=0.01), WAIT_S, 'r2 at its target')
    assert call('stop_traj_mode', Trigger.Request()).success

    # Point queue over the twelve axes; a point naming one group is refused.
    assert call('start_point_queue_mode', StartPointQueueMode.Request()).result_code.value == 1
    here = position()
    assert queue(GROUP_1, here[:6], 0.0) == InitTrajEnum.INIT_TRAJ_INCOMPLETE_JOINTLIST
    assert queue(ALL, here, 0.0) == QueueResultEnum.SUCCESS
    assert queue(GROUP_2, here[6:], 0.5) == QueueResultEnum.INVALID_JOINT_LIST
    back = here - np.r_[MOVE_1, MOVE_2] * 0.5
    assert queue(ALL, back, 0.5) == QueueResultEnum.SUCCESS
    ros_context.spin_until(lambda: np.allclose(position(), back, atol=2e-3)
                           and status[-1].msg.in_motion.val == 0, WAIT_S,
                           'both arms at the queued point')
    assert call('stop_traj_mode', Trigger.Request()).success
    log = two_arm_sim.log_text()
    assert "groups ['r1', 'r2']" in log
    assert 'follow_joint_trajectory (result -100207) refused: 207' in log
    assert 'Traceback' not in log
    action.destroy()


def test_extra_arms_on_a_driver_with_one_arm_per_controller_exit_naming_why(ros_domain_id,
                                                                              tmp_path):
    params = dict(SIM, driver='fanuc', robot='fanuc_lrmate200id')
    with NodeProcess.for_node('sim', 'sim_node', params, tmp_path) as sim:
        code = sim.wait_exit(60.0)
        log = sim.log_text()
    assert code != 0
    assert 'parameter extra_arms=' in log and 'only the motoros2 driver' in log, log
    assert 'Traceback' not in log
