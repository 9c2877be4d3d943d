"""safety_node: the software supervisor between every command source and the robot.

NOT a safety-rated function. It validates every command as a whole message, enforces joint,
velocity, acceleration, workspace and tool-speed limits, holds on stale commands or sensors, and
latches a software stop request. It lowers how often the robot's certified functions (FANUC DCS,
Yaskawa FSU, a safety PLC, the hard-wired e-stop) are demanded; it never replaces them.

Command sources publish to this node's inputs (remap them in the cell):
  safety/joint_trajectory (JointTrajectory), safety/position_commands, safety/velocity_commands,
  safety/gripper_commands (Float64MultiArray), safety/cmd_vel (TwistStamped, mobile bases).
It alone sends the robot's commands, in the interface of the cell's driver (`driver`,
`driver_output`; noetra_ros/drivers/outputs.py): forward_position_controller/commands
(ros2_control, fanuc forward-command), joint_trajectory_controller/joint_trajectory (fanuc JTC)
or MotoROS2's queue_traj_point service; plus gripper_position_controller/commands and
diff_drive_controller/cmd_vel. The driver's own status (FANUC GPIO robot_status, MotoROS2
robot_status) holds the arm while it reports e-stop, an error or motion not possible.
Control: topic safety/estop (std_msgs/Bool, true latches), services safety/arm, safety/hold,
safety/estop, safety/reset_estop (std_srvs/Trigger). State: safety/status and /diagnostics.
Audit trail: safety/audit (diagnostic_msgs/DiagnosticArray, batches of records: every cycle that
sends the arm a target with its decision, every operator action, every command refused whole;
core/audit.py, docs/AUDIT.md); the command source is policy/provenance (latched, from
policy_node) when one was heard, else the nodes publishing the command topics.

update_trigger:
- joint_states (default, real robots and real-time sim): one supervisor cycle per measurement;
  a wall-clock watchdog keeps cycling (and so holding) if measurements or the clock stop.
- command (lockstep sim): one cycle when every input in `lockstep_inputs` has answered, so a
  seeded episode stays reproducible; the same joint_states again (the sim's resend of an
  episode's first observation) gets the step's output again, not a second cycle.
- judge_only (shadow mode, docs/SHADOW.md): another controller drives the robot; this node
  judges its command inputs (remapped to shadow/*) against the live joint_states and publishes
  what it would have sent on shadow/judged/joint_commands (sensor_msgs/JointState, stamped with
  the judged step, controller order) and shadow/judged/gripper_commands, never on a driver's
  topic, service or action: its output stage is JudgedOutput, not drivers/outputs.py, and it
  refuses to start if a remapping points a judged topic at a driver's. It cycles once per
  joint_states stamp with the answer to that stamp (core/shadow.JudgeSteps), whatever
  update_trigger says; its audit trail and status are those of a driving node (remap them).
All rules live in noetra_ros.core.safety (core/safety/cell.py: how the supervisor is driven,
shared with the in-process evaluation; SafetyNodeSettings: the parameters below); this node
converts messages, keeps time and publishes.
"""
from __future__ import annotations

import math
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core import audit
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.safety import (ArmPositions, ArmTrajectory, ArmVelocities,
                                    CellOutput, MeasuredJoints, SafetyCell, SafetyNodeSettings,
                                    SafetyState)
from noetra_ros.core.shadow import (JUDGE_AUTO_ARM_VIA, JUDGED_ARM_TOPIC, JUDGED_GRIPPER_TOPIC,
                                    JudgeSteps)
from noetra_ros.drivers.outputs import make_output
from noetra_ros.qos import joint_states_qos, LATCHED, RELIABLE, SENSOR_DATA
from noetra_ros.ros_conversions import audit_entries_msg, stamp_to_seconds
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

LEVELS = {SafetyState.ARMED: DiagnosticStatus.OK, SafetyState.HOLDING: DiagnosticStatus.WARN,
          SafetyState.FAULT: DiagnosticStatus.ERROR, SafetyState.ESTOP: DiagnosticStatus.ERROR}

