"""The policy loop: aligned observations in, action chunks queued, one command per control time.

This is the one place that decides when to infer, runs the runtime, queues the chunk and samples
the queue. Its users only move data in and out:

* policy_node, lockstep mode: every joint_states message is one `step(stamp, observe)`;
* policy_node, async mode: the inference thread calls `plan(observe, now)` whenever a fresh
  observation is there and the control timer calls `command_at(now)`;
* the in-process evaluation (learning/record.PolicyDriver): one `step` per simulated control
  period, the same call lockstep policy_node makes, so a seeded episode sees the same commands.

`inference_delay_steps` > 0 makes `step` behave as an asynchronous node whose inference takes
that many control periods, deterministically: a chunk planned at step t from the observation
of t is queued at step t + delay (stamped with its observation, as `plan` stamps it), the queue
keeps commanding from the earlier chunks meanwhile, and only one inference is in flight, so the
next one starts when it has landed (a new chunk every max(replan_steps, delay) steps). Nothing
sleeps: the results do not depend on the machine's load. `plan` (async mode) ignores it; there
the delay is the real one.

Defaults live in `LoopConfig` only (policy_node declares its parameters from it; the evaluation
reads the cell file), so the two paths cannot drift apart.

A problem (stale inputs, an input that cannot be converted, a failed inference, nothing queued
for now) is returned as a `Problem` with a counter name and a reason, never raised from
`step` / `plan` / `command_at`: the caller publishes nothing for that step and says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import time
import threading
from typing import Callable, Mapping, Sequence

import numpy as np

from noetra_ros.core.errors import ConfigError, InputError, NoetraError
from noetra_ros.core.policy.chunking import ActionQueue, BLEND_STRATEGIES, BlendConfig
from noetra_ros.core.policy.preprocess import ImageFrame
from noetra_ros.core.policy.runtime import PolicyRuntime

# Problem kinds: the names are the counters policy_node reports in its diagnostics.
NO_COMMAND_STALE = 'no_command_stale'
INPUT_ERRORS = 'input_errors'
INFERENCE_ERRORS = 'inference_errors'
NON_FINITE_BLOCKED = 'non_finite_blocked'
PROBLEM_KINDS = (NO_COMMAND_STALE, INPUT_ERRORS, INFERENCE_ERRORS, NON_FINITE_BLOCKED)
# How a command is sent: a JointTrajectory of `trajectory_points` future points, or the first
# point alone as a forward position command.
COMMAND_INTERFACES = ('trajectory', 'position')


@dataclass(frozen=True)
class LoopConfig:
    """How chunks become commands; the defaults are those of the shipped policy cell.

    replan_steps: in a lockstep step, infer when this many steps have passed since the last
    chunk (or when nothing is queued for now); async inference ignores it. blend /
    blend_window_s / ensemble_coeff / rtc_horizon_s: see chunking.BlendConfig.
    trajectory_points: future rows per command (a JointTrajectory's points).
    command_interface: one of COMMAND_INTERFACES. inference_delay_steps: lockstep only, the
    emulated inference time in control steps (module docstring); 0 = a chunk is used in the
    step whose observation it was computed from.
    """

    # The setting the shipped model was evaluated with (models/MODEL_CARD.md): a new chunk
    # every 2 steps, ACT temporal ensembling of the overlapping chunks, 0.1 s fades.
    replan_steps: int = 2
    blend: str = 'ensemble'
    blend_window_s: float = 0.1
    ensemble_coeff: float = 0.01
    trajectory_points: int = 3
    command_interface: str = 'trajectory'
    inference_delay_steps: int = 0
    rtc_horizon_s: float = 0.0

    def __post_init__(self) -> None:
        for name, least in (('replan_steps', 1), ('trajectory_points', 1),
                            ('inference_delay_steps', 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f'{name}={value!r}: must be an integer >= {least}')
        if self.blend not in BLEND_STRATEGIES:
            raise ConfigError(f'blend={self.blend!r}: must be one of {BLEND_STRATEGIES}')
        if self.command_interface not in COMMAND_INTERFACES:
            raise ConfigError(f'command_interface={self.command_interface!r}: must be one of '
                              f'{COMMAND_INTERFACES}')
        self.blend_config()  # checks the window and the coefficient

    def blend_config(self) -> BlendConfig:
        """The ActionQueue configuration."""
        return BlendConfig(strategy=self.blend, blend_window_s=self.blend_window_s,
                           ensemble_coeff=self.ensemble_coeff, rtc_horizon_s=self.rtc_horizon_s)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> 'LoopConfig':
        """From policy_node parameters (or a cell file's policy node): keys it does not name
        keep their defaults, so a cell and this class agree on every value it leaves out."""
        values: dict[str, object] = {name: parameters[name]
                                     for name in cls.__dataclass_fields__ if name in parameters}
        for name in ('blend_window_s', 'ensemble_coeff', 'rtc_horizon_s'):
            value = values.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                values[name] = float(value)  # YAML `0` is an int
        return cls(**values)  # type: ignore[arg-type]


DEFAULTS = LoopConfig()


@dataclass(frozen=True)
class Observation:
    """One aligned observation: every input carries the stamp of `stamp` (seconds).

    joint_positions: measured positions by joint name (extra joints are ignored).
    gripper_position: finger position (m), None when the robot reports none. wrench: force /
    torque (6 values), needed only by contracts that use it. received: wall-clock receipt
    (time.perf_counter) of the newest input, for latency figures only.
    """

    stamp: float
    joint_positions: Mapping[str, float]
    images: Mapping[str, ImageFrame]
    instruction: str
    gripper_position: float | None = None
    wrench: Sequence[float] | None = None
    received: float = math.nan
    # Header stamp (s) of each input the observation was built from, by source ('joints', a
    # camera, a depth topic, 'wrench'): the audit trail's "computed from" (core/audit.py).
    input_stamps: Mapping[str, float] = field(default_factory=dict)


class NoFreshInputs(InputError):
    """Raised by an `observe` callable when no aligned, fresh observation exists (counted as
    no_command_stale: nothing is wrong with the data, there is just none to act on)."""


@dataclass(frozen=True)
class Problem:
    """Why a step gave no new chunk or no command: `kind` is one of PROBLEM_KINDS."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Command:
    """What to send for control time `stamp`.

    positions (K, J): row i is the blended action for stamp + i * period, in `joint_names`
    order; it is to be reached i + 1 periods after `stamp` (`times_from_start_ns`, whole
    nanoseconds as a JointTrajectoryPoint carries them), so row 0 is the position target of
    the coming period. gripper_position: the gripper target for the coming period, or None
    when the model does not command the gripper.
    """

    stamp: float
    joint_names: tuple[str, ...]
    positions: np.ndarray
    times_from_start_ns: tuple[int, ...]
    gripper_position: float | None
    # (oldest, newest) observation stamps of the chunks that shaped it (ActionQueue.
    # observation_span); None when unknown.
    observations: tuple[float, float] | None = None


@dataclass(frozen=True)
class Inference:
    """One chunk that went into the queue."""

    stamp: float
    inference_time_s: float
    preprocess_time_s: float
    received: float
    unknown_words: tuple[str, ...] = ()
    input_stamps: Mapping[str, float] = field(default_factory=dict)  # Observation's
    # time.perf_counter() when the chunk went into the queue (same clock as `received`).
    queued: float = 0.0


@dataclass(frozen=True)
class _Planned:
    """A chunk inferred and not yet queued: its rows (in the loop's column order), the
    observation it came from, the inference figures and the epoch it was planned in."""

    values: np.ndarray
    step_period_s: float
    observation: Observation
    inference_time_s: float
    preprocess_time_s: float
    unknown_words: tuple[str, ...]
    epoch: int


@dataclass(frozen=True)
class LoopResult:
    """What one call did: the command (if any), the chunk queued (if any), the problems."""

    command: Command | None = None
    inference: Inference | None = None
    problems: tuple[Problem, ...] = field(default_factory=tuple)


class PolicyLoop:
    """Turns observations into queued chunks and commands for one model and one robot.

    `runtime` stays owned by the caller (the loop never closes it). Thread-safe: in async mode
    one thread plans while another takes commands; `reset` may come from a third.
    """

    def __init__(self, runtime: PolicyRuntime, joint_names: Sequence[str],
                 config: LoopConfig = DEFAULTS) -> None:
        """Raises ConfigError when the model does not output joint position targets (the loop
        commands positions; a velocity policy needs another command path)."""
        self.runtime = runtime
        self.config = config
        self.joint_names = tuple(joint_names)
        action = runtime.contract.action
        positions = action.component('joint_positions')
        if positions is None:
            raise ConfigError(f'{runtime.model_path.name}: the policy loop commands joint '
                              'position targets; this model outputs none')
        missing = [j for j in self.joint_names if j not in positions.joints]
        if missing:
            raise ConfigError(f'{runtime.model_path.name}: the action has no joint_positions '
                              f'column for {missing}')
        # Fixed by the contract: the action's joint order onto `joint_names`, once.
        self._columns = [list(positions.joints).index(j) for j in self.joint_names]
        self.uses_gripper = action.component('gripper_position') is not None
        self.uses_wrench = runtime.contract.uses_wrench
        self.cameras = tuple(runtime.contract.cameras)
        self.period = float(action.step_period_s)
        self._times_ns = tuple(int(round((i + 1) * self.period * 1e9))
                               for i in range(config.trajectory_points))
        self.queue = ActionQueue(config.blend_config())
        # Real-time chunking inside denoising (a multi-graph model whose denoise stage has
        # inpaint_prefix): the queue's rows in the contract's action columns, possible when every
        # column is a joint position of ours or the gripper.
        loop_columns = {f'joint_positions.{j}': i for i, j in enumerate(self.joint_names)}
        if self.uses_gripper:
            loop_columns['gripper_position'] = len(self.joint_names)
        self._prefix_columns = [loop_columns.get(c, -1) for c in action.columns]
        self._inpaints = bool(getattr(runtime, 'accepts_prefix', False)) and \
            -1 not in self._prefix_columns
        self._denoises = any(stage.kind == 'denoise' for stage in runtime.contract.pipeline)
        # Async: the rows that run during an inference are those of its measured duration.
        self._measured_delay_steps = 1
        self._lock = threading.Lock()
        self._steps_since_plan = 0
        # inference_delay_steps > 0: the chunk whose emulated inference is in flight.
        self._pending: _Planned | None = None
        # Bumped by reset(): a chunk planned from an observation of an earlier epoch (the
        # previous task) is dropped even when its inference finishes after the reset.
        self._epoch = 0

    # ------------------------------------------------------------------ episode
    def reset(self) -> None:
        """A new task: forget every queued chunk and restart replanning in phase, so each
        episode starts from the same loop state. Chunks still being inferred are dropped."""
        with self._lock:
            self._epoch += 1
            self._steps_since_plan = 0
            self._pending = None
            self.queue.clear()

    def discard_plans(self) -> None:
        """Drop the queued chunks (their inputs went stale), keeping the replanning phase."""
        with self._lock:
            self._epoch += 1
            self._pending = None
            self.queue.clear()

    # ------------------------------------------------------------------ planning
    def plan(self, observe: Callable[[], Observation], now: float) -> LoopResult:
        """Infer one chunk from `observe()` and queue it, stamped with the observation.

        `now` is when the chunk becomes available on the command clock (lockstep: the step's
        stamp; async: the node clock when the observation was taken).
        """
        planned = self._infer(observe)
        if isinstance(planned, LoopResult):
            return planned
        return self._enqueue(planned, now)

    def _known_prefix(self, stamp: float) -> np.ndarray | None:
        """Real-time chunking inside denoising: the rows the robot will execute while this
        inference runs (the queue's actions at stamp + k * period, k < the inference delay),
        in the contract's action columns, for a model whose denoise stage inpaints them
        (core/policy/pipeline.py). None when the model does not inpaint, the blend is not rtc,
        or nothing is queued for the observation's time."""
        if not self._inpaints or self.config.blend != 'rtc':
            return None
        steps = self.config.inference_delay_steps or self._measured_delay_steps
        rows = []
        for k in range(min(steps, self.runtime.contract.action.chunk_length)):
            row = self.queue.action_at(stamp + k * self.period)
            if row is None:
                break
            rows.append(row[self._prefix_columns])
        return np.asarray(rows) if rows else None

    def _infer(self, observe: Callable[[], Observation]) -> _Planned | LoopResult:
        """Observe and infer; the chunk (not queued yet) or the problem that stopped it."""
        with self._lock:
            epoch = self._epoch
        try:
            observation = observe()
        except NoFreshInputs as exc:
            return LoopResult(problems=(Problem(NO_COMMAND_STALE, str(exc)),))
        except (InputError, KeyError) as exc:
            return LoopResult(problems=(Problem(INPUT_ERRORS,
                                                f'cannot build model inputs: {exc}'),))
        try:
            inputs = self.runtime.build_inputs(
                observation.images, observation.joint_positions,
                gripper_position=observation.gripper_position, wrench=observation.wrench,
                instruction=observation.instruction)
        except (InputError, KeyError) as exc:
            return LoopResult(problems=(Problem(INPUT_ERRORS,
                                                f'cannot build model inputs: {exc}'),))
        prefix = self._known_prefix(observation.stamp)
        try:
            chunk = self.runtime.infer(
                inputs, prefix=prefix,
                # A denoising model's noise follows its observation (lockstep runs repeat).
                noise_key=int(round(observation.stamp * 1e9)) if self._denoises else None)
        except NoetraError as exc:
            return LoopResult(problems=(Problem(INFERENCE_ERRORS, f'inference failed: {exc}'),))
        joints = chunk.joint_positions
        assert joints is not None  # checked against the contract in __init__
        columns = [joints[:, c] for c in self._columns]
        gripper = chunk.gripper_position
        if self.uses_gripper and gripper is not None:
            columns.append(gripper)
        self._measured_delay_steps = max(1, math.ceil(chunk.inference_time_s / self.period))
        return _Planned(values=np.stack(columns, axis=1), step_period_s=chunk.step_period_s,
                        observation=observation, inference_time_s=chunk.inference_time_s,
                        preprocess_time_s=inputs.preprocess_time_s,
                        unknown_words=tuple(inputs.unknown_words), epoch=epoch)

    def _enqueue(self, planned: _Planned, now: float) -> LoopResult:
        """Queue an inferred chunk, available from `now`, unless the task changed meanwhile."""
        observation = planned.observation
        with self._lock:
            if planned.epoch != self._epoch:
                return LoopResult(problems=(Problem(
                    NO_COMMAND_STALE, 'chunk dropped: the task changed or its inputs went '
                    'stale during inference'),))
            try:
                queued = self.queue.add(planned.values, observation.stamp,
                                        planned.step_period_s, now=now)
            except InputError as exc:
                return LoopResult(problems=(Problem(INFERENCE_ERRORS,
                                                    f'unusable action chunk: {exc}'),))
        if not queued:
            return LoopResult(problems=(Problem(
                NO_COMMAND_STALE, f'chunk from {observation.stamp:.3f} s had expired by '
                f'{now:.3f} s'),))
        return LoopResult(inference=Inference(
            stamp=observation.stamp, inference_time_s=planned.inference_time_s,
            preprocess_time_s=planned.preprocess_time_s, received=observation.received,
            unknown_words=planned.unknown_words,
            input_stamps=dict(observation.input_stamps), queued=time.perf_counter()))

    # ------------------------------------------------------------------ commands
    def command_at(self, t: float) -> LoopResult:
        """The command for control time `t` from the queue (no inference)."""
        rows = []
        for i in range(self.config.trajectory_points):
            row = self.queue.action_at(t + i * self.period)
            if row is None:
                break
            rows.append(row)
        if not rows:
            return LoopResult(problems=(Problem(
                NO_COMMAND_STALE, 'no planned action covers now (queue empty)'),))
        block = np.asarray(rows)
        if not np.isfinite(block).all():
            return LoopResult(problems=(Problem(NON_FINITE_BLOCKED,
                                                'non-finite action blocked'),))
        n = len(self.joint_names)
        positions = block[:, :n].copy()
        positions.setflags(write=False)
        return LoopResult(command=Command(
            stamp=float(t), joint_names=self.joint_names, positions=positions,
            times_from_start_ns=self._times_ns[:len(rows)],
            gripper_position=float(block[0, n]) if self.uses_gripper else None,
            observations=self.queue.observation_span(t)))

    def step(self, t: float, observe: Callable[[], Observation]) -> LoopResult:
        """One lockstep control step at stamp `t`: infer if due, then the command for `t`.

        Due: `replan_steps` steps since the last chunk was planned, or nothing queued for `t`;
        with `inference_delay_steps` > 0 also no inference in flight (the planned chunk is
        queued that many steps later, before that step's command, and reported as that step's
        `inference`). `observe` is called only when due (an evaluation renders cameras only
        then). The step's stamp is "now" for the queue: the result must not depend on when a
        clock message lands.
        """
        delay = self.config.inference_delay_steps
        with self._lock:
            self._steps_since_plan += 1
            landing = self._pending if self._steps_since_plan >= delay else None
            if landing is not None:
                self._pending = None
        landed = LoopResult() if landing is None else self._enqueue(landing, t)
        with self._lock:
            due = self._pending is None and (
                self._steps_since_plan >= self.config.replan_steps
                or self.queue.action_at(t) is None)
        planned = LoopResult()
        if due and delay == 0:
            planned = self.plan(observe, now=t)
            if planned.inference is not None:
                with self._lock:
                    self._steps_since_plan = 0
        elif due:
            started = self._infer(observe)
            if isinstance(started, LoopResult):
                planned = started
            else:
                with self._lock:  # in flight; a reset meanwhile drops it when it lands
                    self._pending = started
                    self._steps_since_plan = 0
        commanded = self.command_at(t)
        return LoopResult(command=commanded.command,
                          inference=landed.inference or planned.inference,
                          problems=landed.problems + planned.problems + commanded.problems)
