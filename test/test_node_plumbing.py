"""What every node executable shares, checked on whole cells run as processes over real DDS:

- every parameter can be read with the standard parameter services, with its declared type
  (what `ros2 param dump` does: list_parameters, then get_parameters for all names);
- no parameter can be changed once the node runs, `use_sim_time` included (set_parameters is
  refused with a reason while the supervisor is ARMED);
- SIGINT and SIGTERM (Ctrl-C / `ros2 launch`; systemd, `docker stop`, `ros2 launch` after its
  grace period) end every node with exit code 0 and no traceback, while the sim is publishing.

Each cell runs once per test class (its nodes started like `noetra run` starts them); the stop
test comes last in the class because it ends the cell.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import (DescribeParameters, GetParameters, ListParameters,
                                SetParameters, SetParametersAtomically)
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray
import pytest

from noetra_ros import expert_node, policy_node, safety_node, sim_node, state_publisher_node
from noetra_ros.bringup import load_cell
from ros_harness import NodeProcess, ROOT, ros_env, RosSession

pytestmark = pytest.mark.ros

# The parameter table each executable declares from, to know the type every value must have.
TABLES = {'sim_node': sim_node.PARAMETERS, 'expert_node': expert_node.PARAMETERS,
          'safety_node': safety_node.PARAMETERS, 'policy_node': policy_node.PARAMETERS,
          'state_publisher_node': state_publisher_node.PARAMETERS}
TYPE_OF = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
           float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
START_TIMEOUT_S = 120.0  # model loading and DDS discovery on a loaded 2-core machine
EXIT_TIMEOUT_S = 20.0


def expected_type(default) -> int:
    if isinstance(default, list):
        # A list that may be empty is a list of names (ros_params declares [] as a string array).
        return ParameterType.PARAMETER_STRING_ARRAY if not default or isinstance(
            default[0], str) else {int: ParameterType.PARAMETER_INTEGER_ARRAY,
                                   float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                                   bool: ParameterType.PARAMETER_BOOL_ARRAY}[type(default[0])]
    return TYPE_OF[type(default)]


def python_value(value: ParameterValue):
    """The Python value a ParameterValue carries (lists as lists)."""
    field = {ParameterType.PARAMETER_BOOL: 'bool_value',
             ParameterType.PARAMETER_INTEGER: 'integer_value',
             ParameterType.PARAMETER_DOUBLE: 'double_value',
             ParameterType.PARAMETER_STRING: 'string_value',
             ParameterType.PARAMETER_BYTE_ARRAY: 'byte_array_value',
             ParameterType.PARAMETER_BOOL_ARRAY: 'bool_array_value',
             ParameterType.PARAMETER_INTEGER_ARRAY: 'integer_array_value',
             ParameterType.PARAMETER_DOUBLE_ARRAY: 'double_array_value',
             ParameterType.PARAMETER_STRING_ARRAY: 'string_array_value'}[value.type]
    result = getattr(value, field)
    return list(result) if field.endswith('array_value') else result


def flatten(params: dict, prefix: str = '') -> dict:
    """{'scene_camera': {'width': 1}} -> {'scene_camera.width': 1}, as ROS names them."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


# A reply can be lost on a loaded machine: Fast DDS waits only ~100 ms for the client's reply
# reader to match before it drops the response (rmw_fastrtps PR #467; rclpy then only warns
# "failed to send response (timeout)"). The parameter services are read-only or refuse, so the
# request is sent again after this long without a reply.
RESEND_AFTER_S = 5.0


def call(session: RosSession, node, srv_type, name: str, request):
    """Call service `name` from `node` (an rclpy Node spun by `session`) and return the reply,
    resending the (idempotent) request every RESEND_AFTER_S until START_TIMEOUT_S."""
    client = node.create_client(srv_type, name)
    try:
        session.spin_until(lambda: client.service_is_ready(), START_TIMEOUT_S,
                           what=f'service {name}')
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            future = client.call_async(request)
            try:
                session.spin_until(future.done, RESEND_AFTER_S, what=f'reply of {name}')
                return future.result()
            except AssertionError:
                client.remove_pending_request(future)
                if time.monotonic() > deadline:
                    raise
    finally:
        node.destroy_client(client)


class RunningCell:
    """A cell's nodes as processes (logs in `work_dir`), started like `noetra run` does."""

    def __init__(self, cell_name: str, work_dir, overrides: dict | None = None) -> None:
        self.cell = load_cell(cell_name, overrides)
        self.procs = {spec.name: NodeProcess(spec, work_dir) for spec in self.cell.nodes}

    def start(self) -> RunningCell:
        for proc in self.procs.values():
            proc.start()
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return '\n'.join(f'--- {name}.log\n{proc.log_text()[-3000:]}'
                         for name, proc in self.procs.items())

    def assert_all_running(self) -> None:
        dead = {name: p.proc.returncode for name, p in self.procs.items() if not p.running()}
        assert not dead, f'nodes exited: {dead}\n{self.logs()}'


