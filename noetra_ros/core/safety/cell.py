"""What the safety node does with its inputs, without ROS: its settings and one supervisor cycle.

`SafetyNodeSettings` is the one definition of the safety node's parameters (names, defaults,
descriptions): safety_node declares them from it and the in-process evaluation reads a cell
file's safety node through it, so a new parameter reaches both.

`SafetyCell` holds the cell's SafetySupervisor (and, with `mobile_base`, its TwistSupervisor)
and the rules around it that are not limits but still decide what the robot is sent:

* the gripper target: held where the fingers are until a source commands it, then followed
  only while ARMED and clipped to the finger range;
* arming without an operator: once at start-up (`arm_on_start`) and, SIMULATION ONLY, on a
  fresh valid command or right after a tracking fault (`auto_arm`);
* a lockstep step (`step`): joint state, arm command, gripper command in that fixed order, then
  one cycle at the step's stamp, so a seeded episode does not depend on message arrival order;
* judging without driving (`judge_only`, shadow mode, docs/SHADOW.md): another controller
  drives the robot, so the supervisor's output is never executed. Every check runs as when
  driving, against the supervisor's own previous output (what it would have done had the
  judged source driven, assuming the arm had tracked it), except two: the tracking check only
  re-anchors the output at the measured arm once the two are more than `judge_reanchor_rad`
  apart (an episode reset, or a judged path that left the arm the driving controller moves:
  from there on the source's commands, computed from the real arm, say nothing about a state
  the arm is not in), and the judge arms itself like `auto_arm` (it commands nothing).

safety_node feeds it messages converted to the types below and publishes what `cycle` / `step`
return; learning/record.py feeds it the policy's commands as policy_node would publish them.
Like the supervisor it drives, this is a NON-safety-rated software layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
import math
from typing import Any, Callable, Mapping, Sequence, TYPE_CHECKING, Union

import numpy as np

from noetra_ros.core.commands import controller_order
from noetra_ros.core.drivers.profiles import check_output, DRIVERS, profile as driver_profile
from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.joint_names import JointNameMap, SCHEMES
from noetra_ros.core.safety.intake import Rejection
from noetra_ros.core.safety.mobile_base import TwistOutput, TwistSupervisor
from noetra_ros.core.safety.profile import SafetyProfile
from noetra_ros.core.safety.state_machine import Decision, SafetyState
from noetra_ros.core.safety.supervisor import fk_from_model, SafetySupervisor

if TYPE_CHECKING:
    from noetra_ros.core.robot_model import RobotDescription

# What runs a supervisor cycle: every measurement (real robots, realtime sim) or a whole
# lockstep step (every input in lockstep_inputs has answered).
UPDATE_TRIGGERS = ('joint_states', 'command')
# The command inputs a lockstep step can wait for (the joint state is always waited for).
LOCKSTEP_INPUTS = ('arm', 'gripper')
# Reason prefixes of the supervisor's decisions that the arming rules react to.
NOT_ARMED = 'valid, but not armed'
TRACKING_FAULT = 'tracking error'
# The judge re-anchors its output at the measured arm beyond this distance (rad): three times
# the tracking tolerance of the shipped profiles (0.1 rad), so that a judged path lagging the
# driving controller's by the speed difference of two profiles is still judged, and well below
# the jump of the simulated arm at an episode reset (1.21 rad on joint_6 from seed 3 to seed 4
# of pick_place_lrmate_policy_shadow).
DEFAULT_JUDGE_REANCHOR_RAD = 0.3


def _describe(text: str) -> dict[str, str]:
    return {'description': text}


@dataclass(frozen=True)
class SafetyNodeSettings:
    """The safety node's parameters; every default here is the node's default.

    The parameters in FROM_DRIVER default to '' = what the named driver does
    (core/drivers/profiles.py); an instance holds the resolved value."""

    robot: str = field(default='fanuc_lrmate200id', metadata=_describe(
        'robot whose URDF limits and kinematics are enforced'))
    profile: str = field(default='industrial', metadata=_describe(
        'safety profile: config/safety/<name>.yaml or a path'))
    update_trigger: str = field(default='joint_states', metadata=_describe(
        f'what runs a supervisor cycle: one of {UPDATE_TRIGGERS}'))
    lockstep_inputs: tuple[str, ...] = field(default=LOCKSTEP_INPUTS, metadata=_describe(
        'update_trigger=command: inputs to wait for'))
    period_s: float = field(default=0.05, metadata=_describe(
        'nominal cycle period (the joint_states period of the driver)'))
    watchdog_hz: float = field(default=50.0, metadata=_describe(
        'wall-clock rate of the stall watchdog (joint_states trigger)'))
    watched_sensors: tuple[str, ...] = field(default=(), metadata=_describe(
        'Image topics that must stay fresh, e.g. [scene_camera/image_raw]'))
    controller_joints: tuple[str, ...] = field(default=(), metadata=_describe(
        'joint order of the forward position controller, in the driver\'s names ([] = URDF)'))
    driver: str = field(default='ros2_control', metadata=_describe(
        f'the arm driver the cell talks to: one of {DRIVERS} (core/drivers/profiles.py)'))
    driver_output: str = field(default='', metadata=_describe(
        "how commands reach the driver: forward_position, joint_trajectory (JTC topic) or "
        "point_queue (MotoROS2); '' = the driver's default"))
    driver_namespace: str = field(default='', metadata=_describe(
        "namespace of the driver's interfaces ('' = root)"))
    point_queue_segment_s: float = field(default=0.04, metadata=_describe(
        'point_queue: time between queued points (s)'))
    driver_joint_names: str = field(default='', metadata=_describe(
        f'joint names the driver uses: one of {SCHEMES} (fanuc: J1..Jn; motoros2: '
        "joint_1..n, group_<g>/ prefix on a multi-group controller); '' = the driver's; "
        'core/joint_names.py'))
    joint_name_prefix: str = field(default='', metadata=_describe(
        'prefix of the driver\'s arm joint names (fanuc_driver\'s prefix, MotoROS2 group_<g>/)'))
    arm_on_start: bool = field(default=False, metadata=_describe(
        'arm once at start-up when inputs are fresh'))
    auto_arm: bool = field(default=False, metadata=_describe(
        'SIMULATION ONLY: re-arm from HOLDING/FAULT when a fresh valid command arrives (never '
        'from ESTOP). Must stay false on a real robot.'))
    mobile_base: bool = field(default=False, metadata=_describe(
        'also supervise safety/cmd_vel -> diff_drive_controller/cmd_vel'))
    joint_states_qos: str = field(default='', metadata=_describe(
        "joint_states subscription: 'reliable' or 'sensor_data' (best effort: MotoROS2 "
        "publishes joint_states best effort, which a reliable reader never receives); '' = "
        "the driver's"))
    judge_only: bool = field(default=False, metadata=_describe(
        'shadow mode: judge the command inputs without driving anything; the judged output goes '
        'to shadow/judged/* only, never to a driver (docs/SHADOW.md)'))
    judge_reanchor_rad: float = field(default=DEFAULT_JUDGE_REANCHOR_RAD, metadata=_describe(
        'judge_only: the judged output restarts at the measured arm when they are further apart '
        '(rad); it replaces the profile\'s tracking tolerance, which a judge has nothing to '
        'check against'))

    FROM_DRIVER = ('driver_output', 'driver_joint_names', 'joint_states_qos')

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ConfigError(f'parameter driver={self.driver!r}: must be one of {DRIVERS}')
        facts = driver_profile(self.driver)
        # '' = what the named driver does (frozen dataclass: resolved once, here).
        object.__setattr__(self, 'driver_output', check_output(self.driver, self.driver_output))
        if not self.driver_joint_names:
            object.__setattr__(self, 'driver_joint_names', facts.joint_names)
        if not self.joint_states_qos:
            object.__setattr__(self, 'joint_states_qos', facts.joint_states_qos)
        if self.update_trigger not in UPDATE_TRIGGERS:
            raise ConfigError(f'parameter update_trigger={self.update_trigger!r}: must be one '
                              f'of {UPDATE_TRIGGERS}')
        unknown = [name for name in self.lockstep_inputs if name not in LOCKSTEP_INPUTS]
        if unknown:
            # A step waiting for an input that never comes would never cycle.
            raise ConfigError(f'parameter lockstep_inputs={list(self.lockstep_inputs)}: '
                              f'{unknown} are not inputs; each must be one of {LOCKSTEP_INPUTS}')
        if self.driver_joint_names not in SCHEMES:
            raise ConfigError(f'parameter driver_joint_names={self.driver_joint_names!r}: must '
                              f'be one of {SCHEMES}')
        if self.judge_only and self.mobile_base:
            # The judge's outputs are arm and gripper topics under shadow/judged/; a base twist
            # would have to go somewhere that is not diff_drive_controller/cmd_vel.
            raise ConfigError('parameters judge_only and mobile_base: a judge supervises the arm '
                              'only')
        for name in ('period_s', 'watchdog_hz', 'point_queue_segment_s', 'judge_reanchor_rad'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f'parameter {name}={value!r}: must be a finite number > 0')

    @classmethod
    def parameter_table(cls) -> dict[str, tuple[Any, str]]:
        """`name: (default, description)` of every parameter, as ros_params declares them
        (a list parameter's default as a list)."""
        table = {}
        for f in fields(cls):
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            table[f.name] = (default, f.metadata['description'])
        return table

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> 'SafetyNodeSettings':
        """From the node's declared parameters, or a cell file's safety node: a parameter not
        named keeps the node's default; names that are no parameter of the node are ignored,
        as the node ignores them. Raises ConfigError naming a value of the wrong type."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in parameters:
                values[f.name] = _typed(f.name, parameters[f.name], f.default)
        return cls(**values)


def _typed(name: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default`; an int is a float (YAML `1`), nothing else converts."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # a list of names
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        kind = 'list of strings' if isinstance(default, tuple) else type(default).__name__
        raise ConfigError(f'parameter {name}={value!r}: must be a {kind}')
    return value


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class MeasuredJoints:
    """A measurement (sensor_msgs/JointState fields): any order, extra joints ignored;
    velocities None when the message has none."""

    names: Sequence[str]
    positions: Sequence[float]
    velocities: Sequence[float] | None
    stamp: float


@dataclass(frozen=True)
class ArmTrajectory:
    """A trajectory (trajectory_msgs/JointTrajectory fields): times in seconds from `stamp`;
    velocities None unless every point has them."""

    joint_names: Sequence[str]
    times_from_start: Sequence[float]
    positions: Sequence[Sequence[float]]
    velocities: Sequence[Sequence[float]] | None
    stamp: float


@dataclass(frozen=True)
class ArmPositions:
    """Joint position targets in the controller's joint order (a std_msgs/Float64MultiArray:
    no names, no stamp)."""

    values: Sequence[float]


@dataclass(frozen=True)
class ArmVelocities:
    """Joint velocities (rad/s) in the controller's joint order (a Float64MultiArray)."""

    values: Sequence[float]


