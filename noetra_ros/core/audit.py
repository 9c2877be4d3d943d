"""The audit trail of the safety node, without ROS: records, their encoding, and the summary.

Every supervisor cycle that sends the arm a target is one *cycle record*: when (the cycle's
time, ns), what the supervisor decided and why, the stamp of the command it followed and the
command source in force. Operator actions (arm, hold, e-stop, reset; services and the e-stop
topic) and commands refused whole are records of their own.

Decisions of a cycle (`cycle_decision`):
  passed    ARMED, following a command, no limit acted;
  clamped   ARMED, following a command, and these limits acted (reason: their counter names,
            comma-separated, e.g. `clamped_position,braking_to_limit`);
  held      not following a command: HOLDING / FAULT / ESTOP (reason: the supervisor's), or
            ARMED without a command yet (reason `armed, no command`).
A command refused whole (intake: non-finite, wrong names, stale stamp...) is `rejected` with the
supervisor's reason; operator actions are `accepted` or `refused` with the answer given.

Transport (safety_node publishes it on `safety/audit`): diagnostic_msgs/DiagnosticArray, so any
ROS 2 install, rosbags and Foxglove read it without our message package. One message carries a
batch of records, one DiagnosticStatus per entry:
  name `audit/cycles`     a batch of cycle records, column by column (space-separated values,
                          one per cycle, in the keys of CYCLE_COLUMNS); reasons are indices into
                          the `reasons` key (`|`-separated), so a batch of 50 cycles costs a few
                          strings, not 50 statuses; the source in force (`source`, and for a
                          policy `model_sha256`, `contract`, `contract_version`, `model_file`);
  name `audit/operator`   one operator action (keys of OPERATOR_KEYS);
  name `audit/rejected`   one command refused whole (keys of REJECTED_KEYS).
The batching keeps the per-cycle cost at appending one tuple (figures: docs/results/
bench_audit.txt); the node flushes every `batch_cycles` cycles and at once on an operator action
or a change of source, so a record is never more than a batch late.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

AUDIT_TOPIC = 'safety/audit'
# policy_node's provenance (latched): model file sha256, contract name / version, file name.
PROVENANCE_TOPIC = 'policy/provenance'

PASSED, CLAMPED, HELD, REJECTED = 'passed', 'clamped', 'held', 'rejected'
CYCLE_DECISIONS = (PASSED, CLAMPED, HELD)
ACCEPTED, REFUSED = 'accepted', 'refused'
OPERATOR_ACTIONS = ('arm', 'hold', 'estop', 'reset_estop')
NO_COMMAND = 'armed, no command'

CYCLES_ENTRY, OPERATOR_ENTRY, REJECTED_ENTRY = 'audit/cycles', 'audit/operator', 'audit/rejected'
CYCLE_COLUMNS = ('stamp_ns', 'decision', 'reason_index', 'command_stamp_ns')
OPERATOR_KEYS = ('stamp_ns', 'action', 'via', 'decision', 'reason', 'state')
REJECTED_KEYS = ('stamp_ns', 'input', 'reason')
PROVENANCE_KEYS = ('source', 'model_sha256', 'contract', 'contract_version', 'model_file')
# Written in place of a value a cycle has not (no command followed).
NONE = '-'
# DiagnosticStatus levels (diagnostic_msgs: OK 0, WARN 1, ERROR 2), as bytes-free ints.
LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = 0, 1, 2


class AuditFormatError(ValueError):
    """An audit entry that cannot be read; the message names the entry and the problem."""


@dataclass(frozen=True)
class AuditRecord:
    """One line of the trail.

    kind 'cycle' (decision passed / clamped / held), 'rejected' (a command refused whole) or
    'operator' (action arm / hold / estop / reset_estop, decision accepted / refused, `via`
    the service or topic). `source` is the command source in force ('' unknown), with the
    model's sha256 and contract for a policy. `command_stamp_ns` is the stamp of the command
    the cycle followed (None: none followed)."""

    stamp_ns: int
    kind: str
    decision: str
    reason: str = ''
    action: str = ''
    via: str = ''
    state: str = ''
    command_stamp_ns: int | None = None
    source: str = ''
    model_sha256: str = ''
    contract: str = ''


def cycle_decision(armed: bool, state_reason: str, following: bool,
                   interventions: Iterable[str]) -> tuple[str, str]:
    """(decision, reason) of one supervisor cycle: see the module docstring."""
    if not armed:
        return HELD, state_reason
    if not following:
        return HELD, NO_COMMAND
    acted = sorted(interventions)
    if acted:
        return CLAMPED, ','.join(acted)
    return PASSED, ''


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def model_provenance(model_file: str | os.PathLike[str], contract_name: str,
                     contract_version: int | str,
                     graph_files: Mapping[str, str | os.PathLike[str]] | None = None
                     ) -> dict[str, str]:
    """What policy_node announces on PROVENANCE_TOPIC: the model's sha256, its file name and
    the contract's name and version. One ONNX file: the sha256 of its bytes. A model made of
    several graphs (`model_file` is its contract file, `graph_files` {graph name: path}): the
    sha256 of the lines `<name> <sha256 of the file>` for the contract file (name `contract`)
    and every graph in name order, so a changed weight file changes the model's sha256."""
    path = Path(model_file)
    sha = _file_sha256(path)
    if graph_files:
        parts = [f'contract {sha}'] + [f'{name} {_file_sha256(Path(graph_files[name]))}'
                                       for name in sorted(graph_files)]
        sha = hashlib.sha256('\n'.join(parts).encode()).hexdigest()
    return {'source': 'policy', 'model_sha256': sha, 'model_file': path.name,
            'contract': str(contract_name), 'contract_version': str(contract_version)}


