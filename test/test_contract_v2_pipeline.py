"""Contract version 2, several graphs: `graphs` + `pipeline` (run and denoise stages) loaded from
the contract file, validated at start-up against the graphs' metadata with the field path of
every problem, and run by PolicyRuntime (flow-matching loop, seeded noise, NaN refused with the
stage and step, never a partial chunk, real-time-chunking prefix). Small graphs built here with
onnx.helper, real onnxruntime."""
import math

import numpy as np
import onnx
from onnx import helper, TensorProto
import pytest
import yaml

from noetra_ros.core.errors import ContractError, InferenceError, InputError, ModelLoadError
from noetra_ros.core.policy.contract import contract_from_dict, save_sidecar
from noetra_ros.core.policy.loop import INFERENCE_ERRORS, Observation, PolicyLoop
from noetra_ros.core.policy.pipeline import inpaint, schedule_times
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import (build_toy_model, normalise_actions, PolicyRuntime,
                                           postprocess_actions)
from noetra_ros.core.robot_model import kinematics_fingerprint
from test_contract_v2 import changed

JOINTS = [f'joint_{i}' for i in range(1, 7)]
LRMATE = 'fanuc_lrmate200id'
CHUNK, WIDTH, DT, STEP = 10, 8, 0.05, 0.01   # the encoder's target moves STEP per chunk row
REAL = 7                                      # 6 joints + gripper; WIDTH pads to 8
TOKENS = 8
Q0 = np.array([-0.2, 0.4, -0.1, 0.0, -1.1, 0.2])


# ------------------------------------------------------------------ graphs built here
def _value(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _const(name, array):
    return helper.make_tensor(name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype),
                              array.shape, array.reshape(-1).tolist())


