#!/usr/bin/env python3
"""Benchmark: the policy's commands through the simulated FANUC driver at its rate.

    python tools/bench_driver_profiles.py [--seconds 20] [--rate 250] [--warmup 8]

The graph of a deployed cell, one process per node, real rclpy + DDS:
camera publisher (two 640x480 rgb8 topics at 30 Hz, as two USB cameras would give) ->
policy_node (the shipped model, async) -> safety_node (driver fanuc: one supervisor cycle per
joint_states, streaming single-point trajectories into joint_trajectory_controller/
joint_trajectory) -> sim_node playing fanuc_driver (J1..J6, controller update and joint_states at
--rate). Every node runs on the sim's clock (use_sim_time), so the figures hold whatever the
sim's real-time factor on this machine.

Run twice: the policy streaming at the driver's rate (command_rate_hz = --rate, cubic) and
today's 20 Hz steps (command_rate_hz 0). Reported per run:
- policy -> safety: achieved / target rate (wall), period jitter p50 / p99 (wall);
- safety -> driver: commands per sim second against the driver's rate, the share of driver
  periods that got a new command, wall jitter; the largest change per driver period of the
  commanded velocity and acceleration (newest command at each update, on the sim's grid);
- the arm as measured (joint_states, exact sim stamps): the largest change per period of
  velocity and acceleration;
- the sim's real-time factor and CPU per process (share of one core). Figures, never asserted.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))

from bench_command_stream import _cpu_seconds, _jitter_line  # noqa: E402

from noetra_ros.core.stats import percentiles  # noqa: E402

FANUC = [f'J{i}' for i in range(1, 7)]


def _changes(q: np.ndarray, period: float) -> tuple[dict, dict]:
    """Percentiles (p50 / p99 / max) of the change per period of velocity and of acceleration
    of positions sampled every `period`: the max alone is one event (a hold, a re-arm), the
    p99 what the arm lives with."""
    v = np.diff(q, axis=0) / period
    a = np.diff(v, axis=0) / period
    dv = np.abs(np.diff(v, axis=0)).max(axis=1)
    da = np.abs(np.diff(a, axis=0)).max(axis=1)
    return ({**percentiles(dv), 'max': float(dv.max())},
            {**percentiles(da), 'max': float(da.max())})


def _change_text(dv: dict, da: dict) -> str:
    return (f'velocity p50 {dv["p50"]:.4f} / p99 {dv["p99"]:.4f} / max {dv["max"]:.4f} rad/s, '
            f'acceleration p50 {da["p50"]:.2f} / p99 {da["p99"]:.2f} / max {da["max"]:.2f} '
            f'rad/s^2')


def _ros_args(params: dict, remaps: dict | None = None) -> list[str]:
    args = ['--ros-args']
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ['-p', f'{key}:={text}']
    for source, target in (remaps or {}).items():
        args += ['-r', f'{source}:={target}']
    return args


def _run(label: str, command_rate: float, rate: float, seconds: float, warmup_s: float,
         env: dict) -> tuple[list[str], dict]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from noetra_ros.qos import CLOCK, RELIABLE

    nodes = {
        'sim_node': {'robot': 'fanuc_lrmate200id', 'driver': 'fanuc', 'mode': 'realtime',
                     'control_hz': int(rate), 'physics_hz': int(rate),
                     'observation_hz': 20.0,
                     # One tiny camera at 1 Hz: the 640x480 streams come from the publisher.
                     'cameras': "['wrist_camera']", 'camera_width': 32, 'camera_height': 24,
                     'camera_rate_hz': 1.0, 'episode_timeout_s': 1000.0},
        'policy_node': ({'model_path': 'models/pick_place_lrmate.onnx', 'mode': 'async',
                         'command_interface': 'position', 'control_hz': 20.0,
                         'command_rate_hz': float(command_rate), 'driver_joint_names': 'fanuc',
                         # joint_states at the driver rate: infer at the lockstep cadence
                         # (replan 2 / 20 Hz), as the FANUC policy cell does.
                         'min_replan_period_s': 0.1,
                         'use_sim_time': True},
                        {'forward_position_controller/commands': 'safety/position_commands',
                         'gripper_position_controller/commands': 'safety/gripper_commands'}),
        # auto_arm (simulation only): a hold would end the run's motion; holds are counted.
        'safety_node': {'robot': 'fanuc_lrmate200id', 'profile': 'industrial',
                        'driver': 'fanuc', 'period_s': 1.0 / rate, 'arm_on_start': True,
                        'auto_arm': True, 'use_sim_time': True},
    }
    procs = {}
    for executable, spec in nodes.items():
        params, remaps = spec if isinstance(spec, tuple) else (spec, None)
        procs[executable] = subprocess.Popen(
            [sys.executable, '-m', f'noetra_ros.{executable}', *_ros_args(params, remaps)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs['camera_publisher'] = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools' / 'bench_command_stream.py'), '--camera-publisher',
         '--sim-time'], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    node = rclpy.create_node('bench_probe')
    lock = threading.Lock()
    state = {'recording': False, 'sim': 0.0}
    got: dict[str, list] = {'policy': [], 'driver': [], 'joints': [], 'clock': []}

    def on_clock(msg):
        state['sim'] = msg.clock.sec + 1e-9 * msg.clock.nanosec
        if state['recording']:
            got['clock'].append((time.monotonic(), state['sim']))

    def keep(key, positions, stamp=None):
        if state['recording']:
            with lock:
                got[key].append((time.monotonic(), state['sim'] if stamp is None else stamp,
                                 np.array(positions[:6], dtype=float)))

    node.create_subscription(Clock, '/clock', on_clock, CLOCK)
    node.create_subscription(Float64MultiArray, 'safety/position_commands',
                             lambda m: keep('policy', m.data), RELIABLE)
    node.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                             lambda m: keep('driver', m.points[0].positions), RELIABLE)
    node.create_subscription(
        JointState, 'joint_states',
        lambda m: keep('joints', m.position,
                       m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec), RELIABLE)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + warmup_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    cpu0 = {name: _cpu_seconds(p.pid) for name, p in procs.items()}
    state['recording'] = True
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        executor.spin_once(timeout_sec=0.01)
    state['recording'] = False
    elapsed = time.monotonic() - start
    cpu = {name: _cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    executor.shutdown()
    node.destroy_node()

    period = 1.0 / rate
    lines = [f'-- {label}']
    figures: dict = {}
    clock = got['clock']
    sim_span = clock[-1][1] - clock[0][1] if len(clock) > 1 else 0.0
    lines.append(f'sim: {sim_span:.2f} s of sim time in {elapsed:.1f} s wall = real-time factor '
                 f'{sim_span / elapsed:.2f}')
    policy = got['policy']
    if len(policy) > 2:
        target = command_rate or 20.0
        lines.append(_jitter_line('policy -> safety/position_commands (wall)',
                                  np.array([p[0] for p in policy]), target, elapsed))
    driver = got['driver']
    if len(driver) > 2 and sim_span > 0:
        sims = np.array([d[1] for d in driver])
        periods_in_window = int(round(sim_span / period))
        covered = len(np.unique(np.round(sims / period)))
        lines.append(f'safety -> joint_trajectory_controller/joint_trajectory: {len(driver)} '
                     f'commands in {sim_span:.2f} sim s = {len(driver) / sim_span:.1f} per sim s, '
                     f'achieved / target {len(driver) / sim_span / rate:.3f}; driver periods with '
                     f'a new command {covered}/{periods_in_window} '
                     f'({100.0 * covered / max(periods_in_window, 1):.1f} %)')
        lines.append('  ' + _jitter_line('wall arrival', np.array([d[0] for d in driver]),
                                         rate * sim_span / elapsed, elapsed))
        grid = np.arange(sims[0], sims[-1], period)
        q = np.array([d[2] for d in driver])
        held = q[np.clip(np.searchsorted(sims, grid + 1e-9, side='right') - 1, 0, len(q) - 1)]
        dv, da = _changes(held, period)
        figures['driver'] = (dv, da)
        lines.append(f'  change per driver period of the command (newest at each '
                     f'{1e3 * period:.0f} ms update, largest joint): {_change_text(dv, da)}')
    joints = got['joints']
    if len(joints) > 3:
        stamps = np.array([j[1] for j in joints])
        order = np.argsort(stamps)
        stamps, q = stamps[order], np.array([j[2] for j in joints])[order]
        keep_mask = np.concatenate([[True], np.diff(stamps) > 1e-9])
        stamps, q = stamps[keep_mask], q[keep_mask]
        regular = np.allclose(np.diff(stamps), period, rtol=0.01)
        dv, da = _changes(q, period)
        figures['arm'] = (dv, da)
        lines.append(f'arm as measured (joint_states, {len(stamps)} stamps, '
                     f'{"every" if regular else "NOT every"} {1e3 * period:.0f} ms), change per '
                     f'period: {_change_text(dv, da)}')
    lines.append('CPU (% of one core, wall): ' + ', '.join(
        f'{name} {100 * value / elapsed:.1f}' for name, value in cpu.items()))
    return lines, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=250.0, help='driver update rate (Hz)')
    parser.add_argument('--warmup', type=float, default=8.0)
    args = parser.parse_args()
    import rclpy

    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    lines = [f'bench_driver_profiles: {os.cpu_count()} CPUs, python {sys.version.split()[0]}',
             f'== graph: 2 x 640x480 rgb8 at 30 Hz -> policy_node -> safety_node (fanuc, '
             f'joint_trajectory output) -> sim_node as fanuc_driver at {args.rate:.0f} Hz; '
             f'{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up']
    rclpy.init()
    results = {}
    try:
        for label, command_rate in ((f'stream {args.rate:.0f} Hz', args.rate),
                                    ('today 20 Hz', 0.0)):
            run_lines, results[label] = _run(label, command_rate, args.rate, args.seconds,
                                             args.warmup, env)
            lines += run_lines
    finally:
        rclpy.shutdown()
    stream, today = results.values()
    for key in ('driver', 'arm'):
        if key in stream and key in today:
            (sv, sa), (tv, ta) = stream[key], today[key]
            lines.append(f'ratio today / stream, {key}, p99 change per period: velocity '
                         f'{tv["p99"] / max(sv["p99"], 1e-12):.1f}x, acceleration '
                         f'{ta["p99"] / max(sa["p99"], 1e-12):.1f}x')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
