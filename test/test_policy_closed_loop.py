"""The shipped ONNX policy closes the loop: in-process, and through the deployed ROS 2 graph.

The shipped model completes about 7 in 8 held-out episodes (models/MODEL_CARD.md), so these
tests use held-out seeds it completed in its evaluation; lockstep makes each run repeat exactly
on one machine. Another CPU can round onnxruntime's float sums differently, so the in-process
test allows one of its five seeds to flip.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from noetra_ros.bringup import share_dir
from noetra_ros.cli import main as noetra_main
from noetra_ros.core.sim.world import WorldConfig
from noetra_ros.learning.record import evaluate_policy
from ros_harness import ros_env

MODEL = share_dir() / 'models' / 'pick_place_lrmate.onnx'
# Held out from training (seeds 0..559); completed by the shipped policy in its evaluation.
SEEDS = [10000, 10001, 10002, 10003, 10004]
GRAPH_SEED = 10001


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', ros_env()['PYTHONPATH'])


def test_shipped_policy_completes_episodes_in_process():
    # The evaluated setting: a new chunk every 2 steps, temporal ensembling. on_step (what
    # tools/policy_failures.py reads) sees every step: the object rises on the way to the bin.
    steps, heights = {}, {}

    def on_step(seed, world, status):
        steps[seed] = steps.get(seed, 0) + 1
        heights.setdefault(seed, []).append(float(world.target_object_pose()[0][2]))

    result = evaluate_policy(MODEL, SEEDS, replan_every=2, blend='ensemble', on_step=on_step)
    assert sum(result.successes) >= len(SEEDS) - 1, result.explanations
    for seed, ok, sim_time in zip(result.seeds, result.successes, result.sim_times):
        assert steps[seed] == round(sim_time * WorldConfig().control_hz)
        if ok:
            assert max(heights[seed]) > heights[seed][0] + 0.05


def test_shipped_policy_completes_an_episode_through_the_supervisor(tmp_path):
    # sim_node + policy_node + safety_node as three processes over Fast DDS, lockstep.
    out = tmp_path / 'run'
    code = noetra_main(['eval', 'pick_place_lrmate_policy', '--episodes', '1', '--seed',
                        str(GRAPH_SEED), '--out', str(out), '--quiet', '--no-video', '--timeout',
                        '180', '--json', str(tmp_path / 'eval.json')])
    report = json.loads((out / 'report.json').read_text())
    logs = {p.name: p.read_text()[-1500:] for p in out.glob('*.log')}
    assert code == 0 and not report['error'], f'exit {code}: {report["error"]}\n{logs}'
    evaluation = json.loads((tmp_path / 'eval.json').read_text())
    assert evaluation['successes'] == 1, report['episodes']
    policy = report['health']['policy: policy']['values']
    assert int(policy['commands']) > 50 and int(policy['input_errors']) == 0
    # The policy's commands reached the robot only through the supervisor, which stayed armed.
    safety = report['health']['safety: supervisor']['values']
    assert safety['state'] == 'ARMED' and int(safety['published']) > 50
    assert report['topics']['forward_position_controller/commands']['count'] > 50
    assert 'joint_trajectory_controller/joint_trajectory' not in report['topics']
