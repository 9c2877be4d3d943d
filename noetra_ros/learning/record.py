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

The closed-loop evaluation (`evaluate_policy`, `PolicyDriver`) runs a cell's graph in process:
the cell file gives the world, the episode limit, the policy loop settings and the safety
node's settings, the loop is policy_node's own (core/policy/loop.py) and every command passes
safety_node's own supervision (core/safety/cell.py) before it reaches the world, so its figures
include the supervisor as `noetra eval` figures do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from noetra_ros.core import phrasing as phrasings
from noetra_ros.core.episodes import DEFAULT_EPISODE_TIMEOUT_S, DEFAULT_RESET_PAUSE_S
from noetra_ros.core.errors import ConfigError, InputError, UnknownNameError
from noetra_ros.core.policy.loop import (Command, DEFAULTS as LOOP_DEFAULTS, Inference,
                                         LoopConfig)
from noetra_ros.core.safety.cell import (ArmCommand, ArmPositions, ArmTrajectory, CellOutput,
                                         LOCKSTEP_INPUTS, MeasuredJoints, SafetyCell,
                                         SafetyNodeSettings)
from noetra_ros.core.safety.supervisor import SafetySupervisor
from noetra_ros.core.sim.lighting import CONDITIONS as LIGHTING_CONDITIONS, lighting_condition
from noetra_ros.core.sim.privileged import (environment_names,
                                            environment_state as target_environment_state)
from noetra_ros.learning.dataset import DatasetSpec, DatasetWriter, Episode, progress

GRIPPER_STATE_NAME = 'gripper_position'
# The policy's views: the workspace camera (zoomed on the pick area) and the wrist camera.
DEFAULT_CAMERAS = ('workspace_camera', 'wrist_camera')
# The cell whose graph the in-process evaluation reproduces by default: the shipped policy's.
DEFAULT_EVAL_CELL = 'pick_place_lrmate_policy'
# Outside RecordConfig.noise_phases the injected offset shrinks by this factor per control step
# (to 1 % in about 0.5 s at 20 Hz): the arm converges back onto the expert's path smoothly.
NOISE_DECAY_PER_STEP = 0.8
# What the in-process evaluation does with each safety node parameter (SafetyNodeSettings). A
# test checks that every parameter is listed, so a new one is decided on, not forgotten.
SAFETY_SETTINGS_IN_PROCESS = {
    'robot': 'applied; must be the sim\'s robot',
    'profile': 'applied; must be named in the cell',
    'period_s': 'applied; must be named in the cell',
    'update_trigger': "must be 'command': one cycle per lockstep step",
    'lockstep_inputs': f'must be {list(LOCKSTEP_INPUTS)}: the step takes both commands',
    'arm_on_start': 'applied',
    'auto_arm': 'applied',
    'controller_joints': 'applied: a position command is read in this order',
    'watched_sensors': 'must be empty: no sensor stream to watch in process',
    'mobile_base': 'must be false: the world has no base',
    'watchdog_hz': 'unused: the watchdog runs only with update_trigger joint_states',
    'joint_states_qos': 'unused: DDS transport only',
    'driver_joint_names': 'applied: the world\'s joint states reach the cell in these names',
    'joint_name_prefix': 'applied, with driver_joint_names',
    'driver': "must be 'ros2_control': the in-process world is stepped directly (lockstep)",
    'driver_output': 'unused: the cell output goes to the world directly',
    'driver_namespace': 'unused: DDS names only',
    'point_queue_segment_s': 'unused: point_queue output only',
    'judge_only': 'must be false: the evaluation runs the supervisor that drives (docs/SHADOW.md)',
    'judge_reanchor_rad': 'unused: judge_only only',
}


# The instruction as the sim's task gives it (sim/task.py's template): the in-distribution
# phrasing of every evaluation.
TEMPLATE_PHRASING = 'template'
# Mixed into an episode's seed for its phrasing draw (issue 15): one stream per seed, apart from
# the scene's default_rng(seed), so an episode's instruction depends on its seed alone.
PHRASING_STREAM = 15