def _save(path, nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def save_encoder(path, chunk=CHUNK, width=WIDTH, *, nan=False):
    """pixels [1,3,24,32], state [1,W], tokens [1,8] -> target [1,T,W]:
    target[k, j] = state[j] + k * STEP for the 7 real columns, state[j] for the padding; the
    pixels and tokens enter multiplied by 0 (read, but the answer stays known). `nan`: the
    target is NaN whatever the input."""
    weight = np.zeros((width, chunk * width), np.float32)
    bias = np.zeros(chunk * width, np.float32)
    for k in range(chunk):
        weight[np.arange(width), k * width + np.arange(width)] = 1.0
        bias[k * width:k * width + REAL] = k * STEP
    inits = [_const('w', weight), _const('b', bias),
             _const('shape', np.array([1, chunk, width], np.int64)),
             _const('zero', np.array(0.0 if not nan else np.nan, np.float32))]
    nodes = [helper.make_node('MatMul', ['state', 'w'], ['m']),
             helper.make_node('Add', ['m', 'b'], ['lin']),
             helper.make_node('Reshape', ['lin', 'shape'], ['shaped']),
             helper.make_node('ReduceMean', ['pixels'], ['pixel_mean'], keepdims=0),
             helper.make_node('Cast', ['tokens'], ['token_float'], to=TensorProto.FLOAT),
             helper.make_node('ReduceMean', ['token_float'], ['token_mean'], keepdims=0),
             helper.make_node('Add', ['pixel_mean', 'token_mean'], ['side']),
             helper.make_node('Mul', ['side', 'zero'], ['nothing']),
             helper.make_node('Add', ['shaped', 'nothing'], ['target'])]
    _save(path, nodes,
          [_value('pixels', TensorProto.FLOAT, (1, 3, 24, 32)),
           _value('state', TensorProto.FLOAT, (1, width)),
           _value('tokens', TensorProto.INT64, (1, TOKENS))],
          [_value('target', TensorProto.FLOAT, (1, chunk, width))], inits)


def save_denoiser(path, chunk=CHUNK, width=WIDTH, *, gain=1.0, step_width=None,
                  time_shape=(1,), nan_below_gate=False, prefix_shape=None,
                  predicts='velocity'):
    """x_t [1,T,W], t, prefix -> velocity = gain * (x_t - prefix) / t: the exact flow-matching
    velocity of the straight path from noise (t = 1) to prefix (t = 0), so Euler integration
    ends at prefix after any number of steps (gain 1; gain 0: x stays the noise).
    `predicts='sample'`: the output is prefix itself (the clean-sample prediction).
    `nan_below_gate`: an input `gate` [1,W]; the output turns NaN at every t < gate[0, 0].
    `prefix_shape` [1,W]: an observation vector broadcast over the rows (iterative pattern)."""
    prefix_shape = prefix_shape or (1, chunk, width)
    out_width = step_width or width
    inits = [_const('gain', np.array(gain, np.float32)),
             _const('starts', np.array([0], np.int64)),
             _const('ends', np.array([out_width], np.int64)),
             _const('axes', np.array([2], np.int64)),
             _const('zero', np.array(0.0, np.float32)),
             _const('first', np.array([0], np.int64))]
    inputs = [_value('x_t', TensorProto.FLOAT, (1, chunk, width)),
              _value('t', TensorProto.FLOAT, time_shape),
              _value('prefix', TensorProto.FLOAT, prefix_shape)]
    if predicts == 'sample':
        nodes = [helper.make_node('Add', ['prefix', 'zero'], ['full'])]
        if len(prefix_shape) == 2:
            nodes = [helper.make_node('Unsqueeze', ['prefix', 'first'], ['full'])]
        nodes += [helper.make_node('Mul', ['x_t', 'zero'], ['x_zero']),
                  helper.make_node('Mul', ['t', 'zero'], ['t_zero']),
                  helper.make_node('Add', ['x_zero', 'full'], ['sum']),
                  helper.make_node('Add', ['sum', 't_zero'], ['velocity_full'])]
    else:
        nodes = [helper.make_node('Sub', ['x_t', 'prefix'], ['diff']),
                 helper.make_node('Div', ['diff', 't'], ['ratio']),
                 helper.make_node('Mul', ['ratio', 'gain'], ['velocity_full'])]
    if nan_below_gate:
        inputs.append(_value('gate', TensorProto.FLOAT, (1, width)))
        nodes += [helper.make_node('Gather', ['gate', 'first'], ['gate_0'], axis=1),
                  helper.make_node('Sub', ['t', 'gate_0'], ['margin']),
                  helper.make_node('Sqrt', ['margin'], ['root']),       # NaN below the gate
                  helper.make_node('Mul', ['root', 'zero'], ['trap']),
                  helper.make_node('Add', ['velocity_full', 'trap'], ['velocity_trapped'])]
        last = 'velocity_trapped'
    else:
        last = 'velocity_full'
    nodes.append(helper.make_node('Slice', [last, 'starts', 'ends', 'axes'], ['velocity']))
    _save(path, nodes, inputs, [_value('velocity', TensorProto.FLOAT, (1, chunk, out_width))],
          inits)


# ------------------------------------------------------------------ contracts
def pipeline_dict(steps=10, **denoise):
    """The two-phase contract: encode (image, state, instruction -> prefix), then a denoise
    loop over prefix; absolute joint + gripper actions in a width-8 chunk."""
    components = [{'meaning': 'joint_positions', 'mode': 'absolute', 'joints': list(JOINTS)},
                  {'meaning': 'gripper_position', 'mode': 'absolute'}]
    stage = {'name': 'denoise', 'kind': 'denoise', 'graph': 'denoiser', 'steps': steps,
             'x_input': 'x_t', 'time_input': 't', 'step_output': 'velocity',
             'noise_shape': [1, CHUNK, WIDTH], 'inputs': {'prefix': 'prefix'},
             'result': 'actions'}
    stage.update(denoise)
    return {
        'contract_version': 2, 'name': 'two_phase_toy', 'robot_joints': list(JOINTS),
        'embodiment': {'robot': LRMATE, 'kinematics': kinematics_fingerprint(LRMATE)},
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 24,
             'width': 32},
            {'name': 'state', 'kind': 'state', 'width': WIDTH, 'components': [
                {'source': 'joint_positions', 'joints': list(JOINTS)},
                {'source': 'gripper_position'}]},
            {'name': 'instruction', 'kind': 'instruction',
             'vocabulary': ['<pad>', '<unk>', 'pick', 'the', 'red', 'cube'],
             'max_length': TOKENS}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': CHUNK,
                     'step_period_s': DT, 'components': components, 'width': WIDTH}],
        'graphs': {'encoder': 'encoder.onnx', 'denoiser': 'denoiser.onnx'},
        'pipeline': [
            {'name': 'encode', 'kind': 'run', 'graph': 'encoder',
             'inputs': {'pixels': 'image_scene', 'state': 'state', 'tokens': 'instruction'},
             'outputs': {'target': 'prefix'}},
            stage]}


