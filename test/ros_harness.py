"""Utilities for tests that talk to noetra_ros nodes over real rclpy and real DDS.

Nothing here is mocked: nodes run either in the test process (one SingleThreadedExecutor shared
with a probe node, still through the RMW / DDS) or as child processes started exactly like
`noetra run` starts them (NodeSpec.command). Shared by the node, closed-loop and fault-injection
suites.

- DomainLease: a ROS_DOMAIN_ID nobody else on this machine uses while the lease is held (lock
  files), so parallel test runs cannot hear each other.
- RosSession: rclpy's default context + executor for in-process nodes; per-node parameters are
  passed as a global `--params-file` (nodes such as SimNode take no constructor arguments).
- Probe: an rclpy node that records topics (with wall receipt time) and publishes test input.
- NodeProcess: one node executable as a child process with its log in a file; always stopped.
- CpuBurner: busy-loop processes that load the CPU while a test runs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
import atexit
import errno
import fcntl
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Fast DDS maps a domain to UDP ports 7400 + 250 * id, valid up to id 232. The low ids are what
# people pick by hand (0 is the default), so tests lease from the upper part of the range.
DOMAIN_IDS = range(101, 233)
LOCK_DIR = Path(tempfile.gettempdir()) / 'noetra_ros_test_domains'
DEFAULT_TIMEOUT_S = 20.0
# Every child process still running; killed at interpreter exit if a test could not stop it.
_LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        _kill_group(proc)


def kill_leftovers_on_domain(domain_id: int) -> list[str]:
    """Kill the children still running on `domain_id` (a test that did not stop its nodes);
    returns their command lines. Called before a domain's lease is released: nodes that outlive
    it would join the graph of whichever test leases the domain next."""
    leaked = []
    for proc in list(_LIVE):
        if getattr(proc, 'ros_domain_id', None) == str(domain_id) and proc.poll() is None:
            leaked.append(' '.join(map(str, proc.args)))
            _kill_group(proc)
    return leaked


# --------------------------------------------------------------------------- domain ids
class DomainLease:
    """Exclusive use of one ROS_DOMAIN_ID on this machine, held by an flock'ed lock file.

    The lock dies with the process, so a crashed run never leaks its domain.
    """

    def __init__(self, domain_id: int, handle) -> None:
        self.domain_id = domain_id
        self._handle = handle

    @classmethod
    def acquire(cls, ids: Iterable[int] = DOMAIN_IDS) -> DomainLease:
        """Lease the first free id, starting at a pid-dependent offset to spread parallel runs."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        ids = list(ids)
        start = (os.getpid() * 7919 + time.monotonic_ns()) % len(ids)
        for domain_id in ids[start:] + ids[:start]:
            handle = open(LOCK_DIR / f'{domain_id}.lock', 'a+')
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    continue
                raise
            return cls(domain_id, handle)
        raise RuntimeError(f'no free ROS_DOMAIN_ID in {ids[0]}..{ids[-1]} (locks in {LOCK_DIR})')

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def ros_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child node: this process's (ROS_DOMAIN_ID included), unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    # The child must import this source tree, wherever pytest was started from.
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH', '')]))
    env.update(extra or {})
    return env


