"""sensor_msgs/CompressedImage payloads (core/images.decode_compressed), without ROS.

Frames are encoded here with cv2.imencode, as image_transport's compressed plugin does, and the
decoded pixels must reach the policy's tensor in the colour order the model asked for.
"""
from array import array

import cv2
import numpy as np
import pytest

from noetra_ros.core.errors import InputError
from noetra_ros.core.images import decode_compressed, parse_compressed_format
from noetra_ros.core.policy.contract import ImageInput
from noetra_ros.core.policy.preprocess import frame_to_tensor, ImageFrame

# Pure primaries survive JPEG compression within a few grey levels; red is the one a swapped
# colour order would turn into blue.
RED_RGB = (230, 20, 20)


def red_frame_bgr(height=24, width=32):
    return np.tile(np.array(RED_RGB[::-1], np.uint8), (height, width, 1))


def encoded(pixels, extension, *params):
    ok, buffer = cv2.imencode(extension, pixels, list(params))
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize('format_text', ['rgb8; jpeg compressed bgr8', 'bgr8; jpeg compressed bgr8',
                                         'jpeg', 'jpg', 'JPEG'])
def test_a_colour_jpeg_decodes_to_bgr_pixels_of_the_right_colour(format_text):
    payload = encoded(red_frame_bgr(), '.jpg', cv2.IMWRITE_JPEG_QUALITY, 95)
    for data in (payload, array('B', payload)):  # bytes, and what rclpy gives for msg.data
        pixels, encoding = decode_compressed(data, format_text)
        assert encoding == 'bgr8' and pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8
        np.testing.assert_allclose(pixels[12, 16], RED_RGB[::-1], atol=6)


def test_png_round_trip_is_exact_for_colour_and_mono():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    pixels, encoding = decode_compressed(encoded(colour, '.png'), 'rgb8; png compressed bgr8')
    assert encoding == 'bgr8'
    np.testing.assert_array_equal(pixels, colour)
    mono = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    pixels, encoding = decode_compressed(encoded(mono, '.png'), 'mono8; png compressed mono8')
    assert encoding == 'mono8'
    np.testing.assert_array_equal(pixels, mono)


def test_a_mono_jpeg_without_a_target_encoding_is_mono8():
    # Older compressed publishers write "mono8; jpeg compressed " (nothing after it).
    mono = np.full((8, 8), 90, np.uint8)
    pixels, encoding = decode_compressed(encoded(mono, '.jpg'), 'mono8; jpeg compressed ')
    assert encoding == 'mono8' and pixels.shape == (8, 8)
    assert abs(int(pixels[4, 4]) - 90) <= 2


def test_compressed_rgb8_target_means_the_decoded_bytes_are_rgb():
    # A publisher that compressed rgb bytes as they were: the decoded array is RGB-ordered.
    rgb_bytes = np.tile(np.array(RED_RGB, np.uint8), (4, 4, 1))
    pixels, encoding = decode_compressed(encoded(rgb_bytes, '.png'), 'rgb8; png compressed rgb8')
    assert encoding == 'rgb8'
    np.testing.assert_array_equal(pixels[0, 0], RED_RGB)


@pytest.mark.parametrize('model_order', ['rgb', 'bgr'])
def test_the_policy_tensor_gets_the_colour_order_the_model_asks_for(model_order):
    spec = ImageInput(name='image_scene', camera='scene_camera', height=24, width=32,
                      resize='stretch', color_order=model_order, layout='nchw',
                      mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=255.0)
    pixels, encoding = decode_compressed(encoded(red_frame_bgr(), '.jpg'),
                                         'rgb8; jpeg compressed bgr8')
    tensor = frame_to_tensor(ImageFrame(pixels, 32, 24, encoding), spec)
    channel_means = tensor[0].mean(axis=(1, 2)) * 255.0
    expected = RED_RGB if model_order == 'rgb' else RED_RGB[::-1]
    np.testing.assert_allclose(channel_means, expected, atol=6)


@pytest.mark.parametrize('format_text, message', [
    ('h264', "format 'h264' is not supported"),
    ('rgb8; theora compressed bgr8', 'is not supported'),
    ('rgb8; jpeg bgr8', 'is not supported'),
    ('rgb8; jpeg compressed yuv422', "decoded encoding 'yuv422' is not supported"),
    ('16UC1; compressedDepth png', 'is not supported'),
    ('', "format '' is not supported"),
    (None, 'must be a string, got None'),
])
def test_unknown_formats_are_named(format_text, message):
    with pytest.raises(InputError) as error:
        parse_compressed_format(format_text)
    assert message in str(error.value)
    with pytest.raises(InputError):
        decode_compressed(encoded(red_frame_bgr(), '.jpg'), format_text)


def test_corrupt_truncated_empty_and_mislabelled_payloads_are_refused_with_the_cause():
    jpeg = encoded(red_frame_bgr(), '.jpg')
    png = encoded(red_frame_bgr(), '.png')
    cases = [
        (b'', 'jpeg', 'empty payload'),
        (b'not an image at all', 'jpeg', 'payload is not a JPEG'),
        (png, 'rgb8; jpeg compressed bgr8', 'payload is not a JPEG'),
        (jpeg, 'rgb8; png compressed bgr8', 'payload is not a PNG'),
        (jpeg[:len(jpeg) // 2], 'jpeg', 'truncated JPEG'),
        # Valid markers around garbage: the codec itself must refuse it.
        (b'\xff\xd8\xff' + bytes(200) + b'\xff\xd9', 'jpeg', 'could not be decoded as JPEG'),
        (png[:40], 'png', 'could not be decoded as PNG'),
    ]
    for payload, format_text, message in cases:
        with pytest.raises(InputError) as error:
            decode_compressed(payload, format_text)
        assert message in str(error.value), (format_text, str(error.value))


def test_sixteen_bit_and_mismatched_channel_payloads_are_refused():
    deep = np.full((4, 4), 1000, np.uint16)
    with pytest.raises(InputError, match='uint16 PNG; only 8-bit'):
        decode_compressed(encoded(deep, '.png'), 'png')
    mono = encoded(np.zeros((4, 4), np.uint8), '.png')
    with pytest.raises(InputError,
                       match=r'names bgr8 \(3 channel\(s\)\) but the PNG payload has 1'):
        decode_compressed(mono, 'rgb8; png compressed bgr8')
