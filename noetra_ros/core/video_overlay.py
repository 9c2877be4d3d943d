"""Captions on the run video, ROS-free: what a person needs to read a frame of the scene camera.

A dark band at the top names the cell, the episode, its seed and the sim time; one at the bottom
carries the instruction and, for RESULT_HOLD_S of video after an episode ends, its result
(SUCCESS in green, FAILED and the reason in red). The monitor feeds `CaptionTracker` the
task/status values and asks it for each frame's `Caption`; `draw_caption` draws it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from noetra_ros.core.errors import InputError

# Sim seconds an ended episode's result stays on the frames: long enough to read a reason.
RESULT_HOLD_S = 1.5
# The band keeps this fraction of the scene's brightness: white text reads on it and the robot
# stays visible through it.
BAND_BRIGHTNESS = 0.3
# OpenCV's Hershey font at 0.4 is about 11 px high, readable at 320 x 240; larger frames scale it.
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE_AT_240_ROWS = 0.4
MARGIN_PX = 4
TEXT_BGR = (255, 255, 255)
SUCCESS_BGR = (80, 230, 80)
FAILED_BGR = (70, 70, 255)


@dataclass(frozen=True)
class Caption:
    """The text of one frame. episode -1: no episode has started yet; result_episode -1: no
    result to show on this frame."""

    cell: str
    sim_time_s: float
    episode: int = -1
    seed: int = -1
    instruction: str = ''
    result_episode: int = -1
    success: bool = False
    reason: str = ''

    def header(self) -> str:
        where = (f'episode {self.episode} | seed {self.seed}' if self.episode >= 0
                 else 'waiting for the first episode')
        return f'{self.cell} | {where} | sim {self.sim_time_s:.1f} s'

    def result(self) -> str:
        if self.result_episode < 0:
            return ''
        if self.success:
            return f'episode {self.result_episode}: SUCCESS'
        return f'episode {self.result_episode}: FAILED - {self.reason}'


class CaptionTracker:
    """task/status values -> the caption of the frame taken at a sim time.

    An episode's result is shown on frames from its end (the status' stamp) until hold_s later,
    also over the first frames of the next episode (the result line names its episode).
    """

    def __init__(self, cell: str, hold_s: float = RESULT_HOLD_S) -> None:
        self.cell = cell
        self.hold_s = hold_s
        self.episode, self.seed, self.instruction = -1, -1, ''
        self.result_episode, self.success, self.reason = -1, False, ''
        self.result_time_s = float('nan')

    def on_status(self, values: Mapping[str, str]) -> None:
        """One task/status message as {key: value} (sim_node._publish_status)."""
        episode = _int_value(values, 'episode')
        if episode < 0:
            return
        self.episode, self.seed = episode, _int_value(values, 'seed')
        self.instruction = values.get('instruction', '')
        if values.get('result') and episode != self.result_episode:
            self.result_episode, self.success = episode, values['result'] == 'success'
            self.reason = values.get('detail', '')
            self.result_time_s = _int_value(values, 'stamp_ns') * 1e-9

    def caption(self, sim_time_s: float) -> Caption:
        since_result = sim_time_s - self.result_time_s
        showing = self.result_episode >= 0 and -1e-6 <= since_result <= self.hold_s
        return Caption(self.cell, sim_time_s, self.episode, self.seed, self.instruction,
                       self.result_episode if showing else -1, self.success, self.reason)


def _int_value(values: Mapping[str, str], key: str) -> int:
    text = values.get(key, '-1')
    try:
        return int(text)
    except ValueError:
        raise InputError(f'task/status value {key}={text!r} is not an integer') from None


def draw_caption(frame_bgr: np.ndarray, caption: Caption) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 BGR frame with the caption's bands drawn on it."""
    frame = np.asarray(frame_bgr)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f'draw_caption: frame must be an (H, W, 3) uint8 BGR image, got shape '
                         f'{frame.shape} of {frame.dtype}')
    out = frame.copy()
    height, width = out.shape[:2]
    scale = FONT_SCALE_AT_240_ROWS * height / 240.0
    thickness = max(1, round(height / 240.0))
    (_, text_h), baseline = cv2.getTextSize('Ag', FONT, scale, thickness)
    line_h = text_h + baseline + 2
    top = [(line, TEXT_BGR) for line in _wrap(caption.header(), width, scale, thickness)]
    bottom = [(line, SUCCESS_BGR if caption.success else FAILED_BGR)
              for line in _wrap(caption.result(), width, scale, thickness)]
    bottom += [(line, TEXT_BGR) for line in _wrap(caption.instruction, width, scale, thickness)]
    font = (scale, thickness, text_h, line_h)
    _draw_band(out, top, 0, font)
    if bottom:
        _draw_band(out, bottom, height - len(bottom) * line_h - 2 * MARGIN_PX, font)
    return out


def _wrap(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """Words of `text` in lines that fit the frame's width (a longer word gets a line alone)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f'{lines[-1]} {word}' if lines else word
        fits = cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] <= width - 2 * MARGIN_PX
        if lines and fits:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _draw_band(out: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]], y0: int,
               font: tuple[float, int, int, int]) -> None:
    """Darken rows y0.. and write one text line per line_h rows (font: scale, thickness, text
    height, line height)."""
    scale, thickness, text_h, line_h = font
    y0 = max(0, y0)
    y1 = min(out.shape[0], y0 + len(lines) * line_h + 2 * MARGIN_PX)
    out[y0:y1] = (out[y0:y1] * BAND_BRIGHTNESS).astype(np.uint8)
    for row, (text, colour) in enumerate(lines):
        baseline_y = y0 + MARGIN_PX + row * line_h + text_h + 1
        cv2.putText(out, text, (MARGIN_PX, baseline_y), FONT, scale, colour, thickness,
                    cv2.LINE_AA)
