"""The pick-and-place task: vocabulary, seeded sampling and the success checker.

Pure numpy (no PyBullet): the world feeds poses and bin geometry in, so the rules can be unit
tested without a simulator. Task: "pick the {colour} {shape} and place it in the {left|right}
bin", one target among 1..3 distractors, every object a unique (colour, shape) pair so the
instruction names exactly one object. Left / right follow REP-103 as seen from the robot base:
left is +y.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noetra_ros.core.errors import ConfigError

# The vocabulary is fixed: policies are trained on exactly these words.
COLOURS: tuple[str, ...] = ('red', 'green', 'blue', 'yellow')
SHAPES: tuple[str, ...] = ('cube', 'cylinder', 'block')
PLACES: tuple[str, ...] = ('left', 'right')
INSTRUCTION_TEMPLATE = 'pick the {colour} {shape} and place it in the {place} bin'

# Full extents (m) of each shape. A block is elongated along its local x, so its narrow side (the
# grasp axis) is local y; for every shape a grasp across local y is valid, and every shape is
# symmetric under a half turn about z.
SHAPE_SIZES: dict[str, tuple[float, float, float]] = {
    'cube': (0.04, 0.04, 0.04),
    'cylinder': (0.04, 0.04, 0.05),
    'block': (0.065, 0.032, 0.032),
}
SHAPE_MASSES_KG: dict[str, float] = {'cube': 0.08, 'cylinder': 0.07, 'block': 0.07}
# Smallest turn about z that maps each shape's grasp onto an equivalent one (0 = any turn). A
# grasp planner that ignores this picks between grasps that look identical in an image, which
# makes its demonstrations impossible to imitate from pixels.
GRASP_SYMMETRY_RAD: dict[str, float] = {'cube': np.pi / 2, 'cylinder': 0.0, 'block': np.pi}

MAX_DISTRACTORS = 3
# Thresholds of the success checker.
REST_SPEED_M_S = 0.05
OFF_TABLE_DROP_M = 0.05


@dataclass(frozen=True)
class ObjectSpec:
    """One graspable object, named '<colour>_<shape>' (unique in a scene), from the vocabulary."""

    colour: str
    shape: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ConfigError(f'ObjectSpec.colour: {self.colour!r} not in {COLOURS}')
        if self.shape not in SHAPES:
            raise ConfigError(f'ObjectSpec.shape: {self.shape!r} not in {SHAPES}')

    @property
    def name(self) -> str:
        """Unique body name in the scene."""
        return f'{self.colour}_{self.shape}'

    @property
    def size(self) -> tuple[float, float, float]:
        """Full extents (x, y, z) in the object frame (m)."""
        return SHAPE_SIZES[self.shape]

    @property
    def half_height(self) -> float:
        """Height of the centre above the surface the object stands on (m)."""
        return SHAPE_SIZES[self.shape][2] / 2.0


@dataclass(frozen=True)
class BinSpec:
    """An open box on the table; all coordinates in the world frame (m)."""

    place: str
    centre_xy: tuple[float, float]
    inner_size_xy: tuple[float, float]
    floor_top_z: float
    rim_z: float
    wall_thickness: float = 0.01

    def __post_init__(self) -> None:
        if self.place not in PLACES:
            raise ConfigError(f'BinSpec.place: {self.place!r} not in {PLACES}')
        if min(self.inner_size_xy) <= 0.0:
            raise ConfigError(f'BinSpec.inner_size_xy: {self.inner_size_xy} must be positive')
        if self.rim_z <= self.floor_top_z:
            raise ConfigError(
                f'BinSpec.rim_z: {self.rim_z} must be above floor_top_z {self.floor_top_z}')

    def contains_xy(self, xy: np.ndarray, margin: float = 0.0) -> bool:
        """True when the point lies inside the inner footprint shrunk by `margin`."""
        offset = np.abs(np.asarray(xy[:2], dtype=float) - np.asarray(self.centre_xy))
        half = np.asarray(self.inner_size_xy) / 2.0 - margin
        return bool(np.all(offset <= half))


@dataclass(frozen=True)
class TableSpec:
    """The table top: an axis-aligned rectangle at height top_z (world frame, m)."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    top_z: float


@dataclass(frozen=True)
class TaskSpec:
    """A sampled task: target, distractors and the named bin."""

    target: ObjectSpec
    distractors: tuple[ObjectSpec, ...]
    place: str

    @property
    def objects(self) -> tuple[ObjectSpec, ...]:
        """Target first, then the distractors."""
        return (self.target, *self.distractors)

    @property
    def instruction(self) -> str:
        """The natural-language instruction."""
        return instruction_text(self.target.colour, self.target.shape, self.place)


