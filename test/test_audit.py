"""The audit trail without ROS: what the supervisor reports per cycle, the records and their
encoding, the summary, and `noetra audit` on MCAP files written here (core/audit.py,
audit_cli.py). The live trail of a running safety node: test_audit_live.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noetra_ros import audit_cli
from noetra_ros.core import audit
from noetra_ros.core.errors import InputError
from noetra_ros.core.safety import (ArmPositions, MeasuredJoints, SafetyCell,
                                    SafetyNodeSettings, SafetyState)

ROBOT = 'fanuc_lrmate200id'
PERIOD_S = 0.05
START_S = 100.0  # a clock reading (a stamp of 0 means 'not stamped')
AUDIT_SCHEMA = 'diagnostic_msgs/msg/DiagnosticArray'


# ---------------------------------------------------------------------------- bag helper
def write_audit_bag(bag_dir: Path, messages: list[tuple[int, bytes]],
                    episode: dict[str, str] | None = None) -> Path:
    """A recording in the shared layout (<bag_dir>/<bag_dir name>.mcap, profile ros2, ros2msg
    schema, cdr, zstd chunks, the noetra_episode metadata record) holding `messages`:
    (log_time_ns, CDR bytes of a DiagnosticArray) on /safety/audit. The schema text comes from
    rosbags' type store, as a recorder without our package would write it."""
    from mcap.writer import CompressionType, Writer
    from rosbags.typesys import get_typestore, Stores

    text, _ = get_typestore(Stores.ROS2_JAZZY).generate_msgdef(AUDIT_SCHEMA, ros_version=2)
    bag_dir.mkdir(parents=True, exist_ok=True)
    path = bag_dir / f'{bag_dir.name}.mcap'
    with path.open('wb') as handle:
        writer = Writer(handle, compression=CompressionType.ZSTD)
        writer.start(profile='ros2', library='noetra_ros test_audit')
        schema = writer.register_schema(AUDIT_SCHEMA, 'ros2msg', text.encode())
        channel = writer.register_channel('/safety/audit', 'cdr', schema)
        for seq, (log_time, data) in enumerate(messages):
            writer.add_message(channel, log_time=log_time, data=bytes(data),
                               publish_time=log_time, sequence=seq)
        if episode is not None:
            writer.add_metadata('noetra_episode', episode)
        writer.finish()
    return path


def entries_to_cdr(entries: list[audit.AuditEntry], stamp_ns: int) -> bytes:
    """A DiagnosticArray of `entries` serialized with rosbags (no rclpy: this file runs without
    DDS), exactly the fields safety_node fills."""
    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    Header, Time = types['std_msgs/msg/Header'], types['builtin_interfaces/msg/Time']
    Status, KeyValue = types['diagnostic_msgs/msg/DiagnosticStatus'], \
        types['diagnostic_msgs/msg/KeyValue']
    array = types[AUDIT_SCHEMA](
        header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                      frame_id=''),
        status=[Status(level=e.level, name=e.name, message=e.message, hardware_id=ROBOT,
                       values=[KeyValue(key=k, value=v) for k, v in e.values])
                for e in entries])
    return bytes(store.serialize_cdr(array, AUDIT_SCHEMA))


# ---------------------------------------------------------------------------- the supervisor
def make_cell() -> SafetyCell:
    return SafetyCell.from_settings(SafetyNodeSettings(robot=ROBOT, profile='industrial',
                                                       period_s=PERIOD_S))


def measure(cell: SafetyCell, q: np.ndarray, t: float) -> None:
    decision = cell.on_joint_state(MeasuredJoints(list(cell.joint_names), list(q), None, t), t)
    assert decision.accepted, decision.reason


