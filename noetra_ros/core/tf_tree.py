"""The cell's transform tree as robot_state_publisher publishes it, ROS-free.

robot_state_publisher has no wheel, so state_publisher_node does its work with the robot
description (core/robot_model.py, the stack's one kinematics). What it does, as read from
robot_state_publisher's own source (github ros/robot_state_publisher, src/robot_state_publisher.cpp
@ 01a7be1efe40640fb0f9d7552f13eea0a717ff0b):

- every joint of the URDF is one transform, parent link -> child link, named ``frame_prefix`` +
  link name (parent and child alike);
- fixed joints go to ``/tf_static`` once; a floating joint is skipped (kdl_parser turns floating
  and planar joints into fixed segments, and robot_state_publisher then drops the floating ones);
- movable joints go to ``/tf`` for the joints a ``joint_states`` message names, stamped with that
  message's stamp; names the URDF does not have are ignored; a message is used only if its stamp
  is at least ``1 / publish_frequency`` (in whole milliseconds) after the least recently
  published of its joints, unless ``ignore_timestamp``; if the node's clock jumps back, that
  bookkeeping is forgotten (``PublishGate``). There are no mimic joints in this stack's URDFs
  (RobotModel does not read ``<mimic>``), so none are derived.

Added for the cell, beyond robot_state_publisher: the robot's root link in a ``world`` frame
(MotoROS2 publishes ``world -> r1/base`` the same way) and the cameras' optical frames
(``CameraMount``: z forward, x right, y down, the REP-103 optical convention), so that every
``frame_id`` the cell's images carry is in the tree. These two are not prefixed: ``world`` is the
cell's frame, and a camera's frame name is what its images say.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import math
from typing import Protocol

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError
from noetra_ros.core.robot_model import matrix_to_quaternion, RobotModel, rpy_to_matrix

# The REP-103 optical frame: image x right, image y down, z along the optical axis.
OPTICAL_FRAME_SUFFIX = '_optical_frame'
# robot_state_publisher's accepted publish_frequency range, (0, 1000] Hz (check_valid_pub_freq).
MAX_PUBLISH_FREQUENCY_HZ = 1000.0


@dataclass(frozen=True, eq=False)
class FrameTransform:
    """Pose of frame ``child`` in frame ``parent`` (4x4 homogeneous matrix)."""

    parent: str
    child: str
    matrix: np.ndarray

    @property
    def translation(self) -> np.ndarray:
        """Origin of ``child`` in ``parent`` (m)."""
        return self.matrix[:3, 3].copy()

    @property
    def quaternion(self) -> np.ndarray:
        """Rotation of ``child`` in ``parent`` as (x, y, z, w), the geometry_msgs order."""
        return matrix_to_quaternion(self.matrix[:3, :3])


def pose_matrix(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """4x4 of a translation and URDF roll-pitch-yaw (fixed axes x, y, z), as a URDF <origin>."""
    matrix = np.eye(4)
    matrix[:3, :3] = rpy_to_matrix(rpy)
    matrix[:3, 3] = np.asarray(xyz, dtype=float).reshape(3)
    return matrix


def matrix_rpy(matrix: np.ndarray) -> np.ndarray:
    """URDF roll-pitch-yaw of a rotation (the inverse of rpy_to_matrix; pitch in [-pi/2, pi/2])."""
    rot = np.asarray(matrix, dtype=float)[:3, :3]
    pitch = math.asin(float(np.clip(-rot[2, 0], -1.0, 1.0)))
    if abs(rot[2, 0]) < 1.0 - 1e-12:
        roll = math.atan2(rot[2, 1], rot[2, 2])
        yaw = math.atan2(rot[1, 0], rot[0, 0])
    else:  # gimbal lock: only roll - yaw (or roll + yaw) is defined; put it all in roll
        roll = math.atan2(-rot[1, 2], rot[1, 1])
        yaw = 0.0
    return np.array([roll, pitch, yaw])


def look_at_rotation(eye: Sequence[float], target: Sequence[float],
                     up: Sequence[float]) -> np.ndarray:
    """3x3 rotation of an optical frame at ``eye`` looking at ``target``, with ``up`` as the
    image's up direction: columns x right, y down, z forward (REP-103 optical frame)."""
    forward = np.subtract(target, eye).astype(float)
    norm = float(np.linalg.norm(forward))
    if norm < 1e-9:
        raise ConfigError(f'camera looks from {tuple(eye)} at the same point')
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=float))
    norm = float(np.linalg.norm(right))
    if norm < 1e-9:
        raise ConfigError(f'camera up {tuple(up)} is parallel to its viewing direction')
    right /= norm
    down = np.cross(forward, right)
    return np.column_stack([right, down, forward])


