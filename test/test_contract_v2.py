"""Policy contract version 2: the schema (version 2 fields, refusals with the field path) and the
embodiment - the kinematics fingerprint of each arm and the start-up check against the cell's
robot, on the shipped model and real onnxruntime."""
import copy
from dataclasses import replace
import json
from pathlib import Path

import pytest

from noetra_ros.core.errors import ConfigError, ContractError
from noetra_ros.core.policy.contract import (
    check_embodiment, contract_from_dict, contract_from_json, contract_from_yaml, Embodiment,
    ImageInput, PolicyContract, read_metadata)
from noetra_ros.core.policy.runtime import build_toy_model, PolicyRuntime
from noetra_ros.core.robot_model import (chain_fingerprint, kinematics_fingerprint,
                                         load_robot_description, RobotModel)
from noetra_ros.core.robots import urdf_path

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / 'models' / 'pick_place_lrmate.onnx'
JOINTS = [f'joint_{i}' for i in range(1, 7)]
ROBOTS = ('fanuc_lrmate200id', 'yaskawa_hc10', 'yaskawa_gp8', 'fanuc_crx10ia')
LRMATE = 'fanuc_lrmate200id'


def v1_dict():
    """A version 1 contract: image, state, word-vocabulary instruction, action chunk."""
    return {
        'contract_version': 1, 'name': 'v1_policy', 'robot_joints': list(JOINTS),
        'inputs': [
            {'name': 'image', 'kind': 'image', 'camera': 'scene_camera', 'height': 24,
             'width': 32},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': list(JOINTS)},
                {'source': 'gripper_position'}]},
            {'name': 'instruction', 'kind': 'instruction',
             'vocabulary': ['<pad>', '<unk>', 'pick', 'red'], 'max_length': 6}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 4,
                     'step_period_s': 0.05, 'components': [
                         {'meaning': 'joint_positions', 'joints': list(JOINTS)},
                         {'meaning': 'gripper_position'}]}],
    }


def v2_dict():
    """Every version 2 feature of part A in one contract."""
    data = v1_dict()
    data['contract_version'] = 2
    data['embodiment'] = {'robot': LRMATE, 'kinematics': kinematics_fingerprint(LRMATE)}
    data['inputs'][0].update(resize='letterbox', pad_value=114, dtype='uint8', layout='nhwc')
    data['inputs'][1]['width'] = 12
    data['inputs'][2] = {'name': 'input_ids', 'kind': 'instruction',
                         'tokenizer': 'hf_tokenizers', 'tokenizer_file': 'tokenizer.json',
                         'vocab_size': 120, 'max_length': 8, 'pad_id': 3,
                         'attention_mask': 'attention_mask'}
    data['outputs'][0]['width'] = 10
    return data


def changed(data, **changes):
    """A copy of `data` with 'inputs.0.dtype'-style paths set (None deletes the key)."""
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        *parents, last = dotted.split('.')
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        index = int(last) if isinstance(node, list) else last
        if value is None:
            del node[index]
        else:
            node[index] = value
    return data


# ------------------------------------------------------------------ schema
def test_version_2_contract_parses_and_round_trips_through_dict_json_and_yaml():
    contract = contract_from_dict(v2_dict())
    assert contract.contract_version == 2
    image, state, instruction = contract.inputs
    assert (image.resize, image.pad_value, image.dtype) == ('letterbox', 114, 'uint8')
    assert image.mean == () and image.std == ()       # normalised inside the model
    assert state.size == 7 and state.shape == (1, 12)
    assert contract.action.size == 7 and contract.action.shape == (1, 4, 10)
    assert instruction.token_count == 120 and instruction.vocabulary == ()
    assert contract.model_input_names == ('image', 'state', 'input_ids', 'attention_mask')
    assert contract_from_dict(contract.to_dict()) == contract
    assert contract_from_json(contract.to_json()) == contract
    assert contract_from_yaml(contract.to_yaml()) == contract
    # A uint8 image has no scale / mean / std to write (they would be refused on reading).
    assert not {'scale', 'mean', 'std'} & set(contract.to_dict()['inputs'][0])


