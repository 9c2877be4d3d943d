"""What each policy command was computed from: policy_node's half of the audit trail.

The safety node's trail (core/audit.py) says what the supervisor did with each command and the
command's stamp; only the policy knows which observations a command came from. policy_node
therefore publishes, on `policy/inputs`, two kinds of record:

  chunk     one inference: the observation stamp (the joint_states it answered, the chunk's
            row-0 time) and the header stamp of every input it was built from (each camera,
            depth image, the wrench, the joint states), by input name;
  command   one published command: its stamp (the control time: the observation stamp in
            lockstep, the node clock in async / stream mode) and the (oldest, newest)
            observation stamps of the chunks that shaped it (blending mixes several).

`noetra audit` joins them to the supervisor's cycles: a cycle followed the command whose stamp
is the latest at or before the cycle's command stamp (for a JointTrajectory the stamps are
equal; a Float64MultiArray has none, so the supervisor stamps it on receipt, which is later),
and that command's observation span names the chunks and so every input stamp. The join says
how old the data that moved the robot was ("input age": cycle time - newest observation).

Transport: diagnostic_msgs/DiagnosticArray like safety/audit (readable without our package),
one DiagnosticStatus per batch, columns of space-separated integers (ns), `-` for none.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from noetra_ros.core.audit import AuditEntry, AuditFormatError, AuditRecord, LEVEL_OK, NONE

INPUTS_TOPIC = 'policy/inputs'
CHUNKS_ENTRY, COMMANDS_ENTRY = 'inputs/chunks', 'inputs/commands'
# Chunk entry: this column, then one `<input>_stamp_ns` column per input (named in `inputs`).
CHUNK_STAMP_COLUMN = 'observation_stamp_ns'
COMMAND_COLUMNS = ('stamp_ns', 'oldest_observation_ns', 'newest_observation_ns')
# The supervisor stamps a Float64MultiArray on receipt; a command a little later than its
# publication still belongs to it, one published later than the cycle never does.
JOIN_TOLERANCE_NS = 1_000_000


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1e9))


@dataclass(frozen=True)
class ChunkInputs:
    """One inference: its observation stamp and each input's header stamp (ns)."""

    observation_ns: int
    input_stamps_ns: Mapping[str, int]


@dataclass(frozen=True)
class CommandInputs:
    """One published command: its stamp and the observation span of the chunks behind it."""

    stamp_ns: int
    oldest_observation_ns: int | None
    newest_observation_ns: int | None


class InputTraceBatcher:
    """Collects chunk and command records; `take` hands them out as two entries. Not
    thread-safe: policy_node calls it under its own lock (inference and control threads)."""

    def __init__(self, batch_records: int = 50) -> None:
        self.batch_records = batch_records
        self._chunks: list[ChunkInputs] = []
        self._commands: list[CommandInputs] = []

    @property
    def full(self) -> bool:
        return len(self._chunks) + len(self._commands) >= self.batch_records

    @property
    def pending(self) -> bool:
        return bool(self._chunks or self._commands)

    def chunk(self, observation_s: float, input_stamps_s: Mapping[str, float]) -> None:
        self._chunks.append(ChunkInputs(
            _ns(observation_s) or 0, {k: _ns(v) or 0 for k, v in input_stamps_s.items()}))

    def command(self, stamp_s: float, span_s: tuple[float, float] | None) -> None:
        oldest, newest = span_s if span_s is not None else (None, None)
        self._commands.append(CommandInputs(_ns(stamp_s) or 0, _ns(oldest), _ns(newest)))

    def take(self) -> list[AuditEntry]:
        entries = []
        chunks, self._chunks = self._chunks, []
        commands, self._commands = self._commands, []
        # Input names can differ between chunks only if the contract changed (a new model):
        # one entry per set of names keeps each entry's columns rectangular.
        groups: dict[tuple[str, ...], list[ChunkInputs]] = {}
        for chunk in chunks:
            groups.setdefault(tuple(sorted(chunk.input_stamps_ns)), []).append(chunk)
        for names, group in groups.items():
            values = [('inputs', ' '.join(names)),
                      (CHUNK_STAMP_COLUMN, ' '.join(str(c.observation_ns) for c in group))]
            values += [(f'{name}_stamp_ns', ' '.join(str(c.input_stamps_ns[name]) for c in group))
                       for name in names]
            entries.append(AuditEntry(CHUNKS_ENTRY, LEVEL_OK, f'{len(group)} chunk(s)', values))
        if commands:
            def column(values: Sequence[int | None]) -> str:
                return ' '.join(NONE if v is None else str(v) for v in values)
            entries.append(AuditEntry(COMMANDS_ENTRY, LEVEL_OK, f'{len(commands)} command(s)', [
                ('stamp_ns', column([c.stamp_ns for c in commands])),
                ('oldest_observation_ns', column([c.oldest_observation_ns for c in commands])),
                ('newest_observation_ns', column([c.newest_observation_ns for c in commands]))]))
        return entries


