"""recorder_node over real DDS: the expert cell recorded by `noetra run --record` (one bag per
episode, read back with rosbags and with mcap-ros2-support), a cell without task/status (one
bag per run, split by the service) and a full disk (byte budget) that stops recording cleanly."""
from __future__ import annotations

from collections import Counter
import json
from pathlib import Path
import subprocess
import sys

from mcap.reader import make_reader
from mcap_ros2.reader import read_ros2_messages
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from ros_harness import NodeProcess, ROOT, ros_env

pytestmark = [pytest.mark.ros]

CONTROL_PERIOD_NS = 50_000_000  # the cell's control_hz 20


def episode_record(mcap_path: Path) -> dict[str, str]:
    with open(mcap_path, 'rb') as stream:
        reader = make_reader(stream)
        records = {m.name: m.metadata for m in reader.iter_metadata()}
        assert {c.compression for c in reader.get_summary().chunk_indexes} == {'zstd'}
        log_times = [message.log_time for _schema, _channel, message
                     in reader.iter_messages(log_time_order=False)]
    assert log_times == sorted(log_times), f'{mcap_path}: log times go back'
    return records['noetra_episode']


@pytest.mark.episodes
def test_noetra_run_record_writes_one_readable_bag_per_episode(tmp_path):
    out = tmp_path / 'run'
    subprocess.run([sys.executable, '-m', 'noetra_ros.cli', 'run', 'pick_place_lrmate',
                    '--episodes', '2', '--seed', '3', '--record', '--no-video', '--quiet',
                    '--out', str(out), '--timeout', '240'],
                   cwd=ROOT, env=ros_env(), check=True, timeout=300, capture_output=True)
    report = json.loads((out / 'report.json').read_text())
    assert report['node_exit_codes']['recorder'] == 0
    bags = sorted((out / 'recording').iterdir())
    assert [b.name for b in bags] == ['pick_place_lrmate_ep000_seed3',
                                      'pick_place_lrmate_ep001_seed4']
    every_stamp: list[int] = []
    for bag, episode in zip(bags, report['episodes']):
        mcap_path = bag / f'{bag.name}.mcap'
        metadata = episode_record(mcap_path)
        assert metadata['seed'] == str(episode['seed'])
        assert metadata['instruction'] == episode['instruction']
        assert metadata['result'] == ('success' if episode['success'] else 'failed')
        assert metadata['recording'] == 'complete'
        start = int(metadata['start_stamp_ns'])
        with AnyReader([bag]) as reader:
            topics = {c.topic for c in reader.connections}
            stamps = [reader.deserialize(raw, c.msgtype).header.stamp for c, _t, raw
                      in reader.messages([c for c in reader.connections
                                          if c.topic == '/joint_states'])]
        assert {'/joint_states', '/scene_camera/image_raw', '/wrist_camera/image_raw',
                '/clock', '/task/status', '/safety/position_commands',
                '/forward_position_controller/commands', '/tf', '/tf_static',
                '/robot_description'} <= topics
        stamps_ns = [s.sec * 1_000_000_000 + s.nanosec for s in stamps]
        # Every step of the episode, from its first: one joint_states per control period.
        assert stamps_ns[0] == start
        assert set(np.diff(stamps_ns)) == {CONTROL_PERIOD_NS}
        assert stamps_ns[-1] >= int(metadata['end_stamp_ns'])
        every_stamp += stamps_ns
        decoded = Counter(m.channel.topic for m in read_ros2_messages(str(mcap_path)))
        assert decoded['/joint_states'] == len(stamps_ns)
        assert decoded['/scene_camera/image_raw'] > 0
    # Nothing lost between the episodes either: one joint_states per step across the bags,
    # at least as many as the runner's monitor counted.
    assert set(np.diff(every_stamp)) == {CONTROL_PERIOD_NS}
    assert len(every_stamp) >= report['topics']['joint_states']['count']


