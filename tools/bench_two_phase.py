#!/usr/bin/env python3
"""Benchmark: what a two-phase policy (vision-language encoder -> KV cache -> action expert run
for 10 flow-matching steps) costs on this CPU, and which control scheme that latency allows.

    python tools/build_two_phase_model.py --out /tmp/two_phase      # random weights, ~30 s
    nice -n 10 python tools/bench_two_phase.py --model /tmp/two_phase/policy.contract.yaml \\
        [--chunks 20] [--threads 1 2] [--provider cpu] [--node] \
        [--write docs/results/bench_two_phase.txt]

Each thread count runs in a fresh process (so its memory figures are its own) that loads the
model through PolicyRuntime exactly as policy_node does (contract file as model_path, same
provider, intra-op threads, inter_op_threads 1, the load-time warm-up), then builds inputs from
an observation (two 128x96 rgb8 camera frames letterboxed to 224x224 uint8, the joint state, an
instruction through the tokenizer.json) and runs --chunks inferences. Reported per chunk:
latency p50 / p99 of the encoder stage, of each denoise step, of the whole pipeline and of
input building; process RSS before loading, after loading and its peak. From the measured
latency: how many 0.05 s steps execute during one inference, whether chunks overlap, and the
loop settings that follow. --node also starts policy_node with the contract file as model_path
(real rclpy, a private ROS_DOMAIN_ID), feeds it for a few seconds and reports what it did - a
smoke test, not timed. Percentiles, never assertions.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOINTS = [f'joint_{i}' for i in range(1, 7)]
Q = [0.1, 0.4, -0.2, 0.0, -1.1, 0.3]
INSTRUCTION = 'pick the red cube and put it in the left bin'


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB (/proc/self/status)."""
    fields = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'VmHWM'):
            fields[key] = int(value.split()[0]) / 1024.0
    return fields['VmRSS'], fields['VmHWM']


def observation(contract):
    """Camera frames at the simulated cameras' size (128x96, so letterboxing runs), the joint
    state and the instruction."""
    import numpy as np

    from noetra_ros.core.policy.preprocess import ImageFrame

    rng = np.random.default_rng(0)
    frames = {camera: ImageFrame(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8).tobytes(),
                                 128, 96, 'rgb8', 128 * 3) for camera in contract.cameras}
    return frames, dict(zip(JOINTS, Q))


def worker(model: str, threads: int, chunks: int, provider: str) -> dict:
    """One thread count, in this process: load, build inputs, infer `chunks` times."""
    import numpy as np
    import onnxruntime  # noqa: F401 - counted in the 'before load' memory, as in policy_node

    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.core.stats import percentiles

    before, _ = rss_mb()
    start = time.perf_counter()
    runtime = PolicyRuntime(model, provider, intra_op_threads=threads, inter_op_threads=1)
    load_s = time.perf_counter() - start
    after, _ = rss_mb()
    frames, joints = observation(runtime.contract)
    totals, encoder, steps, preprocess = [], [], [], []
    by_step: list[list[float]] = []
    for _ in range(chunks):
        inputs = runtime.build_inputs(frames, joints, gripper_position=0.01,
                                      instruction=INSTRUCTION)
        chunk = runtime.infer(inputs)
        preprocess.append(1e3 * inputs.preprocess_time_s)
        totals.append(1e3 * chunk.inference_time_s)
        for stage in chunk.stages:
            if stage.step_seconds:
                steps.extend(1e3 * s for s in stage.step_seconds)
                by_step.append([1e3 * s for s in stage.step_seconds])
            else:
                encoder.append(1e3 * stage.seconds)
    _, peak = rss_mb()
    # What refusing NaN costs: a finite check of a KV cache the size the encoder hands over
    # (its pages touched first, as the encoder's output's are), median of 20.
    kv = np.ones((12, 1, 8, 441, 64), np.float32)
    checks = []
    for _ in range(20):
        check_start = time.perf_counter()
        np.isfinite(kv).all()
        checks.append(time.perf_counter() - check_start)
    check_ms = 1e3 * float(np.median(checks))
    per_step = [float(np.median(column)) for column in zip(*by_step)]
    active = runtime.provider
    runtime.close()
    return {'threads': threads, 'chunks': chunks, 'provider': active, 'load_s': load_s,
            'rss_before_mb': before, 'rss_after_load_mb': after, 'rss_peak_mb': peak,
            'total_ms': percentiles(totals, (50, 99)), 'encoder_ms': percentiles(encoder, (50, 99)),
            'step_ms': percentiles(steps, (50, 99)), 'step_p50_by_index_ms': per_step,
            'preprocess_ms': percentiles(preprocess, (50, 99)), 'kv_finite_check_ms': check_ms}


