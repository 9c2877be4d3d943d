"""sim_node: a PyBullet arm cell that speaks the topics of a real ros2_control driver.

Publishes joint_states, per-camera image_raw + camera_info, the wrist wrench, /clock, the task's
instruction / status / poses and /diagnostics. Takes forward position / velocity commands,
JointTrajectory goals and gripper commands. All physics lives in noetra_ros.core.sim; this node
only converts messages and keeps time.

Modes:
- realtime: steps on a wall timer, paced by real_time_factor (0 = as fast as possible).
- lockstep: publishes an observation, then waits until every command source listed in
  `lockstep_inputs` has answered before stepping, so an episode is the same for a seed
  whatever the CPU load (a source that stays silent for lockstep_timeout_s is skipped, logged).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, WrenchStamped
import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String, UInt32
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.commands import controller_order, validate_joint_vector
from noetra_ros.core.episodes import (DEFAULT_EPISODE_TIMEOUT_S, DEFAULT_RESET_PAUSE_S,
                                      EpisodeSchedule)
from noetra_ros.core.errors import CommandError, ConfigError, InputError, NoetraError
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.sim.world import SimWorld, WorldConfig, default_cameras
from noetra_ros.core.trajectory import JointTrajectory as CoreTrajectory
from noetra_ros.qos import CLOCK, LATCHED, RELIABLE
from noetra_ros.ros_conversions import camera_info_msg, numpy_to_image, seconds_to_stamp
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

MODES = ('realtime', 'lockstep')
COMMAND_KINDS = ('arm', 'gripper')

PARAMETERS = {
    'robot': ('fanuc_lrmate200id', 'robot model name (urdf/<robot>_gripper.urdf)'),
    'mode': ('realtime', f'stepping mode: one of {MODES}'),
    'real_time_factor': (1.0, 'realtime mode: sim seconds per wall second (0 = unpaced)'),
    'control_hz': (20, 'control period rate; joint_states and commands run at this rate'),
    'physics_hz': (240, 'physics rate; an integer multiple of control_hz'),
    'command_timeout_s': (0.5, 'velocity commands older than this are replaced by a hold'),
    'controller_joints': ([], 'joint order of the forward controllers, in the driver\'s names '
                              '([] = URDF order)'),
    'driver_joint_names': ('urdf', f'joint names the simulated driver uses: one of {SCHEMES} '
                                   '(fanuc: J1..Jn; motoros2: joint_1..n); core/joint_names.py'),
    'joint_name_prefix': ('', 'prefix of the arm joint names (fanuc_driver\'s prefix, '
                              'MotoROS2 group_<g>/)'),
    'lockstep_inputs': (['arm', 'gripper'], 'lockstep: command kinds to wait for each step'),
    'lockstep_timeout_s': (2.0, 'lockstep: wall seconds to wait for a silent source'),
    'cameras': (['scene_camera', 'wrist_camera'], 'cameras to render and publish'),
    'camera_width': (160, 'default image width (per camera: <camera>.width)'),
    'camera_height': (120, 'default image height (per camera: <camera>.height)'),
    'camera_rate_hz': (10.0, 'default camera rate (per camera: <camera>.rate_hz)'),
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
class SimNodeConfig:
    robot: str
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
    cameras: tuple[CameraStream, ...]
    episodes: int
    first_seed: int
    episode_timeout_s: float
    reset_pause_s: float
    publish_clock: bool
    wait_for_reset: bool

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f'parameter mode={self.mode!r}: must be one of {MODES}')
        if self.real_time_factor < 0 or not math.isfinite(self.real_time_factor):
            raise ConfigError(f'parameter real_time_factor={self.real_time_factor}: must be >= 0')
        unknown = set(self.lockstep_inputs) - set(COMMAND_KINDS)
        if unknown:
            raise ConfigError(f'parameter lockstep_inputs has {sorted(unknown)}; '
                              f'allowed: {COMMAND_KINDS}')
        if self.lockstep_timeout_s <= 0:
            raise ConfigError(f'parameter lockstep_timeout_s={self.lockstep_timeout_s}: '
                              f'must be > 0')
        for cam in self.cameras:
            if cam.width <= 0 or cam.height <= 0 or cam.rate_hz <= 0:
                raise ConfigError(f'camera {cam.name!r}: width, height and rate_hz must be > 0, '
                                  f'got {cam.width}x{cam.height} at {cam.rate_hz} Hz')


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
    return SimNodeConfig(
        robot=p['robot'], mode=p['mode'], real_time_factor=float(p['real_time_factor']),
        control_hz=int(p['control_hz']), physics_hz=int(p['physics_hz']),
        command_timeout_s=float(p['command_timeout_s']),
        controller_joints=tuple(p['controller_joints']),
        driver_joint_names=str(p['driver_joint_names']),
        joint_name_prefix=str(p['joint_name_prefix']),
        lockstep_inputs=tuple(p['lockstep_inputs']),
        lockstep_timeout_s=float(p['lockstep_timeout_s']), cameras=tuple(cameras),
        episodes=int(p['episodes']), first_seed=int(p['first_seed']),
        episode_timeout_s=float(p['episode_timeout_s']), reset_pause_s=float(p['reset_pause_s']),
        publish_clock=bool(p['publish_clock']), wait_for_reset=bool(p['wait_for_reset']))


def _build_world(cfg: SimNodeConfig) -> SimWorld:
    defaults = {cam.name: cam for cam in default_cameras()}
    specs = []
    for stream in cfg.cameras:
        if stream.name not in defaults:
            raise ConfigError(f'parameter cameras: unknown camera {stream.name!r}; '
                              f'the cell has {sorted(defaults)}')
        specs.append(replace(defaults[stream.name], width=stream.width, height=stream.height))
    return SimWorld(WorldConfig(robot=cfg.robot, physics_hz=cfg.physics_hz,
                                control_hz=cfg.control_hz, cameras=tuple(specs),
                                command_timeout_s=cfg.command_timeout_s,
                                episode_timeout_s=cfg.episode_timeout_s))


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__('sim')
        self.cfg = _read_config(self)
        self.world = _build_world(self.cfg)
        self.arm_joints = list(self.world.joint_names)
        self.all_joints = self.arm_joints + list(self.world.gripper_joint_names)
        # Names as the emulated driver spells them: published in joint_states, accepted in
        # controller_joints and in trajectories; the world keeps the description's.
        self.names = JointNameMap.for_scheme(self.arm_joints, self.cfg.driver_joint_names,
                                             self.cfg.joint_name_prefix,
                                             keep=self.world.gripper_joint_names)
        self.published_joints = self.names.to_driver(self.all_joints)
        try:
            requested = self.names.from_driver(self.cfg.controller_joints,
                                               'parameter controller_joints')
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        order, to_controller = controller_order(requested, self.arm_joints)
        self.controller_joints = self.names.to_driver(order)
        # Maps a vector in controller order onto the world's (URDF) order.
        self._to_world = np.argsort(to_controller)
        self.schedule = EpisodeSchedule(self.cfg.episodes, self.cfg.first_seed,
                                        self.cfg.episode_timeout_s, self.cfg.reset_pause_s)
        self.counters = {'steps': 0, 'rejected_commands': 0, 'lockstep_timeouts': 0,
                         'commands_arm': 0, 'commands_gripper': 0}
        self._next_camera_time = {cam.name: 0.0 for cam in self.cfg.cameras}
        self._awaiting: set[str] = set()
        self._observation_wall = time.monotonic()
        self._wall_started = time.monotonic()
        self._pending_seed: int | None = None
        # SimWorld restarts its clock at every reset; the ROS clock must never run backwards, so
        # the node adds the time of all previous episodes.
        self._time_offset = 0.0
        self._last_published = 0.0

        self.pub_joints = self.create_publisher(JointState, 'joint_states', RELIABLE)
        self.pub_wrench = self.create_publisher(
            WrenchStamped, 'force_torque_sensor_broadcaster/wrench', RELIABLE)
        self.pub_clock = self.create_publisher(Clock, '/clock', CLOCK)
        self.pub_images = {c.name: self.create_publisher(Image, f'{c.name}/image_raw', RELIABLE)
                           for c in self.cfg.cameras}
        self.pub_infos = {c.name: self.create_publisher(CameraInfo, f'{c.name}/camera_info',
                                                        RELIABLE) for c in self.cfg.cameras}
        self.pub_instruction = self.create_publisher(String, 'task/instruction', LATCHED)
        self.pub_status = self.create_publisher(DiagnosticStatus, 'task/status', RELIABLE)
        self.pub_success = self.create_publisher(Bool, 'task/success', LATCHED)
        self.pub_target = self.create_publisher(PoseStamped, 'task/target_pose', RELIABLE)
        self.pub_place = self.create_publisher(PoseStamped, 'task/place_pose', RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)

        self.create_subscription(Float64MultiArray, 'forward_position_controller/commands',
                                 self._on_position_command, RELIABLE)
        self.create_subscription(Float64MultiArray, 'forward_velocity_controller/commands',
                                 self._on_velocity_command, RELIABLE)
        self.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                                 self._on_trajectory, RELIABLE)
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
            f'sim ready: robot={self.cfg.robot} mode={self.cfg.mode} '
            f'control={self.cfg.control_hz} Hz physics={self.cfg.physics_hz} Hz '
            f'cameras={[c.name for c in self.cfg.cameras]} joints={self.controller_joints}')
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

    # ---------------------------------------------------------------- commands
    def _reject(self, topic: str, exc: NoetraError) -> None:
        self.counters['rejected_commands'] += 1
        self.get_logger().error(f'{topic}: command rejected, arm holds: {exc}')

    def _arrived(self, kind: str) -> None:
        self.counters[f'commands_{kind}'] += 1
        if self.cfg.mode == 'lockstep' and self._awaiting:
            self._awaiting.discard(kind)
            if not self._awaiting:
                self._advance()

    def _on_position_command(self, msg: Float64MultiArray) -> None:
        topic = 'forward_position_controller/commands'
        try:
            q = validate_joint_vector(msg.data, len(self.arm_joints), f'{topic} data')
            self.world.command_positions(q[self._to_world], self.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived('arm')

    def _on_velocity_command(self, msg: Float64MultiArray) -> None:
        topic = 'forward_velocity_controller/commands'
        try:
            qd = validate_joint_vector(msg.data, len(self.arm_joints), f'{topic} data')
            self.world.command_velocities(qd[self._to_world], self.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived('arm')

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        topic = 'joint_trajectory_controller/joint_trajectory'
        try:
            msg.joint_names = self.names.from_driver(msg.joint_names, f'{topic} joint_names')
            traj = trajectory_from_msg(msg, self.arm_joints)
            self.world.command_trajectory(traj, self.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived('arm')

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
        waited = time.monotonic() - self._observation_wall
        if self._awaiting and waited > self.cfg.lockstep_timeout_s:
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
        self._time_offset -= self.world.sim_time
        self.schedule.start(seed, episode.instruction, self.now)
        self._next_camera_time = {cam: self.now for cam in self._next_camera_time}
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
        values = {'state': state, 'result': result, 'episode': sched.index, 'seed': sched.seed,
                  'instruction': sched.instruction, 'detail': detail,
                  'stamp_ns': stamp.sec * 1_000_000_000 + stamp.nanosec,
                  'elapsed_s': f'{last.duration_s if last else sched.elapsed(self.now):.3f}',
                  'episodes_done': len(sched.results),
                  'successes': sum(r.success for r in sched.results)}
        level = DiagnosticStatus.WARN if state == 'failed' else DiagnosticStatus.OK
        self.pub_status.publish(DiagnosticStatus(
            level=level, name='task', message=f'{state}: {detail}' if detail else state,
            hardware_id=self.cfg.robot,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))

    def _publish_observation(self) -> None:
        now = self.now
        stamp = seconds_to_stamp(now)
        if self.cfg.publish_clock:
            self.pub_clock.publish(Clock(clock=stamp))
        for cam in self.cfg.cameras:
            if now + 1e-9 >= self._next_camera_time[cam.name]:
                self._next_camera_time[cam.name] += 1.0 / cam.rate_hz
                if self._next_camera_time[cam.name] <= now:  # never build up a backlog
                    self._next_camera_time[cam.name] = now + 1.0 / cam.rate_hz
                self._publish_camera(cam.name, stamp)
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
        positions, velocities, efforts = self.world.joint_state()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = self.published_joints
        joints.position = [float(v) for v in positions]
        joints.velocity = [float(v) for v in velocities]
        joints.effort = [float(v) for v in efforts]
        # joint_states goes last: command sources react to it, by then the rest is published.
        self.pub_joints.publish(joints)
        self._last_published = now
        self._observation_wall = time.monotonic()
        if self.cfg.mode == 'lockstep':
            self._awaiting = set(self.cfg.lockstep_inputs)

    def _publish_camera(self, name: str, stamp) -> None:
        pixels = self.world.render(name)
        info = self.world.camera_info(name)
        frame = info.frame_id
        k = info.k
        self.pub_images[name].publish(numpy_to_image(pixels, 'rgb8', stamp, frame))
        self.pub_infos[name].publish(camera_info_msg(info.width, info.height, k[0, 0], k[1, 1],
                                                     k[0, 2], k[1, 2], stamp, frame))

    def _publish_diagnostics(self) -> None:
        wall = time.monotonic() - self._wall_started
        rtf = self.now / wall if wall > 0 else 0.0
        values = dict(self.counters, sim_time=f'{self.now:.2f}',
                      real_time_factor=f'{rtf:.2f}', mode=self.cfg.mode)
        level = DiagnosticStatus.WARN if self.counters['rejected_commands'] else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=f'{self.get_name()}: simulation',
                                  message='running', hardware_id=self.cfg.robot,
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


def trajectory_from_msg(msg: JointTrajectory, joint_order: list[str]) -> CoreTrajectory:
    """Core trajectory in `joint_order` from a JointTrajectory message (validated by the core)."""
    if not msg.points:
        raise CommandError('trajectory has no points')
    count = len(msg.joint_names)

    def column(field_name: str):
        rows = [list(getattr(point, field_name)) for point in msg.points]
        if all(not r for r in rows):
            return None
        for k, row in enumerate(rows):
            if len(row) != count:
                raise CommandError(f'points[{k}].{field_name} has {len(row)} values, expected '
                                   f'{count} (one per joint name)')
        return np.array(rows, dtype=float)

    positions = column('positions')
    if positions is None:
        raise CommandError('trajectory points carry no positions')
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    return CoreTrajectory(joint_names=tuple(msg.joint_names), times_from_start=np.array(times),
                          positions=positions, velocities=column('velocities'),
                          accelerations=column('accelerations')).reordered(joint_order)


def main(args=None) -> None:
    run_node(SimNode, 'sim', args)


if __name__ == '__main__':
    main()
