"""ros2_controllers' joint trajectory controller (JTC) as fanuc_driver runs it, without ROS.

fanuc_driver v2.2.0 drives the arm with `fanuc_controllers/ScaledJointTrajectoryController`, a
JTC subclass that scales trajectory time by `/speed_scaling_factor` and stops on `!motion_possible`
(driver-interfaces.md §3.1, §3.4). This module holds its rules so the simulator
(noetra_ros/drivers/sim_fanuc.py) can play it and the rules can be tested without DDS:

- `validate()`: every reason JTC refuses a trajectory (an action goal is REJECTED, a
  `~/joint_trajectory` message is dropped); `TrajectoryController.submit()` then makes it the
  trajectory of the next update, an action goal preempting the previous one.
- `TrajectoryController.update(now, measured_q, measured_qd)`: one controller update (500 Hz on
  the real driver): speed-scaled trajectory time, JTC's spline (linear / cubic / quintic by the
  fields the points carry, core/trajectory.py), path and goal tolerances, the STMO stop. It
  returns the position setpoint for the hardware and the goal outcomes (`ControllerEvent`).
- `FanucRobotStatus`: the booleans of fanuc_gpio_controller's `robot_status`, what
  `switch_control_state` does to them, and the simulator's (sim-only) fault injection.
- `forward_command()`: forward_position_controller's one rule (one value per joint).

Times are the cell clock in seconds (`now`; the ROS clock the stamps carry). Joint vectors are in
the controller's joint order (its `joints` parameter, fanuc_driver's J1..J6).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from noetra_ros.core.errors import CommandError, ConfigError
from noetra_ros.core.trajectory import JointTrajectory

# FollowJointTrajectory result codes: driver-interfaces.md §1.1 (CMJ FollowJointTrajectory.action).
SUCCESSFUL = 0
INVALID_GOAL = -1
INVALID_JOINTS = -2
OLD_HEADER_TIMESTAMP = -3
PATH_TOLERANCE_VIOLATED = -4
GOAL_TOLERANCE_VIOLATED = -5

# fanuc_driver's JTC parameters: driver-interfaces.md §3.4 (FD ros2_controllers.yaml):
# per joint `trajectory: 0.25` rad, `goal: 0.05` rad, `goal_time: 0.0` (0 = no deadline).
DEFAULT_PATH_TOLERANCE_RAD = 0.25
DEFAULT_GOAL_TOLERANCE_RAD = 0.05
DEFAULT_GOAL_TIME_S = 0.0
# Speed scaling: a first-order lag with tau 0.2 s that starts at 100 % (§3.4, FD
# scaled_joint_trajectory_controller.cpp).
SCALING_LAG_TAU_S = 0.2
NOMINAL_SPEED_PERCENT = 100
# JTC refuses a final velocity above single-precision epsilon (§3.4, RC validate_trajectory_msg).
FINAL_VELOCITY_EPSILON = float(np.finfo(np.float32).eps)
# A goal tolerance of exactly -1 removes the limit, 0 keeps the default (§1.2).
ERASE_TOLERANCE = -1.0

# Result texts clients see. The preempt and STMO texts: driver-interfaces.md §3.4 (RC
# preempt_active_goal; FDD motion_control_authority.md). The success / path / goal-time texts
# were read in FD fanuc_controllers/src/scaled_joint_trajectory_controller.cpp (the search
# index's copy at 2f151e7; v2.2.0 itself is not indexed).
PREEMPTED_TEXT = 'Current goal preempted by new incoming action.'
STMO_INACTIVE_TEXT = 'Aborted: STMO is inactive (!motion_possible)'
SUCCESS_TEXT = 'Goal successfully reached!'
PATH_TOLERANCE_TEXT = 'Aborted due to path tolerance violation'
GOAL_TIME_TEXT = 'Aborted due to goal_time_tolerance exceeding by {:.6f} seconds'
# Our own text: a simulator reset moves the arm under a running goal, which no real cell does.
SIM_RESET_TEXT = 'Aborted: the simulated cell was reset (the arm was moved under the goal)'


# ---------------------------------------------------------------- incoming messages
@dataclass(frozen=True)
class TrajectoryPointData:
    """One trajectory_msgs/JointTrajectoryPoint as plain data (empty tuple = field not given)."""

    positions: tuple[float, ...]
    time_from_start_s: float
    velocities: tuple[float, ...] = ()
    accelerations: tuple[float, ...] = ()
    effort: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrajectoryData:
    """A trajectory_msgs/JointTrajectory as plain data. `stamp_s` 0.0 = the header stamp is zero
    (JTC then starts the trajectory at its first update)."""

    joint_names: tuple[str, ...]
    points: tuple[TrajectoryPointData, ...]
    stamp_s: float = 0.0


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _duration_s(duration: Any) -> float:
    return float(duration.sec) + float(duration.nanosec) * 1e-9


def trajectory_data_from_msg(msg: Any) -> TrajectoryData:
    """Plain data from anything shaped like trajectory_msgs/JointTrajectory (the ROS message or
    a test double): `header.stamp.{sec,nanosec}`, `joint_names`, `points[*].positions /
    velocities / accelerations / effort / time_from_start.{sec,nanosec}`."""
    points = tuple(
        TrajectoryPointData(positions=_floats(p.positions),
                            time_from_start_s=_duration_s(p.time_from_start),
                            velocities=_floats(p.velocities),
                            accelerations=_floats(p.accelerations), effort=_floats(p.effort))
        for p in msg.points)
    return TrajectoryData(joint_names=tuple(str(n) for n in msg.joint_names), points=points,
                          stamp_s=_duration_s(msg.header.stamp))


# ---------------------------------------------------------------- validation
def validate(trajectory: TrajectoryData, joints: Sequence[str], now: float,
             active: bool = True) -> str | None:
    """Why JTC refuses `trajectory` (None = accepted), in JTC's order of checks.

    driver-interfaces.md §3.4 (RC validate_trajectory_msg, allow_partial_joints_goal false,
    allow_nonzero_velocity_at_trajectory_end false): controller inactive; name count not the
    controller's; no names; the end in the past for a non-zero header stamp; a name the controller
    lacks; no points; a non-zero final velocity; times not strictly increasing; a point without
    one position per joint; velocities / accelerations neither empty nor full; effort given.
    Stricter than JTC (a bad value would reach the arm there; here the arm holds): repeated
    names, non-finite numbers and a negative time_from_start are refused too.
    """
    if not active:
        return 'the controller is not active'
    names = list(trajectory.joint_names)
    count = len(joints)
    if len(names) != count:
        return (f'{len(names)} joint names {names} for a controller of {count} joints '
                f'{list(joints)} (partial goals are not allowed)')
    if not names:
        return 'no joint names'
    points = trajectory.points
    if trajectory.stamp_s != 0.0 and points:
        end = trajectory.stamp_s + points[-1].time_from_start_s
        if end < now:
            return (f'header stamp {trajectory.stamp_s:.6f} s puts the trajectory end '
                    f'({end:.6f} s) in the past (now {now:.6f} s)')
    unknown = [n for n in names if n not in joints]
    if unknown:
        return f'joint names {unknown} are not joints of the controller {list(joints)}'
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f'joint names {repeated} appear more than once'
    if not points:
        return 'the trajectory has no points'
    final_velocities = points[-1].velocities
    moving = [names[i] for i, v in enumerate(final_velocities)
              if not abs(v) <= FINAL_VELOCITY_EPSILON]
    if moving:
        return (f'the last point has non-zero velocity for {moving}: '
                f'{list(final_velocities)} (the trajectory must end at rest)')
    for index, point in enumerate(points):
        if point.time_from_start_s < 0.0:
            return f'point {index} has a negative time_from_start {point.time_from_start_s}'
        if index > 0 and point.time_from_start_s <= points[index - 1].time_from_start_s:
            return (f'times are not strictly increasing: point {index} at '
                    f'{point.time_from_start_s} s, point {index - 1} at '
                    f'{points[index - 1].time_from_start_s} s')
        if len(point.positions) != count:
            return (f'point {index} has {len(point.positions)} positions for {count} joints')
        for field_name in ('velocities', 'accelerations'):
            values = getattr(point, field_name)
            if values and len(values) != count:
                return (f'point {index} has {len(values)} {field_name} for {count} joints '
                        '(give none or one per joint)')
        if point.effort:
            return f'point {index} carries effort, which the controller does not accept'
        for field_name in ('positions', 'velocities', 'accelerations'):
            values = getattr(point, field_name)
            if not all(math.isfinite(v) for v in values):
                return f'point {index} has a non-finite value in {field_name}: {list(values)}'
        if not math.isfinite(point.time_from_start_s):
            return f'point {index} has a non-finite time_from_start'
    return None


def core_trajectory(trajectory: TrajectoryData, joints: Sequence[str]) -> JointTrajectory:
    """The validated message as the core type, in the controller's joint order.

    The spline follows the fields as JTC's does: velocities on every point -> cubic, plus
    accelerations -> quintic, else linear. JTC picks the degree per segment; a message that gives
    velocities on some points only is interpolated linearly throughout here (our core type
    has one degree per trajectory), a deviation no planner's output shows.
    """
    points = trajectory.points
    with_velocities = all(p.velocities for p in points)
    with_accelerations = with_velocities and all(p.accelerations for p in points)
    ordered = JointTrajectory(
        joint_names=trajectory.joint_names,
        times_from_start=np.array([p.time_from_start_s for p in points]),
        positions=np.array([p.positions for p in points]),
        velocities=np.array([p.velocities for p in points]) if with_velocities else None,
        accelerations=(np.array([p.accelerations for p in points]) if with_accelerations
                       else None))
    return ordered.reordered(list(joints))


# ---------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class JointToleranceData:
    """control_msgs/JointTolerance as plain data (§1.2)."""

    name: str
    position: float = 0.0
    velocity: float = 0.0
    acceleration: float = 0.0


@dataclass(frozen=True)
class SegmentTolerances:
    """Position tolerances per joint (0 = not checked) and the goal deadline (0 = none).

    Only positions are checked: fanuc_driver's controller commands positions only, and its
    error computation fills velocity errors only for velocity / effort command interfaces (FD
    scaled_joint_trajectory_controller.cpp), so velocity and acceleration tolerances never trip.
    """

    path: np.ndarray
    goal: np.ndarray
    goal_time_s: float = DEFAULT_GOAL_TIME_S


def default_tolerances(joint_count: int, path_rad: float = DEFAULT_PATH_TOLERANCE_RAD,
                       goal_rad: float = DEFAULT_GOAL_TOLERANCE_RAD,
                       goal_time_s: float = DEFAULT_GOAL_TIME_S) -> SegmentTolerances:
    return SegmentTolerances(path=np.full(joint_count, path_rad),
                             goal=np.full(joint_count, goal_rad), goal_time_s=goal_time_s)


def _resolve(default: float, requested: float) -> float:
    """A goal's tolerance value over the default: > 0 replaces it, 0 keeps it, -1 removes the
    limit; any other negative value is illegal (ValueError). §1.2 (RC tolerances)."""
    if requested > 0.0:
        return requested
    if abs(requested - ERASE_TOLERANCE) < np.finfo(float).eps:
        return 0.0
    if requested < 0.0 or not math.isfinite(requested):
        raise ValueError(f'illegal tolerance {requested}')
    return default


def resolve_tolerances(defaults: SegmentTolerances, joints: Sequence[str],
                       path: Sequence[JointToleranceData] = (),
                       goal: Sequence[JointToleranceData] = (),
                       goal_time_s: float = 0.0) -> tuple[SegmentTolerances, str | None]:
    """The tolerances a goal runs with, and a warning when the goal's are ignored.

    As JTC resolves them: the goal's values override the defaults per joint; a tolerance for an
    unknown joint, or an illegal value anywhere, leaves the goal with the defaults entirely (the
    goal itself is still accepted).
    """
    path_tol = defaults.path.copy()
    goal_tol = defaults.goal.copy()
    try:
        deadline = _resolve(defaults.goal_time_s, float(goal_time_s))
    except ValueError:
        return defaults, f'goal_time_tolerance {goal_time_s} s is illegal: default tolerances used'
    for kind, entries, target in (('path', path, path_tol), ('goal', goal, goal_tol)):
        for entry in entries:
            if entry.name not in joints:
                return defaults, (f'{kind} tolerance for unknown joint {entry.name!r}: '
                                  'default tolerances used')
            index = list(joints).index(entry.name)
            try:
                target[index] = _resolve(target[index], float(entry.position))
                # Checked for legality only: velocity / acceleration are never compared here.
                _resolve(0.0, float(entry.velocity))
                _resolve(0.0, float(entry.acceleration))
            except ValueError:
                return defaults, (f'illegal {kind} tolerance for joint {entry.name!r} '
                                  f'({entry}): default tolerances used')
    return SegmentTolerances(path=path_tol, goal=goal_tol, goal_time_s=deadline), None


# ---------------------------------------------------------------- speed scaling
class SpeedScaling:
    """fanuc_driver's trajectory time scale: `0.01 * lag(percent) * collaborative`.

    `percent` comes from `/speed_scaling_factor` (std_msgs/Int32, clamped to 0..100); the lag is
    a discrete first-order filter (tau 0.2 s) starting at 100; `collaborative` is the robot's
    collaborative speed scaling state (1.0 on a non-collaborative arm; a non-finite reading is
    ignored). driver-interfaces.md §3.4 (FD scaled_joint_trajectory_controller.cpp).
    """

    def __init__(self, tau_s: float = SCALING_LAG_TAU_S) -> None:
        self.tau_s = tau_s
        self.percent = NOMINAL_SPEED_PERCENT
        self.filtered_percent = float(NOMINAL_SPEED_PERCENT)
        self.collaborative = 1.0

    def set_percent(self, value: int) -> int:
        """The percent as the controller keeps it (clamped to 0..100)."""
        self.percent = int(min(max(int(value), 0), 100))
        return self.percent

    def set_collaborative(self, value: float) -> None:
        if math.isfinite(value):
            self.collaborative = float(value)

    def advance(self, period_s: float) -> float:
        """One controller period: step the lag, return the factor trajectory time runs at."""
        step = min(max(period_s / self.tau_s, 0.0), 1.0)
        self.filtered_percent += step * (self.percent - self.filtered_percent)
        return self.factor

    @property
    def factor(self) -> float:
        return 0.01 * self.filtered_percent * self.collaborative


# ---------------------------------------------------------------- the controller
@dataclass(frozen=True)
class ControllerEvent:
    """Something a client or the log must hear of.

    kind 'succeeded' / 'aborted' / 'canceled' end the goal `goal_id` with `error_code` and
    `text` (the FollowJointTrajectory result); kind 'hold' (goal_id None) is a notice for the
    log: the controller stopped a trajectory that no goal watched.
    """

    kind: str
    goal_id: Hashable | None
    error_code: int = SUCCESSFUL
    text: str = ''


@dataclass(frozen=True)
class ControllerState:
    """What `~/controller_state` and the action feedback carry (controller joint order).

    `reference` = the sampled trajectory (desired), `feedback` = the measured state, `error` =
    reference - feedback positions, `output` = the position command sent to the hardware.
    `trajectory_time` is the scaled time the trajectory was sampled at (the feedback stamp,
    §3.4), `speed_scaling_factor` the collaborative scaling the controller reads (1.0 in the sim;
    the `/speed_scaling_factor` percent is not part of it, derived from FD + RC: JTC publishes
    its own `scaling_factor_`, which fanuc's controller fills from the collaborative state).
    """

    stamp: float
    trajectory_time: float
    reference_positions: np.ndarray
    reference_velocities: np.ndarray
    feedback_positions: np.ndarray
    feedback_velocities: np.ndarray
    error_positions: np.ndarray
    output_positions: np.ndarray
    speed_scaling_factor: float


@dataclass(frozen=True)
class QueryAnswer:
    """control_msgs/srv/QueryTrajectoryState's answer (§1.3)."""

    success: bool
    message: str
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray


@dataclass
class _Pending:
    trajectory: JointTrajectory
    stamp_s: float
    tolerances: SegmentTolerances


@dataclass
class _Running:
    """A trajectory being executed. Times: `time_before` (cell clock of its first update),
    `start` (trajectory start in the scaled clock: the header stamp, else the first sample),
    `elapsed` (scaled time since `time_before`). `spline` is sampled at `elapsed - shift`."""

    spline: JointTrajectory
    shift: float
    time_before: float
    start: float
    end_from_start: float  # time_from_start of the message's last point
    tolerances: SegmentTolerances
    elapsed: float = 0.0
    first_sample: bool = True

    @property
    def scaled_time(self) -> float:
        return self.time_before + self.elapsed

    @property
    def before_last_point(self) -> bool:
        return self.scaled_time - self.start < self.end_from_start


class TrajectoryController:
    """fanuc_driver's scaled joint trajectory controller, one `update()` per controller period.

    Call order per period (the simulator's): `update(now, q, qd)` -> hand `setpoint` to the arm.
    Between updates: `validate()` + `submit()` for each goal or topic message, `cancel()`,
    `speed_scaling.set_percent()`, and `motion_possible` (the robot's `Status/motion_possible`).
    Before its first trajectory, and after any stop, the controller holds the measured position
    (JTC holds on activation, abort and cancel; at the last point after success).
    """

    def __init__(self, joints: Sequence[str], update_hz: float,
                 tolerances: SegmentTolerances | None = None) -> None:
        self.joints = tuple(str(j) for j in joints)
        if not self.joints or len(set(self.joints)) != len(self.joints):
            raise ConfigError(f'controller joints {list(joints)}: need distinct names')
        if not update_hz > 0:
            raise ConfigError(f'controller update rate {update_hz}: must be > 0')
        self.nominal_period = 1.0 / float(update_hz)
        count = len(self.joints)
        self.default_tolerances = tolerances or default_tolerances(count)
        self.active = True
        self.motion_possible = True
        self.speed_scaling = SpeedScaling()
        self._stopped_for_motion = False
        self._pending: _Pending | None = None
        self._running: _Running | None = None
        self._hold: np.ndarray | None = None  # None with no trajectory: hold what is measured
        self._goal: Hashable | None = None
        self._last_now: float | None = None
        zeros = np.zeros(count)
        self._measured_q = zeros.copy()
        self._measured_qd = zeros.copy()
        self._reference = (zeros.copy(), zeros.copy())
        self._output = zeros.copy()
        self._started = False

    # ------------------------------------------------------------ inputs between updates
    @property
    def active_goal(self) -> Hashable | None:
        return self._goal

    @property
    def holding(self) -> bool:
        return self._running is None and self._pending is None

    def validate(self, trajectory: TrajectoryData, now: float) -> str | None:
        return validate(trajectory, self.joints, now, self.active)

    def submit(self, trajectory: TrajectoryData, now: float, goal_id: Hashable | None = None,
               tolerances: SegmentTolerances | None = None) -> list[ControllerEvent]:
        """Make `trajectory` the one the next update starts; returns the preempted goal's end.

        An action goal (`goal_id` given) becomes the active goal and preempts the previous one
        (ABORTED, INVALID_GOAL, §3.4). A topic message (`goal_id` None) replaces the trajectory
        but leaves an active goal running, judged against the new trajectory (derived: JTC's
        topic callback does not touch the goal), with the default tolerances.
        Raises CommandError with the reason when `validate` refuses it.
        """
        reason = self.validate(trajectory, now)
        if reason is not None:
            raise CommandError(reason)
        spline = core_trajectory(trajectory, self.joints)
        events: list[ControllerEvent] = []
        if goal_id is not None:
            events += self._end_goal('aborted', INVALID_GOAL, PREEMPTED_TEXT)
            self._goal = goal_id
        self._pending = _Pending(spline, trajectory.stamp_s,
                                 tolerances if tolerances is not None else self.default_tolerances)
        return events

    def cancel(self, goal_id: Hashable) -> list[ControllerEvent]:
        """A client cancels `goal_id`: if it is the active goal it ends CANCELED with the default
        result (code 0, no text) and the arm holds where it is (§3.4)."""
        if goal_id is None or goal_id != self._goal:
            return []
        self._hold_at(self._measured_q)
        return self._end_goal('canceled', SUCCESSFUL, '')

    def robot_moved(self, measured_q: Sequence[float] | np.ndarray) -> list[ControllerEvent]:
        """The arm was put somewhere else under the controller (a simulator reset): abort the
        goal, drop the trajectory, hold the new position."""
        q = np.asarray(measured_q, dtype=np.float64).copy()
        self._measured_q = q
        self._measured_qd = np.zeros_like(q)
        self._hold_at(q)
        self._reference = (q.copy(), np.zeros_like(q))
        self._output = q.copy()
        return self._end_goal('aborted', PATH_TOLERANCE_VIOLATED, SIM_RESET_TEXT)

    # ------------------------------------------------------------ the update
    def update(self, now: float, measured_q: Sequence[float] | np.ndarray,
               measured_qd: Sequence[float] | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, list[ControllerEvent]]:
        """One controller period at cell time `now` with the measured state.

        Returns (position setpoint, its velocity, events). The velocity is the time derivative of
        the commanded position (spline velocity x the time scale); fanuc_driver sends positions
        only, the simulator's servo uses it as feed-forward.
        """
        q = np.asarray(measured_q, dtype=np.float64).reshape(-1).copy()
        qd = np.asarray(measured_qd, dtype=np.float64).reshape(-1).copy()
        if q.shape != (len(self.joints),) or qd.shape != q.shape:
            raise CommandError(f'measured state: expected {len(self.joints)} positions and '
                               f'velocities, got {q.shape} and {qd.shape}')
        period = self.nominal_period
        if self._last_now is not None and now > self._last_now:
            period = now - self._last_now
        self._last_now = now
        self._measured_q, self._measured_qd = q, qd
        if not self._started:
            # JTC holds the measured position when it is activated.
            self._started = True
            self._hold_at(q)
        events: list[ControllerEvent] = []
        if not self.active:
            return self._output.copy(), np.zeros_like(q), events

        if not self.motion_possible:
            return self._stopped_without_motion(q, events)
        if self._stopped_for_motion:
            # Motion is possible again (switch_control_state START): JTC re-reads the state,
            # forgets what it was doing and holds there (FD scaled_joint_trajectory_controller).
            self._stopped_for_motion = False
            self._goal = None
            self._pending = None
            self._hold_at(q)

        factor = self.speed_scaling.advance(period)
        if self._pending is not None:
            self._start(self._pending, now, period * factor, q, qd)
            self._pending = None
        running = self._running
        if running is None:
            assert self._hold is not None
            self._reference = (self._hold.copy(), np.zeros_like(q))
            self._output = self._hold.copy()
            return self._output.copy(), np.zeros_like(q), events

        running.elapsed += period * factor
        desired_q, desired_qd = running.spline.sample(running.elapsed - running.shift)
        self._reference = (desired_q, desired_qd)
        error = desired_q - q
        tol = running.tolerances
        first_sample = running.first_sample
        running.first_sample = False
        before_last = running.before_last_point
        path_violated = bool((before_last or first_sample)
                             and np.any((tol.path > 0.0) & (np.abs(error) > tol.path)))
        outside_goal = False
        late = False
        time_past_end = 0.0
        if not before_last:
            outside_goal = bool(np.any((tol.goal > 0.0) & (np.abs(error) > tol.goal)))
            if outside_goal and tol.goal_time_s != 0.0:
                # As fanuc's controller measures it: cell time against the scaled start + end.
                time_past_end = now - (running.start + running.end_from_start)
                late = time_past_end > tol.goal_time_s

        if self._goal is not None:
            if path_violated:
                self._hold_at(q)
                events += self._end_goal('aborted', PATH_TOLERANCE_VIOLATED, PATH_TOLERANCE_TEXT)
            elif not before_last and not outside_goal:
                # Success holds the last point itself (JTC's success point), not the measurement.
                self._hold_at(running.spline.positions[-1])
                events += self._end_goal('succeeded', SUCCESSFUL, SUCCESS_TEXT)
            elif late:
                self._hold_at(q)
                events += self._end_goal('aborted', GOAL_TOLERANCE_VIOLATED,
                                         GOAL_TIME_TEXT.format(time_past_end))
        elif path_violated:
            self._hold_at(q)
            events.append(ControllerEvent('hold', None, PATH_TOLERANCE_VIOLATED,
                                          'holding position: path tolerance violated '
                                          f'(error {np.round(error, 4).tolist()} rad)'))
        elif late:
            self._hold_at(q)
            events.append(ControllerEvent('hold', None, GOAL_TOLERANCE_VIOLATED,
                                          'holding position: goal time tolerance exceeded by '
                                          f'{time_past_end:.3f} s'))
        if path_violated or late:
            self._output = q.copy()
            return self._output.copy(), np.zeros_like(q), events
        self._output = desired_q.copy()
        return desired_q.copy(), desired_qd * factor, events

    # ------------------------------------------------------------ outputs
    def state(self) -> ControllerState:
        """The last update's reference / feedback / error / output (for `~/controller_state`)."""
        reference_q, reference_qd = self._reference
        running = self._running
        scaled = running.scaled_time if running is not None else (self._last_now or 0.0)
        return ControllerState(
            stamp=self._last_now or 0.0, trajectory_time=scaled,
            reference_positions=reference_q.copy(), reference_velocities=reference_qd.copy(),
            feedback_positions=self._measured_q.copy(),
            feedback_velocities=self._measured_qd.copy(),
            error_positions=reference_q - self._measured_q,
            output_positions=self._output.copy(),
            speed_scaling_factor=self.speed_scaling.collaborative)

    def query(self, time_s: float) -> QueryAnswer:
        """`~/query_state`: the trajectory's state at `time_s` (scaled clock, as the feedback
        stamps). As JTC answers: success only while `time_s` lies inside the running
        trajectory; otherwise the measured state (no trajectory) or the sample at the clamped
        time, with success false and the reason (RC query_state_service)."""
        count = len(self.joints)
        zeros = np.zeros(count)
        if not self.active:
            return QueryAnswer(False, 'the controller is not active', zeros, zeros, zeros)
        running = self._running
        if running is None:
            held = self._hold if self._hold is not None else self._measured_q
            return QueryAnswer(False, 'no trajectory is running (the controller holds)',
                               held.copy(), zeros, zeros)
        at = time_s - running.time_before - running.shift
        q, qd = running.spline.sample(at)
        # The core spline gives position and velocity; acceleration by a central difference.
        step = 1e-4
        qd_after = running.spline.sample(at + step)[1]
        qd_before = running.spline.sample(at - step)[1]
        qdd = (qd_after - qd_before) / (2 * step)
        if time_s < running.time_before:
            return QueryAnswer(False, f'time {time_s:.6f} s is before the trajectory started '
                               f'({running.time_before:.6f} s)', q, qd, qdd)
        if time_s - running.start >= running.end_from_start:
            return QueryAnswer(False, f'time {time_s:.6f} s is after the trajectory end '
                               f'({running.start + running.end_from_start:.6f} s)', q, qd, qdd)
        return QueryAnswer(True, '', q, qd, qdd)

    # ------------------------------------------------------------ internals
    def _stopped_without_motion(self, q: np.ndarray, events: list[ControllerEvent]
                                ) -> tuple[np.ndarray, np.ndarray, list[ControllerEvent]]:
        """STMO inactive (§3.4): the goal ends ABORTED / INVALID_GOAL, nothing is sampled and
        the arm holds where it was when motion stopped, until motion is possible again."""
        if not self._stopped_for_motion:
            self._stopped_for_motion = True
            self._hold_at(q)
        self._pending = None
        events += self._end_goal('aborted', INVALID_GOAL, STMO_INACTIVE_TEXT)
        assert self._hold is not None
        self._output = self._hold.copy()
        self._reference = (self._hold.copy(), np.zeros_like(q))
        return self._output.copy(), np.zeros_like(q), events

    def _start(self, pending: _Pending, now: float, scaled_period: float, q: np.ndarray,
               qd: np.ndarray) -> None:
        """The first sample of a new trajectory: JTC puts the measured state before it (at the
        cell time of this update) and starts it at the header stamp, or, for a zero stamp, at
        the first sample time (this update plus one scaled period)."""
        spline = pending.trajectory
        start = pending.stamp_s if pending.stamp_s != 0.0 else now + scaled_period
        offset = start - now  # where the message's t = 0 lies after the measured state
        if offset + float(spline.times_from_start[0]) > 0.0:
            shifted = JointTrajectory(
                joint_names=spline.joint_names,
                times_from_start=spline.times_from_start + offset,
                positions=spline.positions, velocities=spline.velocities,
                accelerations=spline.accelerations)
            use, shift = shifted.anchored(q, qd), 0.0
        else:
            # A stamp in the past: the first point is already behind; sample the message's own
            # times (the measured state precedes nothing that is still to come).
            use, shift = spline, offset
        self._running = _Running(spline=use, shift=shift, time_before=now, start=start,
                                 end_from_start=float(spline.times_from_start[-1]),
                                 tolerances=pending.tolerances)
        self._hold = None

    def _hold_at(self, q: np.ndarray) -> None:
        self._running = None
        self._hold = np.asarray(q, dtype=np.float64).copy()

    def _end_goal(self, kind: str, code: int, text: str) -> list[ControllerEvent]:
        if self._goal is None:
            return []
        goal, self._goal = self._goal, None
        return [ControllerEvent(kind, goal, code, text)]


# ---------------------------------------------------------------- forward command controller
def forward_command(values: Sequence[float], joint_count: int) -> np.ndarray:
    """forward_position_controller's command as a position vector (controller joint order).

    The real controller ignores a message whose size is not one value per joint (RC
    forward_controllers_base.cpp, §3.2); non-finite values are refused here as well (the arm
    holds) where the real controller would pass them on to the hardware.
    """
    array = np.asarray(list(values), dtype=np.float64)
    if array.shape != (joint_count,):
        raise CommandError(f'command size ({array.size}) does not match the {joint_count} '
                           'joints of forward_position_controller')
    if not np.all(np.isfinite(array)):
        raise CommandError(f'command has non-finite values {array.tolist()}')
    return array


# ---------------------------------------------------------------- robot status (GPIO)
FAULTS = ('e_stop', 'error', 'stmo_off', 'clear')
SWITCH_STOP = 0   # fanuc_msgs/srv/SwitchControlState request constants (§3.3)
SWITCH_START = 1
SWITCH_OK = 0     # its result: 0 or -1 (§3.2, FD fanuc_gpio_controller.cpp)
SWITCH_FAILED = -1


@dataclass
class FanucRobotStatus:
    """The robot as fanuc_gpio_controller reports it (fanuc_msgs/RobotStatus, §3.3).

    `motion_possible` is what the trajectory controller reads: false stops it (§3.4) until
    `switch_control_state(START)`. The sim's faults (sim-only, no FANUC interface): 'e_stop'
    (e_stopped, no motion), 'error' (in_error, no motion), 'stmo_off' (the controller took motion
    control away), 'clear' (e-stop released and alarms reset; motion stays off until START, as
    a real cell must restart Stream Motion). START fails (-1) while e-stopped or in error, our
    choice: the real controller answers -1 when it cannot switch.
    """

    in_error: bool = False
    tp_enabled: bool = False
    e_stopped: bool = False
    motion_possible: bool = True
    contact_stop_mode: int = 0  # CONTACT_STOP_MODE_NONE: not a collaborative (CRX) model

    def inject(self, fault: str) -> None:
        """Apply a sim-only fault; ValueError naming the accepted ones otherwise."""
        if fault not in FAULTS:
            raise ValueError(f'unknown fault {fault!r}: one of {FAULTS}')
        if fault == 'e_stop':
            self.e_stopped = True
            self.motion_possible = False
        elif fault == 'error':
            self.in_error = True
            self.motion_possible = False
        elif fault == 'stmo_off':
            self.motion_possible = False
        else:
            self.e_stopped = False
            self.in_error = False

    def switch_control_state(self, status: int) -> tuple[int, str]:
        """The answer of `~/switch_control_state` and why (for the log)."""
        if status == SWITCH_START:
            blocked = [name for name, on in (('e_stopped', self.e_stopped),
                                             ('in_error', self.in_error)) if on]
            if blocked:
                return SWITCH_FAILED, f'cannot start motion control while {" and ".join(blocked)}'
            self.motion_possible = True
            return SWITCH_OK, 'motion control started'
        if status == SWITCH_STOP:
            self.motion_possible = False
            return SWITCH_OK, 'motion control stopped'
        return SWITCH_FAILED, f'status {status}: must be STOP (0) or START (1)'
