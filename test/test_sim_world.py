"""SimWorld: configuration, determinism, command handling, limits, cameras and the F/T sensor.

Real PyBullet (DIRECT); one world per module, reset per test.
"""
import math

import numpy as np
import pybullet as pb
import pytest

from noetra_ros.core.errors import CommandError, ConfigError, UnknownNameError
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.robots import home_positions, ROBOT_NAMES
from noetra_ros.core.sim.world import CameraSpec, EXTRA_ARM_BASE_POSES, SimWorld, WorldConfig
from noetra_ros.core.trajectory import JointTrajectory

# RGB classification of the object colours as TinyRenderer shades them (lit faces).
_COLOUR_TEST = {
    'red': lambda p: p[0] > 120 and p[1] < 60 and p[2] < 60,
    'green': lambda p: p[1] > 100 and p[0] < 60 and p[2] < 60,
    'blue': lambda p: p[2] > 120 and p[0] < 60 and p[1] < 90,
    'yellow': lambda p: p[0] > 120 and p[1] > 110 and p[2] < 60,
}


@pytest.fixture(scope='module')
def world():
    w = SimWorld(WorldConfig())
    yield w
    w.close()


def _arm_q(world):
    return world.joint_state()[0][:len(world.joint_names)]


def _run(world, steps):
    for _ in range(steps):
        world.step()


# ---------------------------------------------------------------- configuration
def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match='physics_hz: 250 must be an integer multiple'):
        WorldConfig(physics_hz=250, control_hz=20)
    with pytest.raises(ConfigError, match='control_hz'):
        WorldConfig(control_hz=0)
    with pytest.raises(ConfigError, match='command_timeout_s'):
        WorldConfig(command_timeout_s=-1.0)
    with pytest.raises(ConfigError, match='duplicate camera names'):
        WorldConfig(cameras=(CameraSpec('cam'), CameraSpec('cam')))
    with pytest.raises(ConfigError, match='distractors'):
        WorldConfig(min_distractors=3, max_distractors=1)
    with pytest.raises(UnknownNameError, match='not a known robot'):
        WorldConfig(robot='no_such_arm')
    with pytest.raises(ConfigError, match='CameraSpec.mount'):
        CameraSpec('cam', mount='ceiling')
    with pytest.raises(ConfigError, match='CameraSpec.width'):
        CameraSpec('cam', width=3)
    assert CameraSpec('cam').optical_frame_id == 'cam_optical_frame'


def test_joint_names_and_limits_come_from_the_urdf(world):
    assert world.joint_names == tuple(f'joint_{i}' for i in range(1, 7))
    assert world.gripper_joint_names == ('gripper_left_finger_joint',
                                         'gripper_right_finger_joint')
    limits = world.arm_limits
    cid, robot = world.client_id, world.robot_id
    by_name = {pb.getJointInfo(robot, j, physicsClientId=cid)[1].decode():
               pb.getJointInfo(robot, j, physicsClientId=cid)
               for j in range(pb.getNumJoints(robot, physicsClientId=cid))}
    for k, name in enumerate(world.joint_names):
        assert limits['velocity'][k] == by_name[name][11]
        assert limits['effort'][k] == by_name[name][10]
    assert world.gripper_limits['upper'][0] == pytest.approx(0.0425)
    # Names, order and limits are the shared robot description's (read once from the URDF).
    description = load_robot_description(world.config.robot)
    assert world.description is description
    assert world.joint_names == description.joint_names
    assert world.gripper_joint_names == description.gripper.joint_names
    for key, value in (('lower', description.limits.lower), ('upper', description.limits.upper),
                       ('velocity', description.limits.velocity)):
        np.testing.assert_array_equal(limits[key], value)
    for k, name in enumerate(world.joint_names):
        assert (limits['lower'][k], limits['upper'][k]) == by_name[name][8:10]
        assert pb.getJointInfo(robot, description.joint_index(name), physicsClientId=cid)[
            1].decode() == name
    assert world.gripper_limits['upper'][0] == description.gripper.closed_position


