"""RobotModel and RobotDescription against independent implementations (yourdfpy, PyBullet)
and published figures."""
from __future__ import annotations

import math

import numpy as np
import pybullet as pb
import pytest
import yourdfpy

from noetra_ros.core import robots
from noetra_ros.core.errors import ConfigError, ModelLoadError, UnknownNameError
from noetra_ros.core.joint_limits import JointLimits
from noetra_ros.core.robot_model import (
    load_robot_description, matrix_to_quaternion, quaternion_to_matrix, RobotDescription,
    RobotModel, rotation_error)

NAMES = robots.ROBOT_NAMES
FINGERS = ('gripper_left_finger_joint', 'gripper_right_finger_joint')
ELBOW = {'fanuc_lrmate200id': 'link_3', 'fanuc_crx10ia': 'J3_link', 'yaskawa_gp8': 'link_3',
         'yaskawa_hc10': 'link_3'}


@pytest.fixture(scope='module', params=NAMES)
def arm(request):
    """(name, RobotModel of the arm + gripper URDF)."""
    return request.param, RobotModel.from_urdf(robots.urdf_path(request.param, True))


def _random_configs(model, n, seed):
    rng = np.random.default_rng(seed)
    q = rng.uniform(model.lower, model.upper, size=(n, model.dof))
    fingers = rng.uniform(0.0, robots.GRIPPER_CLOSED, size=(n, 2))
    return q, fingers


def test_model_reads_joint_table(arm):
    name, model = arm
    spec = robots.robot_spec(name)
    assert model.joint_names == spec.joint_names
    assert model.extra_joint_names == FINGERS
    np.testing.assert_array_equal(model.lower, spec.lower)
    np.testing.assert_array_equal(model.upper, spec.upper)
    np.testing.assert_array_equal(model.velocity_limits, spec.velocity_limits)
    np.testing.assert_array_equal(model.effort_limits, spec.effort_limits)
    arm_only = RobotModel.from_urdf(robots.urdf_path(name, False))
    assert arm_only.joint_names == spec.joint_names and arm_only.extra_joint_names == ()


def test_fk_matches_yourdfpy(arm):
    name, model = arm
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, True), load_meshes=False)
    qs, fingers = _random_configs(model, 15, seed=1)
    links = [lk for lk in model.links if lk != 'base_link']
    for q, f in zip(qs, fingers):
        extra = dict(zip(FINGERS, f))
        urdf.update_cfg({**dict(zip(model.joint_names, q)), **extra})
        for link in links:
            np.testing.assert_allclose(model.fk(q, link, extra),
                                       urdf.get_transform(link, 'base_link'), atol=1e-6,
                                       err_msg=f'{name} {link}')


def test_fk_matches_pybullet_link_frames(arm):
    name, model = arm
    cid = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(robots.urdf_path(name, True)), useFixedBase=True,
                           physicsClientId=cid)
        infos = [pb.getJointInfo(body, i, physicsClientId=cid)
                 for i in range(pb.getNumJoints(body, physicsClientId=cid))]
        joint_index = {info[1].decode(): i for i, info in enumerate(infos)}
        qs, fingers = _random_configs(model, 10, seed=2)
        for q, f in zip(qs, fingers):
            extra = dict(zip(FINGERS, f))
            for joint, value in {**dict(zip(model.joint_names, q)), **extra}.items():
                pb.resetJointState(body, joint_index[joint], value, physicsClientId=cid)
            for i, info in enumerate(infos):
                link = info[12].decode()
                state = pb.getLinkState(body, i, computeForwardKinematics=True,
                                        physicsClientId=cid)
                rot = np.array(pb.getMatrixFromQuaternion(state[5])).reshape(3, 3)
                expected = model.fk(q, link, extra)
                np.testing.assert_allclose(state[4], expected[:3, 3], atol=1e-4, err_msg=link)
                np.testing.assert_allclose(rot, expected[:3, :3], atol=1e-4, err_msg=link)
    finally:
        pb.disconnect(cid)


