"""Generated URDFs: up to date, parseable by independent tools, true to the published data."""
from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pybullet as pb
import pytest
import yourdfpy

from noetra_ros.core import paths, robots
from noetra_ros.core.errors import ConfigError, UnknownNameError

REPO = pathlib.Path(__file__).resolve().parents[1]
GRIPPER_JOINTS = ('gripper_left_finger_joint', 'gripper_right_finger_joint')

# Published joint tables transcribed independently of robots.py (degrees, deg/s, N m), from the
# `joints:` tables of the reference facts (ROS-I / Yaskawa / FANUC descriptions); LR Mate efforts
# are FANUC's official figures because the ROS-I model has none.
PUBLISHED = {
    'fanuc_lrmate200id': dict(
        names=('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6'),
        lower=(-170, -100, -70, -190, -125, -360), upper=(170, 145, 205, 190, 125, 360),
        velocity=(450, 380, 520, 550, 545, 1000), effort=(500, 500, 200, 70, 40, 20)),
    'fanuc_crx10ia': dict(
        names=('J1', 'J2', 'J3', 'J4', 'J5', 'J6'),
        lower=(-190, -179.9, -71, -190, -179.9, -225), upper=(190, 179.9, 251, 190, 179.9, 225),
        velocity=(120, 120, 180, 180, 180, 180), effort=(400, 400, 200, 60, 60, 60)),
    'yaskawa_gp8': dict(
        names=('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6'),
        lower=(-170, -65, -70, -190, -135, -360), upper=(170, 145, 190, 190, 135, 360),
        velocity=(455, 385, 520, 550, 550, 1000),
        effort=(150.92, 176.4, 107.56, 55.86, 32.68, 22.54)),
    'yaskawa_hc10': dict(
        names=('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6'),
        lower=(-180, -180, -5, -180, -180, -180), upper=(180, 180, 355, 180, 180, 180),
        velocity=(130, 130, 180, 180, 250, 250),
        effort=(368.48, 368.48, 141.12, 39.2, 31.36, 31.36)),
}
VARIANTS = [(name, g) for name in robots.ROBOT_NAMES for g in (False, True)]


def _load_generator():
    spec = importlib.util.spec_from_file_location('generate_urdfs',
                                                  REPO / 'tools' / 'generate_urdfs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_urdfs_match_generator(tmp_path):
    written = _load_generator().generate(tmp_path)
    assert len(written) == 2 * len(robots.ROBOT_NAMES)
    for path in written:
        committed = REPO / 'urdf' / path.name
        assert committed.is_file(), f'{committed} missing; run tools/generate_urdfs.py'
        assert committed.read_bytes() == path.read_bytes(), \
            f'{committed.name} differs from the generator output; rerun tools/generate_urdfs.py'


def test_generation_is_deterministic(tmp_path):
    gen = _load_generator()
    first = {p.name: p.read_bytes() for p in gen.generate(tmp_path / 'a')}
    second = {p.name: p.read_bytes() for p in gen.generate(tmp_path / 'b')}
    assert first == second


@pytest.mark.parametrize('name', robots.ROBOT_NAMES)
def test_spec_matches_published_table(name):
    spec, pub = robots.robot_spec(name), PUBLISHED[name]
    assert spec.joint_names == pub['names']
    np.testing.assert_allclose(spec.lower, np.radians(pub['lower']), atol=1e-4)
    np.testing.assert_allclose(spec.upper, np.radians(pub['upper']), atol=1e-4)
    np.testing.assert_allclose(spec.velocity_limits, np.radians(pub['velocity']), atol=2e-3)
    np.testing.assert_allclose(spec.effort_limits, pub['effort'])


@pytest.mark.parametrize('name,with_gripper', VARIANTS)
def test_yourdfpy_parses_with_expected_joints(name, with_gripper):
    spec = robots.robot_spec(name)
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, with_gripper), load_meshes=False)
    assert urdf.validate()
    expected = spec.joint_names + (GRIPPER_JOINTS if with_gripper else ())
    assert tuple(urdf.actuated_joint_names) == expected
    for js in spec.joints:
        joint = urdf.joint_map[js.name]
        assert joint.type == 'revolute'
        assert (joint.parent, joint.child) == (js.parent, js.child)
        np.testing.assert_allclose(joint.axis, js.axis)
        np.testing.assert_allclose(joint.origin[:3, 3], js.xyz)
        np.testing.assert_allclose(
            [joint.limit.lower, joint.limit.upper, joint.limit.velocity, joint.limit.effort],
            [js.lower, js.upper, js.velocity, js.effort])
    for frame in ('base_link', 'base', 'flange', 'tool0'):
        assert frame in urdf.link_map


