"""Record scripted-expert demonstrations in simulation into a LeRobotDataset v3.0 folder.

The expert runs in-process against a :class:`SimWorld` exactly as ``expert.run_episode`` drives
it (same observation, same termination rule). At every control step the recorder stores, BEFORE
the command is applied:

* the RGB image of every policy camera at the camera's native resolution (so the policy sees the
  same pixels as the sim node publishes; resizing, when a real camera differs, is done by the
  shared ``preprocess.image_to_tensor`` at deployment),
* the measured arm joint positions and gripper finger position (``observation.state``),
* the flange wrench (``observation.wrench``; recorded for completeness, not used by the policy),
* the action = the expert's command for this step: arm joint position target + gripper target,
* where the instructed object is (``observation.environment_state``: base-frame position and its
  pixel in each camera) and, per object of the scene, its colour, shape and pixel in each
  camera - privileged simulator state, used only as training targets.

Only episodes the task checker judges successful are kept; the others are counted and reported.

Optional noise injection (``action_noise_rad`` > 0, DART-style): the arm executes the expert's
joint targets plus a slowly varying, seeded random offset, while the dataset stores the expert's
clean targets as the action. The demonstrations then visit states slightly off the expert's
path together with the command that leads back to it - the states a cloned policy drifts into.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import time
from typing import Any, Callable, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.core.expert import yaw_of
from noetra_ros.core.sim.task import COLOURS, MAX_DISTRACTORS, SHAPES
from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode, progress

GRIPPER_STATE_NAME = 'gripper_position'
# The policy's views: the workspace camera (zoomed on the pick area) and the wrist camera.
DEFAULT_CAMERAS = ('workspace_camera', 'wrist_camera')
# Object slots in observation.environment_state: the target + task.MAX_DISTRACTORS.
MAX_SCENE_OBJECTS = MAX_DISTRACTORS + 1
# Cross-fade into a new set of chunks, as the shipped policy cell sets it
# (config/cells/pick_place_lrmate_policy.yaml: blend_window_s).
EVAL_BLEND_WINDOW_S = 0.1
# Outside RecordConfig.noise_phases the injected offset shrinks by this factor per control step
# (to 1 % in about 0.5 s at 20 Hz): the arm converges back onto the expert's path smoothly.
NOISE_DECAY_PER_STEP = 0.8
# Off-image value stored for a point behind a camera (keeps the column finite).
BEHIND_CAMERA_PX = -1000.0


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


def target_environment_state(world: Any, cameras: Sequence[str]) -> np.ndarray:
    """The values named by environment_names() for the world's current state."""
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


@dataclass(frozen=True)
class RecordConfig:
    """What to record: robot, seeds first_seed .. first_seed + episodes - 1, cameras."""

    robot: str = 'fanuc_lrmate200id'
    episodes: int = 200
    first_seed: int = 0
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    linger_s: float = 1.0
    action_noise_rad: float = 0.0
    noise_correlation_s: float = 0.5
    # Expert phases in which the noise offset is injected (empty = all); outside them it decays
    # away within a few steps, so e.g. large offsets in free-space moves are gone before the
    # expert's grasp.
    noise_phases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.episodes, int) or self.episodes <= 0:
            raise ConfigError(f'episodes={self.episodes!r}: must be a positive integer')
        if not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise ConfigError(f'first_seed={self.first_seed!r}: must be an integer >= 0')
        if not self.cameras:
            raise ConfigError('cameras=(): at least one camera is required')
        if not self.linger_s >= 0.0:
            raise ConfigError(f'linger_s={self.linger_s!r}: must be >= 0')
        if not 0.0 <= self.action_noise_rad <= 0.2:
            raise ConfigError(f'action_noise_rad={self.action_noise_rad!r}: must be in [0, 0.2]')
        from noetra_ros.core.expert import PHASES

        unknown = [p for p in self.noise_phases if p not in PHASES]
        if unknown:
            raise ConfigError(f'noise_phases: {unknown} are not expert phases {PHASES}')
        if not self.noise_correlation_s > 0.0:
            raise ConfigError(f'noise_correlation_s={self.noise_correlation_s!r}: must be > 0')


@dataclass
class RecordSummary:
    """What a recording run produced."""

    output: Path
    kept: int
    failed: int
    frames: int
    failures: list[tuple[int, str]] = field(default_factory=list)  # (seed, explanation)
    wall_time_s: float = 0.0

    def describe(self) -> str:
        """One paragraph for the CLI."""
        text = (f'recorded {self.kept} successful expert episodes ({self.frames} frames) into '
                f'{self.output}; {self.failed} episode(s) failed and were discarded '
                f'[{self.wall_time_s:.0f} s]')
        for seed, why in self.failures:
            text += f'\n  seed {seed}: {why}'
        return text


