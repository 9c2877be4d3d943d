"""The cell around the robot: floor, table, two bins and the graspable objects (PyBullet bodies).

World frame = robot base frame (REP-103: x forward from the robot, y left, z up); the robot base
stands on the table top at the origin, the table top is z = 0 and the floor is 0.75 m below. Every
call passes the owning client id. Geometry and colours live here as named constants so the world,
the task checker, the cameras and the tests agree on them.
"""
from __future__ import annotations

import numpy as np
import pybullet as pb

from noetra_ros.core.sim.task import BinSpec, ObjectSpec, SHAPE_MASSES_KG, TableSpec

TABLE = TableSpec(x_range=(-0.3, 0.9), y_range=(-0.6, 0.6), top_z=0.0)
TABLE_HEIGHT_M = 0.75

# Objects are spawned in front of the robot, between the two bins.
OBJECT_REGION_X = (0.34, 0.56)
OBJECT_REGION_Y = (-0.16, 0.16)
# Centres this far apart leave room for an open finger (gap 85 mm + pads) beside each object.
OBJECT_MIN_SPACING_M = 0.10

BIN_WALL_HEIGHT_M = 0.07
BIN_FLOOR_THICKNESS_M = 0.01
BINS: dict[str, BinSpec] = {
    'left': BinSpec('left', centre_xy=(0.45, 0.34), inner_size_xy=(0.18, 0.15),
                    floor_top_z=TABLE.top_z + BIN_FLOOR_THICKNESS_M,
                    rim_z=TABLE.top_z + BIN_WALL_HEIGHT_M),
    'right': BinSpec('right', centre_xy=(0.45, -0.34), inner_size_xy=(0.18, 0.15),
                     floor_top_z=TABLE.top_z + BIN_FLOOR_THICKNESS_M,
                     rim_z=TABLE.top_z + BIN_WALL_HEIGHT_M),
}
# place_pose(): the target's centre is released this far above the bin floor (below the rim).
PLACE_ABOVE_FLOOR_M = 0.05

RGBA: dict[str, tuple[float, float, float, float]] = {
    'red': (0.85, 0.08, 0.08, 1.0),
    'green': (0.10, 0.70, 0.15, 1.0),
    'blue': (0.10, 0.25, 0.85, 1.0),
    'yellow': (0.95, 0.85, 0.10, 1.0),
    'left_bin': (0.55, 0.35, 0.70, 1.0),
    'right_bin': (0.20, 0.60, 0.60, 1.0),
    'table': (0.75, 0.62, 0.47, 1.0),
    'floor': (0.45, 0.45, 0.45, 1.0),
}

# Contact parameters of the objects; the gripper pads get theirs in world.py.
OBJECT_LATERAL_FRICTION = 1.0
OBJECT_SPINNING_FRICTION = 0.0
OBJECT_ROLLING_FRICTION = 0.0001
CYLINDER_FACETS = 16


def build_static_scene(cid: int) -> dict[str, int]:
    """Create floor, table and bins; returns their body ids by name."""
    bodies: dict[str, int] = {}
    floor_z = TABLE.top_z - TABLE_HEIGHT_M
    plane = pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=cid)
    plane_vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[3, 3, 0.001],
                                     rgbaColor=RGBA['floor'], physicsClientId=cid)
    bodies['floor'] = pb.createMultiBody(0, plane, plane_vis, [0, 0, floor_z],
                                         physicsClientId=cid)
    half = [(TABLE.x_range[1] - TABLE.x_range[0]) / 2, (TABLE.y_range[1] - TABLE.y_range[0]) / 2,
            TABLE_HEIGHT_M / 2]
    centre = [(TABLE.x_range[0] + TABLE.x_range[1]) / 2, (TABLE.y_range[0] + TABLE.y_range[1]) / 2,
              TABLE.top_z - TABLE_HEIGHT_M / 2]
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=cid)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=RGBA['table'],
                               physicsClientId=cid)
    bodies['table'] = pb.createMultiBody(0, col, vis, centre, physicsClientId=cid)
    for place, spec in BINS.items():
        bodies[f'{place}_bin'] = _build_bin(cid, spec, RGBA[f'{place}_bin'])
    for body in bodies.values():
        pb.changeDynamics(body, -1, lateralFriction=0.8, physicsClientId=cid)
    return bodies


