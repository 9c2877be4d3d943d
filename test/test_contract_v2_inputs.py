"""Policy contract version 2 inputs and outputs through the real runtime: letterboxed images,
uint8 images normalised inside the graph, padded state / action vectors, and instructions
tokenized by a `tokenizers` tokenizer.json shipped next to the model. Every model is an ONNX
graph built here and run by onnxruntime; the tokenizer is trained here by the library."""
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import onnxruntime as ort
import pytest

from noetra_ros.core.errors import ContractError, InputError, ModelLoadError
from noetra_ros.core.policy.contract import (contract_from_dict, embed_contract, ImageInput,
                                             StateComponent, StateInput,
                                             validate_against_model)
from noetra_ros.core.policy.preprocess import (ImageFrame, image_to_tensor, letterbox_box,
                                               state_to_tensor)
from noetra_ros.core.policy.runtime import build_toy_model, PolicyRuntime
from noetra_ros.core.robot_model import kinematics_fingerprint

JOINTS = [f'joint_{i}' for i in range(1, 7)]
ROBOT = 'fanuc_lrmate200id'
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CHUNK = 3


def v2_contract(inputs, width=None, name='v2'):
    """A version 2 contract with `inputs` and a joint + gripper action chunk."""
    output = {'name': 'actions', 'kind': 'action_chunk', 'chunk_length': CHUNK,
              'step_period_s': 0.05, 'components': [
                  {'meaning': 'joint_positions', 'joints': list(JOINTS)},
                  {'meaning': 'gripper_position'}]}
    if width is not None:
        output['width'] = width
    return contract_from_dict({
        'contract_version': 2, 'name': name, 'robot_joints': list(JOINTS),
        'embodiment': {'robot': ROBOT, 'kinematics': kinematics_fingerprint(ROBOT)},
        'inputs': inputs, 'outputs': [output]})


def save(model, path):
    onnx.save(model, path)
    return path


# ------------------------------------------------------------------ letterbox
def letterbox_spec(height, width, pad_value=17, dtype='uint8'):
    return ImageInput(name='image', camera='cam', height=height, width=width,
                      resize='letterbox', pad_value=pad_value, dtype=dtype, layout='nhwc')


def test_wide_frame_is_letterboxed_with_padding_bands_above_and_below():
    # 64 x 32: left half black, right half white. Into 32 x 32: scaled by 1/2 to 32 x 16,
    # centred at rows 8..23, rows 0..7 and 24..31 the pad value.
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, 32:] = 255
    spec = letterbox_spec(32, 32)
    assert letterbox_box(64, 32, spec) == (0, 8, 32, 16)
    tensor = image_to_tensor(frame, 64, 32, 'rgb8', spec)[0]
    assert tensor.dtype == np.uint8 and tensor.shape == (32, 32, 3)
    assert (tensor[:8] == 17).all() and (tensor[24:] == 17).all()
    assert (tensor[8:24, :16] == 0).all() and (tensor[8:24, 16:] == 255).all()


def test_tall_frame_is_letterboxed_with_bands_left_and_right_and_normalised_as_float():
    # 30 x 60 into 40 x 40: scaled by 2/3 to 20 x 40, columns 10..29.
    frame = np.full((60, 30, 3), 200, np.uint8)
    spec = ImageInput(name='image', camera='cam', height=40, width=40, resize='letterbox',
                      pad_value=114, mean=MEAN, std=STD)
    assert letterbox_box(30, 60, spec) == (10, 0, 20, 40)
    tensor = image_to_tensor(frame, 30, 60, 'rgb8', spec)[0]     # nchw float32
    expected_pad = (114 / 255.0 - np.array(MEAN)) / np.array(STD)
    expected_content = (200 / 255.0 - np.array(MEAN)) / np.array(STD)
    for c in range(3):
        np.testing.assert_allclose(tensor[c, :, :10], expected_pad[c], atol=1e-5)
        np.testing.assert_allclose(tensor[c, :, 30:], expected_pad[c], atol=1e-5)
        np.testing.assert_allclose(tensor[c, :, 10:30], expected_content[c], atol=1e-5)


