"""state_publisher_node over real rclpy and Fast DDS: robot_description, /tf_static and /tf.

The node runs as its own process, started like `noetra run` starts it (where the shell has not
sourced install/setup.bash, this also shows that the node finds our tf2_msgs build by itself);
the sim runs in the test process next to a probe. Checked as a tf2 listener would use it: the
transforms of one /tf message, composed with /tf_static, give world -> base_link -> ... -> tool0
equal to the forward kinematics of the joint_states message with the same stamp.
"""
from __future__ import annotations

import math

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from noetra_ros.core.robot_model import load_robot_description, quaternion_to_matrix
from noetra_ros.core.sim.world import default_cameras, ROBOT_BASE_POSITION
from noetra_ros.core.tf_tree import CameraMount, FrameTransform, frame_pose
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import LATCHED, TF, TF_STATIC
from ros_harness import joint_positions, NodeProcess, stamp_ns

pytestmark = pytest.mark.ros

ROBOT = 'fanuc_lrmate200id'
CAMERAS = ['scene_camera', 'wrist_camera']
# The sim unpaced, one small camera; the state publisher reads the cell clock like the cells.
SIM = {'robot': ROBOT, 'mode': 'realtime', 'real_time_factor': 0.0, 'cameras': ['scene_camera'],
       'scene_camera': {'width': 32, 'height': 24, 'rate_hz': 2.0}, 'episode_timeout_s': 1000.0}
PUBLISHER = {'robot': ROBOT, 'use_sim_time': True, 'cameras': CAMERAS}


def tf_message_type():
    return interface_type('tf2_msgs', 'msg', 'TFMessage')


def core_transforms(msg) -> list[FrameTransform]:
    out = []
    for t in msg.transforms:
        matrix = np.eye(4)
        r, p = t.transform.rotation, t.transform.translation
        matrix[:3, :3] = quaternion_to_matrix([r.x, r.y, r.z, r.w])
        matrix[:3, 3] = [p.x, p.y, p.z]
        out.append(FrameTransform(t.header.frame_id, t.child_frame_id, matrix))
    return out


def start_publisher(tmp_path, **params) -> NodeProcess:
    """The node with PUBLISHER's parameters and `params` (None: leave the parameter out)."""
    merged = {key: value for key, value in {**PUBLISHER, **params}.items() if value is not None}
    return NodeProcess.for_node('state_publisher', 'state_publisher_node', merged,
                                tmp_path).start()


def test_tf_chain_equals_forward_kinematics_of_the_joint_states(ros_context, tmp_path):
    from noetra_ros.sim_node import SimNode
    tf_message = tf_message_type()
    description = load_robot_description(ROBOT)
    ros_context.start({'sim': SIM})
    ros_context.add(SimNode())
    probe = ros_context.probe()
    joint_states = probe.record('joint_states', JointState)
    tf = probe.record('/tf', tf_message, TF)
    command = probe.publisher('forward_position_controller/commands', Float64MultiArray)
    with start_publisher(tmp_path) as node:
        ros_context.spin_until(lambda: len(tf) >= 3, what='/tf from the state publisher')
        # Move the arm so the chain is checked over many poses, not only the home pose.
        home = np.array(joint_positions(joint_states[-1].msg, description.joint_names))
        ros_context.spin_until(lambda: command.get_subscription_count() > 0, what='sim input')
        command.publish(Float64MultiArray(data=list(home + [0.5, -0.3, 0.4, 0.6, -0.5, 0.7])))
        count = len(tf)
        ros_context.spin_until(lambda: len(tf) >= count + 40, what='40 /tf while moving')

        # Joined late: the latched description and static transforms still arrive.
        late = ros_context.probe('late_joiner')
        urdf = late.record('robot_description', String, LATCHED)
        static = late.record('/tf_static', tf_message, TF_STATIC)
        ros_context.spin_until(lambda: urdf and static, what='latched description and statics')
        assert node.running(), node.log_text()

    assert urdf[0].msg.data == description.urdf_path.read_text(encoding='utf-8')
    static_transforms = core_transforms(static[-1].msg)
    frames = {(t.parent, t.child) for t in static_transforms}
    assert ('world', 'base_link') in frames and ('flange', 'tool0') in frames
    assert ('world', 'scene_camera_optical_frame') in frames
    assert ('tool0', 'wrist_camera_optical_frame') in frames
    # The camera frames are the simulated mounts (core/tf_tree.py checks those against
    # SimWorld's rendering poses), through the node's per-camera parameters.
    by_child = {t.child: t for t in static_transforms}
    for spec in default_cameras():
        if spec.name in CAMERAS:
            mount = CameraMount.from_spec(spec)
            np.testing.assert_allclose(by_child[mount.frame_id].matrix, mount.matrix,
                                       atol=1e-12, err_msg=spec.name)

    by_stamp = {stamp_ns(r.msg.header.stamp): r.msg for r in joint_states}
    base = np.eye(4)
    base[:3, 3] = ROBOT_BASE_POSITION
    checked, moved = 0, []
    for received in tf:
        msg = received.msg
        stamps = {stamp_ns(t.header.stamp) for t in msg.transforms}
        assert len(stamps) == 1, 'one joint_states message -> one stamp'
        state = by_stamp.get(stamps.pop())
        if state is None:
            continue  # joint_states recorded by the probe only from its start
        assert {t.child_frame_id for t in msg.transforms} == {
            description.model.joints[name].child for name in state.name}
        q = np.array(joint_positions(state, description.joint_names))
        chain = static_transforms + core_transforms(msg)
        np.testing.assert_allclose(frame_pose(chain, 'world', 'tool0'),
                                   base @ description.model.fk(q), atol=1e-9, rtol=0)
        checked += 1
        moved.append(q)
    assert checked >= 30, f'only {checked} /tf messages matched a joint_states stamp'
    assert np.ptp(np.array(moved), axis=0).max() > 0.2, 'the arm did not move during the check'


