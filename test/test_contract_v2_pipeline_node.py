"""policy_node runs a two-phase model (encoder -> prefix -> denoise loop) given only its contract
file as model_path, with no code for it: commands follow the known chunk, the stage times reach
the diagnostics, and a denoise step that turns NaN gives no command and a diagnostic naming the
stage and step. Real rclpy + Fast DDS, real onnxruntime."""
import numpy as np
import pytest

from test_contract_v2 import changed
from test_contract_v2_pipeline import DT, pipeline_dict, STEP, write_model
from test_policy_node import _drive, _start, JOINTS

pytestmark = pytest.mark.ros

Q0 = np.array([0.1, 0.4, -0.1, 0.0, -1.1, 0.2])


def test_policy_node_loads_a_contract_file_and_commands_the_denoised_chunk(ros_context,
                                                                           tmp_path):
    node, feeder = _start(ros_context, str(write_model(tmp_path / 'two_phase')))
    assert node.runtime.graph_names == ('encoder', 'denoiser')
    _drive(ros_context, node, feeder, 1.5, lambda t: Q0)
    commands = list(feeder.commands)
    assert len(commands) >= 10, 'policy published too few commands'
    msg = commands[-1].msg
    assert list(msg.joint_names) == JOINTS and len(msg.points) == 3
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    assert times == pytest.approx([DT, 2 * DT, 3 * DT])
    # Absolute targets q0 + k * STEP (the encoder's target, reached by the flow loop).
    offset = np.array(msg.points[0].positions) - Q0
    assert np.allclose(offset, offset[0], atol=1e-5) and -1e-5 <= offset[0] <= 10 * STEP
    values = node.diagnostic_values()
    assert values['stage_encode_ms_n'] >= 1 and values['stage_denoise_ms_n'] >= 1
    assert values['stage_denoise_step_ms_n'] == 10 * values['stage_denoise_ms_n']
    assert values['inference_errors'] == 0 and 'inference_ms_p50' in values


def test_a_denoise_step_turning_nan_gives_no_command_and_names_the_step(ros_context, tmp_path):
    data = changed(pipeline_dict(), **{'pipeline.1.inputs': {'prefix': 'prefix',
                                                             'gate': 'state'}})
    path = write_model(tmp_path / 'trap', data, denoiser={'nan_below_gate': True})
    node, feeder = _start(ros_context, str(path))       # the warm-up on zeros passes
    tripped = Q0.copy()
    tripped[0] = 0.55                                    # NaN from t = 0.5 (step 6 of 10)
    _drive(ros_context, node, feeder, 1.0, lambda t: tripped)
    assert not feeder.commands, 'a chunk with a NaN step was commanded'
    values = node.diagnostic_values()
    assert values['inference_errors'] >= 1 and values['commands'] == 0
    assert "stage 'denoise' step 6/10" in values['inference_errors_reason']
