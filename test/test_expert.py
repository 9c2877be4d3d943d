"""ScriptedExpert: kinematics, smoothness, complete seeded episodes, retries, determinism, and
the flange wrench while it holds an object. Real PyBullet for both the world and the expert."""
import math

import numpy as np
import pybullet as pb
import pytest

from noetra_ros.core.errors import CommandError, ConfigError, NoetraError
from noetra_ros.core.expert import (
    ExpertConfig, ExpertObservation, observe, run_episode, ScriptedExpert)
from noetra_ros.core.sim import scene
from noetra_ros.core.sim.task import SHAPE_MASSES_KG
from noetra_ros.core.sim.world import SimWorld, WorldConfig

ROBOT = 'fanuc_lrmate200id'


@pytest.fixture(scope='module')
def world():
    w = SimWorld(WorldConfig(robot=ROBOT))
    yield w
    w.close()


@pytest.fixture(scope='module')
def expert(world):
    e = ScriptedExpert(ROBOT, control_hz=world.config.control_hz)
    yield e
    e.close()


def _episode_log(world, expert, seed, steps):
    world.reset(seed)
    expert.reset()
    log = []
    for _ in range(steps):
        action = expert.act(observe(world))
        world.command_positions(action.joint_positions)
        world.command_gripper(action.gripper_position)
        world.step()
        log.append(np.concatenate([world.joint_state()[0], world.target_object_pose()[0]]))
    return np.array(log)


def test_config_validation():
    with pytest.raises(ConfigError, match='speed_fraction'):
        ExpertConfig(speed_fraction=1.5)
    with pytest.raises(ConfigError, match='close_min_s'):
        ExpertConfig(close_min_s=2.0, close_max_s=1.0)
    with pytest.raises(ConfigError, match='control_hz'):
        ScriptedExpert(ROBOT, control_hz=0.0)


def test_ik_round_trip_and_unreachable(expert, world):
    seed = world.joint_state()[0][:6] if world.sim_time >= 0 else None
    quat = np.array(pb.getQuaternionFromEuler([math.pi, 0.0, 0.4]))
    for target in ([0.45, 0.1, 0.05], [0.35, -0.15, 0.2], [0.5, 0.3, 0.15]):
        q = expert.inverse(np.array(target), quat, seed)
        assert q is not None
        pos, achieved = expert.forward(q)
        np.testing.assert_allclose(pos, target, atol=2e-3)
        assert abs(np.dot(achieved, quat)) > math.cos(0.02 / 2)
        assert np.all(q >= world.arm_limits['lower']) and np.all(q <= world.arm_limits['upper'])
    assert expert.inverse(np.array([2.5, 0.0, 0.2]), quat, seed) is None


def test_expert_completes_seeded_episodes(world, expert):
    bodies = pb.getNumBodies(physicsClientId=world.client_id)
    for seed in (0, 1, 2):
        result = run_episode(world, expert, seed)
        assert result.success, result
        assert result.expert_phase == 'done'
        assert result.sim_time < world.config.episode_timeout_s
    # The expert has its own client: the world gained no bodies from it.
    assert pb.getNumBodies(physicsClientId=world.client_id) == bodies


def test_commands_are_smooth_and_within_speed_fraction(world, expert):
    world.reset(3)
    expert.reset()
    vmax = world.arm_limits['velocity']
    limit = expert.config.speed_fraction * vmax * world.control_period
    previous, phases = None, set()
    while not expert.done and world.sim_time < 30.0:
        action = expert.act(observe(world))
        phases.add(action.phase)
        if previous is not None:
            assert np.all(np.abs(action.joint_positions - previous) <= limit * 1.001)
        previous = action.joint_positions
        world.command_positions(action.joint_positions)
        world.command_gripper(action.gripper_position)
        world.step()
    assert {'approach', 'descend', 'close', 'lift', 'transfer', 'lower', 'release',
            'retreat'} <= phases
    assert world.task_status().success


def test_same_seed_same_expert_episode(world, expert):
    first = _episode_log(world, expert, 4, 120)
    second = _episode_log(world, expert, 4, 120)
    assert np.array_equal(first, second)
    # The object was picked up in that window, so contacts were exercised.
    assert first[:, -1].max() > first[0, -1] + 0.05


def test_observation_validated(expert, world):
    world.reset(0)
    expert.reset()
    good = observe(world)
    bad = ExpertObservation(good.joint_positions, good.gripper_position,
                            np.array([math.nan, 0.0, 0.0]), good.target_orientation,
                            good.place_position)
    with pytest.raises(CommandError, match='target_position'):
        expert.act(bad)
    short = ExpertObservation(good.joint_positions[:5], good.gripper_position,
                              good.target_position, good.target_orientation,
                              good.place_position)
    with pytest.raises(CommandError, match='joint_positions'):
        expert.act(short)
    # The same observation given in parts (as the expert node passes it).
    expert.reset()
    action = expert.act(good.joint_positions, good.gripper_position,
                        (good.target_position, good.target_orientation),
                        (good.place_position, good.place_orientation))
    assert action.gripper == action.gripper_position == expert.gripper_open_position
    assert action.joint_positions.shape == (len(expert.joint_names),)
    assert expert.gripper_joint_names == world.gripper_joint_names


