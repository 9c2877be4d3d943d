"""Published facts of the supported arms and gripper, as plain Python data.

The URDFs under ``urdf/`` are generated from these tables by ``tools/generate_urdfs.py``; the
runtime and the tests read only this module and the generated files, never the reference notes.

Conventions (same as the ROS-Industrial / FANUC / Yaskawa descriptions the numbers come from):
lengths in m, angles in rad, velocities in rad/s or m/s, efforts in N m or N, masses in kg.
Every revolute joint origin has rpy 0 0 0; ``xyz`` is the child frame origin in the parent link
frame at zero joint angle; ``axis`` is expressed in the child frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import pathlib

import numpy as np

from noetra_ros.core import paths
from noetra_ros.core.errors import ConfigError, UnknownNameError

PACKAGE = paths.PACKAGE

Vec3 = tuple[float, float, float]
Aabb = tuple[Vec3, Vec3]

# The gripper facts, stated once: the URDF generator writes them, load_robot_description reads
# them back from the URDF and checks they agree, and every other module imports them from here.
# Finger command convention: 0 = fully open, GRIPPER_CLOSED = fingers touching (the 2F-85 stroke
# per finger, see _GRIPPER_2F85).
GRIPPER_OPEN = 0.0
GRIPPER_CLOSED = 0.0425
# Finger joints (left closes along -y, right along +y of tool0) and the TCP frame between the
# pads, as the generated URDFs name them.
GRIPPER_JOINT_NAMES: tuple[str, str] = ('gripper_left_finger_joint', 'gripper_right_finger_joint')
GRIPPER_TCP_LINK = 'gripper_tcp'


@dataclass(frozen=True)
class JointSpec:
    """One movable joint as published (revolute or prismatic)."""

    name: str
    parent: str
    child: str
    xyz: Vec3
    axis: Vec3
    lower: float
    upper: float
    velocity: float
    effort: float
    type: str = 'revolute'

    def __post_init__(self) -> None:
        if self.type not in ('revolute', 'prismatic'):
            raise ConfigError(f'joint {self.name!r}: type={self.type!r}; allowed: revolute, '
                              'prismatic')
        if not self.lower < self.upper:
            raise ConfigError(f'joint {self.name!r}: lower={self.lower} must be < '
                              f'upper={self.upper}')
        if not self.velocity > 0.0:
            raise ConfigError(f'joint {self.name!r}: velocity={self.velocity} must be > 0')
        if not self.effort > 0.0:
            raise ConfigError(f'joint {self.name!r}: effort={self.effort} must be > 0')
        if abs(math.sqrt(sum(a * a for a in self.axis)) - 1.0) > 1e-9:
            raise ConfigError(f'joint {self.name!r}: axis={self.axis} must be a unit vector')


@dataclass(frozen=True)
class FixedFrameSpec:
    """A fixed joint adding a massless frame (``base``, ``flange``, ``tool0``)."""

    name: str
    parent: str
    child: str
    xyz: Vec3 = (0.0, 0.0, 0.0)
    rpy: Vec3 = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class LinkSpec:
    """A physical link: mass and the axis-aligned bounds (link frame) of its collision shape."""

    name: str
    mass: float
    aabb: Aabb

    def __post_init__(self) -> None:
        if not self.mass > 0.0:
            raise ConfigError(f'link {self.name!r}: mass={self.mass} must be > 0')
        lo, hi = self.aabb
        if len(lo) != 3 or len(hi) != 3 or not all(a < b for a, b in zip(lo, hi)):
            raise ConfigError(f'link {self.name!r}: aabb={self.aabb} must be ((min xyz), '
                              '(max xyz)) with min < max on every axis')

    @property
    def size(self) -> Vec3:
        """Edge lengths of the bounding box."""
        lo, hi = self.aabb
        return (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])

    @property
    def centre(self) -> Vec3:
        """Centre of the bounding box in the link frame."""
        lo, hi = self.aabb
        return ((hi[0] + lo[0]) / 2, (hi[1] + lo[1]) / 2, (hi[2] + lo[2]) / 2)


@dataclass(frozen=True)
class RobotSpec:
    """Everything published about one arm that the runtime needs.

    ``reach_link`` names the frame the published reach is measured to (the wrist centre for the
    LR Mate 200iD / GP8, a point on the J4 axis at J5 height for the HC10, the flange centre for
    the CRX-10iA); ``reach_m`` is the maximum horizontal distance of that frame from the J1 axis.
    """

    name: str
    vendor: str
    model: str
    joints: tuple[JointSpec, ...]
    links: tuple[LinkSpec, ...]
    fixed_frames: tuple[FixedFrameSpec, ...]
    payload_kg: float
    reach_m: float
    reach_from_geometry_m: float
    reach_link: str
    home: tuple[float, ...]
    rgba: tuple[float, float, float, float]
    sources: tuple[str, ...] = field(default=())
    base_link: str = 'base_link'
    flange_link: str = 'flange'
    tool_link: str = 'tool0'

    def __post_init__(self) -> None:
        if len(self.joints) != 6:
            raise ConfigError(f'robot {self.name!r}: joints has {len(self.joints)} entries; '
                              'allowed: 6')
        if len(self.home) != len(self.joints):
            raise ConfigError(f'robot {self.name!r}: home={self.home} needs '
                              f'{len(self.joints)} values')
        for j, h in zip(self.joints, self.home):
            if not j.lower <= h <= j.upper:
                raise ConfigError(f'robot {self.name!r}: home {j.name}={h} outside '
                                  f'[{j.lower}, {j.upper}]')
        if not (self.payload_kg > 0 and self.reach_m > 0):
            raise ConfigError(f'robot {self.name!r}: payload_kg={self.payload_kg} and '
                              f'reach_m={self.reach_m} must be > 0')
        link_names = {lk.name for lk in self.links}
        frame_names = {f.child for f in self.fixed_frames}
        for j in self.joints:
            if j.parent not in link_names or j.child not in link_names:
                raise ConfigError(f'robot {self.name!r}: joint {j.name!r} connects unknown '
                                  f'links {j.parent!r} -> {j.child!r}')
        for needed in (self.flange_link, self.tool_link, self.reach_link):
            if needed not in link_names | frame_names:
                raise ConfigError(f'robot {self.name!r}: frame {needed!r} is not defined')

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Arm joint names in chain order (base to tool)."""
        return tuple(j.name for j in self.joints)

    @property
    def dof(self) -> int:
        """Number of arm joints."""
        return len(self.joints)

    @property
    def lower(self) -> np.ndarray:
        """Lower position limits (rad), chain order."""
        return np.array([j.lower for j in self.joints])

    @property
    def upper(self) -> np.ndarray:
        """Upper position limits (rad), chain order."""
        return np.array([j.upper for j in self.joints])

    @property
    def velocity_limits(self) -> np.ndarray:
        """Maximum joint speeds (rad/s), chain order."""
        return np.array([j.velocity for j in self.joints])

    @property
    def effort_limits(self) -> np.ndarray:
        """Maximum joint torques (N m), chain order."""
        return np.array([j.effort for j in self.joints])

    @property
    def total_mass(self) -> float:
        """Sum of the link masses (kg)."""
        return float(sum(lk.mass for lk in self.links))


