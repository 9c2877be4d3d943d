"""Evaluation and data collection spread over Ray workers: one machine's cores or a cluster.

PyBullet runs one world per process, so an evaluation scales by processes; beyond one machine it
uses an existing distributed engine, Ray (docs/DISTRIBUTED.md). Every worker is a Ray actor that
keeps its simulator and policy session (or its expert, or its node graph's environment) warm
across episodes and runs the seeds it is handed one by one:

* `PolicyEpisodeRunner` - the in-process evaluation (learning/record.evaluate_policy): the
  cell's world, policy loop and safety supervisor, each episode as a graph run's first episode;
* `ExpertEpisodeRunner` - the scripted expert on the same world (evaluate_expert);
* `RecordEpisodeRunner` - expert demonstrations (learning/record.record_episode), whose episodes
  the driver writes into ONE dataset in seed order, so it equals the serial recording;
* `GraphEpisodeRunner` - the deployed graph: each episode is a `noetra eval --episodes 1` run
  (sim + policy + supervisor as processes, lockstep) on a ROS domain the worker leases.

Why results are identical, seed for seed, to a serial run: an episode's result depends only on
its seed (every episode starts as the first episode of a graph run: a supervisor never armed,
the run's first stamps; lockstep, so machine load does not matter), never on which worker ran
it or what that worker ran before. That is also what makes a rerun safe: the `EpisodeScheduler`
hands out one seed at a time, and when a worker dies (ray.exceptions.RayActorError) its
unfinished seed goes to a live or replacement worker and is counted as a rerun in the report.

Before any episode: Ray is reached (an unreachable address is a ConfigError within seconds),
every worker reports its noetra_ros version, a fingerprint of the package's code and data, and
the sha256 of the model file as it sees it; any difference from the driver's is refused with
the worker and node named.

Ray is imported only here and only when a distributed run starts (`--workers`), so everything
else works without it. This module is ROS-free; the graph runner imports the CLI (rclpy) in
the worker.
"""
from __future__ import annotations

import argparse
from collections import deque
from dataclasses import asdict, dataclass, field
import hashlib
import json
import os
from pathlib import Path
import platform
import resource
import socket
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

from noetra_ros.core.errors import ConfigError, NoetraError
from noetra_ros.core.stats import percentiles, wilson_interval

# Ray's client server port (`ray start --head` listens on it for ray://) and the GCS port a
# plain host:port address names: the defaults of `ray start` (docs.ray.io, "ray start").
RAY_CLIENT_PORT = 10001
RAY_GCS_PORT = 6379
# How long the driver waits for a TCP connection to the given address before it says the
# cluster is unreachable: a reachable head answers within milliseconds on a LAN.
CONNECT_TIMEOUT_S = 5.0
# How long the workers have to start and answer the preflight check (a Ray worker process
# starts and imports numpy / pybullet / onnxruntime: seconds, more on a loaded machine).
START_TIMEOUT_S = 180.0
# ROS domain ids the graph workers lease from by default (one per worker on a machine; Fast DDS
# maps a domain to UDP ports 7400 + 250 * id). 0 and the lowest ids are what people pick by hand.
DEFAULT_GRAPH_DOMAINS = range(30, 100)
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / 'noetra_ros_domains'
# Package data that decides results besides the code (cells, safety profiles, robot models).
FINGERPRINT_DATA_DIRS = ('config', 'urdf')


# --------------------------------------------------------------------------- worker identity
@dataclass(frozen=True)
class WorkerInfo:
    """What a worker (or the driver) runs: checked to be the same everywhere before any
    episode. `model_sha256` is '' when no model is used, 'missing: <path>' when not found."""

    host: str
    node_ip: str
    pid: int
    version: str
    fingerprint: str
    model_path: str
    model_sha256: str
    cpu: str

    def where(self) -> str:
        """'host (ip, pid N)': how a message names the worker."""
        return f'{self.host} ({self.node_ip}, pid {self.pid})'


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def package_version() -> str:
    """noetra_ros's version: the installed distribution's, else package.xml's."""
    from importlib import metadata

    try:
        return metadata.version('noetra_ros')
    except metadata.PackageNotFoundError:
        pass
    import re

    from noetra_ros.core.paths import share_dir

    found = re.search(r'<version>([^<]+)</version>',
                      (share_dir() / 'package.xml').read_text(errors='replace'))
    return found.group(1) if found else 'unknown'


def package_fingerprint() -> str:
    """sha256 over the package's Python sources and the data that shapes results (config/,
    urdf/), by relative path and content: two installs with one fingerprint run the same code
    on the same cells, so a stale copy on one node (same version, older code) is caught."""
    import noetra_ros
    from noetra_ros.core.paths import share_dir

    digest = hashlib.sha256()
    roots = [(Path(noetra_ros.__file__).parent, 'noetra_ros', '*.py')]
    roots += [(share_dir() / name, name, '*') for name in FINGERPRINT_DATA_DIRS]
    for root, label, pattern in roots:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob(pattern)
                           if p.is_file() and '__pycache__' not in p.parts):
            digest.update(f'{label}/{path.relative_to(root).as_posix()}\0'.encode())
            digest.update(path.read_bytes())
            digest.update(b'\0')
    return digest.hexdigest()


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_model(model_path: str | Path | None) -> tuple[str, str]:
    """(resolved path, sha256) of a model as this process finds it (core/paths.resolve_data_path:
    as given, else under the package's data folder); ('', '') for no model and
    (path, 'missing: ...') when it is not there."""
    if model_path is None or str(model_path) == '':
        return '', ''
    from noetra_ros.core.paths import resolve_data_path

    try:
        path = resolve_data_path(model_path, 'model')
    except ConfigError as error:
        return str(model_path), f'missing: {error}'
    return str(Path(path).resolve()), file_sha256(path)


