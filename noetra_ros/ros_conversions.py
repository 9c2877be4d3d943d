"""Message <-> numpy conversions shared by the rclpy nodes.

cv_bridge does not exist as a wheel, so image conversion lives here. Kept free of node state so
every node converts the same way (and the policy runtime's tensors match what was recorded).
"""
from __future__ import annotations

import math

from builtin_interfaces.msg import Time as TimeMsg
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from noetra_ros.core.errors import InputError

# Bytes per pixel of every encoding the runtime accepts; anything else is rejected by name.
ENCODING_CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1, 'rgba8': 4, 'bgra8': 4}


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
    """Wrap an HxWxC uint8 array as a sensor_msgs/Image (one copy, into the message)."""
    channels = ENCODING_CHANNELS.get(encoding)
    if channels is None:
        raise InputError(f'image encoding {encoding!r} is not supported '
                         f'(supported: {sorted(ENCODING_CHANNELS)})')
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise InputError(f'expected an HxW[xC] uint8 array, got {pixels.dtype} {pixels.shape}')
    height, width = pixels.shape[:2]
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = width * channels
    # array.array assignment avoids the per-byte conversion rclpy does for bytes sequences.
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    """Zero-copy HxWxC view of an Image's bytes; raises InputError naming what is wrong."""
    channels = ENCODING_CHANNELS.get(msg.encoding)
    if channels is None:
        raise InputError(f'image on frame {msg.header.frame_id!r} has encoding '
                         f'{msg.encoding!r}; supported: {sorted(ENCODING_CHANNELS)}')
    row = msg.width * channels
    if msg.step < row:
        raise InputError(f'image step {msg.step} is smaller than width*channels {row}')
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size != msg.step * msg.height:
        raise InputError(f'image data has {buffer.size} bytes, expected step*height = '
                         f'{msg.step}*{msg.height} = {msg.step * msg.height}')
    pixels = buffer.reshape(msg.height, msg.step)[:, :row]
    return pixels.reshape(msg.height, msg.width, channels)


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
