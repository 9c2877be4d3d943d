"""Raw camera bytes <-> numpy, without ROS: the one image-decoding path of the project.

A sensor_msgs/Image is (data, width, height, encoding, step); the policy runtime, the monitor's
video and the sim's publisher all go through the table and the two functions below, so an
encoding is either understood the same way everywhere or rejected everywhere by name.

A sensor_msgs/CompressedImage (JPEG or PNG bytes plus a `format` string, as image_transport's
`compressed` plugin and usb_cam's MJPEG mode publish it) is decoded by `decode_compressed` into
pixels and one of the encodings of the same table, so everything downstream is shared.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import cv2
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


# ---------------------------------------------------------------- compressed images
# The `format` conventions below were read from ros-perception/image_transport_plugins,
# compressed_image_transport: the publisher (src/compressed_publisher.cpp) writes
# "<image encoding>; <jpeg|png> compressed <target encoding>", where a colour image is first
# converted to bgr8 (so "rgb8; jpeg compressed bgr8"); the subscriber
# (src/compressed_subscriber.cpp) decodes with cv::imdecode(IMREAD_UNCHANGED), treats the pixels
# as BGR when the text after ';' says "compressed bgr" and as RGB otherwise, and - for a format
# without ';' (older publishers, cv_bridge's "jpg", usb_cam's MJPEG frames sent as "jpeg") - as
# mono8 / bgr8 by channel count. usb_cam: ros-drivers/usb_cam src/ros2/usb_cam_node.cpp sets
# format "jpeg" for its pass-through MJPEG stream on image_raw/compressed.
COMPRESSED_CODECS: Mapping[str, str] = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}
# A file's first bytes name its codec: JPEG SOI marker + next marker's 0xFF, PNG signature.
_MAGIC = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}
_JPEG_END = b'\xff\xd9'  # EOI: a JPEG without it was cut off in transit
# Channel count of decoded pixels -> encoding, when the format names no target encoding.
_BY_CHANNELS = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}


class CompressedFormat(NamedTuple):
    """What a CompressedImage `format` says: the codec and, if named, the decoded pixels' layout."""

    codec: str                 # 'jpeg' or 'png'
    target_encoding: str | None  # encoding of the decoded pixels ("compressed bgr8"), if given


def parse_compressed_format(text: Any) -> CompressedFormat:
    """Parse a CompressedImage `format`; InputError naming it when it is not understood."""
    if not isinstance(text, str):
        raise InputError(f'compressed image format must be a string, got {text!r}')
    expected = ("expected '<encoding>; jpeg compressed <encoding>' (image_transport), or "
                f"one of {', '.join(repr(c) for c in COMPRESSED_CODECS)}")
    head, separator, tail = text.partition(';')
    if not separator:
        codec = COMPRESSED_CODECS.get(head.strip().lower())
        if codec is None:
            raise InputError(f'compressed image format {text!r} is not supported: {expected}')
        return CompressedFormat(codec, None)
    words = tail.split()
    codec = COMPRESSED_CODECS.get(words[0].lower()) if words else None
    if codec is None or len(words) < 2 or words[1] != 'compressed' or len(words) > 3:
        raise InputError(f'compressed image format {text!r} is not supported: {expected}')
    target = words[2] if len(words) == 3 else None
    if target is not None and target not in ENCODINGS:
        raise InputError(f'compressed image format {text!r}: decoded encoding {target!r} is not '
                         f'supported (supported: {", ".join(ENCODINGS)})')
    return CompressedFormat(codec, target)


def decode_compressed(data: Any, format_text: Any) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of a CompressedImage payload: an (H, W[, C]) uint8 array and the
    ENCODINGS name that describes it (bgr8 for an ordinary colour JPEG: OpenCV's order).

    Raises InputError for an unknown format, an empty payload, a payload that is not the codec
    the format names (or not an image at all), a truncated JPEG, and 16-bit images.
    """
    spec = parse_compressed_format(format_text)
    try:
        payload = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        payload = np.asarray(data, dtype=np.uint8).reshape(-1)
    if payload.size == 0:
        raise InputError(f'compressed image ({format_text!r}) has an empty payload')
    codec = spec.codec.upper()
    magic = _MAGIC[spec.codec]
    head = payload[:len(magic)].tobytes()
    if head != magic:
        raise InputError(f'compressed image payload is not a {codec} (format {format_text!r}): '
                         f'it starts with {head.hex(" ")} instead of {magic.hex(" ")}')
    if spec.codec == 'jpeg' and payload[2:].tobytes().rfind(_JPEG_END) < 0:
        # libjpeg decodes a cut-off file with only a warning, filling the rest with grey.
        raise InputError(f'compressed image payload is a truncated JPEG ({payload.size} bytes, '
                         'no end-of-image marker)')
    pixels = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise InputError(f'compressed image payload ({payload.size} bytes) could not be decoded '
                         f'as {codec}: corrupt data')
    if pixels.dtype != np.uint8:
        raise InputError(f'compressed image is a {pixels.dtype} {codec}; only 8-bit images are '
                         'supported')
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels == 1 and pixels.ndim == 3:
        pixels = pixels[:, :, 0]
    encoding = spec.target_encoding
    if encoding is None:
        encoding = _BY_CHANNELS.get(channels)
        if encoding is None:
            raise InputError(f'compressed image decodes to {channels} channels; supported: '
                             f'{sorted(_BY_CHANNELS)}')
    elif ENCODINGS[encoding].channels != channels:
        raise InputError(f'compressed image format {format_text!r} names {encoding} '
                         f'({ENCODINGS[encoding].channels} channel(s)) but the {codec} payload '
                         f'has {channels}')
    return pixels, encoding