class CameraSpecLike(Protocol):
    """What camera_mount reads from a camera (core/sim/world.CameraSpec has these fields)."""

    mount: str
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    link: str
    offset_xyz: tuple[float, float, float]
    offset_rpy: tuple[float, float, float]
    optical_frame_id: str


@dataclass(frozen=True, eq=False)
class CameraMount:
    """Where a camera's optical frame ``frame_id`` sits: ``matrix`` (4x4) in frame ``parent``,
    either the world frame (a fixed camera) or a link of the robot (a camera on the arm)."""

    frame_id: str
    parent: str
    matrix: np.ndarray

    def __post_init__(self) -> None:
        if not self.frame_id or not self.parent:
            raise ConfigError(f'camera mount {self.frame_id!r}: frame and parent frame must be '
                              f'named (parent {self.parent!r})')
        matrix = np.asarray(self.matrix, dtype=float)
        rot = matrix[:3, :3] if matrix.shape == (4, 4) else None
        if (rot is None or not np.all(np.isfinite(matrix))
                or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-9)
                or not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0])):
            raise ConfigError(f'camera mount {self.frame_id!r}: not a rigid transform: '
                              f'{matrix.tolist()}')
        object.__setattr__(self, 'matrix', matrix)

    @classmethod
    def from_spec(cls, spec: CameraSpecLike, world_frame: str = 'world') -> CameraMount:
        """The mount of a simulated camera (core/sim/world.CameraSpec), as SimWorld renders it:
        a 'fixed' camera at ``eye`` looking at ``target`` in the world frame, a 'link' camera at
        ``offset_xyz`` / ``offset_rpy`` (URDF roll-pitch-yaw, the convention of PyBullet's
        getQuaternionFromEuler that SimWorld uses) from its link."""
        if spec.mount == 'fixed':
            matrix = np.eye(4)
            matrix[:3, :3] = look_at_rotation(spec.eye, spec.target, spec.up)
            matrix[:3, 3] = spec.eye
            return cls(spec.optical_frame_id, world_frame, matrix)
        if spec.mount == 'link':
            return cls(spec.optical_frame_id, spec.link,
                       pose_matrix(spec.offset_xyz, spec.offset_rpy))
        raise ConfigError(f'camera {spec.optical_frame_id!r}: unknown mount {spec.mount!r}')


class TransformTree:
    """The transforms of one robot description (plus world and camera frames) by frame name.

    ``frame_prefix`` is prepended to every link name (robot_state_publisher's parameter of that
    name, e.g. 'r1/' for a second arm). ``world_frame`` ('' for none) is the parent of the
    URDF's root link, placed at ``root_in_world`` (4x4; identity by default). Camera mounts hang
    from the world frame or from a link (named without the prefix).
    """

    def __init__(self, model: RobotModel, *, frame_prefix: str = '', world_frame: str = 'world',
                 root_in_world: np.ndarray | None = None,
                 cameras: Iterable[CameraMount] = ()) -> None:
        self.model = model
        self.frame_prefix = frame_prefix
        self.world_frame = world_frame
        if world_frame and frame_prefix + world_frame in self._link_frames():
            raise ConfigError(f'world frame {world_frame!r} is also a link of {model.name!r}')
        root = np.eye(4) if root_in_world is None else np.asarray(root_in_world, dtype=float)
        if root.shape != (4, 4) or not np.all(np.isfinite(root)):
            raise ConfigError(f'root_in_world must be a finite 4x4 matrix, got {root.tolist()}')
        self.root_in_world = root
        # Joints in URDF order; robot_state_publisher skips floating joints altogether.
        joints = [j for j in model.joints.values() if j.type != 'floating']
        self._movable = {j.name: j for j in joints if j.movable}
        self._fixed = [j for j in joints if not j.movable]
        self.cameras = tuple(cameras)
        self._check_cameras()

    # ------------------------------------------------------------------ names
    def _link_frames(self) -> set[str]:
        return {self.frame_prefix + link for link in self.model.links}

    def link_frame(self, link: str) -> str:
        """The published name of a URDF link (``frame_prefix`` + link)."""
        return self.frame_prefix + link

    def _parent_frame(self, parent: str) -> str:
        """A camera's parent frame as published: a link gets the prefix, the world does not."""
        return self.link_frame(parent) if parent in self.model.links else parent

    def _check_cameras(self) -> None:
        known = set(self.model.links) | ({self.world_frame} if self.world_frame else set())
        taken = self._link_frames() | ({self.world_frame} if self.world_frame else set())
        for mount in self.cameras:
            if mount.parent not in known:
                raise ConfigError(
                    f'camera frame {mount.frame_id!r} hangs from {mount.parent!r}, which is '
                    f'neither the world frame {self.world_frame!r} nor a link of '
                    f'{self.model.name!r} (links: {", ".join(self.model.links)})')
            if mount.frame_id in taken:
                raise ConfigError(f'camera frame {mount.frame_id!r} is named twice in the tree')
            taken.add(mount.frame_id)

    @property
    def movable_joints(self) -> tuple[str, ...]:
        """Joints whose transforms go to /tf (URDF order)."""
        return tuple(self._movable)

    # ------------------------------------------------------------------ transforms
    def static_transforms(self) -> tuple[FrameTransform, ...]:
        """What goes to /tf_static once: world -> root link, every fixed joint (URDF order),
        then every camera's optical frame."""
        out = []
        if self.world_frame:
            out.append(FrameTransform(self.world_frame, self.link_frame(self.model.root),
                                      self.root_in_world.copy()))
        out += [FrameTransform(self.link_frame(j.parent), self.link_frame(j.child),
                               self.model.joint_transform(j.name)) for j in self._fixed]
        out += [FrameTransform(self._parent_frame(m.parent), m.frame_id, m.matrix.copy())
                for m in self.cameras]
        return tuple(out)

    def moving_transforms(self, names: Sequence[str], positions: Sequence[float]
                          ) -> tuple[FrameTransform, ...]:
        """The /tf transforms of one joint_states message: one per movable joint it names, in
        the message's order; names that are not movable joints of the robot are ignored, as
        robot_state_publisher ignores them.

        Raises InputError (naming the message's problem) when names and positions differ in
        length or a movable joint's position is not finite: such a message is used not at all.
        """
        if len(names) != len(positions):
            raise InputError(f'joint_states names {len(names)} joints but carries '
                             f'{len(positions)} positions')
        out = []
        for name, value in zip(names, positions):
            joint = self._movable.get(name)
            if joint is None:
                continue
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f'joint_states position of {name!r} is {value}')
            out.append(FrameTransform(self.link_frame(joint.parent), self.link_frame(joint.child),
                                      self.model.joint_transform(name, value)))
        return tuple(out)


