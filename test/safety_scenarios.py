"""Fault-injection scenarios against the REAL nodes: sim_node + safety_node + an injecting policy.

The rig (`SafetyRig`) starts two child processes exactly as `noetra run` would:
  * sim_node in realtime mode (real_time_factor 1, 20 Hz control, publish_clock false) whose
    joint_states and scene camera are remapped to `sim/...`;
  * safety_node with update_trigger joint_states, use_sim_time and a watched camera.
The test process sits between them: its relay republishes the sim's joint_states and camera
frames and publishes /clock from the joint_states stamps, so every fault is injected there
(pause a stream, delay its stamps, freeze a joint, pause or rewind the clock). A policy callback,
run once per relayed joint_states (like a real policy), publishes on the supervisor's inputs.
The relay records the robot-side stream (forward_position_controller/commands), the sim's true
joint_states and the supervisor's status, each tagged with the clock the safety node was
given at that moment (the node's own clock, in sim seconds), so response-time bounds are
measured in the node's clock, never in wall-clock throughput.

Each `scenario_*` function drives one check from shared/reference/safety.md on a running rig and
returns a `Result` with the measured figure and its bound; test_safety_faults.py asserts them
and tools/safety_report.py prints them as a table.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable
import copy
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import time
from typing import Any

from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np

from ros_harness import DomainLease, NodeProcess, RosSession, stamp_s

ROBOT = 'fanuc_lrmate200id'
PROFILE = 'industrial'
CONTROL_HZ = 20
PERIOD = 1.0 / CONTROL_HZ
CAMERA = 'scene_camera/image_raw'
SIM_PARAMS = {
    'robot': ROBOT, 'mode': 'realtime', 'real_time_factor': 1.0, 'control_hz': CONTROL_HZ,
    'physics_hz': 240, 'cameras': ['scene_camera'],
    'scene_camera': {'width': 32, 'height': 24, 'rate_hz': 10.0},
    'episode_timeout_s': 1.0e6, 'publish_clock': False,
}
SIM_REMAPS = {'joint_states': 'sim/joint_states', CAMERA: f'sim/{CAMERA}'}
SAFETY_PARAMS = {
    'robot': ROBOT, 'profile': PROFILE, 'update_trigger': 'joint_states', 'period_s': PERIOD,
    'watchdog_hz': 50.0, 'watched_sensors': [CAMERA], 'use_sim_time': True,
}
COMMAND_TOPIC = 'forward_position_controller/commands'
# The sim's position servo settles within this of a still command (gravity sag, PD noise).
SIM_SETTLE_RAD = 1e-3
# How far the sim arm drifts over a few seconds while holding a fixed command (measured: 2e-6).
SIM_HOLD_NOISE_RAD = 1e-5
WAIT_S = 20.0  # wall seconds before a wait gives up (a hung node, not a timing bound)


# --------------------------------------------------------------------------- limits
@dataclass(frozen=True)
class Limits:
    """What the safety node enforces, rebuilt here from the same URDF and profile."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    safe_lower: np.ndarray
    safe_upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    profile: Any
    model: Any  # RobotModel, for the tool0 checks

    @classmethod
    def load(cls) -> Limits:
        from noetra_ros.core.robot_model import RobotModel
        from noetra_ros.core.robots import urdf_path
        from noetra_ros.core.safety import EffectiveJointLimits, JointLimits, load_profile
        model = RobotModel.from_urdf(urdf_path(ROBOT, with_gripper=True))
        profile = load_profile(PROFILE)
        eff = EffectiveJointLimits.build(JointLimits.from_robot_model(model), profile)
        return cls(tuple(eff.names), np.array(eff.lower), np.array(eff.upper),
                   np.array(eff.safe_lower), np.array(eff.safe_upper), np.array(eff.velocity),
                   np.array(eff.acceleration), profile, model)

    def tool_checks(self, outputs: list[Output]) -> tuple[int, float]:
        """(samples with tool0 outside the workspace box, max tool speed / max_tool_speed)
        over a stretch of the robot-side stream (steps as in stream_steps)."""
        box = self.profile.workspace
        points = [self.model.fk(o.q, link=self.profile.tool_frame)[:3, 3] for o in outputs]
        outside = sum(1 for p in points if not box.contains(p, tol=1e-9))
        ratio = 0.0
        steps = stream_steps(outputs)
        kept = _kept(outputs)
        tool = [self.model.fk(o.q, link=self.profile.tool_frame)[:3, 3] for o in kept]
        for k, dt in enumerate(steps.dt):
            speed = float(np.linalg.norm(tool[k + 1] - tool[k])) / dt
            ratio = max(ratio, speed / self.profile.max_tool_speed)
        return outside, ratio


# --------------------------------------------------------------------------- records
@dataclass(eq=False)
class Output:
    """One robot-side command as the sim receives it."""

    clock: float        # the safety node's clock when it was received (sim s)
    sim: float          # true sim time of the latest joint_states then
    q: np.ndarray


@dataclass
class Status:
    """One safety/status message (published on every state change)."""

    clock: float
    sim: float
    state: str
    reason: str
    values: dict[str, str]


