"""core/recording.py without ROS: naming, episodes from task/status, topic choice, schemas,
the bag writer (read back with rosbags and mcap), JPEG images and the disk-space guard."""
from __future__ import annotations

import os
from pathlib import Path

from mcap.reader import make_reader
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
import yaml

from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.recording import (
    bag_name, BagWriter, DiskGuard, encode_jpeg, EPISODE_METADATA_NAME, EpisodeEnd, EpisodeInfo,
    EpisodeSegmenter, EpisodeStart, header_stamp_ns, jpeg_image_cdr, MessageDefinitions,
    METADATA_KEYS, OfferedQos, recording_dir, RecordingStoppedError, subscription_qos,
    TopicSelection)

ROOT = Path(__file__).resolve().parent.parent


def share_dirs() -> list[str]:
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes += [str(ROOT / '.venv'), *map(str, sorted((ROOT / 'install').glob('*')))]
    return [os.path.join(p, 'share') for p in prefixes]


@pytest.fixture(scope='module')
def definitions() -> MessageDefinitions:
    return MessageDefinitions(share_dirs())


def status(state: str, episode: int, seed: int = 7, result: str = '', detail: str = '',
           stamp_ns: int = 0) -> dict[str, str]:
    return {'state': state, 'episode': str(episode), 'seed': str(seed), 'result': result,
            'detail': detail, 'instruction': f'task {episode}', 'stamp_ns': str(stamp_ns)}


def test_bag_names_follow_the_shared_layout(tmp_path):
    assert bag_name('pick_place_lrmate', 3, 42) == 'pick_place_lrmate_ep003_seed42'
    assert bag_name('real_cell', 0, None) == 'real_cell_ep000_seednone'
    assert recording_dir(tmp_path) == tmp_path / 'recording'
    with pytest.raises(ConfigError, match='cannot name a bag folder'):
        bag_name('a/b', 0, 1)


def test_episodes_start_on_a_new_index_and_end_with_their_result():
    seg = EpisodeSegmenter()
    assert seg.on_status(status('running', -1)) is None  # schedule not started
    start = seg.on_status(status('running', 0, seed=5, stamp_ns=50))
    assert isinstance(start, EpisodeStart)
    assert (start.info.episode, start.info.seed, start.info.start_stamp_ns) == (0, 5, 50)
    assert start.info.instruction == 'task 0'
    assert seg.on_status(status('running', 0, stamp_ns=100)) is None
    end = seg.on_status(status('success', 0, result='success', detail='success', stamp_ns=150))
    assert end == EpisodeEnd('success', 'success', 150)
    assert seg.on_status(status('success', 0, result='success', stamp_ns=200)) is None
    nxt = seg.on_status(status('running', 1, seed=6, stamp_ns=250))
    assert isinstance(nxt, EpisodeStart) and nxt.info.seed == 6
    aborted = seg.on_status(status('failed', 1, result='failed', detail='aborted by reset'))
    assert isinstance(aborted, EpisodeEnd) and aborted.result == 'aborted'


def test_a_status_without_its_keys_is_refused_by_name():
    with pytest.raises(InputError, match="task/status: key 'stamp_ns' must be an integer"):
        EpisodeSegmenter().on_status({'state': 'running', 'episode': '0'})
    with pytest.raises(InputError, match='needs keys state and episode'):
        EpisodeSegmenter().on_status({'seed': '1'})


def test_topic_selection_patterns_exclusions_and_hidden_topics():
    every = TopicSelection(exclude=('/parameter_events',))
    assert every.wants('joint_states') and every.wants('/scene_camera/image_raw')
    assert not every.wants('/parameter_events')
    assert not every.wants('/follow_joint_trajectory/_action/status')
    some = TopicSelection(topics=('/*camera/image_raw', 'joint_states'))
    assert some.wants('/wrist_camera/image_raw') and some.wants('/joint_states')
    assert not some.wants('/tf')


def test_subscription_qos_hears_every_publisher():
    reliable, best_effort = OfferedQos(True, False), OfferedQos(False, False)
    latched = OfferedQos(True, True)
    assert subscription_qos([reliable, best_effort]).reliable is False
    assert subscription_qos([latched]).transient_local is True
    assert subscription_qos([latched, reliable]).transient_local is False


def test_schemas_come_from_the_installed_msg_files(definitions):
    image = definitions.get('sensor_msgs/msg/Image')
    assert image.text.startswith('std_msgs/Header header\n')
    assert 'MSG: std_msgs/Header' in image.text and 'MSG: builtin_interfaces/Time' in image.text
    assert image.rihs01.startswith('RIHS01_') and image.header_stamp
    assert not definitions.get('std_msgs/msg/String').header_stamp
    with pytest.raises(InputError, match='no_such_msgs/msg/Thing: no .msg file'):
        definitions.get('no_such_msgs/msg/Thing')


