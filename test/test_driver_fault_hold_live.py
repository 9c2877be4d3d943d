"""A driver that reports it cannot move: the supervisor holds, says why, and refuses to arm.

The simulated fanuc_driver's robot status is driven through the sim-only fault topic; the safety
node watches `fanuc_gpio_controller/robot_status` as it would on a real cell.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger
import pytest

from noetra_ros.interface_packages import interface_type
from ros_harness import NodeProcess

pytestmark = pytest.mark.ros

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
SIM = {'robot': 'fanuc_lrmate200id', 'driver': 'fanuc', 'mode': 'realtime', 'control_hz': 250,
       'physics_hz': 250, 'cameras': ['wrist_camera'], 'camera_width': 32,
       'camera_height': 24, 'camera_rate_hz': 1.0, 'episode_timeout_s': 1000.0}
SAFETY = {'robot': 'fanuc_lrmate200id', 'profile': 'industrial', 'driver': 'fanuc',
          'period_s': 0.004, 'arm_on_start': True, 'use_sim_time': True}


def _call(ros_context, client, what: str, request=None):
    assert client.wait_for_service(timeout_sec=20.0), f'{what} not available'
    future = client.call_async(request if request is not None else Trigger.Request())
    ros_context.spin_until(future.done, 20.0, what=what)
    return future.result()


@pytest.mark.parametrize('fault, text', [('e_stop', 'e_stopped'), ('error', 'in_error'),
                                         ('stmo_off', 'motion_possible false')])
def test_driver_fault_holds_and_blocks_arming(ros_context, tmp_path, fault, text):
    sim = NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path)
    safety = NodeProcess.for_node('safety', 'safety_node', SAFETY, tmp_path)
    ros_context.start()
    probe = ros_context.probe('fault_probe')
    status = probe.record('safety/status', DiagnosticStatus, qos=LATCHED)
    arm = probe.node.create_client(Trigger, 'safety/arm')
    switch_type = interface_type('fanuc_msgs', 'srv', 'SwitchControlState')
    switch = probe.node.create_client(switch_type,
                                      'fanuc_gpio_controller/switch_control_state')
    faults = probe.publisher('sim/fanuc/inject_fault', String)
    try:
        sim.start()
        safety.start()
        ros_context.spin_until(lambda: any(r.msg.message.startswith('ARMED') for r in status),
                               60.0, what='the supervisor arming on start')
        ros_context.spin_until(lambda: faults.get_subscription_count() > 0, 20.0,
                               what='the sim-only fault topic')
        faults.publish(String(data=fault))
        ros_context.spin_until(lambda: status[-1].msg.message.startswith('HOLDING'), 20.0,
                               what='a hold after the driver fault')
        assert text in status[-1].msg.message, status[-1].msg.message
        assert 'fanuc_gpio_controller/robot_status' in status[-1].msg.message
        refused = _call(ros_context, arm, 'safety/arm')
        assert not refused.success and text in refused.message, refused.message
        assert text in safety.log_text() and 'driver reports' in safety.log_text()
        faults.publish(String(data='clear'))
        # FANUC: motion resumes only after switch_control_state START (driver-interfaces.md
        # §3.4); until then the status still says motion is not possible and arming is refused.
        ros_context.spin_for(0.5)
        assert not _call(ros_context, arm, 'safety/arm').success
        started = _call(ros_context, switch, 'switch_control_state',
                        switch_type.Request(status=1))
        assert started.result == 0
        ros_context.spin_until(lambda: 'driver fault cleared' in safety.log_text(), 20.0,
                               what='the fault clearing')
        accepted = _call(ros_context, arm, 'safety/arm')
        assert accepted.success, accepted.message
    finally:
        safety.stop()
        sim.stop()
