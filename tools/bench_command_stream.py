#!/usr/bin/env python3
"""Benchmark: commands at the driver's rate (250 Hz stream) against today's 20 Hz steps.

    python tools/bench_command_stream.py [--seconds 15] [--rate 250] [--skip-graph]

Part 1, core: `CommandStream` ticked by a sleep-paced loop at --rate for --seconds, fed with
chunks of a smooth synthetic policy (20 Hz rows, 0.5 s horizon, a new chunk every 0.1 s that
arrives 60 ms after its stamp, each offset by up to 5 mrad as a new observation gives). The
same chunks through today's path (`ActionQueue`, ensemble blend, one command per 20 Hz period)
are held between commands and looked at on the same 250 Hz grid, as the driver's controller
sees them.

Part 2, graph (real rclpy + DDS, one process per node): policy_node (the shipped model, async,
position commands) -> safety_node (a cycle per joint_states, period_s = 1 / rate) -> a stand-in
driver in this process that publishes joint_states at --rate (position = the last command, an
ideal position loop), and a camera process publishing two 640x480 rgb8 topics at 30 Hz. Run
once with command_rate_hz = --rate and once with today's command_rate_hz = 0 (control_hz 20).
The safety node runs with auto_arm (simulation only) so that a hold does not end the run; the
holds in the window are reported.

Reported per stream: achieved / target rate, period jitter |period - 1/rate| p50 / p99, the
largest change per driver period of the commanded velocity (rad/s) and acceleration (rad/s^2),
CPU per process (share of one core over the measured window). Figures, never assertions.
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

from noetra_ros.core.command_stream import CommandStream, StreamConfig  # noqa: E402
from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig  # noqa: E402
from noetra_ros.core.stats import percentiles  # noqa: E402

JOINTS = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6')
ROW_PERIOD_S, ROWS, CHUNK_EVERY_S, LATENCY_S = 0.05, 10, 0.1, 0.06
TODAY_HZ = 20.0


def _reference(t: np.ndarray) -> np.ndarray:
    """A smooth joint motion (rad) the synthetic policy follows: up to ~0.6 rad/s per joint."""
    phase = np.arange(len(JOINTS))[None, :]
    return 0.3 * np.sin(2.0 * np.asarray(t)[:, None] * (1.0 + 0.1 * phase) + phase)


def _chunks(seconds: float, seed: int = 0):
    """(stamp, arrival, rows) of the synthetic policy."""
    rng = np.random.default_rng(seed)
    out = []
    for stamp in np.arange(0.0, seconds, CHUNK_EVERY_S):
        times = stamp + ROW_PERIOD_S * np.arange(ROWS)
        rows = _reference(times) + rng.uniform(-0.005, 0.005, len(JOINTS))
        out.append((float(stamp), float(stamp + LATENCY_S), rows))
    return out


def _per_period_changes(q: np.ndarray, period: float) -> tuple[float, float]:
    """Largest change per period of velocity and acceleration of a position sequence sampled
    every `period` (finite differences on the driver's grid)."""
    v = np.diff(q, axis=0) / period
    a = np.diff(v, axis=0) / period
    return float(np.abs(np.diff(v, axis=0)).max()), float(np.abs(np.diff(a, axis=0)).max())


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one when pid is None)."""
    if pid is None:
        return time.process_time()
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _jitter_line(label: str, stamps: np.ndarray, rate: float, seconds: float) -> str:
    periods = np.diff(stamps)
    jitter = percentiles(1e3 * np.abs(periods - 1.0 / rate))
    achieved = len(stamps) / seconds
    return (f'{label}: {len(stamps)} commands in {seconds:.1f} s = {achieved:.1f} Hz, '
            f'achieved / target {achieved / rate:.3f}; period jitter p50 {jitter["p50"]:.3f} ms, '
            f'p99 {jitter["p99"]:.3f} ms')


def bench_core(seconds: float, rate: float, interpolation: str) -> list[str]:
    period = 1.0 / rate
    chunks = _chunks(seconds + 1.0)
    lines = [f'== core: CommandStream at {rate:.0f} Hz ({interpolation}) vs ActionQueue at '
             f'{TODAY_HZ:.0f} Hz, {seconds:.0f} s of synthetic chunks']
    # Grid figures (simulated time: exact, independent of this machine's load).
    stream = CommandStream(JOINTS, StreamConfig(rate, interpolation))
    stream.reset(0.0, _reference(np.zeros(1))[0])
    queue = ActionQueue(BlendConfig(strategy='ensemble', blend_window_s=0.1))
    pending = list(chunks)
    grid_q, today_q, today_hold = [], [], None
    ticks = int(seconds * rate)
    today_every = int(round(rate / TODAY_HZ))
    for n in range(ticks):
        now = n * period
        while pending and pending[0][1] <= now + 1e-12:
            stamp, _, rows = pending.pop(0)
            stream.add_uniform_chunk(rows, stamp, ROW_PERIOD_S, now)
            queue.add(rows, stamp, ROW_PERIOD_S, now=now)
        grid_q.append(stream.tick().positions)
        if n % today_every == 0:
            # Today: the command of a 20 Hz tick is the target one period ahead, held until
            # the next tick.
            action = queue.action_at(now + 1.0 / TODAY_HZ)
            today_hold = action if action is not None else today_hold
        today_q.append(today_hold if today_hold is not None else grid_q[0])
    # From 0.5 s on: both start at rest on a moving reference, and that first catch-up is
    # not what is compared.
    settled = int(0.5 * rate)
    dv, da = _per_period_changes(np.asarray(grid_q)[settled:], period)
    tv, ta = _per_period_changes(np.asarray(today_q)[settled:], period)
    lines.append(f'largest change per {1e3 * period:.0f} ms period: velocity {dv:.4f} rad/s '
                 f'(20 Hz steps: {tv:.4f}, ratio {tv / dv:.0f}x), acceleration {da:.2f} rad/s^2 '
                 f'(20 Hz steps: {ta:.2f}, ratio {ta / da:.0f}x)')
    # Paced loop (wall clock): what one Python thread achieves here.
    stream = CommandStream(JOINTS, StreamConfig(rate, interpolation))
    start = time.monotonic()
    stream.reset(0.0, _reference(np.zeros(1))[0])
    pending = list(chunks)
    stamps, work = [], []
    cpu0 = _cpu_seconds()
    deadline = start
    while True:
        deadline += period
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        t0 = time.monotonic()
        now = t0 - start
        if now > seconds:
            break
        while pending and pending[0][1] <= now:
            stamp, _, rows = pending.pop(0)
            stream.add_uniform_chunk(rows, stamp, ROW_PERIOD_S, now)
        stream.sample(now)
        stamps.append(t0)
        work.append(1e6 * (time.monotonic() - t0))
    cpu = (_cpu_seconds() - cpu0) / seconds
    lines.append(_jitter_line('paced loop (sleep-paced Python thread)', np.asarray(stamps),
                              rate, seconds))
    cost = percentiles(work)
    lines.append(f'work per tick (sample, and add_chunk when one arrives): p50 '
                 f'{cost["p50"]:.1f} us, p99 {cost["p99"]:.1f} us; CPU {100 * cpu:.1f} % of '
                 'one core')
    return lines


def bench_graph(seconds: float, rate: float, warmup_s: float) -> list[str]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String

    from noetra_ros.qos import RELIABLE

    lines = [f'== graph: policy_node -> safety_node -> stand-in driver (joint_states '
             f'{rate:.0f} Hz, 2 x 640x480 rgb8 at 30 Hz), {seconds:.0f} s measured after '
             f'{warmup_s:.0f} s warm-up']
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    rclpy.init()
    figures: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for label, command_rate in ((f'stream {rate:.0f} Hz', rate), ('today 20 Hz', 0.0)):
            figures[label] = {}
            lines += _graph_run(label, command_rate, rate, seconds, warmup_s, env, rclpy,
                                SingleThreadedExecutor, JointState, Float64MultiArray, String,
                                QoSProfile, ReliabilityPolicy, DurabilityPolicy, RELIABLE,
                                figures[label])
    finally:
        rclpy.shutdown()
    stream, today = figures.values()
    for key in ('policy', 'driver'):
        if key in stream and key in today:
            (sv, sa), (tv, ta) = stream[key], today[key]
            lines.append(f'ratio today / stream, {key} side (newest command each period): '
                         f'velocity change {tv / max(sv, 1e-12):.1f}x, acceleration change '
                         f'{ta / max(sa, 1e-12):.1f}x')
    return lines


def _graph_run(label, command_rate, rate, seconds, warmup_s, env, rclpy, Executor, JointState,
               Float64MultiArray, String, QoSProfile, ReliabilityPolicy, DurabilityPolicy,
               RELIABLE, figures) -> list[str]:
    from noetra_ros.ros_conversions import seconds_to_stamp

    period = 1.0 / rate
    remap = ['-r', 'forward_position_controller/commands:=safety/position_commands',
             '-r', 'gripper_position_controller/commands:=safety/gripper_commands']
    policy_args = ['-p', 'model_path:=models/pick_place_lrmate.onnx', '-p', 'mode:=async',
                   '-p', 'command_interface:=position', '-p', 'control_hz:=20.0',
                   '-p', f'command_rate_hz:={command_rate}', *remap]
    # auto_arm (simulation only): a hold (a late command, a stalled joint_states on this
    # shared machine) would otherwise end the run's motion; the holds are counted instead.
    safety_args = ['-p', f'period_s:={period}', '-p', 'arm_on_start:=true',
                   '-p', 'auto_arm:=true', '-p', 'profile:=industrial']
    procs = {
        'policy_node': subprocess.Popen(
            [sys.executable, '-m', 'noetra_ros.policy_node', '--ros-args', *policy_args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        'safety_node': subprocess.Popen(
            [sys.executable, '-m', 'noetra_ros.safety_node', '--ros-args', *safety_args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        'camera_publisher': subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), '--camera-publisher'],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    node = rclpy.create_node('bench_driver')
    fingers = ['gripper_left_finger_joint', 'gripper_right_finger_joint']
    state = {'q': np.array([0.0, 0.3, -0.3, 0.0, -1.2, 0.0]), 'recording': False}
    received: dict[str, list] = {'policy': [], 'driver': []}
    lock = threading.Lock()

    def record(key):
        def callback(msg):
            if state['recording']:
                with lock:
                    received[key].append((time.monotonic(), np.array(msg.data[:6])))
            if key == 'driver':
                state['q'] = np.array(msg.data[:6])  # ideal position loop
        return callback

    node.create_subscription(Float64MultiArray, 'safety/position_commands', record('policy'),
                             RELIABLE)
    from diagnostic_msgs.msg import DiagnosticStatus
    statuses: list[str] = []
    node.create_subscription(
        DiagnosticStatus, 'safety/status',
        lambda msg: statuses.append(msg.message) if state['recording'] else None,
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.create_subscription(Float64MultiArray, 'forward_position_controller/commands',
                             record('driver'), RELIABLE)
    pub_js = node.create_publisher(JointState, 'joint_states', RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_publisher(String, 'task/instruction', latched).publish(
        String(data='put the red cube in the left bin'))
    def now_s() -> float:
        return node.get_clock().now().nanoseconds * 1e-9

    def publish_joints():
        msg = JointState(name=list(JOINTS) + fingers,
                         position=[float(v) for v in state['q']] + [0.0, 0.0])
        msg.header.stamp = seconds_to_stamp(now_s())
        pub_js.publish(msg)

    node.create_timer(period, publish_joints)
    executor = Executor()
    executor.add_node(node)
    end = time.monotonic() + warmup_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    cpu0 = {name: _cpu_seconds(p.pid) for name, p in procs.items()}
    cpu0['stand-in driver (this process)'] = _cpu_seconds()
    state['recording'] = True
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        executor.spin_once(timeout_sec=0.01)
    state['recording'] = False
    elapsed = time.monotonic() - start
    cpu = {name: (_cpu_seconds(procs[name].pid) if name in procs else _cpu_seconds()) - c0
           for name, c0 in cpu0.items()}
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    executor.shutdown()
    node.destroy_node()
    lines = [f'-- {label}']
    for key, topic in (('policy', 'policy -> safety/position_commands'),
                       ('driver', 'safety -> forward_position_controller/commands')):
        samples = received[key]
        if len(samples) < 3:
            lines.append(f'{topic}: {len(samples)} commands (too few to measure)')
            continue
        stamps = np.array([s[0] for s in samples])
        q = np.array([s[1] for s in samples])
        target = rate if (key == 'driver' or command_rate) else TODAY_HZ
        lines.append(_jitter_line(topic, stamps, target, elapsed))
        # What a controller at `rate` sees: the newest command at each of its periods.
        grid = np.arange(stamps[0], stamps[-1], period)
        held = q[np.searchsorted(stamps, grid, side='right') - 1]
        dv, da = _per_period_changes(held, period)
        figures[key] = (dv, da)
        mv, ma = _per_period_changes(q, 1.0 / target)
        lines.append(f'  largest change per driver period (newest command each '
                     f'{1e3 * period:.0f} ms, as received): velocity {dv:.4f} rad/s, '
                     f'acceleration {da:.2f} rad/s^2; message to message (one '
                     f'{1e3 / target:.0f} ms period each, transport jitter left out): '
                     f'velocity {mv:.4f} rad/s, acceleration {ma:.2f} rad/s^2')
    holds = sum(1 for message in statuses if message.startswith('HOLDING'))
    reasons = sorted({m.split(': ', 1)[-1] for m in statuses if m.startswith('HOLDING')})
    lines.append(f'safety/status in the window: {holds} holds (re-armed by auto_arm) '
                 f'{reasons}')
    lines.append('CPU (% of one core): ' + ', '.join(
        f'{name} {100 * value / elapsed:.1f}' for name, value in cpu.items()))
    return lines


def publish_cameras(sim_time: bool = False) -> None:
    """--camera-publisher: two 640x480 rgb8 topics at 30 Hz until terminated (its own process,
    like a camera driver, so that image traffic never stalls the stand-in driver's loop).
    With --sim-time the frames are stamped with /clock (a graph on a simulator's clock); the
    30 Hz timer stays on the wall clock, as a camera's frame rate does."""
    import rclpy
    from rclpy.clock import Clock, ClockType
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from noetra_ros.qos import RELIABLE
    from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp

    rclpy.init()
    node = rclpy.create_node('bench_cameras', parameter_overrides=[
        Parameter('use_sim_time', value=sim_time)])
    rng = np.random.default_rng(1)
    cameras = ('workspace_camera', 'wrist_camera')
    pubs = {c: node.create_publisher(Image, f'{c}/image_raw', RELIABLE) for c in cameras}
    frames = {c: numpy_to_image(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), 'rgb8',
                                seconds_to_stamp(0.0), f'{c}_optical_frame') for c in cameras}

    def publish() -> None:
        stamp = seconds_to_stamp(node.get_clock().now().nanoseconds * 1e-9)
        for camera, msg in frames.items():
            msg.header.stamp = stamp
            pubs[camera].publish(msg)

    node.create_timer(1.0 / 30.0, publish, clock=Clock(clock_type=ClockType.STEADY_TIME))
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=15.0)
    parser.add_argument('--rate', type=float, default=250.0, help='driver rate (Hz)')
    parser.add_argument('--interpolation', choices=['cubic', 'quintic'], default='cubic')
    parser.add_argument('--warmup', type=float, default=6.0, help='graph warm-up (s)')
    parser.add_argument('--skip-graph', action='store_true', help='core part only')
    parser.add_argument('--camera-publisher', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--sim-time', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.camera_publisher:
        publish_cameras(args.sim_time)
        return 0
    lines = bench_core(args.seconds, args.rate, args.interpolation)
    if not args.skip_graph:
        lines += bench_graph(args.seconds, args.rate, args.warmup)
    print(f'bench_command_stream: {os.cpu_count()} CPUs, python {sys.version.split()[0]}')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
