"""Raw camera bytes <-> numpy, without ROS: the one image-decoding path of the project.

A sensor_msgs/Image is (data, width, height, encoding, step); the policy runtime, the monitor's
video and the sim's publisher all go through the table and the two functions below, so an
encoding is either understood the same way everywhere or rejected everywhere by name.

The table holds colour encodings (8 bits per channel) and depth encodings (one channel: 16UC1
in millimetres, 32FC1 in metres, REP 118). `depth_to_metres` reads a depth view in metres;
`metres_to_depth_mm` and `render_colour_and_depth` make the 16UC1 frames the simulator
publishes, so the sim node and the in-process evaluation produce the same depth.

A sensor_msgs/CompressedImage (JPEG or PNG bytes plus a `format` string, as image_transport's
`compressed` plugin and usb_cam's MJPEG mode publish it) is decoded by `decode_compressed` into
pixels and one of the colour encodings of the same table, so everything downstream is shared.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import cv2
import numpy as np

from noetra_ros.core.errors import InputError


class Encoding(NamedTuple):
    """How the bytes of one pixel are laid out."""

    color_order: str  # 'rgb', 'bgr' or 'mono': order of the colour bytes; 'depth' for depth
    channels: int     # values per pixel (alpha, when present, is the last one and ignored)
    dtype: str = 'uint8'  # numpy type of one value (little-endian unless the message says not)
    depth_unit_m: float = 0.0  # depth encodings: metres per unit of a value; 0 for colour

    @property
    def is_depth(self) -> bool:
        """True for a depth image (one distance per pixel), False for a colour / grey one."""
        return self.depth_unit_m > 0.0

    @property
    def pixel_bytes(self) -> int:
        """Bytes per pixel."""
        return self.channels * np.dtype(self.dtype).itemsize


# The sensor_msgs/image_encodings names the runtime accepts. Colour: 8 bits per channel.
# Depth, REP 118 (ros.org/reps/rep-0118.html): 32FC1 is the canonical form, metres along the
# optical axis (NaN / +-Inf: no valid measurement, REP 117); 16UC1 is the raw form drivers
# publish, millimetres, 0 = no valid measurement. realsense2_camera publishes its aligned depth
# as 16UC1 with 1 mm units (realsense-ros realsense2_camera/src/base_realsense_node.cpp:
# _depth_aligned_encoding, ROS_DEPTH_SCALE; docs/CAMERAS.md, "Depth").
ENCODINGS: Mapping[str, Encoding] = {
    'rgb8': Encoding('rgb', 3),
    'bgr8': Encoding('bgr', 3),
    'mono8': Encoding('mono', 1),
    'rgba8': Encoding('rgb', 4),
    'bgra8': Encoding('bgr', 4),
    '16UC1': Encoding('depth', 1, 'uint16', 0.001),
    '32FC1': Encoding('depth', 1, 'float32', 1.0),
}
COLOUR_ENCODINGS = tuple(name for name, e in ENCODINGS.items() if not e.is_depth)
DEPTH_ENCODINGS = tuple(name for name, e in ENCODINGS.items() if e.is_depth)


def encoding_of(name: str) -> Encoding:
    """The table entry for `name`; InputError naming it and the supported ones otherwise."""
    try:
        return ENCODINGS[name]
    except (KeyError, TypeError):
        raise InputError(f'image encoding {name!r} is not supported (supported: '
                         f'{", ".join(ENCODINGS)})') from None


def describe_depth_encodings() -> str:
    """`16UC1 (mm), 32FC1 (m)`, for error messages."""
    units = {0.001: 'mm', 1.0: 'm'}
    return ', '.join(f'{name} ({units.get(ENCODINGS[name].depth_unit_m, "?")})'
                     for name in DEPTH_ENCODINGS)


def _positive_int(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f'image {label} must be a positive integer, got {value!r}')
    return int(value)


def _value_type(encoding: Encoding, big_endian: bool) -> np.dtype:
    dtype = np.dtype(encoding.dtype)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder('>' if big_endian else '<')
    return dtype


def image_view(data: Any, width: int, height: int, encoding: str,
               step: int = 0, big_endian: bool = False) -> np.ndarray:
    """A view (H, W, C) - or (H, W) for one channel - of raw image bytes, without copying.

    The values have the encoding's type: uint8 for colour, uint16 for 16UC1, float32 for
    32FC1 (`big_endian` is the message's is_bigendian; it matters only for those two).
    `data` is any buffer (bytes, bytearray, memoryview, the array.array rclpy gives for
    Image.data) or an ndarray of the image's shape and type; `step` is the row length in bytes
    (0 = tightly packed, width * bytes per pixel; longer rows are padding and are cut off).
    Raises InputError for an unknown encoding, bad sizes or a byte count that is not
    height * step.
    """
    spec = encoding_of(encoding)
    channels = spec.channels
    width = _positive_int(width, 'width')
    height = _positive_int(height, 'height')
    row = width * spec.pixel_bytes
    if isinstance(data, np.ndarray) and data.ndim > 1:
        expected = (height, width) if channels == 1 else (height, width, channels)
        if (data.dtype != np.dtype(spec.dtype)
                or data.shape not in (expected, (height, width, channels))):
            raise InputError(f'image array is {data.dtype} {data.shape}, expected {spec.dtype} '
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
            f'({spec.pixel_bytes} byte(s) per pixel, step {step}) needs {height * step}')
    rows = flat.reshape(height, step)
    if step != row:
        rows = rows[:, :row]
    if spec.dtype != 'uint8':
        # Reinterpret each row's bytes; rows stay views of the message (possibly unaligned,
        # which numpy reads correctly, only a little slower).
        rows = rows.view(_value_type(spec, big_endian))
    return rows.reshape(height, width) if channels == 1 else rows.reshape(height, width,
                                                                           channels)


def pack_image(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, int, int, int]:
    """(data, width, height, step) of a tightly packed image, from an (H, W[, C]) array of the
    encoding's type (uint8 for colour, uint16 for 16UC1, float32 for 32FC1).

    `data` is the image's bytes as a C-contiguous uint8 array (`pixels` itself, or a view of
    it, when it already is contiguous: no copy), ready for any consumer of the buffer protocol;
    multi-byte values are little-endian (is_bigendian 0).

    The channel count and type must be the encoding's (an (H, W) array only for one channel),
    so an image is never published under an encoding that would make its receivers misread it.
    """
    spec = encoding_of(encoding)
    channels = spec.channels
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.dtype(spec.dtype):
        raise InputError(f'expected a {spec.dtype} array for a {encoding} image, got '
                         f'{getattr(pixels, "dtype", type(pixels).__name__)}')
    shape_ok = (pixels.ndim == 3 and pixels.shape[2] == channels) or (
        pixels.ndim == 2 and channels == 1)
    if not shape_ok or 0 in pixels.shape:
        raise InputError(f'a {encoding} image needs an HxWx{channels} {spec.dtype} array'
                         f'{" (or HxW)" if channels == 1 else ""}, got shape {pixels.shape}')
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels)
    little = _value_type(spec, big_endian=False)
    if data.dtype != little:  # only on a big-endian machine
        data = data.astype(little)
    if data.dtype.itemsize > 1:
        # Bytes, not values: a byte consumer (array('B').frombytes) refuses a typed buffer.
        data = data.view(np.uint8)
    return data, width, height, width * spec.pixel_bytes


def to_bgr(view: np.ndarray, encoding: str) -> np.ndarray:
    """An (H, W, 3) BGR array (OpenCV's order, e.g. for a video writer) of a decoded image."""
    spec = encoding_of(encoding)
    if spec.is_depth:
        raise InputError(f'{encoding} is a depth image, not colour: it has no BGR form')
    if spec.color_order == 'mono':
        return np.repeat(view.reshape(view.shape[0], view.shape[1], 1), 3, axis=2)
    colour = view[:, :, :3]
    return colour if spec.color_order == 'bgr' else colour[:, :, ::-1]


# ---------------------------------------------------------------- depth
def depth_to_metres(view: np.ndarray, encoding: str) -> np.ndarray:
    """float32 metres of a depth view (image_view of a 16UC1 / 32FC1 image, any shape).

    Values that mean "no measurement" keep a form that says so: 0 stays 0 (16UC1), NaN / Inf
    stay non-finite (32FC1). What becomes of them is the policy contract's business
    (preprocess.depth_to_tensor).
    """
    spec = encoding_of(encoding)
    if not spec.is_depth:
        raise InputError(f'image encoding {encoding!r} is not a depth encoding (depth: '
                         f'{describe_depth_encodings()})')
    metres = np.asarray(view, dtype=np.float32)
    if spec.depth_unit_m != 1.0:
        metres = metres * np.float32(spec.depth_unit_m)
    return metres


# The largest distance a 16UC1 image in millimetres can carry.
MAX_DEPTH_MM = np.iinfo(np.uint16).max


def metres_to_depth_mm(depth_m: np.ndarray) -> np.ndarray:
    """A 16UC1 image (uint16 millimetres, rounded) of depths in metres, as a depth camera
    driver publishes it: a pixel without a valid distance (non-finite, <= 0, or too far for
    16 bits) becomes 0, REP 118's "no measurement"."""
    depth = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid='ignore'):
        millimetres = np.rint(depth * 1000.0)
        valid = np.isfinite(millimetres) & (millimetres > 0) & (millimetres <= MAX_DEPTH_MM)
    return np.where(valid, millimetres, 0).astype(np.uint16)


