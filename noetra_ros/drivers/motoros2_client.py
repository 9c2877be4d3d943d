"""safety_node's output stage for a MotoROS2 cell: the supervisor's targets as queued points.

MotoROS2 takes no command topics (driver-interfaces.md §2.2); the runtime streams through its
point queue (§2.7). The decisions (when to start the mode, which point next, BUSY, restarts,
stopping) are core/drivers/point_queue.PointQueueStreamer's; this module makes its calls
asynchronously (`send` never blocks: one call in flight, answers handled in callbacks), feeds it
the measured joint positions (`joint_states`) and the robot's status (`robot_status`, both
sensor-data QoS as MotoROS2 publishes them, §2.2) and logs what it reports.

`fault()` names what keeps the robot from following ('robot_status: e_stopped',
'robot_status: in_error codes [4107]', 'start_point_queue_mode: 105 NOT_READY_NOT_REMOTE (...)'),
so the supervisor holds and logs the cause. The client never resets errors or e-stops itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectoryPoint

from noetra_ros.core.drivers.point_queue import PointQueueRequest, PointQueueStreamer
from noetra_ros.drivers.outputs import DriverOutput
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import SENSOR_DATA


def _in_namespace(namespace: str, name: str) -> str:
    return f'{namespace.rstrip("/")}/{name}' if namespace else name


class PointQueueOutput(DriverOutput):
    """`send(positions, now)` with positions in `driver_joint_names` order; `hold(now)` stops
    streaming (hold point, then stop_traj_mode); `fault()`, `status()` for the supervisor."""

    kind = 'point_queue'

    def __init__(self, node: Node, driver_joint_names: list[str], namespace: str,
                 segment_s: float, max_speed: Any = None) -> None:
        super().__init__(node, driver_joint_names, namespace)
        self.streamer = PointQueueStreamer(driver_joint_names, segment_s, max_speed=max_speed)
        self.StartPointQueueMode = interface_type('motoros2_interfaces', 'srv',
                                                  'StartPointQueueMode')
        self.QueueTrajPoint = interface_type('motoros2_interfaces', 'srv', 'QueueTrajPoint')
        robot_status = interface_type('industrial_msgs', 'msg', 'RobotStatus')
        self.clients = {
            'start_point_queue_mode': node.create_client(
                self.StartPointQueueMode, _in_namespace(namespace, 'start_point_queue_mode')),
            'queue_traj_point': node.create_client(
                self.QueueTrajPoint, _in_namespace(namespace, 'queue_traj_point')),
            'stop_traj_mode': node.create_client(
                Trigger, _in_namespace(namespace, 'stop_traj_mode'))}
        self.status_topic = _in_namespace(namespace, 'robot_status')
        node.create_subscription(robot_status, self.status_topic, self._on_status, SENSOR_DATA)
        node.create_subscription(JointState, _in_namespace(namespace, 'joint_states'),
                                 self._on_joint_states, SENSOR_DATA)
        self._target: np.ndarray | None = None
        self._measured: np.ndarray | None = None
        self.unavailable = 0

    # ------------------------------------------------------------------ inputs
    def _on_status(self, msg: Any) -> None:
        self._status_seen = True
        self.streamer.on_robot_status(msg.e_stopped.val == 1, msg.in_error.val == 1,
                                      msg.motion_possible.val == 1, list(msg.error_codes))

    def _on_joint_states(self, msg: JointState) -> None:
        positions = dict(zip(msg.name, msg.position))
        if all(name in positions for name in self.joint_names):
            self._measured = np.array([positions[name] for name in self.joint_names])

    def fault(self) -> str | None:
        return self.streamer.fault()

    # ------------------------------------------------------------------ outputs
    def send(self, positions: np.ndarray, now: float) -> None:
        self._target = np.asarray(positions, dtype=float).copy()
        self.sent += 1
        self._pump(now)

    def hold(self, now: float) -> None:
        # Forget the last target: only a new send() starts streaming again.
        self._target = None
        self.streamer.hold()
        self._pump(now)

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _pump(self, now: float) -> None:
        """Make the streamer's next call, if any (never waits for an answer)."""
        if not all(client.service_is_ready() for client in self.clients.values()):
            # MotoROS2 is not (yet) reachable: nothing to call; the supervisor holds on stale
            # joint_states meanwhile.
            self.unavailable += 1
            return
        request = self.streamer.step(now, self._target, self._measured)
        self._flush_log()
        if request is None:
            return
        future = self.clients[request.service].call_async(self._message(request))
        future.add_done_callback(lambda done, request=request: self._answered(request, done))

    def _message(self, request: PointQueueRequest) -> Any:
        if request.service == 'start_point_queue_mode':
            return self.StartPointQueueMode.Request()
        if request.service == 'stop_traj_mode':
            return Trigger.Request()
        point = JointTrajectoryPoint(positions=list(request.positions),
                                     velocities=list(request.velocities))
        point.time_from_start.sec = request.time_from_start_ns // 1_000_000_000
        point.time_from_start.nanosec = request.time_from_start_ns % 1_000_000_000
        return self.QueueTrajPoint.Request(joint_names=list(self.joint_names), point=point)

    def _answered(self, request: PointQueueRequest, done: Any) -> None:
        response = done.result()
        now = self._now()
        if response is None:
            return
        if request.service == 'stop_traj_mode':
            code, message = int(response.success), response.message
        else:
            code, message = int(response.result_code.value), response.message
        self.streamer.on_answer(request, code, message, now)
        self._pump(now)  # the next due call at once (e.g. the first point after the start)

    def _flush_log(self) -> None:
        log = self.node.get_logger()
        for line in self.streamer.log:
            log.warn(f'point queue: {line}')
        self.streamer.log.clear()

    def status(self) -> dict[str, Any]:
        return dict(super().status(), driver_fault=self.fault() or '',
                    service_unavailable=self.unavailable,
                    **{f'point_queue_{k}': v for k, v in self.streamer.status().items()})
