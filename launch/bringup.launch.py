"""Bring up a whole cell from its description in config/cells/<cell>.yaml.

    ros2 launch noetra_ros bringup.launch.py cell:=pick_place_lrmate

On a machine with only the ROS 2 wheels, `noetra run <cell>` starts the same nodes with the same
parameters: both read the cell through noetra_ros.bringup.load_cell.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from noetra_ros.bringup import available_cells, load_cell


def _cell_nodes(context, *args, **kwargs):
    cell = load_cell(LaunchConfiguration('cell').perform(context))
    return [Node(**spec.launch_kwargs(), output='screen', emulate_tty=True)
            for spec in cell.nodes]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'cell', default_value='pick_place_lrmate',
            description=f'cell name from config/cells ({", ".join(available_cells())}) '
                        'or a path to a cell YAML file'),
        OpaqueFunction(function=_cell_nodes),
    ])
