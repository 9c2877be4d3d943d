"""`noetra`: start a cell's node graph without `ros2 launch`, watch it, and report.

    noetra list                                   # the cells in config/cells
    noetra run pick_place_lrmate --headless       # run a cell, print a summary, write a video
    noetra run pick_place_lrmate --episodes 20 --seed 100 --mode lockstep
    noetra run pick_place_lrmate_fanuc --hardware real   # everything but the simulator
    noetra eval pick_place_lrmate_policy --episodes 100 --workers 8 [--address ray://HEAD:10001]
    noetra audit runs/<run>/recording/<episode>/  # audit trail + summary of a recording
    noetra convert runs/<run>/recording --out datasets/<name> --fps 20  # -> LeRobotDataset v3

The nodes are the same executables with the same parameters that `ros2 launch noetra_ros
bringup.launch.py cell:=<cell>` starts (both read noetra_ros.bringup.load_cell); here each runs as
its own process, and this process adds a monitor node that measures what a person wants to know.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import yaml

from noetra_ros import audit_cli
from noetra_ros.bringup import (available_cells, foxglove_address, foxglove_url, HARDWARE,
                                load_cell, PARENT_PID_ENV, with_foxglove, with_recorder)
from noetra_ros.core.errors import NoetraError
from noetra_ros.core.stats import wilson_interval


def _parse_set(items: list[str]) -> dict:
    """`node.param=value` strings -> {node: {param: value}} (value parsed as YAML)."""
    overrides: dict = {}
    for item in items:
        key, sep, value = item.partition('=')
        node, dot, param = key.partition('.')
        if not sep or not dot or not node or not param:
            raise NoetraError(f'--set {item!r}: expected NODE.PARAM=VALUE')
        overrides.setdefault(node, {})[param] = yaml.safe_load(value)
    return overrides


class CellProcesses:
    """The cell's nodes as child processes, with their logs in the run folder."""

    def __init__(self, cell, params_file: Path, log_dir: Path, env: dict) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = {}
        # Each node stops when this process ends, however it ends (ros_main.stop_with_parent):
        # they run in sessions of their own, so a SIGKILL here would otherwise leave them up.
        env = dict(env, **{PARENT_PID_ENV: str(os.getpid())})
        for spec in cell.nodes:
            log_path = log_dir / f'{spec.name}.log'
            handle = open(log_path, 'w')
            self.logs[spec.name] = log_path
            self.procs[spec.name] = subprocess.Popen(
                spec.command(str(params_file)), stdout=handle, stderr=subprocess.STDOUT,
                env=env, start_new_session=True)

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 5.0) -> dict[str, int]:
        """SIGINT every node (each stops cleanly and exits 0), SIGKILL what is left after
        `timeout`; returns every node's exit code."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {name: proc.returncode for name, proc in self.procs.items()}

    def tail(self, name: str, lines: int = 15) -> str:
        text = self.logs[name].read_text(errors='replace').splitlines()
        return '\n'.join(text[-lines:])


# How long `noetra run` listens for a cell already on its domain before starting. DDS discovery
# of a fresh participant usually takes well under a second; a loaded machine can take longer.
DOMAIN_CHECK_S = 1.5


def _refuse_a_second_cell_on_the_domain(cell) -> None:
    """NoetraError when nodes of this cell already run on this ROS_DOMAIN_ID (another `noetra
    run`, a launch file): the two would read each other's topics."""
    from noetra_ros.monitor import nodes_already_running  # rclpy only from here on

    running = nodes_already_running([n.name for n in cell.nodes], wait_s=DOMAIN_CHECK_S)
    if running:
        domain = os.environ.get('ROS_DOMAIN_ID', '0')
        raise NoetraError(f'nodes {running} already run on ROS_DOMAIN_ID={domain}: another cell '
                          f'is up there, and the two would mix their joint states, clocks and '
                          f'commands. Stop it, or run this one on a domain of its own '
                          f'(ROS_DOMAIN_ID=<0..101> noetra run ...).')