@dataclass
class Result:
    """One measured check: figure, bound and the verdict."""

    check: str
    fault: str
    measured: float
    bound: float
    unit: str
    passed: bool
    detail: str = ''
    at_least: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        """One Markdown table row: check | fault | measured | bound | verdict | detail."""
        relation = '>=' if self.at_least else '<='
        unit = f' {self.unit}' if self.unit else ''
        fault, detail = (text.replace('|', '\\|') for text in (self.fault, self.detail))
        return (f'| {self.check} | {fault} | {_fmt(self.measured)}{unit} | '
                f'{relation} {_fmt(self.bound)}{unit} | '
                f'{"pass" if self.passed else "FAIL"} | {detail} |')

    def as_dict(self) -> dict[str, Any]:
        measured = self.measured if math.isfinite(self.measured) else None
        return {'check': self.check, 'fault': self.fault, 'measured': measured,
                'bound': self.bound, 'relation': '>=' if self.at_least else '<=',
                'unit': self.unit, 'passed': self.passed, 'detail': self.detail,
                'extra': {k: _jsonable(v) for k, v in self.extra.items()}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [float(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f'{value:.3g}' if abs(value) < 1e-3 else f'{value:.4f}'.rstrip('0').rstrip('.')


def result(check: str, fault: str, measured: float, bound: float, unit: str, detail: str = '',
           at_least: bool = False, also: bool = True, **extra: Any) -> Result:
    """A Result that passes when measured <= bound (>= with at_least) and `also` holds.
    NaN never passes."""
    measured = float(measured)
    # Float slack only (stamps are sums of 0.05 s steps): 1e-9 relative, 1e-12 absolute.
    slack = 1e-9 * abs(bound) + 1e-12
    within = measured >= bound - slack if at_least else measured <= bound + slack
    ok = bool(within and also and math.isfinite(measured))
    return Result(check, fault, measured, float(bound), unit, ok, detail, at_least, extra)


# --------------------------------------------------------------------------- the rig
class SafetyRig:
    """sim_node + safety_node (child processes) and the relay / policy / recorder (this process).

    Use as a context manager; it leases a ROS_DOMAIN_ID unless one is set already (pytest's
    conftest sets one per module).
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.work_dir = Path(work_dir)
        self.limits = Limits.load()
        self.names = list(self.limits.names)
        self.session: RosSession | None = None
        self.procs: list[NodeProcess] = []
        self._lease: DomainLease | None = None
        # relay knobs (the faults)
        self.clock_paused = False
        self.js_paused = False
        self.camera_paused = False
        self.js_delay = 0.0          # s subtracted from relayed joint_states stamps
        self.time_offset = 0.0       # s added to every relayed stamp and to /clock
        self.frozen: dict[int, float] = {}   # joint index -> reported position
        self.corrupt_next: np.ndarray | None = None  # offsets added to the next reading only
        self.policy: Callable[[float, np.ndarray], None] | None = None
        # records
        self.clock = 0.0             # last /clock published (the node's time)
        self.sim_time = 0.0          # true stamp of the last sim joint_states
        self.q_meas: np.ndarray | None = None   # true arm positions (sim)
        self.q_relayed: np.ndarray | None = None  # arm positions the node was given
        self.outputs: list[Output] = []
        self.measured: list[tuple[float, np.ndarray]] = []
        self.statuses: list[Status] = []
        self.diagnostics: list[dict[str, str]] = []
        self.relayed_js = 0
        self.last_command_clock = 0.0
        self.last_positions = np.zeros(0)
        self.last_js_stamp = 0.0
        self.last_frame_stamp = 0.0
        self.relayed: list[tuple[float, np.ndarray]] = []
        self.startup: dict[str, Any] = {}
        self.gripper_outputs: list[tuple[float, list[float]]] = []
        self._pending_frames: list = []
        # When (time.time_ns) each /clock was published and each sim step arrived, for _tag.
        self._clock_ns: list[int] = []
        self._clock_values: list[float] = []
        self._sim_ns: list[int] = []
        self._sim_values: list[float] = []

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> SafetyRig:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if 'ROS_DOMAIN_ID' not in os.environ:
            self._lease = DomainLease.acquire()
            os.environ['ROS_DOMAIN_ID'] = str(self._lease.domain_id)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        from noetra_ros.bringup import NodeSpec
        sim = NodeProcess(NodeSpec('sim', 'sim_node', SIM_PARAMS, SIM_REMAPS), self.work_dir)
        safety = NodeProcess.for_node('safety', 'safety_node', SAFETY_PARAMS, self.work_dir)
        self.procs = [sim.start(), safety.start()]
        self.session = RosSession(self.work_dir).start()
        self._build_probe()
        # C16 "/clock absent": the node starts on use_sim_time and hears joint_states but no
        # /clock until this phase is over.
        self.clock_paused = True
        self.spin_until(lambda: self.relayed_js > 0 and self._graph_ready(), 60.0,
                        'sim and safety nodes up')
        self.spin_until(lambda: bool(self.statuses), 10.0, 'first safety/status')
        self.spin_sim(0.5)
        ok, message = self.call('arm')
        self.spin_sim(0.2)
        self.startup = {'arm_accepted': ok, 'arm_message': message,
                        'outputs_without_clock': len(self.outputs), 'state': self.state}
        self.clock_paused = False
        # Never armed: the output mirrors the measured position. Record how far the arm drifts.
        self.spin_sim(0.3)
        first_sim, first_q = self.sim_time, self.q_meas.copy()
        self.spin_sim(1.5)
        self.startup['unarmed_drift_rad'] = float(np.max(np.abs(self.q_meas - first_q)))
        self.startup['unarmed_drift_s'] = self.sim_time - first_sim

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        for proc in self.procs:
            proc.stop()
        self.procs = []
        if self._lease is not None:
            os.environ.pop('ROS_DOMAIN_ID', None)
            self._lease.release()
            self._lease = None

    @property
    def sim_proc(self) -> NodeProcess:
        return self.procs[0]

    @property
    def safety_proc(self) -> NodeProcess:
        return self.procs[1]

    def _build_probe(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool, Float64MultiArray
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory
        probe = self.session.probe('fault_injector')
        self.probe = probe
        node = probe.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_clock = node.create_publisher(Clock, '/clock', reliable)
        self.pub_js = node.create_publisher(JointState, 'joint_states', reliable)
        self.pub_camera = node.create_publisher(Image, CAMERA, reliable)
        self.pubs = {
            'positions': node.create_publisher(Float64MultiArray, 'safety/position_commands',
                                               reliable),
            'velocities': node.create_publisher(Float64MultiArray, 'safety/velocity_commands',
                                                reliable),
            'trajectory': node.create_publisher(JointTrajectory, 'safety/joint_trajectory',
                                                reliable),
            'gripper': node.create_publisher(Float64MultiArray, 'safety/gripper_commands',
                                             reliable),
            'estop': node.create_publisher(Bool, 'safety/estop', reliable),
        }
        node.create_subscription(JointState, 'sim/joint_states', self._on_sim_js, reliable)
        node.create_subscription(Image, f'sim/{CAMERA}', self._on_sim_camera, reliable)
        node.create_subscription(Float64MultiArray, COMMAND_TOPIC, self._on_output,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(
            Float64MultiArray, 'gripper_position_controller/commands',
            lambda msg, info: self.gripper_outputs.append((self._tag(info)[0], list(msg.data))),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(DiagnosticStatus, 'safety/status', self._on_status, latched)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.clients = {name: node.create_client(Trigger, f'safety/{name}')
                        for name in ('arm', 'hold', 'estop', 'reset_estop')}

    def _graph_ready(self) -> bool:
        subs = [self.pub_js, self.pub_clock, self.pub_camera, *self.pubs.values()]
        return (all(p.get_subscription_count() > 0 for p in subs)
                and all(c.service_is_ready() for c in self.clients.values()))

    # ---------------------------------------------------------------- relay
    def _on_sim_js(self, msg) -> None:
        from rosgraph_msgs.msg import Clock
        from noetra_ros.ros_conversions import seconds_to_stamp
        true_t = stamp_s(msg.header.stamp)
        by_name = dict(zip(msg.name, msg.position))
        q = np.array([by_name[n] for n in self.names])
        self._sim_ns.append(time.time_ns())
        self._sim_values.append(true_t)
        self.sim_time = true_t
        self.q_meas = q
        self.measured.append((true_t, q))
        t = true_t + self.time_offset
        if not self.clock_paused:
            # /clock first: the node must not see a stamp ahead of its own clock.
            self._clock_ns.append(time.time_ns())
            self._clock_values.append(t)
            self.pub_clock.publish(Clock(clock=seconds_to_stamp(t)))
            self.clock = t
        # The sim publishes a frame just before the joint_states of the same step, i.e. before
        # the clock above reached it; it was held back until now.
        pending, self._pending_frames = self._pending_frames, []
        for frame in pending:
            self.pub_camera.publish(frame)
        if not self.js_paused:
            out = copy.copy(msg)
            out.header = copy.copy(msg.header)
            out.header.stamp = seconds_to_stamp(t - self.js_delay)
            if self.frozen or self.corrupt_next is not None:
                position = list(msg.position)
                for i, value in self.frozen.items():
                    position[list(msg.name).index(self.names[i])] = value
                if self.corrupt_next is not None:
                    for i, offset in enumerate(self.corrupt_next):
                        position[list(msg.name).index(self.names[i])] += float(offset)
                    self.corrupt_next = None
                out.position = position
            self.pub_js.publish(out)
            self.relayed_js += 1
            self.q_relayed = np.array([dict(zip(out.name, out.position))[n]
                                       for n in self.names])
            self.relayed.append((self.clock, self.q_relayed))
            self.last_js_stamp = t - self.js_delay
        if self.policy is not None:
            self.policy(self.clock, self.q_relayed if self.q_relayed is not None else q)

    def _on_sim_camera(self, msg) -> None:
        from noetra_ros.ros_conversions import seconds_to_stamp
        if self.camera_paused:
            return
        out = copy.copy(msg)
        out.header = copy.copy(msg.header)
        out.header.stamp = seconds_to_stamp(stamp_s(msg.header.stamp) + self.time_offset)
        self._pending_frames.append(out)
        self.last_frame_stamp = stamp_s(out.header.stamp)

    def _tag(self, info) -> tuple[float, float]:
        """(node clock, true sim time) when the safety node published a message.

        The DDS source timestamp (the writer's system clock, the same clock as time.time_ns()
        here) is compared with the moments this process published each /clock and relayed each
        sim step, so a late delivery to this process cannot shift the tag. Only a safety node
        running a whole period late would be tagged one period late.
        """
        written = info['source_timestamp']
        k = bisect.bisect_right(self._clock_ns, written) - 1
        j = bisect.bisect_right(self._sim_ns, written) - 1
        return (self._clock_values[k] if k >= 0 else 0.0,
                self._sim_values[j] if j >= 0 else 0.0)

    def _on_output(self, msg, info) -> None:
        clock, sim = self._tag(info)
        self.outputs.append(Output(clock, sim, np.array(msg.data, dtype=float)))

    def _on_status(self, msg, info) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        clock, sim = self._tag(info)
        self.statuses.append(Status(clock, sim, values.get('state', ''),
                                    values.get('reason', ''), values))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if 'supervisor' in status.name:
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    # ---------------------------------------------------------------- driving
    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S,
                   what: str = 'condition') -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout_s:.0f} s waiting for {what}; '
                                     f'state {self.state}')
            for proc in self.procs:
                if not proc.running():
                    raise AssertionError(f'{proc.spec.name} exited with '
                                         f'{proc.proc.returncode}:\n{proc.log_text()[-3000:]}')
            self.session.spin_once(0.01)

    def spin_sim(self, seconds: float) -> None:
        """Spin until `seconds` of true sim time have passed."""
        target = self.sim_time + seconds - 1e-6
        self.spin_until(lambda: self.sim_time >= target, WAIT_S + seconds * 5,
                        f'{seconds} s of sim time')

    def ticks(self, n: int = 1) -> None:
        """Spin until `n` more joint_states came from the sim."""
        count = len(self.measured) + n
        self.spin_until(lambda: len(self.measured) >= count, WAIT_S, f'{n} sim ticks')

    def call(self, service: str) -> tuple[bool, str]:
        from std_srvs.srv import Trigger
        future = self.clients[service].call_async(Trigger.Request())
        self.spin_until(future.done, WAIT_S, f'safety/{service} answer')
        response = future.result()
        return bool(response.success), str(response.message)

    @property
    def state(self) -> str:
        return self.statuses[-1].state if self.statuses else '?'

    @property
    def reason(self) -> str:
        return self.statuses[-1].reason if self.statuses else '?'

    def counters(self) -> dict[str, int]:
        """Counters from the next /diagnostics message (published once per node-clock second)."""
        n = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > n, WAIT_S, '/diagnostics')
        return {k: int(v) for k, v in self.diagnostics[-1].items() if v.lstrip('-').isdigit()}

    def reset_faults(self) -> None:
        """Undo every injected fault and stop the policy."""
        self.policy = None
        self.clock_paused = self.js_paused = self.camera_paused = False
        self.js_delay = 0.0
        self.frozen = {}

    def arm(self, settle_ticks: int = 3) -> None:
        """Bring the node to ARMED from any state (reset_estop first, then arm)."""
        self.ticks(settle_ticks)
        if self.state == 'ESTOP':
            self.call('reset_estop')
        deadline = time.monotonic() + WAIT_S
        while True:
            ok, message = self.call('arm')
            if ok:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f'arm refused: {message}')
            self.ticks(1)
        self.spin_until(lambda: self.state == 'ARMED', WAIT_S, 'ARMED status')


    # ---------------------------------------------------------------- commands
    def send(self, kind: str, msg) -> None:
        """Publish `msg` on the supervisor input `kind` (the policy's side)."""
        self.pubs[kind].publish(msg)
        self.last_command_clock = self.clock

    def send_positions(self, values) -> None:
        self.last_positions = np.array(values, dtype=float)
        self.send('positions', float_array(values))

    def last_output(self) -> np.ndarray:
        self.spin_until(lambda: bool(self.outputs), WAIT_S, 'a robot-side command')
        return self.outputs[-1].q.copy()

    @property
    def home(self) -> np.ndarray:
        from noetra_ros.core.robots import home_positions
        return np.array(home_positions(ROBOT), dtype=float)

    def prepare(self, pose: np.ndarray | None = None) -> None:
        """Clear every fault, arm, and (optionally) move to `pose`; ends ARMED and at rest."""
        self.reset_faults()
        self.arm()
        if pose is None:
            return
        target = np.asarray(pose, dtype=float)
        self.policy = lambda t, q: self.send_positions(target)

        def arrived() -> bool:
            tail = self.outputs[-2:]
            return (len(tail) == 2 and np.allclose(tail[1].q, target, atol=1e-6)
                    and np.array_equal(tail[0].q, tail[1].q))
        self.spin_until(arrived, WAIT_S, f'arrival at {np.round(target, 3)}')
        self.policy = None
        self.spin_until(lambda: self.state == 'HOLDING', WAIT_S, 'command timeout after move')
        self.ticks(2)  # let the sim settle on the target
        self.arm()

    def status_since(self, index: int, state: str | None = None,
                     reason: str | None = None) -> Status | None:
        """First status from `index` on with that state (and reason substring)."""
        for status in self.statuses[index:]:
            if (state is None or status.state == state) and (
                    reason is None or reason in status.reason):
                return status
        return None

    def wait_status(self, index: int, state: str, reason: str | None = None,
                    timeout_s: float = WAIT_S) -> Status:
        self.spin_until(lambda: self.status_since(index, state, reason) is not None, timeout_s,
                        f'status {state} {reason or ""}')
        return self.status_since(index, state, reason)

    def measured_at(self, sim_time: float) -> np.ndarray:
        """True (sim) arm positions at the last joint_states stamped <= sim_time."""
        best = self.measured[0][1]
        for t, q in self.measured:
            if t > sim_time + 1e-9:
                break
            best = q
        return best


# --------------------------------------------------------------------------- messages
def float_array(values) -> Any:
    from std_msgs.msg import Float64MultiArray
    msg = Float64MultiArray()
    msg.data = [float(v) for v in values]
    return msg


def trajectory(names, points, stamp: float | None, velocities=None) -> Any:
    """JointTrajectory: points are (positions, time_from_start s); stamp None = zero stamp."""
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from noetra_ros.ros_conversions import seconds_to_stamp
    msg = JointTrajectory()
    msg.joint_names = list(names)
    if stamp is not None:
        msg.header.stamp = seconds_to_stamp(stamp)
    for k, (positions, t) in enumerate(points):
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in positions]
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[k]]
        sec = int(math.floor(t))
        point.time_from_start = Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))
        msg.points.append(point)
    return msg


