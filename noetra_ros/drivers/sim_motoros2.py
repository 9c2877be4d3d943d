"""The Yaskawa MotoROS2 profile: the simulator plays MotoROS2's ROS interface.

Interface (driver-interfaces.md §2.1-§2.7, §4.1; all names inside the driver namespace,
`SimDriver.topic`):

- publishers, every `controller_status_monitor_period` (10 ms): `joint_states` (every group's
  axes) and `ctrl_groups/r<g>/joint_states` per group (sensor_msgs/JointState, sensor-data QoS:
  best effort, keep last 5), `robot_status` (industrial_msgs/RobotStatus, sensor-data QoS), `tf`
  (tf2_msgs/TFMessage, reliable keep last 10: world -> r<g>/base -> r<g>/flange -> r<g>/tool0
  for every group, in one message);
- services `start_traj_mode`, `start_point_queue_mode`, `stop_traj_mode`, `reset_error`,
  `queue_traj_point`, `select_motion_tool`, `read_single_io`, `write_single_io`,
  `read_group_io`, `write_group_io`, `read_mregister`, `write_mregister`;
- action `follow_joint_trajectory` (control_msgs/FollowJointTrajectory): every goal accepted,
  invalid ones aborted with MotoROS2's code; feedback and results every
  `action_feedback_publisher_period` (20 ms).

The rules live in core/drivers/motoros2.py (MotoRos2Controller); this module converts messages,
keeps time and logs every refusal with its code and MotoROS2's text for it (the `*_STR`
constants of our motoros2_interfaces).

Groups: the sim's arm is r1; each of the sim's extra arms (SimArm.extra_arms, sim parameter
`extra_arms`) is one more robot group r2, r3, ... of the same controller. With several groups
every axis is named group_<g>/joint_<j> (the main arm group_1/..., reference §2.1), and goals and
points must name all of them (reference §2.6, §2.7): one controller, one readiness, one mode.

Choices where MotoROS2's behaviour is derived or cannot be reproduced (docs/DRIVERS.md):
- A goal that arrives while another runs waits unanswered until the running goal's result is
  sent (MotoROS2 has one goal handle and rclc takes a request only when it is free; reference
  §2.6, derived): the goal callback awaits the running goal's end.
- A goal with more than 200 points is never answered (the robot cannot receive it; the client
  must time out): counted in diagnostics as `goals_unanswered` and logged.
- `joint_states` also carries the simulated gripper's finger joints after the arm joints: a real
  cell merges the gripper driver's joint states; `ctrl_groups/r<g>/joint_states` and the FJT
  feedback carry the arm only, as MotoROS2's do.
- An episode reset moves the arm under the driver: queued motion is cleared, the point-queue mode
  ends (as when motion becomes impossible) and a running goal ends by its completion checks.

Sim-only (no MotoROS2 interface; a real cell has no such topic): `sim/motoros2/inject_fault`
(std_msgs/String, in the sim node's namespace): 'e_stop' | 'hold' | 'teach' | 'local' |
'alarm [code]' | 'major_alarm [code]' | 'error [code]' | 'clear' (MotoRos2Controller.inject), for
tests of what a client does when the robot stops.
"""
from __future__ import annotations

import re
from typing import Any

from action_msgs.msg import GoalStatus
import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from noetra_ros.core.drivers.motoros2 import (ControlGroup, default_joint_names, FailTraj,
                                              GoalOutcome, GoalPoint, InitTraj, IoMemory,
                                              MotionReady, MotoRos2Controller, QueueResult,
                                              robot_groups, select_motion_tool, TrajectoryGoal)
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.tf_tree import FrameTransform
from noetra_ros.drivers.sim_base import SimArm, SimDriver, SimDriverSettings
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import RELIABLE, SENSOR_DATA
from noetra_ros.state_publisher_node import transform_msg

# driver-interfaces.md §2.1 (MR config/motoros2_config.yaml update_periods): status, joint
# states and tf every 10 ms; FJT feedback and results every 20 ms.
CONTROLLER_STATUS_MONITOR_PERIOD_S = 0.010
ACTION_FEEDBACK_PUBLISHER_PERIOD_S = 0.020
# driver-interfaces.md §2.2: tf frames per robot group, `world` the cell's frame.
WORLD_FRAME = 'world'
BASE_LINK = 'base'
FAULT_TOPIC = 'sim/motoros2/inject_fault'


