"""policy_node: runs an exported ONNX multimodal policy on a ROS 2 robot (lifecycle node).

Inputs: the contract's cameras (`<camera>/image_raw`, sensor_msgs/Image; or, for the cameras
listed in `compressed_cameras`, `<camera>/image_raw/compressed`, sensor_msgs/CompressedImage JPEG
or PNG as image_transport's compressed plugin or usb_cam publish it), the depth of the cameras
its depth inputs name (`<camera>/aligned_depth_to_color/image_raw`, 16UC1 / 32FC1, as
realsense2_camera publishes it; used only when its stamp is its colour frame's), `joint_states`,
the wrist wrench and `task/instruction`, aligned by header stamp. Output: action chunks turned into
`joint_trajectory_controller/joint_trajectory` (or forward position commands) and gripper
commands at the control rate; `policy/inputs` (the audit trail's "computed from": per chunk the
stamp of every input, per command the observations behind it; core/input_trace.py) and the
latched `policy/provenance` (model file sha256 and contract).

- async mode (real robots, realtime sim): inference runs in its own thread whenever a fresh,
  aligned observation is there; a control timer publishes from a queue of future actions in
  which overlapping chunks are blended, so the command stream stays continuous.
- lockstep mode (evaluation): every joint_states message is answered with exactly one command,
  replanning every `replan_steps` steps, so a seeded episode is reproducible. A step waits for
  the instruction as for its camera frames; a step sent again (same stamp: a lockstep sim
  whose first observation nobody answered) is not answered twice.

Stale or missing inputs, a NaN in the state, an image that cannot be converted: no new command
(the controller holds) and a diagnostic that says what and where. Never a non-finite value.
Model loading, contract checks and the policy loop itself (when to infer, the chunk queue and its
blending, the command for a time: core/policy/loop.PolicyLoop, which the in-process evaluation
runs too) live in noetra_ros.core.policy; this node wires them to ROS. `joint_states_qos`
selects a reliable (default) or best-effort (sensor_data, as MotoROS2 publishes) subscription.
The onnxruntime session is closed only after the inference thread has stopped.
"""
from __future__ import annotations

import math

from collections import deque
from pathlib import Path
import threading
import time

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
import numpy as np
from rclpy.lifecycle import Node as LifecycleNode, State, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from noetra_ros.core.audit import model_provenance, PROVENANCE_TOPIC
from noetra_ros.core.input_trace import INPUTS_TOPIC, InputTraceBatcher
from noetra_ros.core.command_stream import CommandStream, INTERPOLATIONS, StreamConfig
from noetra_ros.core.errors import CommandError, ConfigError, InputError, NoetraError
from noetra_ros.core.images import (decode_compressed, DEPTH_ENCODINGS,
                                    describe_depth_encodings)
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.paths import resolve_data_path
from noetra_ros.core.policy.alignment import InputAligner
from noetra_ros.core.policy.chunking import BLEND_STRATEGIES
from noetra_ros.core.policy.contract import depth_source
from noetra_ros.core.policy.loop import (Command, COMMAND_INTERFACES, DEFAULTS as LOOP_DEFAULTS,
                                         LoopConfig, LoopResult, NoFreshInputs, Observation,
                                         PolicyLoop)
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import PolicyRuntime
from noetra_ros.core.robot_model import load_robot_description
from noetra_ros.core.stats import percentiles
from noetra_ros.qos import (JOINT_STATES_QOS_KINDS, joint_states_qos, LATCHED, RELIABLE,
                           SENSOR_DATA)
from noetra_ros.ros_conversions import audit_entries_msg, seconds_to_stamp, stamp_to_seconds
from noetra_ros.ros_main import run_node
from noetra_ros.ros_params import declare_parameters

MODES = ('async', 'lockstep')
INTERFACES = COMMAND_INTERFACES
BLENDS = BLEND_STRATEGIES

