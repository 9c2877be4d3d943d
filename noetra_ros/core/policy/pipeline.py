"""Several ONNX graphs run as one policy: the `pipeline` of a version 2 contract.

The three patterns LeRobot's export work names all fit it: a single pass (one `run` stage), an
iterative policy (one `denoise` stage whose loop the runtime runs) and a two-phase model (a `run`
stage encoding the observation into a prefix / KV cache, then a `denoise` stage whose graph reads
it at every step, as pi0 and SmolVLA do). docs/POLICY_CONTRACT.md, "Three patterns".

`check_pipeline` validates the contract against the graphs' input and output metadata at
start-up (every problem at once, each line starting with the field path); `GraphPipeline.run`
runs the stages on one observation and refuses any non-finite stage output, naming the stage and
the step: the caller gets the whole chunk or an error, never part of one.

Noise rule (reproducible in lockstep evaluation): the noise of the n-th inference of a denoise
stage whose `seed` is s is `numpy.random.default_rng([s, n]).standard_normal(noise_shape,
dtype=float32)`; PolicyRuntime counts n from 0 at load and at `reset_noise()`, or takes it from
the caller (`noise_key`). Same seed, same n, same observation: the same chunk.

Real-time chunking hook: a denoise stage with `inpaint_prefix` takes the rows that will execute
while the inference runs (`prefix`, model units) and holds them at their noised known value
x[:d] = a * noise[:d] + (1 - a) * prefix before every step, a being the noise share at that step's
time, and at the prefix exactly after the last step: the hard-masking form of the inpainting
real-time chunking poses (Black, Galliker, Levine 2025, "Real-Time Execution of Action Chunking
Flow Policies", arXiv:2506.07339; the paper guides the other rows with the graph's gradient,
which a forward-only ONNX graph does not give).
"""
from __future__ import annotations

from dataclasses import dataclass
import time
from typing import Any, Mapping, Sequence

import numpy as np

from noetra_ros.core.errors import ContractError, InferenceError
from noetra_ros.core.policy.contract import (
    action_value_problems, DenoiseStage, PipelineStage, PolicyContract, RunStage, TensorInfo,
    model_io)

# What each graph has: (inputs, outputs) as contract.model_io returns them.
GraphIO = tuple[Sequence[TensorInfo], Sequence[TensorInfo]]


@dataclass(frozen=True)
class StageTiming:
    """Wall time of one stage in one inference: `seconds` in all, and for a denoise stage each
    step's (graph run and update)."""

    name: str
    kind: str
    seconds: float
    step_seconds: tuple[float, ...] = ()


# --------------------------------------------------------------------------------------------
# The loop's arithmetic

def schedule_times(stage: DenoiseStage) -> np.ndarray:
    """t_0 .. t_steps (steps + 1 values) from t_start to t_end: `linear` in equal steps,
    `cosine` as t_start + (t_end - t_start) * (1 - cos(pi k / steps)) / 2."""
    fraction = np.arange(stage.steps + 1, dtype=np.float64) / stage.steps
    if stage.schedule == 'cosine':
        fraction = (1.0 - np.cos(np.pi * fraction)) / 2.0
    times = stage.t_start + (stage.t_end - stage.t_start) * fraction
    times[-1] = stage.t_end  # exactly, whatever the rounding
    return times


def noise_share(stage: DenoiseStage, t: float) -> float:
    """The share of noise in x at time t: 1 at t_start, 0 at t_end (x_t = a * noise + (1 - a)
    * data on the straight path flow matching trains on)."""
    return (t - stage.t_end) / (stage.t_start - stage.t_end)


def stage_noise(stage: DenoiseStage, index: int) -> np.ndarray:
    """The starting noise of the `index`-th inference (module docstring: the seed rule)."""
    generator = np.random.default_rng([stage.seed, index])
    return generator.standard_normal(stage.noise_shape, dtype=np.float32)


def denoise_update(stage: DenoiseStage, x: np.ndarray, output: np.ndarray, t: float,
                   t_next: float) -> np.ndarray:
    """x at t_next from x at t and the graph's output there (DenoiseStage: velocity or
    sample)."""
    if stage.predicts == 'velocity':
        return x + np.float32(t_next - t) * output
    ratio = noise_share(stage, t_next) / noise_share(stage, t)
    return output + np.float32(ratio) * (x - output)