@dataclass(frozen=True)
class GripperSpec:
    """A two-finger parallel gripper built to a published data sheet.

    Each finger is a prismatic joint travelling ``stroke_per_finger`` towards the centre along
    tool0 y: joint value ``GRIPPER_OPEN`` (0) = fully open, ``GRIPPER_CLOSED`` = pads touching.
    """

    name: str
    model: str
    stroke_per_finger: float
    velocity: float
    effort: float
    mass: float
    finger_mass: float
    body_size: Vec3
    pad_size: Vec3
    pad_centre_height: float
    fingertip_height: float
    finger_thickness: float
    rgba: tuple[float, float, float, float]
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for fname in ('stroke_per_finger', 'velocity', 'effort', 'mass', 'finger_mass',
                      'pad_centre_height', 'fingertip_height', 'finger_thickness'):
            value = getattr(self, fname)
            if not value > 0.0:
                raise ConfigError(f'gripper {self.name!r}: {fname}={value} must be > 0')
        if not 2 * self.finger_mass < self.mass:
            raise ConfigError(f'gripper {self.name!r}: finger_mass={self.finger_mass} leaves no '
                              f'mass for the body out of mass={self.mass}')
        if not self.body_size[2] < self.pad_centre_height - self.pad_size[2] / 2:
            raise ConfigError(f'gripper {self.name!r}: pads must sit below the body; '
                              f'body height {self.body_size[2]}, pad centre '
                              f'{self.pad_centre_height}')

    @property
    def joint_names(self) -> tuple[str, str]:
        """Finger joint names (left closes along -y, right along +y of tool0)."""
        return GRIPPER_JOINT_NAMES

    @property
    def tcp_link(self) -> str:
        """The frame between the pads, at the pad centre height: what a grasp aims."""
        return GRIPPER_TCP_LINK

    @property
    def open_position(self) -> float:
        """Finger joint value of the open gripper (m)."""
        return GRIPPER_OPEN

    @property
    def closed_position(self) -> float:
        """Finger joint value of the closed gripper, pads touching (m)."""
        return GRIPPER_OPEN + self.stroke_per_finger

    @property
    def body_mass(self) -> float:
        """Mass of the gripper body without the fingers."""
        return self.mass - 2 * self.finger_mass