def local_worker_info(model_path: str | Path | None = None) -> WorkerInfo:
    """This process's WorkerInfo (run inside each worker, and by the driver as the reference)."""
    try:
        import ray

        node_ip = ray.util.get_node_ip_address() if ray.is_initialized() else ''
    except ImportError:
        node_ip = ''
    path, sha = resolve_model(model_path)
    return WorkerInfo(host=socket.gethostname(), node_ip=node_ip or '127.0.0.1', pid=os.getpid(),
                      version=package_version(), fingerprint=package_fingerprint(),
                      model_path=path, model_sha256=sha, cpu=_cpu_model())


def check_workers(reference: WorkerInfo, workers: Sequence[WorkerInfo],
                  first_index: int = 0) -> None:
    """ConfigError naming every worker whose version, code fingerprint or model differs from
    the driver's `reference` (or that cannot find the model); workers are numbered from
    `first_index`."""
    problems = []
    for index, info in enumerate(workers, start=first_index):
        where = f'worker {index} on {info.where()}'
        if info.version != reference.version:
            problems.append(f'{where}: noetra_ros {info.version}, the driver has '
                            f'{reference.version}')
        elif info.fingerprint != reference.fingerprint:
            problems.append(f'{where}: noetra_ros {info.version} but different code or data '
                            f'(fingerprint {info.fingerprint[:12]}, the driver\'s '
                            f'{reference.fingerprint[:12]}): install the same checkout on every '
                            'node')
        if info.model_sha256.startswith('missing'):
            problems.append(f'{where}: model {info.model_sha256}')
        elif info.model_sha256 != reference.model_sha256:
            problems.append(f'{where}: model {info.model_path} has sha256 '
                            f'{info.model_sha256[:16]}..., the driver\'s {reference.model_path} '
                            f'{reference.model_sha256[:16]}...: copy the same file to every node')
    if problems:
        raise ConfigError('refusing to start the distributed run (no episode was run):\n  '
                          + '\n  '.join(problems))


# --------------------------------------------------------------------------- episode runners
@dataclass
class EpisodeOutcome:
    """One episode as a worker returns it: the result fields plus the worker's cost."""

    seed: int
    success: bool
    explanation: str
    sim_time: float
    interventions: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    worker: str = ''
    instruction: str = ''
    payload: Any = None  # the recorded Episode, or the graph run's per-episode report


class _Cost:
    """Wall and CPU seconds of one episode in a worker: this process's CPU plus that of the
    child processes it waited for (a graph run's nodes)."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.cpu = time.process_time() + _children_cpu()

    def finish(self, outcome: EpisodeOutcome) -> EpisodeOutcome:
        outcome.wall_s = time.monotonic() - self.wall
        outcome.cpu_s = time.process_time() + _children_cpu() - self.cpu
        outcome.worker = f'{socket.gethostname()}:{os.getpid()}'
        return outcome


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class PolicyEpisodeRunner:
    """The in-process evaluation's worker: one SimWorld and one PolicyDriver (ONNX session,
    policy loop, supervisor), built at the first episode and kept for the next ones.

    `run(seed)` is evaluate_policy's episode (not as_one_run): reset the world for the seed,
    reset the driver (a fresh supervisor, as at node start), act at the run's first stamps
    until the task checker says done. test/test_distributed.py checks it against
    evaluate_policy seed for seed."""

    def __init__(self, model_path: str, settings: Any, threads: int = 1) -> None:
        self.model_path, self.settings, self.threads = model_path, settings, threads
        self.driver: Any = None
        self.world: Any = None

    def info(self) -> WorkerInfo:
        return local_worker_info(self.model_path)

    def _build(self) -> None:
        from noetra_ros.core.sim.world import SimWorld
        from noetra_ros.learning.record import PolicyDriver

        model, _ = resolve_model(self.model_path)
        self.driver = PolicyDriver(model, self.settings, self.threads)
        try:
            self.world = SimWorld(self.driver.settings.world_config())
        except Exception:
            self.driver.close()
            self.driver = None
            raise

    def run(self, seed: int) -> EpisodeOutcome:
        from noetra_ros.learning.record import header_stamp

        cost = _Cost()
        if self.world is None:
            self._build()
        world, driver = self.world, self.driver
        period = 1.0 / world.config.control_hz
        episode = world.reset(seed)
        instruction = driver.settings.instruction(episode.instruction, seed)
        driver.reset()
        offset = period - world.sim_time  # a run's first episode (evaluate_policy)
        while True:
            driver.act(world, instruction, header_stamp(offset + world.sim_time))
            world.step()
            status = world.task_status()
            if status.done:
                break
        return cost.finish(EpisodeOutcome(
            int(seed), bool(status.success), status.explanation, float(world.sim_time),
            dict(driver.safety.supervisor.counters), instruction=instruction))

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.world is not None:
            self.world.close()
        self.driver = self.world = None


class ExpertEpisodeRunner:
    """The scripted expert's evaluation worker (evaluate_expert): one world, one expert."""

    def __init__(self, robot: str, world_config: Any = None) -> None:
        self.robot, self.world_config = robot, world_config
        self.world: Any = None
        self.expert: Any = None

    def info(self) -> WorkerInfo:
        return local_worker_info(None)

    def run(self, seed: int) -> EpisodeOutcome:
        from noetra_ros.core.expert import run_episode
        from noetra_ros.learning.record import make_world_and_expert

        cost = _Cost()
        if self.world is None:
            self.world, self.expert = make_world_and_expert(self.robot, self.world_config)
        outcome = run_episode(self.world, self.expert, seed)
        return cost.finish(EpisodeOutcome(int(seed), bool(outcome.success), outcome.explanation,
                                          float(outcome.sim_time)))

    def close(self) -> None:
        if self.world is not None:
            self.world.close()
            self.expert.close()
        self.world = self.expert = None