PARAMETERS = {
    'model_path': ('', 'ONNX model, or the contract file (.yaml) of a model made of several '
                       'graphs; relative paths are looked up in the package share folder'),
    'robot': ('fanuc_lrmate200id', 'robot whose joints the contract must match'),
    'allow_other_embodiment': (False, 'run a model whose contract names another robot (or other '
                                      'kinematics) than `robot`: logged at WARN; off, such a '
                                      'model is refused at configure'),
    'execution_provider': ('cpu', 'onnxruntime execution provider: cpu, cuda, tensorrt, openvino'),
    'allow_provider_fallback': (False, 'fall back to CPU (with a warning) if the EP is missing'),
    'intra_op_threads': (1, 'onnxruntime intra-op threads (0 = onnxruntime default)'),
    'inter_op_threads': (1, 'onnxruntime inter-op threads (0 = onnxruntime default)'),
    'mode': ('async', f'one of {MODES}'),
    'control_hz': (20.0, 'rate at which commands are published (async mode)'),
    'command_rate_hz': (0.0, 'async mode, opt-in: > 0 publishes a command stream at this rate '
                             '(the driver\'s: 125 / 250 / 500 Hz), position and velocity '
                             'continuous across chunks (core/command_stream.py); 0 = one '
                             'command per control_hz period'),
    'command_interpolation': ('cubic', f'command_rate_hz > 0: one of {INTERPOLATIONS} (as '
                                       'joint_trajectory_controller interpolates)'),
    # The loop's settings default to core/policy/loop.LoopConfig, which the in-process
    # evaluation uses as well: one place for them.
    'replan_steps': (LOOP_DEFAULTS.replan_steps,
                     'lockstep: run inference every N control steps'),
    'min_replan_period_s': (0.0, 'async: at least this long (node clock) between the '
                                 'observations of two inferences; 0 = infer on every fresh '
                                 'observation. With joint_states at a driver rate (500 Hz) '
                                 'set it to replan_steps / control_hz, the lockstep cadence'),
    'stamp_tolerance_s': (0.06, 'max stamp difference between joint_states and other inputs'),
    'max_input_age_s': (0.5, 'inputs older than this (node clock) are stale: no command'),
    'blend': (LOOP_DEFAULTS.blend, f'how overlapping chunks are joined: one of {BLENDS}'),
    'blend_window_s': (LOOP_DEFAULTS.blend_window_s,
                       'cross-fade / re-average window when a new chunk arrives'),
    'ensemble_coeff': (LOOP_DEFAULTS.ensemble_coeff,
                       'ACT temporal-ensembling weight exponent (blend=ensemble)'),
    'rtc_horizon_s': (LOOP_DEFAULTS.rtc_horizon_s,
                      'blend=rtc: how long a new chunk\'s correction towards the executed '
                      'command lasts; 0 = blend_window_s (docs/REALTIME_CHUNKING.md)'),
    'inference_delay_steps': (LOOP_DEFAULTS.inference_delay_steps,
                              'lockstep only, for evaluations: emulate an inference that '
                              'takes N control steps (a chunk is used N steps after its '
                              'observation, one inference in flight); async mode ignores it, '
                              'its delay is the real one'),
    'command_interface': (LOOP_DEFAULTS.command_interface, f'one of {INTERFACES}'),
    'trajectory_points': (LOOP_DEFAULTS.trajectory_points,
                          'future points per published JointTrajectory'),
    'compressed_cameras': ([], 'contract cameras whose frames arrive as sensor_msgs/'
                               'CompressedImage (JPEG / PNG) on <camera>/image_raw/compressed; '
                               'the others as sensor_msgs/Image on <camera>/image_raw'),
    'joint_states_qos': ('reliable', f'joint_states subscription: one of '
                                     f'{JOINT_STATES_QOS_KINDS} (sensor_data = best effort, '
                                     'as MotoROS2 publishes it)'),
    'driver_joint_names': ('urdf', f'joint names in joint_states: one of {SCHEMES} (the '
                                   'driver\'s: fanuc J1..Jn, motoros2 joint_1..n); '
                                   'core/joint_names.py'),
    'joint_name_prefix': ('', 'prefix of the driver\'s arm joint names (fanuc_driver\'s prefix, '
                              'MotoROS2 group_<g>/)'),
    'autostart': (True, 'configure and activate at start (no lifecycle manager needed)'),
}
# How long stopping waits for an inference in progress before handing the session's close to
# the inference thread itself (it closes it when that inference returns); a class attribute so
# a test can shorten it.
WORKER_JOIN_TIMEOUT_S = 2.0
# policy/inputs goes out at least this often (s), and whenever a batch is full.
INPUT_TRACE_FLUSH_S = 0.1


