"""food manufacturing sector cell: FANUC CRX-10iA packing food beside workers (collaborative).

    ros2 launch noetra_ros food_manufacturing.launch.py [cell:=<another cell>]
"""
from noetra_ros.launch_support import cell_launch_description


def generate_launch_description():
    return cell_launch_description('food_packing_crx')
