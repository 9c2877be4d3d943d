"""The driver interface packages under interfaces/ (built by scripts/build_interfaces.sh).

They stand in for packages the PyPI ROS 2 wheels lack (control_msgs, industrial_msgs,
motoros2_interfaces, fanuc_msgs, tf2_msgs), so they must be the real drivers' types on the wire:
same package and type names, same field names, types and order (the Jazzy type hash covers those),
same constants. The expected layouts below are /work/shared/reference/driver-interfaces.md's
tables (sources and commits there and in docs/DRIVERS.md), written out independently of the
.msg files, so a typo in either shows here. Where a public upstream build of a type was found,
its RIHS01 type hash is compared too (UPSTREAM_TYPE_HASHES).

Then real DDS: a FollowJointTrajectory goal and a motoros2 queue_traj_point call go from this
process to a fake driver in a child process and back.

Skipped only when the packages were neither built (install/) nor provided by the environment.
"""
from __future__ import annotations

import copy
import ctypes
import importlib.util
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ('control_msgs', 'industrial_msgs', 'motoros2_interfaces', 'fanuc_msgs', 'tf2_msgs')
INSTALL = Path(os.environ.get('NOETRA_BUILD_ROOT', str(ROOT))) / 'install'


def _use_our_install() -> list[str]:
    """Make the packages built into install/ loadable here; returns the site-packages added.

    A shell that sourced install/setup.bash (scripts/build.sh does) already has them. Started
    without it, this process gets their Python paths, and their libraries are loaded here: rosidl
    dlopen()s a package's typesupport library by bare name when a type is first used, which only
    the loader's startup LD_LIBRARY_PATH or an already loaded library of that name satisfies (the
    libraries find each other through their RPATH, see scripts/build_interfaces.sh). Child
    processes get LD_LIBRARY_PATH and PYTHONPATH the ordinary way.
    """
    added = []
    for package in PACKAGES:
        if importlib.util.find_spec(package) is not None:
            continue  # provided by the environment (apt install, or install/ already sourced)
        prefix = INSTALL / package
        site = next(iter(sorted(prefix.glob('lib/python3*/site-packages'))), None)
        if site is None or not (site / package).is_dir():
            continue
        sys.path.insert(0, str(site))
        added.append(str(site))
        for variable, value in (('LD_LIBRARY_PATH', prefix / 'lib'), ('AMENT_PREFIX_PATH', prefix)):
            current = os.environ.get(variable)
            os.environ[variable] = str(value) + (os.pathsep + current if current else '')
        for library in sorted((prefix / 'lib').glob('lib*.so')):
            ctypes.CDLL(str(library))
    importlib.invalidate_caches()
    return added


OUR_SITE_PACKAGES = _use_our_install()
UNAVAILABLE = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
if UNAVAILABLE:
    pytest.skip(f'interface packages not built: {", ".join(UNAVAILABLE)} (nothing provides them '
                f'and {INSTALL} has no build of them; run `bash scripts/build_interfaces.sh`)',
                allow_module_level=True)

# Built or provided (checked just above), so a failing import here is a real defect, not a skip.
# Soft dependencies for package.xml's checker (test_package_deps): on the wheel path they come
# from interfaces/, not from rosdep.
try:
    from control_msgs.action import FollowJointTrajectory
    from control_msgs.msg import JointComponentTolerance
    from control_msgs.msg import JointTolerance
    from control_msgs.msg import JointTrajectoryControllerState
    from control_msgs.msg import SpeedScalingFactor
    from control_msgs.srv import QueryTrajectoryState
    import fanuc_msgs.msg
    import fanuc_msgs.srv
    import industrial_msgs.msg
    import motoros2_interfaces.msg
    from motoros2_interfaces.msg import InitTrajEnum
    from motoros2_interfaces.msg import QueueResultEnum
    import motoros2_interfaces.srv
    from motoros2_interfaces.srv import QueueTrajPoint
    from tf2_msgs.msg import TFMessage
except ImportError as error:
    raise ImportError(f'the interface packages are installed but do not import: {error}') from error

# ------------------------------------------------------------------------ expected layouts
# Field lists in .msg syntax, in order, as the reference tables give them.
HEADER_POINTS = ['std_msgs/Header header', 'string[] joint_names']
MULTI_DOF_POINT = 'trajectory_msgs/MultiDOFJointTrajectoryPoint'

