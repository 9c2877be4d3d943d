"""noetra_ros/interface_packages.py: a message type the environment lacks is found in our build
of interfaces/ or refused with a ConfigError that says how to build it (no DDS needed)."""
import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.interface_packages import interface_type


def test_a_package_nobody_provides_names_the_build_script():
    with pytest.raises(ConfigError, match=r"'no_such_msgs' is not available.*build_interfaces"):
        interface_type('no_such_msgs', 'msg', 'Anything')


def test_a_type_the_package_lacks_is_named():
    with pytest.raises(ConfigError, match="'std_msgs' has no msg 'NoSuchType'"):
        interface_type('std_msgs', 'msg', 'NoSuchType')


def test_a_type_the_environment_provides_is_its_own():
    from std_msgs.msg import String
    assert interface_type('std_msgs', 'msg', 'String') is String