def write_model(folder, data=None, *, encoder=None, denoiser=None):
    """The contract file and its two graphs in `folder`; returns the contract file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    save_encoder(folder / 'encoder.onnx', **(encoder or {}))
    save_denoiser(folder / 'denoiser.onnx', **(denoiser or {}))
    path = folder / 'policy.contract.yaml'
    path.write_text(yaml.safe_dump(data or pipeline_dict(), sort_keys=False), encoding='utf-8')
    return path


def observe(runtime, q=Q0, gripper=0.0):
    frame = ImageFrame(np.full((24, 32, 3), 90, np.uint8), 32, 24, 'rgb8', 96)
    return runtime.build_inputs({'scene_camera': frame}, dict(zip(JOINTS, q)),
                                gripper_position=gripper, instruction='pick the red cube')


def expected_chunk(q=Q0, gripper=0.0):
    """What the encoder's target un-normalises to: (q, gripper) + k * STEP on every column."""
    row = np.append(q, gripper)
    return row + STEP * np.arange(CHUNK)[:, None]


# ------------------------------------------------------------------ the schema
def test_pipeline_contract_round_trips_and_keeps_single_graph_documents_unchanged():
    contract = contract_from_dict(pipeline_dict())
    assert list(contract.graphs) == ['encoder', 'denoiser']
    encode, denoise = contract.pipeline
    assert (encode.kind, denoise.kind, denoise.steps, denoise.schedule) == (
        'run', 'denoise', 10, 'linear')
    assert (denoise.t_start, denoise.t_end, denoise.seed, denoise.predicts) == (
        1.0, 0.0, 0, 'velocity')
    assert contract_from_dict(contract.to_dict()) == contract
    single = dict(pipeline_dict())
    del single['graphs'], single['pipeline']
    assert 'graphs' not in contract_from_dict(single).to_dict()


@pytest.mark.parametrize('changes, message', [
    ({'contract_version': 1, 'embodiment': None, 'inputs.1.width': None,
      'outputs.0.width': None}, r'^graphs: needs contract_version 2'),
    ({'pipeline.1.graph': 'decoder'},
     r"^pipeline\[1\]\.graph: 'decoder' is not in graphs \(graphs: encoder, denoiser\)"),
    ({'pipeline.1.inputs': {'prefix': 'kv_cache'}},
     r"^pipeline\[1\]\.inputs\.prefix: value 'kv_cache' is produced by no earlier stage"),
    ({'pipeline.1.steps': 0}, r'^pipeline\[1\]\.steps: must be in \[1, 10000\], got 0'),
    ({'pipeline.1.schedule': 'quadratic'}, r"^pipeline\[1\]\.schedule: 'quadratic' is not"),
    ({'pipeline.1.predicts': 'noise'}, r"^pipeline\[1\]\.predicts: 'noise' is not allowed"),
    ({'pipeline.1.noise_shape': [1, CHUNK, 7]},
     r'^pipeline\[1\]\.noise_shape: \[1, 10, 7\] but its result .* is the action chunk'),
    ({'pipeline.1.t_end': 1.0}, r'^pipeline\[1\]\.t_end: must differ from t_start'),
    ({'pipeline.1.inputs': {'x_t': 'prefix'}}, r'^pipeline\[1\]\.inputs\.x_t: .* the loop '),
    ({'pipeline.1.result': 'prefix'}, r"^pipeline\[1\]\.result: value 'prefix' exists already"),
    ({'pipeline.1.name': 'encode'}, r"^pipeline\[1\]\.name: 'encode' already names pipeline"),
    ({'pipeline.1.kind': 'loop'}, r"^pipeline\[1\]\.kind: 'loop' is not allowed"),
    ({'pipeline.0.outputs': {'target': 'other'}},
     r"^pipeline\[1\]\.inputs\.prefix: value 'prefix' is produced by no earlier stage"),
    ({'graphs.unused': 'unused.onnx'}, r'^graphs\.unused: is run by no stage'),
    ({'graphs.encoder': '/abs/encoder.onnx'}, r'^graphs\.encoder: .* must be relative'),
    ({'pipeline.0.inputs': {'pixels': 'image_scene', 'state': 'state'}},
     r"^inputs\[2\]\.name: value 'instruction' is read by no stage"),
    ({'outputs.0.name': 'final'}, r"^outputs\[0\]\.name: 'final' is no value a stage produces"),
    ({'pipeline': None}, r'^pipeline: must be a list'),
    ({'graphs': None}, r'^graphs: missing'),
])
def test_schema_refusals_name_the_field(changes, message):
    data = changed(pipeline_dict(), **changes)
    if 'pipeline' in changes and changes['pipeline'] is None:
        data['pipeline'] = 'encode then denoise'
    with pytest.raises(ContractError, match=message):
        contract_from_dict(data)


