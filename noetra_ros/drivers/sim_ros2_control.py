"""The generic ros2_control profile: forward position / velocity controllers and a JTC topic.

Today's simulated cell (and any robot run by a plain ros2_control hardware interface):
`forward_position_controller/commands` and `forward_velocity_controller/commands`
(std_msgs/Float64MultiArray in `controller_joints` order), `joint_trajectory_controller/
joint_trajectory` (trajectory_msgs/JointTrajectory), `joint_states` (reliable). The commands go
to SimWorld's own position ramp / velocity integration / trajectory sampling. The only profile
that runs in lockstep: each arm command tells the sim that the arm's source has answered.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.commands import controller_order, validate_joint_vector
from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.drivers.sim_base import joint_state_arrays, SimArm, SimDriver, SimDriverSettings
from noetra_ros.qos import RELIABLE
from noetra_ros.ros_conversions import trajectory_from_msg


class Ros2ControlSimDriver(SimDriver):
    profile = 'ros2_control'

    def __init__(self, node: Node, arm: SimArm, settings: SimDriverSettings,
                 controller_joints: tuple[str, ...] = ()) -> None:
        super().__init__(node, arm, settings)
        self.counters = {'rejected_commands': 0, 'commands_arm': 0}
        names = settings.names
        try:
            requested = names.from_driver(controller_joints, 'parameter controller_joints')
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        order, to_controller = controller_order(requested, list(arm.joint_names))
        self.controller_joints = names.to_driver(order)
        # Maps a vector in controller order onto the world's (description) order.
        self._to_world = np.argsort(to_controller)
        self.published_joints = names.to_driver(list(arm.joint_names)
                                                + list(arm.gripper_joint_names))
        self.pub_joints = node.create_publisher(JointState, self.topic('joint_states'), RELIABLE)
        node.create_subscription(Float64MultiArray,
                                 self.topic('forward_position_controller/commands'),
                                 self._on_position_command, RELIABLE)
        node.create_subscription(Float64MultiArray,
                                 self.topic('forward_velocity_controller/commands'),
                                 self._on_velocity_command, RELIABLE)
        node.create_subscription(JointTrajectory,
                                 self.topic('joint_trajectory_controller/joint_trajectory'),
                                 self._on_trajectory, RELIABLE)

    def _reject(self, topic: str, exc: NoetraError) -> None:
        self.counters['rejected_commands'] += 1
        self.node.get_logger().error(f'{topic}: command rejected, arm holds: {exc}')

    def _arrived(self) -> None:
        self.counters['commands_arm'] += 1
        self.arm.arrived('arm')

    def _on_position_command(self, msg: Float64MultiArray) -> None:
        topic = 'forward_position_controller/commands'
        try:
            q = validate_joint_vector(msg.data, len(self.arm.joint_names), f'{topic} data')
            self.arm.world.command_positions(q[self._to_world], self.arm.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived()

    def _on_velocity_command(self, msg: Float64MultiArray) -> None:
        topic = 'forward_velocity_controller/commands'
        try:
            qd = validate_joint_vector(msg.data, len(self.arm.joint_names), f'{topic} data')
            self.arm.world.command_velocities(qd[self._to_world], self.arm.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        topic = 'joint_trajectory_controller/joint_trajectory'
        try:
            msg.joint_names = self.settings.names.from_driver(msg.joint_names,
                                                              f'{topic} joint_names')
            traj = trajectory_from_msg(msg, list(self.arm.joint_names))
            self.arm.world.command_trajectory(traj, self.arm.world.sim_time)
        except NoetraError as exc:
            self._reject(topic, exc)
        self._arrived()

    def publish(self, now: float, stamp: Any) -> None:
        if not self.joint_states_due():
            return
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = self.published_joints
        msg.position, msg.velocity, msg.effort = joint_state_arrays(self.arm)
        self.pub_joints.publish(msg)
