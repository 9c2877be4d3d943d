"""The audit trail of a running safety_node over real DDS (docs/AUDIT.md).

The safety node runs as its own process; this test's probe node is the robot (it publishes
joint_states where the last forward position command put the arm: a robot that tracks
exactly) and the command source (position targets, one beyond joint_1's upper limit), and the
operator (arm, hold and reset services, the e-stop topic). The trail on safety/audit must carry
the clamp by the position limit, a command refused whole, the hold, the e-stop and each operator
action with the right reasons; a bag written from what was received is summarised by
`noetra audit` with the counts of the trail.
"""
from __future__ import annotations

import pytest

from noetra_ros.core import audit
from noetra_ros.core.robots import home_positions, robot_spec
from ros_harness import NodeProcess
from test_audit import write_audit_bag

pytestmark = pytest.mark.ros

ROBOT = 'fanuc_lrmate200id'
PERIOD_S = 0.05
CLAMPED_CYCLES = 10  # the clamp phase lasts until this many clamped cycles were audited
RESET_REASON = 'estop reset; explicit arm required'
PARAMS = {'robot': ROBOT, 'profile': 'industrial', 'period_s': PERIOD_S}


def call(session, probe, service: str) -> tuple[bool, str]:
    from std_srvs.srv import Trigger
    client = probe.node.create_client(Trigger, service)
    session.spin_until(client.service_is_ready, 30.0, f'{service} service')
    future = client.call_async(Trigger.Request())
    session.spin_until(future.done, 20.0, f'{service} answer')
    return bool(future.result().success), str(future.result().message)


def test_the_audit_topic_carries_clamps_holds_estops_and_operator_actions(
        ros_context, tmp_path, capsys):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.clock import Clock
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray

    from noetra_ros.cli import main
    from noetra_ros.core.robot_model import load_robot_description

    names = list(robot_spec(ROBOT).joint_names)
    upper = load_robot_description(ROBOT).limits.upper
    arm_at = [float(v) for v in home_positions(ROBOT)]
    target = list(arm_at)
    target[0] = float(upper[0]) + 0.3  # beyond the URDF bound: clamped at limit - margin
    sending = {'commands': False}

    session = ros_context.start()
    probe = session.probe('cell_probe')
    joint_states = probe.publisher('joint_states', JointState)
    commands = probe.publisher('safety/position_commands', Float64MultiArray)
    estop = probe.publisher('safety/estop', Bool)
    trail = probe.record(audit.AUDIT_TOPIC, DiagnosticArray)

    def follow(msg) -> None:  # the robot goes where it is commanded
        arm_at[:] = list(msg.data)
    probe.record('forward_position_controller/commands', Float64MultiArray, callback=follow)

    def tick() -> None:
        state = JointState(name=names, position=list(arm_at))
        state.header.stamp = Clock().now().to_msg()
        joint_states.publish(state)
        if sending['commands']:
            commands.publish(Float64MultiArray(data=target))
    probe.node.create_timer(PERIOD_S, tick)

    def decoded(decision: str | None = None) -> list[audit.AuditRecord]:
        found = [r for received in trail for status in received.msg.status
                 for r in audit.decode_entry(status.name, {kv.key: kv.value
                                                           for kv in status.values})]
        return [r for r in found if decision is None or r.decision == decision]

    def held_for(reason: str) -> None:
        session.spin_until(lambda: any(r.reason == reason for r in decoded('held')), 30.0,
                           f'a cycle held for {reason!r} on {audit.AUDIT_TOPIC}')

    with NodeProcess.for_node('safety', 'safety_node', PARAMS, tmp_path) as node:
        session.wait_matched(probe, 30.0)
        session.spin_for(1.0)  # fresh joint_states before arming
        assert call(session, probe, 'safety/arm') == (True, 'armed')
        sending['commands'] = True
        session.spin_until(lambda: len(decoded('clamped')) >= CLAMPED_CYCLES, 30.0,
                           f'{CLAMPED_CYCLES} clamped cycles on {audit.AUDIT_TOPIC}')
        # Held while the source still commands (else the command timeout would hold first).
        assert call(session, probe, 'safety/hold')[0]
        sending['commands'] = False
        held_for('hold requested by service')
        estop.publish(Bool(data=True))
        held_for('estop from safety/estop topic')
        assert call(session, probe, 'safety/reset_estop')[0]
        held_for(RESET_REASON)
        # One value for six joints: refused whole (it would hold an armed supervisor, so it
        # comes last).
        commands.publish(Float64MultiArray(data=[0.0]))
        session.spin_until(lambda: bool(decoded('rejected')), 30.0, 'the refused command')
        assert node.running(), node.log_text()

    records = decoded()
    records.sort(key=lambda r: r.stamp_ns)
    operator = [(r.action, r.via, r.decision) for r in records if r.kind == 'operator']
    assert operator == [('arm', 'safety/arm service', 'accepted'),
                        ('hold', 'safety/hold service', 'accepted'),
                        ('estop', 'safety/estop topic', 'accepted'),
                        ('reset_estop', 'safety/reset_estop service', 'accepted')]
    rejected = [r for r in records if r.kind == 'rejected']
    assert [r.via for r in rejected] == ['safety/position_commands'], rejected
    cycles = [r for r in records if r.kind == 'cycle']
    clamped = [r for r in cycles if r.decision == 'clamped']
    assert len(clamped) >= CLAMPED_CYCLES, [(r.decision, r.reason) for r in cycles]
    assert all('clamped_position' in r.reason.split(',') for r in clamped)
    assert all(r.command_stamp_ns is not None for r in clamped)
    assert {r.source for r in clamped} == {'cell_probe'}  # the node publishing the commands
    held_reasons = {r.reason for r in cycles if r.decision == 'held'}
    assert {'hold requested by service', 'estop from safety/estop topic',
            RESET_REASON} <= held_reasons
    # Every cycle record lies between the operator actions that bound its state.
    times = {r.action: r.stamp_ns for r in records if r.kind == 'operator'}
    for r in cycles:
        if r.reason == 'hold requested by service':
            assert times['hold'] <= r.stamp_ns <= times['estop']
        if r.decision == 'clamped':
            assert times['arm'] <= r.stamp_ns <= times['hold']

    bag = tmp_path / 'recording' / 'audit_live_ep000_seed0'
    write_audit_bag(bag, [(received.msg.header.stamp.sec * 10**9
                           + received.msg.header.stamp.nanosec,
                           serialize_message(received.msg)) for received in trail])
    assert main(['audit', str(bag), '--summary-only']) == 0
    out = capsys.readouterr().out
    summary = audit.summarize(records)
    d = summary.decisions
    assert (f'{summary.cycles} commanded cycles over {summary.duration_s:.1f} s: '
            f'{d.get("passed", 0)} passed, {len(clamped)} clamped, '
            f'{d["held"]} held; {d.get("rejected", 0)} commands rejected') in out
    assert 'clamped   clamped_position' in out
    for action in ('arm', 'hold', 'estop', 'reset_estop'):
        assert f'{action:<11} via safety/' in out