def test_a_cycle_reports_which_limit_clamped_a_target_beyond_the_joint_limit():
    cell = make_cell()
    limits = cell.supervisor.limits
    q = np.zeros(limits.count)
    t = START_S
    measure(cell, q, t)
    assert cell.arm(t).accepted
    out = cell.cycle(t)
    decision = audit.cycle_decision(out.state is SafetyState.ARMED, out.reason,
                                    out.command_stamp is not None, out.interventions)
    assert decision == ('held', audit.NO_COMMAND)  # armed, nothing to follow yet
    target = q.copy()
    target[0] = limits.upper[0] + 0.5  # beyond the URDF bound: clamped, not refused
    seen: list[tuple[str, str]] = []
    for _ in range(40):
        t += PERIOD_S
        measure(cell, q, t)
        assert cell.on_arm_command(ArmPositions(list(target[cell.to_controller])), t).accepted
        out = cell.cycle(t)
        assert out.command_stamp == pytest.approx(t)  # a Float64MultiArray's stamp: receipt
        seen.append(audit.cycle_decision(out.state is SafetyState.ARMED, out.reason,
                                         out.command_stamp is not None, out.interventions))
        q = out.arm  # a robot that follows exactly (no tracking fault)
    assert all(d == 'clamped' for d, _ in seen), seen
    assert all('clamped_position' in r.split(',') for _, r in seen)
    cell.hold(t, 'hold requested by service')
    t += PERIOD_S
    measure(cell, q, t)
    out = cell.cycle(t)
    assert out.command_stamp is None
    assert audit.cycle_decision(out.state is SafetyState.ARMED, out.reason, False,
                                out.interventions) == ('held', 'hold requested by service')


def test_a_target_inside_the_limits_passes_untouched():
    cell = make_cell()
    q = np.zeros(cell.supervisor.limits.count)
    measure(cell, q, START_S)
    assert cell.arm(START_S).accepted
    cell.cycle(START_S)
    t = START_S + PERIOD_S
    measure(cell, q, t)
    assert cell.on_arm_command(ArmPositions(list(q)), t).accepted  # stay where it is
    out = cell.cycle(t)
    assert out.interventions == frozenset()
    assert audit.cycle_decision(True, out.reason, out.command_stamp is not None,
                                out.interventions) == ('passed', '')


# ---------------------------------------------------------------------------- records
def test_batches_round_trip_through_their_encoding_in_time_order():
    batcher = audit.AuditBatcher(batch_cycles=3)
    batcher.set_source({'source': 'policy', 'model_sha256': 'ab' * 32, 'contract': 'pick',
                        'unrelated': 'dropped'})
    batcher.cycle(1_000, 'passed', '', 900)
    batcher.cycle(2_000, 'clamped', 'clamped_position,limited_velocity', 1_900)
    assert not batcher.full
    batcher.cycle(3_000, 'held', 'a|b reason', None)
    assert batcher.full
    batcher.operator(3_500, 'hold', 'safety/hold service', True, 'hold requested by service',
                     'HOLDING')
    batcher.rejected(3_600, 'safety/joint_trajectory', 'non-finite value')
    entries = batcher.take()
    assert [e.name for e in entries] == [audit.CYCLES_ENTRY, audit.OPERATOR_ENTRY,
                                         audit.REJECTED_ENTRY]
    assert not batcher.pending and batcher.take() == []
    records = [r for e in entries for r in audit.decode_entry(e.name, dict(e.values))]
    assert [(r.kind, r.decision, r.reason) for r in records] == [
        ('cycle', 'passed', ''),
        ('cycle', 'clamped', 'clamped_position,limited_velocity'),
        ('cycle', 'held', 'a/b reason'),  # '|' separates the reasons table
        ('operator', 'accepted', 'hold requested by service'),
        ('rejected', 'rejected', 'non-finite value')]
    assert [r.command_stamp_ns for r in records[:3]] == [900, 1_900, None]
    assert records[0].model_sha256 == 'ab' * 32 and records[0].contract == 'pick'
    assert records[3].action == 'hold' and records[3].state == 'HOLDING'
    assert records[4].via == 'safety/joint_trajectory'
    assert entries[0].level == audit.LEVEL_WARN and entries[1].level == audit.LEVEL_WARN


