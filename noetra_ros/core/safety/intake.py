"""Message intake of the joint supervisor: each input message is parsed whole, or rejected whole.

Every function takes the raw fields of one message (lists, arrays, whatever a ROS callback or a
test hands over) and what it is checked against, and returns either the parsed message or a
`Rejection` that names the check that failed. Nothing here holds state or raises on bad input:
the supervisor counts the rejection and applies its consequence. One rule for every kind of
command: a malformed, non-finite or mis-named element rejects the whole message and no part of
it is used (safety.md C2-C4).

Trajectories become the core `JointTrajectory` type (core/trajectory.py), whose interpolation
the supervisor samples. Whether a trajectory may run to its end after its source went silent
is decided here too (`TrajectoryCommand.whole`), see `parse_trajectory`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

import numpy as np

from noetra_ros.core.errors import CommandError
from noetra_ros.core.safety import validation as val
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.trajectory import JointTrajectory

MAX_TRAJECTORY_POINTS = 10000
# Trajectory velocities beyond this multiple of the URDF limit are clipped on receipt: not a
# limit (the limiter applies those later) but a guard that keeps the spline finite.
TRAJECTORY_VELOCITY_GUARD = 1e3


class Consequence(str, Enum):
    """What a rejected message does to the supervisor besides being counted."""

    DROP = 'drop'    # ignored: a late, early or replayed message is not a broken source
    HOLD = 'hold'    # ARMED -> HOLDING: the source sends unusable values right now
    FAULT = 'fault'  # -> FAULT: the source is wired wrong (names, count, shape)


@dataclass(frozen=True)
class Rejection:
    """Why a message was not used: counter `<prefix>rejected_<code>`, detail, consequence."""

    code: str
    detail: str
    consequence: Consequence = Consequence.DROP
    what: str = 'command'
    hold_reason: str = ''  # the state reason of a HOLD (default: the rejection reason)

    @property
    def reason(self) -> str:
        """'<what> rejected (<code>): <detail>' - the Decision reason and the FAULT reason."""
        return f'{self.what} rejected ({self.code}): {self.detail}'

    @property
    def state_reason(self) -> str:
        """The reason the supervisor shows when the rejection changes its state."""
        return self.hold_reason or self.reason


@dataclass(frozen=True)
class JointStateSample:
    """An accepted measurement in the supervisor's joint order."""

    positions: np.ndarray
    velocities: np.ndarray | None
    stamp: float
    velocities_ignored: bool  # velocities were sent but unusable; the positions still count


@dataclass(frozen=True)
class PositionCommand:
    """A joint position target (supervisor joint order)."""

    positions: np.ndarray
    stamp: float


@dataclass(frozen=True)
class VelocityCommand:
    """A joint velocity command (rad/s, supervisor joint order)."""

    velocities: np.ndarray
    stamp: float


@dataclass(frozen=True)
class TrajectoryCommand:
    """A trajectory whose times count from `stamp`.

    `whole` is True only when the profile allows whole trajectories (and this one is within
    its horizon): it may then run to its last point after its source went silent. Otherwise
    it is followed only until the command timeout of this message, like every other command.
    """

    trajectory: JointTrajectory
    stamp: float
    whole: bool


def check_time(now: Any, what: str = 'command') -> float | Rejection:
    """`now` as a finite time, or a DROP rejection (invalid_clock)."""
    t = val.as_time(now)
    if t is None:
        return Rejection(val.INVALID_CLOCK, f'now={now!r}', what=what)
    return t