class PolicyDriver:
    """An ONNX policy acting in a SimWorld the way policy_node does: every `replan_every`
    control steps a new chunk from the raw camera frames, joint state and instruction goes into
    an ActionQueue (strategy `blend`), and each step takes the queue's action for the sim time.
    Used by the closed-loop evaluation.

    (Tried and dropped: letting it drive the arm while the scripted expert labels the states
    it reaches, DAgger-style. The expert follows its own timed plan, so its labels drifted
    0.4 rad (median) from the policy-driven arm; they need an expert that replans from the
    measured state.)"""

    def __init__(self, model_path: str | Path, joint_names: Sequence[str],
                 replan_every: int = 2, blend: str = 'ensemble', threads: int = 1) -> None:
        from noetra_ros.core.policy.runtime import PolicyRuntime

        self.runtime = PolicyRuntime(model_path, intra_op_threads=threads)
        self.runtime.validate_robot(tuple(joint_names), has_gripper=True)
        self.contract = self.runtime.contract
        chunk_length = self.contract.action.chunk_length
        if not isinstance(replan_every, int) or not 1 <= replan_every <= chunk_length:
            raise ConfigError(f'replan_every={replan_every!r}: must be an integer in '
                              f'[1, chunk length {chunk_length}]')
        self.joint_names = tuple(joint_names)
        # Fixed by the contract: maps the action's joint order onto `joint_names`, once.
        positions = self.contract.action.component('joint_positions')
        if positions is None:
            self.runtime.close()
            raise ConfigError(f'{model_path}: the in-process driver commands joint position '
                              'targets; this model outputs none (run it through policy_node)')
        action_joints = positions.joints
        self._to_robot = np.array([action_joints.index(n) for n in self.joint_names])
        self.replan_every = replan_every
        self.blend = blend
        self.reset()

    def reset(self) -> None:
        """Forget the queued actions (call at every episode start)."""
        from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig

        self.queue = ActionQueue(BlendConfig(strategy=self.blend,
                                             blend_window_s=EVAL_BLEND_WINDOW_S))
        self.steps = 0

    @property
    def wants_observation(self) -> bool:
        """True when the next act() call infers a new chunk (and so needs the images)."""
        return self.steps % self.replan_every == 0

    def act(self, images: dict[str, np.ndarray] | None, joint_positions: np.ndarray,
            gripper_position: float, instruction: str,
            now: float) -> tuple[np.ndarray, float] | None:
        """(arm joint targets in joint_names order, gripper target) for sim time `now`, or None
        while the queue has nothing for it. `images` (RGB frames by camera name) are read only
        when wants_observation is True."""
        from noetra_ros.core.policy.preprocess import ImageFrame

        if self.wants_observation:
            if images is None:
                raise ConfigError('PolicyDriver.act: this step infers a new chunk and needs '
                                  'the camera images')
            frames = {cam: ImageFrame(images[cam], images[cam].shape[1], images[cam].shape[0],
                                      'rgb8') for cam in self.contract.cameras}
            inputs = self.runtime.build_inputs(
                frames, dict(zip(self.joint_names, np.asarray(joint_positions).tolist())),
                gripper_position=gripper_position, instruction=instruction)
            chunk = self.runtime.infer(inputs)
            self.queue.add(chunk.values, stamp=now, step_period_s=chunk.step_period_s, now=now)
        self.steps += 1
        action = self.queue.action_at(now)
        if action is None:
            return None
        parts = self.contract.action.split(action)
        return np.asarray(parts.joint_positions)[self._to_robot], float(parts.gripper_position)

    def close(self) -> None:
        self.runtime.close()