class RecordEpisodeRunner:
    """The recording worker: record_episode with the RecordConfig's options; the Episode goes
    back to the driver (payload), which writes every episode into one dataset in seed order."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.world: Any = None
        self.expert: Any = None

    def info(self) -> WorkerInfo:
        return local_worker_info(None)

    def run(self, seed: int) -> EpisodeOutcome:
        from noetra_ros.learning.record import make_world_and_expert, record_episode

        cost = _Cost()
        config = self.config
        if self.world is None:
            self.world, self.expert = make_world_and_expert(config.robot)
        episode, success, why = record_episode(
            self.world, self.expert, seed, config.cameras, config.linger_s,
            config.action_noise_rad, config.noise_correlation_s, config.noise_phases)
        return cost.finish(EpisodeOutcome(int(seed), success, why, episode.length / float(
            self.world.config.control_hz), payload=episode))

    def close(self) -> None:
        if self.world is not None:
            self.world.close()
            self.expert.close()
        self.world = self.expert = None


class DomainLease:
    """One ROS_DOMAIN_ID held by this process on this machine (an flock'ed file in
    DOMAIN_LOCK_DIR, released when the process dies), so graph workers on one machine never
    share a domain. Machines do not see each other's graphs: the worker limits DDS discovery to
    the host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)."""

    def __init__(self, domain_ids: Sequence[int], skip: Callable[[int], bool] = lambda d: False):
        import fcntl

        DOMAIN_LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for domain in domain_ids:
            handle = open(DOMAIN_LOCK_DIR / f'{domain}.lock', 'a+')
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            if skip(domain):  # free by our locks, but someone else's cell runs there
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
                continue
            self.domain, self._handle = domain, handle
            return
        raise ConfigError(f'no free ROS domain for a graph worker on {socket.gethostname()} in '
                          f'{list(domain_ids)[:1]}..{list(domain_ids)[-1:]} (locks in '
                          f'{DOMAIN_LOCK_DIR}): give --domains a larger range')

    def release(self) -> None:
        import fcntl

        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class GraphEpisodeRunner:
    """The graph evaluation's worker: each seed is one lockstep `noetra eval --episodes 1` run
    of the cell (its nodes as processes, cli.run_cell + monitor) on a ROS domain this worker
    leases at its first episode and keeps. A graph's episode depends on the episodes before it
    in the same run (the supervisor and clock carry over, tools/compare_inprocess_graph.py), so
    the graph is started per episode: that makes every seed's result independent of how seeds
    are split, the same as the in-process evaluation's, and safe to rerun anywhere."""

    def __init__(self, cell: str, overrides: dict, out_root: str, timeout_s: float,
                 domain_ids: Sequence[int] = DEFAULT_GRAPH_DOMAINS, video: bool = False) -> None:
        self.cell, self.overrides = cell, overrides
        self.out_root, self.timeout_s, self.video = Path(out_root), timeout_s, video
        self.domain_ids = list(domain_ids)
        self.lease: DomainLease | None = None

    def model_path(self) -> str | None:
        return self.overrides.get('policy', {}).get('model_path') or _cell_model(self.cell)

    def info(self) -> WorkerInfo:
        return local_worker_info(self.model_path())

    def _lease_domain(self) -> None:
        from noetra_ros.bringup import load_cell

        names = [n.name for n in load_cell(self.cell, self.overrides).nodes]

        def busy(domain: int) -> bool:
            from noetra_ros.cli import DOMAIN_CHECK_S
            from noetra_ros.monitor import nodes_already_running

            os.environ['ROS_DOMAIN_ID'] = str(domain)
            return bool(nodes_already_running(names, wait_s=DOMAIN_CHECK_S))

        # Set before any rclpy.init in this process; the cell's nodes inherit both.
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        self.lease = DomainLease(self.domain_ids, skip=busy)
        os.environ['ROS_DOMAIN_ID'] = str(self.lease.domain)

    def run(self, seed: int) -> EpisodeOutcome:
        from noetra_ros.cli import run_cell

        cost = _Cost()
        if self.lease is None:
            self._lease_domain()
        out = self.out_root / f'seed-{seed}'
        overrides = {node: dict(params) for node, params in self.overrides.items()}
        args = argparse.Namespace(
            cell=self.cell, episodes=1, seed=int(seed), mode='lockstep', out=str(out),
            no_video=not self.video, quiet=True, timeout=self.timeout_s, record=False,
            foxglove=None, set=[f'{node}.{key}={json.dumps(value)}'
                                for node, params in overrides.items()
                                for key, value in params.items()])
        report = run_cell(args)
        if report.get('error') or len(report['episodes']) != 1:
            raise NoetraError(f'graph run of seed {seed} on ROS_DOMAIN_ID={self.lease.domain} '
                              f'({socket.gethostname()}) failed: '
                              f'{report.get("error") or "no episode finished"}; logs in {out}')
        episode = report['episodes'][0]
        policy = report['health'].get('policy: policy', {}).get('values', {})
        payload = {
            'episode': episode, 'cell': report['cell'], 'controller': report['controller'],
            'latency_samples_ms': report['command_latency_samples_ms'],
            'failed_episode_trace': report['failed_episode_trace'],
            'rejected_commands': report['rejected_commands'],
            'policy_values': {k: float(v) for k, v in policy.items()
                              if k.startswith(('inference_ms_', 'end_to_end_ms_'))},
            'node_exit_codes': report['node_exit_codes'], 'run_dir': report['run_dir'],
            'sim_s': report['sim_s'], 'domain': self.lease.domain}
        return cost.finish(EpisodeOutcome(int(seed), bool(episode['success']),
                                          str(episode.get('reason', '')),
                                          float(episode['duration_s']), payload=payload))

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _cell_model(cell: str) -> str | None:
    """The model_path of the cell's policy node, if it has one."""
    from noetra_ros.bringup import load_cell

    nodes = [n for n in load_cell(cell).nodes if n.name == 'policy']
    return str(nodes[0].parameters.get('model_path', '')) or None if nodes else None


