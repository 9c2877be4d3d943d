"""ROS plumbing of the driver profiles: the simulator's emulations of each real driver
(sim_*.py) and the runtime's clients of them (outputs.py). Rules live in noetra_ros.core.drivers.
"""
