"""The one module of QoS profiles (noetra_ros/qos.py): what each profile promises, and that no
other module of the package builds its own."""
from pathlib import Path
import re

import pytest
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, ReliabilityPolicy

from noetra_ros import qos
from noetra_ros.core.errors import ConfigError

PACKAGE = Path(qos.__file__).resolve().parent


def test_joint_states_qos_kinds():
    assert qos.joint_states_qos('reliable').reliability == ReliabilityPolicy.RELIABLE
    best_effort = qos.joint_states_qos('sensor_data')
    # MotoROS2 publishes joint_states with rclpy's sensor-data profile: best effort.
    assert best_effort.reliability == ReliabilityPolicy.BEST_EFFORT
    assert best_effort == qos_profile_sensor_data


@pytest.mark.parametrize('kind', ['best_effort', 'RELIABLE', '', None])
def test_unknown_joint_states_qos_names_the_allowed_kinds(kind):
    with pytest.raises(ConfigError, match=f'must be one of reliable, sensor_data, got {kind!r}'):
        qos.joint_states_qos(kind)


def test_latched_and_command_profiles():
    assert qos.LATCHED.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert qos.LATCHED.reliability == ReliabilityPolicy.RELIABLE
    assert qos.RELIABLE.reliability == ReliabilityPolicy.RELIABLE
    assert qos.RELIABLE.durability == DurabilityPolicy.VOLATILE
    # rclpy's own /clock reader is best effort; a reliable writer matches it and any other.
    assert qos.CLOCK.reliability == ReliabilityPolicy.RELIABLE


def test_no_other_module_defines_a_profile():
    pattern = re.compile(r'QoSProfile\(|qos_profile_sensor_data|ReliabilityPolicy|DurabilityPolicy')
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob('*.py')
                 if path.name != 'qos.py' and pattern.search(path.read_text())]
    assert offenders == [], f'QoS profiles defined outside noetra_ros/qos.py: {offenders}'
