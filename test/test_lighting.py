"""The cameras' light (core/sim/lighting.py): the default renders today's images pixel for
pixel, the named conditions do what their names say, jitter is seeded per episode, and the
light never reaches physics.

Real PyBullet (DIRECT, TinyRenderer); no policy runs here.
"""
import numpy as np
import pybullet as pb
import pytest

from noetra_ros.core.errors import ConfigError, UnknownNameError
from noetra_ros.core.sim.lighting import (CONDITIONS, Lighting, lighting_condition,
                                          LightingJitter)
from noetra_ros.core.sim.world import SimWorld, WorldConfig

POLICY_CAMERAS = ('workspace_camera', 'wrist_camera')
SEEDS = (10000, 10003)


def render_without_light_arguments(world, name):
    """A camera image as world.py rendered it before lighting existed: getCameraImage given no
    light argument at all, so the renderer uses its built-in light."""
    spec = next(c for c in world.config.cameras if c.name == name)
    pos, quat = world.camera_pose(name)
    rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
    cid = world.client_id
    view = pb.computeViewMatrix(pos.tolist(), (pos + rot[:, 2]).tolist(), (-rot[:, 1]).tolist(),
                                physicsClientId=cid)
    proj = pb.computeProjectionMatrixFOV(spec.fov_deg, spec.width / spec.height, spec.near,
                                         spec.far, physicsClientId=cid)
    rgba = pb.getCameraImage(spec.width, spec.height, view, proj, shadow=0,
                             renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK,
                             physicsClientId=cid)[2]
    return np.asarray(rgba, dtype=np.uint8).reshape(spec.height, spec.width, 4)[:, :, :3]


def channel_means(config, seed):
    """camera -> mean (R, G, B) of its image at `seed`'s reset under `config`."""
    with SimWorld(config) as world:
        world.reset(seed)
        return {cam: world.render(cam).reshape(-1, 3).astype(float).mean(axis=0)
                for cam in POLICY_CAMERAS}


def test_default_lighting_renders_todays_images_pixel_for_pixel():
    assert WorldConfig().lighting == Lighting() == CONDITIONS['default']
    for seed in SEEDS:
        # The reference first, in a client that has never been given a light argument (the
        # renderer keeps one once given).
        with SimWorld(WorldConfig(seed=seed)) as world:
            before = {cam: render_without_light_arguments(world, cam) for cam in POLICY_CAMERAS}
            for cam in POLICY_CAMERAS:
                np.testing.assert_array_equal(world.render(cam), before[cam], err_msg=cam)
                assert before[cam].std() > 5.0  # a real scene, not a blank image


@pytest.mark.parametrize('name, low, high', [
    # Measured 0.850-0.852 and 0.697-0.699 (docs/results/lighting_conditions.txt): every lit
    # pixel scales by the brightness, less the integer truncation.
    ('darker_15', 0.82, 0.88),
    ('darker_30', 0.65, 0.75),
])
def test_darker_conditions_lower_the_mean_brightness_by_their_percentage(name, low, high):
    seed = SEEDS[0]
    reference = channel_means(WorldConfig(), seed)
    darker = channel_means(WorldConfig(lighting=lighting_condition(name)), seed)
    for cam in POLICY_CAMERAS:
        ratio = darker[cam].mean() / reference[cam].mean()
        assert low < ratio < high, (cam, ratio)


def test_tints_shift_the_channel_ratios_towards_their_colour():
    seed = SEEDS[0]
    reference = channel_means(WorldConfig(), seed)
    warm = channel_means(WorldConfig(lighting=CONDITIONS['warm']), seed)
    cool = channel_means(WorldConfig(lighting=CONDITIONS['cool']), seed)
    for cam in POLICY_CAMERAS:
        warm_ratio = warm[cam] / reference[cam]
        cool_ratio = cool[cam] / reference[cam]
        # Measured: warm R x1.09 B x0.89, cool the reverse (the tint acts on the directional
        # part of the shading only; the ambient part keeps the surface's colour).
        assert warm_ratio[0] > 1.04 and warm_ratio[2] < 0.96, (cam, warm_ratio)
        assert cool_ratio[0] < 0.96 and cool_ratio[2] > 1.04, (cam, cool_ratio)
        assert abs(warm_ratio[1] - 1.0) < 0.01 and abs(cool_ratio[1] - 1.0) < 0.01


def test_light_from_the_side_changes_the_shading_not_just_the_level():
    seed = SEEDS[0]
    with SimWorld(WorldConfig(seed=seed)) as default, \
            SimWorld(WorldConfig(seed=seed, lighting=CONDITIONS['side'])) as side:
        a = default.render('workspace_camera').astype(float).mean(axis=2)
        b = side.render('workspace_camera').astype(float).mean(axis=2)
    ratio = b / np.maximum(a, 1.0)
    # A uniform dimming would give one ratio everywhere. Measured: the table top (most of the
    # image) at 0.78, faces turned towards the new light brighter than before (up to 1.5),
    # others darker (0.6).
    assert ratio.max() > 1.2 and ratio.min() < 0.7


