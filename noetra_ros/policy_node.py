"""policy_node: runs an exported ONNX multimodal policy on a ROS 2 robot (lifecycle node).

Inputs: the contract's cameras (`<camera>/image_raw`), `joint_states`, the wrist wrench and
`task/instruction`, aligned by header stamp. Output: action chunks turned into
`joint_trajectory_controller/joint_trajectory` (or forward position commands) and gripper
commands at the control rate.

- async mode (real robots, realtime sim): inference runs in its own thread whenever a fresh,
  aligned observation is there; a control timer publishes from a queue of future actions in
  which overlapping chunks are blended, so the command stream stays continuous.
- lockstep mode (evaluation): every joint_states message is answered with exactly one command,
  replanning every `replan_steps` steps, so a seeded episode is reproducible.

Stale or missing inputs, a NaN in the state, an image that cannot be converted: no new command
(the controller holds) and a diagnostic that says what and where. Never a non-finite value.
Model loading and contract checks live in noetra_ros.core.policy; this node wires them to ROS.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
import threading
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
import numpy as np
from rclpy.lifecycle import Node as LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from noetra_ros.bringup import share_dir
from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.core.policy.alignment import InputAligner
from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import PolicyRuntime
from noetra_ros.core.robots import robot_spec, gripper_spec
from noetra_ros.core.stats import percentiles
from noetra_ros.ros_conversions import seconds_to_stamp, stamp_to_seconds
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
MODES = ('async', 'lockstep')
INTERFACES = ('trajectory', 'position')
BLENDS = ('crossfade', 'ensemble', 'replace')

PARAMETERS = {
    'model_path': ('', 'ONNX model; relative paths are looked up in the package share folder'),
    'robot': ('fanuc_lrmate200id', 'robot whose joints the contract must match'),
    'execution_provider': ('cpu', 'onnxruntime execution provider: cpu, cuda, tensorrt, openvino'),
    'allow_provider_fallback': (False, 'fall back to CPU (with a warning) if the EP is missing'),
    'intra_op_threads': (1, 'onnxruntime intra-op threads (0 = onnxruntime default)'),
    'inter_op_threads': (1, 'onnxruntime inter-op threads (0 = onnxruntime default)'),
    'mode': ('async', f'one of {MODES}'),
    'control_hz': (20.0, 'rate at which commands are published (async mode)'),
    'replan_steps': (1, 'lockstep: run inference every N control steps'),
    'stamp_tolerance_s': (0.06, 'max stamp difference between joint_states and other inputs'),
    'max_input_age_s': (0.5, 'inputs older than this (node clock) are stale: no command'),
    'blend': ('crossfade', f'how overlapping chunks are joined: one of {BLENDS}'),
    'blend_window_s': (0.15, 'cross-fade / re-average window when a new chunk arrives'),
    'ensemble_coeff': (0.01, 'ACT temporal-ensembling weight exponent (blend=ensemble)'),
    'command_interface': ('trajectory', f'one of {INTERFACES}'),
    'trajectory_points': (3, 'future points per published JointTrajectory'),
    'autostart': (True, 'configure and activate at start (no lifecycle manager needed)'),
}


def resolve_model_path(path: str) -> Path:
    if not path:
        raise ConfigError('parameter model_path is empty: set it to an .onnx file')
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        shared = share_dir() / candidate
        if shared.exists():
            return shared
    return candidate


class PolicyNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__('policy')
        self.p = declare_parameters(self, PARAMETERS, read_only=True)
        for key, allowed in (('mode', MODES), ('command_interface', INTERFACES),
                             ('blend', BLENDS)):
            if self.p[key] not in allowed:
                raise ConfigError(f'parameter {key}={self.p[key]!r}: must be one of {allowed}')
        self.runtime: PolicyRuntime | None = None
        self.active = False
        self._lock = threading.Lock()
        self._new_observation = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._subs, self._timers = [], []
        self.instruction: str | None = None
        self.counters = {'commands': 0, 'inferences': 0, 'no_command_stale': 0,
                         'input_errors': 0, 'inference_errors': 0, 'non_finite_blocked': 0}
        self.last_problem = ''
        self.problems: dict[str, str] = {}  # counter -> its latest reason (diagnostics)
        self.inference_ms: deque[float] = deque(maxlen=2000)
        self.preprocess_ms: deque[float] = deque(maxlen=2000)
        self.e2e_ms: deque[float] = deque(maxlen=2000)
        self.plan_ms: deque[float] = deque(maxlen=2000)
        self._steps_since_plan = 0
        self._pending_step: float | None = None
        self._newest_receipt_for_chunk = 0.0
        if self.p['autostart']:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ConfigError(f'policy could not be configured: {self.last_problem}')
            self.trigger_activate()

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            path = resolve_model_path(self.p['model_path'])
            self.runtime = PolicyRuntime(
                path, self.p['execution_provider'],
                intra_op_threads=int(self.p['intra_op_threads']),
                inter_op_threads=int(self.p['inter_op_threads']),
                allow_fallback=bool(self.p['allow_provider_fallback']))
            spec = robot_spec(self.p['robot'])
            self.joint_names = list(spec.joint_names)
            self.gripper_joints = list(gripper_spec().joint_names)
            self.runtime.validate_robot(self.joint_names, has_gripper=True, has_wrench=True)
        except NoetraError as exc:
            self.last_problem = str(exc)
            self.get_logger().error(f'configure failed, robot will not be commanded: {exc}')
            self.runtime = None
            return TransitionCallbackReturn.FAILURE
        for message in self.runtime.warnings:
            self.get_logger().warn(message)
        contract = self.runtime.contract
        self.cameras = list(contract.cameras)
        self.uses_wrench = contract.uses_wrench
        self.uses_gripper = contract.action.component('gripper_position') is not None
        sources = ['joints', *self.cameras] + (['wrench'] if self.uses_wrench else [])
        self.aligner = InputAligner(sources, 'joints', float(self.p['stamp_tolerance_s']),
                                    float(self.p['max_input_age_s']))
        self.queue = ActionQueue(BlendConfig(strategy=self.p['blend'],
                                             blend_window_s=float(self.p['blend_window_s']),
                                             ensemble_coeff=float(self.p['ensemble_coeff'])))
        self.period = contract.action.step_period_s
        self.action_joints = list(contract.action.component('joint_positions').joints)
        warm = self.runtime.warmup(runs=3)
        self.get_logger().info(
            f'loaded {path.name} ({self.runtime.contract_origin} contract {contract.name!r}) on '
            f'{self.runtime.provider}; cameras {self.cameras}; chunk '
            f'{contract.action.chunk_length} x {self.period:.3f} s; warm-up {1e3 * warm:.1f} ms')

        sensor_qos = qos_profile_sensor_data
        self._subs.append(self.create_subscription(JointState, 'joint_states',
                                                   self._on_joint_state, RELIABLE))
        for camera in self.cameras:
            self._subs.append(self.create_subscription(
                Image, f'{camera}/image_raw',
                lambda msg, cam=camera: self._on_input(cam, msg), sensor_qos))
        if self.uses_wrench:
            self._subs.append(self.create_subscription(
                WrenchStamped, 'force_torque_sensor_broadcaster/wrench',
                lambda msg: self._on_input('wrench', msg), sensor_qos))
        self._subs.append(self.create_subscription(String, 'task/instruction',
                                                   self._on_instruction, LATCHED))
        if self.p['command_interface'] == 'trajectory':
            self.pub_arm = self.create_lifecycle_publisher(
                JointTrajectory, 'joint_trajectory_controller/joint_trajectory', RELIABLE)
        else:
            self.pub_arm = self.create_lifecycle_publisher(
                Float64MultiArray, 'forward_position_controller/commands', RELIABLE)
        self.pub_gripper = self.create_lifecycle_publisher(
            Float64MultiArray, 'gripper_position_controller/commands', RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self._timers.append(self.create_timer(1.0, self._publish_diagnostics))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.queue.clear()
        self.aligner.clear()
        self.active = True
        if self.p['mode'] == 'async':
            self._stop.clear()
            self._worker = threading.Thread(target=self._inference_loop, daemon=True)
            self._worker.start()
            self._timers.append(self.create_timer(1.0 / float(self.p['control_hz']),
                                                  self._control_tick))
        self.get_logger().info(f'active ({self.p["mode"]} mode)')
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self._stop_worker()
        self.queue.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._stop.set()
        self._new_observation.set()
        if self._worker is not None:
            self._worker.join(timeout=2.0)
            self._worker = None

    def _release(self) -> None:
        self.active = False
        self._stop_worker()
        for timer in self._timers:
            self.destroy_timer(timer)
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._timers, self._subs = [], []
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # ---------------------------------------------------------------- inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_instruction(self, msg: String) -> None:
        # Every instruction message starts a task (the same words again mean a new episode):
        # actions planned for the previous one are void, and replanning restarts in phase, so
        # each episode starts from the same policy state.
        self.instruction = msg.data
        with self._lock:
            self.queue.clear()
            self._steps_since_plan = 0
        self.get_logger().info(f'instruction: {msg.data!r}')

    def _on_input(self, source: str, msg) -> None:
        with self._lock:
            self.aligner.add(source, stamp_to_seconds(msg.header.stamp), time.perf_counter(), msg)
        if self._pending_step is not None:
            self._try_lockstep()

    def _on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            self.aligner.add('joints', stamp, time.perf_counter(), msg)
        if not self.active:
            return
        if self.p['mode'] == 'lockstep':
            self._pending_step = stamp
            self._try_lockstep()
        else:
            self._new_observation.set()

    def _try_lockstep(self) -> None:
        """Act on the pending step once every input of exactly that step has arrived.

        The sim publishes all inputs of a step with one stamp, but DDS may deliver a camera frame
        after the joint state; acting on the previous frame would make episodes depend on
        timing. Lockstep cells therefore publish every camera at the control rate.
        """
        stamp = self._pending_step
        with self._lock:
            for source in self.aligner.sources:
                latest = self.aligner.latest(source)
                if latest is None or latest.stamp < stamp:
                    return
        self._pending_step = None
        self._lockstep_step(stamp)

    # ---------------------------------------------------------------- inference
    def _plan(self, reference_stamp: float | None) -> bool:
        """Build inputs from one aligned observation, infer, queue the chunk. True if queued.

        In lockstep the step's own stamp is "now": the /clock message of the step may still be
        in flight, and the result must not depend on when it lands.
        """
        now = self._now() if reference_stamp is None else reference_stamp
        with self._lock:
            alignment = self.aligner.align(now, reference_stamp)
        if not alignment.ok:
            self._problem('no_command_stale', alignment.reason)
            return False
        if self.instruction is None:
            self._problem('no_command_stale', 'no task/instruction received yet')
            return False
        samples = alignment.samples
        joints: JointState = samples['joints'].value
        try:
            positions = _named(joints.name, joints.position, 'joint_states.position')
            gripper = float(np.mean([positions[j] for j in self.gripper_joints])) \
                if all(j in positions for j in self.gripper_joints) else None
            images = {cam: ImageFrame(samples[cam].value.data, samples[cam].value.width,
                                      samples[cam].value.height, samples[cam].value.encoding,
                                      samples[cam].value.step) for cam in self.cameras}
            wrench = None
            if self.uses_wrench:
                w = samples['wrench'].value.wrench
                wrench = [w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z]
            inputs = self.runtime.build_inputs(images, positions, gripper_position=gripper,
                                               wrench=wrench, instruction=self.instruction)
        except (InputError, KeyError) as exc:
            self._problem('input_errors', f'cannot build model inputs: {exc}')
            return False
        if inputs.unknown_words:
            self.get_logger().warn(f'instruction words unknown to the model, mapped to <unk>: '
                                   f'{list(inputs.unknown_words)}', throttle_duration_sec=10.0)
        try:
            chunk = self.runtime.infer(inputs)
        except NoetraError as exc:
            self._problem('inference_errors', f'inference failed: {exc}')
            return False
        columns = [chunk.joint_positions[:, self.action_joints.index(j)]
                   for j in self.joint_names]
        if self.uses_gripper:
            columns.append(chunk.gripper_position)
        values = np.stack(columns, axis=1)
        with self._lock:
            added = self.queue.add(values, samples['joints'].stamp, chunk.step_period_s,
                                   now=now)
            self._newest_receipt_for_chunk = max(s.received for s in samples.values())
        self.counters['inferences'] += 1
        self.plan_ms.append(1e3 * (time.perf_counter() - self._newest_receipt_for_chunk))
        self.inference_ms.append(1e3 * chunk.inference_time_s)
        self.preprocess_ms.append(1e3 * inputs.preprocess_time_s)
        return added

    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            self._new_observation.wait(timeout=0.5)
            self._new_observation.clear()
            if self._stop.is_set() or not self.active:
                continue
            try:
                self._plan(None)
            except Exception as exc:  # keep the thread alive; the control loop holds
                self._problem('inference_errors', f'unexpected error in inference: {exc!r}')

    # ---------------------------------------------------------------- commands
    def _lockstep_step(self, stamp: float) -> None:
        self._steps_since_plan += 1
        with self._lock:
            empty = self.queue.action_at(stamp) is None
        if empty or self._steps_since_plan >= int(self.p['replan_steps']):
            if self._plan(stamp):
                self._steps_since_plan = 0
        self._publish_commands(stamp)

    def _control_tick(self) -> None:
        now = self._now()
        with self._lock:
            stale = self.aligner.stale_sources(now)
        if stale:
            # Never command from stale data; drop what was planned from it.
            with self._lock:
                self.queue.clear()
            self._problem('no_command_stale', f'stale or missing inputs: {stale}')
            return
        self._publish_commands(now)

    def _publish_commands(self, t: float) -> None:
        with self._lock:
            rows = []
            for i in range(max(1, int(self.p['trajectory_points']))):
                row = self.queue.action_at(t + i * self.period)
                if row is None:
                    break
                rows.append(row)
            receipt = self._newest_receipt_for_chunk
        if not rows:
            self._problem('no_command_stale', 'no planned action covers now (queue empty)')
            return
        rows = np.asarray(rows)
        if not np.isfinite(rows).all():
            self._problem('non_finite_blocked', 'non-finite action blocked')
            return
        n = len(self.joint_names)
        if self.uses_gripper:
            self.pub_gripper.publish(Float64MultiArray(data=[float(rows[0, n])]))
        if self.p['command_interface'] == 'trajectory':
            msg = JointTrajectory()
            # t is the control time: the node clock (async) or the observation stamp (lockstep).
            msg.header.stamp = seconds_to_stamp(t)
            msg.joint_names = self.joint_names
            for i, row in enumerate(rows):
                nanos = int(round((i + 1) * self.period * 1e9))
                msg.points.append(JointTrajectoryPoint(
                    positions=[float(v) for v in row[:n]],
                    time_from_start=Duration(sec=nanos // 1_000_000_000,
                                             nanosec=nanos % 1_000_000_000)))
            self.pub_arm.publish(msg)
        else:
            self.pub_arm.publish(Float64MultiArray(data=[float(v) for v in rows[0, :n]]))
        self.counters['commands'] += 1
        self.e2e_ms.append(1e3 * (time.perf_counter() - receipt))

    # ---------------------------------------------------------------- health
    def _problem(self, counter: str, reason: str) -> None:
        self.counters[counter] += 1
        self.last_problem = reason
        self.problems[counter] = reason
        self.get_logger().warn(f'no new command: {reason}', throttle_duration_sec=2.0)

    def stats(self) -> dict:
        return {'inference_ms': percentiles(self.inference_ms),
                'preprocess_ms': percentiles(self.preprocess_ms),
                'plan_ms': percentiles(self.plan_ms),
                'end_to_end_ms': percentiles(self.e2e_ms), **self.counters}

    def diagnostic_values(self) -> dict:
        """The key / values of the node's diagnostic status: counters, latency percentiles as
        <name>_p50 / _p90 / _p99 / _n, and the latest reason behind each problem counter."""
        values = {}
        for key, value in self.stats().items():
            if isinstance(value, dict):
                values.update({f'{key}_{q}': (f'{v:.3f}' if q != 'n' else v)
                               for q, v in value.items()})
            else:
                values[key] = value
        # What and where, not only how often.
        values.update({f'{counter}_reason': reason for counter, reason in self.problems.items()})
        return values

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.OK
        message = 'commanding'
        if not self.active:
            level, message = DiagnosticStatus.WARN, 'inactive'
        elif self.counters['commands'] == 0 or self.last_problem:
            level, message = DiagnosticStatus.WARN, self.last_problem or 'no command yet'
        values = self.diagnostic_values()
        status = DiagnosticStatus(
            level=level, name=f'{self.get_name()}: policy', message=message,
            hardware_id=self.p['robot'],
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self.last_problem = ''
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def _named(names, values, what: str) -> dict[str, float]:
    if len(names) != len(values):
        raise InputError(f'{what}: {len(values)} values for {len(names)} names')
    return dict(zip(names, (float(v) for v in values)))


def main(args=None) -> None:
    run_node(PolicyNode, 'policy', args)


if __name__ == '__main__':
    main()
