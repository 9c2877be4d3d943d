"""The monitor that `noetra run` adds to a cell: rates, latency, episode results, scene video
(captioned by core/video_overlay.py), the arm's command trace of the first failed episode."""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
import json
import math
from pathlib import Path
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import WrenchStamped
import numpy as np
import rclpy
from rclpy.experimental import EventsExecutor
from rclpy.node import Node, NodeNameNonExistentError
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String, UInt32
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.drivers.profiles import PROFILES
from noetra_ros.core.audit import PROVENANCE_TOPIC
from noetra_ros.core.episodes import WAITING_FOR_RESET
from noetra_ros.core.errors import InputError
from noetra_ros.core.images import to_bgr
from noetra_ros.core.robots import GRIPPER_JOINT_NAMES
from noetra_ros.core.shadow import REPORT_TOPIC as SHADOW_REPORT_TOPIC
from noetra_ros.core.stats import percentiles
from noetra_ros.core.video_overlay import CaptionTracker, draw_caption
from noetra_ros.qos import MONITOR, RELIABLE, SENSOR_DATA
from noetra_ros.ros_conversions import image_to_numpy, stamp_to_seconds

# Deep queues: the monitor counts every message, so it must not lose any while it is busy.
LEVEL_NAMES = {DiagnosticStatus.OK: 'OK', DiagnosticStatus.WARN: 'WARN',
               DiagnosticStatus.ERROR: 'ERROR', DiagnosticStatus.STALE: 'STALE'}
ARM_COMMAND_TOPICS = {
    'forward_position_controller/commands': Float64MultiArray,
    'forward_velocity_controller/commands': Float64MultiArray,
    'joint_trajectory_controller/joint_trajectory': JointTrajectory,
}
# Topics whose commands are joint positions (the trace compares them with joint_states).
POSITION_COMMAND_TOPICS = ('forward_position_controller/commands',
                           'joint_trajectory_controller/joint_trajectory')
# A trace keeps one sample per TRACE_PERIOD_S of sim time and series, so an episode on a 500 Hz
# driver costs what a 100 Hz one does, and at most TRACE_MAX_SAMPLES (the newest).
TRACE_PERIOD_S = 0.01
TRACE_MAX_SAMPLES = 10_000
# After the last episode, how long (wall) the monitor waits for shadow_node's episode reports
# (shadow_node itself waits up to its report_wait_s, 2 s, for late answers).
SHADOW_REPORT_WAIT_S = 10.0
# A sim whose diagnostics (1 Hz) still say it waits for task/reset this long after the reset was
# sent did not get it (a report generated before the reset arrived is long in by then).
RESET_RESEND_AFTER_S = 3.0


class _Rate:
    """Message count over the span this topic was seen, in wall time and in sim time."""

    def __init__(self) -> None:
        self.count = 0
        self.first_wall = self.last_wall = math.nan
        self.first_sim = self.last_sim = math.nan

    def tick(self, sim_time: float) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first_wall, self.first_sim = now, sim_time
        self.count += 1
        self.last_wall, self.last_sim = now, sim_time

    def rates(self) -> dict:
        wall_span = self.last_wall - self.first_wall
        sim_span = self.last_sim - self.first_sim
        return {'count': self.count,
                'wall_hz': (self.count - 1) / wall_span if wall_span > 0 else 0.0,
                'sim_hz': (self.count - 1) / sim_span if sim_span > 0 else 0.0}


