"""Supervisor states, the transitions between them, and the record of every intervention.

The state machine is shared by the joint supervisor and the mobile-base twist supervisor. It is
pure: time is passed in as float seconds and nothing here reads a clock.

Rules (safety.md): the supervisor starts in HOLDING, moves to ARMED only on an explicit arm
request, an e-stop latches until it is reset, and a reset never restarts motion by itself (it
leaves the supervisor in HOLDING, waiting for another explicit arm).
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

# Long enough to hold a few seconds of per-message rejections at 250 Hz for diagnostics while
# keeping memory bounded when a broken publisher floods the supervisor.
DEFAULT_EVENT_CAPACITY = 2000


class SafetyState(str, Enum):
    """What the supervisor lets through to the robot."""

    ARMED = 'ARMED'      # commands from the active source are tracked (within limits)
    HOLDING = 'HOLDING'  # controlled deceleration to a hold; waits for an explicit arm
    FAULT = 'FAULT'      # a fault was detected; hold; an explicit arm acknowledges it
    ESTOP = 'ESTOP'      # latched stop request; needs reset_estop() and then arm()


@dataclass(frozen=True)
class Decision:
    """The answer to a request or an input message: accepted or not, and why."""

    accepted: bool
    reason: str

    def __bool__(self) -> bool:
        return self.accepted


@dataclass(frozen=True)
class SafetyEvent:
    """One entry of the diagnostic event log."""

    time: float
    kind: str
    detail: str


class InterventionLog:
    """Counters of interventions by kind plus a bounded log of events.

    Counters are never dropped; the event log keeps the most recent `capacity` events.
    """

    def __init__(self, capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        self._counters: Counter[str] = Counter()
        self._events: deque[SafetyEvent] = deque(maxlen=capacity)

    def record(self, now: float, kind: str, detail: str = '', count: bool = True) -> None:
        """Count one intervention of `kind` and log it with its detail."""
        if count:
            self._counters[kind] += 1
        self._events.append(SafetyEvent(float(now), kind, detail))

    def bump(self, kind: str, n: int = 1) -> None:
        """Count without logging (per-cycle interventions would flood the log)."""
        self._counters[kind] += n

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the counters (kind -> count)."""
        return dict(self._counters)

    @property
    def events(self) -> list[SafetyEvent]:
        """A copy of the event log, oldest first."""
        return list(self._events)

    def count(self, kind: str) -> int:
        """How many times `kind` was recorded."""
        return self._counters.get(kind, 0)


class SafetyStateMachine:
    """ARMED / HOLDING / FAULT / ESTOP with a reason string; every transition is logged."""

    def __init__(self, log: InterventionLog) -> None:
        self._log = log
        self._state = SafetyState.HOLDING
        self._reason = 'not armed'
        self._since = 0.0
        self._inhibits: dict[str, str] = {}

    @property
    def state(self) -> SafetyState:
        """The current state."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the supervisor is in its current state."""
        return self._reason

    @property
    def since(self) -> float:
        """Time of the last transition."""
        return self._since

    @property
    def inhibits(self) -> dict[str, str]:
        """Active arm inhibits (name -> reason), e.g. an incompatible QoS (C18)."""
        return dict(self._inhibits)

    def _go(self, now: float, state: SafetyState, reason: str) -> None:
        old = self._state
        self._state = state
        self._reason = reason
        self._since = float(now)
        self._log.record(now, 'transition', f'{old.value} -> {state.value}: {reason}',
                         count=False)

    def hold(self, now: float, reason: str) -> bool:
        """ARMED -> HOLDING. Returns True when the state changed.

        A hold request in FAULT or ESTOP leaves that state alone: both already hold, and the
        stronger reason must stay visible.
        """
        if self._state is SafetyState.ARMED:
            self._go(now, SafetyState.HOLDING, reason)
            return True
        return False

    def fault(self, now: float, reason: str) -> bool:
        """ARMED/HOLDING -> FAULT (ESTOP stays latched). Returns True when the state changed."""
        if self._state in (SafetyState.ARMED, SafetyState.HOLDING):
            self._go(now, SafetyState.FAULT, reason)
            return True
        return False

    def estop(self, now: float, reason: str) -> None:
        """Latch ESTOP from any state."""
        if self._state is not SafetyState.ESTOP:
            self._go(now, SafetyState.ESTOP, reason)

    def reset_estop(self, now: float) -> Decision:
        """ESTOP -> HOLDING; motion needs a separate, explicit arm afterwards."""
        if self._state is not SafetyState.ESTOP:
            return Decision(False, f'not in ESTOP (state {self._state.value})')
        self._go(now, SafetyState.HOLDING, 'estop reset; explicit arm required')
        return Decision(True, 'estop reset; explicit arm required')

    def set_inhibit(self, now: float, name: str, reason: str) -> None:
        """Add an arm inhibit; an armed supervisor goes to HOLDING."""
        self._inhibits[name] = reason
        self._log.record(now, 'inhibit', f'{name}: {reason}')
        self.hold(now, f'inhibit {name}: {reason}')

    def clear_inhibit(self, now: float, name: str) -> bool:
        """Remove an arm inhibit (never arms by itself). Returns True when it was set."""
        if self._inhibits.pop(name, None) is None:
            return False
        self._log.record(now, 'inhibit_cleared', name, count=False)
        return True

    def request_arm(self, now: float, blockers: Iterable[str]) -> Decision:
        """HOLDING/FAULT -> ARMED when nothing blocks it. ESTOP must be reset first."""
        if self._state is SafetyState.ESTOP:
            reasons = ['estop latched (reset_estop first)']
        else:
            reasons = [f'inhibit {n}: {r}' for n, r in self._inhibits.items()]
            reasons += list(blockers)
        if self._state is SafetyState.ARMED and not reasons:
            return Decision(True, 'already armed')
        if reasons:
            detail = '; '.join(reasons)
            self._log.record(now, 'arm_refused', detail)
            return Decision(False, detail)
        previous = self._state
        note = 'armed' if previous is SafetyState.HOLDING else f'armed (cleared {self._reason})'
        self._go(now, SafetyState.ARMED, note)
        return Decision(True, note)