def test_body_numbered_unlike_the_description_is_refused(world):
    """The sim addresses links by the description's indices, so it checks them at load: a
    description that numbers the body differently (here another arm's) is a ConfigError."""
    good = world.description
    try:
        world._description = load_robot_description('fanuc_crx10ia')
        with pytest.raises(ConfigError, match='PyBullet index 0 is joint .joint_1.'):
            world._check_numbering()
    finally:
        world._description = good
    world._check_numbering()  # the right description passes


# ---------------------------------------------------------------- determinism
def _scripted_run(world, seed):
    """A fixed command sequence touching every command path; returns the joint log."""
    world.reset(seed)
    q0 = _arm_q(world)
    log = []
    world.command_velocities(np.array([0.2, -0.1, 0.1, 0.3, -0.2, 0.4]))
    for _ in range(8):
        world.step()
        log.append(world.joint_state()[0])
    world.command_positions(q0 + 0.05)
    world.command_gripper(1.0, fraction=True)
    for _ in range(8):
        world.step()
        log.append(world.joint_state()[0])
    log.append(np.concatenate([world.object_pose(n)[0] for n in world.object_names]))
    return np.concatenate(log)


def test_same_seed_same_episode_bit_for_bit(world):
    first = _scripted_run(world, 11)
    _scripted_run(world, 12)  # a different episode in between leaves no trace
    second = _scripted_run(world, 11)
    assert np.array_equal(first, second)
    with SimWorld(WorldConfig(seed=11)) as other:  # a fresh client agrees too
        assert np.array_equal(first, _scripted_run(other, 11))


def test_reset_randomises_per_seed(world):
    def poses(seed):
        episode = world.reset(seed)
        return episode, np.array([world.object_pose(n)[0] for n in world.object_names])
    ep_a, a = poses(5)
    ep_b, b = poses(5)
    assert ep_a == ep_b and np.array_equal(a, b)
    # Different seeds: the target sits elsewhere (positions are continuous draws).
    targets = {tuple(np.round(poses(seed)[1][0], 6)) for seed in range(10)}
    assert len(targets) == 10
    world.reset(5)
    assert world.sim_time == 0.0
    assert world.episode.seed == 5
    np.testing.assert_allclose(_arm_q(world), home_positions(world.config.robot), atol=1e-4)
    assert ep_a.instruction.startswith('pick the ') and ep_a.target_place in ('left', 'right')
    assert ep_a.target_object == ep_a.objects[0].name
    assert ep_a.target_object not in ep_a.distractors


# ---------------------------------------------------------------- command handling
@pytest.mark.parametrize('bad', [
    lambda w, q: w.command_positions(q[:-1]),
    lambda w, q: w.command_positions(np.append(q, 0.0)),
    lambda w, q: w.command_positions(np.where(np.arange(q.size) == 2, math.nan, q)),
    lambda w, q: w.command_positions(np.full(q.size, math.inf)),
    lambda w, q: w.command_velocities([0.1] * (q.size - 1)),
    lambda w, q: w.command_velocities([math.nan] + [0.1] * (q.size - 1)),
    lambda w, q: w.command_gripper(math.nan),
    lambda w, q: w.command_positions(q, now=math.nan),
    lambda w, q: w.command_trajectory(JointTrajectory(('j1',), [1.0], [[0.0]])),
    lambda w, q: w.command_trajectory([[0.0] * q.size]),
], ids=['short', 'long', 'partial_nan', 'inf', 'vel_short', 'vel_nan', 'gripper_nan',
        'stamp_nan', 'traj_names', 'traj_type'])
def test_bad_command_rejected_and_arm_holds(world, bad):
    world.reset(0)
    q0 = _arm_q(world)
    world.command_positions(q0)
    _run(world, 4)
    with pytest.raises(CommandError):
        bad(world, q0)
    assert world.command_mode == 'position'
    _run(world, 10)
    assert np.max(np.abs(_arm_q(world) - q0)) < 1e-4
    assert world.gripper_position() == pytest.approx(0.0, abs=1e-4)


