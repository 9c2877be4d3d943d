"""A small, numpy-only kinematic model read from a URDF (no ROS, no heavy dependencies).

``RobotModel.from_urdf(path)`` parses joints and links with ``xml.etree.ElementTree``. The
*arm joints* are the movable joints on the path ``base_link -> tool0`` in chain order; every
other movable joint (gripper fingers) is an *extra joint* that defaults to 0 and can be set by
name. Forward kinematics, the geometric Jacobian and a damped-least-squares IK work for any link
in the tree.

Speed: each joint transform is ``A + u * B + v * C`` with 4x4 constants precomputed at load
(Rodrigues form folded into the fixed origin transform), so a 6-DOF FK is a handful of vectorised
numpy operations.

``RobotDescription`` is what the rest of the stack reads about a robot, from ONE parse of its
URDF: the arm joints in chain order, one ``JointLimits``, the kinematic chain, the gripper facts
(finger joints, open / closed positions, TCP link, how far the fingertips reach beyond the TCP)
and the link indices as PyBullet numbers them. ``load_robot_description(robot)`` caches one per
robot, so the simulator, the expert, the supervisor and the policy runtime all ask one place,
and this numpy model is the only forward / inverse kinematics in the stack.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import functools
import hashlib
import json
import math
import pathlib
from types import MappingProxyType
from typing import TYPE_CHECKING
import xml.etree.ElementTree as ET

import numpy as np

from noetra_ros.core.errors import ConfigError, ModelLoadError, UnknownNameError
from noetra_ros.core.joint_limits import JointLimits

if TYPE_CHECKING:
    from noetra_ros.core.robots import GripperSpec

_MOVABLE = ('revolute', 'prismatic', 'continuous')


@dataclass(frozen=True)
class JointInfo:
    """One URDF joint as parsed."""

    name: str
    type: str
    parent: str
    child: str
    origin: np.ndarray  # 4x4, child frame in parent frame at zero joint value
    axis: np.ndarray  # unit 3-vector in the child frame
    lower: float
    upper: float
    velocity: float
    effort: float

    @property
    def movable(self) -> bool:
        """True for revolute, continuous and prismatic joints."""
        return self.type in _MOVABLE


@dataclass(frozen=True)
class CollisionBox:
    """A bound of one <collision> element: a box ``origin`` (4x4, link frame) with half edge
    lengths ``half_size``. Boxes are exact; a cylinder or sphere is replaced by the box around it
    (an over-estimate, the safe direction for clearance checks)."""

    origin: np.ndarray
    half_size: np.ndarray

    def corners(self) -> np.ndarray:
        """The 8 corners in the link frame (8 x 3)."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        local = signs * self.half_size
        return local @ self.origin[:3, :3].T + self.origin[:3, 3]


def rpy_to_matrix(rpy) -> np.ndarray:
    """3x3 rotation of URDF roll-pitch-yaw (fixed axes x, y, z: R = Rz(y) Ry(p) Rx(r))."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), \
        math.cos(y), math.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, base frame) taking ``current`` to ``target``."""
    r = target @ current.T
    cos_a = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos_a)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-6:
        return 0.5 * v
    if math.pi - angle < 1e-4:
        # Near pi the antisymmetric part vanishes; recover the axis from the symmetric part.
        m = (r + np.eye(3)) / 2.0
        k = int(np.argmax(np.diag(m)))
        axis = m[:, k] / math.sqrt(max(m[k, k], 1e-12))
        if v @ axis < 0.0:
            axis = -axis
        return axis / np.linalg.norm(axis) * angle
    return v * (angle / (2.0 * math.sin(angle)))


def quaternion_to_matrix(quaternion) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w); normalised first."""
    x, y, z, w = np.asarray(quaternion, dtype=float).reshape(4) / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a 3x3 rotation (Shepperd's method; q and -q are the same
    rotation, and which of the two comes out depends on the branch taken)."""
    m = np.asarray(rot, dtype=float)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    quat = np.array(q)
    return quat / np.linalg.norm(quat)


def _floats(text: str | None, default: tuple[float, ...], what: str) -> np.ndarray:
    if text is None:
        return np.array(default, dtype=float)
    try:
        values = np.array([float(t) for t in text.split()], dtype=float)
    except ValueError:
        raise ModelLoadError(f'{what}: cannot parse numbers from {text!r}') from None
    if values.shape != (len(default),):
        raise ModelLoadError(f'{what}: expected {len(default)} numbers, got {text!r}')
    return values


def _origin(el: ET.Element | None, what: str) -> np.ndarray:
    """4x4 of an <origin> element (identity when absent)."""
    origin = np.eye(4)
    if el is not None:
        origin[:3, :3] = rpy_to_matrix(_floats(el.get('rpy'), (0, 0, 0), f'{what} origin rpy'))
        origin[:3, 3] = _floats(el.get('xyz'), (0, 0, 0), f'{what} origin xyz')
    return origin


