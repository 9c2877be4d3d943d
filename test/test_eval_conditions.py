"""Evaluation conditions of issue 15: how an evaluation episode's instruction is phrased and
how its cameras are lit (EvalSettings.phrasing / .lighting), evalcheck's --phrasing /
--lighting and tools/eval_robustness.py.

Episodes here run the hold baseline (an ONNX model with no camera input) for a fraction of a
second: what is checked is which instruction and light an episode got, not the success.
"""
import importlib.util
import json
from pathlib import Path

import onnx
import pytest

from noetra_ros.core import phrasing
from noetra_ros.core.errors import UnknownNameError
from noetra_ros.core.policy.baselines import hold_policy_model
from noetra_ros.core.robots import robot_spec
from noetra_ros.core.sim.lighting import CONDITIONS
from noetra_ros.core.sim.task import COLOURS, PLACES, SHAPES
from noetra_ros.core.sim.world import SimWorld, WorldConfig
from noetra_ros.core.stats import wilson_interval
from noetra_ros.learning.record import (episode_instruction, EvalSettings, evaluate_policy,
                                        parse_phrasing)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (81000, 81001)
EVERY_TASK = [phrasing.TaskWords(c, s, p) for c in COLOURS for s in SHAPES for p in PLACES]


@pytest.fixture(scope='module')
def hold_model(tmp_path_factory):
    path = tmp_path_factory.mktemp('hold') / 'hold.onnx'
    onnx.save(hold_policy_model(robot_spec('fanuc_lrmate200id').joint_names), str(path))
    return path


@pytest.fixture(scope='module')
def template_instructions():
    """seed -> the task's own instruction (what the sim draws for the seed)."""
    with SimWorld(WorldConfig()) as world:
        return {seed: world.reset(seed).instruction for seed in range(81000, 81040)}


def test_held_out_and_synonym_phrasings_never_occur_in_training():
    # The pre-registration: no text a policy may be trained on is ever an evaluation phrasing.
    train = set(phrasing.all_phrasings('train'))
    for split in ('held_out', 'synonyms'):
        held_out = set(phrasing.all_phrasings(split))
        assert held_out and not held_out & train, (split, sorted(held_out & train)[:3])
    for words in EVERY_TASK:
        for language in phrasing.LANGUAGES:
            assert not (set(phrasing.phrasings(words, 'held_out', language))
                        & set(phrasing.phrasings(words, 'train')))


@pytest.mark.parametrize('choice, split, language', [
    ('held_out:en', 'held_out', 'en'), ('held_out:ja', 'held_out', 'ja'),
    ('synonyms', 'synonyms', None), ('train:ja', 'train', 'ja')])
def test_a_phrasing_is_drawn_per_seed_from_the_named_split_only(template_instructions, choice,
                                                               split, language):
    settings = EvalSettings.from_cell(phrasing=choice)
    drawn = {}
    for seed, template in template_instructions.items():
        text = settings.instruction(template, seed)
        assert text == settings.instruction(template, seed)            # same seed, same text
        assert text == episode_instruction(template, seed, choice)     # whatever ran before
        allowed = phrasing.phrasings(phrasing.parse_template_instruction(template), split,
                                     language)
        assert text in allowed, (seed, text)
        assert text != template
        drawn[seed] = text
    # 40 seeds draw several phrasings, not one fixed text.
    assert len({text for text in drawn.values()}) > 5


def test_the_template_phrasing_is_the_tasks_own_text(template_instructions):
    settings = EvalSettings.from_cell()
    assert (settings.lighting, settings.phrasing) == ('default', 'template')
    for seed, template in template_instructions.items():
        assert settings.instruction(template, seed) == template


@pytest.mark.parametrize('text, message', [
    ('heldout', "'heldout' is not a phrasing split"),
    ('held_out:fr', "language 'fr'"),
    ('held_out:', "language ''"),
    ('', "'' is not a phrasing split")])
def test_an_unknown_phrasing_is_refused_naming_what_is_wrong(text, message):
    with pytest.raises(UnknownNameError, match=message):
        parse_phrasing(text)
    with pytest.raises(UnknownNameError, match='EvalSettings.phrasing'):
        EvalSettings.from_cell(phrasing=text)


def test_an_unknown_lighting_condition_is_refused_and_a_known_one_lights_the_world():
    with pytest.raises(UnknownNameError, match="EvalSettings.lighting: 'dim'.*darker_30"):
        EvalSettings.from_cell(lighting='dim')
    settings = EvalSettings.from_cell(lighting='darker_30')
    assert settings.world_config().lighting == CONDITIONS['darker_30']
    assert EvalSettings.from_cell().world_config().lighting == CONDITIONS['default']
    assert 'lighting darker_30, phrasing template' in settings.describe()


def test_a_cell_can_name_the_lighting_of_its_sim_node(tmp_path):
    cell = tmp_path / 'dim.yaml'
    cell.write_text(
        'cell: {name: dim, robot: fanuc_lrmate200id}\n'
        'nodes:\n'
        '  - {name: sim, executable: sim_node, parameters: {lighting: warm}}\n'
        '  - {name: policy, executable: policy_node, parameters: {model_path: m.onnx}}\n'
        '  - {name: safety, executable: safety_node, parameters: {profile: industrial,\n'
        '     period_s: 0.05, update_trigger: command}}\n')
    assert EvalSettings.from_cell(str(cell)).lighting == 'warm'
    assert EvalSettings.from_cell(str(cell), lighting='side').lighting == 'side'


