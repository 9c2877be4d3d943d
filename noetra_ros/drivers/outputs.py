"""safety_node's output stage: the supervisor's limited targets, in the driver's interface.

The supervisor decides a position target every cycle (one per driver joint_states message);
this module only hands it to the driver the cell names (core/drivers/profiles.py):

- `forward_position`: std_msgs/Float64MultiArray on `forward_position_controller/commands`
  (generic ros2_control; fanuc_driver's fanuc_forward_command configuration), one per cycle.
- `joint_trajectory`: trajectory_msgs/JointTrajectory on `joint_trajectory_controller/
  joint_trajectory`, one single-point trajectory per cycle, `TRAJECTORY_LEAD_PERIODS` cycles
  ahead with a zero header stamp ("start now"): the controller interpolates from where it is to
  the newest target, as when a servoing client streams into a JTC. Positions only: the JTC
  refuses a last point with non-zero velocity (driver-interfaces.md §3.4).
- `point_queue`: MotoROS2's queue_traj_point service (drivers/motoros2_client.py).

Each output also reports what the driver says of itself (`fault()`): fanuc_gpio_controller's
robot_status (e_stopped, in_error, !motion_possible) or MotoROS2's robot_status; the safety
cell holds the arm while a fault is reported and names it.
"""
from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Duration
import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from noetra_ros.core.safety.cell import SafetyNodeSettings
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import FANUC_STATUS, RELIABLE

# Lead of a streamed single-point trajectory, in supervisor cycles: one would make the JTC
# reach each target exactly when the next arrives (a late message = a stop); two leave a cycle
# of slack while adding one cycle (2 ms at 500 Hz) of delay.
TRAJECTORY_LEAD_PERIODS = 2


def _in_namespace(namespace: str, name: str) -> str:
    return f'{namespace.rstrip("/")}/{name}' if namespace else name


class DriverOutput:
    """Base: `send(positions, now)` with positions in the driver's joint order."""

    kind = ''

    def __init__(self, node: Node, joint_names: list[str], namespace: str) -> None:
        self.node = node
        self.joint_names = list(joint_names)
        self.namespace = namespace
        self.sent = 0
        self._fault: str | None = None
        self._status_seen = False

    def send(self, positions: np.ndarray, now: float) -> None:
        raise NotImplementedError

    def fault(self) -> str | None:
        return self._fault

    def status(self) -> dict[str, Any]:
        return {'output': self.kind, 'sent': self.sent, 'driver_status_seen': self._status_seen,
                'driver_fault': self._fault or ''}


class ForwardPositionOutput(DriverOutput):
    kind = 'forward_position'

    def __init__(self, node: Node, joint_names: list[str], namespace: str) -> None:
        super().__init__(node, joint_names, namespace)
        self.topic = _in_namespace(namespace, 'forward_position_controller/commands')
        self.pub = node.create_publisher(Float64MultiArray, self.topic, RELIABLE)

    def send(self, positions: np.ndarray, now: float) -> None:
        self.pub.publish(Float64MultiArray(data=[float(v) for v in positions]))
        self.sent += 1


class JointTrajectoryOutput(DriverOutput):
    kind = 'joint_trajectory'

    def __init__(self, node: Node, joint_names: list[str], namespace: str,
                 period_s: float) -> None:
        super().__init__(node, joint_names, namespace)
        self.topic = _in_namespace(namespace, 'joint_trajectory_controller/joint_trajectory')
        self.pub = node.create_publisher(JointTrajectory, self.topic, RELIABLE)
        lead_ns = int(round(TRAJECTORY_LEAD_PERIODS * period_s * 1e9))
        self.lead = Duration(sec=lead_ns // 1_000_000_000, nanosec=lead_ns % 1_000_000_000)

    def send(self, positions: np.ndarray, now: float) -> None:
        msg = JointTrajectory()  # header.stamp zero: the controller starts it on receipt
        msg.joint_names = self.joint_names
        msg.points = [JointTrajectoryPoint(positions=[float(v) for v in positions],
                                           time_from_start=self.lead)]
        self.pub.publish(msg)
        self.sent += 1


class FanucStatusWatcher:
    """fanuc_gpio_controller/robot_status -> the fault the supervisor holds for (or None)."""

    def __init__(self, node: Node, namespace: str, output: DriverOutput) -> None:
        self.output = output
        self.topic = _in_namespace(namespace, 'fanuc_gpio_controller/robot_status')
        node.create_subscription(interface_type('fanuc_msgs', 'msg', 'RobotStatus'), self.topic,
                                 self._on_status, FANUC_STATUS)

    def _on_status(self, msg: Any) -> None:
        self.output._status_seen = True
        reasons = [text for flag, text in (
            (msg.e_stopped, 'e_stopped'), (msg.in_error, 'in_error'),
            (not msg.motion_possible, 'motion_possible false (STMO inactive)')) if flag]
        self.output._fault = (f'{self.topic}: ' + ', '.join(reasons)) if reasons else None


def make_output(node: Node, settings: SafetyNodeSettings, controller_joints: list[str],
                velocity_limits: np.ndarray | None = None) -> DriverOutput:
    """The output the settings name, with the driver's status watcher where it has one.
    `velocity_limits` (rad/s, controller order) cap the velocities a point-queue point states:
    MotoROS2 drops a point faster than an axis's limit and its queue then stalls (every later
    point answered BUSY)."""
    namespace = settings.driver_namespace
    output: DriverOutput
    if settings.driver_output == 'forward_position':
        output = ForwardPositionOutput(node, controller_joints, namespace)
    elif settings.driver_output == 'joint_trajectory':
        output = JointTrajectoryOutput(node, controller_joints, namespace, settings.period_s)
    else:  # point_queue (checked against the driver by SafetyNodeSettings)
        from noetra_ros.drivers.motoros2_client import PointQueueOutput
        output = PointQueueOutput(node, controller_joints, namespace,
                                  settings.point_queue_segment_s, max_speed=velocity_limits)
    if settings.driver == 'fanuc':
        output.watcher = FanucStatusWatcher(node, namespace, output)  # type: ignore[attr-defined]
    return output
