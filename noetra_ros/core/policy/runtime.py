"""The policy runtime: an onnxruntime session bound to a validated contract.

    runtime = PolicyRuntime('policy.onnx', execution_provider='cpu')
    runtime.validate_robot(joint_names, has_gripper=True)
    warning = runtime.validate_embodiment('fanuc_lrmate200id')   # None, a warning, or raises
    inputs = runtime.build_inputs({'scene_camera': frame}, joint_positions, gripper_position=g,
                                  instruction='pick the red block')
    chunk = runtime.infer(inputs)          # ActionChunk: absolute, un-normalised, all finite

`model_path` is one ONNX model (its contract in a sidecar YAML or its metadata) or, for a model
made of several graphs, the contract file itself (`<folder>/policy.contract.yaml`, suffix .yaml
or .yml) that names the graphs and the pipeline running them (pipeline.py): one onnxruntime
session per graph, same provider and thread settings, created once, and one warm-up through the
whole pipeline at load that refuses a non-finite stage output.

Every failure is a NoetraError subclass: ConfigError (provider, threads), ModelLoadError (file),
ContractError (contract vs model), InputError (sensor data), InferenceError /
NonFiniteOutputError (the model run). After any of them the caller publishes nothing.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
import logging
from pathlib import Path
import threading
import time
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from noetra_ros.core.errors import (
    ConfigError, ContractError, InferenceError, InputError, ModelLoadError, NonFiniteOutputError)
from noetra_ros.core.policy.contract import (
    ActionOutput, ActionParts, check_embodiment, ImageInput, InstructionInput, LoadedContract,
    PIXEL_INPUTS, PolicyContract, StateInput, TWIST_AXES, embed_contract, graph_files,
    is_contract_file, load_contract_file, locate_contract, validate_against_model,
    validate_against_robot)
from noetra_ros.core.policy.pipeline import (
    describe_pipeline, GraphPipeline, noise_index_for, StageTiming)
from noetra_ros.core.policy.preprocess import ImageFrame, frame_to_tensor, state_to_tensor
from noetra_ros.core.policy.tokenizer import Encoding, InstructionTokenizer, load_tokenizer
from noetra_ros.core.robot_model import kinematics_fingerprint

_LOG = logging.getLogger(__name__)

# Short name -> onnxruntime providers in priority order. The first is the one asked for; the
# rest take the operators it cannot run (normal partitioning, not a fallback).
EXECUTION_PROVIDERS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    'cpu': ('CPUExecutionProvider',),
    'cuda': ('CUDAExecutionProvider', 'CPUExecutionProvider'),
    'tensorrt': ('TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'),
    'openvino': ('OpenVINOExecutionProvider', 'CPUExecutionProvider'),
})

_NUMPY_DTYPES = {'float32': np.float32, 'int64': np.int64, 'uint8': np.uint8}
# Inferences whose stage times PolicyRuntime keeps for `stage_times_ms` (diagnostics).
_STAGE_HISTORY = 2000


def feed_spec(contract: PolicyContract) -> dict[str, tuple[tuple[int, ...], str]]:
    """{ONNX input name: (shape, dtype name)} of every tensor fed for `contract` (batch 1):
    images float32 or uint8 (their `dtype`), depth and state float32, token ids and attention
    masks int64."""
    spec_of: dict[str, tuple[tuple[int, ...], str]] = {}
    for spec in contract.inputs:
        if isinstance(spec, InstructionInput):
            spec_of[spec.name] = (spec.shape, 'int64')
            if spec.attention_mask is not None:
                spec_of[spec.attention_mask] = (spec.shape, 'int64')
        else:
            spec_of[spec.name] = (spec.shape,
                                  spec.dtype if isinstance(spec, ImageInput) else 'float32')
    return spec_of


@dataclass(frozen=True)
class PolicyInputs:
    """Model inputs built from one observation, plus what post-processing needs from it.

    `tensors` maps ONNX input names to arrays. `joint_positions` / `gripper_position` are the
    measured values that delta actions are added to. `unknown_words` and `truncated` report
    what the tokenizer did with the instruction so the caller can warn.
    """

    tensors: Mapping[str, np.ndarray]
    joint_positions: Mapping[str, float] = field(default_factory=dict)
    gripper_position: float | None = None
    unknown_words: tuple[str, ...] = ()
    truncated: bool = False
    preprocess_time_s: float = 0.0


@dataclass(frozen=True)
class ActionChunk:
    """A post-processed action chunk: `values` (T, A) float64, absolute, un-normalised, finite,
    columns in contract order (`columns` labels them). Row k applies at the observation stamp
    + k * step_period_s. `raw` is the model output (T, A) float32 before post-processing (of a
    padded output, the real columns); `inference_time_s` is the time spent in onnxruntime's
    run() alone (a multi-graph model: its whole pipeline, loop arithmetic included), `stages`
    each pipeline stage's time (empty for one ONNX model)."""

    values: np.ndarray
    output: ActionOutput
    inference_time_s: float
    raw: np.ndarray
    stages: tuple[StageTiming, ...] = ()

    @property
    def step_period_s(self) -> float:
        """Time between consecutive rows."""
        return self.output.step_period_s

    @property
    def chunk_length(self) -> int:
        """T, the number of rows."""
        return self.values.shape[0]

    @property
    def columns(self) -> tuple[str, ...]:
        """A label per column, e.g. 'joint_positions.joint_1', 'gripper_position'."""
        return self.output.columns

    @cached_property
    def parts(self) -> ActionParts:
        """`values` split by meaning (views)."""
        return self.output.split(self.values)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of `joint_positions` columns."""
        return self.parts.joint_names

    @property
    def joint_positions(self) -> np.ndarray | None:
        """(T, J) absolute joint positions in rad, or None."""
        return self.parts.joint_positions

    @property
    def gripper_position(self) -> np.ndarray | None:
        """(T,) gripper positions in m (0 open .. 0.0425 closed), or None."""
        value = self.parts.gripper_position
        return None if value is None else np.asarray(value)

    @property
    def joint_velocities(self) -> np.ndarray | None:
        """(T, J) joint velocities in rad/s (joints in `parts.velocity_joint_names`), or None."""
        return self.parts.joint_velocities

    @property
    def base_twist(self) -> np.ndarray | None:
        """(T, k) base twist (axes in `parts.twist_axes`), or None."""
        return self.parts.base_twist


def postprocess_actions(raw: np.ndarray, output: ActionOutput,
                        joint_positions: Mapping[str, float] | None = None,
                        gripper_position: float | None = None) -> np.ndarray:
    """Model output (T, N) or (1, T, N) -> absolute actions (T, A) float64 (N = A, or the
    contract's `width` for a padded output, whose columns after the first A are ignored).

    action = raw * std + mean; delta components then get the measured joint positions /
    gripper position added. Raises InputError when a delta reference is missing or not finite,
    NonFiniteOutputError when any resulting value is NaN or infinite.
    """
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 2 or raw.shape[1] != output.model_width:
        raise ContractError(f'outputs[0]: model output {output.name!r} has shape {raw.shape}, '
                            f'expected (T, {output.model_width})')
    raw = raw[:, :output.size]
    values = (raw.astype(np.float64) * np.asarray(output.std) + np.asarray(output.mean)
              + delta_reference(output, joint_positions, gripper_position))
    finite = np.isfinite(values)
    if not finite.all():
        step, column = np.argwhere(~finite)[0]
        raise NonFiniteOutputError(
            f'model output {output.name!r} has {int((~finite).sum())} non-finite action '
            f'value(s); first at step {step}, column {output.columns[column]!r} = '
            f'{values[step, column]} (raw {raw[step, column]})')
    return values


def delta_reference(output: ActionOutput, joint_positions: Mapping[str, float] | None = None,
                    gripper_position: float | None = None) -> np.ndarray:
    """(A,) what each action column is relative to: the measured joint positions / gripper
    position under `delta` components, 0 elsewhere. InputError when a delta reference is
    missing or not finite."""
    reference_row = np.zeros(output.size)
    for component in output.components:
        if component.mode != 'delta':
            continue
        columns = output.slices[component.meaning]
        if component.meaning == 'joint_positions':
            if joint_positions is None:
                raise InputError('the action is a delta of joint_positions but no measured '
                                 'joint positions were given')
            reference = []
            for joint in component.joints:
                if joint not in joint_positions:
                    raise InputError(f'delta action needs the measured position of joint '
                                     f'{joint!r} (have: {", ".join(map(str, joint_positions))})')
                reference.append(float(joint_positions[joint]))
        else:
            if gripper_position is None:
                raise InputError('the action is a delta of gripper_position but no measured '
                                 'gripper position was given')
            reference = [float(gripper_position)]
        reference_array = np.asarray(reference)
        if not np.all(np.isfinite(reference_array)):
            raise InputError(f'measured {component.meaning} used as the delta reference is not '
                             f'finite: {reference}')
        reference_row[columns] = reference_array
    return reference_row


def normalise_actions(values: np.ndarray, output: ActionOutput,
                      joint_positions: Mapping[str, float] | None = None,
                      gripper_position: float | None = None) -> np.ndarray:
    """Absolute actions (d, A) in contract column order -> model units (d, A) float32, the
    inverse of `postprocess_actions`: (value - delta reference - mean) / std (a column whose
    std is 0 comes out 0: the model's value there never mattered). InputError when the rows
    are not (d <= T, A) or not finite."""
    rows = np.asarray(values, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != output.size or rows.shape[0] > output.chunk_length:
        raise InputError(f'prefix: known action rows must be (d <= {output.chunk_length}, '
                         f'{output.size}) in the contract\'s column order, got {rows.shape}')
    if not np.isfinite(rows).all():
        raise InputError('prefix: known action rows must be finite')
    std = np.asarray(output.std)
    centred = rows - delta_reference(output, joint_positions, gripper_position) - output.mean
    raw = np.divide(centred, std, out=np.zeros_like(centred), where=std > 0.0)
    return raw.astype(np.float32)


def _resolve_providers(execution_provider: str, allow_fallback: bool,
                       available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(providers to request, warnings)."""
    if execution_provider not in EXECUTION_PROVIDERS:
        raise ConfigError(f'execution_provider {execution_provider!r} is not known (valid: '
                          f'{", ".join(EXECUTION_PROVIDERS)})')
    wanted = EXECUTION_PROVIDERS[execution_provider]
    if wanted[0] in available:
        return [p for p in wanted if p in available or p == 'CPUExecutionProvider'], []
    message = (f'execution_provider {execution_provider!r} needs {wanted[0]}, which this '
               f'onnxruntime build does not offer (available: {", ".join(available)})')
    if not allow_fallback:
        raise ConfigError(message)
    return ['CPUExecutionProvider'], [message + '; falling back to CPUExecutionProvider']


class _SessionOpener:
    """Opens every graph of a model with the same provider, threads and options; collects the
    warnings (provider fallback)."""

    def __init__(self, execution_provider: str, intra_op_threads: int, inter_op_threads: int,
                 allow_fallback: bool, provider_options: Mapping[str, Any] | None) -> None:
        import onnxruntime as ort

        for label, value in (('intra_op_threads', intra_op_threads),
                             ('inter_op_threads', inter_op_threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f'{label} must be an integer >= 0 (0 = onnxruntime default), '
                                  f'got {value!r}')
        available = list(ort.get_available_providers())
        self.providers, self.warnings = _resolve_providers(execution_provider, allow_fallback,
                                                           available)
        self.allow_fallback = allow_fallback
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = intra_op_threads
        self.options.inter_op_num_threads = inter_op_threads
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.options.log_severity_level = 3  # errors only; warnings come back through .warnings
        fell_back = bool(self.warnings)
        self.per_provider = [dict(provider_options or {}) if i == 0 and not fell_back else {}
                             for i in range(len(self.providers))]

    def open(self, path: Path, field_path: str = '') -> Any:
        """An InferenceSession of `path`; ModelLoadError (prefixed with `field_path`, e.g.
        'graphs.encoder: ') when onnxruntime cannot load it."""
        import onnxruntime as ort
        try:
            session = ort.InferenceSession(str(path), sess_options=self.options,
                                           providers=self.providers,
                                           provider_options=self.per_provider)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own pybind classes; all mean
            # "cannot load" (missing operator, bad protobuf, unsupported IR version, ...)
            raise ModelLoadError(f'{field_path}cannot load model {path}: {error}') from None
        active = session.get_providers()
        if active[0] != self.providers[0]:
            # onnxruntime silently retries on CPU when a provider fails to initialise.
            message = (f'{self.providers[0]} failed to initialise for {path.name}; onnxruntime '
                       f'runs on {active[0]}')
            if not self.allow_fallback:
                raise ConfigError(message + ' (set allow_fallback to accept this)')
            self.warnings.append(message)
        return session


class PolicyRuntime:
    """An ONNX policy - one model, or several graphs run by a pipeline - loaded with
    onnxruntime and checked against its contract."""

    def __init__(self, model_path: str | Path, execution_provider: str = 'cpu', *,
                 intra_op_threads: int = 0, inter_op_threads: int = 0,
                 allow_fallback: bool = False,
                 provider_options: Mapping[str, Any] | None = None) -> None:
        """Load `model_path` and its contract and validate both.

        `model_path`: one ONNX model, its contract in a sidecar or its metadata; or a contract
        file (.yaml / .yml) naming several graphs, each loaded into its own session with the
        same settings, checked against the pipeline and warmed up once (a non-finite stage
        output refuses the model: ModelLoadError naming the stage).
        execution_provider: 'cpu', 'cuda', 'tensorrt' or 'openvino'. A provider this machine
        lacks raises ConfigError listing the available ones, unless `allow_fallback` (then CPU
        with a warning in `self.warnings`). Threads: 0 lets onnxruntime choose.
        `provider_options` go to the requested provider (e.g. TensorRT engine cache settings).
        """
        opener = _SessionOpener(execution_provider, intra_op_threads, inter_op_threads,
                                allow_fallback, provider_options)
        path = Path(model_path)
        self._pipeline: GraphPipeline | None = None
        self._session: Any = None  # one ONNX model's session
        self._sessions: dict[str, Any] = {}
        if is_contract_file(path):
            loaded = load_contract_file(path)
            for name, file in graph_files(loaded.contract, path.parent).items():
                self._sessions[name] = opener.open(file, f'graphs.{name}: ')
            self._pipeline = GraphPipeline(loaded.contract, self._sessions,
                                           feed_spec(loaded.contract))
        else:
            if not path.is_file():
                raise ModelLoadError(f'model file {str(path)!r} does not exist or is not a file')
            session = opener.open(path)
            loaded = locate_contract(path, metadata=session.get_modelmeta().custom_metadata_map)
            validate_against_model(loaded.contract, session)
            self._session = session
            self._sessions = {path.stem: session}
        warnings = opener.warnings + list(loaded.warnings)
        for message in warnings:
            _LOG.warning(message)

        self._loaded: LoadedContract = loaded
        self._model_path = path
        self._warnings = tuple(warnings)
        self._execution_provider = execution_provider
        contract = loaded.contract
        self._tokenizer: InstructionTokenizer | None = None
        self._last_encoding: tuple[str, Encoding] | None = None
        for i, spec in enumerate(contract.inputs):
            if isinstance(spec, InstructionInput):
                # A tokenizer file travels with the model: looked up next to it.
                self._tokenizer = load_tokenizer(spec, path.parent, f'inputs[{i}]')
        self._feed_spec = feed_spec(contract)
        self._noise_lock = threading.Lock()
        self._noise_count = 0
        self._stage_ms: dict[str, deque[float]] = {}
        if self._pipeline is not None:
            self._refuse_non_finite_warmup()

    def _refuse_non_finite_warmup(self) -> None:
        """One run of the whole pipeline on zeros at load: a graph that fails or gives NaN /
        Inf there refuses the model, naming the stage and step."""
        assert self._pipeline is not None
        try:
            self._pipeline.run(self.zero_inputs(), noise_index=0)
        except InferenceError as error:
            raise ModelLoadError(f'warm-up at load: {error}') from None

    # -- description ------------------------------------------------------------------------

    @property
    def contract(self) -> PolicyContract:
        """The validated contract."""
        return self._loaded.contract

    @property
    def contract_origin(self) -> str:
        """'sidecar <path>', 'metadata' or 'file <path>' (a multi-graph model's contract
        file)."""
        return self._loaded.origin

    @property
    def model_path(self) -> Path:
        """The .onnx file, or the contract file of a multi-graph model."""
        return self._model_path

    @property
    def graph_names(self) -> tuple[str, ...]:
        """The graphs a multi-graph model runs (empty for one ONNX model)."""
        return tuple(self.contract.graphs)

    @property
    def accepts_prefix(self) -> bool:
        """True when `infer` takes known prefix rows (a denoise stage with inpaint_prefix)."""
        return self._pipeline is not None and self._pipeline.inpaints

    @property
    def providers(self) -> tuple[str, ...]:
        """onnxruntime providers of the (first) session, highest priority first."""
        return tuple(next(iter(self._sessions.values())).get_providers())

    @property
    def provider(self) -> str:
        """The provider that runs the model (e.g. 'CPUExecutionProvider')."""
        return self.providers[0]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings raised while loading (provider fallback, sidecar overriding metadata)."""
        return self._warnings

    def describe(self) -> str:
        """One line for the log."""
        c = self.contract
        pipeline = f'; pipeline {describe_pipeline(c)}' if c.pipeline else ''
        return (f'policy {c.name!r} from {self._model_path} (contract from '
                f'{self.contract_origin}) on {self.provider}; inputs '
                f'{", ".join(c.input_names)}{pipeline}; action chunk {c.action.chunk_length} x '
                f'{c.action.size} every {c.action.step_period_s} s')

    def validate_robot(self, joint_names: Sequence[str], has_gripper: bool, *,
                       has_wrench: bool = False, has_base: bool = False,
                       base_axes: Sequence[str] = TWIST_AXES) -> None:
        """`validate_against_robot` for this runtime's contract."""
        validate_against_robot(self.contract, joint_names, has_gripper, has_wrench=has_wrench,
                               has_base=has_base, base_axes=base_axes)

    def validate_embodiment(self, robot: str, *,
                            allow_other_embodiment: bool = False) -> str | None:
        """Check that the model was trained for `robot` (a core/robots.py name) and its
        kinematics (`contract.check_embodiment`): None when it was, ConfigError naming both
        robots when not, a warning text for the log when the contract names no embodiment or
        `allow_other_embodiment` lets another robot run it."""
        return check_embodiment(self.contract, robot, kinematics_fingerprint(robot),
                                allow_other_embodiment=allow_other_embodiment)

    # -- inputs -----------------------------------------------------------------------------

    def build_inputs(self, images: Mapping[str, ImageFrame],
                     joint_positions: Mapping[str, float] | None = None, *,
                     joint_velocities: Mapping[str, float] | None = None,
                     gripper_position: float | None = None,
                     wrench: Mapping[str, float] | Sequence[float] | None = None,
                     instruction: str | None = None) -> PolicyInputs:
        """Observation -> PolicyInputs. `images` maps camera namespaces (the contract's
        `camera`) to colour frames and depth sources (`<camera>/aligned_depth_to_color`, a
        DepthInput's `source`) to depth frames; one frame serves every input of its source.
        Only what the contract uses is required; anything missing or malformed raises
        InputError."""
        start = time.perf_counter()
        contract = self.contract
        tensors: dict[str, np.ndarray] = {}
        unknown: tuple[str, ...] = ()
        truncated = False
        for spec in contract.inputs:
            if isinstance(spec, PIXEL_INPUTS):
                frame = images.get(spec.source)
                if frame is None:
                    raise InputError(f'input {spec.name!r} needs a frame from camera '
                                     f'{spec.source!r} (have: {", ".join(images) or "none"})')
                tensors[spec.name] = frame_to_tensor(frame, spec)
            elif isinstance(spec, StateInput):
                tensors[spec.name] = state_to_tensor(
                    spec, joint_positions, joint_velocities=joint_velocities,
                    gripper_position=gripper_position, wrench=wrench)
            else:
                if instruction is None:
                    raise InputError(f'input {spec.name!r} needs an instruction (use "" for '
                                     'none)')
                assert self._tokenizer is not None
                # The instruction stays the same for a whole task: encode it once.
                cached = self._last_encoding
                if cached is not None and cached[0] == instruction:
                    encoding = cached[1]
                else:
                    encoding = self._tokenizer.encode(instruction)
                    encoding.ids.setflags(write=False)  # shared by every call of the task
                    self._last_encoding = (instruction, encoding)
                tensors[spec.name] = encoding.ids
                if spec.attention_mask is not None:
                    tensors[spec.attention_mask] = encoding.attention_mask
                unknown, truncated = encoding.unknown_words, encoding.truncated
        reference: dict[str, float] = {}
        joints = contract.action.component('joint_positions')
        if joints is not None and joints.mode == 'delta':
            if joint_positions is None:
                raise InputError('the action is a delta of joint_positions but no joint '
                                 'positions were given')
            for joint in joints.joints:
                if joint not in joint_positions:
                    raise InputError(f'delta action needs the measured position of joint '
                                     f'{joint!r} (have: {", ".join(map(str, joint_positions))})')
                reference[joint] = float(joint_positions[joint])
        gripper = contract.action.component('gripper_position')
        if gripper is not None and gripper.mode == 'delta' and gripper_position is None:
            raise InputError('the action is a delta of gripper_position but no gripper '
                             'position was given')
        return PolicyInputs(tensors=MappingProxyType(tensors),
                            joint_positions=MappingProxyType(reference),
                            gripper_position=(None if gripper_position is None
                                              else float(gripper_position)),
                            unknown_words=unknown, truncated=truncated,
                            preprocess_time_s=time.perf_counter() - start)

    def _check_feed(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [n for n in self._feed_spec if n not in feed]
        extra = [n for n in feed if n not in self._feed_spec]
        if missing or extra:
            raise InputError(f'model inputs do not match the contract: missing {missing}, '
                             f'unexpected {extra}')
        checked = {}
        for name, (shape, dtype) in self._feed_spec.items():
            array = feed[name]
            if not isinstance(array, np.ndarray):
                raise InputError(f'input {name!r} must be a numpy array, got '
                                 f'{type(array).__name__}')
            if array.dtype != _NUMPY_DTYPES[dtype] or array.shape != shape:
                raise InputError(f'input {name!r} is {array.dtype} {array.shape}, the contract '
                                 f'needs {dtype} {shape}')
            if dtype == 'float32' and not np.isfinite(array).all():
                raise InputError(f'input {name!r} has {int((~np.isfinite(array)).sum())} '
                                 'non-finite value(s)')
            checked[name] = array
        return checked

    # -- inference --------------------------------------------------------------------------

    def infer(self, inputs: PolicyInputs | Mapping[str, np.ndarray], *,
              joint_positions: Mapping[str, float] | None = None,
              gripper_position: float | None = None, prefix: np.ndarray | None = None,
              noise_key: int | None = None) -> ActionChunk:
        """Run the model (or the pipeline) and post-process its action chunk.

        `inputs` is what `build_inputs` returned, or a raw {input name: array} mapping (then
        pass the measured `joint_positions` / `gripper_position` if the action is a delta;
        when given they also override those stored in a PolicyInputs).

        Multi-graph models only: `prefix` (d, A), the absolute actions (contract column order,
        the units of ActionChunk.values) that will execute while this inference runs, rows 0 ..
        d-1 of the chunk; a denoise stage with `inpaint_prefix` holds them (pipeline.py) and the
        chunk returns them in those rows. `noise_key`: the denoise noise index (default: this
        runtime's count of inferences since load / `reset_noise`), e.g. an observation stamp in
        ns so that a chunk depends on its observation alone.
        """
        if isinstance(inputs, PolicyInputs):
            feed = inputs.tensors
            if joint_positions is None:
                joint_positions = inputs.joint_positions
            if gripper_position is None:
                gripper_position = inputs.gripper_position
        else:
            feed = inputs
        checked = self._check_feed(feed)
        output = self.contract.action
        stages: tuple[StageTiming, ...] = ()
        start = time.perf_counter()
        if self._pipeline is None:
            if prefix is not None or noise_key is not None:
                raise InputError(f'{self._model_path.name} is one ONNX model: prefix and '
                                 'noise_key are for multi-graph models with a denoise stage')
            try:
                (raw,) = self._session.run([output.name], checked)
            except Exception as error:  # noqa: BLE001 - onnxruntime raises its own pybind classes
                raise InferenceError(f'running {self._model_path.name} failed: {error}') \
                    from None
        else:
            raw, stages = self._run_pipeline(checked, prefix, noise_key, joint_positions,
                                             gripper_position)
        elapsed = time.perf_counter() - start
        if raw.shape != output.shape:
            raise ContractError(f'outputs[0]: model output {output.name!r} came back with shape '
                                f'{raw.shape}, the contract declares {output.shape}')
        values = postprocess_actions(raw, output, joint_positions, gripper_position)
        raw_rows = raw[0, :, :output.size]
        values.setflags(write=False)
        raw_rows.setflags(write=False)
        return ActionChunk(values=values, output=output, inference_time_s=elapsed, raw=raw_rows,
                           stages=stages)

    def _run_pipeline(self, feed: Mapping[str, np.ndarray], prefix: np.ndarray | None,
                      noise_key: int | None, joint_positions: Mapping[str, float] | None,
                      gripper_position: float | None) -> tuple[np.ndarray,
                                                               tuple[StageTiming, ...]]:
        """The action value and stage timings of one pipeline run; records the timings."""
        assert self._pipeline is not None
        known = None
        if prefix is not None:
            if not self._pipeline.inpaints:
                raise InputError(f'prefix: no denoise stage of {self._model_path.name} has '
                                 'inpaint_prefix: true (runtime.accepts_prefix is False)')
            known = normalise_actions(prefix, self.contract.action, joint_positions,
                                      gripper_position)
        with self._noise_lock:
            index = self._noise_count if noise_key is None else noise_index_for(noise_key)
            self._noise_count += 1
        values, stages = self._pipeline.run(feed, noise_index=index, prefix=known)
        self._record(stages)
        return values[self.contract.action.name], stages

    def _record(self, stages: Sequence[StageTiming]) -> None:
        with self._noise_lock:
            for stage in stages:
                self._stage_ms.setdefault(stage.name, deque(maxlen=_STAGE_HISTORY)).append(
                    1e3 * stage.seconds)
                if stage.step_seconds:
                    steps = self._stage_ms.setdefault(f'{stage.name}_step',
                                                      deque(maxlen=_STAGE_HISTORY))
                    steps.extend(1e3 * s for s in stage.step_seconds)

    def stage_times_ms(self) -> dict[str, list[float]]:
        """The recent times (ms) of each pipeline stage, and of each step of a denoise stage
        under '<stage>_step' (the last 2000 inferences / steps); empty for one ONNX model."""
        with self._noise_lock:
            return {name: list(times) for name, times in self._stage_ms.items()}

    def reset_noise(self) -> None:
        """Restart the denoise noise count at 0 (pipeline.py, the seed rule): the next
        inferences see the noise they saw after load, e.g. at each evaluation episode."""
        with self._noise_lock:
            self._noise_count = 0

    def zero_inputs(self) -> dict[str, np.ndarray]:
        """A feed of zeros (id 0 for instructions, an all-padding attention mask), e.g. for
        warm-up runs."""
        return {name: np.zeros(shape, dtype=_NUMPY_DTYPES[dtype])
                for name, (shape, dtype) in self._feed_spec.items()}

    def warmup(self, runs: int = 1) -> float:
        """Run the model `runs` times on zeros so lazy initialisation (memory arenas, TensorRT
        engine builds) happens before the first real observation; returns the last run time."""
        feed = self.zero_inputs()
        output = self.contract.action.name
        elapsed = 0.0
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            if self._pipeline is not None:
                # Noise index 0, not counted: warming up leaves the seed rule's count alone.
                self._pipeline.run(feed, noise_index=0)
                elapsed = time.perf_counter() - start
                continue
            try:
                self._session.run([output], feed)
            except Exception as error:  # noqa: BLE001 - onnx / onnxruntime errors share no base class
                raise InferenceError(f'warm-up of {self._model_path.name} failed: {error}') \
                    from None
            elapsed = time.perf_counter() - start
        return elapsed

    def close(self) -> None:
        """Release the onnxruntime sessions (the object is unusable afterwards)."""
        self._session = None
        self._sessions = {}
        self._pipeline = None

    def __enter__(self) -> 'PolicyRuntime':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# A tiny deterministic model for any contract: for tests, demos and dry runs of a cell.

def build_toy_model(contract: PolicyContract, seed: int = 0, *, batch: int | str = 1,
                    embed: bool = True) -> Any:
    """An onnx.ModelProto that satisfies `contract` (opset 17), with the contract embedded.

    Graph: each image -> [Cast float for uint8] -> [Transpose for nhwc] -> Conv 1x1 (C->4,
    initializers `img{i}_w`, `img{i}_b`) -> ReduceMean over H, W; the state as is (all
    `width` columns); token ids and an attention mask -> Cast float -> Mul by `<name>_scale`;
    Concat -> Gemm (`head_w` [F, T*N], `head_b`) -> Tanh -> Reshape [batch, T, N] (N: the
    action's model width). Weights are N(0, 0.5) from `seed`, so outputs stay within [-1, 1]
    before un-normalisation. `batch` is 1 or a name for a dynamic batch dimension.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    inits: list[Any] = []
    graph_inputs: list[Any] = []
    features: list[str] = []
    width = 0

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    def token_features(name: str, length: int, token_count: int) -> None:
        graph_inputs.append(helper.make_tensor_value_info(
            name, TensorProto.INT64, [batch, length]))
        nodes.append(helper.make_node('Cast', [name], [f'{name}_f'], to=TensorProto.FLOAT))
        scale = np.array(1.0 / token_count, dtype=np.float32)
        nodes.append(helper.make_node('Mul', [f'{name}_f', const(f'{name}_scale', scale)],
                                      [f'{name}_feat']))
        features.append(f'{name}_feat')

    for i, spec in enumerate(contract.inputs):
        if isinstance(spec, PIXEL_INPUTS):
            uint8 = isinstance(spec, ImageInput) and spec.dtype == 'uint8'
            graph_inputs.append(helper.make_tensor_value_info(
                spec.name, TensorProto.UINT8 if uint8 else TensorProto.FLOAT,
                [batch, *spec.shape[1:]]))
            source = spec.name
            if uint8:
                nodes.append(helper.make_node('Cast', [source], [f'img{i}_float'],
                                              to=TensorProto.FLOAT))
                source = f'img{i}_float'
            if spec.layout == 'nhwc':
                nodes.append(helper.make_node('Transpose', [source], [f'img{i}_nchw'],
                                              perm=[0, 3, 1, 2]))
                source = f'img{i}_nchw'
            weight = rng.normal(0.0, 0.5, (4, spec.channels, 1, 1)).astype(np.float32)
            bias = rng.normal(0.0, 0.5, 4).astype(np.float32)
            nodes.append(helper.make_node(
                'Conv', [source, const(f'img{i}_w', weight), const(f'img{i}_b', bias)],
                [f'img{i}_conv']))
            nodes.append(helper.make_node('ReduceMean', [f'img{i}_conv'], [f'img{i}_feat'],
                                          axes=[2, 3], keepdims=0))
            features.append(f'img{i}_feat')
            width += 4
        elif isinstance(spec, StateInput):
            graph_inputs.append(helper.make_tensor_value_info(
                spec.name, TensorProto.FLOAT, [batch, spec.model_width]))
            features.append(spec.name)
            width += spec.model_width
        else:
            token_features(spec.name, spec.max_length, spec.token_count)
            width += spec.max_length
            if spec.attention_mask is not None:
                token_features(spec.attention_mask, spec.max_length, 1)
                width += spec.max_length
    action = contract.action
    steps, size = action.chunk_length, action.model_width
    nodes.append(helper.make_node('Concat', features, ['features'], axis=1))
    head_w = rng.normal(0.0, 0.5, (width, steps * size)).astype(np.float32)
    head_b = rng.normal(0.0, 0.5, steps * size).astype(np.float32)
    nodes.append(helper.make_node('Gemm', ['features', const('head_w', head_w),
                                           const('head_b', head_b)], ['head']))
    nodes.append(helper.make_node('Tanh', ['head'], ['head_tanh']))
    nodes.append(helper.make_node(
        'Reshape', ['head_tanh', const('out_shape', np.array([-1, steps, size], np.int64))],
        [action.name]))
    output = helper.make_tensor_value_info(action.name, TensorProto.FLOAT, [batch, steps, size])
    graph = helper.make_graph(nodes, f'toy_{contract.name}', graph_inputs, [output],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              producer_name='noetra_ros.build_toy_model')
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    onnx.checker.check_model(model)
    if embed:
        embed_contract(model, contract)
    return model
