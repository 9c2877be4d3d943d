"""The run video's captions (core/video_overlay.py), without DDS: bands, colours, result hold."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from noetra_ros.core.errors import InputError
from noetra_ros.core.video_overlay import (Caption, CaptionTracker, draw_caption, FAILED_BGR,
                                           RESULT_HOLD_S, SUCCESS_BGR)

INSTRUCTION = 'pick the yellow cylinder and place it in the right bin'


def scene(height: int = 240, width: int = 320) -> np.ndarray:
    """A textured BGR frame, so that a darkened or overwritten pixel shows."""
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, size=(height, width, 3), dtype=np.uint8)


def changed_rows(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(before != after, axis=(1, 2)))


def bottom_band(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    rows = changed_rows(before, after)
    return after[rows[rows >= before.shape[0] // 2][0]:]


def near(frame: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within `tolerance` of a colour in every channel."""
    return int(np.all(np.abs(frame.astype(int) - bgr) <= tolerance, axis=2).sum())


def status(episode: int, stamp_s: float, result: str = '', detail: str = '') -> dict:
    return {'state': result or 'running', 'episode': str(episode), 'seed': str(100 + episode),
            'instruction': f'task {episode}', 'result': result, 'detail': detail,
            'stamp_ns': str(round(stamp_s * 1e9))}


def test_caption_darkens_top_and_bottom_bands_and_keeps_the_middle():
    frame = scene()
    caption = Caption('pick_place_lrmate', 12.34, 3, 10003, INSTRUCTION, 3, False,
                      'timeout after 25.0 s')
    out = draw_caption(frame, caption)

    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, scene()), 'the input frame was modified'
    rows = changed_rows(frame, out)
    top = rows[rows < 120]
    bottom = rows[rows >= 120]
    # A band starts at each edge and is contiguous; everything between them is untouched.
    assert top[0] == 0 and np.array_equal(top, np.arange(top[-1] + 1))
    assert bottom[-1] == 239 and np.array_equal(bottom, np.arange(bottom[0], 240))
    assert 10 <= len(top) <= 40 and 20 <= len(bottom) <= 70
    middle = slice(top[-1] + 1, bottom[0])
    assert np.array_equal(out[middle], frame[middle]) and out[middle].shape[0] > 120
    # The band is darker than the scene under it, and the text is brighter than the band.
    band = out[top[0]:top[-1] + 1]
    assert band.mean() < 0.6 * frame[top[0]:top[-1] + 1].mean()
    assert near(band, (255, 255, 255)) > 30
    # A failed result is written in red, not green.
    assert near(bottom_band(frame, out), FAILED_BGR) > 30
    assert near(bottom_band(frame, out), SUCCESS_BGR) == 0


def test_success_is_green_and_no_result_leaves_only_the_instruction():
    frame = scene()
    success = draw_caption(frame, Caption('cell', 1.0, 0, 3, INSTRUCTION, 0, True, 'success'))
    running = draw_caption(frame, Caption('cell', 1.0, 0, 3, INSTRUCTION))
    assert near(bottom_band(frame, success), SUCCESS_BGR) > 30
    band = bottom_band(frame, running)
    assert near(band, SUCCESS_BGR) == near(band, FAILED_BGR) == 0
    # The result line takes a band line of its own above the instruction.
    assert len(changed_rows(frame, success)) > len(changed_rows(frame, running))


@pytest.mark.parametrize('size', [(96, 128), (480, 640)])
def test_text_scales_with_the_frame(size):
    frame = scene(*size)
    out = draw_caption(frame, Caption('pick_place_lrmate', 5.0, 1, 4, INSTRUCTION))
    rows = changed_rows(frame, out)
    # Both bands together stay a modest share of any frame size.
    assert 0.1 * size[0] < len(rows) < 0.6 * size[0]
    # Text wider than a small frame wraps instead of running off its right edge.
    assert near(out[:, -3:], (255, 255, 255), tolerance=10) <= 2


def test_bad_frames_are_refused_by_name():
    with pytest.raises(InputError, match=r'\(H, W, 3\) uint8 BGR.*\(240, 320\)'):
        draw_caption(np.zeros((240, 320), np.uint8), Caption('cell', 0.0))
    with pytest.raises(InputError, match='float32'):
        draw_caption(np.zeros((240, 320, 3), np.float32), Caption('cell', 0.0))


def test_tracker_follows_episodes_and_holds_each_result_for_its_time():
    tracker = CaptionTracker('cell')
    assert tracker.caption(0.0).episode == -1
    assert 'waiting for the first episode' in tracker.caption(0.0).header()

    tracker.on_status(status(0, 1.0))
    caption = tracker.caption(1.0)
    assert (caption.episode, caption.seed, caption.instruction) == (0, 100, 'task 0')
    assert caption.result() == ''

    tracker.on_status(status(0, 8.0, 'failed', 'timeout after 7.0 s'))
    tracker.on_status(status(0, 8.5, 'failed', 'timeout after 7.0 s'))  # the pause's steps
    assert tracker.caption(7.95).result() == ''  # a frame from before the end
    assert tracker.caption(8.0).result() == 'episode 0: FAILED - timeout after 7.0 s'
    # Shown over the start of the next episode too, naming the episode it belongs to.
    tracker.on_status(status(1, 9.05))
    caption = tracker.caption(8.0 + RESULT_HOLD_S - 0.05)
    assert caption.episode == 1 and caption.result().startswith('episode 0: FAILED')
    assert tracker.caption(8.0 + RESULT_HOLD_S + 0.05).result() == ''

    tracker.on_status(status(1, 12.0, 'success', 'success'))
    assert tracker.caption(12.1).result() == 'episode 1: SUCCESS'


def test_tracker_refuses_a_malformed_status_value():
    tracker = CaptionTracker('cell')
    with pytest.raises(InputError, match="task/status value seed='x'"):
        tracker.on_status({'episode': '0', 'seed': 'x'})


def test_captioned_frames_survive_the_video_codec(tmp_path):
    """What the monitor does with each frame: caption, then an mp4v file OpenCV reads back."""
    path = tmp_path / 'video.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10.0, (320, 240))
    flat = np.full((240, 320, 3), 128, np.uint8)
    for i in range(5):
        writer.write(draw_caption(flat, Caption('cell', i * 0.1, 0, 3, INSTRUCTION)))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (240, 320, 3)
    # The band is still dark and the middle still the scene's grey after compression.
    assert frame[2:8].mean() < 80 and abs(frame[100:140].mean() - 128) < 5