# --------------------------------------------------------------------------- stream analysis
@dataclass(frozen=True)
class Steps:
    """Per-cycle steps of the robot-side stream."""

    dt: np.ndarray      # (K,) step period (s)
    dq: np.ndarray      # (K, N) position step (rad)
    clock: np.ndarray   # (K,) node clock at the end of each step

    @property
    def velocity(self) -> np.ndarray:
        return self.dq / self.dt[:, None]


def _kept(outputs: list[Output]) -> list[Output]:
    """The stream without repeat cycles (same clock, same positions)."""
    kept: list[Output] = []
    for out in outputs:
        if kept and out.clock <= kept[-1].clock + 1e-9 and np.array_equal(out.q, kept[-1].q):
            continue
        kept.append(out)
    return kept


def stream_steps(outputs: list[Output]) -> Steps:
    """Steps between consecutive robot-side commands.

    One cycle runs per joint_states, i.e. one period of the node clock; an extra watchdog cycle
    on an unchanged clock repeats the same positions and is dropped. The period of a step is
    the difference of the node-clock tags (see SafetyRig._tag), at least one period (a tag can
    only be late, which would make a step look shorter) and at most two (the supervisor caps
    its step there).
    """
    kept = _kept(outputs)
    dts, dqs, clocks = [], [], []
    for a, b in zip(kept, kept[1:]):
        gap = b.clock - a.clock
        dts.append(min(max(gap, PERIOD), 2.0 * PERIOD))
        dqs.append(b.q - a.q)
        clocks.append(b.clock)
    n = len(outputs[0].q) if outputs else 0
    return Steps(np.array(dts, dtype=float), np.array(dqs, dtype=float).reshape(-1, n),
                 np.array(clocks, dtype=float))


def armed_clocks(rig: SafetyRig) -> set[float]:
    """Node times of the cycles that armed: their output restarts from the measured position."""
    return {s.clock for s in rig.statuses if s.state == 'ARMED'}


def limit_ratios(steps: Steps, limits: Limits, v0: np.ndarray | None = None,
                 restarts: set[float] = frozenset()) -> tuple[float, float]:
    """max |dq| / (v_max dt) and max |dv| / (a_max dt) over every cycle and joint (<= 1 is
    within the limits). v0 is the velocity before the first step (None: skip the first dv).

    A step ending at a clock in `restarts` is an arming rebase: the output restarts at rest from
    the measured position (C12 checks that step), so it is not a velocity and the velocity
    after it starts from zero.
    """
    v_ratio, a_ratio = 0.0, 0.0
    prev = v0
    for dt, dq, clock in zip(steps.dt, steps.dq, steps.clock):
        if any(abs(clock - r) < 1e-9 for r in restarts):
            prev = np.zeros_like(dq)
            continue
        v = dq / dt
        v_ratio = max(v_ratio, float(np.max(np.abs(dq) / (limits.velocity * dt))))
        if prev is not None:
            a_ratio = max(a_ratio, float(np.max(np.abs(v - prev) / (limits.acceleration * dt))))
        prev = v
    return v_ratio, a_ratio


def nonfinite_values(outputs: list[Output]) -> int:
    return int(sum(int(np.count_nonzero(~np.isfinite(o.q))) for o in outputs))


def max_deviation(outputs: list[Output], reference: np.ndarray) -> float:
    """Largest |q - reference| over a stretch of the robot-side stream (rad)."""
    if not outputs:
        return 0.0
    return float(max(np.max(np.abs(o.q - reference)) for o in outputs))


def output_index(outputs: list[Output], clock: float) -> int:
    """Index of the robot-side command of the cycle at node time `clock` (the last one tagged
    <= clock, searching backwards so earlier timelines do not matter)."""
    for i in range(len(outputs) - 1, -1, -1):
        if outputs[i].clock <= clock + 1e-9:
            return i
    return 0


def _delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


# --------------------------------------------------------------------------- scenarios
# Holds the supervisor also takes when the test machine itself stalls for a few cycles (other
# jobs on a small box delay the sim, the relay or the node): its fail-safe answer to a late
# clock or measurement, not to the fault a scenario injects.
ENVIRONMENT_HOLDS = ('clock stalled', 'joint_states stale', f'{CAMERA} stale', 'tracking error')


def expects(*reasons: str) -> Callable:
    """Declare the hold reasons a scenario provokes itself (see run_scenario)."""
    def mark(scenario: Callable) -> Callable:
        scenario.expected_holds = reasons
        return scenario
    return mark


def run_scenario(rig: SafetyRig, scenario: Callable[[SafetyRig], list[Result]],
                 attempts: int = 2) -> list[Result]:
    """Run `scenario`; run it again (once) only when it failed AND an unplanned hold - one of
    ENVIRONMENT_HOLDS it does not provoke itself - shows the machine stalled meanwhile. The
    repeat is written into every result's detail."""
    expected = getattr(scenario, 'expected_holds', ())
    notes: list[str] = []
    for attempt in range(attempts):
        mark = len(rig.statuses)
        error: AssertionError | None = None
        try:
            results = scenario(rig)
        except AssertionError as exc:
            results, error = [], exc
        disturbed = sorted({s.reason for s in rig.statuses[mark:]
                            if s.state in ('HOLDING', 'FAULT')
                            and any(e in s.reason for e in ENVIRONMENT_HOLDS)
                            and not any(x in s.reason for x in expected)})
        ok = error is None and all(r.passed for r in results)
        if ok or not disturbed or attempt == attempts - 1:
            break
        notes.append(f'run {attempt + 1} disturbed by unplanned hold(s) {disturbed}')
        rig.reset_faults()
    if error is not None:
        raise AssertionError('; '.join(notes + [str(error)])) from error
    if notes:
        for res in results:
            res.detail = f'{res.detail} (repeated: {"; ".join(notes)})'
    return results


# Joints 4-6 of the LR Mate move the tool0 point by at most ~0.1 m per rad from home, so the
# workspace box and the 1 m/s tool-speed limit stay out of the joint-space checks.
WRIST = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 1.0])


def _armed_at_rest(rig: SafetyRig) -> tuple[np.ndarray, int]:
    """Arm (the output restarts from the measured position) and return that output and the
    index of the next one: from here on, any change is motion caused by what follows."""
    rig.arm()
    rig.ticks(1)
    return rig.last_output(), len(rig.outputs)


def scenario_c1_policy_stops(rig: SafetyRig) -> list[Result]:
    """C1: the policy streams a ramp, then stops publishing (killed or hung)."""
    lim = rig.limits
    timeout = lim.profile.command_timeout_s
    rig.prepare(rig.home)
    q0 = rig.last_output()
    speed = np.array([0.0, 0.0, 0.0, 2.0, 0.0, 2.5])  # rad/s
    t0 = rig.clock
    rig.policy = lambda t, q: rig.send_positions(q0 + speed * (t - t0 + PERIOD))
    rig.spin_sim(0.6)
    mark = len(rig.statuses)
    rig.policy = None  # the policy dies: nothing more arrives
    t_last = rig.last_command_clock
    hold = rig.wait_status(mark, 'HOLDING')
    rig.spin_sim(0.8)
    delay = hold.clock - t_last
    # Excursion after the last command, robot-side and measured, against the braking bound
    # v (timeout + 1 cycle) + v^2 / (2 a) from the speed the stream had at that moment.
    i = output_index(rig.outputs, t_last)
    at = rig.outputs[i]
    v = (at.q - rig.outputs[i - 1].q) / PERIOD
    after = [o for o in rig.outputs if o.clock >= t_last]
    bound = np.abs(v) * (timeout + PERIOD) + v * v / (2.0 * lim.acceleration)
    exc_cmd = np.max(np.abs(np.array([o.q for o in after]) - at.q), axis=0)
    sim_last = at.sim
    q_meas_last = rig.measured_at(sim_last)
    meas_after = np.array([q for t, q in rig.measured if t >= sim_last])
    exc_meas = np.max(np.abs(meas_after - q_meas_last), axis=0)
    lag = np.abs(at.q - q_meas_last) + SIM_SETTLE_RAD
    # Report the joint that used the largest share of its bound.
    j = int(np.argmax(exc_cmd / np.maximum(bound, 1e-12)))
    k = int(np.argmax(exc_meas / (bound + lag)))
    # How far the stream runs past the last target the policy sent (direction of motion).
    direction = np.sign(v)
    past = float(np.max(direction * (rig.outputs[-1].q - rig.last_positions)))
    return [
        result('C1', 'policy stops publishing: time to hold (node clock)', delay,
               timeout + 2 * PERIOD, 's',
               f'reason "{hold.reason}"; rule cmd_timeout {timeout} s + 1 cycle, '
               '+1 cycle transport tolerance', also='command timeout' in hold.reason),
        result('C1', 'excursion after the last command, robot-side stream',
               float(exc_cmd[j]), float(bound[j]), 'rad',
               f'{lim.names[j]} at {abs(v[j]):.2f} rad/s; bound v(T+dt)+v^2/2a; the stream '
               f'ends {past:.3f} rad past the last target sent',
               also=bool(np.all(exc_cmd <= bound + 1e-9)), past_last_target_rad=past),
        result('C1', 'excursion after the last command, measured joint_states',
               float(exc_meas[k]), float(bound[k] + lag[k]), 'rad',
               f'{lim.names[k]}; bound + tracking lag at the last command + '
               f'{SIM_SETTLE_RAD} rad servo settling',
               also=bool(np.all(exc_meas <= bound + lag + 1e-6))),
    ]


