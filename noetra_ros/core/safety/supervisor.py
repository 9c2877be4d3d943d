"""The joint-space safety supervisor between every command source and the robot (ROS-free).

It is NOT a safety-rated function: it lowers how often the certified layer (FANUC DCS, Yaskawa
FSU, a safety PLC, the hard-wired e-stop) is demanded, and it can only request a controlled
deceleration to a hold (stop category 2-like). Its "ESTOP" state is a latched software stop
request, not an emergency stop.

Use: feed measurements and commands as they arrive (`on_joint_state`, `on_sensor`,
`on_command_positions` / `_trajectory` / `_velocities`), call `update(now)` once per control
period and send `SupervisorOutput.positions` to the robot. Time is always passed in (float
seconds, the same clock as the message stamps); nothing here reads a clock or starts a thread.

What `update` guarantees for every output with dt > 0 (checked by test_safety_fuzz.py):
  * every value is finite and inside the URDF bounds; inside [lower + margin, upper - margin]
    unless the robot was armed inside the margin band, in which case that joint never moves
    further out (only back toward the safe range);
  * |dq| <= v_max * dt (right after v_max is tightened mid-motion the speed comes down at
    a_max instead of jumping); |dq/dt - previous| <= a_max * dt, except when a Cartesian limit
    (workspace box, tool speed) has to cut a step short or a tightened limit leaves no room to
    brake: staying inside the limits wins over smoothness. A jerk limit, when set, is
    best-effort in the same way (it never delays a stop);
  * tool frame inside the workspace box and tool speed <= max_tool_speed (with an FK);
  * outside ARMED no policy target is followed: the output decelerates to a hold.
Outputs flagged `rebased` restart from the measured position: the first output after arming,
a tracking-error fault (the command moves back to where the blocked robot actually is), and
every output while the supervisor is not commanding the robot (`active` False: never armed, or
after a tracking fault until the next arm), when it mirrors the measured position so that a
published command never pulls the robot anywhere.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.profile import EffectiveJointLimits, SafetyProfile
from noetra_ros.core.safety.state_machine import (
    DEFAULT_EVENT_CAPACITY, Decision, InterventionLog, SafetyEvent, SafetyState,
    SafetyStateMachine)

FkFunction = Callable[[np.ndarray], Any]

DEFAULT_PERIOD_S = 0.004  # 250 Hz: MotoROS2 real-time mode runs at 4 ms (interfaces.md)
# Joint states a hair beyond the URDF bound are encoder noise, not a broken robot.
MEASURED_LIMIT_TOLERANCE_RAD = 1e-3
MAX_TRAJECTORY_POINTS = 10000
# A cycle longer than this many periods is logged as an overrun; the step uses at most
# MAX_DT_PERIODS periods so a late cycle cannot turn into one big jump.
OVERRUN_PERIODS = 1.5
MAX_DT_PERIODS = 2.0
# A clock step shorter than this many periods counts as "not advancing".
MIN_DT_PERIODS = 1e-3
# While not commanding, the output follows the measured position only when it differs by more
# than this: a steady servo error (gravity sag, ~0.1 mrad) must not turn into a creeping command.
MIRROR_DEADBAND_RAD = 2e-3
# Slowest approach speed inside the soft band, as a fraction of v_max.
SOFT_BAND_MIN_SPEED_FRACTION = 0.05
_BISECTION_STEPS = 10
_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class SupervisorOutput:
    """What `update` decided for one control period."""

    time: float
    dt: float                      # step the limits were applied with (0: clock did not advance)
    state: SafetyState
    reason: str
    positions: np.ndarray | None   # joint position command (joint order); None: send nothing
    velocities: np.ndarray | None  # the commanded joint velocity (positions step / dt)
    rebased: bool                  # positions restart from the measured state this cycle
    active: bool                   # True from an accepted arm until a tracking fault
    speed_scale: float             # slowdown applied to the velocity limits (1 = none)
    tool_position: np.ndarray | None

    @property
    def has_command(self) -> bool:
        """True when there is a position command to send."""
        return self.positions is not None


@dataclass
class _Command:
    kind: str                      # 'positions' | 'trajectory' | 'velocities'
    stamp: float
    expiry: float
    values: np.ndarray             # target positions, or joint velocities
    times: np.ndarray | None = None
    points: np.ndarray | None = None
    point_velocities: np.ndarray | None = None
    ref_velocity: np.ndarray | None = None  # positions: rate of the command stream


def _stop_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed v with v*dt + v^2/(2a) <= distance: after this step the joint can still
    stop (braking at a per cycle) before covering `distance`. Holds for any later dt."""
    d = np.maximum(distance, 0.0)
    adt = accel * dt
    return np.maximum(0.0, -adt + np.sqrt(adt * adt + 2.0 * accel * d))


def _as_fk(fk: Any) -> FkFunction | None:
    """Accept a callable q -> 4x4 (or xyz), or an object with `.fk(q)` (e.g. a RobotModel)."""
    if fk is None:
        return None
    if callable(fk):
        return fk
    method = getattr(fk, 'fk', None)
    if callable(method):
        return method
    raise ConfigError(f'fk={fk!r} must be a callable q -> 4x4 or an object with .fk(q)')


def fk_from_model(model: Any, link: str = 'tool0') -> FkFunction:
    """An fk callable for a robot model with `.fk(q, link=...)` (RobotModel)."""
    return lambda q: model.fk(q, link=link)


