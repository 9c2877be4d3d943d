"""A small, numpy-only kinematic model read from a URDF (no ROS, no heavy dependencies).

``RobotModel.from_urdf(path)`` parses joints and links with ``xml.etree.ElementTree``. The
*arm joints* are the movable joints on the path ``base_link -> tool0`` in chain order; every
other movable joint (gripper fingers) is an *extra joint* that defaults to 0 and can be set by
name. Forward kinematics, the geometric Jacobian and a damped-least-squares IK work for any link
in the tree.

Speed: each joint transform is ``A + u * B + v * C`` with 4x4 constants precomputed at load
(Rodrigues form folded into the fixed origin transform), so a 6-DOF FK is a handful of vectorised
numpy operations.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

from noetra_ros.core.errors import ConfigError, ModelLoadError, UnknownNameError

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


def _parse_joint(el: ET.Element) -> JointInfo:
    name = el.get('name')
    jtype = el.get('type')
    if not name or jtype is None:
        raise ModelLoadError('URDF joint without name or type')
    parent_el, child_el = el.find('parent'), el.find('child')
    if parent_el is None or child_el is None:
        raise ModelLoadError(f'joint {name!r}: missing <parent> or <child>')
    origin = np.eye(4)
    origin_el = el.find('origin')
    if origin_el is not None:
        origin[:3, :3] = rpy_to_matrix(_floats(origin_el.get('rpy'), (0, 0, 0),
                                               f'joint {name!r} origin rpy'))
        origin[:3, 3] = _floats(origin_el.get('xyz'), (0, 0, 0), f'joint {name!r} origin xyz')
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
                 base_link: str = 'base_link', tool_link: str = 'tool0') -> None:
        self.name = name
        self.links = tuple(links)
        self.joints: dict[str, JointInfo] = {j.name: j for j in joints}
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
        self.lower = np.array([j.lower for j in arm])
        self.upper = np.array([j.upper for j in arm])
        self.velocity_limits = np.array([j.velocity for j in arm])
        self.effort_limits = np.array([j.effort for j in arm])
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
        links = [el.get('name', '') for el in root.findall('link')]
        joints = [_parse_joint(el) for el in root.findall('joint')]
        known = set(links)
        for j in joints:
            if j.parent not in known or j.child not in known:
                raise ModelLoadError(f'URDF {source}: joint {j.name!r} refers to a missing link')
        return cls(root.get('name', ''), links, joints, base_link, tool_link)

    @property
    def dof(self) -> int:
        """Number of arm joints."""
        return len(self.joint_names)

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
        chain = self._chain(link or self.tool_link)
        a, _b, _c, arm_idx, _names, kinds, tail, axes = chain
        m = self._chain_transforms(q, chain, extra)
        n = m.shape[0]
        frames = np.empty((n, 4, 4))
        t = np.eye(4)
        for i in range(n):
            frames[i] = t @ a[i]  # joint frame at its zero value: axis and origin live here
            t = t @ m[i]
        end = (t @ tail)[:3, 3]
        z = np.einsum('nij,nj->ni', frames[:, :3, :3], axes)
        lin = np.where(kinds[:, None], z, np.cross(z, end - frames[:, :3, 3]))
        ang = np.where(kinds[:, None], 0.0, z)
        jac = np.zeros((6, self.dof))
        on_arm = arm_idx >= 0
        jac[:3, arm_idx[on_arm]] = lin[on_arm].T
        jac[3:, arm_idx[on_arm]] = ang[on_arm].T
        return jac

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

    def _ik_error(self, q, target_pos, rot, link, extra) -> tuple[np.ndarray, float, float]:
        t = self.fk(q, link, extra)
        e_pos = target_pos - t[:3, 3]
        if rot is None:
            return e_pos, float(np.linalg.norm(e_pos)), 0.0
        e_rot = rotation_error(rot, t[:3, :3])
        return (np.concatenate([e_pos, e_rot]), float(np.linalg.norm(e_pos)),
                float(np.linalg.norm(e_rot)))

    def _ik_once(self, target_pos, rot, q, link, extra, max_iters, tol_pos, tol_rot, lower,
                 upper) -> tuple[np.ndarray, bool, float]:
        lam = 1e-3
        err, e_p, e_r = self._ik_error(q, target_pos, rot, link, extra)
        cost = float(err @ err)
        eye = np.eye(self.dof)
        for _ in range(max_iters):
            if e_p <= tol_pos and e_r <= tol_rot:
                return q, True, cost
            jac = self.jacobian(q, link, extra)
            if rot is None:
                jac = jac[:3]
            while True:
                dq = self._ik_step(jac, err, lam, eye)
                # Joints pinned at a limit that the step pushes further out are frozen and the
                # step is re-solved without them (active set), so clamping cannot stall the
                # remaining joints.
                pinned = ((q <= lower + 1e-9) & (dq < 0)) | ((q >= upper - 1e-9) & (dq > 0))
                if pinned.any():
                    dq = self._ik_step(jac * ~pinned, err, lam, eye)
                    dq[pinned] = 0.0
                step = float(np.max(np.abs(dq)))
                if step > 0.5:  # keep each step in the region where the linearisation holds
                    dq *= 0.5 / step
                q_new = np.clip(q + dq, lower, upper)
                err_new, e_p_new, e_r_new = self._ik_error(q_new, target_pos, rot, link, extra)
                cost_new = float(err_new @ err_new)
                if cost_new < cost:
                    q, err, e_p, e_r, cost = q_new, err_new, e_p_new, e_r_new, cost_new
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
