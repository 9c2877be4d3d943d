#!/usr/bin/env python3
"""Throughput of evaluation and recording: serial against 1 and 2 Ray workers (measured), and
16 / 64 workers (projected from the measured per-worker cost).

For each path it runs the same seeds serially in this process and on a local Ray runtime with 1
and 2 workers, and prints episodes per wall-minute, episodes per CPU-minute (CPU of every
process that worked on them: this one for the serial runs, the workers' - and for the graph,
their node processes' - for the distributed ones) and the scaling efficiency at 2 workers
(throughput at 2 / twice the throughput at 1; 1.0 is linear).

Paths:
* inprocess - evalcheck's evaluation (learning/record.evaluate_policy; PolicyEpisodeRunner);
* graph     - `noetra eval`: serial = one graph run over the seeds (today's `noetra eval`) and
              one graph run per seed (what each distributed episode is); workers =
              GraphEpisodeRunner (each seed a lockstep graph run on the worker's ROS domain);
* record    - expert demonstrations into a dataset (learning/record.record; RecordEpisodeRunner).

Projection: a worker's throughput is the measured 1-worker throughput (Ray start excluded), and
N workers on N free cores of enough machines give N times that; the driver's own work per
episode (receiving results, writing the dataset) caps it. It assumes no contention (own core,
memory bandwidth, disk) and no network cost: an upper bound, said so in the output.

    python tools/bench_distributed.py --episodes 4 --graph-episodes 2 --domains 60:80
    nice -n 5 python tools/bench_distributed.py ... > docs/results/bench_distributed.txt
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.distributed import (connect, evaluate_policy_distributed,  # noqa: E402
                                    GraphEpisodeRunner, parse_domains, record_distributed,
                                    run_distributed)
from noetra_ros.learning.__main__ import shipped_model  # noqa: E402
from noetra_ros.learning.record import (EvalSettings, evaluate_policy, record,  # noqa: E402
                                        RecordConfig)

CELL = 'pick_place_lrmate_policy'


def cpu_now() -> float:
    """CPU seconds of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def row(label: str, episodes: int, wall_s: float, cpu_s: float, note: str = '') -> dict:
    return {'label': label, 'episodes': episodes, 'wall_s': wall_s, 'cpu_s': cpu_s,
            'per_wall_min': 60.0 * episodes / wall_s, 'per_cpu_min': 60.0 * episodes / cpu_s,
            'note': note}


def serial(label: str, episodes: int, work) -> dict:
    wall, cpu = time.monotonic(), cpu_now()
    work()
    return row(label, episodes, time.monotonic() - wall, cpu_now() - cpu, 'measured')


def distributed(label: str, work) -> dict:
    """work() -> (outcomes or None, DistributedRun); the workers' CPU plus this process's."""
    wall, cpu = time.monotonic(), cpu_now()
    _, run = work()
    wall = time.monotonic() - wall
    driver_cpu = cpu_now() - cpu
    out = row(label, run.episodes, wall, run.worker_cpu_s + driver_cpu,
              f'measured, {len(run.workers)} worker(s), {len(run.rerun_seeds)} rerun')
    out['episode_wall_s'] = run.worker_wall_s / max(1, run.episodes)
    return out


