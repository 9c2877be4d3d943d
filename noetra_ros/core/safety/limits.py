"""Joint limits for the supervisor: the robot-model layer's JointLimits, re-exported.

The class lives in core/joint_limits.py so that the simulator, the expert and the policy runtime
share the one type the supervisor checks against; this module keeps the import path
`noetra_ros.core.safety.limits.JointLimits` working.
"""
from noetra_ros.core.joint_limits import JointLimits

__all__ = ['JointLimits']