def _msg(kind: str, name: str) -> Any:
    """A motoros2_interfaces type (ours from install/ where the environment has none)."""
    return interface_type('motoros2_interfaces', kind, name)


def enum_text(code: Any) -> str:
    """MotoROS2's text for a code of ours: the `<NAME>_STR` constant of its message."""
    messages = {MotionReady: 'MotionReadyEnum', InitTraj: 'InitTrajEnum',
                QueueResult: 'QueueResultEnum'}
    message = messages.get(type(code))
    if message is None:
        return ''
    return str(getattr(_msg('msg', message), f'{code.name}_STR', ''))


def robot_group(names: list[str]) -> str:
    """`r<g>` of a single arm: group <g> of multi-group names (group_<g>/joint_<j>), else r1."""
    match = re.match(r'group_(\d+)/', names[0]) if names else None
    return f'r{match.group(1)}' if match else 'r1'


class MotoRos2SimDriver(SimDriver):
    profile = 'motoros2'
    multi_arm = True

    def __init__(self, node: Node, arm: SimArm, settings: SimDriverSettings) -> None:
        super().__init__(node, arm, settings)
        self.FollowJointTrajectory = interface_type('control_msgs', 'action',
                                                    'FollowJointTrajectory')
        self.RobotStatus = interface_type('industrial_msgs', 'msg', 'RobotStatus')
        self.TFMessage = interface_type('tf2_msgs', 'msg', 'TFMessage')
        # Every group's hardware in group order: the sim's arm (r1), then its extra arms.
        self.arms: tuple[Any, ...] = (arm, *arm.extra_arms)
        self.groups = self._groups(self.driver_joint_names())
        self.arm_names = [n for group in self.groups for n in group.joint_names]
        self.published_joints = self.arm_names + settings.names.to_driver(
            list(arm.gripper_joint_names))
        self.controller = MotoRos2Controller(
            self.arm_names, np.concatenate([a.limits.velocity for a in self.arms]),
            groups=self.groups)
        # The robot knows where it is before its first update (a sim waiting for its first
        # reset still answers status, services and diagnostics).
        self.controller.moved_externally(self._measured()[0])
        self.io = IoMemory()
        self.counters = {'rejected_commands': 0, 'goals_unanswered': 0, 'faults_injected': 0}
        self._now = 0.0
        self._status_every = max(1, round(arm.control_hz * CONTROLLER_STATUS_MONITOR_PERIOD_S))
        self._feedback_every = max(1, round(arm.control_hz * ACTION_FEEDBACK_PUBLISHER_PERIOD_S))
        # Per group: the kinematics and where its base_link stands in the world (the sim cell's
        # world frame is the main robot's base_link).
        self._tf_chains = [(load_robot_description(settings.robot).model, np.eye(4))] + [
            (extra.description.model, extra.base_pose) for extra in arm.extra_arms]
        robots = [settings.robot] + [extra.robot for extra in arm.extra_arms]
        for group, robot, (model, _) in zip(self.groups, robots, self._tf_chains):
            for link in (BASE_LINK, 'flange', 'tool0'):
                if link not in model.links:
                    raise ConfigError(f'robot {robot!r} has no link {link!r} for MotoROS2\'s tf '
                                      f'(world -> {group.name}/base -> flange -> tool0)')

        log = node.get_logger()
        self.log = log
        self.pub_joints = node.create_publisher(JointState, self.topic('joint_states'),
                                                SENSOR_DATA)
        self.pub_group_joints = [node.create_publisher(
            JointState, self.topic(f'ctrl_groups/{group.name}/joint_states'), SENSOR_DATA)
            for group in self.groups]
        self.pub_status = node.create_publisher(self.RobotStatus, self.topic('robot_status'),
                                                SENSOR_DATA)
        self.pub_tf = node.create_publisher(self.TFMessage, self.topic('tf'), RELIABLE)

        node.create_service(_msg('srv', 'StartTrajMode'), self.topic('start_traj_mode'),
                            self._on_start_traj_mode)
        node.create_service(_msg('srv', 'StartPointQueueMode'),
                            self.topic('start_point_queue_mode'), self._on_start_point_queue_mode)
        node.create_service(Trigger, self.topic('stop_traj_mode'), self._on_stop_traj_mode)
        node.create_service(_msg('srv', 'ResetError'), self.topic('reset_error'),
                            self._on_reset_error)
        node.create_service(_msg('srv', 'QueueTrajPoint'), self.topic('queue_traj_point'),
                            self._on_queue_traj_point)
        node.create_service(_msg('srv', 'SelectMotionTool'), self.topic('select_motion_tool'),
                            self._on_select_motion_tool)
        for service, type_name, handler in (
                ('read_single_io', 'ReadSingleIO', self._on_read_single_io),
                ('write_single_io', 'WriteSingleIO', self._on_write_single_io),
                ('read_group_io', 'ReadGroupIO', self._on_read_group_io),
                ('write_group_io', 'WriteGroupIO', self._on_write_group_io),
                ('read_mregister', 'ReadMRegister', self._on_read_mregister),
                ('write_mregister', 'WriteMRegister', self._on_write_mregister)):
            node.create_service(_msg('srv', type_name), self.topic(service), handler)

        node.create_subscription(String, FAULT_TOPIC, self._on_inject_fault, RELIABLE)

        # Goals wait for each other in their coroutines, so the action server gets its own
        # reentrant group: the sim's timer (default group) keeps stepping while they wait.
        self._goal_done: Future | None = None
        self._goal_outcome: Future | None = None
        self._goal_handle: Any = None
        self._unanswered: list[Future] = []
        self.action_server = ActionServer(
            node, self.FollowJointTrajectory, self.topic('follow_joint_trajectory'),
            execute_callback=self._execute_goal, goal_callback=self._on_goal,
            cancel_callback=self._on_cancel, callback_group=ReentrantCallbackGroup())
        log.info(f'MotoROS2 emulation: joints {self.arm_names}, groups '
                 f'{[g.name for g in self.groups]}, status every {self._status_every} update(s), '
                 f'feedback every {self._feedback_every}')

    def _groups(self, main_names: list[str]) -> tuple[ControlGroup, ...]:
        """The controller's robot groups: the sim's arm alone (its group from its names, r1 by
        default), or r1..rN with MotoROS2's multi-group names when the sim has extra arms."""
        if len(self.arms) == 1:
            return (ControlGroup(robot_group(main_names), tuple(main_names)),)
        names = default_joint_names([len(a.joint_names) for a in self.arms])
        if main_names != names[0]:
            raise ConfigError(f'MotoROS2 with {len(self.arms)} groups names the main arm\'s '
                              f'joints {names[0]} (driver-interfaces.md §2.1), not {main_names}: '
                              'leave joint_name_prefix empty or set it to group_1/')
        return robot_groups(names)

    def _measured(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, velocities, efforts) of every group's axes, in the controller's order."""
        states = [a.measured() for a in self.arms]
        q, qd, tau = (np.concatenate([s[k] for s in states]) for k in range(3))
        return q, qd, tau

    # ------------------------------------------------------------------ helpers
    def _refused(self, what: str, code: Any, detail: str) -> str:
        """Log a refusal with its code and MotoROS2's text; returns the text."""
        text = enum_text(code)
        self.counters['rejected_commands'] += 1
        self.log.warn(f'{what} refused: {int(code)} {code.name} "{text}"'
                      + (f' ({detail})' if detail else ''))
        return text

    def _motion_ready_answer(self, what: str, response: Any, answer: Any) -> Any:
        response.result_code.value = int(answer.code)
        response.message = enum_text(answer.code)
        if answer.code is not MotionReady.READY:
            self._refused(what, answer.code, answer.detail)
            if answer.detail:
                response.message = f'{response.message}: {answer.detail}'
        else:
            self.log.info(f'{what}: {int(answer.code)} {answer.code.name} ({answer.detail})')
        return response

    # ------------------------------------------------------------------ services
    def _on_start_traj_mode(self, request: Any, response: Any) -> Any:
        return self._motion_ready_answer('start_traj_mode', response,
                                         self.controller.start_traj_mode())

    def _on_start_point_queue_mode(self, request: Any, response: Any) -> Any:
        return self._motion_ready_answer('start_point_queue_mode', response,
                                         self.controller.start_point_queue_mode())

    def _on_stop_traj_mode(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.controller.stop_traj_mode()
        if response.success:
            self.log.info('stop_traj_mode: motion mode ended')
        else:
            self.counters['rejected_commands'] += 1
            self.log.warn(f'stop_traj_mode refused: {response.message}')
        return response

    def _on_reset_error(self, request: Any, response: Any) -> Any:
        answer = self.controller.reset_error()
        self._motion_ready_answer('reset_error', response, answer)
        if answer.code is MotionReady.READY:
            response.message = 'success'
        return response

    def _on_queue_traj_point(self, request: Any, response: Any) -> Any:
        point = request.point
        answer = self.controller.queue_point(
            list(request.joint_names),
            GoalPoint(tuple(point.positions), tuple(point.velocities),
                      point.time_from_start.sec * 1_000_000_000 + point.time_from_start.nanosec))
        response.result_code.value = int(answer.code)
        response.message = enum_text(answer.code)
        if answer.code is QueueResult.SUCCESS:
            response.message = ''  # QueueResultEnum.SUCCESS_STR is empty
        elif answer.code is QueueResult.BUSY:
            # BUSY is the queue's flow control, not an error: counted, logged rarely.
            self.log.info(f'queue_traj_point: {int(answer.code)} BUSY "{response.message}"',
                          throttle_duration_sec=5.0)
        else:
            self._refused('queue_traj_point', answer.code, answer.detail)
        return response

    def _on_select_motion_tool(self, request: Any, response: Any) -> Any:
        codes = _msg('msg', 'SelectionResultCodes')
        code = select_motion_tool(self.controller, request.group_number, request.tool_number)
        response.result_code.value = int(code)
        response.message = str(getattr(codes, f'{code.name}_STR'))
        response.success = code == 0
        if code:
            self.counters['rejected_commands'] += 1
            self.log.warn(f'select_motion_tool refused: {int(code)} {code.name} '
                          f'"{response.message}"')
        return response

    def _io_answer(self, what: str, response: Any, code: Any, value: int | None = None) -> Any:
        codes = _msg('msg', 'IoResultCodes')
        response.result_code = int(code)
        response.message = str(getattr(codes, f'{code.name}_STR'))
        response.success = code == 0
        if value is not None:
            response.value = int(value)
        if code:
            self.counters['rejected_commands'] += 1
            self.log.warn(f'{what} refused: {int(code)} {code.name} "{response.message}"')
        return response

    def _on_read_single_io(self, request: Any, response: Any) -> Any:
        code, value = self.io.read_single(request.address)
        return self._io_answer(f'read_single_io {request.address}', response, code, value)

    def _on_write_single_io(self, request: Any, response: Any) -> Any:
        code = self.io.write_single(request.address, request.value)
        return self._io_answer(f'write_single_io {request.address}', response, code)

    def _on_read_group_io(self, request: Any, response: Any) -> Any:
        code, value = self.io.read_group(request.address)
        return self._io_answer(f'read_group_io {request.address}', response, code, value)

    def _on_write_group_io(self, request: Any, response: Any) -> Any:
        code = self.io.write_group(request.address, request.value)
        return self._io_answer(f'write_group_io {request.address}', response, code)

    def _on_read_mregister(self, request: Any, response: Any) -> Any:
        code, value = self.io.read_mregister(request.address)
        return self._io_answer(f'read_mregister {request.address}', response, code, value)

    def _on_write_mregister(self, request: Any, response: Any) -> Any:
        code = self.io.write_mregister(request.address, request.value)
        return self._io_answer(f'write_mregister {request.address}', response, code)

    def _on_inject_fault(self, msg: String) -> None:
        try:
            self.controller.inject(msg.data)
        except ValueError as exc:
            self.log.error(f'{FAULT_TOPIC}: {exc}')
            return
        self.counters['faults_injected'] += 1
        status = self.controller.robot_status()
        self.log.warn(f'{FAULT_TOPIC} (sim only): {msg.data!r} -> e_stopped={status.e_stopped} '
                      f'in_error={status.in_error} motion_possible={status.motion_possible} '
                      f'error_codes={list(status.error_codes)}')

    # ------------------------------------------------------------------ the action
    async def _on_goal(self, goal: Any) -> GoalResponse:
        """Every goal is accepted (MotoROS2 then aborts invalid ones); one at a time."""
        while self._goal_done is not None and not self._goal_done.done():
            await self._goal_done
        trajectory = goal.trajectory
        core_goal = TrajectoryGoal(
            tuple(trajectory.joint_names),
            tuple(GoalPoint(tuple(p.positions), tuple(p.velocities),
                            p.time_from_start.sec * 1_000_000_000 + p.time_from_start.nanosec)
                  for p in trajectory.points),
            tuple((t.name, t.position) for t in goal.goal_tolerance),
            goal.goal_time_tolerance.sec * 1_000_000_000 + goal.goal_time_tolerance.nanosec)
        verdict = self.controller.submit_goal(core_goal, self._now)
        if not verdict.answered:
            self.counters['goals_unanswered'] += 1
            self.log.error(f'follow_joint_trajectory: a goal of {len(trajectory.points)} points '
                           'exceeds MotoROS2\'s 200 and is never answered (the robot cannot '
                           'receive it); the client must time out')
            never = Future()  # kept, never completed: the request stays unanswered
            self._unanswered.append(never)
            await never
        self._goal_done = Future()
        self._goal_outcome = Future()
        if verdict.outcome is not None:
            self._report_outcome(verdict.outcome)
        else:
            self.log.info(f'follow_joint_trajectory: goal of {len(trajectory.points)} points '
                          f'({trajectory.points[-1].time_from_start.sec} s ..) executing')
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        if self.controller.cancel_goal() is not None:
            self.log.info('follow_joint_trajectory: goal cancelled, the robot stops')
        return CancelResponse.ACCEPT

    async def _execute_goal(self, goal_handle: Any) -> Any:
        done, ending = self._goal_done, self._goal_outcome
        assert done is not None and ending is not None
        self._goal_handle = goal_handle
        outcome: GoalOutcome = await ending
        self._goal_handle = None
        result = self.FollowJointTrajectory.Result()
        result.error_code = outcome.error_code
        text = enum_text(outcome.reason) if outcome.reason is not None else ''
        result.error_string = text or outcome.detail
        if outcome.status == 'succeeded':
            goal_handle.succeed()
        elif outcome.status == 'canceled' and goal_handle.status == GoalStatus.STATUS_CANCELING:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        done.set_result(True)
        return result

    def _report_outcome(self, outcome: GoalOutcome) -> None:
        if outcome.status == 'aborted':
            if isinstance(outcome.reason, FailTraj) or outcome.reason is None:
                self.counters['rejected_commands'] += 1
                self.log.warn(f'follow_joint_trajectory aborted: {outcome.error_code} '
                              f'{outcome.detail}')
            else:
                self._refused(f'follow_joint_trajectory (result {outcome.error_code})',
                              outcome.reason, outcome.detail)
        else:
            self.log.info(f'follow_joint_trajectory {outcome.status}: {outcome.error_code} '
                          f'{outcome.detail}')

    def _deliver(self, outcome: GoalOutcome) -> None:
        if self._goal_outcome is not None and not self._goal_outcome.done():
            if outcome.reason is None or isinstance(outcome.reason, FailTraj):
                self._report_outcome(outcome)
            self._goal_outcome.set_result(outcome)

    # ------------------------------------------------------------------ the update
    def update(self, now: float) -> None:
        super().update(now)
        self._now = now
        setpoint_q, setpoint_qd = self.controller.update(now, self._measured()[0])
        for arm, q, qd in zip(self.arms, self.controller.split(setpoint_q),
                              self.controller.split(setpoint_qd)):
            arm.setpoint(q, qd)

    def on_reset(self) -> None:
        self.controller.moved_externally(self._measured()[0])

    def publish(self, now: float, stamp: Any) -> None:
        tick = self._updates - 1
        if tick % self._feedback_every == 0:
            self._feedback_tick(now, stamp)
        if tick % self._status_every == 0:
            if self.joint_states_due():
                self._publish_joint_states(stamp)
            self._publish_status(stamp)
            self._publish_tf(stamp)

    def _feedback_tick(self, now: float, stamp: Any) -> None:
        if self.controller.goal_active() and self._goal_outcome is not None:
            q, qd, tau = self._measured()
            desired, _ = self.controller.command()
            feedback = self.FollowJointTrajectory.Feedback()
            feedback.header.stamp = stamp
            feedback.joint_names = list(self.arm_names)
            feedback.actual.positions = [float(v) for v in q]
            feedback.actual.velocities = [float(v) for v in qd]
            feedback.actual.effort = [float(v) for v in tau]
            feedback.desired.positions = [float(v) for v in desired]
            feedback.error.positions = [float(v) for v in desired - q]
            if self._goal_handle is not None and self._goal_handle.is_active:
                self._goal_handle.publish_feedback(feedback)
        outcome = self.controller.goal_tick(now)
        if outcome is not None:
            self._deliver(outcome)

    def _publish_joint_states(self, stamp: Any) -> None:
        measured = self._measured()
        fingers = self.arm.gripper_measured()
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = self.published_joints
        msg.position, msg.velocity, msg.effort = (
            [float(v) for v in np.concatenate([axes, finger])]
            for axes, finger in zip(measured, fingers))
        self.pub_joints.publish(msg)
        positions, velocities, efforts = (self.controller.split(values) for values in measured)
        for k, (group, publisher) in enumerate(zip(self.groups, self.pub_group_joints)):
            group_msg = JointState()
            group_msg.header.stamp = stamp  # frame_id '' as MotoROS2's (reference §2.2)
            group_msg.name = list(group.joint_names)
            group_msg.position = [float(v) for v in positions[k]]
            group_msg.velocity = [float(v) for v in velocities[k]]
            group_msg.effort = [float(v) for v in efforts[k]]
            publisher.publish(group_msg)

    def _publish_status(self, stamp: Any) -> None:
        fields = self.controller.robot_status()
        msg = self.RobotStatus()
        msg.header.stamp = stamp
        # industrial_msgs: RobotMode AUTO 2 / MANUAL 1; TriState TRUE / ON / CLOSED 1, else 0.
        msg.mode.val = 2 if fields.mode == 'AUTO' else 1
        msg.e_stopped.val = int(fields.e_stopped)
        msg.drives_powered.val = int(fields.drives_powered)
        msg.motion_possible.val = int(fields.motion_possible)
        msg.in_motion.val = int(fields.in_motion)
        msg.in_error.val = int(fields.in_error)
        msg.error_codes = [int(c) for c in fields.error_codes]
        self.pub_status.publish(msg)

    def _publish_tf(self, stamp: Any) -> None:
        """world -> r<g>/base -> r<g>/flange -> r<g>/tool0 for every group from the description's
        FK, in one message, group by group (derived: MotoROS2 fills one TFMessage for all robots,
        MR src/PositionMonitor.c `Ros_PositionMonitor_Initialize_TfPublisher`)."""
        transforms = []
        for group, (model, base_pose), q in zip(self.groups, self._tf_chains,
                                                self.controller.split(self._measured()[0])):
            base = base_pose @ model.fk(q, BASE_LINK)
            flange = base_pose @ model.fk(q, 'flange')
            tool0 = base_pose @ model.fk(q, 'tool0')
            g = group.name
            transforms += [
                FrameTransform(WORLD_FRAME, f'{g}/base', base),
                FrameTransform(f'{g}/base', f'{g}/flange', np.linalg.solve(base, flange)),
                FrameTransform(f'{g}/flange', f'{g}/tool0', np.linalg.solve(flange, tool0))]
        self.pub_tf.publish(self.TFMessage(transforms=[transform_msg(t, stamp)
                                                       for t in transforms]))

    def diagnostics(self) -> dict[str, Any]:
        status = self.controller.robot_status()
        return dict(self.counters, **{f'motoros2_{k}': v
                                      for k, v in self.controller.counters.items()},
                    motoros2_mode=self.controller.mode,
                    motoros2_motion_possible=status.motion_possible,
                    motoros2_not_ready=self.controller.not_ready_code().name)