def scenario_c1_trajectory_once(rig: SafetyRig) -> list[Result]:
    """C1 for trajectories: one JointTrajectory, then silence (what the fault injector did: a
    4 s trajectory kept the arm moving for all of it, and a point at 2^31 s kept the supervisor
    ARMED). The source's last message counts, whatever the command type: the arm holds within
    the command timeout of it, having run a small part of the trajectory."""
    timeout = rig.limits.profile.command_timeout_s
    out = []
    for last_point in (4.0, 2.0 ** 31 - 1.0):
        rig.prepare(rig.home)
        q0 = rig.last_output()
        goal = q0 + WRIST * 2.0
        mark, mark_out = len(rig.statuses), len(rig.outputs)
        sent = rig.clock
        rig.send('trajectory', trajectory(rig.names, [(q0, 0.0), (goal, last_point)], sent))
        hold = rig.wait_status(mark, 'HOLDING')
        rig.spin_sim(1.0)
        share = max_deviation(rig.outputs[mark_out:], q0) / float(np.max(np.abs(goal - q0)))
        state = rig.state
        label = f'{last_point:.0f} s' if last_point < 10 else '2^31 s'
        out += [
            result('C1', f'trajectory to a point at {label} sent once, then silence: time to '
                   'hold (node clock)', hold.clock - sent, timeout + 2 * PERIOD, 's',
                   f'"{hold.reason}"; rule cmd_timeout {timeout} s after the stamp + 1 cycle, '
                   f'+1 cycle transport tolerance; state 1 s later {state}',
                   also='command timeout' in hold.reason and state == 'HOLDING'),
            result('C1', f'trajectory to a point at {label} sent once: share of it run',
                   share, 0.1, '', 'largest joint excursion / the trajectory\'s own'),
        ]
    return out


def scenario_c2_bad_stamps(rig: SafetyRig) -> list[Result]:
    """C2: stale, future and zero-stamped trajectories are rejected and never actuated."""
    rig.prepare(rig.home)
    q0 = rig.last_output()
    target = q0 + WRIST * 0.8
    age = rig.limits.profile.max_command_age_s
    kinds = ['stale_stamp', 'future_stamp', 'zero_stamp']
    stamps = {'stale_stamp': lambda t: t - 3.0 * age, 'future_stamp': lambda t: t + 3.0 * age,
              'zero_stamp': lambda t: None}
    sent = {k: 0 for k in kinds}
    before = rig.counters()
    mark = len(rig.outputs)

    def policy(t: float, q: np.ndarray) -> None:
        kind = kinds[sum(sent.values()) % len(kinds)]
        rig.send('trajectory', trajectory(rig.names, [(target, 0.5)], stamps[kind](t)))
        sent[kind] += 1
    rig.policy = policy
    rig.spin_sim(0.9)
    rig.policy = None
    rig.ticks(3)
    after = rig.counters()
    moved = max_deviation(rig.outputs[mark:], q0)
    missing = sum(max(0, sent[k] - _delta(after, before, f'rejected_{k}')) for k in kinds)
    # Control: the same trajectory with fresh stamps is followed (streamed, as a live source
    # does: one message alone lives only command_timeout_s).
    mark = len(rig.outputs)
    rig.policy = lambda t, q: rig.send('trajectory', trajectory(rig.names, [(target, 0.5)], t))
    rig.spin_sim(1.0)
    rig.policy = None
    control = max_deviation(rig.outputs[mark:], q0)
    counts = ', '.join(f'{k} {sent[k]}/{_delta(after, before, "rejected_" + k)}' for k in kinds)
    return [
        result('C2', 'stale / future / zero stamp: motion of the robot-side stream', moved, 0.0,
               'rad', f'sent/rejected: {counts}', also=missing == 0),
        result('C2', 'control: same trajectory, fresh stamp, is followed', control, 0.5,
               'rad', 'shows the rejected ones would have moved the arm', at_least=True),
    ]


def scenario_c3_nonfinite(rig: SafetyRig) -> list[Result]:
    """C3: NaN / Inf anywhere in a command rejects the whole message and holds."""
    lim = rig.limits
    rig.prepare(rig.home)
    q0 = rig.last_output()
    nan, inf = float('nan'), float('inf')
    far = q0 + WRIST * 0.7
    partial = far.copy()
    partial[3] = nan
    with_inf = far.copy()
    with_inf[0] = inf
    nan_point = far.copy()
    nan_point[4] = nan
    variants = [
        ('positions, one NaN', 'positions', lambda t: float_array(partial)),
        ('positions, +Inf', 'positions', lambda t: float_array(with_inf)),
        ('velocities, NaN', 'velocities',
         lambda t: float_array([0.0, 0.0, 0.0, 1.0, nan, 1.0])),
        ('trajectory, NaN in point 2', 'trajectory',
         lambda t: trajectory(rig.names, [(far, 0.2), (nan_point, 0.4)], t)),
        ('trajectory, -Inf velocity', 'trajectory',
         lambda t: trajectory(rig.names, [(far, 0.3)], t, velocities=[[0, 0, 0, -inf, 0, 0]])),
    ]
    before = rig.counters()
    start = len(rig.outputs)
    not_held = []
    moved_still = 0.0
    for name, kind, build in variants:
        reference, index = _armed_at_rest(rig)
        mark = len(rig.statuses)
        rig.send(kind, build(rig.clock))
        status = rig.wait_status(mark, 'HOLDING')
        if 'non-finite' not in status.reason:
            not_held.append(name)
        rig.ticks(2)
        moved_still = max(moved_still, max_deviation(rig.outputs[index:], reference))
    # Moving: a valid ramp, then one partial-NaN message inside the stream, then valid again.
    rig.arm()
    q1 = rig.last_output()
    t0 = rig.clock
    speed = np.array([0.0, 0.0, 0.0, 2.5, 0.0, 3.0])
    phase = {'n': 0}

    def policy(t: float, q: np.ndarray) -> None:
        target = q1 + speed * (t - t0 + PERIOD)
        phase['n'] += 1
        if phase['n'] == 8:
            target = target.copy()
            target[5] = nan
            phase['nan_clock'] = t
        rig.send_positions(target)
    mark = len(rig.statuses)
    mark_out = len(rig.outputs)
    rig.policy = policy
    status = rig.wait_status(mark, 'HOLDING')
    rig.spin_sim(0.6)
    rig.policy = None
    after = rig.counters()
    moving = rig.outputs[mark_out - 1:]
    v_ratio, a_ratio = limit_ratios(stream_steps(moving), lim, np.zeros(len(lim.names)))
    delay = status.clock - phase.get('nan_clock', math.nan)
    final = moving[-1].q
    still_after = [o for o in moving if o.clock >= status.clock + 0.5]
    stopped = max_deviation(still_after, final)
    n_nonfinite = nonfinite_values(rig.outputs[start:])
    rejected = _delta(after, before, 'rejected_nonfinite')
    return [
        result('C3', 'NaN/Inf in a command: non-finite values reaching the robot',
               n_nonfinite, 0, '', f'{len(variants) + 1} messages, {rejected} counted '
               'rejected_nonfinite', also=rejected >= len(variants) + 1),
        result('C3', 'NaN/Inf while at rest: motion toward the finite part', moved_still, 0.0,
               'rad', 'every variant -> HOLDING "non-finite command"' if not not_held
               else f'not held: {not_held}', also=not not_held),
        result('C3', 'partial NaN inside a moving stream: time to hold', delay, 2 * PERIOD,
               's', f'"{status.reason}"; 1 cycle +1 tolerance; valid commands after it are '
               f'ignored (motion after stop {stopped:.2g} rad)',
               also='non-finite' in status.reason and stopped == 0.0),
        result('C3', 'deceleration after the NaN: max |dq|/(v_max dt), |dv|/(a_max dt)',
               max(v_ratio, a_ratio), 1.0, '', f'v {v_ratio:.3f}, a {a_ratio:.3f}'),
    ]


def scenario_c4_wrong_names(rig: SafetyRig) -> list[Result]:
    """C4: wrong joint names, order or count -> rejected, FAULT, no motion."""
    rig.prepare(rig.home)
    q0 = rig.last_output()
    target = q0 + WRIST * 0.6
    names = rig.names
    swapped = [names[1], names[0]] + names[2:]
    unknown = names[:5] + ['joint_7']
    variants = [
        ('unknown joint name', 'trajectory',
         lambda t: trajectory(unknown, [(target, 0.5)], t)),
        ('joint order swapped', 'trajectory',
         lambda t: trajectory(swapped, [(target, 0.5)], t)),
        ('5 of 6 joints', 'trajectory', lambda t: trajectory(names[:5], [(target[:5], 0.5)], t)),
        ('point with 5 positions', 'trajectory',
         lambda t: trajectory(names, [(target[:5], 0.5)], t)),
        ('positions, 5 values', 'positions', lambda t: float_array(target[:5])),
        ('positions, 7 values', 'positions', lambda t: float_array(list(target) + [0.0])),
        ('velocities, 5 values', 'velocities', lambda t: float_array([0.5] * 5)),
    ]
    not_faulted = []
    moved = 0.0
    for name, kind, build in variants:
        reference, index = _armed_at_rest(rig)
        mark = len(rig.statuses)
        rig.send(kind, build(rig.clock))
        try:
            rig.wait_status(mark, 'FAULT', timeout_s=3.0)
        except AssertionError:
            not_faulted.append(name)
        rig.ticks(2)
        moved = max(moved, max_deviation(rig.outputs[index:], reference))
    return [
        result('C4', 'wrong names / order / count: variants not ending in FAULT',
               len(not_faulted), 0, f'of {len(variants)}',
               ', '.join(not_faulted) or 'all FAULT "command rejected (names|count)"'),
        result('C4', 'wrong names / order / count: motion of the robot-side stream', moved, 0.0,
               'rad'),
    ]


