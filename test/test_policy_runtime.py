"""Pre-processing, tokenizer and the onnxruntime-backed PolicyRuntime, on real ONNX models."""
from array import array

import cv2
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
import pytest

from noetra_ros.core.errors import (
    ConfigError, ContractError, InputError, ModelLoadError, NonFiniteOutputError)
from noetra_ros.core.policy.contract import (
    ImageInput, InstructionInput, StateComponent, StateInput, contract_from_dict, save_sidecar)
from noetra_ros.core.policy.preprocess import (
    ImageFrame, crop_box, image_to_tensor, image_view, state_to_tensor)
from noetra_ros.core.policy.runtime import (
    PolicyInputs, PolicyRuntime, build_toy_model, postprocess_actions)
from noetra_ros.core.policy.tokenizer import Tokenizer, build_vocabulary, split_words

JOINTS = [f'joint_{i}' for i in range(1, 7)]
VOCAB = ['<pad>', '<unk>', 'pick', 'the', 'red', 'block', 'put', 'it', 'on', 'tray', 'bin', '2']
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# One grey level after normalisation, the tolerance of uint8 rounding inside cv2.resize.
LEVEL = 1.0 / (255.0 * min(STD))


def scene(height, width, seed=0):
    """A smooth random RGB scene (uint8 H x W x 3) with some structure."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
    image[height // 3, :] = (255, 0, 0)
    return image


def block_mean_reference(rgb, factor, spec):
    """Area downscale by an integer factor as a plain block mean, then the contract formula."""
    h, w, _ = rgb.shape
    small = rgb.reshape(h // factor, factor, w // factor, factor, 3).astype(np.float64)
    small = small.mean(axis=(1, 3))
    normalised = (small / spec.scale - np.asarray(spec.mean)) / np.asarray(spec.std)
    return normalised.transpose(2, 0, 1)[None]


def image_spec(**overrides):
    values = dict(name='image_scene', camera='scene_camera', height=48, width=64, resize='stretch',
                  mean=MEAN, std=STD)
    values.update(overrides)
    return ImageInput(**values)


# -- images ----------------------------------------------------------------------------------

def test_rgb8_matches_a_numpy_reference():
    spec = image_spec()
    rgb = scene(96, 128)
    tensor = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', spec)
    assert tensor.dtype == np.float32 and tensor.shape == (1, 3, 48, 64)
    np.testing.assert_allclose(tensor, block_mean_reference(rgb, 2, spec), atol=0.51 * LEVEL)


def test_bgr8_and_rgb8_of_the_same_scene_give_the_same_tensor():
    for resize in ('stretch', 'center_crop'):
        spec = image_spec(resize=resize, height=96, width=96)
        rgb = scene(480, 640, seed=1)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        from_rgb = image_to_tensor(rgb.tobytes(), 640, 480, 'rgb8', spec)
        from_bgr = image_to_tensor(bgr.tobytes(), 640, 480, 'bgr8', spec)
        np.testing.assert_array_equal(from_rgb, from_bgr)
    # A bgr-ordered model gets the channels the other way round.
    bgr_model = image_to_tensor(rgb.tobytes(), 640, 480, 'rgb8',
                                image_spec(color_order='bgr', mean=(0, 0, 0), std=(1, 1, 1)))
    rgb_model = image_to_tensor(rgb.tobytes(), 640, 480, 'rgb8',
                                image_spec(mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(bgr_model[0, ::-1], rgb_model[0])


def test_four_channel_encodings_drop_alpha():
    spec = image_spec()
    rgb = scene(96, 128, seed=2)
    alpha = np.full((96, 128, 1), 7, np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], axis=2)
    expected = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', spec)
    np.testing.assert_array_equal(image_to_tensor(rgba.tobytes(), 128, 96, 'rgba8', spec),
                                  expected)
    np.testing.assert_array_equal(image_to_tensor(bgra.tobytes(), 128, 96, 'bgra8', spec),
                                  expected)


def test_mono8_is_replicated_for_a_colour_model_and_kept_for_a_mono_model():
    grey = scene(96, 128, seed=3)[:, :, 1].copy()
    colour = image_to_tensor(grey.tobytes(), 128, 96, 'mono8', image_spec())
    reference = block_mean_reference(np.repeat(grey[:, :, None], 3, axis=2), 2, image_spec())
    np.testing.assert_allclose(colour, reference, atol=0.51 * LEVEL)
    mono_spec = image_spec(color_order='mono', mean=(0.5,), std=(0.25,))
    mono = image_to_tensor(grey.tobytes(), 128, 96, 'mono8', mono_spec)
    assert mono.shape == (1, 1, 48, 64)
    expected = (grey.reshape(48, 2, 64, 2).mean(axis=(1, 3)) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(mono[0, 0], expected, atol=0.51 / 255 / 0.25)
    # A colour frame for a mono model goes through the usual luma weights.
    rgb = scene(96, 128, seed=4)
    from_colour = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', mono_spec)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = (luma.reshape(48, 2, 64, 2).mean(axis=(1, 3)) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(from_colour[0, 0], expected, atol=1.6 / 255 / 0.25)


def test_center_crop_takes_the_middle_of_a_wide_frame():
    spec = image_spec(resize='center_crop')       # 64 x 48, aspect 4:3
    frame = scene(96, 160, seed=5)                # 160 x 96, wider: crop 128 x 96 at x = 16
    assert crop_box(160, 96, spec) == (16, 0, 128, 96)
    frame[:, :16] = 255
    frame[:, -16:] = 255
    tensor = image_to_tensor(frame.tobytes(), 160, 96, 'rgb8', spec)
    reference = block_mean_reference(frame[:, 16:144], 2, spec)
    np.testing.assert_allclose(tensor, reference, atol=0.51 * LEVEL)
    stretched = image_to_tensor(frame.tobytes(), 160, 96, 'rgb8', image_spec())
    assert np.abs(stretched - tensor).max() > 10 * LEVEL  # the borders did leak in


def test_row_padding_and_rclpy_arrays_are_read_correctly():
    spec = image_spec()
    rgb = scene(96, 128, seed=6)
    padded = np.zeros((96, 128 * 3 + 8), np.uint8)
    padded[:, :128 * 3] = rgb.reshape(96, -1)
    expected = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', spec)
    np.testing.assert_array_equal(
        image_to_tensor(padded.tobytes(), 128, 96, 'rgb8', spec, step=128 * 3 + 8), expected)
    np.testing.assert_array_equal(
        image_to_tensor(array('B', rgb.tobytes()), 128, 96, 'rgb8', spec), expected)
    np.testing.assert_array_equal(image_to_tensor(rgb, 128, 96, 'rgb8', spec), expected)


def test_nhwc_layout_is_the_transpose():
    rgb = scene(96, 128, seed=7)
    nchw = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', image_spec())
    nhwc = image_to_tensor(rgb.tobytes(), 128, 96, 'rgb8', image_spec(layout='nhwc'))
    assert nhwc.shape == (1, 48, 64, 3)
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


def test_image_bytes_are_viewed_without_copying():
    buffer = bytearray(scene(4, 6).tobytes())
    view = image_view(buffer, 6, 4, 'rgb8')
    buffer[0] = 123
    assert view[0, 0, 0] == 123


def test_non_integer_shrink_stays_close_to_one_shot_inter_area():
    spec = image_spec(height=96, width=96, mean=(0, 0, 0), std=(1, 1, 1))
    rgb = scene(480, 640, seed=8)
    tensor = image_to_tensor(rgb.tobytes(), 640, 480, 'rgb8', spec)
    one_shot = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    assert np.abs(tensor[0].transpose(1, 2, 0) - one_shot).max() <= 2.0 / 255 + 1e-6


def test_out_buffer_is_filled_in_place():
    spec = image_spec()
    out = np.empty(spec.shape, np.float32)
    result = image_to_tensor(scene(96, 128).tobytes(), 128, 96, 'rgb8', spec, out=out)
    assert result is out


@pytest.mark.parametrize('data, width, height, encoding, step, message', [
    (bytes(100), 10, 10, 'rgb8', 0, 'has 100 bytes but a 10x10 rgb8 image'),
    (bytes(300), 10, 10, 'mono8', 0, 'needs 100'),
    (bytes(300), 10, 10, 'yuv422', 0, "encoding 'yuv422' is not supported (supported: rgb8"),
    (bytes(200), 10, 10, '16UC1', 0, "encoding '16UC1' is a depth image; a colour input needs"),
    (bytes(300), 10, 10, 'rgb8', 20, 'step 20 is shorter'),
    (bytes(300), 0, 10, 'rgb8', 0, 'width must be a positive integer'),
    (np.zeros((10, 10, 3), np.float32), 10, 10, 'rgb8', 0, 'expected uint8'),
])
def test_malformed_images_raise_input_error(data, width, height, encoding, step, message):
    with pytest.raises(InputError) as error:
        image_to_tensor(data, width, height, encoding, image_spec(), step=step)
    assert message in str(error.value)
    assert "input 'image_scene'" in str(error.value)


# -- state -----------------------------------------------------------------------------------

STATE = StateInput(name='state', components=(
    StateComponent('joint_positions', joints=('joint_2', 'joint_1')),
    StateComponent('gripper_position'),
    StateComponent('joint_velocities', joints=('joint_1',)),
    StateComponent('wrench', axes=('fz', 'tx')),
), mean=(0.1, 0.2, 0.01, 0.0, 1.0, 0.0), std=(2.0, 2.0, 0.02, 1.0, 10.0, 0.5))


def test_state_is_concatenated_in_contract_order_and_normalised():
    positions = {'joint_1': 0.5, 'joint_2': -0.3, 'joint_3': 9.0}
    tensor = state_to_tensor(STATE, positions, gripper_position=0.03,
                             joint_velocities={'joint_1': 0.25},
                             wrench={'fx': 1.0, 'fy': 2.0, 'fz': 21.0, 'tx': -0.5})
    raw = np.array([-0.3, 0.5, 0.03, 0.25, 21.0, -0.5])
    expected = (raw - np.array(STATE.mean)) / np.array(STATE.std)
    assert tensor.dtype == np.float32 and tensor.shape == (1, 6)
    np.testing.assert_allclose(tensor[0], expected, rtol=1e-6)
    as_sequence = state_to_tensor(STATE, positions, gripper_position=0.03,
                                  joint_velocities={'joint_1': 0.25},
                                  wrench=[1.0, 2.0, 21.0, -0.5, 0.0, 0.0])
    np.testing.assert_array_equal(as_sequence, tensor)


@pytest.mark.parametrize('positions, gripper, velocity, message', [
    ({'joint_1': 0.5, 'joint_2': float('nan')}, 0.0, 0.0,
     "components[0] (joint_positions) joint 'joint_2' is nan"),
    ({'joint_1': 0.5, 'joint_2': 0.1}, float('inf'), 0.0, 'components[1] (gripper_position)'),
    ({'joint_1': 0.5, 'joint_2': 0.1}, 0.0, float('-inf'),
     "components[2] (joint_velocities) joint 'joint_1' is -inf"),
    ({'joint_1': 0.5}, 0.0, 0.0, "joint 'joint_2' is missing from the joint state"),
    ({'joint_1': 0.5, 'joint_2': 0.1}, None, 0.0, 'no gripper position'),
])
def test_bad_state_raises_input_error_naming_the_component(positions, gripper, velocity,
                                                           message):
    with pytest.raises(InputError) as error:
        state_to_tensor(STATE, positions, gripper_position=gripper,
                        joint_velocities={'joint_1': velocity}, wrench=[0.0] * 6)
    assert message in str(error.value)


# -- tokenizer -------------------------------------------------------------------------------

def instruction_spec(policy='map_to_unk', length=6):
    return InstructionInput(name='instruction', vocabulary=tuple(VOCAB), max_length=length,
                            unknown_words=policy)


def test_tokenizer_pads_lowercases_and_keeps_digits():
    encoding = Tokenizer(instruction_spec()).encode('Pick the RED block, bin 2!')
    assert encoding.ids.dtype == np.int64 and encoding.ids.shape == (1, 6)
    assert encoding.ids[0].tolist() == [2, 3, 4, 5, 10, 11]
    assert encoding.unknown_words == () and not encoding.truncated and encoding.length == 6
    short = Tokenizer(instruction_spec()).encode('put it')
    assert short.ids[0].tolist() == [6, 7, 0, 0, 0, 0]


def test_unknown_words_map_to_unk_and_are_reported():
    encoding = Tokenizer(instruction_spec()).encode('pick the blue cube')
    assert encoding.ids[0].tolist() == [2, 3, 1, 1, 0, 0]
    assert encoding.unknown_words == ('blue', 'cube')
    assert encoding.tokens == ('pick', 'the', '<unk>', '<unk>')


def test_unknown_words_can_be_rejected():
    with pytest.raises(InputError, match=r"\['blue', 'cube'\]"):
        Tokenizer(instruction_spec('reject')).encode('pick the blue cube')
    assert Tokenizer(instruction_spec('reject')).encode('pick it').length == 2


def test_long_instructions_are_truncated_with_a_flag():
    encoding = Tokenizer(instruction_spec(length=3)).encode('pick the red block on the tray')
    assert encoding.truncated and encoding.ids[0].tolist() == [2, 3, 4]
    with pytest.raises(InputError, match='string'):
        Tokenizer(instruction_spec()).encode(None)


def test_vocabulary_builder_matches_the_tokenizer():
    texts = ['Pick the red block', 'put the block on the tray', 'pick it']
    vocabulary = build_vocabulary(texts)
    assert vocabulary[:4] == ('<pad>', '<unk>', 'the', 'block')
    assert split_words("it's bin-2") == ['it', 's', 'bin', '2']
    spec = InstructionInput(name='i', vocabulary=vocabulary, max_length=8)
    assert Tokenizer(spec).encode(texts[1]).unknown_words == ()


# -- runtime ---------------------------------------------------------------------------------

def runtime_contract(**action_overrides):
    action = {'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 5,
              'step_period_s': 0.05, 'components': [
                  {'meaning': 'joint_positions', 'mode': 'delta', 'joints': list(JOINTS)},
                  {'meaning': 'gripper_position'}],
              'mean': [0.01] * 6 + [0.02], 'std': [0.1] * 6 + [0.02]}
    action.update(action_overrides)
    return contract_from_dict({
        'contract_version': 1, 'name': 'toy', 'robot_joints': list(JOINTS),
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 48,
             'width': 64, 'resize': 'stretch', 'mean': list(MEAN), 'std': list(STD)},
            {'name': 'image_wrist', 'kind': 'image', 'camera': 'wrist_camera', 'height': 32,
             'width': 32, 'resize': 'center_crop', 'layout': 'nhwc'},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': list(JOINTS)},
                {'source': 'gripper_position'}],
             'mean': [0.0] * 7, 'std': [1.0] * 6 + [0.02]},
            {'name': 'instruction', 'kind': 'instruction', 'vocabulary': list(VOCAB),
             'max_length': 8}],
        'outputs': [action]})


@pytest.fixture
def toy(tmp_path):
    contract = runtime_contract()
    model = build_toy_model(contract, seed=3)
    path = tmp_path / 'toy.onnx'
    onnx.save(model, str(path))
    return path, model, contract


def observation(seed=0):
    rng = np.random.default_rng(seed)
    frames = {
        'scene_camera': ImageFrame(scene(96, 128, seed).tobytes(), 128, 96, 'bgr8'),
        'wrist_camera': ImageFrame(scene(60, 80, seed + 1)[:, :, 0].tobytes(), 80, 60, 'mono8'),
    }
    positions = dict(zip(JOINTS, rng.uniform(-1, 1, 6)))
    return frames, positions, 0.02


def toy_reference(model, contract, feed):
    """The toy graph in numpy, from the model's own initializers."""
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64)
               for t in model.graph.initializer}
    features = []
    for i, spec in enumerate(contract.inputs):
        x = feed[spec.name].astype(np.float64)
        if isinstance(spec, ImageInput):
            if spec.layout == 'nhwc':
                x = x.transpose(0, 3, 1, 2)
            channel_means = x.mean(axis=(2, 3))[0]
            features.append(weights[f'img{i}_w'][:, :, 0, 0] @ channel_means
                            + weights[f'img{i}_b'])
        elif isinstance(spec, StateInput):
            features.append(x[0])
        else:
            features.append(x[0] / len(spec.vocabulary))
    head = np.tanh(np.concatenate(features) @ weights['head_w'] + weights['head_b'])
    return head.reshape(contract.action.chunk_length, contract.action.size)


