"""logistics sector cell: Yaskawa GP8 picking order items into totes.

    ros2 launch noetra_ros logistics.launch.py [cell:=<another cell>]
"""
from noetra_ros.launch_support import cell_launch_description


def generate_launch_description():
    return cell_launch_description('kitting_gp8')
