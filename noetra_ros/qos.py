"""Every QoS profile of the node graph, in one place, so publishers and subscribers always match.

A reliable subscriber never receives from a best-effort publisher (DDS request/offer rule:
the offered reliability must be at least the requested one), so the choice is made once here
and every node imports it instead of building its own profile.
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from noetra_ros.core.errors import ConfigError

# Commands, measurements the control loop must not lose, task topics, /diagnostics.
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE)

# Last-value topics a late joiner must still get (task/instruction, task/success, safety/status).
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Best effort, keep last 5, volatile: rclpy's predefined sensor-data profile (rmw
# qos_profile_sensor_data). MotoROS2 publishes joint_states with this profile, so a subscriber
# that must also work on a Yaskawa cell asks for no more than this.
SENSOR_DATA = qos_profile_sensor_data

# /clock is published reliable: it then matches both rclpy's own /clock subscriber (best
# effort, depth 1, rclpy/time_source.py) and any reliable subscriber of other tools.
CLOCK = RELIABLE

# /tf and /tf_static as tf2_ros's broadcasters offer them (github ros2/geometry2,
# tf2_ros/include/tf2_ros/qos.hpp @ 02849c049f0abe876b2e6681ef7df8e48c86099b:
# DynamicBroadcasterQoS = QoS(100), StaticBroadcasterQoS = QoS(1).transient_local()), so every
# tf2 listener matches. robot_description is LATCHED, as robot_state_publisher publishes it.
TF = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC = LATCHED

# The monitor counts every message of an episode; a deep queue keeps bursts from being dropped
# while its callback is busy writing the video.
MONITOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                     reliability=ReliabilityPolicy.RELIABLE)

# fanuc_gpio_controller's robot_status (and its other GPIO topics): reliable, keep last 1
# (driver-interfaces.md §3.2, FD fanuc_controllers/src/fanuc_gpio_controller.cpp).
FANUC_STATUS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                          reliability=ReliabilityPolicy.RELIABLE)

JOINT_STATES_QOS_KINDS = ('reliable', 'sensor_data')


def offered_policies(profile: QoSProfile) -> tuple[bool, bool]:
    """(reliable, transient_local) of a publisher's offered profile (graph introspection)."""
    return (profile.reliability == ReliabilityPolicy.RELIABLE,
            profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)


def recording_qos(reliable: bool, transient_local: bool, depth: int) -> QoSProfile:
    """The recorder's subscription to one topic: what its publishers offer (rosbag2's adaptive
    rule, core/recording.subscription_qos), with the recorder's queue depth."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                    else DurabilityPolicy.VOLATILE))


def joint_states_qos(kind: str) -> QoSProfile:
    """The subscription profile for `joint_states`: 'reliable' or 'sensor_data' (best effort).

    'sensor_data' receives from both reliable and best-effort publishers (MotoROS2), at the cost
    of possibly missing a message under load; 'reliable' receives only from reliable publishers.
    """
    if kind == 'reliable':
        return RELIABLE
    if kind == 'sensor_data':
        return SENSOR_DATA
    raise ConfigError(f'joint_states_qos must be one of {", ".join(JOINT_STATES_QOS_KINDS)}, '
                      f'got {kind!r}')
