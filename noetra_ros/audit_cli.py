"""`noetra audit <file.mcap | bag dir>`: print the audit trail of a recorded run and its summary.

Reads the `safety/audit` topic (core/audit.py: diagnostic_msgs/DiagnosticArray batches) of a
rosbag2 MCAP recording with `mcap` + `mcap-ros2-support` (the schema in the file is enough: our
package is not needed to read it), and the `noetra_episode` metadata record when the recording
has one. A bag directory holds one .mcap (the recording layout, docs/RECORDING.md). ROS-free:
runs where only the recording is.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
from typing import Iterator, TextIO

from noetra_ros.core.audit import (AUDIT_TOPIC, AuditFormatError, AuditRecord, AuditSummary,
                                   decode_entry, summarize)
from noetra_ros.core.errors import InputError
from noetra_ros.core.recording import EPISODE_METADATA_NAME
from noetra_ros.core.input_trace import (decode_input_entry, INPUTS_TOPIC, InputTrace,
                                         TracedCycle)
from noetra_ros.core.stats import percentiles



def mcap_file(path: str | Path) -> Path:
    """The .mcap of `path` (a file, or a bag directory holding exactly one)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob('*.mcap'))
        if len(found) != 1:
            raise InputError(f'{path}: a bag directory must hold exactly one .mcap file, '
                             f'found {len(found)}')
        return found[0]
    if not path.is_file():
        raise InputError(f'{path}: no such file or bag directory')
    return path


