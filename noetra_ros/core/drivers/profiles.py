"""The driver profiles a cell can name, and the facts of each real driver they follow.

A cell names its driver once (`driver: fanuc`); the simulator then plays that driver's interface
and the runtime (safety_node's output, the joint-name maps, QoS) speaks it. With
`hardware:=real` the simulator is left out and the same graph talks to the real driver.

Facts: /work/shared/reference/driver-interfaces.md (§2 MotoROS2 @ 2007fd6, §3 fanuc_driver
v2.2.0 @ 5898135, ros2_controllers jazzy @ ed360c9); each field's comment names the section.
"""
from __future__ import annotations

from dataclasses import dataclass

from noetra_ros.core.errors import ConfigError


@dataclass(frozen=True)
class DriverProfile:
    name: str
    # Joint naming at the driver (core/joint_names.SCHEMES).
    joint_names: str
    # Controller update rate (Hz) and how often joint_states goes out (every N updates).
    update_hz: int
    joint_states_divisor: int
    # 'reliable' or 'sensor_data': the QoS joint_states is published with.
    joint_states_qos: str
    # How the runtime (safety_node) hands the driver its commands: the first is the default.
    outputs: tuple[str, ...]
    # Topic that carries the driver's robot status ('' = none).
    status_topic: str
    summary: str


PROFILES: dict[str, DriverProfile] = {
    # Today's generic ros2_control cell: forward position / velocity controllers and a JTC.
    'ros2_control': DriverProfile(
        name='ros2_control', joint_names='urdf', update_hz=20, joint_states_divisor=1,
        joint_states_qos='reliable',
        outputs=('forward_position', 'joint_trajectory'), status_topic='',
        summary='generic ros2_control: forward_position_controller, joint_trajectory_controller'),
    # fanuc_driver v2.2.0: controller manager update_rate 500 (§3.1), joint_state_broadcaster
    # publishes every update (§3.2), J1..J6 (§3.1), scaled JTC or forward_position_controller
    # (exclusive, §3.1), fanuc_gpio_controller/robot_status (§3.2).
    'fanuc': DriverProfile(
        name='fanuc', joint_names='fanuc', update_hz=500, joint_states_divisor=1,
        joint_states_qos='reliable',
        outputs=('joint_trajectory', 'forward_position'),
        status_topic='fanuc_gpio_controller/robot_status',
        summary='FANUC fanuc_driver (ros2_control, Stream Motion)'),
    # MotoROS2 0.2.x: no command topics; FJT action and point queue services (§2.3, §2.6),
    # joint_states / robot_status best effort every 10 ms (§2.1, §2.2), joint_1..N (§2.1).
    'motoros2': DriverProfile(
        name='motoros2', joint_names='motoros2', update_hz=100, joint_states_divisor=1,
        joint_states_qos='sensor_data',
        outputs=('point_queue',), status_topic='robot_status',
        summary='Yaskawa MotoROS2 (micro-ROS on the controller)'),
}

DRIVERS = tuple(PROFILES)
OUTPUTS = ('forward_position', 'joint_trajectory', 'point_queue')


def profile(name: str) -> DriverProfile:
    if name not in PROFILES:
        raise ConfigError(f'driver {name!r}: must be one of {DRIVERS}')
    return PROFILES[name]


def check_output(driver: str, output: str) -> str:
    """The output to use ('' = the profile's default); ConfigError if the driver has no such
    interface (e.g. MotoROS2 takes no command topics)."""
    prof = profile(driver)
    if not output:
        return prof.outputs[0]
    if output not in prof.outputs:
        raise ConfigError(f'driver_output {output!r}: the {driver} driver accepts {prof.outputs}')
    return output
