"""Policy contract: parsing, storage (metadata / sidecar), validation against models and robots.

Models are real ONNX graphs built with onnx.helper (runtime.build_toy_model) and loaded by the
real onnxruntime.
"""
import copy
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from noetra_ros.core.errors import ContractError, ModelLoadError
from noetra_ros.core.policy.contract import (
    METADATA_KEY, PolicyContract, contract_from_dict, embed_contract, load_contract,
    locate_contract, model_io, save_sidecar, sidecar_path, validate_against_model,
    validate_against_robot)
from noetra_ros.core.policy.runtime import build_toy_model

JOINTS = [f'joint_{i}' for i in range(1, 7)]
VOCAB = ['<pad>', '<unk>', 'pick', 'the', 'red', 'block', 'put', 'it', 'on', 'tray']


def contract_dict():
    """A contract using every input kind (image, state with all sources, instruction)."""
    return {
        'contract_version': 1,
        'name': 'pick_place_small',
        'robot_joints': list(JOINTS),
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 48,
             'width': 64, 'resize': 'center_crop', 'color_order': 'rgb', 'layout': 'nchw',
             'scale': 255.0, 'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': list(JOINTS)},
                {'source': 'gripper_position'},
                {'source': 'wrench', 'axes': ['fx', 'fy', 'fz']},
            ], 'mean': [0.0] * 10, 'std': [1.0] * 6 + [0.02] + [10.0] * 3},
            {'name': 'instruction', 'kind': 'instruction', 'tokenizer': 'word_vocab',
             'vocabulary': list(VOCAB), 'max_length': 8, 'unknown_words': 'map_to_unk'},
        ],
        'outputs': [
            {'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 5,
             'step_period_s': 0.05, 'components': [
                 {'meaning': 'joint_positions', 'mode': 'delta', 'joints': list(JOINTS)},
                 {'meaning': 'gripper_position', 'mode': 'absolute'},
             ], 'mean': [0.0] * 7, 'std': [0.1] * 6 + [0.02]},
        ],
        'info': {'exporter': 'test', 'epochs': 3},
    }


@pytest.fixture
def contract():
    return contract_from_dict(contract_dict())


def variant(**changes):
    """contract_dict() with changes given as {'dotted.path': value}; value None deletes."""
    data = contract_dict()
    for path, value in changes.items():
        keys = path.split('.')
        node = data
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return data


def save(model, tmp_path, name='policy.onnx'):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model_path(tmp_path, contract):
    return save(build_toy_model(contract), tmp_path)


# -- parsing and round trips -----------------------------------------------------------------

def test_round_trip_through_dict_json_and_yaml(contract):
    assert contract_from_dict(contract.to_dict()) == contract
    assert contract_from_dict(yaml.safe_load(contract.to_yaml())) == contract
    assert contract.state_input.size == 10
    assert contract.action.size == 7
    assert contract.cameras == ('scene_camera',)
    assert contract.uses_gripper and contract.uses_wrench and not contract.uses_base
    assert contract.info['epochs'] == 3


def test_defaults_fill_identity_normalisation():
    data = variant(**{'inputs.0.mean': None, 'inputs.0.std': None, 'outputs.0.mean': None,
                      'outputs.0.std': None})
    parsed = contract_from_dict(data)
    assert parsed.image_inputs[0].mean == (0.0, 0.0, 0.0)
    assert parsed.action.std == (1.0,) * 7


def test_action_columns_and_split(contract):
    action = contract.action
    assert action.columns[0] == 'joint_positions.joint_1'
    assert action.columns[-1] == 'gripper_position'
    values = np.arange(5 * 7, dtype=float).reshape(5, 7)
    parts = action.split(values)
    assert parts.joint_names == tuple(JOINTS)
    np.testing.assert_array_equal(parts.joint_positions, values[:, :6])
    np.testing.assert_array_equal(parts.gripper_position, values[:, 6])
    assert parts.joint_velocities is None and parts.base_twist is None
    assert action.split(values[2]).gripper_position == values[2, 6]