def test_missed_grasp_is_retried_then_given_up(world):
    """A target pose where no object is: the gripper closes on nothing each time."""
    expert = ScriptedExpert(ROBOT, control_hz=world.config.control_hz,
                            config=ExpertConfig(max_retries=1))
    try:
        world.reset(0)
        phases = []
        while not expert.done and world.sim_time < 30.0:
            obs = observe(world)
            ghost = ExpertObservation(obs.joint_positions, obs.gripper_position,
                                      np.array([0.27, 0.0, 0.02]), np.array([0, 0, 0, 1.0]),
                                      obs.place_position)
            action = expert.act(ghost)
            if not phases or phases[-1] != action.phase:
                phases.append(action.phase)
            world.command_positions(action.joint_positions)
            world.command_gripper(action.gripper_position)
            world.step()
        assert expert.failed and 'closed on nothing' in expert.failure_reason
        assert phases.count('close') == 2 and 'backoff' in phases
    finally:
        expert.close()


def test_wrench_changes_when_the_gripper_holds_an_object(world, expert):
    world.reset(1)
    expert.reset()
    world.step()
    empty = world.wrench()
    held = None
    while world.sim_time < 30.0:
        action = expert.act(observe(world))
        if action.phase == 'transfer':  # lift finished and settled, object in the fingers
            held = world.wrench()
            break
        world.command_positions(action.joint_positions)
        world.command_gripper(action.gripper_position)
        world.step()
    assert held is not None
    mass = SHAPE_MASSES_KG[world.object_spec(world.episode.target_object).shape]
    # tool0 z points down: the held weight adds +m g along tool0 z.
    assert held[2] - empty[2] == pytest.approx(mass * 9.81, abs=0.15)


def test_wrench_responds_to_pressing_on_the_table(world, expert):
    """Fingertips driven 9 mm into the table top: the table pushes back along -tool z."""
    world.reset(0)
    world.step()
    free = world.wrench()
    down = np.array(pb.getQuaternionFromEuler([math.pi, 0.0, 0.0]))
    tip = expert.fingertip_reach
    table_z = scene.TABLE.top_z
    q = expert.inverse(np.array([0.27, 0.0, table_z + tip - 0.009]), down,
                       world.joint_state()[0][:6])
    assert q is not None
    world.command_positions(q)
    for _ in range(40):
        world.step()
    pressed = world.wrench()
    assert pressed[2] < free[2] - 5.0
    assert world.tcp_pose()[0][2] > table_z + tip - 0.009  # the table stopped the tool short


@pytest.mark.parametrize('robot', ['fanuc_crx10ia', 'yaskawa_gp8', 'yaskawa_hc10'])
def test_expert_works_on_the_other_arms(robot):
    with SimWorld(WorldConfig(robot=robot)) as arm:
        other = ScriptedExpert(robot, control_hz=arm.config.control_hz)
        try:
            result = run_episode(arm, other, 7)
        finally:
            other.close()
    assert result.success, result


@pytest.mark.parametrize('symmetry_deg, object_offset_deg, expected_offset_deg', [
    (180.0, 100.0, -80.0),     # half-turn symmetric (a block): the closer of the two ends
    (180.0, 30.0, 30.0),
    (90.0, 80.0, -10.0),       # quarter-turn symmetric (a cube): at most 45 deg of wrist turn
    (90.0, -50.0, 40.0),
    (0.0, 70.0, 0.0),          # round: the natural wrist angle, whatever the sampled yaw
])
def test_grasp_yaw_uses_the_object_symmetry(symmetry_deg, object_offset_deg,
                                            expected_offset_deg):
    """Grasps that look the same in an image get the same wrist angle, so demonstrations of
    visually identical scenes agree (a block turned by 180 deg is the same block)."""
    from noetra_ros.core.expert import grasp_yaw

    target = np.array([0.45, 0.10, 0.02])
    reference = math.atan2(target[1], target[0])
    theta = grasp_yaw(target, reference + math.radians(object_offset_deg),
                      math.radians(symmetry_deg))
    assert math.degrees(theta - reference) == pytest.approx(expected_offset_deg, abs=1e-6)


def test_expert_rejects_a_bad_symmetry(world, expert):
    world.reset(0)
    expert.reset()
    obs = observe(world)
    bad = ExpertObservation(obs.joint_positions, obs.gripper_position, obs.target_position,
                            obs.target_orientation, obs.place_position,
                            grasp_symmetry_rad=float('nan'))
    with pytest.raises(NoetraError, match="grasp_symmetry_rad"):
        expert.act(bad)