def test_bad_joint_states_are_not_used_and_names_carry_the_prefix(ros_context, tmp_path):
    tf_message = tf_message_type()
    ros_context.start()
    probe = ros_context.probe()
    tf = probe.record('/tf', tf_message, TF)
    publisher = probe.publisher('joint_states', JointState)
    names = ['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6']
    with start_publisher(tmp_path, use_sim_time=False, frame_prefix='r1/', cameras=None,
                         joint_states_qos='reliable') as node:
        ros_context.wait_matched(probe)

        def send(seconds: float, positions, joint_names=names) -> None:
            msg = JointState(name=joint_names, position=[float(v) for v in positions])
            msg.header.stamp = Time(sec=int(seconds), nanosec=round(seconds % 1 * 1e9))
            publisher.publish(msg)

        send(100.0, [0.1] * 6)
        ros_context.spin_until(lambda: len(tf) == 1, what='/tf of the first joint_states')
        send(100.01, [0.2] * 6)  # 10 ms after the previous used message: too soon at 20 Hz
        send(100.5, [0.1, math.nan, 0.1, 0.1, 0.1, 0.1])  # not finite: refused whole
        send(100.6, [0.1] * 5)  # names and positions disagree: refused whole
        send(101.0, [0.3] * 6)
        ros_context.spin_until(lambda: len(tf) == 2, what='/tf of the last joint_states')
        ros_context.spin_for(0.3)
        log = node.wait_log("position of 'joint_2' is nan")
    assert [stamp_ns(r.msg.transforms[0].header.stamp) for r in tf] == [100 * 10**9, 101 * 10**9]
    assert 'joint_states not used, /tf keeps the last pose' in log
    for received in tf:
        assert [(t.header.frame_id, t.child_frame_id) for t in received.msg.transforms] == [
            ('r1/base_link', 'r1/link_1'), ('r1/link_1', 'r1/link_2'), ('r1/link_2', 'r1/link_3'),
            ('r1/link_3', 'r1/link_4'), ('r1/link_4', 'r1/link_5'), ('r1/link_5', 'r1/link_6')]


def test_a_camera_without_a_mount_ends_the_node_with_the_parameters_named(tmp_path):
    node = NodeProcess.for_node('state_publisher', 'state_publisher_node',
                                {'robot': ROBOT, 'cameras': ['ceiling_camera']}, tmp_path)
    with node:
        assert node.wait_exit() == 2
    assert 'set ceiling_camera.parent_frame, ceiling_camera.xyz and ceiling_camera.rpy' in \
        node.log_text()
