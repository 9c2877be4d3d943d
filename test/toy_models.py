"""Toy ONNX policies with a known output, shared by the policy tests."""
import numpy as np
from onnx import numpy_helper

from noetra_ros.core.policy.contract import contract_from_dict, PolicyContract


def ramp_contract(joints, chunk_length: int, step_period_s: float) -> PolicyContract:
    """A small contract: one 32x24 scene camera, joint + gripper state, a six-word vocabulary,
    chunks of delta joint and gripper actions (what the ramp model of set_ramp_head fills)."""
    joints = list(joints)
    return contract_from_dict({
        'contract_version': 1, 'name': 'ramp', 'robot_joints': joints,
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 24,
             'width': 32, 'resize': 'stretch', 'color_order': 'rgb', 'layout': 'nchw'},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': joints},
                {'source': 'gripper_position'}]},
            {'name': 'instruction', 'kind': 'instruction', 'tokenizer': 'word_vocab',
             'vocabulary': ['<pad>', '<unk>', 'pick', 'the', 'red', 'cube'], 'max_length': 8,
             'unknown_words': 'map_to_unk'}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': chunk_length,
                     'step_period_s': step_period_s, 'components': [
                         {'meaning': 'joint_positions', 'mode': 'delta', 'joints': joints},
                         {'meaning': 'gripper_position', 'mode': 'delta'}]}]})


def set_ramp_head(model, chunk_length: int, step: float, width: int):
    """Zero the toy model's head weights and set its bias so that action row k is k * step in
    every one of its `width` columns (the head's tanh is undone by arctanh). Returns the model."""
    for init in model.graph.initializer:
        if init.name == 'head_w':
            array = np.zeros_like(numpy_helper.to_array(init))
        elif init.name == 'head_b':
            rows = np.arange(chunk_length, dtype=np.float32)[:, None] * step
            array = np.arctanh(np.repeat(rows, width, axis=1)).reshape(-1).astype(np.float32)
        else:
            continue
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def write_synthetic_dataset(root, cameras, tasks, seed: int, frames: int = 16,
                            height: int = 48, width: int = 64, state_scale: float = 1.0):
    """A small LeRobot dataset of random frames: one episode of `frames` per task, LR Mate
    joints + gripper, actions a small step from the state. For training / export plumbing
    tests; nothing in it can be learned."""
    from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode

    rng = np.random.default_rng(seed)
    names = tuple(f'joint_{i}' for i in range(1, 7)) + ('gripper_position',)
    spec = DatasetSpec(fps=20, robot_type='fanuc_lrmate200id', state_names=names,
                       action_names=names, cameras=tuple(cameras), image_height=height,
                       image_width=width)
    writer = DatasetWriter(root, spec)
    for task in tasks:
        state = rng.normal(scale=state_scale, size=(frames, 7)).astype(np.float32)
        state[:, 6] = rng.uniform(0.0, 0.04, size=frames)
        writer.add_episode(Episode(
            task=task, state=state,
            action=(state + 0.01 * rng.normal(size=(frames, 7))).astype(np.float32),
            images={c: rng.integers(0, 255, size=(frames, height, width, 3), dtype=np.uint8)
                    for c in spec.cameras},
            wrench=np.zeros((frames, 6), np.float32)))
    writer.close()
    return root