def inpaint(x: np.ndarray, noise: np.ndarray, known: np.ndarray, share: float) -> None:
    """Hold the first rows of x (1, T, W) at the known rows (d, A) noised to `share`, in place:
    x[0, :d, :A] = share * noise[0, :d, :A] + (1 - share) * known."""
    rows, columns = known.shape
    x[0, :rows, :columns] = (np.float32(share) * noise[0, :rows, :columns]
                             + np.float32(1.0 - share) * known)


# --------------------------------------------------------------------------------------------
# Start-up validation against the graphs

def _shapes_differ(value: tuple[int | None, ...] | None,
                   graph: tuple[int | None, ...] | None) -> bool:
    """True when two shapes cannot be the same: other ranks, or a static size differing from a
    static size (a dynamic or unknown dimension accepts anything)."""
    if value is None or graph is None:
        return False
    if len(value) != len(graph):
        return True
    return any(a is not None and b is not None and a != b for a, b in zip(value, graph))


def _describe(shape: Sequence[int | None]) -> str:
    return '[' + ', '.join('?' if d is None else str(d) for d in shape) + ']'


class _Checker:
    """Walks the pipeline once with the graphs' metadata, collecting one line per problem."""

    def __init__(self, contract: PolicyContract, graphs: Mapping[str, GraphIO],
                 feeds: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
        self.contract = contract
        self.graphs = graphs
        # Every value so far: contract inputs as fed, then what the stages add.
        self.values = {name: TensorInfo(name, dtype, tuple(shape))
                       for name, (shape, dtype) in feeds.items()}
        self.problems: list[str] = []
        self.time_shapes: dict[int, tuple[int, ...]] = {}

    def run(self) -> None:
        for i, stage in enumerate(self.contract.pipeline):
            path = f'pipeline[{i}]'
            inputs, outputs = self.graphs[stage.graph]
            if isinstance(stage, RunStage):
                self._feeds(path, stage, inputs, ())
                self._keeps(path, stage, outputs)
            else:
                self._loop(i, path, stage, inputs, outputs)
        action = self.contract.action
        value = self.values.get(action.name)
        if value is not None:
            self.problems.extend(action_value_problems(self.contract, value))

    def _feeds(self, path: str, stage: PipelineStage, inputs: Sequence[TensorInfo],
               loop_fed: Sequence[str]) -> None:
        """Every graph input is fed once, by a value of its dtype and static sizes."""
        graph_inputs = {info.name: info for info in inputs}
        names = ', '.join(repr(n) for n in graph_inputs) or 'none'
        for key, value in stage.inputs.items():
            info = graph_inputs.get(key)
            if info is None:
                self.problems.append(f'{path}.inputs.{key}: {key!r} is not an input of graph '
                                     f'{stage.graph!r} (inputs: {names})')
                continue
            fed = self.values.get(value)
            if fed is None:
                continue  # a value of a stage whose problems are reported already
            if fed.dtype != info.dtype or _shapes_differ(fed.shape, info.shape):
                self.problems.append(f'{path}.inputs.{key}: value {value!r} is {fed.describe()} '
                                     f'but graph {stage.graph!r} input {key!r} is '
                                     f'{info.describe()}')
        for name, info in graph_inputs.items():
            if name not in stage.inputs and name not in loop_fed:
                self.problems.append(f'{path}.inputs: graph {stage.graph!r} input {name!r} '
                                     f'({info.describe()}) is not fed')

    def _keeps(self, path: str, stage: RunStage, outputs: Sequence[TensorInfo]) -> None:
        graph_outputs = {info.name: info for info in outputs}
        for key, value in stage.outputs.items():
            info = graph_outputs.get(key)
            if info is None:
                names = ', '.join(repr(n) for n in graph_outputs)
                self.problems.append(f'{path}.outputs.{key}: {key!r} is not an output of graph '
                                     f'{stage.graph!r} (outputs: {names})')
                continue
            self.values[value] = TensorInfo(value, info.dtype, info.shape)

    def _graph_tensor(self, path: str, stage: DenoiseStage, key: str,
                      tensors: Sequence[TensorInfo], what: str) -> TensorInfo | None:
        """The graph input / output the stage's field `key` names, as float32, or None."""
        name = getattr(stage, key)
        info = next((t for t in tensors if t.name == name), None)
        if info is None:
            names = ', '.join(repr(t.name) for t in tensors) or 'none'
            self.problems.append(f'{path}.{key}: {name!r} is not an {what} of graph '
                                 f'{stage.graph!r} ({what}s: {names})')
        elif info.dtype != 'float32':
            self.problems.append(f'{path}.{key}: graph {stage.graph!r} {what} {name!r} is '
                                 f'{info.describe()}; the loop feeds and reads float32')
            return None
        return info

    def _loop(self, i: int, path: str, stage: DenoiseStage, inputs: Sequence[TensorInfo],
              outputs: Sequence[TensorInfo]) -> None:
        shape = stage.noise_shape
        x = self._graph_tensor(path, stage, 'x_input', inputs, 'input')
        if x is not None and _shapes_differ(shape, x.shape):
            self.problems.append(f'{path}.noise_shape: {list(shape)} but graph {stage.graph!r} '
                                 f'input {x.name!r} (x) is {x.describe()}')
        t = self._graph_tensor(path, stage, 'time_input', inputs, 'input')
        if t is not None:
            self.time_shapes[i] = self._time_shape(path, stage, t)
        step = self._graph_tensor(path, stage, 'step_output', outputs, 'output')
        if step is not None and _shapes_differ(shape, step.shape):
            self.problems.append(
                f'{path}.step_output: graph {stage.graph!r} output {step.name!r} is '
                f'{step.describe()} but x is {_describe(shape)} (noise_shape): the steps do not '
                'chain (each step must return a tensor of x\'s shape)')
        self._feeds(path, stage, inputs, (stage.x_input, stage.time_input))
        self.values[stage.result] = TensorInfo(stage.result, 'float32', shape)

    def _time_shape(self, path: str, stage: DenoiseStage, info: TensorInfo) -> tuple[int, ...]:
        """The shape t is fed in: one number, as [], [1] or [1, 1] (a dynamic size is 1)."""
        if info.shape is None:
            return (1,)
        if len(info.shape) > 2 or any(d not in (None, 1) for d in info.shape):
            self.problems.append(f'{path}.time_input: graph {stage.graph!r} input {info.name!r} '
                                 f'is {info.describe()}; the time is one number per step ([], '
                                 '[1] or [1, 1])')
        return tuple(1 for _ in info.shape)


def check_pipeline(contract: PolicyContract, graphs: Mapping[str, GraphIO],
                   feeds: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[int, tuple[int, ...]]:
    """Validate `contract`'s pipeline against its graphs' metadata ({graph name: (inputs,
    outputs)}) and what the runtime feeds ({contract value: (shape, dtype)}, runtime.feed_spec).

    Checked: every graph input fed exactly by a value of its dtype and static sizes (dynamic
    sizes accepted), every name a stage gives a graph tensor exists, a denoise graph's x input
    and step output have noise_shape (else the steps do not chain), its time input is one
    float32, and the action output's value has the chunk's shape. ContractError lists every
    problem, one line each starting with the field path. Returns the shape each denoise
    stage's time is fed in, by stage index.
    """
    checker = _Checker(contract, graphs, feeds)
    checker.run()
    if checker.problems:
        raise ContractError(f'contract {contract.name!r} does not match its graphs:\n  '
                            + '\n  '.join(checker.problems))
    return checker.time_shapes


# --------------------------------------------------------------------------------------------
# Running it

def _non_finite(array: np.ndarray) -> int:
    """How many values of a float array are NaN or infinite (0 for integer arrays)."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    finite = np.isfinite(array)
    return 0 if finite.all() else int(finite.size - np.count_nonzero(finite))


class GraphPipeline:
    """The stages of a contract over one onnxruntime session per graph.

    Sessions stay owned by the caller (PolicyRuntime). Construction validates the contract
    against the sessions' metadata (`check_pipeline`).
    """

    def __init__(self, contract: PolicyContract, sessions: Mapping[str, Any],
                 feeds: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
        self.contract = contract
        self._sessions = dict(sessions)
        self._time_shapes = check_pipeline(
            contract, {name: model_io(session) for name, session in sessions.items()}, feeds)

    @property
    def inpaints(self) -> bool:
        """True when a denoise stage takes known prefix rows (`inpaint_prefix`)."""
        return any(isinstance(s, DenoiseStage) and s.inpaint_prefix
                   for s in self.contract.pipeline)

    def run(self, feed: Mapping[str, np.ndarray], *, noise_index: int,
            prefix: np.ndarray | None = None) -> tuple[dict[str, np.ndarray],
                                                       tuple[StageTiming, ...]]:
        """Every stage on one observation's `feed` ({contract value: array}); returns every
        value and each stage's timing. `prefix` (d, A) float32 in model units: the known rows a
        stage with `inpaint_prefix` holds. InferenceError names the stage (and the step) of a
        failed graph run or of any non-finite output."""
        values = dict(feed)
        timings = []
        for i, stage in enumerate(self.contract.pipeline):
            where = f'pipeline[{i}] stage {stage.name!r}'
            start = time.perf_counter()
            steps: tuple[float, ...] = ()
            if isinstance(stage, RunStage):
                self._run(where, stage, values)
            else:
                known = prefix if stage.inpaint_prefix else None
                steps = self._denoise(where, i, stage, values, noise_index, known)
            timings.append(StageTiming(stage.name, stage.kind, time.perf_counter() - start,
                                       steps))
        return values, tuple(timings)

    def _call(self, where: str, graph: str, names: list[str],
              feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self._sessions[graph].run(names, dict(feed)))
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own pybind classes
            raise InferenceError(f'{where}: graph {graph!r} failed: {error}') from None

    def _run(self, where: str, stage: RunStage, values: dict[str, np.ndarray]) -> None:
        names = list(stage.outputs)
        results = self._call(where, stage.graph, names,
                             {key: values[value] for key, value in stage.inputs.items()})
        for name, array in zip(names, results):
            bad = _non_finite(array)
            if bad:
                raise InferenceError(f'{where}: graph {stage.graph!r} output {name!r} has {bad} '
                                     'non-finite value(s); no chunk')
            values[stage.outputs[name]] = array

    def _denoise(self, where: str, index: int, stage: DenoiseStage,
                 values: dict[str, np.ndarray], noise_index: int,
                 known: np.ndarray | None) -> tuple[float, ...]:
        times = schedule_times(stage)
        noise = stage_noise(stage, noise_index)
        x = noise.copy()
        feed = {key: values[value] for key, value in stage.inputs.items()}
        time_shape = self._time_shapes[index]
        step_seconds = []
        for k in range(stage.steps):
            start = time.perf_counter()
            t, t_next = float(times[k]), float(times[k + 1])
            at = f'{where} step {k + 1}/{stage.steps} (t={t:.4g})'
            if known is not None:
                inpaint(x, noise, known, noise_share(stage, t))
            feed[stage.x_input] = x
            feed[stage.time_input] = np.full(time_shape, t, dtype=np.float32)
            (output,) = self._call(at, stage.graph, [stage.step_output], feed)
            if output.shape != x.shape:
                raise InferenceError(f'{at}: graph {stage.graph!r} output {stage.step_output!r} '
                                     f'came back {list(output.shape)}, x is {list(x.shape)}: '
                                     'the steps do not chain; no chunk')
            bad = _non_finite(output)
            if bad:
                raise InferenceError(f'{at}: graph {stage.graph!r} output {stage.step_output!r} '
                                     f'has {bad} non-finite value(s); no chunk')
            x = denoise_update(stage, x, output.astype(np.float32, copy=False), t, t_next)
            bad = _non_finite(x)
            if bad:
                raise InferenceError(f'{at}: the update overflowed ({bad} non-finite value(s) '
                                     'in x); no chunk')
            step_seconds.append(time.perf_counter() - start)
        if known is not None:
            inpaint(x, noise, known, 0.0)
        values[stage.result] = x
        return tuple(step_seconds)


def describe_pipeline(contract: PolicyContract) -> str:
    """One line: 'encode (run encoder) -> denoise (denoise denoiser, 10 linear steps)'."""
    parts = []
    for stage in contract.pipeline:
        if isinstance(stage, DenoiseStage):
            parts.append(f'{stage.name} (denoise {stage.graph}, {stage.steps} {stage.schedule} '
                         f'steps, {stage.predicts})')
        else:
            parts.append(f'{stage.name} (run {stage.graph})')
    return ' -> '.join(parts)


def noise_index_for(key: int) -> int:
    """A caller's noise key as the generator's non-negative index (e.g. a stamp in ns)."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f'noise_key must be an integer, got {key!r}')
    return int(key) % (1 << 63) if key < 0 else int(key)