def run_real(args: argparse.Namespace) -> int:
    """hardware real: start every node but the simulator (bringup.load_cell) against the real
    driver and keep them running until Ctrl-C / SIGTERM or --timeout; a node that exits ends
    the run. Episodes and success need the simulator's task checker, so there is no summary
    beyond the nodes' exit codes: watch the robot, safety/status and /diagnostics."""
    cell = load_cell(args.cell, _parse_set(args.set or []), hardware='real')
    stamp = dt.datetime.now().strftime('%Y%m%d-%H%M%S')
    out_dir = Path(args.out or Path('runs') / f'{cell.name}-real-{stamp}')
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(args, 'record', False):
        cell = with_recorder(cell, out_dir)  # bags in <run>/recording/ (docs/RECORDING.md)
    if getattr(args, 'foxglove', None) is not None:  # live view: docs/VIEWING.md
        cell = with_foxglove(cell, args.foxglove)
        print(f'noetra: Foxglove live view at {foxglove_url(*foxglove_address(args.foxglove))}')
    _refuse_a_second_cell_on_the_domain(cell)
    params_file = cell.write_params_file(out_dir / 'params.yaml')
    print(f'noetra: cell {cell.name!r} on REAL hardware (driver {cell.driver}): starting '
          f'{[n.name for n in cell.nodes]} on the wall clock; logs in {out_dir}. The safety '
          f'node is a non-safety-rated software layer: the robot\'s own safety functions and '
          f'e-stop stay in charge.', flush=True)
    procs = CellProcesses(cell, params_file, out_dir, dict(os.environ, PYTHONUNBUFFERED='1'))
    start = time.monotonic()
    code = 0
    try:
        while time.monotonic() - start < args.timeout:
            dead = procs.dead()
            if dead:
                name, exit_code = next(iter(dead.items()))
                print(f'noetra: node {name!r} exited with code {exit_code}; last log lines:\n'
                      f'{procs.tail(name)}', file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    finally:
        exit_codes = procs.stop()
    print(f'noetra: stopped after {time.monotonic() - start:.1f} s; node exit codes '
          f'{exit_codes}')
    return code


def run_cell(args: argparse.Namespace) -> dict:
    """Start the cell, monitor it until its episodes end, return the report."""
    from noetra_ros.monitor import run_monitor  # rclpy is only needed from here on

    overrides = _parse_set(args.set or [])
    sim = overrides.setdefault('sim', {})
    sim['episodes'] = args.episodes
    sim['wait_for_reset'] = True  # the monitor starts the schedule once discovery is done
    if args.seed is not None:
        sim['first_seed'] = args.seed
    if args.mode:
        sim['mode'] = args.mode
    cell = load_cell(args.cell, overrides)
    stamp = dt.datetime.now().strftime('%Y%m%d-%H%M%S')
    out_dir = Path(args.out or Path('runs') / f'{cell.name}-{stamp}')
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(args, 'record', False):
        cell = with_recorder(cell, out_dir)  # bags in <run>/recording/ (docs/RECORDING.md)
    if getattr(args, 'foxglove', None) is not None:  # live view: docs/VIEWING.md
        cell = with_foxglove(cell, args.foxglove)
        print(f'noetra: Foxglove live view at {foxglove_url(*foxglove_address(args.foxglove))}')
    _refuse_a_second_cell_on_the_domain(cell)
    params_file = cell.write_params_file(out_dir / 'params.yaml')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    print(f'noetra: starting cell {cell.name!r} ({cell.description}) with nodes '
          f'{[n.name for n in cell.nodes]}; logs in {out_dir}', flush=True)
    procs = CellProcesses(cell, params_file, out_dir, env)
    exit_codes: dict[str, int] = {}
    try:
        report = run_monitor(cell, procs, out_dir, video=not args.no_video,
                             wall_timeout_s=args.timeout, quiet=args.quiet)
    finally:
        exit_codes = procs.stop()
    # 0 = stopped cleanly; anything else is worth a look at <node>.log.
    report['node_exit_codes'] = exit_codes
    report['run_dir'] = str(out_dir)
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2))
    return report


