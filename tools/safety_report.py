"""Run every safety fault-injection scenario once on the real nodes and print the results.

Starts sim_node and safety_node (as test/test_safety_faults.py does, on a private
ROS_DOMAIN_ID leased for this run), runs each scenario of test/safety_scenarios.py in turn and
prints one Markdown table: check id, fault, measured figure, bound, pass/fail, detail.

    python tools/safety_report.py [--json results.json] [--work-dir DIR] [--only C7]

Exit status 0 when every figure is within its bound, 1 otherwise. Node logs stay in the work
directory (a temporary one unless --work-dir is given).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
import sys
import tempfile
import time
import traceback

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / 'test')]

from ros_harness import DomainLease  # noqa: E402
from safety_scenarios import (  # noqa: E402
    CONTROL_HZ, PROFILE, Result, ROBOT, run_scenario, SafetyRig, SCENARIOS)

HEADER = ('| check | fault | measured | bound | result | detail |\n'
          '| --- | --- | --- | --- | --- | --- |')


def run(only: str | None, work_dir: Path) -> tuple[list[Result], dict]:
    """Every scenario (or those whose name contains `only`) on one rig."""
    results: list[Result] = []
    timings = {}
    with SafetyRig(work_dir) as rig:
        for scenario in SCENARIOS:
            name = scenario.__name__.removeprefix('scenario_')
            if only and only.lower() not in name.lower():
                continue
            started = time.monotonic()
            try:
                results += run_scenario(rig, scenario)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the rest
                check = name.split('_')[0].upper()
                results.append(Result(check, f'{name}: scenario error', float('nan'), 0.0, '',
                                      False, f'{type(exc).__name__}: {exc}'.replace('\n', ' ')))
                traceback.print_exc()
                rig.reset_faults()
            timings[name] = round(time.monotonic() - started, 2)
        startup = dict(rig.startup)
    return results, {'scenario_seconds': timings, 'startup': startup}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', type=Path, help='also write the results to this JSON file')
    parser.add_argument('--work-dir', type=Path, help='node logs and parameter files')
    parser.add_argument('--only', help='run only scenarios whose name contains this (e.g. c7)')
    args = parser.parse_args(argv)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix='noetra_safety_report_'))
    # Always a private domain: these scenarios publish robot commands.
    lease = DomainLease.acquire()
    os.environ['ROS_DOMAIN_ID'] = str(lease.domain_id)
    started = time.monotonic()
    try:
        results, info = run(args.only, work_dir)
    finally:
        lease.release()
    runtime = time.monotonic() - started
    passed = sum(r.passed for r in results)
    print(f'Safety supervisor fault injection: {ROBOT}, profile {PROFILE}, sim_node realtime '
          f'{CONTROL_HZ} Hz, safety_node update_trigger joint_states (node clock = sim time)\n')
    print(HEADER)
    for res in results:
        print(res.row())
    print(f'\n{passed}/{len(results)} within bound; {runtime:.1f} s; logs in {work_dir}')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            'generated': datetime.datetime.now(datetime.timezone.utc).isoformat(),
            'robot': ROBOT, 'profile': PROFILE, 'control_hz': CONTROL_HZ,
            'runtime_s': round(runtime, 2), 'passed': passed, 'total': len(results),
            'results': [r.as_dict() for r in results], **info, 'work_dir': str(work_dir),
        }, indent=2, default=str))
    return 0 if passed == len(results) else 1


if __name__ == '__main__':
    sys.exit(main())
