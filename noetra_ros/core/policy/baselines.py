"""Reference policies that go through the same runtime as a learned one.

`hold_policy_model` is the do-nothing baseline of every evaluation: an ONNX model whose action
chunk is "stay where you are" (zero deltas of the measured joints and gripper). Running it
through policy_node measures what success rate a cell gives for free.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from noetra_ros.core.policy.contract import contract_from_dict
from noetra_ros.core.policy.runtime import build_toy_model


def hold_policy_model(robot_joints: Sequence[str], chunk_length: int = 10,
                      step_period_s: float = 0.05) -> Any:
    """onnx.ModelProto (contract embedded): state in, zero-delta action chunk out."""
    from onnx import numpy_helper

    joints = list(robot_joints)
    contract = contract_from_dict({
        'contract_version': 1, 'name': 'hold_current_pose',
        'description': 'baseline: holds the measured pose (zero deltas)',
        'robot_joints': joints,
        'inputs': [{'name': 'state', 'kind': 'state', 'components': [
            {'source': 'joint_positions', 'joints': joints}, {'source': 'gripper_position'}]}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': chunk_length,
                     'step_period_s': step_period_s, 'components': [
                         {'meaning': 'joint_positions', 'mode': 'delta', 'joints': joints},
                         {'meaning': 'gripper_position', 'mode': 'delta'}]}]})
    model = build_toy_model(contract, seed=0)
    for init in model.graph.initializer:
        if init.name in ('head_w', 'head_b'):
            zeros = np.zeros_like(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(zeros, init.name))
    return model