def parse_phrasing(text: str) -> tuple[str, str | None] | None:
    """An evaluation phrasing: 'template' -> None (the task's own text); '<split>' or
    '<split>:<language>' -> (split, language or None = any), split in core/phrasing.SPLITS,
    language in LANGUAGES. UnknownNameError naming the part that is wrong."""
    if text == TEMPLATE_PHRASING:
        return None
    split, _, language = str(text).partition(':')
    if split not in phrasings.SPLITS:
        raise UnknownNameError(
            f'phrasing {text!r}: {split!r} is not a phrasing split; allowed: '
            f'{TEMPLATE_PHRASING}, ' + ', '.join(phrasings.SPLITS)
            + ' (optionally :' + '|'.join(phrasings.LANGUAGES) + ')')
    if ':' in str(text) and language not in phrasings.LANGUAGES:
        raise UnknownNameError(f'phrasing {text!r}: language {language!r} is not one of '
                               + ', '.join(phrasings.LANGUAGES))
    return split, (language or None)


def episode_instruction(template_instruction: str, seed: int, phrasing: str) -> str:
    """What an evaluation episode with `seed` is told under `phrasing` (parse_phrasing): the
    task's template text itself, or a phrasing of the same task drawn from the split with a
    generator seeded by (seed, PHRASING_STREAM) - the same text for the same seed every time,
    whatever other episodes run."""
    choice = parse_phrasing(phrasing)
    if choice is None:
        return template_instruction
    split, language = choice
    words = phrasings.parse_template_instruction(template_instruction)
    return phrasings.sample_phrasing(words, np.random.default_rng([int(seed), PHRASING_STREAM]),
                                     split, language)


def header_stamp(seconds: float) -> float:
    """`seconds` as a header stamp carries it (whole nanoseconds), read back as the nodes read
    it: the arithmetic of ros_conversions.seconds_to_stamp / stamp_to_seconds, so that the
    in-process loop and supervisor compute with the same floats as the graph's nodes."""
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return sec + nanosec * 1e-9


def cell_stamp(world_time: float, control_hz: float) -> float:
    """The stamp the cell's nodes see for `world_time` (SimWorld seconds since the reset) in
    the first episode of a graph run: sim_node starts an episode one control period after its
    last published step, so a run's first stamp is one period (never the zero stamp the
    supervisor refuses as unset)."""
    return header_stamp(1.0 / control_hz + world_time)  # sim_node: offset + sim time


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