# Largest lead of a joint_states stamp over this node's /clock that is taken as /clock arriving
# late (15 steps at 500 Hz; 30 ms was seen on this 2-core machine); with the profile's
# future_tolerance_s on top, a stamp up to 50 ms ahead of a late /clock is accepted.
SIM_CLOCK_LAG_MAX_S = 0.03
# name: (default, description) of every parameter: core/safety/cell.SafetyNodeSettings, which
# the in-process evaluation reads a cell's safety node with too.
PARAMETERS = SafetyNodeSettings.parameter_table()
# Rejection code of a command that reached a sim-time node before its first /clock.
NO_CLOCK = 'no_clock'
# The topic each of the cell's inputs arrives on (log lines name the topic).
INPUT_TOPICS = {'joint_states': 'joint_states', 'trajectory': 'safety/joint_trajectory',
                'positions': 'safety/position_commands',
                'velocities': 'safety/velocity_commands', 'gripper': 'safety/gripper_commands',
                'twist': 'safety/cmd_vel'}


def _command_kind(group: str, value: Any) -> str:
    """The INPUT_TOPICS key of a converted command ('gripper', or the arm command's kind)."""
    if group == 'gripper':
        return 'gripper'
    return {ArmTrajectory: 'trajectory', ArmPositions: 'positions',
            ArmVelocities: 'velocities'}[type(value)]


# A refused input's log line repeats at most this often per topic (s); the trail has them all.
REJECTION_LOG_PERIOD_S = 1.0
# The audit trail goes out about this often (s): a batch is max(1, this / period_s) cycles, so a
# 500 Hz driver costs 10 messages a second, not 500 (tools/bench_audit.py).
AUDIT_BATCH_S = 0.1
# judge_only: how long (wall) a step waits for the judged source's answer before it is judged
# without one. The sim does not wait for a shadow policy; an inference of the shipped model takes
# 11-17 ms (p50-p99, docs/results/compare_inprocess_graph_80000-80049.txt) and up to 130 ms (p99)
# with a training job on the same 2 cores, so a second is reached by a source that stopped.
JUDGE_WAIT_S = 1.0
# The topics a driver takes commands on (drivers/outputs.py, the gripper and base controllers):
# no judged output may resolve to one of them.
DRIVER_COMMAND_TOPICS = ('forward_position_controller/commands',
                         'forward_velocity_controller/commands',
                         'joint_trajectory_controller/joint_trajectory',
                         'gripper_position_controller/commands', 'diff_drive_controller/cmd_vel')


class JudgedOutput:
    """The output stage of a judge_only node: what the supervisor decided, as a
    sensor_msgs/JointState stamped with the judged step on shadow/judged/joint_commands. It has
    no driver interface at all, so a judge cannot command a robot whatever its driver settings."""

    kind = 'judged'

    def __init__(self, node: Node, joint_names: list[str]) -> None:
        self.joint_names = list(joint_names)
        self.pub = node.create_publisher(JointState, JUDGED_ARM_TOPIC, RELIABLE)
        self.sent = 0
        # The judged step's stamp, exactly as received (a wall-clock stamp in float seconds is
        # only good to a fraction of a microsecond): readers match it with the joint_states.
        self.stamp = TimeMsg()

    def send(self, positions, now: float) -> None:
        msg = JointState(name=self.joint_names, position=[float(v) for v in positions])
        msg.header.stamp = self.stamp
        self.pub.publish(msg)
        self.sent += 1

    def fault(self) -> str | None:
        return None  # no driver: its status holds the driving supervisor, not the judge

    def status(self) -> dict[str, Any]:
        return {'output': self.kind, 'sent': self.sent}


