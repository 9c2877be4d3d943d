"""Align messages from several topics on one header stamp.

A lockstep simulator publishes every topic of a step with the same stamp; a consumer that acts on
`joint_states` must act on the poses / status of that same step, not on whichever arrived last,
or an episode stops being reproducible. ExactStampSync collects one value per required key for
each stamp and hands back the newest complete set, dropping older incomplete ones.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence


class ExactStampSync:
    def __init__(self, required: Sequence[str], max_pending: int = 64) -> None:
        if not required:
            raise ValueError('ExactStampSync needs at least one required key')
        self.required = frozenset(required)
        self.max_pending = max_pending
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._last_complete = -1
        self.dropped = 0

    def add(self, key: str, stamp_ns: int, value: Any) -> dict[str, Any] | None:
        """Store `value`; return {key: value} for `stamp_ns` once every key has arrived."""
        if key not in self.required:
            raise KeyError(f'{key!r} is not one of {sorted(self.required)}')
        if stamp_ns <= self._last_complete:
            self.dropped += 1  # late message of a step already handled
            return None
        entry = self._pending.setdefault(stamp_ns, {})
        entry[key] = value
        if len(entry) == len(self.required):
            # Everything older than a complete step can never be acted on any more.
            for stamp in [s for s in self._pending if s <= stamp_ns]:
                if stamp != stamp_ns:
                    self.dropped += 1
                del self._pending[stamp]
            self._last_complete = stamp_ns
            return entry
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.dropped += 1
        return None

    def clear(self) -> None:
        self._pending.clear()
        self._last_complete = -1
