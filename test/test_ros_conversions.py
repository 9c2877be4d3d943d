"""Image / stamp conversions used by every node (real message types)."""
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from noetra_ros.core.errors import InputError
from noetra_ros.core.images import ENCODINGS
from noetra_ros.ros_conversions import (camera_info_msg, image_to_numpy, numpy_to_image,
                                        seconds_to_stamp, stamp_to_seconds)


def test_stamp_round_trip_and_carry():
    for t in (0.0, 1.5, 12.999999999, 1234.05):
        assert stamp_to_seconds(seconds_to_stamp(t)) == pytest.approx(t, abs=1e-9)
    stamp = seconds_to_stamp(0.9999999999)
    assert stamp.nanosec < 1_000_000_000


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_image_round_trip(encoding):
    channels = ENCODINGS[encoding].channels
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(6, 8, channels)).astype(ENCODINGS[encoding].dtype)
    msg = numpy_to_image(pixels if channels > 1 else pixels[:, :, 0], encoding,
                         seconds_to_stamp(1.0), 'cam_optical_frame')
    assert (msg.width, msg.height, msg.step, msg.encoding) == (
        8, 6, 8 * ENCODINGS[encoding].pixel_bytes, encoding)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_padded_rows_are_handled():
    msg = Image(width=2, height=2, encoding='mono8', step=4, data=bytes([1, 2, 0, 0, 3, 4, 0, 0]))
    np.testing.assert_array_equal(image_to_numpy(msg)[:, :, 0], [[1, 2], [3, 4]])


def test_bad_images_are_named():
    def bad(**fields):
        return Image(header=Header(frame_id='wrist_camera_optical_frame'), **fields)
    with pytest.raises(InputError, match="frame 'wrist_camera_optical_frame'.*'yuv422'"):
        image_to_numpy(bad(width=2, height=2, encoding='yuv422', step=4, data=bytes(8)))
    with pytest.raises(InputError, match=r'has 10 bytes but a 2x2 rgb8 image .* needs 12'):
        image_to_numpy(bad(width=2, height=2, encoding='rgb8', step=6, data=bytes(10)))
    with pytest.raises(InputError, match='step 4 is shorter than a 2-pixel rgb8 row'):
        image_to_numpy(bad(width=2, height=2, encoding='rgb8', step=4, data=bytes(8)))
    with pytest.raises(InputError, match='width must be a positive integer, got 0'):
        image_to_numpy(bad(width=0, height=2, encoding='rgb8', step=0, data=bytes(0)))


def test_an_image_is_never_published_under_the_wrong_encoding():
    with pytest.raises(InputError, match='HxWx4'):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'rgba8', seconds_to_stamp(0.0), 'f')
    with pytest.raises(InputError, match='not supported'):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), '8UC3', seconds_to_stamp(0.0), 'f')


def test_camera_info_intrinsics():
    info = camera_info_msg(320, 240, 200.0, 201.0, 160.0, 120.0, seconds_to_stamp(2.0), 'f')
    assert info.k[0] == 200.0 and info.k[4] == 201.0 and info.p[2] == 160.0
    assert info.header.frame_id == 'f'
