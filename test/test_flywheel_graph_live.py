"""The flywheel through ROS: an expert episode recorded from the deployed graph
(`noetra run pick_place_lrmate_demos --record`: expert -> supervisor -> simulated arm, the
recorder writing the bag) and converted by `noetra convert` gives the same training data as the
in-process recorder on the same seed: the same columns (privileged scene state included, from
sim/environment_state), the same first frame, the same images, commands that agree."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from noetra_ros.learning.convert import convert
from noetra_ros.learning.dataset import episode_bounds, read_dataset
from noetra_ros.learning.record import record, RecordConfig
from ros_harness import ROOT, ros_env

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

SEED = 0


def test_a_graph_recording_converts_into_the_in_process_recorders_dataset(tmp_path):
    run = tmp_path / 'run'
    done = subprocess.run([sys.executable, '-m', 'noetra_ros.cli', 'run',
                           'pick_place_lrmate_demos', '--episodes', '1', '--seed', str(SEED),
                           '--record', '--no-video', '--quiet', '--out', str(run),
                           '--timeout', '240'],
                          cwd=ROOT, env=ros_env(), timeout=300, capture_output=True, text=True)
    logs = {p.name: p.read_text()[-1500:] for p in run.glob('*.log')}
    assert done.returncode == 0, f'noetra run exited {done.returncode}:\n{done.stdout[-2000:]}\n' \
                                 f'{done.stderr[-2000:]}\n{logs}'
    report = json.loads((run / 'report.json').read_text())
    assert [e['success'] for e in report['episodes']] == [True]
    summary = convert([run / 'recording'], tmp_path / 'graph')
    assert summary.episodes == 1 and not summary.skipped
    record(RecordConfig(episodes=1, first_seed=SEED), tmp_path / 'inprocess')

    graph, inprocess = read_dataset(tmp_path / 'graph'), read_dataset(tmp_path / 'inprocess')
    key = 'observation.environment_state'
    assert graph.names(key) == inprocess.names(key)
    assert graph.names('observation.state') == inprocess.names('observation.state')
    assert graph.tasks == inprocess.tasks
    # The same steps: the graph's first frame is the in-process recorder's first, or - when the
    # recorder missed the first joint_states (discovery still matching it) - its second.
    # Everything from there on must line up: state, scene state, command, images. (Placed by
    # the order the recorder logged them in, a command taken from its subscription before the
    # state it answers shifted the actions one step against the states, 1 run in 5; convert
    # places commands by DDS source time now.)
    offset = next((o for o in (0, 1) if np.allclose(graph.action[0], inprocess.action[o],
                                                    atol=1e-6)), None)
    assert offset is not None, (graph.action[0], inprocess.action[:2])
    np.testing.assert_allclose(graph.state[0], inprocess.state[offset], atol=1e-6)
    np.testing.assert_allclose(graph.environment_state[0], inprocess.environment_state[offset],
                               atol=1e-4)
    for camera in ('workspace_camera', 'wrist_camera'):
        first = np.abs(graph.images[camera][0].astype(int)
                       - inprocess.images[camera][offset].astype(int))
        assert first.mean() < 2.0, f'{camera}: first frames differ (video coding aside)'
    # The same demonstration: within a few steps of the same length (the graph ends the
    # episode on the sim's schedule, the in-process recorder after its linger), and the
    # commands over the common part agree closely (the graph adds the supervisor's limits).
    (g0, g1), = episode_bounds(graph)
    (i0, i1), = episode_bounds(inprocess)
    assert abs((g1 - g0) - (i1 - i0)) <= 0.1 * (i1 - i0)
    n = min(g1 - g0, i1 - i0 - offset)
    arm_error = np.abs(graph.action[:n, :6] - inprocess.action[offset:offset + n, :6])
    assert np.median(arm_error) < 0.01, f'median |command difference| {np.median(arm_error)}'