def test_error_message_names_the_problem(world):
    with pytest.raises(CommandError, match='position command: expected 6 values, got 5'):
        world.command_positions([0.0] * 5)
    with pytest.raises(CommandError, match=r'velocity command: non-finite value\(s\) at index '
                                           r'\[3\]'):
        world.command_velocities([0, 0, 0, math.nan, 0, 0])


def test_velocity_timeout_holds_the_arm(world):
    world.reset(0)
    dt = world.control_period
    timeout = world.config.command_timeout_s
    q0 = _arm_q(world)
    world.command_velocities([0.4, 0, 0, 0, 0, 0], now=world.sim_time)
    _run(world, 4)
    assert world.command_mode == 'velocity'
    # A rejected command does not refresh the watchdog.
    with pytest.raises(CommandError):
        world.command_velocities([math.nan] * 6)
    _run(world, int(round(timeout / dt)))
    assert world.command_mode == 'hold'
    moved = _arm_q(world)[0] - q0[0]
    # It moved for about the timeout, then stopped (one control period of slack).
    assert 0.4 * (timeout - dt) <= moved <= 0.4 * (timeout + dt)
    q_hold = _arm_q(world)
    _run(world, 20)
    assert np.max(np.abs(_arm_q(world) - q_hold)) < 2e-3
    assert np.max(np.abs(world.joint_state()[1][:6])) < 1e-3


def test_position_commands_hold_forever(world):
    world.reset(0)
    target = _arm_q(world) + np.array([0.1, -0.05, 0.05, 0.1, 0.1, 0.2])
    world.command_positions(target, now=0.0)
    _run(world, int(3 * world.config.command_timeout_s / world.control_period))
    assert world.command_mode == 'position'
    assert np.max(np.abs(_arm_q(world) - target)) < 1e-3


def test_velocity_and_effort_limits_respected(world):
    world.reset(0)
    lim = world.arm_limits
    q0 = _arm_q(world)
    # A far position target: every joint runs at its URDF limit, never faster.
    world.command_positions(q0 + np.array([1.0, -0.6, 0.6, 1.5, 0.8, 3.0]))
    peak_v, peak_e = np.zeros(6), np.zeros(6)
    for _ in range(30):
        world.step()
        _, v, e = world.joint_state()
        peak_v = np.maximum(peak_v, np.abs(v[:6]))
        peak_e = np.maximum(peak_e, np.abs(e[:6]))
    assert np.all(peak_v <= 1.05 * lim['velocity'])
    assert np.all(peak_e <= lim['effort'] * (1 + 1e-6))
    assert peak_v[5] > 0.9 * lim['velocity'][5]  # the limit was actually reached
    # A velocity command above the limit is clamped to it.
    world.reset(0)
    world.command_velocities(np.array([2.0, 0, 0, 0, 0, 0]) * lim['velocity'])
    world.step()
    world.step()
    assert abs(world.joint_state()[1][0]) == pytest.approx(lim['velocity'][0], rel=0.05)


def test_trajectory_executed_with_its_timing(world):
    world.reset(0)
    q0 = _arm_q(world)
    traj = JointTrajectory(tuple(reversed(world.joint_names)), [1.0, 2.0, 3.0],
                           np.vstack([q0 + 0.2, q0 - 0.1, q0 + 0.3])[:, ::-1])
    start = world.sim_time
    world.command_trajectory(traj, now=start)
    reference = traj.reordered(world.joint_names).anchored(q0)
    errors = []
    for _ in range(int(3.5 / world.control_period)):
        world.step()
        errors.append(np.max(np.abs(_arm_q(world) - reference.sample(world.sim_time - start)[0])))
    assert max(errors) < 0.01
    assert errors[-1] < 1e-3
    np.testing.assert_allclose(_arm_q(world), q0 + 0.3, atol=1e-3)


# ---------------------------------------------------------------- cameras
def _depth_along_axis(world, camera, point):
    pos, quat = world.camera_pose(camera)
    rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
    return float((rot.T @ (np.asarray(point) - pos))[2])


