"""Depth aligned to colour, without ROS: the `depth` input kind of the policy contract, the
16UC1 / 32FC1 entries of the one encoding table, the depth preprocessing (metres, invalid
pixels, nearest-pixel resize), the same-capture rule of the aligner and the simulated depth the
sim node and the in-process evaluation share (docs/POLICY_CONTRACT.md, docs/CAMERAS.md).
"""
import math

import cv2
import numpy as np
import onnx
import pytest
import yaml

from noetra_ros.core.errors import ContractError, InputError
from noetra_ros.core.images import (DEPTH_ENCODINGS, depth_to_metres, ENCODINGS, image_view,
                                    metres_to_depth_mm, pack_image, render_colour_and_depth)
from noetra_ros.core.policy.alignment import InputAligner
from noetra_ros.core.policy.contract import (contract_from_dict, contract_from_yaml, DepthInput,
                                             depth_source, ImageInput, validate_against_model)
from noetra_ros.core.policy.preprocess import (crop_box, depth_to_tensor, frame_to_tensor,
                                               ImageFrame, image_to_tensor)
from noetra_ros.core.policy.runtime import build_toy_model, PolicyRuntime

JOINTS = [f'joint_{i}' for i in range(1, 7)]
SCENE_DEPTH = 'scene_camera/aligned_depth_to_color'


def depth_spec(**overrides):
    fields = dict(name='depth_scene', camera='scene_camera', height=4, width=4,
                  min_depth_m=0.2, max_depth_m=2.0)
    fields.update(overrides)
    return DepthInput(**fields)


def rgbd_contract_data(**depth_overrides):
    """Colour and depth of the scene camera, the joint state, an instruction, a chunk."""
    depth = {'name': 'depth_scene', 'kind': 'depth', 'camera': 'scene_camera', 'height': 24,
             'width': 32, 'min_depth_m': 0.1, 'max_depth_m': 3.0, 'validity_mask': True,
             'mean': [1.0], 'std': [0.5]}
    depth.update(depth_overrides)
    return {
        'contract_version': 1, 'name': 'rgbd', 'robot_joints': JOINTS,
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 24,
             'width': 32},
            depth,
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': JOINTS}]},
            {'name': 'instruction', 'kind': 'instruction', 'vocabulary': ['<pad>', '<unk>'],
             'max_length': 4}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 4,
                     'step_period_s': 0.05, 'components': [
                         {'meaning': 'joint_positions', 'joints': JOINTS}]}]}


def mm_frame(values_mm, encoding='16UC1'):
    pixels = np.asarray(values_mm, dtype=np.uint16)
    data, width, height, step = pack_image(pixels, encoding)
    return ImageFrame(bytes(data), width, height, encoding, step)


# ------------------------------------------------------------------ the encoding table
def test_depth_encodings_are_in_the_one_table_with_their_units():
    assert DEPTH_ENCODINGS == ('16UC1', '32FC1')
    assert ENCODINGS['16UC1'].depth_unit_m == 0.001 and ENCODINGS['16UC1'].dtype == 'uint16'
    assert ENCODINGS['32FC1'].depth_unit_m == 1.0 and ENCODINGS['32FC1'].dtype == 'float32'
    assert not any(ENCODINGS[e].is_depth for e in ('rgb8', 'bgr8', 'mono8', 'rgba8', 'bgra8'))


def test_16uc1_millimetres_read_as_metres_and_zero_stays_no_return():
    frame = mm_frame([[0, 1], [1234, 65535]])
    view = image_view(frame.data, 2, 2, '16UC1')
    assert view.dtype == np.uint16 and view.tolist() == [[0, 1], [1234, 65535]]
    metres = depth_to_metres(view, '16UC1')
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[0.0, 0.001], [1.234, 65.535]], rtol=1e-6)


def test_32fc1_is_metres_as_is_and_keeps_non_finite_values():
    pixels = np.array([[0.5, np.nan], [np.inf, 2.25]], np.float32)
    data, width, height, step = pack_image(pixels, '32FC1')
    assert step == 2 * 4
    metres = depth_to_metres(image_view(bytes(data), width, height, '32FC1', step), '32FC1')
    np.testing.assert_array_equal(metres, pixels)