def wait_until_commanding(cell: RunningCell, session: RosSession) -> None:
    """Wait until the sim publishes camera images and the supervisor, ARMED, commands the arm:
    the whole graph is busy, which is when a stop signal is most likely to land mid-callback."""
    probe = session.probe('plumbing_probe')
    images = probe.record('scene_camera/image_raw', Image)
    commands = probe.record('forward_position_controller/commands', Float64MultiArray)
    status = probe.record('safety/status', DiagnosticStatus, qos=LATCHED)

    def busy() -> bool:
        cell.assert_all_running()
        return len(images) >= 3 and len(commands) >= 3 and status and \
            status[-1].msg.message.startswith('ARMED')
    session.spin_until(busy, START_TIMEOUT_S, what='images, ARMED status and arm commands')


class CellChecks:
    """The checks every cell gets; subclasses name the cell and the stop signal."""

    CELL = ''
    STOP_SIGNAL = signal.SIGINT

    @pytest.fixture(scope='class')
    @classmethod
    def cell(cls, ros_domain_id, tmp_path_factory):
        running = RunningCell(cls.CELL, tmp_path_factory.mktemp(cls.CELL)).start()
        try:
            yield running
        finally:
            running.stop()

    def test_every_parameter_reads_back_with_its_declared_type(self, cell, ros_context):
        ros_context.start()
        probe = ros_context.probe('parameter_reader')
        for spec in cell.cell.nodes:
            where = f'node {spec.name!r} ({spec.executable})'
            names = call(ros_context, probe.node, ListParameters, f'/{spec.name}/list_parameters',
                         ListParameters.Request(depth=ListParameters.Request.DEPTH_RECURSIVE)
                         ).result.names
            table = TABLES[spec.executable]
            assert set(table) <= set(names), f'{where}: not listed: {set(table) - set(names)}'
            assert 'use_sim_time' in names, where
            values = call(ros_context, probe.node, GetParameters, f'/{spec.name}/get_parameters',
                          GetParameters.Request(names=list(names))).values
            # One value per name, none NOT_SET: a single unset parameter empties the answer.
            assert len(values) == len(names), f'{where}: {len(values)} values for {len(names)}'
            descriptors = call(ros_context, probe.node, DescribeParameters,
                               f'/{spec.name}/describe_parameters',
                               DescribeParameters.Request(names=list(names))).descriptors
            configured = flatten(dict(spec.parameters))
            for name, value, descriptor in zip(names, values, descriptors):
                assert value.type != ParameterType.PARAMETER_NOT_SET, f'{where}: {name} not set'
                assert value.type == descriptor.type, f'{where}: {name} type {value.type} ' \
                                                      f'!= declared {descriptor.type}'
                if name in table:
                    assert value.type == expected_type(table[name][0]), f'{where}: {name}'
                    if name not in configured:
                        assert python_value(value) == table[name][0], f'{where}: {name}'
                if name in configured:
                    assert python_value(value) == configured[name], f'{where}: {name}'
            # The string-array parameters declared empty are there, as empty lists.
            for name, (default, _) in table.items():
                if default == [] and name not in configured:
                    assert python_value(values[list(names).index(name)]) == [], name

    def test_no_parameter_changes_while_armed(self, cell, ros_context):
        ros_context.start()
        wait_until_commanding(cell, ros_context)
        probe = ros_context.probe('parameter_writer')
        node = probe.node
        names = ['use_sim_time', 'period_s', 'watched_sensors']
        before = call(ros_context, node, GetParameters, '/safety/get_parameters',
                      GetParameters.Request(names=names)).values
        assert before[0].bool_value, 'the cell runs the supervisor on sim time'
        changes = [
            ParameterMsg(name='use_sim_time', value=ParameterValue(
                type=ParameterType.PARAMETER_BOOL, bool_value=False)),
            ParameterMsg(name='period_s', value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=1.0)),
            ParameterMsg(name='watched_sensors', value=ParameterValue(
                type=ParameterType.PARAMETER_STRING_ARRAY,
                string_array_value=['scene_camera/image_raw'])),
        ]
        results = call(ros_context, node, SetParameters, '/safety/set_parameters',
                       SetParameters.Request(parameters=changes)).results
        assert [r.successful for r in results] == [False] * len(changes)
        for change, result in zip(changes, results):
            assert change.name in result.reason and 'read-only' in result.reason, result.reason
        atomic = call(ros_context, node, SetParametersAtomically,
                      '/safety/set_parameters_atomically',
                      SetParametersAtomically.Request(parameters=changes[:1])).result
        assert not atomic.successful and 'use_sim_time' in atomic.reason, atomic.reason
        after = call(ros_context, node, GetParameters, '/safety/get_parameters',
                     GetParameters.Request(names=names)).values
        assert [python_value(v) for v in after] == [python_value(v) for v in before]
        cell.assert_all_running()

    def test_stop_signal_ends_every_node_with_exit_code_0(self, cell, ros_context):
        ros_context.start()
        wait_until_commanding(cell, ros_context)
        # All at once, as `ros2 launch` and `docker stop` do.
        for proc in cell.procs.values():
            proc.proc.send_signal(self.STOP_SIGNAL)
        codes = {name: proc.wait_exit(EXIT_TIMEOUT_S) for name, proc in cell.procs.items()}
        assert codes == {name: 0 for name in cell.procs}, cell.logs()
        for name, proc in cell.procs.items():
            log = proc.log_text()
            assert 'Traceback' not in log and 'RCLError' not in log, f'{name}:\n{log[-3000:]}'
            assert f'{self.STOP_SIGNAL.name}: shutting down' in log, f'{name}:\n{log[-3000:]}'


