"""`noetra convert`: recorded episodes (rosbag2 MCAP bags) -> one LeRobotDataset v3.0 folder.

Input: the recorder's bags (docs/RECORDING.md; one bag per episode, a directory holding
rosbag2's metadata.yaml and one .mcap, or the .mcap itself). Each bag must carry the MCAP
metadata record ``noetra_episode`` (robot, driver, seed, instruction, result, ...) and the
topics below; messages are read with mcap + mcap-ros2-support (CDR decoded from the bag's own
``ros2msg`` schemas, so no ROS install is needed).

Resampling to the dataset's fps, on the cell clock:

* a stamped message (joint_states, images) is at its header stamp; an unstamped command
  (std_msgs/Float64MultiArray) is at the stamp of the last joint_states sent before it: the
  command answers that state, as the expert / policy computes it. "Sent before" compares the
  messages' DDS source timestamps (MCAP publish time) when the bag's metadata says it holds
  them (`publish_time: source_timestamp`, as recorder_node writes); otherwise the bag's log
  order stands in for it;
* frame k is at ``t0 + k / fps`` (whole nanoseconds), from the first instant ``t0`` at which
  every stream has a message to the last joint_states stamp; timestamps in the dataset are
  ``k / fps`` exactly, as LeRobot's recorder writes them;
* ``observation.state``: the last joint_states at or before the frame (arm joints in the
  description's order, then the gripper = mean of the finger joints, as the in-process
  recorder stores it); each camera: its last frame at or before the frame time;
* ``action``: the arm and gripper commands in force at the frame time (the last ones at or
  before it): arm position targets (description order) + gripper finger target;
* task: the episode's instruction (metadata ``instruction``, else the last task/instruction).

Bad input (a truncated / unfinished MCAP, missing metadata or topics, stamps that go backwards,
no instruction, a sensor silent for longer than ``max_sensor_gap_s``) is reported as
``<file>: <problem>``; with ``on_error='skip'`` that bag is left out and listed, with
``'stop'`` the conversion ends with that error. The dataset is written into a temporary folder
next to the output and renamed into place only when complete: a stopped or failed conversion
leaves no dataset behind.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import os
from pathlib import Path
import shutil
import struct
from typing import Any, Iterator, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.core.recording import EPISODE_METADATA_NAME, PUBLISH_TIME_SOURCE
from noetra_ros.core.sim.privileged import ENVIRONMENT_STATE_TOPIC
from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode

# The shared recording convention (docs/RECORDING.md): the metadata record's name and keys.
RESULTS = ('success', 'failed', 'aborted', 'unknown')
JOINT_STATES_TOPIC = 'joint_states'
# What the command source asked for (the cells remap the expert's / policy's outputs here):
# the demonstration's action, as the in-process recorder stores the expert's command.
ARM_COMMAND_TOPIC = 'safety/position_commands'
GRIPPER_COMMAND_TOPIC = 'safety/gripper_commands'
INSTRUCTION_TOPIC = 'task/instruction'
# sim_node's privileged scene state (noetra_msgs/EnvironmentState) becomes
# observation.environment_state, the training-only targets of the recipe's grounding and heading
# heads. Recordings of a real cell do not have it.
ENVIRONMENT_TOPIC = ENVIRONMENT_STATE_TOPIC
ENVIRONMENT_CHOICES = ('auto', 'no')
GRIPPER_STATE_NAME = 'gripper_position'  # = learning.record.GRIPPER_STATE_NAME
DEFAULT_CAMERAS = ('workspace_camera', 'wrist_camera')  # = learning.record.DEFAULT_CAMERAS
ON_ERROR = ('skip', 'stop')
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
# CDR: a 4-byte encapsulation header (byte 1: 0 big endian, 1 little endian), then the first
# field; every stamped type here starts with std_msgs/Header, whose stamp comes first.
_CDR_HEADER_BYTES = 4
_NS = 1_000_000_000


class BagError(InputError):
    """A bag that cannot become an episode; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f'{path}: {problem}')
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class ConvertConfig:
    """How bags become a dataset; see the module docstring for the rules."""

    fps: int = 20
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    on_error: str = 'skip'
    # Episodes whose recorded result is not listed are left out (reported, not an error).
    # 'unknown' is what a cell without an episode schedule (a real robot) records.
    results: tuple[str, ...] = ('success', 'unknown')
    # (width, height) to resize every camera to; None keeps the cameras' own (equal) size.
    image_size: tuple[int, int] | None = None
    max_sensor_gap_s: float = 0.5
    arm_command_topic: str = ARM_COMMAND_TOPIC
    gripper_command_topic: str = GRIPPER_COMMAND_TOPIC
    joint_states_topic: str = JOINT_STATES_TOPIC
    # 'auto': observation.environment_state when the first converted bag has sim/environment_state
    # (then every bag must); 'no': never.
    environment_state: str = 'auto'

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or self.fps <= 0:
            raise ConfigError(f'fps={self.fps!r}: must be a positive integer')
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f'cameras={self.cameras!r}: at least one, each named once')
        if self.on_error not in ON_ERROR:
            raise ConfigError(f'on_error={self.on_error!r}: must be one of {ON_ERROR}')
        unknown = [r for r in self.results if r not in RESULTS]
        if unknown or not self.results:
            raise ConfigError(f'results={self.results!r}: choose from {RESULTS}')
        if self.image_size is not None:
            width, height = self.image_size
            if width < 16 or height < 16 or width % 2 or height % 2:
                raise ConfigError(f'image_size={self.image_size!r}: even sizes >= 16')
        if self.environment_state not in ENVIRONMENT_CHOICES:
            raise ConfigError(f'environment_state={self.environment_state!r}: must be one of '
                              f'{ENVIRONMENT_CHOICES}')
        if not self.max_sensor_gap_s > 0:
            raise ConfigError(f'max_sensor_gap_s={self.max_sensor_gap_s!r}: must be > 0')