EXPECTED_FIELDS = {
    # control_msgs (reference §1)
    FollowJointTrajectory.Goal: [
        'trajectory_msgs/JointTrajectory trajectory',
        'trajectory_msgs/MultiDOFJointTrajectory multi_dof_trajectory',
        'control_msgs/JointTolerance[] path_tolerance',
        'control_msgs/JointComponentTolerance[] component_path_tolerance',
        'control_msgs/JointTolerance[] goal_tolerance',
        'control_msgs/JointComponentTolerance[] component_goal_tolerance',
        'builtin_interfaces/Duration goal_time_tolerance'],
    FollowJointTrajectory.Result: ['int32 error_code', 'string error_string'],
    FollowJointTrajectory.Feedback: HEADER_POINTS + [
        'trajectory_msgs/JointTrajectoryPoint desired',
        'trajectory_msgs/JointTrajectoryPoint actual',
        'trajectory_msgs/JointTrajectoryPoint error',
        'string[] multi_dof_joint_names',
        f'{MULTI_DOF_POINT} multi_dof_desired', f'{MULTI_DOF_POINT} multi_dof_actual',
        f'{MULTI_DOF_POINT} multi_dof_error'],
    JointTolerance: ['string name', 'float64 position', 'float64 velocity',
                     'float64 acceleration'],
    JointComponentTolerance: ['string joint_name', 'uint16 component', 'float64 position',
                              'float64 velocity', 'float64 acceleration'],
    SpeedScalingFactor: ['float64 factor'],
    QueryTrajectoryState.Request: ['builtin_interfaces/Time time'],
    QueryTrajectoryState.Response: ['bool success', 'string message', 'string[] name',
                                    'float64[] position', 'float64[] velocity',
                                    'float64[] acceleration'],
    JointTrajectoryControllerState: HEADER_POINTS + [
        'trajectory_msgs/JointTrajectoryPoint reference',
        'trajectory_msgs/JointTrajectoryPoint feedback',
        'trajectory_msgs/JointTrajectoryPoint error',
        'trajectory_msgs/JointTrajectoryPoint output',
        'string[] multi_dof_joint_names',
        f'{MULTI_DOF_POINT} multi_dof_reference', f'{MULTI_DOF_POINT} multi_dof_feedback',
        f'{MULTI_DOF_POINT} multi_dof_error', f'{MULTI_DOF_POINT} multi_dof_output',
        'float64 speed_scaling_factor'],
    # industrial_msgs, ROS 2 layout (reference §2.5)
    industrial_msgs.msg.RobotStatus: [
        'std_msgs/Header header', 'industrial_msgs/RobotMode mode',
        'industrial_msgs/TriState e_stopped', 'industrial_msgs/TriState drives_powered',
        'industrial_msgs/TriState motion_possible', 'industrial_msgs/TriState in_motion',
        'industrial_msgs/TriState in_error', 'int32[] error_codes'],
    industrial_msgs.msg.RobotMode: ['int8 val'],
    industrial_msgs.msg.TriState: ['int8 val'],
    # tf2_msgs
    TFMessage: ['geometry_msgs/TransformStamped[] transforms'],
}
# motoros2_interfaces 0.2.0 (reference §2.3, §2.4)
_MOTOROS2 = motoros2_interfaces
_MOTION_READY_ANSWER = ['motoros2_interfaces/MotionReadyEnum result_code', 'string message']
_IO_ANSWER = ['uint32 result_code', 'string message', 'bool success']
EXPECTED_FIELDS.update({
    _MOTOROS2.msg.QueueResultEnum: ['uint16 value'],
    _MOTOROS2.msg.MotionReadyEnum: ['uint16 value'],
    _MOTOROS2.msg.InitTrajEnum: ['uint16 value'],
    _MOTOROS2.msg.SelectionResultCodes: ['uint32 value'],
    _MOTOROS2.msg.IoResultCodes: [],
    _MOTOROS2.srv.StartTrajMode.Request: [],
    _MOTOROS2.srv.StartTrajMode.Response: _MOTION_READY_ANSWER,
    _MOTOROS2.srv.StartPointQueueMode.Request: [],
    _MOTOROS2.srv.StartPointQueueMode.Response: _MOTION_READY_ANSWER,
    _MOTOROS2.srv.ResetError.Request: [],
    _MOTOROS2.srv.ResetError.Response: _MOTION_READY_ANSWER,
    _MOTOROS2.srv.QueueTrajPoint.Request: ['string[] joint_names',
                                           'trajectory_msgs/JointTrajectoryPoint point'],
    _MOTOROS2.srv.QueueTrajPoint.Response: ['motoros2_interfaces/QueueResultEnum result_code',
                                            'string message'],
    _MOTOROS2.srv.SelectMotionTool.Request: ['uint32 group_number', 'uint32 tool_number'],
    _MOTOROS2.srv.SelectMotionTool.Response: [
        'motoros2_interfaces/SelectionResultCodes result_code', 'string message',
        'bool success'],
    _MOTOROS2.srv.ReadSingleIO.Request: ['uint32 address'],
    _MOTOROS2.srv.ReadSingleIO.Response: _IO_ANSWER + ['int32 value'],
    _MOTOROS2.srv.WriteSingleIO.Request: ['uint32 address', 'int32 value'],
    _MOTOROS2.srv.WriteSingleIO.Response: _IO_ANSWER,
    _MOTOROS2.srv.ReadGroupIO.Request: ['uint32 address'],
    _MOTOROS2.srv.ReadGroupIO.Response: _IO_ANSWER + ['uint8 value'],
    _MOTOROS2.srv.WriteGroupIO.Request: ['uint32 address', 'uint8 value'],
    _MOTOROS2.srv.WriteGroupIO.Response: _IO_ANSWER,
    _MOTOROS2.srv.ReadMRegister.Request: ['uint32 address'],
    _MOTOROS2.srv.ReadMRegister.Response: _IO_ANSWER + ['uint16 value'],
    _MOTOROS2.srv.WriteMRegister.Request: ['uint32 address', 'uint16 value'],
    _MOTOROS2.srv.WriteMRegister.Response: _IO_ANSWER,
})
# fanuc_msgs 2.2.0 (reference §3.3)
_FANUC = fanuc_msgs
_POS_REG = (['string representation'] + [f'uint8 {n}' for n in
                                          ('utool', 'uframe', 'front', 'up', 'left', 'flip')]
            + [f'int8 turn{i}' for i in (4, 5, 6)]
            + [f'float32 {n}' for n in ('x', 'y', 'z', 'w', 'p', 'r', 'ext1', 'ext2', 'ext3')]
            + [f'float32 j{i}' for i in range(1, 10)])