def test_cameras_render_shape_and_info(world):
    world.reset(0)
    for spec in world.config.cameras:
        image = world.render(spec.name)
        assert image.shape == (spec.height, spec.width, 3) and image.dtype == np.uint8
        assert image.std() > 5.0  # not a blank frame
        depth = world.render_depth(spec.name)
        assert depth.shape == (spec.height, spec.width) and depth.dtype == np.float32
        rgb, depth2 = world.render_rgbd(spec.name)
        assert np.array_equal(rgb, image) and np.array_equal(depth, depth2)
        assert np.all(depth > 0.0) and np.all(depth <= spec.far + 1e-3)
        info = world.camera_info(spec.name)
        assert info.frame_id == spec.optical_frame_id
        np.testing.assert_allclose(info.k, spec.k_matrix())
    with pytest.raises(UnknownNameError):
        world.render('no_camera')


@pytest.mark.parametrize('camera', ['scene_camera', 'wrist_camera'])
def test_cameras_see_objects_where_project_puts_them(world, camera):
    """The colour under each object's projected top face matches the object: checks the
    rendering, the camera pose, the intrinsics and SimWorld.project together."""
    checked = matched = 0
    for seed in range(4):
        world.reset(seed)
        image = world.render(camera)
        depth = world.render_depth(camera)
        for name in world.object_names:
            spec = world.object_spec(name)
            pos, _ = world.object_pose(name)
            top = pos + np.array([0.0, 0.0, spec.half_height])
            u, v = world.project(camera, top)
            row, col = int(round(v)), int(round(u))
            if not (0 <= row < image.shape[0] and 0 <= col < image.shape[1]):
                # The scene camera frames the whole object region; the wrist camera, parked
                # above it, may not.
                assert camera == 'wrist_camera', f'{name} projects outside the scene camera'
                continue
            checked += 1
            if _COLOUR_TEST[spec.colour](image[row, col].astype(int)):
                matched += 1
                assert depth[row, col] == pytest.approx(_depth_along_axis(world, camera, top),
                                                        abs=0.01)
    # The parked arm could hide an object; all but one must be seen where projected.
    assert checked >= 8 and matched >= checked - 1
    # A point behind the camera has no pixel.
    pos, quat = world.camera_pose(camera)
    behind = pos - np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)[:, 2]
    assert np.all(np.isnan(world.project(camera, behind)))


# ---------------------------------------------------------------- force / torque sensor
def _expected_wrench(world):
    """Static load of everything distal to the flange, in tool0, from PyBullet's own masses."""
    cid, robot = world.client_id, world.robot_id
    tool_pos, tool_quat = world.link_pose('tool0')
    rot = np.array(pb.getMatrixFromQuaternion(tool_quat)).reshape(3, 3)
    force, torque = np.zeros(3), np.zeros(3)
    for j in range(pb.getNumJoints(robot, physicsClientId=cid)):
        name = pb.getJointInfo(robot, j, physicsClientId=cid)[12].decode()
        if name.startswith('gripper') or name in ('flange', 'tool0'):
            mass = pb.getDynamicsInfo(robot, j, physicsClientId=cid)[0]
            com = np.array(pb.getLinkState(robot, j, physicsClientId=cid)[0])
            weight = np.array([0.0, 0.0, -9.81 * mass])
            force += weight
            torque += np.cross(com - tool_pos, weight)
    return np.concatenate([rot.T @ force, rot.T @ torque])


def test_wrench_reads_the_tool_load_in_tool0(world):
    world.reset(0)
    _run(world, 10)
    np.testing.assert_allclose(world.wrench(), _expected_wrench(world), atol=0.02)
    assert world.wrench()[2] > 8.0  # tool0 z points down at home: weight is +Fz
    # Tilted wrist: frames and lever arms are right when force and torque both change.
    world.command_positions(_arm_q(world) + np.array([0.3, 0.0, 0.0, 0.6, 0.5, 0.8]))
    _run(world, 40)
    measured = world.wrench()
    np.testing.assert_allclose(measured, _expected_wrench(world), atol=0.02)
    assert measured[1] < -4.0 and np.linalg.norm(measured[3:]) > 0.2


