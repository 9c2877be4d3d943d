#!/usr/bin/env python3
"""What a learned policy was doing when an episode failed: per failed seed, how the grasp went.

Runs the same closed loop as `python -m noetra_ros.learning evalcheck` (lockstep, in-process)
and, for each episode that does not succeed, prints the named object's shape, how many times the
fingers closed and opened, how far (xy) the tool centre was from the object when they first
closed and which object was nearest then (a distractor means the wrong object was chosen), the
tool heading off the object's grasp axis then (modulo the shape's grasp symmetry; blank for
round shapes), how high the object got, and a one-word verdict:

* `no-grasp`: the fingers never closed on anything;
* `missed`: they closed but the object never left the table;
* `dropped`: the object was lifted and came down again outside a bin;
* `carried`: the object was still in the fingers at the end (stalled on the way to the bin).

    python tools/policy_failures.py --seeds 70000:70100
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.expert import yaw_of  # noqa: E402
from noetra_ros.core.sim.task import GRASP_SYMMETRY_RAD  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds  # noqa: E402
from noetra_ros.learning.record import evaluate_policy  # noqa: E402

# Finger position that counts as closed: 0 is open, 0.0425 m shut; a block held across its
# 65 mm length stops the fingers at about 0.010 m.
CLOSED_M = 0.005
LIFTED_M = 0.03      # object centre this far above where it started counts as lifted


class Trace:
    """One episode's grasp events, fed every step by evaluate_policy's on_step callback."""

    def __init__(self) -> None:
        self.closed, self.closes, self.opens = False, 0, 0
        self.first_close = None
        self.start_z: float | None = None
        self.shape = ''
        self.lift = self.max_lift = 0.0

    def __call__(self, world) -> None:
        if self.start_z is None:   # first step of the episode
            self.start_z = float(world.target_object_pose()[0][2])
            self.shape = world.object_spec(world.episode.target_object).shape
        position, quat = world.target_object_pose()
        self.lift = float(position[2]) - self.start_z
        self.max_lift = max(self.max_lift, self.lift)
        closed = world.gripper_position() > CLOSED_M
        if closed and not self.closed:
            self.closes += 1
            if self.first_close is None:
                tcp, tcp_quat = world.tcp_pose()
                symmetry = GRASP_SYMMETRY_RAD[self.shape]
                off = None
                if symmetry > 0:
                    off = (yaw_of(tcp_quat) - yaw_of(quat) + symmetry / 2) % symmetry \
                        - symmetry / 2
                nearest = min(world.object_names, key=lambda name: float(np.linalg.norm(
                    np.asarray(tcp[:2]) - world.object_pose(name)[0][:2])))
                self.first_close = (float(np.linalg.norm(np.asarray(tcp[:2]) - position[:2])),
                                    off, 'target' if nearest == world.episode.target_object
                                    else nearest)
        if self.closed and not closed:
            self.opens += 1
        self.closed = closed

    def verdict(self) -> str:
        if self.closes == 0:
            return 'no-grasp'
        if self.max_lift < LIFTED_M:
            return 'missed'
        return 'carried' if self.closed and self.lift > LIFTED_M else 'dropped'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='models/pick_place_lrmate.onnx')
    parser.add_argument('--seeds', required=True, help="'a:b' (range) or 'a,b,c'")
    args = parser.parse_args()
    trace = Trace()
    rows: dict[int, str] = {}

    def on_step(seed: int, world, status) -> None:
        nonlocal trace
        trace(world)
        if status.done:
            if not status.success:
                rows[seed] = describe(seed, trace, status)
            trace = Trace()

    result = evaluate_policy(args.model, parse_seeds(args.seeds), on_step=on_step)
    print(f'{sum(result.successes)}/{len(result.seeds)} succeeded; failures:')
    for seed in sorted(rows):
        print(rows[seed])
    return 0


def describe(seed: int, trace: Trace, status) -> str:
    """One line for a failed episode."""
    xy, off, nearest = trace.first_close if trace.first_close else (math.nan, None, '-')
    heading = '' if off is None else f'{math.degrees(off):6.1f}'
    return (f'{seed}  {trace.shape:8s} {trace.verdict():9s} closes {trace.closes} '
            f'opens {trace.opens}  xy at first close {1000 * xy:5.1f} mm, nearest {nearest:14s} '
            f'heading off {heading:>6s} deg  max lift {1000 * trace.max_lift:5.1f} mm  '
            f'({status.explanation})')


if __name__ == '__main__':
    sys.exit(main())