_PAYLOAD = ['uint16 payload_schedule_id', 'float32 mass', 'float32 cg_x', 'float32 cg_y',
            'float32 cg_z']
_IN = ['float32 in_x', 'float32 in_y', 'float32 in_z']
_IO_INDEX = ['fanuc_msgs/IOType io_type', 'uint16 index']
_RESULT = ['int32 result']
EXPECTED_FIELDS.update({
    _FANUC.msg.RobotStatus: ['bool in_error', 'bool tp_enabled', 'bool e_stopped',
                             'bool motion_possible', 'uint8 contact_stop_mode'],
    _FANUC.msg.RobotStatusExt: ['string error_code', 'bool in_motion', 'bool drives_powered',
                                'int32 gen_override', 'float32 speed_clamp_limit',
                                'string control_mode'],
    _FANUC.msg.CollaborativeSpeedScaling: ['float64 collaborative_speed_scaling'],
    _FANUC.msg.ConnectionStatus: ['bool is_connected'],
    _FANUC.msg.IOType: ['string type'],
    _FANUC.msg.BoolIO: _IO_INDEX + ['bool value'],
    _FANUC.msg.AnalogIO: _IO_INDEX + ['float32 value'],
    _FANUC.msg.NumReg: ['uint16 index', 'float32 value'],
    _FANUC.msg.IOState: ['fanuc_msgs/BoolIO[] values'],
    _FANUC.msg.IOCmd: ['fanuc_msgs/BoolIO[] values'],
    _FANUC.msg.AnalogIOState: ['fanuc_msgs/AnalogIO[] values'],
    _FANUC.msg.AnalogIOCmd: ['fanuc_msgs/AnalogIO[] values'],
    _FANUC.msg.NumRegState: ['fanuc_msgs/NumReg[] values'],
    _FANUC.msg.NumRegCmd: ['fanuc_msgs/NumReg[] values'],
    _FANUC.msg.ForceSensor: [f'float32 {a}_{b}' for a in ('force', 'moment') for b in 'xyz']
    + ['uint32 fs_type'],
    _FANUC.srv.GetBoolIO.Request: _IO_INDEX,
    _FANUC.srv.GetBoolIO.Response: _RESULT + ['bool value'],
    _FANUC.srv.GetAnalogIO.Request: _IO_INDEX,
    _FANUC.srv.GetAnalogIO.Response: _RESULT + ['float32 value'],
    _FANUC.srv.GetGroupIO.Request: _IO_INDEX,
    _FANUC.srv.GetGroupIO.Response: _RESULT + ['uint16 value'],
    _FANUC.srv.SetBoolIO.Request: _IO_INDEX + ['bool value'],
    _FANUC.srv.SetBoolIO.Response: _RESULT,
    _FANUC.srv.SetAnalogIO.Request: _IO_INDEX + ['float32 value'],
    _FANUC.srv.SetAnalogIO.Response: _RESULT,
    _FANUC.srv.SetGroupIO.Request: _IO_INDEX + ['uint16 value'],
    _FANUC.srv.SetGroupIO.Response: _RESULT,
    _FANUC.srv.GetNumReg.Request: ['uint16 index'],
    _FANUC.srv.GetNumReg.Response: _RESULT + ['float32 value'],
    _FANUC.srv.SetNumReg.Request: ['uint16 index', 'float32 value'],
    _FANUC.srv.SetNumReg.Response: _RESULT,
    _FANUC.srv.GetPosReg.Request: ['uint16 index'],
    _FANUC.srv.GetPosReg.Response: _RESULT + _POS_REG,
    _FANUC.srv.SetPosReg.Request: ['uint16 index'] + _POS_REG,
    _FANUC.srv.SetPosReg.Response: _RESULT,
    _FANUC.srv.SetGenOverride.Request: ['int8 value'], _FANUC.srv.SetGenOverride.Response: _RESULT,
    _FANUC.srv.SetPayloadID.Request: ['uint16 payload_schedule_id'],
    _FANUC.srv.SetPayloadID.Response: _RESULT,
    _FANUC.srv.SetPayloadValue.Request: _PAYLOAD + ['bool use_in'] + _IN,
    _FANUC.srv.SetPayloadValue.Response: _RESULT,
    _FANUC.srv.SetPayloadComp.Request: _PAYLOAD + _IN,
    _FANUC.srv.SetPayloadComp.Response: _RESULT,
    _FANUC.srv.SwitchControlState.Request: ['uint32 status'],
    _FANUC.srv.SwitchControlState.Response: _RESULT,
    _FANUC.srv.CfgForceSensor.Request: ['uint32 do_reset', 'uint32 fs_type'],
    _FANUC.srv.CfgForceSensor.Response: _RESULT,
})

