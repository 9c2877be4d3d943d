"""The runtime's MotoROS2 point-queue client, ROS-free: the supervisor's limited position target
every cycle -> start_point_queue_mode / queue_traj_point / stop_traj_mode calls.

MotoROS2 takes no command topics (driver-interfaces.md §2.2); a streaming client queues one
trajectory point at a time (§2.7) and the robot runs each segment from the previous point over
the difference of their `time_from_start` (one running timeline). The rules here:

- Start: `start_point_queue_mode`; READY -> the first point is the measured position with zero
  velocity at time 0 (MotoROS2 checks it against its commanded position, §2.6 code 204).
  114 (trajectory mode active) -> `stop_traj_mode`, then start again. Any other code is a fault
  named by its code; the start is retried every `retry_s` while nothing else is wrong, never
  while the robot reports an e-stop or an error (clearing those is an operator's decision).
- Stream: point k has time_from_start k * segment_s and is sent `lead_segments` segments before
  the robot needs it, so the robot always has that much queued and the target reaches the arm
  within about (lead_segments + 1) segments. Its positions are the freshest target, its
  velocities the difference to the previous point over one segment (a C1 cubic through the
  points; MotoROS2 requires velocities, §2.6), capped to `max_speed` when given (a faster point
  would be dropped by the robot and stall the queue).
- BUSY (4): the robot's queue is full; the same slot is sent again, with the then freshest
  target, on the next cycle. WRONG_MODE (2): the robot left point-queue mode (it does when motion
  becomes impossible, §2.7) -> start again. A first point refused (204 ...) is sent again with the
  then measured position. 5 / 6 / 215 mean the client is wrong (names, times): a fault.
- Stop (`hold`): queue the last point once more with zero velocity, wait until the robot has run
  the timeline, then `stop_traj_mode` (refused while motion is queued, so retried).
- One call at a time: every request waits for the previous answer (or `call_timeout_s`, which
  counts as a failure and starts over).

A request is a `PointQueueRequest`; the ROS layer (drivers/motoros2_client.py) makes the call and
hands the answer back with `on_answer`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from noetra_ros.core.drivers.motoros2 import InitTraj, MotionReady, QueueResult
from noetra_ros.core.errors import ConfigError

STATES = ('idle', 'starting', 'first_point', 'streaming', 'holding', 'stopping')
DEFAULT_SEGMENT_S = 0.04
DEFAULT_LEAD_SEGMENTS = 1
DEFAULT_RETRY_S = 1.0
# No answer within this: the call is lost (e.g. a non-Fast DDS client, driver-interfaces.md §2).
DEFAULT_CALL_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class PointQueueRequest:
    """One call: `service` 'start_point_queue_mode' | 'queue_traj_point' | 'stop_traj_mode';
    for queue_traj_point the point (driver joint order) and its time in nanoseconds."""

    serial: int
    service: str
    positions: tuple[float, ...] = ()
    velocities: tuple[float, ...] = ()
    time_from_start_ns: int = 0


class PointQueueStreamer:
    """Decides the next MotoROS2 call of a streaming client (module docstring).

    `joint_names`: the driver's names in the order positions are given. Per cycle:
    `step(now, target, measured)` -> a request or None; the answer goes to
    `on_answer(request, code, message, now)` (code: result_code.value, or 1 / 0 for
    stop_traj_mode's success true / false). `on_robot_status` feeds robot_status; `fault()`
    names what keeps the robot from moving (None when nothing does). `log` collects lines for
    the ROS layer to log (refusals with their code).
    """

    def __init__(self, joint_names: Sequence[str], segment_s: float = DEFAULT_SEGMENT_S, *,
                 lead_segments: int = DEFAULT_LEAD_SEGMENTS,
                 max_speed: Sequence[float] | None = None, retry_s: float = DEFAULT_RETRY_S,
                 call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> None:
        self.joint_names = tuple(str(n) for n in joint_names)
        if not self.joint_names:
            raise ConfigError('point queue client: no joint names')
        if not (math.isfinite(segment_s) and segment_s >= 0.001):
            raise ConfigError(f'point_queue_segment_s={segment_s}: must be >= 0.001 s '
                              '(MotoROS2 times are whole milliseconds)')
        if lead_segments < 0:
            raise ConfigError(f'lead_segments={lead_segments}: must be >= 0')
        self.segment_ns = int(round(segment_s * 1e9))
        self.segment_s = self.segment_ns * 1e-9
        self.lead_segments = int(lead_segments)
        self.max_speed = None if max_speed is None else np.asarray(max_speed, dtype=float)
        if self.max_speed is not None and self.max_speed.shape != (len(self.joint_names),):
            raise ConfigError(f'max_speed: one value per joint of {list(self.joint_names)}')
        self.retry_s = float(retry_s)
        self.call_timeout_s = float(call_timeout_s)
        self.state = 'idle'
        self.stop_requested = False
        self._serial = 0
        self._in_flight: PointQueueRequest | None = None
        self._sent_at = 0.0
        self._retry_at = -math.inf
        self._restart_after_stop = False
        # Timeline of the running queue: origin (our clock) of time_from_start 0, the next slot,
        # the last accepted point.
        self._origin = 0.0
        self._slot = 0
        self._last_positions: np.ndarray | None = None
        self._start_fault: str | None = None
        self._queue_fault: str | None = None
        self._status: tuple[bool, bool, bool, tuple[int, ...]] | None = None
        # robot_status said motion_possible since our start succeeded: only then does a false
        # one mean the robot stopped (a status sent before the start still says false).
        self._possible_since_start = False
        self.log: list[str] = []
        self.counters = {'starts': 0, 'points_sent': 0, 'points_accepted': 0, 'busy': 0,
                         'refused': 0, 'restarts': 0, 'timeouts': 0}

    # ------------------------------------------------------------------ inputs
    def on_robot_status(self, e_stopped: bool, in_error: bool, motion_possible: bool,
                        error_codes: Sequence[int]) -> None:
        self._status = (bool(e_stopped), bool(in_error), bool(motion_possible),
                        tuple(int(c) for c in error_codes))
        if motion_possible and self.state in ('first_point', 'streaming'):
            self._possible_since_start = True

    def fault(self) -> str | None:
        """Why the robot cannot follow (None: it can, or it has not said anything yet)."""
        reasons = []
        if self._status is not None:
            e_stopped, in_error, motion_possible, codes = self._status
            if e_stopped:
                reasons.append('robot_status: e_stopped')
            if in_error:
                reasons.append(f'robot_status: in_error codes {list(codes)}')
            if (not motion_possible and self._possible_since_start
                    and self.state in ('first_point', 'streaming')):
                reasons.append('robot_status: motion_possible false')
        reasons += [f for f in (self._start_fault, self._queue_fault) if f]
        return '; '.join(reasons) if reasons else None

    def _robot_blocked(self) -> bool:
        """E-stop or error: nothing the client may clear by itself."""
        return self._status is not None and (self._status[0] or self._status[1])

    def hold(self) -> None:
        """Stop streaming: the last point once more with zero velocity, then stop_traj_mode."""
        self.stop_requested = True

    # ------------------------------------------------------------------ decisions
    def step(self, now: float, target: Sequence[float] | None,
             measured: Sequence[float] | None) -> PointQueueRequest | None:
        """The call to make now, or None (one in flight, nothing due, or waiting to retry)."""
        if self._in_flight is not None:
            if now - self._sent_at <= self.call_timeout_s:
                return None
            request, self._in_flight = self._in_flight, None
            self.counters['timeouts'] += 1
            self._queue_fault = (f'{request.service}: no answer within '
                                 f'{self.call_timeout_s} s')
            self.log.append(f'{self._queue_fault}; starting over')
            self._restart(now)
        if self.stop_requested or self.state in ('holding', 'stopping'):
            return self._stop_step(now)
        goal: np.ndarray | None = None
        if target is not None:
            goal = np.asarray(target, dtype=float).reshape(-1)
            if goal.shape != (len(self.joint_names),) or not np.all(np.isfinite(goal)):
                raise ConfigError(f'point queue target {goal.tolist()}: one finite position '
                                  f'per joint of {list(self.joint_names)}')
        if self.state == 'idle':
            if goal is None or self._robot_blocked() or now < self._retry_at:
                return None
            self.state = 'starting'
            self.counters['starts'] += 1
            return self._send(now, 'start_point_queue_mode')
        if self.state == 'first_point':
            if measured is None:
                return None
            zeros = (0.0,) * len(self.joint_names)
            return self._send(now, 'queue_traj_point', tuple(float(v) for v in measured),
                              zeros, 0)
        if self.state == 'streaming' and goal is not None and self._due(now):
            return self._point(now, goal)
        return None

    def _due(self, now: float) -> bool:
        """Slot k is due `lead_segments` segments before the robot starts running it."""
        return now >= self._origin + (self._slot - 1 - self.lead_segments) * self.segment_s

    def _point(self, now: float, positions: np.ndarray) -> PointQueueRequest:
        assert self._last_positions is not None
        velocities = (positions - self._last_positions) / self.segment_s
        if self.max_speed is not None:
            velocities = np.clip(velocities, -self.max_speed, self.max_speed)
        return self._send(now, 'queue_traj_point', tuple(float(v) for v in positions),
                          tuple(float(v) for v in velocities), self._slot * self.segment_ns)

    def _stop_step(self, now: float) -> PointQueueRequest | None:
        if self.state == 'streaming':
            self.state = 'holding'
        if self.state == 'holding' and self._last_positions is not None:
            # The hold point: where the last point went, at rest, in the next slot.
            zeros = (0.0,) * len(self.joint_names)
            return self._send(now, 'queue_traj_point',
                              tuple(float(v) for v in self._last_positions), zeros,
                              self._slot * self.segment_ns)
        if self.state == 'first_point':
            self.state = 'stopping'
            self._origin, self._slot = -math.inf, 0  # the mode runs, nothing of ours is queued
        if self.state == 'stopping':
            # The robot has run the timeline (plus one segment of slack) when this passes.
            if now < self._origin + (self._slot + 1) * self.segment_s:
                return None
            return self._send(now, 'stop_traj_mode')
        self.state = 'idle'
        self.stop_requested = False
        return None

    def _send(self, now: float, service: str, positions: tuple[float, ...] = (),
              velocities: tuple[float, ...] = (), time_ns: int = 0) -> PointQueueRequest:
        self._serial += 1
        request = PointQueueRequest(self._serial, service, positions, velocities, time_ns)
        self._in_flight = request
        self._sent_at = now
        if service == 'queue_traj_point':
            self.counters['points_sent'] += 1
        return request

    def _restart(self, now: float) -> None:
        self.state = 'idle'
        self._retry_at = now
        self.counters['restarts'] += 1

    # ------------------------------------------------------------------ answers
    def on_answer(self, request: PointQueueRequest, code: int, message: str,
                  now: float) -> None:
        """The answer to `request` (ignored unless it is the call in flight)."""
        if self._in_flight is None or request.serial != self._in_flight.serial:
            return
        self._in_flight = None
        if request.service == 'start_point_queue_mode':
            self._on_start(code, message, now)
        elif request.service == 'stop_traj_mode':
            self._on_stop(bool(code), message, now)
        else:
            self._on_queue(request, code, message, now)

    def _on_start(self, code: int, message: str, now: float) -> None:
        if code == MotionReady.READY:
            self._start_fault = None
            self.state = 'first_point'
            self._possible_since_start = False
            return
        self.counters['refused'] += 1
        name = _name(MotionReady, code)
        if code == MotionReady.NOT_READY_OTHER_TRAJ_MODE_ACTIVE:
            self.log.append(f'start_point_queue_mode refused: {code} {name} ({message}); '
                            'calling stop_traj_mode first')
            self.state = 'stopping'
            self._restart_after_stop = True
            self._origin, self._slot = -math.inf, 0  # nothing of ours is queued
            return
        fault = f'start_point_queue_mode: {code} {name} ({message})'
        if fault != self._start_fault:
            self.log.append(f'{fault}; retrying every {self.retry_s} s')
        self._start_fault = fault
        self.state = 'idle'
        self._retry_at = now + self.retry_s

    def _on_stop(self, success: bool, message: str, now: float) -> None:
        if not success:
            self.log.append(f'stop_traj_mode refused ({message}); retrying')
            return
        self.state = 'idle'
        self.stop_requested = False
        self._last_positions = None
        if self._restart_after_stop:
            self._restart_after_stop = False
            self._retry_at = now

    def _on_queue(self, request: PointQueueRequest, code: int, message: str,
                  now: float) -> None:
        first = self.state == 'first_point'
        if code == QueueResult.SUCCESS:
            self.counters['points_accepted'] += 1
            self._queue_fault = None
            self._last_positions = np.array(request.positions)
            if first:
                self.state = 'streaming'
                self._origin, self._slot = now, 1
            else:
                self._slot += 1
                if self.state == 'holding':
                    self.state = 'stopping'
            return
        if code == QueueResult.BUSY:
            self.counters['busy'] += 1  # the same slot again, next cycle, freshest target
            return
        self.counters['refused'] += 1
        name = _name(QueueResult, code) or _name(InitTraj, code)
        text = f'queue_traj_point refused: {code} {name} ({message})'
        if code == QueueResult.WRONG_MODE:
            self.log.append(f'{text}: the robot left point-queue mode; starting again')
            self._restart(now)
        elif first:
            # Refused first point (204: not where the robot is; older MotoROS2 answer 3): send
            # it again with the then measured position.
            self._queue_fault = f'first point: {code} {name} ({message})'
            self.log.append(f'{text}; sending the measured position again')
        else:
            self._queue_fault = text
            self.log.append(f'{text}; the client sent a point MotoROS2 cannot take')

    # ------------------------------------------------------------------ diagnostics
    def status(self) -> dict[str, object]:
        return dict(self.counters, state=self.state, slot=self._slot,
                    fault=self.fault() or '')


def _name(enum: type, code: int) -> str:
    try:
        return enum(code).name
    except ValueError:
        return ''
