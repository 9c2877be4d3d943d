"""state_publisher_node: robot_description, /tf_static and /tf, as robot_state_publisher does.

robot_state_publisher has no wheel for ROS 2 from PyPI, so this node plays it, with the stack's
one robot description (core/robot_model.py) doing the kinematics (core/tf_tree.py). Like it:

- `robot_description` (std_msgs/String, reliable + transient local, depth 1): the URDF text,
  once at start; a subscriber that joins later still gets it;
- `/tf_static` (tf2_msgs/TFMessage, transient local, depth 1): every fixed joint, once;
- `/tf` (tf2_msgs/TFMessage, reliable, depth 100): one transform per movable joint that a
  `joint_states` message names, stamped with that message's stamp, subject to
  `publish_frequency` / `ignore_timestamp` (core/tf_tree.PublishGate);
- `joint_states` read with the sensor-data profile; `frame_prefix` before every link's name.
- joint names as the driver publishes them (`driver_joint_names`, `joint_name_prefix`:
  fanuc J1..J6, MotoROS2 joint_1..N / group_<g>/joint_<j>) mapped onto the URDF's
  (core/joint_names.py); a name that maps to nothing drops the message, logged.

Beyond it, for the cell: the URDF root link's pose in `world_frame` and the cameras' optical
frames (`<camera>_optical_frame`, z forward, x right, y down), both on /tf_static, so every
frame the cell's messages name resolves in tf2. The URDF is the one the sim loads for `robot`
(with the gripper); the cameras default to the simulated cell's mounts (core/sim/world.py).

A joint_states message with names and positions of different lengths or a non-finite position
is not used at all (the log names the problem); /tf then keeps the last good pose.
"""
from __future__ import annotations

from collections.abc import Sequence
import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.joint_names import JointNameMap
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.sim.world import default_cameras, ROBOT_BASE_POSITION
from noetra_ros.core.tf_tree import (CameraMount, FrameTransform, matrix_rpy, OPTICAL_FRAME_SUFFIX,
                                     pose_matrix, PublishGate, TransformTree)
from noetra_ros.interface_packages import interface_type
from noetra_ros.qos import (JOINT_STATES_QOS_KINDS, joint_states_qos, LATCHED, RELIABLE, TF,
                            TF_STATIC)
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

PARAMETERS = {
    'robot': ('fanuc_lrmate200id',
              'robot model name: publishes urdf/<robot>_gripper.urdf, the URDF the sim loads'),
    'frame_prefix': ('', "prepended to every link's frame name (robot_state_publisher's "
                         "parameter), e.g. 'r1/'"),
    'publish_frequency': (20.0, 'largest /tf rate per joint, Hz: a joint_states message is '
                                'used when its stamp is at least 1/f (whole ms) after the last '
                                'one used (robot_state_publisher: default 20, range (0, 1000])'),
    'ignore_timestamp': (False, 'use every joint_states message, whatever its stamp '
                                '(robot_state_publisher)'),
    'joint_states_qos': ('sensor_data', f'joint_states subscription: one of '
                                        f'{JOINT_STATES_QOS_KINDS} (robot_state_publisher '
                                        'reads it as sensor data)'),
    'world_frame': ('world', "parent frame of the URDF's root link ('' = publish no world "
                             'frame)'),
    'base_xyz': ([float(v) for v in ROBOT_BASE_POSITION],
                 "the URDF root link's position in world_frame (m; default: the sim's mount)"),
    'base_rpy': ([0.0, 0.0, 0.0], "the URDF root link's roll, pitch, yaw in world_frame (rad)"),
    'driver_joint_names': ('urdf', 'joint names in joint_states: urdf, fanuc (J1..Jn) or '
                                   'motoros2 (joint_1..n); core/joint_names.py'),
    'joint_name_prefix': ('', "prefix of the driver's arm joint names (fanuc_driver's prefix, "
                              'MotoROS2 group_<g>/)'),
    'cameras': ([], 'cameras whose optical frames go to /tf_static (per camera: '
                    '<camera>.frame_id, .parent_frame, .xyz, .rpy; defaults from the sim)'),
}


def _vector3(value: Sequence[float], name: str) -> list[float]:
    values = [float(v) for v in value]
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f'parameter {name}={list(value)}: must be 3 finite numbers')
    return values


