"""Recording a cell's topics as rosbag2 bags (MCAP storage), one bag per episode, ROS-free.

The recorder node (`recorder_node.py`) hands this module serialized CDR bytes exactly as rclpy
received them; everything else is decided here:

- **Layout** (shared with `noetra audit` and `noetra convert`): one rosbag2 bag per episode,
  `<run_dir>/recording/<cell>_ep<episode:03d>_seed<seed>/` holding rosbag2's `metadata.yaml`
  (version 9) and one `.mcap` file (profile `ros2`, schema encoding `ros2msg`, message
  encoding `cdr`, zstd-compressed chunks). A bag of a cell without an episode schedule (a real
  cell) has seed `none` in its name and `''` in its metadata.
- **Episode metadata**: an MCAP metadata record `noetra_episode` (string values: cell, robot,
  driver, episode, seed, instruction, result, reason, start_stamp_ns, end_stamp_ns, recorder,
  and `recording`: `complete` or why the file ended early).
- **Episodes** (`EpisodeSegmenter`): the sim's `task/status` values (state, episode, seed,
  instruction, result, detail, stamp_ns) say when an episode starts and how it ended.
- **Message definitions** (`MessageDefinitions`): the `.msg` files the ROS packages install
  (`share/<package>/msg/<Type>.msg`), parsed and turned into rosbag2's `ros2msg` schema text
  (the type's definition followed by every nested one) and RIHS01 type hash by rosbags' type
  system, the same library the tests read the bags with.
- **Disk space** (`DiskGuard`): a bag is finished (summary, metadata, metadata.yaml) while there
  is still room for it, before the disk is full; a failed write closes what can be closed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import fnmatch
import os
from pathlib import Path
import shutil
import struct
from typing import Any, BinaryIO

from mcap.writer import CompressionType, Writer
import yaml

from noetra_ros.core.errors import ConfigError, InputError, NoetraError

RECORDER_ID = 'noetra_ros recorder_node 0.1.0'
EPISODE_METADATA_NAME = 'noetra_episode'
RESULTS = ('success', 'failed', 'aborted', 'unknown')
METADATA_KEYS = ('cell', 'robot', 'driver', 'episode', 'seed', 'instruction', 'result',
                 'reason', 'start_stamp_ns', 'end_stamp_ns', 'recorder', 'recording',
                 'publish_time')
# Metadata `publish_time`: what the messages' MCAP publish time is. 'source_timestamp': the DDS
# source timestamp (the publisher's clock at sending; rosbag2 stores it as send_timestamp),
# which `convert` uses to place commands; 'log_time': a copy of the log time.
PUBLISH_TIME_SOURCE = 'source_timestamp'
PUBLISH_TIME_LOG = 'log_time'
RECORDING_FOLDER = 'recording'
# rosbag2 metadata.yaml version written (Jazzy's rosbag2 writes 9: type_description_hash per
# topic); rosbags reads 1..9.
ROSBAG2_VERSION = 9
# MCAP chunk size: rosbag2_storage_mcap's default chunk size is 768 KiB, mcap's Python writer's
# 1 MiB; one chunk is also the most a crash can lose.
CHUNK_BYTES = 1024 * 1024
# The summary section, the metadata records and metadata.yaml of one bag fit in this with room
# to spare (a few kB each), so a bag can always be finished inside a byte budget.
FINISH_RESERVE_BYTES = 256 * 1024
# CDR encapsulation header (representation id + options) before the first field.
CDR_HEADER_BYTES = 4
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
IMAGE_FORMATS = ('raw', 'jpeg')


class RecordingStoppedError(NoetraError):
    """Recording ended early (disk space, byte budget, write error); the bag was closed."""


# --------------------------------------------------------------------------- naming
def bag_name(cell: str, episode: int, seed: int | None) -> str:
    """`<cell>_ep<episode:03d>_seed<seed>`; seed `none` for a cell without a schedule."""
    if not cell or '/' in cell:
        raise ConfigError(f'cell name {cell!r} cannot name a bag folder')
    return f'{cell}_ep{episode:03d}_seed{"none" if seed is None else seed}'


def recording_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RECORDING_FOLDER


# --------------------------------------------------------------------------- episodes
@dataclass
class EpisodeInfo:
    """What the `noetra_episode` metadata record says about one bag."""

    episode: int
    seed: int | None
    instruction: str = ''
    result: str = 'unknown'
    reason: str = ''
    start_stamp_ns: int | None = None
    end_stamp_ns: int | None = None

    def metadata(self, cell: str, robot: str, driver: str,
                 recording: str = 'complete') -> dict[str, str]:
        if self.result not in RESULTS:
            raise ConfigError(f'episode result {self.result!r} is not one of {RESULTS}')

        def text(value: int | None) -> str:
            return '' if value is None else str(value)
        return {'cell': cell, 'robot': robot, 'driver': driver, 'episode': str(self.episode),
                'seed': text(self.seed), 'instruction': self.instruction,
                'result': self.result, 'reason': self.reason,
                'start_stamp_ns': text(self.start_stamp_ns),
                'end_stamp_ns': text(self.end_stamp_ns), 'recorder': RECORDER_ID,
                'recording': recording}


@dataclass(frozen=True)
class EpisodeStart:
    """A new episode began at `info.start_stamp_ns`: the next bag starts there."""

    info: EpisodeInfo


@dataclass(frozen=True)
class EpisodeEnd:
    """The running episode ended (its result is known); its bag stays open until the next
    episode starts, so the steps of the pause between episodes stay with it."""

    result: str
    reason: str
    stamp_ns: int


def _integer(values: Mapping[str, str], key: str, where: str) -> int:
    try:
        return int(values[key])
    except (KeyError, ValueError) as exc:
        raise InputError(f'{where}: key {key!r} must be an integer, got '
                         f'{values.get(key)!r}') from exc


class EpisodeSegmenter:
    """Turns the sim's `task/status` key/values (sim_node._publish_status) into episode events.

    An episode starts when a status names an episode index not seen before while its state is
    `running`; it ends when the status carries a result (`success` / `failed`, detail = reason;
    a detail starting with "aborted" is the result `aborted`, as an external reset reports it).
    """

    def __init__(self, topic: str = 'task/status') -> None:
        self.topic = topic
        self.current: EpisodeInfo | None = None
        self._ended = False

    def on_status(self, values: Mapping[str, str]) -> EpisodeStart | EpisodeEnd | None:
        where = f'{self.topic}'
        if 'state' not in values or 'episode' not in values:
            raise InputError(f'{where}: a task status needs keys state and episode, got '
                             f'{sorted(values)}')
        episode = _integer(values, 'episode', where)
        stamp = _integer(values, 'stamp_ns', where)
        result = values.get('result', '')
        if episode < 0:
            return None  # the schedule has not started
        if self.current is None or episode != self.current.episode:
            if result:  # the end of an episode we never saw start: nothing to split
                return None
            self.current = EpisodeInfo(episode=episode, seed=_integer(values, 'seed', where),
                                       instruction=values.get('instruction', ''),
                                       start_stamp_ns=stamp)
            self._ended = False
            return EpisodeStart(self.current)
        if result and not self._ended:
            detail = values.get('detail', '')
            if result not in ('success', 'failed'):
                raise InputError(f'{where}: result {result!r} is not success or failed')
            if result == 'failed' and detail.startswith('aborted'):
                result = 'aborted'
            self._ended = True
            self.current.result, self.current.reason = result, detail
            self.current.end_stamp_ns = stamp
            return EpisodeEnd(result, detail, stamp)
        return None


# --------------------------------------------------------------------------- topics and QoS
@dataclass(frozen=True)
class TopicSelection:
    """Which topics to record: `topics` (names or fnmatch patterns; empty = every topic
    discovered) minus `exclude`. Hidden topics (a path element starting with `_`, such as
    actions' `_action/status`) are left out unless asked for by name, as `ros2 bag record`."""

    topics: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @staticmethod
    def _absolute(name: str) -> str:
        return name if name.startswith('/') else '/' + name

    def wants(self, topic: str) -> bool:
        topic = self._absolute(topic)
        named = any(fnmatch.fnmatchcase(topic, self._absolute(p)) for p in self.topics)
        if self.topics and not named:
            return False
        if any(fnmatch.fnmatchcase(topic, self._absolute(p)) for p in self.exclude):
            return False
        hidden = any(part.startswith('_') for part in topic.split('/'))
        return named or not hidden


@dataclass(frozen=True)
class OfferedQos:
    """What one publisher offers, as far as a subscriber's choice depends on it."""

    reliable: bool
    transient_local: bool


@dataclass(frozen=True)
class SubscriptionQos:
    reliable: bool
    transient_local: bool


def subscription_qos(offered: Sequence[OfferedQos]) -> SubscriptionQos:
    """rosbag2's adaptive rule: reliable only if every publisher is reliable (a reliable reader
    never hears a best-effort writer), transient local only if every publisher is (so latched
    messages are received once more, and a volatile writer is still heard)."""
    if not offered:
        return SubscriptionQos(reliable=True, transient_local=False)
    return SubscriptionQos(reliable=all(q.reliable for q in offered),
                           transient_local=all(q.transient_local for q in offered))


def offered_qos_yaml(offered: Sequence[OfferedQos], depth: int) -> str:
    """rosbag2 v9's `offered_qos_profiles` text (rosbag2_storage/qos.cpp field names)."""
    profiles = [{'history': 'keep_last', 'depth': depth,
                 'reliability': 'reliable' if q.reliable else 'best_effort',
                 'durability': 'transient_local' if q.transient_local else 'volatile',
                 'deadline': {'sec': 9223372036, 'nsec': 854775807},
                 'lifespan': {'sec': 9223372036, 'nsec': 854775807},
                 'liveliness': 'automatic',
                 'liveliness_lease_duration': {'sec': 9223372036, 'nsec': 854775807},
                 'avoid_ros_namespace_conventions': False} for q in offered]
    return yaml.safe_dump(profiles, sort_keys=False).strip() if profiles else ''


# --------------------------------------------------------------------------- message definitions
@dataclass(frozen=True)
class MessageDefinition:
    type_name: str       # e.g. sensor_msgs/msg/Image
    text: str            # rosbag2 `ros2msg` schema: the type, then `MSG: <pkg>/<Type>` sections
    rihs01: str          # RIHS01 type hash (metadata.yaml type_description_hash)
    header_stamp: bool   # the first field is a std_msgs/Header: the CDR stamp is at byte 4


def msg_file(share_dirs: Iterable[str | os.PathLike], type_name: str) -> Path | None:
    """`<share>/<package>/msg/<Type>.msg` for `package/msg/Type`, first share dir that has it."""
    package, kind, name = _split_type(type_name)
    for share in share_dirs:
        path = Path(share) / package / kind / f'{name}.msg'
        if path.is_file():
            return path
    return None


def _split_type(type_name: str) -> tuple[str, str, str]:
    parts = type_name.split('/')
    if len(parts) != 3 or not all(parts):
        raise InputError(f'message type {type_name!r} is not <package>/msg/<Type>')
    return parts[0], parts[1], parts[2]


class MessageDefinitions:
    """Schema text and hash of message types, from the installed `.msg` files.

    `share_dirs` are the `share/` folders of the ROS prefixes (AMENT_PREFIX_PATH); a type is
    read from the first one that installs it, with its nested types, through rosbags' msg
    parser and type store.
    """

    def __init__(self, share_dirs: Sequence[str | os.PathLike]) -> None:
        from rosbags.typesys import get_typestore, Stores
        self.share_dirs = [Path(p) for p in share_dirs]
        self._store = get_typestore(Stores.EMPTY)  # builtin_interfaces Time / Duration only
        self._cache: dict[str, MessageDefinition] = {}

    def _register(self, type_name: str, chain: tuple[str, ...] = ()) -> None:
        from rosbags.typesys import get_types_from_msg
        from rosbags.typesys.base import Nodetype
        if type_name in self._store.fielddefs:
            return
        path = msg_file(self.share_dirs, type_name)
        if path is None:
            needed = f' (needed by {" -> ".join(chain)})' if chain else ''
            raise InputError(f'message type {type_name}{needed}: no .msg file under '
                             f'{[str(p) for p in self.share_dirs]}')
        types = get_types_from_msg(path.read_text(), type_name)
        self._store.register(types)
        for _name, (node_type, detail) in types[type_name][1]:
            nested: Any = detail
            while node_type in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                node_type, nested = nested[0]
            if node_type == Nodetype.NAME:
                self._register(str(nested), (*chain, type_name))

    def typestore(self, *type_names: str) -> Any:
        """rosbags' Typestore holding `type_names` (and what they nest), to (de)serialize."""
        for name in type_names:
            self.get(name)
        return self._store

    def get(self, type_name: str) -> MessageDefinition:
        """The type's definition; InputError naming the type when a .msg file is missing."""
        if type_name not in self._cache:
            _split_type(type_name)
            self._register(type_name)
            text, _md5 = self._store.generate_msgdef(type_name, ros_version=2)
            fields = self._store.fielddefs[type_name][1]
            first = fields[0][1] if fields else None
            header = first is not None and first[1] == 'std_msgs/msg/Header'
            self._cache[type_name] = MessageDefinition(
                type_name, text, self._store.hash_rihs01(type_name), header)
        return self._cache[type_name]


def jpeg_image_cdr(definitions: MessageDefinitions, image_cdr: bytes | memoryview,
                   quality: int) -> bytes:
    """A sensor_msgs/Image (CDR) -> the sensor_msgs/CompressedImage (CDR) that
    compressed_image_transport would publish for it: same header, JPEG data (encode_jpeg).
    Serialized by rosbags (rclpy's serialize_message in the Jazzy wheels returns trailing
    bytes past the message, which strict CDR readers refuse)."""
    import numpy as np
    store = definitions.typestore(IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
    image: Any = store.deserialize_cdr(image_cdr, IMAGE_TYPE)
    text, jpeg = encode_jpeg(image.encoding, image.width, image.height, image.step,
                             image.data, quality)
    compressed = store.types[COMPRESSED_IMAGE_TYPE](
        header=image.header, format=text, data=np.frombuffer(jpeg, dtype=np.uint8))
    return bytes(store.serialize_cdr(compressed, COMPRESSED_IMAGE_TYPE))


def header_stamp_ns(cdr: bytes | memoryview) -> int | None:
    """The header stamp (ns) of a CDR message whose first field is std_msgs/Header: int32 sec
    and uint32 nanosec right after the encapsulation header, in the byte order it names."""
    if len(cdr) < CDR_HEADER_BYTES + 8:
        return None
    little = bytes(cdr[0:2]) == b'\x00\x01'
    sec, nanosec = struct.unpack('<iI' if little else '>iI',
                                 bytes(cdr[CDR_HEADER_BYTES:CDR_HEADER_BYTES + 8]))
    return sec * 1_000_000_000 + nanosec


# --------------------------------------------------------------------------- images
def compressed_topic(image_topic: str) -> str:
    """image_transport's name for the compressed stream of an image topic."""
    return image_topic.rstrip('/') + '/compressed'


def encode_jpeg(encoding: str, width: int, height: int, step: int, data: Any,
                quality: int) -> tuple[str, bytes]:
    """Raw image -> (CompressedImage `format`, JPEG bytes), as compressed_image_transport
    publishes it (format "<encoding>; jpeg compressed bgr8", or "mono8; jpeg compressed mono8").

    InputError for an encoding JPEG cannot hold (depth: 16UC1, 32FC1) or a malformed image.
    """
    import cv2

    from noetra_ros.core.images import image_view, to_bgr
    if encoding not in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'):
        raise InputError(f'image encoding {encoding!r}: JPEG holds 8-bit colour or mono only')
    view = image_view(data, width, height, encoding, step=step)
    if encoding == 'mono8':
        pixels, target = view, 'mono8'
    else:
        pixels, target = to_bgr(view, encoding), 'bgr8'
    ok, buffer = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f'OpenCV could not JPEG-encode a {width}x{height} {encoding} image')
    return f'{encoding}; jpeg compressed {target}', buffer.tobytes()


# --------------------------------------------------------------------------- disk space
@dataclass
class DiskGuard:
    """When recording must stop to leave a finished file: the free space of the recording
    file system falls under `min_free_bytes`, or the run has written `max_run_bytes`
    (0 = no budget: a budget behaves exactly like a disk of that size). Checked once per chunk
    (`free_bytes` is a statvfs call), so its cost does not grow with the message rate."""

    directory: Path
    min_free_bytes: int = 256 * 1024 * 1024
    max_run_bytes: int = 0
    written_before: int = 0  # bytes of the bags this run already closed
    free_bytes: Callable[[Path], int] = field(
        default=lambda path: shutil.disk_usage(path).free)

    def problem(self, bag_bytes: int, next_bytes: int) -> str:
        """'' while the next `next_bytes` (one chunk and a finish) still fit; else why not."""
        if self.max_run_bytes:
            total = self.written_before + bag_bytes + next_bytes
            if total > self.max_run_bytes:
                return (f'byte budget max_run_bytes={self.max_run_bytes} reached '
                        f'({self.written_before + bag_bytes} bytes written)')
        free = self.free_bytes(self.directory)
        if free - next_bytes < self.min_free_bytes:
            return (f'disk nearly full: {free} bytes free on {self.directory}, '
                    f'min_free_bytes={self.min_free_bytes}')
        return ''


# --------------------------------------------------------------------------- the bag writer
@dataclass
class _Topic:
    channel_id: int
    name: str
    definition: MessageDefinition
    offered_qos: str
    count: int = 0


class BagWriter:
    """One rosbag2 bag with MCAP storage: `<directory>/metadata.yaml` + `<name>.mcap`.

    `write` takes serialized CDR bytes; `close` writes the `noetra_episode` record, finishes
    the MCAP summary and writes metadata.yaml. When the disk guard trips or a write fails, the
    bag is closed there and then (`RecordingStoppedError` says why); every message written
    before stays readable.
    """

    def __init__(self, directory: str | os.PathLike, guard: DiskGuard,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.directory = Path(directory)
        if self.directory.exists():
            raise ConfigError(f'{self.directory}: a bag of that name exists already; '
                              'record into a new run folder')
        self.directory.mkdir(parents=True)
        self.path = self.directory / f'{self.directory.name}.mcap'
        self.guard = guard
        self.chunk_bytes = chunk_bytes
        self._stream: BinaryIO | None = open(self.path, 'wb')
        self._writer = Writer(self._stream, chunk_size=chunk_bytes,
                              compression=CompressionType.ZSTD)
        self._writer.start(profile='ros2', library=RECORDER_ID)
        self.topics: dict[str, _Topic] = {}
        self._schemas: dict[str, int] = {}
        self._pending_bytes = 0       # message bytes added since the last check
        self.first_log_ns: int | None = None
        self.last_log_ns: int | None = None
        self.stopped = ''              # why recording stopped early ('' = it did not)
        self.closed = False
        self.source_publish_times = True  # every message written with its source timestamp

    @property
    def bytes_on_disk(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def add_topic(self, topic: str, definition: MessageDefinition,
                  offered_qos: str = '') -> None:
        if topic in self.topics or self._stream is None:
            return
        schema_id = self._schemas.get(definition.type_name)
        if schema_id is None:
            schema_id = self._writer.register_schema(
                definition.type_name, 'ros2msg', definition.text.encode())
            self._schemas[definition.type_name] = schema_id
        channel_id = self._writer.register_channel(
            topic, 'cdr', schema_id, {'offered_qos_profiles': offered_qos})
        self.topics[topic] = _Topic(channel_id, topic, definition, offered_qos)

    def write(self, topic: str, log_time_ns: int, data: bytes | memoryview,
              publish_time_ns: int | None = None) -> None:
        """Append one message; raises RecordingStoppedError (bag closed) when it cannot.

        `publish_time_ns`: the DDS source timestamp the subscriber was given; None copies the
        log time (and the bag says so in its metadata).
        """
        if self._stream is None:
            raise RecordingStoppedError(f'{self.path}: closed ({self.stopped or "finished"})')
        entry = self.topics[topic]
        if self._pending_bytes + len(data) >= self.chunk_bytes or self.first_log_ns is None:
            problem = self.guard.problem(self.bytes_on_disk,
                                         self.chunk_bytes + len(data) + FINISH_RESERVE_BYTES)
            self._pending_bytes = 0
            if problem:
                self._stop(problem)
        if self.last_log_ns is not None:
            log_time_ns = max(log_time_ns, self.last_log_ns)  # log time never goes back
        self.source_publish_times &= publish_time_ns is not None
        try:
            self._writer.add_message(entry.channel_id, log_time=log_time_ns, data=bytes(data),
                                     publish_time=publish_time_ns if publish_time_ns
                                     is not None else log_time_ns)
        except OSError as exc:
            self._stop(f'write error: {exc}')
        self._pending_bytes += len(data)
        entry.count += 1
        self.first_log_ns = log_time_ns if self.first_log_ns is None else self.first_log_ns
        self.last_log_ns = log_time_ns

    def _stop(self, problem: str) -> None:
        self.stopped = problem
        raise RecordingStoppedError(f'{self.path}: recording stopped: {problem}')

    def close(self, info: EpisodeInfo, cell: str, robot: str, driver: str) -> dict[str, str]:
        """Finish the bag (metadata record, MCAP summary, metadata.yaml); returns the metadata.

        After a write error the MCAP file may be cut short: it is closed as far as the file
        system lets it, and the OSError is raised as RecordingStoppedError naming the file.
        """
        if self.closed:
            raise RecordingStoppedError(f'{self.path}: closed twice')
        self.closed = True
        recording = f'stopped early: {self.stopped}' if self.stopped else 'complete'
        metadata = info.metadata(cell, robot, driver, recording)
        metadata['publish_time'] = (PUBLISH_TIME_SOURCE if self.source_publish_times
                                    else PUBLISH_TIME_LOG)
        stream, self._stream = self._stream, None
        try:
            self._writer.add_metadata(EPISODE_METADATA_NAME, metadata)
            self._writer.add_metadata('rosbag2', {
                'serialized_metadata': yaml.safe_dump(self._rosbag2_info(), sort_keys=False)})
            self._writer.finish()
        except OSError as exc:
            raise RecordingStoppedError(f'{self.path}: could not finish the file ({exc}); '
                                        'the data before the last chunk may be lost') from exc
        finally:
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # the write error above is the one to report
        self.guard.written_before += self.bytes_on_disk
        text = yaml.safe_dump({'rosbag2_bagfile_information': self._rosbag2_info()},
                              sort_keys=False)
        try:
            (self.directory / 'metadata.yaml').write_text(text)
        except OSError as exc:
            raise RecordingStoppedError(f'{self.directory / "metadata.yaml"}: {exc}') from exc
        return metadata

    def _rosbag2_info(self) -> dict:
        """rosbag2's bag information (rosbag2_storage/yaml.hpp, version 9)."""
        start = self.first_log_ns or 0
        duration = (self.last_log_ns or start) - start
        count = sum(t.count for t in self.topics.values())
        return {
            'version': ROSBAG2_VERSION, 'storage_identifier': 'mcap',
            'duration': {'nanoseconds': duration},
            'starting_time': {'nanoseconds_since_epoch': start},
            'message_count': count,
            'topics_with_message_count': [
                {'topic_metadata': {'name': t.name, 'type': t.definition.type_name,
                                    'serialization_format': 'cdr',
                                    'offered_qos_profiles': t.offered_qos,
                                    'type_description_hash': t.definition.rihs01},
                 'message_count': t.count} for t in self.topics.values()],
            'compression_format': '', 'compression_mode': '',
            'relative_file_paths': [self.path.name],
            'files': [{'path': self.path.name,
                       'starting_time': {'nanoseconds_since_epoch': start},
                       'duration': {'nanoseconds': duration}, 'message_count': count}],
            'custom_data': {}, 'ros_distro': 'jazzy',
        }