def test_version_1_documents_keep_their_exact_form():
    data = v1_dict()
    contract = contract_from_dict(data)
    written = contract.to_dict()
    assert 'embodiment' not in written
    for item in written['inputs'] + written['outputs']:
        assert not {'pad_value', 'dtype', 'tokenizer_file', 'vocab_size', 'pad_id',
                    'attention_mask'} & set(item)
    assert 'width' not in written['inputs'][1] and 'width' not in written['outputs'][0]
    assert contract_from_dict(written) == contract


@pytest.mark.parametrize('changes, field', [
    ({'inputs.0.resize': 'letterbox'}, 'inputs[0].resize'),
    ({'inputs.0.pad_value': 0}, 'inputs[0].pad_value'),          # even at its default
    ({'inputs.0.dtype': 'float32'}, 'inputs[0].dtype'),
    ({'inputs.1.width': 7}, 'inputs[1].width'),
    ({'inputs.2.attention_mask': 'mask'}, 'inputs[2].attention_mask'),
    ({'inputs.2.tokenizer': 'hf_tokenizers'}, 'inputs[2].tokenizer'),
    ({'inputs.2.vocab_size': 4}, 'inputs[2].vocab_size'),
    ({'outputs.0.width': 9}, 'outputs[0].width'),
])
def test_version_1_document_with_a_version_2_field_is_refused_naming_it(changes, field):
    with pytest.raises(ContractError) as error:
        contract_from_dict(changed(v1_dict(), **changes))
    assert str(error.value).startswith(f'{field}: needs contract_version 2')


def test_version_1_contract_built_in_code_with_a_version_2_value_is_refused():
    contract = contract_from_dict(v1_dict())
    letterboxed = replace(contract.inputs[0], resize='letterbox')
    with pytest.raises(ContractError, match=r'^inputs\[0\]\.resize: needs contract_version 2'):
        replace(contract, inputs=(letterboxed, *contract.inputs[1:]))
    assert replace(contract, inputs=(letterboxed, *contract.inputs[1:]), contract_version=2,
                   embodiment=Embodiment(LRMATE, kinematics_fingerprint(LRMATE)))


def test_embodiment_is_optional_in_version_1_and_required_in_version_2():
    fingerprint = kinematics_fingerprint(LRMATE)
    with_embodiment = changed(v1_dict(), embodiment={'robot': LRMATE, 'kinematics': fingerprint})
    assert contract_from_dict(with_embodiment).embodiment == Embodiment(LRMATE, fingerprint)
    with pytest.raises(ContractError, match=r'^embodiment: missing: contract_version 2'):
        contract_from_dict(changed(v2_dict(), embodiment=None))


@pytest.mark.parametrize('changes, message', [
    ({'embodiment.kinematics': 'sha256:abc'}, r'^embodiment\.kinematics: must be'),
    ({'embodiment.robot': None}, r'^embodiment\.robot: missing'),
    ({'embodiment.arm': 'x'}, r"^embodiment: unknown key 'arm'"),
    ({'contract_version': 3}, r'^contract_version: 3 is not supported'),
    ({'inputs.0.scale': 255.0}, r'^inputs\[0\]\.scale: a dtype uint8 input is normalised'),
    ({'inputs.0.mean': [0.5, 0.5, 0.5]}, r'^inputs\[0\]\.mean: a dtype uint8 input'),
    ({'inputs.0.dtype': 'float16'}, r'^inputs\[0\]\.dtype'),
    ({'inputs.0.pad_value': 256}, r'^inputs\[0\]\.pad_value: must be in \[0, 255\]'),
    ({'inputs.0.resize': 'stretch'}, r'^inputs\[0\]\.pad_value: only applies to resize: '
                                     'letterbox'),
    ({'inputs.1.width': 6}, r'^inputs\[1\]\.width: 6 is smaller than the 7 values'),
    ({'outputs.0.width': 5}, r'^outputs\[0\]\.width: 5 is smaller than the 7 values'),
    ({'inputs.2.vocab_size': None}, r'^inputs\[2\]\.vocab_size: missing'),
    ({'inputs.2.tokenizer_file': None}, r'^inputs\[2\]\.tokenizer_file: missing'),
    ({'inputs.2.tokenizer_file': '/opt/tokenizer.json'}, r'^inputs\[2\]\.tokenizer_file: .* '
                                                         'must be relative'),
    ({'inputs.2.pad_id': 120}, r'^inputs\[2\]\.pad_id: must be in \[0, 119\]'),
    ({'inputs.2.vocabulary': ['<pad>', 'a']}, r'^inputs\[2\]\.vocabulary: hf_tokenizers reads'),
    ({'inputs.2.attention_mask': 'state'}, r"^inputs\[2\]\.attention_mask: 'state' already "
                                           r'used by inputs\[1\]'),
])
def test_invalid_version_2_fields_are_refused_naming_the_field(changes, message):
    with pytest.raises(ContractError, match=message):
        contract_from_dict(changed(v2_dict(), **changes))