class _Series:
    """(sim time, arm positions) samples of one signal, thinned and bounded."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, list[float]]] = deque(maxlen=TRACE_MAX_SAMPLES)

    def add(self, t: float, positions: list[float]) -> None:
        if not self.samples or t - self.samples[-1][0] >= TRACE_PERIOD_S - 1e-9:
            self.samples.append((t, positions))

    def as_dict(self) -> dict:
        return {'t_s': [round(t, 4) for t, _ in self.samples],
                'positions': [[round(v, 5) for v in q] for _, q in self.samples]}


class EpisodeTraces:
    """Commanded and measured arm positions over the running episode. The first failed
    episode's are kept for the report (`noetra eval` plots them); every other episode's are
    dropped when the next one starts, so memory stays bounded over any number of episodes.

    `joints`: the arm joints in the order of a position command without names (safety's
    controller_joints); empty: the arm joints of the first joint_states, in its order.
    """

    def __init__(self, joints: Sequence[str] = ()) -> None:
        self.joints = list(joints)
        self.episode = -1
        self.recording = False
        self.commanded, self.measured = _Series(), _Series()
        self.first_failed: dict | None = None

    def start(self, episode: int) -> None:
        if episode != self.episode:
            self.episode, self.recording = episode, True
            self.commanded, self.measured = _Series(), _Series()

    def finish(self, result: dict) -> None:
        """The result of an episode (the monitor's episode entry) has arrived."""
        if result['episode'] != self.episode:
            return
        self.recording = False
        if not result['success'] and self.first_failed is None:
            self.first_failed = {
                'episode': result['episode'], 'seed': result['seed'], 'reason': result['reason'],
                'joints': list(self.joints), 'commanded': self.commanded.as_dict(),
                'measured': self.measured.as_dict()}

    def measure(self, t: float, names: Sequence[str], positions: Sequence[float]) -> None:
        if not self.joints:
            self.joints = [n for n in names if n not in GRIPPER_JOINT_NAMES]
        if self.recording:
            self.measured.add(t, self._arm_order(names, positions))

    def command(self, t: float, positions: Sequence[float],
                names: Sequence[str] | None = None) -> None:
        """A position command; without names it is in `joints` order (Float64MultiArray)."""
        if self.recording and self.joints:
            self.commanded.add(t, self._arm_order(names or self.joints, positions))

    def _arm_order(self, names: Sequence[str], positions: Sequence[float]) -> list[float]:
        by_name = dict(zip(names, positions))
        return [float(by_name.get(joint, math.nan)) for joint in self.joints]


def _controller_joints(cell) -> list[str]:
    """The order of safety's position commands: its controller_joints parameter, when set."""
    safety = next((n for n in cell.nodes if n.executable == 'safety_node'), None)
    return [str(j) for j in safety.parameters.get('controller_joints', [])] if safety else []


class MonitorNode(Node):
    def __init__(self, cell, video_path: Path | None, video_fps: float,
                 quiet: bool = False) -> None:
        super().__init__('noetra_monitor')
        self.quiet = quiet
        sim = cell.node('sim').parameters
        self.cameras = list(sim.get('cameras', ['scene_camera', 'wrist_camera']))
        self.rates: dict[str, _Rate] = {}
        self.sim_time = 0.0
        self.sim_time_first = math.nan
        self.status: dict[str, str] = {}
        self.sim_waiting_reported = -math.inf  # monotonic time of the sim's last 'waiting'
        self.episodes: dict[int, dict] = {}
        self.latencies_ms: list[float] = []
        self.caption = CaptionTracker(cell.name)
        self.traces = EpisodeTraces(_controller_joints(cell))
        self.rejected = 0
        self.health: dict[str, dict] = {}
        self._last_joint_state_wall = math.nan
        self._awaiting_command = False
        self.video_path = video_path
        self.video_fps = video_fps
        self._writer = None
        self.video_frames = 0
        self.bad_frames = 0

        def watch(topic, msg_type, qos=MONITOR, callback=None):
            self.rates[topic] = _Rate()

            def on_msg(msg, topic=topic):
                self.rates[topic].tick(self.sim_time)
                if callback is not None:
                    callback(msg)
            self.create_subscription(msg_type, topic, on_msg, qos)

        # Read joint_states as the driver publishes it: a reliable reader never matches
        # MotoROS2's best-effort writer.
        driver = PROFILES.get(str(sim.get('driver', 'ros2_control')), PROFILES['ros2_control'])
        watch('joint_states', JointState,
              SENSOR_DATA if driver.joint_states_qos == 'sensor_data' else MONITOR,
              callback=self._on_joint_state)
        watch('/clock', Clock, callback=self._on_clock)
        watch('force_torque_sensor_broadcaster/wrench', WrenchStamped)
        for cam in self.cameras:
            callback = self._on_scene_image if cam == 'scene_camera' else None
            watch(f'{cam}/image_raw', Image, SENSOR_DATA, callback)
            watch(f'{cam}/camera_info', CameraInfo, SENSOR_DATA)
        for topic, msg_type in ARM_COMMAND_TOPICS.items():
            watch(topic, msg_type,
                  callback=lambda msg, topic=topic: self._on_arm_command(topic, msg))
        watch('gripper_position_controller/commands', Float64MultiArray)
        watch('task/status', DiagnosticStatus, callback=self._on_status)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, MONITOR)
        # Shadow mode (docs/SHADOW.md): shadow_node's summary of each episode, by episode.
        self.shadow: dict[int, dict] = {}
        self.create_subscription(String, SHADOW_REPORT_TOPIC, self._on_shadow_report, MONITOR)

    def _on_clock(self, msg: Clock) -> None:
        self.sim_time = stamp_to_seconds(msg.clock)
        if math.isnan(self.sim_time_first):
            self.sim_time_first = self.sim_time

    def _on_joint_state(self, msg: JointState) -> None:
        self._last_joint_state_wall = time.monotonic()
        self._awaiting_command = True
        self.traces.measure(stamp_to_seconds(msg.header.stamp), msg.name, msg.position)

    def _on_arm_command(self, topic: str, msg) -> None:
        if self._awaiting_command:
            self.latencies_ms.append(1e3 * (time.monotonic() - self._last_joint_state_wall))
            self._awaiting_command = False
        if topic not in POSITION_COMMAND_TOPICS:
            return
        if isinstance(msg, JointTrajectory):
            if msg.points:  # safety streams one point; its last one is the target
                self.traces.command(self.sim_time, msg.points[-1].positions, msg.joint_names)
        else:
            self.traces.command(self.sim_time, msg.data)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        self.status = values
        self.caption.on_status(values)
        episode = int(values.get('episode', -1))
        if episode >= 0 and values.get('state') == 'running':
            self.traces.start(episode)
        if episode >= 0 and values.get('result') and episode not in self.episodes:
            success = values['result'] == 'success'
            self.episodes[episode] = {
                'episode': episode, 'seed': int(values['seed']),
                'instruction': values.get('instruction', ''), 'success': success,
                'reason': values.get('detail', ''), 'duration_s': float(values['elapsed_s']),
                'target_object': values.get('target_object', ''),
                'distractors': int(values.get('distractors', -1))}
            self.traces.finish(self.episodes[episode])
            if not self.quiet:
                outcome = 'success' if success else f'FAILED ({values.get("detail", "")})'
                print(f'  episode {episode} seed {values["seed"]}: {outcome} in '
                      f'{float(values["elapsed_s"]):.2f} s sim - {values.get("instruction", "")}',
                      flush=True)

    def _on_shadow_report(self, msg: String) -> None:
        try:
            report = json.loads(msg.data)
            self.shadow[int(report['episode'])] = report
        except (ValueError, KeyError, TypeError) as exc:
            print(f'  {SHADOW_REPORT_TOPIC}: unreadable report ignored ({exc!r})', flush=True)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.message == WAITING_FOR_RESET:
                self.sim_waiting_reported = time.monotonic()
            self.health[status.name] = {
                'level': LEVEL_NAMES.get(status.level, str(status.level)),
                'message': status.message,
                'values': {kv.key: kv.value for kv in status.values}}
            for kv in status.values:
                if kv.key == 'rejected_commands':
                    self.rejected = max(self.rejected, int(kv.value))

    def _on_scene_image(self, msg: Image) -> None:
        if self.video_path is None:
            return
        import cv2
        try:
            pixels = image_to_numpy(msg)
        except InputError:
            self.bad_frames += 1
            return
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*'mp4v'),
                                           self.video_fps, (msg.width, msg.height))
        caption = self.caption.caption(stamp_to_seconds(msg.header.stamp))
        frame = draw_caption(to_bgr(pixels, msg.encoding), caption)
        self._writer.write(np.ascontiguousarray(frame))
        self.video_frames += 1

    def close_video(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def nodes_already_running(names: Sequence[str], wait_s: float = 1.5) -> list[str]:
    """Which of `names` already run on this ROS_DOMAIN_ID (looked for for `wait_s`, DDS
    discovery's time to show them). A second cell on the same domain would mix its joint states,
    clock and commands with this one's (seen: a run's supervisor holding on "clock backwards"
    and a recorder writing the other cell's topics), so `noetra run` refuses to start then."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node('noetra_domain_check', context=context)
        try:
            found: set[str] = set()
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                newly = set(node.get_node_names()) & set(names)
                if newly and not found:
                    # One is enough to refuse; a short grace collects the rest for the message
                    # instead of waiting out a budget sized for a loaded machine's discovery.
                    deadline = min(deadline, time.monotonic() + 0.5)
                found |= newly
                time.sleep(0.1)
            return sorted(found)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def _has_loaded_model(node, spec) -> bool:
    """Whether policy_node `spec` publishes its provenance (after its model is loaded)."""
    try:
        topics = node.get_publisher_names_and_types_by_node(spec.name, spec.namespace or '/')
    except NodeNameNonExistentError:
        return False  # not discovered yet
    return any(topic.endswith(PROVENANCE_TOPIC) for topic, _types in topics)


def _start_when_discovered(node, executor, cell, procs, reset_pub, first_seed: int,
                           timeout_s: float = 60.0) -> str:
    """Wait until every node of the cell is up and the monitor sees their publishers, then
    start the sim's schedule with task/reset. Counting starts with the first step, so the
    summary's rates and latencies are not cut short by DDS discovery."""
    names = {spec.name for spec in cell.nodes}
    deadline = time.monotonic() + timeout_s
    waiting_for = ['DDS discovery']
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        dead = procs.dead()
        if dead:
            name, code = next(iter(dead.items()))
            return f'node {name!r} exited with code {code}; last log lines:\n{procs.tail(name)}'
        up = set(node.get_node_names())
        # MotoROS2 takes commands as service calls (queue_traj_point), not on a topic.
        commanded = (cell.driver == 'motoros2'
                     or any(node.count_publishers(t) for t in ARM_COMMAND_TOPICS))
        # A recorder must hear the first step: wait for its joint_states subscription.
        recording = 'recorder' not in names or any(
            info.node_name == 'recorder'
            for info in node.get_subscriptions_info_by_topic('joint_states'))
        # The sim must be among the readers this publisher has matched: the recorder and the
        # Foxglove bridge subscribe to task/reset too, and a reset published before the sim's
        # reader matched is lost (volatile durability), leaving the cell waiting forever.
        readers = node.get_subscriptions_info_by_topic('task/reset')
        # Every policy has loaded and warmed up its model (it publishes its provenance only
        # then): in a shadow cell the expert drives, so `commanded` does not wait for it.
        policies_ready = all(_has_loaded_model(node, spec) for spec in cell.nodes
                             if spec.executable == 'policy_node')
        reset_matched = any(info.node_name == 'sim' for info in readers) and \
            reset_pub.get_subscription_count() >= len(readers)
        waiting_for = [what for what, done in (
            (f'nodes {sorted(names - up)} to come up', names <= up),
            ('a publisher of the arm commands', commanded),
            ('a publisher of joint_states', node.count_publishers('joint_states')),
            ("the sim's task/reset subscription to match", reset_matched),
            ("the recorder's joint_states subscription", recording),
            ('every policy_node to load its model', policies_ready)) if not done]
        if not waiting_for:
            time.sleep(0.3)  # let endpoint matching settle after discovery
            reset_pub.publish(UInt32(data=first_seed))
            return ''
    return f'the cell did not get ready within {timeout_s:.0f} s: still waiting for ' \
           f'{"; ".join(waiting_for)}'


def run_monitor(cell, procs, out_dir: Path, video: bool, wall_timeout_s: float,
                quiet: bool = False) -> dict:
    """Spin the monitor until the sim reports all episodes finished (or a node dies)."""
    sim = cell.node('sim').parameters
    expected = int(sim.get('episodes', 0))
    video_path = out_dir / 'scene_camera.mp4' if video and 'scene_camera' in sim.get(
        'cameras', ['scene_camera']) else None
    # No rclpy signal handlers: they would shut the context down under a running callback.
    # Ctrl-C (and SIGTERM, see cli.main) arrive as KeyboardInterrupt and unwind through the
    # `finally` below, which destroys the node while the context is still valid.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    # The events executor handles a callback for a fraction of what the wait-set executor costs,
    # so one process can count a whole cell's traffic.
    executor = EventsExecutor()
    fps = float(sim.get('scene_camera', {}).get('rate_hz', sim.get('camera_rate_hz', 10.0)))
    node = MonitorNode(cell, video_path, fps, quiet)
    executor.add_node(node)
    error = ''
    start = time.monotonic()
    try:
        reset_pub = node.create_publisher(UInt32, 'task/reset', RELIABLE)
        first_seed = int(sim.get('first_seed', 0))
        error = _start_when_discovered(node, executor, cell, procs, reset_pub, first_seed)
        start = reset_sent = time.monotonic()
        while not error:
            executor.spin_once(timeout_sec=0.1)
            if node.sim_waiting_reported > reset_sent + RESET_RESEND_AFTER_S:
                # The sim still reports waiting well after the reset went out: it was lost.
                print(f'noetra: the sim did not get task/reset within {RESET_RESEND_AFTER_S} s; '
                      'sending it again', flush=True)
                reset_pub.publish(UInt32(data=first_seed))
                reset_sent = time.monotonic()
            if node.status.get('state') == 'finished' or (
                    expected and len(node.episodes) >= expected):
                break
            dead = procs.dead()
            if dead:
                name, code = next(iter(dead.items()))
                error = (f'node {name!r} exited with code {code}; last log lines:\n'
                         f'{procs.tail(name)}')
                break
            if time.monotonic() - start > wall_timeout_s:
                error = f'wall-clock limit of {wall_timeout_s:.0f} s reached'
                break
        wall = time.monotonic() - start
        drain_until = time.monotonic() + 1.0
        # shadow_node reports an episode once the shadow policy's and the judge's last answers
        # are in (they may lag the driving controller): wait for every finished episode's.
        shadow_until = drain_until + SHADOW_REPORT_WAIT_S if any(
            n.executable == 'shadow_node' for n in cell.nodes) else 0.0
        while time.monotonic() < drain_until or (
                time.monotonic() < shadow_until and not set(node.episodes) <= set(node.shadow)):
            executor.spin_once(timeout_sec=0.05)
        node.close_video()
        sim_span = node.sim_time - (0.0 if math.isnan(node.sim_time_first)
                                    else node.sim_time_first)
        topics = {topic: rate.rates() for topic, rate in node.rates.items() if rate.count}
        # The command source: neither the sim nor the transform publisher drive the arm.
        controller = next((n.name for n in cell.nodes
                           if n.executable not in ('sim_node', 'state_publisher_node')), 'none')
        return {
            'cell': {'name': cell.name, 'robot': cell.robot, 'sector': cell.sector,
                     'description': cell.description},
            'controller': controller, 'mode': sim.get('mode', 'realtime'),
            'episodes': [node.episodes[k] for k in sorted(node.episodes)],
            'wall_s': wall, 'sim_s': sim_span,
            'real_time_factor': sim_span / wall if wall > 0 else 0.0,
            'topics': topics, 'command_latency_ms': percentiles(node.latencies_ms),
            'command_latency_samples_ms': [round(v, 3) for v in node.latencies_ms],
            'failed_episode_trace': node.traces.first_failed,
            'rejected_commands': node.rejected, 'health': node.health,
            'shadow': [node.shadow[k] for k in sorted(node.shadow)],
            'video': str(video_path) if video_path and node.video_frames else '',
            'video_frames': node.video_frames, 'error': error}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
