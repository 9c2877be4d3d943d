"""foxglove_node over real DDS, watched by a real WebSocket client (test/foxglove_client.py):
topics advertised with the recorder's ros2msg schemas, the CDR bytes relayed as published, a
latched robot_description for a client that connects late, nothing published to the robot; and
`noetra run --foxglove --record` on a real cell, whose live channels and recorded bag both hold
every topic of the layout config/foxglove/noetra_cell.json, with the fields its panels read."""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import subprocess
import sys

from mcap.reader import make_reader
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from foxglove_client import FoxgloveClient
from noetra_ros.core.recording import MessageDefinitions
from noetra_ros.qos import LATCHED, RELIABLE
from noetra_ros.recorder_node import ament_share_dirs
from ros_harness import NodeProcess, ROOT, ros_env
from test_foxglove import layout_message_paths, layout_topics

pytestmark = [pytest.mark.ros]

TYPES = {'/joint_states': 'sensor_msgs/msg/JointState',
         '/camera/image_raw': 'sensor_msgs/msg/Image',
         '/robot_description': 'std_msgs/msg/String'}


def joint_state(k: int) -> bytes:
    msg = JointState(name=['joint_1', 'joint_2'], position=[0.001 * k, -0.5])
    msg.header.stamp.sec = k
    return serialize_message(msg)


def image(k: int) -> bytes:
    msg = Image(height=3, width=4, encoding='rgb8', step=12, data=bytes([k % 256] * 36))
    msg.header.frame_id = 'camera_optical_frame'
    return serialize_message(msg)


def assert_ros2msg_channels(client: FoxgloveClient, types: dict[str, str]) -> None:
    definitions = MessageDefinitions(ament_share_dirs())
    for topic, type_name in types.items():
        channel = client.channels[topic]
        assert channel['encoding'] == 'cdr', topic
        assert channel['schemaEncoding'] == 'ros2msg', topic
        assert channel['schemaName'] == type_name, topic
        assert channel['schema'] == definitions.get(type_name).text, topic  # as in the bags


async def watch_relay(url: str, publishers: dict, description_cdr: bytes) -> None:
    published: dict[str, list[bytes]] = {topic: [] for topic in publishers}
    counter = itertools.count()
    makers = {'/joint_states': joint_state, '/camera/image_raw': image}

    def publish_next() -> None:
        k = next(counter)
        for topic, publisher in publishers.items():
            published[topic].append(makers[topic](k))
            publisher.publish(published[topic][-1])  # raw CDR: the bytes on the wire

    async with FoxgloveClient(url) as client:
        await client.wait_channels(TYPES)
        assert_ros2msg_channels(client, TYPES)
        subscriptions = {topic: await client.subscribe(topic) for topic in publishers}
        # Published until each arrives: DDS drops what a writer sends before the match.
        await client.wait_for(
            lambda: all(client.messages.get(s) for s in subscriptions.values()),
            'a relayed message on every subscription', between=publish_next)
        for topic, subscription in subscriptions.items():
            for message in client.messages[subscription]:
                assert message.payload in published[topic], f'{topic}: payload not as published'
    # A client that connects after everything was published still gets the latched URDF.
    async with FoxgloveClient(url) as late:
        await late.wait_channels(['/robot_description'])
        subscription = await late.subscribe('/robot_description')
        await late.wait_for(lambda: late.messages.get(subscription), 'the latched description')
        assert late.messages[subscription][0].payload == description_cdr