class SafetyNode(Node):
    def __init__(self) -> None:
        super().__init__('safety')
        # Read-only: limits cannot be relaxed at run time through set_parameters (C21).
        self.settings = settings = SafetyNodeSettings.from_parameters(
            declare_parameters(self, PARAMETERS, read_only=True))
        self._rejection_log: dict[str, tuple[float, int]] = {}  # topic -> (logged, skipped)
        self.cell = SafetyCell.from_settings(settings, on_rejected=self._log_rejected,
                                             on_armed=self._log_armed)
        self._lockstep = settings.update_trigger == 'command'
        self._required = {'joint_states', *settings.lockstep_inputs}
        self._step: dict[str, Any] = {}  # group -> its input of the step
        self._step_time = 0.0
        self._step_output: CellOutput | None = None  # lockstep: what the last step sent
        self.resent = 0
        self._last_cycle_wall = 0.0
        self._last_state: tuple[SafetyState, str] | None = None
        self.published = 0
        self._sim_time = bool(self.get_parameter('use_sim_time').value)
        self._sim_time_floor = 0.0

        self._judge: JudgeSteps | None = None
        if settings.judge_only:
            self._check_judged_topics()
            self._judge = JudgeSteps(JUDGE_WAIT_S)
            self.output: Any = JudgedOutput(self, list(self.cell.controller_joints))
            self.pub_gripper = self.create_publisher(Float64MultiArray, JUDGED_GRIPPER_TOPIC,
                                                     RELIABLE)
            self.create_timer(0.05, lambda: self._run_judge(time.monotonic()),
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        else:
            self.output = make_output(self, settings, list(self.cell.controller_joints),
                                      self.cell.velocity_limits[self.cell.to_controller])
            self.pub_gripper = self.create_publisher(
                Float64MultiArray, 'gripper_position_controller/commands', RELIABLE)
        self.pub_status = self.create_publisher(DiagnosticStatus, 'safety/status', LATCHED)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self.audit = audit.AuditBatcher(max(1, round(AUDIT_BATCH_S / settings.period_s)))
        self.pub_audit = self.create_publisher(DiagnosticArray, audit.AUDIT_TOPIC, RELIABLE)
        self._policy_provenance: dict[str, str] | None = None
        self.create_subscription(DiagnosticStatus, audit.PROVENANCE_TOPIC,
                                 self._on_provenance, LATCHED)
        measurement_qos = joint_states_qos(settings.joint_states_qos)
        for msg_type, topic, group, convert in (
                (JointState, 'joint_states', 'joint_states', self._joint_state),
                (JointTrajectory, 'safety/joint_trajectory', 'arm', self._trajectory),
                (Float64MultiArray, 'safety/position_commands', 'arm',
                 lambda msg: ArmPositions(list(msg.data))),
                (Float64MultiArray, 'safety/velocity_commands', 'arm',
                 lambda msg: ArmVelocities(list(msg.data))),
                (Float64MultiArray, 'safety/gripper_commands', 'gripper',
                 lambda msg: list(msg.data))):
            # A judge also takes each message's DDS source timestamp: it places unstamped
            # answers by when they were sent, not when they are handled (core/shadow.py).
            self.create_subscription(
                msg_type, topic,
                (lambda msg, g=group, c=convert: self._receive(g, c(msg))) if self._judge is None
                else (lambda msg, info, g=group, c=convert: self._judge_receive(
                    g, msg, c(msg), info['source_timestamp'])),
                measurement_qos if topic == 'joint_states' else RELIABLE)
        self.create_subscription(Bool, 'safety/estop', self._on_estop_topic, RELIABLE)
        for topic in settings.watched_sensors:
            self.create_subscription(Image, topic,
                                     lambda msg, t=topic: self._on_sensor(t, msg),
                                     SENSOR_DATA)
        if self.cell.base is not None:
            self.pub_twist = self.create_publisher(TwistStamped, 'diff_drive_controller/cmd_vel',
                                                   RELIABLE)
            self.create_subscription(TwistStamped, 'safety/cmd_vel', self._on_twist, RELIABLE)
        for name, handler in (('arm', self._srv_arm), ('hold', self._srv_hold),
                              ('estop', self._srv_estop), ('reset_estop', self._srv_reset)):
            self.create_service(Trigger, f'safety/{name}', handler)
        if not self._lockstep and self._judge is None:
            # A steady (wall) clock: on use_sim_time a timer on the node clock stops with /clock,
            # which is exactly when the watchdog has to keep cycling (C16).
            self.create_timer(1.0 / settings.watchdog_hz, self._watchdog,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Diagnostics must keep coming when /clock stops (that is when they matter most).
        self.create_timer(1.0, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        if self._judge is not None:
            self.get_logger().warn(
                'judge_only: judging %s against joint_states, commanding nothing (output %s); '
                'robot=%s profile=%s' % (self.resolve_topic_name('safety/joint_trajectory'),
                                         self.resolve_topic_name(JUDGED_ARM_TOPIC),
                                         settings.robot, self.cell.profile.name))
        else:
            self.get_logger().warn(
                'safety supervisor ready (a NON-safety-rated software layer: it requests holds; '
                'the robot\'s certified stop functions stay in charge): robot=%s profile=%s '
                'trigger=%s' % (settings.robot, self.cell.profile.name, settings.update_trigger))
        self._publish_status(self.cell.supervisor.state, self.cell.supervisor.reason)

    # ------------------------------------------------------------------ messages -> core types
    @staticmethod
    def _joint_state(msg: JointState) -> MeasuredJoints:
        return MeasuredJoints(list(msg.name), list(msg.position), list(msg.velocity) or None,
                              stamp_to_seconds(msg.header.stamp))

    @staticmethod
    def _trajectory(msg: JointTrajectory) -> ArmTrajectory:
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        positions = [list(p.positions) for p in msg.points]
        velocities: list[list[float]] | None = [list(p.velocities) for p in msg.points]
        if not all(velocities):
            velocities = None
        return ArmTrajectory(list(msg.joint_names), times, positions, velocities,
                             stamp_to_seconds(msg.header.stamp))

    # ------------------------------------------------------------------ helpers
    def _check_judged_topics(self) -> None:
        """judge_only: refuse a remapping that points a judged output at a driver's topic."""
        prefix = self.settings.driver_namespace
        drivers = {self.resolve_topic_name(t) for t in DRIVER_COMMAND_TOPICS}
        drivers |= {self.resolve_topic_name(f'{prefix.rstrip("/")}/{t}') for t in
                    DRIVER_COMMAND_TOPICS if prefix}
        for topic in (JUDGED_ARM_TOPIC, JUDGED_GRIPPER_TOPIC):
            resolved = self.resolve_topic_name(topic)
            if resolved in drivers:
                raise ConfigError(f'judge_only: {topic} is remapped to {resolved}, a driver\'s '
                                  'command topic; a judge must never reach the robot')

    def _now(self) -> float:
        if self._judge is not None:
            # A judge's time is the step it judges (it may run behind the clock, waiting for an
            # answer): operator actions and rejections go into its trail at that time.
            return self._step_time
        now = self.get_clock().now().nanoseconds * 1e-9
        # On sim time the simulator stamps joint_states with its own clock, so a measurement's
        # stamp IS a reading of that clock: when /clock reaches this node a few steps later than
        # the measurement (an executor serving several topics at a 500 Hz driver rate falls
        # behind), time is that stamp. At most SIM_CLOCK_LAG_MAX_S of lead counts, and time
        # stays continuous: a /clock that is absent (0) gets no lead at all, a paused one gives
        # a time that stops SIM_CLOCK_LAG_MAX_S later (seen as stalled), a rewound one goes
        # back with it (C16). The future-stamp check keeps guarding real clocks (wall time).
        if self._sim_time and now > 0.0:
            return now + min(max(self._sim_time_floor - now, 0.0), SIM_CLOCK_LAG_MAX_S)
        return now

    def _log_rejected(self, what: str, reason: str) -> None:
        # Throttled per topic, not per call site (rclpy's throttle): refused joint_states at
        # 500 Hz must not hide that a command topic is refused too.
        topic = INPUT_TOPICS[what]
        wall = time.monotonic()
        logged_at, skipped = self._rejection_log.get(topic, (-math.inf, 0))
        if wall - logged_at >= REJECTION_LOG_PERIOD_S:
            more = (f' ({skipped} more on this topic since the last line)' if skipped else '')
            self.get_logger().error(f'{topic} rejected: {reason}{more}')
            self._rejection_log[topic] = (wall, 0)
        else:
            self._rejection_log[topic] = (logged_at, skipped + 1)
        if what != 'joint_states':
            # Commands only: a refused measurement is no command; what it causes (a stale
            # source, a hold) shows in the cycle records.
            self.audit.rejected(self._now_ns(), INPUT_TOPICS[what], reason)
            self._flush_audit()

    # ------------------------------------------------------------------ audit trail
    def _now_ns(self) -> int:
        return int(round(self._now() * 1e9))

    def _audit_operator(self, action: str, via: str, accepted: bool, reason: str) -> None:
        self.audit.operator(self._now_ns(), action, via, accepted, reason,
                            self.cell.supervisor.state.value)
        self._flush_audit()

    def _on_provenance(self, msg: DiagnosticStatus) -> None:
        self._policy_provenance = {kv.key: kv.value for kv in msg.values}
        self._update_source()

    def _update_source(self) -> None:
        """The command source in force: the policy's provenance when one was heard, else the
        nodes publishing the arm command topics (e.g. 'expert'); flushes on a change."""
        if self._policy_provenance is not None:
            source = dict(self._policy_provenance)
            source.setdefault('source', 'policy')
        else:
            names = sorted({f'{info.node_namespace.rstrip("/")}/{info.node_name}'.lstrip('/')
                            for topic in ('safety/joint_trajectory', 'safety/position_commands',
                                          'safety/velocity_commands')
                            for info in self.get_publishers_info_by_topic(
                                self.resolve_topic_name(topic))})
            source = {'source': ','.join(names)}
        if self.audit.set_source(source):
            self._flush_audit()

    def _flush_audit(self) -> None:
        entries = self.audit.take()
        if not entries:
            return
        self.pub_audit.publish(audit_entries_msg(entries, self.settings.robot,
                                                 self.get_clock().now().to_msg()))

    def _log_armed(self, cause: str) -> None:
        self.get_logger().info(f'armed ({cause})')
        if self._judge is not None:
            # Had the judged source driven, an operator would have armed here (docs/SHADOW.md).
            self._audit_operator('arm', JUDGE_AUTO_ARM_VIA, True, self.cell.armed_from)

    def _receive(self, group: str, value: Any) -> None:
        """Handle an input now (joint_states trigger) or when the lockstep step is whole.

        In lockstep, the order in which joint_states and the commands of one step arrive is up
        to DDS; buffering them and handing the whole step to the cell (which takes them in a
        fixed order, at the step's own stamp) keeps a seeded episode reproducible.
        """
        if not self._lockstep or group not in self._required:
            if group == 'joint_states' and self._sim_time:
                self._sim_time_floor = value.stamp
            elif self._sim_time and self.get_clock().now().nanoseconds == 0:
                # A command that arrives before the first /clock cannot be placed in time (an
                # unstamped one would get stamp 0): refused under its own name, not 'zero_stamp',
                # so the log says what is missing. At startup this is a race: the commanding
                # node may hear the simulator before this node hears /clock.
                self._log_rejected(_command_kind(group, value),
                                   f'{NO_CLOCK}: use_sim_time is set and no /clock message has '
                                   'arrived yet')
                return
            now = self._step_time if self._lockstep else self._now()
            if group == 'joint_states':
                self.cell.on_joint_state(value, now)
                if not self._lockstep:
                    self._cycle(now)
            elif group == 'arm':
                self.cell.on_arm_command(value, now)
            else:
                self.cell.on_gripper_command(value)
            return
        if (group == 'joint_states' and self._step_output is not None
                and value.stamp <= self._step_time):
            # A lockstep sim publishes an episode's first observation again when no answer
            # reached it: the step was decided, so its output goes out again, unchanged (no
            # second cycle, no second audit record). An older stamp is a late copy: dropped.
            if value.stamp == self._step_time:
                self._resend(self._step_output)
            return
        self._step[group] = value
        if len(self._step) < len(self._required):
            return
        step, self._step = self._step, {}
        joint_state = step['joint_states']
        now = self._step_time = joint_state.stamp
        self._last_cycle_wall = time.monotonic()
        self._step_output = self.cell.step(joint_state, step.get('arm'), step.get('gripper'),
                                           now)
        self._publish(self._step_output, now)

    def _resend(self, out: CellOutput) -> None:
        if out.arm is not None:
            self.output.send(out.arm[self.cell.to_controller], self._now())
        if out.gripper is not None:
            self.pub_gripper.publish(Float64MultiArray(data=[out.gripper]))
        self.resent += 1

    def _judge_receive(self, group: str, msg: Any, value: Any, sent_ns: int) -> None:
        """judge_only: place the input (`msg` converted to `value`) on its joint_states step
        (`sent_ns`: its DDS source timestamp) and judge the steps now due. Stamps are matched
        in integer nanoseconds, as the messages carry them."""
        assert self._judge is not None
        wall = time.monotonic()
        header = getattr(msg, 'header', None)
        stamp_ns = None if header is None else (header.stamp.sec * 1_000_000_000
                                                + header.stamp.nanosec)
        if group == 'joint_states':
            self._judge.joint_state(stamp_ns, value, wall, sent_ns)
        elif group == 'arm':
            self._judge.answer(value, stamp_ns, sent_ns)
        else:
            self._judge.gripper(value, sent_ns)
        self._run_judge(wall)

    def _run_judge(self, wall: float) -> None:
        assert self._judge is not None
        for step in self._judge.due(wall):
            now = self._step_time = step.measured.stamp
            self.output.stamp = TimeMsg(sec=step.stamp_ns // 1_000_000_000,
                                        nanosec=step.stamp_ns % 1_000_000_000)
            self._publish(self.cell.step(step.measured, step.arm, step.gripper, now), now)

    def _on_sensor(self, topic: str, msg: Image) -> None:
        self.cell.on_sensor(topic, stamp_to_seconds(msg.header.stamp), self._now())

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        self.cell.on_twist([t.linear.x, t.linear.y, t.linear.z],
                           [t.angular.x, t.angular.y, t.angular.z],
                           stamp_to_seconds(msg.header.stamp), self._now())

    def _on_estop_topic(self, msg: Bool) -> None:
        if msg.data:
            self._estop('safety/estop topic')

    def _estop(self, source: str) -> None:
        now = self._now()
        self.cell.estop(now, f'estop from {source}')
        self._audit_operator('estop', source, True, 'ESTOP latched')
        self.get_logger().error(f'ESTOP latched (software stop request) from {source}; '
                                'reset_estop and then arm to move again')
        if self._judge is None:  # a judge cycles only on its steps (their stamps are its time)
            self._cycle(now)

    # ------------------------------------------------------------------ services
    def _srv_arm(self, request, response):
        decision = self.cell.arm(self._now())
        self._audit_operator('arm', 'safety/arm service', decision.accepted, decision.reason)
        response.success, response.message = decision.accepted, decision.reason
        return response

    def _srv_hold(self, request, response):
        self.cell.hold(self._now(), 'hold requested by service')
        self._audit_operator('hold', 'safety/hold service', True, 'hold requested by service')
        response.success, response.message = True, self.cell.supervisor.state.value
        return response

    def _srv_estop(self, request, response):
        self._estop('safety/estop service')
        response.success, response.message = True, 'ESTOP latched'
        return response

    def _srv_reset(self, request, response):
        decision = self.cell.reset_estop(self._now())
        self._audit_operator('reset_estop', 'safety/reset_estop service', decision.accepted,
                             decision.reason)
        response.success, response.message = decision.accepted, decision.reason
        return response

    # ------------------------------------------------------------------ cycle
    def _watchdog(self) -> None:
        # Measurements (or the clock) stopped: keep cycling so the supervisor sees the stale
        # source and decelerates to a hold (C7, C16).
        if time.monotonic() - self._last_cycle_wall > 2.0 * self.settings.period_s:
            self._cycle(self._now())

    def _cycle(self, now: float) -> None:
        self._last_cycle_wall = time.monotonic()
        fault = self.output.fault()
        if self.cell.on_driver_status(fault, now):
            if fault:
                self.get_logger().error(f'driver reports {fault}: holding; nothing arms the arm '
                                        'until the driver clears it')
            else:
                self.get_logger().info('driver fault cleared; arm again to move')
        self._publish(self.cell.cycle(now), now)

    def _publish(self, out: CellOutput, now: float) -> None:
        """Send what the cell decided: arm (controller order), gripper, base; status on change;
        the cycle's audit record."""
        if out.arm is not None:
            self.output.send(out.arm[self.cell.to_controller], self._now())
            self.published += 1
            decision, reason = audit.cycle_decision(
                out.state is SafetyState.ARMED, out.reason, out.command_stamp is not None,
                out.interventions)
            self.audit.cycle(int(round(now * 1e9)), decision, reason,
                             audit.seconds_to_ns(out.command_stamp))
            if self.audit.full:
                self._flush_audit()
        if out.gripper is not None:
            self.pub_gripper.publish(Float64MultiArray(data=[out.gripper]))
        if out.twist is not None:
            msg = TwistStamped()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = 'base_link'
            (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) = (
                float(v) for v in out.twist.linear)
            (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = (
                float(v) for v in out.twist.angular)
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
        values = dict(self.cell.supervisor.counters, state=state.value, reason=reason,
                      profile=self.cell.profile.name, published=self.published)
        self.pub_status.publish(DiagnosticStatus(
            level=LEVELS[state], name='safety', message=f'{state.value}: {reason}',
            hardware_id=self.settings.robot,
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))

    def _publish_diagnostics(self) -> None:
        # Once a second: the command source may have changed (a graph query, never per cycle),
        # and a cycle stream that stopped must not leave records unpublished.
        self._update_source()
        self._flush_audit()
        state, reason = self.cell.supervisor.state, self.cell.supervisor.reason
        values = dict(self.cell.supervisor.counters, state=state.value, reason=reason,
                      profile=self.cell.profile.name, published=self.published,
                      resent=self.resent, driver=self.settings.driver, **self.output.status())
        status = DiagnosticStatus(
            level=LEVELS[state], name=f'{self.get_name()}: supervisor',
            message=f'{state.value}: {reason}', hardware_id=self.settings.robot,
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def main(args=None) -> None:
    run_node(SafetyNode, 'safety', args)


if __name__ == '__main__':
    main()
