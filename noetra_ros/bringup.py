"""One description of a cell's node graph, used by both `ros2 launch` and `noetra run`.

A cell file (`config/cells/<cell>.yaml`) names the nodes to start, their executables, their
parameters and remappings. `launch/bringup.launch.py` turns it into launch_ros `Node` actions;
`noetra run` (for machines with only the ROS 2 wheels) turns it into processes with the same
`--ros-args`. Both go through `load_cell` and `NodeSpec`, so they cannot drift apart.

`hardware` (launch argument `hardware:=sim|real`, `noetra run --hardware`): with `sim` the cell
runs as written, the simulator playing the arm's driver; with `real` the simulator (every node
whose executable is in SIM_ONLY_EXECUTABLES) is left out and every other node runs on the wall
clock (use_sim_time false), talking to the real driver under the same names: the cell's
`driver` (ros2_control | fanuc | motoros2) fixes those names for both. Nothing else changes.

This module imports neither rclpy nor launch: it is plain Python + YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import os
from pathlib import Path
import sys
from typing import Any, Mapping

import yaml

from noetra_ros.core.drivers.profiles import DRIVERS
from noetra_ros.core.errors import ConfigError, UnknownNameError
# share_dir stays importable from here: the one data-folder lookup is core/paths.py.
from noetra_ros.core.paths import config_dir, share_dir  # noqa: F401

# The environment variable that names the `noetra run` process to a node it starts: the node
# stops when that process ends (ros_main.stop_with_parent).
PARENT_PID_ENV = 'NOETRA_PARENT_PID'

PACKAGE = 'noetra_ros'
# Executables the package installs (setup.py console_scripts); a cell may only start these.
EXECUTABLES = ('sim_node', 'expert_node', 'policy_node', 'safety_node', 'state_publisher_node',
               'recorder_node', 'foxglove_node', 'shadow_node')
# Nodes that exist only in simulation: with hardware real the real driver and cameras take
# their place.
SIM_ONLY_EXECUTABLES = ('sim_node',)
HARDWARE = ('sim', 'real')
# The live view's WebSocket server (foxglove_node): this machine only unless the operator
# names another address; 8765 is the port Foxglove's "Foxglove WebSocket" connection proposes.
FOXGLOVE_HOST = '127.0.0.1'
FOXGLOVE_PORT = 8765
_PARAM_TYPES = (bool, int, float, str)
# The command lint (`command_routing_problems`, safety.md C13): ros2_control's forward
# controllers have no timeout, so the topics a command source publishes by default (expert_node,
# policy_node) must each lead into a safety_node, and only a driving safety_node may publish the
# driver's command topics.
COMMAND_SOURCES = ('expert_node', 'policy_node')
ROBOT_COMMAND_TOPICS = ('forward_position_controller/commands',
                        'forward_velocity_controller/commands',
                        'joint_trajectory_controller/joint_trajectory',
                        'gripper_position_controller/commands')
DRIVER_TOPICS = ROBOT_COMMAND_TOPICS + ('diff_drive_controller/cmd_vel',)
# safety_node's command inputs (safety_node.INPUT_TOPICS; this module stays free of rclpy).
SUPERVISOR_INPUTS = ('safety/joint_trajectory', 'safety/position_commands',
                     'safety/velocity_commands', 'safety/gripper_commands')


def cells_dir() -> Path:
    return config_dir('cells')


def available_cells() -> list[str]:
    return sorted(p.stem for p in cells_dir().glob('*.yaml'))


@dataclass(frozen=True)
class NodeSpec:
    """One node of a cell: what to run, under which name, with which parameters."""

    name: str
    executable: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ''

    def __post_init__(self) -> None:
        if self.executable not in EXECUTABLES:
            raise ConfigError(f'node {self.name!r}: executable {self.executable!r} is not one of '
                              f'{list(EXECUTABLES)}')
        if not self.name or not self.name.replace('_', 'a').isalnum():
            raise ConfigError(f'node name {self.name!r} must be a non-empty [A-Za-z0-9_] name')
        for key, value in self.parameters.items():
            _check_parameter(f'{self.name}.parameters.{key}', value)

    def params_yaml(self) -> dict:
        """The standard `<node>: ros__parameters:` block for this node."""
        return {self.name: {'ros__parameters': dict(self.parameters)}}

    def ros_args(self, params_file: str) -> list[str]:
        """The `--ros-args` that start this node as the launch file would."""
        args = ['--ros-args', '-r', f'__node:={self.name}']
        if self.namespace:
            args += ['-r', f'__ns:={self.namespace}']
        args += ['--params-file', params_file]
        for source, target in self.remappings.items():
            args += ['-r', f'{source}:={target}']
        return args

    def launch_kwargs(self) -> dict:
        """Keyword arguments for launch_ros.actions.Node that start this node."""
        return {'package': PACKAGE, 'executable': self.executable, 'name': self.name,
                'namespace': self.namespace, 'parameters': [dict(self.parameters)],
                'remappings': list(self.remappings.items())}

    def command(self, params_file: str) -> list[str]:
        """argv that runs the node from this Python environment (no `ros2 run` needed)."""
        return [sys.executable, '-m', f'{PACKAGE}.{self.executable}', *self.ros_args(params_file)]


@dataclass(frozen=True)
class CellSpec:
    name: str
    description: str
    sector: str
    robot: str
    nodes: tuple[NodeSpec, ...]
    source: str
    driver: str = 'ros2_control'
    hardware: str = 'sim'

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise UnknownNameError(f'cell {self.name!r} has no node {name!r} '
                               f'(nodes: {[n.name for n in self.nodes]})')

    def params_yaml(self) -> dict:
        merged: dict = {}
        for spec in self.nodes:
            merged.update(spec.params_yaml())
        return merged

    def write_params_file(self, path: str | os.PathLike) -> Path:
        """Write every node's parameters into one standard ROS 2 parameters file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.params_yaml(), sort_keys=False))
        return path