def test_inpaint_prefix_only_on_the_stage_that_makes_the_action():
    data = pipeline_dict(inpaint_prefix=True)
    assert contract_from_dict(data).pipeline[1].inpaint_prefix
    data['pipeline'][1]['result'] = 'draft'
    data['pipeline'].append({'name': 'copy', 'kind': 'run', 'graph': 'encoder',
                             'inputs': {'pixels': 'image_scene', 'state': 'state',
                                        'tokens': 'instruction'},
                             'outputs': {'target': 'actions'}})
    data['pipeline'][1]['inputs']['prefix'] = 'prefix'
    with pytest.raises(ContractError, match=r'^pipeline\[1\]\.inpaint_prefix: the known rows'):
        contract_from_dict(data)


# ------------------------------------------------------------------ loading and validation
def test_two_phase_model_loads_from_its_contract_file_and_reaches_the_known_chunk(tmp_path):
    runtime = PolicyRuntime(write_model(tmp_path / 'model'))
    assert runtime.graph_names == ('encoder', 'denoiser')
    assert runtime.contract_origin.startswith('file ')
    assert 'encode (run encoder) -> denoise (denoise denoiser, 10 linear steps' in \
        runtime.describe()
    chunk = runtime.infer(observe(runtime))
    np.testing.assert_allclose(chunk.values, expected_chunk(), atol=1e-5)
    assert chunk.values.shape == (CHUNK, REAL) and chunk.raw.shape == (CHUNK, REAL)
    assert [s.name for s in chunk.stages] == ['encode', 'denoise']
    assert len(chunk.stages[1].step_seconds) == 10 and chunk.stages[0].step_seconds == ()
    assert chunk.inference_time_s >= chunk.stages[1].seconds > 0.0
    assert set(runtime.stage_times_ms()) == {'encode', 'denoise', 'denoise_step'}
    assert len(runtime.stage_times_ms()['denoise_step']) == 10
    runtime.warmup(2)
    assert len(runtime.stage_times_ms()['denoise_step']) == 10  # warm-ups are not recorded


@pytest.mark.parametrize('steps, schedule', [(1, 'linear'), (4, 'cosine'), (25, 'linear')])
def test_euler_integration_of_the_exact_velocity_ends_at_the_target(tmp_path, steps, schedule):
    path = write_model(tmp_path, pipeline_dict(steps=steps, schedule=schedule))
    runtime = PolicyRuntime(path)
    q = Q0 + 0.3
    chunk = runtime.infer(observe(runtime, q, 0.02))
    np.testing.assert_allclose(chunk.values, expected_chunk(q, 0.02), atol=1e-5)


def test_sample_prediction_takes_ddim_steps_to_the_predicted_sample(tmp_path):
    path = write_model(tmp_path, pipeline_dict(steps=3, predicts='sample'),
                       denoiser={'predicts': 'sample'})
    runtime = PolicyRuntime(path)
    np.testing.assert_allclose(runtime.infer(observe(runtime)).values, expected_chunk(),
                               atol=1e-6)