@dataclass(frozen=True)
class EvalSettings:
    """What the in-process evaluation takes from a cell file, so that it runs the cell's graph
    (`noetra eval <cell>`, lockstep) without ROS: the sim's world (robot, rates, camera sizes,
    episode limit), the policy node's loop settings and the safety node's supervisor settings.

    Read by `from_cell`; every value a cell does not set keeps the default the node would use
    (loop settings: core/policy/loop.LoopConfig; safety node: SafetyNodeSettings in
    core/safety/cell.py; episode limit: core/episodes.DEFAULT_EPISODE_TIMEOUT_S; world rates:
    WorldConfig). The safety node's `profile` and `period_s` must be named in the cell: they
    define the limits in force.
    """

    cell: str
    robot: str
    episode_timeout_s: float
    safety: SafetyNodeSettings
    loop: LoopConfig = LOOP_DEFAULTS
    # The policy node's allow_other_embodiment: a model trained for another arm runs only when
    # the cell says so (logged), in process as on the node.
    allow_other_embodiment: bool = False
    reset_pause_s: float = DEFAULT_RESET_PAUSE_S
    # sim parameters the world is built from (control_hz, physics_hz, command_timeout_s) and
    # the cameras as (name, width, height)
    world_parameters: tuple[tuple[str, Any], ...] = ()
    cameras: tuple[tuple[str, int, int], ...] = ()
    # Evaluation conditions (issue 15): the cameras' light, a named condition of
    # core/sim/lighting.CONDITIONS, and how each episode's instruction is phrased
    # (parse_phrasing: 'template' = the task's own text).
    lighting: str = 'default'
    phrasing: str = TEMPLATE_PHRASING

    def __post_init__(self) -> None:
        if not (math.isfinite(self.episode_timeout_s) and self.episode_timeout_s > 0):
            raise ConfigError(f'episode_timeout_s={self.episode_timeout_s!r}: must be > 0')
        if not (math.isfinite(self.reset_pause_s) and self.reset_pause_s >= 0):
            raise ConfigError(f'reset_pause_s={self.reset_pause_s!r}: must be >= 0')
        if self.lighting not in LIGHTING_CONDITIONS:
            raise UnknownNameError(f'EvalSettings.lighting: {self.lighting!r} is not a lighting '
                                   f'condition; allowed: {", ".join(LIGHTING_CONDITIONS)}')
        try:
            parse_phrasing(self.phrasing)
        except UnknownNameError as exc:
            raise UnknownNameError(f'EvalSettings.phrasing: {exc}') from None

    def instruction(self, template_instruction: str, seed: int) -> str:
        """The instruction the episode with `seed` is given (episode_instruction)."""
        return episode_instruction(template_instruction, seed, self.phrasing)

    @classmethod
    def from_cell(cls, cell: str = DEFAULT_EVAL_CELL, *, episode_timeout_s: float | None = None,
                  policy: Mapping[str, Any] | None = None, lighting: str | None = None,
                  phrasing: str = TEMPLATE_PHRASING) -> 'EvalSettings':
        """The settings of `cell` (a name in config/cells or a path). `episode_timeout_s`
        replaces the cell's episode limit, `policy` replaces policy node parameters (e.g.
        {'replan_steps': 1}), `lighting` the sim node's lighting condition (default: the
        cell's, else 'default'); `phrasing` chooses the episodes' instructions (parse_phrasing);
        anything else is changed in the cell file itself."""
        from noetra_ros.bringup import load_cell

        spec = load_cell(cell, None)

        def node(executable: str) -> Mapping[str, Any]:
            found = [n for n in spec.nodes if n.executable == executable]
            if len(found) != 1:
                raise ConfigError(f'cell {spec.name!r}: the in-process evaluation needs exactly '
                                  f'one {executable}, the cell has {len(found)}')
            return found[0].parameters

        sim, safety_params = node('sim_node'), node('safety_node')
        policy_params = dict(node('policy_node'), **(policy or {}))
        robot = sim.get('robot', spec.robot)
        if policy_params.get('robot', robot) != robot:
            raise ConfigError(f'cell {spec.name!r}: the policy node runs robot '
                              f'{policy_params.get("robot")!r}, the sim {robot!r}')
        # Parsed as the node parses its parameters: one definition of names and defaults.
        safety = SafetyNodeSettings.from_parameters(safety_params)
        if safety.robot != robot:
            raise ConfigError(f'cell {spec.name!r}: the safety node runs robot '
                              f'{safety.robot!r}, the sim {robot!r}')
        # The supervisor is run as safety_node runs it in a lockstep cell: one cycle per step,
        # after the step's command. A realtime trigger depends on message timing.
        if safety.update_trigger != 'command':
            raise ConfigError(f'cell {spec.name!r}: the in-process evaluation reproduces a '
                              'lockstep cell; its safety node must set update_trigger: command')
        missing = [key for key in ('profile', 'period_s') if key not in safety_params]
        if missing:
            raise ConfigError(f'cell {spec.name!r}: name the safety node\'s {missing} in the '
                              'cell (they define the limits the evaluation applies)')
        refused = [key for key, differs in (
            ('watched_sensors', bool(safety.watched_sensors)),
            ('mobile_base', safety.mobile_base),
            ('driver', safety.driver != 'ros2_control'),
            ('lockstep_inputs', sorted(safety.lockstep_inputs) != sorted(LOCKSTEP_INPUTS)),
            ('judge_only', safety.judge_only))
            if differs]
        if refused:
            key = refused[0]
            raise ConfigError(f'cell {spec.name!r}: the safety node\'s {key}='
                              f'{getattr(safety, key)!r} is not reproduced in process '
                              f'({key} {SAFETY_SETTINGS_IN_PROCESS[key]})')
        cameras = []
        for name in sim.get('cameras', ()):
            size = sim.get(name, {}) if isinstance(sim.get(name), dict) else {}
            width = size.get('width', sim.get('camera_width'))
            height = size.get('height', sim.get('camera_height'))
            if width is None or height is None:
                raise ConfigError(f'cell {spec.name!r}: give camera {name!r} its size in the '
                                  f'sim node ({name}: {{width: W, height: H}})')
            cameras.append((str(name), int(width), int(height)))
        timeout = sim.get('episode_timeout_s', DEFAULT_EPISODE_TIMEOUT_S) \
            if episode_timeout_s is None else episode_timeout_s
        return cls(
            cell=spec.name, robot=robot, episode_timeout_s=float(timeout),
            loop=LoopConfig.from_parameters(policy_params), safety=safety,
            allow_other_embodiment=bool(policy_params.get('allow_other_embodiment', False)),
            reset_pause_s=float(sim.get('reset_pause_s', DEFAULT_RESET_PAUSE_S)),
            world_parameters=tuple((key, sim[key]) for key in
                                   ('control_hz', 'physics_hz', 'command_timeout_s')
                                   if key in sim),
            cameras=tuple(cameras),
            lighting=str(sim.get('lighting', 'default')) if lighting is None else lighting,
            phrasing=phrasing)

    def world_config(self) -> Any:
        """The WorldConfig the cell's sim node builds (its cameras at the cell's sizes)."""
        from dataclasses import replace

        from noetra_ros.core.sim.world import default_cameras, WorldConfig

        defaults = {cam.name: cam for cam in default_cameras()}
        unknown = [name for name, _, _ in self.cameras if name not in defaults]
        if unknown:
            raise ConfigError(f'cell {self.cell!r}: unknown cameras {unknown} (the world has '
                              f'{sorted(defaults)})')
        cameras = tuple(replace(defaults[name], width=width, height=height)
                        for name, width, height in self.cameras) or tuple(defaults.values())
        values = dict(self.world_parameters)
        return WorldConfig(robot=self.robot, cameras=cameras,
                           episode_timeout_s=self.episode_timeout_s,
                           lighting=lighting_condition(self.lighting),
                           **{k: (float(v) if k == 'command_timeout_s' else int(v))
                              for k, v in values.items()})

    def describe(self) -> str:
        """One line: the cell and the settings that shape the result."""
        loop = self.loop
        blend = f'{loop.blend} {loop.blend_window_s} s'
        if loop.blend == 'rtc' and loop.rtc_horizon_s > 0:
            blend = f'rtc horizon {loop.rtc_horizon_s} s'
        delay = (f', inference delay {loop.inference_delay_steps} steps'
                 if loop.inference_delay_steps else '')
        return (f'cell {self.cell}: replan every {loop.replan_steps}, {blend}{delay}, '
                f'supervisor {self.safety.profile}, episode limit {self.episode_timeout_s:g} s'
                f'{self.conditions_note()}')

    def conditions_note(self) -> str:
        """', lighting X, phrasing Y': the evaluation conditions, named in every label so a
        figure never loses which conditions it was measured under."""
        return f', lighting {self.lighting}, phrasing {self.phrasing}'