def publish_script(topic_type: str, count: int, image: bool) -> str:
    """A separate publisher process: `count` messages on `topic` at 50 Hz."""
    return f'''
import time, numpy as np, rclpy
from sensor_msgs.msg import Image, JointState
rclpy.init()
node = rclpy.create_node('feeder')
pub = node.create_publisher({topic_type}, {'"camera/image_raw"' if image else '"joint_states"'}, 10)
while pub.get_subscription_count() == 0:
    rclpy.spin_once(node, timeout_sec=0.05)
time.sleep(0.5)
noise = np.random.default_rng(0)
for i in range({count}):
    if {image}:
        msg = Image(height=480, width=640, encoding='rgb8', step=1920,
                    data=noise.integers(0, 255, 640 * 480 * 3, dtype=np.uint8).tobytes())
    else:
        msg = JointState(name=['joint_1'], position=[float(i)])
    msg.header.stamp.sec = i
    pub.publish(msg)
    time.sleep(0.02)
time.sleep(0.5)
node.destroy_node(); rclpy.shutdown()
'''


def run_feeder(topic_type: str, count: int, image: bool = False) -> None:
    subprocess.run([sys.executable, '-c', publish_script(topic_type, count, image)],
                   cwd=ROOT, env=ros_env(), check=True, timeout=120)


def test_a_cell_without_task_status_gets_one_bag_per_run_split_on_request(tmp_path):
    params = {'output_dir': str(tmp_path), 'cell': 'real_cell', 'robot': 'fanuc_crx10ia',
              'driver': 'fanuc', 'startup_wait_s': 0.5, 'topics': ['joint_states']}
    with NodeProcess.for_node('recorder', 'recorder_node', params, tmp_path / 'logs') as node:
        node.wait_log('one bag per run')
        run_feeder('JointState', 30)
        mark = node.log_mark()
        subprocess.run([sys.executable, '-c', '''
import rclpy
from std_srvs.srv import Trigger
rclpy.init(); n = rclpy.create_node('splitter')
c = n.create_client(Trigger, 'recorder/split'); assert c.wait_for_service(timeout_sec=20)
f = c.call_async(Trigger.Request()); rclpy.spin_until_future_complete(n, f, timeout_sec=20)
assert f.result().success, f.result().message
'''], cwd=ROOT, env=ros_env(), check=True, timeout=60)
        node.wait_log('bag real_cell_ep000_seednone', since=mark)
        run_feeder('JointState', 20)
        assert node.stop() == 0
    bags = sorted((tmp_path / 'recording').iterdir())
    assert [b.name for b in bags] == ['real_cell_ep000_seednone', 'real_cell_ep001_seednone']
    counts = []
    for bag in bags:
        metadata = episode_record(bag / f'{bag.name}.mcap')
        assert metadata['seed'] == '' and metadata['result'] == 'unknown'
        assert metadata['driver'] == 'fanuc'
        with AnyReader([bag]) as reader:
            counts.append(sum(1 for _ in reader.messages()))
    assert counts == [30, 20]


def test_a_full_disk_closes_the_bag_and_the_node_keeps_running(tmp_path):
    # max_run_bytes is the honest seam: the guard treats it exactly as a disk of that size.
    params = {'output_dir': str(tmp_path), 'cell': 'real_cell', 'episodes': 'run',
              'max_run_bytes': 4_000_000, 'topics': ['camera/image_raw']}
    with NodeProcess.for_node('recorder', 'recorder_node', params, tmp_path / 'logs') as node:
        node.wait_log('one bag per run')
        run_feeder('Image', 20, image=True)
        log = node.wait_log('Recording stopped')
        assert 'byte budget max_run_bytes=4000000 reached' in log
        assert node.running()  # not in the control path: it goes on without recording
        assert node.stop() == 0
    bag = tmp_path / 'recording' / 'real_cell_ep000_seednone'
    mcap_path = bag / f'{bag.name}.mcap'
    metadata = episode_record(mcap_path)
    assert metadata['recording'].startswith('stopped early: byte budget')
    assert mcap_path.stat().st_size <= 4_000_000
    with AnyReader([bag]) as reader:
        images = [reader.deserialize(raw, c.msgtype) for c, _t, raw in reader.messages()]
    assert 1 <= len(images) < 20 and images[0].width == 640
