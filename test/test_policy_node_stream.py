"""policy_node's opt-in command stream (command_rate_hz): driver-rate commands over real DDS."""
import numpy as np
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.policy_node import PolicyNode
from test_policy_node import _drive, _now, _ramp_model, _start, JUMP

pytestmark = pytest.mark.ros

RATE_HZ = 250.0


def test_stream_publishes_between_control_periods_without_steps(ros_context, tmp_path):
    # The measured state steps by JUMP halfway through, so every later chunk is offset by JUMP.
    window = 0.2
    node, feeder = _start(ros_context, _ramp_model(tmp_path / 'ramp.onnx'), blend='crossfade',
                          blend_window_s=window, command_rate_hz=RATE_HZ)
    t0 = _now(node)
    _drive(ros_context, node, feeder, 2.0, lambda t: np.full(6, JUMP if t - t0 > 1.0 else 0.0))
    msgs = [m.msg for m in feeder.commands]
    stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in msgs])
    firsts = np.array([m.points[0].positions[0] for m in msgs])
    # One point per message, due one stream period ahead (what a driver-rate controller takes).
    assert all(len(m.points) == 1 for m in msgs)
    assert msgs[-1].points[0].time_from_start.nanosec == int(1e9 / RATE_HZ)
    # Far more messages than the 20 Hz control ticks of the same 2 s would give (40).
    assert len(msgs) > 100 and firsts.max() > JUMP, 'the stream never reached the step'
    # Every message is the stream sampled at its stamp, so position change / stamp change is
    # the plan's own speed whatever the timer's jitter. The blended rows carry the JUMP in a
    # fraction of a second; the stream spreads it over many periods: no period carries a
    # quarter of it (12.5 rad/s), where a 20 Hz position step carries all of it in one.
    speed = np.abs(np.diff(firsts)) / np.diff(stamps)
    assert speed.max() < 0.25 * JUMP * RATE_HZ
    assert node.stats()['inferences'] >= 10


@pytest.mark.parametrize('params, needle', [
    ({'command_rate_hz': 250.0, 'mode': 'lockstep'}, 'command_rate_hz: the command stream'),
    ({'command_rate_hz': -5.0}, 'command_rate_hz / command_interpolation: rate_hz'),
    ({'command_rate_hz': 250.0, 'command_interpolation': 'linear'}, 'interpolation'),
])
def test_bad_stream_parameters_are_refused_naming_them(ros_context, tmp_path, params, needle):
    ros_context.start({'policy': {'model_path': _ramp_model(tmp_path / 'ramp.onnx'), **params}})
    with pytest.raises(ConfigError, match=needle):
        PolicyNode()