def with_recorder(cell: CellSpec, run_dir: str | os.PathLike) -> CellSpec:
    """The cell plus a recorder node (recorder_node.py) writing its bags under
    `<run_dir>/recording/`: per episode of the sim's task/status, or per run on real hardware."""
    recorder = NodeSpec(name='recorder', executable='recorder_node', parameters={
        'output_dir': str(Path(run_dir).resolve()), 'cell': cell.name, 'robot': cell.robot,
        'driver': cell.driver, 'use_sim_time': cell.hardware == 'sim',
        'episodes': 'task_status' if cell.hardware == 'sim' else 'run'})
    return replace(cell, nodes=(*cell.nodes, recorder))


def foxglove_node(use_sim_time: bool, host: str = FOXGLOVE_HOST,
                  port: int = FOXGLOVE_PORT) -> NodeSpec:
    """The live-view node (foxglove_node.py): every topic to Foxglove over a WebSocket server on
    `host`:`port`, on sim time in a simulated cell (its messages carry the cell's clock, as in
    the recorded bags)."""
    return NodeSpec(name='foxglove', executable='foxglove_node', parameters={
        'host': host, 'port': port, 'use_sim_time': use_sim_time})


def with_foxglove(cell: CellSpec, address: str = '') -> CellSpec:
    """The cell plus the live-view node serving on `address` (foxglove_address; '' = this
    machine, port 8765; docs/VIEWING.md)."""
    host, port = foxglove_address(address)
    return replace(cell, nodes=(*cell.nodes, foxglove_node(cell.hardware == 'sim', host, port)))


def foxglove_address(text: str = '') -> tuple[str, int]:
    """`PORT` or `HOST:PORT` (as `noetra run --foxglove` takes it) -> (host, port); the host
    defaults to this machine only, '' to the default address."""
    if not text:
        return FOXGLOVE_HOST, FOXGLOVE_PORT
    host, _, port = text.rpartition(':')
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f'Foxglove address {text!r}: expected PORT or HOST:PORT with a port '
                          '0..65535 (e.g. 8765 or 0.0.0.0:8765)')
    return host or FOXGLOVE_HOST, int(port)


def foxglove_url(host: str, port: int) -> str:
    """Where Foxglove connects to a server bound to `host`:`port`."""
    if host in ('0.0.0.0', '::', ''):
        host = '<this machine\'s address>'  # bound to every interface
    return f'ws://{host}:{port}'


def command_routing_problems(cell: CellSpec) -> list[str]:
    """What breaks the rule that commands reach the robot only through a supervisor (empty:
    nothing). A cell needs a driving safety_node (one without `judge_only`); every topic a
    command source publishes by default must be remapped to a command input of some safety_node
    (a driving one, or a judge_only one in a shadow cell: docs/SHADOW.md); and no node but a
    driving safety_node may have a remapping that ends on a driver's command topic (a judge's
    shadow/judged/* output pointed at the robot, a source remapped around its supervisor)."""
    supervisors = [n for n in cell.nodes if n.executable == 'safety_node']
    problems = []
    if not any(not n.parameters.get('judge_only', False) for n in supervisors):
        problems.append(f'{cell.name}: no safety_node drives the robot (a judge_only one '
                        'never does)')
    inputs = {_relative(n.remappings.get(t, t)) for n in supervisors for t in SUPERVISOR_INPUTS}
    for spec in cell.nodes:
        if spec.executable in COMMAND_SOURCES:
            for topic in ROBOT_COMMAND_TOPICS:
                target = _relative(spec.remappings.get(topic, topic))
                if target not in inputs:
                    problems.append(f'{cell.name}: {spec.name} would publish {topic} on '
                                    f'{target}, which no safety_node reads: straight to the robot')
        if spec.executable != 'safety_node' or spec.parameters.get('judge_only', False):
            onto = sorted(src for src, dst in spec.remappings.items()
                          if _relative(dst) in DRIVER_TOPICS)
            if onto:
                problems.append(f'{cell.name}: {spec.name} remaps {onto} onto a driver\'s '
                                'command topic; only a driving safety_node publishes there')
    return problems