class CellSafety:
    """The cell's safety_node in process: the node's own SafetyCell (core/safety/cell.py),
    given each step what the node would receive from policy_node in a lockstep cell.

    A step without a policy command runs no cycle (safety_node waits for every input of the
    step). `reset` gives an episode a cell that was never armed, as at node start (a graph
    run's first episode); evaluate_policy(as_one_run=True) keeps one across episodes, as the
    deployed node does, which then sees each reset as a jump of the arm.
    """

    def __init__(self, settings: EvalSettings) -> None:
        from noetra_ros.core.paths import config_dir
        from noetra_ros.core.robot_model import load_robot_description
        from noetra_ros.core.safety import load_profile

        self.settings = settings
        # Loaded once; `reset` builds a new cell from them.
        self._description = load_robot_description(settings.safety.robot)
        self._profile = load_profile(settings.safety.profile, config_dir('safety'))
        self.reset()

    @property
    def supervisor(self) -> SafetySupervisor:
        """The supervisor of the current cell."""
        return self.cell.supervisor

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of `CellOutput.arm`."""
        return tuple(self.supervisor.joint_names)

    def reset(self) -> None:
        """A new episode: a cell that has never been armed, as at node start."""
        self.cell = SafetyCell(self._description, self._profile, self.settings.safety)

    def _arm_message(self, command: Command) -> ArmCommand:
        """The arm command as policy_node publishes it and safety_node reads it back."""
        if self.settings.loop.command_interface == 'trajectory':
            times = [(ns // 1_000_000_000) + (ns % 1_000_000_000) * 1e-9
                     for ns in command.times_from_start_ns]  # as a Duration reads back
            return ArmTrajectory(list(command.joint_names), times,
                                 [list(row) for row in command.positions], None, command.stamp)
        # A Float64MultiArray: the values only, in the policy's joint order.
        return ArmPositions(list(command.positions[0]))

    def step(self, names: Sequence[str], positions: Sequence[float],
             velocities: Sequence[float] | None, stamp: float,
             command: Command | None) -> CellOutput | None:
        """One lockstep step at `stamp`: the measured joint state and the policy's command in,
        what the robot is sent out (None: no cycle, the robot keeps its last targets)."""
        if command is None:
            return None
        gripper = None if command.gripper_position is None else [command.gripper_position]
        # The world speaks the description's names; the cell reads the driver's (as sim_node
        # publishes them with the same driver_joint_names).
        driver_names = self.cell.names.to_driver(names)
        return self.cell.step(MeasuredJoints(driver_names, positions, velocities, stamp),
                              self._arm_message(command), gripper, stamp)


@dataclass(frozen=True)
class DriverStep:
    """One control step of the in-process cell: the policy's command and what reached the
    robot through the supervisor (`sent` None: no cycle ran, the robot kept its targets);
    `inference`: the chunk queued in this step, if one was."""

    command: Command | None
    sent: CellOutput | None
    inference: Inference | None = None


class PolicyDriver:
    """A cell's policy node and safety node acting on a SimWorld in process, step for step as
    the lockstep graph runs them: core/policy/loop.PolicyLoop turns the world's observation into
    commands (the same loop policy_node runs, configured from the cell), and every command goes
    through the cell's supervisor (CellSafety) before it reaches the world.

    (Tried and dropped: letting it drive the arm while the scripted expert labels the states
    it reaches, DAgger-style. The expert follows its own timed plan, so its labels drifted
    0.4 rad (median) from the policy-driven arm; they need an expert that replans from the
    measured state.)"""

    def __init__(self, model_path: str | Path, settings: EvalSettings | None = None,
                 threads: int = 1) -> None:
        import logging

        from noetra_ros.core.policy.loop import PolicyLoop
        from noetra_ros.core.policy.runtime import PolicyRuntime
        from noetra_ros.core.robots import robot_spec

        self.settings = settings or EvalSettings.from_cell()
        self.runtime = PolicyRuntime(model_path, intra_op_threads=threads)
        try:
            joint_names = robot_spec(self.settings.robot).joint_names
            self.runtime.validate_robot(joint_names, has_gripper=True, has_wrench=True)
            # The cell's robot and allow_other_embodiment, as policy_node checks them.
            embodiment_note = self.runtime.validate_embodiment(
                self.settings.robot,
                allow_other_embodiment=self.settings.allow_other_embodiment)
            if embodiment_note:
                logging.getLogger(__name__).warning(embodiment_note)
            self.loop = PolicyLoop(self.runtime, joint_names, self.settings.loop)
            self.safety = CellSafety(self.settings)
        except Exception:
            self.runtime.close()
            raise
        self.contract = self.runtime.contract

    def reset(self) -> None:
        """A new episode (the graph's new task/instruction): nothing queued, fresh supervisor."""
        self.loop.reset()
        self.safety.reset()

    def act(self, world: Any, instruction: str, stamp: float | None = None) -> DriverStep:
        """One control step at world.sim_time, stamped `stamp` (default: as a graph run's
        first episode stamps it, `cell_stamp`): observe (cameras are rendered only when the loop
        infers), run the loop, pass its command through the supervisor and command the world
        with what the supervisor sends (the caller then steps the world).

        Raises InputError / InferenceError when the observation cannot be turned into model
        inputs or the model fails: an evaluation stops and says why instead of counting it.
        """
        from noetra_ros.core.errors import InferenceError
        from noetra_ros.core.images import render_colour_and_depth
        from noetra_ros.core.policy.contract import depth_source
        from noetra_ros.core.policy.loop import INPUT_ERRORS, Observation
        from noetra_ros.core.policy.preprocess import ImageFrame

        t = cell_stamp(world.sim_time, world.config.control_hz) if stamp is None else stamp
        positions, velocities, _ = world.joint_state()
        names = tuple(world.joint_names) + tuple(world.gripper_joint_names)
        measured = dict(zip(names, (float(v) for v in positions)))

        def observe() -> Observation:
            images = {}
            for cam in dict.fromkeys(self.loop.cameras + self.contract.depth_cameras):
                if cam in self.contract.depth_cameras:
                    # As sim_node publishes it (depth_cameras): one rendering gives both, so
                    # graph and in-process runs feed the policy the same capture.
                    pixels, depth_mm = render_colour_and_depth(world, cam)
                    images[depth_source(cam)] = ImageFrame(
                        depth_mm, depth_mm.shape[1], depth_mm.shape[0], '16UC1')
                else:
                    pixels = world.render(cam)
                images[cam] = ImageFrame(pixels, pixels.shape[1], pixels.shape[0], 'rgb8')
            fingers = [measured[j] for j in world.gripper_joint_names]
            return Observation(
                stamp=t, joint_positions=measured, images=images, instruction=instruction,
                gripper_position=float(np.mean(fingers)) if fingers else None,
                wrench=world.wrench() if self.loop.uses_wrench else None)

        result = self.loop.step(t, observe)
        for problem in result.problems:
            if problem.kind == INPUT_ERRORS:
                raise InputError(problem.reason)
            if problem.kind != 'no_command_stale':
                raise InferenceError(problem.reason)
        sent = self.safety.step(names, positions, velocities, t, result.command)
        if sent is not None:
            if sent.arm is not None:
                order = [self.safety.joint_names.index(j) for j in world.joint_names]
                world.command_positions(sent.arm[order])
            if sent.gripper is not None:
                world.command_gripper(sent.gripper)
        return DriverStep(result.command, sent, result.inference)

    def close(self) -> None:
        self.runtime.close()


def record_episode(world: Any, expert: Any, seed: int, cameras: Sequence[str],
                   linger_s: float = 1.0, action_noise_rad: float = 0.0,
                   noise_correlation_s: float = 0.5,
                   noise_phases: Sequence[str] = ()) -> tuple[Episode, bool, str]:
    """Run one expert episode for `seed` and return (episode, success, explanation).

    Runs ``noetra_ros.core.expert.run_episode`` with a recorder attached; frame t holds the
    observation before the t-th command and that command as its action. With
    `action_noise_rad` > 0 the executed arm command gets an Ornstein-Uhlenbeck offset of that
    stationary std (correlation time `noise_correlation_s`, seeded by `seed`); the stored
    action stays the expert's.
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


def make_world_and_expert(robot: str, world_config: Any = None) -> tuple[Any, Any]:
    """A SimWorld (default cell and cameras unless `world_config` is given) plus a
    ScriptedExpert at its control rate."""
    from noetra_ros.core.expert import ScriptedExpert
    from noetra_ros.core.sim.world import SimWorld, WorldConfig

    world = SimWorld(world_config if world_config is not None else WorldConfig(robot=robot))
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
    # Per episode, the supervisor's intervention counters at its end (policy runs only).
    interventions: list[dict[str, int]] = field(default_factory=list)
    # Per episode, the instruction the policy was given (policy runs only): the task's template
    # text or, under an EvalSettings.phrasing, the phrasing drawn for the seed.
    instructions: list[str] = field(default_factory=list)

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


def evaluation_json_row(result: 'EvalResult', settings: 'EvalSettings') -> dict[str, Any]:
    """One result as `evalcheck --json` writes it (serial and on Ray workers alike)."""
    return {'label': result.label, 'cell': settings.cell,
            'episode_timeout_s': settings.episode_timeout_s, 'seeds': result.seeds,
            'successes': result.successes, 'explanations': result.explanations,
            'sim_times': result.sim_times, 'success_rate': result.success_rate,
            'wall_time_s': result.wall_time_s, 'interventions': result.interventions,
            'lighting': settings.lighting, 'phrasing': settings.phrasing,
            'instructions': result.instructions}


def evaluate_expert(seeds: Sequence[int], robot: str = 'fanuc_lrmate200id',
                    world_config: Any = None) -> EvalResult:
    """The scripted expert's success on `seeds` (the reference the policy is compared with),
    in `world_config` (default: the robot's default world)."""
    from noetra_ros.core.expert import run_episode

    start = time.monotonic()
    world, expert = make_world_and_expert(robot, world_config)
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
                    settings: EvalSettings | None = None, threads: int = 1,
                    on_step: Callable[[int, Any, Any], None] | None = None,
                    as_one_run: bool = False,
                    on_act: Callable[[int, DriverStep], None] | None = None) -> EvalResult:
    """Closed-loop success of an ONNX policy in a SimWorld, as the cell's graph runs it.

    `settings` (default: the shipped policy cell, EvalSettings.from_cell()) gives the world,
    the episode limit, the loop and the supervisor. Every control step the PolicyDriver runs
    the policy loop (a new chunk every `replan_steps` steps, blended in the ActionQueue) and
    sends its command through the cell's SafetySupervisor to the world, joint targets and
    gripper, exactly as policy_node -> safety_node -> sim_node do in lockstep; so the success
    figures include the supervisor. An episode ends when the task checker says success or
    failure (including the episode limit). `on_step(seed, world, status)` sees every step
    of an episode after the task check (for analysis tools; it must not change the world);
    `status.done` marks an episode's last step. `on_act(seed, driver_step)` sees what each
    control step of an episode commanded: the loop's command and what the supervisor sent.
    The world is lit as `settings.lighting` names; each episode's instruction is
    `settings.instruction(task text, seed)` (the task's own text unless `settings.phrasing`
    says otherwise) and is recorded in `EvalResult.instructions`.

    Every episode runs as the first episode of a graph run does (a supervisor that was never
    armed, the run's first stamps), so its result does not depend on the seeds before it.
    `as_one_run` runs the seeds as one `noetra eval` run does instead: one supervisor for all
    of them (a reset teleports the arm: a tracking fault that auto_arm clears), the sim's
    reset pause between episodes with the nodes still acting on the finished scene, and a cell
    clock that runs on; the results are then those of that run, episode for episode.
    """
    from noetra_ros.core.sim.world import SimWorld

    start = time.monotonic()
    driver = PolicyDriver(model_path, settings, threads)
    settings = driver.settings
    try:
        world = SimWorld(settings.world_config())
    except Exception:
        driver.close()
        raise
    label = f'policy {Path(model_path).name} ({settings.describe()}' + (
        ', one run)' if as_one_run else ')')
    result = EvalResult(label, list(seeds), [], [], [])
    period = 1.0 / world.config.control_hz
    last_published = 0.0  # cell time of the last observation (sim_node._last_published)

    def act(offset: float, instruction: str, seed: int | None = None) -> None:
        nonlocal last_published
        now = offset + world.sim_time  # sim_node's cell time: offset + world time
        step = driver.act(world, instruction, header_stamp(now))
        if on_act is not None and seed is not None:
            on_act(seed, step)
        last_published = now
        world.step()

    try:
        for index, seed in enumerate(progress(list(seeds), desc='policy')):
            episode = world.reset(seed)
            instruction = settings.instruction(episode.instruction, seed)
            result.instructions.append(instruction)
            if as_one_run and index > 0:
                driver.loop.reset()  # the new task/instruction; the supervisor carries on
                offset = last_published + period - world.sim_time
            else:
                driver.reset()
                offset = period - world.sim_time  # a run's first episode
            while True:
                act(offset, instruction, seed)
                status = world.task_status()
                if on_step is not None:
                    on_step(seed, world, status)
                if status.done:
                    break
            result.successes.append(bool(status.success))
            result.explanations.append(status.explanation)
            result.sim_times.append(float(world.sim_time))
            result.interventions.append(dict(driver.safety.supervisor.counters))
            if as_one_run and index + 1 < len(seeds):
                # sim_node holds the finished scene for reset_pause_s (EpisodeSchedule.reset_due)
                # while the policy and the supervisor keep answering every step.
                ended = offset + world.sim_time
                while offset + world.sim_time - ended < settings.reset_pause_s:
                    act(offset, instruction)
    finally:
        driver.close()
        world.close()
    result.wall_time_s = time.monotonic() - start
    return result
