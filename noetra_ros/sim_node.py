"""sim_node: a PyBullet arm cell that plays a real arm driver (its interface, names and rates).

`driver` picks the driver it plays (core/drivers/profiles.py; the ROS faces in
noetra_ros/drivers/sim_<driver>.py): `ros2_control` (forward position / velocity controllers and
a JTC topic), `fanuc` (fanuc_driver's controllers: J1..J6, scaled JTC topic + action, speed
scaling, GPIO robot status, 500 Hz) or `motoros2` (Yaskawa MotoROS2: FJT action, point queue
services, robot_status, tf, best-effort joint_states every 10 ms). The driver owns joint_states
and every arm command interface; this node owns the world, /clock, the cameras (image_raw +
camera_info), the wrist wrench, the gripper (gripper_position_controller/commands, a separate
gripper driver on a real cell), the task's instruction / status / poses and /diagnostics. All
physics lives in noetra_ros.core.sim; the controllers' rules in noetra_ros.core.drivers.

Modes:
- realtime: steps on a wall timer, paced by real_time_factor (0 = as fast as possible); one
  step per driver update (control_hz = the driver's update rate). Task poses, status and the
  wrench go out at observation_hz (0 = every step), always with a joint_states of the same stamp.
- lockstep: publishes an observation, then waits until every command source listed in
  `lockstep_inputs` has answered before stepping, so an episode is the same for a seed
  whatever the CPU load (a source that stays silent for lockstep_timeout_s is skipped, logged).
  An episode's first observation that no source answers is published again instead (up to
  lockstep_start_timeout_s): at start-up a reader may match after it was sent, and stepping
  without the policy would change the episode.
  ros2_control profile only: the real drivers' controllers run on their own clock.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import importlib
import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, WrenchStamped
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool, Float64MultiArray, Header, String, UInt32
from std_srvs.srv import Trigger

from noetra_ros.core.commands import validate_joint_vector
from noetra_ros.core.drivers.profiles import DRIVERS, profile
from noetra_ros.core.episodes import (DEFAULT_EPISODE_TIMEOUT_S, DEFAULT_RESET_PAUSE_S,
                                      EpisodeSchedule, WAITING_FOR_RESET)
from noetra_ros.core.errors import ConfigError, NoetraError
from noetra_ros.core.images import render_colour_and_depth
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.policy.contract import depth_source
from noetra_ros.core.sim.lighting import CONDITIONS as LIGHTING_CONDITIONS, lighting_condition
from noetra_ros.core.sim.privileged import (environment_names, environment_state,
                                            ENVIRONMENT_STATE_TOPIC)
from noetra_ros.core.sim.world import (default_cameras, EXTRA_ARM_BASE_POSES, SimWorld,
                                       WorldConfig)
from noetra_ros.interface_packages import interface_type
from noetra_ros.drivers.sim_base import SimArm, SimDriver, SimDriverSettings
from noetra_ros.qos import CLOCK, LATCHED, RELIABLE
from noetra_ros.ros_conversions import camera_info_msg, numpy_to_image, seconds_to_stamp
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

MODES = ('realtime', 'lockstep')
COMMAND_KINDS = ('arm', 'gripper')
# driver -> 'module:class' of its simulated face (imported on use: each pulls its own packages).
SIM_DRIVERS = {
    'ros2_control': 'noetra_ros.drivers.sim_ros2_control:Ros2ControlSimDriver',
    'fanuc': 'noetra_ros.drivers.sim_fanuc:FanucSimDriver',
    'motoros2': 'noetra_ros.drivers.sim_motoros2:MotoRos2SimDriver',
}
FANUC_CONTROLLERS = ('joint_trajectory_controller', 'forward_position_controller')

PARAMETERS = {
    'robot': ('fanuc_lrmate200id', 'robot model name (urdf/<robot>_gripper.urdf)'),
    'driver': ('ros2_control', f'the arm driver the sim plays: one of {DRIVERS} '
                               '(core/drivers/profiles.py)'),
    'driver_namespace': ('', 'namespace of the driver\'s interfaces (MotoROS2 node_namespace, '
                             'the FANUC controller manager\'s namespace); \'\' = root'),
    'command_controller': ('joint_trajectory_controller',
                           f'fanuc: the active one of {FANUC_CONTROLLERS} (they claim the same '
                           'joints, so fanuc_driver runs one at a time)'),
    'joint_states_divisor': (1, 'joint_states every N driver updates (1 = every update)'),
    'observation_hz': (0.0, 'rate of task poses / status / wrench (0 = every step); each goes '
                            'out with the joint_states of its step'),
    'mode': ('realtime', f'stepping mode: one of {MODES}'),
    'real_time_factor': (1.0, 'realtime mode: sim seconds per wall second (0 = unpaced)'),
    'control_hz': (0, 'driver update rate, one sim step each (0 = the driver\'s own: '
                      'ros2_control 20, fanuc 500, motoros2 100)'),
    'physics_hz': (240, 'physics rate; an integer multiple of control_hz'),
    'command_timeout_s': (0.5, 'velocity commands older than this are replaced by a hold'),
    'controller_joints': ([], 'joint order of the forward controllers, in the driver\'s names '
                              '([] = URDF order)'),
    'driver_joint_names': ('', f'joint names the simulated driver uses: one of {SCHEMES} '
                               '(\'\' = the driver\'s: fanuc J1..Jn, motoros2 joint_1..n); '
                               'core/joint_names.py'),
    'joint_name_prefix': ('', 'prefix of the arm joint names (fanuc_driver\'s prefix, '
                              'MotoROS2 group_<g>/)'),
    'extra_arms': ([], 'further arms on the same controller, by robot name: MotoROS2\'s groups '
                       'r2, r3, ... (driver motoros2 only; the main arm is then group_1/), each '
                       'at r<g>.base_xyz (m, world frame) / r<g>.base_yaw (rad)'),
    'lockstep_inputs': (['arm', 'gripper'], 'lockstep: command kinds to wait for each step'),
    'lockstep_timeout_s': (2.0, 'lockstep: wall seconds to wait for a silent source'),
    'lockstep_start_timeout_s': (30.0, 'lockstep: wall seconds an episode\'s first observation '
                                       'that no source answered is published again before '
                                       'stepping without them'),
    'cameras': (['scene_camera', 'wrist_camera'], 'cameras to render and publish'),
    'camera_width': (160, 'default image width (per camera: <camera>.width)'),
    'camera_height': (120, 'default image height (per camera: <camera>.height)'),
    'camera_rate_hz': (10.0, 'default camera rate (per camera: <camera>.rate_hz)'),
    'lighting': ('default', f'the cameras\' light, a named condition: one of '
                            f'{", ".join(LIGHTING_CONDITIONS)} (core/sim/lighting.py)'),
    'depth_cameras': ([], 'cameras (of `cameras`) that also publish depth aligned to colour, '
                          'as realsense2_camera: <camera>/aligned_depth_to_color/image_raw '
                          '(16UC1 mm, 0 = no return) + camera_info, from the colour image\'s '
                          'rendering, same stamp and frame'),
    'environment_state_cameras': ([], 'cameras whose pixels go into sim/environment_state '
                                      '(noetra_msgs/EnvironmentState: the privileged scene state '
                                      'a recording keeps as training targets, core/sim/'
                                      'privileged.py); [] = not published'),
    'episodes': (0, 'episodes to run, resetting automatically (0 = run until stopped)'),
    'first_seed': (0, 'seed of the first episode; episode k uses first_seed + k'),
    'episode_timeout_s': (DEFAULT_EPISODE_TIMEOUT_S,
                          'sim seconds after which an episode counts as failed'),
    'reset_pause_s': (DEFAULT_RESET_PAUSE_S, 'sim seconds to hold between episodes'),
    'publish_clock': (True, 'publish /clock (nodes of the cell run on use_sim_time)'),
    'wait_for_reset': (False, 'start nothing until the first task/reset (its seed becomes '
                              'first_seed), so a runner can finish DDS discovery first'),
}


@dataclass(frozen=True)
class CameraStream:
    name: str
    width: int
    height: int
    rate_hz: float


@dataclass(frozen=True)
class ExtraArmSpec:
    robot: str
    base_xyz: tuple[float, float, float]
    base_yaw: float


@dataclass(frozen=True)
class SimNodeConfig:
    robot: str
    driver: str
    driver_namespace: str
    command_controller: str
    joint_states_divisor: int
    observation_hz: float
    mode: str
    real_time_factor: float
    control_hz: int
    physics_hz: int
    command_timeout_s: float
    controller_joints: tuple[str, ...]
    driver_joint_names: str
    joint_name_prefix: str
    lockstep_inputs: tuple[str, ...]
    lockstep_timeout_s: float
    lockstep_start_timeout_s: float
    cameras: tuple[CameraStream, ...]
    episodes: int
    first_seed: int
    episode_timeout_s: float
    reset_pause_s: float
    publish_clock: bool
    wait_for_reset: bool
    extra_arms: tuple[ExtraArmSpec, ...] = ()
    environment_state_cameras: tuple[str, ...] = ()
    lighting: str = 'default'

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f'parameter mode={self.mode!r}: must be one of {MODES}')
        if self.driver not in DRIVERS:
            raise ConfigError(f'parameter driver={self.driver!r}: must be one of {DRIVERS}')
        if self.extra_arms and self.driver != 'motoros2':
            raise ConfigError(f'parameter extra_arms={[a.robot for a in self.extra_arms]}: only '
                              f'the motoros2 driver runs several arms (MotoROS2\'s control '
                              f'groups); the {self.driver} driver runs one arm per controller')
        if self.mode == 'lockstep' and self.driver != 'ros2_control':
            raise ConfigError(f'parameter mode=lockstep: only the ros2_control driver steps in '
                              f'lockstep; {self.driver} runs its controllers on its own clock '
                              f'(use mode realtime)')
        if self.command_controller not in FANUC_CONTROLLERS:
            raise ConfigError(f'parameter command_controller={self.command_controller!r}: must '
                              f'be one of {FANUC_CONTROLLERS}')
        if self.joint_states_divisor < 1:
            raise ConfigError(f'parameter joint_states_divisor={self.joint_states_divisor}: '
                              f'must be >= 1')
        if self.observation_hz < 0 or not math.isfinite(self.observation_hz):
            raise ConfigError(f'parameter observation_hz={self.observation_hz}: must be >= 0')
        if self.real_time_factor < 0 or not math.isfinite(self.real_time_factor):
            raise ConfigError(f'parameter real_time_factor={self.real_time_factor}: must be >= 0')
        unknown = set(self.lockstep_inputs) - set(COMMAND_KINDS)
        if unknown:
            raise ConfigError(f'parameter lockstep_inputs has {sorted(unknown)}; '
                              f'allowed: {COMMAND_KINDS}')
        if self.lockstep_timeout_s <= 0:
            raise ConfigError(f'parameter lockstep_timeout_s={self.lockstep_timeout_s}: '
                              f'must be > 0')
        if self.lockstep_start_timeout_s < 0:
            raise ConfigError(f'parameter lockstep_start_timeout_s='
                              f'{self.lockstep_start_timeout_s}: must be >= 0')
        for cam in self.cameras:
            if cam.width <= 0 or cam.height <= 0 or cam.rate_hz <= 0:
                raise ConfigError(f'camera {cam.name!r}: width, height and rate_hz must be > 0, '
                                  f'got {cam.width}x{cam.height} at {cam.rate_hz} Hz')
        if self.lighting not in LIGHTING_CONDITIONS:
            raise ConfigError(f'parameter lighting={self.lighting!r}: must be one of '
                              f'{", ".join(LIGHTING_CONDITIONS)}')
        unknown_cams = set(self.environment_state_cameras) - {c.name for c in self.cameras}
        if unknown_cams:
            raise ConfigError(f'parameter environment_state_cameras names {sorted(unknown_cams)}, '
                              f'not among cameras {[c.name for c in self.cameras]}')


def _read_config(node: Node) -> SimNodeConfig:
    p = declare_parameters(node, PARAMETERS, read_only=True)
    cameras = []
    for name in p['cameras']:
        per_cam = declare_parameters(node, {
            f'{name}.width': (p['camera_width'], f'{name} image width'),
            f'{name}.height': (p['camera_height'], f'{name} image height'),
            f'{name}.rate_hz': (float(p['camera_rate_hz']), f'{name} publish rate'),
        }, read_only=True)
        cameras.append(CameraStream(name, int(per_cam[f'{name}.width']),
                                    int(per_cam[f'{name}.height']),
                                    float(per_cam[f'{name}.rate_hz'])))
    extra_arms = []
    for index, robot in enumerate(p['extra_arms']):
        group = f'r{index + 2}'
        # Arms past the default poses get the last one: the world then refuses the overlap,
        # naming these parameters.
        xyz, yaw = EXTRA_ARM_BASE_POSES[min(index, len(EXTRA_ARM_BASE_POSES) - 1)]
        pose = declare_parameters(node, {
            f'{group}.base_xyz': (list(xyz), f'{group} ({robot}): base_link position in the '
                                             'world frame (m)'),
            f'{group}.base_yaw': (float(yaw), f'{group} ({robot}): base_link yaw about z (rad)'),
        }, read_only=True)
        base_xyz = [float(v) for v in pose[f'{group}.base_xyz']]
        if len(base_xyz) != 3:
            raise ConfigError(f'parameter {group}.base_xyz={base_xyz}: needs x, y, z')
        extra_arms.append(ExtraArmSpec(str(robot), (base_xyz[0], base_xyz[1], base_xyz[2]),
                                       float(pose[f'{group}.base_yaw'])))
    driver = str(p['driver'])
    defaults = profile(driver) if driver in DRIVERS else None
    naming = str(p['driver_joint_names']) or (defaults.joint_names if defaults else 'urdf')
    prefix = str(p['joint_name_prefix'])
    if extra_arms and naming == 'motoros2' and not prefix:
        # driver-interfaces.md §2.1 (MR src/ConfigFile.h): a multi-group controller names its
        # joints group_<g>/joint_<j>; the main arm is group 1.
        prefix = 'group_1/'
    control_hz = int(p['control_hz']) or (defaults.update_hz if defaults else 20)
    physics_hz = int(p['physics_hz'])
    if physics_hz % control_hz:
        # The physics rate rounds up to a multiple of the driver's rate (500 Hz -> 500).
        physics_hz = control_hz * max(1, -(-physics_hz // control_hz))
    return SimNodeConfig(
        robot=p['robot'], driver=driver, driver_namespace=str(p['driver_namespace']),
        command_controller=str(p['command_controller']),
        joint_states_divisor=int(p['joint_states_divisor']),
        observation_hz=float(p['observation_hz']),
        mode=p['mode'], real_time_factor=float(p['real_time_factor']),
        control_hz=control_hz, physics_hz=physics_hz,
        command_timeout_s=float(p['command_timeout_s']),
        controller_joints=tuple(p['controller_joints']),
        driver_joint_names=naming, joint_name_prefix=prefix,
        lockstep_inputs=tuple(p['lockstep_inputs']),
        lockstep_timeout_s=float(p['lockstep_timeout_s']),
        lockstep_start_timeout_s=float(p['lockstep_start_timeout_s']), cameras=tuple(cameras),
        episodes=int(p['episodes']), first_seed=int(p['first_seed']),
        episode_timeout_s=float(p['episode_timeout_s']), reset_pause_s=float(p['reset_pause_s']),
        publish_clock=bool(p['publish_clock']), wait_for_reset=bool(p['wait_for_reset']),
        extra_arms=tuple(extra_arms),
        environment_state_cameras=tuple(str(c) for c in p['environment_state_cameras']),
        lighting=str(p['lighting']))


def _build_world(cfg: SimNodeConfig) -> SimWorld:
    defaults = {cam.name: cam for cam in default_cameras()}
    specs = []
    for stream in cfg.cameras:
        if stream.name not in defaults:
            raise ConfigError(f'parameter cameras: unknown camera {stream.name!r}; '
                              f'the cell has {sorted(defaults)}')
        specs.append(replace(defaults[stream.name], width=stream.width, height=stream.height))
    world = SimWorld(WorldConfig(robot=cfg.robot, physics_hz=cfg.physics_hz,
                                 control_hz=cfg.control_hz, cameras=tuple(specs),
                                 command_timeout_s=cfg.command_timeout_s,
                                 episode_timeout_s=cfg.episode_timeout_s,
                                 lighting=lighting_condition(cfg.lighting)))
    for group, spec in enumerate(cfg.extra_arms, start=2):
        try:
            world.add_extra_arm(spec.robot, spec.base_xyz, spec.base_yaw)
        except ConfigError as exc:
            world.close()
            raise ConfigError(f'parameters extra_arms, r{group}.base_xyz, r{group}.base_yaw: '
                              f'{exc}') from None
    return world


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__('sim')
        self.cfg = _read_config(self)
        self.world = _build_world(self.cfg)
        self.arm_joints = list(self.world.joint_names)
        # Names as the emulated driver spells them: published in joint_states, accepted in
        # controller_joints, trajectories and goals; the world keeps the description's.
        self.names = JointNameMap.for_scheme(self.arm_joints, self.cfg.driver_joint_names,
                                             self.cfg.joint_name_prefix,
                                             keep=self.world.gripper_joint_names)
        self.schedule = EpisodeSchedule(self.cfg.episodes, self.cfg.first_seed,
                                        self.cfg.episode_timeout_s, self.cfg.reset_pause_s)
        self.counters = {'steps': 0, 'rejected_commands': 0, 'lockstep_timeouts': 0,
                         'lockstep_resends': 0, 'commands_gripper': 0}
        self._observation_period = (1.0 / self.cfg.observation_hz if self.cfg.observation_hz
                                    else 0.0)
        self._next_observation = 0.0
        self._next_camera_time = {cam.name: 0.0 for cam in self.cfg.cameras}
        self._awaiting: set[str] = set()
        self._observation_wall = time.monotonic()
        # Wall time the running episode's first observation was published; None once it stepped.
        self._episode_start_wall: float | None = None
        # What the last observation carried, to publish it again unchanged.
        self._cameras_published: list[str] = []
        self._task_observation_published = False
        self._wall_started = time.monotonic()
        self._pending_seed: int | None = None
        # SimWorld restarts its clock at every reset; the ROS clock must never run backwards, so
        # the node adds the time of all previous episodes.
        self._time_offset = 0.0
        self._last_published = 0.0

        self.pub_wrench = self.create_publisher(
            WrenchStamped, 'force_torque_sensor_broadcaster/wrench', RELIABLE)
        self.pub_clock = self.create_publisher(Clock, '/clock', CLOCK)
        self.pub_images = {c.name: self.create_publisher(Image, f'{c.name}/image_raw', RELIABLE)
                           for c in self.cfg.cameras}
        self.pub_infos = {c.name: self.create_publisher(CameraInfo, f'{c.name}/camera_info',
                                                        RELIABLE) for c in self.cfg.cameras}
        self.depth_cameras = list(self.get_parameter('depth_cameras').value)
        unknown = [c for c in self.depth_cameras if c not in self.pub_images]
        if unknown:
            raise ConfigError(f'parameter depth_cameras: {unknown} are not in parameter cameras '
                              f'({sorted(self.pub_images)}): depth comes with a colour image')
        self.pub_depths = {c: self.create_publisher(
            Image, f'{depth_source(c)}/image_raw', RELIABLE) for c in self.depth_cameras}
        self.pub_depth_infos = {c: self.create_publisher(
            CameraInfo, f'{depth_source(c)}/camera_info', RELIABLE) for c in self.depth_cameras}
        self.pub_instruction = self.create_publisher(String, 'task/instruction', LATCHED)
        self.pub_status = self.create_publisher(DiagnosticStatus, 'task/status', RELIABLE)
        self.pub_success = self.create_publisher(Bool, 'task/success', LATCHED)
        self.pub_target = self.create_publisher(PoseStamped, 'task/target_pose', RELIABLE)
        self.pub_place = self.create_publisher(PoseStamped, 'task/place_pose', RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self.pub_environment = None
        if self.cfg.environment_state_cameras:
            # Imported only here: the type comes from our interface package (noetra_msgs).
            self.EnvironmentState = interface_type('noetra_msgs', 'msg', 'EnvironmentState')
            self.environment_names = list(environment_names(self.cfg.environment_state_cameras))
            self.pub_environment = self.create_publisher(
                self.EnvironmentState, ENVIRONMENT_STATE_TOPIC, RELIABLE)

        self.driver = self._make_driver()
        self.create_subscription(Float64MultiArray, 'gripper_position_controller/commands',
                                 self._on_gripper_command, RELIABLE)
        self.create_subscription(UInt32, 'task/reset', self._on_reset_topic, RELIABLE)
        self.create_service(Trigger, '~/reset', self._on_reset_service)

        if self.cfg.mode == 'lockstep':
            self.create_timer(0.02, self._lockstep_watchdog)
        else:
            rtf = self.cfg.real_time_factor
            period = 1.0 / (self.cfg.control_hz * rtf) if rtf > 0 else 0.0005
            self.create_timer(period, self._advance)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'sim ready: robot={self.cfg.robot} driver={self.cfg.driver} mode={self.cfg.mode} '
            f'update={self.cfg.control_hz} Hz physics={self.cfg.physics_hz} Hz '
            f'cameras={[c.name for c in self.cfg.cameras]} '
            f'joints={self.driver.driver_joint_names()}')
        self.started = not self.cfg.wait_for_reset
        if self.started:
            self._maybe_reset()
            self._publish_observation()
        else:
            self.get_logger().info('waiting for the first task/reset to start')

    @property
    def now(self) -> float:
        """Cell time in seconds: monotonic over episodes, the stamp of everything published."""
        return self._time_offset + self.world.sim_time

    def _make_driver(self) -> SimDriver:
        module_name, class_name = SIM_DRIVERS[self.cfg.driver].split(':')
        driver_class = getattr(importlib.import_module(module_name), class_name)
        world = self.world

        def measured_arm():
            q, qd, tau = world.joint_state()
            n = len(self.arm_joints)
            return q[:n], qd[:n], tau[:n]

        def measured_gripper():
            q, qd, tau = world.joint_state()
            n = len(self.arm_joints)
            return q[n:], qd[n:], tau[n:]

        arm = SimArm(joint_names=tuple(self.arm_joints),
                     gripper_joint_names=tuple(world.gripper_joint_names),
                     limits=world.description.limits, control_hz=self.cfg.control_hz,
                     measured=measured_arm, gripper_measured=measured_gripper,
                     setpoint=lambda q, qd: world.command_setpoint(q, qd, world.sim_time),
                     hold=world.hold, world=world, arrived=self._arrived,
                     extra_arms=world.extra_arms)
        settings = SimDriverSettings(
            robot=self.cfg.robot, control_hz=self.cfg.control_hz,
            joint_states_divisor=self.cfg.joint_states_divisor,
            namespace=self.cfg.driver_namespace, names=self.names,
            command_timeout_s=self.cfg.command_timeout_s,
            command_controller=self.cfg.command_controller)
        if self.cfg.driver == 'ros2_control':
            return driver_class(self, arm, settings, self.cfg.controller_joints)
        if self.cfg.controller_joints:
            raise ConfigError(f'parameter controller_joints: the {self.cfg.driver} driver fixes '
                              'its own joint order; leave it empty')
        return driver_class(self, arm, settings)

    # ---------------------------------------------------------------- commands
    def _reject(self, topic: str, exc: NoetraError) -> None:
        self.counters['rejected_commands'] += 1
        self.get_logger().error(f'{topic}: command rejected, arm holds: {exc}')

    def _arrived(self, kind: str) -> None:
        if kind == 'gripper':
            self.counters['commands_gripper'] += 1
        if self.cfg.mode == 'lockstep' and self._awaiting:
            self._awaiting.discard(kind)
            if not self._awaiting:
                self._advance()

    def _on_gripper_command(self, msg: Float64MultiArray) -> None:
        topic = 'gripper_position_controller/commands'
        try:
            value = validate_joint_vector(msg.data, 1, f'{topic} data')
            self.world.command_gripper(float(value[0]), self.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived('gripper')

    def _on_reset_topic(self, msg: UInt32) -> None:
        if not self.started:
            # The first reset starts the schedule: its seed is the schedule's first seed.
            self.started = True
            self.schedule.first_seed = int(msg.data)
        else:
            self._pending_seed = int(msg.data)
        if self.cfg.mode == 'lockstep':
            self._maybe_reset()
            self._publish_observation()

    def _on_reset_service(self, request, response):
        self.started = True
        seed = self.schedule.next_seed()
        self._pending_seed = seed if seed is not None else self.schedule.seed + 1
        response.success = True
        response.message = f'resetting with seed {self._pending_seed}'
        if self.cfg.mode == 'lockstep':
            self._maybe_reset()
            self._publish_observation()
        return response

    # ---------------------------------------------------------------- stepping
    def _lockstep_watchdog(self) -> None:
        wall = time.monotonic()
        if not self._awaiting or wall - self._observation_wall <= self.cfg.lockstep_timeout_s:
            return
        if (self._episode_start_wall is not None
                and self._awaiting == set(self.cfg.lockstep_inputs)
                and wall - self._episode_start_wall < self.cfg.lockstep_start_timeout_s):
            # Nobody answered the episode's first observation. At start-up a command source's
            # readers can match the sim's writers seconds after the reset (DDS discovery on a
            # loaded machine), and what was sent before is lost to them; stepping on without
            # them would start the episode late and change it. The same observation again
            # (same stamp, no physics step) leaves the episode as it would have been.
            self.counters['lockstep_resends'] += 1
            self.get_logger().warn(
                f'lockstep: no command from {sorted(self._awaiting)} for the episode\'s first '
                f'observation within {self.cfg.lockstep_timeout_s} s; publishing it again',
                throttle_duration_sec=10.0)
            self._publish_observation(again=True)
            return
        self.counters['lockstep_timeouts'] += 1
        self.get_logger().warn(
            f'lockstep: no command from {sorted(self._awaiting)} within '
            f'{self.cfg.lockstep_timeout_s} s; stepping with the arm holding',
            throttle_duration_sec=10.0)
        self._awaiting.clear()
        self._advance()

    def _advance(self) -> None:
        if not self.started:
            return
        self._episode_start_wall = None
        self.driver.update(self.now)
        self.world.step()
        self.counters['steps'] += 1
        now = self.now
        status = self.world.task_status()
        failure = status.explanation if status.phase == 'failure' else ''
        result = self.schedule.update(now, bool(status.success), failure)
        if result is not None:
            self.pub_success.publish(Bool(data=result.success))
            self.get_logger().info(
                f'episode {result.index} seed {result.seed}: {result.reason} '
                f'after {result.duration_s:.2f} s ({result.instruction!r})')
            if self.schedule.finished:
                done = sum(r.success for r in self.schedule.results)
                self.get_logger().info(f'all {len(self.schedule.results)} episodes done: '
                                       f'{done} succeeded')
        self._maybe_reset()
        self._publish_observation()

    def _maybe_reset(self) -> None:
        now = self.now
        if self._pending_seed is None and not self.schedule.reset_due(now):
            return
        if self._pending_seed is not None:
            seed, self._pending_seed = self._pending_seed, None
            if self.schedule.running:  # an external reset aborts the running episode
                self.schedule.update(now, False, 'aborted by reset')
        else:
            seed = self.schedule.next_seed()
        # The new episode starts one control period after the last published step (when a step
        # ends the episode, `now` is that step's time, which is never published).
        self._time_offset = self._last_published + 1.0 / self.cfg.control_hz
        episode = self.world.reset(seed)
        self.driver.on_reset()
        self._time_offset -= self.world.sim_time
        self.schedule.start(seed, episode.instruction, self.now)
        self._next_camera_time = {cam: self.now for cam in self._next_camera_time}
        self._next_observation = self.now
        self._episode_start_wall = time.monotonic()
        self.pub_instruction.publish(String(data=episode.instruction))
        self.pub_success.publish(Bool(data=False))
        self.get_logger().info(f'episode {self.schedule.index} seed {seed}: '
                               f'{episode.instruction!r}')

    def _publish_status(self, stamp) -> None:
        """Task state, once per step, carrying the step's stamp so listeners can align on it."""
        sched = self.schedule
        if sched.finished:
            state = 'finished'
        elif sched.running or not sched.results:
            state = 'running'
        else:
            state = 'success' if sched.results[-1].success else 'failed'
        last = sched.results[-1] if state != 'running' and sched.results else None
        detail = last.reason if last else ''
        result = ('success' if last.success else 'failed') if last else ''
        # What the episode is, for reports that group results (noetra eval's plots).
        episode = self.world.episode if sched.index >= 0 else None
        values = {'state': state, 'result': result, 'episode': sched.index, 'seed': sched.seed,
                  'instruction': sched.instruction, 'detail': detail,
                  'target_object': episode.target_object if episode else '',
                  'distractors': len(episode.distractors) if episode else 0,
                  'stamp_ns': stamp.sec * 1_000_000_000 + stamp.nanosec,
                  'elapsed_s': f'{last.duration_s if last else sched.elapsed(self.now):.3f}',
                  'episodes_done': len(sched.results),
                  'successes': sum(r.success for r in sched.results)}
        level = DiagnosticStatus.WARN if state == 'failed' else DiagnosticStatus.OK
        self.pub_status.publish(DiagnosticStatus(
            level=level, name='task', message=f'{state}: {detail}' if detail else state,
            hardware_id=self.cfg.robot,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))

    def _publish_observation(self, again: bool = False) -> None:
        """Publish what the world shows now; `again`: the last observation once more, the same
        messages (cameras and task topics included as they were), no schedule advanced."""
        now = self.now
        stamp = seconds_to_stamp(now)
        if self.cfg.publish_clock:
            self.pub_clock.publish(Clock(clock=stamp))
        if not again:
            self._cameras_published = []
            for cam in self.cfg.cameras:
                if now + 1e-9 >= self._next_camera_time[cam.name]:
                    self._next_camera_time[cam.name] += 1.0 / cam.rate_hz
                    if self._next_camera_time[cam.name] <= now:  # never build up a backlog
                        self._next_camera_time[cam.name] = now + 1.0 / cam.rate_hz
                    self._cameras_published.append(cam.name)
            self._task_observation_published = now + 1e-9 >= self._next_observation
            if self._task_observation_published:
                self._next_observation = max(self._next_observation + self._observation_period,
                                             now + 0.5 * self._observation_period)
        for name in self._cameras_published:
            self._publish_camera(name, stamp)
        if self._task_observation_published:
            self._publish_task_observation(now, stamp)
        if self.pub_environment is not None:
            # Every step, with the joint_states' stamp: a recording aligns it by that stamp.
            self.pub_environment.publish(self.EnvironmentState(
                header=Header(stamp=stamp, frame_id='base_link'), names=self.environment_names,
                values=environment_state(self.world, self.cfg.environment_state_cameras
                                         ).tolist()))
        # joint_states goes last: command sources react to it, by then the rest is published.
        self.driver.publish(now, stamp)
        self._last_published = now
        self._observation_wall = time.monotonic()
        if self.cfg.mode == 'lockstep':
            self._awaiting = set(self.cfg.lockstep_inputs)

    def _publish_task_observation(self, now: float, stamp) -> None:
        """Wrench, task poses and status: what the expert and the recorder align by stamp."""
        force_torque = self.world.wrench()
        wrench = WrenchStamped()
        wrench.header.stamp = stamp
        wrench.header.frame_id = 'tool0'
        (wrench.wrench.force.x, wrench.wrench.force.y, wrench.wrench.force.z,
         wrench.wrench.torque.x, wrench.wrench.torque.y, wrench.wrench.torque.z) = (
            float(v) for v in force_torque)
        self.pub_wrench.publish(wrench)
        for pub, pose in ((self.pub_target, self.world.target_object_pose()),
                          (self.pub_place, self.world.place_pose())):
            pub.publish(pose_msg(pose, stamp))
        self._publish_status(stamp)

    def _publish_camera(self, name: str, stamp) -> None:
        depth_mm = None
        if name in self.pub_depths:
            # One rendering for both, so the depth IS the colour image's capture.
            pixels, depth_mm = render_colour_and_depth(self.world, name)
        else:
            pixels = self.world.render(name)
        info = self.world.camera_info(name)
        frame = info.frame_id
        k = info.k
        camera_info = camera_info_msg(info.width, info.height, k[0, 0], k[1, 1], k[0, 2],
                                      k[1, 2], stamp, frame)
        self.pub_images[name].publish(numpy_to_image(pixels, 'rgb8', stamp, frame))
        self.pub_infos[name].publish(camera_info)
        if depth_mm is not None:
            # Registered to the colour camera: its frame, its intrinsics, its stamp.
            self.pub_depths[name].publish(numpy_to_image(depth_mm, '16UC1', stamp, frame))
            self.pub_depth_infos[name].publish(camera_info)

    def _publish_diagnostics(self) -> None:
        wall = time.monotonic() - self._wall_started
        rtf = self.now / wall if wall > 0 else 0.0
        values = dict(self.counters, **self.driver.diagnostics(), driver=self.cfg.driver,
                      sim_time=f'{self.now:.2f}',
                      real_time_factor=f'{rtf:.2f}', mode=self.cfg.mode)
        rejected = self.counters['rejected_commands'] + self.driver.counters.get(
            'rejected_commands', 0)
        level = DiagnosticStatus.WARN if rejected else DiagnosticStatus.OK
        message = 'running' if self.started else WAITING_FOR_RESET
        status = DiagnosticStatus(level=level, name=f'{self.get_name()}: simulation',
                                  message=message, hardware_id=self.cfg.robot,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    def destroy_node(self) -> None:
        self.world.close()
        super().destroy_node()


def pose_msg(pose, stamp, frame_id: str = 'base_link') -> PoseStamped:
    """PoseStamped from a (position xyz, quaternion xyzw) pair."""
    position, quaternion = pose
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
     msg.pose.orientation.w) = (float(v) for v in quaternion)
    return msg


def main(args=None) -> None:
    run_node(SimNode, 'sim', args)


if __name__ == '__main__':
    main()
