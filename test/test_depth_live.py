"""Depth aligned to colour, live: sim_node publishes depth the way realsense2_camera does
(`<camera>/aligned_depth_to_color/image_raw`, 16UC1 mm, the colour frame's stamp and frame) and
policy_node feeds it to an ONNX model with a depth input; a depth topic carrying rgb8 is refused
with the topic and the encoding named, and nothing is commanded.

Real node processes, real Fast DDS, real PyBullet and onnxruntime (docs/CAMERAS.md, "Depth").
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import onnx
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.core.images import image_view
from noetra_ros.core.policy.contract import contract_from_dict
from noetra_ros.core.policy.runtime import build_toy_model
from ros_harness import diagnostic_value, NodeProcess, stamp_ns
from toy_models import set_ramp_head

pytestmark = pytest.mark.ros

JOINTS = [f'joint_{i}' for i in range(1, 7)]
CHUNK, DT, STEP = 8, 0.05, 0.01
DEPTH_TOPIC = 'scene_camera/aligned_depth_to_color/image_raw'
DEPTH_INFO_TOPIC = 'scene_camera/aligned_depth_to_color/camera_info'
# Hang guards for node start-up and discovery on a loaded 2-core machine, not timing checks.
WAIT_S = 90.0
SIM = {'cameras': ['scene_camera'], 'depth_cameras': ['scene_camera'], 'camera_width': 64,
       'camera_height': 48, 'camera_rate_hz': 10.0}
POLICY_STATUS = 'policy: policy'


def rgbd_model(path) -> str:
    """Colour + aligned depth (with its validity mask) of the scene camera, joint + gripper
    state, an instruction; the ramp head of toy_models (action row k = state + k * STEP)."""
    contract = contract_from_dict({
        'contract_version': 1, 'name': 'rgbd_ramp', 'robot_joints': JOINTS,
        'inputs': [
            {'name': 'image_scene', 'kind': 'image', 'camera': 'scene_camera', 'height': 24,
             'width': 32},
            {'name': 'depth_scene', 'kind': 'depth', 'camera': 'scene_camera', 'height': 24,
             'width': 32, 'min_depth_m': 0.1, 'max_depth_m': 3.0, 'validity_mask': True},
            {'name': 'state', 'kind': 'state', 'components': [
                {'source': 'joint_positions', 'joints': JOINTS}, {'source': 'gripper_position'}]},
            {'name': 'instruction', 'kind': 'instruction', 'vocabulary': ['<pad>', '<unk>'],
             'max_length': 8}],
        'outputs': [{'name': 'actions', 'kind': 'action_chunk', 'chunk_length': CHUNK,
                     'step_period_s': DT, 'components': [
                         {'meaning': 'joint_positions', 'mode': 'delta', 'joints': JOINTS},
                         {'meaning': 'gripper_position', 'mode': 'delta'}]}]})
    model = set_ramp_head(build_toy_model(contract, seed=0), CHUNK, STEP, len(JOINTS) + 1)
    onnx.save(model, str(path))
    return str(path)


def policy_params(tmp_path) -> dict:
    return {'model_path': rgbd_model(tmp_path / 'rgbd.onnx'), 'use_sim_time': True,
            'trajectory_points': 3}


def test_a_depth_policy_is_fed_the_sims_aligned_depth_and_commands(ros_context, tmp_path):
    ros_context.start()
    probe = ros_context.probe('depth_probe')
    # Reliable readers (the sim publishes reliably): every frame is seen, so stamps can be
    # matched one for one.
    colour = probe.record('scene_camera/image_raw', Image)
    depth = probe.record(DEPTH_TOPIC, Image)
    colour_info = probe.record('scene_camera/camera_info', CameraInfo)
    depth_info = probe.record(DEPTH_INFO_TOPIC, CameraInfo)
    commands = probe.record('joint_trajectory_controller/joint_trajectory', JointTrajectory)
    diagnostics = probe.record('/diagnostics', DiagnosticArray)
    with NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path) as sim, \
            NodeProcess.for_node('policy', 'policy_node', policy_params(tmp_path),
                                 tmp_path) as policy:
        def done() -> bool:
            assert sim.running() and policy.running(), (sim.log_text()[-2000:],
                                                         policy.log_text()[-2000:])
            return len(commands) >= 5 and len(depth) >= 5 and any(
                diagnostic_value(m.msg, 'commands', POLICY_STATUS) not in (None, '0')
                for m in diagnostics)
        ros_context.spin_until(done, WAIT_S, what='commands from the depth policy')
        logs = policy.log_text()[-3000:]

    # The sim's depth is realsense2_camera's aligned depth: 16UC1 mm, colour's frame and stamp.
    first = depth[0].msg
    assert first.encoding == '16UC1' and (first.width, first.height) == (64, 48)
    assert first.step == 64 * 2 and first.is_bigendian == 0
    assert {m.msg.header.frame_id for m in depth} == {colour[0].msg.header.frame_id}
    colour_stamps = {stamp_ns(m.msg.header.stamp) for m in colour}
    depth_stamps = [stamp_ns(m.msg.header.stamp) for m in depth]
    # Both publishers share a step, so a depth frame's colour twin has come (or is the newest).
    paired = [s for s in depth_stamps if s in colour_stamps]
    assert len(paired) >= len(depth_stamps) - 1, (depth_stamps, sorted(colour_stamps))
    millimetres = image_view(first.data, first.width, first.height, first.encoding, first.step)
    seen = millimetres[millimetres > 0]
    # The scene camera sees the whole cell: background (no return) is about half the view.
    assert seen.size > 0.3 * millimetres.size and 200 < np.median(seen) < 3000, np.median(seen)
    assert depth_info and list(depth_info[0].msg.k) == list(colour_info[0].msg.k)
    assert depth_info[0].msg.header.frame_id == first.header.frame_id

    # The policy used it: commands came, no depth frame was refused or unpaired.
    assert all(np.isfinite(m.msg.points[0].positions).all() for m in commands)
    status = [m.msg for m in diagnostics
              if diagnostic_value(m.msg, 'commands', POLICY_STATUS) not in (None, '0')][-1]
    assert diagnostic_value(status, 'input_errors', POLICY_STATUS) == '0', logs
    assert diagnostic_value(status, 'capture_mismatch', POLICY_STATUS) == '0', logs
    assert "depth ['scene_camera']" in logs


def test_rgb8_on_the_depth_topic_is_refused_naming_topic_and_encoding(ros_context, tmp_path):
    bad_topic = '/bad_depth/image_raw'
    ros_context.start()
    probe = ros_context.probe('bad_depth_probe')
    bad_depth = probe.publisher(bad_topic, Image)
    # What a cell gets wrong: the colour image remapped onto the policy's depth topic. Each
    # colour frame goes out again unchanged (same stamp: it passes the same-capture rule).
    probe.record('scene_camera/image_raw', Image, qos_profile_sensor_data,
                 callback=bad_depth.publish)
    commands = probe.record('joint_trajectory_controller/joint_trajectory', JointTrajectory)
    diagnostics = probe.record('/diagnostics', DiagnosticArray)
    params = policy_params(tmp_path)
    with NodeProcess.for_node('sim', 'sim_node', SIM, tmp_path) as sim, \
            NodeProcess(_with_remap(params, {DEPTH_TOPIC: bad_topic}), tmp_path) as policy:
        def refused() -> bool:
            assert sim.running() and policy.running(), policy.log_text()[-2000:]
            return any(bad_topic in (diagnostic_value(m.msg, 'input_errors_reason',
                                                      POLICY_STATUS) or '')
                       for m in diagnostics)
        ros_context.spin_until(refused, WAIT_S, what=f'a refusal naming {bad_topic}')
        log = policy.wait_log('is not a depth encoding',
                              spin=lambda: ros_context.spin_once(0.02))
    reason = next(diagnostic_value(m.msg, 'input_errors_reason', POLICY_STATUS)
                  for m in reversed(diagnostics)
                  if bad_topic in (diagnostic_value(m.msg, 'input_errors_reason',
                                                    POLICY_STATUS) or ''))
    assert "encoding 'rgb8'" in reason and '16UC1' in reason, reason
    assert bad_topic in log
    assert len(commands) == 0, 'a command was built from an rgb8 "depth" frame'


def _with_remap(parameters, remappings):
    from noetra_ros.bringup import NodeSpec
    return NodeSpec(name='policy', executable='policy_node', parameters=parameters,
                    remappings=remappings)


def test_the_sim_nodes_depth_is_the_in_process_rendering(ros_context, tmp_path):
    # The sim node and the in-process evaluation render depth with one function
    # (core/images.render_colour_and_depth): for one seed, the frame published at the reset is
    # the frame the in-process world renders. Lockstep waiting for a gripper command nobody
    # sends: the sim publishes the reset's observation and waits, so nothing moves before it.
    from dataclasses import replace

    from noetra_ros.core.images import render_colour_and_depth
    from diagnostic_msgs.msg import DiagnosticArray
    from noetra_ros.core.episodes import WAITING_FOR_RESET
    from noetra_ros.core.sim.world import default_cameras, SimWorld, WorldConfig
    from std_msgs.msg import UInt32

    seed = 7
    ros_context.start()
    probe = ros_context.probe('depth_agreement_probe')
    depth = probe.record(DEPTH_TOPIC, Image)
    colour = probe.record('scene_camera/image_raw', Image)
    reset = probe.publisher('task/reset', UInt32)
    diagnostics = probe.record('/diagnostics', DiagnosticArray)

    def sim_says(message: str) -> bool:
        return any(s.message == message for d in diagnostics for s in d.msg.status
                   if s.name == 'sim: simulation')
    params = dict(SIM, mode='lockstep', lockstep_inputs=['gripper'], lockstep_timeout_s=3600.0,
                  wait_for_reset=True)
    with NodeProcess.for_node('sim', 'sim_node', params, tmp_path) as sim:
        sim.wait_log('waiting for the first task/reset', spin=lambda: ros_context.spin_once(0.02))
        ros_context.wait_matched(probe)
        # Its diagnostics say it waits (what `noetra run` resends a lost reset on).
        ros_context.spin_until(lambda: sim_says(WAITING_FOR_RESET), WAIT_S, what='waiting')
        reset.publish(UInt32(data=seed))
        ros_context.spin_until(lambda: depth and colour, WAIT_S, what='the reset observation')
        ros_context.spin_until(lambda: sim_says('running'), WAIT_S, what='running')
    msg = depth[0].msg
    published = image_view(msg.data, msg.width, msg.height, msg.encoding, msg.step)
    scene = replace(next(c for c in default_cameras() if c.name == 'scene_camera'),
                    width=SIM['camera_width'], height=SIM['camera_height'])
    with SimWorld(WorldConfig(cameras=(scene,))) as world:
        world.reset(seed)
        rgb, depth_mm = render_colour_and_depth(world, 'scene_camera')
    np.testing.assert_array_equal(published, depth_mm)
    c = colour[0].msg
    np.testing.assert_array_equal(image_view(c.data, c.width, c.height, c.encoding, c.step), rgb)
    assert stamp_ns(c.header.stamp) == stamp_ns(msg.header.stamp)


def test_depth_of_a_camera_the_sim_does_not_render_is_refused_by_name(ros_context):
    from noetra_ros.core.errors import ConfigError
    from noetra_ros.sim_node import SimNode

    ros_context.start({'sim': dict(SIM, depth_cameras=['wrist_camera'])})
    with pytest.raises(ConfigError, match=r"depth_cameras: \['wrist_camera'\] are not in "
                                          r"parameter cameras \(\['scene_camera'\]\)"):
        SimNode()
