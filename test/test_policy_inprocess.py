"""The in-process evaluation sends every policy command through the cell's safety supervisor.

A real SimWorld, a real onnxruntime model and the SafetySupervisor the shipped cell's
safety_node runs (collaborative profile, auto_arm): a policy that asks for a wrist angle beyond
the URDF limit and a gripper beyond its stroke gets a clamped, rate-limited command, and a
non-finite command never reaches the world.
"""
import math

import numpy as np
import onnx
from onnx import numpy_helper
import pytest

from noetra_ros.core.policy.contract import contract_from_dict
from noetra_ros.core.policy.loop import Command
from noetra_ros.core.policy.runtime import build_toy_model
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.safety import SafetyState
from noetra_ros.core.sim.world import SimWorld
from noetra_ros.learning.record import CellSafety, EvalSettings, PolicyDriver

ROBOT = 'fanuc_lrmate200id'
BEYOND_RAD = 1.0      # the policy's joint_6 target lies this far past the URDF upper limit
GRIPPER_TARGET_M = 0.5


@pytest.fixture(scope='module')
def settings():
    return EvalSettings.from_cell('pick_place_lrmate_policy')


def _constant_policy(path, joints, targets, gripper):
    """A model whose every action row is `targets` (absolute joint positions) + `gripper`:
    zero weights, so the output is the contract's action mean."""
    contract = contract_from_dict({
        'contract_version': 1, 'name': 'beyond_limits', 'robot_joints': list(joints),
        'inputs': [
            {'name': 'image_workspace', 'kind': 'image', 'camera': 'workspace_camera',
             'height': 24, 'width': 32, 'resize': 'stretch'},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': list(joints)},
                {'source': 'gripper_position'}]},
            {'name': 'instruction', 'kind': 'instruction', 'vocabulary': ['<pad>', '<unk>'],
             'max_length': 4, 'unknown_words': 'map_to_unk'}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': 8,
                     'step_period_s': 0.05, 'components': [
                         {'meaning': 'joint_positions', 'joints': list(joints)},
                         {'meaning': 'gripper_position'}],
                     'mean': [float(v) for v in targets] + [gripper],
                     'std': [1.0] * (len(joints) + 1)}]})
    model = build_toy_model(contract, seed=0)
    for init in model.graph.initializer:
        if init.name in ('head_w', 'head_b'):
            zeros = np.zeros_like(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(zeros, init.name))
    onnx.save(model, str(path))
    return str(path)


def test_commands_beyond_the_limits_are_clamped_and_rate_limited(tmp_path, settings):
    description = load_robot_description(ROBOT)
    targets = np.array(description.home, dtype=float)
    upper = float(description.limits.upper[5])
    targets[5] = upper + BEYOND_RAD
    driver = PolicyDriver(_constant_policy(tmp_path / 'beyond.onnx', description.joint_names,
                                           targets, GRIPPER_TARGET_M), settings)
    world = SimWorld(settings.world_config())
    try:
        episode = world.reset(10000)
        driver.reset()
        supervisor = driver.safety.supervisor
        lower_safe, upper_safe = supervisor.position_bounds
        vmax = supervisor.effective_limits.velocity
        period = world.control_period
        sent, asked = [], []
        for _ in range(100):
            step = driver.act(world, episode.instruction)
            asked.append(step.command.positions[0, 5])
            assert step.sent is not None and step.sent.state is SafetyState.ARMED
            sent.append(np.array(step.sent.arm))
            # The gripper goes to the end of its stroke, never beyond.
            assert step.sent.gripper == description.gripper.closed_position
            world.step()
            measured = world.joint_state()[0][:6]
            assert np.all(measured <= description.limits.upper + 1e-3)
    finally:
        driver.close()
        world.close()
    sent = np.array(sent)
    assert np.all(np.isfinite(sent))
    # The policy asked for joint_6 past its URDF limit the whole time ...
    assert min(asked) > upper
    # ... the robot was sent nothing past the safe range (URDF limit - margin), and got there.
    assert np.all(sent <= upper_safe + 1e-9) and np.all(sent >= lower_safe - 1e-9)
    assert sent[-1, 5] == pytest.approx(upper_safe[5], abs=1e-3)
    # Never faster than the profile's joint speed (velocity_scale x URDF).
    assert np.all(np.abs(np.diff(sent, axis=0)) <= vmax * period * (1 + 1e-9))
    assert driver.safety.supervisor.counters.get('clamped_position', 0) > 0


def test_a_non_finite_command_never_reaches_the_world(settings):
    safety = CellSafety(settings)
    description = load_robot_description(ROBOT)
    names = description.state_joint_names
    q = np.concatenate([description.home, [0.0, 0.0]])
    hold = np.array(description.home, dtype=float)

    def command(stamp, row):
        rows = np.array([row] * 3)
        return Command(stamp=stamp, joint_names=description.joint_names, positions=rows,
                       times_from_start_ns=(50_000_000, 100_000_000, 150_000_000),
                       gripper_position=0.0)

    out = safety.step(names, q, None, 0.05, command(0.05, hold))  # arms (auto_arm)
    assert out.state is SafetyState.ARMED and np.allclose(out.arm, hold)
    bad = hold.copy()
    bad[2] = math.nan
    out = safety.step(names, q, None, 0.10, command(0.10, bad))
    # The whole message is refused, the supervisor holds, and what is sent stays finite.
    assert out.state is SafetyState.HOLDING
    assert out.arm is not None and np.all(np.isfinite(out.arm)) and np.allclose(out.arm, hold)
    assert safety.supervisor.counters['rejected_nonfinite'] == 1
    # No policy command this step: no supervisor cycle, nothing sent (the robot holds).
    assert safety.step(names, q, None, 0.15, None) is None