def test_inference_matches_a_numpy_reference(toy):
    path, model, contract = toy
    runtime = PolicyRuntime(path, 'cpu', intra_op_threads=1, inter_op_threads=1)
    assert runtime.provider == 'CPUExecutionProvider'
    assert runtime.contract == contract and runtime.contract_origin == 'metadata'
    frames, positions, gripper = observation()
    inputs = runtime.build_inputs(frames, positions, gripper_position=gripper,
                                  instruction='Pick the green block')
    assert inputs.unknown_words == ('green',)
    assert inputs.tensors['image_wrist'].shape == (1, 32, 32, 3)
    chunk = runtime.infer(inputs)

    raw = toy_reference(model, contract, inputs.tensors)
    np.testing.assert_allclose(chunk.raw, raw, atol=1e-5)
    action = contract.action
    expected = raw * np.array(action.std) + np.array(action.mean)
    expected[:, :6] += np.array([positions[j] for j in JOINTS])  # delta -> absolute
    np.testing.assert_allclose(chunk.values, expected, atol=1e-5)
    assert chunk.joint_positions.shape == (5, 6) and chunk.gripper_position.shape == (5,)
    assert chunk.joint_names == tuple(JOINTS)
    np.testing.assert_allclose(chunk.gripper_position, expected[:, 6], atol=1e-6)
    assert chunk.step_period_s == 0.05 and chunk.inference_time_s > 0.0
    assert not chunk.values.flags.writeable


