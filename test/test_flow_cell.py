"""The shipped flow-matching policy (models/pick_place_lrmate_flow, issue 15) in its own cell.

It replaced nothing: it shipped as `pick_place_lrmate_flow_policy` by the rule of
docs/ROBUSTNESS.md (second test range, 82000-82059). Tests here check what that rests on and
what a user of the cell relies on: policy_node loads it from its contract alone, it completes
template episodes in process and through the ROS graph, and it follows instructions the
word-vocabulary model cannot (Japanese; English phrasings never trained on). Seeds are from
its validation run (docs/results/robustness_validation_flow_ensemble_noise_*.json), where it
completed them; lockstep makes each run repeat on one machine, and another CPU can round
onnxruntime's sums differently, so the in-process template test allows one of five to flip.
"""
from __future__ import annotations

import pytest

from noetra_ros.bringup import load_cell, share_dir
from noetra_ros.core.policy.contract import contract_from_yaml
from noetra_ros.learning.record import EvalSettings, evaluate_policy
from ros_harness import eval_one_graph_episode, ros_env

pytestmark = [pytest.mark.ros, pytest.mark.episodes]

CELL = 'pick_place_lrmate_flow_policy'
MODEL = share_dir() / 'models' / 'pick_place_lrmate_flow' / 'policy.contract.yaml'
SHIPPED = share_dir() / 'models' / 'pick_place_lrmate.onnx'
TEMPLATE_SEEDS = [80000, 80001, 80002, 80003, 80004]


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', ros_env()['PYTHONPATH'])


def test_the_cell_differs_from_the_shipped_policy_cell_only_in_its_model():
    flow, shipped = load_cell(CELL, None), load_cell('pick_place_lrmate_policy', None)
    by_name = {node.name: node for node in shipped.nodes}
    for node in flow.nodes:
        other = dict(by_name[node.name].parameters)
        own = dict(node.parameters)
        if node.name == 'policy':
            model_path = str(own.pop('model_path'))
            assert model_path.endswith('pick_place_lrmate_flow/policy.contract.yaml')
            other.pop('model_path')
        assert own == other, node.name
    contract = contract_from_yaml(MODEL.read_text())
    assert contract.embodiment.robot == 'fanuc_lrmate200id'
    assert [stage.kind for stage in contract.pipeline] == ['run', 'denoise']


def test_the_flow_cell_completes_template_episodes_in_process():
    settings = EvalSettings.from_cell(CELL)
    result = evaluate_policy(MODEL, TEMPLATE_SEEDS, settings)
    assert sum(result.successes) >= len(TEMPLATE_SEEDS) - 1, result.explanations
    for counters in result.interventions:
        assert counters['armed'] == 1 and counters['accepted_commands'] > 0


@pytest.mark.parametrize('phrasing, seed, sentence', [
    ('held_out:ja', 80004, '左の箱へ赤い立方体をお願いします'),
    ('held_out:en', 80000, 'drop the green block in the right container'),
])
def test_the_flow_cell_follows_instructions_the_word_vocabulary_model_does_not(phrasing, seed,
                                                                                sentence):
    settings = EvalSettings.from_cell(CELL, phrasing=phrasing)
    flow = evaluate_policy(MODEL, [seed], settings)
    assert flow.instructions == [sentence]
    assert flow.successes == [True], flow.explanations
    if phrasing == 'held_out:ja':
        # The shipped model's word vocabulary has no Japanese: 0 of 60 on the test range.
        shipped = evaluate_policy(SHIPPED, [seed], settings)
        assert shipped.successes == [False]


def test_the_flow_cell_completes_an_episode_through_the_ros_graph(tmp_path):
    # sim_node + policy_node (the two-graph contract, 4 denoising steps) + safety_node over
    # Fast DDS, lockstep; the same episode as in process, to the control step.
    seed = TEMPLATE_SEEDS[1]
    _, evaluation = eval_one_graph_episode(CELL, seed, tmp_path)
    inprocess = evaluate_policy(MODEL, [seed], EvalSettings.from_cell(CELL))
    episode, = evaluation['episode_results']
    half_step = 0.5 / EvalSettings.from_cell(CELL).world_config().control_hz
    assert inprocess.successes == [True]
    assert inprocess.sim_times[0] == pytest.approx(episode['duration_s'], abs=half_step)