def test_batched_fk_equals_single(arm):
    _name, model = arm
    qs, _ = _random_configs(model, 7, seed=3)
    batch = model.fk(qs, 'gripper_tcp')
    assert batch.shape == (7, 4, 4)
    for q, t in zip(qs, batch):
        np.testing.assert_allclose(t, model.fk(q, 'gripper_tcp'), atol=1e-12)


def test_jacobian_matches_finite_differences(arm):
    _name, model = arm
    qs, fingers = _random_configs(model, 5, seed=4)
    eps = 1e-6
    for q, f in zip(qs, fingers):
        extra = dict(zip(FINGERS, f))
        jac = model.jacobian(q, 'gripper_left_pad', extra)
        t0 = model.fk(q, 'gripper_left_pad', extra)
        numeric = np.zeros_like(jac)
        for i in range(model.dof):
            dq = np.zeros(model.dof)
            dq[i] = eps
            t1 = model.fk(q + dq, 'gripper_left_pad', extra)
            numeric[:3, i] = (t1[:3, 3] - t0[:3, 3]) / eps
            numeric[3:, i] = rotation_error(t1[:3, :3], t0[:3, :3]) / eps
        np.testing.assert_allclose(jac, numeric, atol=1e-5)


def test_jacobian_of_inner_link_has_zero_wrist_columns(arm):
    name, model = arm
    spec = robots.robot_spec(name)
    jac = model.jacobian(robots.home_positions(name), spec.links[2].name)  # upper arm link
    assert np.abs(jac[:, :2]).max() > 0.0
    np.testing.assert_array_equal(jac[:, 2:], 0.0)


def test_published_reach_within_one_percent(arm):
    """Reach = max horizontal distance of spec.reach_link from the J1 axis (see robots.py)."""
    name, model = arm
    spec = robots.robot_spec(name)
    reach = model.reach(spec.reach_link)
    assert reach == pytest.approx(spec.reach_m, rel=0.01)
    assert reach == pytest.approx(spec.reach_from_geometry_m, abs=5e-4)
    # Random configurations never exceed the quoted reach by more than the tolerance.
    qs, _ = _random_configs(model, 2000, seed=5)
    p = model.fk(qs, spec.reach_link)[:, :3, 3]
    assert np.hypot(p[:, 0], p[:, 1]).max() <= spec.reach_m * 1.01


def test_ik_round_trip(arm):
    name, model = arm
    qs, _ = _random_configs(model, 12, seed=6)
    home = robots.home_positions(name)
    for k, q in enumerate(qs):
        target = model.fk(q, 'gripper_tcp')
        sol, ok = model.ik(target[:3, 3], target[:3, :3], q_seed=home, link='gripper_tcp',
                           restarts=10, seed=k)
        assert ok, f'{name}: IK did not converge for q={q}'
        assert np.all(sol >= model.lower) and np.all(sol <= model.upper)
        reached = model.fk(sol, 'gripper_tcp')
        assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-3
        assert np.linalg.norm(rotation_error(target[:3, :3], reached[:3, :3])) < 1e-2


def test_ik_position_only_and_unreachable(arm):
    name, model = arm
    home = robots.home_positions(name)
    goal = model.fk(home)[:3, 3] + np.array([0.05, -0.04, -0.03])
    sol, ok = model.ik(goal, q_seed=home)
    assert ok and np.linalg.norm(model.fk(sol)[:3, 3] - goal) < 1e-3
    far = np.array([5.0, 0.0, 0.5])
    sol, ok = model.ik(far, q_seed=home, max_iters=50)
    assert not ok
    assert np.all(sol >= model.lower) and np.all(sol <= model.upper)