def frame_pose(transforms: Iterable[FrameTransform], root: str, frame: str) -> np.ndarray:
    """Pose (4x4) of ``frame`` in ``root``, composed along the tree's parent links (what a tf2
    listener does). Raises ConfigError when ``frame`` does not reach ``root``."""
    parent_of: dict[str, FrameTransform] = {}
    for transform in transforms:
        parent_of[transform.child] = transform
    pose = np.eye(4)
    current, seen = frame, set()
    while current != root:
        link = parent_of.get(current)
        if link is None or current in seen:
            raise ConfigError(f'frame {frame!r} does not connect to {root!r} (stuck at '
                              f'{current!r})')
        seen.add(current)
        pose = link.matrix @ pose
        current = link.parent
    return pose


class PublishGate:
    """robot_state_publisher's rule for which joint_states messages become /tf messages.

    A message is used when its stamp is at least the publish interval after the least recently
    published of the joints it names (a joint never published counts as published at time 0), or
    always with ``ignore_timestamp``. The interval is 1000 / publish_frequency milliseconds
    truncated to whole milliseconds, as robot_state_publisher computes it. When the node's
    clock goes backwards (a restarted bag, a reset sim clock) the publish times are forgotten.
    Times are integer nanoseconds.
    """

    def __init__(self, publish_frequency: float, ignore_timestamp: bool = False) -> None:
        frequency = float(publish_frequency)
        if not (0.0 < frequency <= MAX_PUBLISH_FREQUENCY_HZ):
            raise ConfigError(f'publish_frequency={publish_frequency}: must be in (0, '
                              f'{MAX_PUBLISH_FREQUENCY_HZ:.0f}] Hz (robot_state_publisher\'s '
                              'range)')
        self.interval_ns = int(1000.0 / frequency) * 1_000_000
        self.ignore_timestamp = bool(ignore_timestamp)
        self._published_ns: dict[str, int] = {}
        self._last_call_ns: int | None = None

    def admit(self, names: Iterable[str], stamp_ns: int, now_ns: int) -> bool:
        """True when a message naming ``names`` stamped ``stamp_ns`` is to be published at
        clock time ``now_ns``; then its joints count as published at ``stamp_ns``."""
        names = list(names)
        if self._last_call_ns is not None and now_ns < self._last_call_ns:
            self._published_ns.clear()
        self._last_call_ns = now_ns
        least_recent = min([now_ns] + [self._published_ns.get(n, 0) for n in names])
        if not (self.ignore_timestamp or stamp_ns >= least_recent + self.interval_ns):
            return False
        for name in names:
            self._published_ns[name] = stamp_ns
        return True