def test_schedules_run_from_t_start_to_t_end():
    linear, cosine = (contract_from_dict(pipeline_dict(steps=4, schedule=s)).pipeline[1]
                      for s in ('linear', 'cosine'))
    np.testing.assert_allclose(schedule_times(linear), [1.0, 0.75, 0.5, 0.25, 0.0])
    times = schedule_times(cosine)
    assert times[0] == 1.0 and times[-1] == 0.0 and np.all(np.diff(times) < 0)
    # Smaller steps near both ends than in the middle.
    assert abs(times[1] - times[0]) < abs(times[2] - times[1])
    assert abs(times[4] - times[3]) < abs(times[3] - times[2])


def test_iterative_pattern_one_denoiser_reading_the_observation(tmp_path):
    data = pipeline_dict(steps=5)
    data['inputs'] = [data['inputs'][1]]          # the state only
    data['graphs'] = {'denoiser': 'denoiser.onnx'}
    data['pipeline'] = [dict(data['pipeline'][1], inputs={'prefix': 'state'})]
    save_denoiser(tmp_path / 'denoiser.onnx', prefix_shape=(1, WIDTH))
    path = tmp_path / 'diffusion.contract.yaml'
    path.write_text(yaml.safe_dump(data), encoding='utf-8')
    runtime = PolicyRuntime(path)
    chunk = runtime.infer(runtime.build_inputs({}, dict(zip(JOINTS, Q0)), gripper_position=0.01))
    np.testing.assert_allclose(chunk.values, np.tile(np.append(Q0, 0.01), (CHUNK, 1)),
                               atol=1e-5)


def test_single_pass_pattern_as_a_pipeline_checks_the_action_value_shape(tmp_path):
    data = pipeline_dict()
    data['graphs'] = {'encoder': 'encoder.onnx'}
    data['pipeline'] = [dict(data['pipeline'][0], outputs={'target': 'actions'})]
    save_encoder(tmp_path / 'encoder.onnx')
    path = tmp_path / 'act.contract.yaml'
    path.write_text(yaml.safe_dump(data), encoding='utf-8')
    runtime = PolicyRuntime(path)
    np.testing.assert_allclose(runtime.infer(observe(runtime)).values, expected_chunk(),
                               atol=1e-6)
    save_encoder(tmp_path / 'encoder.onnx', chunk=CHUNK + 2)
    with pytest.raises(ContractError, match=r'outputs\[0\]\.chunk_length: T is 10 in the '
                                            r'contract but 12'):
        PolicyRuntime(path)


@pytest.mark.parametrize('data_changes, models, error, message', [
    ({}, {'denoiser': {'step_width': WIDTH - 1}}, ContractError,
     r"pipeline\[1\]\.step_output: graph 'denoiser' output 'velocity' is float32 \[1, 10, 7\] "
     r'but x is \[1, 10, 8\] \(noise_shape\): the steps do not chain'),
    ({'pipeline.1.inputs': {}}, {}, ContractError,
     r"pipeline\[1\]\.inputs: graph 'denoiser' input 'prefix' \(float32 \[1, 10, 8\]\) is not "
     r'fed'),
    ({'pipeline.1.inputs': {'prefix': 'state'}}, {}, ContractError,
     r"pipeline\[1\]\.inputs\.prefix: value 'state' is float32 \[1, 8\] but graph 'denoiser' "
     r"input 'prefix' is float32 \[1, 10, 8\]"),
    ({'pipeline.0.inputs': {'pixels': 'image_scene', 'state': 'state', 'tokens': 'state',
                            'extra': 'instruction'}}, {}, ContractError,
     r"pipeline\[0\]\.inputs\.tokens: value 'state' is float32 \[1, 8\] but graph 'encoder' "
     r"input 'tokens' is int64 \[1, 8\]"),
    ({'pipeline.0.inputs': {'pixels': 'image_scene', 'state': 'state', 'tokens': 'state',
                            'extra': 'instruction'}}, {}, ContractError,
     r"pipeline\[0\]\.inputs\.extra: 'extra' is not an input of graph 'encoder'"),
    ({'pipeline.0.outputs': {'embedding': 'prefix'}}, {}, ContractError,
     r"pipeline\[0\]\.outputs\.embedding: 'embedding' is not an output of graph 'encoder' "
     r"\(outputs: 'target'\)"),
    ({'pipeline.1.x_input': 'noisy_actions'}, {}, ContractError,
     r"pipeline\[1\]\.x_input: 'noisy_actions' is not an input of graph 'denoiser'"),
    ({}, {'denoiser': {'time_shape': (1, 1, WIDTH)}}, ContractError,
     r"pipeline\[1\]\.time_input: graph 'denoiser' input 't' is float32 \[1, 1, 8\]; the "
     r'time is one number'),
    ({}, {'encoder': {'nan': True}}, ModelLoadError,
     r"warm-up at load: pipeline\[0\] stage 'encode': graph 'encoder' output 'target' has 80 "
     r'non-finite value'),
])
def test_start_up_refusals_name_the_field(tmp_path, data_changes, models, error, message):
    path = write_model(tmp_path, changed(pipeline_dict(), **data_changes), **models)
    with pytest.raises(error, match=message):
        PolicyRuntime(path)


