"""`noetra run` refuses to start a cell on a ROS_DOMAIN_ID where nodes of that cell already
run: the two graphs would read each other's joint states, clock and commands."""
import pytest

from noetra_ros import cli
from noetra_ros.monitor import nodes_already_running

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