# --------------------------------------------------------------------------- Ray and scheduling
def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ConfigError('--workers needs Ray (pip install -r requirements.txt installs the '
                          f'pinned ray[client]): {error}') from error
    return ray


def _probe(address: str) -> None:
    """ConfigError within CONNECT_TIMEOUT_S when nothing listens at a ray:// or host:port
    address (ray.init itself retries for much longer before it gives up)."""
    text = address[len('ray://'):] if address.startswith('ray://') else address
    host, _, port = text.rpartition(':')
    if not host:
        host, port = text, ''
    default = RAY_CLIENT_PORT if address.startswith('ray://') else RAY_GCS_PORT
    try:
        port_number = int(port) if port else default
    except ValueError as error:
        raise ConfigError(f'--address {address!r}: the port {port!r} is not a number') from error
    try:
        with socket.create_connection((host, port_number), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise ConfigError(
            f'--address {address!r}: cannot reach a Ray cluster at {host}:{port_number} '
            f'({error}). Start its head with `ray start --head` there (docs/DISTRIBUTED.md), '
            'or leave --address out for a local Ray runtime.') from error


@dataclass
class RayConnection:
    """Ray as this run found or started it; `close()` shuts down only what it started."""

    started: bool
    address: str
    cpus: float

    def close(self) -> None:
        if self.started:
            _ray().shutdown()


def connect(address: str | None, workers: int) -> RayConnection:
    """Reach Ray: the runtime this process already joined, the cluster at `address`, or a new
    local runtime sized for `workers`. ConfigError (before any worker starts) when the address
    is unreachable or the cluster has fewer CPUs than workers."""
    if workers < 1:
        raise ConfigError(f'--workers {workers}: must be >= 1 (0 = the serial run)')
    ray = _ray()
    started = False
    if address and address != 'auto':
        _probe(address)
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                         log_to_driver=False)
        except Exception as error:  # noqa: BLE001 - any failure to join is the user's to fix
            raise ConfigError(f'cannot start or join Ray (address {address or "local"!r}): '
                              f'{type(error).__name__}: {error}') from error
        started = True
    cpus = float(ray.cluster_resources().get('CPU', 0.0))
    connection = RayConnection(started, address or 'local', cpus)
    if cpus < workers:
        connection.close()
        raise ConfigError(f'--workers {workers}: the Ray cluster ({connection.address}) has '
                          f'{cpus:g} CPUs; each worker takes one')
    return connection


def _why_worker_failed(error: BaseException) -> str:
    import re

    text = str(error)
    # Ray's message names the worker process as "(pid=N, ip=A.B.C.D, ...)".
    found = re.search(r'pid=(\d+), ip=([0-9a-fA-F.:]+)', text)
    where = f' (node {found.group(2)}, pid {found.group(1)})' if found else ''
    if "No module named 'noetra_ros'" in text or 'No module named "noetra_ros"' in text:
        return (f'noetra_ros is not importable there{where} (No module named \'noetra_ros\'): '
                'install the same noetra_ros on every node and start `ray start` from its '
                'environment (docs/DISTRIBUTED.md)')
    lines = [line for line in text.splitlines() if line.strip()]
    return ' | '.join(lines[-3:]) if lines else type(error).__name__