@pytest.mark.parametrize('changes, field', [
    ({'contract_version': 2}, 'contract_version'),
    ({'name': ''}, 'name'),
    ({'robot_joints': ['joint_1', 'joint_1']}, 'robot_joints[1]'),
    ({'inputs.0.height': -3}, 'inputs[0].height'),
    ({'inputs.0.height': None}, 'inputs[0].height: missing'),
    ({'inputs.0.width': 96.5}, 'inputs[0].width'),
    ({'inputs.0.resize': 'fit'}, 'inputs[0].resize'),
    ({'inputs.0.color_order': 'hsv'}, 'inputs[0].color_order'),
    ({'inputs.0.mean': [0.5, 0.5]}, 'inputs[0].mean'),
    ({'inputs.0.std': [0.2, 0.0, 0.2]}, 'inputs[0].std[1]'),
    ({'inputs.0.colour': 'rgb'}, "inputs[0]: unknown key 'colour'"),
    ({'inputs.0.kind': 'lidar'}, 'inputs[0].kind'),
    ({'inputs.1.std': [1.0] * 9}, 'inputs[1].std'),
    ({'inputs.1.components.0.joints.5': 'joint_7'}, 'inputs[1].components[0].joints[5]'),
    ({'inputs.1.components.2.axes': ['fx', 'fw']}, 'inputs[1].components[2].axes[1]'),
    ({'inputs.1.components.1.joints': ['joint_1']}, 'inputs[1].components[1].joints'),
    ({'inputs.1.components.2.components': ['fx']}, "inputs[1].components[2]: unknown key"),
    ({'inputs.2.vocabulary.0': 'hello'}, 'inputs[2].vocabulary[0]'),
    ({'inputs.2.vocabulary.3': 'The'}, 'inputs[2].vocabulary[3]'),
    ({'inputs.2.vocabulary.8': True}, 'quote it'),
    ({'inputs.2.max_length': 0}, 'inputs[2].max_length'),
    ({'inputs.2.unknown_words': 'ignore'}, 'inputs[2].unknown_words'),
    ({'inputs.2.name': 'state'}, 'inputs[2].name'),
    ({'outputs.0.chunk_length': 0}, 'outputs[0].chunk_length'),
    ({'outputs.0.step_period_s': float('nan')}, 'outputs[0].step_period_s'),
    ({'outputs.0.components.1.mode': 'relative'}, 'outputs[0].components[1].mode'),
    ({'outputs.0.components.0.joints.2': 'elbow'}, 'outputs[0].components[0].joints[2]'),
    ({'outputs.0.mean': [0.0] * 6}, 'outputs[0].mean'),
    ({'outputs.0.std': [0.1] * 6 + [-1.0]}, 'outputs[0].std[6]'),
])
def test_invalid_contract_names_the_field(changes, field):
    with pytest.raises(ContractError) as error:
        contract_from_dict(variant(**changes))
    assert field in str(error.value)


def test_delta_is_rejected_for_velocities():
    data = variant(**{'outputs.0.components.1': {'meaning': 'joint_velocities', 'mode': 'delta',
                                                 'joints': ['joint_1']},
                      'outputs.0.mean': None, 'outputs.0.std': None})
    with pytest.raises(ContractError, match=r'outputs\[0\]\.components\[1\]\.mode'):
        contract_from_dict(data)


def test_two_outputs_or_two_states_are_rejected():
    data = contract_dict()
    data['outputs'].append(copy.deepcopy(data['outputs'][0]))
    with pytest.raises(ContractError, match='outputs'):
        contract_from_dict(data)
    data = contract_dict()
    data['inputs'].append(dict(copy.deepcopy(data['inputs'][1]), name='state_2'))
    with pytest.raises(ContractError, match=r'inputs\[3\]\.kind'):
        contract_from_dict(data)


# -- storage ---------------------------------------------------------------------------------

def test_contract_loads_from_metadata(model_path, contract):
    loaded = locate_contract(model_path)
    assert loaded.origin == 'metadata'
    assert loaded.contract == contract
    assert load_contract(model_path) == contract


def test_contract_loads_from_sidecar(tmp_path, contract):
    path = save(build_toy_model(contract, embed=False), tmp_path)
    side = save_sidecar(path, contract)
    assert side == tmp_path / 'policy.contract.yaml' == sidecar_path(path)
    loaded = locate_contract(path)
    assert loaded.origin.startswith('sidecar')
    assert loaded.contract == contract
    assert loaded.warnings == ()


