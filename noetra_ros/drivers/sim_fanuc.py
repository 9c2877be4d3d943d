"""The fanuc profile: the simulator plays fanuc_driver's ros2_control controllers.

What a client of a real fanuc_driver (v2.2.0) cell finds, by the same names, types and QoS
(driver-interfaces.md §3.1-§3.4, §4.2), all in the controller manager's namespace
(`driver_namespace`, default root):

- `joint_states` (pub, sensor_msgs/JointState): J1..J6 (+ prefix), position + velocity,
  effort NaN, frame_id base_link, every update (or every `joint_states_divisor`), reliable
  keep-last 10;
- `joint_trajectory_controller/joint_trajectory` (sub, trajectory_msgs/JointTrajectory): a
  message JTC refuses is dropped (and logged here);
- `joint_trajectory_controller/follow_joint_trajectory` (action, control_msgs/
  FollowJointTrajectory): malformed goals REJECTED, feedback at 20 Hz;
- `joint_trajectory_controller/controller_state` (pub, control_msgs/
  JointTrajectoryControllerState): 50 Hz (see the deviations);
- `joint_trajectory_controller/query_state` (srv, control_msgs/QueryTrajectoryState);
- `speed_scaling_factor` (sub, std_msgs/Int32 percent, clamped 0..100, reliable depth 10);
- `forward_position_controller/commands` (sub, std_msgs/Float64MultiArray, 6 values J1..J6):
  only when `command_controller` is forward_position_controller (fanuc_driver's
  fanuc_forward_command launch); it then replaces the four JTC interfaces above, since both
  controllers claim the same joints;
- `fanuc_gpio_controller/robot_status` (pub, fanuc_msgs/RobotStatus, reliable keep-last 1,
  every update) and `fanuc_gpio_controller/switch_control_state` (srv, fanuc_msgs/
  SwitchControlState: START=1 / STOP=0 -> result 0 or -1), in both configurations.

sim_node publishes `force_torque_sensor_broadcaster/wrench`. The rules (validation, spline,
tolerances, preemption, speed scaling, STMO stop, robot status) are in core/drivers/jtc.py.

Sim-only (no FANUC interface; a real cell has no such topic): `sim/fanuc/inject_fault`
(std_msgs/String, in the driver's namespace like the rest): 'e_stop' | 'error' | 'stmo_off' |
'clear', for tests of what a client does when the robot stops (jtc.FanucRobotStatus says what
each does).

Deviations from the real driver, each for a stated reason:
- `controller_state` goes out at 50 Hz, not every update: one Python message per 500 Hz update
  costs CPU the simulation needs (2 cores for a whole cell).
- `joint_states` also carries the sim gripper's finger joints (appended after J1..J6): a real cell
  merges its gripper driver's joint states; here one simulator plays both.
- Not provided: `/dynamic_joint_states`, the other fanuc_gpio_controller topics and services
  (I/O, registers, payload, robot_status_ext), fanuc_force_sensor_broadcaster, the controller
  manager's services (MoveIt's Ros2ControlManager needs them, §4.2; a MoveIt config for this sim
  must use a simple controller manager).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, Int32, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from noetra_ros.core.drivers import jtc
from noetra_ros.core.errors import CommandError, ConfigError
from noetra_ros.drivers.sim_base import joint_state_arrays, SimArm, SimDriver, SimDriverSettings
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import FANUC_STATUS, RELIABLE
from noetra_ros.ros_conversions import seconds_to_stamp

JTC = 'joint_trajectory_controller'
FORWARD = 'forward_position_controller'
COMMAND_CONTROLLERS = (JTC, FORWARD)
# JTC's action_monitor_rate (driver-interfaces.md §3.2, FD ros2_controllers.yaml).
ACTION_MONITOR_HZ = 20.0
# Our reduced controller_state rate (module docstring, deviations).
CONTROLLER_STATE_HZ = 50.0
# The sim-only fault topic (module docstring).
FAULT_TOPIC = 'sim/fanuc/inject_fault'
# A stream of bad messages at the driver rate would flood the log: one line per period.
LOG_THROTTLE_S = 1.0


def _point(positions: np.ndarray, velocities: np.ndarray | None = None) -> JointTrajectoryPoint:
    point = JointTrajectoryPoint()
    point.positions = [float(v) for v in positions]
    if velocities is not None:
        point.velocities = [float(v) for v in velocities]
    return point


def _tolerances(entries: Any) -> list[jtc.JointToleranceData]:
    return [jtc.JointToleranceData(str(e.name), float(e.position), float(e.velocity),
                                   float(e.acceleration)) for e in entries]


class FanucSimDriver(SimDriver):
    """fanuc_driver's controllers over the simulated arm (see the module docstring)."""

    profile = 'fanuc'

    def __init__(self, node: Node, arm: SimArm, settings: SimDriverSettings) -> None:
        super().__init__(node, arm, settings)
        self.command_controller = str(getattr(settings, 'command_controller', JTC))
        if self.command_controller not in COMMAND_CONTROLLERS:
            raise ConfigError(f'command_controller {self.command_controller!r}: fanuc_driver '
                              f'runs one of {COMMAND_CONTROLLERS}')
        self.log = node.get_logger()
        self.joints = self.driver_joint_names()
        self.published_joints = settings.names.to_driver(
            list(arm.joint_names) + list(arm.gripper_joint_names))
        self.status = jtc.FanucRobotStatus()
        self.counters = {'rejected_commands': 0, 'goals_accepted': 0, 'goals_rejected': 0,
                         'goals_succeeded': 0, 'goals_aborted': 0, 'goals_canceled': 0,
                         'trajectories_accepted': 0, 'holds': 0, 'faults_injected': 0}
        self._now = 0.0
        self._next_feedback = 0.0
        self._next_controller_state = 0.0

        robot_status_type = interface_type('fanuc_msgs', 'msg', 'RobotStatus')
        self._robot_status_type = robot_status_type
        self.pub_joints = node.create_publisher(JointState, self.topic('joint_states'), RELIABLE)
        self.pub_robot_status = node.create_publisher(
            robot_status_type, self.topic('fanuc_gpio_controller/robot_status'),
            FANUC_STATUS)
        node.create_service(interface_type('fanuc_msgs', 'srv', 'SwitchControlState'),
                            self.topic('fanuc_gpio_controller/switch_control_state'),
                            self._on_switch_control_state)
        self.fault_topic = self.topic(FAULT_TOPIC)
        node.create_subscription(String, self.fault_topic, self._on_inject_fault, RELIABLE)

        self.controller: jtc.TrajectoryController | None = None
        self._forward_target: np.ndarray | None = None
        self._forward_hold: np.ndarray | None = None
        if self.command_controller == JTC:
            self._create_trajectory_controller(node)
        else:
            node.create_subscription(Float64MultiArray,
                                     self.topic(f'{FORWARD}/commands'),
                                     self._on_forward_command, RELIABLE)
        self.log.info(f'fanuc driver: {self.command_controller} on joints {self.joints}; '
                      f'sim-only fault injection on {self.fault_topic}')

    # ---------------------------------------------------------------- construction
    def _create_trajectory_controller(self, node: Node) -> None:
        self.controller = jtc.TrajectoryController(self.joints, self.settings.control_hz)
        self._fjt_type = interface_type('control_msgs', 'action', 'FollowJointTrajectory')
        self._state_type = interface_type('control_msgs', 'msg',
                                          'JointTrajectoryControllerState')
        # Live goals: the handle (for feedback) and the future its execute callback awaits.
        self._goal_handles: dict[bytes, Any] = {}
        self._goal_results: dict[bytes, Future] = {}
        self.action_name = self.topic(f'{JTC}/follow_joint_trajectory')
        self.action_server = ActionServer(
            node, self._fjt_type, self.action_name, execute_callback=self._execute_goal,
            goal_callback=self._on_goal_request, handle_accepted_callback=self._on_goal_accepted,
            cancel_callback=self._on_cancel_request)
        node.create_subscription(JointTrajectory, self.topic(f'{JTC}/joint_trajectory'),
                                 self._on_trajectory_message, RELIABLE)
        self.pub_controller_state = node.create_publisher(
            self._state_type, self.topic(f'{JTC}/controller_state'), RELIABLE)
        node.create_service(interface_type('control_msgs', 'srv', 'QueryTrajectoryState'),
                            self.topic(f'{JTC}/query_state'), self._on_query_state)
        # Node-relative, not in the controller's ~ (driver-interfaces.md §3.2).
        node.create_subscription(Int32, self.topic('speed_scaling_factor'),
                                 self._on_speed_scaling, RELIABLE)

    # ---------------------------------------------------------------- the update
    def update(self, now: float) -> None:
        super().update(now)
        self._now = now
        q, qd, _ = self.arm.measured()
        if self.controller is not None:
            self.controller.motion_possible = self.status.motion_possible
            setpoint, velocity, events = self.controller.update(now, q, qd)
            self._handle(events)
        else:
            setpoint, velocity = self._forward_setpoint(q)
        self.arm.setpoint(setpoint, velocity)

    def _forward_setpoint(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """forward_position_controller: the last command, as it came; the measured position
        before the first one (ros2_control's command starts at the state). With motion not
        possible the arm holds where it stopped and forgets the command, so a restart does not
        jump to a stale target (the sim's choice; a real robot does not move then either)."""
        if not self.status.motion_possible:
            if self._forward_hold is None:
                self._forward_hold = q.copy()
            self._forward_target = None
            return self._forward_hold.copy(), np.zeros_like(q)
        if self._forward_target is None:
            if self._forward_hold is None:
                self._forward_hold = q.copy()
            return self._forward_hold.copy(), np.zeros_like(q)
        self._forward_hold = None
        return self._forward_target.copy(), np.zeros_like(q)

    def on_reset(self) -> None:
        q, _, _ = self.arm.measured()
        if self.controller is not None:
            self._handle(self.controller.robot_moved(q))
        # The forward controller forgets its command: the arm would fly back to it otherwise.
        self._forward_target = None
        self._forward_hold = q.copy()

    # ---------------------------------------------------------------- publishing
    def publish(self, now: float, stamp: Any) -> None:
        if self.joint_states_due():
            self._publish_joint_states(stamp)
        status = self.status
        self.pub_robot_status.publish(self._robot_status_type(
            in_error=status.in_error, tp_enabled=status.tp_enabled, e_stopped=status.e_stopped,
            motion_possible=status.motion_possible, contact_stop_mode=status.contact_stop_mode))
        if self.controller is None:
            return
        if now + 1e-9 >= self._next_controller_state:
            self._next_controller_state = max(self._next_controller_state
                                              + 1.0 / CONTROLLER_STATE_HZ, now)
            self._publish_controller_state(stamp)
        if now + 1e-9 >= self._next_feedback:
            self._next_feedback = max(self._next_feedback + 1.0 / ACTION_MONITOR_HZ, now)
            self._publish_feedback()

    def _publish_joint_states(self, stamp: Any) -> None:
        msg = JointState()
        msg.header.stamp = stamp
        msg.header.frame_id = 'base_link'  # joint_state_broadcaster's frame_id (§3.2)
        msg.name = self.published_joints
        positions, velocities, efforts = joint_state_arrays(self.arm)
        # The arm exports position and velocity only (§3.1): the broadcaster fills effort NaN.
        arm_count = len(self.arm.joint_names)
        efforts[:arm_count] = [math.nan] * arm_count
        msg.position, msg.velocity, msg.effort = positions, velocities, efforts
        self.pub_joints.publish(msg)

    def _publish_controller_state(self, stamp: Any) -> None:
        assert self.controller is not None
        state = self.controller.state()
        msg = self._state_type()
        msg.header.stamp = stamp
        msg.joint_names = list(self.joints)
        msg.reference = _point(state.reference_positions, state.reference_velocities)
        msg.feedback = _point(state.feedback_positions, state.feedback_velocities)
        msg.error = _point(state.error_positions)
        msg.output = _point(state.output_positions)
        msg.speed_scaling_factor = float(state.speed_scaling_factor)
        self.pub_controller_state.publish(msg)

    def _publish_feedback(self) -> None:
        assert self.controller is not None
        handle = self._goal_handles.get(self.controller.active_goal)
        if handle is None or not handle.is_active:
            return
        state = self.controller.state()
        feedback = self._fjt_type.Feedback()
        # The stamp is the scaled trajectory time, not the clock (§3.4).
        feedback.header.stamp = seconds_to_stamp(state.trajectory_time)
        feedback.joint_names = list(self.joints)
        feedback.desired = _point(state.reference_positions, state.reference_velocities)
        feedback.actual = _point(state.feedback_positions, state.feedback_velocities)
        feedback.error = _point(state.error_positions)
        handle.publish_feedback(feedback)

    # ---------------------------------------------------------------- the action
    def _on_goal_request(self, goal: Any) -> GoalResponse:
        assert self.controller is not None
        reason = self.controller.validate(jtc.trajectory_data_from_msg(goal.trajectory),
                                          self._now)
        if reason is not None:
            self.counters['goals_rejected'] += 1
            self.log.error(f'{self.action_name}: goal rejected, arm holds: {reason}')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_goal_accepted(self, goal_handle: Any) -> None:
        assert self.controller is not None
        key = bytes(goal_handle.goal_id.uuid)
        self._goal_handles[key] = goal_handle
        self._goal_results[key] = Future()
        goal = goal_handle.request
        tolerances, warning = jtc.resolve_tolerances(
            self.controller.default_tolerances, self.joints,
            path=_tolerances(goal.path_tolerance), goal=_tolerances(goal.goal_tolerance),
            goal_time_s=goal.goal_time_tolerance.sec + goal.goal_time_tolerance.nanosec * 1e-9)
        if warning:
            self.log.warn(f'{self.action_name}: {warning}')
        try:
            events = self.controller.submit(jtc.trajectory_data_from_msg(goal.trajectory),
                                            self._now, goal_id=key, tolerances=tolerances)
            self.counters['goals_accepted'] += 1
            self.log.info(f'{self.action_name}: goal accepted '
                          f'({len(goal.trajectory.points)} points)')
        except CommandError as exc:  # validated on request; time may have moved on since
            events = [jtc.ControllerEvent('aborted', key, jtc.INVALID_GOAL, str(exc))]
        goal_handle.execute()
        self._handle(events)

    async def _execute_goal(self, goal_handle: Any) -> Any:
        """Waits (without blocking the executor) for the controller to end the goal."""
        key = bytes(goal_handle.goal_id.uuid)
        event: jtc.ControllerEvent = await self._goal_results[key]
        del self._goal_results[key]
        result = self._fjt_type.Result(error_code=event.error_code, error_string=event.text)
        if event.kind == 'succeeded':
            goal_handle.succeed()
        elif event.kind == 'canceled' and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result

    def _on_cancel_request(self, goal_handle: Any) -> CancelResponse:
        assert self.controller is not None
        key = bytes(goal_handle.goal_id.uuid)
        events = self.controller.cancel(key)
        if not events and key in self._goal_handles:
            # Live here but no longer the controller's (cannot happen in the ordinary order;
            # never leave a client waiting on it).
            events = [jtc.ControllerEvent('canceled', key, jtc.SUCCESSFUL, '')]
        self._handle(events)
        return CancelResponse.ACCEPT

    def _handle(self, events: list[jtc.ControllerEvent]) -> None:
        for event in events:
            if event.goal_id is None:
                self.counters['holds'] += 1
                self.log.warn(f'{JTC}: {event.text}')
                continue
            self.counters[f'goals_{event.kind}'] += 1
            text = f'{self.action_name}: goal {event.kind} ({event.error_code}) {event.text}'
            if event.kind == 'succeeded':
                self.log.info(text)
            else:
                self.log.warn(text)
            self._goal_handles.pop(event.goal_id, None)
            result = self._goal_results.get(event.goal_id)
            if result is not None and not result.done():
                result.set_result(event)

    # ---------------------------------------------------------------- topics and services
    def _on_trajectory_message(self, msg: JointTrajectory) -> None:
        assert self.controller is not None
        topic = self.topic(f'{JTC}/joint_trajectory')
        try:
            self._handle(self.controller.submit(jtc.trajectory_data_from_msg(msg), self._now))
            self.counters['trajectories_accepted'] += 1
        except CommandError as exc:
            # JTC drops it silently; we log why (throttled: a bad stream comes at 500 Hz).
            self.counters['rejected_commands'] += 1
            self.log.error(f'{topic}: trajectory dropped, arm keeps its current trajectory: '
                           f'{exc}', throttle_duration_sec=LOG_THROTTLE_S)

    def _on_query_state(self, request: Any, response: Any) -> Any:
        assert self.controller is not None
        answer = self.controller.query(request.time.sec + request.time.nanosec * 1e-9)
        response.success = answer.success
        response.message = answer.message
        response.name = list(self.joints)
        response.position = [float(v) for v in answer.positions]
        response.velocity = [float(v) for v in answer.velocities]
        response.acceleration = [float(v) for v in answer.accelerations]
        return response

    def _on_speed_scaling(self, msg: Int32) -> None:
        assert self.controller is not None
        before = self.controller.speed_scaling.percent
        percent = self.controller.speed_scaling.set_percent(msg.data)
        if percent != before:
            self.log.info(f'speed_scaling_factor: {percent} % (asked {msg.data})')

    def _on_forward_command(self, msg: Float64MultiArray) -> None:
        topic = self.topic(f'{FORWARD}/commands')
        try:
            target = jtc.forward_command(msg.data, len(self.joints))
        except CommandError as exc:
            self.counters['rejected_commands'] += 1
            self.log.error(f'{topic}: command ignored, arm keeps the last one: {exc}',
                           throttle_duration_sec=LOG_THROTTLE_S)
            return
        if self.status.motion_possible:
            self._forward_target = target

    def _on_switch_control_state(self, request: Any, response: Any) -> Any:
        response.result, why = self.status.switch_control_state(int(request.status))
        text = (f'fanuc_gpio_controller/switch_control_state({request.status}): '
                f'{response.result}: {why}')
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if response.result == jtc.SWITCH_OK:
            self.log.info(text)
        else:
            self.log.error(text)
        return response

    def _on_inject_fault(self, msg: String) -> None:
        try:
            self.status.inject(msg.data)
        except ValueError as exc:
            self.log.error(f'{self.fault_topic}: {exc}')
            return
        self.counters['faults_injected'] += 1
        self.log.warn(f'{self.fault_topic} (sim only): {msg.data!r} -> e_stopped='
                      f'{self.status.e_stopped} in_error={self.status.in_error} '
                      f'motion_possible={self.status.motion_possible}')

    def diagnostics(self) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.counters, command_controller=self.command_controller,
                                      motion_possible=self.status.motion_possible,
                                      e_stopped=self.status.e_stopped,
                                      in_error=self.status.in_error)
        if self.controller is not None:
            values['speed_scaling_percent'] = self.controller.speed_scaling.percent
            values['goal_active'] = self.controller.active_goal is not None
        return values