def seconds_to_ns(seconds: float | None) -> int | None:
    """A time in seconds (the supervisor's clock) as integer nanoseconds."""
    return None if seconds is None else int(round(seconds * 1e9))


# ---------------------------------------------------------------------------- producing
@dataclass
class AuditEntry:
    """One DiagnosticStatus of a `safety/audit` message, ROS-free."""

    name: str
    level: int
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


class AuditBatcher:
    """Collects records as the node makes them and hands them out as entries in batches.

    `cycle` is the hot path (every supervisor cycle): it appends one tuple; `full` says when
    `batch_cycles` have gathered. `operator` / `rejected` / `set_source` ask for a flush at
    once (they return True), so an operator action is published within the callback that
    handled it, after the cycles that came before it."""

    def __init__(self, batch_cycles: int) -> None:
        if not isinstance(batch_cycles, int) or batch_cycles < 1:
            raise ValueError(f'batch_cycles={batch_cycles!r} must be an integer >= 1')
        self.batch_cycles = batch_cycles
        self._cycles: list[tuple[int, str, str, int | None]] = []
        self._events: list[AuditEntry] = []
        self._source: dict[str, str] = {'source': ''}

    @property
    def full(self) -> bool:
        """True once a whole batch of cycles is waiting."""
        return len(self._cycles) >= self.batch_cycles

    @property
    def pending(self) -> bool:
        """True when anything waits to be published."""
        return bool(self._cycles or self._events)

    @property
    def source(self) -> dict[str, str]:
        """The command source in force (PROVENANCE_KEYS that are known)."""
        return dict(self._source)

    def cycle(self, stamp_ns: int, decision: str, reason: str,
              command_stamp_ns: int | None) -> None:
        """One supervisor cycle that sent the arm a target."""
        self._cycles.append((stamp_ns, decision, reason, command_stamp_ns))

    def set_source(self, provenance: Mapping[str, str]) -> bool:
        """A new command source (PROVENANCE_KEYS; others are ignored). True when it changed:
        the cycles so far belong to the old one, so flush them first."""
        new = {k: str(provenance[k]) for k in PROVENANCE_KEYS if provenance.get(k)}
        new.setdefault('source', '')
        if new == self._source:
            return False
        self._cycles_to_event()
        self._source = new
        return True

    def operator(self, stamp_ns: int, action: str, via: str, accepted: bool, reason: str,
                 state: str) -> bool:
        """An operator action and its answer; always asks for a flush (returns True)."""
        if action not in OPERATOR_ACTIONS:
            raise ValueError(f'action={action!r} must be one of {OPERATOR_ACTIONS}')
        self._cycles_to_event()
        decision = ACCEPTED if accepted else REFUSED
        values = dict(stamp_ns=str(stamp_ns), action=action, via=via, decision=decision,
                      reason=reason, state=state)
        self._events.append(AuditEntry(
            OPERATOR_ENTRY, LEVEL_ERROR if action == 'estop' else LEVEL_WARN,
            f'{action} via {via}: {decision} ({reason})', [(k, values[k]) for k in OPERATOR_KEYS]))
        return True

    def rejected(self, stamp_ns: int, input_name: str, reason: str) -> bool:
        """A command refused whole; asks for a flush (returns True)."""
        self._cycles_to_event()
        values = dict(stamp_ns=str(stamp_ns), input=input_name, reason=reason)
        self._events.append(AuditEntry(REJECTED_ENTRY, LEVEL_ERROR,
                                       f'{input_name} rejected: {reason}',
                                       [(k, values[k]) for k in REJECTED_KEYS]))
        return True

    def take(self) -> list[AuditEntry]:
        """Everything waiting, oldest first; the batcher is empty afterwards."""
        self._cycles_to_event()
        events, self._events = self._events, []
        return events

    def _cycles_to_event(self) -> None:
        if not self._cycles:
            return
        cycles, self._cycles = self._cycles, []
        reasons: dict[str, int] = {}
        decisions, indices = [], []
        for _, decision, reason, _ in cycles:
            decisions.append(decision)
            # '|' separates the reasons table: a reason holding one is rewritten, not lost.
            indices.append(reasons.setdefault(reason.replace('|', '/'), len(reasons)))
        columns = {
            'stamp_ns': ' '.join(str(c[0]) for c in cycles),
            'decision': ' '.join(decisions),
            'reason_index': ' '.join(map(str, indices)),
            'command_stamp_ns': ' '.join(NONE if c[3] is None else str(c[3]) for c in cycles),
        }
        counts = Counter(decisions)
        level = LEVEL_OK if counts.keys() <= {PASSED} else LEVEL_WARN
        message = ', '.join(f'{counts[d]} {d}' for d in CYCLE_DECISIONS if counts[d])
        values = [(k, columns[k]) for k in CYCLE_COLUMNS]
        values.append(('reasons', '|'.join(reasons)))
        values += [(k, self._source[k]) for k in PROVENANCE_KEYS if k in self._source]
        self._events.append(AuditEntry(CYCLES_ENTRY, level, message, values))


