"""A scripted pick-and-place expert: a state machine over top-down grasps.

It sees exactly what the expert node receives over topics - measured arm joint positions, the
gripper position, the target object's pose and the place pose - and returns, once per control
period, a joint position target and a gripper command. Kinematics are the robot description's
numpy model (core/robot_model.py: the stack's only FK / IK; no physics engine here), so the same
code can drive a real cell through the node.

Phases: approach (joint-space move above the object) -> descend (straight line down) -> close ->
lift -> transfer (straight line above the bin) -> lower -> release -> retreat -> done. A grasp
that closes on nothing or loses the object during the lift backs off upwards ('backoff') and is
retried from the approach, at most `max_retries` times; then the expert stops in 'failed'.
Poses are in the robot base frame (the world frame of SimWorld): the natural wrist angle is taken
as pointing away from the base z axis.

Every motion is a min-jerk time-scaled path whose peak joint speed stays below
`speed_fraction` of the URDF velocity limit (and whose Cartesian speed stays below
`cartesian_speed`), so the commanded positions move smoothly at the control rate.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable, TYPE_CHECKING

import numpy as np

from noetra_ros.core.commands import validate_joint_vector, validate_scalar
from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.core.robot_model import (
    load_robot_description, matrix_to_quaternion, quaternion_to_matrix, RobotDescription,
    rpy_to_matrix)
from noetra_ros.core.sim import scene
from noetra_ros.core.sim.task import GRASP_SYMMETRY_RAD
from noetra_ros.core.sim.world import ROBOT_BASE_POSITION

if TYPE_CHECKING:
    from noetra_ros.core.sim.world import SimWorld

PHASES: tuple[str, ...] = ('approach', 'descend', 'close', 'lift', 'transfer', 'lower',
                           'release', 'retreat', 'done', 'backoff', 'failed')


@dataclass(frozen=True)
class ExpertConfig:
    """Tuning of the scripted expert (lengths in m, times in s)."""

    speed_fraction: float = 0.2
    cartesian_speed: float = 0.3
    min_move_s: float = 0.4
    approach_height: float = 0.10
    carry_height: float = 0.16
    table_z: float = scene.TABLE.top_z
    fingertip_clearance: float = 0.006
    waypoint_spacing: float = 0.01
    settle_tolerance_rad: float = 0.02
    settle_timeout_s: float = 1.0
    close_min_s: float = 0.3
    close_max_s: float = 1.5
    release_s: float = 0.4
    max_retries: int = 2
    ik_position_tolerance: float = 0.002
    ik_orientation_tolerance_rad: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.speed_fraction <= 1.0:
            raise ConfigError(f'ExpertConfig.speed_fraction: {self.speed_fraction} must be in '
                              '(0, 1]')
        for name in ('cartesian_speed', 'min_move_s', 'approach_height', 'carry_height',
                     'waypoint_spacing', 'settle_tolerance_rad', 'settle_timeout_s',
                     'close_max_s', 'release_s', 'ik_position_tolerance',
                     'ik_orientation_tolerance_rad'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f'ExpertConfig.{name}: {value} must be > 0')
        if not 0.0 <= self.close_min_s <= self.close_max_s:
            raise ConfigError(f'ExpertConfig.close_min_s: {self.close_min_s} must be in '
                              f'[0, close_max_s={self.close_max_s}]')
        if self.max_retries < 0:
            raise ConfigError(f'ExpertConfig.max_retries: {self.max_retries} must be >= 0')
        if not math.isfinite(self.table_z):
            raise ConfigError(f'ExpertConfig.table_z: {self.table_z} must be finite')
        if not (math.isfinite(self.fingertip_clearance) and self.fingertip_clearance >= 0.0):
            raise ConfigError(f'ExpertConfig.fingertip_clearance: {self.fingertip_clearance} '
                              'must be >= 0')


@dataclass(frozen=True)
class ExpertObservation:
    """What the expert node receives: joint_states, task/target_pose, task/place_pose.

    Poses are (xyz, quaternion xyzw) in the robot base / world frame; the target's local y axis
    is its grasp axis (every object is symmetric under a half turn about z; grasp_symmetry_rad
    may say more).
    """

    joint_positions: np.ndarray
    gripper_position: float
    target_position: np.ndarray
    target_orientation: np.ndarray
    place_position: np.ndarray
    place_orientation: tuple[float, ...] | np.ndarray = (0.0, 0.0, 0.0, 1.0)
    # Rotational symmetry of the target about z (task.GRASP_SYMMETRY_RAD; 0 = round). The
    # default, a half turn, holds for every shape, so an expert without it is still correct.
    grasp_symmetry_rad: float = math.pi


@dataclass(frozen=True)
class ExpertAction:
    """Arm joint position target (joint_names order), gripper finger target (m) and phase."""

    joint_positions: np.ndarray
    gripper_position: float
    phase: str

    @property
    def gripper(self) -> float:
        """Alias of gripper_position (finger target in m)."""
        return self.gripper_position


class _Motion:
    """Joint waypoints traversed with min-jerk time scaling along their joint-space length."""

    def __init__(self, waypoints: np.ndarray, duration: float) -> None:
        self.waypoints = waypoints
        self.duration = duration
        steps = np.max(np.abs(np.diff(waypoints, axis=0)), axis=1) if len(waypoints) > 1 \
            else np.zeros(0)
        cumulative = np.concatenate([[0.0], np.cumsum(steps)])
        total = cumulative[-1]
        self._knots = cumulative / total if total > 1e-12 else np.linspace(0, 1, len(waypoints))

    @property
    def final(self) -> np.ndarray:
        return self.waypoints[-1]

    def sample(self, t: float) -> np.ndarray:
        tau = min(max(t / self.duration, 0.0), 1.0) if self.duration > 0 else 1.0
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        if len(self.waypoints) == 1:
            return self.waypoints[0].copy()
        return np.array([np.interp(s, self._knots, self.waypoints[:, j])
                         for j in range(self.waypoints.shape[1])])


# The IK solves to these residuals, far inside ExpertConfig's acceptance tolerances, so that
# consecutive waypoints of a straight line do not each stop at a different point of the
# tolerance ball (which would make the commanded path jitter); from a nearby seed the
# Levenberg-Marquardt iteration gets there in a step or two more.
IK_SOLVE_POSITION_TOL = 1e-6
IK_SOLVE_ROTATION_TOL = 1e-5
IK_MAX_ITERATIONS = 100


def _tool_rotation(theta: float) -> np.ndarray:
    """Top-down tool orientation: tool z = world -z, tool x at angle theta in the xy plane."""
    return rpy_to_matrix((math.pi, 0.0, theta))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def yaw_of(quaternion: np.ndarray) -> float:
    """Heading (rad, in (-pi, pi]) of a body's local x axis about the base z axis, from its
    quaternion (x, y, z, w): the z-y-x Euler yaw, well defined while the body is upright."""
    x, y, z, w = (float(v) for v in quaternion)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _yaw_of_rotation(rot: np.ndarray) -> float:
    """yaw_of for a rotation matrix (the same z-y-x Euler yaw: atan2(R10, R00))."""
    return math.atan2(float(rot[1, 0]), float(rot[0, 0]))


def grasp_yaw(target: np.ndarray, object_yaw: float, symmetry_rad: float = math.pi) -> float:
    """Tool x angle that aligns the finger axis with the object's local y.

    Of the grasps the object's symmetry makes equivalent (turns by multiples of
    `symmetry_rad`; 0 = round), take the one closest to the arm's natural wrist angle, the
    direction from the base to the object; a round object is grasped at that angle itself.
    """
    reference = math.atan2(float(target[1]), float(target[0]))
    if symmetry_rad < 1e-6:
        return reference
    offset = _wrap(object_yaw - reference)
    offset = (offset + symmetry_rad / 2) % symmetry_rad - symmetry_rad / 2
    return reference + offset


class ScriptedExpert:
    """State-machine expert; call reset() per episode and act() once per control period."""

    def __init__(self, robot: str, control_hz: float = 20.0,
                 config: ExpertConfig | None = None, urdf_path: str | None = None) -> None:
        self._config = config if config is not None else ExpertConfig()
        hz = validate_scalar(control_hz, 'expert control_hz')
        if hz <= 0:
            raise ConfigError(f'ScriptedExpert control_hz: {control_hz} must be > 0')
        self._dt = 1.0 / hz
        try:
            if urdf_path is None:
                self._description = load_robot_description(robot)
            else:
                from noetra_ros.core import robots  # lazy: registry owned elsewhere
                self._description = RobotDescription.from_urdf(urdf_path, robot,
                                                               robots.gripper_spec())
        except NoetraError as exc:
            raise ConfigError(f'expert: robot {robot!r} could not be loaded: {exc}') from None
        if self._description.gripper is None:
            raise ConfigError(f'expert: robot {robot!r} has no gripper')
        self._read_model()
        self.reset()

    # ------------------------------------------------------------------ model
    def _read_model(self) -> None:
        description = self._description
        gripper = description.gripper
        assert gripper is not None
        self._model = description.model
        self._tcp = gripper.tcp_link
        self._arm_names = description.joint_names
        self._lower = np.array(description.limits.lower)
        self._upper = np.array(description.limits.upper)
        self._vmax = np.array(description.limits.velocity)
        self._grip_open, self._grip_closed = gripper.open_position, gripper.closed_position
        # The robot base in the world frame the poses arrive in (SimWorld mounts it there).
        self._base_in_world = np.asarray(ROBOT_BASE_POSITION, dtype=float)
        # How far the fingertips reach beyond the TCP along the tool axis, from the gripper's
        # collision geometry (keeps the fingers off the table): the largest corner over the
        # finger travel, so never less than the real reach.
        self._fingertip_beyond_tcp = gripper.fingertip_beyond_tcp
        self._home_guess = np.clip(np.zeros(len(self._arm_names)), self._lower, self._upper)

    @property
    def description(self) -> RobotDescription:
        """The robot description the expert plans with."""
        return self._description

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Arm joints in URDF order (the order of ExpertAction.joint_positions)."""
        return self._arm_names

    @property
    def gripper_joint_names(self) -> tuple[str, ...]:
        """The finger joints whose mean position is the observed gripper position."""
        assert self._description.gripper is not None
        return self._description.gripper.joint_names

    @property
    def config(self) -> ExpertConfig:
        """The tuning in use."""
        return self._config

    @property
    def fingertip_reach(self) -> float:
        """How far the fingertips reach beyond the TCP along the tool axis (m)."""
        return self._fingertip_beyond_tcp

    @property
    def gripper_open_position(self) -> float:
        """Finger position (m) of a fully open gripper (URDF lower limit)."""
        return self._grip_open

    @property
    def gripper_closed_position(self) -> float:
        """Finger position (m) of a fully closed gripper (URDF upper limit)."""
        return self._grip_closed

    @property
    def phase(self) -> str:
        """Current phase (one of PHASES)."""
        return self._phase

    @property
    def done(self) -> bool:
        """True after the retreat (or after giving up)."""
        return self._phase in ('done', 'failed')

    @property
    def failed(self) -> bool:
        """True when the expert gave up (IK failure or too many missed grasps)."""
        return self._phase == 'failed'

    @property
    def failure_reason(self) -> str:
        """Why the expert gave up ('' otherwise)."""
        return self._failure

    def _tcp_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (world frame) and rotation matrix for arm joint positions q."""
        pose = self._model.fk(q, self._tcp)
        return pose[:3, 3] + self._base_in_world, pose[:3, :3]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP pose (xyz, quaternion xyzw) for arm joint positions q."""
        position, rot = self._tcp_pose(np.asarray(q, dtype=float))
        return position, matrix_to_quaternion(rot)

    def inverse(self, position: np.ndarray, quaternion: np.ndarray,
                seed: np.ndarray) -> np.ndarray | None:
        """Arm joints placing the TCP at the pose, starting from `seed`; None if not reached.

        The description's damped-least-squares IK (within the URDF joint limits) runs from the
        seed; the answer counts when forward kinematics puts it within the configured
        tolerances. When the seed's branch runs into a joint limit, three fixed restarts are
        tried (the joint-range centre, half-way between seed and centre, the pose the episode
        started in, i.e. the ready pose); of those that succeed the one nearest the seed (in
        time at full joint speed) wins.
        """
        return self._inverse(np.asarray(position, dtype=float), quaternion_to_matrix(quaternion),
                             seed)

    def _inverse(self, position: np.ndarray, rot: np.ndarray,
                 seed: np.ndarray) -> np.ndarray | None:
        seed = np.clip(np.asarray(seed, dtype=float), self._lower, self._upper)
        q = self._refine(position, rot, seed)
        if q is not None:
            return q
        centre = (self._lower + self._upper) / 2.0
        candidates = [self._refine(position, rot, start)
                      for start in (centre, (seed + centre) / 2.0, self._home_guess)]
        found = [c for c in candidates if c is not None]
        if not found:
            return None
        return min(found, key=lambda c: float(np.max(np.abs(c - seed) / self._vmax)))

    def _refine(self, position: np.ndarray, rot: np.ndarray,
                start: np.ndarray) -> np.ndarray | None:
        cfg = self._config
        q, _converged = self._model.ik(
            position - self._base_in_world, rot, q_seed=start, link=self._tcp,
            max_iters=IK_MAX_ITERATIONS, tol_pos=IK_SOLVE_POSITION_TOL,
            tol_rot=IK_SOLVE_ROTATION_TOL)
        # Accepted by the expert's own tolerances, checked on the forward kinematics.
        reached, reached_rot = self._tcp_pose(q)
        angle = math.acos(np.clip((np.trace(rot @ reached_rot.T) - 1) / 2, -1.0, 1.0))
        if (np.linalg.norm(reached - position) < cfg.ik_position_tolerance
                and angle < cfg.ik_orientation_tolerance_rad):
            return q
        return None

    # ------------------------------------------------------------------ episode
    def reset(self) -> None:
        """Start a new episode (the next act() takes the measured joints as its start)."""
        self._phase = 'approach'
        self._failure = ''
        self._q_cmd: np.ndarray | None = None
        self._gripper_cmd = self._grip_open
        self._motion: _Motion | None = None
        self._t = 0.0
        self._settle_t = 0.0
        self._retries = 0
        self._theta = 0.0
        self._grasp_z = 0.0
        self._object_below_tcp = 0.0
        self._lift_start_z = 0.0
        self._last_gripper: list[float] = []
        self._symmetry = math.pi

    def act(self, obs: ExpertObservation | np.ndarray, gripper_position: float | None = None,
            target_pose: tuple[np.ndarray, np.ndarray] | None = None,
            place_pose: tuple[np.ndarray, np.ndarray] | None = None, *,
            grasp_symmetry_rad: float = math.pi) -> ExpertAction:
        """One control period (1 / control_hz): joint targets and gripper command.

        Takes an ExpertObservation, or its parts: act(joint_positions, gripper_position,
        (target_xyz, target_quat_xyzw), (place_xyz, place_quat_xyzw), grasp_symmetry_rad=...).
        """
        if not isinstance(obs, ExpertObservation):
            if gripper_position is None or target_pose is None or place_pose is None:
                raise InputError('expert act: give an ExpertObservation or joint positions, '
                                 'gripper position, target pose and place pose')
            obs = ExpertObservation(np.asarray(obs, dtype=float), gripper_position,
                                    target_pose[0], target_pose[1], place_pose[0],
                                    place_pose[1], grasp_symmetry_rad=grasp_symmetry_rad)
        q_meas = validate_joint_vector(obs.joint_positions, len(self._arm_names),
                                       'expert joint_positions')
        target = validate_joint_vector(obs.target_position, 3, 'expert target_position')
        target_quat = validate_joint_vector(obs.target_orientation, 4, 'expert target_orientation')
        place = validate_joint_vector(obs.place_position, 3, 'expert place_position')
        grip = validate_scalar(obs.gripper_position, 'expert gripper_position')
        if np.linalg.norm(target_quat) < 1e-6:
            raise InputError('expert target_orientation: zero quaternion')
        symmetry = validate_scalar(obs.grasp_symmetry_rad, 'expert grasp_symmetry_rad')
        if not 0.0 <= symmetry <= 2 * math.pi:
            raise InputError(f'expert grasp_symmetry_rad: {symmetry} must be in [0, 2 pi]')
        self._symmetry = symmetry
        if self._q_cmd is None:
            self._q_cmd = q_meas.copy()
            # The episode starts at the robot's ready pose: a good IK restart point.
            self._home_guess = q_meas.copy()
        self._t += self._dt
        self._last_gripper = (self._last_gripper + [grip])[-4:]
        try:
            self._advance(q_meas, target, target_quat, place, grip)
        except _PlanningError as exc:
            self._phase = 'failed'
            self._failure = str(exc)
            self._motion = None
        if self._motion is not None:
            self._q_cmd = self._motion.sample(self._t)
        return ExpertAction(self._q_cmd.copy(), self._gripper_cmd, self._phase)

    # ------------------------------------------------------------------ state machine
    def _enter(self, phase: str, motion: _Motion | None = None) -> None:
        self._phase = phase
        self._motion = motion
        self._t = 0.0
        self._settle_t = 0.0

    def _motion_finished(self, q_meas: np.ndarray) -> bool:
        """Path time is over and the arm has caught up with the final target (or waited)."""
        if self._motion is not None and self._t < self._motion.duration:
            return False
        self._settle_t += self._dt
        assert self._q_cmd is not None
        close = np.max(np.abs(q_meas - self._q_cmd)) < self._config.settle_tolerance_rad
        return close or self._settle_t >= self._config.settle_timeout_s

    def _advance(self, q_meas: np.ndarray, target: np.ndarray, target_quat: np.ndarray,
                 place: np.ndarray, grip: float) -> None:
        cfg = self._config
        assert self._q_cmd is not None
        phase = self._phase
        if phase == 'approach':
            if self._motion is None:
                self._theta = self._grasp_yaw(target, target_quat)
                grasp = np.array([target[0], target[1], self._grasp_height(target)])
                # Solve the low grasp pose first and the pose above it from there, so the
                # straight descent stays on a branch that reaches the bottom.
                q_grasp = self._solve(grasp, self._theta, self._q_cmd, 'at the grasp')
                above = grasp + np.array([0.0, 0.0, cfg.approach_height])
                goal = self._solve(above, self._theta, q_grasp, 'above the target')
                self._motion = self._joint_motion(self._q_cmd, goal)
                self._t = self._dt
            elif self._motion_finished(q_meas):
                # Re-read the target: it may have been nudged since the approach was planned.
                self._theta = self._grasp_yaw(target, target_quat)
                self._grasp_z = self._grasp_height(target)
                grasp = np.array([target[0], target[1], self._grasp_z])
                self._enter('descend', self._line_motion(self._q_cmd, grasp, self._theta))
        elif phase == 'descend':
            if self._motion_finished(q_meas):
                self._gripper_cmd = self._grip_closed
                self._last_gripper = [grip]
                self._enter('close')
        elif phase == 'close':
            history = self._last_gripper
            still = len(history) >= 3 and max(history) - min(history) < 2e-4
            if (self._t >= cfg.close_min_s and still) or self._t >= cfg.close_max_s:
                if grip > self._grip_closed - 0.002:
                    self._retry('the gripper closed on nothing')
                    return
                tcp, _ = self._tcp_pose(self._q_cmd)
                self._object_below_tcp = float(tcp[2] - target[2])
                self._lift_start_z = float(target[2])
                up = np.array([tcp[0], tcp[1], self._carry_z(place)])
                self._enter('lift', self._line_motion(self._q_cmd, up, self._theta))
        elif phase == 'lift':
            if self._motion_finished(q_meas):
                rise = float(target[2]) - self._lift_start_z
                tcp, _ = self._tcp_pose(self._q_cmd)
                if rise < 0.5 * (tcp[2] - self._grasp_z) or grip > self._grip_closed - 0.002:
                    self._retry('the object was not lifted')
                    return
                above = np.array([place[0], place[1], self._carry_z(place)])
                self._enter('transfer', self._line_motion(self._q_cmd, above, self._theta))
        elif phase == 'transfer':
            if self._motion_finished(q_meas):
                release = np.array([place[0], place[1], place[2] + self._object_below_tcp])
                self._enter('lower', self._line_motion(self._q_cmd, release, self._theta))
        elif phase == 'lower':
            if self._motion_finished(q_meas):
                self._gripper_cmd = self._grip_open
                self._enter('release')
        elif phase == 'release':
            if self._t >= cfg.release_s:
                tcp, _ = self._tcp_pose(self._q_cmd)
                up = np.array([tcp[0], tcp[1], self._carry_z(place)])
                self._enter('retreat', self._line_motion(self._q_cmd, up, self._theta))
        elif phase == 'retreat':
            if self._motion_finished(q_meas):
                self._enter('done')
        elif phase == 'backoff':
            if self._motion_finished(q_meas):
                self._enter('approach')

    def _retry(self, reason: str) -> None:
        self._retries += 1
        self._gripper_cmd = self._grip_open
        if self._retries > self._config.max_retries:
            self._enter('failed')
            self._failure = f'{reason} ({self._retries} attempts)'
            return
        # Back up straight to the approach height with the gripper open, then start over.
        assert self._q_cmd is not None
        tcp, _ = self._tcp_pose(self._q_cmd)
        up = np.array([tcp[0], tcp[1], tcp[2] + self._config.approach_height])
        self._enter('backoff', self._line_motion(self._q_cmd, up, self._theta))

    # ------------------------------------------------------------------ geometry helpers
    def _grasp_yaw(self, target: np.ndarray, target_quat: np.ndarray) -> float:
        return grasp_yaw(target, yaw_of(target_quat), self._symmetry)

    def _grasp_height(self, target: np.ndarray) -> float:
        cfg = self._config
        floor = cfg.table_z + self._fingertip_beyond_tcp + cfg.fingertip_clearance
        return max(float(target[2]), floor)

    def _carry_z(self, place: np.ndarray) -> float:
        return float(place[2]) + self._config.carry_height

    def _solve(self, position: np.ndarray, theta: float, seed: np.ndarray,
               what: str) -> np.ndarray:
        q = self._inverse(position, _tool_rotation(theta), seed)
        if q is None:
            raise _PlanningError(f'no IK solution {what} at {np.round(position, 3).tolist()}')
        return q

    def _duration(self, waypoints: np.ndarray, cartesian_length: float) -> float:
        cfg = self._config
        joint_length = np.sum(np.abs(np.diff(waypoints, axis=0)), axis=0)
        # Min-jerk peaks at 1.875 x the mean speed; keep the peak under the limits.
        joint_time = float(np.max(joint_length / (cfg.speed_fraction * self._vmax))) * 1.875
        cart_time = cartesian_length / cfg.cartesian_speed * 1.875
        return max(cfg.min_move_s, joint_time, cart_time)

    def _joint_motion(self, start: np.ndarray, goal: np.ndarray) -> _Motion:
        waypoints = np.vstack([start, goal])
        p0, _ = self._tcp_pose(start)
        p1, _ = self._tcp_pose(goal)
        return _Motion(waypoints, self._duration(waypoints, float(np.linalg.norm(p1 - p0))))

    def _line_motion(self, start: np.ndarray, goal_position: np.ndarray,
                     theta: float) -> _Motion:
        """Straight TCP line from FK(start) to goal_position, tool yaw blending to theta."""
        p0, rot0 = self._tcp_pose(start)
        theta0 = _yaw_of_rotation(rot0)
        # theta0 is the tool x angle only when the tool points down; blend towards theta.
        dtheta = _wrap(theta - theta0)
        length = float(np.linalg.norm(goal_position - p0))
        count = max(2, int(math.ceil(max(length, abs(dtheta) * 0.1)
                                     / self._config.waypoint_spacing)) + 1)
        waypoints = [start]
        q = start
        for s in np.linspace(0.0, 1.0, count)[1:]:
            point = p0 + s * (goal_position - p0)
            q = self._solve(point, theta0 + s * dtheta, q, 'on a straight line')
            waypoints.append(q)
        path = np.array(waypoints)
        return _Motion(path, self._duration(path, length))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Nothing to release (kept so callers can close every expert the same way)."""


class _PlanningError(Exception):
    """Internal: a waypoint has no IK solution; the expert stops in 'failed'."""


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one in-process expert episode."""

    seed: int
    instruction: str
    success: bool
    explanation: str
    sim_time: float
    expert_phase: str
    expert_failure: str


