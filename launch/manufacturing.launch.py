"""manufacturing sector cell: FANUC LR Mate 200iD sorting parts into bins.

    ros2 launch noetra_ros manufacturing.launch.py [cell:=<another cell>]
"""
from noetra_ros.launch_support import cell_launch_description


def generate_launch_description():
    return cell_launch_description('pick_place_lrmate')
