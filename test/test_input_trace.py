"""core/input_trace.py: policy/inputs records, their encoding, and the join to audit cycles."""
import pytest

from noetra_ros.core.audit import AuditFormatError, AuditRecord
from noetra_ros.core.input_trace import (ChunkInputs, CommandInputs, decode_input_entry,
                                         InputTrace, InputTraceBatcher, JOIN_TOLERANCE_NS)
from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig

MS = 1_000_000


def _roundtrip(batcher):
    records = []
    for entry in batcher.take():
        records += decode_input_entry(entry.name, dict(entry.values), 'test')
    return records


def test_chunks_and_commands_round_trip_through_their_entries():
    batcher = InputTraceBatcher()
    batcher.chunk(0.05, {'joints': 0.05, 'wrist_camera': 0.05, 'workspace_camera': 0.0})
    batcher.chunk(0.15, {'joints': 0.15, 'wrist_camera': 0.15, 'workspace_camera': 0.1})
    batcher.command(0.1, (0.05, 0.05))
    batcher.command(0.2, (0.05, 0.15))
    batcher.command(0.25, None)
    assert batcher.pending
    records = _roundtrip(batcher)
    assert not batcher.pending
    assert records[:2] == [
        ChunkInputs(50 * MS, {'joints': 50 * MS, 'workspace_camera': 0,
                              'wrist_camera': 50 * MS}),
        ChunkInputs(150 * MS, {'joints': 150 * MS, 'workspace_camera': 100 * MS,
                               'wrist_camera': 150 * MS})]
    assert records[2:] == [CommandInputs(100 * MS, 50 * MS, 50 * MS),
                           CommandInputs(200 * MS, 50 * MS, 150 * MS),
                           CommandInputs(250 * MS, None, None)]


def test_a_model_change_keeps_each_entry_rectangular():
    batcher = InputTraceBatcher()
    batcher.chunk(0.05, {'joints': 0.05, 'cam_a': 0.05})
    batcher.chunk(0.10, {'joints': 0.10, 'cam_b': 0.10})
    records = _roundtrip(batcher)
    assert [sorted(r.input_stamps_ns) for r in records] == [['cam_a', 'joints'],
                                                           ['cam_b', 'joints']]


@pytest.mark.parametrize('values, problem', [
    ({'stamp_ns': '1 2', 'oldest_observation_ns': '1', 'newest_observation_ns': '1 2'},
     'unequal length'),
    ({'stamp_ns': 'x', 'oldest_observation_ns': '-', 'newest_observation_ns': '-'},
     'not an integer'),
    ({'stamp_ns': '1'}, "lacks key 'oldest_observation_ns'"),
])
def test_malformed_entries_are_refused_naming_where(values, problem):
    with pytest.raises(AuditFormatError, match=problem) as info:
        decode_input_entry('inputs/commands', values, 'file.mcap message 3')
    assert 'file.mcap message 3' in str(info.value)
    with pytest.raises(AuditFormatError, match='unknown entry name'):
        decode_input_entry('inputs/other', values, 'here')


def _cycle(stamp_ms, command_ms):
    return AuditRecord(stamp_ms * MS, 'cycle', 'passed',
                       command_stamp_ns=None if command_ms is None else command_ms * MS)


def test_a_cycle_joins_the_latest_command_at_or_before_its_command_stamp():
    trace = InputTrace()
    trace.add([ChunkInputs(0, {'joints': 0}), ChunkInputs(100 * MS, {'joints': 100 * MS}),
               ChunkInputs(200 * MS, {'joints': 200 * MS})])
    trace.add([CommandInputs(150 * MS, 0, 100 * MS), CommandInputs(100 * MS, 0, 0),
               CommandInputs(250 * MS, 200 * MS, 200 * MS)])  # out of order on purpose
    cycles = [_cycle(120, 100), _cycle(170, 160), _cycle(260, 250), _cycle(300, None),
              _cycle(90, 90)]
    traced = trace.join(cycles)
    # 100 ms: its own command (chunk 0); 160 ms: received after publication at 150 ms.
    assert traced[0].command == CommandInputs(100 * MS, 0, 0)
    assert [c.observation_ns for c in traced[0].chunks] == [0]
    assert traced[0].input_age_ns == 120 * MS
    assert [c.observation_ns for c in traced[1].chunks] == [0, 100 * MS]
    assert traced[1].input_age_ns == 70 * MS
    assert [c.observation_ns for c in traced[2].chunks] == [200 * MS]
    assert traced[3].command is None and traced[3].input_age_ns is None  # followed nothing
    assert traced[4].command is None  # no command published that early


def test_a_command_stamped_within_the_tolerance_after_the_cycle_still_joins():
    trace = InputTrace()
    trace.add([ChunkInputs(0, {'joints': 0}), CommandInputs(100 * MS + JOIN_TOLERANCE_NS // 2,
                                                            0, 0)])
    assert trace.join([_cycle(100, 100)])[0].command is not None


def test_observation_span_names_every_chunk_that_can_shape_the_action():
    queue = ActionQueue(BlendConfig(strategy='ensemble', blend_window_s=0.1))
    rows = [[0.0]] * 10
    assert queue.observation_span(0.0) is None
    queue.add(rows, stamp=0.0, step_period_s=0.05, now=0.0)      # ends 0.45 s
    queue.add(rows, stamp=0.3, step_period_s=0.05, now=0.32)     # ends 0.75 s
    assert queue.observation_span(0.1) == (0.0, 0.0)
    assert queue.observation_span(0.31) == (0.0, 0.0)    # the second has not arrived yet
    assert queue.observation_span(0.4) == (0.0, 0.3)
    assert queue.observation_span(0.52) == (0.0, 0.3)    # fading out within the window
    assert queue.observation_span(0.6) == (0.3, 0.3)