def test_all_graph_problems_are_listed_at_once(tmp_path):
    data = changed(pipeline_dict(), **{'pipeline.1.inputs': {}})
    path = write_model(tmp_path, data, denoiser={'step_width': 5})
    with pytest.raises(ContractError) as error:
        PolicyRuntime(path)
    lines = str(error.value).splitlines()
    assert lines[0] == "contract 'two_phase_toy' does not match its graphs:"
    assert any(line.strip().startswith('pipeline[1].step_output:') for line in lines)
    assert any(line.strip().startswith('pipeline[1].inputs: graph') for line in lines)


def test_missing_graph_file_and_missing_graphs_section_are_refused(tmp_path):
    path = write_model(tmp_path)
    (tmp_path / 'denoiser.onnx').unlink()
    with pytest.raises(ModelLoadError, match=r"^graphs\.denoiser: ONNX file .*denoiser\.onnx' "
                                             r'does not exist'):
        PolicyRuntime(path)
    single = pipeline_dict()
    del single['graphs'], single['pipeline']
    path.write_text(yaml.safe_dump(single), encoding='utf-8')
    with pytest.raises(ContractError, match=r'^graphs: missing in contract file'):
        PolicyRuntime(path)
    with pytest.raises(ModelLoadError, match='absent.contract.yaml'):
        PolicyRuntime(tmp_path / 'absent.contract.yaml')


def test_a_pipeline_contract_is_not_a_sidecar_of_one_graph(tmp_path):
    write_model(tmp_path)
    save_sidecar(tmp_path / 'encoder.onnx', contract_from_dict(pipeline_dict()))
    with pytest.raises(ContractError, match=r'^graphs: the contract in sidecar .* names graphs; '
                                            r'load a multi-graph model by the path of its '
                                            r'contract file'):
        PolicyRuntime(tmp_path / 'encoder.onnx')


def test_single_graph_models_load_and_run_as_before(tmp_path):
    data = pipeline_dict()
    del data['graphs'], data['pipeline']
    contract = contract_from_dict(data)
    path = tmp_path / 'single.onnx'
    onnx.save(build_toy_model(contract), str(path))
    runtime = PolicyRuntime(path)
    chunk = runtime.infer(observe(runtime))
    assert chunk.stages == () and runtime.stage_times_ms() == {}
    assert not runtime.accepts_prefix and runtime.graph_names == ()
    with pytest.raises(InputError, match='one ONNX model: prefix and noise_key'):
        runtime.infer(observe(runtime), noise_key=3)


