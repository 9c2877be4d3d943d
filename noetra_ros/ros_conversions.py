"""Message <-> numpy conversions shared by the rclpy nodes.

cv_bridge does not exist as a wheel, so images are converted here, through the ROS-free
core/images.py that the policy runtime also uses: one encoding table, one decoding path, so
every node reads a frame the same way (and the runtime's tensors match what was recorded).
"""
from __future__ import annotations

from array import array
import math

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.audit import AuditEntry
from noetra_ros.core.errors import CommandError, InputError
from noetra_ros.core.images import image_view, pack_image
from noetra_ros.core.trajectory import JointTrajectory as CoreTrajectory


def seconds_to_stamp(seconds: float) -> TimeMsg:
    """A builtin_interfaces/Time for `seconds` (sim time or wall time)."""
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:  # rounding can carry into the next second
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return TimeMsg(sec=sec, nanosec=nanosec)


def stamp_to_seconds(stamp: TimeMsg) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def numpy_to_image(pixels: np.ndarray, encoding: str, stamp: TimeMsg, frame_id: str) -> Image:
    """Wrap an HxW[xC] uint8 array as a sensor_msgs/Image (one copy, into the message).

    The channel count must match `encoding` (core/images.pack_image), else InputError.
    """
    data, width, height, step = pack_image(pixels, encoding)
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    # With field checks on (ROS_PYTHON_CHECK_FIELDS=1) the generated setter checks a bytes value
    # element by element (70 ms for 640x480 rgb8 here); an array.array('B') is taken as is and
    # filling one from the pixel buffer is a single memcpy.
    buffer = array('B')
    buffer.frombytes(data)
    msg.data = buffer
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """Zero-copy HxWxC view (C = 1 for mono8) of an Image's bytes, decoded by
    core/images.image_view; raises InputError naming the frame and what is wrong."""
    try:
        pixels = image_view(msg.data, msg.width, msg.height, msg.encoding, msg.step)
    except InputError as error:
        raise InputError(f'image on frame {msg.header.frame_id!r}: {error}') from None
    return pixels.reshape(msg.height, msg.width, -1)


def camera_info_msg(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                    stamp: TimeMsg, frame_id: str) -> CameraInfo:
    """A plumb-bob CameraInfo for an ideal (distortion-free) pinhole camera."""
    info = CameraInfo()
    info.header.stamp = stamp
    info.header.frame_id = frame_id
    info.width, info.height = width, height
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def trajectory_from_msg(msg: JointTrajectory, joint_order: list[str]) -> CoreTrajectory:
    """Core trajectory in `joint_order` from a JointTrajectory message (validated by the core)."""
    if not msg.points:
        raise CommandError('trajectory has no points')
    count = len(msg.joint_names)

    def column(field_name: str):
        rows = [list(getattr(point, field_name)) for point in msg.points]
        if all(not r for r in rows):
            return None
        for k, row in enumerate(rows):
            if len(row) != count:
                raise CommandError(f'points[{k}].{field_name} has {len(row)} values, expected '
                                   f'{count} (one per joint name)')
        return np.array(rows, dtype=float)

    positions = column('positions')
    if positions is None:
        raise CommandError('trajectory points carry no positions')
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    return CoreTrajectory(joint_names=tuple(msg.joint_names), times_from_start=np.array(times),
                          positions=positions, velocities=column('velocities'),
                          accelerations=column('accelerations')).reordered(joint_order)


def audit_entries_msg(entries: list[AuditEntry], hardware_id: str, stamp: TimeMsg
                      ) -> DiagnosticArray:
    """Audit entries (core/audit.py, core/input_trace.py) as one DiagnosticArray, an entry per
    DiagnosticStatus: the transport of safety/audit and policy/inputs."""
    array = DiagnosticArray(status=[
        DiagnosticStatus(level=bytes([e.level]), name=e.name, message=e.message,
                         hardware_id=hardware_id,
                         values=[KeyValue(key=k, value=v) for k, v in e.values])
        for e in entries])
    array.header.stamp = stamp
    return array