def decode_input_entry(name: str, values: Mapping[str, str], where: str
                       ) -> list[ChunkInputs | CommandInputs]:
    """The records of one `policy/inputs` entry; AuditFormatError names `where` and why."""
    def integers(key: str) -> list[int | None]:
        if key not in values:
            raise AuditFormatError(f'{where}: entry {name!r} lacks key {key!r}')
        try:
            return [None if v == NONE else int(v) for v in values[key].split()]
        except ValueError:
            raise AuditFormatError(f'{where}: entry {name!r} key {key!r} holds a value that '
                                   'is not an integer') from None

    if name == CHUNKS_ENTRY:
        inputs = values.get('inputs', '').split()
        observations = integers(CHUNK_STAMP_COLUMN)
        columns = {i: integers(f'{i}_stamp_ns') for i in inputs}
        if any(len(c) != len(observations) for c in columns.values()) or None in observations:
            raise AuditFormatError(f'{where}: entry {name!r} has columns of unequal length or '
                                   'a missing observation stamp')
        return [ChunkInputs(obs or 0, {i: columns[i][k] or 0 for i in inputs})
                for k, obs in enumerate(observations)]
    if name == COMMANDS_ENTRY:
        stamps, oldest, newest = (integers(k) for k in COMMAND_COLUMNS)
        if not len(stamps) == len(oldest) == len(newest) or None in stamps:
            raise AuditFormatError(f'{where}: entry {name!r} has columns of unequal length or '
                                   'a missing command stamp')
        return [CommandInputs(s or 0, o, n) for s, o, n in zip(stamps, oldest, newest)]
    raise AuditFormatError(f'{where}: unknown entry name {name!r} (expected {CHUNKS_ENTRY} or '
                           f'{COMMANDS_ENTRY})')


@dataclass(frozen=True)
class TracedCycle:
    """A supervisor cycle with the policy command it followed and that command's inputs."""

    cycle: AuditRecord
    command: CommandInputs | None
    chunks: tuple[ChunkInputs, ...] = ()

    @property
    def input_age_ns(self) -> int | None:
        """Cycle time - the newest observation behind its command (None: not traced)."""
        if self.command is None or self.command.newest_observation_ns is None:
            return None
        return self.cycle.stamp_ns - self.command.newest_observation_ns


@dataclass
class InputTrace:
    """Every chunk and command record of a recording, ready for joining (time order)."""

    chunks: list[ChunkInputs] = field(default_factory=list)
    commands: list[CommandInputs] = field(default_factory=list)

    def add(self, records: Sequence[ChunkInputs | CommandInputs]) -> None:
        for record in records:
            if isinstance(record, ChunkInputs):
                self.chunks.append(record)
            else:
                self.commands.append(record)

    def join(self, cycles: Sequence[AuditRecord]) -> list[TracedCycle]:
        """Each cycle record with the command it followed and the chunks behind it."""
        self.commands.sort(key=lambda c: c.stamp_ns)
        self.chunks.sort(key=lambda c: c.observation_ns)
        command_stamps = [c.stamp_ns for c in self.commands]
        chunk_stamps = [c.observation_ns for c in self.chunks]
        traced = []
        for cycle in cycles:
            if cycle.kind != 'cycle' or cycle.command_stamp_ns is None:
                traced.append(TracedCycle(cycle, None))
                continue
            i = bisect.bisect_right(command_stamps, cycle.command_stamp_ns + JOIN_TOLERANCE_NS)
            command = self.commands[i - 1] if i else None
            chunks: tuple[ChunkInputs, ...] = ()
            if command is not None and command.oldest_observation_ns is not None:
                lo = bisect.bisect_left(chunk_stamps, command.oldest_observation_ns)
                hi = bisect.bisect_right(chunk_stamps, command.newest_observation_ns or 0)
                chunks = tuple(self.chunks[lo:hi])
            traced.append(TracedCycle(cycle, command, chunks))
        return traced