def _camera_mounts(node: Node, names: Sequence[str], world_frame: str) -> list[CameraMount]:
    """One mount per camera name: its parameters, defaulting to the simulated cell's camera of
    that name (a camera the sim does not have needs all of them)."""
    simulated = {spec.name: spec for spec in default_cameras()}
    mounts = []
    for name in names:
        spec = simulated.get(name)
        default = CameraMount.from_spec(spec, world_frame or 'world') if spec else None
        values = declare_parameters(node, {
            f'{name}.frame_id': (default.frame_id if default else name + OPTICAL_FRAME_SUFFIX,
                                 f'{name}: the frame_id its images carry'),
            f'{name}.parent_frame': (default.parent if default else '',
                                     f'{name}: world_frame or a URDF link (without prefix)'),
            f'{name}.xyz': ([float(v) for v in default.matrix[:3, 3]] if default
                            else [0.0, 0.0, 0.0], f'{name}: optical frame origin in parent (m)'),
            f'{name}.rpy': ([float(v) for v in matrix_rpy(default.matrix)] if default
                            else [0.0, 0.0, 0.0],
                            f'{name}: optical frame roll, pitch, yaw in parent (rad; z forward, '
                            'x right, y down)'),
        })
        parent = values[f'{name}.parent_frame']
        if not parent:
            raise ConfigError(f'camera {name!r} is not a camera of the simulated cell '
                              f'({", ".join(sorted(simulated))}): set {name}.parent_frame, '
                              f'{name}.xyz and {name}.rpy')
        mounts.append(CameraMount(values[f'{name}.frame_id'], parent, pose_matrix(
            _vector3(values[f'{name}.xyz'], f'{name}.xyz'),
            _vector3(values[f'{name}.rpy'], f'{name}.rpy'))))
    return mounts


def transform_msg(transform: FrameTransform, stamp) -> TransformStamped:
    """geometry_msgs/TransformStamped of a core FrameTransform."""
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = transform.parent
    msg.child_frame_id = transform.child
    t, q = transform.translation, transform.quaternion
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in t)
    (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
     msg.transform.rotation.w) = (float(v) for v in q)
    return msg


class StatePublisherNode(Node):
    def __init__(self) -> None:
        super().__init__('state_publisher')
        p = declare_parameters(self, PARAMETERS, read_only=True)
        self.p = p
        description = load_robot_description(p['robot'])
        if description.urdf_path is None:
            raise ConfigError(f'robot {p["robot"]!r} has no URDF file to publish')
        urdf_text = description.urdf_path.read_text(encoding='utf-8')
        self.tree = TransformTree(
            description.model, frame_prefix=p['frame_prefix'], world_frame=p['world_frame'],
            root_in_world=pose_matrix(_vector3(p['base_xyz'], 'base_xyz'),
                                      _vector3(p['base_rpy'], 'base_rpy')),
            cameras=_camera_mounts(self, p['cameras'], p['world_frame']))
        arm_joints = list(description.model.joint_names)
        self.names = JointNameMap.for_scheme(
            arm_joints, str(p['driver_joint_names']), str(p['joint_name_prefix']),
            keep=description.gripper.joint_names if description.gripper else ())
        self.gate = PublishGate(p['publish_frequency'], p['ignore_timestamp'])
        tf_message = interface_type('tf2_msgs', 'msg', 'TFMessage')
        self._tf_message = tf_message
        self.counters = {'joint_states': 0, 'tf_published': 0, 'skipped_by_rate': 0,
                         'rejected': 0}
        self.pub_description = self.create_publisher(String, 'robot_description', LATCHED)
        self.pub_static = self.create_publisher(tf_message, '/tf_static', TF_STATIC)
        self.pub_tf = self.create_publisher(tf_message, '/tf', TF)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self.create_subscription(JointState, 'joint_states', self._on_joint_states,
                                 joint_states_qos(p['joint_states_qos']))
        # Diagnostics keep coming when /clock stops, as every node's do.
        self.create_timer(1.0, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.pub_description.publish(String(data=urdf_text))
        static = self.tree.static_transforms()
        stamp = self.get_clock().now().to_msg()  # as robot_state_publisher stamps them
        self.pub_static.publish(tf_message(transforms=[transform_msg(t, stamp) for t in static]))
        self.get_logger().info(
            f'state publisher ready: robot={p["robot"]} urdf={description.urdf_path.name} '
            f'frame_prefix={p["frame_prefix"]!r} {len(static)} static transforms '
            f'(cameras {[m.frame_id for m in self.tree.cameras]}), movable joints '
            f'{list(self.tree.movable_joints)}')

    def _on_joint_states(self, msg: JointState) -> None:
        self.counters['joint_states'] += 1
        try:
            names = self.names.from_driver(msg.name, 'joint_states names')
            transforms = self.tree.moving_transforms(names, msg.position)
        except InputError as exc:
            self.counters['rejected'] += 1
            self.get_logger().error(f'joint_states not used, /tf keeps the last pose: {exc}',
                                    throttle_duration_sec=10.0)
            return
        stamp = msg.header.stamp
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if not self.gate.admit(names, stamp_ns, self.get_clock().now().nanoseconds):
            self.counters['skipped_by_rate'] += 1
            return
        if transforms:
            self.pub_tf.publish(self._tf_message(
                transforms=[transform_msg(t, stamp) for t in transforms]))
            self.counters['tf_published'] += 1

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.WARN if self.counters['rejected'] else DiagnosticStatus.OK
        status = DiagnosticStatus(
            level=level, name=f'{self.get_name()}: transforms', message='publishing',
            hardware_id=self.p['robot'],
            values=[KeyValue(key=k, value=str(v)) for k, v in self.counters.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def main(args=None) -> None:
    run_node(StatePublisherNode, 'state_publisher', args)


if __name__ == '__main__':
    main()
