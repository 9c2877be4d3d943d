"""core/safety/cell.py: the safety node's settings and how it drives the supervisor, without ROS.

safety_node and the in-process evaluation both run this code, so these rules are checked once
here on the real robot description and shipped profiles: the gripper target (held where the
fingers are, then followed only while ARMED, clipped to the stroke), arming without an operator
(arm_on_start, the simulation-only auto_arm after a valid command or a tracking fault), the
fixed order of a lockstep step, and one parsing of the node's parameters.
"""
from __future__ import annotations

import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.safety import (ArmPositions, ArmTrajectory, MeasuredJoints, SafetyCell,
                                    SafetyNodeSettings, SafetyState)

ROBOT = 'fanuc_lrmate200id'
PERIOD_S = 0.05
FINGERS_M = 0.01         # where the fingers are measured at the start
TRACKING_JUMP_RAD = 0.3  # an episode reset's teleport of joint_1 (tolerance: 0.1 rad)


@pytest.fixture(scope='module')
def description():
    return load_robot_description(ROBOT)


class Cell:
    """A SafetyCell with what it reported, and a robot that follows it perfectly."""

    def __init__(self, description, **settings) -> None:
        self.description = description
        self.rejected: list[tuple[str, str]] = []
        self.armed: list[str] = []
        self.cell = SafetyCell.from_settings(
            SafetyNodeSettings(robot=ROBOT, profile='collaborative', update_trigger='command',
                               period_s=PERIOD_S, **settings),
            on_rejected=lambda what, why: self.rejected.append((what, why)),
            on_armed=self.armed.append)
        self.q = np.array(description.home, dtype=float)
        self.t = 0.0

    def measured(self, fingers: float = FINGERS_M) -> MeasuredJoints:
        return MeasuredJoints(self.description.state_joint_names,
                              list(self.q) + [fingers, fingers], None, self.t)

    def step(self, target=None, gripper=(0.03,)):
        self.t += PERIOD_S
        arm = ArmPositions(list(self.q if target is None else target))
        out = self.cell.step(self.measured(), arm, None if gripper is None else list(gripper),
                             self.t)
        if out.arm is not None:
            self.q = np.array(out.arm)
        return out


def test_settings_are_parsed_as_the_node_declares_them():
    assert SafetyNodeSettings.from_parameters({}) == SafetyNodeSettings()
    table = SafetyNodeSettings.parameter_table()
    assert table['lockstep_inputs'][0] == ['arm', 'gripper']  # a list, as ROS declares it
    assert 'SIMULATION ONLY' in table['auto_arm'][1]
    parsed = SafetyNodeSettings.from_parameters(
        {'period_s': 1, 'watched_sensors': ['cam/image_raw'], 'use_sim_time': True})
    assert parsed.period_s == 1.0 and parsed.watched_sensors == ('cam/image_raw',)
    with pytest.raises(ConfigError, match=r"parameter auto_arm='yes': must be a bool"):
        SafetyNodeSettings.from_parameters({'auto_arm': 'yes'})
    with pytest.raises(ConfigError, match='update_trigger=.*must be one of'):
        SafetyNodeSettings(update_trigger='timer')
    with pytest.raises(ConfigError, match=r"lockstep_inputs=\['arm', 'camera'\]: \['camera'\]"):
        SafetyNodeSettings(lockstep_inputs=('arm', 'camera'))
    with pytest.raises(ConfigError, match='watchdog_hz=0.0'):
        SafetyNodeSettings(watchdog_hz=0.0)


def test_without_arming_nothing_is_followed_and_the_gripper_stays_put(description):
    cell = Cell(description)
    for _ in range(3):
        out = cell.step(gripper=(0.03,))
    assert out.state is SafetyState.HOLDING
    # Held where the fingers were measured; the command was counted, not followed.
    assert out.gripper == pytest.approx(FINGERS_M)
    assert cell.cell.supervisor.counters['ignored_not_armed'] == 3
    # Commands while not armed are expected: no rejection is reported.
    assert cell.rejected == [] and cell.armed == []


def test_auto_arm_follows_the_first_step_gripper_command_and_clips_it(description):
    cell = Cell(description, auto_arm=True)
    out = cell.step(gripper=(0.03,))
    # The arm command (first in a step's fixed order) armed the cell, so the gripper command
    # of the same step is followed.
    assert out.state is SafetyState.ARMED and cell.armed == ['auto_arm']
    assert out.gripper == pytest.approx(0.03)
    closed = description.gripper.closed_position
    assert cell.step(gripper=(0.5,)).gripper == closed  # never beyond the stroke
    # A malformed gripper command is reported and changes nothing.
    assert cell.step(gripper=(float('nan'),)).gripper == closed
    assert cell.rejected == [('gripper', 'expected one finite value, got [nan]')]


def test_auto_arm_clears_a_tracking_fault_in_the_same_cycle(description):
    cell = Cell(description, auto_arm=True)
    for _ in range(5):
        cell.step()
    start = cell.q.copy()
    cell.q[0] += TRACKING_JUMP_RAD  # the arm was moved without a command (an episode reset)
    out = cell.step(target=start)
    # Faulted on tracking and re-armed at once: what is sent starts from where the arm is.
    assert out.state is SafetyState.ARMED and 'cleared tracking error' in out.reason
    assert np.allclose(out.arm, cell.q) and out.arm[0] == pytest.approx(start[0] + 0.3)
    assert cell.cell.supervisor.counters['tracking_faults'] == 1
    assert cell.armed == ['auto_arm', 'auto_arm']


def test_without_auto_arm_a_tracking_fault_stays(description):
    cell = Cell(description, arm_on_start=True)
    cell.step()
    assert cell.armed == ['start']  # arm_on_start: once, at the first fresh measurement
    cell.q[0] += TRACKING_JUMP_RAD
    out = cell.step()
    assert out.state is SafetyState.FAULT and out.reason.startswith('tracking error')
    for _ in range(3):
        assert cell.step().state is SafetyState.FAULT
    assert cell.armed == ['start']


def test_a_rejected_trajectory_is_reported_and_the_arm_holds(description):
    cell = Cell(description, auto_arm=True)
    cell.step()
    held = cell.q.copy()
    cell.t += PERIOD_S
    bad = [list(held), list(held[:5]) + [float('inf')]]
    out = cell.cell.step(cell.measured(),
                         ArmTrajectory(description.joint_names, [0.05, 0.1], bad, None, cell.t),
                         None, cell.t)
    assert out.state is SafetyState.HOLDING and np.allclose(out.arm, held)
    assert [what for what, _ in cell.rejected] == ['trajectory']
