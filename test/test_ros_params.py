"""declare_parameters: an integer written for a double parameter is taken as that number (a
cell file's `observation_hz: 20`); every other type mismatch is refused, naming the parameter."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter

from noetra_ros.core.errors import ConfigError
from noetra_ros.ros_params import declare_parameters

pytestmark = pytest.mark.ros  # rclpy.init needs a DDS domain (no traffic)


@pytest.fixture
def node_with(request):
    rclpy.init()
    node = rclpy.create_node('params_probe', parameter_overrides=request.param)
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.mark.parametrize('node_with', [[Parameter('rate_hz', value=20)]], indirect=True)
def test_integer_for_a_double_is_widened(node_with):
    values = declare_parameters(node_with, {'rate_hz': (10.0, 'a rate')})
    assert values == {'rate_hz': 20.0} and isinstance(values['rate_hz'], float)
    assert node_with.get_parameter('rate_hz').type_ is Parameter.Type.DOUBLE


@pytest.mark.parametrize('node_with', [[Parameter('count', value=2.5)],
                                       [Parameter('name', value=3)]], indirect=True)
def test_other_mismatches_are_refused_naming_the_parameter(node_with):
    name = next(iter(node_with._parameter_overrides))
    default = {'count': (1, 'an integer'), 'name': ('x', 'a string')}
    with pytest.raises(ConfigError, match=f'parameter {name}'):
        declare_parameters(node_with, {name: default[name]})
