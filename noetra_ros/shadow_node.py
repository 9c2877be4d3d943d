"""shadow_node: a shadow policy's would-be commands against the controller that drives, per episode.

In a shadow cell (docs/SHADOW.md) the driving controller (the scripted expert, or an operator)
moves the robot through the safety supervisor; a policy runs on the same live inputs with its
commands remapped to shadow/*, and a judge_only safety node judges them. This node listens to
all of it and, at the end of every episode, publishes the episode's summary on
`shadow/episode_report`: std_msgs/String holding one JSON object (latched: a late subscriber gets
the newest), the format of core/shadow.episode_report and docs/SHADOW.md. The monitor of
`noetra run` puts the summaries in report.json; the node logs a one-line summary of each too.

Inputs (relative names, the shadow cell's conventions as defaults):
  joint_states (sensor_msgs/JointState); task/status (the sim's episodes);
  driving controller: safety/position_commands, safety/joint_trajectory,
    safety/gripper_commands (what the expert sends its supervisor);
  shadow source: shadow/position_commands, shadow/joint_trajectory, shadow/gripper_commands;
  judge: shadow/judged/joint_commands (JointState), shadow/safety/audit (its audit trail).
Which step each answer belongs to, and every figure of the summary: core/shadow.py. This node
converts messages (joint names and orders through core/joint_names.py) and keeps wall time.
"""
from __future__ import annotations

import json
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core import audit
from noetra_ros.core.commands import (controller_order, validate_joint_names,
                                      validate_joint_vector, validate_scalar)
from noetra_ros.core.errors import CommandError, ConfigError, NoetraError
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.shadow import (DEFAULT_MAX_SERIES_HZ, DRIVING, EPISODE_SOURCES,
                                    JUDGE_AUDIT_TOPIC, JUDGED_ARM_TOPIC, REFERENCES, REPORT_TOPIC,
                                    SHADOW, SHADOW_GRIPPER_TOPIC, SHADOW_POSITION_TOPIC,
                                    SHADOW_TRAJECTORY_TOPIC, ShadowComparator)
from noetra_ros.qos import JOINT_STATES_QOS_KINDS, joint_states_qos, LATCHED, RELIABLE
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