def eval_cell(args: argparse.Namespace) -> dict:
    """Seeded lockstep episodes of a cell's controller; adds the evaluation summary."""
    overrides = _parse_set(args.set or [])
    if args.model or args.baseline:
        cell = load_cell(args.cell)
        if 'policy' not in [n.name for n in cell.nodes]:
            raise NoetraError(f'--model/--baseline need a cell with a node named policy; '
                              f'{cell.name!r} has {[n.name for n in cell.nodes]}')
        model = args.model
        if args.baseline == 'hold':
            import onnx
            from noetra_ros.core.policy.baselines import hold_policy_model
            from noetra_ros.core.robots import robot_spec
            out_dir = Path(args.out or Path('runs') / f'eval-{cell.name}-hold')
            out_dir.mkdir(parents=True, exist_ok=True)
            model = str((out_dir / 'hold_policy.onnx').resolve())
            onnx.save(hold_policy_model(robot_spec(cell.robot).joint_names), model)
            args.out = str(out_dir)
        overrides.setdefault('policy', {})['model_path'] = str(model)
    args.set = [f'{node}.{k}={json.dumps(v)}' for node, params in overrides.items()
                for k, v in params.items()]
    args.mode = 'lockstep'  # results must not depend on machine load
    report = run_cell(args)
    episodes = report['episodes']
    k, n = sum(e['success'] for e in episodes), len(episodes)
    low, high = wilson_interval(k, n)
    policy = report['health'].get('policy: policy', {}).get('values', {})
    report['evaluation'] = {
        'cell': report['cell']['name'], 'controller': report['controller'],
        'model': overrides.get('policy', {}).get('model_path', ''),
        'baseline': args.baseline or '', 'first_seed': args.seed, 'episodes': n,
        'successes': k, 'success_rate': k / n if n else 0.0, 'wilson95': [low, high],
        'mean_episode_s': (sum(e['duration_s'] for e in episodes) / n) if n else 0.0,
        'mean_success_episode_s': (sum(e['duration_s'] for e in episodes if e['success']) / k)
        if k else None,
        'step_latency_ms': report['command_latency_ms'],
        'policy_inference_ms': {q: float(policy[f'inference_ms_{q}'])
                                for q in ('p50', 'p90', 'p99') if f'inference_ms_{q}' in policy},
        'policy_end_to_end_ms': {q: float(policy[f'end_to_end_ms_{q}'])
                                 for q in ('p50', 'p90', 'p99') if f'end_to_end_ms_{q}' in policy},
        'episode_results': [{key: e[key] for key in ('seed', 'success', 'reason', 'duration_s',
                                                     'target_object', 'distractors') if key in e}
                            for e in episodes],
    }
    from noetra_ros.eval_plots import write_evaluation_plots  # matplotlib: only eval needs it

    # Next to the JSON (out.json -> out_success.png, ...), else in the run folder.
    stem = Path(args.json).with_suffix('') if args.json else Path(report['run_dir']) / 'evaluation'
    report['evaluation']['plots'] = write_evaluation_plots(report, stem)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report['evaluation'], indent=2))
    (Path(report['run_dir']) / 'report.json').write_text(json.dumps(report, indent=2))
    return report


def format_evaluation(ev: dict) -> str:
    lo, hi = ev['wilson95']
    lines = [f'evaluation: {ev["cell"]} / {ev["baseline"] or ev["controller"]} on seeds '
             f'{ev["first_seed"]}..{ev["first_seed"] + ev["episodes"] - 1}',
             f'  success {ev["successes"]}/{ev["episodes"]} = {100 * ev["success_rate"]:.1f} % '
             f'(Wilson 95 % CI {100 * lo:.1f}-{100 * hi:.1f} %)',
             f'  mean episode {ev["mean_episode_s"]:.2f} s sim']
    lat = ev['step_latency_ms']
    if lat['n']:
        lines.append(f'  step latency joint_states -> command: p50 {lat["p50"]:.2f} ms, '
                     f'p90 {lat["p90"]:.2f} ms, p99 {lat["p99"]:.2f} ms')
    if ev['policy_inference_ms']:
        inf = ev['policy_inference_ms']
        lines.append(f'  policy inference (onnxruntime run): p50 {inf["p50"]:.2f} ms, '
                     f'p99 {inf["p99"]:.2f} ms')
    lines += [f'  plot: {path}' for path in ev.get('plots', [])]
    return '\n'.join(lines)


SHADOW_TABLE_REASONS = 3  # would-be interventions listed per episode (the most frequent)


def _rad(value: float | None) -> str:
    return '  n/a' if value is None else f'{value:.3f}'


def format_shadow(reports: list[dict]) -> list[str]:
    """Shadow mode (docs/SHADOW.md): one line per episode of shadow_node's summaries."""
    if not reports:
        return []
    lines = ['shadow: the policy\'s would-be commands against the driving controller\'s '
             '(joint-space error, rad) and what its judge would have done:',
             f'{"ep":>3} {"answered":>9}  {"L2 p50 / p95 / max":<21} {"max|e|":>6} '
             f'{"gripper":>8}  judge: would-be interventions (per minute)']
    for r in reports:
        l2, worst = r['divergence']['l2_rad'], r['divergence']['max_abs_rad']['max']
        grip = r['gripper']['disagreement']
        judge = r['judge']
        rows = judge['interventions']
        text = ', '.join(f'{i["decision"]} {i["reason"]} {i["count"]}'
                         + (f' ({i["per_minute"]:.1f}/min)' if i['per_minute'] is not None
                            else '') for i in rows[:SHADOW_TABLE_REASONS]) or 'none'
        if len(rows) > SHADOW_TABLE_REASONS:
            text += f', +{len(rows) - SHADOW_TABLE_REASONS} more in report.json'
        if judge['reanchors']:
            text += f'; re-anchored {judge["reanchors"]}x'
        answered = f'{r["shadow_answered"]}/{r["driving_answered"]}'
        spread = f'{_rad(l2["p50"])} / {_rad(l2["p95"])} / {_rad(l2["max"])}'
        disagree = 'n/a' if grip is None else f'{100 * grip:.1f} %'
        lines.append(f'{r["episode"]:>3} {answered:>9}  {spread:<21} {_rad(worst):>6} '
                     f'{disagree:>8}  {text}')
    return lines


