#!/usr/bin/env python3
"""Benchmark: policy_node end-to-end latency vs bare onnxruntime inference on the same inputs.

    python tools/bench_policy_node.py [--model models/pick_place_lrmate.onnx] [--seconds 20]

A feeder node publishes camera frames (rendered once from a seeded SimWorld), joint_states and the
instruction at --rate Hz with the same stamp, joint_states last. policy_node (async mode, real
rclpy + Fast DDS, separate executor thread) answers with JointTrajectory commands. Reported:
- node end-to-end: feeder publish of joint_states -> feeder receipt of the command answering it
  (same process clock; includes two DDS hops, alignment, pre-processing, inference, blending);
- node internal: the node's own figure (newest input receipt -> command publish);
- bare: PolicyRuntime.infer on the same tensors, and build_inputs + infer.
The overhead ratio is node end-to-end p50 / bare infer p50. Percentiles, never assertions.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(ROOT / 'models' / 'pick_place_lrmate.onnx'))
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=20.0, help='observation rate (Hz)')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime intra-op threads')
    parser.add_argument('--mode', choices=['async', 'lockstep'], default='async',
                        help='async: commands at the control tick; lockstep: one per joint_states')
    args = parser.parse_args()
    os.environ.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime
    from noetra_ros.core.sim.world import default_cameras, SimWorld, WorldConfig
    from noetra_ros.core.stats import percentiles
    from noetra_ros.policy_node import PolicyNode
    from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp

    runtime = PolicyRuntime(args.model, intra_op_threads=args.threads, inter_op_threads=1)
    contract = runtime.contract
    cams = {c.name: c for c in default_cameras()}
    sizes = {spec.camera: (spec.width, spec.height) for spec in contract.image_inputs}
    from dataclasses import replace
    world = SimWorld(WorldConfig(cameras=tuple(
        replace(cams[name], width=w, height=h) for name, (w, h) in sizes.items())))
    episode = world.reset(10_000)
    frames = {name: world.render(name) for name in sizes}
    q, _, _ = world.joint_state()
    names = list(world.joint_names) + list(world.gripper_joint_names)
    world.close()

    # Bare inference on the same inputs.
    images = {n: ImageFrame(f.tobytes(), f.shape[1], f.shape[0], 'rgb8') for n, f in frames.items()}
    joints = dict(zip(names, q))
    inputs = runtime.build_inputs(images, joints, gripper_position=float(q[-1]),
                                  wrench=[0.0] * 6, instruction=episode.instruction)
    bare, full = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        runtime.infer(inputs)
        t1 = time.perf_counter()
        runtime.infer(runtime.build_inputs(images, joints, gripper_position=float(q[-1]),
                                           wrench=[0.0] * 6, instruction=episode.instruction))
        t2 = time.perf_counter()
        bare.append(1e3 * (t1 - t0))
        full.append(1e3 * (t2 - t1))
    runtime.close()

    rclpy.init(args=['--ros-args', '-p', f'model_path:={args.model}',
                     '-p', f'intra_op_threads:={args.threads}',
                     '-p', f'control_hz:={float(args.rate)}', '-p', f'mode:={args.mode}'])
    policy = PolicyNode()
    feeder = rclpy.create_node('bench_feeder')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_js = feeder.create_publisher(JointState, 'joint_states', qos)
    pub_img = {n: feeder.create_publisher(Image, f'{n}/image_raw', qos) for n in frames}
    pub_instr = feeder.create_publisher(String, 'task/instruction', latched)
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
    feeder.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                               on_command, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(policy)
    executor.add_node(feeder)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    pub_instr.publish(String(data=episode.instruction))
    time.sleep(1.0)  # discovery
    period = 1.0 / args.rate
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        now = policy.get_clock().now().nanoseconds
        stamp = seconds_to_stamp(now * 1e-9)
        for name, frame in frames.items():
            pub_img[name].publish(numpy_to_image(frame, 'rgb8', stamp, f'{name}_optical_frame'))
        js = JointState(name=names, position=[float(v) for v in q])
        js.header.stamp = stamp
        sent[now] = time.perf_counter()
        pub_js.publish(js)
        time.sleep(period)
    time.sleep(0.5)
    stats = policy.stats()
    stop.set()
    spinner.join()
    executor.shutdown()
    policy._release()
    policy.destroy_node()
    feeder.destroy_node()
    rclpy.try_shutdown()

    def row(label: str, p: dict) -> str:
        return (f'{label:<52} p50 {p["p50"]:7.3f}  p90 {p["p90"]:7.3f}  p99 {p["p99"]:7.3f}'
                f'  (n={p["n"]})')
    b, f, n = percentiles(bare), percentiles(full), percentiles(e2e)
    print(f'model {Path(args.model).name}, {args.rate:.0f} Hz observations, {args.mode} mode, '
          f'{args.threads} intra-op thread(s), CPU')
    print(row('bare onnxruntime infer (ms)', b))
    print(row('bare build_inputs + infer (ms)', f))
    print(row('policy_node internal: newest input -> chunk queued (ms)', stats['plan_ms']))
    print(row('policy_node internal: newest input -> publish (ms)', stats['end_to_end_ms']))
    print(row('policy_node end-to-end over DDS: joint_states -> command (ms)', n))
    plan = stats['plan_ms']
    print(f'overhead ratio, inference path (chunk queued p50 / bare infer p50): '
          f'{plan["p50"] / b["p50"]:.2f}x')
    print(f'overhead ratio, end-to-end over DDS (p50 / bare infer p50): {n["p50"] / b["p50"]:.2f}x'
          + ('  [async: includes waiting for the next control tick, mean half a period]'
             if args.mode == 'async' else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