class EpisodeScheduler:
    """Hands seeds to Ray actors one at a time and yields their outcomes as they arrive.

    `make_runner()` returns (class, args) of an episode runner; `workers` actors of it are
    started and checked (`check_workers` against the driver's `reference`) before any episode.
    A worker that dies (RayActorError) is replaced (at most `max_replacements` times in a run),
    the replacement is checked like the first ones, and the seed it was running goes back to
    the front of the queue and is recorded in `rerun_seeds`. Any other error in an episode ends
    the run (as in the serial evaluation: the model or the input is at fault, not the worker).
    """

    def __init__(self, runner: type, runner_args: tuple, workers: int,
                 reference: WorkerInfo, max_replacements: int | None = None,
                 runtime_env: dict | None = None) -> None:
        self.ray = _ray()
        options: dict[str, Any] = {'num_cpus': 1, 'max_restarts': 0}
        if runtime_env:
            options['runtime_env'] = runtime_env
        self._actor_class = self.ray.remote(**options)(runner)
        self.runner_args = runner_args
        self.reference = reference
        self.actors: list[Any] = []
        self.infos: list[WorkerInfo] = []
        self.replacements_left = workers if max_replacements is None else max_replacements
        self.rerun_seeds: list[int] = []
        self.dead_workers: list[str] = []
        for _ in range(workers):
            self.actors.append(self._actor_class.remote(*runner_args))
        self.infos = self._check(self.actors, first_index=0)

    def _check(self, actors: Sequence[Any], first_index: int) -> list[WorkerInfo]:
        ray = self.ray
        refs = [actor.info.remote() for actor in actors]
        infos = []
        for offset, ref in enumerate(refs):
            index = first_index + offset
            try:
                infos.append(ray.get(ref, timeout=START_TIMEOUT_S))
            except ray.exceptions.GetTimeoutError as error:
                self.close()
                raise ConfigError(f'worker {index} did not start within {START_TIMEOUT_S:.0f} s '
                                  '(too few free CPUs in the cluster, or a node that cannot '
                                  'start Python workers)') from error
            except ray.exceptions.RayError as error:
                self.close()
                raise ConfigError(f'worker {index} could not start: '
                                  f'{_why_worker_failed(error)}') from error
        try:
            check_workers(self.reference, infos, first_index)
        except ConfigError:
            self.close()
            raise
        return infos

    def run(self, seeds: Sequence[int]) -> Iterator[EpisodeOutcome]:
        """Outcomes in completion order; every seed exactly once (reruns included)."""
        ray = self.ray
        queue = deque(int(s) for s in seeds)
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (actor slot, seed)

        def submit(slot: int) -> None:
            if queue and self.actors[slot] is not None:
                seed = queue.popleft()
                in_flight[self.actors[slot].run.remote(seed)] = (slot, seed)

        def submit_to_idle() -> None:
            # A requeued seed must not wait for a slot that has no episode running (or is
            # gone): give it to any live worker that is idle.
            busy = {slot for slot, _ in in_flight.values()}
            for slot in range(len(self.actors)):
                if slot not in busy:
                    submit(slot)

        for slot in range(len(self.actors)):
            submit(slot)
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            slot, seed = in_flight.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayActorError as error:
                self.dead_workers.append(f'worker {slot} ({self.infos[slot].where()}): '
                                         f'{_why_worker_failed(error)}')
                self.rerun_seeds.append(seed)
                queue.appendleft(seed)
                self._replace(slot, error)
                submit_to_idle()
                continue
            except ray.exceptions.RayTaskError as error:
                self.close()
                cause = error.as_instanceof_cause() if hasattr(error, 'as_instanceof_cause') \
                    else error
                if isinstance(cause, NoetraError):
                    raise type(cause)(f'seed {seed} on worker {slot} '
                                      f'({self.infos[slot].where()}): {cause}') from None
                raise
            submit(slot)
            yield outcome

    def _replace(self, slot: int, error: BaseException) -> None:
        if self.replacements_left <= 0:
            alive = [s for s, a in enumerate(self.actors) if a is not None and s != slot]
            self.actors[slot] = None
            if not alive:
                self.close()
                raise NoetraError('every worker died and no replacement is left: '
                                  + '; '.join(self.dead_workers)) from error
            return
        self.replacements_left -= 1
        actor = self._actor_class.remote(*self.runner_args)
        self.infos[slot] = self._check([actor], first_index=slot)[0]
        self.actors[slot] = actor

    def close(self) -> None:
        """Stop every worker (its world and session go with its process)."""
        for actor in self.actors:
            if actor is not None:
                try:
                    self.ray.kill(actor)
                except Exception:  # noqa: BLE001 - an actor already gone is what we want
                    pass
        self.actors = []


# --------------------------------------------------------------------------- one run, reported
@dataclass
class DistributedRun:
    """How a distributed run went: who ran it, what was rerun, what it cost."""

    workers: list[WorkerInfo]
    address: str
    rerun_seeds: list[int] = field(default_factory=list)
    dead_workers: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    worker_cpu_s: float = 0.0
    worker_wall_s: float = 0.0
    episodes: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out['workers'] = [asdict(w) for w in self.workers]
        out['reruns'] = len(self.rerun_seeds)
        cpus = sorted({w.cpu for w in self.workers})
        out['cpu_models'] = cpus
        return out

    def describe(self) -> str:
        hosts = sorted({w.host for w in self.workers})
        text = (f'{len(self.workers)} Ray workers on {len(hosts)} machine(s) '
                f'({", ".join(hosts)}; {self.address}): {self.episodes} episodes in '
                f'{self.wall_time_s:.0f} s wall, {self.worker_cpu_s:.0f} CPU-s in the workers; '
                f'{len(self.rerun_seeds)} rerun')
        if self.rerun_seeds:
            text += f' (seeds {self.rerun_seeds}; ' + '; '.join(self.dead_workers) + ')'
        if len({w.cpu for w in self.workers}) > 1:
            text += ('\n  note: the workers have different CPU models; ONNX Runtime and PyBullet '
                     'may pick other vector code paths on them (docs/DISTRIBUTED.md)')
        return text