def observe(world: SimWorld) -> ExpertObservation:
    """The expert's observation read from a SimWorld (what the topics would carry)."""
    positions, _, _ = world.joint_state()
    target_pos, target_quat = world.target_object_pose()
    place_pos, place_quat = world.place_pose()
    shape = world.object_spec(world.episode.target_object).shape
    return ExpertObservation(joint_positions=positions[:len(world.joint_names)],
                             gripper_position=world.gripper_position(),
                             target_position=target_pos, target_orientation=target_quat,
                             place_position=place_pos, place_orientation=place_quat,
                             grasp_symmetry_rad=GRASP_SYMMETRY_RAD[shape])


def run_episode(world: SimWorld, expert: ScriptedExpert, seed: int, linger_s: float = 1.0,
                on_step: Callable[[ExpertObservation, ExpertAction], None] | None = None,
                executed: Callable[[ExpertAction], np.ndarray] | None = None) -> EpisodeResult:
    """Reset both for `seed` and run the expert in-process until the task is judged.

    Stops when the task fails, or when the expert is done (or gave up) and the task has
    succeeded or `linger_s` more seconds have passed, or at the world's episode timeout.
    `on_step(obs, action)` sees every step before it is executed (the recorder uses it);
    `executed(action)` may return the arm command actually sent (e.g. with injected noise).
    """
    episode = world.reset(seed)
    expert.reset()
    done_since: float | None = None
    status = world.task_status()
    while True:
        obs = observe(world)
        action = expert.act(obs)
        if on_step is not None:
            on_step(obs, action)
        world.command_positions(action.joint_positions if executed is None
                                else executed(action))
        world.command_gripper(action.gripper_position)
        world.step()
        status = world.task_status()
        if status.phase == 'failure':
            break
        if expert.done:
            done_since = world.sim_time if done_since is None else done_since
            if status.success or world.sim_time - done_since >= linger_s:
                break
    return EpisodeResult(seed=seed, instruction=episode.instruction, success=status.success,
                         explanation=status.explanation, sim_time=world.sim_time,
                         expert_phase=expert.phase, expert_failure=expert.failure_reason)
