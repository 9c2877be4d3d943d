"""The cell description drives both bring-up paths: ros2 launch and `noetra run`."""
import importlib.util
from pathlib import Path

import pytest
import yaml

from noetra_ros.bringup import available_cells, command_routing_problems, load_cell, NodeSpec
from noetra_ros.core.errors import ConfigError, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / 'launch' / 'bringup.launch.py'


def _argv_to_spec(argv: list[str]) -> dict:
    """Read back what a `noetra run` process is told: module, node name, params, remaps."""
    assert argv[1] == '-m'
    module = argv[2]
    ros = argv[argv.index('--ros-args') + 1:]
    remaps, params_file, name = {}, None, None
    i = 0
    while i < len(ros):
        if ros[i] == '-r':
            src, _, dst = ros[i + 1].partition(':=')
            if src == '__node':
                name = dst
            elif src != '__ns':
                remaps[src] = dst
            i += 2
        elif ros[i] == '--params-file':
            params_file = ros[i + 1]
            i += 2
        else:
            raise AssertionError(f'unexpected ros arg {ros[i]}')
    return {'executable': module.rsplit('.', 1)[1], 'name': name, 'remaps': remaps,
            'params_file': params_file}


@pytest.mark.parametrize('cell_name', available_cells())
def test_cli_and_launch_come_from_the_same_description(cell_name, tmp_path):
    cell = load_cell(cell_name)
    params_file = cell.write_params_file(tmp_path / 'params.yaml')
    params = yaml.safe_load(params_file.read_text())
    for spec in cell.nodes:
        cli = _argv_to_spec(spec.command(str(params_file)))
        launch = spec.launch_kwargs()
        assert cli['executable'] == launch['executable'] == spec.executable
        assert cli['name'] == launch['name'] == spec.name
        assert cli['remaps'] == dict(launch['remappings'])
        # The params file the CLI passes holds exactly the dict the launch file passes.
        assert params[spec.name]['ros__parameters'] == launch['parameters'][0]


@pytest.mark.parametrize('cell_name', available_cells())
def test_every_cell_is_valid(cell_name):
    cell = load_cell(cell_name)
    assert cell.node('sim').parameters['robot'] == cell.robot
    # Nodes other than the clock source run on sim time in a simulated cell.
    for spec in cell.nodes:
        if spec.executable != 'sim_node':
            assert spec.parameters.get('use_sim_time') is True, spec.name


def test_launch_file_builds_the_cell_nodes():
    launch_ros = pytest.importorskip('launch_ros', reason='launch_ros is not installed here')
    from launch import LaunchContext
    spec = importlib.util.spec_from_file_location('bringup_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        entity.visit(context)
    opaque = description.entities[-1]
    nodes = opaque.execute(context)  # the default cell of bringup.launch.py
    cell = load_cell('pick_place_lrmate')
    assert [n.node_executable for n in nodes] == [s.executable for s in cell.nodes]
    assert all(isinstance(n, launch_ros.actions.Node) for n in nodes)


@pytest.mark.parametrize('launch_file', sorted((ROOT / 'launch').glob('*.launch.py')),
                         ids=lambda p: p.name)
def test_every_launch_file_uses_the_shared_cell_loader(launch_file):
    # Where launch_ros is missing a launch file cannot run; it must still build its nodes
    # from a cell description through the shared code, with a default cell that exists.
    import ast
    tree = ast.parse(launch_file.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, 'id', '') == 'cell_launch_description']
    assert len(calls) == 1, 'a launch file must return cell_launch_description(<cell>)'
    default = calls[0].args[0].value
    assert default in available_cells()
    support = (ROOT / 'noetra_ros' / 'launch_support.py').read_text()
    assert 'load_cell(' in support and 'spec.launch_kwargs()' in support


def test_unknown_cell_names_the_available_ones():
    with pytest.raises(UnknownNameError) as err:
        load_cell('no_such_cell')
    assert 'pick_place_lrmate' in str(err.value)


def test_overrides_replace_values_and_unknown_nodes_are_refused():
    cell = load_cell('pick_place_lrmate', {'sim': {'episodes': 7, 'control_hz': 30}})
    assert cell.node('sim').parameters['episodes'] == 7
    assert cell.node('sim').parameters['control_hz'] == 30
    with pytest.raises(UnknownNameError, match='nope'):
        load_cell('pick_place_lrmate', {'nope': {'x': 1}})


def test_bad_cell_files_fail_with_the_field_named(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('cell: {name: x}\nnodes: []\n')
    with pytest.raises(ConfigError, match='cell.robot'):
        load_cell(str(bad))
    bad.write_text('cell: {name: x, robot: r}\nnodes: [{name: a, executable: rm_rf}]\n')
    with pytest.raises(ConfigError, match='rm_rf'):
        load_cell(str(bad))
    bad.write_text('cell: {name: x, robot: r}\n'
                   'nodes: [{name: a, executable: sim_node, parameters: {l: [1, a]}}]\n')
    with pytest.raises(ConfigError, match='a.parameters.l'):
        load_cell(str(bad))


def test_node_spec_rejects_bad_names():
    with pytest.raises(ConfigError):
        NodeSpec(name='bad name', executable='sim_node')


@pytest.mark.parametrize('cell_name', available_cells())
def test_command_sources_reach_the_robot_only_through_the_supervisor(cell_name):
    # Config lint (safety.md C13): ros2_control's forward controllers have no timeout, so in a
    # cell with a supervisor no other node may publish the robot's command topics. The rule
    # (bringup.command_routing_problems) lets a shadow policy feed a judge_only safety node
    # (docs/SHADOW.md); test_shadow.py shows what it refuses.
    cell = load_cell(cell_name)
    assert command_routing_problems(cell) == []
    executables = [n.executable for n in cell.nodes]
    for spec in cell.nodes:
        if spec.executable == 'safety_node' and spec.parameters.get('auto_arm'):
            assert 'sim_node' in executables, 'auto_arm is for simulated cells only'


@pytest.mark.parametrize('cell_name', available_cells())
def test_every_cell_publishes_its_robot_description_and_frames(cell_name):
    # tf2 users (rviz, MoveIt, a perception stack) need robot_description and /tf for the robot
    # the sim runs, and a frame for every camera whose images name one.
    cell = load_cell(cell_name)
    publishers = [n for n in cell.nodes if n.executable == 'state_publisher_node']
    assert len(publishers) == 1, f'{cell_name}: {len(publishers)} state publishers'
    params = publishers[0].parameters
    sim = cell.node('sim').parameters
    assert params['robot'] == sim['robot'] == cell.robot
    assert params['cameras'] == sim['cameras']
    assert 'joint_states' not in publishers[0].remappings  # reads the sim's joint_states