# ------------------------------------------------------------------ run time
def test_nan_in_a_denoise_step_names_the_stage_and_step_and_gives_no_chunk(tmp_path):
    data = changed(pipeline_dict(), **{'pipeline.1.inputs': {'prefix': 'prefix',
                                                             'gate': 'state'}})
    # Warm-up on zeros passes (gate 0 < every t); joint_1 = 0.55 trips it from t = 0.5 on.
    runtime = PolicyRuntime(write_model(tmp_path, data, denoiser={'nan_below_gate': True}))
    q = Q0.copy()
    q[0] = 0.55
    with pytest.raises(InferenceError, match=r"^pipeline\[1\] stage 'denoise' step 6/10 "
                                             r"\(t=0\.5\): graph 'denoiser' output 'velocity' "
                                             r'has 80 non-finite value\(s\); no chunk'):
        runtime.infer(observe(runtime, q))
    assert runtime.infer(observe(runtime)).values.shape == (CHUNK, REAL)  # a sane input runs

    # The policy loop turns it into no chunk, no command and a diagnostic naming the step.
    loop = PolicyLoop(runtime, JOINTS)
    frame = ImageFrame(np.full((24, 32, 3), 90, np.uint8), 32, 24, 'rgb8', 96)
    tripped = Observation(stamp=1.0, joint_positions=dict(zip(JOINTS, q)),
                          images={'scene_camera': frame}, instruction='pick',
                          gripper_position=0.0)
    result = loop.step(1.0, lambda: tripped)
    assert result.command is None and result.inference is None
    assert [p.kind for p in result.problems][0] == INFERENCE_ERRORS
    assert "stage 'denoise' step 6/10" in result.problems[0].reason
    assert loop.queue.action_at(1.0) is None


def test_noise_follows_the_seed_rule_and_lockstep_runs_repeat(tmp_path):
    # gain 0: x never moves, so the chunk is the starting noise itself.
    path = write_model(tmp_path, pipeline_dict(steps=2, seed=7), denoiser={'gain': 0.0})
    first, second = PolicyRuntime(path), PolicyRuntime(path)

    def noise(n, seed=7):
        return np.random.default_rng([seed, n]).standard_normal((1, CHUNK, WIDTH),
                                                                dtype=np.float32)

    chunk_0 = first.infer(observe(first))
    np.testing.assert_array_equal(chunk_0.raw, noise(0)[0, :, :REAL])
    chunk_1 = first.infer(observe(first))
    np.testing.assert_array_equal(chunk_1.raw, noise(1)[0, :, :REAL])
    # Same seed, same sequence of inferences: the same chunks, bit for bit.
    np.testing.assert_array_equal(second.infer(observe(second)).values, chunk_0.values)
    np.testing.assert_array_equal(second.infer(observe(second)).values, chunk_1.values)
    first.reset_noise()
    np.testing.assert_array_equal(first.infer(observe(first)).values, chunk_0.values)
    keyed = first.infer(observe(first), noise_key=1_250_000_000)
    np.testing.assert_array_equal(keyed.raw, noise(1_250_000_000)[0, :, :REAL])
    other_seed = PolicyRuntime(write_model(tmp_path / 'other', pipeline_dict(steps=2, seed=8),
                                           denoiser={'gain': 0.0}))
    assert not np.array_equal(other_seed.infer(observe(other_seed)).values, chunk_0.values)


def test_half_gain_denoiser_depends_on_the_noise_yet_repeats_in_lockstep(tmp_path):
    path = write_model(tmp_path, pipeline_dict(steps=10), denoiser={'gain': 0.5})
    first, second = PolicyRuntime(path), PolicyRuntime(path)
    a, b = first.infer(observe(first)), first.infer(observe(first))
    assert not np.allclose(a.values, b.values)
    np.testing.assert_array_equal(second.infer(observe(second)).values, a.values)


# ------------------------------------------------------------------ real-time chunking hook
def test_inpaint_holds_the_known_rows_at_their_noised_value():
    x = np.zeros((1, 4, 3), np.float32)
    noise = np.ones((1, 4, 3), np.float32)
    known = np.full((2, 2), 5.0, np.float32)
    inpaint(x, noise, known, 0.25)
    np.testing.assert_allclose(x[0, :2, :2], 0.25 * 1.0 + 0.75 * 5.0)
    assert not x[0, 2:].any() and not x[0, :, 2].any()   # later rows and padding untouched


