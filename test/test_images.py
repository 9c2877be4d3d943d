"""The one image-decoding path (core/images.py): every encoding of the table, and bad input.

ROS-free: these run without rclpy. The sensor_msgs/Image side is in test_ros_conversions.py.
"""
from array import array

import numpy as np
import pytest

from noetra_ros.core.errors import InputError
from noetra_ros.core.images import (COLOUR_ENCODINGS, DEPTH_ENCODINGS, ENCODINGS, image_view,
                                    pack_image, to_bgr)
from noetra_ros.core.policy import preprocess


def pixels_for(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    channels = ENCODINGS[encoding].channels
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    dtype = np.dtype(ENCODINGS[encoding].dtype)
    if dtype.kind == 'f':
        return rng.uniform(0.0, 5.0, size=shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def test_policy_runtime_decodes_with_the_same_table():
    # One table: the runtime's preprocessing must not grow a second one.
    assert preprocess.ENCODINGS is ENCODINGS
    assert preprocess.image_view is image_view


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_every_encoding_round_trips_through_pack_and_view(encoding):
    pixels = pixels_for(encoding)
    data, width, height, step = pack_image(pixels, encoding)
    assert (width, height, step) == (7, 5, 7 * ENCODINGS[encoding].pixel_bytes)
    for buffer in (bytes(data), bytearray(data), memoryview(data), array('B', bytes(data))):
        np.testing.assert_array_equal(image_view(buffer, width, height, encoding, step), pixels)


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_every_encoding_skips_row_padding(encoding):
    pixels = pixels_for(encoding, seed=1)
    row = 7 * ENCODINGS[encoding].pixel_bytes
    padded = np.full((5, row + 3), 255, np.uint8)
    padded[:, :row] = np.frombuffer(pixels.tobytes(), np.uint8).reshape(5, row)
    view = image_view(padded.tobytes(), 7, 5, encoding, step=row + 3)
    np.testing.assert_array_equal(view, pixels)


@pytest.mark.parametrize('encoding', COLOUR_ENCODINGS)
def test_every_colour_encoding_converts_to_bgr_by_its_colour_order(encoding):
    pixels = pixels_for(encoding, seed=2)
    bgr = to_bgr(image_view(bytes(pack_image(pixels, encoding)[0]), 7, 5, encoding), encoding)
    assert bgr.shape == (5, 7, 3)
    order = ENCODINGS[encoding].color_order
    if order == 'mono':
        expected = np.stack([pixels] * 3, axis=2)
    elif order == 'bgr':
        expected = pixels[:, :, :3]
    else:
        expected = pixels[:, :, 2::-1]
    np.testing.assert_array_equal(bgr, expected)


@pytest.mark.parametrize('encoding', DEPTH_ENCODINGS)
def test_a_depth_image_has_no_bgr_form(encoding):
    with pytest.raises(InputError, match=f'{encoding} is a depth image'):
        to_bgr(pixels_for(encoding), encoding)


def test_the_view_shares_the_message_bytes():
    buffer = bytearray(12)
    view = image_view(buffer, 2, 2, 'rgb8')
    buffer[3] = 200
    assert view[0, 1, 0] == 200


@pytest.mark.parametrize('encoding', ['yuv422', 'bgr16', '16UC3', 'RGB8', '', None])
def test_unknown_encodings_are_named_with_the_supported_ones(encoding):
    with pytest.raises(InputError, match=f'encoding {encoding!r} is not supported') as error:
        image_view(bytes(12), 2, 2, encoding)
    assert all(name in str(error.value) for name in ENCODINGS)
    with pytest.raises(InputError, match='is not supported'):
        pack_image(np.zeros((2, 2, 3), np.uint8), encoding)


@pytest.mark.parametrize('data, width, height, encoding, step, message', [
    (bytes(11), 2, 2, 'rgb8', 0,
     'has 11 bytes but a 2x2 rgb8 image (3 byte(s) per pixel, step 6) needs 12'),
    (bytes(12), 2, 2, 'mono8', 0, 'has 12 bytes but a 2x2 mono8 image'),
    (bytes(16), 2, 2, 'rgba8', 10, 'has 16 bytes'),
    (bytes(12), 2, 2, 'bgra8', 6, 'step 6 is shorter than a 2-pixel bgra8 row (8 bytes)'),
    (bytes(12), 0, 2, 'rgb8', 0, 'width must be a positive integer, got 0'),
    (bytes(12), 2, -1, 'rgb8', 0, 'height must be a positive integer, got -1'),
    (bytes(12), 2.0, 2, 'rgb8', 0, 'width must be a positive integer, got 2.0'),
    (np.zeros((2, 2, 3), np.float32), 2, 2, 'rgb8', 0, 'float32 (2, 2, 3), expected uint8'),
    (np.zeros((2, 2, 3), np.uint8), 2, 2, 'rgba8', 0, 'expected uint8 (2, 2, 4)'),
])
def test_wrong_sizes_are_rejected_with_the_cause(data, width, height, encoding, step, message):
    with pytest.raises(InputError) as error:
        image_view(data, width, height, encoding, step)
    assert message in str(error.value)


@pytest.mark.parametrize('pixels, encoding, message', [
    (np.zeros((4, 4), np.uint8), 'rgb8',
     'a rgb8 image needs an HxWx3 uint8 array, got shape (4, 4)'),
    (np.zeros((4, 4, 3), np.uint8), 'mono8', 'HxWx1 uint8 array (or HxW), got shape (4, 4, 3)'),
    (np.zeros((4, 4, 3), np.uint8), 'bgra8', 'HxWx4'),
    (np.zeros((0, 4, 3), np.uint8), 'rgb8', 'got shape (0, 4, 3)'),
    (np.zeros((4, 4, 3), np.float64), 'rgb8',
     'expected a uint8 array for a rgb8 image, got float64'),
    ([[1, 2], [3, 4]], 'mono8', 'got list'),
])
def test_packing_refuses_arrays_that_do_not_match_the_encoding(pixels, encoding, message):
    with pytest.raises(InputError) as error:
        pack_image(pixels, encoding)
    assert message in str(error.value)


def test_packing_a_contiguous_array_does_not_copy():
    pixels = pixels_for('rgb8')
    assert pack_image(pixels, 'rgb8')[0] is pixels
    strided = pixels[:, ::2]
    data, width, _, step = pack_image(strided, 'rgb8')
    assert (width, step) == (4, 12) and data.flags.c_contiguous
    np.testing.assert_array_equal(image_view(bytes(data), 4, 5, 'rgb8'), strided)
