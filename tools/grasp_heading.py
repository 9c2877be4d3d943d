#!/usr/bin/env python3
"""Does a learned policy turn the wrist to the object? Per seed: the object's yaw, the tool's
heading when the fingers have closed, and the angle between the tool x axis and the object's
long axis modulo 180 degrees (0 = the grasp the expert makes for a block).

    python tools/grasp_heading.py --model models/pick_place_lrmate.onnx --seeds 40005,40033
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.expert import yaw_of  # noqa: E402
from noetra_ros.core.sim.world import SimWorld  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds  # noqa: E402
from noetra_ros.learning.record import PolicyDriver  # noqa: E402

CLOSED_M = 0.015     # finger position that counts as closed on the object
MAX_STEPS = 120      # 6 s at 20 Hz: the expert closes after about 2 s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='models/pick_place_lrmate.onnx')
    parser.add_argument('--seeds', required=True, help="'a,b,c' or 'a:b' (range)")
    args = parser.parse_args()
    # The shipped policy cell, as evaluate_policy runs it (supervisor included).
    driver = PolicyDriver(args.model)
    world = SimWorld(driver.settings.world_config())
    for seed in parse_seeds(args.seeds):
        episode = world.reset(seed)
        driver.reset()
        _, object_quat = world.target_object_pose()
        closed = False
        for _ in range(MAX_STEPS):
            driver.act(world, episode.instruction)
            world.step()
            if world.gripper_position() > CLOSED_M:
                closed = True
                break
        tool = yaw_of(world.tcp_pose()[1])
        yaw = yaw_of(object_quat)
        off = (tool - yaw + math.pi / 2) % math.pi - math.pi / 2
        print(f'{seed} {episode.objects[0].shape:8s} object yaw {math.degrees(yaw):7.1f}  '
              f'tool heading {math.degrees(tool):7.1f}  off the axis (mod 180) '
              f'{math.degrees(off):6.1f}' + ('' if closed else '  (fingers not past 15 mm in 6 s)'))
    driver.close()
    world.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
