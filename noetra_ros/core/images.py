"""Raw camera bytes <-> numpy, without ROS: the one image-decoding path of the project.

A sensor_msgs/Image is (data, width, height, encoding, step); the policy runtime, the monitor's
video and the sim's publisher all go through the table and the two functions below, so an
encoding is either understood the same way everywhere or rejected everywhere by name.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from noetra_ros.core.errors import InputError


class Encoding(NamedTuple):
    """How the bytes of one pixel are laid out."""

    color_order: str  # 'rgb', 'bgr' or 'mono': order of the colour bytes
    channels: int     # bytes per pixel (alpha, when present, is the last byte and ignored)


# The sensor_msgs/image_encodings names the runtime accepts: 8 bits per channel only.
ENCODINGS: Mapping[str, Encoding] = {
    'rgb8': Encoding('rgb', 3),
    'bgr8': Encoding('bgr', 3),
    'mono8': Encoding('mono', 1),
    'rgba8': Encoding('rgb', 4),
    'bgra8': Encoding('bgr', 4),
}


def encoding_of(name: str) -> Encoding:
    """The table entry for `name`; InputError naming it and the supported ones otherwise."""
    try:
        return ENCODINGS[name]
    except (KeyError, TypeError):
        raise InputError(f'image encoding {name!r} is not supported (supported: '
                         f'{", ".join(ENCODINGS)})') from None


def _positive_int(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f'image {label} must be a positive integer, got {value!r}')
    return int(value)


def image_view(data: Any, width: int, height: int, encoding: str,
               step: int = 0) -> np.ndarray:
    """A uint8 view (H, W, C) - or (H, W) for mono8 - of raw image bytes, without copying.

    `data` is any buffer (bytes, bytearray, memoryview, the array.array rclpy gives for
    Image.data) or a uint8 ndarray of the image's shape; `step` is the row length in bytes
    (0 = tightly packed, width * channels; longer rows are padding and are cut off).
    Raises InputError for an unknown encoding, bad sizes or a byte count that is not
    height * step.
    """
    channels = encoding_of(encoding).channels
    width = _positive_int(width, 'width')
    height = _positive_int(height, 'height')
    row = width * channels
    if isinstance(data, np.ndarray) and data.ndim > 1:
        expected = (height, width) if channels == 1 else (height, width, channels)
        if data.dtype != np.uint8 or data.shape not in (expected, (height, width, channels)):
            raise InputError(f'image array is {data.dtype} {data.shape}, expected uint8 '
                             f'{expected} for a {width}x{height} {encoding} image')
        return data.reshape(expected)
    step = row if not step else step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < row:
        raise InputError(f'image step {step!r} is shorter than a {width}-pixel {encoding} row '
                         f'({row} bytes)')
    try:
        flat = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        # A plain list of ints (no buffer protocol): one copy is unavoidable.
        flat = np.asarray(data, dtype=np.uint8).reshape(-1)
    if flat.size != height * step:
        raise InputError(
            f'image data has {flat.size} bytes but a {width}x{height} {encoding} image '
            f'({channels} byte(s) per pixel, step {step}) needs {height * step}')
    rows = flat.reshape(height, step)
    if step != row:
        rows = rows[:, :row]
    return rows.reshape(height, width) if channels == 1 else rows.reshape(height, width,
                                                                           channels)


def pack_image(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, int, int, int]:
    """(data, width, height, step) of a tightly packed image, from an (H, W[, C]) uint8 array.

    `data` is C-contiguous (`pixels` itself when it already is: no copy), ready for any
    consumer of the buffer protocol.

    The channel count must be the encoding's (an (H, W) array only for mono8), so an image
    is never published under an encoding that would make its receivers misread it.
    """
    channels = encoding_of(encoding).channels
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise InputError(f'expected a uint8 array for a {encoding} image, got '
                         f'{getattr(pixels, "dtype", type(pixels).__name__)}')
    shape_ok = (pixels.ndim == 3 and pixels.shape[2] == channels) or (
        pixels.ndim == 2 and channels == 1)
    if not shape_ok or 0 in pixels.shape:
        raise InputError(f'a {encoding} image needs an HxWx{channels} uint8 array'
                         f'{" (or HxW)" if channels == 1 else ""}, got shape {pixels.shape}')
    height, width = pixels.shape[:2]
    return np.ascontiguousarray(pixels), width, height, width * channels


def to_bgr(view: np.ndarray, encoding: str) -> np.ndarray:
    """An (H, W, 3) BGR array (OpenCV's order, e.g. for a video writer) of a decoded image."""
    color_order = encoding_of(encoding).color_order
    if color_order == 'mono':
        return np.repeat(view.reshape(view.shape[0], view.shape[1], 1), 3, axis=2)
    colour = view[:, :, :3]
    return colour if color_order == 'bgr' else colour[:, :, ::-1]