def record_episode(world: Any, expert: Any, seed: int, cameras: Sequence[str],
                   linger_s: float = 1.0, action_noise_rad: float = 0.0,
                   noise_correlation_s: float = 0.5,
                   noise_phases: Sequence[str] = ()) -> tuple[Episode, bool, str]:
    """Run one expert episode for `seed` and return (episode, success, explanation).

    Runs ``noetra_ros.core.expert.run_episode`` with a recorder attached; frame t holds the
    observation before the t-th command and that command as its action. With `action_noise_rad` > 0 the executed arm
    command gets an Ornstein-Uhlenbeck offset of that stationary std (correlation time
    `noise_correlation_s`, seeded by `seed`); the stored action stays the expert's.
    With `noise_phases`, the offset is injected only while the expert is in those phases and
    decays (NOISE_DECAY_PER_STEP) in the others.
    """
    from noetra_ros.core.expert import run_episode

    images: dict[str, list[np.ndarray]] = {cam: [] for cam in cameras}
    states: list[np.ndarray] = []
    wrenches: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    environment: list[np.ndarray] = []
    rng = np.random.default_rng(1_000_003 + int(seed))
    offset = np.zeros(len(world.joint_names))
    keep = float(np.exp(-world.control_period / noise_correlation_s))

    def on_step(obs: Any, action: Any) -> None:
        for cam in cameras:
            images[cam].append(world.render(cam))
        states.append(np.append(obs.joint_positions, obs.gripper_position))
        wrenches.append(world.wrench())
        environment.append(target_environment_state(world, cameras))
        actions.append(np.append(action.joint_positions, action.gripper_position))

    def executed(action: Any) -> np.ndarray:
        nonlocal offset
        if action_noise_rad <= 0.0:
            return action.joint_positions
        if noise_phases and action.phase not in noise_phases:
            offset = NOISE_DECAY_PER_STEP * offset
            return action.joint_positions + offset
        offset = keep * offset + np.sqrt(1.0 - keep * keep) * action_noise_rad * (
            rng.standard_normal(offset.shape))
        return action.joint_positions + offset

    result = run_episode(world, expert, seed, linger_s, on_step=on_step, executed=executed)
    episode = Episode(
        task=result.instruction,
        state=np.asarray(states, dtype=np.float32),
        action=np.asarray(actions, dtype=np.float32),
        images={cam: np.stack(frames) for cam, frames in images.items()},
        wrench=np.asarray(wrenches, dtype=np.float32),
        seed=int(seed), environment_state=np.asarray(environment, dtype=np.float32))
    explanation = result.explanation
    if expert.failed:
        explanation += f' (expert: {expert.failure_reason})'
    return episode, bool(result.success), explanation


def make_world_and_expert(robot: str) -> tuple[Any, Any]:
    """A SimWorld with the default cell and cameras plus a ScriptedExpert at its control rate."""
    from noetra_ros.core.expert import ScriptedExpert
    from noetra_ros.core.sim.world import SimWorld, WorldConfig

    world = SimWorld(WorldConfig(robot=robot))
    expert = ScriptedExpert(robot, control_hz=world.config.control_hz)
    return world, expert


def dataset_spec_for(world: Any, robot: str, cameras: Sequence[str]) -> DatasetSpec:
    """The dataset layout matching a world: its joint names, control rate and camera sizes."""
    sizes = {(world.camera_info(cam).height, world.camera_info(cam).width) for cam in cameras}
    if len(sizes) != 1:
        raise ConfigError(f'cameras={list(cameras)}: all policy cameras must share one size, '
                          f'got {sorted(sizes)}')
    (height, width), = sizes
    names = tuple(world.joint_names) + (GRIPPER_STATE_NAME,)
    return DatasetSpec(fps=int(world.config.control_hz), robot_type=robot, state_names=names,
                       action_names=names, cameras=tuple(cameras), image_height=height,
                       image_width=width, with_wrench=True,
                       environment_names=environment_names(cameras))


def record(config: RecordConfig, output: str | Path) -> RecordSummary:
    """Record `config.episodes` seeded expert episodes into a new dataset at `output`."""
    start = time.monotonic()
    world, expert = make_world_and_expert(config.robot)
    try:
        unknown = [cam for cam in config.cameras if cam not in world.camera_names]
        if unknown:
            raise ConfigError(f'cameras: {unknown} not in the world (have '
                              f'{list(world.camera_names)})')
        spec = dataset_spec_for(world, config.robot, config.cameras)
        writer = DatasetWriter(output, spec, extra_info={
            'source': 'noetra_ros.learning.record (ScriptedExpert in SimWorld)',
            'first_seed': config.first_seed, 'episodes_attempted': config.episodes,
            'action_noise_rad': config.action_noise_rad,
            'noise_correlation_s': config.noise_correlation_s,
            'noise_phases': list(config.noise_phases),
            'state': 'measured arm joint positions (rad) + gripper finger position (m)',
            'action': 'expert command: arm joint position targets (rad) + gripper target (m)',
        })
        summary = RecordSummary(output=Path(output), kept=0, failed=0, frames=0)
        seeds = range(config.first_seed, config.first_seed + config.episodes)
        for seed in progress(seeds, total=config.episodes, desc='recording'):
            episode, success, why = record_episode(
                world, expert, seed, config.cameras, config.linger_s, config.action_noise_rad,
                config.noise_correlation_s, config.noise_phases)
            if success:
                writer.add_episode(episode)
                summary.kept += 1
                summary.frames += episode.length
            else:
                summary.failed += 1
                summary.failures.append((seed, why))
        if summary.kept == 0:
            raise ConfigError('no expert episode succeeded; nothing to write')
        writer.close()
    finally:
        world.close()
        expert.close()
    summary.wall_time_s = time.monotonic() - start
    return summary


