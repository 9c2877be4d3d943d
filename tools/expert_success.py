#!/usr/bin/env python3
"""Success rate of the scripted expert over seeded episodes, in-process (no ROS).

Prints, per robot: successes / episodes with a Wilson 95 % interval and by the named object's
shape, mean episode sim time, wall time per episode (mean and p90) and the failed seeds with
their reason.

    python tools/expert_success.py --episodes 100
    python tools/expert_success.py --robot all --episodes 50 --first-seed 1000
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.expert import run_episode, ScriptedExpert  # noqa: E402
from noetra_ros.core.robots import ROBOT_NAMES  # noqa: E402
from noetra_ros.core.sim.world import SimWorld, WorldConfig  # noqa: E402
from noetra_ros.core.stats import percentiles, wilson_interval  # noqa: E402


def evaluate(robot: str, episodes: int, first_seed: int, verbose: bool) -> dict:
    """Run `episodes` seeded episodes for `robot`; returns the summary figures."""
    config = WorldConfig(robot=robot)
    world = SimWorld(config)
    expert = ScriptedExpert(robot, control_hz=config.control_hz)
    sim_times, wall_times, failures = [], [], []
    successes = 0
    by_shape: dict[str, list[int]] = {}   # named object's shape -> [successes, episodes]
    try:
        for seed in range(first_seed, first_seed + episodes):
            start = time.perf_counter()
            result = run_episode(world, expert, seed)
            wall_times.append(time.perf_counter() - start)
            sim_times.append(result.sim_time)
            successes += int(result.success)
            tally = by_shape.setdefault(world.episode.objects[0].shape, [0, 0])
            tally[0] += int(result.success)
            tally[1] += 1
            if not result.success:
                failures.append((seed, result.explanation, result.expert_phase,
                                 result.expert_failure))
            if verbose:
                print(f'  seed {seed:5d} {"ok  " if result.success else "FAIL"} '
                      f'{result.sim_time:5.2f} s sim {wall_times[-1]:5.2f} s wall  '
                      f'{result.instruction} ({result.explanation})', flush=True)
    finally:
        expert.close()
        world.close()
    low, high = wilson_interval(successes, episodes)
    return {'robot': robot, 'successes': successes, 'episodes': episodes, 'low': low,
            'high': high, 'sim_mean': sum(sim_times) / len(sim_times),
            'wall': percentiles(wall_times, (50, 90)),
            'wall_mean': sum(wall_times) / len(wall_times), 'failures': failures,
            'by_shape': by_shape}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--robot', default='fanuc_lrmate200id',
                        help=f"one of {', '.join(ROBOT_NAMES)}, or 'all'")
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--verbose', action='store_true', help='one line per episode')
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error('--episodes must be > 0')
    robots = ROBOT_NAMES if args.robot == 'all' else (args.robot,)
    for robot in robots:
        summary = evaluate(robot, args.episodes, args.first_seed, args.verbose)
        rate = summary['successes'] / summary['episodes']
        print(f"{robot}: {summary['successes']}/{summary['episodes']} = {rate:.1%} "
              f"(Wilson 95 % [{summary['low']:.1%}, {summary['high']:.1%}]), "
              f"mean episode {summary['sim_mean']:.2f} s sim, "
              f"wall/episode mean {summary['wall_mean']:.3f} s "
              f"p50 {summary['wall']['p50']:.3f} s p90 {summary['wall']['p90']:.3f} s",
              flush=True)
        print('  by named shape: ' + ', '.join(
            f'{shape} {ok}/{n}' for shape, (ok, n) in sorted(summary['by_shape'].items())))
        for seed, why, phase, reason in summary['failures']:
            print(f'  failed seed {seed}: {why}; expert phase {phase} {reason}'.rstrip())
    return 0


if __name__ == '__main__':
    sys.exit(main())