def test_lighting_never_changes_physics():
    seed, steps = SEEDS[1], 40
    configs = [WorldConfig(seed=seed),
               WorldConfig(seed=seed, lighting=CONDITIONS['darker_30'],
                           lighting_jitter=LightingJitter(brightness=(0.5, 1.5), colour=0.5))]
    traces = []
    for config in configs:
        with SimWorld(config) as world:
            episode = world.reset(seed)
            start = world.joint_state()[0][:len(world.joint_names)]
            target = start + np.linspace(0.1, -0.1, len(start))
            trace = []
            for step in range(steps):
                world.render('workspace_camera')   # rendering in between, as an episode does
                world.command_positions(target)
                world.command_gripper(0.02 if step > steps // 2 else 0.0)
                world.step()
                trace.append(np.concatenate(world.joint_state()
                                            + tuple(world.object_pose(n)[0]
                                                    for n in world.object_names)))
            traces.append((episode, np.array(trace)))
    (plain_episode, plain), (lit_episode, lit) = traces
    assert plain_episode == lit_episode
    assert np.abs(plain[-1] - plain[0]).max() > 0.05  # the arm did move
    np.testing.assert_array_equal(plain, lit)


def test_jitter_is_drawn_from_the_episode_seed_and_leaves_the_scene_alone():
    jitter = LightingJitter()
    base = CONDITIONS['default']
    assert jitter.sample(base, 5) == jitter.sample(base, 5)
    draws = [jitter.sample(base, seed) for seed in range(20)]
    assert len({d.brightness for d in draws}) == 20
    assert all(0.8 <= d.brightness <= 1.2 for d in draws)
    assert all(0.9 - 1e-9 <= c <= 1.1 + 1e-9 for d in draws for c in d.colour)
    with SimWorld(WorldConfig(lighting_jitter=jitter)) as jittered, \
            SimWorld(WorldConfig()) as plain:
        for seed in (11, 12):
            assert jittered.reset(seed) == plain.reset(seed)   # same scene, same task
            assert jittered.lighting == jitter.sample(base, seed)
            assert plain.lighting == base
        first = (jittered.reset(11), jittered.render('workspace_camera'))[1]
        jittered.reset(12)
        other = jittered.render('workspace_camera')
        # Back to seed 11: its own light again, not what seed 12 left in the renderer.
        jittered.reset(11)
        np.testing.assert_array_equal(jittered.render('workspace_camera'), first)
        assert not np.array_equal(other, first)


@pytest.mark.parametrize('kwargs, field', [
    ({'brightness': 0.0}, 'Lighting.brightness'),
    ({'brightness': float('nan')}, 'Lighting.brightness'),
    ({'brightness': '0.85'}, 'Lighting.brightness'),
    ({'colour': (1.0, 1.0)}, 'Lighting.colour'),
    ({'colour': (1.0, -0.1, 1.0)}, 'Lighting.colour'),
    ({'direction': (0.0, 0.0, 0.0)}, 'Lighting.direction'),
    ({'direction': (1.0, float('inf'), 1.0)}, 'Lighting.direction'),
    ({'ambient': -0.1}, 'Lighting.ambient'),
    ({'specular': 5.0}, 'Lighting.specular'),
])
def test_invalid_lighting_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        Lighting(**kwargs)


def test_invalid_jitter_world_settings_and_condition_names_are_refused():
    with pytest.raises(ConfigError, match=r'LightingJitter\.brightness'):
        LightingJitter(brightness=(1.2, 0.8))
    with pytest.raises(ConfigError, match=r'LightingJitter\.colour'):
        LightingJitter(colour=1.5)
    with pytest.raises(ConfigError, match=r'WorldConfig\.lighting'):
        WorldConfig(lighting='darker_30')
    with pytest.raises(ConfigError, match=r'WorldConfig\.lighting_jitter'):
        WorldConfig(lighting_jitter=(0.8, 1.2))
    with pytest.raises(UnknownNameError, match="'dim'.*darker_15"):
        lighting_condition('dim')


def test_sim_node_refuses_an_unknown_lighting_parameter_and_lights_its_world():
    from noetra_ros.sim_node import _build_world, CameraStream, PARAMETERS, SimNodeConfig

    assert PARAMETERS['lighting'][0] == 'default'
    values = dict(robot='fanuc_lrmate200id', driver='ros2_control', driver_namespace='',
                  command_controller='joint_trajectory_controller', joint_states_divisor=1,
                  observation_hz=0.0, mode='lockstep', real_time_factor=1.0, control_hz=20,
                  physics_hz=240, command_timeout_s=0.5, controller_joints=(),
                  driver_joint_names='urdf', joint_name_prefix='', lockstep_inputs=('arm',),
                  lockstep_timeout_s=2.0, lockstep_start_timeout_s=30.0,
                  cameras=(CameraStream('workspace_camera', 64, 48, 10.0),), episodes=0,
                  first_seed=0, episode_timeout_s=25.0, reset_pause_s=1.0,
                  publish_clock=True, wait_for_reset=False)
    with pytest.raises(ConfigError, match='parameter lighting'):
        SimNodeConfig(**values, lighting='dim')
    world = _build_world(SimNodeConfig(**values, lighting='warm'))
    try:
        assert world.lighting == CONDITIONS['warm']
    finally:
        world.close()
    world = _build_world(SimNodeConfig(**values))   # the parameter's default
    try:
        assert world.lighting == CONDITIONS['default']
    finally:
        world.close()
