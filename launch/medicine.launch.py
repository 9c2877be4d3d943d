"""medicine sector cell: Yaskawa HC10 sorting lab samples (collaborative).

    ros2 launch noetra_ros medicine.launch.py [cell:=<another cell>]
"""
from noetra_ros.launch_support import cell_launch_description


def generate_launch_description():
    return cell_launch_description('lab_sorting_hc10')