def test_inference_with_a_raw_feed_and_dynamic_batch(tmp_path):
    contract = runtime_contract(components=[
        {'meaning': 'joint_positions', 'mode': 'absolute', 'joints': list(JOINTS)},
        {'meaning': 'gripper_position', 'mode': 'delta'}])
    path = tmp_path / 'dynamic.onnx'
    onnx.save(build_toy_model(contract, batch='batch'), str(path))
    runtime = PolicyRuntime(path)
    feed = runtime.zero_inputs()
    with pytest.raises(InputError, match='gripper_position'):
        runtime.infer(feed)  # delta gripper needs the measured gripper position
    chunk = runtime.infer(feed, gripper_position=0.01)
    assert chunk.values.shape == (5, 7)
    assert runtime.warmup(2) >= 0.0


@pytest.mark.parametrize('mutate, message', [
    (lambda f: f.pop('state'), "missing ['state']"),
    (lambda f: f.update(extra=np.zeros(1, np.float32)), "unexpected ['extra']"),
    (lambda f: f.update(state=np.zeros((1, 7), np.float64)), "input 'state' is float64"),
    (lambda f: f.update(state=np.zeros((1, 8), np.float32)), '(1, 8)'),
    (lambda f: f['image_scene'].__setitem__((0, 1, 2, 3), np.nan), "'image_scene' has 1 non"),
])
def test_bad_raw_feeds_raise_input_error(toy, mutate, message):
    runtime = PolicyRuntime(toy[0])
    feed = runtime.zero_inputs()
    mutate(feed)
    with pytest.raises(InputError) as error:
        runtime.infer(feed, joint_positions=dict.fromkeys(JOINTS, 0.0))
    assert message in str(error.value)