@dataclass(frozen=True)
class TaskStatus:
    """Outcome so far: phase is 'running', 'success' or 'failure'; explanation says why."""

    success: bool
    phase: str
    explanation: str
    elapsed: float

    @property
    def done(self) -> bool:
        """True once the episode has succeeded or failed."""
        return self.phase != 'running'


def instruction_text(colour: str, shape: str, place: str) -> str:
    """The instruction for a (colour, shape, place) triple from the vocabulary."""
    if colour not in COLOURS or shape not in SHAPES or place not in PLACES:
        raise ConfigError(
            f'instruction: ({colour!r}, {shape!r}, {place!r}) outside the vocabulary '
            f'{COLOURS} x {SHAPES} x {PLACES}')
    return INSTRUCTION_TEMPLATE.format(colour=colour, shape=shape, place=place)


def shape_in_instruction(text: str) -> str | None:
    """The vocabulary shape named in an instruction, or None if it names none (or several)."""
    named = [shape for shape in SHAPES if shape in text.lower().split()]
    return named[0] if len(named) == 1 else None


def sample_task(rng: np.random.Generator, min_distractors: int = 1,
                max_distractors: int = MAX_DISTRACTORS) -> TaskSpec:
    """Draw a target, 1..3 distractors (all unique colour/shape pairs) and a bin."""
    if not 0 <= min_distractors <= max_distractors <= MAX_DISTRACTORS:
        raise ConfigError(
            f'distractors: need 0 <= min ({min_distractors}) <= max ({max_distractors}) '
            f'<= {MAX_DISTRACTORS}')
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    count = int(rng.integers(min_distractors, max_distractors + 1))
    chosen = rng.choice(len(pairs), size=count + 1, replace=False)
    objects = [ObjectSpec(*pairs[int(i)]) for i in chosen]
    place = PLACES[int(rng.integers(len(PLACES)))]
    return TaskSpec(target=objects[0], distractors=tuple(objects[1:]), place=place)


def sample_layout(rng: np.random.Generator, count: int, x_range: tuple[float, float],
                  y_range: tuple[float, float], min_spacing: float,
                  max_tries: int = 1000) -> np.ndarray:
    """Rejection-sample `count` (x, y, yaw) rows with centres at least `min_spacing` apart.

    Raises ConfigError when the region cannot hold that many objects.
    """
    rows: list[np.ndarray] = []
    for _ in range(max_tries):
        if len(rows) == count:
            break
        xy = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
        yaw = rng.uniform(-np.pi, np.pi)
        if all(np.linalg.norm(xy - r[:2]) >= min_spacing for r in rows):
            rows.append(np.array([xy[0], xy[1], yaw]))
    if len(rows) != count:
        raise ConfigError(
            f'layout: could not place {count} objects {min_spacing} m apart in '
            f'x {x_range}, y {y_range}')
    return np.array(rows)


def check_task(target_position: np.ndarray, target_speed: float, gripper_touches_target: bool,
               bins: dict[str, BinSpec], place: str, table: TableSpec, elapsed: float,
               timeout_s: float) -> TaskStatus:
    """Judge the episode from the target's state.

    Success: the target rests (speed below REST_SPEED_M_S) with its centre inside the named bin's
    inner footprint, below the rim, and the gripper no longer touches it. Failure: the target
    left the table, rests in the other bin, or the time ran out.
    """
    pos = np.asarray(target_position, dtype=float)
    at_rest = target_speed < REST_SPEED_M_S
    goal = bins[place]
    in_goal = goal.contains_xy(pos) and goal.floor_top_z <= pos[2] < goal.rim_z
    if in_goal and at_rest and not gripper_touches_target:
        return TaskStatus(True, 'success', f'target rests in the {place} bin', elapsed)
    on_table_xy = (table.x_range[0] <= pos[0] <= table.x_range[1]
                   and table.y_range[0] <= pos[1] <= table.y_range[1])
    if pos[2] < table.top_z - OFF_TABLE_DROP_M or not on_table_xy:
        return TaskStatus(False, 'failure', 'target fell off the table', elapsed)
    for other, spec in bins.items():
        if (other != place and spec.contains_xy(pos) and pos[2] < spec.rim_z and at_rest
                and not gripper_touches_target):
            return TaskStatus(False, 'failure', f'target rests in the wrong ({other}) bin',
                              elapsed)
    if elapsed >= timeout_s:
        return TaskStatus(False, 'failure', f'timeout after {elapsed:.1f} s', elapsed)
    if in_goal and gripper_touches_target:
        return TaskStatus(False, 'running', 'target in the bin but still held', elapsed)
    if in_goal:
        return TaskStatus(False, 'running', 'target in the bin, not at rest yet', elapsed)
    return TaskStatus(False, 'running', 'target not in the bin yet', elapsed)