def _j(name: str, parent: str, child: str, xyz: Vec3, axis: Vec3, lower: float, upper: float,
       velocity: float, effort: float) -> JointSpec:
    return JointSpec(name, parent, child, xyz, axis, lower, upper, velocity, effort)


def _links(names: tuple[str, ...], masses: tuple[float, ...],
           aabbs: tuple[Aabb, ...]) -> tuple[LinkSpec, ...]:
    return tuple(LinkSpec(n, m, a) for n, m, a in zip(names, masses, aabbs, strict=True))


_PI = math.pi
# tool0 relative to flange, REP-103 style: z out of the flange, x "up" at zero joint angles.
_TOOL0_RPY: Vec3 = (_PI, -_PI / 2, 0.0)
_FANUC_YELLOW = (1.0, 0.8, 0.0, 1.0)
_YASKAWA_BLUE = (0.05, 0.3, 0.65, 1.0)
# Ready poses (rad): elbow up, tool0 z pointing straight down (tool0 x along base +x), tool0 at
# HOME_TOOL0_XYZ in base_link. Solved once with RobotModel.ik and rounded to 1e-4 rad;
# test_kinematics checks the pose. A table-top pick in front of the robot starts from here.
HOME_TOOL0_XYZ: Vec3 = (0.5, 0.0, 0.45)
_HOME = {
    'fanuc_lrmate200id': (0.0, 0.4032, -0.0133, 0.0, -1.1542, 0.0),
    # J1 turns to bring the 0.15 m lateral J6 offset onto the centre line; J6 undoes it.
    'fanuc_crx10ia': (0.3047, -0.0635, -0.3914, 0.0, -1.2429, -0.3047),
    'yaskawa_gp8': (0.0, 0.4115, -0.052, 0.0, -1.1074, 0.0),
    'yaskawa_hc10': (-0.33, 0.212, 0.9215, 0.0, -0.7095, 0.33),
}
_LINK_NAMES = ('base_link', 'link_1', 'link_2', 'link_3', 'link_4', 'link_5', 'link_6')
_CRX_LINK_NAMES = ('base_link', 'J1_link', 'J2_link', 'J3_link', 'J4_link', 'J5_link', 'J6_link')