def test_a_source_change_closes_the_batch_of_the_old_source():
    batcher = audit.AuditBatcher(batch_cycles=100)
    batcher.set_source({'source': 'expert'})
    batcher.cycle(1, 'passed', '', 1)
    assert not batcher.set_source({'source': 'expert'})  # unchanged: nothing to flush
    assert batcher.set_source({'source': 'policy', 'model_sha256': 'cd' * 32})
    batcher.cycle(2, 'passed', '', 2)
    entries = batcher.take()
    sources = [audit.decode_entry(e.name, dict(e.values))[0].source for e in entries]
    assert sources == ['expert', 'policy']


@pytest.mark.parametrize('name, values, problem', [
    ('audit/cycles', {'stamp_ns': '1 2', 'decision': 'passed', 'reason_index': '0',
                      'command_stamp_ns': '-', 'reasons': ''}, 'differ in length'),
    ('audit/cycles', {'stamp_ns': '1', 'decision': 'maybe', 'reason_index': '0',
                      'command_stamp_ns': '-', 'reasons': ''}, "unknown cycle decision 'maybe'"),
    ('audit/cycles', {'stamp_ns': '1', 'decision': 'held', 'reason_index': '3',
                      'command_stamp_ns': '-', 'reasons': 'x'}, 'reason index 3'),
    ('audit/operator', {'stamp_ns': '1', 'action': 'reboot', 'decision': 'accepted'},
     "unknown operator action 'reboot'"),
    ('audit/operator', {'action': 'arm'}, "lacks key 'stamp_ns'"),
    ('audit/other', {}, "unknown entry name 'audit/other'"),
])
def test_an_unreadable_entry_is_refused_naming_where_and_why(name, values, problem):
    with pytest.raises(audit.AuditFormatError) as info:
        audit.decode_entry(name, values, 'run.mcap message 7')
    assert 'run.mcap message 7' in str(info.value) and problem in str(info.value)


def test_the_summary_counts_runs_of_interventions_per_minute_by_reason():
    minute = 60 * 10**9
    cycle = audit.AuditRecord
    records = [cycle(0, 'cycle', 'passed', source='expert'),
               cycle(1, 'cycle', 'clamped', 'braking_to_limit,clamped_position'),
               cycle(2, 'cycle', 'clamped', 'braking_to_limit,clamped_position'),
               cycle(3, 'cycle', 'passed'),
               cycle(4, 'cycle', 'clamped', 'clamped_position'),
               cycle(5, 'operator', 'accepted', 'hold requested by service', action='hold'),
               cycle(6, 'cycle', 'held', 'hold requested by service'),
               cycle(7, 'cycle', 'held', 'hold requested by service'),
               cycle(8, 'rejected', 'rejected', 'non-finite value'),
               cycle(2 * minute, 'cycle', 'held', 'estop from safety/estop topic')]
    summary = audit.summarize(records)
    assert summary.cycles == 8
    assert summary.decisions == {'passed': 2, 'clamped': 3, 'held': 3, 'rejected': 1}
    assert summary.duration_s == pytest.approx(120.0)
    assert summary.sources == ['expert']
    assert [r.action for r in summary.operator_actions] == ['hold']
    table = summary.per_minute()
    assert table[('clamped', 'clamped_position')] == (2, 3, pytest.approx(1.0))
    assert table[('clamped', 'braking_to_limit')] == (1, 2, pytest.approx(0.5))
    assert table[('held', 'hold requested by service')] == (1, 2, pytest.approx(0.5))
    assert table[('held', 'estop from safety/estop topic')][:2] == (1, 1)
    assert table[('rejected', 'non-finite value')][:2] == (1, 0)


def test_model_provenance_is_the_sha256_of_the_file_bytes(tmp_path):
    import hashlib
    model = tmp_path / 'policy.onnx'
    model.write_bytes(b'not really onnx, but bytes all the same' * 100_000)
    prov = audit.model_provenance(model, 'pick_place', 1)
    assert prov == {'source': 'policy', 'model_file': 'policy.onnx', 'contract': 'pick_place',
                    'contract_version': '1',
                    'model_sha256': hashlib.sha256(model.read_bytes()).hexdigest()}