def _build_bin(cid: int, spec: BinSpec, rgba: tuple[float, float, float, float]) -> int:
    """An open box from five boxes (floor + four walls) as one static body."""
    ix, iy = spec.inner_size_xy
    t = spec.wall_thickness
    floor_h = spec.floor_top_z - TABLE.top_z
    wall_h = spec.rim_z - TABLE.top_z
    # (half extents, centre relative to the bin origin on the table top)
    boxes = [
        ([ix / 2 + t, iy / 2 + t, floor_h / 2], [0, 0, floor_h / 2]),
        ([t / 2, iy / 2 + t, wall_h / 2], [ix / 2 + t / 2, 0, wall_h / 2]),
        ([t / 2, iy / 2 + t, wall_h / 2], [-ix / 2 - t / 2, 0, wall_h / 2]),
        ([ix / 2, t / 2, wall_h / 2], [0, iy / 2 + t / 2, wall_h / 2]),
        ([ix / 2, t / 2, wall_h / 2], [0, -iy / 2 - t / 2, wall_h / 2]),
    ]
    halves = [b[0] for b in boxes]
    centres = [b[1] for b in boxes]
    col = pb.createCollisionShapeArray([pb.GEOM_BOX] * 5, halfExtents=halves,
                                       collisionFramePositions=centres, physicsClientId=cid)
    vis = pb.createVisualShapeArray([pb.GEOM_BOX] * 5, halfExtents=halves,
                                    visualFramePositions=centres, rgbaColors=[rgba] * 5,
                                    physicsClientId=cid)
    return pb.createMultiBody(0, col, vis, [spec.centre_xy[0], spec.centre_xy[1], TABLE.top_z],
                              physicsClientId=cid)


def create_object(cid: int, spec: ObjectSpec, x: float, y: float, yaw: float) -> int:
    """Create a dynamic object standing on the table at (x, y) with the given yaw."""
    sx, sy, sz = spec.size
    if spec.shape == 'cylinder':
        # Collide as a CYLINDER_FACETS-sided prism: Bullet's exact cylinder touches a flat pad
        # in a single point per step, and a pinched cylinder then creeps out of the fingers;
        # a polyhedron gets a full contact manifold. The visual stays a true cylinder.
        angles = np.linspace(0.0, 2 * np.pi, CYLINDER_FACETS, endpoint=False)
        ring = np.column_stack([np.cos(angles), np.sin(angles)]) * (sx / 2)
        vertices = [[x, y, z] for z in (-sz / 2, sz / 2) for x, y in ring]
        col = pb.createCollisionShape(pb.GEOM_MESH, vertices=vertices, physicsClientId=cid)
        vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=sx / 2, length=sz,
                                   rgbaColor=RGBA[spec.colour], physicsClientId=cid)
    else:
        half = [sx / 2, sy / 2, sz / 2]
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=cid)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=RGBA[spec.colour],
                                   physicsClientId=cid)
    quat = pb.getQuaternionFromEuler([0.0, 0.0, yaw])
    body = pb.createMultiBody(SHAPE_MASSES_KG[spec.shape], col, vis,
                              [x, y, TABLE.top_z + sz / 2 + 1e-4], quat, physicsClientId=cid)
    pb.changeDynamics(body, -1, lateralFriction=OBJECT_LATERAL_FRICTION,
                      spinningFriction=OBJECT_SPINNING_FRICTION,
                      rollingFriction=OBJECT_ROLLING_FRICTION, physicsClientId=cid)
    return body


def place_position(place: str) -> np.ndarray:
    """Where the target's centre is released: bin centre, PLACE_ABOVE_FLOOR_M above its floor."""
    spec = BINS[place]
    return np.array([spec.centre_xy[0], spec.centre_xy[1],
                     spec.floor_top_z + PLACE_ABOVE_FLOOR_M])
