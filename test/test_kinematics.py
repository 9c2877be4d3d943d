"""RobotModel against independent implementations (yourdfpy, PyBullet) and published figures."""
from __future__ import annotations

import numpy as np
import pybullet as pb
import pytest
import yourdfpy

from noetra_ros.core import robots
from noetra_ros.core.errors import ConfigError, ModelLoadError, UnknownNameError
from noetra_ros.core.robot_model import RobotModel, rotation_error

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
