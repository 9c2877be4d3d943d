"""Record scripted-expert demonstrations in simulation into a LeRobotDataset v3.0 folder.

The expert runs in-process against a :class:`SimWorld` exactly as ``expert.run_episode`` drives
it (same observation, same termination rule). At every control step the recorder stores, BEFORE
the command is applied:

* the RGB image of every policy camera at the camera's native resolution (so the policy sees the
  same pixels as the sim node publishes; resizing, when a real camera differs, is done by the
  shared ``preprocess.image_to_tensor`` at deployment),
* the measured arm joint positions and gripper finger position (``observation.state``),
* the flange wrench (``observation.wrench``; recorded for completeness, not used by the policy),
* the action = the expert's command for this step: arm joint position target + gripper target.

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
from typing import Any, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError
from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode, progress

GRIPPER_STATE_NAME = 'gripper_position'
DEFAULT_CAMERAS = ('scene_camera', 'wrist_camera')


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


def record_episode(world: Any, expert: Any, seed: int, cameras: Sequence[str],
                   linger_s: float = 1.0, action_noise_rad: float = 0.0,
                   noise_correlation_s: float = 0.5) -> tuple[Episode, bool, str]:
    """Run one expert episode for `seed` and return (episode, success, explanation).

    Runs ``noetra_ros.core.expert.run_episode`` with a recorder attached; frame t holds the observation before the
    t-th command and that command as its action. With `action_noise_rad` > 0 the executed arm
    command gets an Ornstein-Uhlenbeck offset of that stationary std (correlation time
    `noise_correlation_s`, seeded by `seed`); the stored action stays the expert's.
    """
    from noetra_ros.core.expert import run_episode

    images: dict[str, list[np.ndarray]] = {cam: [] for cam in cameras}
    states: list[np.ndarray] = []
    wrenches: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    rng = np.random.default_rng(1_000_003 + int(seed))
    offset = np.zeros(len(world.joint_names))
    keep = float(np.exp(-world.control_period / noise_correlation_s))

    def on_step(obs: Any, action: Any) -> None:
        for cam in cameras:
            images[cam].append(world.render(cam))
        states.append(np.append(obs.joint_positions, obs.gripper_position))
        wrenches.append(world.wrench())
        actions.append(np.append(action.joint_positions, action.gripper_position))

    def executed(action: Any) -> np.ndarray:
        nonlocal offset
        if action_noise_rad <= 0.0:
            return action.joint_positions
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
        seed=int(seed))
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
                       image_width=width, with_wrench=True)


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
            'state': 'measured arm joint positions (rad) + gripper finger position (m)',
            'action': 'expert command: arm joint position targets (rad) + gripper target (m)',
        })
        summary = RecordSummary(output=Path(output), kept=0, failed=0, frames=0)
        seeds = range(config.first_seed, config.first_seed + config.episodes)
        for seed in progress(seeds, total=config.episodes, desc='recording'):
            episode, success, why = record_episode(
                world, expert, seed, config.cameras, config.linger_s, config.action_noise_rad,
                config.noise_correlation_s)
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
                    robot: str = 'fanuc_lrmate200id', replan_every: int = 5,
                    blend: str = 'replace', threads: int = 1) -> EvalResult:
    """Closed-loop success of an ONNX policy run through ``PolicyRuntime`` in a SimWorld.

    Every `replan_every` control steps the cameras are rendered, the runtime builds the inputs
    from the raw frames / joint state / instruction and returns an action chunk, which goes into
    an ``ActionQueue`` (strategy `blend`); every step the queue's action for the current sim time
    is commanded (joint position targets + gripper), as the policy node does. An episode ends
    when the task checker says success or failure (including its timeout).
    """
    from noetra_ros.core.policy.chunking import ActionQueue, BlendConfig
    from noetra_ros.core.policy.preprocess import ImageFrame
    from noetra_ros.core.policy.runtime import PolicyRuntime

    if not isinstance(replan_every, int) or replan_every < 1:
        raise ConfigError(f'replan_every={replan_every!r}: must be an integer >= 1')
    start = time.monotonic()
    world, expert = make_world_and_expert(robot)
    expert.close()
    runtime = PolicyRuntime(model_path, intra_op_threads=threads)
    runtime.validate_robot(world.joint_names, has_gripper=True)
    contract = runtime.contract
    action_spec = contract.action
    if replan_every > action_spec.chunk_length:
        raise ConfigError(f'replan_every={replan_every}: must be <= the chunk length '
                          f'{action_spec.chunk_length}')
    joint_names = world.joint_names
    result = EvalResult(f'policy {Path(model_path).name} (replan every {replan_every}, {blend})',
                        list(seeds), [], [], [])
    try:
        for seed in progress(list(seeds), desc='policy'):
            episode = world.reset(seed)
            queue = ActionQueue(BlendConfig(strategy=blend, blend_window_s=0.1))
            step = 0
            while True:
                now = world.sim_time
                if step % replan_every == 0:
                    positions = world.joint_state()[0][:len(joint_names)]
                    frames = {}
                    for cam in contract.cameras:
                        image = world.render(cam)
                        frames[cam] = ImageFrame(image, image.shape[1], image.shape[0], 'rgb8')
                    inputs = runtime.build_inputs(
                        frames, dict(zip(joint_names, positions.tolist())),
                        gripper_position=world.gripper_position(),
                        instruction=episode.instruction)
                    chunk = runtime.infer(inputs)
                    queue.add(chunk.values, stamp=now, step_period_s=chunk.step_period_s,
                              now=now)
                action = queue.action_at(now)
                if action is not None:
                    parts = action_spec.split(action)
                    order = [parts.joint_names.index(n) for n in joint_names]
                    world.command_positions(np.asarray(parts.joint_positions)[order])
                    world.command_gripper(float(parts.gripper_position))
                world.step()
                step += 1
                status = world.task_status()
                if status.done:
                    break
            result.successes.append(bool(status.success))
            result.explanations.append(status.explanation)
            result.sim_times.append(float(world.sim_time))
    finally:
        runtime.close()
        world.close()
    result.wall_time_s = time.monotonic() - start
    return result