_MOTION_READY_CODES = dict(
    READY=1, NOT_READY_UNSPECIFIED=100, NOT_READY_ALARM=101, NOT_READY_ERROR=102,
    NOT_READY_ESTOP=103, NOT_READY_NOT_PLAY=104, NOT_READY_NOT_REMOTE=105,
    NOT_READY_SERVO_OFF=106, NOT_READY_HOLD=107, NOT_READY_JOB_NOT_STARTED=108,
    NOT_READY_NOT_ON_WAIT_CMD=109, NOT_READY_PFL_ACTIVE=111, NOT_READY_INC_MOVE_ERROR=112,
    NOT_READY_OTHER_PROGRAM_RUNNING=113, NOT_READY_OTHER_TRAJ_MODE_ACTIVE=114,
    NOT_READY_NOT_CONT_CYCLE_MODE=115, NOT_READY_MAJOR_ALARM=116, NOT_READY_ECO_MODE=117,
    NOT_READY_SERVO_ON_TIMEOUT=118)
_INIT_TRAJ_CODES = {'INIT_TRAJ_OK': 0, **{f'INIT_TRAJ_{name}': code for code, name in enumerate(
    ('UNSPECIFIED', 'TOO_SMALL', 'TOO_BIG', 'ALREADY_IN_MOTION', 'INVALID_STARTING_POS',
     'INVALID_VELOCITY', 'INVALID_JOINTNAME', 'INCOMPLETE_JOINTLIST', 'INVALID_TIME',
     'WRONG_MODE', 'BACKWARD_TIME', 'WRONG_NUMBER_OF_POSITIONS', 'WRONG_NUMBER_OF_VELOCITIES',
     'INVALID_ENDING_VELOCITY', 'INVALID_ENDING_ACCELERATION', 'DUPLICATE_JOINT_NAME'),
    start=200)}}
