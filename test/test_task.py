"""Task vocabulary, seeded sampling and the success checker (pure numpy, no simulator)."""
import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.sim.task import (
    BinSpec, check_task, COLOURS, instruction_text, MAX_DISTRACTORS, ObjectSpec, PLACES,
    REST_SPEED_M_S, sample_layout, sample_task, SHAPES, TableSpec)

BINS = {
    'left': BinSpec('left', centre_xy=(0.45, 0.34), inner_size_xy=(0.18, 0.15),
                    floor_top_z=0.01, rim_z=0.07),
    'right': BinSpec('right', centre_xy=(0.45, -0.34), inner_size_xy=(0.18, 0.15),
                     floor_top_z=0.01, rim_z=0.07),
}
TABLE = TableSpec(x_range=(-0.3, 0.9), y_range=(-0.6, 0.6), top_z=0.0)
IN_LEFT = np.array([0.45, 0.34, 0.03])


def _check(pos=IN_LEFT, speed=0.0, touching=False, place='left', elapsed=5.0, timeout=40.0):
    return check_task(np.asarray(pos), speed, touching, BINS, place, TABLE, elapsed, timeout)


def test_vocabulary_and_instruction():
    assert COLOURS == ('red', 'green', 'blue', 'yellow')
    assert set(PLACES) == {'left', 'right'}
    assert instruction_text('red', 'cube', 'left') == \
        'pick the red cube and place it in the left bin'
    with pytest.raises(ConfigError, match='vocabulary'):
        instruction_text('purple', 'cube', 'left')
    with pytest.raises(ConfigError, match='colour'):
        ObjectSpec('purple', 'cube')
    with pytest.raises(ConfigError, match='rim_z'):
        BinSpec('left', (0, 0), (0.1, 0.1), floor_top_z=0.1, rim_z=0.05)


@pytest.mark.parametrize('seed', range(20))
def test_sample_task_unique_objects_and_counts(seed):
    task = sample_task(np.random.default_rng(seed))
    names = [o.name for o in task.objects]
    assert len(set(names)) == len(names)
    assert 1 <= len(task.distractors) <= MAX_DISTRACTORS
    assert task.place in PLACES
    assert task.target.colour in task.instruction and task.target.shape in task.instruction
    # The instruction names exactly one object on the table.
    assert sum(o.colour == task.target.colour and o.shape == task.target.shape
               for o in task.objects) == 1


def test_sample_task_is_seeded_and_covers_vocabulary():
    assert sample_task(np.random.default_rng(7)) == sample_task(np.random.default_rng(7))
    tasks = [sample_task(np.random.default_rng(s)) for s in range(200)]
    assert {t.target.colour for t in tasks} == set(COLOURS)
    assert {t.target.shape for t in tasks} == set(SHAPES)
    assert {t.place for t in tasks} == set(PLACES)
    assert {len(t.distractors) for t in tasks} == {1, 2, 3}
    with pytest.raises(ConfigError, match='distractors'):
        sample_task(np.random.default_rng(0), 2, 5)


def test_sample_layout_spacing_and_failure():
    rows = sample_layout(np.random.default_rng(3), 4, (0.3, 0.6), (-0.2, 0.2), 0.1)
    assert rows.shape == (4, 3)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.linalg.norm(rows[i, :2] - rows[j, :2]) >= 0.1
    assert np.all((rows[:, 0] >= 0.3) & (rows[:, 0] <= 0.6))
    with pytest.raises(ConfigError, match='could not place'):
        sample_layout(np.random.default_rng(0), 5, (0.0, 0.05), (0.0, 0.05), 0.1)


def test_success_needs_footprint_rim_rest_and_release():
    assert _check().success
    assert _check().phase == 'success'
    held = _check(touching=True)
    assert not held.success and held.phase == 'running' and 'held' in held.explanation
    moving = _check(speed=REST_SPEED_M_S * 2)
    assert not moving.success and 'not at rest' in moving.explanation
    outside = _check(pos=[0.45 + 0.1, 0.34, 0.03])  # beyond the 0.09 half width
    assert not outside.success
    above_rim = _check(pos=[0.45, 0.34, 0.08])
    assert not above_rim.success


def test_failures():
    wrong = _check(place='right')
    assert wrong.phase == 'failure' and 'wrong (left) bin' in wrong.explanation
    fell = _check(pos=[0.4, 0.0, -0.3])
    assert fell.phase == 'failure' and 'off the table' in fell.explanation
    off_edge = _check(pos=[1.2, 0.0, 0.02])
    assert off_edge.phase == 'failure'
    late = _check(pos=[0.4, 0.0, 0.02], elapsed=41.0)
    assert late.phase == 'failure' and 'timeout' in late.explanation and late.done
    # Success wins over the timeout when both hold at the same instant.
    assert _check(elapsed=41.0).success
