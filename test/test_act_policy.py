"""The ACT-style transformer (noetra_ros/learning/act.py) trained here, exported as one ONNX graph
and run by the same runtime and policy_node as every other model: only its contract differs.

1. A tiny ACT trained for a few steps on three expert episodes recorded in the PyBullet cell,
   exported: the contract reads back from the ONNX metadata, PolicyRuntime's start-up
   validation (graph vs contract, robot, embodiment) passes, onnxruntime matches torch, the
   training-only head is not in the graph, pad words change nothing.
2. The deployed cell (config/cells/pick_place_lrmate_policy.yaml: sim, policy_node, safety
   supervisor, state publisher as node processes over Fast DDS) with only `model_path` changed
   to the ACT file: the policy commands finite targets within the arm's joint limits and the
   supervisor passes them on to the arm.

Real PyBullet, torch, onnxruntime, rclpy; nothing mocked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from noetra_ros.core.errors import ConfigError  # noqa: E402
from noetra_ros.learning.act import (  # noqa: E402
    ActTrainConfig, export_act, load_act_checkpoint, train_act)

ROBOT = 'fanuc_lrmate200id'
CAMERAS = ('workspace_camera', 'wrist_camera')
# A few steps of a narrow network: enough to exercise every part of training and export.
TINY = dict(steps=4, batch_size=8, val_every=4, val_fraction=0.34, warmup_steps=1, threads=1,
            d_model=32, heads=2, encoder_layers=1, decoder_layers=1, feedforward=64,
            backbone_channels='8,16,16,16')


@pytest.fixture(scope='module')
def tiny_act(tmp_path_factory):
    """(dataset folder, checkpoint, ONNX file, export report) of a tiny ACT trained on three
    recorded expert episodes."""
    from noetra_ros.learning.record import record, RecordConfig

    root = tmp_path_factory.mktemp('act')
    dataset = root / 'demos'
    summary = record(RecordConfig(robot=ROBOT, episodes=3, first_seed=0, cameras=CAMERAS),
                     dataset)
    assert summary.describe().startswith('recorded 3 successful')
    checkpoint = root / 'act.pt'
    train_act(dataset, checkpoint, ActTrainConfig(**TINY), log=lambda *_: None)
    onnx_path = root / 'act.onnx'
    report = export_act(checkpoint, onnx_path, dataset=dataset)
    return dataset, checkpoint, onnx_path, report


@pytest.mark.slow
def test_tiny_act_exports_one_graph_the_runtime_loads(tiny_act):
    import onnx
    import onnxruntime as ort

    from noetra_ros.core.policy.contract import load_contract, validate_against_model
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.core.robot_model import load_robot_description
    from noetra_ros.learning.export import parity, PARITY_TOLERANCE, random_inputs

    dataset, checkpoint, path, report = tiny_act
    model, trained_contract, ckpt = load_act_checkpoint(checkpoint)
    assert ckpt['steps_done'] == TINY['steps'] and len(ckpt['history']) == 1
    assert np.isfinite(ckpt['history'][-1]['val_l1'])

    # Start-up validation as policy_node does it: contract from the metadata, graph vs
    # contract, the arm's joints and gripper, the embodiment.
    runtime = PolicyRuntime(path, intra_op_threads=1)
    assert runtime.contract_origin == 'metadata'
    contract = runtime.contract
    assert contract == load_contract(path)
    validate_against_model(contract, path)
    description = load_robot_description(ROBOT)
    runtime.validate_robot(description.joint_names, has_gripper=True)
    assert runtime.validate_embodiment(ROBOT) is None
    # The shipped model's interface: two 128x96 cameras, state 7, 16 word tokens, [10, 7].
    assert contract.input_names == CAMERAS + ('state', 'instruction')
    assert [(s.height, s.width) for s in contract.image_inputs] == [(96, 128), (96, 128)]
    assert contract.state_input.size == 7 and contract.instruction_input.max_length == 16
    assert (contract.action.chunk_length, contract.action.size) == (10, 7)
    assert contract.info['producer'] == 'noetra_ros.learning.act'
    assert contract.info['train_steps'] == TINY['steps']
    # Same inputs / normalisation as the training contract (only provenance and embodiment
    # were added at export).
    assert contract.inputs == trained_contract.inputs
    assert contract.outputs == trained_contract.outputs

    # Parity on real samples (export_act raises above the tolerance), and on random inputs
    # at another batch size: the batch axis is dynamic.
    assert report.parity_source == 'dataset' and report.parity_max_abs_diff < PARITY_TOLERANCE
    inputs = random_inputs(contract, batch=3, seed=5)
    assert parity(model, path, inputs, contract.input_names) < PARITY_TOLERANCE
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (batched,) = session.run(None, dict(zip(contract.input_names, inputs)))
    (single,) = session.run(None, dict(zip(contract.input_names, [x[1:2] for x in inputs])))
    np.testing.assert_allclose(single[0], batched[1], atol=1e-5)

    # The training-only target head is not in the graph; the transformer is.
    graph = onnx.load(str(path)).graph
    initializers = [init.name for init in graph.initializer]
    assert not [n for n in initializers if n.startswith('target_')]
    assert any(n.startswith('encoder.') for n in initializers)
    assert any(n.startswith('decoder.') for n in initializers)
    assert sum(node.op_type == 'Softmax' for node in graph.node) == (
        model.config.encoder_layers + 2 * model.config.decoder_layers)

    chunk = runtime.infer(runtime.zero_inputs())
    assert chunk.values.shape == (10, 7) and np.all(np.isfinite(chunk.values))
    runtime.close()

    # The single-pass example of docs/POLICY_CONTRACT.md is this contract (its statistics are
    # the full dataset's, rounded; everything else must match).
    import yaml

    from noetra_ros.core.policy.contract import contract_from_dict
    text = (Path(__file__).resolve().parents[1] / 'docs' / 'POLICY_CONTRACT.md').read_text()
    block = text[text.index('### 1. Single pass'):].split('```yaml')[1].split('```')[0]
    documented = contract_from_dict(yaml.safe_load(block))
    assert documented.name == contract.name and documented.embodiment == contract.embodiment
    assert documented.robot_joints == contract.robot_joints
    assert documented.input_names == contract.input_names
    assert [s.shape for s in documented.inputs] == [s.shape for s in contract.inputs]
    assert documented.instruction_input == contract.instruction_input
    assert documented.action.shape == contract.action.shape
    assert documented.action.components == contract.action.components


@pytest.mark.slow
def test_pad_words_are_masked_out_of_attention(tiny_act):
    from noetra_ros.learning.export import random_inputs

    _, checkpoint, _, _ = tiny_act
    model, contract, _ = load_act_checkpoint(checkpoint)
    base = [torch.from_numpy(x) for x in random_inputs(contract, 1, seed=2)][:-1]
    tokens = torch.zeros(1, 16, dtype=torch.int64)
    tokens[0, :4] = torch.tensor([5, 6, 7, 8])
    other = tokens.clone()
    other[0, 2] = 9
    with torch.no_grad():
        out = model(*base, tokens)
        # A pad word's embedding never reaches the output (its key is masked), a real word's
        # does.
        model.word_embedding.weight[0] = 50.0
        assert torch.allclose(out, model(*base, tokens), atol=1e-6)
        assert not torch.allclose(out, model(*base, other), atol=1e-4)


def test_bad_settings_are_refused_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone_channels='32,x'"):
        ActTrainConfig(backbone_channels='32,x')
    with pytest.raises(ConfigError, match='learning_rate=0'):
        ActTrainConfig(learning_rate=0.0)
    # A checkpoint of the other trainer is named as such, not loaded into the wrong class.
    other = tmp_path / 'visuomotor.pt'
    torch.save({'format': 'noetra_ros.learning checkpoint v1'}, other)
    with pytest.raises(ConfigError, match='is not .*act checkpoint v1'):
        load_act_checkpoint(other)
    with pytest.raises(ConfigError, match='no such file'):
        load_act_checkpoint(tmp_path / 'missing.pt')


@pytest.mark.ros
@pytest.mark.slow
def test_the_deployed_cell_runs_the_act_file_with_only_model_path_changed(
        ros_context, tiny_act, tmp_path):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from noetra_ros.bringup import load_cell
    from noetra_ros.core.robot_model import load_robot_description
    from ros_harness import NodeProcess

    _, _, onnx_path, _ = tiny_act
    cell = load_cell('pick_place_lrmate_policy', {
        'policy': {'model_path': str(onnx_path)},
        'sim': {'episodes': 1, 'first_seed': 80000}})
    policy_spec = cell.node('policy')
    # The cell's policy output (remapped into the supervisor) and the supervisor's to the arm.
    policy_topic = policy_spec.remappings['joint_trajectory_controller/joint_trajectory']
    ros_context.start()
    probe = ros_context.probe('act_probe')
    commands = probe.record(policy_topic, JointTrajectory)
    to_arm = probe.record('forward_position_controller/commands', Float64MultiArray)
    joint_states = probe.record('joint_states', JointState)
    procs = [NodeProcess(spec, tmp_path) for spec in cell.nodes]
    try:
        for proc in procs:
            proc.start()

        def enough() -> bool:
            dead = [p.spec.name for p in procs if not p.running()]
            assert not dead, f'nodes exited: {dead}\n' + '\n'.join(
                p.log_text()[-1500:] for p in procs)
            return len(commands) >= 20 and len(to_arm) >= 20 and len(joint_states) >= 20
        # A hang guard for four node processes starting on a loaded 2-core machine, not a
        # timing check.
        ros_context.spin_until(enough, 180.0, what='20 ACT commands through the supervisor')
        policy_log = procs[[p.spec.name for p in procs].index('policy')].log_text()
    finally:
        for proc in procs:
            proc.stop()

    assert "loaded act.onnx (metadata contract 'pick_place_lrmate_act')" in policy_log, \
        policy_log[-2000:]
    limits = load_robot_description(ROBOT).limits
    arm = list(limits.names)
    for record in commands:
        msg = record.msg
        assert list(msg.joint_names) == arm
        for point in msg.points:
            assert np.all(np.isfinite(np.array(point.positions))), point.positions
    # The arm was driven by them: the supervisor forwarded finite commands inside the joint
    # limits (a barely trained policy may ask for more; holding it to them is the
    # supervisor's job) and the lockstep sim stepped on them (its joint_states stamps advance).
    for record in to_arm:
        positions = np.array(record.msg.data)[:len(arm)]
        assert np.all(np.isfinite(positions)), positions
        assert np.all(positions >= limits.lower) and np.all(positions <= limits.upper), (
            positions, limits.lower, limits.upper)
    stamps = [r.msg.header.stamp.sec + 1e-9 * r.msg.header.stamp.nanosec for r in joint_states]
    assert stamps[-1] > stamps[0], stamps