def test_sidecar_wins_over_metadata_with_a_warning(model_path, contract, caplog):
    other = contract_from_dict(variant(name='renamed'))
    save_sidecar(model_path, other)
    with caplog.at_level(logging.WARNING):
        loaded = locate_contract(model_path)
    assert loaded.contract.name == 'renamed'
    assert len(loaded.warnings) == 1 and 'differ' in loaded.warnings[0]
    assert 'using the sidecar' in caplog.text


def test_missing_contract_is_a_contract_error(tmp_path, contract):
    path = save(build_toy_model(contract, embed=False), tmp_path)
    with pytest.raises(ContractError, match='no contract'):
        load_contract(path)


def test_bad_sidecar_yaml_names_the_file(model_path):
    sidecar_path(model_path).write_text('inputs: [unclosed\n')
    with pytest.raises(ContractError, match='policy.contract.yaml'):
        load_contract(model_path)


def test_field_errors_in_a_sidecar_keep_their_path(model_path):
    data = variant(**{'inputs.0.height': 0})
    sidecar_path(model_path).write_text(yaml.safe_dump(data))
    with pytest.raises(ContractError, match=r'inputs\[0\]\.height.*sidecar'):
        load_contract(model_path)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelLoadError, match='nothing.onnx'):
        load_contract(tmp_path / 'nothing.onnx')
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'\x08\x07 definitely not a protobuf \xff\xff\xff')
    with pytest.raises(ModelLoadError, match='corrupt.onnx'):
        load_contract(corrupt)


def test_embed_contract_replaces_the_entry_in_place(tmp_path, contract):
    path = save(build_toy_model(contract, embed=False), tmp_path)
    embed_contract(path, contract_from_dict(variant(name='first')))
    embed_contract(path, contract)
    model = onnx.load(str(path))
    entries = [p for p in model.metadata_props if p.key == METADATA_KEY]
    assert len(entries) == 1
    assert load_contract(path) == contract


def test_embed_contract_refuses_a_contract_that_does_not_fit(tmp_path, contract):
    model = build_toy_model(contract, embed=False)
    wrong = contract_from_dict(variant(**{'outputs.0.chunk_length': 6}))
    with pytest.raises(ContractError, match=r'outputs\[0\]\.chunk_length'):
        embed_contract(model, wrong, tmp_path / 'out.onnx')
    assert not (tmp_path / 'out.onnx').exists()


# -- validation against the model ------------------------------------------------------------

def test_good_contract_validates_against_proto_session_and_path(model_path, contract):
    validate_against_model(contract, onnx.load(str(model_path)))
    validate_against_model(contract, ort.InferenceSession(str(model_path)))
    validate_against_model(contract, model_path)


def test_dynamic_batch_is_accepted(tmp_path, contract):
    model = build_toy_model(contract, batch='batch')
    inputs, outputs = model_io(model)
    assert inputs[0].shape == (None, 3, 48, 64)
    validate_against_model(contract, ort.InferenceSession(model.SerializeToString()))


def model_from(changes):
    return build_toy_model(contract_from_dict(variant(**changes)), embed=False)


@pytest.mark.parametrize('model_changes, contract_changes, field', [
    ({'inputs.2': None}, {}, "inputs[2].name: 'instruction' is not an input of the model"),
    ({}, {'inputs.2': None}, "inputs: model input 'instruction'"),
    ({'inputs.0.height': 40}, {}, 'inputs[0].height: height is 48 in the contract but 40'),
    ({'inputs.0.width': 40}, {}, 'inputs[0].width'),
    ({'inputs.0.color_order': 'mono', 'inputs.0.mean': None, 'inputs.0.std': None}, {},
     'inputs[0].color_order'),
    ({'inputs.0.layout': 'nhwc'}, {}, 'inputs[0].layout: the contract says nchw'),
    ({'inputs.1.components.2.axes': ['fx'], 'inputs.1.mean': None, 'inputs.1.std': None}, {},
     'inputs[1].components: D'),
    ({'inputs.2.max_length': 12}, {}, 'inputs[2].max_length'),
    ({'outputs.0.chunk_length': 7}, {}, 'outputs[0].chunk_length'),
    ({'outputs.0.components.1': {'meaning': 'joint_velocities',
                                 'joints': ['joint_1', 'joint_2']},
      'outputs.0.mean': None, 'outputs.0.std': None}, {}, 'outputs[0].components: A'),
    ({'outputs.0.name': 'chunk'}, {}, "outputs[0].name: 'actions' is not an output"),
])
def test_each_model_mismatch_names_the_field(model_changes, contract_changes, field):
    model = model_from(model_changes)
    contract = contract_from_dict(variant(**contract_changes))
    with pytest.raises(ContractError) as error:
        validate_against_model(contract, model)
    assert field in str(error.value)
    # The same verdict through a real onnxruntime session.
    with pytest.raises(ContractError) as error:
        validate_against_model(contract, ort.InferenceSession(model.SerializeToString()))
    assert field in str(error.value)


