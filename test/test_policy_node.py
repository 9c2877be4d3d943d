"""policy_node over real rclpy + Fast DDS with real onnxruntime models built by the test."""
import math
import threading

import numpy as np
import onnx
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory
from rclpy.qos import qos_profile_sensor_data

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.policy.runtime import build_toy_model
from noetra_ros.policy_node import PolicyNode
from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp
from noetra_ros import qos
from toy_models import ramp_contract, set_ramp_head

pytestmark = pytest.mark.ros

JOINTS = [f'joint_{i}' for i in range(1, 7)]
FINGERS = ['gripper_left_finger_joint', 'gripper_right_finger_joint']
CHUNK, DT, STEP = 10, 0.05, 0.01   # the ramp model moves every joint STEP rad per chunk row
JUMP = 0.2                          # a step in the measured state (rad)
LATCHED = qos.LATCHED                # task/instruction, as sim_node publishes it


def _contract(joints=JOINTS):
    return ramp_contract(joints, CHUNK, DT)


def _ramp_model(path, joints=JOINTS):
    """Action row k = measured state + k * STEP on every joint (zero weights, fixed bias)."""
    model = set_ramp_head(build_toy_model(_contract(joints), seed=0), CHUNK, STEP,
                          len(joints) + 1)
    onnx.save(model, path)
    return str(path)


class Feeder:
    """Publishes what the sim would: scene images, joint_states (last), the instruction."""

    def __init__(self, session, joint_states_qos=None):
        self.session = session
        self.probe = session.probe('feeder')
        self.pub_js = self.probe.publisher('joint_states', JointState, joint_states_qos)
        self.pub_img = self.probe.publisher('scene_camera/image_raw', Image)
        self.pub_instr = self.probe.publisher('task/instruction', String, LATCHED)
        self.commands = self.probe.record('joint_trajectory_controller/joint_trajectory',
                                          JointTrajectory)
        self.gripper = self.probe.record('gripper_position_controller/commands',
                                         Float64MultiArray)
        self.image = np.full((24, 32, 3), 120, np.uint8)
        self.t = 0.0

    def step(self, q, encoding='rgb8', image=True, joints=True, stamp=None):
        stamp_s = self.t if stamp is None else stamp
        stamp_msg = seconds_to_stamp(stamp_s)
        if image:
            msg = numpy_to_image(self.image, 'rgb8', stamp_msg, 'scene_camera_optical_frame')
            msg.encoding = encoding
            self.pub_img.publish(msg)
        if joints:
            js = JointState(name=JOINTS + FINGERS,
                            position=[float(v) for v in q] + [0.0, 0.0])
            js.header.stamp = stamp_msg
            self.pub_js.publish(js)


def _start(ros_context, model_path, feeder_joint_states_qos=None, **params):
    # The node runs on the probe's clock (wall time): stamps are taken from it below.
    node_params = {'policy': {'model_path': model_path, 'control_hz': 20.0,
                              'trajectory_points': 3, **params}}
    ros_context.start(node_params)
    node = ros_context.add(PolicyNode())
    feeder = Feeder(ros_context, feeder_joint_states_qos)
    ros_context.wait_matched(feeder.probe)
    feeder.pub_instr.publish(String(data='pick the red cube'))
    return node, feeder


def _now(node):
    return node.get_clock().now().nanoseconds * 1e-9


def _drive(ros_context, node, feeder, seconds, q_of_t, **kwargs):
    steps = int(seconds / DT)
    for _ in range(steps):
        t = _now(node)
        feeder.step(q_of_t(t), stamp=t, **kwargs)
        ros_context.spin_for(DT)


def test_inputs_in_commands_out(ros_context, tmp_path):
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'))
    q0 = np.array([0.1, 0.4, -0.1, 0.0, -1.1, 0.2])
    _drive(ros_context, node, feeder, 1.5, lambda t: q0)
    commands = [m for m in feeder.commands]
    assert len(commands) >= 10, 'policy published too few commands'
    msg = commands[-1].msg
    assert list(msg.joint_names) == JOINTS
    assert len(msg.points) == 3
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    assert times == pytest.approx([DT, 2 * DT, 3 * DT])
    first = np.array(msg.points[0].positions)
    assert np.all(np.isfinite(first))
    # Commanded targets follow the model: q0 + k * STEP for the row due at command time.
    offset = first - q0
    assert np.allclose(offset, offset[0], atol=1e-6) and 0.0 <= offset[0] <= CHUNK * STEP
    assert feeder.gripper and all(math.isfinite(m.msg.data[0]) for m in feeder.gripper)
    assert node.stats()['inferences'] >= 10