_IO_TYPES = ('AI', 'AO', 'DI', 'DO', 'RI', 'RO', 'SI', 'SO', 'WI', 'WO', 'UI', 'UO', 'WSI', 'WSO',
             'F', 'M', 'GI', 'GO')
# Numeric constants only; MotoROS2's *_STR companions are checked separately.
EXPECTED_CONSTANTS = {
    FollowJointTrajectory.Result: dict(
        SUCCESSFUL=0, INVALID_GOAL=-1, INVALID_JOINTS=-2, OLD_HEADER_TIMESTAMP=-3,
        PATH_TOLERANCE_VIOLATED=-4, GOAL_TOLERANCE_VIOLATED=-5),
    JointComponentTolerance: dict(X_AXIS=1, Y_AXIS=2, Z_AXIS=3, TRANSLATION=4, ROTATION=5),
    industrial_msgs.msg.RobotMode: dict(UNKNOWN=-1, MANUAL=1, AUTO=2),
    industrial_msgs.msg.TriState: dict(UNKNOWN=-1, TRUE=1, ON=1, ENABLED=1, HIGH=1, CLOSED=1,
                                       FALSE=0, OFF=0, DISABLED=0, LOW=0, OPEN=0),
    _MOTOROS2.msg.QueueResultEnum: dict(SUCCESS=1, WRONG_MODE=2, INIT_FAILURE=3, BUSY=4,
                                        INVALID_JOINT_LIST=5, UNABLE_TO_PROCESS_POINT=6),
    _MOTOROS2.msg.MotionReadyEnum: _MOTION_READY_CODES,
    _MOTOROS2.msg.InitTrajEnum: _INIT_TRAJ_CODES,
    _MOTOROS2.msg.SelectionResultCodes: dict(OK=0, INVALID_CONTROLLER_STATE=400,
                                             INVALID_CONTROL_GROUP=401,
                                             INVALID_SELECTION_INDEX=402),
    _MOTOROS2.msg.IoResultCodes: dict(OK=0, READ_ADDRESS_INVALID=1001,
                                      WRITE_ADDRESS_INVALID=1002, WRITE_VALUE_INVALID=1003,
                                      READ_API_ERROR=1004, WRITE_API_ERROR=1005),
    _FANUC.msg.RobotStatus: dict(CONTACT_STOP_MODE_NONE=0, CONTACT_STOP_MODE_SAFE=1,
                                 CONTACT_STOP_MODE_STOP=2, CONTACT_STOP_MODE_DSBL=3,
                                 CONTACT_STOP_MODE_ESCP=4),
    _FANUC.msg.IOType: {name: name for name in _IO_TYPES},
    _FANUC.srv.SwitchControlState.Request: dict(STOP=0, START=1),
}
MOTOROS2_ENUMS = (_MOTOROS2.msg.QueueResultEnum, _MOTOROS2.msg.MotionReadyEnum,
                  _MOTOROS2.msg.InitTrajEnum, _MOTOROS2.msg.SelectionResultCodes,
                  _MOTOROS2.msg.IoResultCodes)

# RIHS01 hashes from public Jazzy-generation builds of the upstream packages (rosidl's generated
# *__description.c of a control_msgs 5.x build, and downstream builds that embed the referenced
# hashes of SpeedScalingFactor, QueryTrajectoryState and TFMessage); found with the code search,
# listed in docs/DRIVERS.md. A match means our definition is the upstream one, field for field.
UPSTREAM_TYPE_HASHES = {
    'control_msgs/action/FollowJointTrajectory':
        '738ebcb7a2d7cfa42f9f1001cc99ce3a4383d1cfe508015d9be8485e4b1c66f6',
    'control_msgs/action/FollowJointTrajectory_Goal':
        '8a9060704b269608f5a340934cc26e66869dd14bdac29e2e7fd9ec8b9882d205',
    'control_msgs/action/FollowJointTrajectory_Result':
        '8002e99ed2c14c6faa522f2a93c26d744c5982f254f9e98ff9c6f19789bdb220',
    'control_msgs/action/FollowJointTrajectory_Feedback':
        '3fd0aaecf71725121ae1ff7f01098a5e0da581e672be18a6b2c286cb43d96b49',
    'control_msgs/msg/JointTolerance':
        'c254f9cece0f3b733017b6990fd46d1326e25242d6b8844398c97d9a88e7d648',
    'control_msgs/msg/JointComponentTolerance':
        '739ea7566931944d33830fa10f1bf5e7a7fbdc3172bce7a7eaac642bd6e3ffa4',
    'control_msgs/msg/SpeedScalingFactor':
        '0c240f349f2b74e33e8741f83e0f196ddeb6585923663876ed3c1f51f0566037',
    'control_msgs/srv/QueryTrajectoryState':
        '4a0935dffef18bc5b9e101c9d03d84e681ecd4cebd724b8f11fde008751a325a',
    'tf2_msgs/msg/TFMessage':
        'e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087',
}
# control_msgs 5.0-5.2 JointTrajectoryControllerState (before 5.3.0 appended
# speed_scaling_factor), from the same upstream build: ours minus its last field must hash to it.
JTC_STATE_BEFORE_5_3_HASH = '6cb9ac0858fc11b54bd6c0a46f032ea243c16856182276d8eb0875f6ce6a8335'

