#!/usr/bin/env python3
"""Benchmark: policy_node end-to-end latency vs bare onnxruntime inference on the same inputs.

    python tools/bench_policy_node.py [--model models/pick_place_lrmate.onnx] [--seconds 20]
        [--mode async|lockstep]

A feeder in its own process (as a cell's camera and arm drivers are) publishes camera frames
(rendered once from a seeded SimWorld), joint_states and the instruction at --rate Hz with the
same stamp, joint_states last. policy_node runs alone in this process (real rclpy + Fast DDS)
and answers with JointTrajectory commands. Reported:
- bare: PolicyRuntime.infer on the same tensors, back to back and paced at --rate (one inference
  per observation period, as the node runs it: between two inferences the CPU's caches and clock
  go to other work, which the back-to-back figure never pays); and build_inputs + infer;
- node internal: the node's own figures (newest input receipt -> chunk queued / -> publish);
- node end-to-end: feeder publish of joint_states -> feeder receipt of the command answering it
  (one host clock; includes two DDS hops, alignment, pre-processing, inference, blending).
The overhead ratios divide node p50s by the bare infer p50s. Percentiles, never assertions.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def render_inputs(model: str):
    """The seeded scene's camera frames at the contract's sizes, its joint positions and names,
    and its instruction (the same in the node's process and the feeder's)."""
    from dataclasses import replace

    from noetra_ros.core.policy.contract import (
        is_contract_file, load_contract, load_contract_file)
    from noetra_ros.core.sim.world import default_cameras, SimWorld, WorldConfig

    # A multi-graph model (contract v2) is given by its contract file, one ONNX by its path.
    contract = (load_contract_file(model).contract if is_contract_file(model)
                else load_contract(model))
    cams = {c.name: c for c in default_cameras()}
    sizes = {spec.camera: (spec.width, spec.height) for spec in contract.image_inputs}
    with SimWorld(WorldConfig(cameras=tuple(
            replace(cams[name], width=w, height=h) for name, (w, h) in sizes.items()))) as world:
        episode = world.reset(10_000)
        frames = {name: world.render(name) for name in sizes}
        q, _, _ = world.joint_state()
        names = list(world.joint_names) + list(world.gripper_joint_names)
    return frames, q, names, episode.instruction


def feeder(args: argparse.Namespace) -> int:
    """The feeder process: publishes for --seconds, then prints the end-to-end latencies (ms)."""
    import json

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp

    frames, q, names, instruction = render_inputs(args.model)
    rclpy.init()
    node = rclpy.create_node('bench_feeder')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_js = node.create_publisher(JointState, 'joint_states', qos)
    pub_img = {n: node.create_publisher(Image, f'{n}/image_raw', qos) for n in frames}
    pub_instr = node.create_publisher(String, 'task/instruction', latched)
    sent: dict[int, float] = {}
    e2e: list[float] = []

    def on_command(msg: JointTrajectory) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        # A command answers the newest observation at or before its own control time.
        done = time.perf_counter()
        latest = max((s for s in sent if s <= stamp), default=None)
        if latest is not None and sent[latest] > 0:
            e2e.append(1e3 * (done - sent[latest]))
            sent[latest] = -1.0  # count each observation once
    node.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                             on_command, qos)
    pub_instr.publish(String(data=instruction))
    deadline = time.monotonic() + 30.0
    while pub_js.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for _ in range(20):  # let the other endpoints match too
        rclpy.spin_once(node, timeout_sec=0.05)
    period = 1.0 / args.rate
    end = time.monotonic() + args.seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        now = node.get_clock().now().nanoseconds
        stamp = seconds_to_stamp(now * 1e-9)
        for name, frame in frames.items():
            pub_img[name].publish(numpy_to_image(frame, 'rgb8', stamp, f'{name}_optical_frame'))
        js = JointState(name=names, position=[float(v) for v in q])
        js.header.stamp = stamp
        sent[now] = time.perf_counter()
        pub_js.publish(js)
        next_tick += period
        while time.monotonic() < next_tick:
            rclpy.spin_once(node, timeout_sec=max(0.0, next_tick - time.monotonic()))
    drain = time.monotonic() + 0.5
    while time.monotonic() < drain:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps(e2e), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(ROOT / 'models' / 'pick_place_lrmate.onnx'))
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=20.0, help='observation rate (Hz)')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime intra-op threads')
    parser.add_argument('--mode', choices=['async', 'lockstep'], default='async',
                        help='async: commands at the control tick; lockstep: one per joint_states')
    parser.add_argument('--feeder', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
    if args.feeder:
        return feeder(args)

    import json
    import subprocess

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.core.stats import percentiles
    from noetra_ros.policy_node import PolicyNode

    runtime = PolicyRuntime(args.model, intra_op_threads=args.threads, inter_op_threads=1)
    frames, q, names, instruction = render_inputs(args.model)

    # Bare inference on the same inputs: back to back, then paced at the observation rate.
    images = {n: ImageFrame(f.tobytes(), f.shape[1], f.shape[0], 'rgb8') for n, f in frames.items()}
    joints = dict(zip(names, q))

    def build():
        return runtime.build_inputs(images, joints, gripper_position=float(q[-1]),
                                    wrench=[0.0] * 6, instruction=instruction)
    inputs = build()
    bare, full, paced = [], [], []
    for _ in range(200):
        t0 = time.perf_counter()
        runtime.infer(inputs)
        t1 = time.perf_counter()
        runtime.infer(build())
        t2 = time.perf_counter()
        bare.append(1e3 * (t1 - t0))
        full.append(1e3 * (t2 - t1))
    period = 1.0 / args.rate
    for _ in range(int(min(args.seconds, 10.0) * args.rate)):
        t0 = time.perf_counter()
        runtime.infer(inputs)
        paced.append(1e3 * (time.perf_counter() - t0))
        time.sleep(max(0.0, period - (time.perf_counter() - t0)))
    runtime.close()

    rclpy.init(args=['--ros-args', '-p', f'model_path:={args.model}',
                     '-p', f'intra_op_threads:={args.threads}',
                     '-p', f'control_hz:={float(args.rate)}', '-p', f'mode:={args.mode}'])
    policy = PolicyNode()
    executor = SingleThreadedExecutor()
    executor.add_node(policy)
    feeding = subprocess.Popen(
        [sys.executable, __file__, '--feeder', '--model', args.model, '--seconds',
         str(args.seconds), '--rate', str(args.rate)], stdout=subprocess.PIPE, text=True)
    while feeding.poll() is None:
        executor.spin_once(timeout_sec=0.05)
    e2e = json.loads(feeding.stdout.read().strip().splitlines()[-1])
    stats = policy.stats()
    executor.shutdown()
    policy._release()
    policy.destroy_node()
    rclpy.try_shutdown()

    def row(label: str, p: dict) -> str:
        return (f'{label:<62} p50 {p["p50"]:7.3f}  p90 {p["p90"]:7.3f}  p99 {p["p99"]:7.3f}'
                f'  (n={p["n"]})')
    b, f, pb, n = percentiles(bare), percentiles(full), percentiles(paced), percentiles(e2e)
    print(f'model {Path(args.model).name}, {args.rate:.0f} Hz observations, {args.mode} mode, '
          f'{args.threads} intra-op thread(s), CPU; feeder in its own process')
    print(row('bare onnxruntime infer, back to back (ms)', b))
    print(row(f'bare onnxruntime infer, one per {1e3 * period:.0f} ms (ms)', pb))
    print(row('bare build_inputs + infer, back to back (ms)', f))
    print(row('policy_node internal: pre-processing (ms)', stats['preprocess_ms']))
    print(row('policy_node internal: onnxruntime inference (ms)', stats['inference_ms']))
    print(row('policy_node internal: newest input -> chunk queued (ms)', stats['plan_ms']))
    print(row('policy_node internal: newest input -> publish (ms)', stats['end_to_end_ms']))
    print(row('policy_node end-to-end over DDS: joint_states -> command (ms)', n))
    plan = stats['plan_ms']
    print(f'overhead ratio, inference path (chunk queued p50 / bare infer p50): '
          f'{plan["p50"] / b["p50"]:.2f}x back to back, {plan["p50"] / pb["p50"]:.2f}x paced')
    print(f'overhead ratio, end-to-end over DDS (p50 / bare infer p50): {n["p50"] / b["p50"]:.2f}x '
          f'back to back, {n["p50"] / pb["p50"]:.2f}x paced'
          + ('  [async: includes waiting for the next control tick, mean half a period]'
             if args.mode == 'async' else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