def test_a_big_endian_depth_message_is_read_by_its_byte_order():
    big = np.array([[1000, 2500]], dtype='>u2').tobytes()
    assert image_view(big, 2, 1, '16UC1', big_endian=True).tolist() == [[1000, 2500]]
    assert image_view(big, 2, 1, '16UC1').tolist() != [[1000, 2500]]


def test_metres_to_depth_mm_rounds_and_marks_what_it_cannot_carry_as_no_return():
    depth = np.array([0.0004, 0.0006, 1.2344, 1.2346, -1.0, np.nan, np.inf, 70.0])
    assert metres_to_depth_mm(depth).tolist() == [0, 1, 1234, 1235, 0, 0, 0, 0]
    assert metres_to_depth_mm(depth).dtype == np.uint16


# ------------------------------------------------------------------ the contract
def test_a_depth_input_parses_round_trips_and_names_its_topic():
    text = yaml.safe_dump(rgbd_contract_data())
    contract = contract_from_yaml(text)
    (depth,) = contract.depth_inputs
    assert depth.shape == (1, 2, 24, 32)        # distance + validity mask
    assert depth.source == SCENE_DEPTH == depth_source('scene_camera')
    assert contract.cameras == ('scene_camera',)
    assert contract.depth_cameras == ('scene_camera',)
    assert dict(contract.same_capture) == {SCENE_DEPTH: 'scene_camera'}
    assert contract_from_dict(contract.to_dict()) == contract
    assert depth_spec(layout='nhwc').shape == (1, 4, 4, 1)


def test_depth_without_the_colour_of_its_camera_is_not_paired():
    data = rgbd_contract_data(camera='wrist_camera')
    contract = contract_from_dict(data)
    assert contract.depth_cameras == ('wrist_camera',)
    assert dict(contract.same_capture) == {}


@pytest.mark.parametrize('overrides, message', [
    ({'max_depth_m': 0.05}, 'inputs[1].max_depth_m: must be > min_depth_m (0.1), got 0.05'),
    ({'max_depth_m': 3000}, 'inputs[1].max_depth_m: must be <= 65.535 m (metres, not '
                            'millimetres), got 3000'),
    ({'min_depth_m': -0.1}, 'inputs[1].min_depth_m: must be >= 0, got -0.1'),
    ({'out_of_range': 'wrap'}, "inputs[1].out_of_range: 'wrap' is not allowed (allowed: "
                               'invalid, clamp)'),
    ({'validity_mask': 'yes'}, "inputs[1].validity_mask: must be true or false, got 'yes'"),
    ({'invalid_value_m': math.nan}, 'inputs[1].invalid_value_m: must be finite, got nan'),
    ({'mean': [0.0, 0.0]}, 'inputs[1].mean: has 2 values, expected 1'),
    ({'unit': 'mm'}, "inputs[1]: unknown key 'unit'"),
])
def test_a_bad_depth_input_is_refused_naming_the_field(overrides, message):
    with pytest.raises(ContractError) as error:
        contract_from_dict(rgbd_contract_data(**overrides))
    assert message in str(error.value)


def test_a_depth_input_without_its_range_is_refused():
    data = rgbd_contract_data()
    del data['inputs'][1]['max_depth_m']
    with pytest.raises(ContractError, match=r'inputs\[1\].max_depth_m: missing'):
        contract_from_dict(data)


def test_the_model_check_covers_depth_inputs_and_blames_the_mask():
    contract = contract_from_dict(rgbd_contract_data())
    model = build_toy_model(contract)
    validate_against_model(contract, model)  # the toy model fits its own contract
    without_mask = contract_from_dict(rgbd_contract_data(validity_mask=False))
    with pytest.raises(ContractError) as error:
        validate_against_model(without_mask, model)
    assert 'inputs[1].validity_mask: channels is 1 in the contract but 2' in str(error.value)


