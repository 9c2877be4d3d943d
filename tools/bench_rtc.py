#!/usr/bin/env python3
"""Real-time chunking against today's blending when inference is slow (issue 15).

The shipped model runs in process (learning/record.evaluate_policy: the cell's policy loop and
safety supervisor, lockstep) on one list of seeds, fixed before the run, for every variant:

* delay 0 (today, the reference) with `ensemble` (the shipped cell's blend);
* delays of 100, 200 and 400 ms (2, 4 and 8 control steps at 20 Hz: LoopConfig.
  inference_delay_steps, a chunk is used that many steps after its observation, one inference
  in flight) with `ensemble`, `crossfade` and `rtc`.

Per variant: task success k/n with its Wilson 95 % interval, and the size of the steps in the
arm's commanded positions (all six joints, rad): |dq| per control step and the change of
velocity per step |dq_k - dq_{k-1}| / dt (rad/s), largest over the joints, as max and p99,
at chunk joins and elsewhere. A join is the step where a chunk lands (the first command that
can contain it) and the step after (where a fade or an rtc correction first moves the output);
the first chunk of an episode (nothing to join) is left out. Two command series are measured:
what the supervisor sent to the robot (`sent`, the figures that matter) and the loop's own
command (`loop`, before the supervisor's limits). A step without a command keeps the previous
target (the robot holds it), so a stall counts as a stop. `dry` is the share of steps after the
first command without one; `held` counts the steps in which the supervisor sent its own
target (a hold, the re-arm after a tracking fault): differences involving them are left out
of the `sent` figures.

    nice -n 10 python tools/bench_rtc.py --seeds 80000:80020
    python tools/bench_rtc.py --seeds 80000:80003 --delays-ms 400 --strategies rtc --no-write

Writes docs/results/bench_rtc.json (every figure, per variant) and bench_rtc.txt (the table).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from noetra_ros.core.policy.chunking import BLEND_STRATEGIES  # noqa: E402
from noetra_ros.core.stats import wilson_interval  # noqa: E402
from noetra_ros.learning.__main__ import parse_seeds, shipped_model  # noqa: E402
from noetra_ros.learning.record import (  # noqa: E402
    DEFAULT_EVAL_CELL, DriverStep, EvalSettings, evaluate_policy)

RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'results'
SERIES = ('sent', 'loop')
# The reference strategy every ratio is taken against (the shipped cell's).
REFERENCE = 'ensemble'


class StepLog:
    """Per episode, what each control step commanded and whether a chunk landed in it."""

    def __init__(self) -> None:
        self.episodes: dict[int, dict[str, list]] = {}

    def __call__(self, seed: int, step: DriverStep) -> None:
        log = self.episodes.setdefault(seed, {'loop': [], 'sent': [], 'landed': [],
                                              'held': []})
        command = step.command
        log['loop'].append(None if command is None else np.array(command.positions[0]))
        sent = step.sent
        log['sent'].append(None if sent is None or sent.arm is None else np.array(sent.arm))
        log['landed'].append(step.inference is not None)
        # The supervisor sent something of its own (a hold, a re-arm after a tracking fault)
        # instead of following the policy's command.
        log['held'].append(sent is not None and sent.command_stamp is None)


def held(targets: list) -> tuple[np.ndarray, int, int]:
    """The targets from the first command on, a missing one replaced by the one before (the
    robot keeps its last target); also the index of that first command and the count of
    steps without one after it."""
    first = next((i for i, t in enumerate(targets) if t is not None), None)
    if first is None:
        return np.empty((0, 0)), 0, 0
    rows, dry = [], 0
    for target in targets[first:]:
        if target is None:
            dry += 1
            rows.append(rows[-1])
        else:
            rows.append(target)
    return np.asarray(rows), first, dry


def episode_steps(targets: list, landed: list, period: float,
                  supervisor_held: list | None = None) -> dict[str, list[float]]:
    """|dq| and |dv| per step (largest joint), split into join steps and the others; a
    difference that involves a step in which the supervisor held (`supervisor_held`) is the
    supervisor's, not the blending's, and is left out (counted in `held`)."""
    q, first, dry = held(targets)
    out: dict[str, list[float]] = {f'{m}_{w}': [] for m in ('dq', 'dv')
                                   for w in ('join', 'else')}
    out['dry'] = [float(dry)]
    out['steps'] = [float(len(q))]
    skip = {k - first for k, own in enumerate(supervisor_held or []) if own and k >= first}
    out['held'] = [float(len(skip))]
    if len(q) < 2:
        return out
    joins = set()
    # Landings after the first command: the episode's first chunk has nothing to join.
    for step in [k for k, new in enumerate(landed) if new and k > first]:
        joins.update((step - first, step - first + 1))
    dq = np.diff(q, axis=0)  # dq[i] = q[i + 1] - q[i]: the step into i + 1
    for i in range(1, len(q)):
        where = 'join' if i in joins else 'else'
        if not skip & {i, i - 1}:
            out[f'dq_{where}'].append(float(np.abs(dq[i - 1]).max()))
        if i >= 2 and not skip & {i, i - 1, i - 2}:
            out[f'dv_{where}'].append(float(np.abs(dq[i - 1] - dq[i - 2]).max() / period))
    return out


def summarise(values: list[float]) -> dict[str, float | int]:
    array = np.asarray(values, dtype=float)
    if not array.size:
        return {'max': math.nan, 'p99': math.nan, 'n': 0}
    return {'max': float(array.max()), 'p99': float(np.percentile(array, 99)),
            'n': int(array.size)}


def run_variant(model: str, cell: str, seeds: list[int], strategy: str, delay_steps: int,
                rtc_horizon_s: float) -> dict:
    policy = {'blend': strategy, 'inference_delay_steps': delay_steps}
    if strategy == 'rtc':
        policy['rtc_horizon_s'] = rtc_horizon_s
    settings = EvalSettings.from_cell(cell, policy=policy)
    period = 1.0 / settings.world_config().control_hz
    log = StepLog()
    result = evaluate_policy(model, seeds, settings, on_act=log)
    successes = sum(result.successes)
    low, high = wilson_interval(successes, len(seeds))
    variant: dict = {
        'strategy': strategy, 'delay_steps': delay_steps,
        'delay_ms': round(1e3 * delay_steps * period), 'label': result.label,
        'successes': successes, 'episodes': len(seeds), 'wilson95': [low, high],
        'per_seed': dict(zip(map(str, seeds), result.successes)),
        'explanations': dict(zip(map(str, seeds), result.explanations)),
        'wall_time_s': result.wall_time_s}
    for series in SERIES:
        pooled: dict[str, list[float]] = {}
        for seed in seeds:
            episode = log.episodes.get(seed, {'loop': [], 'sent': [], 'landed': [],
                                              'held': []})
            for key, values in episode_steps(
                    episode[series], episode['landed'], period,
                    episode['held'] if series == 'sent' else None).items():
                pooled.setdefault(key, []).extend(values)
        figures = {key: summarise(pooled.get(key, []))
                   for key in ('dq_join', 'dq_else', 'dv_join', 'dv_else')}
        steps = sum(pooled.get('steps', []))
        figures['dry_fraction'] = sum(pooled.get('dry', [])) / steps if steps else math.nan
        figures['supervisor_held_steps'] = int(sum(pooled.get('held', [])))
        variant[series] = figures
    return variant


def _num(value: float, digits: int = 3) -> str:
    return '-' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'


def _ratio(value: float, reference: float) -> str:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return '-'
    return f'{value / reference:.2f}'


def table(variants: list[dict], series: str) -> list[str]:
    """One line per variant: success, then position and velocity steps of `series`."""
    reference = {v['delay_steps']: v for v in variants if v['strategy'] == REFERENCE}
    head = (f'{"delay":>6} {"blend":<9} {"success":>7} {"Wilson 95 %":>13} {"dry":>5} '
            f'{"held":>4} | '
            f'{"|dq| rad: join max":>18} {"p99":>6} {"else max":>8} {"p99":>6} '
            f'{"x ens":>5} | {"|dv| rad/s: join max":>20} {"p99":>6} {"else max":>8} '
            f'{"p99":>6} {"x ens":>5}')
    lines = [head, '-' * len(head)]
    for v in variants:
        f = v[series]
        ref = reference.get(v['delay_steps'], v)[series]
        low, high = v['wilson95']
        lines.append(
            f'{v["delay_ms"]:>4}ms {v["strategy"]:<9} {v["successes"]:>3}/{v["episodes"]:<3} '
            f'{100 * low:>5.1f}-{100 * high:<5.1f}% {100 * f["dry_fraction"]:>4.0f}% '
            f'{f["supervisor_held_steps"] if series == "sent" else "":>4} | '
            f'{_num(f["dq_join"]["max"], 4):>18} {_num(f["dq_join"]["p99"], 4):>6} '
            f'{_num(f["dq_else"]["max"], 4):>8} {_num(f["dq_else"]["p99"], 4):>6} '
            f'{_ratio(f["dq_join"]["max"], ref["dq_join"]["max"]):>5} | '
            f'{_num(f["dv_join"]["max"], 2):>20} {_num(f["dv_join"]["p99"], 2):>6} '
            f'{_num(f["dv_else"]["max"], 2):>8} {_num(f["dv_else"]["p99"], 2):>6} '
            f'{_ratio(f["dv_join"]["max"], ref["dv_join"]["max"]):>5}')
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', default='80000:80020', help="'a:b' (range) or 'a,b,c'")
    parser.add_argument('--cell', default=DEFAULT_EVAL_CELL)
    parser.add_argument('--model', default=str(shipped_model()))
    parser.add_argument('--delays-ms', default='100,200,400',
                        help='slowed inference, ms (whole control periods); delay 0 with '
                             f'{REFERENCE} always runs first as the reference')
    parser.add_argument('--strategies', default='ensemble,crossfade,rtc')
    parser.add_argument('--rtc-horizon', type=float, default=0.25,
                        help='rtc_horizon_s of the rtc variants (s)')
    parser.add_argument('--no-reference', action='store_true',
                        help='skip the delay-0 reference (quick checks)')
    parser.add_argument('--no-write', action='store_true', help='print only')
    args = parser.parse_args()

    seeds = parse_seeds(args.seeds)
    strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    unknown = [s for s in strategies if s not in BLEND_STRATEGIES]
    if unknown:
        parser.error(f'--strategies: {unknown} not in {BLEND_STRATEGIES}')
    control_hz = EvalSettings.from_cell(args.cell).world_config().control_hz
    delays = []
    for text in args.delays_ms.split(','):
        steps = float(text) * 1e-3 * control_hz
        if steps < 0 or abs(steps - round(steps)) > 1e-9:
            parser.error(f'--delays-ms {text}: not a whole number of {1e3 / control_hz:g} ms '
                         'control periods')
        delays.append(int(round(steps)))
    plan = [] if args.no_reference else [(REFERENCE, 0)]
    plan += [(strategy, delay) for delay in delays for strategy in strategies
             if (strategy, delay) not in plan]

    start = time.monotonic()
    variants = []
    for strategy, delay in plan:
        variant = run_variant(args.model, args.cell, seeds, strategy, delay, args.rtc_horizon)
        variants.append(variant)
        print(f'{variant["delay_ms"]:>4} ms {strategy:<9} {variant["successes"]}/'
              f'{variant["episodes"]}  [{variant["wall_time_s"]:.0f} s]', flush=True)
    wall = time.monotonic() - start

    stamp = dt.date.today().isoformat()
    lines = [f'$ nice -n 10 python tools/bench_rtc.py --seeds {args.seeds} --delays-ms '
             f'{args.delays_ms} --strategies {args.strategies} --rtc-horizon '
             f'{args.rtc_horizon}   ({stamp}, {os.cpu_count()} CPUs shared with other jobs, '
             f'{wall / 60:.1f} min for {len(plan) * len(seeds)} episodes)',
             f'model {pathlib.Path(args.model).name}, cell {args.cell}, seeds {seeds[0]}..'
             f'{seeds[-1]} ({len(seeds)}), the same list for every variant; rtc horizon '
             f'{args.rtc_horizon} s, fades 0.1 s (the cell\'s blend_window_s)',
             'join = the step a chunk lands in and the step after; x ens = join max / '
             f'{REFERENCE} join max at the same delay; dry = steps without a command; held = '
             'steps the supervisor held or re-armed instead of following the command (left '
             'out of the sent figures)', '']
    for series, title in (('sent', 'commands the supervisor sent to the robot'),
                          ('loop', 'the policy loop\'s commands (before the supervisor)')):
        lines += [f'== {title}', *table(variants, series), '']
    text = '\n'.join(lines)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / 'bench_rtc.txt').write_text(text + '\n')
        (RESULTS / 'bench_rtc.json').write_text(json.dumps({
            'date': stamp, 'model': pathlib.Path(args.model).name, 'cell': args.cell,
            'seeds': seeds, 'rtc_horizon_s': args.rtc_horizon, 'wall_time_s': wall,
            'cpus': os.cpu_count(), 'variants': variants}, indent=1) + '\n')
        print(f'wrote {RESULTS / "bench_rtc.txt"} and bench_rtc.json')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