# ---------------------------------------------------------------------------- noetra audit
def sample_bag(tmp_path: Path) -> Path:
    batcher = audit.AuditBatcher(batch_cycles=2)
    batcher.set_source({'source': 'expert'})
    messages = []
    t = 10**9
    for decision, reason in (('passed', ''), ('clamped', 'clamped_position'),
                             ('clamped', 'clamped_position'), ('held', 'hold by service')):
        batcher.cycle(t, decision, reason, t - 1000)
        t += 50_000_000
        if batcher.full:
            messages.append((t, entries_to_cdr(batcher.take(), t)))
    batcher.operator(t, 'estop', 'safety/estop topic', True, 'ESTOP latched', 'ESTOP')
    messages.append((t, entries_to_cdr(batcher.take(), t)))
    episode = {'cell': 'pick_place_lrmate', 'episode': '0', 'seed': '7', 'result': 'aborted'}
    return write_audit_bag(tmp_path / 'recording' / 'pick_place_lrmate_ep000_seed7',
                           messages, episode).parent


def test_noetra_audit_prints_the_trail_and_the_summary_of_a_bag(tmp_path, capsys):
    from noetra_ros.cli import main
    bag = sample_bag(tmp_path)
    assert main(['audit', str(bag)]) == 0
    out = capsys.readouterr().out
    assert 'episode: cell=pick_place_lrmate, episode=0, seed=7, result=aborted' in out
    assert 'cycle     clamped (clamped_position): 2 cycle(s)' in out
    assert 'operator  estop via safety/estop topic: accepted (ESTOP latched); state ESTOP' in out
    assert '4 commanded cycles over 0.2 s: 1 passed, 2 clamped, 1 held' in out
    assert 'source: expert' in out
    records, _ = audit_cli.read_trail(next(bag.glob('*.mcap')))  # the .mcap itself works too
    assert len(records) == 5


def test_noetra_audit_names_the_file_and_the_problem_of_a_bad_recording(tmp_path, capsys):
    from noetra_ros.cli import main
    bag = sample_bag(tmp_path)
    mcap = next(bag.glob('*.mcap'))
    data = mcap.read_bytes()
    truncated = tmp_path / 'truncated.mcap'
    truncated.write_bytes(data[:len(data) // 2])
    assert main(['audit', str(truncated)]) == 2
    err = capsys.readouterr().err
    assert str(truncated) in err and 'cannot read as MCAP' in err
    empty = write_audit_bag(tmp_path / 'empty', [])
    with pytest.raises(InputError, match=f'{empty}: no safety/audit messages'):
        audit_cli.read_trail(empty)
    with pytest.raises(InputError, match='exactly one .mcap file, found 0'):
        audit_cli.read_trail(tmp_path / 'recording')


def test_provenance_of_a_multi_graph_model_covers_every_graph_file(tmp_path):
    from noetra_ros.core.audit import model_provenance

    contract = tmp_path / 'policy.contract.yaml'
    contract.write_text('name: two_phase\n')
    (tmp_path / 'encoder.onnx').write_bytes(b'encoder weights')
    (tmp_path / 'expert.onnx').write_bytes(b'expert weights')
    graphs = {'encoder': tmp_path / 'encoder.onnx', 'expert': tmp_path / 'expert.onnx'}
    first = model_provenance(contract, 'two_phase', 2, graphs)
    assert first['model_file'] == 'policy.contract.yaml'
    assert first['model_sha256'] != model_provenance(contract, 'two_phase', 2)['model_sha256']
    (tmp_path / 'expert.onnx').write_bytes(b'expert weights, retrained')
    assert model_provenance(contract, 'two_phase', 2, graphs)['model_sha256'] != \
        first['model_sha256']
