"""The joint-space safety supervisor between every command source and the robot (ROS-free).

It is NOT a safety-rated function: it lowers how often the certified layer (FANUC DCS, Yaskawa
FSU, a safety PLC, the hard-wired e-stop) is demanded, and it can only request a controlled
deceleration to a hold (stop category 2-like). Its "ESTOP" state is a latched software stop
request, not an emergency stop.

Use: feed measurements and commands as they arrive (`on_joint_state`, `on_sensor`,
`on_command_positions` / `_trajectory` / `_velocities`), call `update(now)` once per control
period and send `SupervisorOutput.positions` to the robot. Time is always passed in (float
seconds, the same clock as the message stamps); nothing here reads a clock or starts a thread.

The parts, each readable and tested on its own:
  intake.py          every message parsed whole or rejected whole (C2-C4), trajectories as the
                     core JointTrajectory type, the trajectory rule
  joint_limiter.py   one step of position / velocity / acceleration / jerk limiting (pure)
  cartesian.py       workspace box and tool speed, braking early enough for the box
  state_machine.py   ARMED / HOLDING / FAULT / ESTOP and the intervention log
  supervisor_base.py requests, watched sensors, clock and timeouts shared with the mobile base
This module joins them: it keeps the measured state, the active command and the output state,
and checks the tracking error (C11).

What `update` guarantees for every output with dt > 0 (checked by test_safety_fuzz.py):
  * every value is finite and inside the URDF bounds; inside [lower + margin, upper - margin]
    unless the robot was armed inside the margin band, in which case that joint never moves
    further out (only back toward the safe range);
  * |dq| <= v_max * dt (right after v_max is tightened mid-motion the speed comes down at
    a_max instead of jumping); |dq/dt - previous| <= a_max * dt, except where staying inside
    the limits wins over smoothness: a clock stall or a tracking fault stops the output where
    it is, and the tool limits may cut even the braking step short (counted as
    'cartesian_overrode_accel'; see cartesian.py for when). A jerk limit, when set, holds
    while tracking away from the bounds and gives way to stops (it never delays one);
  * tool frame inside the workspace box and tool speed <= max_tool_speed (with an FK);
  * outside ARMED no command is followed: the output decelerates to a hold at a_max, so after
    a stop request the output moves at most v^2 / (2 a_max) per joint (v: its speed then);
  * a command of any kind is followed only until command_timeout_s after its stamp (whole
    trajectories only when the profile allows them, up to trajectory_horizon_s).
Outputs flagged `rebased` restart from the measured position: the first output after arming,
a tracking-error fault (the command moves back to where the blocked robot actually is), and
every output while the supervisor is not commanding the robot (`active` False: never armed, or
after a tracking fault until the next arm), when it mirrors the measured position so that a
published command never pulls the robot anywhere.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety import intake
from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.cartesian import limit_tool_step, ToolLimits
from noetra_ros.core.safety.joint_limiter import (gentle_braking_velocity, JointMotion,
                                                  limit_joint_step, tracking_velocity)
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.profile import EffectiveJointLimits, SafetyProfile
from noetra_ros.core.safety.state_machine import DEFAULT_EVENT_CAPACITY, Decision, SafetyState
from noetra_ros.core.safety.supervisor_base import CLOCK_ANOMALIES, SupervisorBase
from noetra_ros.core.trajectory import JointTrajectory

FkFunction = Callable[[np.ndarray], Any]

DEFAULT_PERIOD_S = 0.004  # 250 Hz: MotoROS2 real-time mode runs at 4 ms (interfaces.md)
# Joint states a hair beyond the URDF bound are encoder noise, not a broken robot.
MEASURED_LIMIT_TOLERANCE_RAD = 1e-3
MAX_TRAJECTORY_POINTS = intake.MAX_TRAJECTORY_POINTS
# While not commanding, the output follows the measured position only when it differs by more
# than this: a steady servo error (gravity sag, ~0.1 mrad) must not turn into a creeping command.
MIRROR_DEADBAND_RAD = 2e-3


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
    # What this cycle's step did, for the audit trail (core/audit.py): the limits that acted
    # (counter names) and the stamp of the command followed (None: none was followed).
    interventions: frozenset[str] = frozenset()
    command_stamp: float | None = None

    @property
    def has_command(self) -> bool:
        """True when there is a position command to send."""
        return self.positions is not None


@dataclass(frozen=True, eq=False)
class _ActiveCommand:
    """The command being followed."""

    kind: str                      # 'positions' | 'trajectory' | 'velocities'
    stamp: float
    expiry: float
    values: np.ndarray             # target positions, or joint velocities, or the last point
    reference_velocity: np.ndarray | None = None  # positions: rate of the command stream
    trajectory: JointTrajectory | None = None


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


class SafetySupervisor(SupervisorBase):
    """Validates inputs, tracks state, and turns commands into safe joint position commands."""

    OWN_SOURCES = ('joint_states',)

    def __init__(self, limits: JointLimits, profile: SafetyProfile, fk: Any = None,
                 period_s: float = DEFAULT_PERIOD_S, required_sensors: Iterable[str] = (),
                 event_capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        """Limits and FK are injected so the supervisor does not depend on a URDF parser.

        Raises ConfigError when the profile does not fit the limits, when the profile sets a
        workspace box or tool speed but no FK is given, or when period_s is not > 0.
        """
        if not isinstance(limits, JointLimits):
            raise ConfigError(f'limits={limits!r} must be a JointLimits')
        super().__init__(profile, period_s, required_sensors, event_capacity)
        self._fk = _as_fk(fk)
        self._check_fk_needed(profile)
        self._limits = limits
        self._eff = EffectiveJointLimits.build(limits, profile)
        n = limits.count
        # measurements (the joint_states stamp is kept with the other sources' stamps)
        self._meas_q: np.ndarray | None = None
        self._meas_qd: np.ndarray | None = None
        # command
        self._cmd: _ActiveCommand | None = None
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
        self._arm_tool: np.ndarray | None = None  # tool point found while checking an arm
        # True from an accepted arm until a tracking fault: the output is ours to move.
        self._commanding = False
        self._history: deque[tuple[float, np.ndarray]] = deque(maxlen=10000)
        self._last_output: SupervisorOutput | None = None
        # Limits that acted in the current cycle's step and the command it followed (audit).
        self._acted: set[str] = set()
        self._followed: float | None = None

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
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of every array in and out."""
        return self._limits.names

    @property
    def limits(self) -> JointLimits:
        """The URDF limits in force."""
        return self._limits

    @property
    def effective_limits(self) -> EffectiveJointLimits:
        """The per-joint limits enforced (URDF tightened by the profile)."""
        return self._eff

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
    def measured_positions(self) -> np.ndarray | None:
        """Latest accepted joint positions (joint order)."""
        return None if self._meas_q is None else self._meas_q.copy()

    @property
    def last_output(self) -> SupervisorOutput | None:
        """What the last `update` returned."""
        return self._last_output

    # ------------------------------------------------------------------ requests
    def _arm_blockers(self, t: float, blocked: bool) -> list[str]:
        """Beyond the shared checks: the robot within its URDF bounds, no deceleration
        running, and the tool position computable (so the next output starts there)."""
        blockers = []
        if self._meas_q is not None:
            out = self._beyond_hard_limits(self._meas_q)
            if out:
                blockers.append(f'measured position beyond URDF limits ({out})')
        if self._q is not None and np.any(self._v != 0.0):
            blockers.append('still decelerating')
        self._arm_tool = None
        if self._fk is not None and self._meas_q is not None and not (blocked or blockers):
            self._arm_tool = self._tool_pos(self._meas_q)
            if self._arm_tool is None:
                blockers.append('fk failed at the measured position')
        return blockers

    def _on_armed(self, t: float) -> None:
        # The next output equals the measured position (C12: no jump on activation).
        assert self._meas_q is not None
        self._rebase(self._meas_q, t, self._arm_tool)
        self._commanding = True
        self._cmd = None

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

    def _prepare_profile(self, profile: SafetyProfile) -> EffectiveJointLimits:
        eff = EffectiveJointLimits.build(self._limits, profile)
        self._check_fk_needed(profile)
        return eff

    def _relaxations(self, prepared: EffectiveJointLimits) -> list[str]:
        return self._eff.relaxations(prepared)

    def _apply_profile(self, prepared: EffectiveJointLimits) -> None:
        self._apply_limits(prepared)

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
        t = intake.check_time(now, 'joint_state')
        if isinstance(t, intake.Rejection):
            return self._reject(0.0, t)
        sample = intake.parse_joint_state(names, positions, velocities, stamp, t,
                                          self._limits.names, self._profile,
                                          self._sensor_stamps.get('joint_states'))
        if isinstance(sample, intake.Rejection):
            return self._reject(t, sample)
        if sample.velocities_ignored:
            self._log.bump('joint_state_velocities_ignored')
        self._meas_q = sample.positions
        self._meas_qd = sample.velocities
        self._sensor_stamps['joint_states'] = sample.stamp
        beyond = self._beyond_hard_limits(self._meas_q)
        if beyond:
            self._log.record(t, 'measured_beyond_limits', beyond)
            if self._sm.fault(t, f'measured position beyond URDF limits ({beyond})'):
                self._cmd = None
        return Decision(True, 'ok')

    def on_command_positions(self, names: Sequence[str] | None, positions: Sequence[float],
                             stamp: float, now: float) -> Decision:
        """A joint position target. `names` None means the supervisor's joint order
        (std_msgs/Float64MultiArray); otherwise it must equal that order exactly. Followed
        until command_timeout_s after its stamp."""
        t = intake.check_time(now)
        if isinstance(t, intake.Rejection):
            return self._reject(0.0, t)
        cmd = intake.parse_positions(names, positions, stamp, t, self._limits, self._profile,
                                     self._last_command_stamp())
        if isinstance(cmd, intake.Rejection):
            return self._reject(t, cmd)
        q, st = cmd.positions, cmd.stamp
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
        return self._store(t, _ActiveCommand('positions', st, st + self._profile.command_timeout_s,
                                             q, reference_velocity=ref_velocity))

    def on_command_trajectory(self, names: Sequence[str] | None, times: Sequence[float],
                              positions: Sequence[Sequence[float]],
                              velocities: Sequence[Sequence[float]] | None,
                              stamp: float, now: float) -> Decision:
        """A trajectory (JointTrajectory fields): `times` are seconds from `stamp`, strictly
        increasing and >= 0; positions (K, N); velocities (K, N), empty or None.

        It is sampled with the core JointTrajectory interpolation (cubic with velocities,
        linear without; point 0 before its time, the last point after its end) one period
        ahead, and the limiter follows that reference. It is followed until
        command_timeout_s after its stamp, like every command: a source that goes silent
        mid-trajectory does not finish it. Only a profile with allow_whole_trajectories runs
        a trajectory to its last point (+ command_timeout_s), and refuses (holds) one whose
        last point lies beyond trajectory_horizon_s.
        """
        t = intake.check_time(now)
        if isinstance(t, intake.Rejection):
            return self._reject(0.0, t)
        cmd = intake.parse_trajectory(names, times, positions, velocities, stamp, t,
                                      self._limits, self._profile, self._last_command_stamp())
        if isinstance(cmd, intake.Rejection):
            return self._reject(t, cmd)
        traj, st = cmd.trajectory, cmd.stamp
        self._note_clamp(t, traj.positions)
        expiry = st + self._profile.command_timeout_s
        if cmd.whole:
            expiry += traj.duration
        return self._store(t, _ActiveCommand('trajectory', st, expiry, traj.positions[-1],
                                             trajectory=traj))

    def on_command_velocities(self, names: Sequence[str] | None, velocities: Sequence[float],
                              stamp: float, now: float) -> Decision:
        """A joint velocity command (rad/s), held until command_timeout_s after its stamp."""
        t = intake.check_time(now)
        if isinstance(t, intake.Rejection):
            return self._reject(0.0, t)
        cmd = intake.parse_velocities(names, velocities, stamp, t, self._limits, self._profile,
                                      self._last_command_stamp())
        if isinstance(cmd, intake.Rejection):
            return self._reject(t, cmd)
        if np.any(np.abs(cmd.velocities) > self._eff.velocity):
            self._log.record(t, 'limited_velocity', 'velocity command above the limit')
        return self._store(t, _ActiveCommand('velocities', cmd.stamp,
                                             cmd.stamp + self._profile.command_timeout_s,
                                             cmd.velocities))

    # ------------------------------------------------------------------ input helpers
    def reject(self, now: float, rejection: intake.Rejection) -> Decision:
        """A message refused before it reached the supervisor (SafetyCell's joint-name map):
        counted and applied like the supervisor's own rejections."""
        return self._reject(now, rejection)

    def _reject(self, t: float, rejection: intake.Rejection) -> Decision:
        """Count a rejected message and apply its consequence (hold or fault)."""
        prefix = 'joint_state_' if rejection.what == 'joint_state' else ''
        self._log.record(t, f'{prefix}rejected_{rejection.code}', rejection.detail)
        if rejection.consequence is intake.Consequence.HOLD:
            if self._sm.hold(t, rejection.state_reason):
                self._cmd = None
        elif rejection.consequence is intake.Consequence.FAULT:
            if self._sm.fault(t, rejection.state_reason):
                self._cmd = None
        return Decision(False, rejection.reason)

    def _last_command_stamp(self) -> float | None:
        return None if self._cmd is None else self._cmd.stamp

    def _note_clamp(self, t: float, q: np.ndarray) -> None:
        if np.any(q < self._lo) or np.any(q > self._hi):
            self._log.record(t, 'clamped_position', 'target beyond limit - margin')

    def _store(self, t: float, cmd: _ActiveCommand) -> Decision:
        if self._sm.state is not SafetyState.ARMED:
            self._log.bump('ignored_not_armed')
            return Decision(False, f'valid, but not armed ({self._sm.state.value}): ignored')
        self._cmd = cmd
        self._log.bump('accepted_commands')
        return Decision(True, 'ok')

    # ------------------------------------------------------------------ base hooks
    def _drop_command(self) -> None:
        self._cmd = None

    def _command_expiry(self) -> float | None:
        return None if self._cmd is None else self._cmd.expiry

    def _command_description(self) -> str:
        kind = 'command' if self._cmd is None else f'{self._cmd.kind} command'
        if self._cmd is not None and self._cmd.kind == 'trajectory' and not (
                self._profile.allow_whole_trajectories):
            kind += ' (whole trajectories are not allowed: it lives command_timeout_s)'
        return kind

    def _on_clock_anomaly(self, kind: str) -> None:
        # Without a clock there is nothing to decelerate against: the output stops here.
        self._v = np.zeros(self._limits.count)
        self._a = np.zeros(self._limits.count)
        self._history.clear()

    # ------------------------------------------------------------------ control cycle
    def update(self, now: float) -> SupervisorOutput:
        """One control period: check freshness, pick the target and return a safe command."""
        clock = self._advance_clock(now)
        t, dt = clock.time, clock.dt
        if clock.kind != 'repeated':
            # A repeated time re-sends the last output: it keeps that output's audit facts.
            self._acted = set()
            self._followed = None
        if clock.kind in CLOCK_ANOMALIES or clock.kind == 'repeated':
            return self._emit(t, 0.0, self._v.copy(), rebased=False)
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

    def _check_tracking(self, t: float) -> bool:
        """C11: measured position away from every recent command by more than the tolerance
        -> FAULT and hold at the measured position. Returns True when it tripped."""
        if self._sm.state not in (SafetyState.ARMED, SafetyState.HOLDING):
            return False
        meas_stamp = self._sensor_stamps.get('joint_states')
        if (not self._commanding or self._meas_q is None or meas_stamp is None
                or self._q is None):
            return False
        if 'joint_states' in self._stale:
            return False
        horizon = self._profile.sensor_timeout('joint_states') + self._profile.tracking_window_s
        while len(self._history) > 1 and self._history[0][0] < t - horizon:
            self._history.popleft()
        since = meas_stamp - self._profile.tracking_window_s
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

    def _reference(self, cmd: _ActiveCommand, t: float, dt: float
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Where the active command wants the joints one period from now, and how fast the
        reference moves there (its average velocity over that period)."""
        if cmd.trajectory is None:
            assert cmd.reference_velocity is not None
            return cmd.values, cmd.reference_velocity
        s = t + dt - cmd.stamp
        with np.errstate(all='ignore'):
            q_next = cmd.trajectory.sample(s)[0]
            return q_next, (q_next - cmd.trajectory.sample(s - dt)[0]) / dt

    def _step(self, t: float, dt: float) -> None:
        """Advance the output one period within every limit: the joint limiter, then (with an
        FK) the tool limits, choosing between the tracking step and the braking step."""
        eff = self._eff
        assert self._q is not None
        motion = JointMotion(self._q, self._v, self._a)
        lo, hi = self._lo, self._hi
        cmd = self._cmd if self._sm.state is SafetyState.ARMED else None
        if cmd is None:
            wanted = np.zeros_like(self._q)
        elif cmd.kind == 'velocities':
            wanted = cmd.values
        else:
            q_ref, v_ref = self._reference(cmd, t, dt)
            wanted = tracking_velocity(self._q, q_ref, v_ref, eff, lo, hi, dt)
            if np.any(q_ref < lo) or np.any(q_ref > hi):
                # Counted once per message at intake; this marks every cycle it was clamped.
                self._acted.add('clamped_position')
        if cmd is not None:
            self._followed = cmd.stamp
            if self._speed_scale < 1.0:
                self._acted.add('sensor_slowdown')
        step = limit_joint_step(motion, wanted, eff, lo, hi, dt, self._speed_scale,
                                stopping=cmd is None)
        self._acted.update(step.interventions)
        for kind in step.interventions:
            if kind == 'nonfinite_output_blocked':
                self._log.record(t, kind, '')
            else:
                self._log.bump(kind)
        q_new = step.motion.position
        p_new = None
        if self._fk is not None:
            scale = self._speed_scale

            def brake() -> np.ndarray:
                if cmd is None:
                    return step.motion.position  # already the braking step
                return limit_joint_step(motion, np.zeros_like(motion.position), eff, lo, hi,
                                        dt, scale, stopping=True).motion.position

            def gentle() -> np.ndarray:
                slower = gentle_braking_velocity(motion.velocity, eff, dt)
                return limit_joint_step(motion, slower, eff, lo, hi, dt, scale).motion.position
            q_new, p_new = self._cartesian(t, q_new, brake, gentle, dt)
        q = self._q
        v_new = (q_new - q) / dt
        self._a = (v_new - self._v) / dt
        self._v = v_new
        self._q = q_new
        if p_new is not None:
            self._p = p_new
        # Ratchet: once a joint (or the tool) is back inside the safe range, it stays inside.
        self._lo = np.maximum(eff.lower, np.minimum(eff.safe_lower, np.maximum(self._lo, q_new)))
        self._hi = np.minimum(eff.upper, np.maximum(eff.safe_upper, np.minimum(self._hi, q_new)))
        box = self._profile.workspace
        if (box is not None and self._box_lo is not None and self._box_hi is not None
                and self._p is not None):
            self._box_lo = np.minimum(np.array(box.min_xyz), np.maximum(self._box_lo, self._p))
            self._box_hi = np.maximum(np.array(box.max_xyz), np.minimum(self._box_hi, self._p))
        self._history.append((t, q_new.copy()))

    def _cartesian(self, t: float, track: np.ndarray, brake: Callable[[], np.ndarray],
                   gentle: Callable[[], np.ndarray], dt: float
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """The tool limits on this cycle's step (cartesian.py; the braking steps are computed
        only when it asks). Returns the step end and its tool point; an FK that fails at the
        current position faults and stands still."""
        assert self._q is not None
        q = self._q
        if self._p is None:
            self._p = self._tool_pos(q)
        if self._p is None:
            self._sm.fault(t, 'fk failed')
            self._cmd = None
            return q.copy(), None
        prof = self._profile
        limits = ToolLimits(self._box_lo, self._box_hi, prof.max_tool_speed,
                            prof.workspace_slowdown_m)
        step = limit_tool_step(self._tool_pos, q, self._p, track, brake, self._eff.acceleration,
                               dt, limits, gentle)
        self._acted.update(step.interventions)
        for kind in step.interventions:
            self._log.bump(kind)
        if step.accel_overridden:
            self._acted.add('cartesian_overrode_accel')
            self._log.bump('cartesian_overrode_accel')
        return step.position, step.tool

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
                               tool_position=tool, interventions=frozenset(self._acted),
                               command_stamp=self._followed)
        self._last_output = out
        return out