@pytest.mark.parametrize('name,with_gripper', VARIANTS)
def test_tool0_is_flange_turned_z_out(name, with_gripper):
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, with_gripper), load_meshes=False)
    urdf.update_cfg(np.zeros(len(urdf.actuated_joint_names)))
    flange_to_tool0 = urdf.get_transform('tool0', 'flange')
    expected = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], dtype=float)  # rpy pi, -pi/2, 0
    np.testing.assert_allclose(flange_to_tool0[:3, :3], expected, atol=1e-9)
    np.testing.assert_allclose(flange_to_tool0[:3, 3], 0.0, atol=1e-12)


@pytest.mark.parametrize('name,with_gripper', VARIANTS)
def test_masses_and_inertias_are_physical(name, with_gripper):
    spec = robots.robot_spec(name)
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, with_gripper), load_meshes=False)
    total = 0.0
    for link in urdf.robot.links:
        assert link.inertial is not None, f'{link.name} lacks <inertial>'
        mass = link.inertial.mass
        total += mass
        if mass == 0.0:
            assert link.collisions == [] and link.visuals == [], f'massless {link.name} has shape'
            continue
        inertia = link.inertial.inertia
        np.testing.assert_allclose(inertia, inertia.T)
        eig = np.linalg.eigvalsh(inertia)
        assert eig.min() > 0.0, f'{name}: {link.name} inertia not positive definite'
        a, b, c = eig
        assert a + b >= c and a + c >= b and b + c >= a, f'{link.name} violates triangle rule'
        assert len(link.collisions) == 1 and len(link.visuals) == 1
    gripper_mass = robots.gripper_spec().mass if with_gripper else 0.0
    assert total == pytest.approx(spec.total_mass + gripper_mass, abs=1e-9)
    assert len(urdf.robot.materials) >= 1


@pytest.mark.parametrize('name', robots.ROBOT_NAMES)
def test_link_masses_follow_sources(name):
    spec = robots.robot_spec(name)
    masses = {lk.name: lk.mass for lk in spec.links}
    if name == 'fanuc_lrmate200id':
        assert spec.total_mass == pytest.approx(25.0, abs=0.01)  # sum of official FANUC links
    elif name == 'fanuc_crx10ia':
        assert spec.total_mass == pytest.approx(38.03, abs=0.01)
    elif name == 'yaskawa_gp8':
        assert spec.total_mass == pytest.approx(32.0, abs=0.01)  # fitted to the datasheet 32 kg
    else:  # HC10: a stated assumption split by collision-mesh volume
        assert spec.total_mass == pytest.approx(47.0, abs=0.01)
        assert masses['link_2'] == pytest.approx(0.419 * 47.0, abs=1e-3)


@pytest.mark.parametrize('name,with_gripper', VARIANTS)
def test_pybullet_loads_with_same_joints_and_limits(name, with_gripper):
    spec = robots.robot_spec(name)
    cid = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(robots.urdf_path(name, with_gripper)), useFixedBase=True,
                           physicsClientId=cid)
        infos = [pb.getJointInfo(body, i, physicsClientId=cid)
                 for i in range(pb.getNumJoints(body, physicsClientId=cid))]
        movable = [info for info in infos if info[2] != pb.JOINT_FIXED]
        names = tuple(info[1].decode() for info in movable)
        assert names == spec.joint_names + (GRIPPER_JOINTS if with_gripper else ())
        for info, js in zip(movable, spec.joints):
            assert info[2] == pb.JOINT_REVOLUTE
            np.testing.assert_allclose([info[8], info[9], info[10], info[11]],
                                       [js.lower, js.upper, js.effort, js.velocity])
            assert info[12].decode() == js.child
        if with_gripper:
            g = robots.gripper_spec()
            for info in movable[-2:]:
                assert info[2] == pb.JOINT_PRISMATIC
                np.testing.assert_allclose([info[8], info[9], info[10], info[11]],
                                           [0.0, g.stroke_per_finger, g.effort, g.velocity])
        links = {info[12].decode() for info in infos}
        assert {'flange', 'tool0'} <= links
        # Frames must be massless in PyBullet too (no 1 kg default).
        for i, info in enumerate(infos):
            if info[12].decode() in ('base', 'flange', 'tool0', 'gripper_tcp'):
                assert pb.getDynamicsInfo(body, i, physicsClientId=cid)[0] == 0.0
    finally:
        pb.disconnect(cid)