def scenario_c5_limits(rig: SafetyRig) -> list[Result]:
    """C5: targets beyond the limits (positions and velocities) stop at limit - margin."""
    lim = rig.limits
    rig.prepare(rig.home)
    start = len(rig.outputs)
    start_sim = rig.sim_time
    beyond_hi = rig.home.copy()
    beyond_hi[3], beyond_hi[5] = lim.upper[3] + 0.7, lim.upper[5] + 0.7
    beyond_lo = rig.home.copy()
    beyond_lo[3], beyond_lo[5] = lim.lower[3] - 0.7, lim.lower[5] - 0.7
    for target in (beyond_hi, beyond_lo):
        rig.policy = lambda t, q, target=target: rig.send_positions(target)
        rig.spin_sim(2.0)
    # Velocity commands pushing joint_6 into its upper bound.
    push = np.zeros(len(lim.names))
    push[5] = lim.velocity[5]
    rig.policy = lambda t, q: rig.send('velocities', float_array(push))
    rig.spin_sim(2.0)
    rig.policy = None
    outs = rig.outputs[start:]
    q = np.array([o.q for o in outs])
    outside = int(np.count_nonzero((q < lim.safe_lower - 1e-9) | (q > lim.safe_upper + 1e-9)))
    # How close joint_6 came to max - m and to min + m (>= 0: inside).
    gaps = np.array([lim.safe_upper[5] - q[:, 5].max(), q[:, 5].min() - lim.safe_lower[5]])
    meas = np.array([m for t, m in rig.measured if t >= start_sim])
    meas_out = int(np.count_nonzero((meas < lim.lower - 1e-3) | (meas > lim.upper + 1e-3)))
    return [
        result('C5', 'target beyond limit: samples outside [min+m, max-m], robot-side',
               outside, 0, f'of {q.size}',
               f'joint_6 stopped {gaps[0]:.1e} / {gaps[1]:.1e} rad inside max-m / min+m; '
               f'measured joint_states outside URDF: {meas_out}', also=meas_out == 0),
    ]


def scenario_c6_jumps(rig: SafetyRig) -> list[Result]:
    """C6: the policy's action jumps (chunk splices, reversals at speed)."""
    lim = rig.limits
    rig.prepare(rig.home)
    before = rig.counters()
    mark = len(rig.outputs) - 1
    jump = np.array([0.0, 0.0, 0.0, 1.2, 0.3, 2.5])
    targets = [rig.home + jump, rig.home - jump, rig.home + 0.5 * jump, rig.home - jump,
               rig.home]
    for target in targets:
        rig.policy = lambda t, q, target=target: rig.send_positions(target)
        rig.spin_sim(0.35)
    rig.policy = None
    rig.ticks(4)
    after = rig.counters()
    steps = stream_steps(rig.outputs[mark:])
    v_ratio, a_ratio = limit_ratios(steps, lim, np.zeros(len(lim.names)))
    cartesian = sum(_delta(after, before, k) for k in
                    ('tool_speed_limited', 'workspace_limited', 'workspace_slowdown'))
    return [
        result('C6', 'step in the action: max |dq| / (v_max dt) per cycle', v_ratio, 1.0, '',
               f'{len(steps.dt)} cycles, 5 splices of up to 2.5 rad'),
        result('C6', 'step in the action: max |d(dq/dt)| / (a_max dt) per cycle', a_ratio, 1.0,
               '', f'Cartesian limiters engaged {cartesian} cycles'),
    ]


# Joint targets beyond three faces of the industrial workspace box, each reached through joints
# 1-3 at the tool speed limit, as the fault injector's fuzzed commands were: (face, axis, side,
# target). At the floor (tool0 z = 0.05 m above the table top) the wrist meets the table.
BOX_FACES = (
    ('x min (behind the robot)', 0, 'min', np.array([2.9, 0.4032, -0.0133, 0.0, -1.1542, 0.0])),
    ('y max', 1, 'max', np.array([1.6, 1.0, 0.6, 0.0, -1.0, 0.0])),
    ('floor', 2, 'min', np.array([0.3, 1.6, 0.1, 0.0, 1.9, 0.0])),
)


@expects('tracking error')
def scenario_c6_workspace_faces(rig: SafetyRig) -> list[Result]:
    """C6 at the workspace box: the policy drives tool0 into three faces of the box at the
    tool speed limit (the fault injector measured 4.3 x a_max*dt at the floor, where the old
    limiter cut the step short at the face). At the floor the sim's table stops the wrist
    before tool0 is at the face, which trips the tracking check: the stream counts until then.
    """
    lim = rig.limits
    box = lim.profile.workspace
    worst, speed, outside, overrode, rows = 0.0, 0.0, 0, 0, []
    for face, axis, side, target in BOX_FACES:
        rig.prepare(rig.home)
        before = rig.counters()
        mark, mark_status = len(rig.outputs) - 1, len(rig.statuses)
        rig.policy = lambda t, q, target=target: rig.send_positions(target)
        rig.spin_sim(2.5)
        rig.policy = None
        rig.ticks(2)
        after = rig.counters()
        fault = rig.status_since(mark_status, 'FAULT')
        outs = [o for o in rig.outputs[mark:]
                if fault is None or o.clock < fault.clock - 1e-9]
        _, a_ratio = limit_ratios(stream_steps(outs), lim, np.zeros(len(lim.names)))
        box_out, tool_ratio = lim.tool_checks(outs)
        tool = np.array([lim.model.fk(o.q, link=lim.profile.tool_frame)[:3, 3] for o in outs])
        bound = box.min_xyz[axis] if side == 'min' else box.max_xyz[axis]
        reach = float(np.min(np.abs(tool[:, axis] - bound)))
        worst, speed = max(worst, a_ratio), max(speed, tool_ratio)
        outside += box_out
        overrode += _delta(after, before, 'cartesian_overrode_accel')
        rows.append((face, a_ratio, reach, fault))
    detail = '; '.join(f'{face}: {a:.3f}, tool0 {reach * 1e3:.1f} mm from the face'
                       + (f' (stream until "{fault.reason}")' if fault else '')
                       for face, a, reach, fault in rows)
    # The floor may stop short (the table); the free faces must really be pressed on.
    pressed = all(reach <= 0.01 for face, _, reach, fault in rows if fault is None)
    return [
        result('C6', 'tool0 driven into the workspace box: max |d(dq/dt)| / (a_max dt)', worst,
               1.0, '', f'{detail}; braking steps cut by the tool limits: {overrode}',
               also=pressed and overrode == 0),
        result('C6', 'tool0 driven into the workspace box: samples outside the box, tool '
               'speed / max_tool_speed', speed, 1.0, '', f'outside {outside}',
               also=outside == 0),
    ]


def _ramp_policy(rig: SafetyRig, speed: np.ndarray) -> None:
    q0 = rig.last_output()
    t0 = rig.clock
    rig.policy = lambda t, q: rig.send_positions(q0 + speed * (t - t0 + PERIOD))


@expects('joint_states stale', f'{CAMERA} stale')
def scenario_c7_stalls(rig: SafetyRig) -> list[Result]:
    """C7: joint_states stop (the policy keeps streaming), then the camera stops."""
    lim = rig.limits
    prof = lim.profile
    js_timeout = prof.sensor_timeout('joint_states')
    cam_timeout = prof.sensor_timeout(CAMERA)
    rig.prepare(rig.home)
    _ramp_policy(rig, WRIST * 2.0)
    rig.spin_sim(0.4)
    mark, mark_out = len(rig.statuses), len(rig.outputs) - 1
    rig.js_paused = True
    last_js = rig.last_js_stamp
    hold = rig.wait_status(mark, 'HOLDING')
    rig.spin_sim(0.6)
    js_delay = hold.clock - last_js
    v_ratio, a_ratio = limit_ratios(stream_steps(rig.outputs[mark_out:]), lim)
    # Measurements come back: nothing re-arms by itself while the policy keeps streaming.
    rig.js_paused = False
    rig.spin_sim(0.2)
    resume = len(rig.outputs)
    rig.spin_sim(0.6)
    restarted = max_deviation(rig.outputs[resume:], rig.outputs[resume].q)
    state_after = rig.state
    rig.policy = None
    # Camera stall.
    rig.prepare()
    _ramp_policy(rig, WRIST * 0.5)
    rig.spin_sim(0.2)
    mark = len(rig.statuses)
    rig.camera_paused = True
    last_frame = rig.last_frame_stamp
    cam_hold = rig.wait_status(mark, 'HOLDING')
    rig.policy = None
    rig.camera_paused = False
    cam_delay = cam_hold.clock - last_frame
    watchdog = 2 * PERIOD
    return [
        result('C7', 'joint_states stall: time to hold after the last sample (node clock)',
               js_delay, js_timeout + watchdog + PERIOD, 's',
               f'"{hold.reason}"; source_timeout {js_timeout} s + watchdog interval (2 cycles) '
               '+1 cycle tolerance', also='joint_states stale' in hold.reason),
        result('C7', 'joint_states stall: deceleration max |dq|/(v dt), |dv|/(a dt)',
               max(v_ratio, a_ratio), 1.0, '', f'v {v_ratio:.3f}, a {a_ratio:.3f}'),
        result('C7', 'joint_states back, policy streaming: motion without re-arm',
               restarted, 0.0, 'rad', f'state stays {state_after}',
               also=state_after == 'HOLDING'),
        result('C7', 'camera stall (watched_sensors): time to hold after the last frame',
               cam_delay, cam_timeout + 2 * PERIOD, 's',
               f'"{cam_hold.reason}"; source_timeout {cam_timeout} s + 1 cycle, +1 tolerance',
               also='stale' in cam_hold.reason),
    ]