def render_colour_and_depth(world: Any, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """(rgb8 pixels, 16UC1 depth in mm) of one simulated camera, from ONE rendering, so the
    depth is the same capture as the colour image (what realsense2_camera's aligned depth is:
    depth registered to the colour camera, stamped with the colour frame's time).

    `world` is a core.sim.world.SimWorld. The renderer's far plane (CameraSpec.far) stands for
    "nothing in range": those pixels become 0 mm, as a real camera reports no return. The sim
    node and the in-process evaluation both call this, so they feed a policy the same depth.
    """
    rgb, depth_m = world.render_rgbd(camera)
    far = next(c.far for c in world.config.cameras if c.name == camera)
    # Background pixels come back at `far` less float32 rounding of the z-buffer: its value
    # 1 - 6e-8 linearises to about far * (1 - 2e-5) (near 0.01, far 3 m: 2.99995 m), so a
    # relative 1e-4 (0.3 mm at 3 m) separates the background from any real surface.
    no_return = depth_m >= np.float32(far * (1.0 - 1e-4))
    return rgb, metres_to_depth_mm(np.where(no_return, 0.0, depth_m))


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
    if target is not None and target not in COLOUR_ENCODINGS:
        raise InputError(f'compressed image format {text!r}: decoded encoding {target!r} is not '
                         f'supported (supported: {", ".join(COLOUR_ENCODINGS)})')
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