# ---------------------------------------------------------------------------- reading
def decode_entry(name: str, values: Mapping[str, str], where: str = 'audit entry'
                 ) -> list[AuditRecord]:
    """The records of one entry (a DiagnosticStatus' name and key/values). `where` names the
    entry in errors (file, topic, message index). Raises AuditFormatError."""
    try:
        if name == CYCLES_ENTRY:
            return _decode_cycles(values, where)
        if name == OPERATOR_ENTRY:
            action = values['action']
            if action not in OPERATOR_ACTIONS:
                raise AuditFormatError(f'{where}: unknown operator action {action!r}')
            return [AuditRecord(int(values['stamp_ns']), 'operator', values['decision'],
                                values.get('reason', ''), action=action,
                                via=values.get('via', ''), state=values.get('state', ''))]
        if name == REJECTED_ENTRY:
            return [AuditRecord(int(values['stamp_ns']), 'rejected', REJECTED,
                                values.get('reason', ''), via=values.get('input', ''))]
    except KeyError as exc:
        raise AuditFormatError(f'{where}: entry {name!r} lacks key {exc.args[0]!r}') from None
    except ValueError as exc:
        if isinstance(exc, AuditFormatError):
            raise
        raise AuditFormatError(f'{where}: entry {name!r}: {exc}') from None
    raise AuditFormatError(f'{where}: unknown entry name {name!r} (expected {CYCLES_ENTRY}, '
                           f'{OPERATOR_ENTRY} or {REJECTED_ENTRY})')


