"""ROS-free simulated cell: an industrial arm with a parallel gripper, a table, bins and objects.

`SimWorld` owns one PyBullet DIRECT client and executes joint commands the way ros2_control and a
real controller would:

- position targets: PyBullet POSITION_CONTROL, speed capped at the URDF velocity limit and torque
  at the URDF effort limit; targets are clamped to the URDF position limits (ros2_control's
  `enforce_command_limits`) and ramped linearly from the previous target over one control period
  (a driver's setpoint interpolation). A position target is held until the next command, like
  forward_position_controller (no timeout).
- velocity commands: clamped to the URDF velocity limit and integrated into a position reference
  every physics substep (a position-loop drive, so a zero velocity holds still under gravity).
  When no new command arrives for `command_timeout_s` the arm holds the position it measures at
  that moment (velocity 0) - the JTC `cmd_timeout` / diff_drive `cmd_vel_timeout` behaviour.
- trajectories: sampled at every physics substep from the state at receipt (see trajectory.py) and
  tracked with the same limits; after the last point the final point is held (no timeout).

Joint names, order and limits and the gripper facts come from the robot description
(core/robot_model.load_robot_description: the URDF read once for the whole stack); PyBullet is
used for dynamics and rendering only, and the loaded body is checked to number its links as the
description does. A rejected command (wrong length, NaN / Inf, unknown joints) raises
CommandError and leaves the active command untouched (and does not feed the velocity watchdog).

Extra arms (add_extra_arm): further robots in the cell without gripper or task role, e.g. the
other groups of a MotoROS2 multi-group controller; each takes a driver's servo setpoints like
command_setpoint and stands at its home pose after every reset.

Sensors: joint_state() (arm + finger joints), wrench() (flange force/torque in tool0, see its
docstring), render() / render_depth() (TinyRenderer pinhole cameras, intrinsics from
CameraSpec.intrinsics(), lit by WorldConfig.lighting, varied per episode by
WorldConfig.lighting_jitter when set: core/sim/lighting.py; the light never touches
physics). Privileged task state for the scripted expert and the checker: object_pose(),
target_object_pose(), place_pose(), task_status().
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import math

import numpy as np
import pybullet as pb

from noetra_ros.core import robots
from noetra_ros.core.commands import validate_joint_vector, validate_scalar
from noetra_ros.core.episodes import DEFAULT_EPISODE_TIMEOUT_S
from noetra_ros.core.errors import CommandError, ConfigError, NoetraError, UnknownNameError
from noetra_ros.core.joint_limits import JointLimits
from noetra_ros.core.robot_model import (
    load_robot_description, matrix_to_quaternion, RobotDescription)
from noetra_ros.core.sim import scene
from noetra_ros.core.sim.lighting import Lighting, LightingJitter
from noetra_ros.core.sim.task import (
    BinSpec, check_task, MAX_DISTRACTORS, ObjectSpec, sample_layout, sample_task, TaskSpec,
    TaskStatus)
from noetra_ros.core.trajectory import JointTrajectory

# Aliases of the one source (core/robots.py, read back from the URDF by the description), kept
# importable for the modules that name them.
GRIPPER_JOINT_NAMES: tuple[str, ...] = robots.GRIPPER_JOINT_NAMES
TCP_LINK = robots.GRIPPER_TCP_LINK
FLANGE_LINK = 'flange'
TOOL_LINK = 'tool0'
# Where the robot's base_link sits in the world frame (on the table top, axes aligned): the
# frame every pose the sim publishes is in.
ROBOT_BASE_POSITION: tuple[float, float, float] = (0.0, 0.0, scene.TABLE.top_z)

# Gripper contact: the grasp holds by friction only (no attachment constraint). Friction anchors
# on the gripper links keep a pinched object from creeping / pivoting in the pads while the arm
# moves. No torsional (spinning) friction: PyBullet does not report it among the contact forces,
# so it would hide torque from wrench(); the anchored pad manifold resists twisting without it.
FINGER_LATERAL_FRICTION = 1.5
FINGER_SPINNING_FRICTION = 0.0
# POSITION_CONTROL gains of PyBullet's constraint motor: the joint is driven at
# kp * error / dt + kd * target_velocity, capped at maxVelocity, with at most the effort limit.
ARM_POSITION_GAIN = 0.1
ARM_VELOCITY_GAIN = 1.0
# In velocity mode the integrated reference may lead the measured position by at most this much
# (rad or m), so a blocked joint does not wind up and jump when it is released.
VELOCITY_REFERENCE_LEAD = 0.1
SOLVER_ITERATIONS = 150
SETTLE_STEPS = 24
# A URDF link without <inertial> gets 1 kg and unit inertia in PyBullet; frame links (flange,
# tool0, gripper_tcp) must not weigh that much, so such links are given this mass instead.
FRAME_LINK_MASS_KG = 1e-3


# Where extra arms stand by default (base_link position in the world frame, yaw about z): the
# table's back corners, facing away from the cell. Checked in PyBullet for every main robot with a
# GP8 or HC10 there at home: 0.23 m or more from the main arm at home and at its pick and place
# poses over the object region and both bins, and outside the workspace camera's view (the
# policy's image does not change).
EXTRA_ARM_BASE_POSES: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((-0.2, 0.5, scene.TABLE.top_z), math.pi),
    ((-0.2, -0.5, scene.TABLE.top_z), math.pi),
)
# An extra arm at home keeps this much room from the main arm, the other extra arms and the columns
# above the object region and the bins (the main arm comes down into them from above).
EXTRA_ARM_CLEARANCE_M = 0.02


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera rendered with PyBullet's TinyRenderer.

    fov_deg is the VERTICAL field of view (what computeProjectionMatrixFOV takes); pixels are
    square. mount 'fixed': the camera sits at `eye` looking at `target` with `up` as the image
    up direction. mount 'link': the optical frame (z forward, x right, y down, REP-103 optical)
    is `offset_xyz` / `offset_rpy` relative to the URDF link `link`.
    """

    name: str
    width: int = 128
    height: int = 96
    fov_deg: float = 60.0
    mount: str = 'fixed'
    eye: tuple[float, float, float] = (0.88, 0.0, 0.72)
    target: tuple[float, float, float] = (0.44, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    link: str = TOOL_LINK
    offset_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    near: float = 0.01
    far: float = 3.0
    optical_frame_id: str = ''

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace('_', '').isalnum():
            raise ConfigError(f'CameraSpec.name: {self.name!r} must be a non-empty identifier')
        for attr in ('width', 'height'):
            value = getattr(self, attr)
            if not isinstance(value, int) or not 8 <= value <= 4096:
                raise ConfigError(f'CameraSpec.{attr}: {value!r} must be an int in 8..4096')
        if not 1.0 <= float(self.fov_deg) <= 170.0:
            raise ConfigError(f'CameraSpec.fov_deg: {self.fov_deg} must be in 1..170 degrees')
        if self.mount not in ('fixed', 'link'):
            raise ConfigError(f"CameraSpec.mount: {self.mount!r} must be 'fixed' or 'link'")
        for attr in ('eye', 'target', 'up', 'offset_xyz', 'offset_rpy'):
            value = np.asarray(getattr(self, attr), dtype=float)
            if value.shape != (3,) or not np.all(np.isfinite(value)):
                raise ConfigError(f'CameraSpec.{attr}: {getattr(self, attr)!r} must be 3 finite '
                                  'numbers')
            object.__setattr__(self, attr, tuple(float(v) for v in value))
        if self.mount == 'fixed':
            view = np.subtract(self.target, self.eye)
            if np.linalg.norm(view) < 1e-6:
                raise ConfigError('CameraSpec.target: must differ from eye')
            if np.linalg.norm(np.cross(view, self.up)) < 1e-6:
                raise ConfigError('CameraSpec.up: must not be parallel to the viewing direction')
        if self.mount == 'link' and not self.link:
            raise ConfigError("CameraSpec.link: a link name is required for mount 'link'")
        if not 0.0 < self.near < self.far:
            raise ConfigError(f'CameraSpec.near/far: need 0 < near ({self.near}) < far '
                              f'({self.far})')
        if not self.optical_frame_id:
            object.__setattr__(self, 'optical_frame_id', f'{self.name}_optical_frame')

    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels, consistent with the rendered image.

        The principal point follows the ROS convention (pixel centres at integer coordinates):
        the OpenGL projection centres the image at width / 2 in edge coordinates, which is
        (width - 1) / 2 in centre coordinates.
        """
        fy = (self.height / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)
        return fy, fy, (self.width - 1) / 2.0, (self.height - 1) / 2.0

    def k_matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        fx, fy, cx, cy = self.intrinsics()
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CameraInfo:
    """What sensor_msgs/CameraInfo carries, ROS-free (plumb_bob, no distortion)."""

    width: int
    height: int
    k: np.ndarray
    p: np.ndarray
    d: np.ndarray
    distortion_model: str
    frame_id: str


def default_cameras() -> tuple[CameraSpec, ...]:
    """The scene camera (the whole cell, for people), a workspace camera in front of the table
    looking back at the robot, zoomed on the pick area, and a wrist camera.

    The wrist camera sits beside the gripper on tool0's -x side, its optical axis tilted 30 deg
    from tool0 z towards +x so it looks at the TCP region; image x runs along tool0 y (the finger
    closing axis), so the fingers appear left and right.
    """
    return (
        # Front-right of the table, above it: frames every arm whole (the tallest, the HC10 at
        # home, reaches 1.08 m), both bins and the objects at 320 x 240, for the run video.
        CameraSpec(name='scene_camera', width=320, height=240, fov_deg=50.0, mount='fixed',
                   eye=(1.5, -0.7, 1.4), target=(0.2, 0.0, 0.34)),
        # Zoomed on the pick area (OBJECT_REGION_X/Y), so a 40 mm cube and cylinder of one
        # colour differ by shape at 128x96. The policy's view: the shipped model was trained
        # on exactly this pose and size.
        CameraSpec(name='workspace_camera', width=128, height=96, fov_deg=24.0, mount='fixed',
                   eye=(0.88, 0.0, 0.72), target=(0.45, 0.0, 0.0)),
        CameraSpec(name='wrist_camera', width=128, height=96, fov_deg=75.0, mount='link',
                   link=TOOL_LINK, offset_xyz=(-0.085, 0.0, 0.06),
                   offset_rpy=(math.radians(30.0), 0.0, math.radians(90.0))),
    )


@dataclass(frozen=True)
class WorldConfig:
    """Validated configuration of a SimWorld.

    physics_hz must be an integer multiple of control_hz: step() runs physics_hz / control_hz
    substeps. command_timeout_s applies to velocity commands only (see module docstring).
    """

    robot: str = 'fanuc_lrmate200id'
    physics_hz: int = 240
    control_hz: int = 20
    cameras: tuple[CameraSpec, ...] = field(default_factory=default_cameras)
    command_timeout_s: float = 0.5
    min_distractors: int = 1
    max_distractors: int = 3
    seed: int = 0
    episode_timeout_s: float = DEFAULT_EPISODE_TIMEOUT_S  # the one default (episodes.py)
    render_shadows: bool = False
    # The cameras' light (default: PyBullet's own, today's images) and, for recording with
    # light variation, a per-episode jitter of it seeded by the episode seed (None = off).
    lighting: Lighting = Lighting()
    lighting_jitter: LightingJitter | None = None

    def __post_init__(self) -> None:
        if self.robot not in robots.ROBOT_NAMES:
            raise UnknownNameError(f'WorldConfig.robot: {self.robot!r} is not a known robot; '
                                   f'allowed: {", ".join(robots.ROBOT_NAMES)}')
        for attr in ('physics_hz', 'control_hz'):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f'WorldConfig.{attr}: {value!r} must be a positive int')
        if self.physics_hz % self.control_hz:
            raise ConfigError(
                f'WorldConfig.physics_hz: {self.physics_hz} must be an integer multiple of '
                f'control_hz {self.control_hz}')
        cameras = tuple(self.cameras)
        if not all(isinstance(c, CameraSpec) for c in cameras):
            raise ConfigError('WorldConfig.cameras: every entry must be a CameraSpec')
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f'WorldConfig.cameras: duplicate camera names in {names}')
        object.__setattr__(self, 'cameras', cameras)
        if not (math.isfinite(self.command_timeout_s) and self.command_timeout_s > 0.0):
            raise ConfigError(
                f'WorldConfig.command_timeout_s: {self.command_timeout_s} must be > 0')
        if not 0 <= self.min_distractors <= self.max_distractors <= MAX_DISTRACTORS:
            raise ConfigError(
                f'WorldConfig.min_distractors/max_distractors: need 0 <= '
                f'{self.min_distractors} <= {self.max_distractors} <= {MAX_DISTRACTORS}')
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f'WorldConfig.seed: {self.seed!r} must be an int >= 0')
        if not (math.isfinite(self.episode_timeout_s) and self.episode_timeout_s > 0.0):
            raise ConfigError(
                f'WorldConfig.episode_timeout_s: {self.episode_timeout_s} must be > 0')
        if not isinstance(self.lighting, Lighting):
            raise ConfigError(f'WorldConfig.lighting: {self.lighting!r} must be a Lighting '
                              '(core/sim/lighting.py; a condition by name: '
                              'lighting.lighting_condition(name))')
        if self.lighting_jitter is not None and not isinstance(self.lighting_jitter,
                                                               LightingJitter):
            raise ConfigError(f'WorldConfig.lighting_jitter: {self.lighting_jitter!r} must be '
                              'a LightingJitter or None')


@dataclass(frozen=True)
class Episode:
    """What reset() drew for a seed."""

    instruction: str
    target_object: str
    target_place: str
    seed: int
    objects: tuple[ObjectSpec, ...]

    @property
    def distractors(self) -> tuple[str, ...]:
        """Names of the non-target objects."""
        return tuple(o.name for o in self.objects if o.name != self.target_object)


def _description(robot: str) -> RobotDescription:
    """The robot's description (arm + gripper), with a ConfigError naming the robot."""
    try:
        description = load_robot_description(robot)
    except NoetraError as exc:
        raise ConfigError(f'robot {robot!r} could not be loaded: {exc}') from None
    if description.gripper is None or description.home is None:
        raise ConfigError(f'robot {robot!r}: the sim needs a gripper and a home pose')
    return description


def _pose_matrix(position: Sequence[float], quaternion: Sequence[float]) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(pb.getMatrixFromQuaternion(quaternion)).reshape(3, 3)
    matrix[:3, 3] = position
    return matrix


def _lighten_frame_links(cid: int, body: int) -> None:
    """Links without <inertial> weigh FRAME_LINK_MASS_KG instead of PyBullet's 1 kg."""
    for j in range(pb.getNumJoints(body, physicsClientId=cid)):
        dyn = pb.getDynamicsInfo(body, j, physicsClientId=cid)
        if dyn[0] == 1.0 and np.allclose(dyn[2], (1.0, 1.0, 1.0)):
            pb.changeDynamics(body, j, mass=FRAME_LINK_MASS_KG,
                              localInertiaDiagonal=[1e-7] * 3, physicsClientId=cid)


class ExtraArm:
    """A further arm in the cell (SimWorld.add_extra_arm): the robot's arm-only URDF with its
    base_link at `base_xyz` (world frame, m) turned `base_yaw` (rad) about z.

    It has no gripper and no part in the task. Like the main arm under command_setpoint, it
    tracks one setpoint (positions, feed-forward velocities; clamped to its URDF limits) until
    the next, with the same motor gains and limits; `hold()` holds the measured pose; every
    SimWorld.reset() puts it back at its home pose, holding.
    """

    def __init__(self, robot: str, base_xyz: Sequence[float], base_yaw: float) -> None:
        try:
            description = load_robot_description(robot, with_gripper=False)
        except NoetraError as exc:
            raise ConfigError(f'extra arm {robot!r} could not be loaded: {exc}') from None
        try:
            xyz = np.asarray(base_xyz, dtype=float).reshape(-1)
            yaw = float(base_yaw)
        except (TypeError, ValueError):
            xyz, yaw = np.full(1, np.nan), math.nan
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)) or not math.isfinite(yaw):
            raise ConfigError(f'extra arm {robot!r}: base_xyz {base_xyz!r} must be 3 finite '
                              f'numbers and base_yaw {base_yaw!r} finite')
        assert description.home is not None  # every known robot states its home pose
        self.robot = robot
        self.description = description
        self.base_xyz = tuple(float(v) for v in xyz)
        self.base_yaw = yaw
        self.home = np.array(description.home)
        self._cid = -1
        self._body = -1
        self._indices: list[int] = []
        self._q_ref = self.home.copy()
        self._qd_ref = np.zeros(len(self.home))

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Arm joints in chain order (the description's names)."""
        return self.description.joint_names

    @property
    def limits(self) -> JointLimits:
        return self.description.limits

    @property
    def body_id(self) -> int:
        """PyBullet body id (changes at every reset; for read-only inspection)."""
        return self._body

    @property
    def base_pose(self) -> np.ndarray:
        """4x4 pose of the arm's base_link in the world frame."""
        return _pose_matrix(self.base_xyz, pb.getQuaternionFromEuler((0.0, 0.0, self.base_yaw)))

    def _load(self, cid: int) -> None:
        """Load the arm into a freshly reset simulation, at home and holding."""
        urdf = str(self.description.urdf_path)
        try:
            body = pb.loadURDF(urdf, list(self.base_xyz),
                               pb.getQuaternionFromEuler((0.0, 0.0, self.base_yaw)),
                               useFixedBase=True, flags=pb.URDF_USE_INERTIA_FROM_FILE,
                               physicsClientId=cid)
        except pb.error as exc:
            raise ConfigError(f'extra arm URDF {urdf!r} could not be loaded: {exc}') from None
        # PyBullet's own joint numbering, looked up by name (no gripper, no task links to match).
        by_name = {pb.getJointInfo(body, j, physicsClientId=cid)[1].decode(): j
                   for j in range(pb.getNumJoints(body, physicsClientId=cid))}
        missing = [n for n in self.joint_names if n not in by_name]
        if missing:
            raise ConfigError(f'extra arm URDF {urdf!r}: joints {missing} not found')
        _lighten_frame_links(cid, body)
        self._cid, self._body = cid, body
        self._indices = [by_name[n] for n in self.joint_names]
        for idx, q in zip(self._indices, self.home):
            pb.resetJointState(body, idx, q, 0.0, physicsClientId=cid)
        self._q_ref = self.home.copy()
        self._qd_ref = np.zeros(len(self._indices))
        self._apply()

    def measured(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, efforts) of the arm joints; efforts as in joint_state()."""
        states = pb.getJointStates(self._body, self._indices, physicsClientId=self._cid)
        return (np.array([s[0] for s in states]), np.array([s[1] for s in states]),
                np.array([s[3] for s in states]))

    def setpoint(self, positions: Sequence[float] | np.ndarray,
                 velocities: Sequence[float] | np.ndarray | None = None) -> None:
        """Track this setpoint until the next (SimWorld.command_setpoint's rules)."""
        count = len(self._indices)
        q = validate_joint_vector(positions, count, f'{self.robot} setpoint positions')
        qd = (np.zeros_like(q) if velocities is None else validate_joint_vector(
            velocities, count, f'{self.robot} setpoint velocities'))
        lim = self.limits
        self._q_ref = np.clip(q, lim.lower, lim.upper)
        self._qd_ref = np.clip(qd, -lim.velocity, lim.velocity)
        self._apply()

    def hold(self) -> None:
        """Hold the measured position."""
        self._q_ref = self.measured()[0]
        self._qd_ref = np.zeros(len(self._indices))
        self._apply()

    def _apply(self) -> None:
        # A PyBullet motor keeps its target over every later physics step, so one call per
        # setpoint does what the main arm's per-substep call does.
        lim = self.limits
        for k, idx in enumerate(self._indices):
            pb.setJointMotorControl2(
                self._body, idx, pb.POSITION_CONTROL, targetPosition=float(self._q_ref[k]),
                targetVelocity=float(self._qd_ref[k]), force=float(lim.effort[k]),
                maxVelocity=float(lim.velocity[k]), positionGain=ARM_POSITION_GAIN,
                velocityGain=ARM_VELOCITY_GAIN, physicsClientId=self._cid)


class SimWorld:
    """The simulated cell; see the module docstring for the command semantics."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self._config = config if config is not None else WorldConfig()
        self._description = _description(self._config.robot)
        self._urdf = str(self._description.urdf_path)
        self._substeps = self._config.physics_hz // self._config.control_hz
        self._dt = 1.0 / self._config.physics_hz
        self._cameras = {c.name: c for c in self._config.cameras}
        self._cid = pb.connect(pb.DIRECT)
        self._closed = False
        self._episode: Episode | None = None
        self._extra_arms: list[ExtraArm] = []
        self._lighting = self._config.lighting
        self.reset(self._config.seed)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> WorldConfig:
        """The configuration this world was built with."""
        return self._config

    @property
    def client_id(self) -> int:
        """The PyBullet client id (for read-only inspection in tests and tools)."""
        return self._cid

    @property
    def robot_id(self) -> int:
        """PyBullet body id of the robot."""
        return self._robot

    @property
    def description(self) -> RobotDescription:
        """The robot description (names, limits, kinematics, gripper facts) the sim runs."""
        return self._description

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Arm joints in URDF order."""
        return self._arm_names

    @property
    def gripper_joint_names(self) -> tuple[str, ...]:
        """The two finger joints (prismatic, 0 = open)."""
        return self._grip_names

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the last reset."""
        return self._physics_steps / self._config.physics_hz

    @property
    def control_period(self) -> float:
        """Seconds advanced by one step()."""
        return self._substeps * self._dt

    @property
    def episode(self) -> Episode:
        """The current episode (from the last reset)."""
        assert self._episode is not None
        return self._episode

    @property
    def arm_limits(self) -> dict[str, np.ndarray]:
        """URDF limits of the arm joints: lower, upper, velocity, effort (copies)."""
        lim = self._arm_limits
        return {'lower': lim.lower.copy(), 'upper': lim.upper.copy(),
                'velocity': lim.velocity.copy(), 'effort': lim.effort.copy()}

    @property
    def gripper_limits(self) -> dict[str, np.ndarray]:
        """URDF limits of the finger joints: lower, upper, velocity, effort (copies)."""
        lim = self._gripper_limits
        return {'lower': lim.lower.copy(), 'upper': lim.upper.copy(),
                'velocity': lim.velocity.copy(), 'effort': lim.effort.copy()}

    @property
    def command_mode(self) -> str:
        """'position', 'velocity', 'trajectory' or 'hold' (after a velocity timeout or reset)."""
        return self._mode

    @property
    def object_names(self) -> tuple[str, ...]:
        """Names of the objects on the table (target first)."""
        return tuple(self._objects)

    @property
    def bins(self) -> dict[str, BinSpec]:
        """Bin geometry by place name."""
        return dict(scene.BINS)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Configured camera names."""
        return tuple(self._cameras)

    @property
    def urdf_path(self) -> str:
        """The URDF the robot was loaded from."""
        return self._urdf

    @property
    def lighting(self) -> Lighting:
        """The light of the current episode: WorldConfig.lighting, jittered for this episode's
        seed when WorldConfig.lighting_jitter is set."""
        return self._lighting

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> Episode:
        """Rebuild the cell for `seed`: same seed -> the same scene and the same physics.

        The whole simulation is rebuilt (not just the objects moved) so no solver or contact
        cache survives from the previous episode; that is what makes runs bit-for-bit repeatable.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f'reset seed: {seed!r} must be an int >= 0')
        seed = int(seed)
        self._check_open()
        cid = self._cid
        pb.resetSimulation(physicsClientId=cid)
        pb.setGravity(0.0, 0.0, -9.81, physicsClientId=cid)
        pb.setTimeStep(self._dt, physicsClientId=cid)
        pb.setPhysicsEngineParameter(
            numSolverIterations=SOLVER_ITERATIONS, deterministicOverlappingPairs=1,
            physicsClientId=cid)
        self._static = scene.build_static_scene(cid)
        self._load_robot()
        for arm in self._extra_arms:
            arm._load(cid)

        rng = np.random.default_rng(seed)
        task = sample_task(rng, self._config.min_distractors, self._config.max_distractors)
        layout = sample_layout(rng, len(task.objects), scene.OBJECT_REGION_X,
                               scene.OBJECT_REGION_Y, scene.OBJECT_MIN_SPACING_M)
        self._objects: dict[str, int] = {}
        self._object_specs: dict[str, ObjectSpec] = {}
        for spec, (x, y, yaw) in zip(task.objects, layout):
            self._objects[spec.name] = scene.create_object(cid, spec, x, y, yaw)
            self._object_specs[spec.name] = spec
        self._task: TaskSpec = task
        for _ in range(SETTLE_STEPS):
            pb.stepSimulation(physicsClientId=cid)
        self._physics_steps = 0
        # Drawn from the seed on a stream of its own: the scene above is the same with or
        # without jitter, and nothing physical reads the light.
        jitter = self._config.lighting_jitter
        self._lighting = (self._config.lighting if jitter is None
                          else jitter.sample(self._config.lighting, seed))
        self._episode = Episode(instruction=task.instruction, target_object=task.target.name,
                                target_place=task.place, seed=seed, objects=task.objects)
        return self._episode

    def _load_robot(self) -> None:
        cid = self._cid
        description = self._description
        gripper = description.gripper
        assert gripper is not None and description.home is not None
        try:
            self._robot = pb.loadURDF(self._urdf, list(ROBOT_BASE_POSITION), useFixedBase=True,
                                      flags=pb.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        except pb.error as exc:
            raise ConfigError(f'robot URDF {self._urdf!r} could not be loaded: {exc}') from None
        self._check_numbering()
        _lighten_frame_links(cid, self._robot)
        links = description.link_indices
        missing = [n for n in (TCP_LINK, FLANGE_LINK, TOOL_LINK) if n not in links]
        if missing:
            raise ConfigError(f'robot URDF {self._urdf!r}: missing link(s) {missing}')
        # The root (base_link, PyBullet index -1) is the body's base, not a link state.
        self._link_index = {name: index for name, index in links.items() if index >= 0}
        self._arm_names = description.joint_names
        self._grip_names = gripper.joint_names
        self._arm_idx = [description.joint_index(n) for n in self._arm_names]
        self._grip_idx = [description.joint_index(n) for n in self._grip_names]
        self._arm_limits: JointLimits = description.limits
        self._gripper_limits: JointLimits = gripper.limits
        self._home = np.array(description.home)
        # Gripper links: everything mounted below tool0 (the tool0 frame itself excluded).
        self._gripper_links = {links[name] for name in gripper.links}
        for idx in sorted(self._gripper_links):
            pb.changeDynamics(self._robot, idx, lateralFriction=FINGER_LATERAL_FRICTION,
                              spinningFriction=FINGER_SPINNING_FRICTION, frictionAnchor=1,
                              physicsClientId=cid)
        # The flange force/torque sensor sees everything distal to the flange (see wrench()).
        self._distal = [links[name] for name in description.model.subtree(FLANGE_LINK)]
        self._distal_set = set(self._distal)
        dyn = [pb.getDynamicsInfo(self._robot, j, physicsClientId=cid) for j in self._distal]
        self._distal_mass = np.array([d[0] for d in dyn])
        self._distal_inertia = np.array([d[2] for d in dyn])
        self._distal_prev: tuple[np.ndarray, np.ndarray] | None = None
        for idx, q in zip(self._arm_idx, self._home):
            pb.resetJointState(self._robot, idx, q, 0.0, physicsClientId=cid)
        for idx in self._grip_idx:
            pb.resetJointState(self._robot, idx, self._gripper_limits.lower[0], 0.0,
                               physicsClientId=cid)
        self._mode = 'hold'
        self._q_ref = self._home.copy()
        self._qd_ref = np.zeros(len(self._arm_idx))
        self._trajectory: JointTrajectory | None = None
        self._trajectory_start = 0.0
        self._ramp_from = self._q_ref.copy()
        self._ramp_to = self._q_ref.copy()
        self._ramp_start = 0
        self._ramp_done = True
        self._last_command_time = 0.0
        self._gripper_target = float(self._gripper_limits.lower[0])
        self._apply_arm(self._q_ref, self._qd_ref)
        self._apply_gripper()

    def _check_numbering(self) -> None:
        """The loaded body's joints and links are numbered, named and typed as the description
        says (so its indices address the right links), else ConfigError naming the first
        difference."""
        cid, description = self._cid, self._description
        count = pb.getNumJoints(self._robot, physicsClientId=cid)
        expected = {index: link for link, index in description.link_indices.items()
                    if index >= 0}
        if count != len(expected):
            raise ConfigError(f'robot URDF {self._urdf!r}: PyBullet loaded {count} joints, the '
                              f'description has {len(expected)}')
        movable = (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC)
        for j in range(count):
            info = pb.getJointInfo(self._robot, j, physicsClientId=cid)
            link, joint = info[12].decode(), info[1].decode()
            parent = description.model.parent_joint(expected[j])
            assert parent is not None
            if (link, joint) != (expected[j], parent.name) or \
                    (info[2] in movable) != parent.movable:
                raise ConfigError(f'robot URDF {self._urdf!r}: PyBullet index {j} is joint '
                                  f'{joint!r} / link {link!r}; the description expects '
                                  f'{parent.name!r} / {expected[j]!r}')

    # ------------------------------------------------------------------ commands
    def _receipt_time(self, now: float | None) -> float:
        if now is None:
            return self.sim_time
        return validate_scalar(now, 'command receipt time now')

    def command_positions(self, positions: Sequence[float] | np.ndarray,
                          now: float | None = None) -> None:
        """Hold the arm at joint `positions` (rad/m, joint_names order), clamped to the limits."""
        q = validate_joint_vector(positions, len(self._arm_idx), 'position command')
        stamp = self._receipt_time(now)
        lim = self._arm_limits
        # Ramp from the target in force now (first-order hold over one control period, what a
        # driver's setpoint interpolation does) so a position stream at control rate moves the
        # arm smoothly instead of in control-rate steps.
        self._ramp_from = self._q_ref.copy()
        self._ramp_to = np.clip(q, lim.lower, lim.upper)
        self._ramp_start = self._physics_steps
        self._ramp_done = False
        self._qd_ref = np.zeros_like(q)
        self._trajectory = None
        self._mode = 'position'
        self._last_command_time = stamp

    def command_velocities(self, velocities: Sequence[float] | np.ndarray,
                           now: float | None = None) -> None:
        """Drive the arm at joint `velocities` (clamped to the URDF limit) until the timeout."""
        qd = validate_joint_vector(velocities, len(self._arm_idx), 'velocity command')
        stamp = self._receipt_time(now)
        vmax = self._arm_limits.velocity
        if self._mode != 'velocity':
            # Start integrating from where the arm is, not from an old target (no jump).
            self._q_ref = self._measured_arm()[0]
        self._qd_ref = np.clip(qd, -vmax, vmax)
        self._trajectory = None
        self._mode = 'velocity'
        self._last_command_time = stamp

    def command_trajectory(self, trajectory: JointTrajectory, now: float | None = None) -> None:
        """Execute `trajectory` from the state at receipt; t = 0 is `now` (default sim_time)."""
        if not isinstance(trajectory, JointTrajectory):
            raise CommandError(
                f'trajectory command: expected a JointTrajectory, got {type(trajectory).__name__}')
        ordered = trajectory.reordered(self._arm_names)
        stamp = self._receipt_time(now)
        q, qd = self._measured_arm()
        self._trajectory = ordered.anchored(q, qd)
        self._trajectory_start = stamp
        self._mode = 'trajectory'
        self._last_command_time = stamp

    def command_setpoint(self, positions: Sequence[float] | np.ndarray,
                         velocities: Sequence[float] | np.ndarray | None = None,
                         now: float | None = None) -> None:
        """Track one controller setpoint (positions, feed-forward velocities) until the next.

        What a driver's own controller hands its servo loop every update (a ros2_control
        controller at 500 Hz, MotoROS2's increment queue): the driver emulations in
        noetra_ros/drivers interpolate their trajectories and call this once per control period;
        no ramp, no timeout (the setpoint is held, as a controller holds its last one).
        """
        q = validate_joint_vector(positions, len(self._arm_idx), 'setpoint positions')
        qd = (np.zeros_like(q) if velocities is None
              else validate_joint_vector(velocities, len(self._arm_idx), 'setpoint velocities'))
        stamp = self._receipt_time(now)
        lim = self._arm_limits
        self._q_ref = np.clip(q, lim.lower, lim.upper)
        self._qd_ref = np.clip(qd, -lim.velocity, lim.velocity)
        self._trajectory = None
        self._mode = 'setpoint'
        self._last_command_time = stamp

    def command_gripper(self, position: float, now: float | None = None, *,
                        fraction: bool = False) -> None:
        """Move both fingers to `position` (m, 0 = open .. URDF upper = closed), or to a closing
        fraction 0..1 when fraction=True. Clamped to the URDF range; force = URDF effort."""
        value = validate_scalar(position, 'gripper command')
        self._receipt_time(now)
        lower = float(self._gripper_limits.lower[0])
        upper = float(self._gripper_limits.upper[0])
        if fraction:
            value = lower + float(np.clip(value, 0.0, 1.0)) * (upper - lower)
        self._gripper_target = float(np.clip(value, lower, upper))
        self._apply_gripper()

    def hold(self) -> None:
        """Hold the measured arm position (what a timeout does), e.g. for a supervisor stop."""
        self._enter_hold()

    # ------------------------------------------------------------------ extra arms
    @property
    def extra_arms(self) -> tuple[ExtraArm, ...]:
        """The extra arms, in the order they were added."""
        return tuple(self._extra_arms)

    def add_extra_arm(self, robot: str, base_xyz: Sequence[float],
                      base_yaw: float = 0.0) -> ExtraArm:
        """Add a further arm (robot's arm-only URDF, no gripper, no task role) with its base_link
        at `base_xyz` (world frame, m) turned `base_yaw` (rad) about z; it stands at its home
        pose now and after every reset(). EXTRA_ARM_BASE_POSES are poses that fit the cell.

        ConfigError, and the world as it was, when the base is off the table or the arm at home
        comes within EXTRA_ARM_CLEARANCE_M of the main arm (as it stands now), another extra
        arm, or the columns above the object region and the bins.
        """
        self._check_open()
        arm = ExtraArm(robot, base_xyz, base_yaw)
        x, y, _ = arm.base_xyz
        table = scene.TABLE
        if not (table.x_range[0] <= x <= table.x_range[1]
                and table.y_range[0] <= y <= table.y_range[1]):
            raise ConfigError(f'extra arm {robot!r}: base at x={x}, y={y} is off the table '
                              f'(x {table.x_range}, y {table.y_range})')
        arm._load(self._cid)
        try:
            self._check_extra_arm_clearance(arm)
        except ConfigError:
            pb.removeBody(arm.body_id, physicsClientId=self._cid)
            raise
        self._extra_arms.append(arm)
        return arm

    def _check_extra_arm_clearance(self, arm: ExtraArm) -> None:
        cid, margin = self._cid, EXTRA_ARM_CLEARANCE_M
        where = (f'extra arm {arm.robot!r} at base_xyz {list(arm.base_xyz)}, base_yaw '
                 f'{arm.base_yaw:.3f}')
        others = [('the main arm', self._robot)] + [
            (f'extra arm {other.robot!r} at {list(other.base_xyz)}', other.body_id)
            for other in self._extra_arms]
        for label, body in others:
            points = pb.getClosestPoints(arm.body_id, body, margin, physicsClientId=cid)
            if points:
                closest = min(p[8] for p in points)
                gap = 'overlaps' if closest < 0.0 else f'is {closest:.3f} m from'
                raise ConfigError(f'{where}: at home it {gap} {label} (needs {margin} m of '
                                  'room); choose another base pose')
        columns = {'the object region': (scene.OBJECT_REGION_X, scene.OBJECT_REGION_Y)}
        for place, spec in scene.BINS.items():
            half_x = spec.inner_size_xy[0] / 2 + spec.wall_thickness
            half_y = spec.inner_size_xy[1] / 2 + spec.wall_thickness
            columns[f'the {place} bin'] = ((spec.centre_xy[0] - half_x, spec.centre_xy[0] + half_x),
                                           (spec.centre_xy[1] - half_y, spec.centre_xy[1] + half_y))
        # Link bounding boxes: conservative, and no temporary body disturbs the simulation.
        links = range(-1, pb.getNumJoints(arm.body_id, physicsClientId=cid))
        boxes = [pb.getAABB(arm.body_id, link, physicsClientId=cid) for link in links]
        for label, ((x0, x1), (y0, y1)) in columns.items():
            for low, high in boxes:
                if (low[0] < x1 + margin and high[0] > x0 - margin
                        and low[1] < y1 + margin and high[1] > y0 - margin):
                    raise ConfigError(f'{where}: at home it reaches over {label}, where the main '
                                      'arm works; choose another base pose')

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Advance one control period (physics_hz / control_hz substeps)."""
        self._check_open()
        lim = self._arm_limits
        for substep in range(self._substeps):
            if substep == self._substeps - 1:
                # Velocities before the last substep give the accelerations wrench() needs.
                self._distal_prev = self._distal_velocities()
            if (self._mode == 'velocity'
                    and self.sim_time - self._last_command_time > self._config.command_timeout_s):
                self._enter_hold()
            if self._mode == 'velocity':
                q_meas = self._measured_arm()[0]
                q_next = np.clip(self._q_ref + self._qd_ref * self._dt, lim.lower, lim.upper)
                self._q_ref = np.clip(q_next, q_meas - VELOCITY_REFERENCE_LEAD,
                                      q_meas + VELOCITY_REFERENCE_LEAD)
                at_limit = (q_next <= lim.lower) | (q_next >= lim.upper)
                self._apply_arm(self._q_ref, np.where(at_limit, 0.0, self._qd_ref))
            elif self._mode == 'position' and not self._ramp_done:
                # Counted in physics steps, so the ramp ends exactly after one control period.
                elapsed = self._physics_steps - self._ramp_start
                moving = elapsed < self._substeps
                alpha = min(1.0, (elapsed + 1) / self._substeps)
                span = self._ramp_to - self._ramp_from
                self._q_ref = self._ramp_from + alpha * span
                self._apply_arm(self._q_ref, span / self.control_period if moving else 0.0 * span)
                self._ramp_done = not moving
            elif self._mode == 'setpoint':
                self._apply_arm(self._q_ref, self._qd_ref)
            elif self._mode == 'trajectory':
                assert self._trajectory is not None
                t = self.sim_time + self._dt - self._trajectory_start
                q, qd = self._trajectory.sample(t)
                self._q_ref = np.clip(q, lim.lower, lim.upper)
                self._apply_arm(self._q_ref, np.clip(qd, -lim.velocity, lim.velocity))
            pb.stepSimulation(physicsClientId=self._cid)
            self._physics_steps += 1

    def _enter_hold(self) -> None:
        self._q_ref = self._measured_arm()[0]
        self._qd_ref = np.zeros(len(self._arm_idx))
        self._trajectory = None
        self._mode = 'hold'
        self._apply_arm(self._q_ref, self._qd_ref)

    def _apply_arm(self, q: np.ndarray, qd: np.ndarray) -> None:
        lim = self._arm_limits
        for k, idx in enumerate(self._arm_idx):
            pb.setJointMotorControl2(
                self._robot, idx, pb.POSITION_CONTROL, targetPosition=float(q[k]),
                targetVelocity=float(qd[k]), force=float(lim.effort[k]),
                maxVelocity=float(lim.velocity[k]), positionGain=ARM_POSITION_GAIN,
                velocityGain=ARM_VELOCITY_GAIN, physicsClientId=self._cid)

    def _apply_gripper(self) -> None:
        lim = self._gripper_limits
        for k, idx in enumerate(self._grip_idx):
            pb.setJointMotorControl2(
                self._robot, idx, pb.POSITION_CONTROL, targetPosition=self._gripper_target,
                force=float(lim.effort[k]), maxVelocity=float(lim.velocity[k]),
                physicsClientId=self._cid)

    # ------------------------------------------------------------------ state
    def _measured_arm(self) -> tuple[np.ndarray, np.ndarray]:
        states = pb.getJointStates(self._robot, self._arm_idx, physicsClientId=self._cid)
        return (np.array([s[0] for s in states]), np.array([s[1] for s in states]))

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, efforts) of joint_names + gripper_joint_names.

        Efforts are the motor torques / forces applied in the last physics step.
        """
        states = pb.getJointStates(self._robot, self._arm_idx + self._grip_idx,
                                   physicsClientId=self._cid)
        return (np.array([s[0] for s in states]), np.array([s[1] for s in states]),
                np.array([s[3] for s in states]))

    def gripper_position(self) -> float:
        """Mean finger position (m): 0 = open, URDF upper limit = closed."""
        states = pb.getJointStates(self._robot, self._grip_idx, physicsClientId=self._cid)
        return float(np.mean([s[0] for s in states]))

    def link_pose(self, link: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of a URDF link frame: (xyz, quaternion xyzw)."""
        if link not in self._link_index:
            raise UnknownNameError(f'link {link!r} not in the robot; known: '
                                   f'{sorted(self._link_index)}')
        state = pb.getLinkState(self._robot, self._link_index[link], computeForwardKinematics=True,
                                physicsClientId=self._cid)
        return np.array(state[4]), np.array(state[5])

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World pose of the gripper TCP (between the pads)."""
        return self.link_pose(TCP_LINK)

    def _distal_velocities(self) -> tuple[np.ndarray, np.ndarray]:
        states = pb.getLinkStates(self._robot, self._distal, computeLinkVelocity=1,
                                  computeForwardKinematics=1, physicsClientId=self._cid)
        return (np.array([s[6] for s in states]), np.array([s[7] for s in states]))

    def wrench(self) -> np.ndarray:
        """Force (N) and torque (N m) a flange force/torque sensor reads, in the tool0 frame,
        torque about the tool0 origin: the load the tool side (gripper, payload, contacts) puts
        on the flange. Not tared: it includes the gripper weight, so with tool0 pointing down a
        held mass m adds +m g to Fz.

        Computed by Newton-Euler over the links beyond the flange from what the last physics
        step resolved: gravity, every contact force on those links (normal and both friction
        directions), and their linear and angular inertia (accelerations over the last substep).
        PyBullet's own joint reaction feedback is not used: it misses part of the finger motor
        constraint forces (about 0.25 N of a 0.7 N payload in a pinch grasp). Accuracy: statics
        exact to rounding; in a pinch grasp the solver's contact forces balance the object's
        moments only to about 0.1 N m (mostly about tool z); no sensor noise is added.
        """
        cid = self._cid
        tool_pos, tool_quat = self.link_pose(TOOL_LINK)
        states = pb.getLinkStates(self._robot, self._distal, computeLinkVelocity=1,
                                  computeForwardKinematics=1, physicsClientId=cid)
        force, torque = np.zeros(3), np.zeros(3)
        gravity = np.array([0.0, 0.0, -9.81])
        for k, state in enumerate(states):
            mass = self._distal_mass[k]
            if mass <= 0.0:
                continue
            lin, ang = np.array(state[6]), np.array(state[7])
            acc, alpha = np.zeros(3), np.zeros(3)
            if self._distal_prev is not None:
                acc = (lin - self._distal_prev[0][k]) / self._dt
                alpha = (ang - self._distal_prev[1][k]) / self._dt
            load = mass * (gravity - acc)  # weight plus d'Alembert inertial force
            force += load
            torque += np.cross(np.array(state[0]) - tool_pos, load)
            rot = np.array(pb.getMatrixFromQuaternion(state[1])).reshape(3, 3)
            inertia = rot @ np.diag(self._distal_inertia[k]) @ rot.T
            torque -= inertia @ alpha + np.cross(ang, inertia @ ang)
        for contact in pb.getContactPoints(bodyA=self._robot, physicsClientId=cid):
            if contact[3] not in self._distal_set:
                continue
            # Force on body A: normal along contactNormalOnB, friction along its directions.
            push = (contact[9] * np.array(contact[7]) + contact[10] * np.array(contact[11])
                    + contact[12] * np.array(contact[13]))
            force += push
            torque += np.cross(np.array(contact[5]) - tool_pos, push)
        rot_tool = np.array(pb.getMatrixFromQuaternion(tool_quat)).reshape(3, 3)
        return np.concatenate([rot_tool.T @ force, rot_tool.T @ torque])

    # ------------------------------------------------------------------ objects and task
    def _object_id(self, name: str) -> int:
        if name not in self._objects:
            raise UnknownNameError(f'object {name!r} not in the scene; '
                                   f'known: {list(self._objects)}')
        return self._objects[name]

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of an object's centre: (xyz, quaternion xyzw). Local y is the grasp axis."""
        pos, quat = pb.getBasePositionAndOrientation(self._object_id(name),
                                                     physicsClientId=self._cid)
        return np.array(pos), np.array(quat)

    def object_velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World linear (m/s) and angular (rad/s) velocity of an object."""
        lin, ang = pb.getBaseVelocity(self._object_id(name), physicsClientId=self._cid)
        return np.array(lin), np.array(ang)

    def object_spec(self, name: str) -> ObjectSpec:
        """Colour / shape / size of an object."""
        self._object_id(name)
        return self._object_specs[name]

    def target_object_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World pose of the object the instruction names."""
        return self.object_pose(self.episode.target_object)

    def place_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the named bin at the release height (scene.PLACE_ABOVE_FLOOR_M above the
        bin floor, below the rim), identity orientation."""
        return scene.place_position(self.episode.target_place), np.array([0.0, 0.0, 0.0, 1.0])

    def gripper_touches(self, name: str) -> bool:
        """True when a gripper link is in contact with the object."""
        contacts = pb.getContactPoints(self._robot, self._object_id(name),
                                       physicsClientId=self._cid)
        return any(c[3] in self._gripper_links for c in contacts)

    def task_status(self) -> TaskStatus:
        """Success / failure / running for the current episode (see task.check_task)."""
        name = self.episode.target_object
        pos, _ = self.object_pose(name)
        lin, _ = self.object_velocity(name)
        return check_task(pos, float(np.linalg.norm(lin)), self.gripper_touches(name),
                          scene.BINS, self.episode.target_place, scene.TABLE, self.sim_time,
                          self._config.episode_timeout_s)

    # ------------------------------------------------------------------ cameras
    def _camera(self, name: str) -> CameraSpec:
        if name not in self._cameras:
            raise UnknownNameError(f'camera {name!r} not configured; known: {list(self._cameras)}')
        return self._cameras[name]

    def camera_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose of the camera's optical frame (z forward, x right, y down)."""
        spec = self._camera(name)
        if spec.mount == 'fixed':
            forward = np.subtract(spec.target, spec.eye)
            forward /= np.linalg.norm(forward)
            right = np.cross(forward, spec.up)
            right /= np.linalg.norm(right)
            down = np.cross(forward, right)
            rot = np.column_stack([right, down, forward])
            return np.array(spec.eye), matrix_to_quaternion(rot)
        link_pos, link_quat = self.link_pose(spec.link)
        offset_quat = pb.getQuaternionFromEuler(spec.offset_rpy)
        pos, quat = pb.multiplyTransforms(link_pos, link_quat, spec.offset_xyz, offset_quat)
        return np.array(pos), np.array(quat)

    def project(self, name: str, point: Sequence[float]) -> np.ndarray:
        """Pixel (u, v) of a world point in a camera's image (ROS pixel-centre convention);
        (nan, nan) when the point is behind the camera. May lie outside the image."""
        spec = self._camera(name)
        pos, quat = self.camera_pose(name)
        rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
        x, y, z = rot.T @ (np.asarray(point, dtype=float) - pos)
        if z <= spec.near:
            return np.array([np.nan, np.nan])
        fx, fy, cx, cy = spec.intrinsics()
        return np.array([fx * x / z + cx, fy * y / z + cy])

    def camera_info(self, name: str) -> CameraInfo:
        """Intrinsics of a camera, matching render()."""
        spec = self._camera(name)
        k = spec.k_matrix()
        p = np.hstack([k, np.zeros((3, 1))])
        return CameraInfo(width=spec.width, height=spec.height, k=k, p=p, d=np.zeros(5),
                          distortion_model='plumb_bob', frame_id=spec.optical_frame_id)

    def _render_raw(self, name: str) -> tuple[CameraSpec, np.ndarray, np.ndarray]:
        spec = self._camera(name)
        pos, quat = self.camera_pose(name)
        rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
        view = pb.computeViewMatrix(pos.tolist(), (pos + rot[:, 2]).tolist(),
                                    (-rot[:, 1]).tolist(), physicsClientId=self._cid)
        proj = pb.computeProjectionMatrixFOV(spec.fov_deg, spec.width / spec.height, spec.near,
                                             spec.far, physicsClientId=self._cid)
        _, _, rgba, depth, _ = pb.getCameraImage(
            spec.width, spec.height, view, proj, shadow=int(self._config.render_shadows),
            renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self._cid, **self._lighting.camera_image_arguments())
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(spec.height, spec.width, 4)
        depth = np.asarray(depth, dtype=np.float32).reshape(spec.height, spec.width)
        return spec, rgba, depth

    def render(self, name: str) -> np.ndarray:
        """RGB image (height x width x 3, uint8) of a camera."""
        _, rgba, _ = self._render_raw(name)
        return np.ascontiguousarray(rgba[:, :, :3])

    def render_depth(self, name: str) -> np.ndarray:
        """Depth along the optical axis (m, float32, height x width); `far` where nothing is
        hit."""
        return self.render_rgbd(name)[1]

    def render_rgbd(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """RGB (uint8) and depth (m, float32) from ONE rendering of a camera."""
        spec, rgba, buffer = self._render_raw(name)
        near, far = spec.near, spec.far
        # Undo the OpenGL depth-buffer non-linearity.
        depth = far * near / (far - (far - near) * buffer.astype(np.float64))
        return np.ascontiguousarray(rgba[:, :, :3]), depth.astype(np.float32)

    # ------------------------------------------------------------------ lifetime
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError('SimWorld: used after close()')

    def close(self) -> None:
        """Disconnect the physics client (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                pb.disconnect(physicsClientId=self._cid)
            except pb.error:
                pass

    def __enter__(self) -> SimWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: pybullet may already be gone
            pass