@pytest.mark.parametrize('robot', ROBOT_NAMES)
def test_every_arm_loads_holds_and_respects_its_limits(robot):
    with SimWorld(WorldConfig(robot=robot)) as arm:
        assert len(arm.joint_names) == 6
        q0 = _arm_q(arm)
        np.testing.assert_allclose(q0, home_positions(robot), atol=1e-3)
        _run(arm, 20)  # holding the ready pose against gravity
        assert np.max(np.abs(_arm_q(arm) - q0)) < 1e-3
        lim = arm.arm_limits
        arm.command_positions(q0 + 0.8)
        peak = np.zeros(6)
        for _ in range(20):
            arm.step()
            peak = np.maximum(peak, np.abs(arm.joint_state()[1][:6]))
        assert np.all(peak <= 1.05 * lim['velocity'])


# ---------------------------------------------------------------- extra arms
def test_extra_arms_stand_clear_hold_home_track_setpoints_and_come_back_on_reset():
    with SimWorld(WorldConfig(robot='yaskawa_gp8')) as cell:
        policy_view = cell.render('workspace_camera')
        arms = [cell.add_extra_arm(robot, xyz, yaw) for robot, (xyz, yaw) in
                zip(('yaskawa_hc10', 'yaskawa_gp8'), EXTRA_ARM_BASE_POSES)]
        assert cell.extra_arms == tuple(arms)
        # The default poses keep the policy's camera image as it was.
        np.testing.assert_array_equal(cell.render('workspace_camera'), policy_view)
        hc10 = arms[0]
        assert hc10.joint_names == tuple(f'joint_{i}' for i in range(1, 7))
        np.testing.assert_allclose(hc10.base_pose[:3, 3], EXTRA_ARM_BASE_POSES[0][0])
        # tool0 in front of its base: the base pose turns the arm (yaw pi faces -x).
        tool = hc10.base_pose @ hc10.description.model.fk(hc10.home, 'tool0')
        assert tool[0, 3] < EXTRA_ARM_BASE_POSES[0][0][0] - 0.3
        _run(cell, 20)
        for arm in arms:
            np.testing.assert_allclose(arm.measured()[0], arm.home, atol=1e-3)
        target = hc10.home + np.array([0.3, 0.0, 0.0, 0.0, 0.0, 0.4])
        hc10.setpoint(target, np.zeros(6))
        _run(cell, 40)
        np.testing.assert_allclose(hc10.measured()[0], target, atol=1e-3)
        main_before = _arm_q(cell)
        np.testing.assert_allclose(main_before, home_positions('yaskawa_gp8'), atol=1e-3)
        with pytest.raises(CommandError, match='yaskawa_hc10 setpoint positions'):
            hc10.setpoint([0.0] * 5)
        cell.reset(4)
        np.testing.assert_allclose(hc10.measured()[0], hc10.home, atol=1e-3)
        _run(cell, 20)
        np.testing.assert_allclose(hc10.measured()[0], hc10.home, atol=1e-3)


@pytest.mark.parametrize('robot, xyz, yaw, cause', [
    ('yaskawa_gp8', (0.0, 0.0, 0.0), 0.0, 'overlaps the main arm'),
    ('yaskawa_gp8', (0.45, 0.34, 0.0), 0.0, 'reaches over the left bin'),
    ('yaskawa_gp8', (0.85, 0.2, 0.0), math.pi, 'reaches over the object region'),
    ('yaskawa_gp8', (2.0, 0.0, 0.0), 0.0, 'off the table'),
    ('no_such_arm', (-0.2, 0.5, 0.0), 0.0, "extra arm 'no_such_arm' could not be loaded"),
    ('yaskawa_gp8', (float('nan'), 0.5, 0.0), 0.0, 'must be 3 finite numbers'),
])
def test_an_extra_arm_where_it_does_not_fit_is_refused_naming_why(world, robot, xyz, yaw, cause):
    world.reset(0)  # the main arm at home
    bodies = pb.getNumBodies(physicsClientId=world.client_id)
    with pytest.raises(ConfigError, match=cause):
        world.add_extra_arm(robot, xyz, yaw)
    assert world.extra_arms == ()
    assert pb.getNumBodies(physicsClientId=world.client_id) == bodies
