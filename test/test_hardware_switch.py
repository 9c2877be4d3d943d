"""hardware:=sim|real: only the driver changes between the two bring-ups of a cell.

With `real`, the simulator (the node that plays the driver) is left out and the other nodes run
on the wall clock; every other node, parameter and remapping must be what the simulated cell
runs, or a cell tested in simulation would not be the cell that drives the robot.
"""
from __future__ import annotations

import pytest

from noetra_ros.bringup import available_cells, load_cell, SIM_ONLY_EXECUTABLES
from noetra_ros.cli import main as noetra_main
from noetra_ros.core.drivers.profiles import PROFILES
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety.cell import SafetyNodeSettings

DRIVER_CELLS = ('pick_place_lrmate_fanuc', 'kitting_gp8_motoros2', 'pick_place_lrmate_policy_fanuc')


@pytest.mark.parametrize('name', available_cells())
def test_only_the_simulator_and_the_clock_change(name):
    sim, real = load_cell(name), load_cell(name, hardware='real')
    assert sim.hardware == 'sim' and real.hardware == 'real'
    assert sim.driver == real.driver
    left_out = [n.name for n in sim.nodes if n.executable in SIM_ONLY_EXECUTABLES]
    assert left_out == ['sim']
    assert [n.name for n in real.nodes] == [n.name for n in sim.nodes if n.name not in left_out]
    for real_node in real.nodes:
        sim_node = sim.node(real_node.name)
        assert real_node.executable == sim_node.executable
        assert dict(real_node.remappings) == dict(sim_node.remappings)
        assert real_node.namespace == sim_node.namespace
        sim_params, real_params = dict(sim_node.parameters), dict(real_node.parameters)
        if sim_params.get('use_sim_time'):
            assert real_params.pop('use_sim_time') is False
            sim_params.pop('use_sim_time')
        assert real_params == sim_params


@pytest.mark.parametrize('name', DRIVER_CELLS)
def test_driver_cells_speak_one_driver_everywhere(name):
    """The sim plays the cell's driver and every node reads its names and QoS."""
    cell = load_cell(name)
    facts = PROFILES[cell.driver]
    sim = cell.node('sim').parameters
    assert sim['driver'] == cell.driver and sim['mode'] == 'realtime'
    assert sim['control_hz'] == facts.update_hz
    safety = SafetyNodeSettings.from_parameters(cell.node('safety').parameters)
    assert safety.driver == cell.driver
    assert safety.driver_output == facts.outputs[0]
    assert safety.driver_joint_names == facts.joint_names
    assert safety.joint_states_qos == facts.joint_states_qos
    assert safety.period_s == pytest.approx(1.0 / facts.update_hz)
    readers = [n for n in cell.nodes if n.executable in ('expert_node', 'policy_node',
                                                          'state_publisher_node')]
    assert len(readers) == 2
    for node in readers:
        assert node.parameters['driver_joint_names'] == facts.joint_names, node.name


def test_unknown_hardware_and_driver_are_refused(tmp_path):
    with pytest.raises(ConfigError, match='hardware'):
        load_cell('pick_place_lrmate', hardware='robot')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('cell: {name: bad, robot: fanuc_lrmate200id, driver: kuka}\n'
                   'nodes: [{name: sim, executable: sim_node}]\n')
    with pytest.raises(ConfigError, match='driver'):
        load_cell(str(bad))


def test_safety_refuses_an_interface_the_driver_lacks():
    # MotoROS2 subscribes to no topic at all (driver-interfaces.md §2.2).
    with pytest.raises(ConfigError, match='motoros2 driver accepts'):
        SafetyNodeSettings(driver='motoros2', driver_output='forward_position')


def test_noetra_run_real_refuses_unknown_cell(capsys):
    assert noetra_main(['run', 'no_such_cell', '--hardware', 'real']) == 2
    assert 'unknown cell' in capsys.readouterr().err