# ---------------------------------------------------------------- FANUC LR Mate 200iD
# source (kinematics, limits): github ros-industrial/fanuc :
#   fanuc_lrmate200id_support/urdf/lrmate200id_macro.xacro (limits per FANUC manual
#   B-83494EN/03, per package.xml)
# source (efforts, link masses): github FANUC-CORPORATION/fanuc_description :
#   fanuc_lrmate_description/urdf/lrmate200id_urdf_macro.xacro. The ROS-I model publishes no
#   efforts, so the official FANUC figures [500, 500, 200, 70, 40, 20] N m are used.
# source (collision bounds): ros-industrial/fanuc lrmate200id collision STLs.
# source (reach/payload): FANUC product page as quoted in third-party text; reach re-derived from
#   geometry: 0.05 + 0.33 + hypot(0.335, 0.035) = 0.7168 m to the wrist centre (J5 axis).
_LRMATE = RobotSpec(
    name='fanuc_lrmate200id',
    vendor='FANUC',
    model='LR Mate 200iD',
    joints=(
        _j('joint_1', 'base_link', 'link_1', (0, 0, 0.33), (0, 0, 1), -2.9671, 2.9671,
           7.854, 500.0),
        _j('joint_2', 'link_1', 'link_2', (0.05, 0, 0), (0, 1, 0), -1.7453, 2.5307,
           6.6323, 500.0),
        _j('joint_3', 'link_2', 'link_3', (0, 0, 0.33), (0, -1, 0), -1.2217, 3.5779,
           9.0757, 200.0),
        _j('joint_4', 'link_3', 'link_4', (0, 0, 0.035), (-1, 0, 0), -3.3161, 3.3161,
           9.5993, 70.0),
        _j('joint_5', 'link_4', 'link_5', (0.335, 0, 0), (0, -1, 0), -2.1817, 2.1817,
           9.512, 40.0),
        _j('joint_6', 'link_5', 'link_6', (0.08, 0, 0), (-1, 0, 0), -6.2832, 6.2832,
           17.4533, 20.0),
    ),
    # Masses: official FANUC URDF (J1_link..J6_link mapped onto link_1..link_6).
    links=_links(_LINK_NAMES, (5.3, 5.62, 9.05, 2.15, 2.42, 0.446, 0.0134), (
        ((-0.103, -0.095, 0.0), (0.095, 0.095, 0.169)),
        ((-0.085, -0.117, -0.16), (0.114, 0.117, 0.064)),
        ((-0.072, -0.117, -0.066), (0.066, 0.118, 0.386)),
        ((-0.075, -0.072, -0.052), (0.089, 0.067, 0.086)),
        ((0.088, -0.052, -0.05), (0.376, 0.052, 0.064)),
        ((-0.043, -0.037, -0.043), (0.074, 0.037, 0.042)),
        ((-0.006, -0.02, -0.02), (0.0, 0.02, 0.02)),
    )),
    # ROS-I puts joint_6's origin on the flange face, so flange coincides with link_6.
    fixed_frames=(
        FixedFrameSpec('base_link-base', 'base_link', 'base', (0, 0, 0.33)),
        FixedFrameSpec('link_6-flange', 'link_6', 'flange'),
        FixedFrameSpec('flange-tool0', 'flange', 'tool0', rpy=_TOOL0_RPY),
    ),
    payload_kg=7.0,
    reach_m=0.717,
    reach_from_geometry_m=0.7168,
    reach_link='link_5',
    home=_HOME['fanuc_lrmate200id'],
    rgba=_FANUC_YELLOW,
    sources=(
        'github ros-industrial/fanuc : fanuc_lrmate200id_support/urdf/lrmate200id_macro.xacro',
        'github FANUC-CORPORATION/fanuc_description : '
        'fanuc_lrmate_description/urdf/lrmate200id_urdf_macro.xacro',
    ),
)


# ---------------------------------------------------------------- FANUC CRX-10iA
# source (kinematics, limits, efforts, link masses): github FANUC-CORPORATION/fanuc_description :
#   fanuc_crx_description/urdf/crx10ia_urdf_macro.xacro (official FANUC ROS 2 description; joint
#   names J1..J6, link names J1_link..J6_link). The official frame `wbase` is named `base` here
#   and `fanuc_flange` is named `tool0`, so every arm exposes the same frame names.
# source (collision bounds): FANUC official crx10ia collision STLs.
# source (specs): FANUC B-84194EN/01 CRX-10iA Mechanical Unit Operator's Manual, Table 3.1(a):
#   payload 10 kg, reach 1249 mm = hypot(0.54 + 0.54 + 0.16, 0.15), i.e. to the flange centre.
_CRX10IA = RobotSpec(
    name='fanuc_crx10ia',
    vendor='FANUC',
    model='CRX-10iA',
    joints=(
        _j('J1', 'base_link', 'J1_link', (0, 0, 0.245), (0, 0, 1), -3.3161, 3.3161,
           2.0944, 400.0),
        _j('J2', 'J1_link', 'J2_link', (0, 0, 0), (0, 1, 0), -3.1398, 3.1398,
           2.0944, 400.0),
        _j('J3', 'J2_link', 'J3_link', (0, 0, 0.54), (0, -1, 0), -1.2392, 4.3808,
           3.1416, 200.0),
        _j('J4', 'J3_link', 'J4_link', (0, 0, 0), (-1, 0, 0), -3.3161, 3.3161,
           3.1416, 60.0),
        _j('J5', 'J4_link', 'J5_link', (0.54, 0, 0), (0, -1, 0), -3.1398, 3.1398,
           3.1416, 60.0),
        _j('J6', 'J5_link', 'J6_link', (0, -0.15, 0), (-1, 0, 0), -3.927, 3.927,
           3.1416, 60.0),
    ),
    links=_links(_CRX_LINK_NAMES, (4.517, 10.673, 10.892, 4.162, 3.969, 2.509, 1.305), (
        ((-0.099, -0.095, 0.0), (0.095, 0.095, 0.085)),
        ((-0.079, -0.119, -0.159), (0.079, 0.08, 0.08)),
        ((-0.079, -0.298, -0.079), (0.079, -0.076, 0.608)),
        ((-0.07, -0.075, -0.07), (0.153, 0.064, 0.07)),
        ((0.154, -0.064, -0.057), (0.593, 0.058, 0.057)),
        ((-0.058, -0.208, -0.057), (0.1, -0.065, 0.057)),
        ((0.101, -0.054, -0.046), (0.16, 0.062, 0.046)),
    )),
    fixed_frames=(
        FixedFrameSpec('base_link-base', 'base_link', 'base', (0, 0, 0.245)),
        FixedFrameSpec('J6_link-flange', 'J6_link', 'flange', (0.16, 0, 0)),
        FixedFrameSpec('flange-tool0', 'flange', 'tool0', rpy=_TOOL0_RPY),
    ),
    payload_kg=10.0,
    reach_m=1.249,
    reach_from_geometry_m=1.249,
    reach_link='flange',
    home=_HOME['fanuc_crx10ia'],
    rgba=_FANUC_YELLOW,
    sources=(
        'github FANUC-CORPORATION/fanuc_description : '
        'fanuc_crx_description/urdf/crx10ia_urdf_macro.xacro',
        "FANUC B-84194EN/01 CRX-10iA Mechanical Unit Operator's Manual, Table 3.1(a)",
    ),
)


