"""policy_node refuses the shipped LR Mate model on an HC10 (same joint names, other arm) unless
the cell says allow_other_embodiment; real rclpy, the shipped model, real onnxruntime."""
from pathlib import Path

import pytest

from noetra_ros.core.errors import ConfigError
from noetra_ros.policy_node import PolicyNode

pytestmark = pytest.mark.ros

SHIPPED = str(Path(__file__).resolve().parent.parent / 'models' / 'pick_place_lrmate.onnx')


def test_shipped_model_on_an_hc10_fails_configure_naming_both_robots(ros_context):
    ros_context.start({'policy': {'model_path': SHIPPED, 'robot': 'yaskawa_hc10'}})
    with pytest.raises(ConfigError, match='trained for fanuc_lrmate200id .* this cell.s robot '
                                          'is yaskawa_hc10 .* allow_other_embodiment'):
        PolicyNode()


def test_shipped_model_on_an_hc10_configures_when_the_cell_allows_it(ros_context):
    ros_context.start({'policy': {'model_path': SHIPPED, 'robot': 'yaskawa_hc10',
                                  'allow_other_embodiment': True}})
    node = ros_context.add(PolicyNode())
    assert node.runtime is not None and node.runtime.contract.name == 'pick_place_lrmate'