# .msg type names -> the names get_fields_and_field_types() reports.
_PYTHON_TYPE_NAMES = {'bool': 'boolean', 'byte': 'octet', 'float32': 'float', 'float64': 'double'}


def python_type_name(msg_type: str) -> str:
    if msg_type.endswith('[]'):
        return f'sequence<{python_type_name(msg_type[:-2])}>'
    return _PYTHON_TYPE_NAMES.get(msg_type, msg_type)


def type_label(cls) -> str:
    return f'{cls.__module__.split(".")[0]}/{cls.__name__}'


def numeric_constants(cls) -> dict:
    """The constants rosidl generated for `cls`, without MotoROS2's *_STR texts."""
    metaclass = type(cls)
    everything = getattr(metaclass, f'_{metaclass.__name__}__constants')
    return {name: value for name, value in everything.items() if not name.endswith('_STR')}


def all_constants(cls) -> dict:
    metaclass = type(cls)
    return dict(getattr(metaclass, f'_{metaclass.__name__}__constants'))


def package_share(package: str) -> Path:
    """share/<package> of the prefix the importable `package` comes from.

    The Python package is <prefix>/lib/python3.X/site-packages/<package>/__init__.py, both in our
    install/<package> and in a ROS 2 install such as /opt/ros/jazzy.
    """
    return Path(importlib.util.find_spec(package).origin).parents[4] / 'share' / package


def type_hashes() -> dict[str, str]:
    """{type name: RIHS01 hash} from the type description files every Jazzy build installs."""
    hashes = {}
    for package in PACKAGES:
        for path in package_share(package).glob('*/*.json'):
            for entry in json.loads(path.read_text())['type_hashes']:
                hashes[entry['type_name']] = entry['hash_string']
    return hashes


def type_description(type_name: str) -> dict:
    package, kind, name = type_name.split('/')
    path = package_share(package) / kind / f'{name}.json'
    return json.loads(path.read_text())['type_description_msg']


# ------------------------------------------------------------------------ layout tests

@pytest.mark.parametrize('cls', list(EXPECTED_FIELDS), ids=type_label)
def test_fields_have_the_upstream_names_types_and_order(cls):
    expected = [tuple(field.split(' ')) for field in EXPECTED_FIELDS[cls]]
    actual = list(cls.get_fields_and_field_types().items())
    assert actual == [(name, python_type_name(msg_type)) for msg_type, name in expected]


@pytest.mark.parametrize('cls', list(EXPECTED_CONSTANTS), ids=type_label)
def test_constants_have_the_upstream_names_and_values(cls):
    assert numeric_constants(cls) == EXPECTED_CONSTANTS[cls]


@pytest.mark.parametrize('cls', MOTOROS2_ENUMS, ids=type_label)
def test_every_motoros2_code_has_its_text(cls):
    constants = all_constants(cls)
    texts = {name for name in constants if name.endswith('_STR')}
    assert texts >= {f'{name}_STR' for name in numeric_constants(cls)}
    assert all(isinstance(constants[name], str) for name in texts)
    # The only text without a code (reference §2.4).
    assert texts - {f'{name}_STR' for name in numeric_constants(cls)} == (
        {'UNKNOWN_API_ERROR_STR'} if cls is _MOTOROS2.msg.IoResultCodes else set())


def test_motoros2_texts_are_the_ones_the_robot_reports():
    # A few, spot-checked against the generated code of public motoros2_interfaces builds.
    assert QueueResultEnum.BUSY_STR == ('Busy processing the previous trajectory point. '
                                        'Please resend the next point shortly')
    assert InitTrajEnum.INIT_TRAJ_INVALID_STARTING_POS_STR == (
        "The first point must match the robot's current position.")
    assert (motoros2_interfaces.msg.MotionReadyEnum.NOT_READY_SERVO_ON_TIMEOUT_STR
            == 'Timed out while waiting for servo on')


