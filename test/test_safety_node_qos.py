"""safety_node's `joint_states_qos` parameter on the real node over real DDS.

MotoROS2 publishes joint_states best effort; a reliable subscriber never matches such a writer
(DDS request/offer rule), so the node would never see a measurement and never arm. With
`joint_states_qos: sensor_data` it subscribes best effort and receives it.
"""
from __future__ import annotations

import pytest

from noetra_ros.core.robots import home_positions, robot_spec
from ros_harness import NodeProcess

pytestmark = pytest.mark.ros

ROBOT = 'fanuc_lrmate200id'
PARAMS = {'robot': ROBOT, 'profile': 'industrial', 'period_s': 0.05}


def stream_joint_states(probe, publisher) -> None:
    """Fresh joint_states (node clock = system time) at 20 Hz while the session spins."""
    from rclpy.clock import Clock
    from sensor_msgs.msg import JointState
    names = list(robot_spec(ROBOT).joint_names)
    positions = [float(v) for v in home_positions(ROBOT)]

    def tick() -> None:
        msg = JointState(name=names, position=positions)
        msg.header.stamp = Clock().now().to_msg()
        publisher.publish(msg)
    probe.node.create_timer(0.05, tick)


def arm(session, probe) -> tuple[bool, str]:
    from std_srvs.srv import Trigger
    client = probe.node.create_client(Trigger, 'safety/arm')
    # The service is created after the node's subscriptions.
    session.spin_until(client.service_is_ready, 30.0, 'safety/arm service')
    session.spin_for(1.0)  # a second of joint_states (or of nothing arriving)
    future = client.call_async(Trigger.Request())
    session.spin_until(future.done, 20.0, 'safety/arm answer')
    return bool(future.result().success), str(future.result().message)


@pytest.mark.parametrize('joint_states_qos, arms', [('sensor_data', True), ('reliable', False)])
def test_best_effort_joint_states_reach_the_node_only_with_sensor_data_qos(
        ros_context, tmp_path, joint_states_qos, arms):
    from noetra_ros.qos import SENSOR_DATA
    from sensor_msgs.msg import JointState
    session = ros_context.start()
    probe = session.probe('motoros2_like_driver')
    publisher = probe.publisher('joint_states', JointState, SENSOR_DATA)  # best effort
    with NodeProcess.for_node('safety', 'safety_node',
                              dict(PARAMS, joint_states_qos=joint_states_qos), tmp_path):
        stream_joint_states(probe, publisher)
        ok, message = arm(session, probe)
    assert ok is arms, message
    if not arms:
        assert 'joint_states not fresh' in message


def test_an_unknown_joint_states_qos_ends_the_node_naming_the_parameter(tmp_path):
    proc = NodeProcess.for_node('safety', 'safety_node',
                                dict(PARAMS, joint_states_qos='best_effort'), tmp_path)
    with proc:
        code = proc.wait_exit(30.0)
    assert code == 2
    assert 'joint_states_qos' in proc.log_text() and "'best_effort'" in proc.log_text()
