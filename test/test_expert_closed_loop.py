"""Closed loop over real DDS: `noetra run` starts the sim (lockstep) and the expert as processes.

Seeds 3..5 succeed with the in-process expert (tools/expert_success.py: seeds 0..29 all
succeed on the LR Mate); lockstep makes the node runs repeat them whatever the machine load.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from noetra_ros.bringup import cells_dir
from noetra_ros.cli import main as noetra_main
from ros_harness import ros_env

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

CELL = 'pick_place_lrmate'
# A smaller scene camera than the cell's 320 x 240 keeps the run short; the video follows it.
SCENE = {'width': 160, 'height': 120, 'rate_hz': 10.0}


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch):
    # `noetra run` starts `python -m noetra_ros.<node>` from the current folder: make the source
    # tree importable wherever pytest runs (colcon runs it from the package folder).
    monkeypatch.setenv('PYTHONPATH', ros_env()['PYTHONPATH'])


def run(cell: str, out: Path, episodes: int, seed: int, *extra: str) -> dict:
    """`noetra run` in this process (the nodes are child processes); returns report.json."""
    code = noetra_main(['run', cell, '--episodes', str(episodes), '--seed', str(seed),
                        '--out', str(out), '--quiet', '--timeout', '120',
                        '--set', f'sim.scene_camera={json.dumps(SCENE)}', *extra])
    report_file = out / 'report.json'
    assert report_file.is_file(), f'noetra run wrote no report (exit code {code})'
    report = json.loads(report_file.read_text())
    logs = {p.name: p.read_text()[-2000:] for p in out.glob('*.log')}
    assert code == 0 and not report['error'], f'exit {code}: {report["error"]}\n{logs}'
    return report


def expert_only_cell(tmp_path: Path) -> Path:
    """The shipped cell reduced to sim + expert, the expert talking to the sim directly."""
    raw = yaml.safe_load((cells_dir() / f'{CELL}.yaml').read_text())
    raw['nodes'] = [n for n in raw['nodes'] if n['name'] in ('sim', 'expert')]
    for node in raw['nodes']:
        node.pop('remappings', None)
    path = tmp_path / 'sim_expert.yaml'
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def assert_rate(report: dict, topic: str, hz: float) -> None:
    assert topic in report['topics'], f'{topic} not seen; topics: {sorted(report["topics"])}'
    assert report['topics'][topic]['sim_hz'] == pytest.approx(hz, rel=0.05), topic


def test_shipped_cell_expert_episodes_succeed_with_report_and_video(tmp_path):
    report = run(CELL, tmp_path / 'run', 2, 3)

    assert report['mode'] == 'lockstep'
    episodes = report['episodes']
    assert [e['seed'] for e in episodes] == [3, 4]
    assert all(e['success'] for e in episodes), episodes
    assert all(0 < e['duration_s'] < 25.0 for e in episodes)
    assert report['rejected_commands'] == 0
    for topic in ('joint_states', '/clock', 'force_torque_sensor_broadcaster/wrench',
                  'forward_position_controller/commands', 'gripper_position_controller/commands',
                  'task/status'):
        assert_rate(report, topic, 20.0)
    for topic in ('scene_camera/image_raw', 'scene_camera/camera_info',
                  'wrist_camera/image_raw', 'wrist_camera/camera_info'):
        assert_rate(report, topic, 10.0)

    video = Path(report['video'])
    assert video.is_file() and video.parent == tmp_path / 'run'
    capture = cv2.VideoCapture(str(video))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    assert len(frames) == report['video_frames'] > 50
    assert {f.shape for f in frames} == {(SCENE['height'], SCENE['width'], 3)}
    # The arm moves through the scene: the first and a middle frame differ visibly.
    change = np.abs(frames[0].astype(int) - frames[len(frames) // 2].astype(int)).mean()
    assert change > 1.0


@pytest.mark.parametrize('cell', ['sim_expert', 'shipped'])
def test_expert_trajectory_interface_completes_an_episode(cell, tmp_path):
    """`command_interface: trajectory`: straight into the sim's JointTrajectory input, and
    through whatever the shipped cell puts between them."""
    path = str(expert_only_cell(tmp_path)) if cell == 'sim_expert' else CELL
    report = run(path, tmp_path / 'run', 1, 5, '--no-video',
                 '--set', 'expert.command_interface=trajectory')
    (episode,) = report['episodes']
    assert episode['seed'] == 5 and episode['success'], episode
    assert report['rejected_commands'] == 0
    if cell == 'sim_expert':
        assert_rate(report, 'joint_trajectory_controller/joint_trajectory', 20.0)
        assert 'forward_position_controller/commands' not in report['topics']