def test_wrong_dtype_names_the_field(contract):
    model = build_toy_model(contract, embed=False)
    model.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    model.graph.input[2].type.tensor_type.elem_type = onnx.TensorProto.INT32
    with pytest.raises(ContractError) as error:
        validate_against_model(contract, model)
    message = str(error.value)
    assert "inputs[1].kind: a state input is float32, but model input 'state' is float64" \
        in message
    assert 'inputs[2].kind' in message and 'int32' in message


def test_fixed_batch_other_than_one_is_rejected(contract):
    model = build_toy_model(contract, batch=4, embed=False)
    with pytest.raises(ContractError, match='fixed batch size of 4'):
        validate_against_model(contract, model)


def test_all_problems_are_reported_together(contract):
    model = model_from({'inputs.0.height': 40, 'outputs.0.chunk_length': 7})
    with pytest.raises(ContractError) as error:
        validate_against_model(contract, model)
    assert 'inputs[0].height' in str(error.value)
    assert 'outputs[0].chunk_length' in str(error.value)


# -- validation against the robot ------------------------------------------------------------

def test_contract_fits_a_robot_with_gripper_and_wrench(contract):
    validate_against_robot(contract, JOINTS + ['finger_joint'], has_gripper=True,
                           has_wrench=True)


def test_unknown_joint_names_the_exact_path(contract):
    robot = ['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6_renamed']
    with pytest.raises(ContractError) as error:
        validate_against_robot(contract, robot, has_gripper=True, has_wrench=True)
    message = str(error.value)
    assert ("inputs[1].components[0].joints[5]: 'joint_6' is not a joint of the robot "
            "(joints: joint_1, joint_2, joint_3, joint_4, joint_5, joint_6_renamed)") in message
    assert 'outputs[0].components[0].joints[5]' in message
    assert 'robot_joints[5]' in message


def test_missing_gripper_and_wrench_sensor(contract):
    with pytest.raises(ContractError) as error:
        validate_against_robot(contract, JOINTS, has_gripper=False)
    message = str(error.value)
    assert 'inputs[1].components[1].source' in message        # gripper in the state
    assert 'inputs[1].components[2].source' in message        # wrench in the state
    assert 'outputs[0].components[1].meaning' in message      # gripper in the action


def test_base_twist_needs_a_base_with_those_axes():
    data = variant(**{'outputs.0.components.1': {'meaning': 'base_twist',
                                                 'axes': ['vx', 'vy', 'wz']},
                      'outputs.0.mean': None, 'outputs.0.std': None})
    contract = contract_from_dict(data)
    assert contract.uses_base
    with pytest.raises(ContractError, match=r'outputs\[0\]\.components\[1\]\.meaning'):
        validate_against_robot(contract, JOINTS, has_gripper=True, has_wrench=True)
    with pytest.raises(ContractError, match=r"outputs\[0\]\.components\[1\]\.axes\[1\]: .*'vy'"):
        validate_against_robot(contract, JOINTS, has_gripper=True, has_wrench=True,
                               has_base=True, base_axes=('vx', 'wz'))


def test_direct_construction_validates_too():
    from noetra_ros.core.policy.contract import ImageInput
    with pytest.raises(ContractError, match='height'):
        ImageInput(name='img', camera='cam', height=0, width=10)
    image = ImageInput(name='img', camera='cam', height=10, width=12, mean=[0.5] * 3)
    assert image.mean == (0.5, 0.5, 0.5) and image.shape == (1, 3, 10, 12)
    assert isinstance(hash(image), int)
    assert isinstance(PolicyContract.from_dict(contract_dict()), PolicyContract)
