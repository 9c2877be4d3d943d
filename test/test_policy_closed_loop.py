"""The shipped ONNX policy closes the loop: in-process, and through the deployed ROS 2 graph.

The shipped model completes about 7 in 8 held-out episodes (models/MODEL_CARD.md), so these
tests use held-out seeds it completed in its evaluation; lockstep makes each run repeat exactly
on one machine. Another CPU can round onnxruntime's float sums differently, so the in-process
test allows one of its five seeds to flip. The in-process run is the shipped cell's graph
without ROS (its world, episode limit, policy loop and safety supervisor); the graph test runs
the same seed as the first episode of a `noetra eval` run, which the in-process evaluation
reproduces to the control step (tools/compare_inprocess_graph.py).
"""
from __future__ import annotations

import pytest

from noetra_ros.bringup import share_dir
from noetra_ros.learning.record import EvalSettings, evaluate_policy
from ros_harness import eval_one_graph_episode, ros_env

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

MODEL = share_dir() / 'models' / 'pick_place_lrmate.onnx'
# Held out from training (seeds 0..559); completed by the shipped policy in its evaluation.
SEEDS = [10000, 10001, 10002, 10003, 10004]
GRAPH_SEED = 10001


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', ros_env()['PYTHONPATH'])


def test_shipped_policy_completes_episodes_in_process():
    # The shipped cell's setting (a new chunk every 2 steps, temporal ensembling, the
    # collaborative supervisor, 25 s episodes). on_step (what tools/policy_failures.py reads)
    # sees every step: the object rises on the way to the bin.
    steps, heights = {}, {}

    def on_step(seed, world, status):
        steps[seed] = steps.get(seed, 0) + 1
        heights.setdefault(seed, []).append(float(world.target_object_pose()[0][2]))

    settings = EvalSettings.from_cell('pick_place_lrmate_policy')
    assert settings.loop.replan_steps == 2 and settings.loop.blend == 'ensemble'
    result = evaluate_policy(MODEL, SEEDS, settings, on_step=on_step)
    assert sum(result.successes) >= len(SEEDS) - 1, result.explanations
    control_hz = settings.world_config().control_hz
    for seed, ok, sim_time, counters in zip(result.seeds, result.successes, result.sim_times,
                                            result.interventions):
        assert steps[seed] == round(sim_time * control_hz)
        # Every command went through the supervisor: armed once (auto_arm), then followed.
        assert counters['armed'] == 1 and counters['accepted_commands'] == steps[seed]
        if ok:
            assert max(heights[seed]) > heights[seed][0] + 0.05


def test_one_run_keeps_the_supervisor_across_resets_as_the_graph_does():
    seeds = SEEDS[:2]
    alone = evaluate_policy(MODEL, seeds)
    run = evaluate_policy(MODEL, seeds, as_one_run=True)
    # A run's first episode is the same either way, to the control step.
    assert (run.successes[0], run.sim_times[0]) == (alone.successes[0], alone.sim_times[0])
    # The reset teleports the arm: the supervisor kept across it sees a tracking fault, which
    # auto_arm clears; an episode on its own starts from a supervisor that was never armed.
    assert run.interventions[1]['tracking_faults'] == 1 and run.interventions[1]['armed'] == 2
    assert 'tracking_faults' not in alone.interventions[1]
    assert alone.interventions[1]['armed'] == 1


def test_shipped_policy_completes_an_episode_through_the_supervisor(tmp_path):
    # sim_node + policy_node + safety_node as three processes over Fast DDS, lockstep; the
    # policy's commands reached the robot only through the supervisor, which stayed armed.
    report, evaluation = eval_one_graph_episode('pick_place_lrmate_policy', GRAPH_SEED,
                                                tmp_path)
    assert report['topics']['forward_position_controller/commands']['count'] > 50
    assert 'joint_trajectory_controller/joint_trajectory' not in report['topics']
    # The in-process evaluation runs this episode (the first of its run) to the same step.
    settings = EvalSettings.from_cell('pick_place_lrmate_policy')
    inprocess = evaluate_policy(MODEL, [GRAPH_SEED], settings)
    episode, = evaluation['episode_results']
    half_step = 0.5 / settings.world_config().control_hz  # the report rounds to 1 ms
    assert inprocess.successes == [True]
    assert inprocess.sim_times[0] == pytest.approx(episode['duration_s'], abs=half_step)