@dataclass
class BagEpisode:
    """One bag read and resampled: the episode and what the bag says about it."""

    path: Path
    robot: str
    metadata: dict[str, str]
    episode: Episode
    state_names: tuple[str, ...]
    environment_names: tuple[str, ...] = ()  # () = the bag has no sim/environment_state


@dataclass
class ConvertSummary:
    """What a conversion produced and what it left out."""

    output: Path
    episodes: int = 0
    frames: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # bad input, with why
    excluded: list[tuple[Path, str]] = field(default_factory=list)  # result not wanted

    def describe(self) -> str:
        """One paragraph for the CLI."""
        text = (f'converted {self.episodes} episode(s) ({self.frames} frames) into '
                f'{self.output}; {len(self.skipped)} bag(s) skipped as bad input, '
                f'{len(self.excluded)} left out by result')
        for path, problem in self.skipped:
            text += f'\n  skipped {path}: {problem}'
        for path, result in self.excluded:
            text += f'\n  left out {path}: result {result}'
        return text


def mcap_file(path: Path) -> Path:
    """The .mcap of a bag: the file itself, or the one .mcap inside a bag directory."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise BagError(path, 'no such bag (neither a directory nor a file)')
    found = sorted(path.glob('*.mcap'))
    if len(found) != 1:
        raise BagError(path, f'a bag directory must hold exactly one .mcap file, found '
                             f'{[p.name for p in found]}')
    return found[0]


def header_stamp_ns(data: bytes | memoryview) -> int:
    """The header stamp (ns) of a CDR message that starts with std_msgs/Header."""
    raw = bytes(data[:_CDR_HEADER_BYTES + 8])
    if len(raw) < _CDR_HEADER_BYTES + 8:
        raise ValueError(f'{len(raw)} bytes: too short for a header stamp')
    order = '<' if raw[1] & 1 else '>'
    sec, nanosec = struct.unpack_from(order + 'iI', raw, _CDR_HEADER_BYTES)
    return sec * _NS + nanosec


@dataclass
class _Stream:
    """Times (ns, cell clock) and values of one topic, in order."""

    stamps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # MCAP publish times


def _relative(topic: str) -> str:
    """A topic as the cell names it: '/joint_states' (rosbag2's spelling) -> 'joint_states'."""
    return topic[1:] if topic.startswith('/') else topic


def _camera_topics(camera: str, topics: dict[str, str]) -> str | None:
    for topic in (f'{camera}/image_raw', f'{camera}/image_raw/compressed'):
        if topics.get(topic) in IMAGE_TYPES:
            return topic
    return None


def _rgb_frame(message: Any, schema_name: str, size: tuple[int, int] | None) -> np.ndarray:
    import cv2

    from noetra_ros.core.images import decode_compressed, image_view, to_bgr

    if schema_name == 'sensor_msgs/msg/CompressedImage':
        pixels, encoding = decode_compressed(message.data, message.format)
    else:
        encoding = message.encoding
        pixels = image_view(message.data, message.width, message.height, encoding,
                            message.step, bool(message.is_bigendian))
    rgb = np.ascontiguousarray(to_bgr(pixels, encoding)[:, :, ::-1])
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)
    return rgb


