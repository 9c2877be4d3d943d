"""Bring up any cell from its description in config/cells/<cell>.yaml.

    ros2 launch noetra_ros bringup.launch.py cell:=pick_place_lrmate
    ros2 launch noetra_ros bringup.launch.py cell:=pick_place_lrmate foxglove:=true record:=true

On a machine with only the ROS 2 wheels, `noetra run <cell>` starts the same nodes with the same
parameters: both read the cell through noetra_ros.bringup.load_cell.
"""
from noetra_ros.launch_support import cell_launch_description


def generate_launch_description():
    return cell_launch_description('pick_place_lrmate')
