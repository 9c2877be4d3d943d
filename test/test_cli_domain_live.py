"""`noetra run` refuses to start a cell on a ROS_DOMAIN_ID where nodes of that cell already
run: the two graphs would read each other's joint states, clock and commands; and the nodes of
a `noetra run` that is killed outright stop with it."""
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

from noetra_ros import cli
from noetra_ros.monitor import nodes_already_running
from ros_harness import ROOT, ros_env

pytestmark = pytest.mark.ros


def test_a_second_cell_on_the_same_domain_is_refused_before_anything_starts(ros_context,
                                                                            tmp_path, capsys,
                                                                            monkeypatch):
    ros_context.start()
    ros_context.probe('sim')  # a node named like the cell's simulator, on this test's domain
    assert nodes_already_running(['sim', 'expert', 'safety'], wait_s=15.0) == ['sim']
    assert nodes_already_running(['expert', 'safety'], wait_s=0.5) == []
    # Discovery by a fresh participant took over 1.5 s on a loaded CI machine; the check stops
    # early once it finds one, so a long budget costs nothing here.
    monkeypatch.setattr(cli, 'DOMAIN_CHECK_S', 15.0)
    out = tmp_path / 'run'
    code = cli.main(['run', 'pick_place_lrmate', '--episodes', '1', '--out', str(out),
                     '--no-video', '--timeout', '30'])
    error = capsys.readouterr().err
    assert code == 2
    assert "nodes ['sim'] already run on ROS_DOMAIN_ID=" in error and 'another cell' in error
    assert not list(out.glob('*.log')), 'no node of the cell may have been started'


def _processes_with(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text`."""
    found = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / 'cmdline').read_bytes().decode(errors='replace'):
                    found.append(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return found


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_a_killed_noetra_run_takes_its_nodes_with_it(ros_context, tmp_path):
    # The nodes run in sessions of their own (a Ctrl-C in the terminal reaches `noetra run`,
    # which stops them in order); a SIGKILL of `noetra run` must still end them.
    ros_context.start()  # leases this module's domain; the cell runs on it
    out = tmp_path / 'run'
    cli_process = subprocess.Popen(
        [sys.executable, '-m', 'noetra_ros.cli', 'run', 'pick_place_lrmate', '--episodes', '50',
         '--no-video', '--quiet', '--out', str(out), '--timeout', '120'],
        cwd=ROOT, env=ros_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    params = str(out / 'params.yaml')
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not (
                (out / 'sim.log').exists() and 'sim ready' in (out / 'sim.log').read_text()):
            time.sleep(0.2)
        nodes = _processes_with(params)
        assert len(nodes) >= 4, f'the cell did not start: {nodes}'
    finally:
        cli_process.kill()
        cli_process.wait()
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and _processes_with(params):
        time.sleep(0.2)
    left = _processes_with(params)
    for pid in left:  # do not leave them to the next test either way
        os.kill(pid, signal.SIGKILL)
    assert not left, f'node processes still running after noetra run was killed: {left}'
    logs = {p.name: p.read_text() for p in out.glob('*.log')}
    assert all('SIGTERM: shutting down' in text for name, text in logs.items()
               if name in ('sim.log', 'expert.log', 'safety.log')), logs