def report(title: str, rows: list[dict]) -> None:
    print(f'\n== {title}')
    print(f'{"run":<34} {"episodes":>8} {"wall s":>8} {"CPU s":>8} {"ep/wall-min":>12} '
          f'{"ep/CPU-min":>11}  how')
    for r in rows:
        print(f'{r["label"]:<34} {r["episodes"]:>8} {r["wall_s"]:>8.1f} {r["cpu_s"]:>8.1f} '
              f'{r["per_wall_min"]:>12.2f} {r["per_cpu_min"]:>11.2f}  {r["note"]}')
    one = next(r for r in rows if r['label'].startswith('ray, 1 worker'))
    two = next(r for r in rows if r['label'].startswith('ray, 2 workers'))
    efficiency = two['per_wall_min'] / (2 * one['per_wall_min'])
    print(f'worker wall seconds per episode (start-up excluded: the work itself): 1 worker '
          f'{one["episode_wall_s"]:.2f} s, 2 workers {two["episode_wall_s"]:.2f} s (equal when '
          'the two workers do not compete for a core)')
    print(f'scaling efficiency at 2 workers (wall throughput / 2 x 1 worker): {efficiency:.2f} '
          f'(goal >= 0.8)')
    for n in (16, 64):
        print(f'projected {n:>2} workers: {n * one["per_wall_min"]:8.1f} episodes per wall-minute '
              f'({one["per_cpu_min"]:.2f} per CPU-minute) - PROJECTED: {n} x the measured '
              '1-worker rate, each worker on a free core, no contention or network cost')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--episodes', type=int, default=4, help='in-process and record episodes')
    parser.add_argument('--graph-episodes', type=int, default=2)
    parser.add_argument('--seed', type=int, default=10000)
    parser.add_argument('--episode-timeout', type=float, default=8.0,
                        help='episode limit (sim s) of the evaluations')
    parser.add_argument('--domains', default='60:80', help='ROS domains for the graph workers')
    parser.add_argument('--paths', default='inprocess,graph,record')
    args = parser.parse_args()
    paths = args.paths.split(',')
    load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    print(f'# tools/bench_distributed.py --episodes {args.episodes} --graph-episodes '
          f'{args.graph_episodes} --episode-timeout {args.episode_timeout} '
          f'--paths {args.paths}')
    print(f'# {os.cpu_count()} CPUs; load before: {load}')
    start = time.monotonic()
    ray_connection = connect(None, 2)
    print(f'# local Ray runtime started in {time.monotonic() - start:.1f} s (excluded below; '
          'worker start-up and checks are included)')
    seeds = list(range(args.seed, args.seed + args.episodes))
    settings = EvalSettings.from_cell(CELL, episode_timeout_s=args.episode_timeout)
    model = shipped_model()
    try:
        if 'inprocess' in paths:
            rows = [serial('serial (evaluate_policy)', len(seeds),
                           lambda: evaluate_policy(model, seeds, settings))]
            for n in (1, 2):
                rows.append(distributed(
                    f'ray, {n} worker{"s" if n > 1 else ""}',
                    lambda n=n: evaluate_policy_distributed(model, seeds, settings, n,
                                                            show_progress=False)))
            report(f'in-process evaluation, {CELL}, {len(seeds)} episodes, limit '
                   f'{args.episode_timeout:g} s', rows)
        if 'graph' in paths:
            graph_seeds = seeds[:args.graph_episodes]
            rows = graph_rows(graph_seeds, args)
            report(f'graph evaluation (noetra eval), {CELL}, {len(graph_seeds)} episodes', rows)
        if 'record' in paths:
            config = RecordConfig(episodes=args.episodes, first_seed=0)
            with tempfile.TemporaryDirectory() as tmp:
                rows = [serial('serial (record)', args.episodes,
                               lambda: record(config, pathlib.Path(tmp) / 'serial'))]
                for n in (1, 2):
                    rows.append(distributed(
                        f'ray, {n} worker{"s" if n > 1 else ""}',
                        lambda n=n: record_distributed(config, pathlib.Path(tmp) / f'w{n}', n,
                                                       show_progress=False)))
            report(f'recording (expert demonstrations), {args.episodes} episodes', rows)
    finally:
        ray_connection.close()
    load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    print(f'\n# load after: {load}')
    return 0


def graph_rows(seeds: list[int], args: argparse.Namespace) -> list[dict]:
    from noetra_ros.cli import main as noetra_main

    domains = parse_domains(args.domains)
    limit = {'sim': {'episode_timeout_s': args.episode_timeout}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ['ROS_DOMAIN_ID'] = str(domains[-1])  # the serial runs' own domain

        def one_run() -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # its own summary: not ours
                code = noetra_main(['eval', CELL, '--episodes', str(len(seeds)), '--seed',
                                    str(seeds[0]), '--out', f'{tmp}/one', '--quiet',
                                    '--no-video', '--set',
                                    f'sim.episode_timeout_s={args.episode_timeout}'])
            if code:
                raise SystemExit(f'noetra eval failed ({code}); logs in {tmp}/one')

        rows.append(serial('serial, one graph run (noetra eval)', len(seeds), one_run))

        def per_seed_runs() -> None:
            runner = GraphEpisodeRunner(CELL, limit, f'{tmp}/own', 600.0, domains[-1:])
            try:
                for seed in seeds:
                    runner.run(seed)
            finally:
                runner.close()

        rows.append(serial('serial, one graph run per seed', len(seeds), per_seed_runs))
        for n in (1, 2):
            rows.append(distributed(
                f'ray, {n} worker{"s" if n > 1 else ""}',
                lambda n=n: run_distributed(
                    GraphEpisodeRunner, (CELL, limit, f'{tmp}/w{n}', 600.0, domains[:-1]),
                    seeds, n, None, model_path=_model_of_cell(), show_progress=False)))
    return rows


def _model_of_cell() -> str | None:
    from noetra_ros.distributed import _cell_model

    return _cell_model(CELL)


if __name__ == '__main__':
    sys.exit(main())