def format_report(report: dict) -> str:
    lines = []
    cell = report['cell']
    lines.append('')
    lines.append(f'=== noetra run: {cell["name"]} | robot {cell["robot"]} | sector {cell["sector"]}'
                 f' | controller {report["controller"]} | mode {report["mode"]} ===')
    lines.append(f'{"ep":>3} {"seed":>6}  {"result":<8} {"sim s":>6}  instruction')
    for ep in report['episodes']:
        result = 'success' if ep['success'] else 'FAILED'
        lines.append(f'{ep["episode"]:>3} {ep["seed"]:>6}  {result:<8} {ep["duration_s"]:>6.2f}  '
                     f'{ep["instruction"]}' + ('' if ep['success'] else f'  [{ep["reason"]}]'))
    n, k = len(report['episodes']), sum(e['success'] for e in report['episodes'])
    if n:
        low, high = wilson_interval(k, n)
        lines.append(f'success rate: {k}/{n} = {100 * k / n:.0f} % '
                     f'(Wilson 95 % CI {100 * low:.0f}-{100 * high:.0f} %)')
    else:
        lines.append('success rate: no episode finished')
    lines.append(f'wall time {report["wall_s"]:.1f} s for {report["sim_s"]:.1f} s of sim time '
                 f'(real-time factor {report["real_time_factor"]:.2f})')
    lines.append('topic rates (messages per sim second | per wall second):')
    for topic, rate in report['topics'].items():
        lines.append(f'  {topic:<48} {rate["sim_hz"]:>7.1f} Hz | {rate["wall_hz"]:>7.1f} Hz'
                     f'  ({rate["count"]} msgs)')
    lat = report['command_latency_ms']
    if lat['n']:
        lines.append(f'command latency, joint_states -> arm command at the monitor: p50 '
                     f'{lat["p50"]:.2f} ms, p90 {lat["p90"]:.2f} ms, p99 {lat["p99"]:.2f} ms '
                     f'(n={lat["n"]})')
    if report.get('health'):
        lines.append('node health (last /diagnostics):')
        for name, status in sorted(report['health'].items()):
            keys = ('steps', 'published', 'commands', 'inferences', 'no_command_stale',
                    'input_errors', 'state', 'rejected_commands', 'lockstep_timeouts',
                    'timeouts', 'tracking_faults', 'end_to_end_ms_p50', 'end_to_end_ms_p99',
                    'inference_ms_p50', 'inference_ms_p99')
            extra = ', '.join(f'{k}={status["values"][k]}' for k in keys
                              if k in status['values'])
            lines.append(f'  {name:<28} {status["level"]:<5} {status["message"][:60]}'
                         + (f' [{extra}]' if extra else ''))
    if report.get('rejected_commands'):
        lines.append(f'commands rejected by the sim: {report["rejected_commands"]}')
    unclean = {name: code for name, code in report.get('node_exit_codes', {}).items() if code}
    if unclean:
        lines.append(f'nodes that did not stop cleanly (exit code; see <node>.log): {unclean}')
    lines += format_shadow(report.get('shadow', []))
    if report.get('video'):
        lines.append(f'scene video: {report["video"]}')
    lines.append(f'report: {report["run_dir"]}/report.json')
    return '\n'.join(lines)


