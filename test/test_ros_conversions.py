"""Image / stamp conversions used by every node (real message types)."""
import numpy as np
import pytest
from sensor_msgs.msg import Image

from noetra_ros.core.errors import InputError
from noetra_ros.ros_conversions import (camera_info_msg, image_to_numpy, numpy_to_image,
                                        seconds_to_stamp, stamp_to_seconds)


def test_stamp_round_trip_and_carry():
    for t in (0.0, 1.5, 12.999999999, 1234.05):
        assert stamp_to_seconds(seconds_to_stamp(t)) == pytest.approx(t, abs=1e-9)
    stamp = seconds_to_stamp(0.9999999999)
    assert stamp.nanosec < 1_000_000_000


@pytest.mark.parametrize('encoding,channels', [('rgb8', 3), ('bgr8', 3), ('mono8', 1)])
def test_image_round_trip(encoding, channels):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(6, 8, channels), dtype=np.uint8)
    msg = numpy_to_image(pixels if channels > 1 else pixels[:, :, 0], encoding,
                         seconds_to_stamp(1.0), 'cam_optical_frame')
    assert (msg.width, msg.height, msg.step) == (8, 6, 8 * channels)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_padded_rows_are_handled():
    msg = Image(width=2, height=2, encoding='mono8', step=4, data=bytes([1, 2, 0, 0, 3, 4, 0, 0]))
    np.testing.assert_array_equal(image_to_numpy(msg)[:, :, 0], [[1, 2], [3, 4]])


def test_bad_images_are_named():
    with pytest.raises(InputError, match='yuv422'):
        image_to_numpy(Image(width=2, height=2, encoding='yuv422', step=4, data=bytes(8)))
    with pytest.raises(InputError, match='expected step'):
        image_to_numpy(Image(width=2, height=2, encoding='rgb8', step=6, data=bytes(10)))


def test_camera_info_intrinsics():
    info = camera_info_msg(320, 240, 200.0, 201.0, 160.0, 120.0, seconds_to_stamp(2.0), 'f')
    assert info.k[0] == 200.0 and info.k[4] == 201.0 and info.p[2] == 160.0
    assert info.header.frame_id == 'f'