PARAMETERS = {
    'robot': ('fanuc_lrmate200id', 'robot whose arm joints are compared'),
    'reference': ('command', f'what the shadow source is compared with: one of {REFERENCES} '
                             '(command: the driving controller\'s commands; measured: the arm '
                             'one step later, for a driver commanded outside ROS such as a '
                             'teach pendant)'),
    'episodes': ('auto', f'one of {EPISODE_SOURCES}: task_status (the sim\'s episodes), window '
                         '(every window_s of the cell clock: a real cell), auto = task_status '
                         'on sim time, else window'),
    'window_s': (60.0, 'episodes=window: length of one reported window (s, cell clock)'),
    'report_wait_s': (2.0, 'after an episode ends, wait at most this long (wall) for the shadow '
                           'source\'s and the judge\'s last answers before reporting'),
    'max_series_hz': (DEFAULT_MAX_SERIES_HZ, 'samples per second kept of the error series'),
    'controller_joints': ([], 'joint order of the Float64MultiArray arm commands, in the '
                              'description\'s names ([] = URDF order)'),
    'driver_joint_names': ('urdf', f'joint names in joint_states and the judged output: one of '
                                   f'{SCHEMES}; core/joint_names.py'),
    'joint_name_prefix': ('', 'prefix of the driver\'s arm joint names'),
    'joint_states_qos': ('reliable', f'joint_states subscription: one of '
                                     f'{JOINT_STATES_QOS_KINDS}'),
}
# Command topics of each source: (arm positions, arm trajectory, gripper).
SOURCE_TOPICS = {
    DRIVING: ('safety/position_commands', 'safety/joint_trajectory', 'safety/gripper_commands'),
    SHADOW: (SHADOW_POSITION_TOPIC, SHADOW_TRAJECTORY_TOPIC, SHADOW_GRIPPER_TOPIC),
}


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class ShadowNode(Node):
    def __init__(self) -> None:
        super().__init__('shadow')
        p = declare_parameters(self, PARAMETERS, read_only=True)
        for key, allowed in (('driver_joint_names', SCHEMES),
                             ('joint_states_qos', JOINT_STATES_QOS_KINDS),
                             ('episodes', EPISODE_SOURCES)):
            if p[key] not in allowed:
                raise ConfigError(f'parameter {key}={p[key]!r}: must be one of {allowed}')
        description = load_robot_description(str(p['robot']))
        self.joint_names = list(description.joint_names)
        gripper = description.gripper
        self.gripper_threshold = None if gripper is None else 0.5 * (
            gripper.open_position + gripper.closed_position)
        _, index = controller_order(p['controller_joints'], self.joint_names)
        self.from_controller = np.argsort(index)  # controller-order vector -> description order
        self.names = JointNameMap.for_scheme(
            self.joint_names, str(p['driver_joint_names']), str(p['joint_name_prefix']),
            keep=() if gripper is None else tuple(gripper.joint_names))
        episodes = str(p['episodes'])
        if episodes == 'auto':
            # Only the sim publishes task/status, and only a simulated cell runs on sim time.
            episodes = 'task_status' if self.get_parameter('use_sim_time').value else 'window'
        self.compare = ShadowComparator(
            self.joint_names, self.gripper_threshold, reference=str(p['reference']),
            episodes=episodes, window_s=float(p['window_s']),
            report_wait_s=float(p['report_wait_s']), max_series_hz=float(p['max_series_hz']))
        self.problems = 0
        self.pub_report = self.create_publisher(String, REPORT_TOPIC, LATCHED)
        # Callbacks with two arguments get the message info: its DDS source timestamp places
        # the unstamped answers (core/shadow.AnswerPlacer).
        self.create_subscription(JointState, 'joint_states', self._on_joint_state,
                                 joint_states_qos(str(p['joint_states_qos'])))
        self.create_subscription(DiagnosticStatus, 'task/status', self._on_status, RELIABLE)
        for source, (positions, trajectory, gripper_topic) in SOURCE_TOPICS.items():
            self.create_subscription(
                Float64MultiArray, positions,
                lambda msg, info, s=source, t=positions: self._on_positions(s, t, msg, info),
                RELIABLE)
            self.create_subscription(
                JointTrajectory, trajectory,
                lambda msg, info, s=source, t=trajectory: self._on_trajectory(s, t, msg, info),
                RELIABLE)
            self.create_subscription(
                Float64MultiArray, gripper_topic,
                lambda msg, info, s=source, t=gripper_topic: self._on_gripper(s, t, msg, info),
                RELIABLE)
        self.create_subscription(JointState, JUDGED_ARM_TOPIC, self._on_judged, RELIABLE)
        self.create_subscription(DiagnosticArray, JUDGE_AUDIT_TOPIC, self._on_audit, RELIABLE)
        # Wall time: reports are due when data is in or report_wait_s (wall) has passed, also
        # when /clock has stopped.
        self.create_timer(0.1, self._report_due, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f'shadow comparison ready: {self.resolve_topic_name(SHADOW_TRAJECTORY_TOPIC)} / '
            f'{self.resolve_topic_name(SHADOW_POSITION_TOPIC)} against the '
            f'{p["reference"]} reference, episodes from {episodes}')

    # ------------------------------------------------------------------ inputs
    def _problem(self, where: str, exc: Exception) -> None:
        self.problems += 1
        self.get_logger().error(f'{where}: message ignored: {exc}', throttle_duration_sec=2.0)

    def _on_joint_state(self, msg: JointState, info: dict) -> None:
        try:
            arm = self.names.values_from_driver(msg.name, msg.position, self.joint_names)
        except NoetraError as exc:
            self._problem('joint_states', exc)
            return
        self.compare.joint_state(_stamp_ns(msg.header.stamp), arm, time.monotonic(),
                                 info['source_timestamp'])

    def _on_positions(self, source: str, topic: str, msg: Float64MultiArray,
                      info: dict) -> None:
        try:
            values = validate_joint_vector(msg.data, len(self.joint_names), topic)
        except NoetraError as exc:
            self._problem(topic, exc)
            return
        self.compare.arm(source, values[self.from_controller],
                         sent_ns=info['source_timestamp'])

    def _on_trajectory(self, source: str, topic: str, msg: JointTrajectory,
                       info: dict) -> None:
        # The first point is the target of the coming period, as a position command is.
        try:
            if not msg.points:
                raise CommandError(f'{topic}: a trajectory without points')
            order = validate_joint_names(msg.joint_names, self.joint_names, topic)
            values = validate_joint_vector(msg.points[0].positions, len(msg.joint_names),
                                           topic)[order]
        except NoetraError as exc:
            self._problem(topic, exc)
            return
        self.compare.arm(source, values, _stamp_ns(msg.header.stamp), info['source_timestamp'])

    def _on_gripper(self, source: str, topic: str, msg: Float64MultiArray, info: dict) -> None:
        try:
            if len(msg.data) != 1:
                raise CommandError(f'{topic}: expected one finger position, got '
                                   f'{list(msg.data)}')
            self.compare.gripper(source, validate_scalar(msg.data[0], topic),
                                 info['source_timestamp'])
        except NoetraError as exc:
            self._problem(topic, exc)

    def _on_judged(self, msg: JointState) -> None:
        try:
            arm = self.names.values_from_driver(msg.name, msg.position, self.joint_names)
        except NoetraError as exc:
            self._problem(JUDGED_ARM_TOPIC, exc)
            return
        self.compare.judged(_stamp_ns(msg.header.stamp), arm)

    def _on_audit(self, msg: DiagnosticArray) -> None:
        for index, status in enumerate(msg.status):
            try:
                self.compare.audit(audit.decode_entry(
                    status.name, {kv.key: kv.value for kv in status.values},
                    f'{JUDGE_AUDIT_TOPIC} status {index}'))
            except audit.AuditFormatError as exc:
                self._problem(JUDGE_AUDIT_TOPIC, exc)

    def _on_status(self, msg: DiagnosticStatus) -> None:
        try:
            self.compare.task_status({kv.key: kv.value for kv in msg.values}, time.monotonic())
        except NoetraError as exc:
            self._problem('task/status', exc)

    # ------------------------------------------------------------------ reports
    def _report_due(self, final: bool = False) -> None:
        for report in self.compare.due(time.monotonic(), final=final):
            self.pub_report.publish(String(data=json.dumps(report)))
            div, judge = report['divergence']['l2_rad'], report['judge']
            self.get_logger().info(
                f'episode {report["episode"]} ({report["result"]}): shadow answered '
                f'{report["shadow_answered"]}/{report["driving_answered"]} steps, joint error '
                f'L2 p50 {_rad(div["p50"])} p95 {_rad(div["p95"])} max {_rad(div["max"])}, '
                f'judge {judge["decisions"]}')

    def destroy_node(self) -> None:
        # The open window of a real cell (and an episode still waiting) is reported on the way
        # out, while the context is still valid.
        self._report_due(final=True)
        super().destroy_node()


def _rad(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.3f} rad'


def main(args=None) -> None:
    run_node(ShadowNode, 'shadow', args)


if __name__ == '__main__':
    main()
