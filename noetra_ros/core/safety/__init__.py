"""ROS-free safety supervisor: profiles, limits, the joint supervisor and the base supervisor.

A non-safety-rated software layer: it requests controlled holds; it is not an e-stop.

Parts (each readable and tested alone): intake.py (message parsing and whole-message
rejection), joint_limiter.py (one step of joint limiting, pure), cartesian.py (workspace box
and tool speed), state_machine.py, supervisor_base.py (what the joint supervisor in
supervisor.py and the mobile-base supervisor in mobile_base.py share); cell.py puts them
together as the safety node runs them (its settings, the gripper and arming rules, one cycle).
"""
from noetra_ros.core.safety.cell import (
    ArmCommand, ArmPositions, ArmTrajectory, ArmVelocities, CellOutput, MeasuredJoints,
    SafetyCell, SafetyNodeSettings)
from noetra_ros.core.safety.limits import JointLimits
from noetra_ros.core.safety.mobile_base import TwistOutput, TwistSupervisor
from noetra_ros.core.safety.profile import (
    available_profiles, BaseLimits, DEFAULT_PROFILE_DIR, EffectiveJointLimits, load_profile,
    SafetyProfile, WorkspaceBox)
from noetra_ros.core.safety.state_machine import (
    Decision, InterventionLog, SafetyEvent, SafetyState, SafetyStateMachine)
from noetra_ros.core.safety.supervisor import (
    fk_from_model, SafetySupervisor, SupervisorOutput)

__all__ = [
    'ArmCommand', 'ArmPositions', 'ArmTrajectory', 'ArmVelocities', 'available_profiles',
    'BaseLimits', 'CellOutput', 'Decision', 'DEFAULT_PROFILE_DIR', 'EffectiveJointLimits',
    'fk_from_model', 'InterventionLog', 'JointLimits', 'load_profile', 'MeasuredJoints',
    'SafetyCell', 'SafetyEvent', 'SafetyNodeSettings', 'SafetyProfile', 'SafetyState',
    'SafetyStateMachine', 'SafetySupervisor', 'SupervisorOutput', 'TwistOutput', 'TwistSupervisor',
    'WorkspaceBox',
]
