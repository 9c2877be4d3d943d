"""Benchmark of recorder_node: two 640x480 rgb8 cameras at 30 Hz + joint_states at 250 Hz.

    python tools/bench_recorder.py --seconds 20 --formats raw,jpeg \
        --out docs/results/bench_recorder.txt

Each publisher is its own process (real Fast DDS, reliable keep-last 10, as the sim publishes);
the recorder runs as `noetra run` starts it. Reported per image format: messages published vs
written (the bag read back with rosbags: dropped = published - written), the recorder
process's CPU (user + system time from /proc over the publishing window, in % of one core),
and the bag's size per minute of recording. The camera images are a smooth colour pattern
that moves every frame plus +-4 levels of noise (compressible like a camera image, not like
pure noise).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / 'test')]  # this checkout, not an installed copy

from ros_harness import DomainLease, NodeProcess, ros_env  # noqa: E402

PUBLISHER = '''
import sys, time, numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
kind, seconds = sys.argv[1], float(sys.argv[2])
rclpy.init()
node = rclpy.create_node('bench_' + kind.replace('/', '_'))
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
camera = kind != 'joint_states'
pub = node.create_publisher(Image if camera else JointState,
                            kind + '/image_raw' if camera else 'joint_states', qos)
while pub.get_subscription_count() == 0:
    rclpy.spin_once(node, timeout_sec=0.05)
time.sleep(1.0)
rate = 30.0 if camera else 250.0
rng = np.random.default_rng(0)
y, x = np.mgrid[0:480, 0:640]
noise = rng.integers(-4, 5, (480, 640, 3))
count, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    t = count / rate
    if camera:
        base = np.stack([(x + 40 * t) % 256, (y + 25 * t) % 256, (x + y) % 256], axis=2)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        msg = Image(height=480, width=640, encoding='rgb8', step=1920, data=pixels.tobytes())
    else:
        msg = JointState(name=[f'joint_{i}' for i in range(1, 7)],
                         position=[float(np.sin(t + i)) for i in range(6)])
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    count += 1
    time.sleep(max(0.0, start + count / rate - time.monotonic()))
time.sleep(1.0)
print(count)
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run(image_format: str, seconds: float, work: Path) -> dict:
    from rosbags.highlevel import AnyReader
    out = work / image_format
    params = {'output_dir': str(out), 'cell': 'bench', 'episodes': 'run',
              'image_format': image_format, 'startup_wait_s': 0.0,
              'topics': ['/cam_a/image_raw', '/cam_b/image_raw', '/joint_states']}
    recorder = NodeProcess.for_node('recorder', 'recorder_node', params, work / 'logs')
    with recorder:
        recorder.wait_log('one bag per run')
        pubs = [subprocess.Popen([sys.executable, '-c', PUBLISHER, kind, str(seconds)],
                                 stdout=subprocess.PIPE, text=True, env=ros_env())
                for kind in ('cam_a', 'cam_b', 'joint_states')]
        time.sleep(1.0)  # the publishers wait for the recorder, then 1 s more
        cpu_start, wall_start = cpu_seconds(recorder.proc.pid), time.monotonic()
        published = [int(p.communicate(timeout=seconds + 60)[0].strip()) for p in pubs]
        cpu = cpu_seconds(recorder.proc.pid) - cpu_start
        wall = time.monotonic() - wall_start
        recorder.stop(timeout_s=30)
    bag = next((out / 'recording').iterdir())
    with AnyReader([bag]) as reader:
        written = {c.topic: c.msgcount for c in reader.connections}
        duration_s = (reader.end_time - reader.start_time) * 1e-9
    size = sum(f.stat().st_size for f in bag.iterdir())
    return {'format': image_format, 'published': dict(zip(('cam_a', 'cam_b', 'joint_states'),
                                                          published)),
            'written': written, 'cpu_percent': 100 * cpu / wall,
            'mb_per_min': size / 1e6 / (duration_s / 60), 'bag_mb': size / 1e6,
            'duration_s': duration_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--formats', default='raw,jpeg')
    parser.add_argument('--out', help='also write the table here')
    args = parser.parse_args()
    lease = DomainLease.acquire()
    os.environ['ROS_DOMAIN_ID'] = str(lease.domain_id)
    lines = [f'recorder_node: 2 cameras 640x480 rgb8 at 30 Hz + joint_states at 250 Hz, '
             f'{args.seconds:.0f} s, publishers in 3 processes, {os.cpu_count()} cores '
             f'(shared with other jobs)',
             f'{"images":<6} {"topic":<18} {"published":>9} {"written":>8} {"dropped":>8}']
    with tempfile.TemporaryDirectory() as tmp:
        for image_format in args.formats.split(','):
            result = run(image_format, args.seconds, Path(tmp))
            names = {'cam_a': '/cam_a/image_raw', 'cam_b': '/cam_b/image_raw',
                     'joint_states': '/joint_states'}
            for key, published in result['published'].items():
                topic = names[key]
                written = result['written'].get(topic, 0) + result['written'].get(
                    topic + '/compressed', 0)
                lines.append(f'{image_format:<6} {topic:<18} {published:>9} {written:>8} '
                             f'{published - written:>8}')
            lines.append(f'{image_format:<6} recorder CPU {result["cpu_percent"]:.0f} % of one '
                         f'core; bag {result["bag_mb"]:.1f} MB for {result["duration_s"]:.1f} s '
                         f'= {result["mb_per_min"]:.0f} MB per minute')
            print('\n'.join(lines[-4:]), flush=True)
    lease.release()
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        Path(args.out).write_text(f'$ python tools/bench_recorder.py --seconds {args.seconds:g} '
                                  f'--formats {args.formats}\n' + text)


if __name__ == '__main__':
    main()