def test_build_inputs_reports_missing_sensors(toy):
    runtime = PolicyRuntime(toy[0])
    frames, positions, gripper = observation()
    with pytest.raises(InputError, match="camera 'wrist_camera'"):
        runtime.build_inputs({'scene_camera': frames['scene_camera']}, positions,
                             gripper_position=gripper, instruction='pick')
    with pytest.raises(InputError, match='needs an instruction'):
        runtime.build_inputs(frames, positions, gripper_position=gripper)
    positions['joint_4'] = float('nan')
    with pytest.raises(InputError, match="joint 'joint_4' is nan"):
        runtime.build_inputs(frames, positions, gripper_position=gripper, instruction='')


def test_non_finite_output_is_refused(tmp_path, toy):
    _, model, contract = toy
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    for i, tensor in enumerate(broken.graph.initializer):
        if tensor.name == 'head_b':
            bias = numpy_helper.to_array(tensor).copy()
            bias[2 * 7 + 3] = np.nan  # step 2, column joint_positions.joint_4
            broken.graph.initializer[i].CopyFrom(numpy_helper.from_array(bias, 'head_b'))
    path = tmp_path / 'nan.onnx'
    onnx.save(broken, str(path))
    runtime = PolicyRuntime(path)
    frames, positions, gripper = observation()
    inputs = runtime.build_inputs(frames, positions, gripper_position=gripper, instruction='')
    with pytest.raises(NonFiniteOutputError) as error:
        runtime.infer(inputs)
    assert "step 2, column 'joint_positions.joint_4'" in str(error.value)


