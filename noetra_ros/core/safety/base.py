"""Twist supervisor for a mobile base (geometry_msgs/TwistStamped fields), ROS-free.

Same states and rules as the joint supervisor: starts HOLDING, moves only after an explicit
arm, a non-finite twist is rejected whole and holds (stricter than diff_drive, which keeps the
last valid twist), a stale twist decelerates to zero within the acceleration limits (diff_drive
`cmd_vel_timeout`, 0.5 s by default), and the output never exceeds the velocity limits.
Limits are applied to the norms of the linear and angular vectors, scaling uniformly so the
direction of motion is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.safety.state_machine import (
    DEFAULT_EVENT_CAPACITY, Decision, InterventionLog, SafetyEvent, SafetyState,
    SafetyStateMachine)

DEFAULT_BASE_PERIOD_S = 0.02  # 50 Hz, own choice (the node passes its real period)
MAX_DT_PERIODS = 2.0
MIN_DT_PERIODS = 1e-3  # a shorter clock step counts as "not advancing"


@dataclass(frozen=True, eq=False)
class TwistOutput:
    """The twist to send for one control period."""

    time: float
    dt: float
    state: SafetyState
    reason: str
    linear: np.ndarray   # (3,) m/s
    angular: np.ndarray  # (3,) rad/s


def _limit_norm(vec: np.ndarray, cap: float) -> np.ndarray:
    """`vec` scaled down (direction kept) so its norm is at most `cap`."""
    with np.errstate(over='ignore'):
        norm = float(np.linalg.norm(vec))
    if not math.isfinite(norm):
        # Only reachable with values near the float maximum; scale down first to get a norm.
        big = float(np.max(np.abs(vec)))
        vec = vec / big
        norm = float(np.linalg.norm(vec))
    return vec if norm <= cap else vec * (cap / norm)


class TwistSupervisor:
    """Validates twists and returns a limited, smoothly stopping twist each period."""

    def __init__(self, profile: SafetyProfile, period_s: float = DEFAULT_BASE_PERIOD_S,
                 required_sensors: Iterable[str] = (),
                 event_capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        """`required_sensors` (e.g. 'odom', 'scan') must be fresh to arm and to stay armed."""
        if not isinstance(profile, SafetyProfile):
            raise ConfigError(f'profile={profile!r} must be a SafetyProfile')
        period = val.as_time(period_s)
        if period is None or period <= 0.0:
            raise ConfigError(f'period_s={period_s!r} is invalid; a finite number > 0 is required')
        sensors = tuple(required_sensors)
        if not all(isinstance(s, str) and s for s in sensors):
            raise ConfigError(f'required_sensors={sensors!r} must be non-empty names')
        self._profile = profile
        self._period = period
        self._required = sensors
        self._log = InterventionLog(event_capacity)
        self._sm = SafetyStateMachine(self._log)
        self._sensor_stamps: dict[str, float] = {}
        self._cmd: tuple[np.ndarray, np.ndarray, float] | None = None  # linear, angular, expiry
        self._cmd_stamp = -math.inf
        self._lin = np.zeros(3)
        self._ang = np.zeros(3)
        self._last_now: float | None = None
        self._repeats = 0

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
        """The profile in force (its `base` block is used)."""
        return self._profile

    @property
    def counters(self) -> dict[str, int]:
        """Interventions by kind."""
        return self._log.counters

    @property
    def events(self) -> list[SafetyEvent]:
        """Recent events, oldest first."""
        return self._log.events

    # ------------------------------------------------------------------ requests
    def arm(self, now: float) -> Decision:
        """Explicit request to follow twists (refused while ESTOP is latched, an inhibit is set,
        a required sensor is stale or the base is still decelerating)."""
        t = val.as_time(now)
        if t is None:
            return Decision(False, f'invalid time {now!r}')
        blockers = []
        if self._last_now is not None and t < self._last_now:
            blockers.append('clock went backwards')
        for name in self._required:
            stamp = self._sensor_stamps.get(name)
            if stamp is None or t - stamp > self._profile.sensor_timeout(name):
                blockers.append(f'sensor {name} not fresh')
        if np.any(self._lin) or np.any(self._ang):
            blockers.append('still decelerating')
        decision = self._sm.request_arm(t, blockers)
        if decision.accepted:
            self._cmd = None
        return decision

    def estop(self, now: float, reason: str = 'estop requested') -> None:
        """Latch ESTOP (decelerates to zero)."""
        t = val.as_time(now) or 0.0
        self._sm.estop(t, str(reason))
        self._log.record(t, 'estop', str(reason))
        self._cmd = None

    def reset_estop(self, now: float) -> Decision:
        """ESTOP -> HOLDING; an explicit arm is still needed."""
        return self._sm.reset_estop(val.as_time(now) or 0.0)

    def hold(self, now: float, reason: str = 'hold requested') -> bool:
        """ARMED -> HOLDING."""
        self._cmd = None
        return self._sm.hold(val.as_time(now) or 0.0, str(reason))

    def set_inhibit(self, now: float, name: str, reason: str) -> None:
        """Block arming until `clear_inhibit(name)`; holds when armed."""
        self._sm.set_inhibit(val.as_time(now) or 0.0, str(name), str(reason))
        self._cmd = None

    def clear_inhibit(self, now: float, name: str) -> bool:
        """Remove an inhibit; never arms by itself."""
        return self._sm.clear_inhibit(val.as_time(now) or 0.0, str(name))

    def set_profile(self, profile: SafetyProfile, now: float) -> Decision:
        """Switch profile; while ARMED only tighter base limits / timeouts are accepted."""
        t = val.as_time(now) or 0.0
        if not isinstance(profile, SafetyProfile):
            return Decision(False, f'profile={profile!r} is not a SafetyProfile')
        if self._sm.state is SafetyState.ARMED:
            relaxed = self._profile.relaxations(profile)
            if relaxed:
                detail = 'limits are read-only while ARMED; relaxes ' + ', '.join(relaxed)
                self._log.record(t, 'rejected_relaxation', detail)
                return Decision(False, detail)
        self._profile = profile
        return Decision(True, f'profile {profile.name} in force')

    # ------------------------------------------------------------------ inputs
    def on_sensor(self, source: str, stamp: float, now: float) -> Decision:
        """A sample from a watched source (odometry, scanner...)."""
        t = val.as_time(now)
        if t is None or not isinstance(source, str) or not source:
            self._log.record(t or 0.0, 'sensor_rejected_malformed', repr(source))
            return Decision(False, 'sensor rejected (malformed)')
        problem = val.stamp_problem(stamp, t, self._profile.sensor_timeout(source),
                                    self._profile.future_tolerance_s)
        if problem:
            self._log.record(t, f'sensor_rejected_{problem}', source)
            return Decision(False, f'sensor {source} rejected ({problem})')
        self._sensor_stamps[source] = max(float(stamp),
                                          self._sensor_stamps.get(source, -math.inf))
        return Decision(True, 'ok')

    def on_twist(self, linear: Sequence[float], angular: Sequence[float], stamp: float,
                 now: float) -> Decision:
        """A twist command (m/s, rad/s, three components each) with its header stamp."""
        t = val.as_time(now)
        if t is None:
            self._log.record(0.0, 'rejected_invalid_clock', repr(now))
            return Decision(False, 'twist rejected (invalid_clock)')
        lin = val.as_float_array(linear, 1)
        ang = val.as_float_array(angular, 1)
        if lin is None or ang is None or lin.shape != (3,) or ang.shape != (3,):
            self._log.record(t, 'rejected_malformed', 'linear and angular need 3 values each')
            return Decision(False, 'twist rejected (malformed)')
        if not (np.all(np.isfinite(lin)) and np.all(np.isfinite(ang))):
            self._log.record(t, 'rejected_nonfinite', 'NaN/Inf in twist')
            if self._sm.hold(t, 'non-finite twist'):
                self._cmd = None
            return Decision(False, 'twist rejected (nonfinite)')
        timeout = self._profile.base.cmd_timeout_s
        problem = val.stamp_problem(stamp, t, timeout, self._profile.future_tolerance_s)
        if problem:
            self._log.record(t, f'rejected_{problem}', f'stamp={stamp!r} now={t}')
            return Decision(False, f'twist rejected ({problem})')
        st = float(stamp)
        if st < self._cmd_stamp:
            self._log.record(t, 'rejected_out_of_order', f'stamp={st}')
            return Decision(False, 'twist rejected (out_of_order)')
        if self._sm.state is not SafetyState.ARMED:
            self._log.bump('ignored_not_armed')
            return Decision(False, f'valid, but not armed ({self._sm.state.value}): ignored')
        self._cmd_stamp = st
        self._cmd = (lin, ang, st + timeout)
        return Decision(True, 'ok')

    # ------------------------------------------------------------------ control cycle
    def update(self, now: float) -> TwistOutput:
        """One period: timeout / staleness checks, then velocity and acceleration limits."""
        t = val.as_time(now)
        last = self._last_now
        min_step = MIN_DT_PERIODS * self._period
        if last is not None and t is not None and last <= t < last + min_step:
            # A repeated time is tolerated for as long as the command timeout (sim time can
            # tick slower than the control timer); after that the clock counts as stalled.
            self._repeats += 1
            stall = max(1, math.ceil(self._profile.base.cmd_timeout_s / self._period))
            if self._repeats < stall:
                return self._emit(t, 0.0)
        if t is None or (last is not None and t < last + min_step):
            # Clock invalid, stalled or backwards: hold (zero twist) and drop the command.
            kind = 'clock_invalid' if t is None else ('clock_backwards' if t < last
                                                       else 'clock_stalled')
            when = (last or 0.0) if t is None else t
            self._log.record(when, kind, repr(now))
            self._sm.hold(when, kind.replace('_', ' '))
            self._cmd = None
            self._lin = np.zeros(3)
            self._ang = np.zeros(3)
            self._repeats = 0
            if t is not None:
                self._last_now = t
            if kind == 'clock_backwards':
                # Stamps from the old timeline would look fresh for a while.
                self._sensor_stamps.clear()
                self._cmd_stamp = -math.inf
            return self._emit(when, 0.0)
        self._repeats = 0
        dt = self._period if last is None else min(t - last, MAX_DT_PERIODS * self._period)
        self._last_now = t
        for name in self._required:
            stamp = self._sensor_stamps.get(name)
            if stamp is None or t - stamp > self._profile.sensor_timeout(name):
                if self._sm.hold(t, f'{name} stale'):
                    self._log.record(t, 'sensor_stale', name)
        if self._sm.state is SafetyState.ARMED and self._cmd is not None and t > self._cmd[2]:
            self._log.record(t, 'timeouts', 'twist expired')
            self._sm.hold(t, 'command timeout')
        if self._sm.state is not SafetyState.ARMED:
            self._cmd = None
        base = self._profile.base
        if self._cmd is None:
            lin_des, ang_des = np.zeros(3), np.zeros(3)
        else:
            lin_des = _limit_norm(self._cmd[0], base.max_linear_velocity)
            ang_des = _limit_norm(self._cmd[1], base.max_angular_velocity)
            if (np.any(lin_des != self._cmd[0]) or np.any(ang_des != self._cmd[1])):
                self._log.bump('limited_velocity')
        lin_step = _limit_norm(lin_des - self._lin, base.max_linear_acceleration * dt)
        ang_step = _limit_norm(ang_des - self._ang, base.max_angular_acceleration * dt)
        if np.any(lin_step != lin_des - self._lin) or np.any(ang_step != ang_des - self._ang):
            self._log.bump('limited_accel')
        # Re-apply the velocity caps: a tightened profile must bound the output at once.
        self._lin = _limit_norm(self._lin + lin_step, base.max_linear_velocity)
        self._ang = _limit_norm(self._ang + ang_step, base.max_angular_velocity)
        # Snap tiny residues to exact zero so "stopped" is unambiguous.
        self._lin[np.abs(self._lin) < 1e-12] = 0.0
        self._ang[np.abs(self._ang) < 1e-12] = 0.0
        return self._emit(t, dt)

    def _emit(self, t: float, dt: float) -> TwistOutput:
        lin, ang = self._lin.copy(), self._ang.copy()
        lin.setflags(write=False)
        ang.setflags(write=False)
        return TwistOutput(float(t), float(dt), self._sm.state, self._sm.reason, lin, ang)