@expects('joint_states stale')
def scenario_c8_latency(rig: SafetyRig) -> list[Result]:
    """C8: joint_states stamps delayed by 60-90 ms (slowdown), then 300 ms (hold)."""
    lim = rig.limits
    prof = lim.profile
    timeout = prof.sensor_timeout('joint_states')
    start_age = prof.sensor_slowdown_fraction * timeout
    start = rig.home.copy()
    start[5] = lim.safe_lower[5] + 0.5
    rig.prepare(start)
    before = rig.counters()
    command = 3.0  # rad/s on joint_6, about a third of its v_max
    push = np.zeros(len(lim.names))
    push[5] = command
    rig.policy = lambda t, q: rig.send('velocities', float_array(push))
    rig.spin_sim(0.3)
    phases = []
    for delay in (0.07, 0.085, 0.095):
        rig.js_delay = delay
        begin = rig.clock
        rig.spin_sim(0.4)
        outs = [o for o in rig.outputs if begin + 0.25 <= o.clock <= rig.clock]
        steps = stream_steps(outs)
        speed = float(np.max(np.abs(steps.velocity[:, 5]))) if len(steps.dt) else math.nan
        scale = max(0.0, (timeout - delay) / (timeout - start_age))
        phases.append((delay, speed, min(command, scale * lim.velocity[5])))
    mark = len(rig.statuses)
    rig.js_delay = 0.3
    injected = rig.clock
    hold = rig.wait_status(mark, 'HOLDING')
    rig.policy = None
    rig.js_delay = 0.0
    after = rig.counters()
    worst = max(speed / cap for _, speed, cap in phases)
    slowest = min(speed / cap for _, speed, cap in phases)
    missed = _delta(after, before, 'deadline_missed')
    text = '; '.join(f'{d * 1e3:.0f} ms: {s:.2f}/{c:.2f}' for d, s, c in phases)
    return [
        result('C8', 'latency 70/85/95 ms: joint_6 speed / min(command, scaled v_max)', worst,
               1.0, '', f'{text} rad/s; command {command} rad/s, v_max '
               f'{lim.velocity[5]:.2f} rad/s, slowdown from {start_age * 1e3:.0f} ms',
               also=slowest > 0.9),  # slowed to the scale, not stopped
        result('C8', 'latency: deadline_missed events counted', missed, 1, '',
               f'sensor_slowdown cycles {_delta(after, before, "sensor_slowdown")}',
               at_least=True),
        result('C8', 'latency 300 ms: time to hold (node clock)', hold.clock - injected,
               2 * PERIOD, 's', f'"{hold.reason}"; 1 cycle +1 tolerance',
               also='stale' in hold.reason),
    ]


@expects('tracking error')
def scenario_c11_blocked_joint(rig: SafetyRig) -> list[Result]:
    """C11: joint_4 is reported frozen (blocked) while the command moves it."""
    lim = rig.limits
    prof = lim.profile
    rig.prepare(rig.home)
    speed = 1.5
    _ramp_policy(rig, np.array([0.0, 0.0, 0.0, speed, 0.0, 0.0]))
    rig.spin_sim(0.2)
    mark = len(rig.statuses)
    frozen = float(rig.q_relayed[3])
    rig.frozen = {3: frozen}
    frozen_at = rig.clock
    fault = rig.wait_status(mark, 'FAULT')
    rig.spin_sim(0.4)
    rig.policy = None
    before_fault = rig.outputs[output_index(rig.outputs, fault.clock - PERIOD)]
    excess = abs(before_fault.q[3] - frozen)
    after = [o for o in rig.outputs if o.clock >= fault.clock]
    rebased = max_deviation(after[1:], after[1].q) if len(after) > 1 else math.nan
    jump = abs(after[0].q[3] - before_fault.q[3]) if after else math.nan
    mirror = abs(after[-1].q[3] - frozen) if after else math.nan
    rig.frozen = {}
    tol, window = prof.tracking_error_tolerance_rad, prof.tracking_window_s
    bound = tol + speed * (window + prof.sensor_timeout('joint_states') + PERIOD)
    return [
        result('C11', 'blocked joint: command beyond the blocked position at the fault',
               excess, bound, 'rad', f'"{fault.reason}" {fault.clock - frozen_at:.2f} s after '
               f'the block; bound tol + v (window + js latency + 1 cycle)',
               also='tracking error' in fault.reason),
        result('C11', 'after the fault the command sits at the measured position',
               mirror, 1e-9, 'rad', f'the hold walks {jump:.3f} rad back to the measured '
               f'position at <= v_max*dt per cycle; then still ({rebased:.1g} rad)'),
    ]


def _first_armed_output(rig: SafetyRig, index: int, held: np.ndarray) -> np.ndarray | None:
    for out in rig.outputs[index:]:
        if not np.array_equal(out.q, held):
            return out.q
    return None


def _arm_delta(rig: SafetyRig) -> tuple[bool, float]:
    """Arm by service; |first output after arming - the measurement it was armed on|."""
    held = rig.last_output()
    recent = [q for _, q in rig.relayed[-3:]]
    index = len(rig.outputs)
    ok, _ = rig.call('arm')
    recent += [q for _, q in rig.relayed[-3:]]
    rig.ticks(3)
    first = _first_armed_output(rig, index, held)
    if first is None:  # the measurement equalled the held command exactly
        first = held
    return ok, float(min(np.max(np.abs(first - q)) for q in recent))


def _estop_excursions(rig: SafetyRig, estop: Status
                      ) -> tuple[float, float, float, float, int]:
    """After an e-stop request: how far the robot-side stream and the measured arm went on,
    against v^2 / (2 a_max) from the stream's speed at the request (for the arm plus the gap
    between command and arm then). Returns (stream, bound, arm, arm bound, joint) for the joint
    that used the largest share of its bound."""
    lim = rig.limits
    kept = _kept(rig.outputs)
    k = max(i for i, o in enumerate(kept) if o.clock <= estop.clock + 1e-9)
    gap = kept[k].clock - kept[k - 1].clock
    v = np.abs(kept[k].q - kept[k - 1].q) / min(max(gap, PERIOD), 2.0 * PERIOD)
    bound = v * v / (2.0 * lim.acceleration)
    after = np.array([o.q for o in kept[k:]])
    stream = np.max(np.abs(after - kept[k].q), axis=0)
    q_meas = rig.measured_at(estop.sim)
    meas_after = np.array([q for t, q in rig.measured if t >= estop.sim])
    arm = np.max(np.abs(meas_after - q_meas), axis=0)
    arm_bound = bound + np.abs(kept[k].q - q_meas) + SIM_SETTLE_RAD
    j = int(np.argmax(np.maximum(stream / np.maximum(bound, 1e-12), arm / arm_bound)))
    return float(stream[j]), float(bound[j]), float(arm[j]), float(arm_bound[j]), j


def scenario_c12_rearm(rig: SafetyRig) -> list[Result]:
    """C12 + estop: latch by topic and service, reset does not restart, arm starts at the
    measured state."""
    from std_msgs.msg import Bool
    rig.prepare(rig.home)
    _ramp_policy(rig, WRIST * 1.5)
    rig.spin_sim(0.3)
    mark = len(rig.statuses)
    sent = rig.clock
    rig.send('estop', Bool(data=True))
    estop = rig.wait_status(mark, 'ESTOP')
    rig.spin_sim(0.5)
    stream_exc, stream_bound, arm_exc, arm_bound, j = _estop_excursions(rig, estop)
    stop_idx = len(rig.outputs)
    rig.spin_sim(0.5)  # policy still streaming
    latched = max_deviation(rig.outputs[stop_idx:], rig.outputs[stop_idx - 1].q)
    state_latched = rig.state
    # reset_estop alone: HOLDING, and no motion while the policy keeps streaming.
    ok_reset, reset_msg = rig.call('reset_estop')
    rig.ticks(1)
    idx = len(rig.outputs)
    rig.spin_sim(0.8)
    after_reset = max_deviation(rig.outputs[idx:], rig.outputs[idx - 1].q)
    state_reset = rig.state
    # Explicit arm: the first output equals the measured state, then the stream is followed.
    rig.policy = None
    rig.ticks(3)
    ok_arm, delta_arm = _arm_delta(rig)
    # Service estop latches too; arm is refused until reset.
    mark = len(rig.statuses)
    ok_estop_srv, _ = rig.call('estop')
    rig.wait_status(mark, 'ESTOP')
    refused_ok, refused_msg = rig.call('arm')
    rig.call('reset_estop')
    # hold service from ARMED
    rig.arm()
    mark = len(rig.statuses)
    rig.call('hold')
    hold_status = rig.wait_status(mark, 'HOLDING')
    return [
        result('C12', 'estop topic while moving: time to ESTOP (node clock)',
               estop.clock - sent, 2 * PERIOD, 's', f'"{estop.reason}"'),
        result('C12', 'estop while moving: robot-side stream after the request',
               stream_exc, stream_bound, 'rad', f'{rig.limits.names[j]}; bound v^2/(2 a_max) '
               'per joint, v its speed at the request (docs/SAFETY.md "e-stop")'),
        result('C12', 'estop while moving: measured arm after the request', arm_exc,
               arm_bound, 'rad', f'{rig.limits.names[j]}; bound + what was sent but not yet '
               f'reached at the request + {SIM_SETTLE_RAD} rad servo settling'),
        result('C12', 'ESTOP latched, policy streaming: motion after the stop', latched, 0.0,
               'rad', f'state {state_latched}', also=state_latched == 'ESTOP'),
        result('C12', 'reset_estop alone, policy streaming: motion', after_reset, 0.0, 'rad',
               f'reset -> {state_reset} ("{reset_msg}")',
               also=ok_reset and state_reset == 'HOLDING'),
        result('C12', 'explicit arm: first output - measured state', delta_arm, 1e-9, 'rad',
               'arm accepted' if ok_arm else 'arm refused', also=ok_arm),
        result('C12', 'estop service latches: arm accepted while latched', int(refused_ok), 0,
               '', f'arm answer "{refused_msg}"; hold service -> "{hold_status.reason}"',
               also=ok_estop_srv and 'hold requested' in hold_status.reason),
    ]


def scenario_c12_never_armed_creep(rig: SafetyRig) -> list[Result]:
    """C12 (activation): before the first arm the node mirrors the measured position every
    cycle. Measured at rig start-up: how far the arm moved meanwhile."""
    boot = rig.startup
    return [
        result('C12', 'never armed, output mirrors the measurement: arm drift',
               boot.get('unarmed_drift_rad', math.nan), 10 * SIM_HOLD_NOISE_RAD, 'rad',
               f'over {boot.get("unarmed_drift_s", 0):.1f} s; an armed hold drifts '
               f'< {SIM_HOLD_NOISE_RAD} rad; a 2 mrad dead band keeps the sag from feeding back'),
    ]