def test_postprocess_unnormalises_and_adds_delta_references():
    action = runtime_contract().action
    raw = np.ones((5, 7), np.float32)
    values = postprocess_actions(raw, action, dict.fromkeys(JOINTS, 1.0), 0.0)
    np.testing.assert_allclose(values[:, :6], 1.0 + 0.1 + 0.01)
    np.testing.assert_allclose(values[:, 6], 0.02 + 0.02)
    with pytest.raises(InputError, match="joint 'joint_6'"):
        postprocess_actions(raw, action, {j: 0.0 for j in JOINTS[:5]})


# -- loading ---------------------------------------------------------------------------------

def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match='absent.onnx'):
        PolicyRuntime(tmp_path / 'absent.onnx')


def test_corrupt_model_reports_onnxruntime_reason(tmp_path):
    path = tmp_path / 'corrupt.onnx'
    path.write_bytes(b'\x0a\xff\xff\xff garbage')
    with pytest.raises(ModelLoadError) as error:
        PolicyRuntime(path)
    assert 'corrupt.onnx' in str(error.value)
    assert 'protobuf' in str(error.value).lower()


def test_unknown_provider_lists_the_valid_ones(toy):
    with pytest.raises(ConfigError, match='valid: cpu, cuda, tensorrt, openvino'):
        PolicyRuntime(toy[0], 'gpu')
    with pytest.raises(ConfigError, match='intra_op_threads'):
        PolicyRuntime(toy[0], intra_op_threads=-1)


