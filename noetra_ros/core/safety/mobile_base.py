"""Twist supervisor for a mobile base (geometry_msgs/TwistStamped fields), ROS-free.

Same states, requests and rules as the joint supervisor (the shared part is SupervisorBase):
starts HOLDING, moves only after an explicit arm, a non-finite twist is rejected whole and
holds (stricter than diff_drive, which keeps the last valid twist), a stale twist decelerates
to zero within the acceleration limits (diff_drive `cmd_vel_timeout`, 0.5 s by default), a
watched sensor older than its slowdown threshold slows the base down and a stale one stops it,
and the output never exceeds the velocity limits. Limits are applied to the norms of the
linear and angular vectors, scaling uniformly so the direction of motion is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.safety.state_machine import DEFAULT_EVENT_CAPACITY, Decision, SafetyState
from noetra_ros.core.safety.supervisor_base import SupervisorBase

DEFAULT_BASE_PERIOD_S = 0.02  # 50 Hz, own choice (the node passes its real period)


@dataclass(frozen=True, eq=False)
class TwistOutput:
    """The twist to send for one control period."""

    time: float
    dt: float
    state: SafetyState
    reason: str
    linear: np.ndarray   # (3,) m/s
    angular: np.ndarray  # (3,) rad/s


@dataclass(frozen=True, eq=False)
class _Twist:
    linear: np.ndarray
    angular: np.ndarray
    stamp: float
    expiry: float


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


class TwistSupervisor(SupervisorBase):
    """Validates twists and returns a limited, smoothly stopping twist each period."""

    def __init__(self, profile: SafetyProfile, period_s: float = DEFAULT_BASE_PERIOD_S,
                 required_sensors: Iterable[str] = (),
                 event_capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        """`required_sensors` (e.g. 'odom', 'scan') must be fresh to arm and to stay armed."""
        super().__init__(profile, period_s, required_sensors, event_capacity)
        self._cmd: _Twist | None = None
        self._cmd_stamp = -math.inf
        self._lin = np.zeros(3)
        self._ang = np.zeros(3)

    # ------------------------------------------------------------------ base hooks
    def _drop_command(self) -> None:
        self._cmd = None

    def _command_expiry(self) -> float | None:
        return None if self._cmd is None else self._cmd.expiry

    def _command_description(self) -> str:
        return 'twist'

    def _command_timeout_s(self) -> float:
        return self._profile.base.cmd_timeout_s

    def _arm_blockers(self, t: float, blocked: bool) -> list[str]:
        return ['still decelerating'] if np.any(self._lin) or np.any(self._ang) else []

    def _on_clock_anomaly(self, kind: str) -> None:
        self._lin = np.zeros(3)
        self._ang = np.zeros(3)
        if kind == 'clock_backwards':
            # Stamps from the old timeline would look fresh for a while.
            self._cmd_stamp = -math.inf

    # ------------------------------------------------------------------ inputs
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
            self.hold(t, 'non-finite twist')
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
        self._cmd = _Twist(lin, ang, st, st + timeout)
        return Decision(True, 'ok')

    # ------------------------------------------------------------------ control cycle
    def update(self, now: float) -> TwistOutput:
        """One period: clock, timeout and staleness checks, then velocity and acceleration
        limits."""
        clock = self._advance_clock(now)
        if clock.kind != 'advanced':
            return self._emit(clock.time, 0.0)
        t, dt = clock.time, clock.dt
        self._check_sources(t)
        base = self._profile.base
        if self._cmd is None:
            lin_des, ang_des = np.zeros(3), np.zeros(3)
        else:
            lin_des = _limit_norm(self._cmd.linear, base.max_linear_velocity)
            ang_des = _limit_norm(self._cmd.angular, base.max_angular_velocity)
            if np.any(lin_des != self._cmd.linear) or np.any(ang_des != self._cmd.angular):
                self._log.bump('limited_velocity')
            # A late sensor slows the wish down; the acceleration limit below still applies.
            lin_des = lin_des * self._speed_scale
            ang_des = ang_des * self._speed_scale
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