def record_and_describe(config: RecordConfig, output: str | Path) -> str:
    """record() and its one-paragraph summary: a module-level function, so a process pool
    started with 'spawn' can run it."""
    return record(config, output).describe()


@dataclass
class EvalResult:
    """Success counts of one evaluation run."""

    label: str
    seeds: list[int]
    successes: list[bool]
    explanations: list[str]
    sim_times: list[float]
    wall_time_s: float = 0.0

    @property
    def success_rate(self) -> float:
        """Fraction of successful episodes."""
        return sum(self.successes) / max(1, len(self.successes))

    def describe(self) -> str:
        """One line: successes / episodes and mean episode length."""
        ok_times = [t for t, s in zip(self.sim_times, self.successes) if s]
        mean_t = f', mean {np.mean(ok_times):.1f} s sim per success' if ok_times else ''
        return (f'{self.label}: {sum(self.successes)}/{len(self.successes)} successful '
                f'({100 * self.success_rate:.0f} %){mean_t} [{self.wall_time_s:.0f} s wall]')


def evaluate_expert(seeds: Sequence[int], robot: str = 'fanuc_lrmate200id') -> EvalResult:
    """The scripted expert's success on `seeds` (the reference the policy is compared with)."""
    from noetra_ros.core.expert import run_episode

    start = time.monotonic()
    world, expert = make_world_and_expert(robot)
    result = EvalResult('expert', list(seeds), [], [], [])
    try:
        for seed in progress(list(seeds), desc='expert'):
            outcome = run_episode(world, expert, seed)
            result.successes.append(bool(outcome.success))
            result.explanations.append(outcome.explanation)
            result.sim_times.append(float(outcome.sim_time))
    finally:
        world.close()
        expert.close()
    result.wall_time_s = time.monotonic() - start
    return result


def evaluate_policy(model_path: str | Path, seeds: Sequence[int],
                    robot: str = 'fanuc_lrmate200id', replan_every: int = 2,
                    blend: str = 'ensemble', threads: int = 1,
                    on_step: Callable[[int, Any, Any], None] | None = None) -> EvalResult:
    """Closed-loop success of an ONNX policy run through ``PolicyRuntime`` in a SimWorld.

    Every `replan_every` control steps the cameras are rendered, the runtime builds the inputs
    from the raw frames / joint state / instruction and returns an action chunk, which goes into
    an ``ActionQueue`` (strategy `blend`); every step the queue's action for the current sim time
    is commanded (joint position targets + gripper), as the policy node does. An episode ends
    when the task checker says success or failure (including its timeout). `on_step(seed, world,
    status)` sees every step after the task check (for analysis tools; it must not change the
    world); `status.done` marks an episode's last step.
    """
    from noetra_ros.core.sim.world import SimWorld, WorldConfig

    start = time.monotonic()
    world = SimWorld(WorldConfig(robot=robot))
    joint_names = world.joint_names
    try:
        driver = PolicyDriver(model_path, joint_names, replan_every, blend, threads)
    except Exception:
        world.close()
        raise
    result = EvalResult(f'policy {Path(model_path).name} (replan every {replan_every}, {blend})',
                        list(seeds), [], [], [])
    try:
        for seed in progress(list(seeds), desc='policy'):
            episode = world.reset(seed)
            driver.reset()
            while True:
                images = ({cam: world.render(cam) for cam in driver.contract.cameras}
                          if driver.wants_observation else None)
                command = driver.act(images, world.joint_state()[0][:len(joint_names)],
                                     world.gripper_position(), episode.instruction,
                                     world.sim_time)
                if command is not None:
                    world.command_positions(command[0])
                    world.command_gripper(command[1])
                world.step()
                status = world.task_status()
                if on_step is not None:
                    on_step(seed, world, status)
                if status.done:
                    break
            result.successes.append(bool(status.success))
            result.explanations.append(status.explanation)
            result.sim_times.append(float(world.sim_time))
    finally:
        driver.close()
        world.close()
    result.wall_time_s = time.monotonic() - start
    return result