@expects('clock stalled')
def scenario_c16_clock(rig: SafetyRig) -> list[Result]:
    """C16: /clock absent at start, paused, frozen together with joint_states, and rewound."""
    prof = rig.limits.profile
    stall = prof.command_timeout_s
    boot = rig.startup
    out = [
        result('C16', '/clock absent at start: robot-side commands published',
               boot.get('outputs_without_clock', math.nan), 0, '',
               f'arm answer "{boot.get("arm_message")}"',
               also=boot.get('arm_accepted') is False),
    ]
    # /clock paused, joint_states still flowing.
    rig.prepare(rig.home)
    _ramp_policy(rig, WRIST * 1.0)
    rig.spin_sim(0.3)
    mark = len(rig.statuses)
    rig.clock_paused = True
    paused_at = rig.sim_time
    hold = rig.wait_status(mark, 'HOLDING')
    rig.policy = None
    out.append(result('C16', '/clock paused: time to hold (sim seconds of the source)',
                      hold.sim - paused_at, stall + PERIOD, 's',
                      f'"{hold.reason}"; rule: clock still for cmd_timeout {stall} s, '
                      '+1 cycle tolerance', also='clock stalled' in hold.reason))
    # The whole source freezes: no /clock and no joint_states; only the watchdog runs.
    rig.prepare(rig.home)
    _ramp_policy(rig, WRIST * 1.0)
    rig.spin_sim(0.3)
    mark = len(rig.statuses)
    rig.clock_paused = rig.js_paused = True
    paused_at = rig.sim_time
    hold = rig.wait_status(mark, 'HOLDING')
    rig.policy = None
    stall_cycles = math.ceil(stall / PERIOD)
    out.append(result(
        'C16', '/clock and joint_states frozen: time to hold (steady clock ~ sim s)',
        hold.sim - paused_at, stall_cycles * 2 * PERIOD + 2 * PERIOD, 's',
        f'"{hold.reason}"; {stall_cycles} watchdog cycles of 2 periods (steady clock), '
        '+2 cycles tolerance', also='clock stalled' in hold.reason))
    # The clock jumps 3 s backwards (every stamp with it).
    rig.prepare(rig.home)
    _ramp_policy(rig, WRIST * 1.0)
    rig.spin_sim(0.3)
    mark = len(rig.statuses)
    jumped_at = rig.sim_time
    rig.time_offset -= 3.0
    hold = rig.wait_status(mark, 'HOLDING')
    rig.policy = None
    rig.ticks(3)
    ok_arm, delta = _arm_delta(rig)
    out.append(result('C16', '/clock jumps 3 s back: time to hold (sim seconds)',
                      hold.sim - jumped_at, 2 * PERIOD, 's',
                      f'"{hold.reason}"; 1 cycle +1 tolerance; re-arm on the new timeline '
                      f'{"accepted" if ok_arm else "refused"}, first output - measured '
                      f'{delta:.1g} rad',
                      also='clock backwards' in hold.reason and ok_arm and delta <= 1e-9))
    return out


FLOOD_SCRIPT = r'''
import os, sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
topic, rate, seconds, width, height, trigger = (sys.argv[1], float(sys.argv[2]),
                                                float(sys.argv[3]), int(sys.argv[4]),
                                                int(sys.argv[5]), sys.argv[6])
rclpy.init()
node = rclpy.create_node('camera_flood')
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
latest = {}
node.create_subscription(Clock, '/clock', lambda m: latest.__setitem__('clock', m.clock), qos)
pub = node.create_publisher(Image, topic, qos)
msg = Image(height=height, width=width, encoding='rgb8', step=width * 3)
msg.data = np.random.default_rng(0).integers(0, 255, width * height * 3, np.uint8).tobytes()
while rclpy.ok() and ('clock' not in latest or pub.get_subscription_count() == 0):
    rclpy.spin_once(node, timeout_sec=0.05)
print('ready', flush=True)
while not os.path.exists(trigger):
    rclpy.spin_once(node, timeout_sec=0.01)
print('flooding', flush=True)
sent = 0
deadline = time.monotonic() + seconds
next_t = time.monotonic()
while rclpy.ok() and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.0)
    msg.header.stamp = latest['clock']
    pub.publish(msg)
    sent += 1
    next_t += 1.0 / rate
    time.sleep(max(0.0, next_t - time.monotonic()))
print('sent', sent, flush=True)
node.destroy_node()
rclpy.try_shutdown()
'''


def scenario_c17_camera_flood(rig: SafetyRig, rate_hz: float = 100.0, seconds: float = 1.5,
                              width: int = 640, height: int = 480) -> list[Result]:
    """C17 (supervisor side): another process floods the watched camera topic with fresh
    frames while the arm streams; the supervisor must keep one cycle per joint_states and not
    hold. The window starts once the flooding process is up (its start-up is not the load)."""
    import subprocess
    import sys
    from ros_harness import ros_env
    trigger = rig.work_dir / f'flood_{rate_hz:g}_{width}.go'
    log_path = rig.work_dir / f'flood_{rate_hz:g}_{width}.log'
    trigger.unlink(missing_ok=True)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-c', FLOOD_SCRIPT, CAMERA, str(rate_hz),
                                 str(seconds), str(width), str(height), str(trigger)],
                                stdout=log, stderr=subprocess.STDOUT, env=ros_env(),
                                start_new_session=True)
    try:
        rig.spin_until(lambda: 'ready' in log_path.read_text() or proc.poll() is not None,
                       WAIT_S, 'camera flood process ready')
        rig.prepare(rig.home)
        _ramp_policy(rig, WRIST * 0.5)
        rig.ticks(2)
        trigger.touch()
        rig.spin_until(lambda: 'flooding' in log_path.read_text() or proc.poll() is not None,
                       WAIT_S, 'camera flood started')
        mark, mark_out, relayed = len(rig.statuses), len(rig.outputs), rig.relayed_js
        rig.spin_until(lambda: proc.poll() is not None, WAIT_S + seconds * 10, 'camera flood')
        end_out, end_relayed = len(rig.outputs), rig.relayed_js
    finally:
        if proc.poll() is None:
            proc.kill()
        rig.policy = None
    text = log_path.read_text()
    sent = int(text.split('sent')[-1].split()[0]) if 'sent' in text else 0
    outs = rig.outputs[mark_out:end_out]
    tags = np.array([o.clock for o in outs])
    gap = float(np.max(np.diff(tags))) if len(tags) > 1 else math.nan
    held = rig.status_since(mark, 'HOLDING')
    return [
        result('C17', f'camera flood, {sent} frames {width}x{height} in {seconds:g} s: longest '
               'gap between cycles (node clock)', gap, 2 * PERIOD, 's',
               f'{len(outs)} cycles for {end_relayed - relayed} joint_states; '
               f'{"no hold" if held is None else "held: " + held.reason}; 1 cycle +1 tolerance',
               also=held is None and sent > 0),
    ]


def _set_parameters(rig: SafetyRig, params: list, atomically: bool = False) -> list[bool]:
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically
    kind = SetParametersAtomically if atomically else SetParameters
    name = 'set_parameters_atomically' if atomically else 'set_parameters'
    client = rig.probe.node.create_client(kind, f'/safety/{name}')
    rig.spin_until(client.service_is_ready, WAIT_S, f'/safety/{name}')
    request = kind.Request(parameters=[p.to_parameter_msg() for p in params])
    future = client.call_async(request)
    rig.spin_until(future.done, WAIT_S, name)
    rig.probe.node.destroy_client(client)
    response = future.result()
    if atomically:
        return [bool(response.result.successful)]
    return [bool(r.successful) for r in response.results]


def _get_parameters(rig: SafetyRig, names: list[str]) -> list[Any]:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    client = rig.probe.node.create_client(GetParameters, '/safety/get_parameters')
    rig.spin_until(client.service_is_ready, WAIT_S, '/safety/get_parameters')
    future = client.call_async(GetParameters.Request(names=names))
    rig.spin_until(future.done, WAIT_S, 'get_parameters')
    rig.probe.node.destroy_client(client)
    return [parameter_value_to_python(v) for v in future.result().values]


def scenario_c21_parameters(rig: SafetyRig) -> list[Result]:
    """C21: set_parameters that would relax the limits, while ARMED, is rejected."""
    from rclpy.parameter import Parameter
    rig.prepare(rig.home)
    loose = rig.work_dir / 'loose_profile.yaml'
    loose.write_text('name: loose\nvelocity_scale: 1.0\nposition_margin_rad: 0.0\n'
                     'command_timeout_s: 5.0\nsensor_timeouts: {joint_states: 5.0}\n')
    changes = [
        Parameter('profile', value=str(loose)),
        Parameter('period_s', value=0.5),
        Parameter('watched_sensors', value=['']),
        Parameter('auto_arm', value=True),
        Parameter('robot', value='fanuc_lrmate200id7l'),
    ]
    names = [p.name for p in changes]
    before = _get_parameters(rig, names)
    accepted = sum(_set_parameters(rig, changes))
    accepted += sum(_set_parameters(rig, changes, atomically=True))
    after = _get_parameters(rig, names)
    state = rig.state
    return [
        result('C21', 'set_parameters relaxing limits while ARMED: accepted', accepted, 0,
               f'of {len(changes) + 1}', f'{", ".join(names)} (one by one and atomically); '
               f'values unchanged: {before == after}; state {state}',
               also=before == after and state == 'ARMED'),
    ]


# --------------------------------------------------------------------------- C20 fuzzing
def _fuzz_strategies(names: list[str], home: np.ndarray):
    nan, inf = float('nan'), float('inf')
    odd = st.sampled_from([nan, inf, -inf, 1e300, -1e300, 0.0, -0.0, 5e-324])
    number = st.one_of(st.floats(-8.0, 8.0), odd)
    vector = st.lists(number, min_size=0, max_size=8)
    # Mostly-valid commands near home (so some are accepted and move the arm), one value
    # sometimes corrupted.
    near = st.builds(
        lambda d, i, bad, corrupt: [float(v) for v in (
            np.where(np.arange(len(home)) == i, bad, home + np.array(d)) if corrupt
            else home + np.array(d))],
        st.lists(st.floats(-1.5, 1.5), min_size=len(home), max_size=len(home)),
        st.integers(0, len(home) - 1), odd, st.booleans())
    values = st.one_of(vector, near)
    joint_names = st.one_of(st.just(list(names)), st.permutations(list(names)),
                            st.lists(st.sampled_from(list(names) + ['joint_7', '', 'J1']),
                                     max_size=7))
    stamp = st.one_of(st.none(), st.sampled_from([0.0, -0.05, -0.5, 0.01, 0.5, 1.0e6]),
                      st.floats(-2.0, 2.0))
    when = st.one_of(st.floats(0.0, 2.0), st.sampled_from([0.0, 1e-9]))
    points = st.lists(st.tuples(values, when), min_size=0, max_size=4)
    return st.one_of(
        st.tuples(st.just('positions'), values),
        st.tuples(st.just('velocities'), values),
        st.tuples(st.just('gripper'), st.lists(number, min_size=0, max_size=3)),
        st.tuples(st.just('trajectory'), joint_names, points, stamp, st.booleans()),
    )