@pytest.mark.parametrize('name', robots.ROBOT_NAMES)
def test_gripper_geometry(name):
    g = robots.gripper_spec()
    assert g.stroke_per_finger * 2 == pytest.approx(0.085)
    urdf = yourdfpy.URDF.load(robots.urdf_path(name, True), load_meshes=False)
    pads = {lk.name: lk for lk in urdf.robot.links if lk.name.endswith('_pad')}
    for pad in pads.values():
        np.testing.assert_allclose(pad.collisions[0].geometry.box.size, (0.022, 0.00635, 0.0375))

    def inner_gap(value):
        urdf.update_cfg({**{j: 0.0 for j in urdf.actuated_joint_names},
                         **{j: value for j in GRIPPER_JOINTS}})
        left = urdf.get_transform('gripper_left_pad', 'tool0')[:3, 3]
        right = urdf.get_transform('gripper_right_pad', 'tool0')[:3, 3]
        tcp = urdf.get_transform('gripper_tcp', 'tool0')[:3, 3]
        np.testing.assert_allclose(tcp, (0.0, 0.0, 0.13), atol=1e-12)
        np.testing.assert_allclose((left + right) / 2, tcp, atol=1e-12)  # tcp between pads
        assert left[1] > right[1]  # closing along tool0 y
        return left[1] - right[1] - g.pad_size[1]

    assert inner_gap(robots.GRIPPER_OPEN) == pytest.approx(0.085)
    assert inner_gap(robots.GRIPPER_CLOSED) == pytest.approx(0.0, abs=1e-12)
    masses = [lk.inertial.mass for lk in urdf.robot.links if lk.name.startswith('gripper_')]
    assert sum(masses) == pytest.approx(0.925)


def test_urdf_path_finds_every_file():
    for name, with_gripper in VARIANTS:
        path = robots.urdf_path(name, with_gripper)
        assert path.is_file()
        assert path.name == (f'{name}_gripper.urdf' if with_gripper else f'{name}.urdf')
        assert path.parent == paths.urdf_dir() == robots.urdf_dir()


def test_one_lookup_of_the_data_folders():
    """Run from the checkout, every data folder is the checkout's (never a stale install)."""
    from noetra_ros.bringup import cells_dir, share_dir
    assert paths.share_dir() == share_dir() == REPO
    assert paths.urdf_dir() == REPO / 'urdf'
    assert paths.config_dir('safety') == REPO / 'config' / 'safety'
    assert cells_dir() == paths.config_dir('cells') == REPO / 'config' / 'cells'
    assert paths.models_dir() == REPO / 'models'
    assert paths.checkout_test_data_dir() == REPO / 'test' / 'data'
    with pytest.raises(ConfigError, match='no_such_folder'):
        paths.config_dir('no_such_folder')


def test_installed_package_uses_the_ament_share_directory(tmp_path, monkeypatch):
    """Not run from a checkout: the share directory the ament index names, else a clear error."""
    monkeypatch.setattr(paths, 'SOURCE_TREE', tmp_path / 'site-packages')
    prefix = tmp_path / 'install'
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    with pytest.raises(ConfigError, match='not a source checkout and the package is not installed'):
        paths.share_dir()
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'noetra_ros'
    marker.parent.mkdir(parents=True)
    marker.write_text('')
    (prefix / 'share' / 'noetra_ros' / 'urdf').mkdir(parents=True)
    assert paths.share_dir() == prefix / 'share' / 'noetra_ros'
    assert paths.urdf_dir() == prefix / 'share' / 'noetra_ros' / 'urdf'
    with pytest.raises(ConfigError, match='models'):
        paths.models_dir()  # not installed there


def test_resolve_data_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_data_path('urdf/yaskawa_gp8.urdf') == REPO / 'urdf' / 'yaskawa_gp8.urdf'
    (tmp_path / 'urdf').mkdir()
    (tmp_path / 'urdf' / 'yaskawa_gp8.urdf').write_text('mine')
    # A file found from the working directory wins; absolute paths are taken as given.
    assert paths.resolve_data_path('urdf/yaskawa_gp8.urdf') == pathlib.Path(
        'urdf/yaskawa_gp8.urdf')
    assert paths.resolve_data_path(tmp_path / 'urdf') == tmp_path / 'urdf'
    with pytest.raises(ConfigError, match=r"model file 'models/nope.onnx' not found.*models"):
        paths.resolve_data_path('models/nope.onnx', 'model file')
    with pytest.raises(ConfigError, match='does not exist'):
        paths.resolve_data_path(tmp_path / 'nope.onnx')
    with pytest.raises(ConfigError, match='empty'):
        paths.resolve_data_path('')


@pytest.mark.parametrize('call', [robots.robot_spec, robots.home_positions,
                                  lambda n: robots.urdf_path(n, True)])
def test_unknown_robot_names_the_known_ones(call):
    with pytest.raises(UnknownNameError) as info:
        call('fanuc_m2000')
    message = str(info.value)
    assert 'fanuc_m2000' in message
    for known in robots.ROBOT_NAMES:
        assert known in message


def test_unknown_gripper_raises():
    with pytest.raises(UnknownNameError, match='parallel_gripper_2f85'):
        robots.gripper_spec('suction_cup')


def test_spec_validation_names_the_field():
    with pytest.raises(ConfigError, match='lower'):
        robots.JointSpec('j', 'a', 'b', (0, 0, 0), (0, 0, 1), 1.0, -1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match='mass'):
        robots.LinkSpec('l', 0.0, ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ConfigError, match='axis'):
        robots.JointSpec('j', 'a', 'b', (0, 0, 0), (0, 0, 2), -1.0, 1.0, 1.0, 1.0)
    assert math.isclose(robots.GRIPPER_CLOSED, 0.0425)
