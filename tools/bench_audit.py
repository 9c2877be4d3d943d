"""What the audit trail costs the safety node per supervisor cycle (docs/AUDIT.md).

Runs the safety node's cycle without ROS (core/safety/cell.SafetyCell: joint state in, one
cycle, as safety_node does per joint_states) on a robot that tracks exactly, with a position
target stream, and times apart the supervisor's work and the audit work safety_node adds per
cycle: the decision (core/audit.cycle_decision), the record (AuditBatcher.cycle) and, every
batch, the entries and the diagnostic_msgs/DiagnosticArray built from them as safety_node
builds it (publishing itself is DDS's cost, the same for any message of that size, and not counted).
A batch is AUDIT_BATCH_S / period cycles (50 at a 500 Hz driver).

    python tools/bench_audit.py [--cycles 5000] [--repeats 5] [--out docs/results/bench_audit.txt]
"""
from __future__ import annotations

import argparse
from pathlib import Path
import platform
import statistics
import sys
import time

import numpy as np

from noetra_ros.core import audit
from noetra_ros.core.safety import (ArmPositions, MeasuredJoints, SafetyCell,
                                    SafetyNodeSettings, SafetyState)

ROBOT = 'fanuc_lrmate200id'
AUDIT_BATCH_S = 0.1  # safety_node.AUDIT_BATCH_S (not imported: that module needs rclpy)


def to_message(entries: list[audit.AuditEntry]):
    """safety_node._flush_audit's message (without publishing it)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    return DiagnosticArray(status=[
        DiagnosticStatus(level=bytes([e.level]), name=e.name, message=e.message,
                         hardware_id=ROBOT,
                         values=[KeyValue(key=k, value=v) for k, v in e.values])
        for e in entries])


def run(cycles: int, period_s: float, beyond_limit: bool) -> tuple[float, float]:
    """(supervisor work, audit work) per cycle in CPU seconds of this process over `cycles`
    cycles (CPU time, so that other processes on a shared machine do not count)."""
    cell = SafetyCell.from_settings(SafetyNodeSettings(robot=ROBOT, profile='industrial',
                                                       period_s=period_s))
    batcher = audit.AuditBatcher(max(1, round(AUDIT_BATCH_S / period_s)))
    batcher.set_source({'source': 'policy', 'model_sha256': '0' * 64, 'contract': 'bench'})
    names = list(cell.joint_names)
    q = np.zeros(len(names))
    t = 100.0
    cell.on_joint_state(MeasuredJoints(names, list(q), None, t), t)
    assert cell.arm(t).accepted
    upper = cell.supervisor.limits.upper
    clock = time.process_time
    supervisor = auditing = 0.0
    for i in range(cycles):
        t += period_s
        target = q + 0.2 * np.sin(0.01 * i)
        if beyond_limit:
            target[0] = upper[0] + 0.3
        start = clock()
        cell.on_joint_state(MeasuredJoints(names, list(q), None, t), t)
        cell.on_arm_command(ArmPositions(list(target)), t)
        out = cell.cycle(t)
        middle = clock()
        if out.arm is not None:
            decision, reason = audit.cycle_decision(
                out.state is SafetyState.ARMED, out.reason, out.command_stamp is not None,
                out.interventions)
            batcher.cycle(int(round(t * 1e9)), decision, reason,
                          audit.seconds_to_ns(out.command_stamp))
            if batcher.full:
                to_message(batcher.take())
        end = clock()
        supervisor += middle - start
        auditing += end - middle
        if out.arm is not None:
            q = out.arm
    return supervisor / cycles, auditing / cycles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cycles', type=int, default=5000)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--period', type=float, default=0.002, help='cycle period (500 Hz)')
    parser.add_argument('--out', help='also write the figures to this file')
    args = parser.parse_args(argv)
    lines = [f'# tools/bench_audit.py --cycles {args.cycles} --repeats {args.repeats} '
             f'--period {args.period}',
             f'# {platform.processor() or platform.machine()}, Python '
             f'{platform.python_version()}; median of {args.repeats} runs; '
             'a shared 2-core machine',
             f'# batch: {max(1, round(AUDIT_BATCH_S / args.period))} cycles per '
             'safety/audit message',
             '# CPU time per cycle (process_time): the supervisor (joint state, command, '
             'cycle) and the audit work added to it',
             'target stream          supervisor       audit  audit/supervisor  audit/period '
             f'({1e3 * args.period:.0f} ms)']
    for label, beyond in (('inside the limits', False), ('clamped (beyond J1)', True)):
        runs = [run(args.cycles, args.period, beyond) for _ in range(args.repeats)]
        a = statistics.median(r[0] for r in runs)
        b = statistics.median(r[1] for r in runs)
        lines.append(f'{label:<22} {1e6 * a:10.1f} us {1e6 * b:9.1f} us {100 * b / a:8.2f} %'
                     f'  {100 * b / args.period:6.2f} %')
    text = '\n'.join(lines) + '\n'
    sys.stdout.write(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
