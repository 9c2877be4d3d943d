"""Fixtures for tests that use ROS: a private DDS domain per test module and an rclpy session."""
import os

import pytest

from ros_harness import DomainLease, RosSession


@pytest.fixture(scope='module', autouse=True)
def ros_domain_id():
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
        lease.release()


@pytest.fixture
def ros_context(ros_domain_id, tmp_path):
    """An unstarted RosSession: call `.start({node: params})`; closed after the test."""
    session = RosSession(tmp_path)
    try:
        yield session
    finally:
        session.close()
