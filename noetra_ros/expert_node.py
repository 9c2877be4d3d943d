"""expert_node: the scripted pick-and-place expert, speaking the command topics a policy uses.

It listens to what a perception stack would give it (task/target_pose, task/place_pose) plus
joint_states and the task status, and answers every joint_states message with one arm command
and one gripper command: the baseline, and the source of demonstrations. All decisions live in
noetra_ros.core.expert; this node aligns inputs by stamp and converts messages.
"""
from __future__ import annotations

import math

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from noetra_ros.core.commands import controller_order
from noetra_ros.core.errors import ConfigError, NoetraError
from noetra_ros.core.expert import ScriptedExpert
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.sim.task import GRASP_SYMMETRY_RAD, shape_in_instruction
from noetra_ros.core.sync import ExactStampSync
from noetra_ros.qos import JOINT_STATES_QOS_KINDS, joint_states_qos, RELIABLE
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

INTERFACES = ('position', 'trajectory')

PARAMETERS = {
    'robot': ('fanuc_lrmate200id', 'robot model name'),
    'command_interface': ('position', f'how arm targets are sent: one of {INTERFACES}'),
    'controller_joints': ([], 'joint order of the arm command ([] = URDF order)'),
    'control_hz': (20, 'expected observation rate; trajectory points are one period ahead'),
    'driver_joint_names': ('urdf', f'joint names in joint_states: one of {SCHEMES} (the '
                                   'driver\'s: fanuc J1..Jn, motoros2 joint_1..n); '
                                   'core/joint_names.py'),
    'joint_states_qos': ('reliable', f'joint_states subscription: one of '
                                     f'{JOINT_STATES_QOS_KINDS} (MotoROS2 publishes best effort)'),
    'joint_name_prefix': ('', 'prefix of the driver\'s arm joint names (fanuc_driver\'s prefix, '
                              'MotoROS2 group_<g>/)'),
}


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _pose(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray]:
    p, o = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])


class ExpertNode(Node):
    def __init__(self) -> None:
        super().__init__('expert')
        p = declare_parameters(self, PARAMETERS, read_only=True)
        if p['command_interface'] not in INTERFACES:
            raise ConfigError(f'parameter command_interface={p["command_interface"]!r}: '
                              f'must be one of {INTERFACES}')
        self.interface = p['command_interface']
        self.period = 1.0 / float(p['control_hz'])
        self.expert = ScriptedExpert(p['robot'], control_hz=float(p['control_hz']))
        self.arm_joints = list(self.expert.joint_names)
        self.controller_joints, self._from_world = controller_order(p['controller_joints'],
                                                                    self.arm_joints)
        # joint_states arrive in the driver's names; the expert plans in the description's.
        self.names = JointNameMap.for_scheme(self.arm_joints, str(p['driver_joint_names']),
                                             str(p['joint_name_prefix']),
                                             keep=self.expert.gripper_joint_names)
        self.episode = None
        self.grasp_symmetry = math.pi
        # Status and poses are stamped with the step they belong to; acting on a mix of steps
        # would make lockstep episodes irreproducible.
        self.sync = ExactStampSync(('joints', 'target', 'place', 'status'))
        self.create_subscription(DiagnosticStatus, 'task/status', self._on_status, RELIABLE)
        self.create_subscription(PoseStamped, 'task/target_pose',
                                 lambda m: self._add('target', _stamp_ns(m.header.stamp), m),
                                 RELIABLE)
        self.create_subscription(PoseStamped, 'task/place_pose',
                                 lambda m: self._add('place', _stamp_ns(m.header.stamp), m),
                                 RELIABLE)
        self.create_subscription(JointState, 'joint_states',
                                 lambda m: self._add('joints', _stamp_ns(m.header.stamp), m),
                                 joint_states_qos(str(p['joint_states_qos'])))
        if self.interface == 'position':
            self.pub_arm = self.create_publisher(
                Float64MultiArray, 'forward_position_controller/commands', RELIABLE)
        else:
            self.pub_arm = self.create_publisher(
                JointTrajectory, 'joint_trajectory_controller/joint_trajectory', RELIABLE)
        self.pub_gripper = self.create_publisher(
            Float64MultiArray, 'gripper_position_controller/commands', RELIABLE)
        self.get_logger().info(f'expert ready: robot={p["robot"]} interface={self.interface}')

    def _on_status(self, msg: DiagnosticStatus) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        if 'stamp_ns' in values:
            self._add('status', int(values['stamp_ns']), values)

    def _add(self, key: str, stamp_ns: int, value) -> None:
        step = self.sync.add(key, stamp_ns, value)
        if step is not None:
            self._act(step)

    def _act(self, step: dict) -> None:
        status = step['status']
        if status.get('episode') != self.episode:
            self.episode = status.get('episode')
            self.expert.reset()
            # The instruction names the shape; its symmetry lets the expert pick the grasp
            # that looks the same in every demonstration (a half turn holds for any shape).
            shape = shape_in_instruction(status.get('instruction', ''))
            self.grasp_symmetry = GRASP_SYMMETRY_RAD[shape] if shape else math.pi
        joints: JointState = step['joints']
        try:
            positions = dict(zip(self.names.from_driver(joints.name, 'joint_states.name'),
                                 joints.position))
            q = np.array([positions[j] for j in self.arm_joints])
            gripper = float(np.mean([positions[j] for j in self.expert.gripper_joint_names]))
            target, place = _pose(step['target']), _pose(step['place'])
            action = self.expert.act(q, gripper, target, place,
                                     grasp_symmetry_rad=self.grasp_symmetry)
        except (KeyError, NoetraError) as exc:
            # Hold: answer with the measured pose so a lockstep sim steps without motion.
            self.get_logger().error(f'expert cannot act on this step, holding: {exc}',
                                    throttle_duration_sec=2.0)
            return
        self.pub_gripper.publish(Float64MultiArray(data=[float(action.gripper)]))
        target_q = np.asarray(action.joint_positions, dtype=float)[self._from_world]
        if self.interface == 'position':
            self.pub_arm.publish(Float64MultiArray(data=[float(v) for v in target_q]))
        else:
            msg = JointTrajectory()
            msg.header.stamp = joints.header.stamp
            msg.joint_names = self.controller_joints
            nanos = int(self.period * 1e9)
            msg.points = [JointTrajectoryPoint(
                positions=[float(v) for v in target_q],
                time_from_start=Duration(sec=nanos // 1_000_000_000,
                                         nanosec=nanos % 1_000_000_000))]
            self.pub_arm.publish(msg)


def main(args=None) -> None:
    run_node(ExpertNode, 'expert', args)


if __name__ == '__main__':
    main()
