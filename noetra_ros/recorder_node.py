"""recorder_node: every topic of the cell into rosbag2 bags (MCAP storage), one bag per episode.

Started by `noetra run --record`, the launch files' `record:=true`, or alone
(`python -m noetra_ros.recorder_node --ros-args -p output_dir:=runs/x -p cell:=my_cell`).
What a bag holds and how it is named: core/recording.py and docs/RECORDING.md.

- **Topics**: every topic the graph shows (discovered every `discovery_period_s`; `topics`
  narrows it to names / patterns, `exclude` leaves some out), each subscribed `raw=True` so the
  CDR bytes rclpy receives are written as they are, with a QoS that hears every publisher
  (rosbag2's adaptive rule: core/recording.subscription_qos).
- **Images**: `image_format: raw` writes sensor_msgs/Image as received; `jpeg` writes each 8-bit
  colour / mono Image as the sensor_msgs/CompressedImage compressed_image_transport would
  publish on `<topic>/compressed` (depth images stay raw: JPEG cannot hold them).
- **Episodes** (`episodes`): `task_status` starts a bag when the sim's task/status names a new
  episode and fills its metadata (seed, instruction, result, reason, stamps) from it; `run`
  records one bag per run (a real cell), split on request by the `recorder/split` service
  (std_srvs/Trigger); `auto` (default) picks `task_status` if task/status has a publisher after
  `startup_wait_s`, else `run`. Topics arrive independently, so a stamped message waits for
  the task/status of its step before it is written, and goes to the bag its stamp belongs to
  (the previous bag stays open `late_message_grace_s` for late ones).
- **Disk**: before the disk is full (`min_free_bytes`) or a byte budget is spent
  (`max_run_bytes`, which behaves like a disk of that size) the bag is finished and closed, an
  error is logged, and the node keeps running without recording. It never publishes to the
  control path, so the robot is not affected.
"""
from __future__ import annotations

import datetime as dt
import os
import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import String
from std_srvs.srv import Trigger

from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.core.paths import SOURCE_TREE
from noetra_ros.core.recording import (
    BagWriter, bag_name, compressed_topic, COMPRESSED_IMAGE_TYPE, DiskGuard, EpisodeEnd,
    EpisodeInfo, EpisodeSegmenter, EpisodeStart, header_stamp_ns, IMAGE_FORMATS, IMAGE_TYPE,
    jpeg_image_cdr, MessageDefinitions, OfferedQos, offered_qos_yaml, RecordingStoppedError,
    recording_dir, subscription_qos, TopicSelection)
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import offered_policies, recording_qos
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

EPISODE_MODES = ('auto', 'task_status', 'run')
# Stamped messages held for their step's task/status at most (about 5 steps of a busy cell):
# past it they are written where the episode's stamps say without waiting.
MAX_WAITING_MESSAGES = 200
PARAMETERS = {
    'output_dir': ('', 'run folder; bags go to <output_dir>/recording/ (default '
                       'runs/recording-<date-time>)'),
    'cell': ('cell', 'cell name: first part of every bag name and metadata `cell`'),
    'robot': ('', 'robot model, for the metadata'),
    'driver': ('', 'arm driver (ros2_control | fanuc | motoros2), for the metadata'),
    'topics': ([], 'topics or fnmatch patterns to record; empty: every topic discovered'),
    'exclude': (['/parameter_events'], 'topics or patterns never recorded'),
    'episodes': ('auto', f'one of {EPISODE_MODES}: bag per task/status episode or per run'),
    'status_topic': ('task/status', 'the sim\'s episode status (diagnostic_msgs/'
                                    'DiagnosticStatus)'),
    'instruction_topic': ('task/instruction', 'the instruction (std_msgs/String), for '
                                              'the metadata of a run bag'),
    'image_format': ('raw', f'one of {IMAGE_FORMATS}: sensor_msgs/Image as received, or JPEG '
                            'as CompressedImage on <topic>/compressed'),
    'jpeg_quality': (90, 'JPEG quality 1..100 (OpenCV IMWRITE_JPEG_QUALITY)'),
    'queue_depth': (100, 'subscription depth per topic'),
    'discovery_period_s': (0.5, 'wall seconds between two looks for new topics'),
    'startup_wait_s': (2.0, 'episodes auto: wall seconds of discovery before it '
                            'decides between task_status and run'),
    'late_message_grace_s': (1.0, 'wall seconds the previous episode\'s bag stays open for '
                                  'messages stamped before the split'),
    'min_free_bytes': (256 * 1024 * 1024, 'stop recording (bag finished) when less than '
                                          'this is free on the recording disk'),
    'max_run_bytes': (0, 'stop recording (bag finished) after this many bytes in this run; '
                         '0: no budget'),
}


