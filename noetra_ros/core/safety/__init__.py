"""ROS-free safety supervisor: profiles, limits, the joint supervisor and the base supervisor.

A non-safety-rated software layer: it requests controlled holds; it is not an e-stop.
"""
from noetra_ros.core.safety.base import TwistOutput, TwistSupervisor
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.profile import (
    available_profiles, BaseLimits, DEFAULT_PROFILE_DIR, EffectiveJointLimits, load_profile,
    SafetyProfile, WorkspaceBox)
from noetra_ros.core.safety.state_machine import (
    Decision, InterventionLog, SafetyEvent, SafetyState, SafetyStateMachine)
from noetra_ros.core.safety.supervisor import (
    fk_from_model, SafetySupervisor, SupervisorOutput)

__all__ = [
    'available_profiles', 'BaseLimits', 'Decision', 'DEFAULT_PROFILE_DIR',
    'EffectiveJointLimits', 'fk_from_model', 'InterventionLog', 'JointLimits', 'load_profile',
    'SafetyEvent', 'SafetyProfile', 'SafetyState', 'SafetyStateMachine', 'SafetySupervisor',
    'SupervisorOutput', 'TwistOutput', 'TwistSupervisor', 'WorkspaceBox',
]