def _decode_cycles(values: Mapping[str, str], where: str) -> list[AuditRecord]:
    columns = {k: values[k].split() for k in CYCLE_COLUMNS}
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise AuditFormatError(f'{where}: cycle columns differ in length {lengths}')
    reasons = values['reasons'].split('|')
    source = values.get('source', '')
    sha, contract = values.get('model_sha256', ''), values.get('contract', '')
    records = []
    for stamp, decision, index, command in zip(*(columns[k] for k in CYCLE_COLUMNS)):
        if decision not in CYCLE_DECISIONS:
            raise AuditFormatError(f'{where}: unknown cycle decision {decision!r}')
        i = int(index)
        if not 0 <= i < len(reasons):
            raise AuditFormatError(f'{where}: reason index {i} outside the {len(reasons)} '
                                   'reasons of the entry')
        records.append(AuditRecord(int(stamp), 'cycle', decision, reasons[i],
                                   command_stamp_ns=None if command == NONE else int(command),
                                   source=source, model_sha256=sha, contract=contract))
    return records


# ---------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class Intervention:
    """A run of consecutive cycles with the same non-passing decision and reason (one limit
    acting for a while, one hold), or one rejected command."""

    start_ns: int
    end_ns: int
    decision: str
    reason: str
    cycles: int


@dataclass(frozen=True)
class AuditSummary:
    """What `noetra audit` reports about a trail."""

    cycles: int
    decisions: dict[str, int]             # cycles per decision
    duration_s: float                     # first to last record
    interventions: list[Intervention]
    operator_actions: list[AuditRecord]
    sources: list[str]                    # every source seen (with model sha256 / contract)

    def per_minute(self) -> dict[tuple[str, str], tuple[int, int, float]]:
        """(decision, reason) -> (interventions, cycles, interventions per minute); a clamp
        by several limits counts once under each limit."""
        table: dict[tuple[str, str], list[int]] = {}
        for item in self.interventions:
            reasons = item.reason.split(',') if item.decision == CLAMPED else [item.reason]
            for reason in reasons:
                row = table.setdefault((item.decision, reason), [0, 0])
                row[0] += 1
                row[1] += item.cycles
        minutes = self.duration_s / 60.0
        return {key: (n, c, n / minutes if minutes > 0 else float('nan'))
                for key, (n, c) in sorted(table.items())}


def summarize(records: Sequence[AuditRecord]) -> AuditSummary:
    """Counts, interventions (runs of held / clamped cycles with one reason, and rejections),
    operator actions and sources of a trail (records in time order)."""
    decisions: Counter[str] = Counter()
    interventions: list[Intervention] = []
    run: list[int | str] | None = None  # [start, end, decision, reason, cycles]
    sources: list[str] = []

    def close() -> None:
        if run is not None:
            interventions.append(Intervention(int(run[0]), int(run[1]), str(run[2]),
                                              str(run[3]), int(run[4])))

    for rec in records:
        if rec.kind == 'cycle':
            decisions[rec.decision] += 1
            label = rec.source + (f' (model sha256 {rec.model_sha256}, contract {rec.contract})'
                                  if rec.model_sha256 else '')
            if label and label not in sources:
                sources.append(label)
            if rec.decision == PASSED:
                close()
                run = None
            elif run is not None and run[2] == rec.decision and run[3] == rec.reason:
                run[1] = rec.stamp_ns
                run[4] = int(run[4]) + 1
            else:
                close()
                run = [rec.stamp_ns, rec.stamp_ns, rec.decision, rec.reason, 1]
        elif rec.kind == 'rejected':
            decisions[REJECTED] += 1
            interventions.append(Intervention(rec.stamp_ns, rec.stamp_ns, REJECTED,
                                              rec.reason, 0))
    close()
    stamps = [r.stamp_ns for r in records]
    duration = (max(stamps) - min(stamps)) * 1e-9 if stamps else 0.0
    return AuditSummary(cycles=sum(decisions[d] for d in CYCLE_DECISIONS),
                        decisions=dict(decisions), duration_s=duration,
                        interventions=interventions,
                        operator_actions=[r for r in records if r.kind == 'operator'],
                        sources=sources)