def run_distributed(runner: type, runner_args: tuple, seeds: Sequence[int], workers: int,
                    address: str | None, model_path: str | Path | None = None,
                    desc: str = 'episodes', show_progress: bool = True,
                    on_outcome: Callable[[EpisodeOutcome, EpisodeScheduler], None] | None = None,
                    runtime_env: dict | None = None
                    ) -> tuple[list[EpisodeOutcome], DistributedRun]:
    """Run `seeds` on `workers` actors of `runner`; outcomes in the order of `seeds`.

    One progress bar across the workers, fed as outcomes arrive. `on_outcome(outcome,
    scheduler)` sees each outcome as it arrives (tools and tests: e.g. ray.kill a worker).
    `runtime_env`: Ray's per-actor runtime environment of the workers (e.g. env_vars)."""
    from noetra_ros.learning.dataset import progress

    if len(set(seeds)) != len(seeds):
        raise ConfigError('seeds: each seed once (a distributed run merges results by seed)')
    start = time.monotonic()
    reference = local_worker_info(model_path)
    if reference.model_sha256.startswith('missing'):
        raise ConfigError(f'model: {reference.model_sha256}')
    connection = connect(address, workers)
    try:
        scheduler = EpisodeScheduler(runner, runner_args, min(workers, max(1, len(seeds))),
                                     reference, runtime_env=runtime_env)
        by_seed: dict[int, EpisodeOutcome] = {}
        try:
            stream = scheduler.run(seeds)
            if show_progress:
                stream = progress(stream, total=len(seeds), desc=f'{desc} ({workers} workers)')
            for outcome in stream:
                by_seed[outcome.seed] = outcome
                if on_outcome is not None:
                    on_outcome(outcome, scheduler)
        finally:
            scheduler.close()
        outcomes = [by_seed[int(s)] for s in seeds]
        run = DistributedRun(
            workers=scheduler.infos, address=connection.address,
            rerun_seeds=scheduler.rerun_seeds, dead_workers=scheduler.dead_workers,
            wall_time_s=time.monotonic() - start, episodes=len(outcomes),
            worker_cpu_s=sum(o.cpu_s for o in outcomes),
            worker_wall_s=sum(o.wall_s for o in outcomes))
        return outcomes, run
    finally:
        connection.close()


# --------------------------------------------------------------------------- the three entry points
def evaluate_policy_distributed(model_path: str | Path, seeds: Sequence[int], settings: Any,
                                workers: int, address: str | None = None, threads: int = 1,
                                show_progress: bool = True,
                                on_outcome: Callable[[EpisodeOutcome, EpisodeScheduler],
                                                     None] | None = None
                                ) -> tuple[Any, DistributedRun]:
    """evaluate_policy(model_path, seeds, settings) on Ray workers: the same EvalResult, seed
    for seed, plus how the run went."""
    from noetra_ros.learning.record import EvalResult

    outcomes, run = run_distributed(
        PolicyEpisodeRunner, (str(model_path), settings, threads), seeds, workers, address,
        model_path=model_path, desc='policy', show_progress=show_progress,
        on_outcome=on_outcome)
    label = f'policy {Path(model_path).name} ({settings.describe()})'
    result = EvalResult(label, [o.seed for o in outcomes], [o.success for o in outcomes],
                        [o.explanation for o in outcomes], [o.sim_time for o in outcomes],
                        wall_time_s=run.wall_time_s,
                        interventions=[o.interventions for o in outcomes],
                        instructions=[o.instruction for o in outcomes])
    return result, run


def evaluate_expert_distributed(seeds: Sequence[int], robot: str, world_config: Any,
                                workers: int, address: str | None = None,
                                show_progress: bool = True) -> tuple[Any, DistributedRun]:
    """evaluate_expert on Ray workers."""
    from noetra_ros.learning.record import EvalResult

    outcomes, run = run_distributed(ExpertEpisodeRunner, (robot, world_config), seeds, workers,
                                    address, desc='expert', show_progress=show_progress)
    result = EvalResult('expert', [o.seed for o in outcomes], [o.success for o in outcomes],
                        [o.explanation for o in outcomes], [o.sim_time for o in outcomes],
                        wall_time_s=run.wall_time_s)
    return result, run


def record_extra_info(config: Any) -> dict[str, Any]:
    """The dataset's info.json 'noetra' block, as learning/record.record writes it (a test
    compares the two datasets file for file)."""
    return {
        'source': 'noetra_ros.learning.record (ScriptedExpert in SimWorld)',
        'first_seed': config.first_seed, 'episodes_attempted': config.episodes,
        'action_noise_rad': config.action_noise_rad,
        'noise_correlation_s': config.noise_correlation_s,
        'noise_phases': list(config.noise_phases),
        'state': 'measured arm joint positions (rad) + gripper finger position (m)',
        'action': 'expert command: arm joint position targets (rad) + gripper target (m)',
    }


