"""scripts/env.sh and scripts/build.sh are sourced into people's shells: they must leave the
shell's options as they were (a `set -e` left behind closes an interactive terminal at the first
failing command) and report a failed setup with status 1 instead of exiting the shell.

env.sh runs against a real venv made here with its requirement stamps current, so nothing is
installed; build.sh runs a real colcon build into a temporary folder.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The shell options a person may have on; each case must come out of `source` unchanged.
CALLER_OPTIONS = ['set +e', 'set -euo pipefail', 'set -u; shopt -s nullglob extglob']
# Prints the caller's options before and after sourcing, then proves the shell survives a
# failing command (with `set -e` left on by the script it would have exited before the echo).
PROBE = '''{options}
before="$(set +o; shopt -p)"
source {script}
status=$?
after="$(set +o; shopt -p)"
if [ "$before" = "$after" ]; then echo options-kept
else diff <(echo "$before") <(echo "$after"); fi
echo "status=$status"
set +e
false
echo still-here
echo "cwd=$PWD"
echo "venv=${{VIRTUAL_ENV:-}}"
'''


@pytest.fixture(scope='module')
def current_venv(tmp_path_factory):
    """A real venv whose stamp says requirements.txt is installed (so env.sh installs nothing)."""
    venv = tmp_path_factory.mktemp('venv') / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    stamp = hashlib.sha256((ROOT / 'requirements.txt').read_bytes()).hexdigest()[:16]
    (venv / '.noetra-req').write_text(stamp + '\n')
    return venv


def source_in_bash(script: str, options: str, env: dict[str, str], cwd: Path) -> str:
    probe = PROBE.format(options=options, script=ROOT / 'scripts' / script)
    result = subprocess.run(['bash', '-c', probe], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def base_env(venv: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ('NOETRA_WITH_LEARNING', 'NOETRA_WITH_DEV', 'VIRTUAL_ENV')}
    env.update(NOETRA_VENV=str(venv), **extra)
    return env


@pytest.mark.parametrize('options', CALLER_OPTIONS)
def test_sourcing_env_sh_keeps_the_callers_shell_options(current_venv, tmp_path, options):
    out = source_in_bash('env.sh', options, base_env(current_venv), cwd=tmp_path)
    assert 'options-kept' in out.splitlines(), out
    assert 'status=0' in out and 'still-here' in out
    assert f'cwd={ROOT}' in out  # env.sh works from the repository
    assert f'venv={current_venv}' in out


def test_a_failed_setup_returns_1_and_leaves_the_shell_running(tmp_path):
    # A venv that cannot be created: the strict part fails, the caller's shell goes on.
    blocked = tmp_path / 'file'
    blocked.write_text('not a folder')
    out = source_in_bash('env.sh', 'set +e', base_env(blocked / 'venv'), cwd=tmp_path)
    assert 'options-kept' in out.splitlines(), out
    assert 'status=1' in out and 'still-here' in out
    assert f'cwd={tmp_path}' in out  # nothing changed either


@pytest.mark.slow
def test_sourcing_build_sh_keeps_the_options_and_puts_the_nodes_on_path(current_venv, tmp_path):
    colcon = shutil.which('colcon', path=str(Path(sys.executable).parent))
    if colcon is None:
        pytest.skip('colcon is not installed next to this Python')
    # colcon comes from this interpreter's folder; the build goes to tmp_path, not ./install.
    # build.sh builds the interface packages first; those the repository's install/ already has
    # (scripts/test.sh builds them before the tests) count as provided by the environment, so
    # build_interfaces.sh takes its skip path here instead of minutes of colcon.
    built = [str(p.parents[4]) for p in
             sorted((ROOT / 'install').glob('*/share/ament_index/resource_index/packages/*'))
             if p.name != 'noetra_ros']
    env = base_env(current_venv, NOETRA_BUILD_ROOT=str(tmp_path / 'ws'),
                   PATH=f'{Path(colcon).parent}{os.pathsep}{os.environ["PATH"]}',
                   AMENT_PREFIX_PATH=os.pathsep.join(
                       built + [os.environ.get('AMENT_PREFIX_PATH', '')]).strip(os.pathsep))
    probe_tail = 'command -v noetra sim_node'
    out = source_in_bash('build.sh', 'set +e', env, cwd=tmp_path)
    assert 'options-kept' in out.splitlines(), out
    assert '[noetra] interface packages' in out or 'not building ours' in out, out
    assert 'status=0' in out and 'still-here' in out
    result = subprocess.run(
        ['bash', '-c', f'source {ROOT}/scripts/build.sh > /dev/null; {probe_tail}'],
        env=env, capture_output=True, text=True, timeout=300)
    installed = tmp_path / 'ws' / 'install' / 'noetra_ros' / 'lib' / 'noetra_ros'
    assert result.stdout.split() == [str(installed / 'noetra'), str(installed / 'sim_node')], (
        result.stdout + result.stderr)