# ---------------------------------------------------------------- Yaskawa Motoman GP8
# source (kinematics, limits, efforts): github Yaskawa-Global/motoman_ros2_support_packages :
#   motoman_gp8_support/urdf/gp8_macro.xacro (limits per MOTOMAN-GP8,-GP7 INSTRUCTIONS HW1486547
#   rev 7, per package.xml)
# source (link masses): github IGORSVOLOHOVS/yaskawa-gp8-simulation :
#   assets/gp8_mass_properties.json -- NOT manufacturer data: a uniform-density estimate from the
#   ROS-I meshes fitted to the 32 kg datasheet mass.
# source (collision bounds): motoman_gp8_support collision STLs.
# source (specs): Yaskawa datasheet DS-699-H as transcribed in
#   IGORSVOLOHOVS/yaskawa-gp8-simulation: payload 8 kg, reach 727 mm
#   = 0.04 + 0.345 + hypot(0.34, 0.04) to the wrist centre (J5 axis).
_GP8 = RobotSpec(
    name='yaskawa_gp8',
    vendor='Yaskawa',
    model='Motoman GP8',
    joints=(
        _j('joint_1', 'base_link', 'link_1', (0, 0, 0.33), (0, 0, 1), -2.9671, 2.9671,
           7.9412, 150.92),
        _j('joint_2', 'link_1', 'link_2', (0.04, 0, 0), (0, 1, 0), -1.1345, 2.5307,
           6.7195, 176.4),
        _j('joint_3', 'link_2', 'link_3', (0, 0, 0.345), (0, -1, 0), -1.2217, 3.3161,
           9.0757, 107.56),
        _j('joint_4', 'link_3', 'link_4', (0.34, 0, 0.04), (-1, 0, 0), -3.3161, 3.3161,
           9.5993, 55.86),
        _j('joint_5', 'link_4', 'link_5', (0, 0, 0), (0, -1, 0), -2.3562, 2.3562,
           9.5993, 32.68),
        _j('joint_6', 'link_5', 'link_6', (0, 0, 0), (-1, 0, 0), -6.2832, 6.2832,
           17.4533, 22.54),
    ),
    links=_links(_LINK_NAMES, (9.08, 5.4, 8.78, 4.6, 3.46, 0.64, 0.04), (
        ((-0.137, -0.1, 0.0), (0.1, 0.1, 0.199)),
        ((-0.097, -0.083, -0.14), (0.101, 0.083, 0.061)),
        ((-0.092, -0.115, -0.064), (0.064, 0.115, 0.398)),
        ((-0.105, -0.074, -0.055), (0.07, 0.071, 0.103)),
        ((-0.269, -0.055, -0.051), (0.036, 0.055, 0.053)),
        ((-0.038, -0.033, -0.039), (0.076, 0.033, 0.039)),
        ((0.067, -0.03, -0.03), (0.08, 0.03, 0.03)),
    )),
    fixed_frames=(
        FixedFrameSpec('base_link-base', 'base_link', 'base', (0, 0, 0.33)),
        FixedFrameSpec('link_6-flange', 'link_6', 'flange', (0.08, 0, 0)),
        FixedFrameSpec('flange-tool0', 'flange', 'tool0', rpy=_TOOL0_RPY),
    ),
    payload_kg=8.0,
    reach_m=0.727,
    reach_from_geometry_m=0.7273,
    reach_link='link_5',
    home=_HOME['yaskawa_gp8'],
    rgba=_YASKAWA_BLUE,
    sources=(
        'github Yaskawa-Global/motoman_ros2_support_packages : '
        'motoman_gp8_support/urdf/gp8_macro.xacro',
        'github IGORSVOLOHOVS/yaskawa-gp8-simulation : assets/gp8_mass_properties.json',
    ),
)