class TestExpertCell(CellChecks):
    CELL = 'pick_place_lrmate'
    STOP_SIGNAL = signal.SIGINT


class TestPolicyCell(CellChecks):
    CELL = 'pick_place_lrmate_policy'
    STOP_SIGNAL = signal.SIGTERM


def test_noetra_run_stopped_by_sigterm_stops_its_cell_cleanly(ros_domain_id, tmp_path):
    """`docker stop` / systemd on the runner: the nodes (in their own sessions, so the signal
    does not reach them) are stopped by the runner, each cleanly, before it exits."""
    out = tmp_path / 'run'
    runner = subprocess.Popen(
        [sys.executable, '-m', 'noetra_ros.cli', 'run', 'pick_place_lrmate', '--episodes', '50',
         '--no-video', '--quiet', '--out', str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ros_env(),
        cwd=str(ROOT), start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        sim_log = out / 'sim.log'
        # The runner starts the episodes once discovery is done: then every node is spinning.
        while not (sim_log.exists() and 'episode 0 seed' in sim_log.read_text()):
            assert runner.poll() is None, runner.communicate()[0]
            assert time.monotonic() < deadline, 'the cell did not start its first episode'
            time.sleep(0.1)
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 130, output
    assert 'stopped by SIGTERM' in output, output
    for name in ('sim', 'expert', 'safety'):
        log = (out / f'{name}.log').read_text()
        assert 'SIGINT: shutting down' in log, f'{name}:\n{log[-3000:]}'
        assert 'Traceback' not in log, f'{name}:\n{log[-3000:]}'


def test_a_node_started_with_sigint_blocked_still_stops_on_it(ros_domain_id, tmp_path):
    """A blocked signal stays blocked through fork and exec, and Ray runs its tasks in threads
    that block SIGINT: a node started from one (`noetra eval --workers`) must unblock it, or the
    runner's SIGINT stays pending and the node ends by SIGKILL, its shutdown never run."""
    spec = next(n for n in load_cell('pick_place_lrmate').nodes if n.name == 'state_publisher')
    node = NodeProcess(spec, tmp_path)

    def start_with_sigint_blocked() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # this thread only
        node.start()

    starter = threading.Thread(target=start_with_sigint_blocked)
    starter.start()
    starter.join()
    try:
        node.wait_log('state publisher ready', START_TIMEOUT_S)
        blocked = int(_status_field(node.proc.pid, 'SigBlk'), 16)
        assert not blocked & (1 << (signal.SIGINT - 1)), f'SigBlk {blocked:#x}'
        node.proc.send_signal(signal.SIGINT)
        assert node.wait_exit(EXIT_TIMEOUT_S) == 0, node.log_text()
        assert 'SIGINT: shutting down' in node.log_text(), node.log_text()
    finally:
        if node.running():
            node.proc.kill()
            node.proc.wait()


def _status_field(pid: int, field: str) -> str:
    """One field of /proc/<pid>/status (the signal masks are hexadecimal bit sets)."""
    for line in open(f'/proc/{pid}/status').read().splitlines():
        if line.startswith(f'{field}:'):
            return line.split(':', 1)[1].strip()
    raise AssertionError(f'no {field} in /proc/{pid}/status')