def test_stale_joint_states_stop_the_command_stream(ros_context, tmp_path):
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'),
                          max_input_age_s=0.2)
    q0 = np.zeros(6)
    _drive(ros_context, node, feeder, 1.0, lambda t: q0)
    assert feeder.commands, 'no command before the stall'
    # Cameras keep coming, joint_states stop: after max_input_age_s no command may follow.
    _drive(ros_context, node, feeder, 0.4, lambda t: q0, joints=False)
    feeder.probe.clear()
    _drive(ros_context, node, feeder, 1.0, lambda t: q0, joints=False)
    assert len(feeder.commands) == 0, 'a command was built from stale joint_states'
    assert node.counters['no_command_stale'] > 0
    assert 'joints' in node.problems['no_command_stale']


def test_nan_state_and_wrong_encoding_give_no_command(ros_context, tmp_path):
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'))
    bad = np.array([0.0, np.nan, 0.0, 0.0, 0.0, 0.0])
    _drive(ros_context, node, feeder, 0.8, lambda t: bad)
    assert len(feeder.commands) == 0, 'a command was built from a NaN state'
    assert node.counters['input_errors'] > 0
    errors = node.counters['input_errors']
    _drive(ros_context, node, feeder, 0.8, lambda t: np.zeros(6), encoding='yuv422')
    assert len(feeder.commands) == 0, 'a command was built from an unsupported image'
    assert node.counters['input_errors'] > errors
    assert 'yuv422' in node.problems['input_errors']
    assert 'yuv422' in node.diagnostic_values()['input_errors_reason']


def test_chunk_boundaries_stay_continuous(ros_context, tmp_path):
    # The measured state steps by JUMP halfway through: every chunk planned after the step is
    # offset by JUMP from the ones before. A hard switch would pass the whole JUMP to the robot
    # in one control tick; the cross-fade must spread it over its blend window.
    window = 0.2
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'), blend='crossfade',
                          blend_window_s=window)
    t0 = _now(node)
    _drive(ros_context, node, feeder, 2.0,
           lambda t: np.full(6, JUMP if t - t0 > 1.0 else 0.0))
    firsts = np.array([m.msg.points[0].positions[0] for m in feeder.commands])
    assert len(firsts) > 20 and firsts.max() > JUMP, 'the step never reached the commands'
    ticks_in_window = window / DT
    # Per tick: the chunk's own motion (STEP) plus a window's share of the offset, with room
    # for timer jitter (two ticks in one window slot) - far below the hard switch's JUMP.
    assert np.abs(np.diff(firsts)).max() < STEP + 2.0 * JUMP / ticks_in_window


def test_missing_model_fails_at_configure_with_the_path(ros_context, tmp_path):
    ros_context.start({'policy': {'model_path': str(tmp_path / 'nope.onnx')}})
    with pytest.raises(ConfigError, match='nope.onnx'):
        PolicyNode()


def test_model_for_another_robot_is_refused_naming_the_joint(ros_context, tmp_path):
    other = ['J1', 'J2', 'J3', 'J4', 'J5', 'J6']
    path = _ramp_model(tmp_path / 'crx.onnx', joints=other)
    ros_context.start({'policy': {'model_path': path, 'robot': 'fanuc_lrmate200id'}})
    with pytest.raises(ConfigError, match="'J1' is not a joint of the robot"):
        PolicyNode()


def test_best_effort_joint_states_are_received_with_sensor_data_qos(ros_context, tmp_path):
    # MotoROS2 publishes joint_states best effort; a reliable subscriber would never match it.
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'),
                          feeder_joint_states_qos=qos_profile_sensor_data,
                          joint_states_qos='sensor_data')
    _drive(ros_context, node, feeder, 1.0, lambda t: np.zeros(6))
    assert len(feeder.commands) >= 5 and node.counters['commands'] >= 5


def test_unknown_joint_states_qos_is_refused_naming_it(ros_context, tmp_path):
    ros_context.start({'policy': {'model_path': _ramp_model(tmp_path / 'ramp.onnx'),
                                  'joint_states_qos': 'best_effort'}})
    with pytest.raises(ConfigError, match='joint_states_qos'):
        PolicyNode()