def write_params_file(path: str | os.PathLike, node_params: Mapping[str, Mapping[str, Any]]
                      ) -> Path:
    """Write `{node_name: {param: value}}` as a standard ROS 2 parameters file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = {name: {'ros__parameters': dict(params)} for name, params in node_params.items()}
    path.write_text(yaml.safe_dump(blocks, sort_keys=False))
    return path


# --------------------------------------------------------------------------- message helpers
def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact, for equality checks)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def key_values(msg) -> dict[str, str]:
    """The key/value pairs of a diagnostic_msgs/DiagnosticStatus as a dict."""
    return {kv.key: kv.value for kv in msg.values}


def diagnostic_value(array, key: str, status_name: str | None = None) -> str | None:
    """The value of `key` in a DiagnosticArray (first status holding it, optionally by name)."""
    for status in array.status:
        if status_name is not None and status_name not in status.name:
            continue
        values = key_values(status)
        if key in values:
            return values[key]
    return None


def joint_positions(msg, names: Iterable[str]) -> list[float]:
    """Positions of `names` (in that order) from a sensor_msgs/JointState."""
    by_name = dict(zip(msg.name, msg.position))
    return [by_name[n] for n in names]


# --------------------------------------------------------------------------- in-process ROS
@dataclass
class Received:
    msg: Any
    wall: float  # time.monotonic() at receipt


class Probe:
    """An rclpy node that records topics and publishes test input.

    Built lazily from rclpy so importing this module does not need an initialised context.
    """

    def __init__(self, name: str = 'probe') -> None:
        from rclpy.node import Node
        self.node = Node(name)
        self.received: dict[str, list[Received]] = {}
        self._subscriptions = {}
        self._publishers = {}
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}

    def record(self, topic: str, msg_type, qos=None,
               callback: Callable[[Any], None] | None = None) -> list[Received]:
        """Subscribe to `topic` (reliable depth 100 unless `qos`); returns the live record.

        Calling it again for a topic only adds `callback` (the first subscription's QoS stays).
        """
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        qos = qos or QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        log = self.received.setdefault(topic, [])
        self.callbacks.setdefault(topic, [])
        if callback is not None:
            self.callbacks[topic].append(callback)
        if topic not in self._subscriptions:
            def on_msg(msg, topic=topic):
                self.received[topic].append(Received(msg, time.monotonic()))
                for cb in self.callbacks[topic]:
                    cb(msg)
            self._subscriptions[topic] = self.node.create_subscription(
                msg_type, topic, on_msg, qos)
        return log

    def messages(self, topic: str) -> list:
        return [r.msg for r in self.received.get(topic, [])]

    def last(self, topic: str):
        log = self.received.get(topic)
        return log[-1].msg if log else None

    def clear(self, topic: str | None = None) -> None:
        for name in ([topic] if topic else list(self.received)):
            self.received[name].clear()

    def publisher(self, topic: str, msg_type, qos=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        if topic not in self._publishers:
            qos = qos or QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self._publishers[topic] = self.node.create_publisher(msg_type, topic, qos)
        return self._publishers[topic]

    def publish(self, topic: str, msg) -> None:
        self.publisher(topic, type(msg)).publish(msg)

    def matched(self) -> bool:
        """Every recorded topic has a publisher and every publisher has a subscriber."""
        subs = all(s.get_publisher_count() > 0 for s in self._subscriptions.values())
        pubs = all(p.get_subscription_count() > 0 for p in self._publishers.values())
        return subs and pubs

    def destroy(self) -> None:
        self.node.destroy_node()


class RosSession:
    """rclpy's default context, initialised with optional per-node parameters, plus an executor.

    In-process nodes such as SimNode read their parameters from the context's global arguments,
    so `start({'sim': {...}})` writes a params file and passes it to rclpy.init.
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.work_dir = Path(work_dir)
        self.executor = None
        self.nodes: list = []
        self.probes: list[Probe] = []
        self._starts = 0

    @property
    def started(self) -> bool:
        return self.executor is not None

    def start(self, node_params: Mapping[str, Mapping[str, Any]] | None = None) -> RosSession:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        if self.started:
            self.close()
        self._starts += 1
        args = None
        if node_params:
            params = write_params_file(self.work_dir / f'session_params_{self._starts}.yaml',
                                       node_params)
            args = ['--ros-args', '--params-file', str(params)]
        rclpy.init(args=args)
        self.executor = SingleThreadedExecutor()
        return self

    def add(self, node):
        """Spin `node` (an rclpy Node or a Probe) in this session; returns it."""
        target = node.node if isinstance(node, Probe) else node
        self.executor.add_node(target)
        (self.probes if isinstance(node, Probe) else self.nodes).append(node)
        return node

    def probe(self, name: str = 'probe') -> Probe:
        return self.add(Probe(name))

    def spin_once(self, timeout_s: float = 0.05) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = DEFAULT_TIMEOUT_S,
                   what: str = 'condition') -> None:
        """Spin until `predicate()` holds; AssertionError naming `what` after `timeout_s` wall."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s:.0f} s waiting for {what}')
            self.spin_once(0.02)

    def wait_matched(self, probe: Probe, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Spin until every topic `probe` records or publishes is matched (see Probe.matched).

        A message from a writer that has not matched its reader yet is lost (volatile QoS), so
        create the publishers first (Probe.publisher) and call this before publishing.
        """
        self.spin_until(probe.matched, timeout_s, what=f'{probe.node.get_name()}: topics matched')

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.spin_once(min(0.02, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Destroy every node and shut the context down (idempotent, never raises on the way)."""
        import rclpy
        if self.executor is not None:
            for probe in self.probes:
                _quietly(probe.destroy)
            for node in self.nodes:
                _quietly(node.destroy_node)
            _quietly(self.executor.shutdown)
        self.executor = None
        self.nodes, self.probes = [], []
        rclpy.try_shutdown()


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - teardown must go on: the next node still needs destroying
        pass


# --------------------------------------------------------------------------- processes
class NodeProcess:
    """A noetra_ros node executable as a child process, started like `noetra run` does.

    stdout and stderr go to `<work_dir>/<name>.log`. Use as a context manager (or call stop())
    so the process is ended even when the test fails.
    """

    def __init__(self, spec, work_dir: str | os.PathLike,
                 env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.params_file = self.work_dir / f'{spec.name}_params.yaml'
        self.params_file.write_text(yaml.safe_dump(spec.params_yaml(), sort_keys=False))
        self.log_path = self.work_dir / f'{spec.name}.log'
        self._env = dict(env) if env is not None else ros_env()
        self.proc: subprocess.Popen | None = None

    @classmethod
    def for_node(cls, name: str, executable: str, parameters: Mapping[str, Any],
                 work_dir: str | os.PathLike, **kwargs) -> NodeProcess:
        from noetra_ros.bringup import NodeSpec
        return cls(NodeSpec(name=name, executable=executable, parameters=dict(parameters)),
                   work_dir, **kwargs)

    @property
    def argv(self) -> list[str]:
        return self.spec.command(str(self.params_file))

    def start(self) -> NodeProcess:
        with open(self.log_path, 'w') as log:
            # Own session: a Ctrl-C in the terminal reaches pytest only, which then stops us.
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env=self._env, cwd=str(ROOT), start_new_session=True)
        self.proc.ros_domain_id = self._env.get('ROS_DOMAIN_ID')  # type: ignore[attr-defined]
        _LIVE.add(self.proc)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Wait for the process to end on its own; returns its exit code."""
        assert self.proc is not None, 'process not started'
        return self.proc.wait(timeout_s)

    def log_text(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def log_mark(self) -> int:
        """Current length of the log, for wait_log(since=...) to look only at what follows."""
        return len(self.log_text())

    def wait_log(self, text: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 spin: Callable[[], None] | None = None, since: int = 0) -> str:
        """Wait until the log (from offset `since`) contains `text`, spinning `spin` meanwhile;
        returns the log from `since`."""
        deadline = time.monotonic() + timeout_s
        while text not in (log := self.log_text()[since:]):
            if time.monotonic() > deadline:
                raise AssertionError(f'{self.spec.name}: {text!r} not in its log after '
                                     f'{timeout_s:.0f} s; log:\n{log[-3000:]}')
            if not self.running():
                raise AssertionError(f'{self.spec.name} exited with {self.proc.returncode} '
                                     f'before logging {text!r}; log:\n{log[-3000:]}')
            if spin is not None:
                spin()
            else:
                time.sleep(0.02)
        return log

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGINT (a clean rclpy shutdown), SIGKILL to its process group if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        _LIVE.discard(self.proc)
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's own process group (start_new_session made it its leader)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    _LIVE.discard(proc)


class CpuBurner:
    """`count` busy-loop processes (one per core by default) while the context is open."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> CpuBurner:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                [sys.executable, '-c', 'while True:\n    pass'], start_new_session=True))
            _LIVE.add(self.procs[-1])
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            _kill_group(proc)
        self.procs = []


def rate_hz(stamps_s: list[float]) -> float:
    """Mean rate of a stamped stream: (n - 1) / (last - first); nan with fewer than 2."""
    if len(stamps_s) < 2 or stamps_s[-1] <= stamps_s[0]:
        return math.nan
    return (len(stamps_s) - 1) / (stamps_s[-1] - stamps_s[0])


def eval_one_graph_episode(cell: str, seed: int, tmp_path: Path) -> tuple[dict, dict]:
    """`noetra eval <cell>` for one episode (sim_node + policy_node + safety_node as processes
    over Fast DDS): fails with the run's error and node logs unless it exits 0 and the episode
    succeeds with the policy's commands reaching the arm only through an armed supervisor.
    Returns (report.json, the --json evaluation)."""
    import json

    from noetra_ros.cli import main as noetra_main

    out = tmp_path / 'run'
    code = noetra_main(['eval', cell, '--episodes', '1', '--seed', str(seed), '--out', str(out),
                        '--quiet', '--no-video', '--timeout', '180',
                        '--json', str(tmp_path / 'eval.json')])
    report = json.loads((out / 'report.json').read_text())
    logs = {p.name: p.read_text()[-1500:] for p in out.glob('*.log')}
    assert code == 0 and not report['error'], f'exit {code}: {report["error"]}\n{logs}'
    evaluation = json.loads((tmp_path / 'eval.json').read_text())
    assert evaluation['successes'] == 1, report['episodes']
    policy = report['health']['policy: policy']['values']
    assert int(policy['commands']) > 50 and int(policy['input_errors']) == 0
    safety = report['health']['safety: supervisor']['values']
    assert safety['state'] == 'ARMED' and int(safety['published']) > 50
    return report, evaluation