def test_type_hashes_match_the_upstream_builds():
    ours = type_hashes()
    differing = {name: ours.get(name) for name, upstream in UPSTREAM_TYPE_HASHES.items()
                 if ours.get(name) != 'RIHS01_' + upstream}
    assert not differing, f'type hashes differ from upstream: {differing}'


def test_controller_state_is_the_5_2_layout_plus_speed_scaling_factor():
    from rosidl_generator_type_description import calculate_type_hash
    name = 'control_msgs/msg/JointTrajectoryControllerState'
    description = type_description(name)
    # The procedure itself: recomputing from the installed description gives the installed hash.
    assert calculate_type_hash(description) == type_hashes()[name]
    before_5_3 = copy.deepcopy(description)
    last = before_5_3['type_description']['fields'].pop()
    assert last['name'] == 'speed_scaling_factor'
    assert calculate_type_hash(before_5_3) == 'RIHS01_' + JTC_STATE_BEFORE_5_3_HASH


# ------------------------------------------------------------------------ over DDS

MOTOROS2_JOINTS = [f'joint_{i}' for i in range(1, 7)]

# A fake MotoROS2 in its own process (its own load of the generated types, talking DDS to this
# one). It answers like the real one in the cases used below: every goal is accepted; a goal with
# unknown joint names is then aborted with INVALID_GOAL * 100000 - INIT_TRAJ_INVALID_JOINTNAME; a
# valid goal gets one feedback per point and succeeds. queue_traj_point accepts the first point
# and answers BUSY to the next, INVALID_JOINT_LIST to unknown names.
FAKE_DRIVER = textwrap.dedent('''
    import rclpy
    from rclpy.action import ActionServer
    from rclpy.node import Node
    from control_msgs.action import FollowJointTrajectory
    from motoros2_interfaces.msg import InitTrajEnum, QueueResultEnum
    from motoros2_interfaces.srv import QueueTrajPoint

    JOINTS = [f'joint_{i}' for i in range(1, 7)]


    class FakeMotoROS2(Node):
        def __init__(self):
            super().__init__('fake_motoros2')
            self.points_queued = 0
            self.action_server = ActionServer(
                self, FollowJointTrajectory, 'follow_joint_trajectory', self.execute)
            self.create_service(QueueTrajPoint, 'queue_traj_point', self.queue_point)

        def execute(self, goal_handle):
            trajectory = goal_handle.request.trajectory
            result = FollowJointTrajectory.Result()
            if list(trajectory.joint_names) != JOINTS:
                goal_handle.abort()
                result.error_code = (FollowJointTrajectory.Result.INVALID_GOAL * 100000
                                     - InitTrajEnum.INIT_TRAJ_INVALID_JOINTNAME)
                result.error_string = InitTrajEnum.INIT_TRAJ_INVALID_JOINTNAME_STR
                return result
            for point in trajectory.points:
                feedback = FollowJointTrajectory.Feedback(joint_names=JOINTS)
                feedback.header.stamp = self.get_clock().now().to_msg()
                feedback.desired = point
                feedback.actual = point
                feedback.error.positions = [0.0] * len(JOINTS)
                goal_handle.publish_feedback(feedback)
            goal_handle.succeed()
            result.error_code = FollowJointTrajectory.Result.SUCCESSFUL
            return result

        def queue_point(self, request, response):
            if list(request.joint_names) != JOINTS:
                response.result_code.value = QueueResultEnum.INVALID_JOINT_LIST
                response.message = QueueResultEnum.INVALID_JOINT_LIST_STR
                return response
            self.points_queued += 1
            if self.points_queued == 1:
                response.result_code.value = QueueResultEnum.SUCCESS
                response.message = QueueResultEnum.SUCCESS_STR
            else:
                response.result_code.value = QueueResultEnum.BUSY
                response.message = QueueResultEnum.BUSY_STR
            return response


    rclpy.init()
    node = FakeMotoROS2()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
''')