# ---------------------------------------------------------------- Yaskawa Motoman HC10
# source (kinematics, limits, efforts): github Yaskawa-Global/motoman_ros2_support_packages :
#   motoman_hc10_support/urdf/hc10_macro.xacro (limits per MOTOMAN-HC10 INSTRUCTIONS HW1483896
#   rev 7, per package.xml). At all-zero joints the forearm hangs straight down beside the upper
#   arm; joint_3 = pi points it straight up.
# source (collision bounds and volume split): motoman_hc10_support hc10 collision STLs.
# source (specs): payload 10 kg and reach 1.2 m from third-party listings (weak) and geometry:
#   0.700 (L) + 0.500 (U) from the J2 axis to the J4 axis at J5 height (link_4 origin); the 0.162 m
#   lateral wrist offset is not counted in the published figure.
# ASSUMPTION: no published link masses and no verified robot mass. We assume a 47 kg robot and
# split it by each link's share of the collision-mesh volume (uniform density).
_HC10_ASSUMED_TOTAL_MASS_KG = 47.0
_HC10_VOLUME_FRACTION = (0.142, 0.139, 0.419, 0.097, 0.11, 0.088, 0.005)
_HC10 = RobotSpec(
    name='yaskawa_hc10',
    vendor='Yaskawa',
    model='Motoman HC10',
    joints=(
        _j('joint_1', 'base_link', 'link_1', (0, 0, 0.275), (0, 0, 1), -3.1416, 3.1416,
           2.2689, 368.48),
        _j('joint_2', 'link_1', 'link_2', (0, 0, 0), (0, 1, 0), -3.1416, 3.1416,
           2.2689, 368.48),
        _j('joint_3', 'link_2', 'link_3', (0, 0, 0.7), (0, -1, 0), -0.0873, 6.1959,
           3.1416, 141.12),
        _j('joint_4', 'link_3', 'link_4', (0, 0, -0.5), (0, 0, 1), -3.1416, 3.1416,
           3.1416, 39.2),
        _j('joint_5', 'link_4', 'link_5', (0, 0.162, 0), (0, -1, 0), -3.1416, 3.1416,
           4.3633, 31.36),
        _j('joint_6', 'link_5', 'link_6', (0, 0, 0), (0, 0, 1), -3.1416, 3.1416,
           4.3633, 31.36),
    ),
    links=_links(
        _LINK_NAMES,
        tuple(round(_HC10_ASSUMED_TOTAL_MASS_KG * f, 4) for f in _HC10_VOLUME_FRACTION),
        (
            ((-0.152, -0.113, 0.0), (0.113, 0.113, 0.167)),
            ((-0.11, -0.119, -0.119), (0.11, 0.102, 0.103)),
            ((-0.081, -0.301, -0.082), (0.081, -0.098, 0.768)),
            ((-0.112, -0.108, -0.119), (0.088, 0.09, 0.09)),
            ((-0.057, -0.068, -0.057), (0.057, 0.064, 0.393)),
            ((-0.081, -0.11, -0.1), (0.081, 0.078, 0.148)),
            ((-0.051, -0.051, -0.13), (0.051, 0.051, -0.093)),
        ),
    ),
    # The flange is 0.13 m beyond the J5 axis along -z of link_6 (HC10DT: 0.17 m, not modelled).
    fixed_frames=(
        FixedFrameSpec('base_link-base', 'base_link', 'base', (0, 0, 0.275)),
        FixedFrameSpec('link_6-flange', 'link_6', 'flange', (0, 0, -0.13), (0, _PI / 2, 0)),
        FixedFrameSpec('flange-tool0', 'flange', 'tool0', rpy=_TOOL0_RPY),
    ),
    payload_kg=10.0,
    reach_m=1.2,
    reach_from_geometry_m=1.2,
    reach_link='link_4',
    home=_HOME['yaskawa_hc10'],
    rgba=_YASKAWA_BLUE,
    sources=(
        'github Yaskawa-Global/motoman_ros2_support_packages : '
        'motoman_hc10_support/urdf/hc10_macro.xacro',
    ),
)