def _parse_collisions(el: ET.Element) -> tuple[tuple[CollisionBox, ...], bool]:
    """Collision bounds of one <link>, and whether every element could be bounded (a mesh
    cannot without loading it)."""
    name = el.get('name', '')
    boxes: list[CollisionBox] = []
    bounded = True
    for collision in el.findall('collision'):
        what = f'link {name!r} collision'
        origin = _origin(collision.find('origin'), what)
        geometry = collision.find('geometry')
        shape = None if geometry is None else next(iter(geometry), None)
        if shape is None:
            raise ModelLoadError(f'{what}: <geometry> without a shape')
        if shape.tag == 'box':
            half = _floats(shape.get('size'), (0, 0, 0), f'{what} box size') / 2.0
        elif shape.tag == 'cylinder':
            radius = float(_floats(shape.get('radius'), (0,), f'{what} cylinder radius')[0])
            length = float(_floats(shape.get('length'), (0,), f'{what} cylinder length')[0])
            half = np.array([radius, radius, length / 2.0])
        elif shape.tag == 'sphere':
            radius = float(_floats(shape.get('radius'), (0,), f'{what} sphere radius')[0])
            half = np.full(3, radius)
        else:
            bounded = False
            continue
        boxes.append(CollisionBox(origin, np.abs(half)))
    return tuple(boxes), bounded


def _parse_joint(el: ET.Element) -> JointInfo:
    name = el.get('name')
    jtype = el.get('type')
    if not name or jtype is None:
        raise ModelLoadError('URDF joint without name or type')
    parent_el, child_el = el.find('parent'), el.find('child')
    if parent_el is None or child_el is None:
        raise ModelLoadError(f'joint {name!r}: missing <parent> or <child>')
    origin = _origin(el.find('origin'), f'joint {name!r}')
    axis_el = el.find('axis')
    axis = _floats(None if axis_el is None else axis_el.get('xyz'), (1, 0, 0),
                   f'joint {name!r} axis')
    norm = float(np.linalg.norm(axis))
    if jtype in _MOVABLE and norm < 1e-12:
        raise ModelLoadError(f'joint {name!r}: zero axis')
    axis = axis / norm if norm > 0 else axis
    lower, upper, velocity, effort = -math.inf, math.inf, math.inf, math.inf
    limit_el = el.find('limit')
    if limit_el is not None:
        lower = float(limit_el.get('lower', 0.0))
        upper = float(limit_el.get('upper', 0.0))
        velocity = float(limit_el.get('velocity', math.inf))
        effort = float(limit_el.get('effort', math.inf))
    elif jtype in ('revolute', 'prismatic'):
        raise ModelLoadError(f'joint {name!r}: {jtype} joint without <limit>')
    if jtype == 'continuous':
        lower, upper = -math.inf, math.inf
    return JointInfo(name, jtype, parent_el.get('link', ''), child_el.get('link', ''), origin,
                     axis, lower, upper, velocity, effort)