def read_trail(path: str | Path, inputs: InputTrace | None = None
               ) -> tuple[list[AuditRecord], dict[str, str]]:
    """The audit records of a recording (time order) and its episode metadata ({} without);
    with `inputs`, policy_node's input trace (policy/inputs) is read into it too. Raises
    InputError naming the file and the problem (not MCAP, truncated, no audit topic, an entry
    that cannot be read)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    file = mcap_file(path)
    records: list[AuditRecord] = []
    metadata: dict[str, str] = {}
    topics = [AUDIT_TOPIC, '/' + AUDIT_TOPIC]
    if inputs is not None:
        topics += [INPUTS_TOPIC, '/' + INPUTS_TOPIC]
    try:
        with file.open('rb') as handle:
            reader = make_reader(handle, decoder_factories=[DecoderFactory()])
            for index, (_, channel, _, msg) in enumerate(
                    reader.iter_decoded_messages(topics=topics)):
                for status in msg.status:
                    where = f'{file} topic {channel.topic} message {index}'
                    values = {kv.key: kv.value for kv in status.values}
                    if channel.topic.lstrip('/') == INPUTS_TOPIC:
                        assert inputs is not None
                        inputs.add(decode_input_entry(status.name, values, where))
                    else:
                        records += decode_entry(status.name, values, where)
            handle.seek(0)
            for record in make_reader(handle).iter_metadata():
                if record.name == EPISODE_METADATA_NAME:
                    metadata = dict(record.metadata)
    except AuditFormatError as exc:
        raise InputError(str(exc)) from None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - mcap raises many kinds on a damaged file
        raise InputError(f'{file}: cannot read as MCAP ({type(exc).__name__}: {exc}); '
                         'truncated or not an MCAP recording?') from None
    if not records:
        raise InputError(f'{file}: no {AUDIT_TOPIC} messages (was the safety node recorded?)')
    records.sort(key=lambda r: r.stamp_ns)
    return records, metadata


def _seconds(stamp_ns: int, origin_ns: int) -> str:
    return f'{(stamp_ns - origin_ns) * 1e-9:9.3f}'


def trail_lines(records: list[AuditRecord], every_cycle: bool,
                traced: dict[int, TracedCycle] | None = None) -> Iterator[str]:
    """The trail, one line per operator action and rejection and (unless `every_cycle`) one
    per run of cycles with the same decision and reason. `traced` (by id of the cycle record):
    what a policy command was computed from, shown on per-cycle lines."""
    origin = records[0].stamp_ns
    traced = traced or {}
    run: list[AuditRecord] = []

    def flush() -> Iterator[str]:
        if run:
            first, last = run[0], run[-1]
            what = f'{first.decision}' + (f' ({first.reason})' if first.reason else '')
            span = '' if len(run) == 1 else f' .. {_seconds(last.stamp_ns, origin).strip()} s'
            yield (f'{_seconds(first.stamp_ns, origin)} s  cycle     {what}: {len(run)} '
                   f'cycle(s){span}, source {first.source or "unknown"}')
            run.clear()

    for rec in records:
        if rec.kind == 'cycle' and not every_cycle:
            if run and (run[-1].decision, run[-1].reason, run[-1].source) != (
                    rec.decision, rec.reason, rec.source):
                yield from flush()
            run.append(rec)
            continue
        yield from flush()
        t = _seconds(rec.stamp_ns, origin)
        if rec.kind == 'operator':
            yield (f'{t} s  operator  {rec.action} via {rec.via}: {rec.decision} '
                   f'({rec.reason}); state {rec.state}')
        elif rec.kind == 'rejected':
            yield f'{t} s  rejected  {rec.via}: {rec.reason}'
        else:
            command = '-' if rec.command_stamp_ns is None else f'{rec.command_stamp_ns} ns'
            yield (f'{t} s  cycle     {rec.decision}' + (f' ({rec.reason})' if rec.reason
                                                          else '')
                   + f'; command stamp {command}; source {rec.source or "unknown"}'
                   + _inputs_text(traced.get(id(rec))))
    yield from flush()


def _inputs_text(trace: TracedCycle | None) -> str:
    """'; computed from ...' for a cycle whose policy command was traced, else ''."""
    if trace is None or trace.command is None or not trace.chunks:
        return ''
    newest = trace.chunks[-1]
    stamps = ', '.join(f'{name} {stamp}' for name, stamp in sorted(newest.input_stamps_ns.items()))
    return (f'; computed from {len(trace.chunks)} chunk(s), newest observation '
            f'{newest.observation_ns} ns ({stamps}), input age '
            f'{1e-6 * (trace.input_age_ns or 0):.1f} ms')


def input_lines(traced: list[TracedCycle]) -> Iterator[str]:
    """How many commanded cycles were traced to their inputs, and how old those inputs were."""
    followed = [t for t in traced if t.cycle.kind == 'cycle' and t.cycle.command_stamp_ns]
    with_inputs = [t for t in followed if t.chunks]
    if not followed:
        return
    yield (f'inputs: {len(with_inputs)} of {len(followed)} cycles that followed a command '
           'traced to the stamps of the inputs their command was computed from (policy/inputs)')
    ages = [1e-6 * t.input_age_ns for t in with_inputs if t.input_age_ns is not None]
    if ages:
        p = percentiles(ages)
        yield (f'  input age at the supervisor (cycle time - newest observation): p50 '
               f'{p["p50"]:.1f} ms, p90 {p["p90"]:.1f} ms, p99 {p["p99"]:.1f} ms, max '
               f'{max(ages):.1f} ms')


def summary_lines(summary: AuditSummary, origin_ns: int) -> Iterator[str]:
    """Passes vs clamps vs holds, interventions per minute by reason, operator actions."""
    d = summary.decisions
    yield (f'{summary.cycles} commanded cycles over {summary.duration_s:.1f} s: '
           f'{d.get("passed", 0)} passed, {d.get("clamped", 0)} clamped, '
           f'{d.get("held", 0)} held; {d.get("rejected", 0)} commands rejected')
    for source in summary.sources:
        yield f'source: {source}'
    table = summary.per_minute()
    if table:
        yield 'interventions by reason (a run of cycles with one reason counts once):'
        for (decision, reason), (count, cycles, rate) in table.items():
            yield (f'  {decision:<9} {reason or "-":<48} {count:5d} x {rate:8.2f}/min '
                   f'({cycles} cycles)')
    else:
        yield 'no interventions'
    if summary.operator_actions:
        yield 'operator actions:'
        for rec in summary.operator_actions:
            yield (f'  {_seconds(rec.stamp_ns, origin_ns)} s  {rec.action:<11} via {rec.via}: '
                   f'{rec.decision} ({rec.reason})')
    else:
        yield 'no operator actions'


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `audit` subcommand of `noetra`."""
    p = sub.add_parser('audit', help='print the audit trail and summary of a recording')
    p.add_argument('recording', help='a rosbag2 .mcap file or a bag directory')
    p.add_argument('--summary-only', action='store_true', help='no trail, only the summary')
    p.add_argument('--every-cycle', action='store_true',
                   help='one trail line per cycle (default: one per run of equal cycles)')


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`noetra audit` (to stdout unless `out`); InputError goes to the caller (noetra prints
    it, exit 2)."""
    out = sys.stdout if out is None else out
    inputs = InputTrace()
    records, metadata = read_trail(args.recording, inputs)
    traced = inputs.join(records)
    if metadata:
        print('episode: ' + ', '.join(f'{k}={v}' for k, v in metadata.items()), file=out)
    if not args.summary_only:
        for line in trail_lines(records, args.every_cycle,
                                {id(t.cycle): t for t in traced}):
            print(line, file=out)
        print(file=out)
    for line in summary_lines(summarize(records), records[0].stamp_ns):
        print(line, file=out)
    for line in input_lines(traced):
        print(line, file=out)
    return 0