def record_distributed(config: Any, output: str | Path, workers: int,
                       address: str | None = None, show_progress: bool = True,
                       on_outcome: Callable[[EpisodeOutcome, EpisodeScheduler], None] | None = None
                       ) -> tuple[Any, DistributedRun]:
    """learning/record.record(config, output) with the episodes recorded on Ray workers.

    The workers return each episode's frames; this process writes the successful ones into the
    one DatasetWriter in seed order (holding back an episode until those before it are in), so
    episode indices, frame indices, videos and stats are those of the serial recording."""
    from noetra_ros.learning.dataset import DatasetWriter
    from noetra_ros.learning.record import (dataset_spec_for, make_world_and_expert,
                                            RecordSummary)

    start = time.monotonic()
    world, expert = make_world_and_expert(config.robot)
    try:
        unknown = [cam for cam in config.cameras if cam not in world.camera_names]
        if unknown:
            raise ConfigError(f'cameras: {unknown} not in the world (have '
                              f'{list(world.camera_names)})')
        spec = dataset_spec_for(world, config.robot, config.cameras)
    finally:
        world.close()
        expert.close()
    seeds = list(range(config.first_seed, config.first_seed + config.episodes))
    summary = RecordSummary(output=Path(output), kept=0, failed=0, frames=0)
    writer = DatasetWriter(output, spec, extra_info=record_extra_info(config))
    waiting: dict[int, EpisodeOutcome] = {}
    next_index = 0

    def write_in_order(outcome: EpisodeOutcome, scheduler: EpisodeScheduler) -> None:
        nonlocal next_index
        waiting[outcome.seed] = outcome
        while next_index < len(seeds) and seeds[next_index] in waiting:
            ready = waiting.pop(seeds[next_index])
            if ready.success:
                writer.add_episode(ready.payload)
                summary.kept += 1
                summary.frames += ready.payload.length
            else:
                summary.failed += 1
                summary.failures.append((ready.seed, ready.explanation))
            ready.payload = None  # the frames are in the dataset now
            next_index += 1
        if on_outcome is not None:
            on_outcome(outcome, scheduler)

    _, run = run_distributed(RecordEpisodeRunner, (config,), seeds, workers, address,
                             desc='recording', show_progress=show_progress,
                             on_outcome=write_in_order)
    if summary.kept == 0:
        raise ConfigError('no expert episode succeeded; nothing to write')
    writer.close()
    summary.wall_time_s = time.monotonic() - start
    return summary, run


# --------------------------------------------------------------------------- reports
def summary_table(rows: Sequence[tuple[str, str, Sequence[bool]]], reruns: int = 0) -> str:
    """One line per (cell, model) with successes, rate and Wilson 95 % interval."""
    lines = [f'{"cell":<28} {"model / controller":<30} {"n":>5} {"ok":>5} {"rate":>7} '
             f'{"Wilson 95 %":>15}']
    for cell, model, successes in rows:
        n, k = len(successes), sum(bool(s) for s in successes)
        low, high = wilson_interval(k, n)
        rate = f'{100 * k / n:.1f} %' if n else 'n/a'
        lines.append(f'{cell:<28} {model[:30]:<30} {n:>5} {k:>5} {rate:>7} '
                     f'{100 * low:6.1f}-{100 * high:5.1f} %')
    if reruns:
        lines.append(f'({reruns} episode(s) rerun after a worker died; each seed counted once)')
    return '\n'.join(lines)


def evalcheck_on_ray(args: argparse.Namespace, seeds: Sequence[int], settings: Any,
                     model: str | Path) -> int:
    """`python -m noetra_ros.learning evalcheck --workers N`: what evalcheck prints and
    writes, from Ray workers, plus the distributed run and a summary table."""
    if args.one_run:
        raise ConfigError('--one-run with --workers: one run carries the supervisor and clock '
                          'from episode to episode, so it cannot be split across workers; run '
                          'it without --workers')
    policy, run = evaluate_policy_distributed(model, seeds, settings, args.workers,
                                              args.address)
    results, runs = [policy], [run]
    if args.expert:
        expert, expert_run = evaluate_expert_distributed(
            seeds, settings.robot, settings.world_config(), args.workers, args.address)
        results.append(expert)
        runs.append(expert_run)
    for result, result_run in zip(results, runs):
        print(result.describe())
        print(f'  {result_run.describe()}')
        if args.verbose:
            for seed, ok, why in zip(result.seeds, result.successes, result.explanations):
                if not ok:
                    print(f'  seed {seed}: {why}')
    print(summary_table([(settings.cell, Path(model).name if r is policy else 'expert',
                          r.successes) for r in results],
                        reruns=sum(len(r.rerun_seeds) for r in runs)))
    if args.expert:
        ratio = results[0].success_rate / max(results[1].success_rate, 1e-9)
        print(f'policy / expert success ratio: {ratio:.2f} on {len(seeds)} held-out seeds')
    if args.json:
        from noetra_ros.learning.record import evaluation_json_row

        Path(args.json).write_text(json.dumps(
            [{**evaluation_json_row(r, settings), 'distributed': run_.as_dict()}
             for r, run_ in zip(results, runs)], indent=2) + '\n')
    return 0


