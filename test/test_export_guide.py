"""docs/EXPORT_LEROBOT.md stays true to the cells and the code it tells users to run.

The per-cell tables are regenerated from config/cells/*.yaml (tools/cell_io_table.py) and must
equal the doc's; the fingerprint command the doc prints is run and must give the contract
example's value; the files the doc links to exist.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
import re
import subprocess
import sys

import pytest

from noetra_ros.bringup import available_cells
from noetra_ros.core.policy.contract import locate_contract

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / 'docs' / 'EXPORT_LEROBOT.md'


def _load_tool():
    spec = importlib.util.spec_from_file_location('cell_io_table',
                                                  ROOT / 'tools' / 'cell_io_table.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return _load_tool()


@pytest.fixture(scope='module')
def tables(tool):
    return tool.all_tables()


def test_the_guides_cell_tables_are_what_the_cells_say(tool, tables):
    assert tool.doc_tables(GUIDE.read_text()) == tables, (
        'docs/EXPORT_LEROBOT.md differs from config/cells: paste `python tools/cell_io_table.py` '
        'between its cell-io-table markers')


def test_every_cell_has_its_table(tables):
    headings = re.findall(r'^#### `([^`]+)`$', tables, flags=re.MULTILINE)
    assert headings == available_cells()


def test_the_cameras_marked_for_the_policy_are_its_models_cameras(tables):
    section = tables.split('#### `pick_place_lrmate_policy`', 1)[1].split('####', 1)[0]
    marked = re.findall(r'`(\w+)` \d+ x \d+ rgb8 @ [\d.]+ Hz[^<|]*read by the policy', section)
    shipped = locate_contract(ROOT / 'models' / 'pick_place_lrmate.onnx').contract
    assert marked == list(shipped.cameras)


def test_driver_names_are_mapped_for_the_fanuc_cell(tables):
    section = tables.split('#### `pick_place_lrmate_policy_fanuc`', 1)[1].split('####', 1)[0]
    assert '`J1` .. `J6` (`fanuc` naming), mapped to `joint_1` .. `joint_6`' in section
    assert '500 Hz `joint_states`, realtime' in section


def test_check_mode_refuses_a_drifted_doc(tool, tmp_path):
    drifted = tmp_path / 'guide.md'
    text = GUIDE.read_text()
    drifted.write_text(text.replace('128 x 96 rgb8 @ 20 Hz', '128 x 96 rgb8 @ 30 Hz', 1))
    assert tool.main(['--check', str(drifted)]) == 1
    assert tool.main(['--check', str(GUIDE)]) == 0


def test_check_mode_names_missing_markers(tool):
    with pytest.raises(ValueError, match='cell-io-table'):
        tool.doc_tables('# a doc without the generated block\n')


def test_the_fingerprint_command_prints_the_examples_kinematics():
    text = GUIDE.read_text()
    command = re.search(r'^python -c "(.+)"$', text, flags=re.MULTILINE).group(1)
    printed = subprocess.run([sys.executable, '-c', command], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout.strip()
    example = re.search(r'kinematics: (sha256:[0-9a-f]{64})', text).group(1)
    assert printed == example


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens (code fences skipped: a `# comment` there is no heading)."""
    prose = re.sub(r'^```.*?^```', '', markdown, flags=re.MULTILINE | re.DOTALL)
    headings = re.findall(r'^#+ (.+)$', prose, flags=re.MULTILINE)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


def test_the_guides_links_lead_to_existing_files_and_headings():
    links = re.findall(r'\]\(((?!https?:)[^)#]*)(?:#([^)]*))?\)', GUIDE.read_text())
    broken = []
    for target, anchor in links:
        path = GUIDE.parent / target if target else GUIDE
        if not path.exists():
            broken.append(target)
        elif anchor and anchor not in _heading_anchors(path.read_text()):
            broken.append(f'{target}#{anchor}')
    assert links and not broken