def _cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of two (n, 3) arrays: np.cross's result without its axis
    handling, which costs more than the arithmetic at this size (the IK calls it per step)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                     a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _skew4(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 padded K and K^2 of the cross-product matrix of ``axis``."""
    x, y, z = axis
    k = np.zeros((4, 4))
    k[:3, :3] = [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]]
    return k, k @ k


class RobotModel:
    """Kinematic tree of one URDF: FK, geometric Jacobian and IK for any link.

    Attributes ``joint_names``, ``lower``, ``upper``, ``velocity_limits`` and ``effort_limits``
    describe the arm joints (chain ``base_link -> tool_link``) in order.
    """

    def __init__(self, name: str, links: list[str], joints: list[JointInfo],
                 base_link: str = 'base_link', tool_link: str = 'tool0',
                 collisions: Mapping[str, tuple[CollisionBox, ...]] | None = None,
                 unbounded_links: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.links = tuple(links)
        if len(set(self.links)) != len(self.links):
            raise ModelLoadError(f'URDF {name!r} names a link twice')
        self.joints: dict[str, JointInfo] = {j.name: j for j in joints}
        if len(self.joints) != len(joints):
            raise ModelLoadError(f'URDF {name!r} names a joint twice')
        # Collision bounds per link (link frame); links with a mesh are in unbounded_links.
        self.collisions: Mapping[str, tuple[CollisionBox, ...]] = MappingProxyType(
            dict(collisions or {}))
        self.unbounded_links = frozenset(unbounded_links)
        self._parent_joint: dict[str, JointInfo] = {}
        for j in joints:
            if j.child in self._parent_joint:
                raise ModelLoadError(f'link {j.child!r} has two parent joints')
            self._parent_joint[j.child] = j
        roots = [lk for lk in links if lk not in self._parent_joint]
        if len(roots) != 1:
            raise ModelLoadError(f'URDF {name!r} must have exactly one root link, found {roots}')
        self.root = roots[0]
        if base_link not in self.links:
            raise ModelLoadError(f'URDF {name!r} has no link {base_link!r}')
        if tool_link not in self.links:
            raise ModelLoadError(f'URDF {name!r} has no link {tool_link!r}')
        self.base_link = base_link
        self.tool_link = tool_link
        arm = [j for j in self._path(base_link, tool_link) if j.movable]
        self.joint_names: tuple[str, ...] = tuple(j.name for j in arm)
        self.extra_joint_names: tuple[str, ...] = tuple(
            j.name for j in joints if j.movable and j.name not in self.joint_names)
        self._arm_index = {n: i for i, n in enumerate(self.joint_names)}
        self.lower = _read_only(np.array([j.lower for j in arm]))
        self.upper = _read_only(np.array([j.upper for j in arm]))
        self.velocity_limits = _read_only(np.array([j.velocity for j in arm]))
        self.effort_limits = _read_only(np.array([j.effort for j in arm]))
        self._chains: dict[str, tuple] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_urdf(cls, path: str | pathlib.Path, base_link: str = 'base_link',
                  tool_link: str = 'tool0') -> RobotModel:
        """Parse a URDF file (raises ModelLoadError if unreadable or malformed)."""
        path = pathlib.Path(path)
        try:
            text = path.read_text(encoding='utf-8')
        except OSError as exc:
            raise ModelLoadError(f'cannot read URDF {path}: {exc}') from exc
        return cls.from_urdf_string(text, base_link, tool_link, source=str(path))

    @classmethod
    def from_urdf_string(cls, text: str, base_link: str = 'base_link',
                         tool_link: str = 'tool0', source: str = '<string>') -> RobotModel:
        """Parse URDF XML text."""
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise ModelLoadError(f'URDF {source} is not valid XML: {exc}') from exc
        if root.tag != 'robot':
            raise ModelLoadError(f'URDF {source}: root element is <{root.tag}>, not <robot>')
        link_els = root.findall('link')
        links = [el.get('name', '') for el in link_els]
        joints = [_parse_joint(el) for el in root.findall('joint')]
        known = set(links)
        for j in joints:
            if j.parent not in known or j.child not in known:
                raise ModelLoadError(f'URDF {source}: joint {j.name!r} refers to a missing link')
        collisions, unbounded = {}, set()
        for el in link_els:
            boxes, bounded = _parse_collisions(el)
            collisions[el.get('name', '')] = boxes
            if not bounded:
                unbounded.add(el.get('name', ''))
        return cls(root.get('name', ''), links, joints, base_link, tool_link, collisions,
                   frozenset(unbounded))

    @property
    def dof(self) -> int:
        """Number of arm joints."""
        return len(self.joint_names)

    def chain(self, link: str | None = None) -> tuple[JointInfo, ...]:
        """The joints (fixed ones included) from the base link down to ``link`` (default: the
        tool link), in order: the kinematic chain the FK multiplies out."""
        return tuple(self._path(self.base_link, link or self.tool_link))

    def parent_joint(self, link: str) -> JointInfo | None:
        """The joint whose child is ``link`` (None for the root link)."""
        if link not in self.links:
            raise UnknownNameError(f'unknown link {link!r}; known links: {", ".join(self.links)}')
        return self._parent_joint.get(link)

    def child_joints(self, link: str) -> tuple[JointInfo, ...]:
        """Joints hanging from ``link``, in URDF order."""
        return tuple(j for j in self.joints.values() if j.parent == link)

    def subtree(self, link: str) -> tuple[str, ...]:
        """``link`` and every link below it, depth first in URDF joint order."""
        if link not in self.links:
            raise UnknownNameError(f'unknown link {link!r}; known links: {", ".join(self.links)}')
        out = [link]
        for joint in self.child_joints(link):
            out.extend(self.subtree(joint.child))
        return tuple(out)

    def joint_transform(self, joint: str, value: float = 0.0) -> np.ndarray:
        """Pose (4x4) of ``joint``'s child link in its parent link at joint ``value`` (rad or m;
        ignored for a joint that does not move): one factor of the product ``fk`` multiplies
        out along a chain, in the same form (origin, then Rodrigues about the axis / a shift
        along it). The transform tree (core/tf_tree.py) publishes these per joint."""
        info = self.joints.get(joint)
        if info is None:
            raise UnknownNameError(f'robot {self.name!r} has no joint {joint!r}; known joints: '
                                   f'{", ".join(self.joints)}')
        if not info.movable:
            return info.origin.copy()
        motion = np.eye(4)
        if info.type == 'prismatic':
            motion[:3, 3] = info.axis * value
        else:
            k, k2 = _skew4(info.axis)
            motion += math.sin(value) * k + (1.0 - math.cos(value)) * k2
        return info.origin @ motion

    def pybullet_link_indices(self) -> dict[str, int]:
        """Link name -> link index as PyBullet numbers them when it loads this URDF.

        PyBullet gives the root link index -1 and numbers the other links depth first from the
        root, children in the order their joints appear in the file (and joint i is the joint
        whose child is link i). SimWorld checks this against the loaded body, so a different
        numbering (another loader version) is an error at load, not a wrong link.
        """
        order = self.subtree(self.root)
        return {link: index - 1 for index, link in enumerate(order)}

    def _path(self, start: str, end: str) -> list[JointInfo]:
        """Joints from ``start`` down to ``end`` (``start`` must be an ancestor of ``end``)."""
        if end not in self.links:
            raise UnknownNameError(f'unknown link {end!r}; known links: {", ".join(self.links)}')
        path: list[JointInfo] = []
        link = end
        while link != start:
            joint = self._parent_joint.get(link)
            if joint is None:
                raise ConfigError(f'link {end!r} is not below {start!r}')
            path.append(joint)
            link = joint.parent
        return path[::-1]

    def _chain(self, link: str) -> tuple:
        """Precomputed (A, B, C, arm_idx, joint_names, is_prismatic, tail, axes) for one link."""
        chain = self._chains.get(link)
        if chain is not None:
            return chain
        fixed = np.eye(4)
        a_list, b_list, c_list, arm_idx, extra, kinds, axes = [], [], [], [], [], [], []
        for j in self._path(self.base_link, link):
            if not j.movable:
                fixed = fixed @ j.origin
                continue
            f = fixed @ j.origin
            if j.type == 'prismatic':
                p = np.zeros((4, 4))
                p[:3, 3] = j.axis
                a_list.append(f)
                b_list.append(f @ p)
                c_list.append(np.zeros((4, 4)))
            else:
                k, k2 = _skew4(j.axis)
                a_list.append(f)
                b_list.append(f @ k)
                c_list.append(f @ k2)
            kinds.append(j.type == 'prismatic')
            axes.append(j.axis)
            arm_idx.append(self._arm_index.get(j.name, -1))
            extra.append(j.name)
            fixed = np.eye(4)
        chain = (np.array(a_list).reshape(-1, 4, 4), np.array(b_list).reshape(-1, 4, 4),
                 np.array(c_list).reshape(-1, 4, 4), np.array(arm_idx, dtype=int),
                 tuple(extra), np.array(kinds, dtype=bool), fixed,
                 np.array(axes, dtype=float).reshape(-1, 3))
        self._chains[link] = chain
        return chain

    def _values(self, q: np.ndarray, chain: tuple, extra: dict[str, float] | None) -> np.ndarray:
        """Joint values along ``chain`` (shape (..., n_chain))."""
        _a, _b, _c, arm_idx, names, _kinds, _tail, _axes = chain
        batch = q.shape[:-1]
        vals = np.zeros(batch + (len(names),))
        on_arm = arm_idx >= 0
        if on_arm.any():
            vals[..., on_arm] = q[..., arm_idx[on_arm]]
        for i, n in enumerate(names):
            if arm_idx[i] < 0:
                if extra and n in extra:
                    vals[..., i] = extra[n]
        return vals

    def _check_q(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if q.shape[-1:] != (self.dof,):
            raise ConfigError(f'q has shape {q.shape}; expected (..., {self.dof}) for joints '
                              f'{self.joint_names}')
        return q

    def _chain_transforms(self, q: np.ndarray, chain: tuple,
                          extra: dict[str, float] | None) -> np.ndarray:
        """Per-joint transforms M_i (shape (..., n_chain, 4, 4))."""
        a, b, c, _arm_idx, _names, kinds, _tail, _axes = chain
        vals = self._values(q, chain, extra)
        u = np.where(kinds, vals, np.sin(vals))
        v = np.where(kinds, 0.0, 1.0 - np.cos(vals))
        return a + u[..., None, None] * b + v[..., None, None] * c

    # ------------------------------------------------------------------ kinematics
    def fk(self, q, link: str | None = None, extra: dict[str, float] | None = None
           ) -> np.ndarray:
        """Pose of ``link`` (default tool link) in the base frame: 4x4, or (..., 4, 4) batched.

        ``q`` holds the arm joints in ``joint_names`` order; other movable joints on the way
        (gripper fingers) take their value from ``extra`` (by joint name) or 0.
        """
        q = self._check_q(q)
        chain = self._chain(link or self.tool_link)
        m = self._chain_transforms(q, chain, extra)
        out = np.broadcast_to(np.eye(4), q.shape[:-1] + (4, 4)).copy()
        for i in range(m.shape[-3]):
            out = out @ m[..., i, :, :]
        return out @ chain[6]

    def link_poses(self, q, extra: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Pose (4x4, base frame) of every link below the base link."""
        q = self._check_q(q)
        poses = {self.base_link: np.eye(4)}
        for link in self.links:
            if link == self.base_link:
                continue
            try:
                poses[link] = self.fk(q, link, extra)
            except ConfigError:
                continue  # link above/beside the base link (not part of the arm tree)
        return poses

    def jacobian(self, q, link: str | None = None, extra: dict[str, float] | None = None
                 ) -> np.ndarray:
        """Geometric Jacobian (6 x dof, base frame; rows: linear, angular) of ``link``.

        Columns of arm joints not on the path to ``link`` are zero; extra joints are held.
        """
        q = self._check_q(q)
        if q.ndim != 1:
            raise ConfigError('jacobian takes a single configuration (shape (dof,))')
        return self._pose_and_jacobian(q, self._chain(link or self.tool_link), extra)[1]

    def _pose_and_jacobian(self, q: np.ndarray, chain: tuple,
                           extra: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
        """Pose (4x4, as fk gives it) and geometric Jacobian of the chain's end link for one
        configuration, from one pass over the chain (the IK needs both at every trial point)."""
        a, _b, _c, arm_idx, _names, kinds, tail, axes = chain
        m = self._chain_transforms(q, chain, extra)
        n = m.shape[0]
        frames = np.empty((n, 4, 4))
        t = np.eye(4)
        for i in range(n):
            frames[i] = t @ a[i]  # joint frame at its zero value: axis and origin live here
            t = t @ m[i]
        pose = t @ tail
        end = pose[:3, 3]
        z = np.einsum('nij,nj->ni', frames[:, :3, :3], axes)
        lin = np.where(kinds[:, None], z, _cross_rows(z, end - frames[:, :3, 3]))
        ang = np.where(kinds[:, None], 0.0, z)
        jac = np.zeros((6, self.dof))
        on_arm = arm_idx >= 0
        jac[:3, arm_idx[on_arm]] = lin[on_arm].T
        jac[3:, arm_idx[on_arm]] = ang[on_arm].T
        return pose, jac

    def ik(self, target_pos, target_rot=None, q_seed=None, link: str | None = None,
           extra: dict[str, float] | None = None, max_iters: int = 200, tol_pos: float = 1e-4,
           tol_rot: float = 1e-3, restarts: int = 0, seed: int = 0
           ) -> tuple[np.ndarray, bool]:
        """Damped-least-squares IK with joint-limit clamping.

        Solves for arm joints so that ``link`` reaches ``target_pos`` (3, base frame) and, if
        given, ``target_rot`` (3x3). Returns ``(q, converged)``; ``q`` is always within limits
        and is the best found when not converged. The damping adapts (Levenberg-Marquardt):
        it shrinks after an improving step and grows after a rejected one. With ``restarts`` > 0
        further attempts start from seeded random configurations.
        """
        target_pos = np.asarray(target_pos, dtype=float).reshape(3)
        rot = None if target_rot is None else np.asarray(target_rot, dtype=float).reshape(3, 3)
        lower = np.where(np.isfinite(self.lower), self.lower, -math.pi)
        upper = np.where(np.isfinite(self.upper), self.upper, math.pi)
        if q_seed is None:
            q_seed = np.clip(np.zeros(self.dof), lower, upper)
        q0 = np.clip(self._check_q(q_seed).reshape(self.dof), lower, upper)
        rng = np.random.default_rng(seed)
        best_q, best_cost = q0, math.inf
        for attempt in range(restarts + 1):
            start = q0 if attempt == 0 else rng.uniform(lower, upper)
            q, ok, cost = self._ik_once(target_pos, rot, start, link, extra, max_iters,
                                        tol_pos, tol_rot, lower, upper)
            if ok:
                return q, True
            if cost < best_cost:
                best_q, best_cost = q, cost
        return best_q, False

    @staticmethod
    def _ik_error(pose: np.ndarray, target_pos: np.ndarray, rot: np.ndarray | None
                  ) -> tuple[np.ndarray, float, float]:
        e_pos = target_pos - pose[:3, 3]
        if rot is None:
            return e_pos, float(np.linalg.norm(e_pos)), 0.0
        e_rot = rotation_error(rot, pose[:3, :3])
        return (np.concatenate([e_pos, e_rot]), float(np.linalg.norm(e_pos)),
                float(np.linalg.norm(e_rot)))

    def _ik_once(self, target_pos, rot, q, link, extra, max_iters, tol_pos, tol_rot, lower,
                 upper) -> tuple[np.ndarray, bool, float]:
        lam = 1e-3
        chain = self._chain(link or self.tool_link)
        pose, jac = self._pose_and_jacobian(q, chain, extra)
        err, e_p, e_r = self._ik_error(pose, target_pos, rot)
        cost = float(err @ err)
        eye = np.eye(self.dof)
        for _ in range(max_iters):
            if e_p <= tol_pos and e_r <= tol_rot:
                return q, True, cost
            task_jac = jac if rot is not None else jac[:3]
            while True:
                dq = self._ik_step(task_jac, err, lam, eye)
                # Joints pinned at a limit that the step pushes further out are frozen and the
                # step is re-solved without them (active set), so clamping cannot stall the
                # remaining joints.
                pinned = ((q <= lower + 1e-9) & (dq < 0)) | ((q >= upper - 1e-9) & (dq > 0))
                if pinned.any():
                    dq = self._ik_step(task_jac * ~pinned, err, lam, eye)
                    dq[pinned] = 0.0
                step = float(np.max(np.abs(dq)))
                if step > 0.5:  # keep each step in the region where the linearisation holds
                    dq *= 0.5 / step
                q_new = np.clip(q + dq, lower, upper)
                pose_new, jac_new = self._pose_and_jacobian(q_new, chain, extra)
                err_new, e_p_new, e_r_new = self._ik_error(pose_new, target_pos, rot)
                cost_new = float(err_new @ err_new)
                if cost_new < cost:
                    q, err, e_p, e_r, cost = q_new, err_new, e_p_new, e_r_new, cost_new
                    jac = jac_new
                    lam = max(lam / 3.0, 1e-7)
                    break
                lam *= 4.0
                if lam > 1e6:  # stuck (limit or local minimum): give up this attempt
                    return q, e_p <= tol_pos and e_r <= tol_rot, cost
        return q, e_p <= tol_pos and e_r <= tol_rot, cost

    @staticmethod
    def _ik_step(jac: np.ndarray, err: np.ndarray, lam: float, eye: np.ndarray) -> np.ndarray:
        """Levenberg-Marquardt step: (J^T J + lam (I + diag J^T J)) dq = J^T e."""
        jtj = jac.T @ jac
        return np.linalg.solve(jtj + lam * (eye + np.diag(np.diag(jtj))), jac.T @ err)

    def reach(self, link: str | None = None, vary: tuple[int, ...] = (1, 2), n: int = 41,
              rounds: int = 5) -> float:
        """Maximum horizontal distance of ``link`` from the first joint's axis (base z).

        Searches a grid over the arm joints indexed by ``vary`` (default: joints 2 and 3, the
        shoulder and elbow) within their limits, all other joints at 0, refining the grid
        around the best point ``rounds`` times.
        """
        link = link or self.tool_link
        lo = np.where(np.isfinite(self.lower), self.lower, -math.pi)[list(vary)]
        hi = np.where(np.isfinite(self.upper), self.upper, math.pi)[list(vary)]
        best_q = (lo + hi) / 2
        best = -1.0
        span = hi - lo
        for _ in range(rounds):
            axes = [np.linspace(max(l_, c - s / 2), min(h_, c + s / 2), n)
                    for l_, h_, c, s in zip(lo, hi, best_q, span)]
            grid = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, len(vary))
            q = np.zeros((grid.shape[0], self.dof))
            q[:, list(vary)] = grid
            p = self.fk(q, link)[:, :3, 3]
            d = np.hypot(p[:, 0], p[:, 1])
            k = int(np.argmax(d))
            if d[k] > best:
                best, best_q = float(d[k]), grid[k]
            span = span * 4.0 / n
        return best


