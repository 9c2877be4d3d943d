#!/usr/bin/env python3
"""What each named lighting condition (core/sim/lighting.CONDITIONS) does to the policy's
images: the workspace and wrist cameras of a few seeded scenes rendered under every condition,
mean pixel value relative to the default light (all channels, then R, G, B apart).

"x % darker" is defined in core/sim/lighting.py: brightness 1 - x / 100 scales the ambient,
diffuse and specular coefficients together, so every lit pixel is that fraction of its default
value before the renderer truncates it to an integer; this script measures what that gives
over whole images. The scene is the one each seed's reset builds (arm at home), the same for
every condition.

    python tools/lighting_check.py [--seeds 10000:10005] > docs/results/lighting_conditions.txt
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import pathlib
import shlex
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.sim.lighting import CONDITIONS, LightingJitter  # noqa: E402
from noetra_ros.core.sim.world import SimWorld, WorldConfig  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds  # noqa: E402
from noetra_ros.learning.record import DEFAULT_CAMERAS, EvalSettings  # noqa: E402


def channel_means(world_config: WorldConfig, seeds: list[int],
                  cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
    """camera -> [seed, channel] mean pixel values (R, G, B) under `world_config`'s light."""
    out: dict[str, list[np.ndarray]] = {cam: [] for cam in cameras}
    with SimWorld(world_config) as world:
        for seed in seeds:
            world.reset(seed)
            for cam in cameras:
                out[cam].append(world.render(cam).reshape(-1, 3).astype(float).mean(axis=0))
    return {cam: np.array(rows) for cam, rows in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', default='10000:10005', help="'a:b' or 'a,b,c'")
    parser.add_argument('--jitter-seeds', type=int, default=20,
                        help='episodes drawn with the default LightingJitter for its row')
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    # The policy cell's world (camera sizes as the shipped model sees them).
    base = EvalSettings.from_cell().world_config()
    cameras = tuple(c for c in DEFAULT_CAMERAS if c in {s.name for s in base.cameras})

    print('command: python tools/lighting_check.py '
          + ' '.join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    print(f'seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} scenes at reset), cameras '
          f'{", ".join(cameras)}; ratio = mean pixel value / the same under default light '
          '(min..max over the seeds), then per channel (mean over seeds)')
    reference = channel_means(base, seeds, cameras)
    for name, lighting in CONDITIONS.items():
        print(f'\n{name}: {lighting.describe()}')
        means = channel_means(replace(base, lighting=lighting), seeds, cameras)
        for cam in cameras:
            overall = means[cam].mean(axis=1) / reference[cam].mean(axis=1)
            per_channel = (means[cam] / reference[cam]).mean(axis=0)
            print(f'  {cam:<17} mean {overall.mean():.3f} ({overall.min():.3f}..'
                  f'{overall.max():.3f})  R {per_channel[0]:.3f}  G {per_channel[1]:.3f}  '
                  f'B {per_channel[2]:.3f}')
    # The recording jitter: the spread of image brightness it gives, for comparison with the
    # conditions above (which of them lie inside the training variation).
    jitter = LightingJitter()
    jitter_seeds = list(range(seeds[0], seeds[0] + args.jitter_seeds))
    jittered = channel_means(replace(base, lighting_jitter=jitter), jitter_seeds, cameras)
    plain = channel_means(base, jitter_seeds, cameras)
    print(f'\nLightingJitter() (recording variation, {len(jitter_seeds)} episodes): {jitter}')
    for cam in cameras:
        overall = jittered[cam].mean(axis=1) / plain[cam].mean(axis=1)
        ratios = jittered[cam] / plain[cam]
        rb = ratios[:, 0] / ratios[:, 2]
        print(f'  {cam:<17} mean ratio {overall.min():.3f}..{overall.max():.3f}, R/B ratio '
              f'{rb.min():.3f}..{rb.max():.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
