"""Real camera conventions at policy_node: CompressedImage (JPEG) frames, and the topic / frame
names usb_cam and realsense2_camera publish, remapped in the cell (docs/CAMERAS.md).

Real rclpy + Fast DDS + onnxruntime, with the ramp model of test_policy_node.
"""
import cv2
import numpy as np
import onnx
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from noetra_ros.bringup import load_cell
from noetra_ros.core.errors import ConfigError
from noetra_ros.core.policy.contract import contract_from_dict
from noetra_ros.policy_node import PolicyNode
from noetra_ros.ros_conversions import numpy_to_image, seconds_to_stamp
from ros_harness import diagnostic_value, NodeProcess
from noetra_ros.core.policy.runtime import build_toy_model
from test_policy_node import _contract, _ramp_model, CHUNK, DT, FINGERS, JOINTS, LATCHED, STEP
from toy_models import set_ramp_head

pytestmark = pytest.mark.ros

FRAME_BGR = np.tile(np.array([20, 20, 230], np.uint8), (24, 32, 1))  # red, OpenCV order
JPEG = cv2.imencode('.jpg', FRAME_BGR)[1].tobytes()
# What image_transport's compressed plugin writes for an rgb8 camera (see core/images.py).
IMAGE_TRANSPORT_FORMAT = 'rgb8; jpeg compressed bgr8'


def compressed(stamp_s, payload=JPEG, format_text=IMAGE_TRANSPORT_FORMAT,
               frame_id='default_cam'):
    msg = CompressedImage(format=format_text, data=payload)
    msg.header.stamp = seconds_to_stamp(stamp_s)
    msg.header.frame_id = frame_id
    return msg


def joint_state(stamp_s):
    msg = JointState(name=JOINTS + FINGERS, position=[0.0] * (len(JOINTS) + len(FINGERS)))
    msg.header.stamp = seconds_to_stamp(stamp_s)
    return msg


def _now(node):
    return node.get_clock().now().nanoseconds * 1e-9


def _start_compressed(ros_context, tmp_path):
    ros_context.start({'policy': {'model_path': _ramp_model(tmp_path / 'ramp.onnx'),
                                  'compressed_cameras': ['scene_camera'],
                                  'trajectory_points': 3}})
    node = ros_context.add(PolicyNode())
    probe = ros_context.probe('camera_feeder')
    pub_image = probe.publisher('scene_camera/image_raw/compressed', CompressedImage)
    pub_joints = probe.publisher('joint_states', JointState)
    probe.publisher('task/instruction', String, LATCHED).publish(String(data='pick the red cube'))
    commands = probe.record('joint_trajectory_controller/joint_trajectory', JointTrajectory)
    diagnostics = probe.record('/diagnostics', DiagnosticArray)
    ros_context.wait_matched(probe)
    return node, probe, pub_image, pub_joints, commands, diagnostics


def _drive(ros_context, node, pub_image, pub_joints, seconds, **image_kwargs):
    for _ in range(int(seconds / DT)):
        t = _now(node)
        pub_image.publish(compressed(t, **image_kwargs))
        pub_joints.publish(joint_state(t))
        ros_context.spin_for(DT)


def test_jpeg_compressed_frames_drive_the_policy(ros_context, tmp_path):
    node, _, pub_image, pub_joints, commands, _ = _start_compressed(ros_context, tmp_path)
    _drive(ros_context, node, pub_image, pub_joints, 1.5)
    assert len(commands) >= 10, f'too few commands from JPEG frames: {node.stats()}'
    assert node.counters['input_errors'] == 0, node.problems
    assert all(np.isfinite(m.msg.points[0].positions).all() for m in commands)