def _joint_layout(path: Path, metadata: dict[str, str]) -> tuple[str, list[str], list[str], Any]:
    """(robot, arm joint names, finger joint names, driver name map) of a bag's robot."""
    from noetra_ros.core.drivers.profiles import profile
    from noetra_ros.core.joint_names import JointNameMap
    from noetra_ros.core.robot_model import load_robot_description

    robot = metadata.get('robot', '')
    try:
        description = load_robot_description(robot)
        scheme = profile(metadata.get('driver') or 'ros2_control').joint_names
    except NoetraError as exc:
        raise BagError(path, f'metadata names robot {robot!r} / driver '
                             f'{metadata.get("driver")!r}: {exc}') from exc
    fingers = list(description.gripper.joint_names) if description.gripper else []
    if not fingers:
        raise BagError(path, f'robot {robot!r} has no gripper: the dataset needs one')
    arm = list(description.joint_names)
    return robot, arm, fingers, JointNameMap.for_scheme(arm, scheme, keep=fingers)


def read_bag(path: str | Path, config: ConvertConfig) -> BagEpisode:
    """Read one bag and resample it to `config.fps`; BagError names every problem."""
    from mcap.exceptions import McapError

    path = Path(path)
    file = mcap_file(path)
    try:
        with open(file, 'rb') as stream:
            return _read_mcap(path, stream, config)
    except BagError:
        raise
    except InputError as exc:  # a message our readers refuse (joint names, image bytes)
        raise BagError(path, str(exc)) from exc
    except (McapError, EOFError, struct.error, ValueError, KeyError, IndexError,
            OSError) as exc:
        # mcap raises these for a cut-off record, a bad magic or CRC, an unknown schema.
        raise BagError(path, f'unreadable MCAP ({type(exc).__name__}: {exc}); truncated or '
                             'corrupt') from exc


