"""safety_node: the software supervisor between every command source and the robot.

NOT a safety-rated function. It validates every command as a whole message, enforces joint,
velocity, acceleration, workspace and tool-speed limits, holds on stale commands or sensors, and
latches a software stop request. It lowers how often the robot's certified functions (FANUC DCS,
Yaskawa FSU, a safety PLC, the hard-wired e-stop) are demanded; it never replaces them.

Command sources publish to this node's inputs (remap them in the cell):
  safety/joint_trajectory (JointTrajectory), safety/position_commands, safety/velocity_commands,
  safety/gripper_commands (Float64MultiArray), safety/cmd_vel (TwistStamped, mobile bases).
It alone publishes the robot's command topics:
  forward_position_controller/commands, gripper_position_controller/commands,
  diff_drive_controller/cmd_vel.
Control: topic safety/estop (std_msgs/Bool, true latches), services safety/arm, safety/hold,
safety/estop, safety/reset_estop (std_srvs/Trigger). State: safety/status and /diagnostics.

update_trigger:
- joint_states (default, real robots and real-time sim): one supervisor cycle per measurement;
  a wall-clock watchdog keeps cycling (and so holding) if measurements or the clock stop.
- command (lockstep sim): one cycle when every input in `lockstep_inputs` has answered, so a
  seeded episode stays reproducible.
All rules live in noetra_ros.core.safety; this node converts messages and keeps time.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.commands import controller_order
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.paths import config_dir
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.safety import (fk_from_model, load_profile, SafetyState,
                                    SafetySupervisor, TwistSupervisor)
from noetra_ros.qos import joint_states_qos, LATCHED, RELIABLE, SENSOR_DATA
from noetra_ros.ros_conversions import stamp_to_seconds
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

TRIGGERS = ('joint_states', 'command')
LEVELS = {SafetyState.ARMED: DiagnosticStatus.OK, SafetyState.HOLDING: DiagnosticStatus.WARN,
          SafetyState.FAULT: DiagnosticStatus.ERROR, SafetyState.ESTOP: DiagnosticStatus.ERROR}

PARAMETERS = {
    'robot': ('fanuc_lrmate200id', 'robot whose URDF limits and kinematics are enforced'),
    'profile': ('industrial', 'safety profile: config/safety/<name>.yaml or a path'),
    'update_trigger': ('joint_states', f'what runs a supervisor cycle: one of {TRIGGERS}'),
    'lockstep_inputs': (['arm', 'gripper'], 'update_trigger=command: inputs to wait for'),
    'period_s': (0.05, 'nominal cycle period (the joint_states period of the driver)'),
    'watchdog_hz': (50.0, 'wall-clock rate of the stall watchdog (joint_states trigger)'),
    'watched_sensors': ([], 'Image topics that must stay fresh, e.g. [scene_camera/image_raw]'),
    'controller_joints': ([], 'joint order of the forward position controller ([] = URDF)'),
    'arm_on_start': (False, 'arm once at start-up when inputs are fresh'),
    'auto_arm': (False, 'SIMULATION ONLY: re-arm from HOLDING/FAULT when a fresh valid command '
                        'arrives (never from ESTOP). Must stay false on a real robot.'),
    'mobile_base': (False, 'also supervise safety/cmd_vel -> diff_drive_controller/cmd_vel'),
    'joint_states_qos': ('reliable', "joint_states subscription: 'reliable' or 'sensor_data' "
                                     '(best effort: MotoROS2 publishes joint_states best effort, '
                                     'which a reliable reader never receives)'),
}


class SafetyNode(Node):
    def __init__(self) -> None:
        super().__init__('safety')
        # Read-only: limits cannot be relaxed at run time through set_parameters (C21).
        p = declare_parameters(self, PARAMETERS, read_only=True)
        if p['update_trigger'] not in TRIGGERS:
            raise ConfigError(f'parameter update_trigger={p["update_trigger"]!r}: must be one of '
                              f'{TRIGGERS}')
        self.p = p
        description = load_robot_description(p['robot'])
        model = description.model
        self.profile = load_profile(p['profile'], config_dir('safety'))
        self.sensors = list(p['watched_sensors'])
        self.supervisor = SafetySupervisor(
            description.limits, self.profile,
            fk=fk_from_model(model, self.profile.tool_frame), period_s=float(p['period_s']),
            required_sensors=self.sensors)
        self.joint_names = list(model.joint_names)
        self.controller_joints, self._to_controller = controller_order(
            p['controller_joints'], self.joint_names)
        gripper = description.gripper
        assert gripper is not None  # load_robot_description includes the gripper by default
        self.gripper_range = (gripper.open_position, gripper.closed_position)
        self.gripper_target: float | None = None
        self.gripper_joints = tuple(gripper.joint_names)
        self.base = TwistSupervisor(self.profile) if p['mobile_base'] else None
        self._required = {'joint_states', *p['lockstep_inputs']}
        self._step: dict[str, tuple] = {}
        self._step_time = 0.0
        self._last_joint_state_wall = 0.0
        self._last_cycle_wall = 0.0
        self._last_state = None
        self.published = 0

        self.pub_arm = self.create_publisher(Float64MultiArray,
                                             'forward_position_controller/commands', RELIABLE)
        self.pub_gripper = self.create_publisher(Float64MultiArray,
                                                 'gripper_position_controller/commands', RELIABLE)
        self.pub_status = self.create_publisher(DiagnosticStatus, 'safety/status', LATCHED)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        measurement_qos = joint_states_qos(p['joint_states_qos'])
        for msg_type, topic, group, handler in (
                (JointState, 'joint_states', 'joint_states', self._on_joint_state),
                (JointTrajectory, 'safety/joint_trajectory', 'arm', self._on_trajectory),
                (Float64MultiArray, 'safety/position_commands', 'arm', self._on_positions),
                (Float64MultiArray, 'safety/velocity_commands', 'arm', self._on_velocities),
                (Float64MultiArray, 'safety/gripper_commands', 'gripper', self._on_gripper)):
            self.create_subscription(
                msg_type, topic, lambda msg, g=group, h=handler: self._receive(g, h, msg),
                measurement_qos if topic == 'joint_states' else RELIABLE)
        self.create_subscription(Bool, 'safety/estop', self._on_estop_topic, RELIABLE)
        for topic in self.sensors:
            self.create_subscription(Image, topic,
                                     lambda msg, t=topic: self._on_sensor(t, msg),
                                     SENSOR_DATA)
        if self.base is not None:
            self.pub_twist = self.create_publisher(TwistStamped, 'diff_drive_controller/cmd_vel',
                                                   RELIABLE)
            self.create_subscription(TwistStamped, 'safety/cmd_vel', self._on_twist, RELIABLE)
        for name, handler in (('arm', self._srv_arm), ('hold', self._srv_hold),
                              ('estop', self._srv_estop), ('reset_estop', self._srv_reset)):
            self.create_service(Trigger, f'safety/{name}', handler)
        if p['update_trigger'] == 'joint_states':
            # A steady (wall) clock: on use_sim_time a timer on the node clock stops with /clock,
            # which is exactly when the watchdog has to keep cycling (C16).
            self.create_timer(1.0 / float(p['watchdog_hz']), self._watchdog,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Diagnostics must keep coming when /clock stops (that is when they matter most).
        self.create_timer(1.0, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._arm_pending = bool(p['arm_on_start'])
        self.get_logger().warn(
            'safety supervisor ready (a NON-safety-rated software layer: it requests holds; the '
            'robot\'s certified stop functions stay in charge): robot=%s profile=%s trigger=%s'
            % (p['robot'], self.profile.name, p['update_trigger']))
        self._publish_status(self.supervisor.state, self.supervisor.reason)

    # ------------------------------------------------------------------ helpers
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _log_decision(self, what: str, decision) -> None:
        # Commands arriving while not armed are expected (they are counted, not followed).
        if not decision.accepted and 'not armed' not in decision.reason:
            self.get_logger().error(f'{what} rejected: {decision.reason}',
                                    throttle_duration_sec=1.0)

    def _maybe_auto_arm(self, now: float) -> None:
        state = self.supervisor.state
        if state is SafetyState.ARMED or state is SafetyState.ESTOP:
            return
        if self._arm_pending or self.p['auto_arm']:
            decision = self.supervisor.arm(now)
            if decision.accepted:
                self._arm_pending = False
                self.get_logger().info(f'armed ({"auto_arm" if self.p["auto_arm"] else "start"})')

    def _receive(self, group: str, handler, msg) -> None:
        """Run an input handler now (joint_states trigger) or when the lockstep step is whole.

        In lockstep, the order in which joint_states and the commands of one step arrive is up
        to DDS; buffering them and handling them in a fixed order, at the step's own stamp,
        keeps a seeded episode reproducible.
        """
        if self.p['update_trigger'] == 'joint_states' or group not in self._required:
            handler(msg, self._step_time if self.p['update_trigger'] == 'command'
                    else self._now())
            return
        self._step[group] = (handler, msg)
        if len(self._step) < len(self._required):
            return
        step, self._step = self._step, {}
        js_handler, js_msg = step.pop('joint_states')
        now = stamp_to_seconds(js_msg.header.stamp)
        self._step_time = now
        js_handler(js_msg, now)
        # A fixed order, not DDS arrival order: 'arm' before 'gripper', so on the step that
        # arms (auto_arm) the gripper command is followed whichever message came first.
        for group in sorted(step):
            handler_, msg_ = step[group]
            handler_(msg_, now)
        self._cycle(now)

    def _on_joint_state(self, msg: JointState, now: float) -> None:
        decision = self.supervisor.on_joint_state(
            list(msg.name), list(msg.position), list(msg.velocity) or None,
            stamp_to_seconds(msg.header.stamp), now)
        self._log_decision('joint_states', decision)
        self._last_joint_state_wall = time.monotonic()
        if self.gripper_target is None and decision.accepted:
            # Until a source commands the gripper, hold it where it is.
            fingers = [q for n, q in zip(msg.name, msg.position) if n in self.gripper_joints]
            if fingers and np.isfinite(fingers).all():
                self.gripper_target = float(np.clip(np.mean(fingers), *self.gripper_range))
        if self._arm_pending:
            self._maybe_auto_arm(now)
        if self.p['update_trigger'] == 'joint_states':
            self._cycle(now)

    def _on_sensor(self, topic: str, msg: Image) -> None:
        self.supervisor.on_sensor(topic, stamp_to_seconds(msg.header.stamp), self._now())

    def _submit(self, what: str, submit, now: float) -> None:
        """Hand a command to the supervisor; with auto_arm, a valid command re-arms first."""
        decision = submit()
        unarmed = (not decision.accepted) and decision.reason.startswith('valid, but not armed')
        if unarmed and self.p['auto_arm']:
            self._maybe_auto_arm(now)
            if self.supervisor.state is SafetyState.ARMED:
                decision = submit()
        self._log_decision(what, decision)

    def _on_trajectory(self, msg: JointTrajectory, now: float) -> None:
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        positions = [list(p.positions) for p in msg.points]
        velocities = [list(p.velocities) for p in msg.points]
        if not all(velocities):
            velocities = None
        self._submit('safety/joint_trajectory', lambda: self.supervisor.on_command_trajectory(
            list(msg.joint_names), times, positions, velocities,
            stamp_to_seconds(msg.header.stamp), now), now)

    def _on_positions(self, msg: Float64MultiArray, now: float) -> None:
        # Float64MultiArray has no header: the receipt time is its stamp.
        self._submit('safety/position_commands', lambda: self.supervisor.on_command_positions(
            self.controller_joints, list(msg.data), now, now), now)

    def _on_velocities(self, msg: Float64MultiArray, now: float) -> None:
        self._submit('safety/velocity_commands', lambda: self.supervisor.on_command_velocities(
            self.controller_joints, list(msg.data), now, now), now)

    def _on_gripper(self, msg: Float64MultiArray, now: float) -> None:
        values = np.asarray(msg.data, dtype=float)
        if values.shape != (1,) or not np.isfinite(values).all():
            self.get_logger().error(f'safety/gripper_commands rejected: expected one finite '
                                    f'value, got {list(msg.data)}', throttle_duration_sec=1.0)
            return
        if self.supervisor.state is SafetyState.ARMED:
            self.gripper_target = float(np.clip(values[0], *self.gripper_range))

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        decision = self.base.on_twist([t.linear.x, t.linear.y, t.linear.z],
                                      [t.angular.x, t.angular.y, t.angular.z],
                                      stamp_to_seconds(msg.header.stamp), self._now())
        self._log_decision('safety/cmd_vel', decision)

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self._estop('safety/estop topic')

    def _estop(self, source: str) -> None:
        now = self._now()
        self.supervisor.estop(now, f'estop from {source}')
        if self.base is not None:
            self.base.estop(now, f'estop from {source}')
        self.get_logger().error(f'ESTOP latched (software stop request) from {source}; '
                                'reset_estop and then arm to move again')
        self._cycle(now)

    # ------------------------------------------------------------------ services
    def _srv_arm(self, request, response):
        decision = self.supervisor.arm(self._now())
        response.success, response.message = decision.accepted, decision.reason
        if self.base is not None and decision.accepted:
            self.base.arm(self._now())
        return response

    def _srv_hold(self, request, response):
        self.supervisor.hold(self._now(), 'hold requested by service')
        response.success, response.message = True, self.supervisor.state.value
        return response

    def _srv_estop(self, request, response):
        self._estop('safety/estop service')
        response.success, response.message = True, 'ESTOP latched'
        return response

    def _srv_reset(self, request, response):
        decision = self.supervisor.reset_estop(self._now())
        if self.base is not None:
            self.base.reset_estop(self._now())
        response.success, response.message = decision.accepted, decision.reason
        return response

    # ------------------------------------------------------------------ cycle
    def _watchdog(self) -> None:
        # Measurements (or the clock) stopped: keep cycling so the supervisor sees the stale
        # source and decelerates to a hold (C7, C16).
        period = float(self.p['period_s'])
        if time.monotonic() - self._last_cycle_wall > 2.0 * period:
            self._cycle(self._now())

    def _cycle(self, now: float) -> None:
        self._last_cycle_wall = time.monotonic()
        out = self.supervisor.update(now)
        if (self.p['auto_arm'] and out.state is SafetyState.FAULT
                and out.reason.startswith('tracking error')):
            # SIMULATION ONLY: an episode reset moves the simulated arm in one step, which the
            # supervisor sees as a tracking fault. Re-arm at once (first output = measured), so
            # the held pre-reset position is never sent and every episode starts the same way.
            self._maybe_auto_arm(now)
            if self.supervisor.state is SafetyState.ARMED:
                out = self.supervisor.update(now)  # same time: re-emits the re-based position
        if out.positions is not None and np.isfinite(out.positions).all():
            ordered = out.positions[self._to_controller]
            self.pub_arm.publish(Float64MultiArray(data=[float(v) for v in ordered]))
            self.published += 1
        if self.gripper_target is not None:
            self.pub_gripper.publish(Float64MultiArray(data=[self.gripper_target]))
        if self.base is not None:
            twist_out = self.base.update(now)
            msg = TwistStamped()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = 'base_link'
            (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) = (
                float(v) for v in twist_out.linear)
            (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = (
                float(v) for v in twist_out.angular)
            self.pub_twist.publish(msg)
        if (out.state, out.reason) != self._last_state:
            self._last_state = (out.state, out.reason)
            self._publish_status(out.state, out.reason)
            # rclpy binds one severity to each logging call site, hence two calls.
            if out.state is SafetyState.ARMED:
                self.get_logger().info(f'state {out.state.value}: {out.reason}')
            else:
                self.get_logger().warn(f'state {out.state.value}: {out.reason}')

    def _publish_status(self, state: SafetyState, reason: str) -> None:
        values = dict(self.supervisor.counters, state=state.value, reason=reason,
                      profile=self.profile.name, published=self.published)
        self.pub_status.publish(DiagnosticStatus(
            level=LEVELS[state], name='safety', message=f'{state.value}: {reason}',
            hardware_id=self.p['robot'],
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))

    def _publish_diagnostics(self) -> None:
        state, reason = self.supervisor.state, self.supervisor.reason
        values = dict(self.supervisor.counters, state=state.value, reason=reason,
                      profile=self.profile.name, published=self.published)
        status = DiagnosticStatus(
            level=LEVELS[state], name=f'{self.get_name()}: supervisor',
            message=f'{state.value}: {reason}', hardware_id=self.p['robot'],
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def main(args=None) -> None:
    run_node(SafetyNode, 'safety', args)


if __name__ == '__main__':
    main()
