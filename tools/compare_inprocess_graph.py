#!/usr/bin/env python3
"""Do the in-process evaluation and the deployed graph give the same result, seed for seed?

Runs the same seeds with the same cell file and model, two ways each:

* graph, one run: `noetra eval <cell> --episodes N` (cli.py / monitor.py): sim_node,
  policy_node and safety_node as three processes over DDS, lockstep, one run over all seeds;
* graph, own runs: one `noetra eval --episodes 1` per seed, so every episode is the first of
  its run;
* in process (learning/record.evaluate_policy, no ROS: the cell's world, policy loop and safety
  supervisor): every episode on its own (as `evalcheck` runs them), and `as_one_run` (as one
  `noetra eval` run: one supervisor, the reset pause, a running clock).

It prints a per-seed table (result and episode length of each, and whether in process and graph
agree: every episode on its own against the graph's own runs, as one run against the graph's
one run) and writes everything as JSON to docs/results/compare_inprocess_graph_<a>-<b>.json.

    python tools/compare_inprocess_graph.py --seeds 10000:10005
    python tools/compare_inprocess_graph.py --seeds 10000:10050          # the 50-seed check

Why the two graph columns can differ: within one run an episode starts from the previous
episode's supervisor and clock. The reset teleports the simulated arm, which the supervisor
sees as a tracking fault that the simulation-only auto_arm clears in the same cycle; the arm is
then held for one more control step than at a run's first arming (or, when the arm ended
within the tracking tolerance of the start pose, the old command is carried over), and the
stamps carry the earlier episodes' time. `as_one_run` reproduces exactly that.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.cli import main as noetra_main  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds, shipped_model  # noqa: E402
from noetra_ros.learning.record import (  # noqa: E402
    DEFAULT_EVAL_CELL, EvalSettings, evaluate_policy)

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / 'docs' / 'results'


def run_graph(cell: str, model: str, first_seed: int, episodes: int, out: pathlib.Path,
              timeout_s: float) -> list[dict]:
    """`noetra eval` over seeds first_seed .. first_seed + episodes - 1: per-episode results."""
    summary = out / 'eval.json'
    code = noetra_main(['eval', cell, '--model', model, '--episodes', str(episodes),
                        '--seed', str(first_seed), '--out', str(out / 'run'), '--quiet',
                        '--no-video', '--timeout', str(timeout_s), '--json', str(summary)])
    if code != 0 or not summary.is_file():
        report = out / 'run' / 'report.json'
        error = json.loads(report.read_text()).get('error') if report.is_file() else ''
        raise SystemExit(f'noetra eval failed (exit {code}): {error}; logs in {out / "run"}')
    results = json.loads(summary.read_text())['episode_results']
    for index, episode in enumerate(results):
        episode['first_of_run'] = index == 0
    return results


def _describe(success: bool, sim_s: float) -> str:
    return f'{"success" if success else "FAILED":<8} {sim_s:>6.2f}'


# (column title, in-process result key, graph result key) of each comparison
PAIRS = (('own', 'inprocess', 'graph_per_seed'), ('one run', 'inprocess_one_run', 'graph_run'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', default='10000:10005', help="'a:b' (a range)")
    parser.add_argument('--cell', default=DEFAULT_EVAL_CELL)
    parser.add_argument('--model', default=str(shipped_model()))
    parser.add_argument('--graph', choices=('run', 'per-seed', 'both'), default='both',
                        help='graph runs: one over all seeds, one per seed, or both')
    parser.add_argument('--timeout', type=float, default=7200.0,
                        help='wall-clock limit of one graph run (s)')
    parser.add_argument('--json', default=None, help='output (default docs/results/'
                                                     'compare_inprocess_graph_<a>-<b>.json)')
    parser.add_argument('--graph-out', default=None,
                        help='keep the graph runs (logs, report.json) in this folder')
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise SystemExit('--seeds: a graph run takes consecutive seeds; give a range a:b')
    model = str(pathlib.Path(args.model).resolve())
    # Child processes (the cell's nodes) import this tree, whatever the current directory.
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get('PYTHONPATH', '')) if p)
    settings = EvalSettings.from_cell(args.cell)
    wanted = {'per_seed': args.graph in ('per-seed', 'both'),
              'run': args.graph in ('run', 'both')}
    results: dict[str, dict[int, dict]] = {}
    walls = {}

    def in_process(key: str, one_run: bool) -> None:
        start = time.monotonic()
        run = evaluate_policy(model, seeds, settings, as_one_run=one_run)
        walls[key] = time.monotonic() - start
        print(run.describe(), flush=True)
        results[key] = {
            seed: {'success': ok, 'sim_s': sim_s, 'reason': why, 'interventions': counters}
            for seed, ok, why, sim_s, counters in zip(run.seeds, run.successes,
                                                       run.explanations, run.sim_times,
                                                       run.interventions)}

    if wanted['per_seed']:
        in_process('inprocess', one_run=False)
    if wanted['run']:
        in_process('inprocess_one_run', one_run=True)
    with tempfile.TemporaryDirectory(prefix='compare_graph_') as scratch:
        folder = pathlib.Path(args.graph_out or scratch)
        if wanted['run']:
            start = time.monotonic()
            episodes = run_graph(args.cell, model, seeds[0], len(seeds), folder / 'run',
                                 args.timeout)
            results['graph_run'] = {int(e['seed']): e for e in episodes}
            walls['graph_run'] = time.monotonic() - start
        if wanted['per_seed']:
            start = time.monotonic()
            results['graph_per_seed'] = {}
            for seed in seeds:
                (episode,) = run_graph(args.cell, model, seed, 1, folder / f'seed{seed}',
                                       args.timeout)
                results['graph_per_seed'][seed] = episode
                print(f'  graph, own run, seed {seed}: '
                      f'{_describe(episode["success"], float(episode["duration_s"]))}',
                      flush=True)
            walls['graph_per_seed'] = time.monotonic() - start
    for key in ('graph_run', 'graph_per_seed'):
        missing = [s for s in seeds if key in results and s not in results[key]]
        if missing:
            raise SystemExit(f'{key}: no result for seeds {missing}')

    period = 1.0 / settings.world_config().control_hz
    pairs = [pair for pair in PAIRS if pair[1] in results]
    header = f'{"seed":>6}'
    for title, _, _ in pairs:
        header += f'  {"in process, " + title:<18} {"graph, " + title:<18} {"agree":<16}'
    print('\n' + header + '  reasons (in process | graph)')
    rows, summary = [], {}
    for seed in seeds:
        row: dict = {'seed': seed}
        line, reasons = f'{seed:>6}', []
        for _, inner, outer in pairs:
            mine, theirs = results[inner][seed], results[outer][seed]
            success, length = bool(theirs['success']), float(theirs['duration_s'])
            agree = success == bool(mine['success'])
            same_length = abs(length - mine['sim_s']) < 0.5 * period
            row[inner] = mine
            row[outer] = {'success': success, 'sim_s': length, 'reason': theirs['reason'],
                          'first_of_run': theirs['first_of_run'], 'agree': agree,
                          'same_length': same_length}
            verdict = ('result' if agree else 'NO') + (' + length' if same_length else '')
            line += (f'  {_describe(mine["success"], mine["sim_s"]):<18} '
                     f'{_describe(success, length):<18} {verdict:<16}')
            reasons.append(f'{mine["reason"]} | {theirs["reason"]}')
        print(line + '  ' + '; '.join(reasons))
        rows.append(row)
    for title, inner, outer in pairs:
        summary[outer] = {
            'compared_with': inner,
            'inprocess_successes': sum(bool(r[inner]['success']) for r in rows),
            'graph_successes': sum(r[outer]['success'] for r in rows),
            'agree': sum(r[outer]['agree'] for r in rows),
            'same_length': sum(r[outer]['same_length'] for r in rows)}
        line = summary[outer]
        print(f'{title}: result agrees on {line["agree"]}/{len(rows)} seeds, episode length on '
              f'{line["same_length"]}/{len(rows)}; successes in process '
              f'{line["inprocess_successes"]}, graph {line["graph_successes"]}')
    if len(pairs) == 2:
        differ = [r['seed'] for r in rows
                  if r['graph_run']['success'] != r['graph_per_seed']['success']]
        summary['graph_run_vs_per_seed_result_differs'] = differ
        print(f'graph one run vs own runs: results differ on seeds {differ or "none"}')
    print('wall time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in walls.items()))

    output = pathlib.Path(args.json) if args.json else (
        RESULTS / f'compare_inprocess_graph_{seeds[0]}-{seeds[-1]}.json')
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        'command': 'python tools/compare_inprocess_graph.py ' + ' '.join(sys.argv[1:]),
        'date': dt.datetime.now().isoformat(timespec='seconds'),
        'cell': settings.cell, 'model': str(pathlib.Path(args.model)),
        'settings': settings.describe(), 'seeds': seeds, 'summary': summary,
        'wall_s': {k: round(v, 1) for k, v in walls.items()}, 'episodes': rows},
        indent=2) + '\n')
    print(f'wrote {output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
