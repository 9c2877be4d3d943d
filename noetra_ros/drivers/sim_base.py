"""What a simulated driver gets from sim_node, and what sim_node expects of it.

sim_node owns the PyBullet world, the clock, the cameras and the task topics; a `SimDriver`
owns everything the real driver would expose for the arm: its command interfaces (topics,
services, actions), its controller (interpolation at the driver's update rate), its joint_states
and status publishers. One driver per profile (core/drivers/profiles.py):

    ros2_control -> drivers/sim_ros2_control.py   (today's forward / trajectory controllers)
    fanuc        -> drivers/sim_fanuc.py          (fanuc_driver's ros2_control controllers)
    motoros2     -> drivers/sim_motoros2.py       (Yaskawa MotoROS2)

Call order, once per control update of the sim (control_hz = the driver's update rate):
    driver.update(now)          # advance the controller, hand the world one setpoint
    world.step()
    driver.publish(now, stamp)  # joint_states / status / tf / action feedback at their rates
Service, action and topic callbacks run between updates on the node's executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from rclpy.node import Node

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.joint_limits import JointLimits
from noetra_ros.core.joint_names import JointNameMap


@dataclass
class SimArm:
    """The simulated arm as a driver's hardware layer sees it (description joint order).

    `measured()` -> (positions, velocities, efforts) of the arm joints; `setpoint(q, qd)` is
    what the controller commands for the coming update; `hold()` holds the measured pose;
    `arrived(kind)` tells a lockstep sim that a command source has answered the step
    (only the ros2_control profile runs in lockstep). `extra_arms`: further arms on the same
    controller (sim parameter `extra_arms`, core/sim/world.ExtraArm: `robot`, `joint_names`,
    `limits`, `base_pose`, `description`, `measured()`, `setpoint(q, qd)`, `hold()`), e.g. the
    other groups of a MotoROS2 multi-group controller; only drivers with `multi_arm` take them.
    """

    joint_names: tuple[str, ...]
    gripper_joint_names: tuple[str, ...]
    limits: JointLimits
    control_hz: int
    measured: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    gripper_measured: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
    setpoint: Callable[[np.ndarray, np.ndarray], None]
    hold: Callable[[], None]
    world: Any  # the SimWorld, for the ros2_control profile's position / velocity / trajectory
    arrived: Callable[[str], None]
    extra_arms: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SimDriverSettings:
    """sim_node parameters a driver reads (see sim_node.PARAMETERS)."""

    robot: str
    control_hz: int            # the driver's controller update rate
    joint_states_divisor: int  # joint_states every N updates (1 = every update)
    namespace: str             # the driver's node namespace ('' = root), e.g. MotoROS2's
    names: JointNameMap        # description <-> driver joint names
    command_timeout_s: float
    # fanuc: which of fanuc_driver's two exclusive controllers is active
    # ('joint_trajectory_controller' or 'forward_position_controller'); others ignore it.
    command_controller: str = 'joint_trajectory_controller'


class SimDriver:
    """Base of the simulated drivers; see the module docstring for the call order."""

    profile = ''
    # Whether the driver runs several arms on one controller (SimArm.extra_arms): MotoROS2's
    # control groups do; fanuc_driver runs one arm per controller manager.
    multi_arm = False

    def __init__(self, node: Node, arm: SimArm, settings: SimDriverSettings) -> None:
        if arm.extra_arms and not self.multi_arm:
            raise ConfigError(f'extra arms {[a.robot for a in arm.extra_arms]}: the '
                              f'{self.profile} driver runs one arm per controller; only a '
                              'multi-group controller (driver motoros2) takes several')
        self.node = node
        self.arm = arm
        self.settings = settings
        self.counters: dict[str, int] = {}
        self._updates = 0

    def topic(self, name: str) -> str:
        """`name` inside the driver's namespace (absolute names pass unchanged)."""
        if name.startswith('/') or not self.settings.namespace:
            return name
        return f'{self.settings.namespace.rstrip("/")}/{name}'

    def driver_joint_names(self) -> list[str]:
        """The arm joints as the driver names them, in description order."""
        return self.settings.names.to_driver(self.arm.joint_names)

    def update(self, now: float) -> None:
        """Advance the controller to `now` and hand the world its setpoint."""
        self._updates += 1

    def publish(self, now: float, stamp: Any) -> None:
        """Publish what the driver publishes at this update (joint_states, status, ...)."""

    def joint_states_due(self) -> bool:
        return (self._updates - 1) % self.settings.joint_states_divisor == 0

    def on_reset(self) -> None:
        """An episode reset moved the arm: end running goals / queued motion as a real driver
        would end them when the robot is moved under it (aborted), and hold."""

    def diagnostics(self) -> dict[str, Any]:
        return dict(self.counters)


def joint_state_arrays(arm: SimArm) -> tuple[list[float], list[float], list[float]]:
    """Arm then gripper (positions, velocities, efforts) as lists for a JointState message.

    One query of the world (it returns the arm then the fingers) per message: this runs at the
    driver's rate, up to 500 Hz."""
    q, qd, tau = arm.world.joint_state()
    return [float(v) for v in q], [float(v) for v in qd], [float(v) for v in tau]


def seconds(duration: Any) -> float:
    """builtin_interfaces Duration -> seconds."""
    return duration.sec + duration.nanosec * 1e-9


def names_or_empty(values: Sequence[str]) -> list[str]:
    return [str(v) for v in values]