def test_word_vocabulary_refuses_tokenizer_file_fields_and_depth_refuses_letterbox():
    word = changed(v2_dict(), **{'inputs.2': {
        'name': 'instruction', 'kind': 'instruction', 'vocabulary': ['<pad>', '<unk>'],
        'max_length': 4, 'vocab_size': 2}})
    with pytest.raises(ContractError, match=r'^inputs\[2\]\.vocab_size: only applies to '
                                            'tokenizer hf_tokenizers'):
        contract_from_dict(word)
    depth = changed(v2_dict(), **{'inputs.0': {
        'name': 'depth', 'kind': 'depth', 'camera': 'scene_camera', 'height': 8, 'width': 8,
        'max_depth_m': 2.0, 'resize': 'letterbox'}})
    with pytest.raises(ContractError, match=r'^inputs\[0\]\.resize'):
        contract_from_dict(depth)


# ------------------------------------------------------------------ kinematics fingerprint
def test_kinematics_fingerprints_tell_the_four_arms_apart_and_repeat():
    fingerprints = {robot: kinematics_fingerprint(robot) for robot in ROBOTS}
    assert len(set(fingerprints.values())) == len(ROBOTS), fingerprints
    # The LR Mate, the HC10 and the GP8 share their joint names: only the kinematics differ.
    assert (load_robot_description('yaskawa_hc10').joint_names
            == load_robot_description(LRMATE).joint_names)
    for robot, fingerprint in fingerprints.items():
        assert fingerprint.startswith('sha256:') and len(fingerprint) == 7 + 64
        # A second, independent parse of the same URDF gives the same value.
        parsed = RobotModel.from_urdf(urdf_path(robot))
        assert chain_fingerprint(parsed.chain()) == fingerprint
        assert kinematics_fingerprint(robot) == fingerprint


def test_a_link_length_change_changes_the_fingerprint_and_float_noise_does_not():
    text = urdf_path(LRMATE).read_text()
    original = chain_fingerprint(RobotModel.from_urdf_string(text).chain())
    # joint_3 sits 0.33 m above joint_2 on the LR Mate 200iD (the upper-arm length).
    anchor = '<joint name="joint_3" type="revolute">'
    head, tail = text.split(anchor)
    assert '<origin xyz="0 0 0.33"' in tail.split('</joint>')[0]

    def with_joint_3_origin(z):
        return head + anchor + tail.replace('<origin xyz="0 0 0.33"', f'<origin xyz="0 0 {z}"',
                                            1)
    longer = RobotModel.from_urdf_string(with_joint_3_origin('0.331')).chain()
    noisy = RobotModel.from_urdf_string(with_joint_3_origin('0.33000000001')).chain()
    assert chain_fingerprint(longer) != original
    assert chain_fingerprint(noisy) == original


# ------------------------------------------------------------------ embodiment at start-up
@pytest.fixture(scope='module')
def shipped():
    with PolicyRuntime(SHIPPED, intra_op_threads=1) as runtime:
        yield runtime


def test_shipped_model_names_its_embodiment_in_a_version_1_contract(shipped):
    contract = shipped.contract
    assert contract.contract_version == 1
    assert contract.embodiment == Embodiment(LRMATE, kinematics_fingerprint(LRMATE))
    assert shipped.validate_embodiment(LRMATE) is None
    stored = json.loads(read_metadata(SHIPPED)['noetra.contract'])
    assert stored['embodiment'] == {'robot': LRMATE,
                                    'kinematics': kinematics_fingerprint(LRMATE)}


@pytest.mark.parametrize('robot', ['yaskawa_hc10', 'fanuc_crx10ia', 'yaskawa_gp8'])
def test_shipped_model_is_refused_on_another_arm_naming_both(shipped, robot):
    with pytest.raises(ConfigError) as error:
        shipped.validate_embodiment(robot)
    message = str(error.value)
    assert message.startswith('embodiment: ')
    assert f'trained for {LRMATE} (kinematics {kinematics_fingerprint(LRMATE)})' in message
    assert f'robot is {robot} (kinematics {kinematics_fingerprint(robot)})' in message
    assert 'allow_other_embodiment' in message