def test_frame_of_the_models_aspect_ratio_is_resized_without_padding():
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    letterboxed = image_to_tensor(frame, 64, 48, 'rgb8', letterbox_spec(24, 32))
    stretched = image_to_tensor(frame, 64, 48, 'rgb8', ImageInput(
        name='image', camera='cam', height=24, width=32, dtype='uint8', layout='nhwc'))
    np.testing.assert_array_equal(letterboxed, stretched)


# ------------------------------------------------------------------ uint8 images
H, W = 12, 16


def image_head_model(image_dtype, contract, seed=0):
    """image [1, H, W, 3] (nhwc) -> [Cast, /255, -mean, /std when uint8] -> Flatten -> Gemm ->
    Reshape [1, T, A]. The uint8 model normalises inside the graph what the runtime normalises
    for the float32 one; both have the same head weights."""
    rng = np.random.default_rng(seed)
    size = contract.action.size
    inits = [numpy_helper.from_array(rng.normal(0, 0.05, (H * W * 3, CHUNK * size))
                                     .astype(np.float32), 'head_w'),
             numpy_helper.from_array(np.array([1, CHUNK, size], np.int64), 'shape')]
    nodes = []
    source = 'image'
    if image_dtype == TensorProto.UINT8:
        inits += [numpy_helper.from_array(np.array(255.0, np.float32), 'scale'),
                  numpy_helper.from_array(np.array(MEAN, np.float32).reshape(1, 1, 1, 3),
                                          'mean'),
                  numpy_helper.from_array(np.array(STD, np.float32).reshape(1, 1, 1, 3), 'std')]
        nodes += [helper.make_node('Cast', ['image'], ['pixels'], to=TensorProto.FLOAT),
                  helper.make_node('Div', ['pixels', 'scale'], ['unit']),
                  helper.make_node('Sub', ['unit', 'mean'], ['centred']),
                  helper.make_node('Div', ['centred', 'std'], ['normalised'])]
        source = 'normalised'
    nodes += [helper.make_node('Flatten', [source], ['flat']),
              helper.make_node('MatMul', ['flat', 'head_w'], ['head']),
              helper.make_node('Reshape', ['head', 'shape'], ['actions'])]
    graph = helper.make_graph(
        nodes, 'image_head', [helper.make_tensor_value_info('image', image_dtype, [1, H, W, 3])],
        [helper.make_tensor_value_info('actions', TensorProto.FLOAT, [1, CHUNK, size])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    return model


def image_input(dtype, layout='nhwc'):
    spec = {'name': 'image', 'kind': 'image', 'camera': 'cam', 'height': H, 'width': W,
            'layout': layout}
    if dtype == 'uint8':
        spec['dtype'] = 'uint8'
    else:
        spec.update(mean=list(MEAN), std=list(STD))
    return spec


def test_uint8_path_gives_the_actions_of_the_float32_path(tmp_path):
    uint8_contract = v2_contract([image_input('uint8')], name='bytes')
    float_contract = v2_contract([image_input('float32')], name='floats')
    bytes_model = image_head_model(TensorProto.UINT8, uint8_contract)
    floats_model = image_head_model(TensorProto.FLOAT, float_contract)
    embed_contract(bytes_model, uint8_contract)
    embed_contract(floats_model, float_contract)
    rng = np.random.default_rng(1)
    with PolicyRuntime(save(bytes_model, tmp_path / 'bytes.onnx')) as bytes_runtime, \
            PolicyRuntime(save(floats_model, tmp_path / 'floats.onnx')) as floats_runtime:
        for height, width, encoding in ((H, W, 'rgb8'), (H, W, 'bgr8'), (36, 48, 'rgb8')):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = ImageFrame(pixels.tobytes(), width, height, encoding)
            from_bytes = bytes_runtime.infer(bytes_runtime.build_inputs({'cam': frame}))
            from_floats = floats_runtime.infer(floats_runtime.build_inputs({'cam': frame}))
            np.testing.assert_allclose(from_bytes.values, from_floats.values, atol=1e-5)
        assert bytes_runtime.zero_inputs()['image'].dtype == np.uint8
        bytes_runtime.warmup()
        with pytest.raises(InputError, match="input 'image' is float32 .* needs uint8"):
            bytes_runtime.infer({'image': np.zeros((1, H, W, 3), np.float32)})


def test_uint8_frame_of_the_model_size_is_fed_as_a_view_of_the_message_buffer():
    spec = ImageInput(name='image', camera='cam', height=H, width=W, dtype='uint8',
                      layout='nhwc')
    buffer = bytearray(np.arange(H * W * 3, dtype=np.uint8).tobytes())
    tensor = image_to_tensor(buffer, W, H, 'rgb8', spec)
    assert tensor.shape == (1, H, W, 3) and tensor.dtype == np.uint8
    assert np.shares_memory(tensor, np.frombuffer(buffer, np.uint8))  # no copy
    # Another channel order, or nchw, costs exactly one copy with the right values.
    swapped = image_to_tensor(buffer, W, H, 'bgr8', spec)
    pixels = np.frombuffer(buffer, np.uint8).reshape(H, W, 3)
    np.testing.assert_array_equal(swapped[0], pixels[:, :, ::-1])
    nchw = ImageInput(name='image', camera='cam', height=H, width=W, dtype='uint8')
    np.testing.assert_array_equal(image_to_tensor(buffer, W, H, 'rgb8', nchw)[0],
                                  pixels.transpose(2, 0, 1))


def test_uint8_contract_against_a_float_model_is_refused_naming_dtype(tmp_path):
    contract = v2_contract([image_input('uint8')])
    model = image_head_model(TensorProto.FLOAT, contract)
    with pytest.raises(ContractError, match=r"inputs\[0\]\.dtype: a image input is uint8, but "
                                            r"model input 'image' is float32"):
        validate_against_model(contract, model)


# ------------------------------------------------------------------ padded state and action
def padded_contract(state_width=10, action_width=12):
    return v2_contract([{'name': 'state', 'kind': 'state', 'width': state_width,
                         'components': [{'source': 'joint_positions', 'joints': list(JOINTS)},
                                        {'source': 'gripper_position'}],
                         'mean': [0.1] * 7, 'std': [0.5] * 7}], width=action_width)


def test_padded_state_is_zero_filled_after_the_normalised_values():
    spec = StateInput(name='state', width=9, components=(
        StateComponent('joint_positions', joints=('joint_1', 'joint_2')),
        StateComponent('gripper_position')), mean=(0.0, 1.0, 0.0), std=(2.0, 2.0, 0.01))
    tensor = state_to_tensor(spec, {'joint_1': 1.0, 'joint_2': 2.0}, gripper_position=0.02)
    np.testing.assert_allclose(tensor, [[0.5, 0.5, 2.0, 0, 0, 0, 0, 0, 0]], atol=1e-6)


def test_padded_model_runs_and_its_pad_columns_are_ignored(tmp_path):
    contract = padded_contract()
    model = build_toy_model(contract)
    # NaN in every pad column of the output: the runtime must never read them.
    for init in model.graph.initializer:
        if init.name == 'head_b':
            bias = numpy_helper.to_array(init).reshape(CHUNK, 12).copy()
            bias[:, 7:] = np.nan
            init.CopyFrom(numpy_helper.from_array(bias.reshape(-1), 'head_b'))
    path = save(model, tmp_path / 'padded.onnx')
    joints = dict(zip(JOINTS, np.linspace(-0.5, 0.5, 6)))
    with PolicyRuntime(path) as runtime:
        inputs = runtime.build_inputs({}, joints, gripper_position=0.01)
        state = inputs.tensors['state']
        assert state.shape == (1, 10) and (state[0, 7:] == 0).all()
        chunk = runtime.infer(inputs)
    (raw,) = ort.InferenceSession(str(path)).run(['actions'], dict(inputs.tensors))
    assert raw.shape == (1, CHUNK, 12) and np.isnan(raw[0, :, 7:]).all()
    assert chunk.values.shape == (CHUNK, 7) and chunk.raw.shape == (CHUNK, 7)
    # The action has mean 0 / std 1: the values are the real columns as the model gave them.
    np.testing.assert_allclose(chunk.values, raw[0, :, :7], atol=1e-6)
    assert chunk.columns[-1] == 'gripper_position'


def test_padded_width_that_the_model_does_not_have_is_refused_naming_width(tmp_path):
    model = build_toy_model(padded_contract(action_width=11), embed=False)
    with pytest.raises(ContractError) as error:
        validate_against_model(padded_contract(action_width=12), model)
    assert 'outputs[0].width: A (width) is 12 in the contract but 11' in str(error.value)


# ------------------------------------------------------------------ tokenizers tokenizer.json
INSTRUCTIONS = ['pick the red cube and place it in the left bin',
                'put the blue cylinder in the right bin',
                '赤いキューブを左の箱に入れて',
                '青い円柱を右の箱に入れて']
LENGTH = 10


@pytest.fixture(scope='module')
def hf():
    """The `tokenizers` library (requirements.txt pins it; an install without it cannot run
    hf_tokenizers contracts and says so, see tokenizer.HFTokenizer)."""
    return pytest.importorskip('tokenizers')


@pytest.fixture(scope='module')
def tokenizer_json(hf, tmp_path_factory):
    """A WordPiece tokenizer trained on English and Japanese instructions, BERT-style
    ([CLS] ... [SEP]); its pad token is id 3, so a default pad id of 0 would show."""
    tokenizer = hf.Tokenizer(hf.models.WordPiece(unk_token='[UNK]'))
    tokenizer.normalizer = hf.normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(INSTRUCTIONS, hf.trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=['[UNK]', '[CLS]', '[SEP]', '[PAD]']))
    tokenizer.post_processor = hf.processors.TemplateProcessing(
        single='[CLS] $A [SEP]', special_tokens=[('[CLS]', 1), ('[SEP]', 2)])
    path = tmp_path_factory.mktemp('tokenizer') / 'tokenizer.json'
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope='module')
def token_count(hf, tokenizer_json):
    """Token ids of the trained tokenizer, added tokens included."""
    return hf.Tokenizer.from_file(str(tokenizer_json)).get_vocab_size(with_added_tokens=True)