@pytest.mark.parametrize('path', ['shutdown', 'deactivate_cleanup'])
def test_session_is_closed_only_after_the_inference_thread_stopped(ros_context, tmp_path,
                                                                   monkeypatch, path):
    # An inference that outlasts the node's wait for its thread: the session must stay open
    # until that inference has returned, then be closed (by the thread), on every stop path.
    monkeypatch.setattr(PolicyNode, 'worker_join_timeout_s', 0.05)
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'))
    runtime, worker = node.runtime, node._worker.thread
    entered, release = threading.Event(), threading.Event()
    events = []
    real_infer, real_close = runtime.infer, runtime.close

    def held_infer(*args, **kwargs):
        entered.set()
        release.wait(timeout=60.0)  # a hang guard, not a timing assumption
        try:
            return real_infer(*args, **kwargs)
        finally:
            events.append('inference returned')

    def recorded_close():
        events.append('session closed')
        real_close()

    monkeypatch.setattr(runtime, 'infer', held_infer)
    monkeypatch.setattr(runtime, 'close', recorded_close)
    for _ in range(100):
        if entered.is_set():
            break
        _drive(ros_context, node, feeder, 0.1, lambda t: np.zeros(6))
    assert entered.is_set(), 'the inference thread never ran an inference'
    if path == 'shutdown':
        node.trigger_shutdown()
    else:
        node.trigger_deactivate()
        node.trigger_cleanup()
    assert events == [], 'the session was closed under a running inference'
    release.set()
    worker.join(timeout=60.0)
    assert not worker.is_alive()
    assert events == ['inference returned', 'session closed']
    assert node.runtime is None


def _drive_fast(ros_context, node, feeder, seconds, q, period=0.004):
    """joint_states at a driver's rate (250 Hz), an image every DT, for `seconds` of node time."""
    end = _now(node) + seconds
    next_image = 0.0
    while (t := _now(node)) < end:
        image = t >= next_image
        if image:
            next_image = t + DT
        feeder.step(q, stamp=t, image=image)
        ros_context.spin_for(period)


@pytest.mark.parametrize('pace', [0.0, 0.2])
def test_min_replan_period_paces_inference_at_driver_rate_joint_states(ros_context, tmp_path,
                                                                      pace):
    """Fresh joint_states every 4 ms: unpaced, the inference thread infers back to back; with
    min_replan_period_s it infers at most once per period (and still commands)."""
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'),
                          min_replan_period_s=pace)
    seconds = 2.0
    _drive_fast(ros_context, node, feeder, seconds, np.array([0.1, 0.4, -0.1, 0.0, -1.1, 0.2]))
    inferences = node.stats()['inferences']
    assert len(feeder.commands) >= 10
    if pace:
        assert 3 <= inferences <= seconds / pace + 1, inferences
    else:
        assert inferences > seconds / 0.2 + 1, inferences


def test_policy_inputs_trace_every_command_to_the_stamps_of_its_inputs(ros_context, tmp_path):
    """policy/inputs (the audit trail's "computed from"): each chunk names the header stamp of
    every input it was built from, each command the observations of the chunks behind it."""
    from diagnostic_msgs.msg import DiagnosticArray

    from noetra_ros.core.input_trace import (ChunkInputs, CommandInputs, decode_input_entry,
                                             INPUTS_TOPIC)

    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'))
    trace = feeder.probe.record(INPUTS_TOPIC, DiagnosticArray)
    published: set[int] = set()
    q0 = np.array([0.1, 0.4, -0.1, 0.0, -1.1, 0.2])
    for _ in range(int(1.5 / DT)):
        t = _now(node)
        feeder.step(q0, stamp=t)
        published.add(int(round(t * 1e9)))
        ros_context.spin_for(DT)
    ros_context.spin_for(0.3)  # the last batch (flushed every 0.1 s)
    records = [r for m in trace for s in m.msg.status
               for r in decode_input_entry(s.name, {kv.key: kv.value for kv in s.values},
                                           'test')]
    chunks = [r for r in records if isinstance(r, ChunkInputs)]
    commands = [r for r in records if isinstance(r, CommandInputs)]
    assert len(chunks) >= 10 and len(commands) >= 10
    for chunk in chunks:
        assert set(chunk.input_stamps_ns) == {'joints', 'scene_camera'}
        # Built from messages the feeder published, the observation being the joint state's.
        assert chunk.observation_ns == chunk.input_stamps_ns['joints']
        assert set(chunk.input_stamps_ns.values()) <= published
    chunk_stamps = {c.observation_ns for c in chunks}
    traced = [c for c in commands if c.newest_observation_ns is not None]
    assert len(traced) >= len(commands) - 1
    for command in traced:
        assert command.newest_observation_ns in chunk_stamps
        assert command.oldest_observation_ns <= command.newest_observation_ns
        assert command.newest_observation_ns <= command.stamp_ns  # never from the future