def _median_percentiles(values: Sequence[dict[str, float]], prefix: str) -> dict[str, float]:
    out = {}
    for q in ('p50', 'p90', 'p99'):
        found = [v[f'{prefix}{q}'] for v in values if f'{prefix}{q}' in v]
        if found:
            out[q] = float(sorted(found)[len(found) // 2])
    return out


def merge_graph_runs(outcomes: Sequence[EpisodeOutcome], run: DistributedRun, out_dir: Path,
                     model: str, first_seed: int) -> dict:
    """One report in the shape cli.eval_cell builds (so format_report, format_evaluation and
    eval_plots.write_evaluation_plots read it) from per-seed graph runs, in seed order."""
    episodes, samples, failed_trace, exit_codes, policy_values = [], [], None, {}, []
    for index, outcome in enumerate(outcomes):
        part = outcome.payload
        episode = dict(part['episode'], episode=index)
        episodes.append(episode)
        samples += part['latency_samples_ms']
        if failed_trace is None and not episode['success'] and part['failed_episode_trace']:
            failed_trace = dict(part['failed_episode_trace'], episode=index)
        exit_codes.update({f'seed {outcome.seed}/{name}': code
                           for name, code in part['node_exit_codes'].items() if code})
        policy_values.append(part['policy_values'])
    first = outcomes[0].payload
    sim_s = sum(o.payload['sim_s'] for o in outcomes)
    report: dict[str, Any] = {
        'cell': first['cell'], 'controller': first['controller'], 'mode': 'lockstep',
        'episodes': episodes, 'wall_s': run.wall_time_s, 'sim_s': sim_s,
        'real_time_factor': sim_s / run.wall_time_s if run.wall_time_s > 0 else 0.0,
        'topics': {}, 'command_latency_ms': percentiles(samples),
        'command_latency_samples_ms': samples, 'failed_episode_trace': failed_trace,
        'rejected_commands': max((o.payload['rejected_commands'] for o in outcomes), default=0),
        'health': {}, 'shadow': [], 'video': '', 'node_exit_codes': exit_codes,
        'run_dir': str(out_dir), 'error': '', 'distributed': run.as_dict(),
        'runs': [{'seed': o.seed, 'run_dir': o.payload['run_dir'],
                  'ros_domain_id': o.payload['domain'], 'worker': o.worker,
                  'wall_s': o.wall_s, 'cpu_s': o.cpu_s} for o in outcomes]}
    k, n = sum(e['success'] for e in episodes), len(episodes)
    low, high = wilson_interval(k, n)
    report['evaluation'] = {
        'cell': first['cell']['name'], 'controller': first['controller'], 'model': model,
        'baseline': '', 'first_seed': first_seed, 'episodes': n, 'successes': k,
        'success_rate': k / n if n else 0.0, 'wilson95': [low, high],
        'mean_episode_s': sum(e['duration_s'] for e in episodes) / n if n else 0.0,
        'mean_success_episode_s': (sum(e['duration_s'] for e in episodes if e['success']) / k)
        if k else None,
        'step_latency_ms': report['command_latency_ms'],
        # Each episode is its own run with its own percentiles: the median run's is reported.
        'policy_inference_ms': _median_percentiles(policy_values, 'inference_ms_'),
        'policy_end_to_end_ms': _median_percentiles(policy_values, 'end_to_end_ms_'),
        'policy_ms_note': 'median over the per-episode graph runs of each run\'s percentile',
        'episode_results': [{key: e[key] for key in ('seed', 'success', 'reason', 'duration_s',
                                                     'target_object', 'distractors') if key in e}
                            for e in episodes],
        'reruns': len(run.rerun_seeds), 'rerun_seeds': run.rerun_seeds,
        'workers': len(run.workers),
    }
    return report


def parse_domains(text: str) -> list[int]:
    """'a:b' -> ROS domain ids a..b-1, 'a,b,c' -> those; each in 0..232 (Fast DDS maps a
    domain to UDP ports 7400 + 250 * id)."""
    try:
        if ':' in text:
            lo, hi = text.split(':', 1)
            domains = list(range(int(lo), int(hi)))
        else:
            domains = [int(part) for part in text.split(',') if part.strip()]
    except ValueError as error:
        raise ConfigError(f'--domains {text!r}: expected A:B (ids A..B-1) or A,B,C') from error
    if not domains or min(domains) < 0 or max(domains) > 232:
        raise ConfigError(f'--domains {text!r}: must name ids within 0..232')
    return domains


def eval_cell_on_ray(args: argparse.Namespace) -> dict:
    """`noetra eval CELL --workers N`: every seed a lockstep graph run of its own on a Ray
    worker (GraphEpisodeRunner), merged into the report `noetra eval` writes (JSON, plots)."""
    import datetime as dt

    from noetra_ros.bringup import load_cell
    from noetra_ros.cli import _parse_set

    if args.baseline:
        raise ConfigError('--baseline with --workers: run the baseline without --workers (it '
                          'writes its model next to the run; give it as --model to distribute)')
    overrides = _parse_set(args.set or [])
    cell = load_cell(args.cell, overrides)
    if args.model:
        if 'policy' not in [n.name for n in cell.nodes]:
            raise ConfigError(f'--model needs a cell with a node named policy; {cell.name!r} '
                              f'has {[n.name for n in cell.nodes]}')
        overrides.setdefault('policy', {})['model_path'] = str(args.model)
    model = overrides.get('policy', {}).get('model_path') or _cell_model(args.cell) or ''
    stamp = dt.datetime.now().strftime('%Y%m%d-%H%M%S')
    out_dir = Path(args.out or Path('runs') / f'{cell.name}-workers{args.workers}-{stamp}')
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed, args.seed + args.episodes))
    domains = parse_domains(args.domains) if getattr(args, 'domains', None) \
        else DEFAULT_GRAPH_DOMAINS
    runner_args = (args.cell, overrides, str(out_dir.resolve()), float(args.timeout),
                   list(domains), not args.no_video)
    outcomes, run = run_distributed(GraphEpisodeRunner, runner_args, seeds, args.workers,
                                    args.address, model_path=model or None, desc='graph',
                                    show_progress=not args.quiet)
    report = merge_graph_runs(outcomes, run, out_dir, model, args.seed)
    from noetra_ros.eval_plots import write_evaluation_plots

    stem = Path(args.json).with_suffix('') if args.json else out_dir / 'evaluation'
    report['evaluation']['plots'] = write_evaluation_plots(report, stem)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report['evaluation'], indent=2))
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2))
    print(run.describe())
    print(summary_table([(report['evaluation']['cell'], Path(model).name if model
                          else report['controller'], [e['success'] for e in report['episodes']])],
                        reruns=len(run.rerun_seeds)))
    return report