def parse_joint_state(names: Any, positions: Any, velocities: Any, stamp: Any, now: float,
                      joints: Sequence[str], profile: SafetyProfile,
                      last_stamp: float | None) -> JointStateSample | Rejection:
    """A sensor_msgs/JointState: extra joints and any order are fine; every supervised joint
    must be present once. Non-finite positions anywhere reject the message; unusable
    velocities only drop the velocities. Every rejection is a DROP: a missing measurement
    shows as a stale source, which holds."""
    def reject(code: str, detail: str) -> Rejection:
        return Rejection(code, detail, what='joint_state')

    nm = val.as_names(names)
    q = val.as_float_array(positions, 1)
    if nm is None or q is None or len(nm) != q.shape[0]:
        return reject('malformed', 'names/positions are not matching arrays')
    if len(set(nm)) != len(nm):
        return reject('names', 'duplicate joint names')
    missing = [j for j in joints if j not in nm]
    if missing:
        return reject('names', f'missing joints {missing}')
    if not np.all(np.isfinite(q)):
        return reject('nonfinite', 'non-finite position')
    problem = val.stamp_problem(stamp, now, profile.sensor_timeout('joint_states'),
                                profile.future_tolerance_s)
    if problem:
        return reject(problem, f'stamp={stamp!r} now={now}')
    st = float(stamp)
    if last_stamp is not None and st < last_stamp:
        return reject('out_of_order', f'stamp {st} < last {last_stamp}')
    idx = [nm.index(j) for j in joints]
    qd = None
    ignored = False
    if velocities is not None:
        vel = val.as_float_array(velocities, 1)
        if vel is not None and vel.shape[0] == len(nm) and np.all(np.isfinite(vel)):
            qd = vel[idx]
        elif vel is None or vel.shape[0] != 0:
            ignored = True
    return JointStateSample(q[idx], qd, st, ignored)


def check_command_names(names: Any, joints: Sequence[str]) -> Rejection | None:
    """`names` None means the supervisor's joint order (std_msgs/Float64MultiArray carries no
    names); otherwise it must equal that order exactly (JTC rejects other orders too)."""
    if names is None:
        return None
    nm = val.as_names(names)
    if nm is None:
        return _fault('malformed', 'names must be a list of strings')
    if len(nm) != len(joints):
        return _fault('count', f'{len(nm)} names, {len(joints)} joints')
    if nm != tuple(joints):
        return _fault('names', f'names {list(nm)} differ from {list(joints)}')
    return None


def check_command_stamp(stamp: Any, now: float, profile: SafetyProfile,
                        last_stamp: float | None) -> Rejection | None:
    """Header stamp of a command: not zero, not older than max_command_age_s, not further ahead
    than future_tolerance_s, not older than the previous accepted command (DROP each)."""
    problem = val.stamp_problem(stamp, now, profile.max_command_age_s,
                                profile.future_tolerance_s)
    if problem:
        return Rejection(problem, f'stamp={stamp!r} now={now}')
    if last_stamp is not None and float(stamp) < last_stamp:
        return Rejection('out_of_order', f'stamp {stamp} < {last_stamp}')
    return None


def _parse_joint_vector(names: Any, values: Any, stamp: Any, now: float, limits: JointLimits,
                        profile: SafetyProfile, last_stamp: float | None,
                        what: str) -> np.ndarray | Rejection:
    """The checks a per-joint command vector shares, positions or velocities alike: names,
    one finite value per joint, a usable stamp. Returns the vector or the rejection."""
    rejected = check_command_names(names, limits.names)
    if rejected is not None:
        return rejected
    vector = val.as_float_array(values, 1)
    if vector is None or vector.shape[0] != limits.count:
        return _fault('count' if vector is not None else 'malformed',
                      f'{limits.count} {what} required')
    if not np.all(np.isfinite(vector)):
        return NONFINITE
    rejected = check_command_stamp(stamp, now, profile, last_stamp)
    return vector if rejected is None else rejected


def parse_positions(names: Any, positions: Any, stamp: Any, now: float, limits: JointLimits,
                    profile: SafetyProfile,
                    last_stamp: float | None) -> PositionCommand | Rejection:
    """A joint position target (forward_position_controller/commands fields + a stamp)."""
    q = _parse_joint_vector(names, positions, stamp, now, limits, profile, last_stamp,
                            'positions')
    return q if isinstance(q, Rejection) else PositionCommand(q, float(stamp))