@pytest.mark.episodes  # tenths of a second each, of the hold baseline
def test_evaluate_policy_gives_each_episode_its_phrasing_and_the_conditions_light(
        hold_model, template_instructions):
    settings = EvalSettings.from_cell(episode_timeout_s=0.2, lighting='cool',
                                      phrasing='held_out:ja')
    lights = {}

    def on_step(seed, world, status):
        lights[seed] = world.lighting

    result = evaluate_policy(hold_model, SEEDS, settings, on_step=on_step)
    assert result.instructions == [
        episode_instruction(template_instructions[s], s, 'held_out:ja') for s in SEEDS]
    assert all(text in phrasing.phrasings(
        phrasing.parse_template_instruction(template_instructions[s]), 'held_out', 'ja')
        for s, text in zip(SEEDS, result.instructions))
    assert lights == {s: CONDITIONS['cool'] for s in SEEDS}
    assert 'lighting cool, phrasing held_out:ja' in result.label
    # Reversed order: every episode keeps its own instruction.
    again = evaluate_policy(hold_model, SEEDS[::-1], settings)
    assert again.instructions == result.instructions[::-1]


@pytest.mark.episodes  # tenths of a second each, of the hold baseline
def test_evalcheck_prints_and_writes_the_conditions(hold_model, template_instructions,
                                                    tmp_path, capsys):
    from noetra_ros.learning.__main__ import main

    output = tmp_path / 'eval.json'
    code = main(['evalcheck', '--model', str(hold_model), '--seeds', '81000,81001',
                 '--episode-timeout', '0.2', '--lighting', 'darker_15', '--phrasing',
                 'held_out:en', '--json', str(output)])
    assert code == 0
    summary = capsys.readouterr().out
    assert 'lighting darker_15, phrasing held_out:en' in summary
    assert '0/2 successful' in summary
    written = json.loads(output.read_text())[0]
    assert (written['lighting'], written['phrasing']) == ('darker_15', 'held_out:en')
    assert written['instructions'] == [
        episode_instruction(template_instructions[s], s, 'held_out:en') for s in SEEDS]
    # A bad condition is a usage error naming it, not a traceback.
    assert main(['evalcheck', '--model', str(hold_model), '--lighting', 'dim']) == 2
    assert "'dim'" in capsys.readouterr().err


def load_tool():
    spec = importlib.util.spec_from_file_location('eval_robustness',
                                                  ROOT / 'tools' / 'eval_robustness.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_robustness_grid_is_the_pre_registered_one_and_its_table_is_right():
    tool = load_tool()
    assert tool.DEFAULT_SEEDS == '81000:81030'
    assert tool.CONDITIONS[tool.IN_DISTRIBUTION] == ('default', 'template')
    assert set(tool.CONDITIONS) == {'in_distribution', 'held_out:en', 'held_out:ja', 'synonyms',
                                    'darker_15', 'darker_30', 'warm', 'cool', 'side'}
    for lighting, phrasing_choice in tool.CONDITIONS.values():
        EvalSettings.from_cell(lighting=lighting, phrasing=phrasing_choice)  # all valid
    records = {name: {'lighting': tool.CONDITIONS[name][0], 'phrasing': tool.CONDITIONS[name][1],
                      'successes': [True] * ok + [False] * (30 - ok)}
               for name, ok in (('in_distribution', 28), ('held_out:en', 11), ('side', 0))}
    lines = tool.table(records, list(tool.CONDITIONS))
    row = next(line for line in lines if line.startswith('held_out:en'))
    low, high = wilson_interval(11, 30)
    assert '11/30' in row and f'[{low:.2f}, {high:.2f}]' in row
    assert row.split()[-1] == f'{(11 / 30) / (28 / 30):.2f}'
    assert next(line for line in lines if line.startswith('side')).split()[-1] == '0.00'
    assert not any(line.startswith('darker_30') for line in lines)   # not run: no row
    # Without the in-distribution row there is nothing to divide by.
    lines = tool.table({'side': records['side']}, ['side'])
    assert lines[1].split()[-1] == 'n/a'


@pytest.mark.episodes  # tenths of a second each, of the hold baseline
def test_robustness_tool_runs_a_subset_and_reuses_its_json(hold_model, tmp_path, capsys):
    tool = load_tool()
    output = tmp_path / 'grid.json'
    common = ['--model', str(hold_model), '--seeds', '81000,81001', '--episode-timeout', '0.2',
              '--json', str(output)]
    assert tool.main(common + ['--conditions', 'in_distribution,held_out:ja']) == 0
    text = capsys.readouterr().out
    assert 'in_distribution' in text and 'held_out:ja' in text and '0/2' in text
    stored = json.loads(output.read_text())
    assert [r['condition'] for r in stored['conditions']] == ['in_distribution', 'held_out:ja']
    assert stored['conditions'][1]['instructions'] != stored['conditions'][0]['instructions']
    # A second run adds the missing condition and reuses the stored ones.
    assert tool.main(common + ['--conditions', 'in_distribution,darker_30']) == 0
    assert 'reusing in_distribution' in capsys.readouterr().out
    stored = json.loads(output.read_text())
    assert [r['condition'] for r in stored['conditions']] == [
        'in_distribution', 'held_out:ja', 'darker_30']
    with pytest.raises(SystemExit):
        tool.main(common[:-2] + ['--json', str(output), '--conditions', 'warmth'])
    with pytest.raises(SystemExit, match='another model'):
        tool.main(['--model', str(hold_model), '--seeds', '81002', '--episode-timeout', '0.2',
                   '--json', str(output), '--conditions', 'warm'])