# ------------------------------------------------------------------ preprocessing
def test_invalid_pixels_become_the_documented_value_with_a_mask_of_zero():
    # no return, too near, in range, too far (range 0.2 .. 2.0 m)
    frame = mm_frame([[0, 100, 1500, 2500]] * 4)
    spec = depth_spec(validity_mask=True, invalid_value_m=0.0)
    tensor = frame_to_tensor(frame, spec)
    assert tensor.shape == (1, 2, 4, 4) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, 0, 0], [0.0, 0.0, 1.5, 0.0], rtol=1e-6)
    assert tensor[0, 1, 0].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_clamping_keeps_far_and_near_surfaces_but_never_a_missing_return():
    frame = mm_frame([[0, 100, 1500, 2500]] * 4)
    spec = depth_spec(out_of_range='clamp', validity_mask=True, invalid_value_m=-1.0)
    tensor = frame_to_tensor(frame, spec)
    np.testing.assert_allclose(tensor[0, 0, 0], [-1.0, 0.2, 1.5, 2.0], rtol=1e-6)
    assert tensor[0, 1, 0].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_32fc1_non_finite_pixels_are_invalid_and_normalisation_applies_to_the_distance():
    pixels = np.tile(np.array([[np.nan, -np.inf, 1.0, np.inf]], np.float32), (4, 1))
    data, width, height, step = pack_image(pixels, '32FC1')
    spec = depth_spec(mean=[1.0], std=[0.5], invalid_value_m=0.0, layout='nhwc')
    tensor = depth_to_tensor(bytes(data), width, height, '32FC1', spec, step=step)
    assert tensor.shape == (1, 4, 4, 1)
    # (d - 1.0) / 0.5 with d = 0.0 for the three invalid pixels
    np.testing.assert_allclose(tensor[0, 0, :, 0], [-2.0, -2.0, 0.0, -2.0])


def test_nearest_resize_keeps_only_measured_values_across_a_depth_edge():
    # A block at 0.5 m in front of a table at 0.8 m, with a few pixels without a return.
    depth = np.full((48, 64), 800, np.uint16)
    depth[10:30, 20:44] = 500
    depth[::7, ::5] = 0
    frame = mm_frame(depth)
    spec = depth_spec(height=12, width=16, min_depth_m=0.1, max_depth_m=2.0,
                      invalid_value_m=0.0)
    values = set(np.round(frame_to_tensor(frame, spec)[0, 0].astype(float).ravel(), 6).tolist())
    assert values <= {0.0, 0.5, 0.8}, values
    # What an averaging resize would have invented: distances between the two surfaces.
    averaged = cv2.resize(depth, (16, 12), interpolation=cv2.INTER_AREA)
    assert set(np.unique(averaged).tolist()) - {0, 500, 800}


def test_a_depth_pixel_lines_up_with_the_colour_pixel_of_the_same_index():
    # Colour and depth of one capture: the depth encodes the column index, the colour the
    # same number; after each input's resize (area vs nearest) the column of every model pixel
    # must come from the same place.
    height, width = 60, 80
    columns = np.tile(np.arange(width, dtype=np.uint16), (height, 1))
    depth = mm_frame(1000 + columns)
    grey = np.ascontiguousarray(columns.astype(np.uint8))
    for resize in ('stretch', 'center_crop'):
        dspec = depth_spec(height=15, width=10, resize=resize, min_depth_m=0.5,
                           max_depth_m=2.0)
        ispec = ImageInput(name='image', camera='scene_camera', height=15, width=10,
                           resize=resize, color_order='mono', scale=1.0)
        depth_columns = frame_to_tensor(depth, dspec)[0, 0] * 1000.0 - 1000.0
        colour_columns = image_to_tensor(grey, width, height, 'mono8', ispec)[0, 0]
        assert crop_box(width, height, dspec) == crop_box(width, height, ispec)
        # Area averaging of a linear ramp gives the centre of the window: the column the
        # nearest pick takes is within half a source pixel of it.
        assert np.abs(depth_columns - colour_columns).max() <= 0.5 + 1e-3, resize