def _fuzz_message(kind_and_args: tuple, clock: float):
    """Build the ROS message for one fuzz example (times that do not fit the message's
    integer fields are clipped: rclpy refuses to build those at all)."""
    kind = kind_and_args[0]
    if kind != 'trajectory':
        return kind, float_array(kind_and_args[1])
    _, joint_names, points, offset, with_velocities = kind_and_args
    stamp = None if offset is None else max(0.0, min(clock + offset, 2.0e9))
    velocities = [values[::-1] for values, _ in points] if with_velocities else None
    return 'trajectory', trajectory(joint_names, points, stamp, velocities)


def _measured_excursion(rig: SafetyRig, outs: list[Output], since: float) -> np.ndarray:
    """[len(outs), joints]: per output, how far beyond the safe band the measured position had
    been (0 if never) in the readings from sim time `since` up to the output's own `sim`."""
    lim = rig.limits
    readings = [(t, q) for t, q in rig.measured if t >= since]
    times = np.array([t for t, _ in readings])
    excess = (np.maximum.accumulate(np.maximum(
        0.0, np.maximum(lim.safe_lower - np.array([q for _, q in readings]),
                        np.array([q for _, q in readings]) - lim.safe_upper)), axis=0)
        if readings else np.zeros((0, len(lim.safe_lower))))
    out = np.zeros((len(outs), len(lim.safe_lower)))
    for i, o in enumerate(outs):
        seen = int(np.searchsorted(times, o.sim, side='right'))
        if seen:
            out[i] = excess[seen - 1]
    return out


def scenario_c20_fuzz_commands(rig: SafetyRig, examples: int = 40) -> list[Result]:
    """C20: Hypothesis-generated commands on every command input of the live node."""
    lim = rig.limits
    stats = {'examples': 0, 'armed': 0}

    # Built before arming: this process is the node's clock source, so it must not block
    # while the arm is live.
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example=_fuzz_strategies(rig.names, rig.home))
    def run(example):
        stats['examples'] += 1
        stats.setdefault(example[0], 0)
        stats[example[0]] += 1
        if rig.state == 'ESTOP':
            rig.call('reset_estop')
        if rig.state != 'ARMED' and rig.call('arm')[0]:
            stats['armed'] += 1
        kind, msg = _fuzz_message(example, rig.clock)
        rig.send(kind, msg)
        rig.ticks(2)

    rig.prepare(rig.home)
    start = len(rig.outputs) - 1
    grip_start = len(rig.gripper_outputs)
    before = rig.counters()
    run()
    rig.ticks(3)
    alive = all(p.running() for p in rig.procs)
    outs = rig.outputs[start:]
    q = np.array([o.q for o in outs])
    beyond = np.maximum(lim.safe_lower - q, q - lim.safe_upper)
    # An output that restarts from (or, disarmed, mirrors) the measured position sits where the
    # robot is, and the robot can stand a little inside the margin (its position loop overshot
    # a command at the band's edge); from there the supervisor only lets it move inwards
    # (docs/SAFETY.md). So a sample counts as outside only when it is further out than the
    # robot had been by then, during this scenario.
    beyond = beyond - _measured_excursion(rig, outs, outs[0].sim if outs else 0.0)
    outside = int(np.count_nonzero(beyond > 1e-9))
    # Where and how far, so an intermittent excursion can be traced (sample, joint, mrad).
    worst = np.unravel_index(int(np.argmax(beyond)), beyond.shape)
    excursion = (f'; worst {1e3 * beyond[worst]:.3f} mrad beyond the band, joint '
                 f'{worst[1] + 1}, sample {worst[0]} of {len(outs)}' if outside else '')
    v_ratio, a_ratio = limit_ratios(stream_steps(outs), lim, restarts=armed_clocks(rig))
    box_out, tool_ratio = lim.tool_checks(outs)
    after = rig.counters()
    cartesian = sum(_delta(after, before, k) for k in
                    ('tool_speed_limited', 'workspace_limited', 'workspace_slowdown'))
    grip = [v for _, values in rig.gripper_outputs[grip_start:] for v in values]
    from noetra_ros.core.robots import gripper_spec
    stroke = gripper_spec().stroke_per_finger
    grip_bad = sum(1 for v in grip if not (math.isfinite(v) and 0.0 <= v <= stroke))
    return [
        result('C20', f'{stats["examples"]} fuzzed commands: non-finite robot-side values',
               nonfinite_values(outs) + grip_bad, 0, '',
               f'nodes alive: {alive}; re-armed {stats["armed"]} times', also=alive),
        result('C20', 'fuzzed commands: samples outside [min+m, max-m] or tool outside the '
               'workspace box', outside + box_out, 0, f'of {q.size}',
               f'joint samples {outside}, tool samples {box_out}{excursion}'),
        result('C20', 'fuzzed commands: max |dq|/(v_max dt) and tool speed / max_tool_speed',
               max(v_ratio, tool_ratio), 1.0, '',
               f'joint {v_ratio:.3f}, tool {tool_ratio:.3f} over {len(outs)} cycles; '
               f'|dv|/(a_max dt) {a_ratio:.2f} (reported, not bounded here: a tracking fault or '
               f'a clock stall may stop the stream at once; Cartesian limiters acted {cartesian} '
               'cycles)', a_ratio=a_ratio),
    ]


def _fuzz_joint_states(names: list[str], home: np.ndarray):
    nan, inf = float('nan'), float('inf')
    odd = st.sampled_from([nan, inf, -inf, 1e300, 0.0])
    number = st.one_of(st.floats(-4.0, 4.0), odd)
    all_names = list(names) + ['gripper_left_finger_joint', 'gripper_right_finger_joint']
    joint_names = st.one_of(st.just(all_names), st.permutations(all_names),
                            st.lists(st.sampled_from(all_names + ['joint_7']), max_size=9))
    # A plausible reading: the right names, finite, within the URDF, a few cm off.
    plausible = st.lists(st.floats(-0.3, 0.3), min_size=len(home), max_size=len(home))
    stamp = st.one_of(st.sampled_from([None, 0.0, -0.5, 0.01, 1.0e6]), st.floats(-0.2, 0.05))
    return st.one_of(
        st.tuples(st.just('garbage'), joint_names, st.lists(number, max_size=9),
                  st.lists(number, max_size=9), stamp),
        st.tuples(st.just('plausible'), st.just(all_names), plausible, st.just([]),
                  st.just(0.0)),
    )


@expects('tracking error')
def scenario_c20_fuzz_joint_states(rig: SafetyRig, examples: int = 30) -> list[Result]:
    """C20 on the measurement input: fuzzed joint_states interleaved with the real ones."""
    from sensor_msgs.msg import JointState
    from noetra_ros.ros_conversions import seconds_to_stamp
    lim = rig.limits
    stats = {'examples': 0, 'plausible': 0}

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example=_fuzz_joint_states(rig.names, rig.home))
    def run(example):
        kind, joint_names, positions, velocities, offset = example
        stats['examples'] += 1
        if rig.state != 'ARMED':
            rig.call('arm')
        if kind == 'plausible':
            # One corrupted reading in the driver's own stream (it replaces a real one).
            stats['plausible'] += 1
            rig.corrupt_next = np.array(positions)
            rig.ticks(3)
            return
        msg = JointState()
        msg.name = list(joint_names)
        msg.position = [float(v) for v in positions]
        msg.velocity = [float(v) for v in velocities]
        if offset is not None:
            msg.header.stamp = seconds_to_stamp(max(0.0, min(rig.clock + offset, 2.0e9)))
        rig.pub_js.publish(msg)
        rig.ticks(2)

    rig.prepare(rig.home)
    start = len(rig.outputs) - 1
    run()
    rig.ticks(3)
    alive = all(p.running() for p in rig.procs)
    outs = rig.outputs[start:]
    q = np.array([o.q for o in outs])
    beyond_urdf = int(np.count_nonzero((q < lim.lower) | (q > lim.upper)))
    v_ratio, _ = limit_ratios(stream_steps(outs), lim, restarts=armed_clocks(rig))
    faults = [s.reason for s in rig.statuses if s.state == 'FAULT' and s.clock >= outs[0].clock]
    tracking = sum('tracking error' in r for r in faults)
    return [
        result('C20', f'{stats["examples"]} fuzzed joint_states: non-finite or beyond-URDF '
               'robot-side values', nonfinite_values(outs) + beyond_urdf, 0, '',
               f'nodes alive: {alive}', also=alive),
        result('C20', 'fuzzed joint_states: max |dq| / (v_max dt) of the robot-side stream',
               v_ratio, 1.0, '', f'{stats["plausible"]} single corrupted readings (finite, '
               f'in the URDF range, up to 0.3 rad off) -> {tracking} tracking faults whose hold '
               'walks the command toward the reading at <= v_max*dt per cycle'),
    ]


# Every scenario in the order the report runs them (the rig is shared: each one prepares
# its own starting state).
SCENARIOS: tuple[Callable[[SafetyRig], list[Result]], ...] = (
    scenario_c1_policy_stops,
    scenario_c1_trajectory_once,
    scenario_c2_bad_stamps,
    scenario_c3_nonfinite,
    scenario_c4_wrong_names,
    scenario_c5_limits,
    scenario_c6_jumps,
    scenario_c6_workspace_faces,
    scenario_c7_stalls,
    scenario_c8_latency,
    scenario_c11_blocked_joint,
    scenario_c12_rearm,
    scenario_c12_never_armed_creep,
    scenario_c16_clock,
    scenario_c17_camera_flood,
    scenario_c20_fuzz_commands,
    scenario_c20_fuzz_joint_states,
    scenario_c21_parameters,
)
