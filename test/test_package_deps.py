"""package.xml declares every third-party package the code imports (rosdep installs from it).

Import names are mapped to rosdep keys below; a ROS package's key is its own name. A new import
that is neither mapped nor declared fails here with the file and line, so the dependency is
declared when it is added, not when someone's `rosdep install` comes up short.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
import sys
import xml.etree.ElementTree as ElementTree

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Import name -> rosdep key, for imports whose key is not the import name.
ROSDEP_KEYS = {
    'numpy': 'python3-numpy',
    'yaml': 'python3-yaml',
    'cv2': 'python3-opencv',
    'onnxruntime': 'python3-onnxruntime-pip',
    'pybullet': 'python3-pybullet-pip',
    'onnx': 'python3-onnx-pip',
    'yourdfpy': 'python3-yourdfpy-pip',
    'hypothesis': 'python3-hypothesis',
    'pytest': 'python3-pytest',
    'mcap': 'python3-mcap-pip',
    'rosbags': 'python3-rosbags-pip',
    'mcap_ros2': 'python3-mcap-ros2-support-pip',
    'foxglove': 'python3-foxglove-sdk-pip',
    'matplotlib': 'python3-matplotlib',
    'tokenizers': 'python3-tokenizers-pip',
    'websockets': 'python3-websockets',
}
# The optional learning extra: not in package.xml (see the comment there) but pinned in
# requirements-learning.txt, and imported only by noetra_ros/learning/, tools/ and tests.
LEARNING_EXTRA = {'torch': 'torch', 'pyarrow': 'pyarrow', 'av': 'av'}
# Imported only by the script that runs in LeRobot's own venv (scripts/lerobot_env.sh,
# requirements-lerobot.txt): never by the package or in the project venv.
LEROBOT_VENV = {'lerobot': 'test/lerobot_check.py'}
# *-pip keys that rosdistro's rosdep/python.yaml defines; any other *-pip key must be defined in
# the repository's rosdep/noetra_ros.yaml.
UPSTREAM_PIP_KEYS = {'python3-onnxruntime-pip', 'python3-pybullet-pip'}


def declared(*tags: str) -> set[str]:
    root = ElementTree.parse(ROOT / 'package.xml').getroot()
    return {element.text.strip() for tag in tags for element in root.iter(tag)}


def local_modules() -> set[str]:
    """Top-level names that are this repository's own code."""
    names = {'noetra_ros'}
    for folder in ('test', 'tools', 'launch'):
        names |= {p.stem for p in (ROOT / folder).glob('*.py')}
    return names


def is_optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True for an import inside `try:` whose handler catches ImportError (a soft dependency)."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = ast.unparse(handler.type) if handler.type is not None else ''
                if 'ImportError' in names or 'ModuleNotFoundError' in names:
                    return True
        child, parent = parent, parents.get(parent)
    return False


@lru_cache(maxsize=None)  # three tests read the same folders
def third_party_imports(folder: str) -> dict[str, list[str]]:
    """{top-level import name: ['path:line', ...]} of required (not optional) imports."""
    found: dict[str, list[str]] = {}
    ignore = set(sys.stdlib_module_names) | local_modules() | {'__future__'}
    for path in sorted((ROOT / folder).rglob('*.py')):
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: parent for parent in ast.walk(tree)
                   for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in ignore and not is_optional(node, parents):
                    where = f'{path.relative_to(ROOT)}:{node.lineno}'
                    found.setdefault(top, []).append(where)
    return found


def missing(imports: dict[str, list[str]], keys: set[str], allow_learning_extra) -> list[str]:
    problems = []
    for name, places in sorted(imports.items()):
        if name in LEARNING_EXTRA:
            outside = [p for p in places if not allow_learning_extra(p)]
            if outside:
                problems.append(f'{name} (optional learning extra) imported where it must not '
                                f'be needed: {", ".join(outside)}')
            continue
        key = ROSDEP_KEYS.get(name, name)
        if key not in keys:
            problems.append(f'{name} ({", ".join(places[:3])}) needs rosdep key {key!r} in '
                            'package.xml (map it in ROSDEP_KEYS if the key is not its name)')
    return problems


def test_the_package_declares_every_import_of_its_code():
    runtime = declared('depend', 'exec_depend')
    problems = missing(third_party_imports('noetra_ros'), runtime,
                       lambda place: place.startswith('noetra_ros/learning/'))
    assert not problems, 'undeclared runtime dependencies:\n' + '\n'.join(problems)


def test_tests_and_tools_import_only_declared_packages():
    everything = declared('depend', 'exec_depend', 'test_depend')
    imports: dict[str, list[str]] = {}
    for folder in ('test', 'tools', 'launch'):
        for name, places in third_party_imports(folder).items():
            imports.setdefault(name, []).extend(places)
    for name, script in LEROBOT_VENV.items():
        elsewhere = [p for p in imports.pop(name, []) if not p.startswith(script + ':')]
        assert not elsewhere, f'{name} is for {script} (its own venv) only: {elsewhere}'
    # The learning tests import the extra after pytest.importorskip, so they skip without it.
    problems = missing(imports, everything, lambda place: place.startswith(('tools/', 'test/')))
    assert not problems, 'undeclared test / tool dependencies:\n' + '\n'.join(problems)


def test_the_learning_extra_is_pinned_where_the_scripts_install_it():
    pinned = {line.split('==')[0].strip().lower()
              for line in (ROOT / 'requirements-learning.txt').read_text().splitlines()
              if '==' in line and not line.lstrip().startswith('#')}
    assert set(LEARNING_EXTRA.values()) <= pinned


def test_every_pip_key_resolves_upstream_or_in_the_repository_rosdep_file():
    local_keys = set(yaml.safe_load((ROOT / 'rosdep' / 'noetra_ros.yaml').read_text()))
    keys = declared('depend', 'exec_depend', 'test_depend', 'build_depend')
    unresolved = sorted(k for k in keys
                        if k.endswith('-pip') and k not in UPSTREAM_PIP_KEYS | local_keys)
    assert not unresolved, f'*-pip rosdep keys defined nowhere: {unresolved}'
    assert local_keys <= keys, 'rosdep/noetra_ros.yaml defines keys package.xml does not use'


def test_the_checker_sees_lazy_imports_and_skips_optional_ones():
    # Guards the test above against silently checking nothing: lazy imports inside functions
    # count (onnx in core/policy/contract.py), optional ones do not (tqdm in learning/dataset.py).
    imports = third_party_imports('noetra_ros')
    assert any(p.startswith('noetra_ros/core/policy/contract.py') for p in imports['onnx'])
    assert 'rclpy' in imports and 'numpy' in imports
    assert 'tqdm' not in imports