@pytest.mark.parametrize('encoding', ['rgb8', 'mono8', 'yuv422'])
def test_a_frame_that_is_not_depth_is_refused_naming_input_and_encoding(encoding):
    frame = ImageFrame(bytes(4 * 4 * 3), 4, 4, encoding)
    with pytest.raises(InputError) as error:
        frame_to_tensor(frame, depth_spec())
    text = str(error.value)
    assert "input 'depth_scene' (camera 'scene_camera' depth)" in text
    assert f'{encoding!r}' in text


def test_a_depth_frame_is_refused_by_a_colour_input():
    spec = ImageInput(name='image_scene', camera='scene_camera', height=4, width=4)
    with pytest.raises(InputError, match="encoding '16UC1' is a depth image"):
        frame_to_tensor(mm_frame(np.zeros((4, 4))), spec)


def test_the_runtime_feeds_depth_by_its_source_and_names_it_when_missing(tmp_path):
    contract = contract_from_dict(rgbd_contract_data())
    path = tmp_path / 'rgbd.onnx'
    onnx.save(build_toy_model(contract), str(path))
    rgb = np.full((48, 64, 3), 90, np.uint8)
    depth = np.full((48, 64), 1500, np.uint16)
    joints = {j: 0.1 for j in JOINTS}
    with PolicyRuntime(path) as runtime:
        frames = {'scene_camera': ImageFrame(rgb, 64, 48, 'rgb8'),
                  SCENE_DEPTH: ImageFrame(depth, 64, 48, '16UC1')}
        inputs = runtime.build_inputs(frames, joints, instruction='')
        fed = inputs.tensors['depth_scene']
        np.testing.assert_allclose(fed[0, 0], (1.5 - 1.0) / 0.5, rtol=1e-6)
        assert fed[0, 1].min() == 1.0
        chunk = runtime.infer(inputs)
        assert chunk.values.shape == (4, 6) and np.isfinite(chunk.values).all()
        # Depth changes what the model computes (it is wired into the graph).
        far = dict(frames, **{SCENE_DEPTH: ImageFrame(depth * 0 + 2900, 64, 48, '16UC1')})
        other = runtime.infer(runtime.build_inputs(far, joints, instruction=''))
        assert not np.allclose(other.values, chunk.values)
        with pytest.raises(InputError, match=f"needs a frame from camera '{SCENE_DEPTH}'"):
            runtime.build_inputs({'scene_camera': frames['scene_camera']}, joints,
                                 instruction='')


# ------------------------------------------------------------------ same capture
def paired_aligner():
    return InputAligner(('joints', 'scene_camera', SCENE_DEPTH), 'joints', tolerance_s=0.25,
                        max_age_s=1.0, same_stamp={SCENE_DEPTH: 'scene_camera'})


def test_colour_and_depth_are_taken_from_one_capture():
    aligner = paired_aligner()
    for stamp in (0.75, 1.0):
        aligner.add('scene_camera', stamp, stamp, f'colour@{stamp}')
    aligner.add(SCENE_DEPTH, 0.75, 0.75, 'depth@0.75')
    aligner.add('joints', 1.0, 1.0, 'joints')
    # The newest colour frame's depth is still on its way: the older pair is used, not a mix.
    result = aligner.align(now=1.0)
    assert result.ok, result.reason
    assert result.samples['scene_camera'].value == 'colour@0.75'
    assert result.samples[SCENE_DEPTH].value == 'depth@0.75'
    aligner.add(SCENE_DEPTH, 1.0, 1.0, 'depth@1.0')
    result = aligner.align(now=1.0)
    assert (result.samples['scene_camera'].value, result.samples[SCENE_DEPTH].value) == (
        'colour@1.0', 'depth@1.0')


def test_a_depth_frame_whose_stamp_is_not_its_colour_frame_is_refused():
    aligner = paired_aligner()
    aligner.add('joints', 1.0, 1.0, None)
    aligner.add('scene_camera', 1.0, 1.0, None)
    aligner.add(SCENE_DEPTH, 1.0 + 1e-3, 1.0, None)  # another capture (or another clock)
    result = aligner.align(now=1.0)
    assert not result.ok and result.unpaired == (SCENE_DEPTH,)
    assert f'{SCENE_DEPTH} has no frame stamped 1.000000 s like scene_camera' in result.reason
    assert '+0.001000 s' in result.reason and 'not the same capture' in result.reason