def test_home_pose_is_ready_for_table_top_pick(arm):
    name, model = arm
    home = robots.home_positions(name)
    assert np.all(home >= model.lower) and np.all(home <= model.upper)
    tool = model.fk(home)
    np.testing.assert_allclose(tool[:3, 3], robots.HOME_TOOL0_XYZ, atol=2e-3)
    np.testing.assert_allclose(tool[:3, 2], (0.0, 0.0, -1.0), atol=1e-3)  # pointing down
    tcp = model.fk(home, 'gripper_tcp')[:3, 3]
    assert 0.45 <= tcp[0] <= 0.6 and abs(tcp[1]) < 0.01
    elbow = model.fk(home, ELBOW[name])[:3, 3]
    assert elbow[2] > tool[2, 3] + 0.1  # elbow up: well above the wrist
    home[0] += 1.0
    assert robots.home_positions(name)[0] != home[0]  # a fresh copy each call


def test_bad_inputs_raise():
    model = RobotModel.from_urdf(robots.urdf_path('fanuc_lrmate200id', False))
    with pytest.raises(UnknownNameError, match='tool0'):
        model.fk(np.zeros(6), 'gripper_tcp')
    with pytest.raises(ConfigError, match='shape'):
        model.fk(np.zeros(5))
    with pytest.raises(ModelLoadError):
        RobotModel.from_urdf('/nonexistent/robot.urdf')
    with pytest.raises(ModelLoadError):
        RobotModel.from_urdf_string('<robot name="x"><link name="a"/>')
    with pytest.raises(ModelLoadError, match='limit'):
        RobotModel.from_urdf_string(
            '<robot name="x"><link name="base_link"/><link name="tool0"/>'
            '<joint name="j" type="revolute"><parent link="base_link"/><child link="tool0"/>'
            '</joint></robot>')


# ---------------------------------------------------------------- robot description
@pytest.mark.parametrize('name', NAMES)
def test_description_names_order_and_limits_equal_the_urdf(name):
    """Arm joints, their order and limits as an independent parser (yourdfpy) reads the file."""
    description = load_robot_description(name)
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, True), load_meshes=False)
    arm = tuple(n for n in urdf.actuated_joint_names if n not in FINGERS)
    assert description.joint_names == arm == robots.robot_spec(name).joint_names
    assert description.state_joint_names == arm + FINGERS
    limits = description.limits
    assert isinstance(limits, JointLimits) and limits.names == arm
    for k, joint_name in enumerate(arm):
        limit = urdf.joint_map[joint_name].limit
        assert (limits.lower[k], limits.upper[k], limits.velocity[k], limits.effort[k]) == (
            limit.lower, limit.upper, limit.velocity, limit.effort), joint_name
    # The chain runs base_link -> tool0 through every arm joint, in order.
    chain = description.arm_chain
    assert chain[0].parent == 'base_link' and chain[-1].child == 'tool0'
    assert tuple(j.name for j in chain if j.movable) == arm
    assert all(a.child == b.parent for a, b in zip(chain, chain[1:]))
    np.testing.assert_array_equal(description.home, robots.home_positions(name))


@pytest.mark.parametrize('name', NAMES)
def test_description_gripper_facts(name):
    gripper = load_robot_description(name).gripper
    spec = robots.gripper_spec()
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, True), load_meshes=False)
    assert gripper.joint_names == FINGERS == spec.joint_names
    for k, finger in enumerate(FINGERS):
        limit = urdf.joint_map[finger].limit
        assert (gripper.limits.lower[k], gripper.limits.upper[k]) == (limit.lower, limit.upper)
    assert (gripper.open_position, gripper.closed_position) == (
        robots.GRIPPER_OPEN, robots.GRIPPER_CLOSED)
    assert gripper.tcp_link == 'gripper_tcp' and gripper.mount_link == 'tool0'
    assert set(gripper.links) == {lk.name for lk in urdf.robot.links
                                  if lk.name.startswith('gripper_')}
    # The fingertips end fingertip_height below tool0 and the TCP sits at pad_centre_height.
    assert gripper.fingertip_beyond_tcp == pytest.approx(
        spec.fingertip_height - spec.pad_centre_height, abs=1e-12)