def ament_share_dirs() -> list[str]:
    """`share/` of every ROS prefix (AMENT_PREFIX_PATH), where the .msg files are installed,
    then of our builds of the interface packages (interface_packages.py finds those too)."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes += [str(p) for p in sorted((SOURCE_TREE / 'install').glob('*'))]
    return [os.path.join(p, 'share') for p in prefixes]


def _offered(info) -> OfferedQos:
    reliable, transient_local = offered_policies(info.qos_profile)
    return OfferedQos(reliable=reliable, transient_local=transient_local)


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__('recorder')
        params = declare_parameters(self, PARAMETERS)
        if params['episodes'] not in EPISODE_MODES:
            raise ConfigError(f'parameter episodes={params["episodes"]!r}: must be one of '
                              f'{EPISODE_MODES}')
        if params['image_format'] not in IMAGE_FORMATS:
            raise ConfigError(f'parameter image_format={params["image_format"]!r}: must be one '
                              f'of {IMAGE_FORMATS}')
        if not 1 <= params['jpeg_quality'] <= 100:
            raise ConfigError(f'parameter jpeg_quality={params["jpeg_quality"]}: must be 1..100')
        self.params = params
        out = params['output_dir'] or os.path.join(
            'runs', f'recording-{dt.datetime.now().strftime("%Y%m%d-%H%M%S")}')
        self.directory = recording_dir(out).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.guard = DiskGuard(self.directory, min_free_bytes=params['min_free_bytes'],
                               max_run_bytes=params['max_run_bytes'])
        self.selection = TopicSelection(tuple(params['topics']), tuple(params['exclude']))
        self.definitions = MessageDefinitions(ament_share_dirs())
        self.status_topic = self.resolve_topic_name(params['status_topic'])
        self.instruction_topic = self.resolve_topic_name(params['instruction_topic'])
        self.segmenter = EpisodeSegmenter(self.status_topic)
        self.mode = ''                      # decided after startup_wait_s
        self.bag: BagWriter | None = None
        self.info: EpisodeInfo | None = None
        self.previous: tuple[BagWriter, EpisodeInfo, float] | None = None
        self.status_stamp_ns: int | None = None  # stamp of the last task/status
        self.waiting: list[tuple] = []            # stamped messages ahead of that status
        self.stopped = ''                   # why recording stopped for good
        self.next_run_episode = 0
        self.subscribed: dict[str, object] = {}
        self.recorded_as: dict[str, tuple[str, str]] = {}  # topic -> (written topic, type)
        self.offered: dict[str, str] = {}
        # transient-local topic -> its last message and that message's source timestamp
        self.latched: dict[str, tuple[bytes, int]] = {}
        self.skipped_types: set[str] = set()
        self.counts = {'written': 0, 'bags': 0, 'not_recorded': 0}
        self._started = time.monotonic()
        self.create_service(Trigger, 'recorder/split', self._on_split)
        # A wall-clock timer: with use_sim_time, /clock only runs once the episodes do.
        self.create_timer(params['discovery_period_s'], self._discover,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f'recording into {self.directory} (episodes '
                               f'{params["episodes"]}, images {params["image_format"]})')

    # ------------------------------------------------------------------ discovery
    def _discover(self) -> None:
        if not self.mode:
            waiting = time.monotonic() - self._started < self.params['startup_wait_s']
            if self.params['episodes'] == 'auto' and waiting:
                return
            self._choose_mode()
        self._close_previous_if_due()
        for topic, types in self.get_topic_names_and_types():
            if topic in self.subscribed or len(types) != 1:
                continue
            forced = self.mode == 'task_status' and topic == self.status_topic
            if not (forced or self.selection.wants(topic)):
                continue
            self._subscribe(topic, types[0])

    def _choose_mode(self) -> None:
        mode = self.params['episodes']
        if mode == 'auto':
            has_status = self.count_publishers(self.status_topic) > 0
            mode = 'task_status' if has_status else 'run'
        self.mode = mode
        self.get_logger().info(f'episodes from {mode}' + (
            f' ({self.status_topic})' if mode == 'task_status' else ': one bag per run'))
        if mode == 'run':
            self._open(EpisodeInfo(episode=self.next_run_episode, seed=None))
            self.next_run_episode += 1

    def _subscribe(self, topic: str, type_name: str) -> None:
        written_type = type_name
        if type_name == IMAGE_TYPE and self.params['image_format'] == 'jpeg':
            written_type = COMPRESSED_IMAGE_TYPE
        try:
            self.definitions.get(written_type)
        except InputError as exc:
            if type_name not in self.skipped_types:
                self.skipped_types.add(type_name)
                self.get_logger().warning(f'not recording {topic}: {exc}')
            return
        endpoints = self.get_publishers_info_by_topic(topic)
        if not endpoints:
            return  # only subscribers so far: look again at the next discovery
        offered = [_offered(e) for e in endpoints]
        choice = subscription_qos(offered)
        qos = recording_qos(choice.reliable, choice.transient_local, self.params['queue_depth'])
        try:
            msg_class = message_class(type_name)
        except InputError as exc:
            if type_name not in self.skipped_types:
                self.skipped_types.add(type_name)
                self.get_logger().warning(f'not recording {topic}: {exc}')
            return
        self.offered[topic] = offered_qos_yaml(offered, self.params['queue_depth'])
        written = compressed_topic(topic) if written_type != type_name else topic
        self.recorded_as[topic] = (written, written_type)
        if choice.transient_local:
            self.latched[topic] = (b'', 0)
        self.subscribed[topic] = self.create_subscription(
            msg_class, topic,
            lambda data, info, topic=topic: self._on_message(topic, data, info['source_timestamp']),
            qos, raw=True)

    # ------------------------------------------------------------------ messages
    def _on_message(self, topic: str, data: bytes, source_ns: int) -> None:
        if topic == self.status_topic and self.mode == 'task_status':
            self._on_status(data)
        elif topic == self.instruction_topic and self.info is not None and self.mode == 'run':
            self.info.instruction = deserialize_message(data, String).data
        if topic in self.latched:
            self.latched[topic] = (data, source_ns)
        if self.stopped or (topic == self.status_topic and not self.selection.wants(topic)):
            return
        written, written_type = self.recorded_as[topic]
        definition = self.definitions.get(written_type)
        if written != topic:  # an Image recorded as JPEG
            try:
                data = jpeg_image_cdr(self.definitions, data, self.params['jpeg_quality'])
            except NoetraError as exc:  # depth or another encoding JPEG cannot hold
                self.get_logger().warning(f'{topic}: {exc}; recording it raw',
                                          throttle_duration_sec=10.0)
                written, definition = topic, self.definitions.get(IMAGE_TYPE)
        stamp = header_stamp_ns(data) if definition.header_stamp else None
        message = (written, definition, data, stamp, self.offered.get(topic, ''), source_ns)
        if (self.mode == 'task_status' and stamp is not None
                and (self.status_stamp_ns is None or stamp > self.status_stamp_ns)):
            # Topics are delivered independently: a step's joint_states can arrive before the
            # status that opens its episode. It waits for that status (or a full queue).
            self.waiting.append(message)
            if len(self.waiting) > MAX_WAITING_MESSAGES:
                self._flush_waiting(None)
            return
        self._route(message)

    def _route(self, message) -> None:
        """Into the bag of the episode its stamp belongs to (the previous one while open)."""
        written, definition, data, stamp, offered, source_ns = message
        bag = self.bag
        if (self.previous is not None and stamp is not None and self.info is not None
                and self.info.start_stamp_ns is not None and stamp < self.info.start_stamp_ns):
            bag = self.previous[0]  # a late message of the episode before
        if bag is None:
            self.counts['not_recorded'] += 1  # before the first episode
            return
        self._write(bag, written, definition, data, offered, source_ns)

    def _flush_waiting(self, up_to_ns: int | None) -> None:
        """Write the waiting messages stamped up to `up_to_ns` (all of them for None)."""
        keep = []
        for message in self.waiting:
            if up_to_ns is None or message[3] <= up_to_ns:
                self._route(message)
            else:
                keep.append(message)
        self.waiting = keep

    def _write(self, bag: BagWriter, topic: str, definition, data: bytes, offered: str,
               source_ns: int) -> None:
        # Log time: the cell's clock (sim time in a sim cell) when written. Publish time: the
        # DDS source timestamp, the publisher's clock when it sent the message, as rosbag2
        # stores send_timestamp: on one host it orders messages of different topics by cause
        # (a command is sent after the joint_states it answers), which the order this node
        # takes messages from its subscriptions in does not (seen under load).
        try:
            bag.add_topic(topic, definition, offered)
            bag.write(topic, self.get_clock().now().nanoseconds, data, source_ns)
            self.counts['written'] += 1
        except RecordingStoppedError as exc:
            self._stop_recording(str(exc))

    def _on_status(self, data: bytes) -> None:
        status = deserialize_message(data, DiagnosticStatus)
        try:
            event = self.segmenter.on_status({kv.key: kv.value for kv in status.values})
        except InputError as exc:
            self.get_logger().error(f'{exc}; episodes cannot be split on it',
                                    throttle_duration_sec=10.0)
            return
        if isinstance(event, EpisodeStart):
            if self.info is not None and self.info.result == 'unknown':
                self.info.result, self.info.reason = 'aborted', 'the next episode started'
            self._open(event.info, keep_previous=True)
        elif isinstance(event, EpisodeEnd) and self.info is not None:
            self.info.result, self.info.reason = event.result, event.reason
            self.info.end_stamp_ns = event.stamp_ns
        values = {kv.key: kv.value for kv in status.values}
        if values.get('stamp_ns', '').isdigit():
            self.status_stamp_ns = int(values['stamp_ns'])
            self._flush_waiting(self.status_stamp_ns)

    # ------------------------------------------------------------------ bags
    def _open(self, info: EpisodeInfo, keep_previous: bool = False) -> None:
        if self.previous is not None:
            self._close(*self.previous[:2])
            self.previous = None
        if self.bag is not None and self.info is not None:
            if keep_previous:
                self.previous = (self.bag, self.info, time.monotonic())
            else:
                self._close(self.bag, self.info)
        self.bag, self.info = None, info
        if self.stopped:
            return
        name = bag_name(self.params['cell'], info.episode, info.seed)
        try:
            self.bag = BagWriter(self.directory / name, self.guard)
        except (NoetraError, OSError) as exc:
            self._stop_recording(f'cannot create bag {name}: {exc}')
            return
        self.counts['bags'] += 1
        for topic, (data, source_ns) in self.latched.items():  # every bag gets their state
            if data and topic != self.status_topic and self.bag is not None:
                written, written_type = self.recorded_as[topic]
                definition = self.definitions.get(written_type)
                if written == topic:
                    self._write(self.bag, topic, definition, data, self.offered[topic], source_ns)

    def _close(self, bag: BagWriter, info: EpisodeInfo) -> None:
        if bag.closed:
            return
        try:
            metadata = bag.close(info, self.params['cell'], self.params['robot'],
                                 self.params['driver'])
            self.get_logger().info(
                f'bag {bag.directory.name}: {sum(t.count for t in bag.topics.values())} '
                f'messages, result {metadata["result"]}, recording {metadata["recording"]}')
        except RecordingStoppedError as exc:
            self.get_logger().error(str(exc))

    def _close_previous_if_due(self) -> None:
        if self.previous is not None and (time.monotonic() - self.previous[2]
                                          >= self.params['late_message_grace_s']):
            self._close(*self.previous[:2])
            self.previous = None

    def _stop_recording(self, why: str) -> None:
        """Close every open bag and record nothing more; the node keeps running."""
        if self.stopped:
            return
        self.stopped = why
        self.get_logger().error(f'{why}. Recording stopped; the bags written so far are '
                                f'closed and readable. The cell goes on unaffected.')
        if self.previous is not None:
            self._close(*self.previous[:2])
            self.previous = None
        if self.bag is not None and self.info is not None:
            self._close(self.bag, self.info)

    def _on_split(self, request, response):
        if self.stopped or not self.mode:
            response.success = False
            response.message = self.stopped or 'not recording yet (discovery)'
            return response
        if self.info is not None and self.info.result == 'unknown':
            self.info.reason = 'split by recorder/split'
        episode = (self.info.episode + 1) if self.info is not None else self.next_run_episode
        self.next_run_episode = episode + 1
        self._open(EpisodeInfo(episode=episode, seed=None,
                               instruction=self.info.instruction if self.info else ''))
        response.success = self.bag is not None
        response.message = str(self.bag.directory) if self.bag else self.stopped
        return response

    def destroy_node(self) -> None:
        self._flush_waiting(None)
        if self.previous is not None:
            self._close(*self.previous[:2])
            self.previous = None
        if self.bag is not None and self.info is not None:
            if self.mode == 'task_status' and self.info.result == 'unknown':
                self.info.result = 'aborted'
                self.info.reason = 'the recorder stopped before the episode ended'
            self._close(self.bag, self.info)
            self.bag = None
        self.get_logger().info(f'recorder: {self.counts["bags"]} bags, '
                               f'{self.counts["written"]} messages written in {self.directory}')
        super().destroy_node()


def message_class(type_name: str):
    """The rclpy message class of `pkg/msg/Type` (interfaces/ packages included)."""
    package, kind, name = type_name.split('/')
    try:
        return interface_type(package, kind, name)
    except (ConfigError, ModuleNotFoundError) as exc:
        raise InputError(f'message type {type_name}: no Python message class ({exc})') from exc


def main(args=None) -> None:
    run_node(RecorderNode, 'recorder_node', args)


if __name__ == '__main__':
    main()