def control_scheme(latency_ms: float, chunk: int, period_s: float) -> list[str]:
    """What the loop can do with inferences of `latency_ms` and chunks of `chunk` rows every
    `period_s` (async mode: one inference in flight, the next starts when it lands)."""
    latency = latency_ms / 1e3
    horizon = chunk * period_s
    delay = math.ceil(latency / period_s)
    # Back-to-back inferences: chunk i (observed at t) lands at t + L and is followed until the
    # next lands at t + 2L; it covers up to t + H. Overlap H - 2L: > 0 is continuous motion.
    overlap = horizon - 2.0 * latency
    lines = [f'chunk horizon {chunk} x {period_s:.3f} s = {horizon:.2f} s; inference '
             f'{latency:.2f} s -> {delay} of {chunk} steps execute during it '
             f'(inference_delay_steps {delay}); a new chunk every {latency:.2f} s covers '
             f'{horizon - latency:.2f} s after it lands; overlap with the next: {overlap:+.2f} s']
    if overlap > 0.0:
        window = min(overlap, 0.5)
        lines.append(
            f'  -> continuous: async mode, blend rtc (rtc_horizon_s <= {window:.2f}) or '
            f'crossfade / ensemble with blend_window_s <= {window:.2f}; for a lockstep '
            f'evaluation of this setting: inference_delay_steps {delay}, replan_steps {delay}; '
            f'the first {delay} rows of every chunk are never executed (inpaint_prefix gives '
            'them the executing rows)')
    else:
        stretch = 2.0 * latency / chunk
        lines.append(
            f'  -> NOT continuous: the queue runs dry for {-overlap:.2f} s of every '
            f'{latency:.2f} s (the robot holds, stop-and-go). Options: slow the chunk down '
            f'(step_period_s >= {stretch:.3f} s, a horizon of {2 * latency:.2f} s, motion '
            f'{stretch / period_s:.2f}x slower), cut the inference below {horizon / 2:.2f} s '
            'less a blend window (fewer image tokens, smaller encoder, int8), or a GPU')
    return lines


def node_smoke(model: str, threads: int, seconds: float, provider: str) -> list[str]:
    """policy_node with the contract file as model_path: configure, activate, a few seconds of
    observations; what it logged and did (not timed)."""
    os.environ['ROS_DOMAIN_ID'] = str(180 + os.getpid() % 40)
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    import numpy as np

    from noetra_ros.policy_node import PolicyNode
    from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp

    rclpy.init(args=['--ros-args', '-p', f'model_path:={model}',
                     '-p', f'intra_op_threads:={threads}',
                     '-p', f'execution_provider:={provider}'])
    start = time.perf_counter()
    policy = PolicyNode()
    configure_s = time.perf_counter() - start
    feeder = rclpy.create_node('two_phase_feeder')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    cameras = policy.runtime.contract.cameras
    pub_images = {c: feeder.create_publisher(Image, f'{c}/image_raw', qos) for c in cameras}
    pub_joints = feeder.create_publisher(JointState, 'joint_states', qos)
    feeder.create_publisher(String, 'task/instruction', latched).publish(
        String(data=INSTRUCTION))
    commands = []
    feeder.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                               commands.append, qos)
    executor = SingleThreadedExecutor()
    for node in (policy, feeder):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)   # until shutdown()
    spinner.start()
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stamp = seconds_to_stamp(policy.get_clock().now().nanoseconds * 1e-9)
        for camera, publisher in pub_images.items():
            publisher.publish(numpy_to_image(frame, 'rgb8', stamp, f'{camera}_optical_frame'))
        state = JointState(name=JOINTS + ['gripper_left_finger_joint',
                                          'gripper_right_finger_joint'],
                           position=Q + [0.01, 0.01])
        state.header.stamp = stamp
        pub_joints.publish(state)
        time.sleep(0.05)
    values = policy.diagnostic_values()
    executor.shutdown()
    spinner.join()
    policy._release()
    policy.destroy_node()
    feeder.destroy_node()
    rclpy.try_shutdown()
    stages = ', '.join(f'{k} {float(values[k]):.0f}' for k in sorted(values)
                       if k.startswith('stage_') and k.endswith('_p50'))
    return [f'policy_node model_path:={model} (contract file only, no code): configured and '
            f'active in {configure_s:.1f} s (load, load-time warm-up, its own 3 warm-ups)',
            f'  {seconds:.0f} s of observations at 20 Hz: {values["inferences"]} chunks, '
            f'{len(commands)} commands, inference_errors {values["inference_errors"]}, '
            f'no_command_stale {values["no_command_stale"]}',
            f'  diagnostics (ms, p50): {stages}']