def embedding_model(contract, vocab_rows):
    """input_ids -> Gather from an embedding table of `vocab_rows` rows, masked by the
    attention mask, summed -> Gemm -> [1, T, A]: ids beyond the table fail in onnxruntime."""
    rng = np.random.default_rng(0)
    size = contract.action.size
    inits = [numpy_helper.from_array(rng.normal(0, 1, (vocab_rows, 4)).astype(np.float32),
                                     'embedding'),
             numpy_helper.from_array(rng.normal(0, 0.1, (4, CHUNK * size)).astype(np.float32),
                                     'head_w'),
             numpy_helper.from_array(np.array([1, CHUNK, size], np.int64), 'shape'),
             numpy_helper.from_array(np.array([2], np.int64), 'last_axis'),
             numpy_helper.from_array(np.array([1], np.int64), 'token_axis')]
    nodes = [helper.make_node('Gather', ['embedding', 'input_ids'], ['vectors']),
             helper.make_node('Cast', ['attention_mask'], ['mask_f'], to=TensorProto.FLOAT),
             helper.make_node('Unsqueeze', ['mask_f', 'last_axis'], ['mask_3d']),
             helper.make_node('Mul', ['vectors', 'mask_3d'], ['kept']),
             helper.make_node('ReduceSum', ['kept', 'token_axis'], ['pooled'], keepdims=0),
             helper.make_node('MatMul', ['pooled', 'head_w'], ['head']),
             helper.make_node('Reshape', ['head', 'shape'], ['actions'])]
    graph = helper.make_graph(nodes, 'embedding', [
        helper.make_tensor_value_info('input_ids', TensorProto.INT64, [1, LENGTH]),
        helper.make_tensor_value_info('attention_mask', TensorProto.INT64, [1, LENGTH])],
        [helper.make_tensor_value_info('actions', TensorProto.FLOAT, [1, CHUNK, size])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    return model


def tokenizer_contract(vocab_size, tokenizer_file='tokenizer.json', **extra):
    return v2_contract([{'name': 'input_ids', 'kind': 'instruction',
                         'tokenizer': 'hf_tokenizers', 'tokenizer_file': tokenizer_file,
                         'vocab_size': vocab_size, 'max_length': LENGTH,
                         'attention_mask': 'attention_mask', **extra}])


def model_with_tokenizer(folder, tokenizer_json, rows, vocab_size=None, **extra):
    """A model file in `folder` with tokenizer.json (of `rows` tokens) beside it, its
    embedding table `rows` long; the contract says `vocab_size` (default: `rows`)."""
    folder.mkdir(exist_ok=True)
    (folder / 'tokenizer.json').write_bytes(tokenizer_json.read_bytes())
    contract = tokenizer_contract(rows if vocab_size is None else vocab_size, **extra)
    model = embedding_model(contract, rows)
    embed_contract(model, contract)
    return save(model, folder / 'policy.onnx')


def test_japanese_and_english_instructions_run_through_the_tokenizer_json(
        tmp_path, hf, tokenizer_json, token_count):
    reference = hf.Tokenizer.from_file(str(tokenizer_json))
    path = model_with_tokenizer(tmp_path / 'model', tokenizer_json, token_count)
    with PolicyRuntime(path) as runtime:
        for text in ('赤いキューブを左の箱に入れて', 'pick the red cube'):
            inputs = runtime.build_inputs({}, instruction=text)
            ids, mask = inputs.tensors['input_ids'], inputs.tensors['attention_mask']
            expected = reference.encode(text).ids
            assert ids.shape == mask.shape == (1, LENGTH) and ids.dtype == mask.dtype == np.int64
            assert ids[0, :len(expected)].tolist() == expected
            assert (ids[0, len(expected):] == 3).all()                    # the file's [PAD]
            assert mask[0].tolist() == [1] * len(expected) + [0] * (LENGTH - len(expected))
            assert not inputs.truncated and inputs.unknown_words == ()
            assert np.isfinite(runtime.infer(inputs).values).all()


def test_long_instruction_is_truncated_and_reported_and_unknown_text_is_named(
        tmp_path, tokenizer_json, token_count):
    path = model_with_tokenizer(tmp_path / 'model', tokenizer_json, token_count)
    with PolicyRuntime(path) as runtime:
        long = runtime.build_inputs({}, instruction=INSTRUCTIONS[0] + ' and then go home')
        assert long.truncated
        assert long.tensors['attention_mask'].sum() == LENGTH
        assert long.tensors['input_ids'][0, -1] == 2          # [SEP] kept by the tokenizer
        unknown = runtime.build_inputs({}, instruction='pick the zebra')
        assert unknown.unknown_words == ('zebra',)
    rejecting = model_with_tokenizer(tmp_path / 'strict', tokenizer_json, token_count,
                                     unknown_words='reject')
    with PolicyRuntime(rejecting) as runtime:
        with pytest.raises(InputError, match=r"does not know: \['zebra'\]"):
            runtime.build_inputs({}, instruction='pick the zebra')


def test_tokenizer_file_with_another_vocabulary_size_is_refused_naming_vocab_size(
        tmp_path, tokenizer_json, token_count):
    rows = token_count
    path = model_with_tokenizer(tmp_path / 'model', tokenizer_json, rows, vocab_size=rows + 5)
    with pytest.raises(ContractError) as error:
        PolicyRuntime(path)
    message = str(error.value)
    assert message.startswith('inputs[0].vocab_size: the contract says')
    assert f'says {rows + 5} but tokenizer.json holds {rows} tokens' in message


def test_missing_tokenizer_file_is_refused_naming_the_path(tmp_path, tokenizer_json,
                                                           token_count):
    path = model_with_tokenizer(tmp_path / 'model', tokenizer_json, token_count,
                                tokenizer_file='tokenizers/missing.json')
    with pytest.raises(ModelLoadError, match=r"inputs\[0\]\.tokenizer_file: '.*model/"
                                             r"tokenizers/missing\.json' does not exist"):
        PolicyRuntime(path)


def test_explicit_pad_id_is_used_for_padding(tmp_path, tokenizer_json, token_count):
    path = model_with_tokenizer(tmp_path / 'model', tokenizer_json, token_count, pad_id=0)
    with PolicyRuntime(path) as runtime:
        ids = runtime.build_inputs({}, instruction='pick').tensors['input_ids'][0]
    assert ids[0] == 1 and ids[2] == 2 and (ids[3:] == 0).all()     # [CLS] pick [SEP], pads
