"""`noetra eval` over real DDS writes what a person reads: a captioned scene video of at least
320 x 240, the plots next to its JSON, and the command trace of a failed episode."""
from __future__ import annotations

import json

import cv2
import pytest

from noetra_ros.cli import main as noetra_main
from ros_harness import ros_env

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

# The expert needs about 6 s of sim per episode (docs/results/run_expert_seeds0-99_report.json):
# a 3 s limit makes both episodes fail, so the run has a failed episode to trace.
EPISODE_LIMIT_S = 3.0


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch):
    # The cell's nodes run as `python -m noetra_ros.<node>` child processes.
    monkeypatch.setenv('PYTHONPATH', ros_env()['PYTHONPATH'])


def read_video(path: str) -> list:
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        ok, frame = capture.read()
        while ok:
            frames.append(frame)
            ok, frame = capture.read()
    finally:
        capture.release()
    return frames


def test_eval_writes_captioned_video_plots_and_failed_trace(tmp_path):
    out, json_path = tmp_path / 'run', tmp_path / 'eval' / 'lrmate.json'
    code = noetra_main(['eval', 'pick_place_lrmate', '--episodes', '2', '--seed', '3',
                        '--out', str(out), '--quiet', '--timeout', '180', '--json',
                        str(json_path), '--set', f'sim.episode_timeout_s={EPISODE_LIMIT_S}'])
    report = json.loads((out / 'report.json').read_text())
    logs = {p.name: p.read_text()[-1500:] for p in out.glob('*.log')}
    assert code == 0 and not report['error'], f'exit {code}: {report["error"]}\n{logs}'
    episodes = report['episodes']
    assert [e['success'] for e in episodes] == [False, False]
    # The sim's task/status says what each episode was: the groups of the success plot.
    assert all(e['target_object'].count('_') == 1 and 1 <= e['distractors'] <= 3
               for e in episodes), episodes

    evaluation = json.loads(json_path.read_text())
    stem = tmp_path / 'eval' / 'lrmate'
    assert evaluation['plots'] == [f'{stem}_{kind}.png' for kind in ('success', 'latency',
                                                                     'trace')]
    for path in evaluation['plots']:
        image = cv2.imread(path)
        assert image is not None and image.shape[0] >= 300 and image.shape[1] >= 800, path
    assert report['evaluation']['plots'] == evaluation['plots']

    # The first failed episode's trace: commanded and measured positions of the six arm joints.
    trace = report['failed_episode_trace']
    assert trace['episode'] == 0 and trace['seed'] == 3 and len(trace['joints']) == 6
    for series in ('commanded', 'measured'):
        samples = trace[series]
        # 20 Hz steps over the 3 s episode.
        assert 40 <= len(samples['t_s']) == len(samples['positions']) <= 70, series
        assert {len(q) for q in samples['positions']} == {6}
    assert len(report['command_latency_samples_ms']) == report['command_latency_ms']['n'] > 50

    frames = read_video(report['video'])
    assert len(frames) == report['video_frames'] > 30
    height, width = frames[0].shape[:2]
    assert width >= 320 and height >= 240
    # The caption's dark band over the top of the frame, where the scene is bright background.
    assert frames[-1][:6].mean() < 0.6 * frames[-1][height // 3:height // 2].mean()
