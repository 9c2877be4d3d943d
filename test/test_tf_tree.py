"""The transform tree (core/tf_tree.py) that state_publisher_node publishes, without ROS.

Every chain of per-joint transforms must compose to what RobotModel.fk gives (the stack's one
kinematics, with its fixed joints folded into precomputed constants: a different route to the
same numbers), the camera frames must be where SimWorld renders from, and robot_state_publisher's
rules (which joints, which messages, which names) must hold.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError, InputError, UnknownNameError
from noetra_ros.core.robot_model import load_robot_description, RobotModel
from noetra_ros.core.robots import ROBOT_NAMES
from noetra_ros.core.tf_tree import (CameraMount, frame_pose, look_at_rotation, matrix_rpy,
                                     pose_matrix, PublishGate, TransformTree)

RNG_SEED = 20261213
MS = 1_000_000  # nanoseconds


def random_state(description, rng):
    """Arm joints uniformly within their limits and finger joints within their travel."""
    lower, upper = description.limits.lower, description.limits.upper
    q = rng.uniform(lower, upper)
    fingers = {}
    if description.gripper is not None:
        fingers = {name: float(rng.uniform(description.gripper.open_position,
                                           description.gripper.closed_position))
                   for name in description.gripper.joint_names}
    return q, fingers


def all_transforms(tree, description, q, fingers):
    names = list(description.joint_names) + list(fingers)
    positions = list(q) + list(fingers.values())
    return tree.static_transforms() + tree.moving_transforms(names, positions)


@pytest.mark.parametrize('robot', ROBOT_NAMES)
def test_composed_transforms_equal_forward_kinematics(robot):
    description = load_robot_description(robot)
    model = description.model
    base = pose_matrix([0.1, -0.2, 0.75], [0.0, 0.0, 0.3])
    tree = TransformTree(model, root_in_world=base)
    rng = np.random.default_rng(RNG_SEED)
    links = [link for link in model.links if link != model.root]
    assert 'tool0' in links and 'gripper_tcp' in links
    for _ in range(25):
        q, fingers = random_state(description, rng)
        transforms = all_transforms(tree, description, q, fingers)
        world_tool = frame_pose(transforms, 'world', 'tool0')
        np.testing.assert_allclose(world_tool, base @ model.fk(q), atol=1e-12, rtol=0)
        for link in links:  # every link of the URDF, fingers and pads included
            np.testing.assert_allclose(frame_pose(transforms, 'base_link', link),
                                       model.fk(q, link, fingers), atol=1e-12, rtol=0,
                                       err_msg=link)


def test_every_joint_is_one_transform_and_fixed_ones_are_static():
    description = load_robot_description('fanuc_lrmate200id')
    model = description.model
    tree = TransformTree(model)
    static = tree.static_transforms()
    fixed = [j for j in model.joints.values() if not j.movable]
    assert [(t.parent, t.child) for t in static] == (
        [('world', model.root)] + [(j.parent, j.child) for j in fixed])
    assert set(tree.movable_joints) == set(description.state_joint_names)
    moving = tree.moving_transforms(list(description.state_joint_names),
                                    [0.1] * len(description.state_joint_names))
    assert [t.child for t in moving] == [model.joints[n].child
                                         for n in description.state_joint_names]


def test_joint_states_names_it_does_not_know_are_ignored_and_bad_values_refused():
    description = load_robot_description('yaskawa_gp8')
    tree = TransformTree(description.model)
    moving = tree.moving_transforms(['conveyor', 'joint_2', 'base_link-base'], [3.0, 0.4, 1.0])
    assert [(t.parent, t.child) for t in moving] == [('link_1', 'link_2')]
    with pytest.raises(InputError, match="position of 'joint_2' is nan"):
        tree.moving_transforms(['joint_1', 'joint_2'], [0.0, math.nan])
    with pytest.raises(InputError, match='names 2 joints but carries 1 positions'):
        tree.moving_transforms(['joint_1', 'joint_2'], [0.0])


def test_frame_prefix_names_every_link_frame_but_not_world_or_cameras():
    description = load_robot_description('fanuc_crx10ia')
    camera = CameraMount('wrist_camera_optical_frame', 'tool0', np.eye(4))
    tree = TransformTree(description.model, frame_prefix='r1/', cameras=[camera])
    static = tree.static_transforms()
    links = set(description.model.links)
    for transform in static + tree.moving_transforms(['joint_1'], [0.5]):
        for frame in (transform.parent, transform.child):
            if frame in ('world', 'wrist_camera_optical_frame'):
                continue
            assert frame.startswith('r1/') and frame[3:] in links, frame
    assert ('world', 'r1/base_link') in [(t.parent, t.child) for t in static]
    assert ('r1/tool0', 'wrist_camera_optical_frame') in [(t.parent, t.child) for t in static]


def test_bad_trees_are_refused_with_the_frame_named():
    model = load_robot_description('fanuc_lrmate200id').model
    with pytest.raises(ConfigError, match="hangs from 'shelf'"):
        TransformTree(model, cameras=[CameraMount('cam_optical_frame', 'shelf', np.eye(4))])
    with pytest.raises(ConfigError, match="'tool0' is named twice"):
        TransformTree(model, cameras=[CameraMount('tool0', 'world', np.eye(4))])
    with pytest.raises(ConfigError, match="world frame 'flange' is also a link"):
        TransformTree(model, world_frame='flange')
    with pytest.raises(ConfigError, match='not a rigid transform'):
        CameraMount('cam_optical_frame', 'world', np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ConfigError, match='does not connect'):
        frame_pose(TransformTree(model, world_frame='').static_transforms(), 'world', 'tool0')
    with pytest.raises(UnknownNameError, match='no joint'):
        model.joint_transform('joint_7')


def test_without_a_world_frame_the_tree_starts_at_the_root_link():
    model = load_robot_description('fanuc_lrmate200id').model
    static = TransformTree(model, world_frame='').static_transforms()
    assert 'world' not in {t.parent for t in static}


def test_fixed_camera_frame_follows_the_optical_convention():
    eye, target, up = (0.88, 0.0, 0.72), (0.44, 0.0, 0.0), (0.0, 0.0, 1.0)
    rot = look_at_rotation(eye, target, up)
    forward = np.subtract(target, eye) / np.linalg.norm(np.subtract(target, eye))
    np.testing.assert_allclose(rot[:, 2], forward, atol=1e-15)  # z along the optical axis
    assert abs(rot[:, 0] @ up) < 1e-15  # x (image right) is horizontal
    assert rot[:, 1] @ up < 0  # y (image down) points down
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)  # right-handed
    with pytest.raises(ConfigError, match='parallel'):
        look_at_rotation((0, 0, 1), (0, 0, 0), (0, 0, 1))


def test_roll_pitch_yaw_round_trip_including_gimbal_lock():
    rng = np.random.default_rng(RNG_SEED)
    for rpy in list(rng.uniform(-3.0, 3.0, (50, 3)) * [1, 0.5, 1]) + [[0.3, math.pi / 2, 0.0],
                                                                       [0.3, -math.pi / 2, 0.2]]:
        matrix = pose_matrix([0, 0, 0], rpy)
        np.testing.assert_allclose(pose_matrix([0, 0, 0], matrix_rpy(matrix)), matrix,
                                   atol=1e-12)


def test_camera_frames_are_where_the_simulator_renders_from():
    # The mounts are computed from the sim's CameraSpec without PyBullet; SimWorld computes its
    # camera poses with PyBullet (link state, Euler -> quaternion). Both must agree: to rounding
    # for the fixed cameras, and for the wrist camera to PyBullet's link-state accuracy (its
    # link frames differ from the numpy FK by about 1.5e-7 here).
    from noetra_ros.core.sim.world import default_cameras, ROBOT_BASE_POSITION, SimWorld
    world = SimWorld()
    try:
        description = load_robot_description(world.config.robot)
        mounts = [CameraMount.from_spec(spec) for spec in default_cameras()]
        assert {m.frame_id for m in mounts} == {f'{c}_optical_frame' for c in world.camera_names}
        assert {m.parent for m in mounts} == {'world', 'tool0'}
        tree = TransformTree(description.model, cameras=mounts,
                             root_in_world=pose_matrix(ROBOT_BASE_POSITION, [0, 0, 0]))
        for seed in (3, 4):
            world.reset(seed)
            for _ in range(5):  # the arm away from the exact home pose
                world.step()
            positions = world.joint_state()[0]
            transforms = (tree.static_transforms()
                          + tree.moving_transforms(list(description.state_joint_names),
                                                   list(positions)))
            for name in world.camera_names:
                position, quaternion = world.camera_pose(name)
                expected = pose_matrix(position, [0, 0, 0])
                expected[:3, :3] = _quaternion_matrix(quaternion)
                got = frame_pose(transforms, 'world', f'{name}_optical_frame')
                np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=name)
    finally:
        world.close()


def _quaternion_matrix(quaternion):
    from noetra_ros.core.robot_model import quaternion_to_matrix
    return quaternion_to_matrix(quaternion)


def test_publish_gate_follows_robot_state_publishers_rule():
    gate = PublishGate(20.0)
    assert gate.interval_ns == 50 * MS
    joints = ['joint_1', 'joint_2']
    assert gate.admit(joints, 50 * MS, now_ns=50 * MS)  # never published: counts from 0
    assert not gate.admit(joints, 99 * MS, now_ns=99 * MS)  # 49 ms later: too soon
    assert gate.admit(joints, 100 * MS, now_ns=100 * MS)  # exactly one interval later
    # A joint seen for the first time was last published at 0: the message is due.
    assert gate.admit(joints + ['joint_3'], 110 * MS, now_ns=110 * MS)
    # The clock went back (a reset sim clock): the publish times are forgotten.
    assert gate.admit(joints, 60 * MS, now_ns=60 * MS)
    # The interval is in whole milliseconds: 30 Hz -> 33 ms, as robot_state_publisher rounds.
    assert PublishGate(30.0).interval_ns == 33 * MS
    assert all(PublishGate(5.0, ignore_timestamp=True).admit(joints, t, t) for t in (1, 2, 3))
    for bad in (0.0, -1.0, 1000.5, math.nan):
        with pytest.raises(ConfigError, match='publish_frequency'):
            PublishGate(bad)


def test_joint_transform_is_the_fk_factor_of_one_joint():
    model = RobotModel.from_urdf_string(
        '<robot name="r"><link name="base_link"/><link name="a"/><link name="tool0"/>'
        '<joint name="slide" type="prismatic"><parent link="base_link"/><child link="a"/>'
        '<origin xyz="0 0 1" rpy="0 0 1.5707963267948966"/><axis xyz="1 0 0"/>'
        '<limit lower="0" upper="1" velocity="1" effort="1"/></joint>'
        '<joint name="turn" type="continuous"><parent link="a"/><child link="tool0"/>'
        '<axis xyz="0 0 1"/></joint></robot>')
    slide = model.joint_transform('slide', 0.5)
    # The shift is along the joint's own x axis, which the origin's yaw turned onto world y.
    np.testing.assert_allclose(slide[:3, 3], [0.0, 0.5, 1.0], atol=1e-15)
    turn = model.joint_transform('turn', math.pi / 2)
    np.testing.assert_allclose(turn[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(slide @ turn, model.fk([0.5, math.pi / 2]), atol=1e-15)
