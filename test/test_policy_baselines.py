"""The hold baseline (`noetra eval --baseline hold`): an ONNX policy that commands the pose it
measures, run through the same PolicyRuntime as a learned model."""
import numpy as np
import onnx
import pytest

from noetra_ros.core.errors import ContractError
from noetra_ros.core.policy.baselines import hold_policy_model
from noetra_ros.core.policy.runtime import PolicyRuntime
from noetra_ros.core.robots import ROBOT_NAMES, robot_spec

JOINTS = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6')


def load(tmp_path, model):
    path = tmp_path / 'hold.onnx'
    onnx.save(model, str(path))
    return PolicyRuntime(path)


def test_every_row_of_the_chunk_is_the_measured_pose(tmp_path):
    runtime = load(tmp_path, hold_policy_model(JOINTS))
    rng = np.random.default_rng(7)
    for _ in range(5):
        measured = dict(zip(JOINTS, rng.uniform(-2.5, 2.5, len(JOINTS))))
        gripper = float(rng.uniform(0.0, 0.04))
        chunk = runtime.infer(runtime.build_inputs({}, measured, gripper_position=gripper))
        assert chunk.joint_names == JOINTS
        np.testing.assert_array_equal(chunk.raw, 0.0)  # zero deltas, exactly
        expected = np.array([measured[j] for j in JOINTS])
        np.testing.assert_allclose(chunk.joint_positions,
                                   np.tile(expected, (chunk.chunk_length, 1)), atol=1e-12)
        np.testing.assert_allclose(chunk.gripper_position, gripper, atol=1e-12)


def test_the_embedded_contract_carries_the_requested_timing(tmp_path):
    runtime = load(tmp_path, hold_policy_model(JOINTS, chunk_length=4, step_period_s=0.1))
    contract = runtime.contract
    assert contract.name == 'hold_current_pose'
    assert runtime.contract_origin == 'metadata'  # embedded in the ONNX file, no sidecar
    assert tuple(contract.robot_joints) == JOINTS
    assert contract.action.chunk_length == 4
    assert contract.action.step_period_s == pytest.approx(0.1)
    chunk = runtime.infer(runtime.build_inputs({}, dict.fromkeys(JOINTS, 0.25),
                                               gripper_position=0.0))
    assert chunk.values.shape == (4, len(JOINTS) + 1)


@pytest.mark.parametrize('robot', ROBOT_NAMES)
def test_a_baseline_for_one_robot_fits_it_and_is_refused_by_another(tmp_path, robot):
    joints = robot_spec(robot).joint_names
    runtime = load(tmp_path, hold_policy_model(joints))
    runtime.validate_robot(joints, has_gripper=True)
    with pytest.raises(ContractError, match=f"'{joints[0]}' is not a joint of the robot"):
        runtime.validate_robot(['other_' + j for j in joints], has_gripper=True)
    with pytest.raises(ContractError, match='the robot has no gripper'):
        runtime.validate_robot(joints, has_gripper=False)