def test_shipped_model_runs_on_another_arm_only_by_the_cells_choice_and_says_so(shipped):
    warning = shipped.validate_embodiment('yaskawa_hc10', allow_other_embodiment=True)
    assert warning == (f"model 'pick_place_lrmate' trained for {LRMATE} runs on yaskawa_hc10 "
                       "by the cell's choice (allow_other_embodiment)")


def test_same_robot_name_with_other_kinematics_is_another_embodiment(shipped):
    regenerated = 'sha256:' + '0' * 64   # e.g. a URDF regenerated with other link lengths
    with pytest.raises(ConfigError, match=f'robot is {LRMATE} \\(kinematics {regenerated}\\)'):
        check_embodiment(shipped.contract, LRMATE, regenerated)


def test_contract_without_embodiment_gives_a_warning_that_it_cannot_be_checked(tmp_path):
    import onnx

    contract = contract_from_dict(v1_dict())
    path = tmp_path / 'old.onnx'
    onnx.save(build_toy_model(contract), path)
    with PolicyRuntime(path) as runtime:
        warning = runtime.validate_embodiment('yaskawa_hc10')
    assert warning is not None and 'cannot check that it fits yaskawa_hc10' in warning


def test_in_process_evaluation_refuses_the_shipped_model_on_another_arm():
    from noetra_ros.learning.record import EvalSettings, PolicyDriver

    settings = replace(EvalSettings.from_cell('pick_place_lrmate_policy'), robot='yaskawa_hc10')
    with pytest.raises(ConfigError, match=f'trained for {LRMATE} .* robot is yaskawa_hc10'):
        PolicyDriver(SHIPPED, settings)
    # The cell's own allow_other_embodiment (policy node parameter) reaches the evaluation.
    allowed = EvalSettings.from_cell('pick_place_lrmate_policy',
                                     policy={'allow_other_embodiment': True})
    assert allowed.allow_other_embodiment
    driver = PolicyDriver(SHIPPED, replace(allowed, robot='yaskawa_hc10'))
    driver.close()


def test_export_names_the_robot_of_the_training_datasets(tmp_path):
    from noetra_ros.learning.export import trained_embodiment

    def dataset(name, robot):
        (tmp_path / name / 'meta').mkdir(parents=True)
        (tmp_path / name / 'meta' / 'info.json').write_text(json.dumps({'robot_type': robot}))
        return str(tmp_path / name)

    hc10, lrmate = dataset('hc10', 'yaskawa_hc10'), dataset('lrmate', LRMATE)
    checkpoint = {'dataset': {'path': [hc10, str(tmp_path / 'moved_away')]}}
    assert trained_embodiment(checkpoint) == Embodiment(
        'yaskawa_hc10', kinematics_fingerprint('yaskawa_hc10'))
    with pytest.raises(ConfigError, match='different robots'):
        trained_embodiment(checkpoint, lrmate)
    with pytest.raises(ConfigError, match='cannot tell which robot'):
        trained_embodiment({'dataset': {'path': [str(tmp_path / 'moved_away')]}})


def test_version_2_contract_needs_an_embodiment_object():
    contract = contract_from_dict(v2_dict())
    with pytest.raises(ContractError, match='^embodiment: must be an Embodiment'):
        replace(contract, embodiment={'robot': LRMATE})
    assert isinstance(contract, PolicyContract) and isinstance(contract.inputs[0], ImageInput)


def test_the_documented_version_2_example_parses_and_fits_a_toy_model():
    import re

    from noetra_ros.core.policy.contract import validate_against_model

    text = (REPO / 'docs' / 'POLICY_CONTRACT.md').read_text()
    example = re.search(r'### A complete version 2 example\n\n```yaml\n(.*?)```', text, re.S)
    contract = contract_from_yaml(example.group(1))
    assert contract.contract_version == 2
    assert contract.embodiment == Embodiment(LRMATE, kinematics_fingerprint(LRMATE))
    # The toy model follows every version 2 shape: uint8 pixels, widths, the attention mask.
    validate_against_model(contract, build_toy_model(contract, embed=False))
