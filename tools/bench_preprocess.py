#!/usr/bin/env python3
"""Benchmark: camera bytes (640x480 rgb8 / bgr8) -> policy input tensor, against a memcpy.

Prints p50 / p90 / p99 in microseconds per case and the p50 ratio to copying the same bytes,
which is the floor for anything that touches every pixel once.

    python tools/bench_preprocess.py [--runs 2000]
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from noetra_ros.core.policy.contract import ImageInput  # noqa: E402
from noetra_ros.core.policy.preprocess import image_to_tensor  # noqa: E402

WIDTH, HEIGHT = 640, 480
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SPECS = {
    '96x96 stretch': ImageInput(name='img', camera='cam', height=96, width=96, **IMAGENET),
    '224x224 center_crop': ImageInput(name='img', camera='cam', height=224, width=224,
                                      resize='center_crop', **IMAGENET),
    '480x640 no resize': ImageInput(name='img', camera='cam', height=480, width=640, **IMAGENET),
}


def percentiles(function: Callable[[], object], runs: int) -> np.ndarray:
    """p50, p90, p99 of `function` in microseconds, after a short warm-up."""
    for _ in range(min(50, runs)):
        function()
    samples = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        function()
        samples[i] = time.perf_counter() - start
    return np.percentile(samples * 1e6, [50, 90, 99])


def main() -> None:
    """Run every case and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=2000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, HEIGHT * WIDTH * 3, dtype=np.uint8).tobytes()
    flat = np.frombuffer(frame, dtype=np.uint8)
    print(f'{WIDTH}x{HEIGHT}x3 frame ({len(frame)} bytes), {args.runs} runs; times in us')
    header = f'{"case":44s} {"p50":>9s} {"p90":>9s} {"p99":>9s} {"p50 / memcpy":>13s}'
    print(header)
    print('-' * len(header))
    memcpy = percentiles(lambda: np.copy(flat), args.runs)
    print(f'{"memcpy (np.copy of the bytes)":44s} {memcpy[0]:9.1f} {memcpy[1]:9.1f} '
          f'{memcpy[2]:9.1f} {1.0:13.2f}')
    copied = percentiles(lambda: bytearray(frame), args.runs)
    print(f'{"memcpy (bytearray(bytes))":44s} {copied[0]:9.1f} {copied[1]:9.1f} '
          f'{copied[2]:9.1f} {copied[0] / memcpy[0]:13.2f}')
    for label, spec in SPECS.items():
        for encoding in ('rgb8', 'bgr8'):
            out = np.empty(spec.shape, np.float32)
            for variant, kwargs in (('', {}), (', reused out', {'out': out})):
                # Defaults bind this iteration's values (the lambda is timed right here anyway).
                stats = percentiles(
                    lambda encoding=encoding, spec=spec, kwargs=kwargs: image_to_tensor(
                        frame, WIDTH, HEIGHT, encoding, spec, **kwargs), args.runs)
                name = f'{encoding} -> {label}{variant}'
                print(f'{name:44s} {stats[0]:9.1f} {stats[1]:9.1f} {stats[2]:9.1f} '
                      f'{stats[0] / memcpy[0]:13.2f}')


if __name__ == '__main__':
    main()