def parse_velocities(names: Any, velocities: Any, stamp: Any, now: float, limits: JointLimits,
                     profile: SafetyProfile,
                     last_stamp: float | None) -> VelocityCommand | Rejection:
    """A joint velocity command (forward_velocity_controller/commands fields + a stamp)."""
    qd = _parse_joint_vector(names, velocities, stamp, now, limits, profile, last_stamp,
                             'velocities')
    return qd if isinstance(qd, Rejection) else VelocityCommand(qd, float(stamp))


def parse_trajectory(names: Any, times: Any, positions: Any, velocities: Any, stamp: Any,
                     now: float, limits: JointLimits, profile: SafetyProfile,
                     last_stamp: float | None) -> TrajectoryCommand | Rejection:
    """A trajectory_msgs/JointTrajectory: `times` are seconds from `stamp`, strictly increasing
    and >= 0; positions (K, N); velocities (K, N), empty or None.

    The trajectory rule: by default a trajectory counts as one command of its source and
    expires command_timeout_s after its stamp, like a position command, so a controller that
    dies mid-chunk does not finish its chunk. A profile with `allow_whole_trajectories` lets
    a planner's trajectory run to its end; one whose last point lies beyond
    `trajectory_horizon_s` is then refused (HOLD, the reason names both figures).
    """
    rejected = check_command_names(names, limits.names)
    if rejected is not None:
        return rejected
    n = limits.count
    ts = val.as_float_array(times, 1)
    pts = val.as_float_array(positions, 2)
    if ts is None or pts is None or pts.shape[0] == 0 or pts.shape[0] != ts.shape[0]:
        return _fault('malformed', 'times/positions must be K and (K, N)')
    if pts.shape[1] != n:
        return _fault('count', f'{n} positions per point required')
    if pts.shape[0] > MAX_TRAJECTORY_POINTS:
        return _fault('malformed', f'more than {MAX_TRAJECTORY_POINTS} points')
    vel = None
    if velocities is not None:
        vel = val.as_float_array(velocities, 2)
        if vel is None:
            flat = val.as_float_array(velocities, 1)
            if flat is None or flat.shape[0] != 0:
                return _fault('malformed', 'velocities must be (K, N) or empty')
        elif vel.size == 0:
            vel = None
        elif vel.shape != pts.shape:
            return _fault('count', 'velocities must be (K, N)')
    if not (np.all(np.isfinite(ts)) and np.all(np.isfinite(pts))) or (
            vel is not None and not np.all(np.isfinite(vel))):
        return NONFINITE
    if ts[0] < 0.0 or np.any(np.diff(ts) <= 0.0):
        return _fault('malformed', 'times must be >= 0 and strictly increasing')
    rejected = check_command_stamp(stamp, now, profile, last_stamp)
    if rejected is not None:
        return rejected
    st = float(stamp)
    duration = float(ts[-1])
    if profile.allow_whole_trajectories and duration > profile.trajectory_horizon_s:
        detail = (f'last point {duration:.6g} s after the stamp, beyond trajectory_horizon_s '
                  f'{profile.trajectory_horizon_s:.6g} s')
        return Rejection('too_long', detail, Consequence.HOLD,
                         hold_reason=f'trajectory refused (too_long): {detail}')
    # Clamped to the hard range (and the velocities to a generous multiple of the limits) so
    # the spline can never produce a huge or non-finite sample; the limits proper apply later.
    pts = np.clip(pts, limits.lower, limits.upper)
    if vel is not None:
        cap = limits.velocity * TRAJECTORY_VELOCITY_GUARD
        vel = np.clip(vel, -cap, cap)
    try:
        trajectory = JointTrajectory(limits.names, ts, pts, vel)
    except CommandError as exc:  # defensive: the checks above cover what it checks
        return _fault('malformed', str(exc))
    return TrajectoryCommand(trajectory, st, whole=profile.allow_whole_trajectories)


def _fault(code: str, detail: str) -> Rejection:
    return Rejection(code, detail, Consequence.FAULT)


# C3: the whole message is dropped and an armed supervisor holds.
NONFINITE = Rejection('nonfinite', 'NaN/Inf in command', Consequence.HOLD,
                      hold_reason='non-finite command')
