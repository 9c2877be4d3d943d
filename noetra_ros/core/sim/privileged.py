"""Privileged simulator state: where the objects of an episode are, as training targets.

Only a simulator knows this. The in-process recorder (learning/record.py) stores it per frame
as ``observation.environment_state``; sim_node publishes the same row on
``sim/environment_state`` (a sim-only topic) so that a recording made through the deployed
graph converts into the same dataset (learning/convert.py). The policy never receives it: the
training recipe uses it only for auxiliary targets (where the named object is in each camera,
its heading). A real cell has no such topic; its recordings convert without the column.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from noetra_ros.core.expert import yaw_of
from noetra_ros.core.sim.task import COLOURS, MAX_DISTRACTORS, SHAPES

# Object slots: the target + task.MAX_DISTRACTORS.
MAX_SCENE_OBJECTS = MAX_DISTRACTORS + 1
# Off-image value stored for a point behind a camera (keeps the column finite).
BEHIND_CAMERA_PX = -1000.0
# sim_node's topic (std_msgs/Float32MultiArray; layout.dim[0].label = the names, comma-joined).
ENVIRONMENT_STATE_TOPIC = 'sim/environment_state'


def environment_names(cameras: Sequence[str]) -> tuple[str, ...]:
    """Columns of observation.environment_state: where the named object is, in the base frame
    and as a pixel in each camera (the training targets of the policy's grounding head), then
    one slot per object of the scene (the named one first): its colour and shape as indices into
    task.COLOURS / task.SHAPES (-1: no object in this slot) and its pixel in each camera - the
    targets of the training-only "find any object by its name" grounding loss. Last, the named
    object's yaw (rad, about the base z axis, of its local x axis): the target of the
    training-only heading head (a block has to be gripped across its short side)."""
    names = ['target_x', 'target_y', 'target_z']
    for cam in cameras:
        names += [f'target_u_{cam}', f'target_v_{cam}']
    for slot in range(MAX_SCENE_OBJECTS):
        names += [f'object{slot}_colour', f'object{slot}_shape']
        for cam in cameras:
            names += [f'object{slot}_u_{cam}', f'object{slot}_v_{cam}']
    names.append('target_yaw')
    return tuple(names)


def _pixel(world: Any, camera: str, point: np.ndarray) -> list[float]:
    uv = world.project(camera, point)
    return [BEHIND_CAMERA_PX] * 2 if not np.all(np.isfinite(uv)) else [float(v) for v in uv]


def environment_state(world: Any, cameras: Sequence[str]) -> np.ndarray:
    """The values named by environment_names() for the world's current state (float32)."""
    position, quaternion = world.target_object_pose()
    row = [float(v) for v in position]
    for cam in cameras:
        row += _pixel(world, cam, position)
    episode = world.episode
    objects = sorted(episode.objects, key=lambda o: o.name != episode.target_object)
    for slot in range(MAX_SCENE_OBJECTS):
        if slot >= len(objects):
            row += [-1.0, -1.0] + [BEHIND_CAMERA_PX] * (2 * len(cameras))
            continue
        spec = objects[slot]
        row += [float(COLOURS.index(spec.colour)), float(SHAPES.index(spec.shape))]
        centre, _ = world.object_pose(spec.name)
        for cam in cameras:
            row += _pixel(world, cam, centre)
    row.append(yaw_of(quaternion))
    return np.asarray(row, dtype=np.float32)