def test_a_command_before_the_first_clock_is_refused_as_no_clock(ros_context, tmp_path):
    """On use_sim_time, a command that arrives before any /clock message cannot be placed in
    time: it is refused under its own reason (not as a zero stamp), the trail says so, and
    nothing reaches the robot."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from noetra_ros.safety_node import NO_CLOCK

    names = list(robot_spec(ROBOT).joint_names)
    home = [float(v) for v in home_positions(ROBOT)]
    session = ros_context.start()
    probe = session.probe('no_clock_probe')
    joint_states = probe.publisher('joint_states', JointState)
    commands = probe.publisher('safety/position_commands', Float64MultiArray)
    trail = probe.record(audit.AUDIT_TOPIC, DiagnosticArray)
    outputs = probe.record('forward_position_controller/commands', Float64MultiArray)

    def tick() -> None:  # sim-stamped measurements and commands, but never a /clock
        state = JointState(name=names, position=home)
        state.header.stamp.sec = 5
        joint_states.publish(state)
        commands.publish(Float64MultiArray(data=home))
    probe.node.create_timer(PERIOD_S, tick)

    def refused() -> list[audit.AuditRecord]:
        return [r for received in trail for status in received.msg.status
                for r in audit.decode_entry(status.name, {kv.key: kv.value
                                                          for kv in status.values})
                if r.kind == 'rejected']

    with NodeProcess.for_node('safety', 'safety_node', dict(PARAMS, use_sim_time=True),
                              tmp_path) as node:
        session.wait_matched(probe, 30.0)
        session.spin_until(lambda: bool(refused()), 30.0, 'a refused command on the trail')
        # The refused joint_states (stamped ahead of a clock that reads 0) are logged too; the
        # command topic's line must not be throttled away by them.
        lines = (f'safety/position_commands rejected: {NO_CLOCK}: use_sim_time',
                 'joint_states rejected')
        session.spin_until(lambda: all(line in node.log_text() for line in lines), 10.0,
                           'both refusals in the log')
        assert node.running(), node.log_text()
        log = node.log_text()
    assert refused()[0].via == 'safety/position_commands'
    assert refused()[0].reason.startswith(NO_CLOCK), refused()[0]
    assert 'zero_stamp' not in log
    assert not outputs, 'nothing reaches the robot without a clock'
