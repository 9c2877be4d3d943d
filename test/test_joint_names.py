"""core/joint_names.py: description joint names <-> a driver's names (ROS-free), and the safety
cell taking the driver's names through it (refusing names that map to nothing, commands in the
controller's order reordered to the supervisor's)."""
from __future__ import annotations

import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.joint_names import JointNameMap, scheme_names
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.safety import (ArmPositions, MeasuredJoints, SafetyCell, SafetyNodeSettings,
                                    SafetyState)

ARM = [f'joint_{i}' for i in range(1, 7)]
FINGERS = ['gripper_left_finger_joint', 'gripper_right_finger_joint']
FANUC = [f'J{i}' for i in range(1, 7)]


def test_fanuc_names_with_and_without_prefix():
    names = JointNameMap.for_scheme(ARM, 'fanuc', keep=FINGERS)
    assert names.to_driver(ARM + FINGERS) == FANUC + FINGERS
    assert names.from_driver(['J3', 'J1', FINGERS[0]]) == ['joint_3', 'joint_1', FINGERS[0]]
    prefixed = JointNameMap.for_scheme(ARM, 'fanuc', prefix='arm1_')
    assert prefixed.to_driver(['joint_6']) == ['arm1_J6']
    assert not names.is_identity


def test_motoros2_single_and_multi_group_names():
    assert scheme_names(3, 'motoros2') == ['joint_1', 'joint_2', 'joint_3']
    assert scheme_names(2, 'motoros2', group=2) == ['group_2/joint_1', 'group_2/joint_2']
    multi = JointNameMap.for_scheme(ARM, 'motoros2', prefix='group_1/')
    assert multi.from_driver(['group_1/joint_4']) == ['joint_4']
    with pytest.raises(ConfigError, match='only for the motoros2'):
        scheme_names(6, 'fanuc', group=1)


def test_urdf_is_identity_and_lets_unknown_names_through():
    names = JointNameMap.for_scheme(ARM, 'urdf')
    assert names.is_identity
    assert names.from_driver(['joint_2', 'conveyor']) == ['joint_2', 'conveyor']
    with pytest.raises(ConfigError, match='no prefix'):
        JointNameMap.for_scheme(ARM, 'urdf', prefix='x_')


def test_names_that_map_to_nothing_are_refused_by_name():
    names = JointNameMap.for_scheme(ARM, 'fanuc', keep=FINGERS)
    with pytest.raises(InputError, match=r"joint_states names: \['joint_1'\] map to no joint"):
        names.from_driver(['J2', 'joint_1'], 'joint_states names')
    with pytest.raises(ConfigError, match='wrist'):
        names.to_driver(['wrist'])
    with pytest.raises(ConfigError, match="'kuka'"):
        JointNameMap.for_scheme(ARM, 'kuka')


def test_explicit_mapping_must_cover_every_arm_joint_one_to_one():
    mapping = {j: f'axis{k}' for k, j in enumerate(ARM)}
    assert JointNameMap.for_scheme(ARM, mapping).to_driver(['joint_1']) == ['axis0']
    with pytest.raises(ConfigError, match=r"\['joint_6'\] have no driver name"):
        JointNameMap.for_scheme(ARM, {j: j for j in ARM[:5]})
    with pytest.raises(ConfigError, match='one-to-one'):
        JointNameMap({'joint_1': 'A', 'joint_2': 'A'})


def test_value_vectors_are_reordered_both_ways():
    names = JointNameMap.for_scheme(ARM, 'fanuc', keep=FINGERS)
    message = ['gripper_left_finger_joint', 'J6', 'J5', 'J4', 'J3', 'J2', 'J1']
    values = [0.01, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    np.testing.assert_array_equal(names.values_from_driver(message, values, ARM),
                                  [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(
        names.values_to_driver([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], ARM, ['J2', 'J1', 'J3', 'J4',
                                                                     'J5', 'J6']),
        [2.0, 1.0, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(InputError, match=r"\['J6'\] missing"):
        names.values_from_driver(FANUC[:5], [0.0] * 5, ARM)


# ---------------------------------------------------------------- the safety cell
ROBOT = 'fanuc_lrmate200id'
PERIOD_S = 0.05


def _cell(**settings):
    rejected: list[tuple[str, str]] = []
    cell = SafetyCell.from_settings(
        SafetyNodeSettings(robot=ROBOT, profile='collaborative', update_trigger='command',
                           period_s=PERIOD_S, auto_arm=True, **settings),
        on_rejected=lambda what, why: rejected.append((what, why)))
    return cell, rejected


def test_safety_cell_takes_fanuc_names_and_refuses_unmapped_ones():
    description = load_robot_description(ROBOT)
    home = list(description.home)
    fingers = list(description.gripper.joint_names)
    cell, rejected = _cell(driver_joint_names='fanuc', controller_joints=('J2', 'J1', 'J3', 'J4',
                                                                          'J5', 'J6'))
    assert cell.controller_joints == ('J2', 'J1', 'J3', 'J4', 'J5', 'J6')
    ok = cell.on_joint_state(MeasuredJoints(FANUC + fingers, home + [0.01, 0.01], None, 0.05),
                             0.05)
    assert ok.accepted
    bad = cell.on_joint_state(MeasuredJoints(ARM + fingers, home + [0.01, 0.01], None, 0.1), 0.1)
    assert not bad.accepted and "'joint_1'" in bad.reason
    assert rejected and rejected[-1][0] == 'joint_states' and "'joint_1'" in rejected[-1][1]
    assert cell.supervisor.counters.get('joint_state_rejected_unknown_names') == 1


def test_position_commands_in_controller_order_reach_the_supervisor_in_its_order():
    """A swapped controller order used to be passed to the supervisor as names, which refuses
    any order but its own: every position command of such a cell was rejected."""
    description = load_robot_description(ROBOT)
    home = np.array(description.home, dtype=float)
    cell, rejected = _cell(controller_joints=('joint_2', 'joint_1', 'joint_3', 'joint_4',
                                              'joint_5', 'joint_6'))
    target = home.copy()
    target[0] += 0.02  # joint_1 moves; joint_2 stays
    in_controller_order = [target[1], target[0], *target[2:]]
    t, out = 0.0, None
    for _ in range(20):
        t += PERIOD_S
        measured = MeasuredJoints(description.state_joint_names,
                                  list(home if out is None or out.arm is None else out.arm)
                                  + [0.01, 0.01], None, t)
        out = cell.step(measured, ArmPositions(in_controller_order), None, t)
    assert not rejected, rejected
    assert out.state is SafetyState.ARMED
    assert out.arm[0] == pytest.approx(target[0], abs=1e-3)
    assert out.arm[1] == pytest.approx(home[1], abs=1e-6)
    # and out to the controller in its order again
    assert out.arm[cell.to_controller][1] == pytest.approx(target[0], abs=1e-3)
