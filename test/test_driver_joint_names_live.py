"""Joint-name mapping at the driver boundary, live: the expert cell with every node speaking
fanuc_driver's names (J1..J6), and a joint_states message whose names map to nothing refused by
the supervisor with the names in its log and counted in its diagnostics."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
import pytest

from noetra_ros.bringup import load_cell
from ros_harness import diagnostic_value, key_values, NodeProcess

pytestmark = pytest.mark.ros

FANUC = [f'J{i}' for i in range(1, 7)]
FANUC_NAMES = {'driver_joint_names': 'fanuc'}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
EPISODE_TIMEOUT_S = 300.0  # wall seconds for one lockstep expert episode on a loaded 2-core machine


def test_expert_cell_on_fanuc_names_completes_an_episode(ros_context, tmp_path):
    cell = load_cell('pick_place_lrmate', {
        'sim': dict(FANUC_NAMES, episodes=1),
        'expert': FANUC_NAMES,
        'safety': dict(FANUC_NAMES, controller_joints=FANUC)})
    procs = [NodeProcess(spec, tmp_path) for spec in cell.nodes]
    ros_context.start()
    probe = ros_context.probe('fanuc_names_probe')
    joints = probe.record('joint_states', JointState)
    commands = probe.record('forward_position_controller/commands', Float64MultiArray)
    status = probe.record('safety/status', DiagnosticStatus, qos=LATCHED)
    task = probe.record('task/status', DiagnosticStatus)
    try:
        for proc in procs:
            proc.start()

        def finished() -> bool:
            dead = [p.spec.name for p in procs if not p.running()]
            assert not dead, f'nodes exited: {dead}'
            return any(key_values(r.msg).get('result') for r in task)
        ros_context.spin_until(finished, EPISODE_TIMEOUT_S, what='the end of one episode')
        result = next(key_values(r.msg) for r in task if key_values(r.msg).get('result'))
        logs = '\n'.join(p.log_text()[-2000:] for p in procs)
        assert result['result'] == 'success', f'{result}\n{logs}'
        assert joints and list(joints[-1].msg.name[:6]) == FANUC
        assert any(r.msg.message.startswith('ARMED') for r in status)
        assert len(commands) > 10 and all(len(r.msg.data) == 6 for r in commands)
        safety = next(p for p in procs if p.spec.name == 'safety')
        assert 'rejected' not in safety.log_text(), safety.log_text()[-2000:]
    finally:
        for proc in procs:
            proc.stop()


def test_joint_state_with_unmapped_names_is_refused_naming_them(ros_context, tmp_path):
    with NodeProcess.for_node('safety', 'safety_node',
                              dict(FANUC_NAMES, profile='industrial'), tmp_path) as safety:
        ros_context.start()
        probe = ros_context.probe('unmapped_names_probe')
        diagnostics = probe.record('/diagnostics', DiagnosticArray)
        probe.publisher('joint_states', JointState)
        ros_context.wait_matched(probe)
        message = JointState(name=[f'joint_{i}' for i in range(1, 7)], position=[0.0] * 6)

        def refused() -> bool:
            probe.publish('joint_states', message)
            return any((diagnostic_value(r.msg, 'joint_state_rejected_unknown_names') or '0')
                       not in ('0', '') for r in diagnostics)
        ros_context.spin_until(refused, 60.0, what='the refusal counted in /diagnostics')
        log = safety.wait_log('map to no joint')
        assert "'joint_1'" in log and 'joint_states rejected' in log