@pytest.mark.parametrize('name,with_gripper', [(n, g) for n in NAMES for g in (False, True)])
def test_link_indices_agree_with_pybullet(name, with_gripper):
    description = load_robot_description(name, with_gripper)
    cid = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(robots.urdf_path(name, with_gripper)), useFixedBase=True,
                           physicsClientId=cid)
        count = pb.getNumJoints(body, physicsClientId=cid)
        pybullet_links = {pb.getJointInfo(body, j, physicsClientId=cid)[12].decode(): j
                          for j in range(count)}
        pybullet_joints = {pb.getJointInfo(body, j, physicsClientId=cid)[1].decode(): j
                           for j in range(count)}
    finally:
        pb.disconnect(cid)
    assert dict(description.link_indices) == {**pybullet_links, 'base_link': -1}
    for joint in description.model.joints:
        assert description.joint_index(joint) == pybullet_joints[joint]
    with pytest.raises(UnknownNameError, match='no link'):
        description.link_index('elbow')


def test_description_is_read_once_and_cannot_be_changed():
    first = load_robot_description('yaskawa_gp8')
    assert load_robot_description('yaskawa_gp8') is first
    for array in (first.limits.lower, first.model.lower, first.model.velocity_limits,
                  first.home):
        with pytest.raises(ValueError):
            array[0] = 0.0
    assert load_robot_description('yaskawa_gp8', with_gripper=False).gripper is None


def test_description_refuses_a_urdf_that_disagrees_with_the_gripper_data(tmp_path):
    text = robots.urdf_path('fanuc_lrmate200id', True).read_text()
    wider = text.replace('upper="0.0425"', 'upper="0.05"')
    assert wider != text
    (tmp_path / 'wider.urdf').write_text(wider)
    with pytest.raises(ModelLoadError, match='gripper_left_finger_joint.*differs'):
        RobotDescription.from_urdf(tmp_path / 'wider.urdf', gripper=robots.gripper_spec())
    (tmp_path / 'no_fingers.urdf').write_text(
        text.replace('gripper_left_finger_joint', 'left_joint'))
    with pytest.raises(ModelLoadError, match='gripper_left_finger_joint'):
        RobotDescription.from_urdf(tmp_path / 'no_fingers.urdf', gripper=robots.gripper_spec())
    # A mesh on a gripper link leaves the fingertip reach unknown: refused, not guessed.
    meshed = text.replace('<geometry><box size="0.022 0.00635 0.0375"/></geometry>',
                          '<geometry><mesh filename="pad.stl"/></geometry>')
    assert meshed != text
    (tmp_path / 'meshed.urdf').write_text(meshed)
    with pytest.raises(ModelLoadError, match='mesh'):
        RobotDescription.from_urdf(tmp_path / 'meshed.urdf', gripper=robots.gripper_spec())


def test_supervisor_limits_are_the_description_limits():
    from noetra_ros.core.safety.limits import JointLimits as SafetyJointLimits
    assert SafetyJointLimits is JointLimits
    description = load_robot_description('fanuc_crx10ia')
    assert JointLimits.from_robot_model(description.model) == description.limits


def test_quaternion_conversions_round_trip():
    rng = np.random.default_rng(7)
    for _ in range(50):
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        rot = quaternion_to_matrix(quat)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rot, np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3),
                                   atol=1e-12)
        back = matrix_to_quaternion(rot)
        assert abs(abs(back @ quat) - 1.0) < 1e-12  # the same rotation (q or -q)
    # Half turns (trace -1) take the other branches of the conversion.
    for axis in np.eye(3):
        quat = np.append(axis, 0.0)
        back = matrix_to_quaternion(quaternion_to_matrix(quat))
        np.testing.assert_allclose(np.abs(back), np.abs(quat), atol=1e-12)
        assert abs(abs(back @ quat) - 1.0) < 1e-12
    assert math.isclose(np.linalg.det(quaternion_to_matrix((0.0, 0.0, 2.0, 0.0))), 1.0)