def test_the_live_view_relays_the_cdr_bytes_and_the_latched_description(ros_context,
                                                                          tmp_path):
    ros_context.start()
    probe = ros_context.probe()
    description_cdr = serialize_message(String(
        data=(ROOT / 'urdf' / 'fanuc_lrmate200id_gripper.urdf').read_text()))
    # Published once, before the node exists: only latching can bring it to the viewer.
    probe.publisher('robot_description', String, LATCHED).publish(description_cdr)
    publishers = {'/joint_states': probe.publisher('joint_states', JointState, RELIABLE),
                  '/camera/image_raw': probe.publisher('camera/image_raw', Image, RELIABLE)}
    params = {'port': 0, 'max_image_hz': 0.0,
              'topics': ['joint_states', 'camera/image_raw', 'robot_description']}
    with NodeProcess.for_node('foxglove', 'foxglove_node', params, tmp_path / 'logs') as node:
        url = re.search(r'open (ws://[^\s]+) in Foxglove',
                        node.wait_log('Foxglove live view')).group(1)
        asyncio.run(watch_relay(url, publishers, description_cdr))
        endpoints = probe.node.get_publisher_names_and_types_by_node('foxglove', '/')
        assert {topic for topic, _types in endpoints} <= {'/rosout', '/parameter_events'}
        assert node.stop() == 0


def test_a_taken_port_ends_the_node_with_the_address_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with NodeProcess.for_node('foxglove', 'foxglove_node', {'port': port},
                                  tmp_path / 'logs') as node:
            assert node.wait_exit() == 2
            assert f'Foxglove WebSocket server on 127.0.0.1:{port}' in node.log_text()


# --------------------------------------------------------------------------- a real cell
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def field_type(definitions: MessageDefinitions, type_name: str, fields: list[str]) -> str:
    """Walk `fields` (names, indices dropped) from `type_name`; the last field's type name."""
    from rosbags.typesys.base import Nodetype
    store = definitions.typestore(type_name)
    current = type_name
    for name in fields:
        by_name = dict(store.fielddefs[current][1])
        assert name in by_name, f'{current} has no field {name!r}'
        node_type, detail = by_name[name]
        while node_type in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            node_type, detail = detail[0]
        current = str(detail) if node_type == Nodetype.NAME else str(detail[0])
    return current


async def watch_cell(url: str, topics: set[str]) -> dict[str, dict]:
    async with FoxgloveClient(url) as client:
        await client.wait_channels(topics, timeout_s=120)
        subscription = await client.subscribe('/robot_description')
        await client.wait_for(lambda: client.messages.get(subscription), 'robot_description')
        return dict(client.channels)


# The layout's topic of the fanuc driver's output, which the ros2_control cell below does not
# publish, and its type (docs/ARCHITECTURE.md).
OTHER_DRIVER_TOPICS = {
    '/joint_trajectory_controller/joint_trajectory': 'trajectory_msgs/msg/JointTrajectory'}


@pytest.mark.episodes
def test_the_layout_fits_a_running_cell_and_its_recording(tmp_path):
    # The demonstrations cell: all three cameras, the ros2_control driver (forward_position).
    expected = layout_topics() - set(OTHER_DRIVER_TOPICS)
    port = free_port()
    out = tmp_path / 'run'
    cli = subprocess.Popen(
        [sys.executable, '-m', 'noetra_ros.cli', 'run', 'pick_place_lrmate_demos', '--episodes',
         '1', '--foxglove', str(port), '--record', '--no-video', '--quiet', '--out', str(out),
         '--timeout', '240'], cwd=ROOT, env=ros_env(), stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        channels = asyncio.run(watch_cell(f'ws://127.0.0.1:{port}', expected))
        stdout, _ = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, stdout
    assert f'Foxglove live view at ws://127.0.0.1:{port}' in stdout
    report = json.loads((out / 'report.json').read_text())
    assert report['node_exit_codes']['foxglove'] == 0
    # Every message path of the layout names a field of its topic's type.
    definitions = MessageDefinitions(ament_share_dirs())
    types = {topic: channel['schemaName'] for topic, channel in channels.items()}
    for topic, fields in layout_message_paths():
        field_type(definitions, {**types, **OTHER_DRIVER_TOPICS}[topic], fields)
    # The recorded bag holds the same topics under the same names.
    bag = next((out / 'recording').iterdir())
    with open(bag / f'{bag.name}.mcap', 'rb') as stream:
        recorded = {c.topic for c in make_reader(stream).get_summary().channels.values()}
    assert expected <= recorded, sorted(expected - recorded)