def resolve_model_path(path: str) -> Path:
    if not path:
        raise ConfigError('parameter model_path is empty: set it to an .onnx file (or a '
                          'multi-graph model\'s contract .yaml)')
    return resolve_data_path(path, 'parameter model_path: model file')


class _InferenceWorker:
    """One inference thread (async mode), its stop request, and - when stopping could not wait
    for its last inference - the session it must close once that inference has returned."""

    def __init__(self, target) -> None:
        self.stop = threading.Event()
        self.finished = False
        self.runtime_to_close: PolicyRuntime | None = None
        self.thread = threading.Thread(target=target, args=(self,), daemon=True,
                                       name='policy_inference')


class PolicyNode(LifecycleNode):
    worker_join_timeout_s = WORKER_JOIN_TIMEOUT_S

    def __init__(self) -> None:
        super().__init__('policy')
        self.p = declare_parameters(self, PARAMETERS, read_only=True)
        for key, allowed in (('mode', MODES), ('command_interface', INTERFACES),
                             ('blend', BLENDS), ('joint_states_qos', JOINT_STATES_QOS_KINDS),
                             ('driver_joint_names', SCHEMES)):
            if self.p[key] not in allowed:
                raise ConfigError(f'parameter {key}={self.p[key]!r}: must be one of {allowed}')
        self.loop_config = LoopConfig.from_parameters(self.p)
        self.stream_config: StreamConfig | None = None
        if float(self.p['command_rate_hz']) != 0.0:
            if self.p['mode'] != 'async':
                raise ConfigError('parameter command_rate_hz: the command stream is for async '
                                  'mode; lockstep answers each joint_states with one command')
            try:
                self.stream_config = StreamConfig(float(self.p['command_rate_hz']),
                                                  str(self.p['command_interpolation']))
            except ConfigError as exc:
                raise ConfigError(f'parameters command_rate_hz / command_interpolation: '
                                  f'{exc}') from None
        self._stream: CommandStream | None = None  # made from the measured state when needed
        self._stream_chunks = -1  # queue.added when the stream was last fed
        self._stream_ticks = 0
        self.runtime: PolicyRuntime | None = None
        self.loop: PolicyLoop | None = None
        self.active = False
        # Guards the aligner (filled by subscriptions, read by the inference thread).
        self._lock = threading.Lock()
        # The one lock for everything the diagnostics read: counters, problem records, latency
        # windows. The inference thread and the executor both write them.
        self._health_lock = threading.Lock()
        self._new_observation = threading.Event()
        self._worker: _InferenceWorker | None = None
        self._subs, self._timers = [], []
        self.instruction: str | None = None
        self.counters = {'commands': 0, 'inferences': 0, 'no_command_stale': 0,
                         'input_errors': 0, 'inference_errors': 0, 'non_finite_blocked': 0,
                         'capture_mismatch': 0}
        self.last_problem = ''
        self.problems: dict[str, str] = {}  # counter -> its latest reason (diagnostics)
        self.inference_ms: deque[float] = deque(maxlen=2000)
        self.preprocess_ms: deque[float] = deque(maxlen=2000)
        self.e2e_ms: deque[float] = deque(maxlen=2000)
        self.plan_ms: deque[float] = deque(maxlen=2000)
        self._pending_step: float | None = None
        self._answered_step: float | None = None  # lockstep: the stamp last answered
        self._newest_receipt_for_chunk = 0.0
        # Chunks and commands for policy/inputs; written by the inference and control threads.
        self.input_trace = InputTraceBatcher()
        self._trace_lock = threading.Lock()
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
            robot = load_robot_description(self.p['robot'])
            self.joint_names = list(robot.joint_names)
            assert robot.gripper is not None  # the description includes the gripper by default
            self.gripper_joints = list(robot.gripper.joint_names)
            # joint_states arrive in the driver's names; the contract speaks the description's.
            self.names = JointNameMap.for_scheme(
                self.joint_names, str(self.p['driver_joint_names']),
                str(self.p['joint_name_prefix']), keep=self.gripper_joints)
            self.runtime.validate_robot(self.joint_names, has_gripper=True, has_wrench=True)
            embodiment_note = self.runtime.validate_embodiment(
                str(self.p['robot']),
                allow_other_embodiment=bool(self.p['allow_other_embodiment']))
            if embodiment_note:
                self.get_logger().warn(embodiment_note)
            unknown = [c for c in self.p['compressed_cameras']
                       if c not in self.runtime.contract.cameras]
            if unknown:
                raise ConfigError(f'parameter compressed_cameras: {unknown} are not cameras of '
                                  f'the model (its cameras: {list(self.runtime.contract.cameras)})')
            self.loop = PolicyLoop(self.runtime, self.joint_names, self.loop_config)
        except NoetraError as exc:
            self.last_problem = str(exc)
            self.get_logger().error(f'configure failed, robot will not be commanded: {exc}')
            if self.runtime is not None:
                self.runtime.close()
            self.runtime = None
            return TransitionCallbackReturn.FAILURE
        for message in self.runtime.warnings:
            self.get_logger().warn(message)
        contract = self.runtime.contract
        self.cameras = list(contract.cameras)
        # Depth frames are keyed by their source (`<camera>/aligned_depth_to_color`), the
        # contract's key for them, so colour and depth of one camera never share a slot.
        self.depth_sources = [depth_source(c) for c in contract.depth_cameras]
        self.uses_wrench = contract.uses_wrench
        sources = (['joints', *self.cameras, *self.depth_sources]
                   + (['wrench'] if self.uses_wrench else []))
        # A camera's depth must be the capture of the colour frame it is fed with (same stamp).
        self.aligner = InputAligner(sources, 'joints', float(self.p['stamp_tolerance_s']),
                                    float(self.p['max_input_age_s']),
                                    same_stamp=contract.same_capture)
        self.period = contract.action.step_period_s
        warm = self.runtime.warmup(runs=3)
        self.get_logger().info(
            f'loaded {path.name} ({self.runtime.contract_origin} contract {contract.name!r}) on '
            f'{self.runtime.provider}; cameras {self.cameras}; depth '
            f'{list(contract.depth_cameras)}; chunk '
            f'{contract.action.chunk_length} x {self.period:.3f} s; warm-up {1e3 * warm:.1f} ms')

        # The audit trail's command source (core/audit.py): latched, so a safety node (or a
        # recorder) that starts later still learns which model file and contract command.
        if getattr(self, 'pub_provenance', None) is None:
            self.pub_provenance = self.create_publisher(DiagnosticStatus, PROVENANCE_TOPIC,
                                                        LATCHED)
        # A multi-graph model: its graphs' bytes count too (paths relative to the contract).
        provenance = model_provenance(path, contract.name, contract.contract_version, {
            name: path.parent / file for name, file in contract.graphs.items()})
        self.pub_provenance.publish(DiagnosticStatus(
            name='policy/provenance', message=f'{path.name} sha256 {provenance["model_sha256"]}',
            values=[KeyValue(key=k, value=v) for k, v in provenance.items()]))

        sensor_qos = SENSOR_DATA
        self._subs.append(self.create_subscription(
            JointState, 'joint_states', self._on_joint_state,
            joint_states_qos(self.p['joint_states_qos'])))
        for camera in self.cameras:
            # Decoding waits for the inference that uses the frame (see _frame): the executor
            # thread only stores the message.
            msg_type, topic = ((CompressedImage, f'{camera}/image_raw/compressed')
                               if camera in self.p['compressed_cameras']
                               else (Image, f'{camera}/image_raw'))
            self._subs.append(self.create_subscription(
                msg_type, topic, lambda msg, cam=camera: self._on_input(cam, msg), sensor_qos))
        self.depth_topics: dict[str, str] = {}
        for source in self.depth_sources:
            subscription = self.create_subscription(
                Image, f'{source}/image_raw', lambda msg, src=source: self._on_depth(src, msg),
                sensor_qos)
            self._subs.append(subscription)
            # The resolved name (after remapping): what an error about its frames names.
            self.depth_topics[source] = subscription.topic_name
        if self.uses_wrench:
            self._subs.append(self.create_subscription(
                WrenchStamped, 'force_torque_sensor_broadcaster/wrench',
                lambda msg: self._on_input('wrench', msg), sensor_qos))
        self._subs.append(self.create_subscription(String, 'task/instruction',
                                                   self._on_instruction, LATCHED))
        if self.loop_config.command_interface == 'trajectory':
            self.pub_arm = self.create_lifecycle_publisher(
                JointTrajectory, 'joint_trajectory_controller/joint_trajectory', RELIABLE)
        else:
            self.pub_arm = self.create_lifecycle_publisher(
                Float64MultiArray, 'forward_position_controller/commands', RELIABLE)
        self.pub_gripper = self.create_lifecycle_publisher(
            Float64MultiArray, 'gripper_position_controller/commands', RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self._timers.append(self.create_timer(1.0, self._publish_diagnostics))
        # The audit trail's "computed from" (core/input_trace.py): what each command came from.
        if getattr(self, 'pub_inputs', None) is None:
            self.pub_inputs = self.create_publisher(DiagnosticArray, INPUTS_TOPIC, RELIABLE)
        self._timers.append(self.create_timer(INPUT_TRACE_FLUSH_S, self._flush_input_trace))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.loop.reset()
        with self._lock:
            self.aligner.clear()
        self.active = True
        if self.p['mode'] == 'async':
            # A new thread with its own stop request: one still finishing an inference from
            # before a deactivate ends after it, without picking up new work.
            self._worker = _InferenceWorker(self._inference_loop)
            self._worker.thread.start()
            if self.stream_config is None:
                self._timers.append(self.create_timer(1.0 / float(self.p['control_hz']),
                                                      self._control_tick))
            else:
                self._stream = None
                self._timers.append(self.create_timer(self.stream_config.period_s,
                                                      self._stream_tick))
        self.get_logger().info(f'active ({self.p["mode"]} mode)')
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        self._stop_worker()
        if self.loop is not None:
            self.loop.reset()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> _InferenceWorker | None:
        """Stop the inference thread. Returns None when no thread runs any more, else the worker
        whose inference outlasted worker_join_timeout_s (it ends after that inference)."""
        worker = self._worker
        if worker is None:
            return None
        worker.stop.set()
        self._new_observation.set()
        worker.thread.join(timeout=self.worker_join_timeout_s)
        if worker.thread.is_alive():
            return worker
        self._worker = None
        return None

    def _release(self) -> None:
        """Stop the inference thread, then drop timers, subscriptions and the session.

        The session is closed only once no inference can use it: after the thread has ended,
        or - if one inference outlasts worker_join_timeout_s - by the thread itself when that
        inference returns (never under it).
        """
        self.active = False
        running = self._stop_worker()
        for timer in self._timers:
            self.destroy_timer(timer)
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._timers, self._subs = [], []
        runtime, self.runtime = self.runtime, None
        if runtime is None:
            return
        if running is not None:
            with self._health_lock:
                # Decided under the lock the thread takes on its way out, so exactly one of
                # the two closes the session.
                if not running.finished:
                    running.runtime_to_close, runtime = runtime, None
        if runtime is not None:
            runtime.close()
            return
        self.get_logger().warn(
            f'an inference is still running after {self.worker_join_timeout_s:.1f} s; the '
            'onnxruntime session is closed when it returns')

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
        if self.loop is not None:
            self.loop.reset()
        self._stream = None
        self.get_logger().info(f'instruction: {msg.data!r}')
        if self._pending_step is not None:  # a lockstep step that waited for it
            self._try_lockstep()

    def _on_input(self, source: str, msg) -> None:
        with self._lock:
            self.aligner.add(source, stamp_to_seconds(msg.header.stamp), time.perf_counter(), msg)
        if self._pending_step is not None:
            self._try_lockstep()

    def _on_depth(self, source: str, msg: Image) -> None:
        # A wrong encoding is a cell mistake (a colour topic remapped onto the depth topic):
        # said at once, by its own log line, though the frame is refused where it is used
        # (_observe -> _depth_frame), so the robot holds and input_errors counts it.
        if msg.encoding not in DEPTH_ENCODINGS:
            self.get_logger().error(
                f'{self.depth_topics.get(source, source)}: encoding {msg.encoding!r} is not a '
                f'depth encoding ({describe_depth_encodings()}); its frames are refused, no '
                'command', throttle_duration_sec=5.0)
        self._on_input(source, msg)

    def _on_joint_state(self, msg: JointState) -> None:
        stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            self.aligner.add('joints', stamp, time.perf_counter(), msg)
        if not self.active:
            return
        if self.p['mode'] == 'lockstep':
            if self._answered_step is not None and stamp <= self._answered_step:
                return  # sent again or late: that step has its command
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
        if self.instruction is None:
            return  # the instruction is latched: it comes, and then this step runs
        with self._lock:
            for source in self.aligner.sources:
                latest = self.aligner.latest(source)
                if latest is None or latest.stamp < stamp:
                    return
        self._pending_step = None
        result = self.loop.step(stamp, lambda: self._observe(stamp))
        self._account(result)
        if result.command is not None:
            self._answered_step = stamp
            self._publish(result.command)

    def _observe(self, reference_stamp: float | None) -> Observation:
        """The aligned observation at `reference_stamp` (None: the newest joint state).

        In lockstep the step's own stamp is "now": the /clock message of the step may still be
        in flight, and the result must not depend on when it lands.
        """
        now = self._now() if reference_stamp is None else reference_stamp
        with self._lock:
            alignment = self.aligner.align(now, reference_stamp)
        if not alignment.ok:
            if alignment.unpaired:
                # Colour and depth that are not one capture: counted on their own, as the
                # cause is in the cell (a remap onto unaligned depth, a second clock), not load.
                self._problem('capture_mismatch', alignment.reason)
            raise NoFreshInputs(alignment.reason)
        instruction = self.instruction
        if instruction is None:
            raise NoFreshInputs('no task/instruction received yet')
        samples = alignment.samples
        joints: JointState = samples['joints'].value
        positions = _named(self.names.from_driver(joints.name, 'joint_states.name'),
                           joints.position, 'joint_states.position')
        gripper = float(np.mean([positions[j] for j in self.gripper_joints])) \
            if all(j in positions for j in self.gripper_joints) else None
        images = {cam: _frame(cam, samples[cam].value) for cam in self.cameras}
        for source in self.depth_sources:
            images[source] = _depth_frame(self.depth_topics[source], samples[source].value)
        wrench = None
        if self.uses_wrench:
            w = samples['wrench'].value.wrench
            wrench = [w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z]
        return Observation(stamp=samples['joints'].stamp, joint_positions=positions,
                           images=images, instruction=instruction, gripper_position=gripper,
                           wrench=wrench, received=max(s.received for s in samples.values()),
                           input_stamps={k: s.stamp for k, s in samples.items()})

    # ---------------------------------------------------------------- inference
    def _inference_loop(self, worker: _InferenceWorker) -> None:
        # With joint_states at a driver's rate there is always a fresh observation: without a
        # pace the thread would infer back to back, holding the GIL the command stream's timer
        # needs (gaps in the stream -> supervisor command timeouts).
        pace = float(self.p['min_replan_period_s'])
        last_plan = -math.inf
        try:
            while not worker.stop.is_set():
                self._new_observation.wait(timeout=0.5)
                self._new_observation.clear()
                if worker.stop.is_set() or not self.active:
                    continue
                while pace > 0.0 and self._now() < last_plan + pace and not worker.stop.is_set():
                    worker.stop.wait(min(0.005, pace))
                if worker.stop.is_set() or not self.active:
                    continue
                try:
                    now = self._now()
                    last_plan = now
                    self._account(self.loop.plan(lambda: self._observe(None), now))
                except Exception as exc:  # noqa: BLE001 - the thread outlives any fault
                    # The control loop holds meanwhile (nothing new is queued).
                    self._problem('inference_errors', f'unexpected error in inference: {exc!r}')
        finally:
            with self._health_lock:
                worker.finished = True
                runtime, worker.runtime_to_close = worker.runtime_to_close, None
            if runtime is not None:
                runtime.close()

    # ---------------------------------------------------------------- commands
    def _control_tick(self) -> None:
        now = self._now()
        with self._lock:
            stale = self.aligner.stale_sources(now)
        if stale:
            # Never command from stale data; drop what was planned from it.
            self.loop.discard_plans()
            self._problem('no_command_stale', f'stale or missing inputs: {stale}')
            return
        result = self.loop.command_at(now)
        self._account(result)
        if result.command is not None:
            self._publish(result.command)

    def _stream_tick(self) -> None:
        """command_rate_hz > 0: one sample of the command stream per driver period.

        The loop's queue still blends overlapping chunks (blend, blend_window_s); whenever a new
        chunk was queued, the blended rows over its horizon go to the CommandStream, which joins
        them from the state it is streaming, so the controller gets no position or velocity
        step. Samples are taken on the stream's grid (reset time + n / command_rate_hz), so each
        message moves one period's worth even when the timer fires late; a timer that fell
        more than a period behind skips the missed grid points. Stale inputs: nothing is
        published and the stream restarts from the measured state when commands resume (the
        robot held meanwhile).
        """
        now = self._now()
        with self._lock:
            stale = self.aligner.stale_sources(now)
            joints = self.aligner.latest('joints')
        if stale:
            self.loop.discard_plans()
            self._stream = None
            self._problem('no_command_stale', f'stale or missing inputs: {stale}')
            return
        assert self.stream_config is not None  # this timer exists only with a stream
        queue = self.loop.queue
        n = len(self.joint_names)
        if self._stream is None:
            if joints is None:
                return
            try:
                measured = _named(self.names.from_driver(joints.value.name,
                                                         'joint_states.name'),
                                  joints.value.position, 'joint_states.position')
                start = [measured[j] for j in self.joint_names]
                stream = CommandStream(self.joint_names, self.stream_config)
                stream.reset(now, start)
            except (KeyError, NoetraError) as exc:
                self._problem('input_errors', f'cannot start the command stream from '
                                              f'joint_states: {exc!r}')
                return
            self._stream = stream
            self._stream_chunks = -1
        self._stream.catch_up(now)
        tick_time = self._stream.next_tick_time
        if queue.added != self._stream_chunks:
            self._stream_chunks = queue.added
            rows, times = [], []
            while len(rows) < 1000:
                t = tick_time + (len(rows) + 1) * self.loop.period
                row = queue.action_at(t)
                if row is None:
                    break
                rows.append(row[:n])
                times.append(t)
            if rows:
                try:
                    self._stream.add_chunk(np.asarray(rows), times, tick_time)
                except CommandError as exc:  # the stream keeps its plan
                    self._problem('input_errors', f'chunk not streamed: {exc}')
        if self._stream.switches == 0:
            return  # like the control tick: nothing is commanded before the first chunk
        point = self._stream.tick()
        # The gripper keeps its control_hz rate: a binary-ish target needs no 250 Hz stream.
        decimation = max(1, round(self.stream_config.rate_hz / float(self.p['control_hz'])))
        gripper = None
        if self.loop.uses_gripper and self._stream_ticks % decimation == 0:
            row = queue.action_at(tick_time)
            gripper = None if row is None else float(row[n])
        self._stream_ticks += 1
        self._publish(Command(
            stamp=point.t, joint_names=tuple(self.joint_names), positions=point.positions[None, :],
            times_from_start_ns=(int(round(self.stream_config.period_s * 1e9)),),
            gripper_position=gripper, observations=queue.observation_span(tick_time)))

    def _publish(self, command: Command) -> None:
        n = len(self.joint_names)
        if command.gripper_position is not None:
            self.pub_gripper.publish(Float64MultiArray(data=[command.gripper_position]))
        if self.loop_config.command_interface == 'trajectory':
            msg = JointTrajectory()
            # The stamp is the control time: the node clock (async) or the observation stamp
            # (lockstep).
            msg.header.stamp = seconds_to_stamp(command.stamp)
            msg.joint_names = list(command.joint_names)
            for row, nanos in zip(command.positions, command.times_from_start_ns):
                msg.points.append(JointTrajectoryPoint(
                    positions=[float(v) for v in row[:n]],
                    time_from_start=Duration(sec=nanos // 1_000_000_000,
                                             nanosec=nanos % 1_000_000_000)))
            self.pub_arm.publish(msg)
        else:
            self.pub_arm.publish(Float64MultiArray(
                data=[float(v) for v in command.positions[0]]))
        with self._health_lock:
            self.counters['commands'] += 1
            self.e2e_ms.append(1e3 * (time.perf_counter() - self._newest_receipt_for_chunk))
        with self._trace_lock:
            self.input_trace.command(command.stamp, command.observations)
            full = self.input_trace.full
        if full:
            self._flush_input_trace()

    def _flush_input_trace(self) -> None:
        with self._trace_lock:
            entries = self.input_trace.take()
        if entries:
            self.pub_inputs.publish(audit_entries_msg(entries, str(self.p['robot']),
                                                      self.get_clock().now().to_msg()))

    # ---------------------------------------------------------------- health
    def _account(self, result: LoopResult) -> None:
        """Counters, latency windows and problem records of one loop call, under one lock."""
        inference = result.inference
        if inference is not None:
            if inference.unknown_words:
                self.get_logger().warn(f'instruction words unknown to the model, mapped to '
                                       f'<unk>: {list(inference.unknown_words)}',
                                       throttle_duration_sec=10.0)
            with self._trace_lock:
                self.input_trace.chunk(inference.stamp, inference.input_stamps)
            with self._health_lock:
                self.counters['inferences'] += 1
                self._newest_receipt_for_chunk = inference.received
                # Input receipt -> chunk in the queue (not -> this line: in lockstep the
                # step's command is blended in between, and belongs to the publish figure).
                self.plan_ms.append(1e3 * (inference.queued - inference.received))
                self.inference_ms.append(1e3 * inference.inference_time_s)
                self.preprocess_ms.append(1e3 * inference.preprocess_time_s)
        for problem in result.problems:
            self._problem(problem.kind, problem.reason)

    def _problem(self, counter: str, reason: str) -> None:
        with self._health_lock:
            self.counters[counter] += 1
            self.last_problem = reason
            self.problems[counter] = reason
        self.get_logger().warn(f'no new command: {reason}', throttle_duration_sec=2.0)

    def stats(self) -> dict:
        runtime = self.runtime
        # A multi-graph model's stages as the runtime timed them: stage_<name>_ms, and
        # stage_<name>_step_ms for each step of a denoise loop (none for one ONNX model).
        stages = {} if runtime is None else {
            f'stage_{name}_ms': percentiles(times)
            for name, times in runtime.stage_times_ms().items()}
        with self._health_lock:
            return {'inference_ms': percentiles(self.inference_ms),
                    'preprocess_ms': percentiles(self.preprocess_ms),
                    'plan_ms': percentiles(self.plan_ms),
                    'end_to_end_ms': percentiles(self.e2e_ms), **stages, **self.counters}

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
        with self._health_lock:
            values.update({f'{counter}_reason': reason
                           for counter, reason in self.problems.items()})
        return values

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.OK
        message = 'commanding'
        values = self.diagnostic_values()
        with self._health_lock:
            last_problem, self.last_problem = self.last_problem, ''
            commands = self.counters['commands']
        if not self.active:
            level, message = DiagnosticStatus.WARN, 'inactive'
        elif commands == 0 or last_problem:
            level, message = DiagnosticStatus.WARN, last_problem or 'no command yet'
        status = DiagnosticStatus(
            level=level, name=f'{self.get_name()}: policy', message=message,
            hardware_id=self.p['robot'],
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def _frame(camera: str, msg: Image | CompressedImage) -> ImageFrame:
    """The ImageFrame of a camera message; a CompressedImage is decoded here (InputError naming
    the camera and the cause when it cannot be)."""
    if isinstance(msg, CompressedImage):
        try:
            pixels, encoding = decode_compressed(msg.data, msg.format)
        except InputError as error:
            raise InputError(f'camera {camera!r} (CompressedImage on frame '
                             f'{msg.header.frame_id!r}): {error}') from None
        return ImageFrame(pixels, pixels.shape[1], pixels.shape[0], encoding)
    return ImageFrame(msg.data, msg.width, msg.height, msg.encoding, msg.step)


def _depth_frame(topic: str, msg: Image) -> ImageFrame:
    """The ImageFrame of a depth message; InputError naming the topic and the encoding when
    it is not a depth image (e.g. rgb8 remapped onto the depth topic)."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise InputError(f'{topic}: encoding {msg.encoding!r} (frame {msg.header.frame_id!r}) '
                         f'is not a depth encoding; depth must be {describe_depth_encodings()}')
    return ImageFrame(msg.data, msg.width, msg.height, msg.encoding, msg.step,
                      bool(msg.is_bigendian))


def _named(names, values, what: str) -> dict[str, float]:
    if len(names) != len(values):
        raise InputError(f'{what}: {len(values)} values for {len(names)} names')
    return dict(zip(names, (float(v) for v in values)))


def main(args=None) -> None:
    run_node(PolicyNode, 'policy', args)


if __name__ == '__main__':
    main()