def test_a_twin_still_in_flight_is_waited_for_not_counted_as_a_mismatch():
    aligner = paired_aligner()
    aligner.add('joints', 1.0, 1.0, None)
    aligner.add('scene_camera', 1.0, 1.0, None)
    aligner.add(SCENE_DEPTH, 0.5, 0.5, None)  # older, outside the tolerance
    result = aligner.align(now=1.0)
    assert not result.ok and result.unpaired == ()
    assert result.reason.startswith(f'waiting for {SCENE_DEPTH} of scene_camera')


@pytest.mark.parametrize('pair, message', [
    ({'wrist_camera/aligned_depth_to_color': 'scene_camera'}, 'both must be among'),
    ({SCENE_DEPTH: 'joints'}, 'the reference cannot be paired'),
])
def test_a_pair_the_aligner_cannot_hold_is_refused(pair, message):
    from noetra_ros.core.errors import ConfigError
    with pytest.raises(ConfigError, match=message):
        InputAligner(('joints', 'scene_camera', SCENE_DEPTH), 'joints', 0.25, 1.0,
                     same_stamp=pair)


def test_stale_depth_holds_the_robot_like_any_stale_input():
    aligner = paired_aligner()
    for source in ('joints', 'scene_camera', SCENE_DEPTH):
        aligner.add(source, 1.0, 1.0, None)
    assert aligner.stale_sources(now=1.5) == []
    aligner.add('joints', 2.5, 2.5, None)
    aligner.add('scene_camera', 2.5, 2.5, None)
    assert aligner.stale_sources(now=2.5) == [SCENE_DEPTH]


# ------------------------------------------------------------------ simulated depth
def test_simulated_depth_is_the_colour_images_capture_in_millimetres():
    from dataclasses import replace

    from noetra_ros.core.sim.world import default_cameras, SimWorld, WorldConfig

    # A near far plane, so that part of the view is out of range: "no return".
    scene = replace(next(c for c in default_cameras() if c.name == 'scene_camera'),
                    width=64, height=48, far=2.0)
    with SimWorld(WorldConfig(cameras=(scene,))) as world:
        world.reset(3)
        rgb, depth_mm = render_colour_and_depth(world, 'scene_camera')
        reference_rgb, reference_m = world.render_rgbd('scene_camera')
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (48, 64)
    np.testing.assert_array_equal(rgb, reference_rgb)
    # The background comes back at `far` less the z-buffer's float rounding (core/images.py).
    background = reference_m >= scene.far * 0.9999
    hit = ~background
    assert hit.any() and background.any(), 'the view should show the cell and the background'
    assert (depth_mm[background] == 0).all()                   # nothing in range: no return
    np.testing.assert_allclose(depth_mm[hit] / 1000.0, reference_m[hit], atol=0.0005 + 1e-6)


def test_the_in_process_evaluation_feeds_depth_rendered_as_the_sim_node_does(tmp_path):
    # learning/record.PolicyDriver observes with render_colour_and_depth (the sim node's
    # function): a depth policy runs in process without an input error and commands the arm.
    from noetra_ros.core.sim.world import SimWorld
    from noetra_ros.learning.record import EvalSettings, PolicyDriver

    settings = EvalSettings.from_cell('pick_place_lrmate_policy')
    data = rgbd_contract_data(camera='wrist_camera')
    data['inputs'][0]['camera'] = 'workspace_camera'
    data['inputs'][2]['components'].append({'source': 'gripper_position'})
    data['outputs'][0]['components'].append({'meaning': 'gripper_position'})
    contract = contract_from_dict(data)
    path = tmp_path / 'rgbd.onnx'
    onnx.save(build_toy_model(contract), str(path))
    driver = PolicyDriver(path, settings)
    world = SimWorld(settings.world_config())
    try:
        episode = world.reset(3)
        driver.reset()
        steps = [driver.act(world, episode.instruction) for _ in range(3)]
        assert all(step.command is not None for step in steps)
        assert np.isfinite(steps[-1].command.positions).all()
    finally:
        world.close()
        driver.close()