@pytest.mark.parametrize('payload, format_text, cause', [
    (JPEG[:len(JPEG) // 2], IMAGE_TRANSPORT_FORMAT, 'truncated JPEG'),
    (b'\x89PNG not really', IMAGE_TRANSPORT_FORMAT, 'payload is not a JPEG'),
    (JPEG, 'rgb8; h264 compressed bgr8', 'is not supported'),
])
def test_a_bad_payload_gives_no_command_and_a_diagnostic_naming_camera_and_cause(
        ros_context, tmp_path, payload, format_text, cause):
    node, _, pub_image, pub_joints, commands, diagnostics = _start_compressed(ros_context,
                                                                              tmp_path)
    _drive(ros_context, node, pub_image, pub_joints, 1.2, payload=payload,
           format_text=format_text)
    assert len(commands) == 0, 'a command was built from a frame that cannot be decoded'
    assert node.counters['input_errors'] > 0
    ros_context.spin_until(lambda: any(
        cause in (diagnostic_value(m.msg, 'input_errors_reason') or '') for m in diagnostics),
        what=f'a /diagnostics status naming {cause!r}')
    reason = next(diagnostic_value(m.msg, 'input_errors_reason') for m in reversed(diagnostics)
                  if cause in (diagnostic_value(m.msg, 'input_errors_reason') or ''))
    assert "camera 'scene_camera'" in reason and "'default_cam'" in reason, reason


def test_compressed_cameras_must_be_cameras_of_the_model(ros_context, tmp_path):
    ros_context.start({'policy': {'model_path': _ramp_model(tmp_path / 'ramp.onnx'),
                                  'compressed_cameras': ['wrist_cam']}})
    with pytest.raises(ConfigError, match=r"compressed_cameras: \['wrist_cam'\] are not "
                                          r"cameras of the model"):
        PolicyNode()


# ------------------------------------------------------------- drivers' names, remapped
# The names usb_cam and realsense2_camera publish (sources in docs/CAMERAS.md).
USB_CAM_COMPRESSED = '/usb_cam/image_raw/compressed'
REALSENSE_COLOR = '/camera/camera/color/image_raw'


def _two_camera_model(path):
    """The ramp model with a second camera (wrist_camera) in its contract."""
    data = _contract().to_dict()
    scene = next(i for i in data['inputs'] if i['kind'] == 'image')
    data['inputs'].insert(0, dict(scene, name='image_wrist', camera='wrist_camera'))
    contract = contract_from_dict(data)
    assert set(contract.cameras) == {'scene_camera', 'wrist_camera'}
    # As test_policy_node._ramp_model: zero weights, a bias that ramps every joint by STEP.
    model = set_ramp_head(build_toy_model(contract, seed=0), CHUNK, STEP, len(JOINTS) + 1)
    onnx.save(model, path)
    return str(path)


def test_a_cell_remaps_usb_cam_and_realsense_topics_onto_the_policy(ros_context, tmp_path):
    cell_file = tmp_path / 'real_cameras.yaml'
    cell_file.write_text(f"""
cell: {{name: real_cameras, robot: fanuc_lrmate200id}}
nodes:
  - name: policy
    executable: policy_node
    parameters:
      model_path: {_two_camera_model(tmp_path / 'two_cameras.onnx')}
      compressed_cameras: [wrist_camera]
      trajectory_points: 3
    remappings:
      wrist_camera/image_raw/compressed: {USB_CAM_COMPRESSED}
      scene_camera/image_raw: {REALSENSE_COLOR}
""")
    spec = next(n for n in load_cell(str(cell_file)).nodes if n.name == 'policy')
    ros_context.start()
    probe = ros_context.probe('drivers')
    # usb_cam in MJPEG mode passes the camera's JPEG through with format "jpeg".
    pub_usb = probe.publisher(USB_CAM_COMPRESSED, CompressedImage)
    pub_realsense = probe.publisher(REALSENSE_COLOR, Image)
    pub_joints = probe.publisher('joint_states', JointState)
    probe.publisher('task/instruction', String, LATCHED).publish(String(data='pick the red cube'))
    commands = probe.record('joint_trajectory_controller/joint_trajectory', JointTrajectory)
    with NodeProcess(spec, tmp_path / 'policy') as policy:
        policy.wait_log('active (async mode)')
        ros_context.wait_matched(probe)
        rgb = np.ascontiguousarray(FRAME_BGR[:, :, ::-1])

        def publish_all():
            t = probe.node.get_clock().now().nanoseconds * 1e-9
            pub_usb.publish(compressed(t, format_text='jpeg', frame_id='default_cam'))
            pub_realsense.publish(numpy_to_image(rgb, 'rgb8', seconds_to_stamp(t),
                                                 'camera_color_optical_frame'))
            pub_joints.publish(joint_state(t))

        deadline_steps = int(30.0 / DT)  # a hang guard for the process start, not a timing test
        for _ in range(deadline_steps):
            publish_all()
            ros_context.spin_for(DT)
            if len(commands) >= 5:
                break
        assert len(commands) >= 5, f'no commands through the remapped names; policy log:\n' \
                                   f'{policy.log_text()}'