@pytest.fixture
def fake_driver(ros_domain_id, tmp_path):
    """The fake MotoROS2 process, started with this process's view of the packages."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        OUR_SITE_PACKAGES + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    log_path = tmp_path / 'fake_motoros2.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, '-c', FAKE_DRIVER], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _driver_alive(fake_driver) -> bool:
    process, log_path = fake_driver
    if process.poll() is not None:
        raise AssertionError(f'the fake driver exited ({process.returncode}):\n'
                             f'{log_path.read_text()}')
    return True


def _trajectory_goal(joint_names, positions_per_point):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectoryPoint
    goal = FollowJointTrajectory.Goal()
    goal.trajectory.joint_names = list(joint_names)
    for index, positions in enumerate(positions_per_point):
        point = JointTrajectoryPoint(positions=list(positions),
                                     velocities=[0.0] * len(positions),
                                     time_from_start=Duration(sec=index, nanosec=500_000_000))
        goal.trajectory.points.append(point)
    goal.goal_time_tolerance = Duration(sec=0, nanosec=500_000_000)
    goal.goal_tolerance = [JointTolerance(name=name, position=0.01) for name in joint_names]
    return goal


@pytest.mark.ros
def test_follow_joint_trajectory_round_trip_over_dds(ros_context, fake_driver):
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    session = ros_context.start()
    node = session.add(rclpy.create_node('fjt_client'))
    client = ActionClient(node, FollowJointTrajectory, 'follow_joint_trajectory')
    session.spin_until(lambda: _driver_alive(fake_driver) and client.server_is_ready(),
                       what='the follow_joint_trajectory server')

    def run(goal, feedback_expected):
        feedback = []
        sent = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
        session.spin_until(sent.done, what='the goal response')
        goal_handle = sent.result()
        assert goal_handle.accepted, 'MotoROS2 accepts every goal (and aborts bad ones)'
        # Feedback is a topic and the result a service, and rclpy's client drops the feedback that
        # arrives after the result: so wait for the feedback before asking for the result.
        session.spin_until(lambda: len(feedback) >= feedback_expected,
                           what=f'{feedback_expected} feedback messages')
        finished = goal_handle.get_result_async()
        session.spin_until(finished.done, what='the goal result')
        return finished.result(), feedback

    points = [[0.1 * i + 0.01 * j for j in range(6)] for i in range(3)]
    answer, feedback = run(_trajectory_goal(MOTOROS2_JOINTS, points), len(points))
    assert answer.status == GoalStatus.STATUS_SUCCEEDED
    assert answer.result.error_code == FollowJointTrajectory.Result.SUCCESSFUL
    assert [list(f.joint_names) for f in feedback] == [MOTOROS2_JOINTS] * len(points)
    assert [list(f.desired.positions) for f in feedback] == points
    assert [f.desired.time_from_start.nanosec for f in feedback] == [500_000_000] * len(points)

    answer, feedback = run(_trajectory_goal(['J1', 'J2', 'J3', 'J4', 'J5', 'J6'], points), 0)
    assert answer.status == GoalStatus.STATUS_ABORTED
    assert answer.result.error_code == -100206  # MotoROS2's "invalid joint name" (reference §2.6)
    assert answer.result.error_string == InitTrajEnum.INIT_TRAJ_INVALID_JOINTNAME_STR
    assert feedback == []
    client.destroy()


@pytest.mark.ros
def test_queue_traj_point_round_trip_over_dds(ros_context, fake_driver):
    import rclpy
    from trajectory_msgs.msg import JointTrajectoryPoint
    session = ros_context.start()
    node = session.add(rclpy.create_node('queue_client'))
    client = node.create_client(QueueTrajPoint, 'queue_traj_point')
    session.spin_until(lambda: _driver_alive(fake_driver) and client.service_is_ready(),
                       what='the queue_traj_point service')

    def call(joint_names):
        request = QueueTrajPoint.Request(joint_names=list(joint_names))
        request.point = JointTrajectoryPoint(positions=[0.0] * 6, velocities=[0.0] * 6)
        future = client.call_async(request)
        session.spin_until(future.done, what='the queue_traj_point answer')
        response = future.result()
        return response.result_code.value, response.message

    assert call(MOTOROS2_JOINTS) == (QueueResultEnum.SUCCESS, '')
    assert call(MOTOROS2_JOINTS) == (QueueResultEnum.BUSY, QueueResultEnum.BUSY_STR)
    assert call(['J1', 'J2', 'J3', 'J4', 'J5', 'J6']) == (
        QueueResultEnum.INVALID_JOINT_LIST, QueueResultEnum.INVALID_JOINT_LIST_STR)
    node.destroy_client(client)