def check_command_routing(cell: CellSpec) -> None:
    """ConfigError naming every problem `command_routing_problems` finds."""
    problems = command_routing_problems(cell)
    if problems:
        raise ConfigError('; '.join(problems))


def _relative(topic: str) -> str:
    return topic.lstrip('/')


def _check_parameter(where: str, value: Any) -> None:
    if isinstance(value, _PARAM_TYPES):
        return
    if isinstance(value, list):
        if not value:
            raise ConfigError(f'{where}: empty lists have no ROS 2 parameter type; omit the key')
        kinds = {type(v) for v in value}
        if len(kinds) != 1 or next(iter(kinds)) not in _PARAM_TYPES:
            raise ConfigError(f'{where}: a list parameter must hold values of one type '
                              f'(bool, int, float or str), got {value!r}')
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_parameter(f'{where}.{key}', sub)
        return
    raise ConfigError(f'{where}: {value!r} is not a ROS 2 parameter value')


def _merge(base: dict, override: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_cell(cell: str, overrides: Mapping[str, Mapping[str, Any]] | None = None,
              hardware: str = 'sim') -> CellSpec:
    """Load and validate a cell by name (from config/cells) or by path to a YAML file.

    `overrides` maps node name -> parameters that replace the file's values (e.g. from the CLI).
    `hardware` 'real' leaves the simulator out and runs the rest on the wall clock (module
    docstring).
    """
    if hardware not in HARDWARE:
        raise ConfigError(f'hardware={hardware!r}: must be one of {HARDWARE}')
    path = Path(cell)
    if not (path.suffix in ('.yaml', '.yml') and path.is_file()):
        path = cells_dir() / f'{cell}.yaml'
        if not path.is_file():
            raise UnknownNameError(f'unknown cell {cell!r}; available cells: {available_cells()}')
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f'{path}: not valid YAML: {exc}') from exc
    if not isinstance(raw, dict) or 'cell' not in raw or 'nodes' not in raw:
        raise ConfigError(f'{path}: a cell file needs top-level keys `cell` and `nodes`')
    meta = raw['cell'] or {}
    for key in ('name', 'robot'):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise ConfigError(f'{path}: cell.{key} must be a non-empty string')
    driver = meta.get('driver', 'ros2_control')
    if driver not in DRIVERS:
        raise ConfigError(f'{path}: cell.driver {driver!r} must be one of {DRIVERS}')
    common = raw.get('common_parameters') or {}
    overrides = overrides or {}
    nodes = []
    skipped = []
    for index, entry in enumerate(raw['nodes'] or []):
        if not isinstance(entry, dict) or 'name' not in entry or 'executable' not in entry:
            raise ConfigError(f'{path}: nodes[{index}] needs `name` and `executable`')
        if hardware == 'real' and entry['executable'] in SIM_ONLY_EXECUTABLES:
            skipped.append(entry['name'])
            continue
        params = dict(common) if entry.get('common_parameters', True) else {}
        params = _merge(params, entry.get('parameters') or {})
        params = _merge(params, overrides.get(entry['name'], {}))
        if hardware == 'real' and 'use_sim_time' in params:
            params['use_sim_time'] = False  # no simulator, no /clock: the wall clock
        nodes.append(NodeSpec(name=entry['name'], executable=entry['executable'],
                              parameters=params, remappings=entry.get('remappings') or {},
                              namespace=entry.get('namespace', '')))
    unknown = set(overrides) - {n.name for n in nodes} - set(skipped)
    if unknown:
        raise UnknownNameError(f'overrides name nodes {sorted(unknown)} that cell {meta["name"]!r} '
                               f'does not have (nodes: {[n.name for n in nodes]})')
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f'{path}: node names must be unique, got {names}')
    if not nodes:
        raise ConfigError(f'{path}: a cell needs at least one node')
    return CellSpec(name=meta['name'], description=meta.get('description', ''),
                    sector=meta.get('sector', ''), robot=meta['robot'], nodes=tuple(nodes),
                    source=str(path), driver=driver, hardware=hardware)