# ---------------------------------------------------------------- parallel gripper (2F-85 figures)
# source (figures): Robotiq 2F-85/2F-140 Instruction Manual (e-Series, 2019-02-06) as quoted in
#   public repos: stroke 85 mm (42.5 mm per finger), grip force 20..235 N, closing speed
#   0.02..0.15 m/s, mass 0.925 kg, pad 22 x 6.35 x 37.5 mm, pad centre ~0.130 m from the flange
#   (open). The linkage itself is NOT modelled: two prismatic fingers give the same stroke.
# The body size, fingertip height and the mass split (body / finger / pad) are our own choices.
_GRIPPER_2F85 = GripperSpec(
    name='parallel_gripper_2f85',
    model='parallel-jaw gripper with 2F-85 published figures',
    stroke_per_finger=GRIPPER_CLOSED,
    velocity=0.15,
    effort=235.0,
    mass=0.925,
    finger_mass=0.1,  # per finger, of which PAD_MASS_KG is the pad
    body_size=(0.075, 0.12, 0.09),
    pad_size=(0.022, 0.00635, 0.0375),
    pad_centre_height=0.13,
    fingertip_height=0.149,
    finger_thickness=0.01,
    rgba=(0.2, 0.2, 0.22, 1.0),
    sources=('Robotiq 2F-85/2F-140 Instruction Manual (e-Series, 2019-02-06)',),
)
PAD_MASS_KG = 0.02

_ROBOTS: dict[str, RobotSpec] = {r.name: r for r in (_LRMATE, _CRX10IA, _GP8, _HC10)}
_GRIPPERS: dict[str, GripperSpec] = {g.name: g for g in (_GRIPPER_2F85,)}

ROBOT_NAMES: tuple[str, ...] = tuple(_ROBOTS)
GRIPPER_NAMES: tuple[str, ...] = tuple(_GRIPPERS)
DEFAULT_GRIPPER = 'parallel_gripper_2f85'


def robot_spec(name: str) -> RobotSpec:
    """Return the published facts of robot ``name`` (one of ``ROBOT_NAMES``)."""
    try:
        return _ROBOTS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f'unknown robot {name!r}; known robots: '
                               f'{", ".join(ROBOT_NAMES)}') from None


def gripper_spec(name: str = DEFAULT_GRIPPER) -> GripperSpec:
    """Return the figures of gripper ``name`` (one of ``GRIPPER_NAMES``)."""
    try:
        return _GRIPPERS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f'unknown gripper {name!r}; known grippers: '
                               f'{", ".join(GRIPPER_NAMES)}') from None


def home_positions(name: str) -> np.ndarray:
    """Ready pose of robot ``name`` (rad, chain order): elbow up, tool pointing down.

    tool0 sits about 0.5 m in front of the robot (x), on its centre line (y = 0), so a table-top
    pick at x = 0.45..0.6 m starts without large motions. Returns a fresh array.
    """
    return np.array(robot_spec(name).home, dtype=float)


def urdf_file_name(name: str, with_gripper: bool) -> str:
    """File name of the generated URDF of robot ``name``."""
    robot_spec(name)
    return f'{name}_gripper.urdf' if with_gripper else f'{name}.urdf'


def urdf_dir() -> pathlib.Path:
    """Directory holding the generated URDFs (see core/paths.py for where it is looked up)."""
    return paths.urdf_dir()


def urdf_path(name: str, with_gripper: bool = True) -> pathlib.Path:
    """Path of the generated URDF of robot ``name`` (arm only or arm + gripper at tool0)."""
    path = urdf_dir() / urdf_file_name(name, with_gripper)
    if not path.is_file():
        raise ConfigError(f'URDF for robot {name!r} (with_gripper={with_gripper}) is missing: '
                          f'{path}; run tools/generate_urdfs.py')
    return path