def _read_mcap(path: Path, stream: Any, config: ConvertConfig) -> BagEpisode:
    from mcap.reader import make_reader

    reader = make_reader(stream)
    decode = _Decoders()
    header = reader.get_header()
    if header.profile != 'ros2':
        raise BagError(path, f'MCAP profile {header.profile!r}, expected \'ros2\'')
    summary = reader.get_summary()
    if summary is None:
        raise BagError(path, 'truncated or unfinished MCAP: it has no summary section (the '
                             'writer never closed it)')
    metadata: dict[str, str] | None = None
    for record in reader.iter_metadata():
        if record.name == EPISODE_METADATA_NAME:
            metadata = dict(record.metadata)
    if metadata is None:
        raise BagError(path, f'no {EPISODE_METADATA_NAME!r} metadata record')
    if metadata.get('recording', 'complete') != 'complete':
        raise BagError(path, f'the recorder ended this bag early: {metadata["recording"]}')
    robot, arm, fingers, names = _joint_layout(path, metadata)

    # rosbag2 writes fully qualified names ('/joint_states'); the cell's topics are relative to
    # its namespace, as ConvertConfig names them. `recorded` maps ours to the bag's spelling.
    recorded = {_relative(channel.topic): channel.topic
                for channel in summary.channels.values() if channel.schema_id in summary.schemas}
    topics = {_relative(channel.topic): summary.schemas[channel.schema_id].name
              for channel in summary.channels.values() if channel.schema_id in summary.schemas}
    cameras = {cam: _camera_topics(cam, topics) for cam in config.cameras}
    needed = [config.joint_states_topic, config.arm_command_topic, config.gripper_command_topic]
    missing = [t for t in needed if t not in topics]
    missing += [f'{cam}/image_raw[/compressed]' for cam, topic in cameras.items() if not topic]
    if missing:
        raise BagError(path, f'missing topics {missing} (the bag has {sorted(topics)})')

    # Pass 1: states, commands, instruction; image stamps only (pixels are decoded in pass 2,
    # for the frames the dataset keeps).
    state, arm_cmd, gripper_cmd = _Stream(), _Stream(), _Stream()
    image_stamps: dict[str, list[int]] = {cam: [] for cam in cameras}
    camera_of = {topic: cam for cam, topic in cameras.items()}
    instructions: list[str] = []
    environment = _Stream()
    environment_names: tuple[str, ...] = ()
    with_environment = (config.environment_state != 'no'
                        and topics.get(ENVIRONMENT_TOPIC) == 'noetra_msgs/msg/EnvironmentState')
    last_state_stamp: int | None = None
    by_source_time = metadata.get('publish_time') == PUBLISH_TIME_SOURCE
    last_log: dict[str, int] = {}
    wanted = needed + list(camera_of) + [INSTRUCTION_TOPIC]
    if with_environment:
        wanted.append(ENVIRONMENT_TOPIC)
    for schema, channel, message in reader.iter_messages(
            topics=[recorded[t] for t in wanted if t in recorded], log_time_order=False):
        topic = _relative(channel.topic)
        count = len(image_stamps[camera_of[topic]]) if topic in camera_of else None
        if message.log_time < last_log.get(topic, message.log_time):
            raise BagError(path, f'non-monotonic stamps: {topic} log time goes back from '
                                 f'{last_log[topic]} to {message.log_time} ns')
        last_log[topic] = message.log_time
        if topic in camera_of:
            stamps = image_stamps[camera_of[topic]]
            _append_stamp(path, topic, stamps, header_stamp_ns(message.data), count)
        elif topic == config.joint_states_topic:
            decoded = decode(schema, channel, message)
            positions = names.values_from_driver(decoded.name, decoded.position, arm + fingers)
            _append_stamp(path, topic, state.stamps, header_stamp_ns(message.data),
                          len(state.values))
            state.values.append(np.append(positions[:len(arm)],
                                          np.mean(positions[len(arm):])))
            state.sent.append(message.publish_time)
            last_state_stamp = state.stamps[-1]
        elif topic == INSTRUCTION_TOPIC:
            instructions.append(str(decode(schema, channel, message).data))
        elif topic == ENVIRONMENT_TOPIC:
            decoded = decode(schema, channel, message)
            names_here = tuple(decoded.names)
            if environment_names and names_here != environment_names:
                raise BagError(path, f'{topic} message {len(environment.values)}: its columns '
                                     'differ from the first message\'s')
            values = np.asarray(decoded.values, dtype=np.float32)
            if values.shape != (len(names_here),) or not np.all(np.isfinite(values)):
                raise BagError(path, f'{topic} message {len(environment.values)}: '
                                     f'{values.size} values for {len(names_here)} names, or '
                                     'non-finite')
            environment_names = names_here
            _append_stamp(path, topic, environment.stamps, header_stamp_ns(message.data),
                          len(environment.values))
            environment.values.append(values)
        elif by_source_time or last_state_stamp is not None:
            # Unstamped command: it answers the last state sent before it (placed below by
            # source time) or, without source times, received before it.
            data = np.asarray(decode(schema, channel, message).data, dtype=np.float64)
            target = arm_cmd if topic == config.arm_command_topic else gripper_cmd
            want = len(arm) if target is arm_cmd else 1
            if data.shape != (want,) or not np.all(np.isfinite(data)):
                raise BagError(path, f'{topic}: a command with {data.tolist()} where {want} '
                                     'finite value(s) are expected')
            if not by_source_time:
                target.stamps.append(last_state_stamp)
            target.values.append(data)
            target.sent.append(message.publish_time)
    if by_source_time:
        for target in (arm_cmd, gripper_cmd):
            _place_by_source_time(target, state)

    task = (metadata.get('instruction') or '').strip() or (
        instructions[-1].strip() if instructions else '')
    if not task:
        raise BagError(path, 'no instruction: the metadata\'s is empty and no '
                             f'{INSTRUCTION_TOPIC} message was recorded')
    streams = {config.joint_states_topic: state.stamps, config.arm_command_topic: arm_cmd.stamps,
               config.gripper_command_topic: gripper_cmd.stamps}
    streams.update({cameras[cam]: image_stamps[cam] for cam in cameras})
    if with_environment:
        streams[ENVIRONMENT_TOPIC] = environment.stamps
    empty = [topic for topic, stamps in streams.items() if not stamps]
    if empty:
        raise BagError(path, f'topics {empty} have no usable message (commands count only '
                             'after the first joint_states)')
    period_ns = _NS / config.fps
    start = max(stamps[0] for stamps in streams.values())
    end = state.stamps[-1]
    count = int((end - start) // period_ns) + 1 if end >= start else 0
    times = start + np.round(np.arange(max(count, 0)) * period_ns).astype(np.int64)
    if count < 2:
        raise BagError(path, f'fewer than 2 frames at {config.fps} fps between the first '
                             f'instant every stream has a message ({start} ns) and the last '
                             f'joint_states ({end} ns)')

    def pick(stamps: list[int], what: str, is_sensor: bool) -> np.ndarray:
        index = np.searchsorted(np.asarray(stamps, dtype=np.int64), times, side='right') - 1
        if is_sensor:
            gap = (times - np.asarray(stamps, dtype=np.int64)[index]) / _NS
            worst = int(np.argmax(gap))
            if gap[worst] > config.max_sensor_gap_s:
                raise BagError(path, f'{what} silent for {gap[worst]:.3f} s before frame '
                                     f'{worst} (stamp {int(times[worst])} ns); the limit is '
                                     f'{config.max_sensor_gap_s} s')
        return index

    state_rows = np.asarray(state.values)[pick(state.stamps, config.joint_states_topic, True)]
    action = np.concatenate([
        np.asarray(arm_cmd.values)[pick(arm_cmd.stamps, config.arm_command_topic, False)],
        np.asarray(gripper_cmd.values)[pick(gripper_cmd.stamps, config.gripper_command_topic,
                                            False)]], axis=1)
    frames_needed = {cameras[cam]: pick(image_stamps[cam], cameras[cam], True)
                     for cam in cameras}
    images = _decode_frames(path, reader, decode, frames_needed, camera_of, config.image_size,
                            recorded)
    environment_rows = None
    if with_environment:
        environment_rows = np.asarray(environment.values)[
            pick(environment.stamps, ENVIRONMENT_TOPIC, True)]
    seed_text = metadata.get('seed', '')
    episode = Episode(task=task, state=state_rows.astype(np.float32),
                      action=action.astype(np.float32), images=images,
                      seed=int(seed_text) if seed_text.lstrip('-').isdigit() else -1,
                      environment_state=environment_rows)
    return BagEpisode(path=path, robot=robot, metadata=metadata, episode=episode,
                      state_names=tuple(arm) + (GRIPPER_STATE_NAME,),
                      environment_names=environment_names if with_environment else ())


def _place_by_source_time(commands: _Stream, state: _Stream) -> None:
    """Stamp each command with the joint_states sent last before it (commands sent before
    any joint_states are dropped), in the order they were sent."""
    sent = np.asarray(commands.sent, dtype=np.int64)
    order = np.argsort(sent, kind='stable')
    state_order = np.argsort(np.asarray(state.sent, dtype=np.int64), kind='stable')
    state_sent = np.asarray(state.sent, dtype=np.int64)[state_order]
    answered = np.searchsorted(state_sent, sent[order], side='left') - 1
    keep = answered >= 0
    commands.values = [commands.values[i] for i in order[keep]]
    commands.stamps = [state.stamps[state_order[i]] for i in answered[keep]]
    commands.sent = [int(t) for t in sent[order][keep]]


def _append_stamp(path: Path, topic: str, stamps: list[int], stamp: int,
                  index: int | None) -> None:
    if stamps and stamp < stamps[-1]:
        raise BagError(path, f'non-monotonic stamps: {topic} message {index} has header stamp '
                             f'{stamp} ns, before the previous {stamps[-1]} ns')
    stamps.append(stamp)


class _Decoders:
    """Messages decoded with the bag's own schemas (mcap_ros2's decoder, one per schema)."""

    def __init__(self) -> None:
        from mcap_ros2.decoder import DecoderFactory

        self._factory = DecoderFactory()
        self._cache: dict[int, Any] = {}

    def __call__(self, schema: Any, channel: Any, message: Any) -> Any:
        decoder = self._cache.get(schema.id)
        if decoder is None:
            decoder = self._factory.decoder_for(channel.message_encoding, schema)
            if decoder is None:
                raise ValueError(f'no decoder for {schema.name} ({channel.message_encoding})')
            self._cache[schema.id] = decoder
        return decoder(message.data)


def _decode_frames(path: Path, reader: Any, decode: _Decoders, needed: dict[str, np.ndarray],
                   camera_of: dict[str, str], size: tuple[int, int] | None,
                   recorded: dict[str, str]) -> dict[str, np.ndarray]:
    """Pass 2: decode only the camera messages the frames use (`needed`: per topic, the
    message index of each dataset frame, in the topic's file order)."""
    decoded: dict[str, dict[int, np.ndarray]] = {topic: {} for topic in needed}
    wanted = {topic: set(index.tolist()) for topic, index in needed.items()}
    seen = {topic: 0 for topic in needed}
    for schema, channel, message in reader.iter_messages(
            topics=[recorded[t] for t in needed], log_time_order=False):
        topic = _relative(channel.topic)
        index = seen[topic]
        seen[topic] += 1
        if index not in wanted[topic]:
            continue
        try:
            frame = _rgb_frame(decode(schema, channel, message), schema.name, size)
        except InputError as exc:
            raise BagError(path, f'{topic} message {index}: {exc}') from exc
        decoded[topic][index] = frame
    images: dict[str, np.ndarray] = {}
    for topic, index in needed.items():
        shapes = {frame.shape for frame in decoded[topic].values()}
        if len(shapes) != 1:
            raise BagError(path, f'{topic}: frames of several sizes {sorted(shapes)}; give '
                                 'an image size to resize them')
        images[camera_of[topic]] = np.stack([decoded[topic][int(i)] for i in index])
    return images


def _spec_for(first: BagEpisode, config: ConvertConfig) -> DatasetSpec:
    sizes = {frames.shape[1:3] for frames in first.episode.images.values()}
    if len(sizes) != 1:
        raise BagError(first.path, f'cameras {list(config.cameras)} differ in size '
                                   f'{sorted(sizes)}; give an image size to resize them')
    (height, width), = sizes
    return DatasetSpec(fps=config.fps, robot_type=first.robot, state_names=first.state_names,
                       action_names=first.state_names, cameras=tuple(config.cameras),
                       image_height=int(height), image_width=int(width), with_wrench=False,
                       environment_names=first.environment_names)


def _check_matches(bag: BagEpisode, spec: DatasetSpec) -> None:
    if bag.robot != spec.robot_type or bag.state_names != spec.state_names:
        raise BagError(bag.path, f'robot {bag.robot!r} differs from the dataset\'s '
                                 f'{spec.robot_type!r} (from the first bag)')
    if bag.environment_names != spec.environment_names:
        have = 'has no' if not bag.environment_names else 'has another'
        raise BagError(bag.path, f'{have} {ENVIRONMENT_TOPIC} where the first bag has '
                                 f'{len(spec.environment_names)} columns; convert with '
                                 '--environment-state no to leave the column out')
    for cam, frames in bag.episode.images.items():
        if frames.shape[1:3] != (spec.image_height, spec.image_width):
            raise BagError(bag.path, f'{cam} is {frames.shape[2]}x{frames.shape[1]}, the '
                                     f'dataset {spec.image_width}x{spec.image_height} (from '
                                     'the first bag); give an image size to resize them')


def expand_bags(paths: Sequence[str | Path]) -> list[Path]:
    """The bags named: a bag directory or .mcap as it is; a folder of bags (e.g. a run's
    recording/ folder) as its bags in name order."""
    bags: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir() and not list(item.glob('*.mcap')):
            inner = sorted(p for p in item.iterdir() if p.is_dir() and list(p.glob('*.mcap')))
            bags.extend(inner or [item])
        else:
            bags.append(item)
    return bags


def _iter_bags(paths: Sequence[Path], config: ConvertConfig,
               summary: ConvertSummary) -> Iterator[BagEpisode]:
    for path in paths:
        try:
            bag = read_bag(path, config)
        except BagError as exc:
            if config.on_error == 'stop':
                raise
            summary.skipped.append((exc.path, exc.problem))
            continue
        result = bag.metadata.get('result', 'unknown') or 'unknown'
        if result not in config.results:
            summary.excluded.append((path, result))
            continue
        yield bag


def convert(paths: Sequence[str | Path], output: str | Path,
            config: ConvertConfig = ConvertConfig()) -> ConvertSummary:
    """Convert bags into a new dataset at `output` (which must not exist yet).

    Raises BagError (on_error 'stop') or InputError when no episode could be converted; in
    both cases nothing is left at `output`."""
    output = Path(output)
    if output.exists():
        raise ConfigError(f'output {output}: already exists; choose a new folder')
    bags = expand_bags(paths)
    if not bags:
        raise ConfigError('no bag given')
    summary = ConvertSummary(output=output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f'.{output.name}.partial-{os.getpid()}'
    shutil.rmtree(partial, ignore_errors=True)
    writer: DatasetWriter | None = None
    sources: list[dict[str, str]] = []
    try:
        for bag in _iter_bags(bags, config, summary):
            if writer is None:
                spec = _spec_for(bag, config)
                writer = DatasetWriter(partial, spec, extra_info={
                    'source': 'noetra convert (recorded rosbag2 MCAP episodes)',
                    'sources': sources,
                    'state': 'joint_states: arm joint positions (rad) + gripper finger '
                             'position (m, mean of the finger joints)',
                    'action': f'{config.arm_command_topic} (rad) + '
                              f'{config.gripper_command_topic} (m) in force at each frame',
                })
            try:
                _check_matches(bag, writer.spec)
            except BagError as exc:
                if config.on_error == 'stop':
                    raise
                summary.skipped.append((exc.path, exc.problem))
                continue
            writer.add_episode(bag.episode)
            sources.append({'bag': str(bag.path), **bag.metadata})
            summary.episodes += 1
            summary.frames += bag.episode.length
        if writer is None:
            raise InputError(f'no episode converted from {len(bags)} bag(s); nothing written'
                             + ''.join(f'\n  {p}: {why}' for p, why in summary.skipped)
                             + ''.join(f'\n  {p}: result {r}' for p, r in summary.excluded))
        writer.close()
        os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`noetra convert`'s arguments."""
    parser.add_argument('bags', nargs='+', help='bag directories, .mcap files, or folders of '
                        'bags (e.g. <run>/recording)')
    parser.add_argument('--out', required=True, help='new dataset folder')
    parser.add_argument('--fps', type=int, default=20, help='dataset frame rate (default 20)')
    parser.add_argument('--on-error', choices=ON_ERROR, default='skip',
                        help='a bad bag: skip it and say so (default), or stop with nothing '
                             'written')
    parser.add_argument('--cameras', default=','.join(DEFAULT_CAMERAS),
                        help='comma-separated camera names (default: the policy cameras)')
    parser.add_argument('--results', default='success,unknown',
                        help=f'episode results to keep, comma-separated from {RESULTS} '
                             '(default success,unknown)')
    parser.add_argument('--environment-state', choices=ENVIRONMENT_CHOICES, default='auto',
                        help=f'auto (default): keep the simulator\'s {ENVIRONMENT_TOPIC} as '
                             'observation.environment_state (training-only targets) when the '
                             'bags have it; no: leave it out')
    parser.add_argument('--image-size', metavar='WxH',
                        help='resize every camera to this size (default: keep their size)')


def run(args: argparse.Namespace) -> int:
    """`noetra convert`: 0 when a dataset was written (skipped bags are listed), 2 on error."""
    size = None
    if args.image_size:
        try:
            width, height = (int(v) for v in args.image_size.lower().split('x'))
        except ValueError:
            raise ConfigError(f'--image-size {args.image_size!r}: expected WxH, '
                              'e.g. 128x96') from None
        size = (width, height)
    config = ConvertConfig(fps=args.fps, cameras=tuple(c for c in args.cameras.split(',') if c),
                           on_error=args.on_error,
                           results=tuple(r for r in args.results.split(',') if r),
                           image_size=size, environment_state=args.environment_state)
    print(convert(args.bags, args.out, config).describe())
    return 0