class SafetySupervisor:
    """Validates inputs, tracks state, and turns commands into safe joint position commands."""

    def __init__(self, limits: JointLimits, profile: SafetyProfile, fk: Any = None,
                 period_s: float = DEFAULT_PERIOD_S, required_sensors: Iterable[str] = (),
                 event_capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        """Limits and FK are injected so the supervisor does not depend on a URDF parser.

        Raises ConfigError when the profile does not fit the limits, when the profile sets a
        workspace box or tool speed but no FK is given, or when period_s is not > 0.
        """
        if not isinstance(limits, JointLimits):
            raise ConfigError(f'limits={limits!r} must be a JointLimits')
        if not isinstance(profile, SafetyProfile):
            raise ConfigError(f'profile={profile!r} must be a SafetyProfile')
        period = val.as_time(period_s)
        if period is None or period <= 0.0:
            raise ConfigError(f'period_s={period_s!r} is invalid; a finite number > 0 is required')
        sensors = tuple(required_sensors)
        if not all(isinstance(s, str) and s for s in sensors) or 'joint_states' in sensors:
            raise ConfigError(f'required_sensors={sensors!r} must be non-empty names other than '
                              "'joint_states' (always required)")
        self._fk = _as_fk(fk)
        self._check_fk_needed(profile)
        self._limits = limits
        self._profile = profile
        self._eff = EffectiveJointLimits.build(limits, profile)
        self._period = period
        self._required = sensors
        self._log = InterventionLog(event_capacity)
        self._sm = SafetyStateMachine(self._log)
        n = limits.count
        # measurements
        self._meas_q: np.ndarray | None = None
        self._meas_qd: np.ndarray | None = None
        self._meas_stamp: float | None = None
        self._sensor_stamps: dict[str, float] = {}
        self._stale: set[str] = set()
        self._late: set[str] = set()
        # command
        self._cmd: _Command | None = None
        # output state
        self._q: np.ndarray | None = None
        self._v = np.zeros(n)
        self._a = np.zeros(n)
        self._p: np.ndarray | None = None
        self._lo = self._eff.safe_lower.copy()
        self._hi = self._eff.safe_upper.copy()
        self._box_lo: np.ndarray | None = None
        self._box_hi: np.ndarray | None = None
        self._rebase_pending = False
        # True from an accepted arm until a tracking fault: the output is ours to move.
        self._commanding = False
        self._history: deque[tuple[float, np.ndarray]] = deque(maxlen=10000)
        self._last_now: float | None = None
        self._repeat_count = 0
        self._speed_scale = 1.0
        self._last_output: SupervisorOutput | None = None

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_robot_model(cls, model: Any, profile: SafetyProfile, **kwargs: Any
                         ) -> 'SafetySupervisor':
        """Limits from `model` (joint_names, lower, upper, velocity_limits, effort_limits) and
        FK from `model.fk(q, link=profile.tool_frame)`."""
        return cls(JointLimits.from_robot_model(model), profile,
                   fk=fk_from_model(model, profile.tool_frame), **kwargs)

    def _check_fk_needed(self, profile: SafetyProfile) -> None:
        if self._fk is None and (profile.workspace is not None
                                 or profile.max_tool_speed is not None):
            raise ConfigError(f'profile {profile.name!r} sets a workspace box or max_tool_speed; '
                              'an fk (q -> 4x4 of the tool frame) is required to enforce them')

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
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of every array in and out."""
        return self._limits.names

    @property
    def limits(self) -> JointLimits:
        """The URDF limits in force."""
        return self._limits

    @property
    def profile(self) -> SafetyProfile:
        """The profile in force."""
        return self._profile

    @property
    def effective_limits(self) -> EffectiveJointLimits:
        """The per-joint limits enforced (URDF tightened by the profile)."""
        return self._eff

    @property
    def period_s(self) -> float:
        """Nominal control period."""
        return self._period

    @property
    def position_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Current output bounds: the safe range, widened only where the robot was armed inside
        the margin band (and narrowing back as it leaves the band)."""
        return self._lo.copy(), self._hi.copy()

    @property
    def workspace_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Current tool-frame bounds (the box, widened the same way), or None."""
        if self._box_lo is None or self._box_hi is None:
            return None
        return self._box_lo.copy(), self._box_hi.copy()

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

    @property
    def measured_positions(self) -> np.ndarray | None:
        """Latest accepted joint positions (joint order)."""
        return None if self._meas_q is None else self._meas_q.copy()

    @property
    def last_output(self) -> SupervisorOutput | None:
        """What the last `update` returned."""
        return self._last_output

    # ------------------------------------------------------------------ requests
    def arm(self, now: float) -> Decision:
        """Explicit request to follow commands. Allowed from HOLDING or FAULT (acknowledging it)
        when joint_states and every required sensor are fresh, the robot is within its URDF
        bounds, no inhibit is set, no ESTOP is latched and no deceleration is in progress.
        The next output equals the measured position (no jump)."""
        t = val.as_time(now)
        blockers: list[str] = []
        if t is None:
            return Decision(False, f'invalid time {now!r}')
        if self._last_now is not None and t < self._last_now:
            blockers.append('clock went backwards')
        js_age = self._age('joint_states', t)
        if js_age is None or js_age > self._profile.sensor_timeout('joint_states'):
            blockers.append('joint_states not fresh')
        for name in self._required:
            age = self._age(name, t)
            if age is None or age > self._profile.sensor_timeout(name):
                blockers.append(f'sensor {name} not fresh')
        if self._meas_q is not None:
            out = self._beyond_hard_limits(self._meas_q)
            if out:
                blockers.append(f'measured position beyond URDF limits ({out})')
        if self._q is not None and np.any(self._v != 0.0):
            blockers.append('still decelerating')
        p_meas = None
        if self._fk is not None and self._meas_q is not None and not blockers:
            p_meas = self._tool_pos(self._meas_q)
            if p_meas is None:
                blockers.append('fk failed at the measured position')
        decision = self._sm.request_arm(t, blockers)
        if decision.accepted and self._sm.state is SafetyState.ARMED:
            if decision.reason != 'already armed':
                assert self._meas_q is not None
                self._rebase(self._meas_q, t, p_meas)
                self._commanding = True
                self._cmd = None
                self._log.record(t, 'armed', decision.reason)
        return decision

    def estop(self, now: float, reason: str = 'estop requested') -> None:
        """Latch ESTOP (a software stop request, decelerating to a hold)."""
        t = val.as_time(now)
        self._sm.estop(0.0 if t is None else t, str(reason))
        self._log.record(0.0 if t is None else t, 'estop', str(reason))
        self._cmd = None

    def reset_estop(self, now: float) -> Decision:
        """ESTOP -> HOLDING. Never restarts motion: an explicit `arm` is still needed."""
        t = val.as_time(now)
        return self._sm.reset_estop(0.0 if t is None else t)

    def hold(self, now: float, reason: str = 'hold requested') -> bool:
        """Request a hold (ARMED -> HOLDING). Returns True when the state changed."""
        t = val.as_time(now)
        changed = self._sm.hold(0.0 if t is None else t, str(reason))
        if changed:
            self._cmd = None
        return changed

    def fault(self, now: float, reason: str) -> bool:
        """Report an external fault (e.g. collision proximity, QoS event). Holds."""
        t = val.as_time(now)
        t = 0.0 if t is None else t
        self._log.record(t, 'external_fault', str(reason))
        changed = self._sm.fault(t, str(reason))
        self._cmd = None
        return changed

    def set_inhibit(self, now: float, name: str, reason: str) -> None:
        """Block arming (and hold if armed) until `clear_inhibit(name)`."""
        t = val.as_time(now)
        self._sm.set_inhibit(0.0 if t is None else t, str(name), str(reason))
        if self._sm.state is not SafetyState.ARMED:
            self._cmd = None

    def clear_inhibit(self, now: float, name: str) -> bool:
        """Remove an inhibit; never arms by itself."""
        t = val.as_time(now)
        return self._sm.clear_inhibit(0.0 if t is None else t, str(name))

    def set_profile(self, profile: SafetyProfile, now: float) -> Decision:
        """Switch profile. While ARMED only tightening is accepted (C21: limits are read-only
        while armed); outside ARMED any valid profile is accepted."""
        t = val.as_time(now)
        t = 0.0 if t is None else t
        if not isinstance(profile, SafetyProfile):
            return Decision(False, f'profile={profile!r} is not a SafetyProfile')
        try:
            eff = EffectiveJointLimits.build(self._limits, profile)
            self._check_fk_needed(profile)
        except ConfigError as exc:
            self._log.record(t, 'rejected_profile', str(exc))
            return Decision(False, str(exc))
        if self._sm.state is SafetyState.ARMED:
            relaxed = self._profile.relaxations(profile) + self._eff.relaxations(eff)
            if relaxed:
                detail = 'limits are read-only while ARMED; relaxes ' + ', '.join(relaxed)
                self._log.record(t, 'rejected_relaxation', detail)
                return Decision(False, detail)
        self._profile = profile
        self._apply_limits(eff)
        self._log.record(t, 'profile_changed', profile.name, count=False)
        return Decision(True, f'profile {profile.name} in force')

    def update_limits(self, limits: JointLimits, now: float) -> Decision:
        """Replace the URDF limits (same joints). While ARMED only tightening is accepted, and
        never limits that exclude the current command position."""
        t = val.as_time(now)
        t = 0.0 if t is None else t
        if not isinstance(limits, JointLimits):
            return Decision(False, f'limits={limits!r} is not a JointLimits')
        if limits.names != self._limits.names:
            detail = f'joint names {list(limits.names)} differ from {list(self._limits.names)}'
            self._log.record(t, 'rejected_limits', detail)
            return Decision(False, detail)
        try:
            eff = EffectiveJointLimits.build(limits, self._profile)
        except ConfigError as exc:
            self._log.record(t, 'rejected_limits', str(exc))
            return Decision(False, str(exc))
        if self._sm.state is SafetyState.ARMED:
            relaxed = self._limits.relaxations(limits) + self._eff.relaxations(eff)
            if relaxed:
                detail = 'limits are read-only while ARMED; relaxes ' + ', '.join(relaxed)
                self._log.record(t, 'rejected_relaxation', detail)
                return Decision(False, detail)
        if self._q is not None and (np.any(self._q < limits.lower)
                                    or np.any(self._q > limits.upper)):
            detail = 'the current command position lies outside the new limits'
            self._log.record(t, 'rejected_limits', detail)
            return Decision(False, detail)
        self._limits = limits
        self._apply_limits(eff)
        self._log.record(t, 'limits_changed', '', count=False)
        return Decision(True, 'limits in force')

    def _apply_limits(self, eff: EffectiveJointLimits) -> None:
        self._eff = eff
        if self._q is None:
            self._lo = eff.safe_lower.copy()
            self._hi = eff.safe_upper.copy()
        else:
            self._lo = np.maximum(eff.lower, np.minimum(eff.safe_lower, self._q))
            self._hi = np.minimum(eff.upper, np.maximum(eff.safe_upper, self._q))
        self._reset_box(self._p)

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, names: Sequence[str], positions: Sequence[float],
                       velocities: Sequence[float] | None, stamp: float, now: float) -> Decision:
        """A measurement (sensor_msgs/JointState fields). Extra joints and any order are fine;
        every supervised joint must be present once. Non-finite positions anywhere reject the
        whole message; non-finite velocities only drop the velocities."""
        t = val.as_time(now)
        if t is None:
            return self._reject_js(0.0, val.INVALID_CLOCK, f'now={now!r}')
        nm = val.as_names(names)
        q = val.as_float_array(positions, 1)
        if nm is None or q is None or len(nm) != q.shape[0]:
            return self._reject_js(t, 'malformed', 'names/positions are not matching arrays')
        if len(set(nm)) != len(nm):
            return self._reject_js(t, 'names', 'duplicate joint names')
        missing = [j for j in self._limits.names if j not in nm]
        if missing:
            return self._reject_js(t, 'names', f'missing joints {missing}')
        if not np.all(np.isfinite(q)):
            return self._reject_js(t, 'nonfinite', 'non-finite position')
        problem = val.stamp_problem(stamp, t, self._profile.sensor_timeout('joint_states'),
                                    self._profile.future_tolerance_s)
        if problem:
            return self._reject_js(t, problem, f'stamp={stamp!r} now={t}')
        st = float(stamp)
        if self._meas_stamp is not None and st < self._meas_stamp:
            return self._reject_js(t, 'out_of_order', f'stamp {st} < last {self._meas_stamp}')
        idx = [nm.index(j) for j in self._limits.names]
        qd = None
        if velocities is not None:
            vel = val.as_float_array(velocities, 1)
            if vel is not None and vel.shape[0] == len(nm) and np.all(np.isfinite(vel)):
                qd = vel[idx]
            elif vel is None or vel.shape[0] != 0:
                self._log.bump('joint_state_velocities_ignored')
        self._meas_q = q[idx]
        self._meas_qd = qd
        self._meas_stamp = st
        beyond = self._beyond_hard_limits(self._meas_q)
        if beyond:
            self._log.record(t, 'measured_beyond_limits', beyond)
            if self._sm.fault(t, f'measured position beyond URDF limits ({beyond})'):
                self._cmd = None
        return Decision(True, 'ok')

    def on_sensor(self, source: str, stamp: float, now: float) -> Decision:
        """A sample from another source (camera, F/T sensor...) to watch for staleness."""
        t = val.as_time(now)
        if t is None:
            return self._reject_sensor(0.0, str(source), val.INVALID_CLOCK)
        if not isinstance(source, str) or not source or source == 'joint_states':
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

    def on_command_positions(self, names: Sequence[str] | None, positions: Sequence[float],
                             stamp: float, now: float) -> Decision:
        """A joint position target. `names` None means the supervisor's joint order
        (std_msgs/Float64MultiArray); otherwise it must equal that order exactly."""
        t, problem = self._command_header(names, now)
        if problem is not None:
            return problem
        q = val.as_float_array(positions, 1)
        if q is None or q.shape[0] != self._limits.count:
            return self._reject_cmd(t, 'count' if q is not None else 'malformed',
                                    f'{self._limits.count} positions required', fault=True)
        if not np.all(np.isfinite(q)):
            return self._reject_nonfinite(t)
        problem = self._command_stamp(stamp, t)
        if problem is not None:
            return problem
        st = float(stamp)
        self._note_clamp(t, q)
        # A stream of targets (one per period) moves; estimate its rate so the output tracks
        # the stream instead of stopping at every sample.
        ref_velocity = np.zeros(self._limits.count)
        prev = self._cmd
        if (prev is not None and prev.kind == 'positions'
                and 0.0 < st - prev.stamp <= self._profile.command_timeout_s):
            with np.errstate(all='ignore'):
                rate = (q - prev.values) / (st - prev.stamp)
            ref_velocity = np.clip(np.nan_to_num(rate), -self._eff.velocity, self._eff.velocity)
        return self._store(t, _Command('positions', st, st + self._profile.command_timeout_s,
                                       q, ref_velocity=ref_velocity))

    def on_command_trajectory(self, names: Sequence[str] | None, times: Sequence[float],
                              positions: Sequence[Sequence[float]],
                              velocities: Sequence[Sequence[float]] | None,
                              stamp: float, now: float) -> Decision:
        """A trajectory (JointTrajectory fields): `times` are seconds from `stamp`, strictly
        increasing and >= 0; positions (K, N); velocities (K, N), empty or None. It is sampled
        at each update (cubic Hermite with velocities, linear without) and expires
        command_timeout_s after its last point (JTC counts cmd_timeout from the last point)."""
        t, problem = self._command_header(names, now)
        if problem is not None:
            return problem
        n = self._limits.count
        ts = val.as_float_array(times, 1)
        pts = val.as_float_array(positions, 2)
        if ts is None or pts is None or pts.shape[0] == 0 or pts.shape[0] != ts.shape[0]:
            return self._reject_cmd(t, 'malformed', 'times/positions must be K and (K, N)',
                                    fault=True)
        if pts.shape[1] != n:
            return self._reject_cmd(t, 'count', f'{n} positions per point required', fault=True)
        if pts.shape[0] > MAX_TRAJECTORY_POINTS:
            return self._reject_cmd(t, 'malformed', f'more than {MAX_TRAJECTORY_POINTS} points',
                                    fault=True)
        vel = None
        if velocities is not None:
            vel = val.as_float_array(velocities, 2)
            if vel is None:
                flat = val.as_float_array(velocities, 1)
                if flat is None or flat.shape[0] != 0:
                    return self._reject_cmd(t, 'malformed', 'velocities must be (K, N) or empty',
                                            fault=True)
            elif vel.size == 0:
                vel = None
            elif vel.shape != pts.shape:
                return self._reject_cmd(t, 'count', 'velocities must be (K, N)', fault=True)
        finite = np.all(np.isfinite(ts)) and np.all(np.isfinite(pts))
        if not finite or (vel is not None and not np.all(np.isfinite(vel))):
            return self._reject_nonfinite(t)
        if ts[0] < 0.0 or np.any(np.diff(ts) <= 0.0):
            return self._reject_cmd(t, 'malformed', 'times must be >= 0 and strictly increasing',
                                    fault=True)
        problem = self._command_stamp(stamp, t)
        if problem is not None:
            return problem
        st = float(stamp)
        expiry = st + float(ts[-1]) + self._profile.command_timeout_s
        if not math.isfinite(expiry):
            return self._reject_cmd(t, 'malformed', 'trajectory too long', fault=True)
        self._note_clamp(t, pts)
        # Keep the samples bounded: clamping to the hard range first means interpolation can
        # never produce a huge or non-finite number.
        pts = np.clip(pts, self._limits.lower, self._limits.upper)
        if vel is not None:
            cap = self._limits.velocity * 1e3  # only a numeric guard; limits apply later
            vel = np.clip(vel, -cap, cap)
        return self._store(t, _Command('trajectory', st, expiry, pts[-1], ts, pts, vel))

    def on_command_velocities(self, names: Sequence[str] | None, velocities: Sequence[float],
                              stamp: float, now: float) -> Decision:
        """A joint velocity command (rad/s), held until command_timeout_s after its stamp."""
        t, problem = self._command_header(names, now)
        if problem is not None:
            return problem
        qd = val.as_float_array(velocities, 1)
        if qd is None or qd.shape[0] != self._limits.count:
            return self._reject_cmd(t, 'count' if qd is not None else 'malformed',
                                    f'{self._limits.count} velocities required', fault=True)
        if not np.all(np.isfinite(qd)):
            return self._reject_nonfinite(t)
        problem = self._command_stamp(stamp, t)
        if problem is not None:
            return problem
        st = float(stamp)
        if np.any(np.abs(qd) > self._eff.velocity):
            self._log.record(t, 'limited_velocity', 'velocity command above the limit')
        return self._store(t, _Command('velocities', st, st + self._profile.command_timeout_s,
                                       qd))

    # ------------------------------------------------------------------ input helpers
    def _reject_js(self, t: float, code: str, detail: str) -> Decision:
        self._log.record(t, f'joint_state_rejected_{code}', detail)
        return Decision(False, f'joint_state rejected ({code}): {detail}')

    def _reject_sensor(self, t: float, source: str, code: str) -> Decision:
        self._log.record(t, f'sensor_rejected_{code}', source)
        return Decision(False, f'sensor {source} rejected ({code})')

    def _reject_cmd(self, t: float, code: str, detail: str, fault: bool = False) -> Decision:
        """Count a rejected command; structural errors (names, count, shape) fault (C4)."""
        self._log.record(t, f'rejected_{code}', detail)
        if fault:
            if self._sm.fault(t, f'command rejected ({code}): {detail}'):
                self._cmd = None
        return Decision(False, f'command rejected ({code}): {detail}')

    def _reject_nonfinite(self, t: float) -> Decision:
        """C3: the whole message is dropped and an armed supervisor holds."""
        self._log.record(t, 'rejected_nonfinite', 'NaN/Inf in command')
        if self._sm.hold(t, 'non-finite command'):
            self._cmd = None
        return Decision(False, 'command rejected (nonfinite)')

    def _command_header(self, names: Any, now: Any) -> tuple[float, Decision | None]:
        t = val.as_time(now)
        if t is None:
            self._log.record(0.0, f'rejected_{val.INVALID_CLOCK}', f'now={now!r}')
            return 0.0, Decision(False, 'command rejected (invalid_clock)')
        if names is None:
            return t, None
        nm = val.as_names(names)
        if nm is None:
            return t, self._reject_cmd(t, 'malformed', 'names must be a list of strings',
                                       fault=True)
        if len(nm) != self._limits.count:
            return t, self._reject_cmd(t, 'count', f'{len(nm)} names, {self._limits.count} '
                                       'joints', fault=True)
        if nm != self._limits.names:
            return t, self._reject_cmd(t, 'names', f'names {list(nm)} differ from '
                                       f'{list(self._limits.names)}', fault=True)
        return t, None

    def _command_stamp(self, stamp: Any, t: float) -> Decision | None:
        problem = val.stamp_problem(stamp, t, self._profile.max_command_age_s,
                                    self._profile.future_tolerance_s)
        if problem:
            return self._reject_cmd(t, problem, f'stamp={stamp!r} now={t}')
        if self._cmd is not None and float(stamp) < self._cmd.stamp:
            return self._reject_cmd(t, 'out_of_order', f'stamp {stamp} < {self._cmd.stamp}')
        return None

    def _note_clamp(self, t: float, q: np.ndarray) -> None:
        if np.any(q < self._lo) or np.any(q > self._hi):
            self._log.record(t, 'clamped_position', 'target beyond limit - margin')

    def _store(self, t: float, cmd: _Command) -> Decision:
        if self._sm.state is not SafetyState.ARMED:
            self._log.bump('ignored_not_armed')
            return Decision(False, f'valid, but not armed ({self._sm.state.value}): ignored')
        self._cmd = cmd
        self._log.bump('accepted_commands')
        return Decision(True, 'ok')

    # ------------------------------------------------------------------ control cycle
    def update(self, now: float) -> SupervisorOutput:
        """One control period: check freshness, pick the target and return a safe command."""
        t = val.as_time(now)
        last = self._last_now
        if t is None or (last is not None and t < last):
            kind = 'clock_invalid' if t is None else 'clock_backwards'
            return self._clock_anomaly(last if t is None else t, kind,
                                       f'now={now!r} after {last!r}')
        if last is not None and t - last < MIN_DT_PERIODS * self._period:
            # Not advancing (or by a sliver too small to turn into a velocity): no new step.
            self._repeat_count += 1
            if self._repeat_count >= self._stall_cycles():
                return self._clock_anomaly(t, 'clock_stalled',
                                           f'now={t} repeated {self._repeat_count} times')
            return self._emit(t, 0.0, self._v.copy(), rebased=False)
        self._repeat_count = 0
        if last is None:
            dt = self._period
        else:
            dt = t - last
            if dt > OVERRUN_PERIODS * self._period:
                self._log.record(t, 'cycle_overrun', f'dt={dt:.6f}s')
            dt = min(dt, MAX_DT_PERIODS * self._period)
        self._last_now = t
        self._check_sources(t)
        if not self._commanding:
            # Not commanding the robot (never armed, or after a tracking fault): follow the
            # measured position so a published command never pulls the robot anywhere, but
            # (a) not inside a dead band, or a steady servo error (gravity sag) would become
            # the next command and the arm would creep, and (b) at most v_max * dt per cycle,
            # so one wrong reading cannot make the command jump.
            if self._meas_q is None:
                return self._emit(t, dt, None, rebased=False)
            self._rebase_pending = False
            if self._q is None:
                self._rebase(self._meas_q, t, None)
                return self._emit(t, dt, np.zeros(self._limits.count), rebased=True)
            gap = self._meas_q - self._q
            if np.max(np.abs(gap)) > MIRROR_DEADBAND_RAD:
                reach = self._eff.velocity * dt
                self._rebase(self._q + np.clip(gap, -reach, reach), t, None)
            return self._emit(t, dt, np.zeros(self._limits.count), rebased=True)
        if self._rebase_pending:
            self._rebase_pending = False
            return self._emit(t, dt, np.zeros(self._limits.count), rebased=True)
        if self._check_tracking(t):
            self._rebase_pending = False
            return self._emit(t, dt, np.zeros(self._limits.count), rebased=True)
        self._step(t, dt)
        return self._emit(t, dt, self._v.copy(), rebased=False)

    def _stall_cycles(self) -> int:
        # A clock that does not move for as long as the command timeout counts as stalled.
        return max(1, int(math.ceil(self._profile.command_timeout_s / self._period)))

    def _clock_anomaly(self, t: float | None, kind: str, detail: str) -> SupervisorOutput:
        """C16: hold where we are and reset filters; data from the old timeline is dropped."""
        self._log.record(0.0 if t is None else t, kind, detail)
        when = 0.0 if t is None else t
        self._sm.hold(when, kind.replace('_', ' '))
        self._cmd = None
        self._v = np.zeros(self._limits.count)
        self._a = np.zeros(self._limits.count)
        self._history.clear()
        if kind != 'clock_stalled':
            # Stamps from before a backwards jump would look fresh (or future) for a while.
            self._meas_stamp = None
            self._sensor_stamps.clear()
        if t is not None:
            self._last_now = t
        self._repeat_count = 0
        return self._emit(when, 0.0, self._v.copy(), rebased=False)

    def _age(self, source: str, t: float) -> float | None:
        stamp = self._meas_stamp if source == 'joint_states' else self._sensor_stamps.get(source)
        return None if stamp is None else t - stamp

    def _check_sources(self, t: float) -> None:
        """Staleness (C7), latency slowdown (C8), command timeout (C1), inhibits."""
        scale = 1.0
        frac = self._profile.sensor_slowdown_fraction
        for source in ('joint_states',) + self._required:
            timeout = self._profile.sensor_timeout(source)
            age = self._age(source, t)
            if age is None or age > timeout:
                if source not in self._stale:
                    self._stale.add(source)
                    self._log.record(t, 'sensor_stale', f'{source} age={age}')
                if self._sm.hold(t, f'{source} stale'):
                    self._cmd = None
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
            self._cmd = None
        elif self._cmd is not None and t > self._cmd.expiry:
            self._log.record(t, 'timeouts', f'{self._cmd.kind} command expired at '
                             f'{self._cmd.expiry:.6f}')
            self._sm.hold(t, 'command timeout')
            self._cmd = None

    def _check_tracking(self, t: float) -> bool:
        """C11: measured position away from every recent command by more than the tolerance
        -> FAULT and hold at the measured position. Returns True when it tripped."""
        if self._sm.state not in (SafetyState.ARMED, SafetyState.HOLDING):
            return False
        if (not self._commanding or self._meas_q is None or self._meas_stamp is None
                or self._q is None):
            return False
        if 'joint_states' in self._stale:
            return False
        horizon = self._profile.sensor_timeout('joint_states') + self._profile.tracking_window_s
        while len(self._history) > 1 and self._history[0][0] < t - horizon:
            self._history.popleft()
        since = self._meas_stamp - self._profile.tracking_window_s
        recent = [q for (tq, q) in self._history if tq >= since]
        recent.append(self._q)
        block = np.vstack(recent)
        err = np.maximum(block.min(axis=0) - self._meas_q, self._meas_q - block.max(axis=0))
        worst = int(np.argmax(err))
        if err[worst] <= self._profile.tracking_error_tolerance_rad:
            return False
        detail = (f'tracking error {self._limits.names[worst]} {err[worst]:.4f} rad > '
                  f'{self._profile.tracking_error_tolerance_rad} rad')
        self._log.record(t, 'tracking_faults', detail)
        self._sm.fault(t, detail)
        self._cmd = None
        # Stop where the command is; update() then walks it to the measured position at no
        # more than v_max * dt per cycle (a wrong reading must not make the command jump).
        self._rebase(self._q, t, None)
        self._commanding = False
        return True

    def _rebase(self, q_meas: np.ndarray, t: float, p: np.ndarray | None) -> None:
        """Restart the output from the measured position (C12), at rest."""
        eff = self._eff
        q = np.clip(q_meas, eff.lower, eff.upper)
        self._q = q
        self._v = np.zeros(self._limits.count)
        self._a = np.zeros(self._limits.count)
        self._lo = np.maximum(eff.lower, np.minimum(eff.safe_lower, q))
        self._hi = np.minimum(eff.upper, np.maximum(eff.safe_upper, q))
        self._p = p if p is not None else (self._tool_pos(q) if self._fk is not None else None)
        self._reset_box(self._p)
        self._history.clear()
        self._history.append((t, q.copy()))
        self._rebase_pending = True

    def _reset_box(self, p: np.ndarray | None) -> None:
        box = self._profile.workspace
        if box is None or self._fk is None:
            self._box_lo = self._box_hi = None
            return
        lo, hi = np.array(box.min_xyz), np.array(box.max_xyz)
        if p is not None:
            # Armed outside the box: allow only motion that does not go further out.
            lo, hi = np.minimum(lo, p), np.maximum(hi, p)
        self._box_lo, self._box_hi = lo, hi

    def _reference(self, t: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Where the active command wants the joints one period from now, and how fast the
        reference moves there (0 for a single target)."""
        cmd = self._cmd
        assert cmd is not None
        if cmd.kind != 'trajectory':
            return cmd.values, cmd.ref_velocity
        s = t + dt - cmd.stamp
        q_next = self._sample(cmd, s)
        return q_next, (q_next - self._sample(cmd, s - dt)) / dt

    @staticmethod
    def _sample(cmd: _Command, s: float) -> np.ndarray:
        """Trajectory position `s` seconds after its stamp (held before the first / after the
        last point)."""
        ts, pts, vel = cmd.times, cmd.points, cmd.point_velocities
        assert ts is not None and pts is not None
        if s <= ts[0]:
            return pts[0]
        if s >= ts[-1]:
            return pts[-1]
        i = int(np.searchsorted(ts, s, side='right')) - 1
        h = ts[i + 1] - ts[i]
        u = (s - ts[i]) / h
        linear = pts[i] + u * (pts[i + 1] - pts[i])
        if vel is None:
            return linear
        h00 = 2 * u ** 3 - 3 * u ** 2 + 1
        h10 = u ** 3 - 2 * u ** 2 + u
        h01 = -2 * u ** 3 + 3 * u ** 2
        h11 = u ** 3 - u ** 2
        with np.errstate(all='ignore'):
            cubic = h00 * pts[i] + h10 * h * vel[i] + h01 * pts[i + 1] + h11 * h * vel[i + 1]
        return cubic if np.all(np.isfinite(cubic)) else linear

    def _step(self, t: float, dt: float) -> None:
        """Advance the output one period within every limit."""
        eff = self._eff
        q, v, a = self._q, self._v, self._a
        assert q is not None
        amax, vmax = eff.acceleration, eff.velocity
        lo, hi = self._lo, self._hi
        armed = self._sm.state is SafetyState.ARMED and self._cmd is not None
        with np.errstate(all='ignore'):
            if armed and self._cmd.kind == 'velocities':  # type: ignore[union-attr]
                vdes = self._cmd.values.copy()  # type: ignore[union-attr]
            elif armed:
                q_ref, v_ref = self._reference(t, dt)
                target = np.clip(q_ref, lo, hi)
                # A clamped target is a point to stop at, not one passing through.
                v_ref = np.where(target != q_ref, 0.0, v_ref)
                # Error to the reference now (the target is where it will be in one period).
                err = target - v_ref * dt - q
                # Correction on top of the reference velocity: the fastest that still settles
                # on the reference without overshoot, or the exact remainder when it is small
                # enough to stop from in the next cycle.
                if eff.jerk is None:
                    reach = np.maximum(_stop_speed(np.abs(err), amax, dt),
                                       np.minimum(np.abs(err) / dt, amax * dt))
                else:
                    # With a jerk limit the deceleration builds up over a/j seconds: brake at
                    # half the acceleration limit and allow for that ramp.
                    brake = 0.5 * amax
                    reach = np.maximum(_stop_speed(np.abs(err), brake, dt + brake / eff.jerk),
                                       np.minimum(np.abs(err) / dt, eff.jerk * dt * dt))
                correction = err / dt
                vdes = v_ref + correction * self._uniform_scale(correction, reach)
            else:
                vdes = np.zeros_like(q)
            # Velocity limit (with sensor-latency slowdown), scaled uniformly to keep direction.
            cap = vmax * self._speed_scale
            s = self._uniform_scale(vdes, cap)
            if s < 1.0 and self._speed_scale >= 1.0:
                self._log.bump('limited_velocity')
            vdes = vdes * s
            # Soft band: speed toward a bound shrinks linearly inside the band, down to a small
            # floor so a clamped target on the bound is reached (the hard braking bound below
            # still stops the joint exactly there).
            if eff.soft_band > 0.0:
                floor = SOFT_BAND_MIN_SPEED_FRACTION
                up = vmax * np.clip((hi - q) / eff.soft_band, floor, 1.0)
                dn = vmax * np.clip((q - lo) / eff.soft_band, floor, 1.0)
                banded = np.clip(vdes, -dn, up)
                if np.any(banded != vdes):
                    self._log.bump('soft_limit_slowdown')
                vdes = banded
            # Acceleration (and optional jerk) limit.
            if eff.jerk is None:
                v_new = np.clip(vdes, v - amax * dt, v + amax * dt)
                if np.any(np.abs(v_new - vdes) > 1e-9):
                    self._log.bump('limited_accel')
            else:
                # Same braking rule one derivative up: the acceleration toward the wanted
                # velocity is only as large as can be ramped back to zero without overshoot.
                jerk = eff.jerk
                ev = vdes - v
                amag = np.minimum(amax, np.maximum(_stop_speed(np.abs(ev), jerk, dt),
                                                   np.minimum(np.abs(ev) / dt, jerk * dt)))
                a_new = np.clip(np.sign(ev) * amag, a - jerk * dt, a + jerk * dt)
                a_new = np.clip(a_new, -amax, amax)
                v_new = v + a_new * dt
                if np.any(np.abs(v_new - vdes) > 1e-9):
                    self._log.bump('limited_accel')
                if not armed:
                    # Stopping: the jerk filter may neither speed a joint up nor swing it past
                    # zero into reverse; the stop wins over smoothness.
                    same = np.sign(v_new) == np.sign(v)
                    v_new = np.where(same, np.sign(v) * np.minimum(np.abs(v_new), np.abs(v)),
                                     0.0)
            # Hard bounds: stay able to stop before the position bounds; never above v_max
            # (after v_max was tightened mid-motion the speed comes down at a_max, no jump).
            vlim = np.maximum(vmax, np.abs(v) - amax * dt)
            up = np.minimum(vlim, _stop_speed(hi - q, amax, dt))
            dn = np.minimum(vlim, _stop_speed(q - lo, amax, dt))
            bounded = np.clip(v_new, -dn, up)
            if np.any(np.abs(bounded - v_new) > 1e-9):
                self._log.bump('braking_to_limit')
            v_new = bounded
            q_new = np.clip(q + v_new * dt, lo, hi)
        if not np.all(np.isfinite(q_new)):
            # Defensive: never emit a non-finite value; stand still instead.
            self._log.record(t, 'nonfinite_output_blocked', '')
            q_new = q.copy()
        v_new = (q_new - q) / dt
        p_new = None
        if self._fk is not None:
            q_new, p_new = self._cartesian(t, q, q_new, dt)
            v_new = (q_new - q) / dt
        self._a = (v_new - v) / dt
        self._v = v_new
        self._q = q_new
        if p_new is not None:
            self._p = p_new
        # Ratchet: once a joint (or the tool) is back inside the safe range, it stays inside.
        self._lo = np.maximum(eff.lower, np.minimum(eff.safe_lower, np.maximum(self._lo, q_new)))
        self._hi = np.minimum(eff.upper, np.maximum(eff.safe_upper, np.minimum(self._hi, q_new)))
        box = self._profile.workspace
        if box is not None and self._box_lo is not None and self._p is not None:
            self._box_lo = np.minimum(np.array(box.min_xyz), np.maximum(self._box_lo, self._p))
            self._box_hi = np.maximum(np.array(box.max_xyz), np.minimum(self._box_hi, self._p))
        self._history.append((t, q_new.copy()))

    @staticmethod
    def _uniform_scale(vdes: np.ndarray, cap: np.ndarray) -> float:
        """Largest s <= 1 with |s * vdes| <= cap for every joint."""
        mag = np.abs(vdes)
        over = mag > cap
        if not np.any(over):
            return 1.0
        with np.errstate(all='ignore'):
            ratios = np.where(over, cap / mag, 1.0)
        s = float(np.min(ratios))
        return s if math.isfinite(s) and s > 0.0 else 0.0

    def _tool_pos(self, q: np.ndarray) -> np.ndarray | None:
        """Tool position from the injected FK, or None when it fails or is not finite."""
        assert self._fk is not None
        try:
            out = np.asarray(self._fk(np.array(q, dtype=np.float64)), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a failing FK must hold the robot, not crash
            self._log.record(self._last_now or 0.0, 'fk_error', repr(exc))
            return None
        if out.shape == (4, 4):
            p = out[:3, 3]
        elif out.shape == (3,):
            p = out
        else:
            self._log.record(self._last_now or 0.0, 'fk_error', f'shape {out.shape}')
            return None
        return p.copy() if np.all(np.isfinite(p)) else None

    def _cartesian(self, t: float, q: np.ndarray, q_new: np.ndarray, dt: float
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Shorten the step so the tool stays in the box, under the speed limit, and slows
        down near the box faces. Returns the (possibly shorter) step end and its tool point."""
        prof = self._profile
        if self._p is None:
            self._p = self._tool_pos(q)
        p0 = self._p
        if p0 is None:
            self._sm.fault(t, 'fk failed')
            self._cmd = None
            return q.copy(), None
        dq = q_new - q
        if not np.any(dq):
            return q_new, p0
        vtool = prof.max_tool_speed
        band = prof.workspace_slowdown_m
        box_lo, box_hi = self._box_lo, self._box_hi

        def failures(p: np.ndarray | None) -> set[str]:
            if p is None:
                return {'fk'}
            bad = set()
            if box_lo is not None and box_hi is not None:
                if np.any(p < box_lo) or np.any(p > box_hi):
                    bad.add('workspace_limited')
                elif vtool is not None and band > 0.0:
                    u = (p - p0) / dt
                    room = np.where(u > 0.0, box_hi - p0, p0 - box_lo)
                    cap = vtool * np.clip(room / band, 0.0, 1.0)
                    if np.any(np.abs(u) > cap * (1.0 + 1e-9) + _EPS):
                        bad.add('workspace_slowdown')
            if vtool is not None and np.linalg.norm(p - p0) > vtool * dt * (1.0 + 1e-9):
                bad.add('tool_speed_limited')
            return bad

        p1 = self._tool_pos(q_new)
        bad = failures(p1)
        if not bad:
            return q_new, p1
        for kind in bad - {'fk'}:
            self._log.bump(kind)
        if 'fk' in bad:
            self._log.record(t, 'fk_error', 'fk failed on a candidate step')
        # Over one short step the tool moves almost along a line: take the largest fraction
        # that satisfies the linearised constraints, check it with the real FK, and only fall
        # back to bisection when the curvature makes it fail.
        if p1 is not None:
            guess = self._linear_fraction(p0, p1 - p0, dt) * 0.999
            for _ in range(3):
                pg = self._tool_pos(q + guess * dq)
                if not failures(pg):
                    return q + guess * dq, pg
                guess *= 0.8
        lo_a, hi_a, p_best = 0.0, 1.0, p0
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo_a + hi_a)
            pm = self._tool_pos(q + mid * dq)
            if failures(pm):
                hi_a = mid
            else:
                lo_a, p_best = mid, pm
        return q + lo_a * dq, p_best

    def _linear_fraction(self, p0: np.ndarray, dp: np.ndarray, dt: float) -> float:
        """Largest fraction of a straight tool step dp from p0 that keeps the tool in the box,
        under the slowdown caps near its faces and under the speed limit."""
        prof = self._profile
        alpha = 1.0
        vtool = prof.max_tool_speed
        dist = float(np.linalg.norm(dp))
        if vtool is not None and dist > 0.0:
            alpha = min(alpha, vtool * dt / dist)
        if self._box_lo is not None and self._box_hi is not None:
            room = np.where(dp > 0.0, self._box_hi - p0, p0 - self._box_lo)
            moving = np.abs(dp) > 0.0
            with np.errstate(divide='ignore', invalid='ignore'):
                alpha = min(alpha, float(np.min(np.where(moving, room / np.abs(dp), np.inf))))
                band = prof.workspace_slowdown_m
                if vtool is not None and band > 0.0:
                    cap = vtool * np.clip(room / band, 0.0, 1.0) * dt
                    alpha = min(alpha, float(np.min(np.where(moving, cap / np.abs(dp), np.inf))))
        return max(0.0, alpha)

    def _beyond_hard_limits(self, q: np.ndarray) -> str:
        tol = MEASURED_LIMIT_TOLERANCE_RAD
        bad = [f'{n}={v:.4f}' for n, v, lo, hi in zip(self._limits.names, q, self._limits.lower,
                                                       self._limits.upper)
               if v < lo - tol or v > hi + tol]
        return ', '.join(bad)

    def _emit(self, t: float, dt: float, velocities: np.ndarray | None,
              rebased: bool) -> SupervisorOutput:
        positions = None if self._q is None else self._q.copy()
        vel = None if positions is None or velocities is None else velocities
        tool = None if self._p is None else self._p.copy()
        for arr in (positions, vel, tool):
            if arr is not None:
                arr.setflags(write=False)
        out = SupervisorOutput(time=float(t), dt=float(dt), state=self._sm.state,
                               reason=self._sm.reason, positions=positions, velocities=vel,
                               rebased=rebased, active=self._commanding,
                               speed_scale=self._speed_scale,
                               tool_position=tool)
        self._last_output = out
        return out
