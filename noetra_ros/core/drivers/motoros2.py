"""Yaskawa MotoROS2's controller side, ROS-free: readiness, motion modes, the trajectory checks
with their codes, the point queue and the motion it turns into a setpoint every update.

Facts: /work/shared/reference/driver-interfaces.md §2 and §4.1 (MotoROS2 @ 2007fd6, "MR"); where
the reference is silent, MotoROS2's source as stored by the project's code search was read and
the behaviour is marked "derived" with the file it comes from. drivers/sim_motoros2.py puts the
ROS interface around this; drivers/motoros2_client.py is the runtime's client of it.

The model, in MotoROS2's own terms:

- Readiness is controller state only (MR src/ControllerStatusIO.c
  `Ros_Controller_GetNotReadySubcode`): e-stop, pendant PLAY / REMOTE, HOLD, alarms, errors,
  AUTO cycle, servo power, the INIT_ROS job running and waiting at its WAIT. `start_*_mode`
  powers the servos and starts the job; nothing else does. The motion mode (trajectory /
  point queue) is separate from readiness.
- Motion: a start waypoint and the waypoints after it; each segment is the cubic through the
  positions and velocities at both ends over the difference of the two `time_from_start` values
  in whole milliseconds (MR src/MotionControl.c `Ros_MotionControl_AddToIncQueueProcess`). A
  point is "processed" (turned into increments) once all of its increments fit in the increment
  queue, which holds `increment_queue_s` of motion (derived: `Q_SIZE` 200 increments, MR
  src/CtrlGroup.h, of one interpolation period each). Execution never outruns what is queued: a
  starved queue holds the last commanded position.
- Commanded position: the setpoint handed to the servo every update. The first point of a
  trajectory or of a point queue must lie within the start tolerance of it.
- Control groups: one controller may run several robots (r1..r8). Its trajectories, points,
  feedback and joint_states span every axis of every group in group order; goals and points must
  name all of them (207 / 5: MotoROS2 takes no partial goals, reference §2.6, §2.7). Readiness,
  the motion mode and robot_status are the controller's, one for all groups.

Codes: numeric values of motoros2_interfaces 0.2.0 (reference §2.4); member names equal the
message constants, so the ROS layer finds each `<NAME>_STR` text by name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
import math

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.joint_names import scheme_names


class MotionReady(IntEnum):
    """motoros2_interfaces/MotionReadyEnum (reference §2.4)."""

    READY = 1
    NOT_READY_UNSPECIFIED = 100
    NOT_READY_ALARM = 101
    NOT_READY_ERROR = 102
    NOT_READY_ESTOP = 103
    NOT_READY_NOT_PLAY = 104
    NOT_READY_NOT_REMOTE = 105
    NOT_READY_SERVO_OFF = 106
    NOT_READY_HOLD = 107
    NOT_READY_JOB_NOT_STARTED = 108
    NOT_READY_NOT_ON_WAIT_CMD = 109
    NOT_READY_PFL_ACTIVE = 111
    NOT_READY_INC_MOVE_ERROR = 112
    NOT_READY_OTHER_PROGRAM_RUNNING = 113
    NOT_READY_OTHER_TRAJ_MODE_ACTIVE = 114
    NOT_READY_NOT_CONT_CYCLE_MODE = 115
    NOT_READY_MAJOR_ALARM = 116
    NOT_READY_ECO_MODE = 117
    NOT_READY_SERVO_ON_TIMEOUT = 118


class InitTraj(IntEnum):
    """motoros2_interfaces/InitTrajEnum (reference §2.4)."""

    INIT_TRAJ_OK = 0
    INIT_TRAJ_UNSPECIFIED = 200
    INIT_TRAJ_TOO_SMALL = 201
    INIT_TRAJ_TOO_BIG = 202
    INIT_TRAJ_ALREADY_IN_MOTION = 203
    INIT_TRAJ_INVALID_STARTING_POS = 204
    INIT_TRAJ_INVALID_VELOCITY = 205
    INIT_TRAJ_INVALID_JOINTNAME = 206
    INIT_TRAJ_INCOMPLETE_JOINTLIST = 207
    INIT_TRAJ_INVALID_TIME = 208
    INIT_TRAJ_WRONG_MODE = 209
    INIT_TRAJ_BACKWARD_TIME = 210
    INIT_TRAJ_WRONG_NUMBER_OF_POSITIONS = 211
    INIT_TRAJ_WRONG_NUMBER_OF_VELOCITIES = 212
    INIT_TRAJ_INVALID_ENDING_VELOCITY = 213
    INIT_TRAJ_INVALID_ENDING_ACCELERATION = 214
    INIT_TRAJ_DUPLICATE_JOINT_NAME = 215


class QueueResult(IntEnum):
    """motoros2_interfaces/QueueResultEnum (reference §2.4)."""

    SUCCESS = 1
    WRONG_MODE = 2
    INIT_FAILURE = 3
    BUSY = 4
    INVALID_JOINT_LIST = 5
    UNABLE_TO_PROCESS_POINT = 6


class FailTraj(IntEnum):
    """MotoROS2's own codes in a FollowJointTrajectory result outside the enums (reference §2.6:
    -500300 cancel, -500301 position, -500302 time, -100303 alarm)."""

    FAIL_TRAJ_CANCEL = 300
    FAIL_TRAJ_POSITION = 301
    FAIL_TRAJ_TIME = 302
    FAIL_TRAJ_ALARM = 303


# control_msgs/FollowJointTrajectory result codes (reference §1.1).
FJT_SUCCESSFUL = 0
FJT_INVALID_GOAL = -1
FJT_GOAL_TOLERANCE_VIOLATED = -5


def fjt_error_code(ros_code: int, motoros_code: int) -> int:
    """MotoROS2's FJT `error_code`: ros_code * 100000 - its own code (reference §2.6, MR macro
    RESULT_REPONSE_ERROR_CODE), e.g. (-1, 206) -> -100206."""
    return ros_code * 100000 - int(motoros_code)


# driver-interfaces.md §2.6 (MR src/ActionServer_FJT.h): the goal buffer holds 200 points.
MAX_POINTS_PER_TRAJECTORY = 200
# driver-interfaces.md §2.6: a trajectory has at least two points.
MIN_POINTS_PER_TRAJECTORY = 2
# driver-interfaces.md §2.6: the last point's velocity must be within this of zero (213).
ENDING_VELOCITY_TOLERANCE = 0.001
# driver-interfaces.md §2.6: defaults of goal_tolerance position and goal_time_tolerance.
DEFAULT_GOAL_POSITION_TOLERANCE = 0.01
DEFAULT_GOAL_TIME_TOLERANCE_S = 0.5
# The start check is 30 pulses on every axis (START_MAX_PULSE_DEVIATION, MR src/MotionControl.h);
# pulses per radian depend on each axis's motor and gear and are read from the controller
# (UNCONFIRMED per robot, reference §5). Main axes of small Yaskawa arms have some 30 000 -
# 60 000 pulses per radian, so 30 pulses are 0.5 - 1 mrad. We take 1e-3 rad, the coarse end: the
# emulation must not refuse a start a real arm would accept, and a client can only know the
# position the robot reports (joint_states), which trails the command by its servo error.
START_TOLERANCE_RAD = 1e-3
# The increment queue: Q_SIZE = 200 increments (MR src/CtrlGroup.h), one interpolation period
# each; the period is read from the controller (GP_getInterpolationPeriod), 4 ms on the YRC1000
# family (UNCONFIRMED per controller), so 0.8 s of motion. A queued point answers BUSY to the next
# one until all of its increments are in this queue (derived, MR src/MotionControl.c: the
# trajectory iterator's `valid` flag is cleared once its increments are added).
INCREMENT_QUEUE_S = 200 * 0.004
# MotoROS2's "in motion": increments still queued, or feedback more than 30 pulses from the
# command (MR src/ControllerStatusIO.c `Ros_Controller_IsInMotion`); the start tolerance above
# stands for the 30 pulses.

# driver-interfaces.md §2.2 (MR src/CtrlGroup.c): robot groups are r1..r8.
MAX_ROBOT_GROUPS = 8

MODES = ('none', 'trajectory', 'point_queue')
FAULTS = ('e_stop', 'hold', 'teach', 'local', 'alarm [code]', 'major_alarm [code]',
          'error [code]', 'clear')


@dataclass(frozen=True)
class ControlGroup:
    """One robot group of the controller: `name` r<g> (its `ctrl_groups/<name>/joint_states`
    and tf frame prefix) and its axes' driver names in the controller's order."""

    name: str
    joint_names: tuple[str, ...]


def default_joint_names(axes_per_group: Sequence[int]) -> list[list[str]]:
    """MotoROS2's default joint names, per group: `joint_1..N` on a single-group controller,
    `group_<g>/joint_<j>` for every group of a multi-group one (driver-interfaces.md §2.1, MR
    src/ConfigFile.h; 7-axis arms' S,L,E,U,R,B,T publishing order is not modelled)."""
    counts = [int(n) for n in axes_per_group]
    if not counts or not all(n > 0 for n in counts):
        raise ConfigError(f'axes per group {counts}: need at least one group, each with axes')
    if len(counts) == 1:
        return [scheme_names(counts[0], 'motoros2')]
    return [scheme_names(n, 'motoros2', group=g) for g, n in enumerate(counts, start=1)]


def robot_groups(names_per_group: Sequence[Sequence[str]]) -> tuple[ControlGroup, ...]:
    """The robot groups r1, r2, ... of a controller whose groups' axes have these names (in
    group order)."""
    if not 1 <= len(names_per_group) <= MAX_ROBOT_GROUPS:
        raise ConfigError(f'{len(names_per_group)} robot groups: a MotoROS2 controller has 1 to '
                          f'{MAX_ROBOT_GROUPS} (r1..r{MAX_ROBOT_GROUPS})')
    return tuple(ControlGroup(f'r{g}', tuple(str(n) for n in names))
                 for g, names in enumerate(names_per_group, start=1))


@dataclass(frozen=True)
class GoalPoint:
    """One trajectory point as the message carries it (lengths unchecked: the controller checks
    them, in its order, with its codes)."""

    positions: tuple[float, ...]
    velocities: tuple[float, ...]
    time_from_start_ns: int


@dataclass(frozen=True)
class TrajectoryGoal:
    """The parts of a FollowJointTrajectory goal MotoROS2 reads (reference §2.6: trajectory,
    goal_tolerance positions by name, goal_time_tolerance; nothing else)."""

    joint_names: tuple[str, ...]
    points: tuple[GoalPoint, ...]
    goal_tolerance: tuple[tuple[str, float], ...] = ()
    goal_time_tolerance_ns: int = 0


@dataclass(frozen=True)
class GoalOutcome:
    """How a goal ends: `status` 'succeeded' | 'aborted' | 'canceled', the result's error code,
    `reason` (the enum member whose text the ROS layer reports, None for our own text) and
    `detail` (our words: what exactly was wrong)."""

    status: str
    error_code: int
    reason: IntEnum | None
    detail: str


@dataclass(frozen=True)
class GoalVerdict:
    """The answer to a goal at its arrival. `answered` False: the goal is never answered (more
    than 200 points, see submit_goal); `outcome` None: accepted and executing."""

    answered: bool
    outcome: GoalOutcome | None


@dataclass(frozen=True)
class ServiceAnswer:
    """A service's answer: the code (an enum member) and our detail for the log."""

    code: IntEnum
    detail: str = ''


@dataclass(frozen=True)
class RobotStatusFields:
    """industrial_msgs/RobotStatus as MotoROS2 fills it (reference §2.5; TriState values as
    bools, mode 'AUTO' / 'MANUAL')."""

    mode: str
    e_stopped: bool
    drives_powered: bool
    motion_possible: bool
    in_motion: bool
    in_error: bool
    error_codes: tuple[int, ...]


@dataclass(frozen=True)
class Fault:
    """An alarm or error on the controller; `major` alarms cannot be reset from ROS (116),
    `resettable` False stands for a cause that persists (reset_error answers 101 / 102)."""

    code: int
    major: bool = False
    resettable: bool = True


@dataclass
class _Waypoint:
    time_ms: int
    positions: np.ndarray
    velocities: np.ndarray


@dataclass
class _Motion:
    """Waypoints still to run: `start` is where the running segment began, `ahead` its end and
    the later waypoints; `elapsed_ms` is the time already run of the segment start -> ahead[0]."""

    start: _Waypoint
    ahead: list[_Waypoint] = field(default_factory=list)
    elapsed_ms: float = 0.0
    # How many of `ahead` have been turned into increments (the rest wait for room).
    processed: int = 0

    def remaining_ms(self, upto: int | None = None) -> float:
        """Motion time from now to the end of ahead[upto - 1] (all of `ahead` by default)."""
        upto = len(self.ahead) if upto is None else upto
        total, previous = -self.elapsed_ms, self.start.time_ms
        for point in self.ahead[:upto]:
            total += max(0, point.time_ms - previous)
            previous = point.time_ms
        return max(0.0, total)


def _cubic(a: _Waypoint, b: _Waypoint, t_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity t_ms into the cubic segment a -> b (MotoROS2's interpolation: the
    cubic matching both ends' positions and velocities, MR src/MotionControl.c)."""
    span = (b.time_ms - a.time_ms) / 1000.0
    t = t_ms / 1000.0
    dq = b.positions - a.positions
    c2 = 3.0 * dq / span**2 - (2.0 * a.velocities + b.velocities) / span
    c3 = -2.0 * dq / span**3 + (a.velocities + b.velocities) / span**2
    q = a.positions + a.velocities * t + c2 * t**2 + c3 * t**3
    qd = a.velocities + 2.0 * c2 * t + 3.0 * c3 * t**2
    return q, qd


def _millis(time_from_start_ns: int) -> int:
    """A time_from_start in whole milliseconds, as MotoROS2 converts it (floor)."""
    return int(time_from_start_ns) // 1_000_000


class MotoRos2Controller:
    """MotoROS2 and the controller under it, for one robot's axes.

    `joint_names`: the driver's names of the axes (joint_1..N, or group_<g>/joint_<j>) in the
    controller's order; `max_speed`: each axis's speed limit (rad/s; MotoROS2 refuses a first
    point faster than this, 205, and drops a queued point faster than this); `groups`: the robot
    groups those axes belong to, in the same order (default: one group r1 of every axis).

    Call `update(now, measured_q)` once per controller update; it returns the
    setpoint (positions, velocities) for the servo. Everything else is a call a ROS interface
    makes between updates, with `now` the time of the latest update. Fault injection:
    `set_estop`, `set_pendant`, `set_hold`, `raise_alarm`, `raise_error`.
    """

    def __init__(self, joint_names: Sequence[str], max_speed: Sequence[float], *,
                 start_tolerance: float = START_TOLERANCE_RAD,
                 increment_queue_s: float = INCREMENT_QUEUE_S,
                 initial_positions: Sequence[float] | None = None,
                 groups: Sequence[ControlGroup] | None = None) -> None:
        self.joint_names = tuple(str(n) for n in joint_names)
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ConfigError(f'MotoROS2 joint names {list(self.joint_names)}: need at least one, '
                              'no duplicates')
        self.groups = (tuple(groups) if groups is not None
                       else (ControlGroup('r1', self.joint_names),))
        grouped = tuple(n for group in self.groups for n in group.joint_names)
        if grouped != self.joint_names:
            raise ConfigError(f'groups {[(g.name, list(g.joint_names)) for g in self.groups]}: '
                              f'their axes in order must be the joint names '
                              f'{list(self.joint_names)}')
        self.max_speed = np.asarray(max_speed, dtype=float).reshape(-1)
        if self.max_speed.shape != (self.axes,) or not np.all(self.max_speed > 0):
            raise ConfigError(f'max_speed {self.max_speed.tolist()}: one positive speed per '
                              f'axis of {list(self.joint_names)}')
        if not start_tolerance > 0 or not increment_queue_s > 0:
            raise ConfigError(f'start_tolerance {start_tolerance} and increment_queue_s '
                              f'{increment_queue_s} must be > 0')
        self.start_tolerance = float(start_tolerance)
        self.increment_queue_ms = 1000.0 * float(increment_queue_s)
        # Controller state (ControllerStatusIO's I/O signals). A powered-up controller in PLAY
        # and REMOTE, servos off, INIT_ROS not started: what a client meets after boot.
        self.estop = False
        self.play = True
        self.remote = True
        self.hold = False
        self.continuous_cycle = True
        self.servo_on = False
        self.job_running = False
        self.waiting_for_ros = False
        self.alarms: list[Fault] = []
        self.errors: list[Fault] = []
        self.mode = 'none'
        # Commanded position and velocity (the servo's setpoint) and the latest measurement.
        self._command_q = (None if initial_positions is None
                           else np.asarray(initial_positions, dtype=float).reshape(-1).copy())
        self._command_qd = np.zeros(self.axes)
        self._measured_q: np.ndarray | None = None
        self._now = 0.0
        self._motion: _Motion | None = None
        # Point queue: the next point is the first after start_point_queue_mode; the latest
        # point waits for the increment task (it runs on updates) before it can be processed.
        self._must_init_point_queue = True
        self._point_waiting_for_task = False
        self._point_queue_stalled = False
        # FollowJointTrajectory: one goal at a time (MotoROS2 has one goal handle).
        self._goal: TrajectoryGoal | None = None
        self._goal_started_at = 0.0
        self._goal_outcome: GoalOutcome | None = None
        self.counters = {'goals': 0, 'goals_refused': 0, 'goals_unanswered': 0,
                         'points_queued': 0, 'points_refused': 0, 'points_busy': 0,
                         'points_dropped': 0}

    @property
    def axes(self) -> int:
        return len(self.joint_names)

    def split(self, values: Sequence[float] | np.ndarray) -> list[np.ndarray]:
        """A vector over all axes as one vector per group (group order)."""
        vector = np.asarray(values, dtype=float).reshape(-1)
        if vector.shape != (self.axes,):
            raise ConfigError(f'{vector.size} values for the {self.axes} axes of '
                              f'{[g.name for g in self.groups]}')
        bounds = np.cumsum([len(g.joint_names) for g in self.groups])[:-1]
        return [part.copy() for part in np.split(vector, bounds)]

    # ------------------------------------------------------------------ controller state
    def set_estop(self, pressed: bool) -> None:
        """E-stop: servo power drops and the job stops; queued motion is cleared."""
        self.estop = bool(pressed)
        if pressed:
            self.servo_on = False
            self._stop_job()

    def set_pendant(self, *, play: bool | None = None, remote: bool | None = None) -> None:
        """Pendant mode: TEACH (play False) stops the job; LOCAL (remote False) only blocks
        ROS motion."""
        if play is not None:
            self.play = bool(play)
            if not play:
                self._stop_job()
        if remote is not None:
            self.remote = bool(remote)

    def set_hold(self, held: bool) -> None:
        """HOLD stops the job; after release it must be started again (start_*_mode)."""
        self.hold = bool(held)
        if held:
            self._stop_job()

    def raise_alarm(self, code: int, *, major: bool = False, resettable: bool = True) -> None:
        """An alarm: queued motion is cleared at once (MR src/ControllerStatusIO.c); a major one
        also cuts servo power."""
        self.alarms.append(Fault(int(code), major, resettable))
        if major:
            self.servo_on = False
        self._clear_motion()

    def raise_error(self, code: int, *, resettable: bool = True) -> None:
        self.errors.append(Fault(int(code), False, resettable))
        self._clear_motion()

    def inject(self, fault: str) -> None:
        """A sim-only fault by name (the simulator's `sim/motoros2/inject_fault`): 'e_stop',
        'hold', 'teach', 'local', 'alarm [code]', 'major_alarm [code]', 'error [code]', or
        'clear' (e-stop and HOLD released, pendant in PLAY and REMOTE; alarms and errors stay
        until reset_error, servo power and the job until a start call, as on the robot).
        ValueError names the accepted faults otherwise. Codes default to arbitrary numbers."""
        words = fault.split()
        valid = len(words) == 1 or (len(words) == 2 and words[1].isdigit())
        name = words[0] if valid else ''
        code = int(words[1]) if valid and len(words) == 2 else None
        if name == 'e_stop' and code is None:
            self.set_estop(True)
        elif name == 'hold' and code is None:
            self.set_hold(True)
        elif name == 'teach' and code is None:
            self.set_pendant(play=False)
        elif name == 'local' and code is None:
            self.set_pendant(remote=False)
        elif name in ('alarm', 'major_alarm'):
            self.raise_alarm(4000 if code is None else code, major=name == 'major_alarm')
        elif name == 'error':
            self.raise_error(2000 if code is None else code)
        elif name == 'clear' and code is None:
            self.set_estop(False)
            self.set_hold(False)
            self.set_pendant(play=True, remote=True)
        else:
            raise ValueError(f'unknown fault {fault!r}: one of {FAULTS}')

    def _stop_job(self) -> None:
        self.job_running = False
        self.waiting_for_ros = False
        self._clear_motion()

    def not_ready_code(self, ignore_tractable: bool = False) -> MotionReady:
        """What blocks ROS motion, in MotoROS2's order (reference §2.6; MR
        `Ros_Controller_GetNotReadySubcode`); `ignore_tractable` leaves out what a start call
        fixes (cycle mode, servo power, the job)."""
        blockers = [
            (self.estop, MotionReady.NOT_READY_ESTOP),
            (not self.play, MotionReady.NOT_READY_NOT_PLAY),
            (not self.remote, MotionReady.NOT_READY_NOT_REMOTE),
            (self.hold, MotionReady.NOT_READY_HOLD),
            (bool(self.alarms), MotionReady.NOT_READY_ALARM),
            (bool(self.errors), MotionReady.NOT_READY_ERROR)]
        if not ignore_tractable:
            blockers += [
                (not self.continuous_cycle, MotionReady.NOT_READY_NOT_CONT_CYCLE_MODE),
                (not self.servo_on, MotionReady.NOT_READY_SERVO_OFF),
                (not self.job_running, MotionReady.NOT_READY_JOB_NOT_STARTED),
                (not self.waiting_for_ros, MotionReady.NOT_READY_NOT_ON_WAIT_CMD)]
        return next((code for blocked, code in blockers if blocked), MotionReady.READY)

    def motion_ready(self) -> bool:
        return self.not_ready_code() is MotionReady.READY

    def in_error(self) -> bool:
        return bool(self.alarms or self.errors)

    # ------------------------------------------------------------------ services
    def start_traj_mode(self) -> ServiceAnswer:
        return self._start_mode('trajectory')

    def start_point_queue_mode(self) -> ServiceAnswer:
        return self._start_mode('point_queue')

    def _start_mode(self, mode: str) -> ServiceAnswer:
        """MR `Ros_MotionControl_StartMotionMode` (reference §2.7)."""
        if self.mode not in ('none', mode):
            return ServiceAnswer(MotionReady.NOT_READY_OTHER_TRAJ_MODE_ACTIVE,
                                 f'{self.mode} mode is active; call stop_traj_mode first')
        if self.motion_ready():
            # Already ready: MotoROS2 answers READY at once and leaves the mode as it is
            # (MR src/MotionControl.c). Readiness requires the job to wait for ROS, which only
            # a start call (that also sets the mode) or stop_traj_mode (that clears the wait)
            # changes, so the mode is already this one.
            return ServiceAnswer(MotionReady.READY, 'already ready')
        blocking = self.not_ready_code(ignore_tractable=True)
        if blocking is not MotionReady.READY:
            detail = ''
            if blocking is MotionReady.NOT_READY_ERROR:
                detail = f'error {self.errors[0].code}; call reset_error'
            elif blocking is MotionReady.NOT_READY_ALARM:
                detail = f'alarms {[a.code for a in self.alarms]}; call reset_error'
            return ServiceAnswer(blocking, detail)
        # Cycle mode to AUTO, servos on, queues cleared, INIT_ROS started and waiting.
        self.continuous_cycle = True
        self.servo_on = True
        self._clear_motion()
        self.job_running = True
        self.waiting_for_ros = True
        code = self.not_ready_code()
        if code is MotionReady.READY:
            self.mode = mode
            if mode == 'point_queue':
                self._must_init_point_queue = True
                self._point_queue_stalled = False
        return ServiceAnswer(code, f'{mode} mode started' if code is MotionReady.READY else '')

    def stop_traj_mode(self) -> tuple[bool, str]:
        """MR src/ServiceStopTrajMode.c (reference §2.7): refused while motion is queued;
        otherwise the mode ends and INIT_ROS no longer waits for ROS (MotoROS2 clears that
        signal, MR `Ros_MotionControl_StopTrajMode`), servos stay as they are."""
        if self._queued_ms() > 0.0:
            return False, ('motion is still queued: cancel the trajectory or let the point '
                           'queue run out, then call stop_traj_mode again')
        self._end_mode()
        return True, ''

    def _end_mode(self) -> None:
        """MR `Ros_MotionControl_StopTrajMode`: no mode, and the job's "waiting for ROS" signal
        is cleared, so the next start call goes through the whole start sequence."""
        self.mode = 'none'
        self.waiting_for_ros = False
        self._motion = None

    def reset_error(self) -> ServiceAnswer:
        """MR src/ServiceResetError.c (reference §2.7): 105 unless REMOTE, 102 for an error that
        stays, 116 for a major alarm, 101 for an alarm that stays, else READY ('success')."""
        if not self.remote:
            return ServiceAnswer(MotionReady.NOT_READY_NOT_REMOTE)
        self.errors = [e for e in self.errors if not e.resettable]
        if self.errors:
            return ServiceAnswer(MotionReady.NOT_READY_ERROR,
                                 f'error {self.errors[0].code} cannot be cancelled')
        if any(a.major for a in self.alarms):
            return ServiceAnswer(MotionReady.NOT_READY_MAJOR_ALARM,
                                 f'major alarm {[a.code for a in self.alarms if a.major]}')
        self.alarms = [a for a in self.alarms if not a.resettable]
        if self.alarms:
            return ServiceAnswer(MotionReady.NOT_READY_ALARM,
                                 f'alarms {[a.code for a in self.alarms]} stay active')
        return ServiceAnswer(MotionReady.READY, 'success')

    # ------------------------------------------------------------------ FollowJointTrajectory
    def submit_goal(self, goal: TrajectoryGoal, now: float) -> GoalVerdict:
        """A goal arrives (MR `Ros_ActionServer_FJT_Goal_Received`, reference §2.6).

        Every answered goal is accepted; an invalid one then ends aborted with
        `-100000 - code` (delivered by the next `goal_tick`). More than 200 points: the robot
        cannot hold the request and never sees it, so the client gets no answer at all and must
        time out (reference §2.6, README "Maximum length of trajectories"); the emulation
        returns `answered=False`, counts it and leaves everything as it was.
        """
        if len(goal.points) > MAX_POINTS_PER_TRAJECTORY:
            self.counters['goals_unanswered'] += 1
            return GoalVerdict(False, None)
        self.counters['goals'] += 1
        code, detail = self._check_goal(goal)
        if code is not None:
            self.counters['goals_refused'] += 1
            outcome = GoalOutcome('aborted', fjt_error_code(FJT_INVALID_GOAL, code), code,
                                  detail)
            self._goal_outcome = outcome
            return GoalVerdict(True, outcome)
        self._goal = goal
        self._goal_started_at = now
        self._goal_outcome = None
        return GoalVerdict(True, None)

    def _check_goal(self, goal: TrajectoryGoal) -> tuple[IntEnum | None, str]:
        """The checks of MR `Ros_ActionServer_FJT_Goal_Received` and `Ros_MotionControl_Init`, in
        their order; on success the motion is set up."""
        ready = self.not_ready_code()
        if ready is not MotionReady.READY:
            return ready, 'the controller is not ready for ROS motion'
        if self.mode != 'trajectory':
            return InitTraj.INIT_TRAJ_WRONG_MODE, f'mode is {self.mode!r}'
        if len(goal.points) < MIN_POINTS_PER_TRAJECTORY:
            return InitTraj.INIT_TRAJ_TOO_SMALL, f'{len(goal.points)} point(s)'
        return self._init_motion(goal.joint_names, goal.points, whole_trajectory=True)

    def _has_data_to_process(self) -> bool:
        """Waypoints not yet turned into increments (MotoROS2's `hasDataToProcess`)."""
        motion = self._motion
        return motion is not None and motion.processed < len(motion.ahead)

    def _init_motion(self, names: Sequence[str], points: Sequence[GoalPoint],
                     whole_trajectory: bool) -> tuple[IntEnum | None, str]:
        """MR `Ros_MotionControl_Init` + `..._ConvertTrajectoryToJointMotionData`: checks in
        their order; on success the first point becomes the start waypoint and the rest follow."""
        if self._has_data_to_process():
            return InitTraj.INIT_TRAJ_ALREADY_IN_MOTION, 'a trajectory is still being processed'
        names = [str(n) for n in names]
        if len(names) != self.axes:
            return (InitTraj.INIT_TRAJ_INCOMPLETE_JOINTLIST,
                    f'{len(names)} joint names, the controller has {self.axes} axes')
        for index, point in enumerate(points):
            if len(point.positions) != self.axes:
                return (InitTraj.INIT_TRAJ_WRONG_NUMBER_OF_POSITIONS,
                        f'point {index} has {len(point.positions)} positions')
            if len(point.velocities) != self.axes:
                return (InitTraj.INIT_TRAJ_WRONG_NUMBER_OF_VELOCITIES,
                        f'point {index} has {len(point.velocities)} velocities')
        times = [_millis(p.time_from_start_ns) for p in points]
        for j, name in enumerate(names):
            if name in names[j + 1:]:
                return InitTraj.INIT_TRAJ_DUPLICATE_JOINT_NAME, f'{name!r} appears twice'
            if name not in self.joint_names:
                return (InitTraj.INIT_TRAJ_INVALID_JOINTNAME,
                        f'{name!r} is not one of {list(self.joint_names)}')
            for index, time_ms in enumerate(times):
                if time_ms < 0 or (time_ms == 0 and index != 0):
                    return (InitTraj.INIT_TRAJ_INVALID_TIME,
                            f'point {index} time_from_start {time_ms} ms')
                if index and time_ms < times[index - 1]:
                    return (InitTraj.INIT_TRAJ_BACKWARD_TIME,
                            f'point {index} at {time_ms} ms is before point {index - 1} at '
                            f'{times[index - 1]} ms')
            last_velocity = points[-1].velocities[j]
            if whole_trajectory and not abs(last_velocity) <= ENDING_VELOCITY_TOLERANCE:
                return (InitTraj.INIT_TRAJ_INVALID_ENDING_VELOCITY,
                        f'{name!r} ends at {last_velocity} rad/s')
        order = [names.index(n) for n in self.joint_names]
        waypoints = [_Waypoint(t, np.asarray(p.positions, dtype=float)[order],
                               np.asarray(p.velocities, dtype=float)[order])
                     for p, t in zip(points, times)]
        first, command = waypoints[0], self._command_positions()
        for axis, name in enumerate(self.joint_names):
            deviation = abs(first.positions[axis] - command[axis])
            if not deviation <= self.start_tolerance:
                return (InitTraj.INIT_TRAJ_INVALID_STARTING_POS,
                        f'{name!r} starts {deviation:.5f} rad from the commanded position '
                        f'(tolerance {self.start_tolerance} rad)')
            if not abs(first.velocities[axis]) <= self.max_speed[axis]:
                return (InitTraj.INIT_TRAJ_INVALID_VELOCITY,
                        f'{name!r} first velocity {first.velocities[axis]} rad/s exceeds '
                        f'{self.max_speed[axis]} rad/s')
        self._motion = _Motion(first, waypoints[1:])
        self._point_queue_stalled = False
        return None, ''

    def cancel_goal(self) -> GoalOutcome | None:
        """Cancel: motion stops, the job keeps running, the goal ends CANCELED with -500300
        (reference §2.6); delivered by the next `goal_tick`. None if no goal runs."""
        if self._goal is None:
            return None
        self._clear_motion()
        outcome = GoalOutcome('canceled', fjt_error_code(FJT_GOAL_TOLERANCE_VIOLATED,
                                                         FailTraj.FAIL_TRAJ_CANCEL),
                              FailTraj.FAIL_TRAJ_CANCEL, 'cancelled by the client')
        self._goal = None
        self._goal_outcome = outcome
        return outcome

    def goal_active(self) -> bool:
        return self._goal is not None

    def goal_tick(self, now: float) -> GoalOutcome | None:
        """The feedback timer (every 20 ms, reference §2.1): the outcome of a goal that has ended
        since the last tick, else None (MR `Ros_ActionServer_FJT_ProcessFeedback` /
        `_ProcessResult`): an alarm or error aborts (-100303, the job stops); no data left to
        process and not in motion completes and checks position and time."""
        if self._goal is not None:
            if self.in_error():
                self._stop_job()
                self._goal_outcome = GoalOutcome(
                    'aborted', fjt_error_code(FJT_INVALID_GOAL, FailTraj.FAIL_TRAJ_ALARM),
                    FailTraj.FAIL_TRAJ_ALARM,
                    f'alarm/error {self._fault_codes()} during the trajectory')
                self._goal = None
            elif not self._has_data_to_process() and not self.in_motion():
                self._goal_outcome = self._completed(self._goal, now)
                self._goal = None
        outcome, self._goal_outcome = self._goal_outcome, None
        return outcome

    def _completed(self, goal: TrajectoryGoal, now: float) -> GoalOutcome:
        """Goal tolerance per joint by name (0 -> default, negative -> unchecked, unknown names
        ignored, the last of several wins) against the last point, then the duration two-sided
        against goal_time_tolerance (0 -> 0.5 s) (reference §2.6)."""
        tolerances = dict.fromkeys(self.joint_names, DEFAULT_GOAL_POSITION_TOLERANCE)
        for name, value in goal.goal_tolerance:
            if name in tolerances:
                tolerances[name] = value if value != 0.0 else DEFAULT_GOAL_POSITION_TOLERANCE
        names = list(goal.joint_names)
        target = dict(zip(names, goal.points[-1].positions))
        measured = self._measured_positions()
        violations = []
        for axis, name in enumerate(self.joint_names):
            deviation = abs(target[name] - measured[axis])
            if tolerances[name] >= 0.0 and deviation > tolerances[name]:
                violations.append(f'{name}: {deviation:.4f} rad off (tolerance '
                                  f'{tolerances[name]})')
        if violations:
            return GoalOutcome('aborted', fjt_error_code(FJT_GOAL_TOLERANCE_VIOLATED,
                                                         FailTraj.FAIL_TRAJ_POSITION),
                               FailTraj.FAIL_TRAJ_POSITION,
                               'final position outside goal_tolerance: ' + '; '.join(violations))
        desired_s = goal.points[-1].time_from_start_ns * 1e-9
        actual_s = now - self._goal_started_at
        tolerance_s = (goal.goal_time_tolerance_ns * 1e-9 if goal.goal_time_tolerance_ns
                       else DEFAULT_GOAL_TIME_TOLERANCE_S)
        if not abs(actual_s - desired_s) <= tolerance_s:
            return GoalOutcome('aborted', fjt_error_code(FJT_GOAL_TOLERANCE_VIOLATED,
                                                         FailTraj.FAIL_TRAJ_TIME),
                               FailTraj.FAIL_TRAJ_TIME,
                               f'took {actual_s:.3f} s for a {desired_s:.3f} s trajectory '
                               f'(goal_time_tolerance {tolerance_s} s)')
        return GoalOutcome('succeeded', FJT_SUCCESSFUL, None, 'trajectory completed')

    # ------------------------------------------------------------------ point queue
    def queue_point(self, joint_names: Sequence[str], point: GoalPoint) -> ServiceAnswer:
        """queue_traj_point (reference §2.7; MR src/ServiceQueueTrajPoint.c,
        `Ros_MotionControl_ProcessQueuedTrajectoryPoint`).

        Not in point-queue mode: 2. The first point after start_point_queue_mode goes through
        the trajectory start checks and answers 1 or the InitTrajEnum code (204: not at the
        commanded position; reference §2.7 for 2007fd6 - earlier MotoROS2 commits answer 3
        INIT_FAILURE instead, MR src/MotionControl.c @ cfb087a); it only sets where motion
        starts. Later points: wrong joint count
        5, BUSY 4 while the previous point is not yet in the increment queue, duplicate names
        215, unknown name 5, negative time 6 (also ours for missing positions / velocities,
        which MotoROS2 does not check), else 1. Each later point adds the segment from the
        previous point over the difference of their times: one running timeline. A time not
        after the previous one adds no motion, and the next segment starts from the skipped
        point's position (a jump; derived, MR `Ros_MotionControl_AddToIncQueueProcess`).
        """
        names = [str(n) for n in joint_names]
        if self.mode != 'point_queue':
            return self._refused_point(QueueResult.WRONG_MODE, f'mode is {self.mode!r}')
        if self._must_init_point_queue:
            code, detail = self._init_motion(names, [point], whole_trajectory=False)
            if code is not None:
                return self._refused_point(code, detail)
            self._must_init_point_queue = False
            self.counters['points_queued'] += 1
            return ServiceAnswer(QueueResult.SUCCESS, 'first point: the queue starts here')
        if len(names) != self.axes:
            return self._refused_point(QueueResult.INVALID_JOINT_LIST,
                                       f'{len(names)} joint names for {self.axes} axes')
        if self._point_busy():
            self.counters['points_busy'] += 1
            return ServiceAnswer(QueueResult.BUSY, 'the previous point is still being processed')
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            return self._refused_point(InitTraj.INIT_TRAJ_DUPLICATE_JOINT_NAME,
                                       f'{duplicates} appear twice')
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            return self._refused_point(QueueResult.INVALID_JOINT_LIST,
                                       f'{unknown} are not in {list(self.joint_names)}')
        time_ms = _millis(point.time_from_start_ns)
        if time_ms < 0:
            return self._refused_point(QueueResult.UNABLE_TO_PROCESS_POINT,
                                       f'time_from_start {time_ms} ms is negative')
        if len(point.positions) != self.axes or len(point.velocities) != self.axes:
            return self._refused_point(
                QueueResult.UNABLE_TO_PROCESS_POINT,
                f'{len(point.positions)} positions and {len(point.velocities)} velocities for '
                f'{self.axes} axes')
        order = [names.index(n) for n in self.joint_names]
        waypoint = _Waypoint(time_ms, np.asarray(point.positions, dtype=float)[order],
                             np.asarray(point.velocities, dtype=float)[order])
        if self._motion is None:
            # The queue was cleared under a running point queue (an alarm, just before the mode
            # drops): MotoROS2 takes the point but no longer processes any, so it is never run
            # and the next one is BUSY (derived, MR src/MotionControl.c).
            self._point_queue_stalled = True
            self._motion = _Motion(_Waypoint(time_ms, self._command_positions(),
                                             np.zeros(self.axes)))
        self._motion.ahead.append(waypoint)
        self._point_waiting_for_task = True
        self.counters['points_queued'] += 1
        return ServiceAnswer(QueueResult.SUCCESS)

    def _refused_point(self, code: IntEnum, detail: str) -> ServiceAnswer:
        self.counters['points_refused'] += 1
        return ServiceAnswer(code, detail)

    def _point_busy(self) -> bool:
        """The latest point is not yet fully in the increment queue (or never will be: a queue
        stalled by a dropped point stays BUSY until the mode is restarted)."""
        motion = self._motion
        if self._point_waiting_for_task:
            return True
        return motion is not None and motion.processed < len(motion.ahead)

    # ------------------------------------------------------------------ the update
    def update(self, now: float, measured_q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Advance to `now` with the latest measurement; returns the setpoint (q, qd)."""
        dt_ms = max(0.0, (now - self._now) * 1000.0)
        self._now = now
        self._measured_q = np.asarray(measured_q, dtype=float).reshape(-1).copy()
        if self._command_q is None:
            self._command_q = self._measured_q.copy()
        if not self.motion_ready():
            self._clear_motion()
            if self.mode == 'point_queue':
                # MotoROS2 drops the point-queue mode when motion becomes impossible, so that
                # the next queue starts from where the robot then is (MR
                # `Ros_MotionControl_ValidateMotionModeIsOk`).
                self._end_mode()
        self._process_points()
        self._advance(dt_ms)
        return self._command_q.copy(), self._command_qd.copy()

    def _process_points(self) -> None:
        """The increment task: the point it works on is checked against the axis speeds (a point
        too fast is dropped and processing stops, MR `Ros_MotionControl_AddToIncQueueProcess`)
        and counts as processed once all of its increments fit in the queue."""
        motion = self._motion
        self._point_waiting_for_task = False
        if motion is None or self._point_queue_stalled:
            return
        while motion.processed < len(motion.ahead):
            point = motion.ahead[motion.processed]
            if np.any(np.abs(point.velocities) > self.max_speed):
                self.counters['points_dropped'] += 1
                del motion.ahead[motion.processed:]
                if self.mode == 'point_queue':
                    self._point_queue_stalled = True
                return
            if motion.remaining_ms(motion.processed + 1) > self.increment_queue_ms:
                return  # in progress: its first increments are queued, the rest wait for room
            motion.processed += 1

    def _executable(self) -> int:
        """How many of the waypoints ahead have increments queued: the processed ones and the
        one the task is working on."""
        motion = self._motion
        if motion is None:
            return 0
        working = 0 if self._point_queue_stalled else 1
        return min(len(motion.ahead), motion.processed + working)

    def _advance(self, dt_ms: float) -> None:
        """Run `dt_ms` of queued motion; a queue that runs dry holds the last command."""
        motion = self._motion
        moved = False
        while motion is not None and self._executable() > 0 and dt_ms > 0.0:
            end = motion.ahead[0]
            span = end.time_ms - motion.start.time_ms
            step = max(0.0, min(dt_ms, span - motion.elapsed_ms))
            motion.elapsed_ms += step
            dt_ms -= step
            if span <= 0:
                # No time to run it: no increments; the next segment starts from it (MR
                # `Ros_MotionControl_AddToIncQueueProcess`), the command stays where it is.
                motion.start = end
                motion.ahead.pop(0)
                motion.processed = max(0, motion.processed - 1)
                motion.elapsed_ms = 0.0
            elif motion.elapsed_ms >= span - 1e-9:
                motion.start = end
                motion.ahead.pop(0)
                motion.processed = max(0, motion.processed - 1)
                motion.elapsed_ms = 0.0
                self._command_q, self._command_qd = end.positions.copy(), end.velocities.copy()
            else:
                self._command_q, self._command_qd = _cubic(motion.start, end, motion.elapsed_ms)
            moved = True
        if not moved or dt_ms > 0.0:
            self._command_qd = np.zeros(self.axes)

    def _clear_motion(self) -> None:
        """ClearQ_All: queued and unprocessed motion is dropped; the command holds."""
        self._motion = None
        self._command_qd = np.zeros(self.axes)
        self._point_waiting_for_task = False

    def moved_externally(self, measured_q: Sequence[float]) -> None:
        """The arm was put somewhere else under the driver (a simulator reset): motion is
        cleared, the command follows the arm (MotoROS2 re-reads the position when it does not
        command motion) and a running point queue must start again, as after motion was
        impossible; a running goal ends at the next tick by the completion checks."""
        self._measured_q = np.asarray(measured_q, dtype=float).reshape(-1).copy()
        self._command_q = self._measured_q.copy()
        self._clear_motion()
        if self.mode == 'point_queue':
            self._end_mode()

    # ------------------------------------------------------------------ state for publishing
    def _command_positions(self) -> np.ndarray:
        if self._command_q is None:
            raise ConfigError('MotoROS2 controller: no position yet (update() was never called)')
        return self._command_q

    def _measured_positions(self) -> np.ndarray:
        return self._command_positions() if self._measured_q is None else self._measured_q

    def command(self) -> tuple[np.ndarray, np.ndarray]:
        """The commanded (desired) positions and velocities."""
        return self._command_positions().copy(), self._command_qd.copy()

    def _queued_ms(self) -> float:
        """Motion in the increment queue (what the robot will still run without more points)."""
        motion = self._motion
        return 0.0 if motion is None else motion.remaining_ms(self._executable())

    def in_motion(self) -> bool:
        """Motion still queued, or the arm more than the start tolerance from the command."""
        if self._queued_ms() > 0.0:
            return True
        lag = np.abs(self._measured_positions() - self._command_positions())
        return bool(np.any(lag > self.start_tolerance))

    def _fault_codes(self) -> list[int]:
        return [a.code for a in self.alarms] + [e.code for e in self.errors]

    def robot_status(self) -> RobotStatusFields:
        """industrial_msgs/RobotStatus as MotoROS2 fills it (reference §2.5): error_codes empty
        while motion is possible, else the active alarms then the error."""
        ready = self.motion_ready()
        return RobotStatusFields(
            mode='AUTO' if self.play else 'MANUAL', e_stopped=self.estop,
            drives_powered=self.servo_on, motion_possible=ready, in_motion=self.in_motion(),
            in_error=self.in_error(),
            error_codes=() if ready else tuple(self._fault_codes()))

    def queued_motion_s(self) -> float:
        """Seconds of motion queued ahead of the command (0 when idle)."""
        return self._queued_ms() / 1000.0


def seconds_to_ns(seconds: float) -> int:
    """A time in seconds as integer nanoseconds (rounded), for GoalPoint times."""
    if not math.isfinite(seconds):
        raise ValueError(f'time {seconds} is not finite')
    return int(round(seconds * 1e9))


class IoResult(IntEnum):
    """motoros2_interfaces/IoResultCodes (reference §2.4)."""

    OK = 0
    READ_ADDRESS_INVALID = 1001
    WRITE_ADDRESS_INVALID = 1002
    WRITE_VALUE_INVALID = 1003
    READ_API_ERROR = 1004
    WRITE_API_ERROR = 1005


class SelectionResult(IntEnum):
    """motoros2_interfaces/SelectionResultCodes (reference §2.4)."""

    OK = 0
    INVALID_CONTROLLER_STATE = 400
    INVALID_CONTROL_GROUP = 401
    INVALID_SELECTION_INDEX = 402


# Address ranges of a YRC1000 (the controller of the GP8 and HC10), (first, last) inclusive,
# derived from MR src/ServiceReadWriteIO.c: bit addresses end in 0-7; a group address is a bit
# address / 10; M registers are 1000000 + n (n < 1000000 is taken as n), readable up to
# 1000999, writable up to 1000559.
_READABLE_BITS = ((10, 5127), (10010, 15127), (20010, 25127), (27010, 29567), (37010, 39567),
                  (30010, 35127), (40010, 42567), (50010, 55127), (60010, 60647),
                  (70010, 79997), (80010, 85127), (87010, 87207))
_WRITABLE_BITS = ((10010, 15127), (27010, 29567), (60010, 60647))
M_REGISTER_BASE = 1000000
_M_REGISTER_LAST_READ = 1000999
_M_REGISTER_LAST_WRITE = 1000559
# select_motion_tool: tool files 0-63 (MR MAX_VALID_TOOL_INDEX; 64 tool files on a YRC1000,
# UNCONFIRMED per controller).
TOOL_COUNT = 64


class IoMemory:
    """The controller's I/O and M registers as MotoROS2's I/O services see them: the address
    rules and result codes are MotoROS2's, the memory is ours (every signal starts at 0, a write
    is read back; no ladder logic runs)."""

    def __init__(self) -> None:
        self.values: dict[int, int] = {}

    @staticmethod
    def _bit_ok(address: int, ranges: tuple[tuple[int, int], ...]) -> bool:
        return address % 10 <= 7 and any(lo <= address <= hi for lo, hi in ranges)

    def read_single(self, address: int) -> tuple[IoResult, int]:
        if not self._bit_ok(address, _READABLE_BITS):
            return IoResult.READ_ADDRESS_INVALID, 0
        return IoResult.OK, self.values.get(address, 0)

    def write_single(self, address: int, value: int) -> IoResult:
        if not self._bit_ok(address, _WRITABLE_BITS):
            return IoResult.WRITE_ADDRESS_INVALID
        if value not in (0, 1):
            return IoResult.WRITE_VALUE_INVALID
        self.values[address] = int(value)
        return IoResult.OK

    def read_group(self, address: int) -> tuple[IoResult, int]:
        first = address * 10
        if not self._bit_ok(first, _READABLE_BITS):
            return IoResult.READ_ADDRESS_INVALID, 0
        return IoResult.OK, sum(self.values.get(first + i, 0) << i for i in range(8))

    def write_group(self, address: int, value: int) -> IoResult:
        first = address * 10
        if not self._bit_ok(first, _WRITABLE_BITS):
            return IoResult.WRITE_ADDRESS_INVALID
        if not 0 <= value <= 0xFF:
            return IoResult.WRITE_VALUE_INVALID
        for i in range(8):
            self.values[first + i] = (int(value) >> i) & 1
        return IoResult.OK

    @staticmethod
    def _register(address: int) -> int:
        return address + M_REGISTER_BASE if address < M_REGISTER_BASE else address

    def read_mregister(self, address: int) -> tuple[IoResult, int]:
        address = self._register(address)
        if not M_REGISTER_BASE <= address <= _M_REGISTER_LAST_READ:
            return IoResult.READ_ADDRESS_INVALID, 0
        return IoResult.OK, self.values.get(address, 0)

    def write_mregister(self, address: int, value: int) -> IoResult:
        address = self._register(address)
        if not M_REGISTER_BASE <= address <= _M_REGISTER_LAST_WRITE:
            return IoResult.WRITE_ADDRESS_INVALID
        if not 0 <= value <= 0xFFFF:
            return IoResult.WRITE_VALUE_INVALID
        self.values[address] = int(value)
        return IoResult.OK


def select_motion_tool(controller: MotoRos2Controller, group_number: int, tool_number: int,
                       groups: int | None = None) -> SelectionResult:
    """MR src/ServiceSelectMotionTool.c: 400 unless REMOTE, 401 for a group (0-based) the
    controller lacks (`groups` of them; default: the controller's robot groups), 402 for a tool
    index out of range, else OK (the tool changes the TCP of later motion; the emulated arm has
    no tool data, so nothing else changes)."""
    if groups is None:
        groups = len(controller.groups)
    if not controller.remote:
        return SelectionResult.INVALID_CONTROLLER_STATE
    if not 0 <= group_number < groups:
        return SelectionResult.INVALID_CONTROL_GROUP
    if not 0 <= tool_number < TOOL_COUNT:
        return SelectionResult.INVALID_SELECTION_INDEX
    return SelectionResult.OK
