"""What the joint supervisor and the mobile-base (twist) supervisor share.

Both run the same state machine with the same operator requests (arm, hold, e-stop, reset,
inhibits, external faults), watch the same kind of sensors, keep the control clock the same way
and record every intervention in the same log; only what they command differs. This base holds
that shared part. A subclass says what its command is (`_drop_command`, `_command_expiry`), what
else blocks arming, and what to reset when the clock misbehaves.

Time is always passed in (float seconds, the clock of the message stamps); nothing here reads a
clock or starts a thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.safety.state_machine import (
    DEFAULT_EVENT_CAPACITY, Decision, InterventionLog, SafetyEvent, SafetyState,
    SafetyStateMachine)

# A cycle longer than this many periods is logged as an overrun; the step uses at most
# MAX_DT_PERIODS periods so a late cycle cannot turn into one big jump.
OVERRUN_PERIODS = 1.5
MAX_DT_PERIODS = 2.0
# A clock step shorter than this many periods counts as "not advancing".
MIN_DT_PERIODS = 1e-3

CLOCK_ANOMALIES = ('clock_invalid', 'clock_backwards', 'clock_stalled')


@dataclass(frozen=True)
class ClockStep:
    """What the clock did since the last cycle.

    kind 'advanced' (dt > 0: run a step), 'repeated' (the same time again, tolerated for a
    while: dt = 0, send the same output), or one of CLOCK_ANOMALIES (already handled: the
    supervisor holds, dt = 0). `time` is the time to report the cycle at.
    """

    kind: str
    time: float
    dt: float


class SupervisorBase:
    """State machine, requests, watched sensors, clock and intervention log of a supervisor."""

    # Sources the subclass measures itself (their stamps are set by the subclass, never through
    # on_sensor); they are watched like the required sensors.
    OWN_SOURCES: tuple[str, ...] = ()

    def __init__(self, profile: SafetyProfile, period_s: float,
                 required_sensors: Iterable[str] = (),
                 event_capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        """Raises ConfigError on a profile that is not a SafetyProfile, a period that is not a
        finite number > 0, or sensor names that are empty or the subclass's own sources."""
        if not isinstance(profile, SafetyProfile):
            raise ConfigError(f'profile={profile!r} must be a SafetyProfile')
        period = val.as_time(period_s)
        if period is None or period <= 0.0:
            raise ConfigError(f'period_s={period_s!r} is invalid; a finite number > 0 is required')
        sensors = tuple(required_sensors)
        if not all(isinstance(s, str) and s for s in sensors) or set(sensors) & set(
                self.OWN_SOURCES):
            own = ' other than ' + ', '.join(repr(s) for s in self.OWN_SOURCES) + \
                ' (always required)' if self.OWN_SOURCES else ''
            raise ConfigError(f'required_sensors={sensors!r} must be non-empty names{own}')
        self._profile = profile
        self._period = period
        self._required = sensors
        self._log = InterventionLog(event_capacity)
        self._sm = SafetyStateMachine(self._log)
        self._sensor_stamps: dict[str, float] = {}
        self._stale: set[str] = set()
        self._late: set[str] = set()
        self._last_now: float | None = None
        self._repeat_count = 0
        self._speed_scale = 1.0

    # ------------------------------------------------------------------ read-only views
    @property
    def state(self) -> SafetyState:
        """Current state."""
        return self._sm.state

    @property
    def reason(self) -> str:
        """Why the supervisor is in its current state."""
        return self._sm.reason

    @property
    def profile(self) -> SafetyProfile:
        """The profile in force."""
        return self._profile

    @property
    def period_s(self) -> float:
        """Nominal control period."""
        return self._period

    @property
    def counters(self) -> dict[str, int]:
        """Interventions by kind. Message checks count messages; limiters count cycles."""
        return self._log.counters

    @property
    def events(self) -> list[SafetyEvent]:
        """Recent events (time, kind, detail), oldest first."""
        return self._log.events

    @property
    def inhibits(self) -> dict[str, str]:
        """Active arm inhibits."""
        return self._sm.inhibits

    # ------------------------------------------------------------------ requests
    def arm(self, now: float) -> Decision:
        """Explicit request to follow commands. Allowed from HOLDING or FAULT (acknowledging it)
        when every watched source is fresh, no inhibit is set, no ESTOP is latched, no
        deceleration is in progress and nothing the subclass checks blocks it."""
        t = val.as_time(now)
        if t is None:
            return Decision(False, f'invalid time {now!r}')
        blockers: list[str] = []
        if self._last_now is not None and t < self._last_now:
            blockers.append('clock went backwards')
        for name in self.OWN_SOURCES + self._required:
            age = self._age(name, t)
            if age is None or age > self._profile.sensor_timeout(name):
                label = name if name in self.OWN_SOURCES else f'sensor {name}'
                blockers.append(f'{label} not fresh')
        blockers += self._arm_blockers(t, blocked=bool(blockers))
        decision = self._sm.request_arm(t, blockers)
        if (decision.accepted and self._sm.state is SafetyState.ARMED
                and decision.reason != 'already armed'):
            self._on_armed(t)
            self._log.record(t, 'armed', decision.reason)
        return decision

    def estop(self, now: float, reason: str = 'estop requested') -> None:
        """Latch ESTOP (a software stop request: the output decelerates to a hold)."""
        t = _time_or_zero(now)
        self._sm.estop(t, str(reason))
        self._log.record(t, 'estop', str(reason))
        self._drop_command()

    def reset_estop(self, now: float) -> Decision:
        """ESTOP -> HOLDING. Never restarts motion: an explicit `arm` is still needed."""
        return self._sm.reset_estop(_time_or_zero(now))

    def hold(self, now: float, reason: str = 'hold requested') -> bool:
        """Request a hold (ARMED -> HOLDING). Returns True when the state changed."""
        changed = self._sm.hold(_time_or_zero(now), str(reason))
        if changed:
            self._drop_command()
        return changed

    def fault(self, now: float, reason: str) -> bool:
        """Report an external fault (e.g. collision proximity, QoS event). Holds."""
        t = _time_or_zero(now)
        self._log.record(t, 'external_fault', str(reason))
        changed = self._sm.fault(t, str(reason))
        self._drop_command()
        return changed

    def set_inhibit(self, now: float, name: str, reason: str) -> None:
        """Block arming (and hold if armed) until `clear_inhibit(name)`."""
        self._sm.set_inhibit(_time_or_zero(now), str(name), str(reason))
        if self._sm.state is not SafetyState.ARMED:
            self._drop_command()

    def clear_inhibit(self, now: float, name: str) -> bool:
        """Remove an inhibit; never arms by itself."""
        return self._sm.clear_inhibit(_time_or_zero(now), str(name))

    def set_profile(self, profile: SafetyProfile, now: float) -> Decision:
        """Switch profile. While ARMED only tightening is accepted (C21: limits are read-only
        while armed); outside ARMED any valid profile is accepted."""
        t = _time_or_zero(now)
        if not isinstance(profile, SafetyProfile):
            return Decision(False, f'profile={profile!r} is not a SafetyProfile')
        try:
            prepared = self._prepare_profile(profile)
        except ConfigError as exc:
            self._log.record(t, 'rejected_profile', str(exc))
            return Decision(False, str(exc))
        if self._sm.state is SafetyState.ARMED:
            relaxed = self._profile.relaxations(profile) + self._relaxations(prepared)
            if relaxed:
                detail = 'limits are read-only while ARMED; relaxes ' + ', '.join(relaxed)
                self._log.record(t, 'rejected_relaxation', detail)
                return Decision(False, detail)
        self._profile = profile
        self._apply_profile(prepared)
        self._log.record(t, 'profile_changed', profile.name, count=False)
        return Decision(True, f'profile {profile.name} in force')

    # ------------------------------------------------------------------ inputs
    def on_sensor(self, source: str, stamp: float, now: float) -> Decision:
        """A sample from a watched source (camera, F/T sensor, odometry...) to watch for
        staleness. Samples of unwatched sources are checked and kept too (cheap, and a later
        profile or arm request may ask about them)."""
        t = val.as_time(now)
        if t is None:
            return self._reject_sensor(0.0, str(source), val.INVALID_CLOCK)
        if not isinstance(source, str) or not source or source in self.OWN_SOURCES:
            return self._reject_sensor(t, repr(source), 'malformed')
        problem = val.stamp_problem(stamp, t, self._profile.sensor_timeout(source),
                                    self._profile.future_tolerance_s)
        if problem:
            return self._reject_sensor(t, source, problem)
        st = float(stamp)
        if st < self._sensor_stamps.get(source, -math.inf):
            return self._reject_sensor(t, source, 'out_of_order')
        self._sensor_stamps[source] = st
        return Decision(True, 'ok')

    def _reject_sensor(self, t: float, source: str, code: str) -> Decision:
        self._log.record(t, f'sensor_rejected_{code}', source)
        return Decision(False, f'sensor {source} rejected ({code})')

    # ------------------------------------------------------------------ the cycle
    def _advance_clock(self, now: Any) -> ClockStep:
        """C16: an invalid or backwards time holds at once; a time that does not advance is
        tolerated for as long as the command timeout (sim time can tick slower than the control
        timer), then counts as a stalled clock and holds. Returns what happened."""
        t = val.as_time(now)
        last = self._last_now
        if t is None or (last is not None and t < last):
            kind = 'clock_invalid' if t is None else 'clock_backwards'
            when = (0.0 if last is None else last) if t is None else t
            self._clock_anomaly(when, kind, f'now={now!r} after {last!r}',
                                keep_time=t is None and last is None)
            return ClockStep(kind, when, 0.0)
        if last is not None and t - last < MIN_DT_PERIODS * self._period:
            # Not advancing (or by a sliver too small to turn into a velocity): no new step.
            self._repeat_count += 1
            stall = max(1, int(math.ceil(self._command_timeout_s() / self._period)))
            if self._repeat_count >= stall:
                self._clock_anomaly(t, 'clock_stalled',
                                    f'now={t} repeated {self._repeat_count} times')
                return ClockStep('clock_stalled', t, 0.0)
            return ClockStep('repeated', t, 0.0)
        self._repeat_count = 0
        if last is None:
            dt = self._period
        else:
            dt = t - last
            if dt > OVERRUN_PERIODS * self._period:
                self._log.record(t, 'cycle_overrun', f'dt={dt:.6f}s')
            dt = min(dt, MAX_DT_PERIODS * self._period)
        self._last_now = t
        return ClockStep('advanced', t, dt)

    def _clock_anomaly(self, when: float, kind: str, detail: str,
                       keep_time: bool = False) -> None:
        """Hold where we are and reset the motion filters; data from an old timeline goes."""
        self._log.record(when, kind, detail)
        self._sm.hold(when, kind.replace('_', ' '))
        self._drop_command()
        if kind != 'clock_stalled':
            # Stamps from before a backwards jump would look fresh (or future) for a while.
            self._sensor_stamps.clear()
        if not keep_time:
            self._last_now = when
        self._repeat_count = 0
        self._on_clock_anomaly(kind)

    def _age(self, source: str, t: float) -> float | None:
        stamp = self._sensor_stamps.get(source)
        return None if stamp is None else t - stamp

    def _check_sources(self, t: float) -> None:
        """Staleness (C7), latency slowdown (C8), inhibits, command timeout (C1).

        A source older than its timeout holds; one older than sensor_slowdown_fraction of it
        scales the speed down linearly (`_speed_scale`) and logs a missed deadline once.
        """
        scale = 1.0
        frac = self._profile.sensor_slowdown_fraction
        for source in self.OWN_SOURCES + self._required:
            timeout = self._profile.sensor_timeout(source)
            age = self._age(source, t)
            if age is None or age > timeout:
                if source not in self._stale:
                    self._stale.add(source)
                    self._log.record(t, 'sensor_stale', f'{source} age={age}')
                if self._sm.hold(t, f'{source} stale'):
                    self._drop_command()
                scale = 0.0
                continue
            if source in self._stale:
                self._stale.discard(source)
                self._log.record(t, 'sensor_fresh', source, count=False)
            start = frac * timeout
            if age > start:
                if source not in self._late:
                    self._late.add(source)
                    self._log.record(t, 'deadline_missed', f'{source} age={age:.4f}s')
                if frac < 1.0:
                    scale = min(scale, max(0.0, (timeout - age) / (timeout - start)))
            else:
                self._late.discard(source)
        self._speed_scale = scale
        if scale < 1.0:
            self._log.bump('sensor_slowdown')
        if self._sm.state is SafetyState.ARMED and self._sm.inhibits:
            self._sm.hold(t, 'inhibit active')
        if self._sm.state is not SafetyState.ARMED:
            self._drop_command()
            return
        expiry = self._command_expiry()
        if expiry is not None and t > expiry:
            self._log.record(t, 'timeouts', f'{self._command_description()} expired at '
                             f'{expiry:.6f}')
            self._sm.hold(t, 'command timeout')
            self._drop_command()

    # ------------------------------------------------------------------ subclass hooks
    def _drop_command(self) -> None:
        """Forget the active command (the output then decelerates to a hold)."""
        raise NotImplementedError

    def _command_expiry(self) -> float | None:
        """When the active command expires, or None without one."""
        raise NotImplementedError

    def _command_description(self) -> str:
        """What the active command is, for the timeout event."""
        return 'command'

    def _command_timeout_s(self) -> float:
        """How long a command lives; a clock standing still that long counts as stalled."""
        return self._profile.command_timeout_s

    def _arm_blockers(self, t: float, blocked: bool) -> list[str]:
        """Further reasons not to arm (`blocked`: a shared check already refused)."""
        return []

    def _on_armed(self, t: float) -> None:
        """Called once when an arm request was accepted (HOLDING / FAULT -> ARMED)."""
        self._drop_command()

    def _on_clock_anomaly(self, kind: str) -> None:
        """Called after a clock anomaly put the supervisor on hold."""

    def _prepare_profile(self, profile: SafetyProfile) -> Any:
        """Whatever the subclass derives from a new profile; ConfigError when it does not fit."""
        return None

    def _relaxations(self, prepared: Any) -> list[str]:
        """Ways in which the derived limits of a new profile are looser than the current ones."""
        return []

    def _apply_profile(self, prepared: Any) -> None:
        """Put the derived limits of the new profile (already `self._profile`) in force."""


def _time_or_zero(now: Any) -> float:
    """Requests with an unusable time are still honoured (a stop must never be refused); they
    are logged at time 0."""
    t = val.as_time(now)
    return 0.0 if t is None else t