def test_unavailable_provider_lists_the_available_ones_or_falls_back(toy):
    available = ort.get_available_providers()
    missing = next((short for short, name in [('openvino', 'OpenVINOExecutionProvider'),
                                              ('tensorrt', 'TensorrtExecutionProvider'),
                                              ('cuda', 'CUDAExecutionProvider')]
                    if name not in available), None)
    if missing is None:
        pytest.skip('every execution provider is available here')
    with pytest.raises(ConfigError) as error:
        PolicyRuntime(toy[0], missing)
    assert 'CPUExecutionProvider' in str(error.value)  # the available list is shown
    runtime = PolicyRuntime(toy[0], missing, allow_fallback=True)
    assert runtime.provider == 'CPUExecutionProvider'
    assert any('falling back' in w for w in runtime.warnings)


def test_sidecar_overrides_metadata_and_is_validated(toy):
    path, _, contract = toy
    renamed = contract_from_dict(dict(contract.to_dict(), name='from_sidecar'))
    save_sidecar(path, renamed)
    runtime = PolicyRuntime(path)
    assert runtime.contract.name == 'from_sidecar'
    assert runtime.contract_origin.startswith('sidecar')
    assert any('sidecar' in w for w in runtime.warnings)
    wrong = dict(contract.to_dict())
    wrong['outputs'] = [dict(wrong['outputs'][0], chunk_length=9)]
    save_sidecar(path, contract_from_dict(wrong))
    with pytest.raises(ContractError, match=r'outputs\[0\]\.chunk_length'):
        PolicyRuntime(path)


def test_policy_inputs_can_be_built_by_hand(toy):
    runtime = PolicyRuntime(toy[0])
    inputs = PolicyInputs(tensors=runtime.zero_inputs(),
                          joint_positions=dict.fromkeys(JOINTS, 0.5), gripper_position=0.0)
    chunk = runtime.infer(inputs)
    assert np.isfinite(chunk.values).all()
    runtime.validate_robot(JOINTS, has_gripper=True)
    with pytest.raises(ContractError, match='gripper'):
        runtime.validate_robot(JOINTS, has_gripper=False)