ArmCommand = Union[ArmTrajectory, ArmPositions, ArmVelocities]


@dataclass(frozen=True)
class CellOutput:
    """What one cycle sends to the robot."""

    arm: np.ndarray | None     # joint positions, supervisor (URDF) order; None: send nothing
    gripper: float | None      # gripper target (m); None: nothing known to send yet
    state: SafetyState         # after the cycle
    reason: str
    twist: TwistOutput | None = None  # the base's limited twist (mobile_base only)
    # For the audit trail: the limits that acted on the arm this cycle and the stamp of the
    # command it followed (None: none); SupervisorOutput's fields of the same names.
    interventions: frozenset[str] = frozenset()
    command_stamp: float | None = None


# ---------------------------------------------------------------------------- the cell
class SafetyCell:
    """The safety node's supervision of one cell: inputs in, what the robot is sent out.

    Built as safety_node builds it: the description's joint limits, FK of the profile's tool
    frame, the settings' period and watched sensors. Event-driven use (update_trigger
    joint_states): `on_joint_state`, `on_arm_command`, `on_gripper_command`, ... as messages
    arrive, `cycle` on every measurement. Lockstep use: `step` once per whole step.

    `on_rejected(input, reason)` hears every input refused for a reason worth a log line
    (commands arriving while not armed are expected: counted, not reported); `on_armed(cause)`
    hears every arming that `arm_on_start` or `auto_arm` did. Inputs: 'joint_states',
    'trajectory', 'positions', 'velocities', 'gripper', 'twist'.
    """

    def __init__(self, description: 'RobotDescription', profile: SafetyProfile,
                 settings: SafetyNodeSettings, *,
                 on_rejected: Callable[[str, str], None] | None = None,
                 on_armed: Callable[[str], None] | None = None) -> None:
        gripper = description.gripper
        if gripper is None:
            raise ConfigError(f'robot {settings.robot!r} has no gripper description: the '
                              'safety node supervises the gripper command too')
        self.settings = settings
        if settings.judge_only:
            # Nothing tracks the judged output: the tracking check only re-anchors it (module doc).
            profile = profile.replace(tracking_error_tolerance_rad=settings.judge_reanchor_rad)
        self.profile = profile
        # A judge arms itself as auto_arm does: it commands nothing an operator must release.
        self.auto_arm = settings.auto_arm or settings.judge_only
        # What the last arming without an operator left ('STATE: reason'), for the judge's trail.
        self.armed_from = ''
        self.supervisor = SafetySupervisor(
            description.limits, profile, fk=fk_from_model(description.model, profile.tool_frame),
            period_s=settings.period_s, required_sensors=settings.watched_sensors)
        self.base = TwistSupervisor(profile) if settings.mobile_base else None
        # The arm's URDF speed limits (description order): a driver output that states a
        # velocity per point (MotoROS2's queue) must never exceed them.
        self.velocity_limits = np.asarray(description.limits.velocity, dtype=float)
        self.joint_names = tuple(description.model.joint_names)
        self.gripper_joints = tuple(gripper.joint_names)
        # The driver's names cross here only: joint_states in, the controller's joint order out.
        self.names = JointNameMap.for_scheme(self.joint_names, settings.driver_joint_names,
                                             settings.joint_name_prefix, keep=self.gripper_joints)
        try:
            requested = self.names.from_driver(settings.controller_joints,
                                               'parameter controller_joints')
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        order, index = controller_order(requested, self.joint_names)
        self.controller_joints = tuple(self.names.to_driver(order))  # the driver's names
        self.to_controller = index  # arm[to_controller]: the arm output in controller order
        # values[from_controller]: a vector in controller order back in supervisor order.
        self.from_controller = np.argsort(index)
        self.gripper_range = (gripper.open_position, gripper.closed_position)
        self.gripper_target: float | None = None
        self._arm_pending = settings.arm_on_start
        # What the driver itself reports (e-stopped, in error, motion not possible): while set,
        # the arm holds and nothing arms it, operator or auto_arm.
        self.driver_fault: str | None = None
        self._on_rejected = on_rejected
        self._on_armed = on_armed

    @classmethod
    def from_settings(cls, settings: SafetyNodeSettings, **listeners: Any) -> 'SafetyCell':
        """The robot's description (URDF) and the named profile (config/safety or a path)
        loaded as the node loads them."""
        from noetra_ros.core.paths import config_dir
        from noetra_ros.core.robot_model import load_robot_description
        from noetra_ros.core.safety.profile import load_profile

        return cls(load_robot_description(settings.robot),
                   load_profile(settings.profile, config_dir('safety')), settings, **listeners)

    # ------------------------------------------------------------------ reporting
    def _report(self, what: str, decision: Decision) -> Decision:
        if (not decision.accepted and 'not armed' not in decision.reason
                and self._on_rejected is not None):
            self._on_rejected(what, decision.reason)
        return decision

    def _maybe_arm(self, now: float) -> None:
        """Arm without an operator when arm_on_start is still pending or auto_arm is set."""
        state = self.supervisor.state
        if state is SafetyState.ARMED or state is SafetyState.ESTOP or self.driver_fault:
            return
        if self._arm_pending or self.auto_arm:
            was = f'{state.value}: {self.supervisor.reason}'
            if self.supervisor.arm(now).accepted:
                self._arm_pending = False
                self.armed_from = was
                if self._on_armed is not None:
                    self._on_armed('auto_arm' if self.auto_arm else 'start')

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, measured: MeasuredJoints, now: float) -> Decision:
        """A measurement. The first accepted one also fixes the gripper target where the
        fingers are (held there until a source commands it) and tries arm_on_start. Names are
        the driver's: one that maps to no joint drops the whole message, counted
        (joint_state_rejected_unknown_names) and reported naming it; a missing measurement shows
        as a stale source, which holds, as for every refused joint state."""
        try:
            names = self.names.from_driver(measured.names, 'joint_states names')
        except InputError as exc:
            rejection = Rejection('unknown_names', str(exc), what='joint_state')
            return self._report('joint_states', self.supervisor.reject(now, rejection))
        measured = MeasuredJoints(names, measured.positions, measured.velocities, measured.stamp)
        decision = self.supervisor.on_joint_state(
            list(measured.names), list(measured.positions),
            None if measured.velocities is None else list(measured.velocities),
            measured.stamp, now)
        self._report('joint_states', decision)
        if self.gripper_target is None and decision.accepted:
            fingers = [q for n, q in zip(measured.names, measured.positions)
                       if n in self.gripper_joints]
            if fingers and np.isfinite(fingers).all():
                self.gripper_target = float(np.clip(np.mean(fingers), *self.gripper_range))
        if self._arm_pending:
            self._maybe_arm(now)
        return decision

    def _submit_arm(self, command: ArmCommand, now: float) -> Decision:
        sup = self.supervisor
        if isinstance(command, ArmTrajectory):
            return sup.on_command_trajectory(
                list(command.joint_names), list(command.times_from_start),
                [list(row) for row in command.positions],
                None if command.velocities is None else [list(r) for r in command.velocities],
                command.stamp, now)
        # A Float64MultiArray has no header: its receipt time is its stamp. Its values are in
        # controller order; the supervisor takes its own (URDF) order, so reorder here (a wrong
        # length is left for the supervisor to refuse with its own reason).
        values = list(command.values)
        if len(values) == len(self.from_controller):
            values = [values[i] for i in self.from_controller]
        if isinstance(command, ArmPositions):
            return sup.on_command_positions(None, values, now, now)
        return sup.on_command_velocities(None, values, now, now)

    def on_arm_command(self, command: ArmCommand, now: float) -> Decision:
        """An arm command; with auto_arm a valid command that finds the arm not armed re-arms
        it first and is then followed."""
        decision = self._submit_arm(command, now)
        if (not decision.accepted and decision.reason.startswith(NOT_ARMED)
                and self.auto_arm):
            self._maybe_arm(now)
            if self.supervisor.state is SafetyState.ARMED:
                decision = self._submit_arm(command, now)
        what = {ArmTrajectory: 'trajectory', ArmPositions: 'positions',
                ArmVelocities: 'velocities'}[type(command)]
        return self._report(what, decision)

    def on_gripper_command(self, values: Sequence[float]) -> Decision:
        """A gripper command (one finger position, m): followed only while ARMED, clipped to
        the finger range."""
        array = np.asarray(values, dtype=float)
        if array.shape != (1,) or not np.isfinite(array).all():
            return self._report('gripper', Decision(
                False, f'expected one finite value, got {list(values)}'))
        if self.supervisor.state is not SafetyState.ARMED:
            return Decision(False, 'not armed: gripper command ignored')
        self.gripper_target = float(np.clip(array[0], *self.gripper_range))
        return Decision(True, 'ok')

    def on_sensor(self, source: str, stamp: float, now: float) -> Decision:
        """A watched sensor's message (only its stamp matters)."""
        return self.supervisor.on_sensor(source, stamp, now)

    def on_twist(self, linear: Sequence[float], angular: Sequence[float], stamp: float,
                 now: float) -> Decision:
        """A base twist (mobile_base only)."""
        if self.base is None:
            return self._report('twist', Decision(False, 'no mobile base is supervised'))
        return self._report('twist', self.base.on_twist(linear, angular, stamp, now))

    # ------------------------------------------------------------------ requests
    def on_driver_status(self, fault: str | None, now: float) -> bool:
        """The driver's own status: `fault` names why it cannot move (None = it can). A new
        fault holds the arm; True when the fault changed (worth a log line)."""
        changed = fault != self.driver_fault
        self.driver_fault = fault
        if fault and changed and self.supervisor.state is SafetyState.ARMED:
            self.supervisor.hold(now, f'driver reports {fault}')
        return changed

    def arm(self, now: float) -> Decision:
        """An operator's arm request (the base follows the arm's decision)."""
        if self.driver_fault:
            return Decision(False, f'cannot arm: driver reports {self.driver_fault}')
        decision = self.supervisor.arm(now)
        if self.base is not None and decision.accepted:
            self.base.arm(now)
        return decision

    def hold(self, now: float, reason: str) -> None:
        self.supervisor.hold(now, reason)

    def estop(self, now: float, reason: str) -> None:
        """Latch ESTOP on the arm and the base (a software stop request)."""
        self.supervisor.estop(now, reason)
        if self.base is not None:
            self.base.estop(now, reason)

    def reset_estop(self, now: float) -> Decision:
        """ESTOP -> HOLDING on the arm and the base; an explicit arm is still needed."""
        decision = self.supervisor.reset_estop(now)
        if self.base is not None:
            self.base.reset_estop(now)
        return decision

    # ------------------------------------------------------------------ cycles
    def cycle(self, now: float) -> CellOutput:
        """One supervisor update at `now`: what the robot is sent."""
        out = self.supervisor.update(now)
        if (self.auto_arm and out.state is SafetyState.FAULT
                and out.reason.startswith(TRACKING_FAULT)):
            # SIMULATION ONLY: an episode reset moves the simulated arm in one step, which the
            # supervisor sees as a tracking fault. Re-arm at once (first output = measured), so
            # the held pre-reset position is never sent and every episode starts the same way.
            self._maybe_arm(now)
            if self.supervisor.state is SafetyState.ARMED:
                out = self.supervisor.update(now)  # same time: re-emits the re-based position
        arm = None
        if out.positions is not None and np.isfinite(out.positions).all():
            arm = np.array(out.positions)
        twist = self.base.update(now) if self.base is not None else None
        return CellOutput(arm, self.gripper_target, out.state, out.reason, twist,
                          out.interventions, out.command_stamp)

    def step(self, joint_state: MeasuredJoints, arm_command: ArmCommand | None,
             gripper_command: Sequence[float] | None, stamp: float) -> CellOutput:
        """One lockstep step at `stamp` (the joint state's): the inputs in a fixed order, not
        arrival order - the arm command before the gripper command, so on the step that arms
        (auto_arm) the gripper command is followed whichever message came first - then one
        cycle. A command input the cell does not wait for is None."""
        self.on_joint_state(joint_state, stamp)
        if arm_command is not None:
            self.on_arm_command(arm_command, stamp)
        if gripper_command is not None:
            self.on_gripper_command(gripper_command)
        return self.cycle(stamp)