def report(results: list[dict], contract, node_lines: list[str]) -> str:
    action = contract.action
    info = contract.info
    load = os.getloadavg()[0]
    shared = ' (other work shared the cores)' if load > (os.cpu_count() or 1) else ''
    out = ['# tools/bench_two_phase.py: two-phase policy cost on this CPU',
           f'# model: {contract.name} ({info.get("weights")}); encoder '
           f'{info.get("parameters_encoder_total", 0) / 1e6:.1f} M parameters, action expert '
           f'{info.get("parameters_expert_total", 0) / 1e6:.1f} M; chunk {action.chunk_length} '
           f'x {action.size} (width {action.model_width}), {contract.pipeline[-1].steps} '
           'flow-matching steps',
           f'# machine: {os.cpu_count()} cores ({_cpu_name()}), load average {load:.1f} during '
           f'the run{shared}; onnxruntime {results[0]["provider"]}, inter_op_threads 1', '']
    for r in results:
        total, encoder, step = r['total_ms'], r['encoder_ms'], r['step_ms']
        out += [f'intra_op_threads {r["threads"]} ({r["chunks"]} chunks; p99 of so few is '
                'close to the max)',
                f'  chunk (whole pipeline)  p50 {total["p50"]:7.0f} ms  p99 {total["p99"]:7.0f} ms',
                f'  encoder stage           p50 {encoder["p50"]:7.0f} ms  p99 '
                f'{encoder["p99"]:7.0f} ms',
                f'  one denoise step        p50 {step["p50"]:7.1f} ms  p99 {step["p99"]:7.1f} ms'
                f'  (p50 by step: {", ".join(f"{v:.0f}" for v in r["step_p50_by_index_ms"])})',
                f'  input building          p50 {r["preprocess_ms"]["p50"]:7.1f} ms (letterbox 2 '
                'cameras, tokenizer)',
                f'  memory (RSS)            before load {r["rss_before_mb"]:.0f} MB, after load '
                f'{r["rss_after_load_mb"]:.0f} MB, peak {r["rss_peak_mb"]:.0f} MB; load '
                f'{r["load_s"]:.1f} s',
                f'  NaN refusal: finite check of the 10.8 MB KV cache {r["kv_finite_check_ms"]:.1f}'
                ' ms per chunk', '']
    best = min(results, key=lambda r: r['total_ms']['p50'])
    out.append(f'control scheme (fastest setting: intra_op_threads {best["threads"]}):')
    for label in ('p50', 'p99'):
        lines = control_scheme(best['total_ms'][label], action.chunk_length,
                               action.step_period_s)
        out += [f'  {label}: {lines[0]}'] + [f'  {line}' for line in lines[1:]]
    if node_lines:
        out += ['', 'policy_node smoke test (not timed):'] + node_lines
    return '\n'.join(out) + '\n'


def _cpu_name() -> str:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('model name'):
            return line.split(':', 1)[1].strip()
    return 'unknown CPU'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='/tmp/two_phase/policy.contract.yaml')
    parser.add_argument('--chunks', type=int, default=20)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--provider', default='cpu', help='cpu, cuda, tensorrt or openvino')
    parser.add_argument('--node', action='store_true', help='also start policy_node with it')
    parser.add_argument('--node-seconds', type=float, default=12.0)
    parser.add_argument('--write', type=Path, help='write the report to this file too')
    parser.add_argument('--worker', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.model, args.worker, args.chunks, args.provider)))
        return 0
    results = []
    for threads in args.threads:
        done = subprocess.run([sys.executable, __file__, '--model', args.model, '--chunks',
                               str(args.chunks), '--provider', args.provider,
                               '--worker', str(threads)],
                              check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f'intra_op_threads {threads}: p50 {results[-1]["total_ms"]["p50"]:.0f} ms',
              flush=True)
    node_lines = (node_smoke(args.model, min(args.threads), args.node_seconds, args.provider)
                  if args.node else [])
    from noetra_ros.core.policy.contract import load_contract_file
    text = report(results, load_contract_file(args.model).contract, node_lines)
    print(text)
    if args.write:
        args.write.write_text(text, encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