def joint_state_cdr(definitions, sec: int, position: float) -> bytes:
    store = definitions.typestore('sensor_msgs/msg/JointState')
    types = store.types
    msg = types['sensor_msgs/msg/JointState'](
        header=types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](sec, 0),
                                            frame_id='base_link'),
        name=['joint_1'], position=np.array([position]), velocity=np.array([], float),
        effort=np.array([], float))
    return bytes(store.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def test_a_bag_opens_with_rosbags_and_mcap_and_carries_the_episode(definitions, tmp_path):
    bag_dir = recording_dir(tmp_path) / bag_name('cell', 2, 9)
    writer = BagWriter(bag_dir, DiskGuard(tmp_path, min_free_bytes=0))
    writer.add_topic('/joint_states', definitions.get('sensor_msgs/msg/JointState'))
    for step in range(20):
        data = joint_state_cdr(definitions, step, step * 0.1)
        assert header_stamp_ns(data) == step * 1_000_000_000
        writer.write('/joint_states', 1000 + step, data, header_stamp_ns(data))
    info = EpisodeInfo(2, 9, 'pick it', 'success', 'success', 0, 19_000_000_000)
    metadata = writer.close(info, 'cell', 'fanuc_lrmate200id', 'fanuc')
    assert set(metadata) == set(METADATA_KEYS) and metadata['recording'] == 'complete'
    with AnyReader([bag_dir]) as reader:
        positions = [reader.deserialize(raw, c.msgtype).position[0]
                     for c, _t, raw in reader.messages()]
    assert positions == pytest.approx([s * 0.1 for s in range(20)])
    with open(writer.path, 'rb') as stream:
        mcap = make_reader(stream)
        assert mcap.get_header().profile == 'ros2'
        records = {m.name: m.metadata for m in mcap.iter_metadata()}
        summary = mcap.get_summary()
    assert records[EPISODE_METADATA_NAME]['seed'] == '9'
    assert records[EPISODE_METADATA_NAME]['instruction'] == 'pick it'
    assert {c.compression for c in summary.chunk_indexes} == {'zstd'}
    assert {s.encoding for s in summary.schemas.values()} == {'ros2msg'}
    info_yaml = yaml.safe_load((bag_dir / 'metadata.yaml').read_text())
    assert info_yaml['rosbag2_bagfile_information']['message_count'] == 20
    with pytest.raises(ConfigError, match='exists already'):
        BagWriter(bag_dir, DiskGuard(tmp_path))


def test_images_become_jpeg_compressed_images(definitions):
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :32] = (255, 0, 0)  # left half red in rgb8
    store = definitions.typestore('sensor_msgs/msg/Image')
    types = store.types
    image = types['sensor_msgs/msg/Image'](
        header=types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](3, 5),
                                            frame_id='cam'),
        height=48, width=64, encoding='rgb8', is_bigendian=0, step=192,
        data=pixels.reshape(-1))
    cdr = jpeg_image_cdr(definitions, bytes(store.serialize_cdr(image, 'sensor_msgs/msg/Image')),
                         90)
    compressed = definitions.typestore('sensor_msgs/msg/CompressedImage').deserialize_cdr(
        cdr, 'sensor_msgs/msg/CompressedImage')
    assert compressed.format == 'rgb8; jpeg compressed bgr8'
    assert compressed.header.stamp.sec == 3 and compressed.header.frame_id == 'cam'
    from noetra_ros.core.images import decode_compressed
    decoded, encoding = decode_compressed(bytes(compressed.data), compressed.format)
    # image_transport's format names the JPEG's pixels: bgr8, red in channel 2.
    assert encoding == 'bgr8' and decoded[10, 5, 2] > 200 and decoded[10, 60, 2] < 50
    with pytest.raises(InputError, match='16UC1'):
        encode_jpeg('16UC1', 4, 4, 8, bytes(32), 90)


def test_a_full_disk_finishes_the_bag_before_it_is_too_late(definitions, tmp_path):
    # A byte budget behaves exactly like a disk of that size (DiskGuard): the writer stops
    # before the next chunk would not fit and the bag is still closed and readable.
    guard = DiskGuard(tmp_path, min_free_bytes=0, max_run_bytes=600_000)
    bag_dir = tmp_path / 'recording' / bag_name('cell', 0, 1)
    writer = BagWriter(bag_dir, guard, chunk_bytes=64 * 1024)
    writer.add_topic('/joint_states', definitions.get('sensor_msgs/msg/JointState'))
    noise = np.random.default_rng(0)
    written = 0
    with pytest.raises(RecordingStoppedError, match='byte budget max_run_bytes=600000'):
        for step in range(100_000):
            data = joint_state_cdr(definitions, step, float(noise.random()))
            writer.write('/joint_states', step, data)
            written += 1
    metadata = writer.close(EpisodeInfo(0, 1), 'cell', 'robot', 'driver')
    assert metadata['recording'].startswith('stopped early: byte budget')
    assert writer.path.stat().st_size <= 600_000
    with AnyReader([bag_dir]) as reader:
        assert sum(1 for _ in reader.messages()) == written > 1000
    with pytest.raises(RecordingStoppedError, match='closed'):
        writer.write('/joint_states', 0, data)


def test_the_guard_watches_free_space(tmp_path):
    guard = DiskGuard(tmp_path, min_free_bytes=100, free_bytes=lambda _path: 150)
    assert guard.problem(0, 10) == ''
    assert 'disk nearly full: 150 bytes free' in guard.problem(0, 60)