def test_prefix_rows_come_back_exactly_and_the_rest_follows_the_policy(tmp_path):
    path = write_model(tmp_path, pipeline_dict(inpaint_prefix=True))
    runtime = PolicyRuntime(path)
    assert runtime.accepts_prefix
    executing = expected_chunk(Q0 + 0.05)[:3]             # what runs during the inference
    chunk = runtime.infer(observe(runtime), prefix=executing)
    np.testing.assert_allclose(chunk.values[:3], executing, atol=1e-6)
    np.testing.assert_allclose(chunk.values[3:], expected_chunk()[3:], atol=1e-5)
    for bad, message in [(np.zeros((CHUNK + 1, REAL)), r'd <= 10'),
                         (np.zeros((2, REAL - 1)), r'\(d <= 10, 7\)'),
                         (np.full((1, REAL), np.nan), 'finite')]:
        with pytest.raises(InputError, match=message):
            runtime.infer(observe(runtime), prefix=bad)


def test_one_step_inpainting_keeps_the_noise_outside_the_prefix(tmp_path):
    path = write_model(tmp_path, pipeline_dict(steps=1, inpaint_prefix=True),
                       denoiser={'gain': 0.0})
    runtime = PolicyRuntime(path)
    known = expected_chunk()[:2]
    chunk = runtime.infer(observe(runtime), prefix=known)
    noise = np.random.default_rng([0, 0]).standard_normal((1, CHUNK, WIDTH), dtype=np.float32)
    np.testing.assert_allclose(chunk.values[:2], known, atol=1e-6)
    np.testing.assert_array_equal(chunk.raw[2:], noise[0, 2:, :REAL])


def test_prefix_is_refused_where_no_stage_inpaints(tmp_path):
    runtime = PolicyRuntime(write_model(tmp_path))
    assert not runtime.accepts_prefix
    with pytest.raises(InputError, match='no denoise stage .* has inpaint_prefix'):
        runtime.infer(observe(runtime), prefix=expected_chunk()[:2])


def test_normalise_actions_inverts_postprocessing_with_delta_components():
    data = pipeline_dict()
    del data['graphs'], data['pipeline']
    data['outputs'][0]['components'][0]['mode'] = 'delta'
    data['outputs'][0].update(mean=[0.1] * REAL, std=[2.0] * (REAL - 1) + [0.0])
    del data['outputs'][0]['width']
    output = contract_from_dict(data).action
    reference = dict(zip(JOINTS, Q0))
    raw = np.random.default_rng(3).normal(size=(4, REAL)).astype(np.float32)
    raw[:, -1] = 0.0   # a std-0 column carries no information
    values = postprocess_actions(raw, output, reference, 0.01)
    np.testing.assert_allclose(normalise_actions(values, output, reference, 0.01), raw,
                               atol=1e-6)
    assert math.isclose(values[0, -1], 0.1)


# ------------------------------------------------------------------ the documented examples
def test_the_three_patterns_examples_in_the_docs_parse():
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / 'docs' / 'POLICY_CONTRACT.md').read_text()
    patterns = text[text.index('## Three patterns'):]
    blocks = [block.split('```', 1)[0] for block in patterns.split('```yaml')[1:]]
    contracts = [contract_from_dict(yaml.safe_load(block)) for block in blocks]
    assert [[s.kind for s in c.pipeline] for c in contracts] == [[], ['denoise'],
                                                                 ['run', 'denoise']]
    assert contracts[2].pipeline[1].noise_shape == contracts[2].action.shape == (1, 50, 32)


def test_the_documented_two_phase_contract_is_the_one_the_builder_writes():
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location('build_two_phase_model',
                                                  root / 'tools' / 'build_two_phase_model.py')
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)        # torch is imported only when building
    built = contract_from_dict(builder.contract_dict(16384, {'total': 1}))
    text = (root / 'docs' / 'POLICY_CONTRACT.md').read_text()
    block = text[text.index('### 3. Two-phase'):].split('```yaml')[1].split('```')[0]
    documented = contract_from_dict(yaml.safe_load(block))
    assert built.info['weights'] == 'random (cost measurement only; not a policy)'
    for key in ('inputs', 'outputs', 'graphs', 'pipeline', 'embodiment', 'robot_joints'):
        assert getattr(documented, key) == getattr(built, key), key