# ---------------------------------------------------------------------- robot description
@dataclass(frozen=True, eq=False)
class GripperFacts:
    """The gripper as the URDF states it, checked against the gripper's data (robots.py).

    ``open_position`` / ``closed_position`` are the finger joints' URDF lower / upper limits
    (m of travel per finger, 0 = open); the gripper position a node reports is the mean of the
    finger joints. ``fingertip_beyond_tcp`` is how far the gripper's collision geometry reaches
    past the TCP along the tool axis, over the whole finger travel: the clearance a top-down
    grasp must keep above a surface.
    """

    joint_names: tuple[str, ...]
    limits: JointLimits
    tcp_link: str
    mount_link: str
    links: tuple[str, ...]
    fingertip_beyond_tcp: float

    @property
    def open_position(self) -> float:
        """Finger position of a fully open gripper (m)."""
        return float(self.limits.lower[0])

    @property
    def closed_position(self) -> float:
        """Finger position of a fully closed gripper, pads touching (m)."""
        return float(self.limits.upper[0])


@dataclass(frozen=True, eq=False)
class RobotDescription:
    """Everything the stack reads about one robot, from one parse of its URDF.

    ``model`` is the kinematics (the only FK / IK); ``limits`` the arm joints' JointLimits in
    chain order; ``gripper`` the gripper facts (None for an arm without one); ``link_indices``
    the PyBullet link numbering (root -1); ``home`` the ready pose from the robot's facts
    (None when built from a URDF alone).
    """

    name: str
    urdf_path: pathlib.Path | None
    model: RobotModel
    limits: JointLimits
    gripper: GripperFacts | None
    link_indices: Mapping[str, int]
    home: np.ndarray | None = None

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Arm joints in chain order (base to tool)."""
        return self.model.joint_names

    @property
    def dof(self) -> int:
        """Number of arm joints."""
        return self.model.dof

    @property
    def state_joint_names(self) -> tuple[str, ...]:
        """Arm joints then finger joints: the order of a joint_states message."""
        return self.joint_names + (self.gripper.joint_names if self.gripper else ())

    @property
    def arm_chain(self) -> tuple[JointInfo, ...]:
        """Every joint from the base link to the tool link (fixed ones included), in order."""
        return self.model.chain()

    def link_index(self, link: str) -> int:
        """PyBullet index of ``link`` (UnknownNameError naming the known links)."""
        try:
            return self.link_indices[link]
        except KeyError:
            raise UnknownNameError(f'robot {self.name!r} has no link {link!r}; known links: '
                                   f'{", ".join(self.link_indices)}') from None

    def joint_index(self, joint: str) -> int:
        """PyBullet index of ``joint`` (that of its child link)."""
        info = self.model.joints.get(joint)
        if info is None:
            raise UnknownNameError(f'robot {self.name!r} has no joint {joint!r}; known joints: '
                                   f'{", ".join(self.model.joints)}')
        return self.link_indices[info.child]

    @classmethod
    def from_urdf(cls, path: str | pathlib.Path, name: str = '',
                  gripper: GripperSpec | None = None,
                  home: Sequence[float] | np.ndarray | None = None,
                  base_link: str = 'base_link', tool_link: str = 'tool0') -> RobotDescription:
        """Read a URDF once. With ``gripper`` (its data sheet), the finger joints it names must
        be in the URDF with the range it states; ``home`` (arm joints, chain order) is kept.
        Raises ModelLoadError when the URDF is unreadable or disagrees with the gripper data."""
        path = pathlib.Path(path)
        model = RobotModel.from_urdf(path, base_link, tool_link)
        name = name or model.name
        try:
            limits = JointLimits.from_robot_model(model)
        except ConfigError as exc:
            raise ModelLoadError(f'URDF {path}: arm joint limits unusable: {exc}') from None
        facts = _gripper_facts(model, gripper, str(path)) if gripper is not None else None
        home_q = None
        if home is not None:
            home_q = np.array(home, dtype=float).reshape(-1)
            if home_q.shape != (model.dof,) or not np.all(np.isfinite(home_q)):
                raise ConfigError(f'home positions of {name}: {home_q} do not fit joints '
                                  f'{model.joint_names}')
            home_q.setflags(write=False)
        return cls(name, path, model, limits, facts,
                   MappingProxyType(model.pybullet_link_indices()), home_q)


def _gripper_facts(model: RobotModel, spec: GripperSpec, source: str) -> GripperFacts:
    missing = [n for n in spec.joint_names if n not in model.joints]
    missing += [n for n in (spec.tcp_link,) if n not in model.links]
    if missing:
        raise ModelLoadError(f'URDF {source}: gripper {spec.name!r} needs joint/link(s) '
                             f'{missing}; regenerate it with tools/generate_urdfs.py')
    infos = [model.joints[n] for n in spec.joint_names]
    if any(not j.movable for j in infos):
        raise ModelLoadError(f'URDF {source}: finger joints {spec.joint_names} must be movable')
    try:
        limits = JointLimits.from_arrays(spec.joint_names, [j.lower for j in infos],
                                         [j.upper for j in infos],
                                         [j.velocity for j in infos], [j.effort for j in infos])
    except ConfigError as exc:
        raise ModelLoadError(f'URDF {source}: finger joint limits unusable: {exc}') from None
    # One range for both fingers, and the one the data sheet states: the gripper command
    # convention (0 = open, stroke = closed) is shared by the sim, the supervisor and policies.
    stated = (spec.open_position, spec.closed_position)
    for j in infos:
        if not (math.isclose(j.lower, stated[0], abs_tol=1e-9)
                and math.isclose(j.upper, stated[1], abs_tol=1e-9)):
            raise ModelLoadError(f'URDF {source}: finger joint {j.name!r} range '
                                 f'[{j.lower}, {j.upper}] differs from gripper {spec.name!r} '
                                 f'[{stated[0]}, {stated[1]}]; regenerate the URDFs')
    link = infos[0].parent  # walk up from the finger: the gripper must hang below the tool link
    while link != model.tool_link:
        parent = model.parent_joint(link)
        if parent is None:
            raise ModelLoadError(f'URDF {source}: the gripper is not mounted below '
                                 f'{model.tool_link!r}')
        link = parent.parent
    links = model.subtree(model.tool_link)[1:]
    return GripperFacts(tuple(spec.joint_names), limits, spec.tcp_link, model.tool_link, links,
                        _fingertip_beyond_tcp(model, links, infos, spec.tcp_link, source))


def _fingertip_beyond_tcp(model: RobotModel, links: tuple[str, ...],
                          fingers: list[JointInfo], tcp_link: str, source: str) -> float:
    """Largest reach of the gripper links' collision bounds past the TCP along its z axis.

    Evaluated at both ends of the finger travel (a prismatic finger moves its corners linearly,
    so the ends bound every position between); the arm pose does not matter, every link here
    hangs below the tool flange.
    """
    unbounded = sorted(set(links) & model.unbounded_links)
    if unbounded:
        raise ModelLoadError(f'URDF {source}: gripper link(s) {unbounded} have mesh collision '
                             'geometry; the fingertip reach needs boxes, cylinders or spheres')
    q = np.clip(np.zeros(model.dof), np.where(np.isfinite(model.lower), model.lower, 0.0),
                np.where(np.isfinite(model.upper), model.upper, 0.0))
    reach = 0.0
    for value in ('lower', 'upper'):
        extra = {j.name: getattr(j, value) for j in fingers}
        tcp_inv = np.linalg.inv(model.fk(q, tcp_link, extra))
        for link in links:
            pose = tcp_inv @ model.fk(q, link, extra)
            for box in model.collisions.get(link, ()):
                corners = box.corners() @ pose[:3, :3].T + pose[:3, 3]
                reach = max(reach, float(corners[:, 2].max()))
    return reach


@functools.lru_cache(maxsize=None)
def load_robot_description(robot: str, with_gripper: bool = True) -> RobotDescription:
    """The description of a known robot (robots.ROBOT_NAMES) from its generated URDF, with the
    default gripper when ``with_gripper``; read once per process and shared (it is immutable)."""
    from noetra_ros.core import robots  # the facts registry imports nothing from here
    path = robots.urdf_path(robot, with_gripper)
    spec = robots.robot_spec(robot)
    description = RobotDescription.from_urdf(
        path, robot, robots.gripper_spec() if with_gripper else None,
        robots.home_positions(robot), spec.base_link, spec.tool_link)
    if description.joint_names != spec.joint_names:
        raise ModelLoadError(f'URDF {path}: arm joints {description.joint_names} differ from '
                             f'{robot} {spec.joint_names}; regenerate it with '
                             'tools/generate_urdfs.py')
    return description


# ---------------------------------------------------------------------- kinematics fingerprint
# Bumped when what goes into the fingerprint changes, so old and new values never look alike.
_FINGERPRINT_FORMAT = 'noetra kinematics v1'


def _fingerprint_number(value: float) -> str:
    """A number as the fingerprint states it: rounded to 1e-6 (URDFs print a handful of digits,
    so float noise of the parse stays far below), -0 as 0, infinities by name."""
    if not math.isfinite(value):
        return 'inf' if value > 0 else '-inf'
    return f'{round(float(value), 6) + 0.0:.6f}'


def _fingerprint_numbers(values: Sequence[float] | np.ndarray) -> list[str]:
    return [_fingerprint_number(float(v)) for v in values]


def _joint_facts(joint: JointInfo) -> dict[str, object]:
    """What one joint of the arm chain contributes to the fingerprint."""
    facts: dict[str, object] = {
        'name': joint.name, 'type': joint.type,
        'origin_xyz': _fingerprint_numbers(joint.origin[:3, 3]),
        # The rotation as its matrix, not the URDF's rpy text: two spellings of one rotation
        # (rpy is not unique, and pitch +-90 deg is singular) give one fingerprint.
        'origin_rotation': _fingerprint_numbers(joint.origin[:3, :3].reshape(-1)),
    }
    if joint.movable:
        facts.update(axis=_fingerprint_numbers(joint.axis),
                     position_limits=_fingerprint_numbers((joint.lower, joint.upper)),
                     velocity_limit=_fingerprint_number(joint.velocity))
    return facts


def chain_fingerprint(chain: Sequence[JointInfo]) -> str:
    """`sha256:<hex>` of a kinematic chain's facts (see kinematics_fingerprint)."""
    text = json.dumps({'format': _FINGERPRINT_FORMAT,
                       'chain': [_joint_facts(joint) for joint in chain]},
                      sort_keys=True, separators=(',', ':'))
    return 'sha256:' + hashlib.sha256(text.encode('utf-8')).hexdigest()


def kinematics_fingerprint(robot_name: str) -> str:
    """A fingerprint of the arm a policy is trained for and the arm it runs on (the policy
    contract's `embodiment.kinematics`): `sha256:` + the hex SHA-256 of, for every joint from
    the base link to the tool link in chain order, its name, type and origin (xyz and rotation,
    rounded to 1e-6), and for a movable joint its axis and position / velocity limits.

    Joint names alone do not tell arms apart: the LR Mate 200iD, the HC10 and the GP8 all name
    theirs joint_1..joint_6, and a policy trained on one ran on the others unnoticed. Link
    lengths (the joint origins), axis directions and limits are what a learned joint-space
    policy has absorbed, so they go in; the fixed joints to the tool flange go in too (they
    move the TCP). Left out: masses, inertias, effort limits, meshes and the gripper, which do
    not change where a joint command puts the tool.
    """
    return chain_fingerprint(load_robot_description(robot_name).arm_chain)