EXIT_INTERRUPTED = 130  # the shell's code for a run ended by a signal (128 + SIGINT)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='noetra', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help='list the cells in config/cells')
    run = sub.add_parser('run', help='run a cell and print a summary')
    run.add_argument('cell', help='cell name (see `noetra list`) or path to a cell YAML')
    run.add_argument('--episodes', type=int, default=3, help='episodes to run (default 3)')
    run.add_argument('--seed', type=int, default=None, help='seed of the first episode')
    run.add_argument('--mode', choices=['lockstep', 'realtime'], default=None,
                     help='override the cell\'s sim mode')
    run.add_argument('--headless', action='store_true',
                     help='no GUI (the default; kept so scripts can say so explicitly)')
    run.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE',
                     help='override a node parameter, e.g. --set sim.control_hz=30')
    run.add_argument('--out', help='run folder (default runs/<cell>-<time>)')
    run.add_argument('--timeout', type=float, default=900.0, help='wall-clock limit in seconds')
    run.add_argument('--no-video', action='store_true', help='do not write the scene video')
    run.add_argument('--quiet', action='store_true', help='no per-episode progress lines')
    run.add_argument('--hardware', choices=list(HARDWARE), default='sim',
                     help='sim (default): the simulator plays the driver; real: every node '
                          'but the simulator, against the real driver (as hardware:=real)')
    run.add_argument('--record', action='store_true',
                     help='add a recorder node: every topic into <run>/recording/, one rosbag2 '
                          'MCAP bag per episode (docs/RECORDING.md)')
    run.add_argument('--foxglove', nargs='?', const='', metavar='[HOST:]PORT',
                     help='add the Foxglove live view (foxglove_node): a WebSocket server on '
                          '127.0.0.1:8765 unless given; 0.0.0.0:PORT shows the cameras to the '
                          'whole network (docs/VIEWING.md)')
    ev = sub.add_parser('eval', help='seeded lockstep evaluation of a cell\'s controller')
    ev.add_argument('cell', help='cell name or path (its controller is evaluated)')
    ev.add_argument('--episodes', type=int, default=50, help='episodes (default 50)')
    ev.add_argument('--seed', type=int, default=10000,
                    help='first seed (default 10000: held out from training seeds)')
    ev.add_argument('--model', help='ONNX model for the cell\'s policy node')
    ev.add_argument('--baseline', choices=['hold'],
                    help='evaluate a reference policy instead (hold: keep the current pose)')
    ev.add_argument('--json', help='write the evaluation summary as JSON here')
    ev.add_argument('--set', action='append', metavar='NODE.PARAM=VALUE')
    ev.add_argument('--out', help='run folder')
    ev.add_argument('--timeout', type=float, default=3600.0, help='wall-clock limit (s)')
    ev.add_argument('--no-video', action='store_true', default=False)
    ev.add_argument('--quiet', action='store_true')
    ev.add_argument('--workers', type=int, default=0,
                    help='run the episodes on N Ray workers, each seed a lockstep graph run of '
                         'its own (default 0: one run here; docs/DISTRIBUTED.md)')
    ev.add_argument('--address', default=None,
                    help='with --workers: a Ray cluster (ray://HEAD:10001, HEAD:6379 or auto); '
                         'default a local Ray runtime')
    ev.add_argument('--domains', default=None, metavar='A:B',
                    help='with --workers: ROS domain ids the graph workers lease on each '
                         'machine (default 30:100)')
    audit_cli.add_parser(sub)
    from noetra_ros.learning import convert  # its numpy / mcap / PyAV users import lazily
    convert.add_arguments(sub.add_parser(
        'convert', help='recorded episodes (MCAP bags) -> a LeRobotDataset v3 (docs/CONVERT.md)'))
    args = parser.parse_args(argv)
    # The cell's nodes run in their own sessions, so a signal to this process does not reach
    # them: SIGTERM (systemd, `docker stop`) must unwind like Ctrl-C does, through the
    # `finally` that stops them, instead of killing this process and orphaning the cell.
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == 'list':
            for name in available_cells():
                cell = load_cell(name)
                print(f'{name:<28} {cell.robot:<20} {cell.sector:<16} {cell.description}')
            return 0
        if args.command == 'audit':
            return audit_cli.run(args)
        if args.command == 'convert':
            return convert.run(args)
        if args.command == 'run' and args.hardware == 'real':
            return run_real(args)
        if args.command == 'eval' and args.workers:
            from noetra_ros.distributed import eval_cell_on_ray  # Ray only from here on
            report = eval_cell_on_ray(args)
        else:
            report = eval_cell(args) if args.command == 'eval' else run_cell(args)
    except NoetraError as exc:
        print(f'noetra: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f'noetra: stopped by {exc or "SIGINT"}; the cell\'s nodes were stopped',
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    print(format_report(report))
    if 'evaluation' in report:
        print(format_evaluation(report['evaluation']))
    if report.get('error'):
        print(f'noetra: error: {report["error"]}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
