"""Shared test setup: the test tiers, a private DDS domain per test module, an rclpy session.

Tiers (markers registered in pyproject.toml; README "Tests"):
- `ros`: talks DDS, through rclpy in this process or through node processes;
- `episodes`: runs closed-loop episodes (in process or through the node graph);
- `slow`: takes more than a few seconds of CPU for another reason (model training).
The fast tier is everything else: `bash scripts/test.sh --fast`.

A test module marks itself with a `pytestmark = ...` line; tests that use `ros_context` are marked
`ros` here. The marks are enforced for DDS: a test without `ros` runs with a ROS_DOMAIN_ID that
rcl refuses, so rclpy.init() or a node process started by it fails at once, and the failure
report names the missing marker, instead of the fast tier depending on DDS unnoticed.
"""
import os
import warnings

import pytest

from ros_harness import DomainLease, kill_leftovers_on_domain, RosSession

# rcl parses ROS_DOMAIN_ID as an integer and fails rcl_init ("ROS_DOMAIN_ID is not an integral
# number") for anything else.
NO_DDS_DOMAIN_ID = 'none-in-tests-not-marked-ros'


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if 'ros_context' in item.fixturenames:
            item.add_marker(pytest.mark.ros)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if (report.failed and item.get_closest_marker('ros') is None
            and 'ROS_DOMAIN_ID' in report.longreprtext):
        report.sections.append((
            'test tiers', f'{item.nodeid} is not marked `ros`, so it runs with ROS_DOMAIN_ID='
            f'{NO_DDS_DOMAIN_ID!r} and cannot use DDS. If it needs DDS, mark it: '
            '`pytestmark = pytest.mark.ros` (see test/conftest.py).'))
    return report


@pytest.fixture(scope='module', autouse=True)
def ros_domain_id(request):
    """A ROS_DOMAIN_ID leased for this module, set in os.environ before any rclpy.init.

    Child processes inherit it; parallel test runs on this machine lease different ids.
    """
    lease = DomainLease.acquire()
    previous = os.environ.get('ROS_DOMAIN_ID')
    os.environ['ROS_DOMAIN_ID'] = str(lease.domain_id)
    try:
        yield lease.domain_id
    finally:
        if previous is None:
            os.environ.pop('ROS_DOMAIN_ID', None)
        else:
            os.environ['ROS_DOMAIN_ID'] = previous
        leaked = kill_leftovers_on_domain(lease.domain_id)
        if leaked:  # a test bug: said in the warnings summary, naming the processes
            warnings.warn(f'{request.module.__name__} left {len(leaked)} node process(es) '
                          f'running on ROS domain {lease.domain_id}, killed: {leaked}',
                          stacklevel=2)
        lease.release()


@pytest.fixture(autouse=True)
def no_dds_outside_ros_tests(request, ros_domain_id, monkeypatch):
    """Tests not marked `ros` get a ROS_DOMAIN_ID that makes any DDS use fail (module docstring).

    Module- and class-scoped fixtures are set up before this one, so a rig shared by a `ros`
    module still gets the leased domain.
    """
    if request.node.get_closest_marker('ros') is None:
        monkeypatch.setenv('ROS_DOMAIN_ID', NO_DDS_DOMAIN_ID)


@pytest.fixture
def ros_context(ros_domain_id, tmp_path):
    """An unstarted RosSession: call `.start({node: params})`; closed after the test."""
    session = RosSession(tmp_path)
    try:
        yield session
    finally:
        session.close()
