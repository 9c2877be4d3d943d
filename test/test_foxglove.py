"""The live view without DDS: the Foxglove layout (config/foxglove/noetra_cell.json) and the
topics it names, `with_foxglove` / the address rule of bringup, the image throttle.
test/test_foxglove_live.py runs the node and a real cell."""
from __future__ import annotations

from pathlib import Path
import json
import re

import pytest

from noetra_ros.bringup import (available_cells, foxglove_address, foxglove_url, load_cell,
                                with_foxglove)
from noetra_ros.core.errors import ConfigError
from noetra_ros.foxglove_node import ImageThrottle

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_FILE = ROOT / 'config' / 'foxglove' / 'noetra_cell.json'
# Panel types of the layout (the part of a panel id before '!').
PANEL_TYPES = {'3D', 'Image', 'Plot', 'StateTransitions', 'Indicator', 'RawMessages'}


def layout() -> dict:
    return json.loads(LAYOUT_FILE.read_text())


def panel_ids(tree) -> list[str]:
    """The panel ids of a layout tree (a panel id, or a split with `first` and `second`)."""
    if isinstance(tree, str):
        return [tree]
    return panel_ids(tree['first']) + panel_ids(tree['second'])


def split_path(path: str) -> tuple[str, list[str]]:
    """A Foxglove message path `/topic.field[i].field` -> (topic, field names); ROS topic names
    hold no dots."""
    topic, _, fields = path.partition('.')
    return topic, [re.sub(r'\[.*?\]', '', f) for f in fields.split('.')] if fields else []


def layout_message_paths() -> list[tuple[str, list[str]]]:
    """(topic, fields) of every message path the panels read."""
    paths = []
    for panel_id, config in layout()['configById'].items():
        kind = panel_id.split('!')[0]
        if kind in ('Plot', 'StateTransitions'):
            paths += [split_path(series['value']) for series in config['paths']]
        elif kind == 'Indicator':
            paths.append(split_path(config['path']))
    return paths


def layout_topics() -> set[str]:
    """Every topic the layout names."""
    topics = {topic for topic, _fields in layout_message_paths()}
    for panel_id, config in layout()['configById'].items():
        kind = panel_id.split('!')[0]
        if kind == '3D':
            topics |= set(config['topics'])
        elif kind == 'Image':
            topics.add(config['imageMode']['imageTopic'])
        elif kind == 'RawMessages':
            topics.add(split_path(config['topicPath'])[0])
    return topics


def cell_camera_topics() -> set[str]:
    return {f'/{camera}/image_raw' for name in available_cells()
            for camera in load_cell(name).node('sim').parameters['cameras']}


def test_the_layout_is_a_foxglove_layout_of_known_panels():
    data = layout()
    assert set(data) == {'configById', 'globalVariables', 'userNodes', 'playbackConfig',
                         'layout'}
    shown = panel_ids(data['layout'])
    assert sorted(shown) == sorted(data['configById']), 'every panel placed exactly once'
    assert {panel.split('!')[0] for panel in shown} <= PANEL_TYPES
    for panel_id, config in data['configById'].items():
        kind = panel_id.split('!')[0]
        if kind == 'Plot':  # a series without enabled: true draws nothing
            assert all(series['enabled'] is True for series in config['paths']), panel_id
        if kind == 'Indicator':  # Foxglove compares with rawValue strings
            assert all(isinstance(rule['rawValue'], str) for rule in config['rules'])
        if kind == '3D':
            assert config['topics']['/robot_description']['visible'] is True


def test_the_layout_shows_every_camera_the_cells_publish_and_no_other():
    images = {config['imageMode']['imageTopic'] for panel_id, config
              in layout()['configById'].items() if panel_id.startswith('Image!')}
    assert images == cell_camera_topics()


def test_every_other_topic_of_the_layout_is_one_of_the_documented_graph():
    # docs/ARCHITECTURE.md's topic table names each topic of the graph in backquotes; the
    # layout uses fully qualified names, as the live view and the recorded bags do.
    architecture = (ROOT / 'docs' / 'ARCHITECTURE.md').read_text()
    others = layout_topics() - cell_camera_topics()
    assert {'/joint_states', '/robot_description', '/safety/status', '/safety/audit',
            '/task/status', '/forward_position_controller/commands'} <= others
    undocumented = [t for t in sorted(others)
                    if f'`{t}`' not in architecture and f'`{t.lstrip("/")}`' not in architecture]
    assert not undocumented, f'layout topics that are not in the graph: {undocumented}'


def test_message_paths_are_split_into_topic_and_fields():
    assert split_path('/joint_trajectory_controller/joint_trajectory.points[0].positions[3]') \
        == ('/joint_trajectory_controller/joint_trajectory', ['points', 'positions'])
    assert split_path('/safety/audit') == ('/safety/audit', [])


def test_with_foxglove_adds_the_live_view_node_and_bringup_accepts_it(tmp_path):
    cell = load_cell('pick_place_lrmate')
    live = with_foxglove(cell)
    assert [n.name for n in live.nodes] == [*(n.name for n in cell.nodes), 'foxglove']
    node = live.node('foxglove')
    assert node.executable == 'foxglove_node'
    assert dict(node.parameters) == {'host': '127.0.0.1', 'port': 8765, 'use_sim_time': True}
    assert node.command('p.yaml')[1:3] == ['-m', 'noetra_ros.foxglove_node']
    params = live.write_params_file(tmp_path / 'params.yaml').read_text()
    assert 'foxglove:' in params and 'port: 8765' in params
    real = with_foxglove(load_cell('pick_place_lrmate', hardware='real'), '0.0.0.0:9000')
    assert dict(real.node('foxglove').parameters) == {'host': '0.0.0.0', 'port': 9000,
                                                       'use_sim_time': False}
    # A cell file may name the executable too.
    text = Path(cell.source).read_text() + (
        '  - name: viewer\n    executable: foxglove_node\n    parameters: {port: 9001}\n')
    (tmp_path / 'viewed.yaml').write_text(text)
    assert load_cell(str(tmp_path / 'viewed.yaml')).node('viewer').parameters['port'] == 9001
    setup = (ROOT / 'setup.py').read_text()
    assert "'foxglove_node = noetra_ros.foxglove_node:main'" in setup


def test_the_address_is_port_or_host_and_port():
    assert foxglove_address('') == ('127.0.0.1', 8765)
    assert foxglove_address('9000') == ('127.0.0.1', 9000)
    assert foxglove_address('0.0.0.0:9000') == ('0.0.0.0', 9000)
    assert foxglove_url('127.0.0.1', 9000) == 'ws://127.0.0.1:9000'
    assert 'this machine' in foxglove_url('0.0.0.0', 9000)
    for bad in ('viewer', '70000', '0.0.0.0:', 'host:port'):
        with pytest.raises(ConfigError, match=re.escape(repr(bad))):
            foxglove_address(bad)


def test_the_image_throttle_passes_at_most_max_hz():
    throttle = ImageThrottle(10.0)
    arrivals = [0.0, 0.03, 0.06, 0.099, 0.1, 0.15, 0.25]
    assert [throttle.due(t) for t in arrivals] == [True, False, False, False, True, False, True]
    every = ImageThrottle(0.0)
    assert all(every.due(t) for t in arrivals)
